//! The video jitter buffer: puts RTP packets back in sequence order, rebuilds frames, asks for
//! retransmissions of missing packets (generic NACK) and for keyframes when a loss could not be
//! repaired.
//!
//! Packets are keyed by their extended (wrap-around-unrolled) sequence number. A frame is the
//! run of packets of one RTP timestamp from a frame-start packet to a packet with the marker
//! bit (or to the last packet before the timestamp changes); it is complete when every sequence
//! number in that run is present. Frames are released strictly in order. A missing packet is
//! NACKed after a short reorder delay, then again every round-trip time up to
//! [`AssemblerConfig::nack_retries`] times, and given up after [`AssemblerConfig::max_wait`]
//! (or two round trips after its last unanswered NACK):
//! from then on frames are dropped until a keyframe arrives, and a keyframe request is raised.
//!
//! Memory is bounded by [`AssemblerConfig::max_buffered_packets`] and by twice
//! [`AssemblerConfig::max_frame_bytes`] of buffered payload; overflow drops the oldest packets.
//! A change of SSRC is the caller's business: it starts a new assembler.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_media::rtp::RtpPacket;

use crate::codec::VideoCodecKind;
use crate::rtp::{self, MAX_FRAME_BYTES};

/// Most sequence numbers one [`FrameAssembler::nacks`] call returns.
pub const MAX_NACKS_PER_CALL: usize = 256;

/// Least [`AssemblerConfig::max_buffered_packets`] (smaller values are raised to it).
pub const MIN_BUFFERED_PACKETS: usize = 8;
/// Most [`AssemblerConfig::max_buffered_packets`]: a quarter of the sequence space, so that
/// distances between buffered numbers are never ambiguous.
pub const MAX_BUFFERED_PACKETS: usize = 1 << 14;

/// Tuning of a [`FrameAssembler`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssemblerConfig {
    /// Largest frame accepted, in bytes of RTP payload.
    pub max_frame_bytes: usize,
    /// Most packets held at once (clamped to [`MIN_BUFFERED_PACKETS`]..=
    /// [`MAX_BUFFERED_PACKETS`]); overflow drops the oldest.
    pub max_buffered_packets: usize,
    /// How long a missing packet is waited for before the frame is given up (sooner when all
    /// its NACKs went unanswered for two round trips).
    pub max_wait: Duration,
    /// How many times a missing packet is NACKed.
    pub nack_retries: u32,
    /// How long a gap may be reordering before its first NACK.
    pub reorder_delay: Duration,
    /// Least time between two keyframe requests while still waiting for a keyframe.
    pub keyframe_retry: Duration,
}

impl Default for AssemblerConfig {
    fn default() -> Self {
        AssemblerConfig {
            max_frame_bytes: MAX_FRAME_BYTES,
            max_buffered_packets: 2048,
            max_wait: Duration::from_millis(600),
            nack_retries: 10,
            reorder_delay: Duration::from_millis(10),
            keyframe_retry: Duration::from_millis(1000),
        }
    }
}

/// Why [`FrameAssembler::insert`] refused a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The payload does not parse as the codec's RTP payload format.
    Malformed,
    /// The payload alone is larger than the largest frame.
    TooLarge,
    /// The sequence number is further from the others than the buffer holds (a second
    /// consecutive one restarts the buffer there).
    OutOfRange,
}

/// What happened to an inserted packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Buffered.
    Accepted,
    /// A copy of a packet already buffered.
    Duplicate,
    /// Older than what was already released or given up (a late retransmission, an old duplicate).
    Late,
    /// Refused.
    Dropped(DropReason),
}

/// A complete frame released by the assembler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssembledFrame {
    /// The bitstream for the decoder (H.264: Annex-B).
    pub data: Vec<u8>,
    /// True for a keyframe.
    pub keyframe: bool,
    /// The RTP timestamp of its packets.
    pub rtp_timestamp: u32,
    /// Sequence number of its first packet.
    pub first_seq: u16,
    /// Sequence number of its last packet.
    pub last_seq: u16,
}

/// Counters of a [`FrameAssembler`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AssemblerStats {
    /// Packets accepted into the buffer.
    pub packets_accepted: u64,
    /// Frames released complete.
    pub frames_complete: u64,
    /// Keyframes among them.
    pub keyframes_complete: u64,
    /// Frames dropped (incomplete, undecodable, waiting for a keyframe, overflow).
    pub frames_dropped: u64,
    /// Packets that arrived after their place was released or given up.
    pub packets_late: u64,
    /// Duplicates of buffered packets.
    pub packets_duplicate: u64,
    /// Packets refused as malformed (payload format or depayloading errors).
    pub packets_malformed: u64,
    /// Packets dropped for overflow, size or while skipping to a keyframe.
    pub packets_dropped: u64,
    /// Missing packets given up after `max_wait`.
    pub packets_lost: u64,
    /// Missing packets that arrived later (reordered or retransmitted).
    pub packets_recovered: u64,
    /// Sequence numbers NACKed (each request counts).
    pub nacked: u64,
    /// Keyframe requests handed out by [`FrameAssembler::take_keyframe_request`].
    pub keyframe_requests: u64,
}

#[derive(Debug)]
struct Slot {
    timestamp: u32,
    marker: bool,
    payload: Bytes,
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    detected: Instant,
    last_nack: Option<Instant>,
    nacks: u32,
}

/// The video jitter buffer of one RTP source.
#[derive(Debug)]
pub struct FrameAssembler {
    kind: VideoCodecKind,
    config: AssemblerConfig,
    packets: BTreeMap<u64, Slot>,
    missing: BTreeMap<u64, Missing>,
    buffered_bytes: usize,
    /// Highest extended sequence number seen.
    highest: Option<u64>,
    /// Next extended sequence number to release; everything below is gone.
    next: u64,
    /// The head has moved (a frame released or packets dropped): older packets are late.
    head_moved: bool,
    waiting_for_keyframe: bool,
    request_pending: bool,
    last_request: Option<Instant>,
    last_dropped_ts: Option<u32>,
    /// The latest time passed in by the caller.
    last_now: Option<Instant>,
    /// A packet far outside the buffer, remembered to detect a real sequence jump.
    jump_candidate: Option<u64>,
    /// The round-trip time of the latest [`FrameAssembler::nacks`] call.
    last_rtt: Option<Duration>,
    /// While waiting for a keyframe: no packet in `next + 1..scanned_to` starts one.
    scanned_to: u64,
    stats: AssemblerStats,
}

/// Result of looking at the frame at the head of the buffer.
enum Head {
    /// Packets `next..=end` form a complete frame.
    Complete(u64),
    /// The frame is not complete; `blocker` is the first missing sequence number, if known.
    Incomplete,
    /// Nothing buffered at the head.
    Empty,
}

impl FrameAssembler {
    /// A new assembler for one RTP source; it waits for a keyframe before releasing frames.
    pub fn new(kind: VideoCodecKind, config: AssemblerConfig) -> Self {
        let config = AssemblerConfig {
            max_buffered_packets: config
                .max_buffered_packets
                .clamp(MIN_BUFFERED_PACKETS, MAX_BUFFERED_PACKETS),
            max_frame_bytes: config.max_frame_bytes.max(1),
            ..config
        };
        FrameAssembler {
            kind,
            config,
            packets: BTreeMap::new(),
            missing: BTreeMap::new(),
            buffered_bytes: 0,
            highest: None,
            next: 0,
            head_moved: false,
            waiting_for_keyframe: true,
            request_pending: false,
            last_request: None,
            last_dropped_ts: None,
            last_now: None,
            jump_candidate: None,
            last_rtt: None,
            scanned_to: 0,
            stats: AssemblerStats::default(),
        }
    }

    /// The codec whose payloads this assembler reads.
    pub fn kind(&self) -> VideoCodecKind {
        self.kind
    }

    /// The counters so far.
    pub fn stats(&self) -> AssemblerStats {
        self.stats
    }

    /// Number of packets currently buffered.
    pub fn buffered_packets(&self) -> usize {
        self.packets.len()
    }

    /// True while frames are being dropped until a keyframe arrives.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.waiting_for_keyframe
    }

    /// Unrolls a 16-bit sequence number against the highest one seen.
    fn extend(&self, seq: u16) -> u64 {
        match self.highest {
            // Start far from zero so that reordering backwards never underflows.
            None => (1u64 << 32) + u64::from(seq),
            Some(h) => {
                let delta = i64::from(seq.wrapping_sub(h as u16) as i16);
                h.saturating_add_signed(delta)
            }
        }
    }

    /// Offers one RTP packet of this source.
    pub fn insert(&mut self, now: Instant, packet: &RtpPacket) -> InsertOutcome {
        self.last_now = Some(now);
        let payload = &packet.payload;
        if rtp::check_payload(self.kind, payload).is_err() {
            self.stats.packets_malformed += 1;
            return InsertOutcome::Dropped(DropReason::Malformed);
        }
        if payload.len() > self.config.max_frame_bytes {
            self.stats.packets_dropped += 1;
            return InsertOutcome::Dropped(DropReason::TooLarge);
        }
        let mut ext = self.extend(packet.header.sequence);
        let bound = self.config.max_buffered_packets as u64;
        let far = self.highest.is_some_and(|h| ext.abs_diff(h) > bound);
        if far {
            // A jump beyond the buffer: one stray packet is dropped, but two in a row mean the
            // sender really moved (a long outage, a restarted sequence): start over there.
            if self
                .jump_candidate
                .is_some_and(|c| c.wrapping_add(1) == ext)
            {
                self.restart(now);
                ext = self.extend(packet.header.sequence);
            } else {
                self.jump_candidate = Some(ext);
                self.stats.packets_dropped += 1;
                return InsertOutcome::Dropped(DropReason::OutOfRange);
            }
        }
        self.jump_candidate = None;
        match self.highest {
            None => {
                self.highest = Some(ext);
                self.next = ext;
            }
            Some(h) if ext > h => {
                for s in h + 1..ext {
                    self.missing.insert(
                        s,
                        Missing {
                            detected: now,
                            last_nack: None,
                            nacks: 0,
                        },
                    );
                }
                self.highest = Some(ext);
            }
            Some(_) => {
                if ext < self.next {
                    if self.head_moved
                        || self.next - ext >= self.config.max_buffered_packets as u64 / 2
                    {
                        self.stats.packets_late += 1;
                        return InsertOutcome::Late;
                    }
                    // Reordering before anything was released: move the head back.
                    for s in ext + 1..self.next {
                        self.missing.insert(
                            s,
                            Missing {
                                detected: now,
                                last_nack: None,
                                nacks: 0,
                            },
                        );
                    }
                    self.next = ext;
                } else if self.packets.contains_key(&ext) {
                    self.stats.packets_duplicate += 1;
                    return InsertOutcome::Duplicate;
                } else if self.missing.remove(&ext).is_some() {
                    self.stats.packets_recovered += 1;
                }
            }
        }
        // This packet may start a keyframe, or make the one after it a start.
        self.scanned_to = self.scanned_to.min(ext);
        self.buffered_bytes += payload.len();
        self.packets.insert(
            ext,
            Slot {
                timestamp: packet.header.timestamp,
                marker: packet.header.marker,
                payload: payload.clone(),
            },
        );
        self.stats.packets_accepted += 1;
        if ext == self.next {
            self.mark_unknown_start(now, ext, payload);
        }
        self.enforce_bounds(now);
        InsertOutcome::Accepted
    }

    /// Forgets everything; the next packet starts the buffer again (huge sequence jumps).
    /// The extended numbers are rebased, so that no number of restarts can run them down.
    fn restart(&mut self, now: Instant) {
        self.drop_range(u64::MAX);
        self.missing.clear();
        self.highest = None;
        self.scanned_to = 0;
        self.head_moved = true;
        self.enter_keyframe_wait(now);
    }

    /// Before anything was released, a head packet that does not start a frame means its
    /// predecessors are still to come: wait (and NACK) for the one before it.
    fn mark_unknown_start(&mut self, now: Instant, ext: u64, payload: &[u8]) {
        // An H.264 IDR without its SPS is likely preceded by the parameter sets of its frame.
        let unsure = !rtp::is_frame_start(self.kind, payload)
            || (self.kind == VideoCodecKind::H264
                && rtp::is_keyframe(self.kind, payload)
                && !rtp::h264::has_sps(payload));
        if !self.head_moved && unsure {
            self.missing.insert(
                ext - 1,
                Missing {
                    detected: now,
                    last_nack: None,
                    nacks: 0,
                },
            );
            self.next = ext - 1;
        }
    }

    /// Drops the oldest packets while the buffer is over its bounds.
    fn enforce_bounds(&mut self, now: Instant) {
        let byte_bound = self.config.max_frame_bytes.saturating_mul(2);
        let mut dropped = false;
        while self.packets.len() > self.config.max_buffered_packets.max(1)
            || (self.buffered_bytes > byte_bound && self.packets.len() > 1)
        {
            let Some((&oldest, _)) = self.packets.first_key_value() else {
                break;
            };
            self.drop_range(oldest + 1);
            dropped = true;
        }
        if dropped {
            self.enter_keyframe_wait(now);
        }
    }

    /// Drops every buffered packet below `end`, forgets missing entries below it and moves the
    /// head there (if it was lower).
    fn drop_range(&mut self, end: u64) {
        while let Some(entry) = self.packets.first_entry() {
            if *entry.key() >= end {
                break;
            }
            let slot = entry.remove();
            self.buffered_bytes -= slot.payload.len();
            self.stats.packets_dropped += 1;
            if self.last_dropped_ts != Some(slot.timestamp) {
                self.stats.frames_dropped += 1;
                self.last_dropped_ts = Some(slot.timestamp);
            }
        }
        while let Some(entry) = self.missing.first_entry() {
            if *entry.key() >= end {
                break;
            }
            entry.remove();
        }
        if end != u64::MAX && end > self.next {
            self.next = end;
            self.head_moved = true;
        }
    }

    fn enter_keyframe_wait(&mut self, now: Instant) {
        self.waiting_for_keyframe = true;
        self.request_keyframe(now);
    }

    fn request_keyframe(&mut self, now: Instant) {
        let due = self
            .last_request
            .is_none_or(|t| now.saturating_duration_since(t) >= self.config.keyframe_retry);
        if due {
            self.request_pending = true;
            self.last_request = Some(now);
        }
    }

    /// Looks at the frame starting at the head.
    fn head(&self) -> Head {
        let Some(first) = self.packets.get(&self.next) else {
            return Head::Empty;
        };
        let ts = first.timestamp;
        let mut at = self.next;
        let limit = self.next + self.config.max_buffered_packets as u64;
        loop {
            let Some(slot) = self.packets.get(&at) else {
                return Head::Incomplete;
            };
            if slot.marker {
                return Head::Complete(at);
            }
            match self.packets.get(&(at + 1)) {
                Some(next) if next.timestamp != ts => return Head::Complete(at),
                Some(_) => {}
                None => return Head::Incomplete,
            }
            at += 1;
            if at > limit {
                return Head::Incomplete;
            }
        }
    }

    /// Removes packets `next..=end` and returns them, moving the head past them.
    fn take_range(&mut self, end: u64) -> Vec<Slot> {
        let mut out = Vec::new();
        for s in self.next..=end {
            if let Some(slot) = self.packets.remove(&s) {
                self.buffered_bytes -= slot.payload.len();
                out.push(slot);
            }
        }
        self.next = end + 1;
        self.head_moved = true;
        out
    }

    /// True when the packet at `ext` can start a keyframe we may skip forward to.
    fn is_keyframe_start(&self, ext: u64) -> bool {
        let Some(slot) = self.packets.get(&ext) else {
            return false;
        };
        let p = &slot.payload;
        if !rtp::is_frame_start(self.kind, p) || !rtp::is_keyframe(self.kind, p) {
            return false;
        }
        if ext == self.next {
            return true;
        }
        match self.packets.get(&(ext - 1)) {
            Some(prev) => prev.marker || prev.timestamp != slot.timestamp,
            // With the previous packet missing, only a start that cannot be preceded by more
            // packets of its frame counts (VP8 S=1/PID=0; an H.264 SPS).
            None => match self.kind {
                VideoCodecKind::Vp8 => true,
                VideoCodecKind::H264 => rtp::h264::has_sps(p),
            },
        }
    }

    /// The next complete frame, in order; `None` when the head frame is not complete yet.
    /// After an unrecoverable loss, frames are dropped until a keyframe.
    pub fn pop_frame(&mut self, now: Instant) -> Option<AssembledFrame> {
        self.last_now = Some(now);
        if self.waiting_for_keyframe && self.last_request.is_some() {
            // Still waiting: ask again once the retry interval has passed.
            self.request_keyframe(now);
        }
        loop {
            if self.waiting_for_keyframe && !self.is_keyframe_start(self.next) {
                // Skip to the first keyframe start in the buffer, if there is one.
                // Packets below `scanned_to` were found wanting and have not changed since.
                let from = self.scanned_to.max(self.next + 1);
                let target = self
                    .packets
                    .range(from..)
                    .map(|(&k, _)| k)
                    .find(|&k| self.is_keyframe_start(k));
                if let Some(k) = target {
                    self.drop_range(k);
                    continue;
                }
                self.scanned_to = self.highest.map_or(0, |h| h + 1);
                // A head that does not start a frame (its start was given up) cannot be used.
                if self
                    .packets
                    .get(&self.next)
                    .is_some_and(|s| !rtp::is_frame_start(self.kind, &s.payload))
                {
                    self.drop_range(self.next + 1);
                    continue;
                }
            }
            match self.head() {
                Head::Complete(end) => {
                    let first_seq = self.next as u16;
                    let slots = self.take_range(end);
                    let rtp_timestamp = slots.first().map_or(0, |s| s.timestamp);
                    let size: usize = slots.iter().map(|s| s.payload.len()).sum();
                    if size > self.config.max_frame_bytes {
                        self.count_dropped_frame(rtp_timestamp, slots.len());
                        self.enter_keyframe_wait(now);
                        continue;
                    }
                    let payloads: Vec<&[u8]> = slots.iter().map(|s| &s.payload[..]).collect();
                    match rtp::depayload_frame(self.kind, &payloads) {
                        Ok(frame) => {
                            if self.waiting_for_keyframe && !frame.keyframe {
                                self.count_dropped_frame(rtp_timestamp, slots.len());
                                self.request_keyframe_once(now);
                                continue;
                            }
                            if frame.keyframe {
                                self.waiting_for_keyframe = false;
                                self.last_request = None;
                                self.stats.keyframes_complete += 1;
                            }
                            self.stats.frames_complete += 1;
                            return Some(AssembledFrame {
                                data: frame.data,
                                keyframe: frame.keyframe,
                                rtp_timestamp,
                                first_seq,
                                last_seq: end as u16,
                            });
                        }
                        Err(_) => {
                            self.stats.packets_malformed += slots.len() as u64;
                            self.count_dropped_frame(rtp_timestamp, 0);
                            self.enter_keyframe_wait(now);
                            continue;
                        }
                    }
                }
                Head::Incomplete | Head::Empty => {
                    // Give up on the first missing packet once it has waited long enough.
                    let (&m, info) = self.missing.first_key_value()?;
                    if !self.gave_up_on(now, info) {
                        return None;
                    }
                    self.stats.packets_lost += 1;
                    self.drop_range(m + 1);
                    self.enter_keyframe_wait(now);
                }
            }
        }
    }

    /// True when a missing packet is hopeless: waited `max_wait`, or NACKed `nack_retries`
    /// times with the last request unanswered for two round trips.
    fn gave_up_on(&self, now: Instant, m: &Missing) -> bool {
        if now.saturating_duration_since(m.detected) >= self.config.max_wait {
            return true;
        }
        match (m.last_nack, self.last_rtt) {
            (Some(last), Some(rtt)) if m.nacks >= self.config.nack_retries => {
                let grace = (rtt * 2).max(self.config.reorder_delay);
                now.saturating_duration_since(last) >= grace
            }
            _ => false,
        }
    }

    fn count_dropped_frame(&mut self, ts: u32, packets: usize) {
        self.stats.packets_dropped += packets as u64;
        if self.last_dropped_ts != Some(ts) {
            self.stats.frames_dropped += 1;
            self.last_dropped_ts = Some(ts);
        }
    }

    /// Raises a keyframe request if none was raised since the last keyframe.
    fn request_keyframe_once(&mut self, now: Instant) {
        if self.last_request.is_none() {
            self.request_keyframe(now);
        }
    }

    /// Missing sequence numbers due for a (re)transmission request: first after the reorder
    /// delay, then every `rtt` (at least 5 ms), at most `nack_retries` times each; at most
    /// [`MAX_NACKS_PER_CALL`] per call, oldest first.
    pub fn nacks(&mut self, now: Instant, rtt: Duration) -> Vec<u16> {
        self.last_rtt = Some(rtt);
        let interval = rtt.max(Duration::from_millis(5));
        let mut out = Vec::new();
        for (&seq, m) in self.missing.iter_mut() {
            if out.len() >= MAX_NACKS_PER_CALL {
                break;
            }
            if m.nacks >= self.config.nack_retries {
                continue;
            }
            let due = match m.last_nack {
                None => now.saturating_duration_since(m.detected) >= self.config.reorder_delay,
                Some(t) => now.saturating_duration_since(t) >= interval,
            };
            if due {
                m.nacks += 1;
                m.last_nack = Some(now);
                out.push(seq as u16);
            }
        }
        self.stats.nacked += out.len() as u64;
        out
    }

    /// True once per keyframe need (loss given up, undecodable frame, decoder failure);
    /// repeated while waiting, at most every [`AssemblerConfig::keyframe_retry`].
    pub fn take_keyframe_request(&mut self) -> bool {
        let pending = std::mem::take(&mut self.request_pending);
        if pending {
            self.stats.keyframe_requests += 1;
        }
        pending
    }

    /// The decoder failed on a released frame: drop frames until the next keyframe and ask
    /// for one.
    pub fn decoder_failed(&mut self) {
        self.waiting_for_keyframe = true;
        self.request_pending = true;
        self.last_request = self.last_now;
    }
}
