//! DTMF: RFC 4733 telephone-event payloads, a sender that turns queued digits into one event
//! packet per frame tick, a receiver that reports each digit once, and the SIP INFO bodies
//! `application/dtmf-relay` and `application/dtmf`.
//!
//! Sender behaviour (RFC 4733 §2.5.1): all packets of one event carry the event's start
//! timestamp; the first has the marker bit; each following tick sends the grown duration; the
//! end packet (E bit, final duration) is sent three times; events longer than 0xFFFF clock units
//! are split into segments (§2.5.1.3); queued digits are separated by a pause in which normal
//! audio flows again. This is the shape Asterisk and baresip send and expect: volume 10, the
//! first duration one frame.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use crate::rtp::{RtpPacket, duration_to_units};

/// Length of one telephone-event report.
pub const EVENT_LEN: usize = 4;
/// Volume we send, in −dBm0 (RFC 4733 §2.3.4; what Asterisk and baresip use).
pub const DEFAULT_VOLUME: u8 = 10;
/// Shortest digit we send.
pub const MIN_DIGIT_DURATION: Duration = Duration::from_millis(40);
/// Longest digit we send.
pub const MAX_DIGIT_DURATION: Duration = Duration::from_secs(10);
/// Default silence between queued digits.
pub const DEFAULT_PAUSE: Duration = Duration::from_millis(80);
/// How many times the end packet is sent (RFC 4733 §2.5.1.4: the first plus two repeats).
pub const END_PACKET_COUNT: u8 = 3;
/// Largest duration a single segment can report.
const MAX_SEGMENT: u32 = 0xFFFF;
/// Most digits [`DtmfSender`] keeps queued.
pub const MAX_QUEUED: usize = 256;
/// How many recent events the receiver remembers for deduplication.
const RECENT_EVENTS: usize = 16;

/// DTMF errors.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    /// A telephone-event payload shorter than 4 bytes.
    #[error("telephone-event payload too short: {0} bytes")]
    TooShort(usize),
    /// A character that is not a DTMF digit (0-9, *, #, A-D).
    #[error("not a DTMF digit: {0:?}")]
    InvalidDigit(char),
    /// More than [`MAX_QUEUED`] digits would be waiting.
    #[error("too many DTMF digits queued (at most {MAX_QUEUED})")]
    QueueFull,
}

/// One RFC 4733 event report (§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TelephoneEvent {
    /// Event code (0-9 digits, 10 '*', 11 '#', 12-15 A-D, 16 flash, …).
    pub event: u8,
    /// End bit: the last report(s) of the event.
    pub end: bool,
    /// Power level in −dBm0, 0..=63.
    pub volume: u8,
    /// Duration so far, in RTP clock units from the event's (segment's) timestamp.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first event report of a payload (a payload may carry several; §2.5.1.5).
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
        let b = payload
            .get(..EVENT_LEN)
            .ok_or(DtmfError::TooShort(payload.len()))?;
        Ok(TelephoneEvent {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    /// The 4-byte wire form (reserved bit zero, volume masked to 6 bits).
    pub fn encode(&self) -> [u8; EVENT_LEN] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }

    /// The DTMF digit of this event, if it is one.
    pub fn digit(&self) -> Option<char> {
        event_to_digit(self.event)
    }
}

/// The event code of a DTMF digit: '0'-'9' → 0-9, '*' → 10, '#' → 11, 'A'-'D' → 12-15
/// (lowercase accepted).
pub fn digit_to_event(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// The DTMF digit of an event code 0-15 (uppercase letters).
pub fn event_to_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// One telephone-event packet for the session to send on this frame tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfPacket {
    /// The 4-byte payload.
    pub payload: Bytes,
    /// Marker bit (first packet of an event).
    pub marker: bool,
    /// How far the event (segment) start lies before this tick's audio timestamp, in clock
    /// units: send with RTP timestamp `current_audio_ts - timestamp_offset`.
    pub timestamp_offset: u32,
    /// The decoded report, for logging and tests.
    pub event: TelephoneEvent,
    /// True on the event's very last packet (the last end-packet repetition).
    pub end_of_event: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SenderState {
    Idle,
    /// Sending updates. `rel`: start of this tick relative to the event start; `seg`: start of
    /// the current segment relative to the event start; `total`: event length.
    Sending {
        event: u8,
        total: u32,
        rel: u32,
        seg: u32,
        first: bool,
    },
    /// Repeating the end packet.
    Ending {
        event: u8,
        duration: u16,
        offset: u32,
        remaining: u8,
    },
    /// Silence before the next digit, in clock units still to wait.
    Pause {
        remaining: u32,
    },
}

/// RFC 4733 sender: queue digits with [`DtmfSender::start`], call [`DtmfSender::poll`] once per
/// frame tick and send what it returns instead of that tick's audio.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    clock_rate: u32,
    volume: u8,
    pause: Duration,
    queue: VecDeque<(u8, u32)>,
    state: SenderState,
}

impl DtmfSender {
    /// A sender for a telephone-event payload with RTP clock `clock_rate`.
    pub fn new(clock_rate: u32) -> DtmfSender {
        DtmfSender {
            clock_rate: clock_rate.max(1),
            volume: DEFAULT_VOLUME,
            pause: DEFAULT_PAUSE,
            queue: VecDeque::new(),
            state: SenderState::Idle,
        }
    }

    /// The clock rate the sender counts in.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// Sets the gap between queued digits.
    pub fn set_pause(&mut self, pause: Duration) {
        self.pause = pause;
    }

    /// Sets the volume field (−dBm0, clamped to 0..=63).
    pub fn set_volume(&mut self, volume: u8) {
        self.volume = volume.min(63);
    }

    /// Queues one digit lasting `duration` (clamped to 40 ms..=10 s).
    pub fn start(&mut self, digit: char, duration: Duration) -> Result<(), DtmfError> {
        let event = digit_to_event(digit).ok_or(DtmfError::InvalidDigit(digit))?;
        if self.queue.len() >= MAX_QUEUED {
            return Err(DtmfError::QueueFull);
        }
        let duration = duration.clamp(MIN_DIGIT_DURATION, MAX_DIGIT_DURATION);
        let samples = duration_to_units(duration, self.clock_rate).max(1);
        self.queue.push_back((event, samples));
        Ok(())
    }

    /// Queues every digit of `digits` (all checked first: nothing is queued on an error).
    pub fn start_all(&mut self, digits: &str, duration: Duration) -> Result<(), DtmfError> {
        if let Some(bad) = digits.chars().find(|c| digit_to_event(*c).is_none()) {
            return Err(DtmfError::InvalidDigit(bad));
        }
        if self.queue.len() + digits.chars().count() > MAX_QUEUED {
            return Err(DtmfError::QueueFull);
        }
        for d in digits.chars() {
            self.start(d, duration)?;
        }
        Ok(())
    }

    /// True while an event is being sent (its ticks carry event packets, not audio).
    pub fn is_active(&self) -> bool {
        matches!(
            self.state,
            SenderState::Sending { .. } | SenderState::Ending { .. }
        )
    }

    /// True when nothing is being sent, waited for or queued.
    pub fn is_idle(&self) -> bool {
        self.state == SenderState::Idle && self.queue.is_empty()
    }

    /// Digits queued and not started yet.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Drops the queued digits; an event in progress is ended properly (end packets follow).
    pub fn clear(&mut self) {
        self.queue.clear();
        if let SenderState::Sending {
            event, rel, seg, ..
        } = self.state
        {
            let duration = u16::try_from(rel.saturating_sub(seg).max(1)).unwrap_or(u16::MAX);
            self.state = SenderState::Ending {
                event,
                duration,
                offset: rel.saturating_sub(seg),
                remaining: END_PACKET_COUNT,
            };
        }
    }

    fn packet(&self, event: u8, end: bool, duration: u16, marker: bool, offset: u32) -> DtmfPacket {
        let ev = TelephoneEvent {
            event,
            end,
            volume: self.volume,
            duration,
        };
        DtmfPacket {
            payload: Bytes::copy_from_slice(&ev.encode()),
            marker,
            timestamp_offset: offset,
            event: ev,
            end_of_event: false,
        }
    }

    /// Advances one frame tick of `frame_samples` clock units: the event packet to send on
    /// this tick, or `None` (send audio as usual).
    pub fn poll(&mut self, frame_samples: u32) -> Option<DtmfPacket> {
        let frame = frame_samples.clamp(1, MAX_SEGMENT);
        loop {
            match self.state {
                SenderState::Idle => {
                    let (event, total) = self.queue.pop_front()?;
                    self.state = SenderState::Sending {
                        event,
                        total,
                        rel: 0,
                        seg: 0,
                        first: true,
                    };
                }
                SenderState::Pause { remaining } => {
                    if remaining == 0 {
                        self.state = SenderState::Idle;
                        continue;
                    }
                    self.state = SenderState::Pause {
                        remaining: remaining.saturating_sub(frame),
                    };
                    return None;
                }
                SenderState::Sending {
                    event,
                    total,
                    rel,
                    seg,
                    first,
                } => {
                    let end_rel = rel.saturating_add(frame).min(total);
                    let span = end_rel - seg;
                    let offset = rel - seg;
                    if span > MAX_SEGMENT {
                        // This segment is full: report it and start the next one (§2.5.1.3).
                        let p = self.packet(event, false, u16::MAX, first, offset);
                        self.state = SenderState::Sending {
                            event,
                            total,
                            rel: rel.saturating_add(frame),
                            seg: seg + MAX_SEGMENT,
                            first: false,
                        };
                        return Some(p);
                    }
                    // span <= 0xFFFF here.
                    let duration = span as u16;
                    if end_rel >= total && first {
                        // Never open an event with an end packet: baresip reports only the
                        // key release for one. Start it, then send the three end packets.
                        let p = self.packet(event, false, duration, true, offset);
                        self.state = SenderState::Ending {
                            event,
                            duration,
                            offset: offset.saturating_add(frame),
                            remaining: END_PACKET_COUNT,
                        };
                        return Some(p);
                    }
                    if end_rel >= total {
                        let p = self.packet(event, true, duration, false, offset);
                        self.state = SenderState::Ending {
                            event,
                            duration,
                            offset: offset.saturating_add(frame),
                            remaining: END_PACKET_COUNT - 1,
                        };
                        return Some(p);
                    }
                    let p = self.packet(event, false, duration, first, offset);
                    self.state = SenderState::Sending {
                        event,
                        total,
                        rel: rel.saturating_add(frame),
                        seg,
                        first: false,
                    };
                    return Some(p);
                }
                SenderState::Ending {
                    event,
                    duration,
                    offset,
                    remaining,
                } => {
                    if remaining == 0 {
                        self.state = SenderState::Pause {
                            remaining: duration_to_units(self.pause, self.clock_rate),
                        };
                        continue;
                    }
                    let mut p = self.packet(event, true, duration, false, offset);
                    p.end_of_event = remaining == 1;
                    self.state = SenderState::Ending {
                        event,
                        duration,
                        offset: offset.saturating_add(frame),
                        remaining: remaining - 1,
                    };
                    return Some(p);
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct SeenEvent {
    timestamp: u32,
    event: u8,
    ended: bool,
}

/// RFC 4733 receiver: reports each digit once, on the first packet seen of the event, whatever
/// updates, retransmitted ends, reordering or long-event segments follow.
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    recent: VecDeque<SeenEvent>,
}

impl DtmfReceiver {
    /// A receiver that has seen nothing.
    pub fn new() -> DtmfReceiver {
        DtmfReceiver::default()
    }

    /// Accounts one telephone-event packet with RTP timestamp `timestamp`; returns the digit
    /// when this packet starts a new DTMF event.
    pub fn on_packet(&mut self, timestamp: u32, event: &TelephoneEvent) -> Option<char> {
        if let Some(seen) = self.recent.iter_mut().find(|s| s.timestamp == timestamp) {
            seen.ended |= event.end;
            return None;
        }
        // A later segment of a long event starts 0xFFFF after the previous one (§2.5.1.3).
        let continuation = self.recent.back().is_some_and(|last| {
            last.event == event.event
                && !last.ended
                && timestamp.wrapping_sub(last.timestamp) == MAX_SEGMENT
        });
        if self.recent.len() >= RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(SeenEvent {
            timestamp,
            event: event.event,
            ended: event.end,
        });
        if continuation {
            return None;
        }
        event_to_digit(event.event)
    }

    /// Parses an RTP packet's telephone-event payload and accounts it (see
    /// [`DtmfReceiver::on_packet`]); malformed payloads are ignored.
    pub fn on_rtp(&mut self, packet: &RtpPacket) -> Option<char> {
        let event = TelephoneEvent::parse(&packet.payload).ok()?;
        self.on_packet(packet.header.timestamp, &event)
    }
}

/// A digit named by a SIP INFO value: the character itself or its event number ("10" = '*').
fn info_digit(value: &str) -> Option<char> {
    let value = value.trim();
    let mut chars = value.chars();
    if let (Some(c), None) = (chars.next(), chars.next())
        && let Some(event) = digit_to_event(c)
    {
        return event_to_digit(event);
    }
    value.parse::<u8>().ok().and_then(event_to_digit)
}

/// Parses a SIP INFO DTMF body: `application/dtmf-relay` (`Signal=5\r\nDuration=160`) or
/// `application/dtmf` (`5`). Returns the digit and the duration in milliseconds if given.
pub fn parse_dtmf_info(content_type: &str, body: &[u8]) -> Option<(char, Option<u32>)> {
    let mime = content_type.split(';').next()?.trim().to_ascii_lowercase();
    let text = std::str::from_utf8(body).ok()?;
    match mime.as_str() {
        "application/dtmf-relay" => {
            let mut digit = None;
            let mut duration = None;
            for line in text.lines() {
                let Some((key, value)) = line.split_once('=') else {
                    continue;
                };
                let key = key.trim();
                if key.eq_ignore_ascii_case("signal") {
                    digit = info_digit(value);
                } else if key.eq_ignore_ascii_case("duration") {
                    duration = value.trim().parse::<u32>().ok();
                }
            }
            digit.map(|d| (d, duration))
        }
        "application/dtmf" => info_digit(text).map(|d| (d, None)),
        _ => None,
    }
}

/// An `application/dtmf-relay` body for `digit` lasting `duration_ms`; `None` if `digit` is
/// not a DTMF digit.
pub fn format_dtmf_relay(digit: char, duration_ms: u32) -> Option<String> {
    let digit = digit_to_event(digit).and_then(event_to_digit)?;
    Some(format!("Signal={digit}\r\nDuration={duration_ms}\r\n"))
}
