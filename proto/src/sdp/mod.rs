//! SDP (RFC 8866, formerly RFC 4566) and the offer/answer model (RFC 3264).
//!
//! [`SessionDescription::parse`] keeps everything it does not interpret
//! (unknown attributes verbatim, `i=`/`u=`/`e=`/`p=`/`r=`/`z=`/`k=` lines) so
//! that printing gives the same description back. Hostile input is bounded by
//! [`MAX_SDP_LEN`], [`MAX_LINE_LEN`], [`MAX_MEDIA`] and [`MAX_FORMATS`].
//!
//! The audio offer/answer lives in [`audio`] ([`build_offer`], [`answer_offer`],
//! [`accept_answer`] giving a [`NegotiatedAudio`]); the older multi-stream
//! helpers ([`audio_offer`], [`negotiate_answer`], [`negotiated_from_answer`])
//! remain for existing callers.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

pub mod audio;
mod codec;
pub mod ice;
mod legacy;
mod line;
pub mod security;
pub mod video;

pub use audio::{
    MediaOffer, NegotiatedAudio, NegotiatedCodec, OfferChange, accept_answer, answer_offer,
    build_offer, classify_offer,
};
pub use codec::{Codec, default_audio_codecs};
pub use legacy::{NegotiatedMedia, audio_offer, negotiate_answer, negotiated_from_answer};
pub use security::{
    AnswerSecurity, OfferedStream, SecurityKind, TransportProfile, plain_only, security_attributes,
    security_fits, setup_answer,
};

/// Largest SDP body accepted, in bytes.
pub const MAX_SDP_LEN: usize = 64 * 1024;
/// Longest single SDP line accepted, in bytes (without the line ending).
pub const MAX_LINE_LEN: usize = 4 * 1024;
/// Most `m=` lines accepted in one description.
pub const MAX_MEDIA: usize = 32;
/// Most formats (payload types) accepted on one `m=` line.
pub const MAX_FORMATS: usize = 64;

/// Errors from parsing SDP or negotiating media.
///
/// [`SdpError::status_code`] gives the SIP status to answer an offer with:
/// 400 when the body could not be parsed (or broke a limit), 488 when it was
/// understood but no stream could be accepted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdpError {
    /// The description does not start with `v=0`.
    #[error("SDP must start with v=0")]
    BadVersion,
    /// A mandatory line is absent.
    #[error("missing mandatory SDP line {0}=")]
    MissingLine(char),
    /// A line could not be parsed.
    #[error("invalid SDP line {line}: {reason}")]
    InvalidLine {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The body is not UTF-8.
    #[error("SDP is not valid UTF-8")]
    NotUtf8,
    /// The body is larger than [`MAX_SDP_LEN`].
    #[error("SDP of {len} bytes exceeds the {max} byte limit", max = MAX_SDP_LEN)]
    TooLarge {
        /// Body length in bytes.
        len: usize,
    },
    /// A line is longer than [`MAX_LINE_LEN`].
    #[error("SDP line {line} exceeds the {max} byte limit", max = MAX_LINE_LEN)]
    LineTooLong {
        /// 1-based line number.
        line: usize,
    },
    /// More than [`MAX_MEDIA`] `m=` lines.
    #[error("more than {max} m= lines", max = MAX_MEDIA)]
    TooManyMedia,
    /// More than [`MAX_FORMATS`] formats on one `m=` line.
    #[error("SDP line {line} has more than {max} formats", max = MAX_FORMATS)]
    TooManyFormats {
        /// 1-based line number.
        line: usize,
    },
    /// An active stream (port not 0) has no `c=` of its own and there is no session-level `c=`.
    #[error("m-line {index} has no connection address (c=)")]
    MissingConnection {
        /// 0-based m-line index.
        index: usize,
    },
    /// No offered stream could be accepted (a UAS answers 488).
    #[error("no offered media stream has a codec in common")]
    NoAcceptableMedia,
    /// Fewer local ports were supplied than streams were accepted.
    #[error("{needed} media streams accepted but only {given} ports supplied")]
    NotEnoughPorts {
        /// Accepted streams so far.
        needed: usize,
        /// Ports supplied.
        given: usize,
    },
    /// The answer's m-lines do not correspond to the offer's (RFC 3264 §6).
    #[error("answer has {answer} m-lines, offer has {offer}")]
    MediaCountMismatch {
        /// m-lines in the offer.
        offer: usize,
        /// m-lines in the answer.
        answer: usize,
    },
    /// An answer m-line differs in media type from the offer, accepts a stream the
    /// offer rejected, or accepts it with no codec that was offered.
    #[error("answer m-line {index} does not match the offer")]
    MediaMismatch {
        /// 0-based m-line index.
        index: usize,
    },
    /// An answer accepted a stream in a way we cannot use (profile changed,
    /// secure profile without keys, ...).
    #[error("answer m-line {index} is unacceptable: {reason}")]
    Unacceptable {
        /// 0-based m-line index.
        index: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The answer accepted no audio stream.
    #[error("the answer accepted no audio stream")]
    NoAudio,
}

impl SdpError {
    /// The SIP status code to reject an offer with: 400 (unparsable) or 488 (not acceptable).
    pub fn status_code(&self) -> u16 {
        match self {
            SdpError::BadVersion
            | SdpError::MissingLine(_)
            | SdpError::InvalidLine { .. }
            | SdpError::NotUtf8
            | SdpError::TooLarge { .. }
            | SdpError::LineTooLong { .. }
            | SdpError::TooManyMedia
            | SdpError::TooManyFormats { .. }
            | SdpError::MissingConnection { .. } => 400,
            SdpError::NoAcceptableMedia
            | SdpError::NotEnoughPorts { .. }
            | SdpError::MediaCountMismatch { .. }
            | SdpError::MediaMismatch { .. }
            | SdpError::Unacceptable { .. }
            | SdpError::NoAudio => 488,
        }
    }
}

/// The `o=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// User name, `-` when none.
    pub username: String,
    /// Session id.
    pub session_id: u64,
    /// Session version, incremented on each new offer/answer.
    pub session_version: u64,
    /// Network type (`IN`).
    pub net_type: String,
    /// Address type (`IP4`, `IP6`).
    pub addr_type: String,
    /// Unicast address or host name of the originator.
    pub address: String,
}

/// A `c=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Network type (`IN`).
    pub net_type: String,
    /// Address type (`IP4`, `IP6`).
    pub addr_type: String,
    /// Connection address, possibly with `/ttl` or `/count` suffixes.
    pub address: String,
}

impl Connection {
    /// An `IN IP4`/`IN IP6` connection for `ip`.
    pub fn from_ip(ip: IpAddr) -> Self {
        Connection {
            net_type: "IN".to_owned(),
            addr_type: if ip.is_ipv6() { "IP6" } else { "IP4" }.to_owned(),
            address: ip.to_string(),
        }
    }

    /// The address as an IP, if it is a literal (suffixes such as `/127` ignored).
    pub fn ip(&self) -> Option<IpAddr> {
        let base = self.address.split('/').next().unwrap_or_default();
        base.parse().ok()
    }
}

/// An `a=` line: `a=name` or `a=name:value` (value kept verbatim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Attribute name.
    pub name: String,
    /// Value after the first `:`, if any.
    pub value: Option<String>,
}

impl Attribute {
    /// A property attribute without value (`a=sendrecv`).
    pub fn flag(name: &str) -> Self {
        Attribute {
            name: name.to_owned(),
            value: None,
        }
    }

    /// A value attribute (`a=ptime:20`).
    pub fn new(name: &str, value: impl Into<String>) -> Self {
        Attribute {
            name: name.to_owned(),
            value: Some(value.into()),
        }
    }
}

/// An `m=` section with its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// Media type (`audio`, `video`, `application`, ...).
    pub media: String,
    /// Transport port; 0 means the stream is rejected/disabled.
    pub port: u16,
    /// Number of ports (`m=video 49170/2 ...`).
    pub num_ports: Option<u16>,
    /// Transport protocol (`RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`, ...).
    pub protocol: String,
    /// Media formats (RTP payload types for RTP), in preference order.
    pub formats: Vec<String>,
    /// Media-level `c=`.
    pub connection: Option<Connection>,
    /// `b=` lines (`AS:64`, `TIAS:64000`), verbatim.
    pub bandwidths: Vec<String>,
    /// `a=` lines in order.
    pub attributes: Vec<Attribute>,
    /// Other lines (`i=`, `k=`, unknown types) as (type, value), in order.
    pub other_fields: Vec<(char, String)>,
}

/// An `a=rtpmap` entry (or the static mapping of a well-known payload type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// RTP payload type number.
    pub payload_type: u8,
    /// Encoding name as written (`PCMU`, `opus`, `telephone-event`).
    pub encoding: String,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Channel count, when given.
    pub channels: Option<u8>,
}

impl RtpMap {
    /// Whether this maps the same codec as `name`/`clock_rate`/`channels` (name case-insensitive, channels default 1).
    pub fn matches(&self, name: &str, clock_rate: u32, channels: u8) -> bool {
        self.encoding.eq_ignore_ascii_case(name)
            && self.clock_rate == clock_rate
            && self.channels.unwrap_or(1) == channels
    }

    /// Whether this is the RFC 4733 `telephone-event` format.
    pub fn is_telephone_event(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("telephone-event")
    }
}

impl fmt::Display for RtpMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.payload_type, self.encoding, self.clock_rate
        )?;
        if let Some(ch) = self.channels {
            write!(f, "/{ch}")?;
        }
        Ok(())
    }
}

/// Media direction (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// Send and receive (the default).
    #[default]
    SendRecv,
    /// Send only (e.g. putting the peer on hold).
    SendOnly,
    /// Receive only.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    /// The attribute name (`sendrecv`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses an attribute name into a direction.
    pub fn from_attribute(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// Builds a direction from send/receive flags.
    pub fn from_flags(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// Whether media is sent.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether media is received.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The direction seen from the other side (sendonly <-> recvonly).
    pub fn reverse(self) -> Self {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// The direction to offer when putting the peer on hold (RFC 6337 §5.3):
    /// stop receiving, keep sending (music on hold) if we were sending.
    pub fn hold(self) -> Self {
        Direction::from_flags(self.sends(), false)
    }

    /// The direction to offer when taking the peer off hold: receive again,
    /// keep our sending as it was.
    pub fn resume(self) -> Self {
        Direction::from_flags(self.sends(), true)
    }

    /// Both constraints at once: sends only if both send, receives only if both receive.
    pub fn intersect(self, other: Direction) -> Self {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A whole session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// The `o=` line.
    pub origin: Origin,
    /// The `s=` line (`-` when there is no name).
    pub session_name: String,
    /// Session-level `c=`.
    pub connection: Option<Connection>,
    /// Session-level `b=` lines, verbatim.
    pub bandwidths: Vec<String>,
    /// `t=` lines (start, stop); `0 0` for an unbounded session.
    pub times: Vec<(u64, u64)>,
    /// Session-level `a=` lines.
    pub attributes: Vec<Attribute>,
    /// The `m=` sections in order.
    pub media: Vec<MediaDescription>,
    /// Other session-level lines (`i=`, `u=`, `e=`, `p=`, `r=`, `z=`, `k=`, unknown types) as (type, value).
    pub other_fields: Vec<(char, String)>,
}

/// Static RTP payload types (RFC 3551 §6) known without `a=rtpmap`.
const STATIC_PAYLOAD_TYPES: &[(u8, &str, u32, Option<u8>)] = &[
    (0, "PCMU", 8000, None),
    (3, "GSM", 8000, None),
    (4, "G723", 8000, None),
    (5, "DVI4", 8000, None),
    (6, "DVI4", 16000, None),
    (7, "LPC", 8000, None),
    (8, "PCMA", 8000, None),
    (9, "G722", 8000, None),
    (10, "L16", 44100, Some(2)),
    (11, "L16", 44100, None),
    (12, "QCELP", 8000, None),
    (13, "CN", 8000, None),
    (14, "MPA", 90000, None),
    (15, "G728", 8000, None),
    (16, "DVI4", 11025, None),
    (17, "DVI4", 22050, None),
    (18, "G729", 8000, None),
    (25, "CelB", 90000, None),
    (26, "JPEG", 90000, None),
    (28, "nv", 90000, None),
    (31, "H261", 90000, None),
    (32, "MPV", 90000, None),
    (33, "MP2T", 90000, None),
    (34, "H263", 90000, None),
];

fn static_rtpmap(pt: u8) -> Option<RtpMap> {
    STATIC_PAYLOAD_TYPES.iter().find(|(p, ..)| *p == pt).map(
        |&(payload_type, enc, clock_rate, channels)| RtpMap {
            payload_type,
            encoding: enc.to_owned(),
            clock_rate,
            channels,
        },
    )
}

fn parse_rtpmap_value(value: &str) -> Option<RtpMap> {
    let (pt, rest) = value.trim().split_once(' ')?;
    let payload_type: u8 = pt.parse().ok()?;
    if payload_type > 127 {
        return None;
    }
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.trim();
    if encoding.is_empty() {
        return None;
    }
    let clock_rate: u32 = parts.next()?.trim().parse().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.trim().parse::<u8>().ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(RtpMap {
        payload_type,
        encoding: encoding.to_owned(),
        clock_rate,
        channels,
    })
}

impl MediaDescription {
    /// The RTP payload mappings of this stream, in `m=` format order.
    ///
    /// Static payload types are known without `a=rtpmap`; dynamic ones without
    /// a (valid) `a=rtpmap` and non-numeric formats are left out.
    pub fn rtpmaps(&self) -> Vec<RtpMap> {
        // One pass over the attributes (the first valid rtpmap per payload type wins),
        // so a hostile body with thousands of attributes costs O(attributes + formats).
        let mut dynamic: [Option<RtpMap>; 128] = std::array::from_fn(|_| None);
        for map in self
            .attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("rtpmap"))
            .filter_map(|a| a.value.as_deref().and_then(parse_rtpmap_value))
        {
            if let Some(slot @ None) = dynamic.get_mut(usize::from(map.payload_type)) {
                *slot = Some(map);
            }
        }
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter_map(|pt| {
                dynamic
                    .get(usize::from(pt))
                    .and_then(Clone::clone)
                    .or_else(|| static_rtpmap(pt))
            })
            .collect()
    }

    /// The direction attribute of this stream (`sendrecv` when none is present).
    ///
    /// Use [`SessionDescription::media_direction`] to also honour a session-level attribute.
    pub fn direction(&self) -> Direction {
        self.explicit_direction().unwrap_or_default()
    }

    fn explicit_direction(&self) -> Option<Direction> {
        self.attributes
            .iter()
            .filter(|a| a.value.is_none())
            .find_map(|a| Direction::from_attribute(&a.name))
    }

    /// The `a=fmtp` parameters for payload type `pt`.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("fmtp"))
            .filter_map(|a| a.value.as_deref())
            .find_map(|v| {
                let (p, params) = v.split_once(' ')?;
                (p.trim().parse::<u8>().ok()? == pt).then_some(params.trim())
            })
    }

    /// The value of the first attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.value.as_deref())
    }

    /// Whether an attribute called `name` is present.
    pub fn has_attribute(&self, name: &str) -> bool {
        self.attributes.iter().any(|a| a.name == name)
    }
}

impl SessionDescription {
    /// Parses an SDP body (CRLF or LF line endings).
    ///
    /// Enforces the size limits, requires `v=`, `o=`, `s=` and `t=`, and a `c=`
    /// (session or media level) for every stream whose port is not 0.
    pub fn parse(s: &str) -> Result<Self, SdpError> {
        if s.len() > MAX_SDP_LEN {
            return Err(SdpError::TooLarge { len: s.len() });
        }
        if let Some(no) = s
            .split('\n')
            .position(|l| l.strip_suffix('\r').unwrap_or(l).len() > MAX_LINE_LEN)
        {
            return Err(SdpError::LineTooLong { line: no + 1 });
        }
        let mut lines = s
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.is_empty());
        let Some((first_no, first)) = lines.next() else {
            return Err(SdpError::BadVersion);
        };
        let (t, v) = split_line(first_no, first)?;
        if t != 'v' || v.trim() != "0" {
            return Err(SdpError::BadVersion);
        }
        let mut origin = None;
        let mut session_name = None;
        let mut connection = None;
        let mut bandwidths = Vec::new();
        let mut times = Vec::new();
        let mut attributes = Vec::new();
        let mut other_fields = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();
        for (no, line) in lines {
            let (t, value) = split_line(no, line)?;
            if t == 'm' {
                if media.len() >= MAX_MEDIA {
                    return Err(SdpError::TooManyMedia);
                }
                media.push(parse_media(no, value)?);
                continue;
            }
            if let Some(m) = media.last_mut() {
                match t {
                    'c' => {
                        if m.connection.is_some() {
                            return Err(invalid(no, "more than one c= in a media section"));
                        }
                        m.connection = Some(parse_connection(no, value)?);
                    }
                    'b' => m.bandwidths.push(value.to_owned()),
                    'a' => m.attributes.push(parse_attribute(value)),
                    'v' | 'o' | 's' | 't' | 'r' | 'z' | 'u' | 'e' | 'p' => {
                        return Err(invalid(no, "session-level line inside a media section"));
                    }
                    other => m.other_fields.push((other, value.to_owned())),
                }
                continue;
            }
            match t {
                'o' => {
                    if origin.is_some() {
                        return Err(invalid(no, "more than one o="));
                    }
                    origin = Some(parse_origin(no, value)?);
                }
                's' => {
                    if session_name.is_some() {
                        return Err(invalid(no, "more than one s="));
                    }
                    session_name = Some(value.to_owned());
                }
                'c' => {
                    if connection.is_some() {
                        return Err(invalid(no, "more than one session-level c="));
                    }
                    connection = Some(parse_connection(no, value)?);
                }
                'b' => bandwidths.push(value.to_owned()),
                't' => times.push(parse_time(no, value)?),
                'a' => attributes.push(parse_attribute(value)),
                'v' => return Err(invalid(no, "repeated v=")),
                other => other_fields.push((other, value.to_owned())),
            }
        }
        let origin = origin.ok_or(SdpError::MissingLine('o'))?;
        let session_name = session_name.ok_or(SdpError::MissingLine('s'))?;
        if times.is_empty() {
            return Err(SdpError::MissingLine('t'));
        }
        if connection.is_none()
            && let Some(index) = media
                .iter()
                .position(|m| m.port != 0 && m.connection.is_none())
        {
            return Err(SdpError::MissingConnection { index });
        }
        // Keep the order the printer uses (RFC 8866 §5: i/u/e/p before c=, the rest after t=;
        // in media sections i= first), so that parse -> print -> parse is the identity.
        other_fields.sort_by_key(|(t, _)| !session_field_before_c(*t));
        for m in &mut media {
            m.other_fields.sort_by_key(|(t, _)| *t != 'i');
        }
        Ok(SessionDescription {
            origin,
            session_name,
            connection,
            bandwidths,
            times,
            attributes,
            media,
            other_fields,
        })
    }

    /// Parses an SDP body from raw bytes (a SIP message body): size-checked, then UTF-8, then [`Self::parse`].
    pub fn parse_bytes(body: &[u8]) -> Result<Self, SdpError> {
        if body.len() > MAX_SDP_LEN {
            return Err(SdpError::TooLarge { len: body.len() });
        }
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
        Self::parse(text)
    }

    /// The effective direction of m-line `index`: its own attribute, else the
    /// session-level one, else `sendrecv`.
    pub fn media_direction(&self, index: usize) -> Direction {
        self.media
            .get(index)
            .and_then(MediaDescription::explicit_direction)
            .or_else(|| {
                self.attributes
                    .iter()
                    .filter(|a| a.value.is_none())
                    .find_map(|a| Direction::from_attribute(&a.name))
            })
            .unwrap_or_default()
    }

    /// The connection that applies to m-line `index` (media-level, else session-level).
    pub fn media_connection(&self, index: usize) -> Option<&Connection> {
        self.media
            .get(index)
            .and_then(|m| m.connection.as_ref())
            .or(self.connection.as_ref())
    }

    /// Where to send RTP for m-line `index`: `None` if the stream is rejected
    /// (port 0), has no usable address, or uses the RFC 2543 hold address 0.0.0.0 / `::`.
    pub fn media_remote_addr(&self, index: usize) -> Option<SocketAddr> {
        let m = self.media.get(index)?;
        if m.port == 0 {
            return None;
        }
        let ip = self.media_connection(index)?.ip()?;
        if ip.is_unspecified() {
            return None;
        }
        Some(SocketAddr::new(ip, m.port))
    }
}

/// Session-level line types printed between `s=` and `c=`.
fn session_field_before_c(t: char) -> bool {
    matches!(t, 'i' | 'u' | 'e' | 'p')
}

fn invalid(line: usize, reason: &'static str) -> SdpError {
    SdpError::InvalidLine { line, reason }
}

fn split_line(no: usize, line: &str) -> Result<(char, &str), SdpError> {
    let mut chars = line.chars();
    let t = chars.next().ok_or_else(|| invalid(no, "empty line"))?;
    if !t.is_ascii_lowercase() {
        return Err(invalid(no, "type must be a lowercase letter"));
    }
    let rest = chars.as_str();
    let value = rest
        .strip_prefix('=')
        .ok_or_else(|| invalid(no, "expected '=' after the type letter"))?;
    // RFC 8866 §9: values are byte-strings without NUL, CR or LF.
    if value.contains(['\r', '\0']) {
        return Err(invalid(no, "CR or NUL inside a line"));
    }
    Ok((t, value))
}

fn parse_origin(no: usize, value: &str) -> Result<Origin, SdpError> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [username, id, version, net_type, addr_type, address] = f.as_slice() else {
        return Err(invalid(no, "o= needs six fields"));
    };
    Ok(Origin {
        username: (*username).to_owned(),
        session_id: id
            .parse()
            .map_err(|_| invalid(no, "o= session id is not a number"))?,
        session_version: version
            .parse()
            .map_err(|_| invalid(no, "o= session version is not a number"))?,
        net_type: (*net_type).to_owned(),
        addr_type: (*addr_type).to_owned(),
        address: (*address).to_owned(),
    })
}

fn parse_connection(no: usize, value: &str) -> Result<Connection, SdpError> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [net_type, addr_type, address] = f.as_slice() else {
        return Err(invalid(no, "c= needs three fields"));
    };
    Ok(Connection {
        net_type: (*net_type).to_owned(),
        addr_type: (*addr_type).to_owned(),
        address: (*address).to_owned(),
    })
}

fn parse_time(no: usize, value: &str) -> Result<(u64, u64), SdpError> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [start, stop] = f.as_slice() else {
        return Err(invalid(no, "t= needs two fields"));
    };
    let start = start
        .parse()
        .map_err(|_| invalid(no, "t= start is not a number"))?;
    let stop = stop
        .parse()
        .map_err(|_| invalid(no, "t= stop is not a number"))?;
    Ok((start, stop))
}

fn parse_attribute(value: &str) -> Attribute {
    match value.split_once(':') {
        Some((name, v)) => Attribute {
            name: name.to_owned(),
            value: Some(v.to_owned()),
        },
        None => Attribute {
            name: value.to_owned(),
            value: None,
        },
    }
}

fn parse_media(no: usize, value: &str) -> Result<MediaDescription, SdpError> {
    let mut f = value.split_ascii_whitespace();
    let media = f
        .next()
        .ok_or_else(|| invalid(no, "m= without media type"))?;
    let port_field = f.next().ok_or_else(|| invalid(no, "m= without port"))?;
    let protocol = f.next().ok_or_else(|| invalid(no, "m= without protocol"))?;
    let (port, num_ports) = match port_field.split_once('/') {
        Some((p, n)) => (
            p.parse()
                .map_err(|_| invalid(no, "m= port is not a number from 0 to 65535"))?,
            Some(
                n.parse()
                    .map_err(|_| invalid(no, "m= port count is not a number from 0 to 65535"))?,
            ),
        ),
        None => (
            port_field
                .parse()
                .map_err(|_| invalid(no, "m= port is not a number from 0 to 65535"))?,
            None,
        ),
    };
    let mut formats = Vec::new();
    for format in f {
        if formats.len() >= MAX_FORMATS {
            return Err(SdpError::TooManyFormats { line: no });
        }
        formats.push(format.to_owned());
    }
    Ok(MediaDescription {
        media: media.to_owned(),
        port,
        num_ports,
        protocol: protocol.to_owned(),
        formats,
        connection: None,
        bandwidths: Vec::new(),
        attributes: Vec::new(),
        other_fields: Vec::new(),
    })
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.username,
            self.session_id,
            self.session_version,
            self.net_type,
            self.addr_type,
            self.address
        )
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.net_type, self.addr_type, self.address)
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}:{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Writes one SDP line: `args` with every CR or LF replaced by a space (so no value can
/// inject a line of its own), then CRLF.
fn line(f: &mut fmt::Formatter<'_>, args: fmt::Arguments<'_>) -> fmt::Result {
    struct OneLine<'a, 'b>(&'a mut fmt::Formatter<'b>);
    impl fmt::Write for OneLine<'_, '_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for (i, part) in s.split(['\r', '\n']).enumerate() {
                if i > 0 {
                    self.0.write_char(' ')?;
                }
                self.0.write_str(part)?;
            }
            Ok(())
        }
    }
    fmt::write(&mut OneLine(f), args)?;
    f.write_str("\r\n")
}

/// The `m=` line itself (without line ending).
struct MediaLine<'a>(&'a MediaDescription);

impl fmt::Display for MediaLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "m={} {}", m.media, m.port)?;
        if let Some(n) = m.num_ports {
            write!(f, "/{n}")?;
        }
        write!(f, " {}", m.protocol)?;
        for format in &m.formats {
            write!(f, " {format}")?;
        }
        Ok(())
    }
}

impl fmt::Display for MediaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        line(f, format_args!("{}", MediaLine(self)))?;
        for (t, v) in self.other_fields.iter().filter(|(t, _)| *t == 'i') {
            line(f, format_args!("{t}={v}"))?;
        }
        if let Some(c) = &self.connection {
            line(f, format_args!("c={c}"))?;
        }
        for b in &self.bandwidths {
            line(f, format_args!("b={b}"))?;
        }
        for (t, v) in self.other_fields.iter().filter(|(t, _)| *t != 'i') {
            line(f, format_args!("{t}={v}"))?;
        }
        for a in &self.attributes {
            line(f, format_args!("a={a}"))?;
        }
        Ok(())
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("v=0\r\n")?;
        line(f, format_args!("o={}", self.origin))?;
        line(f, format_args!("s={}", self.session_name))?;
        let before_c = session_field_before_c;
        for (t, v) in self.other_fields.iter().filter(|(t, _)| before_c(*t)) {
            line(f, format_args!("{t}={v}"))?;
        }
        if let Some(c) = &self.connection {
            line(f, format_args!("c={c}"))?;
        }
        for b in &self.bandwidths {
            line(f, format_args!("b={b}"))?;
        }
        if self.times.is_empty() {
            f.write_str("t=0 0\r\n")?;
        }
        for (start, stop) in &self.times {
            line(f, format_args!("t={start} {stop}"))?;
        }
        for (t, v) in self.other_fields.iter().filter(|(t, _)| !before_c(*t)) {
            line(f, format_args!("{t}={v}"))?;
        }
        for a in &self.attributes {
            line(f, format_args!("a={a}"))?;
        }
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}
