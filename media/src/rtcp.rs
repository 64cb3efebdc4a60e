//! RTCP (RFC 3550 §6): sender and receiver reports, SDES, BYE, compound packets, and NTP
//! time helpers. Packet types we do not interpret (APP, RTPFB, PSFB, XR, …) parse as
//! [`RtcpPacket::Other`] and are skipped by their length field.
//!
//! Parsing never panics: every length is checked against the buffer, whatever the bytes are.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// RTCP packet type of a sender report.
pub const PT_SR: u8 = 200;
/// RTCP packet type of a receiver report.
pub const PT_RR: u8 = 201;
/// RTCP packet type of source description.
pub const PT_SDES: u8 = 202;
/// RTCP packet type of BYE.
pub const PT_BYE: u8 = 203;
/// RTCP packet type of application-defined packets.
pub const PT_APP: u8 = 204;
/// SDES item type of the canonical name.
pub const SDES_CNAME: u8 = 1;
/// Largest number of report blocks (or SDES chunks, or BYE sources) one packet carries.
pub const MAX_COUNT: usize = 31;
/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// Why an RTCP compound packet could not be parsed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// The datagram is empty.
    #[error("empty RTCP packet")]
    Empty,
    /// Fewer than the 4 header bytes remain.
    #[error("RTCP packet header truncated")]
    TruncatedHeader,
    /// The version field is not 2.
    #[error("unsupported RTCP version {0}")]
    BadVersion(u8),
    /// The length field points past the end of the datagram.
    #[error("RTCP length {words} words exceeds the {remaining} bytes left")]
    BadLength {
        /// The length field (32-bit words minus one).
        words: u16,
        /// Bytes left in the datagram from this packet's start.
        remaining: usize,
    },
    /// The padding count is zero or larger than the packet body.
    #[error("invalid RTCP padding length {0}")]
    BadPadding(u8),
    /// A sender or receiver report is shorter than its fixed part plus its report blocks.
    #[error("RTCP report (PT {pt}) truncated")]
    TruncatedReport {
        /// The packet type.
        pt: u8,
    },
    /// An SDES chunk or item runs past the packet's end.
    #[error("RTCP SDES truncated")]
    TruncatedSdes,
    /// A BYE's source list or reason runs past the packet's end.
    #[error("RTCP BYE truncated")]
    TruncatedBye,
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256 units.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed on the wire; duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles << 16 | highest).
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received from the source (0 = none).
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

impl ReportBlock {
    /// The fraction lost since the previous report, in percent (0..=99.6).
    pub fn fraction_lost_percent(&self) -> f32 {
        f32::from(self.fraction_lost) * 100.0 / 256.0
    }

    /// The interarrival jitter in milliseconds for a stream with RTP clock `clock_rate`.
    pub fn jitter_ms(&self, clock_rate: u32) -> f32 {
        if clock_rate == 0 {
            return 0.0;
        }
        (f64::from(self.jitter) * 1000.0 / f64::from(clock_rate)) as f32
    }
}

/// A sender report (RFC 3550 §6.4.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SenderReport {
    /// The sender's SSRC.
    pub ssrc: u32,
    /// 64-bit NTP timestamp of the report (seconds since 1900 << 32 | fraction).
    pub ntp_timestamp: u64,
    /// RTP timestamp of the same instant.
    pub rtp_timestamp: u32,
    /// Packets sent.
    pub packet_count: u32,
    /// Payload octets sent.
    pub octet_count: u32,
    /// Report blocks (at most 31 are written).
    pub reports: Vec<ReportBlock>,
}

/// A receiver report (RFC 3550 §6.4.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiverReport {
    /// The reporter's SSRC.
    pub ssrc: u32,
    /// Report blocks (at most 31 are written).
    pub reports: Vec<ReportBlock>,
}

/// One SDES item (RFC 3550 §6.5): type and UTF-8 text (at most 255 bytes are written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesItem {
    /// Item type (1 = CNAME, 2 = NAME, …).
    pub kind: u8,
    /// The text; invalid UTF-8 from the network is replaced lossily.
    pub value: String,
}

/// One SDES chunk: a source and its items.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SdesChunk {
    /// The source described.
    pub ssrc: u32,
    /// Its items.
    pub items: Vec<SdesItem>,
}

/// A source description packet (RFC 3550 §6.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sdes {
    /// The chunks (at most 31 are written).
    pub chunks: Vec<SdesChunk>,
}

impl Sdes {
    /// An SDES packet with one chunk carrying only a CNAME.
    pub fn cname(ssrc: u32, cname: &str) -> Sdes {
        Sdes {
            chunks: vec![SdesChunk {
                ssrc,
                items: vec![SdesItem {
                    kind: SDES_CNAME,
                    value: cname.to_owned(),
                }],
            }],
        }
    }

    /// The CNAME given for `ssrc`, if any.
    pub fn cname_of(&self, ssrc: u32) -> Option<&str> {
        self.chunks
            .iter()
            .filter(|c| c.ssrc == ssrc)
            .flat_map(|c| c.items.iter())
            .find(|i| i.kind == SDES_CNAME)
            .map(|i| i.value.as_str())
    }
}

/// A BYE packet (RFC 3550 §6.6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bye {
    /// The sources leaving (at most 31 are written).
    pub sources: Vec<u32>,
    /// Optional reason text (at most 255 bytes are written).
    pub reason: Option<String>,
}

/// One packet of an RTCP compound packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    /// SR, PT 200.
    SenderReport(SenderReport),
    /// RR, PT 201.
    ReceiverReport(ReceiverReport),
    /// SDES, PT 202.
    Sdes(Sdes),
    /// BYE, PT 203.
    Bye(Bye),
    /// Any other packet type (APP, RTPFB, PSFB, XR, …), skipped; not written by
    /// [`build_compound`].
    Other {
        /// Its packet type.
        pt: u8,
    },
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn parse_report_block(b: &[u8]) -> Option<ReportBlock> {
    let ssrc = be_u32(b, 0)?;
    let word = be_u32(b, 4)?;
    // Sign-extend the 24-bit cumulative loss.
    let cumulative_lost = ((word << 8) as i32) >> 8;
    Some(ReportBlock {
        ssrc,
        fraction_lost: (word >> 24) as u8,
        cumulative_lost,
        highest_seq: be_u32(b, 8)?,
        jitter: be_u32(b, 12)?,
        lsr: be_u32(b, 16)?,
        dlsr: be_u32(b, 20)?,
    })
}

fn parse_report_blocks(body: &[u8], count: usize, pt: u8) -> Result<Vec<ReportBlock>, RtcpError> {
    let mut blocks = Vec::with_capacity(count);
    for i in 0..count {
        let block = body
            .get(i * 24..(i + 1) * 24)
            .and_then(parse_report_block)
            .ok_or(RtcpError::TruncatedReport { pt })?;
        blocks.push(block);
    }
    Ok(blocks)
}

fn parse_sdes(body: &[u8], count: usize) -> Result<Sdes, RtcpError> {
    let mut chunks = Vec::with_capacity(count);
    let mut at = 0usize;
    for _ in 0..count {
        let ssrc = be_u32(body, at).ok_or(RtcpError::TruncatedSdes)?;
        at += 4;
        let mut items = Vec::new();
        loop {
            let kind = *body.get(at).ok_or(RtcpError::TruncatedSdes)?;
            if kind == 0 {
                // End of the item list: skip the null octet(s) up to the next 32-bit boundary.
                at += 1;
                at = at.div_ceil(4) * 4;
                break;
            }
            let len = usize::from(*body.get(at + 1).ok_or(RtcpError::TruncatedSdes)?);
            let text = body
                .get(at + 2..at + 2 + len)
                .ok_or(RtcpError::TruncatedSdes)?;
            items.push(SdesItem {
                kind,
                value: String::from_utf8_lossy(text).into_owned(),
            });
            at += 2 + len;
        }
        chunks.push(SdesChunk { ssrc, items });
    }
    Ok(Sdes { chunks })
}

fn parse_bye(body: &[u8], count: usize) -> Result<Bye, RtcpError> {
    let mut sources = Vec::with_capacity(count);
    for i in 0..count {
        sources.push(be_u32(body, i * 4).ok_or(RtcpError::TruncatedBye)?);
    }
    let at = count * 4;
    let reason = match body.get(at) {
        None => None,
        Some(&len) => {
            let text = body
                .get(at + 1..at + 1 + usize::from(len))
                .ok_or(RtcpError::TruncatedBye)?;
            Some(String::from_utf8_lossy(text).into_owned())
        }
    };
    Ok(Bye { sources, reason })
}

/// Parses an RTCP compound packet (or a single RTCP packet) into its parts.
///
/// Every packet must be version 2 with a length inside the datagram; SR, RR, SDES and BYE
/// bodies are checked against their counts; other packet types are skipped as
/// [`RtcpPacket::Other`]. Bytes a report carries after its blocks (profile extensions) are
/// ignored.
pub fn parse_compound(data: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if data.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut packets = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(RtcpError::TruncatedHeader);
        }
        let b0 = rest[0];
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        let padding = b0 & 0x20 != 0;
        let count = usize::from(b0 & 0x1f);
        let pt = rest[1];
        let words = u16::from_be_bytes([rest[2], rest[3]]);
        let total = (usize::from(words) + 1) * 4;
        if total > rest.len() {
            return Err(RtcpError::BadLength {
                words,
                remaining: rest.len(),
            });
        }
        let mut body = &rest[4..total];
        if padding {
            let pad = rest[total - 1];
            if pad == 0 || usize::from(pad) > body.len() {
                return Err(RtcpError::BadPadding(pad));
            }
            body = &body[..body.len() - usize::from(pad)];
        }
        let packet = match pt {
            PT_SR => {
                let fixed = body.get(..24).ok_or(RtcpError::TruncatedReport { pt })?;
                let ssrc = be_u32(fixed, 0).ok_or(RtcpError::TruncatedReport { pt })?;
                let hi = be_u32(fixed, 4).ok_or(RtcpError::TruncatedReport { pt })?;
                let lo = be_u32(fixed, 8).ok_or(RtcpError::TruncatedReport { pt })?;
                let rtp_timestamp = be_u32(fixed, 12).ok_or(RtcpError::TruncatedReport { pt })?;
                let packet_count = be_u32(fixed, 16).ok_or(RtcpError::TruncatedReport { pt })?;
                let octet_count = be_u32(fixed, 20).ok_or(RtcpError::TruncatedReport { pt })?;
                let reports = parse_report_blocks(&body[24..], count, pt)?;
                RtcpPacket::SenderReport(SenderReport {
                    ssrc,
                    ntp_timestamp: (u64::from(hi) << 32) | u64::from(lo),
                    rtp_timestamp,
                    packet_count,
                    octet_count,
                    reports,
                })
            }
            PT_RR => {
                let ssrc = be_u32(body, 0).ok_or(RtcpError::TruncatedReport { pt })?;
                let reports = parse_report_blocks(&body[4..], count, pt)?;
                RtcpPacket::ReceiverReport(ReceiverReport { ssrc, reports })
            }
            PT_SDES => RtcpPacket::Sdes(parse_sdes(body, count)?),
            PT_BYE => RtcpPacket::Bye(parse_bye(body, count)?),
            other => RtcpPacket::Other { pt: other },
        };
        packets.push(packet);
        rest = &rest[total..];
    }
    Ok(packets)
}

/// Writes a 4-byte header placeholder, returns its position.
fn begin_packet(out: &mut Vec<u8>, count: usize, pt: u8) -> usize {
    let start = out.len();
    // count <= 31 by construction of every caller.
    out.push(0x80 | (count.min(MAX_COUNT) as u8));
    out.push(pt);
    out.extend_from_slice(&[0, 0]);
    start
}

/// Pads the packet started at `start` to a 32-bit boundary with zeros and fills its length.
fn end_packet(out: &mut Vec<u8>, start: usize) {
    while !(out.len() - start).is_multiple_of(4) {
        out.push(0);
    }
    let words = (out.len() - start) / 4 - 1;
    // A packet has at most 31 blocks/chunks of bounded size: far below 2^16 words.
    let words = u16::try_from(words).unwrap_or(u16::MAX);
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
}

fn write_report_block(out: &mut Vec<u8>, b: &ReportBlock) {
    out.extend_from_slice(&b.ssrc.to_be_bytes());
    let lost = b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff);
    let word = (u32::from(b.fraction_lost) << 24) | ((lost as u32) & 0x00ff_ffff);
    out.extend_from_slice(&word.to_be_bytes());
    out.extend_from_slice(&b.highest_seq.to_be_bytes());
    out.extend_from_slice(&b.jitter.to_be_bytes());
    out.extend_from_slice(&b.lsr.to_be_bytes());
    out.extend_from_slice(&b.dlsr.to_be_bytes());
}

/// The longest prefix of `s` of at most 255 bytes that ends on a character boundary.
fn text_255(s: &str) -> &[u8] {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

/// Appends one RTCP packet to `out` (nothing for [`RtcpPacket::Other`]).
pub fn write_packet(out: &mut Vec<u8>, packet: &RtcpPacket) {
    match packet {
        RtcpPacket::SenderReport(sr) => {
            let blocks = &sr.reports[..sr.reports.len().min(MAX_COUNT)];
            let start = begin_packet(out, blocks.len(), PT_SR);
            out.extend_from_slice(&sr.ssrc.to_be_bytes());
            out.extend_from_slice(&sr.ntp_timestamp.to_be_bytes());
            out.extend_from_slice(&sr.rtp_timestamp.to_be_bytes());
            out.extend_from_slice(&sr.packet_count.to_be_bytes());
            out.extend_from_slice(&sr.octet_count.to_be_bytes());
            for b in blocks {
                write_report_block(out, b);
            }
            end_packet(out, start);
        }
        RtcpPacket::ReceiverReport(rr) => {
            let blocks = &rr.reports[..rr.reports.len().min(MAX_COUNT)];
            let start = begin_packet(out, blocks.len(), PT_RR);
            out.extend_from_slice(&rr.ssrc.to_be_bytes());
            for b in blocks {
                write_report_block(out, b);
            }
            end_packet(out, start);
        }
        RtcpPacket::Sdes(sdes) => {
            let chunks = &sdes.chunks[..sdes.chunks.len().min(MAX_COUNT)];
            let start = begin_packet(out, chunks.len(), PT_SDES);
            for chunk in chunks {
                let chunk_start = out.len();
                out.extend_from_slice(&chunk.ssrc.to_be_bytes());
                for item in chunk.items.iter().filter(|i| i.kind != 0) {
                    let text = text_255(&item.value);
                    out.push(item.kind);
                    // text_255 bounds the length to 255.
                    out.push(text.len() as u8);
                    out.extend_from_slice(text);
                }
                // At least one null octet ends the list, then pad the chunk to 32 bits.
                out.push(0);
                while !(out.len() - chunk_start).is_multiple_of(4) {
                    out.push(0);
                }
            }
            end_packet(out, start);
        }
        RtcpPacket::Bye(bye) => {
            let sources = &bye.sources[..bye.sources.len().min(MAX_COUNT)];
            let start = begin_packet(out, sources.len(), PT_BYE);
            for s in sources {
                out.extend_from_slice(&s.to_be_bytes());
            }
            if let Some(reason) = &bye.reason {
                let text = text_255(reason);
                out.push(text.len() as u8);
                out.extend_from_slice(text);
            }
            end_packet(out, start);
        }
        RtcpPacket::Other { .. } => {}
    }
}

/// Serialises packets into one compound packet (RFC 3550 §6.1). Put an SR or RR first and an
/// SDES with the CNAME next; [`RtcpPacket::Other`] entries are not written.
pub fn build_compound(packets: &[RtcpPacket]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    for p in packets {
        write_packet(&mut out, p);
    }
    out
}

/// Inputs of the RTCP transmission interval computation (RFC 3550 §6.3.1, A.7).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalParams {
    /// Session members, ourselves included (2 in a point-to-point call).
    pub members: u32,
    /// Members that sent RTP since the last report, ourselves included.
    pub senders: u32,
    /// RTCP bandwidth in octets per second (5 % of the session bandwidth).
    pub rtcp_bandwidth: f64,
    /// True when we sent RTP since the last report.
    pub we_sent: bool,
    /// Average compound RTCP size in octets, UDP/IP overhead included.
    pub avg_rtcp_size: f64,
    /// True before our first report (the minimum is halved).
    pub initial: bool,
}

impl IntervalParams {
    /// A point-to-point call with a session bandwidth of `session_bps` bits per second.
    pub fn two_party(session_bps: u32, we_sent: bool, initial: bool) -> IntervalParams {
        IntervalParams {
            members: 2,
            senders: if we_sent { 2 } else { 1 },
            rtcp_bandwidth: f64::from(session_bps) * 0.05 / 8.0,
            we_sent,
            avg_rtcp_size: 120.0,
            initial,
        }
    }
}

/// The RTCP report interval (RFC 3550 §6.3.1 and A.7): the deterministic interval (at least
/// 5 s, 2.5 s before the first report), scaled by `random` in `[0, 1)` to 0.5..1.5 times and
/// divided by e − 3/2 to compensate for timer reconsideration. Pass `rand::random()` in
/// production and a fixed value in tests.
pub fn report_interval(p: &IntervalParams, random: f64) -> Duration {
    const RTCP_MIN_TIME: f64 = 5.0;
    const SENDER_FRACTION: f64 = 0.25;
    const COMPENSATION: f64 = std::f64::consts::E - 1.5;
    let min_time = if p.initial {
        RTCP_MIN_TIME / 2.0
    } else {
        RTCP_MIN_TIME
    };
    let members = f64::from(p.members.max(1));
    let senders = f64::from(p.senders.min(p.members));
    let mut bandwidth = p.rtcp_bandwidth;
    let mut n = members;
    if senders <= members * SENDER_FRACTION {
        if p.we_sent {
            bandwidth *= SENDER_FRACTION;
            n = senders.max(1.0);
        } else {
            bandwidth *= 1.0 - SENDER_FRACTION;
            n = (members - senders).max(1.0);
        }
    }
    let mut t = if bandwidth.is_finite() && bandwidth > 0.0 {
        p.avg_rtcp_size.max(0.0) * n / bandwidth
    } else {
        min_time
    };
    if !t.is_finite() || t < min_time {
        t = min_time;
    }
    let random = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let t = t * (random + 0.5) / COMPENSATION;
    // Bounded above: a hostile or absurd bandwidth never stops reports for hours.
    Duration::from_secs_f64(t.min(3600.0))
}

/// The 64-bit NTP timestamp (seconds since 1900 in the high word, binary fraction in the low
/// word) of a system time; times before 1970 map to the Unix epoch.
pub fn ntp_from_system_time(t: SystemTime) -> u64 {
    let since_unix = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since_unix.as_secs().wrapping_add(NTP_UNIX_OFFSET_SECS);
    let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The NTP timestamp of the current wall-clock time.
pub fn ntp_now() -> u64 {
    ntp_from_system_time(SystemTime::now())
}

/// The middle 32 bits of a 64-bit NTP timestamp (the LSR field and RTT arithmetic units).
pub fn ntp_middle32(ntp: u64) -> u32 {
    ((ntp >> 16) & 0xffff_ffff) as u32
}

/// A duration in 1/65536 s units, saturating at `u32::MAX` (the DLSR field).
pub fn duration_to_ntp_short(d: Duration) -> u32 {
    let units = d.as_nanos() * 65_536 / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// A value in 1/65536 s units as a duration.
pub fn ntp_short_to_duration(units: u32) -> Duration {
    Duration::from_nanos(u64::from(units) * 1_000_000_000 / 65_536)
}
