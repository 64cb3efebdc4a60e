//! Adaptive packet-level jitter buffer, in RTP timestamp units.
//!
//! Packets are kept by (unwrapped) RTP timestamp; the consumer pops one packet's worth at a
//! time at its own pace (the playback device's clock). The buffer measures each packet's
//! transit (arrival time in timestamp units minus its timestamp); the variation of the transit
//! above its minimum over the last few seconds gives the *target delay* (a high percentile,
//! within `min_delay..=max_delay`). The *current delay* is how far the play position lags the
//! earliest-possible arrival of the packet there: it is kept near the target by dropping a
//! frame when it runs high (sender clock faster than ours, or the jitter calmed down) and by
//! inserting a concealment frame when it runs low (sender clock slower, or jitter grew); drops
//! wait for quiet audio ([`JitterBuffer::set_quiet`]) unless the delay runs far too high.

use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Transit samples kept for the delay-variation statistics (about 5 s of 20 ms packets).
const TRANSIT_WINDOW: usize = 250;
/// Percentile of the delay variation the target delay covers.
const TARGET_PERCENTILE: f64 = 0.97;
/// Recently played timestamps remembered to tell duplicates from late packets.
const PLAYED_MEMORY: usize = 64;
/// A transit this far (seconds) off the stream's minimum marks a packet as off the timeline.
const RESYNC_SECONDS: i64 = 3;
/// Frames of underrun after which a late packet moves the play position back to itself
/// instead of being dropped (a single late packet stays late: it costs one concealed frame).
const REWIND_AFTER_FRAMES: i64 = 3;
/// After the consumer noted a stall ([`JitterBuffer::note_stall`]), packets pushed and frames
/// popped up to this long after its end still belong to the catch-up.
const STALL_GRACE: Duration = Duration::from_millis(30);

/// Jitter buffer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate of the stream (timestamp units per second).
    pub clock_rate: u32,
    /// The smallest target delay.
    pub min_delay: Duration,
    /// The largest target delay (and the level above which frames are dropped at once).
    pub max_delay: Duration,
    /// The most packets held; beyond it the oldest is dropped.
    pub max_packets: usize,
}

impl JitterConfig {
    /// Defaults for a clock rate: 20 ms minimum, 300 ms maximum delay, 100 packets.
    pub fn new(clock_rate: u32) -> Self {
        JitterConfig {
            clock_rate,
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(300),
            max_packets: 100,
        }
    }
}

/// Why a frame had no packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissReason {
    /// A packet is missing (sequence gap) and later ones are buffered: it was lost.
    Lost,
    /// Nothing is buffered: lost, very late, or the sender paused (DTX without a marker).
    Underrun,
    /// The timestamps jump but the sequence numbers do not: the sender paused (DTX).
    Silence,
    /// A frame inserted to let the delay grow toward the target (no packet is skipped).
    Inserted,
}

/// What the consumer should play next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JitterOutput {
    /// Decode this packet.
    Packet {
        /// The RTP payload.
        payload: Bytes,
        /// Its RTP timestamp.
        timestamp: u32,
        /// Its duration in timestamp units (as given to `push`).
        samples: u32,
    },
    /// No packet for the next `samples` timestamp units: conceal them.
    Missing {
        /// Duration to conceal, in timestamp units.
        samples: u32,
        /// The packet that immediately follows the gap, if buffered (for Opus in-band FEC);
        /// only given for [`MissReason::Lost`].
        next: Option<Bytes>,
        /// Why there is no packet.
        reason: MissReason,
    },
    /// Still filling up before playout starts (play comfort silence).
    Buffering,
}

/// Jitter buffer counters and levels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JitterStats {
    /// Current delay (smoothed), milliseconds.
    pub delay_ms: f32,
    /// Target delay, milliseconds.
    pub target_ms: f32,
    /// Delay variation (the target percentile, before clamping), milliseconds.
    pub jitter_ms: f32,
    /// Packets currently held.
    pub buffered: usize,
    /// Packets accepted.
    pub received: u64,
    /// Packets handed out for decoding.
    pub played: u64,
    /// Packets that arrived after their play time (dropped).
    pub late: u64,
    /// Duplicate packets (dropped).
    pub duplicates: u64,
    /// Packets dropped to shrink the delay (drift, target decrease) or on overflow.
    pub dropped: u64,
    /// Frames inserted to grow the delay.
    pub inserted: u64,
    /// Frames reported missing because of loss or underrun (concealed by the decoder).
    pub concealed: u64,
    /// Frames reported as sender silence (timestamp gaps without sequence gaps).
    pub silence: u64,
    /// Times the stream was restarted (timestamp jump, or `reset`).
    pub resyncs: u64,
    /// Packets seconds off the stream's timeline, dropped as strays.
    pub outliers: u64,
}

/// A packet off the stream's timeline, kept until the next packet says whether the sender
/// restarted its timestamps.
#[derive(Debug, Clone)]
struct Candidate {
    now: Instant,
    seq: u16,
    timestamp: u32,
    transit: i64,
    payload: Bytes,
    samples: u32,
}

#[derive(Debug, Clone)]
struct Entry {
    seq: u16,
    timestamp: u32,
    samples: u32,
    payload: Bytes,
}

/// The adaptive jitter buffer.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    packets: BTreeMap<i64, Entry>,
    /// Unwrapping state: last raw timestamp and its extended value.
    last_ts: Option<(u32, i64)>,
    candidate: Option<Candidate>,
    /// Time reference for arrival times in timestamp units.
    epoch: Option<Instant>,
    /// Play position (extended timestamp), once playing.
    pos: Option<i64>,
    last_seq: Option<u16>,
    frame: u32,
    transits: VecDeque<i64>,
    min_transit: i64,
    target: f64,
    jitter: f64,
    delay_avg: Option<f64>,
    last_adjust: Option<Instant>,
    quiet: bool,
    played: VecDeque<i64>,
    /// The consumer's last stall, (start, end) in arrival units: packets pushed then had been
    /// waiting for the consumer, not for the network.
    stall: Option<(i64, i64)>,
    /// Where the current underrun began (play position of its first concealed frame), while
    /// the buffer runs dry.
    underrun_from: Option<i64>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// Creates an empty buffer.
    pub fn new(cfg: JitterConfig) -> Self {
        let clock = f64::from(cfg.clock_rate.max(1));
        let target = cfg.min_delay.as_secs_f64() * clock;
        JitterBuffer {
            cfg,
            packets: BTreeMap::new(),
            last_ts: None,
            candidate: None,
            epoch: None,
            pos: None,
            last_seq: None,
            frame: 0,
            transits: VecDeque::with_capacity(TRANSIT_WINDOW),
            min_transit: 0,
            target,
            jitter: 0.0,
            delay_avg: None,
            last_adjust: None,
            quiet: false,
            played: VecDeque::with_capacity(PLAYED_MEMORY),
            stall: None,
            underrun_from: None,
            stats: JitterStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &JitterConfig {
        &self.cfg
    }

    /// Forgets every packet and the timing state (new SSRC or codec); counters are kept.
    pub fn reset(&mut self) {
        let stats = std::mem::take(&mut self.stats);
        *self = JitterBuffer::new(self.cfg.clone());
        self.stats = stats;
        self.stats.resyncs += 1;
    }

    /// Changes the delay bounds; the target moves inside them at once.
    pub fn set_delay_bounds(&mut self, min_delay: Duration, max_delay: Duration) {
        self.cfg.min_delay = min_delay;
        self.cfg.max_delay = max_delay.max(min_delay);
        let clock = self.clock();
        let lo = self.cfg.min_delay.as_secs_f64() * clock;
        let hi = self.cfg.max_delay.as_secs_f64() * clock;
        self.target = self.target.clamp(lo, hi);
    }

    /// Tells the buffer that its consumer (the task that pushes and pops) could not run from
    /// `since` until `until`: packets pushed right after that waited for the consumer, so their
    /// arrival time says nothing about the network. They are timed as if they had arrived
    /// when the network brought them at the earliest (never before `since`), and the frames
    /// popped in the catch-up that follows neither move the delay average nor drop or insert
    /// frames; the backlog is simply played.
    pub fn note_stall(&mut self, since: Instant, until: Instant) {
        let since = self.now_units(since);
        let until = self.now_units(until);
        if until > since {
            self.stall = Some((since, until));
        }
    }

    /// True while `now_u` is within the catch-up of the last noted stall.
    fn in_stall(&mut self, now_u: i64) -> Option<(i64, i64)> {
        let grace = (STALL_GRACE.as_secs_f64() * self.clock()) as i64;
        match self.stall {
            Some((since, until)) if now_u <= until + grace => Some((since, until)),
            Some(_) => {
                self.stall = None;
                None
            }
            None => None,
        }
    }

    /// The arrival time (units) to account a packet at: when it was pushed, or for a packet
    /// that waited out a stall of the consumer, the earliest the network could have brought
    /// it (its timestamp plus the stream's minimum transit), within the stall.
    fn arrival_units(&mut self, now: Instant, ext: i64) -> i64 {
        let arrival = self.now_units(now);
        match self.in_stall(arrival) {
            Some((since, _)) if !self.transits.is_empty() && arrival > since => {
                (ext + self.min_transit).clamp(since, arrival)
            }
            _ => arrival,
        }
    }

    /// Tells the buffer whether the audio being played is quiet (silence, comfort noise):
    /// frames are preferably dropped then, where it is inaudible.
    pub fn set_quiet(&mut self, quiet: bool) {
        self.quiet = quiet;
    }

    /// True once playout has started.
    pub fn is_playing(&self) -> bool {
        self.pos.is_some()
    }

    /// The current target delay.
    pub fn target_delay(&self) -> Duration {
        Duration::from_secs_f64(self.target / self.clock())
    }

    fn clock(&self) -> f64 {
        f64::from(self.cfg.clock_rate.max(1))
    }

    fn now_units(&mut self, now: Instant) -> i64 {
        let epoch = *self.epoch.get_or_insert(now);
        (now.saturating_duration_since(epoch).as_secs_f64() * self.clock()) as i64
    }

    /// The extended (unwrapped) value of a timestamp, relative to the newest accepted one.
    fn peek_ext(&self, ts: u32) -> i64 {
        match self.last_ts {
            None => i64::from(ts),
            Some((last, ext)) => ext + i64::from(ts.wrapping_sub(last) as i32),
        }
    }

    fn commit_ext(&mut self, ts: u32, ext: i64) {
        if self.last_ts.is_none_or(|(_, newest)| ext > newest) {
            self.last_ts = Some((ts, ext));
        }
    }

    /// Adds a received packet (`samples` = its duration in timestamp units). Late and
    /// duplicate packets are dropped and counted. A packet whose transit is seconds off the
    /// stream's is held back as an outlier; when the next packet (by sequence number)
    /// confirms the new timeline, the buffer restarts from both (the sender reset its
    /// timestamps), otherwise the stray packet is dropped.
    pub fn push(
        &mut self,
        now: Instant,
        sequence: u16,
        timestamp: u32,
        payload: Bytes,
        samples: u32,
    ) {
        let ext = self.peek_ext(timestamp);
        let arrival = self.arrival_units(now, ext);
        let transit = arrival - ext;
        let span = RESYNC_SECONDS * i64::from(self.cfg.clock_rate);
        if !self.transits.is_empty() && (transit - self.min_transit).abs() > span {
            if let Some(c) = self.candidate.take()
                && c.seq.wrapping_add(1) == sequence
                && (transit - c.transit).abs() <= span / 4
            {
                self.reset();
                self.accept(c.now, c.seq, c.timestamp, c.payload, c.samples);
                self.accept(now, sequence, timestamp, payload, samples);
                return;
            }
            self.stats.outliers += 1;
            self.candidate = Some(Candidate {
                now,
                seq: sequence,
                timestamp,
                transit,
                payload,
                samples,
            });
            return;
        }
        self.candidate = None;
        self.commit_ext(timestamp, ext);
        self.insert(arrival, ext, sequence, timestamp, payload, samples);
    }

    fn accept(&mut self, now: Instant, seq: u16, timestamp: u32, payload: Bytes, samples: u32) {
        let arrival = self.now_units(now);
        let ext = self.peek_ext(timestamp);
        self.commit_ext(timestamp, ext);
        self.insert(arrival, ext, seq, timestamp, payload, samples);
    }

    fn insert(
        &mut self,
        arrival: i64,
        ext: i64,
        seq: u16,
        timestamp: u32,
        payload: Bytes,
        samples: u32,
    ) {
        if self.packets.contains_key(&ext) || self.played.contains(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        self.record_transit(arrival - ext);
        if let Some(pos) = self.pos
            && ext < pos
        {
            // The buffer ran dry for a few frames and the play position moved on only by
            // concealing that underrun: this packet was not lost, the consumer was early
            // (after a stall, a delay spike, a sender that paused its clock). Going back to it
            // lets the delay grow to what the stream needs; judging it late would make every
            // following packet late too, since they keep arriving behind the concealed frames.
            let run = i64::from(self.frame.max(1)) * REWIND_AFTER_FRAMES;
            let rewind = self.packets.is_empty()
                && self
                    .underrun_from
                    .is_some_and(|u| ext >= u && pos - u >= run);
            if !rewind {
                self.stats.late += 1;
                return;
            }
            self.pos = Some(ext);
            self.underrun_from = None;
        }
        if samples > 0 {
            self.frame = samples;
        }
        self.packets.insert(
            ext,
            Entry {
                seq,
                timestamp,
                samples,
                payload,
            },
        );
        self.stats.received += 1;
        while self.packets.len() > self.cfg.max_packets.max(1) {
            if let Some((k, e)) = self.packets.pop_first() {
                self.stats.dropped += 1;
                if let Some(pos) = self.pos.as_mut() {
                    *pos = (*pos).max(k + i64::from(e.samples));
                }
                self.last_seq = Some(e.seq);
            }
        }
    }

    fn record_transit(&mut self, transit: i64) {
        if self.transits.len() == TRANSIT_WINDOW {
            self.transits.pop_front();
        }
        self.transits.push_back(transit);
        self.min_transit = self.transits.iter().copied().min().unwrap_or(transit);
        let mut var: Vec<i64> = self.transits.iter().map(|t| t - self.min_transit).collect();
        var.sort_unstable();
        let idx = ((var.len() as f64 - 1.0) * TARGET_PERCENTILE).round() as usize;
        let p = var.get(idx).copied().unwrap_or(0) as f64;
        self.jitter = p;
        let clock = self.clock();
        let lo = self.cfg.min_delay.as_secs_f64() * clock;
        let hi = (self.cfg.max_delay.as_secs_f64() * clock).max(lo);
        // Cover the variation plus a few milliseconds for the consumer's own granularity.
        let wanted = (p + 0.005 * clock).clamp(lo, hi);
        if wanted > self.target {
            self.target = wanted;
        } else {
            // Shrink slowly (about 1/128 of the difference per packet).
            self.target -= (self.target - wanted) / 128.0;
        }
    }

    /// How far the play position lags the earliest-possible arrival of its packet.
    fn current_delay(&self, now_u: i64, pos: i64) -> f64 {
        (now_u - pos - self.min_transit) as f64
    }

    /// The next thing to play. `want_samples` (timestamp units) is the duration the consumer
    /// needs when the buffer cannot tell (no packet seen yet, or underrun).
    pub fn pop(&mut self, now: Instant, want_samples: u32) -> JitterOutput {
        let now_u = self.now_units(now);
        let frame = if self.frame > 0 {
            self.frame
        } else {
            want_samples.max(1)
        };
        let pos = match self.pos {
            Some(p) => p,
            None => {
                let Some((&first, _)) = self.packets.first_key_value() else {
                    return JitterOutput::Buffering;
                };
                if self.current_delay(now_u, first) < self.target {
                    return JitterOutput::Buffering;
                }
                self.pos = Some(first);
                self.delay_avg = Some(self.current_delay(now_u, first));
                first
            }
        };

        // In the catch-up after a stall of the consumer the delay is high only because frames
        // are being popped in a burst: play the backlog, adjust nothing.
        let catching_up = self.in_stall(now_u).is_some();

        // Keep the delay near the target.
        let delay = self.current_delay(now_u, pos);
        let avg = match self.delay_avg {
            Some(a) if catching_up => a,
            Some(a) => a + (delay - a) / 16.0,
            None => delay,
        };
        self.delay_avg = Some(avg);
        let max = self.cfg.max_delay.as_secs_f64() * self.clock();
        let cooled = self
            .last_adjust
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_millis(200));
        // Hysteresis: an inserted frame lifts the delay from just under `target - frame/4`
        // to under `target + frame`, which stays below the drop threshold.
        // A drop waits for a quiet moment (see `set_quiet`) unless the delay is a further
        // frame beyond the threshold: waiting only costs latency. An insertion does not wait:
        // a low delay makes packets late, and each late packet costs a concealed frame anyway.
        let high = self.target + f64::from(frame) + 0.01 * self.clock();
        let low = self.target - f64::from(frame) / 4.0;
        let urgent_high = high + f64::from(frame);
        let drop = cooled && avg > high && (self.quiet || avg > urgent_high);
        let insert = cooled && avg < low && avg < max;
        if catching_up {
            // Neither drop nor insert.
        } else if drop || avg > max + f64::from(frame) {
            if let Some((&k, _)) = self.packets.first_key_value()
                && k <= pos
                && self.packets.len() >= 2
                && let Some(e) = self.packets.remove(&k)
            {
                self.stats.dropped += 1;
                self.pos = Some(k + i64::from(e.samples.max(1)));
                self.remember_played(k);
                self.last_seq = Some(e.seq);
                self.delay_avg = Some(avg - f64::from(e.samples));
                self.last_adjust = Some(now);
                return self.pop(now, want_samples);
            }
        } else if insert {
            self.stats.inserted += 1;
            self.delay_avg = Some(avg + f64::from(frame));
            self.last_adjust = Some(now);
            return JitterOutput::Missing {
                samples: frame,
                next: None,
                reason: MissReason::Inserted,
            };
        }

        // Drop anything older than the play position (can only be overlap from odd sizes).
        while let Some((&k, e)) = self.packets.first_key_value() {
            if k + i64::from(e.samples) <= pos && k < pos {
                self.packets.pop_first();
                self.stats.late += 1;
            } else {
                break;
            }
        }

        match self.packets.first_key_value().map(|(&k, _)| k) {
            Some(k) if k <= pos => {
                let Some(e) = self.packets.remove(&k) else {
                    return JitterOutput::Buffering;
                };
                self.pos = Some(k + i64::from(e.samples.max(1)));
                self.remember_played(k);
                self.last_seq = Some(e.seq);
                self.underrun_from = None;
                self.stats.played += 1;
                JitterOutput::Packet {
                    payload: e.payload,
                    timestamp: e.timestamp,
                    samples: e.samples,
                }
            }
            Some(k) => {
                self.underrun_from = None;
                let gap = (k - pos).min(i64::from(frame)).max(1) as u32;
                let Some(next) = self.packets.get(&k) else {
                    return JitterOutput::Buffering;
                };
                let contiguous = self.last_seq.is_some_and(|s| s.wrapping_add(1) == next.seq);
                self.pos = Some(pos + i64::from(gap));
                if contiguous {
                    self.stats.silence += 1;
                    JitterOutput::Missing {
                        samples: gap,
                        next: None,
                        reason: MissReason::Silence,
                    }
                } else {
                    self.stats.concealed += 1;
                    // The FEC in the next packet covers the frame right before it.
                    let adjacent = k == pos + i64::from(gap);
                    JitterOutput::Missing {
                        samples: gap,
                        next: adjacent.then(|| next.payload.clone()),
                        reason: MissReason::Lost,
                    }
                }
            }
            None => {
                self.underrun_from.get_or_insert(pos);
                self.pos = Some(pos + i64::from(frame));
                self.stats.concealed += 1;
                JitterOutput::Missing {
                    samples: frame,
                    next: None,
                    reason: MissReason::Underrun,
                }
            }
        }
    }

    fn remember_played(&mut self, ext: i64) {
        if self.played.len() == PLAYED_MEMORY {
            self.played.pop_front();
        }
        self.played.push_back(ext);
    }

    /// Counters and levels.
    pub fn stats(&self) -> JitterStats {
        let ms = 1000.0 / self.clock();
        JitterStats {
            delay_ms: (self.delay_avg.unwrap_or(0.0) * ms) as f32,
            target_ms: (self.target * ms) as f32,
            jitter_ms: (self.jitter * ms) as f32,
            buffered: self.packets.len(),
            ..self.stats.clone()
        }
    }
}
