//! RTP packets (RFC 3550 §5), the demultiplexing helpers of RFC 5761 §4 and RFC 7983, and
//! [`RtpStream`], the sending side of one RTP source (sequence numbers, timestamps, and the
//! packet/octet counters a sender report needs).
//!
//! Parsing never panics: every length is checked against the buffer, whatever the bytes are.

use std::time::{Duration, Instant};

use bytes::Bytes;

/// The RTP version this crate speaks (RFC 3550 §5.1).
pub const RTP_VERSION: u8 = 2;
/// Length of the fixed RTP header without CSRCs.
pub const RTP_HEADER_LEN: usize = 12;
/// Largest number of CSRC identifiers a header can carry (the CC field is 4 bits).
pub const MAX_CSRC: usize = 15;

/// Why an RTP packet could not be parsed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Fewer bytes than the fixed 12-byte header.
    #[error("RTP packet too short: {0} bytes")]
    TooShort(usize),
    /// The version field is not 2.
    #[error("unsupported RTP version {0}")]
    BadVersion(u8),
    /// The CSRC list runs past the end of the packet.
    #[error("RTP CSRC list truncated")]
    TruncatedCsrc,
    /// The header extension runs past the end of the packet.
    #[error("RTP header extension truncated")]
    TruncatedExtension,
    /// The padding count is zero or larger than the payload it pads.
    #[error("invalid RTP padding length {0}")]
    BadPadding(u8),
}

/// The fields of an RTP header that Tandem uses (RFC 3550 §5.1).
///
/// Padding and header extensions are handled by [`RtpPacket::parse`] and never appear here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtpHeader {
    /// Marker bit (start of a talkspurt, first packet of a telephone event).
    pub marker: bool,
    /// Payload type, 0..=127.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp in the payload's clock units.
    pub timestamp: u32,
    /// Synchronisation source identifier.
    pub ssrc: u32,
    /// Contributing sources (at most 15 are written).
    pub csrc: Vec<u32>,
}

/// One RTP packet: header plus payload (padding removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// The header.
    pub header: RtpHeader,
    /// The payload, without padding.
    pub payload: Bytes,
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parses the header; returns it with the payload's byte range (padding excluded).
fn parse_header(data: &[u8]) -> Result<(RtpHeader, usize, usize), RtpError> {
    if data.len() < RTP_HEADER_LEN {
        return Err(RtpError::TooShort(data.len()));
    }
    let b0 = data[0];
    let b1 = data[1];
    let version = b0 >> 6;
    if version != RTP_VERSION {
        return Err(RtpError::BadVersion(version));
    }
    let padding = b0 & 0x20 != 0;
    let extension = b0 & 0x10 != 0;
    let cc = usize::from(b0 & 0x0f);
    let mut offset = RTP_HEADER_LEN;
    let mut csrc = Vec::with_capacity(cc);
    for _ in 0..cc {
        csrc.push(be_u32(data, offset).ok_or(RtpError::TruncatedCsrc)?);
        offset += 4;
    }
    if extension {
        // RFC 3550 §5.3.1: 16-bit profile id, 16-bit length in 32-bit words.
        let words = be_u16(data, offset + 2).ok_or(RtpError::TruncatedExtension)?;
        let end = offset + 4 + usize::from(words) * 4;
        if end > data.len() {
            return Err(RtpError::TruncatedExtension);
        }
        offset = end;
    }
    let mut end = data.len();
    if padding {
        let count = data[data.len() - 1];
        if count == 0 || usize::from(count) > end - offset {
            return Err(RtpError::BadPadding(count));
        }
        end -= usize::from(count);
    }
    let header = RtpHeader {
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7f,
        sequence: u16::from_be_bytes([data[2], data[3]]),
        timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
        csrc,
    };
    Ok((header, offset, end))
}

impl RtpPacket {
    /// Parses one RTP packet: version 2 only; CSRCs read, the header extension skipped,
    /// padding removed; every length checked. The payload is copied out of `data`.
    pub fn parse(data: &[u8]) -> Result<RtpPacket, RtpError> {
        let (header, start, end) = parse_header(data)?;
        Ok(RtpPacket {
            header,
            payload: Bytes::copy_from_slice(&data[start..end]),
        })
    }

    /// Like [`RtpPacket::parse`], but the payload shares `data`'s buffer (no copy).
    pub fn parse_bytes(data: Bytes) -> Result<RtpPacket, RtpError> {
        let (header, start, end) = parse_header(&data)?;
        Ok(RtpPacket {
            header,
            payload: data.slice(start..end),
        })
    }

    /// Number of bytes [`RtpPacket::to_bytes`] writes.
    pub fn encoded_len(&self) -> usize {
        RTP_HEADER_LEN + 4 * self.header.csrc.len().min(MAX_CSRC) + self.payload.len()
    }

    /// Serialises the packet (no padding, no extension; at most 15 CSRCs; PT masked to 7 bits).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write_to(&mut out);
        out
    }

    /// Appends the serialised packet to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let h = &self.header;
        let cc = h.csrc.len().min(MAX_CSRC);
        // cc <= 15 so the cast cannot truncate.
        out.push((RTP_VERSION << 6) | cc as u8);
        out.push((u8::from(h.marker) << 7) | (h.payload_type & 0x7f));
        out.extend_from_slice(&h.sequence.to_be_bytes());
        out.extend_from_slice(&h.timestamp.to_be_bytes());
        out.extend_from_slice(&h.ssrc.to_be_bytes());
        for id in h.csrc.iter().take(MAX_CSRC) {
            out.extend_from_slice(&id.to_be_bytes());
        }
        out.extend_from_slice(&self.payload);
    }
}

/// True when a packet on an RTP/RTCP-multiplexed port is RTCP (RFC 5761 §4): the second byte,
/// the RTCP packet type, lies in 192..=223 (RTP payload types 64..=95 with the marker set).
///
/// Pass at least the first two bytes; shorter input is not RTCP.
pub fn is_rtcp(first_two_bytes: &[u8]) -> bool {
    match first_two_bytes.get(1) {
        Some(pt) => (192..=223).contains(pt),
        None => false,
    }
}

/// What a datagram on a media port is, by its first byte (RFC 7983 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// RTP (first byte 128..=191, not an RTCP packet type, at least a full header).
    Rtp,
    /// RTCP (first byte 128..=191, second byte 192..=223, at least 8 bytes).
    Rtcp,
    /// DTLS record (first byte 20..=63, at least a 13-byte record header).
    Dtls,
    /// STUN message (first byte 0..=3, at least a 20-byte header).
    Stun,
    /// Anything else: ZRTP, TURN channel data, truncated or garbage datagrams.
    Unknown,
}

/// Classifies a datagram arriving on a media port (RFC 7983 §7, RTP/RTCP split per RFC 5761 §4).
pub fn classify(packet: &[u8]) -> PacketKind {
    let Some(&first) = packet.first() else {
        return PacketKind::Unknown;
    };
    match first {
        0..=3 if packet.len() >= 20 => PacketKind::Stun,
        20..=63 if packet.len() >= 13 => PacketKind::Dtls,
        128..=191 => {
            if is_rtcp(packet) {
                if packet.len() >= 8 {
                    PacketKind::Rtcp
                } else {
                    PacketKind::Unknown
                }
            } else if packet.len() >= RTP_HEADER_LEN {
                PacketKind::Rtp
            } else {
                PacketKind::Unknown
            }
        }
        _ => PacketKind::Unknown,
    }
}

/// Values for the sender-info part of an RTCP sender report, taken from an [`RtpStream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderCounters {
    /// The RTP timestamp corresponding to the report's NTP time.
    pub rtp_timestamp: u32,
    /// Packets sent since the stream started (wraps at 2^32).
    pub packet_count: u32,
    /// Payload octets sent since the stream started (wraps at 2^32).
    pub octet_count: u32,
}

/// The sending side of one RTP source: SSRC, payload type, running sequence number and
/// timestamp (random initial values, RFC 3550 §5.1), and the counters for sender reports.
#[derive(Debug, Clone)]
pub struct RtpStream {
    ssrc: u32,
    payload_type: u8,
    clock_rate: u32,
    sequence: u16,
    timestamp: u32,
    packets: u32,
    octets: u32,
    sent_since_report: bool,
    /// (instant, RTP timestamp) of the most recent `next_packet_at`, to extrapolate SR times.
    anchor: Option<(Instant, u32)>,
}

impl RtpStream {
    /// A stream with random initial sequence number and timestamp.
    pub fn new(ssrc: u32, payload_type: u8, clock_rate: u32) -> RtpStream {
        RtpStream::with_initial(
            ssrc,
            payload_type,
            clock_rate,
            rand::random(),
            rand::random(),
        )
    }

    /// A stream with a given initial sequence number and timestamp (tests, reproducible runs).
    pub fn with_initial(
        ssrc: u32,
        payload_type: u8,
        clock_rate: u32,
        sequence: u16,
        timestamp: u32,
    ) -> RtpStream {
        RtpStream {
            ssrc,
            payload_type: payload_type & 0x7f,
            clock_rate: clock_rate.max(1),
            sequence,
            timestamp,
            packets: 0,
            octets: 0,
            sent_since_report: false,
            anchor: None,
        }
    }

    /// A random SSRC from the thread RNG.
    pub fn random_ssrc() -> u32 {
        rand::random()
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Payload type of the audio packets made by [`RtpStream::next_packet`].
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// RTP clock rate of the stream.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// Switches the audio codec (re-INVITE); sequence and timestamp continue.
    ///
    /// When the clock rate changes, the SR extrapolation anchor is dropped.
    pub fn set_codec(&mut self, payload_type: u8, clock_rate: u32) {
        self.payload_type = payload_type & 0x7f;
        let clock_rate = clock_rate.max(1);
        if clock_rate != self.clock_rate {
            self.anchor = None;
        }
        self.clock_rate = clock_rate;
    }

    /// The sequence number the next packet will carry.
    pub fn sequence(&self) -> u16 {
        self.sequence
    }

    /// The timestamp the next audio packet will carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Packets sent so far (wraps at 2^32, as in the SR).
    pub fn packets_sent(&self) -> u32 {
        self.packets
    }

    /// Payload octets sent so far (wraps at 2^32, as in the SR).
    pub fn octets_sent(&self) -> u32 {
        self.octets
    }

    /// True when a packet was made since the last [`RtpStream::take_sent_since_report`]
    /// (RFC 3550 §6.4: send an SR, not an RR, then).
    pub fn sent_since_report(&self) -> bool {
        self.sent_since_report
    }

    /// Returns [`RtpStream::sent_since_report`] and clears it (call when sending a report).
    pub fn take_sent_since_report(&mut self) -> bool {
        std::mem::take(&mut self.sent_since_report)
    }

    /// Makes the next audio packet: current timestamp, then the timestamp advances by
    /// `samples_advance` (the packet's duration in clock units).
    pub fn next_packet(&mut self, payload: Bytes, samples_advance: u32, marker: bool) -> RtpPacket {
        let ts = self.timestamp;
        let pt = self.payload_type;
        let packet = self.packet_with(pt, payload, ts, marker);
        self.timestamp = self.timestamp.wrapping_add(samples_advance);
        packet
    }

    /// Like [`RtpStream::next_packet`], and remembers that the packet's timestamp belongs to
    /// `now`, so [`RtpStream::sender_counters`] can extrapolate the SR's RTP timestamp.
    pub fn next_packet_at(
        &mut self,
        now: Instant,
        payload: Bytes,
        samples_advance: u32,
        marker: bool,
    ) -> RtpPacket {
        self.anchor = Some((now, self.timestamp));
        self.next_packet(payload, samples_advance, marker)
    }

    /// Makes a packet with an explicit payload type and timestamp (telephone events: every
    /// packet of one event carries the event's start timestamp). The sequence number and the
    /// counters advance; the audio timestamp does not (use [`RtpStream::advance`]).
    pub fn packet_with(
        &mut self,
        payload_type: u8,
        payload: Bytes,
        timestamp: u32,
        marker: bool,
    ) -> RtpPacket {
        let header = RtpHeader {
            marker,
            payload_type: payload_type & 0x7f,
            sequence: self.sequence,
            timestamp,
            ssrc: self.ssrc,
            csrc: Vec::new(),
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        // Payloads are datagram-sized; saturate rather than truncate if one is not.
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        self.octets = self.octets.wrapping_add(len);
        self.sent_since_report = true;
        RtpPacket { header, payload }
    }

    /// Advances the audio timestamp without sending (DTX silence, frames replaced by events,
    /// hold).
    pub fn advance(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// Advances the audio timestamp, also moving the SR anchor to `now` (frames not sent).
    pub fn advance_at(&mut self, now: Instant, samples: u32) {
        self.anchor = Some((now, self.timestamp));
        self.advance(samples);
    }

    /// The sender-info counters for an SR made at `now`: the RTP timestamp is extrapolated
    /// from the last anchored packet by the elapsed wall time (RFC 3550 §6.4.1), or is the
    /// next timestamp when no packet was anchored.
    pub fn sender_counters(&self, now: Instant) -> SenderCounters {
        let rtp_timestamp = match self.anchor {
            Some((at, ts)) => {
                let elapsed = now.saturating_duration_since(at);
                ts.wrapping_add(duration_to_units(elapsed, self.clock_rate))
            }
            None => self.timestamp,
        };
        SenderCounters {
            rtp_timestamp,
            packet_count: self.packets,
            octet_count: self.octets,
        }
    }
}

/// A duration in units of `clock_rate` Hz, truncated to 32 bits (wrapping like RTP time).
pub fn duration_to_units(d: Duration, clock_rate: u32) -> u32 {
    let units = d.as_nanos() * u128::from(clock_rate) / 1_000_000_000;
    // RTP time wraps modulo 2^32; the truncation is the intended wrap.
    (units & 0xffff_ffff) as u32
}
