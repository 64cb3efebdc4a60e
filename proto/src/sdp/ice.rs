//! ICE attributes in SDP (RFC 8839): candidates, ufrag/pwd, ice-options, end-of-candidates.
//!
//! [`IceCandidate`] parses and prints the value of an `a=candidate` line (IPv4, IPv6 and FQDN
//! connection addresses, `raddr`/`rport`, `tcptype` and other extensions kept in order).
//! [`MediaIce`] gathers everything ICE-related of one `m=` section (media-level credentials
//! override session-level ones, RFC 8839 §5.4) and writes it back onto a section.
//! [`strip_ice`] removes every ICE attribute, for a media relay that anchors a call.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use thiserror::Error;

use super::{Attribute, MediaDescription, SessionDescription};

/// Most extension attributes kept on one candidate line.
pub const MAX_CANDIDATE_EXTENSIONS: usize = 16;
/// Most candidates taken from one `m=` section (the rest are ignored).
pub const MAX_CANDIDATES: usize = 64;
/// Longest ICE foundation (RFC 8839 §5.1: 1*32ice-char).
pub const MAX_FOUNDATION_LEN: usize = 32;

/// The SDP attribute names that belong to ICE (what a media relay strips).
pub const ICE_ATTRIBUTES: &[&str] = &[
    "candidate",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "end-of-candidates",
    "remote-candidates",
    "ice-pacing",
];

/// Errors from parsing ICE attributes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IceSdpError {
    /// An `a=candidate` value does not follow the RFC 8839 grammar.
    #[error("invalid ICE candidate: {0}")]
    Candidate(&'static str),
    /// An `a=ice-ufrag` value is not 4 to 256 ice-chars.
    #[error("invalid ice-ufrag")]
    Ufrag,
    /// An `a=ice-pwd` value is not 22 to 256 ice-chars.
    #[error("invalid ice-pwd")]
    Pwd,
    /// An `a=remote-candidates` value does not follow the grammar.
    #[error("invalid remote-candidates: {0}")]
    RemoteCandidates(&'static str),
    /// The `m=` index does not exist.
    #[error("no m= section {0}")]
    NoMedia(usize),
}

/// A candidate type (RFC 8445 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateType {
    /// An address of a local interface.
    Host,
    /// The address a STUN server saw (server reflexive).
    Srflx,
    /// An address learnt from a connectivity check (peer reflexive).
    Prflx,
    /// A TURN relayed address.
    Relay,
}

impl CandidateType {
    /// The SDP token (`host`, `srflx`, `prflx`, `relay`).
    pub fn as_str(self) -> &'static str {
        match self {
            CandidateType::Host => "host",
            CandidateType::Srflx => "srflx",
            CandidateType::Prflx => "prflx",
            CandidateType::Relay => "relay",
        }
    }

    /// The recommended type preference (RFC 8445 §5.1.2.2).
    pub fn type_preference(self) -> u32 {
        match self {
            CandidateType::Host => 126,
            CandidateType::Prflx => 110,
            CandidateType::Srflx => 100,
            CandidateType::Relay => 0,
        }
    }

    /// Parses an SDP token (case-insensitive).
    pub fn parse(token: &str) -> Option<Self> {
        Some(match token.to_ascii_lowercase().as_str() {
            "host" => CandidateType::Host,
            "srflx" => CandidateType::Srflx,
            "prflx" => CandidateType::Prflx,
            "relay" => CandidateType::Relay,
            _ => return None,
        })
    }
}

impl fmt::Display for CandidateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `tcptype` of a TCP candidate (RFC 6544).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpType {
    /// Opens connections, does not accept them.
    Active,
    /// Accepts connections.
    Passive,
    /// Simultaneous open.
    So,
}

impl TcpType {
    /// The SDP token.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpType::Active => "active",
            TcpType::Passive => "passive",
            TcpType::So => "so",
        }
    }

    /// Parses an SDP token (case-insensitive).
    pub fn parse(token: &str) -> Option<Self> {
        Some(match token.to_ascii_lowercase().as_str() {
            "active" => TcpType::Active,
            "passive" => TcpType::Passive,
            "so" => TcpType::So,
            _ => return None,
        })
    }
}

/// The RFC 8445 §5.1.2.1 priority of a candidate.
pub fn candidate_priority(typ: CandidateType, local_preference: u16, component: u16) -> u32 {
    let component = u32::from(component.clamp(1, 256));
    (typ.type_preference() << 24) + (u32::from(local_preference) << 8) + (256 - component)
}

/// One `a=candidate` value (RFC 8839 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCandidate {
    /// Foundation: 1 to 32 ice-chars.
    pub foundation: String,
    /// Component id: 1 (RTP) or 2 (RTCP), up to 256.
    pub component: u16,
    /// Transport token as written (`UDP`, `TCP`, ...); compare with [`Self::is_udp`].
    pub transport: String,
    /// Priority.
    pub priority: u32,
    /// Connection address: an IPv4/IPv6 literal or an FQDN (`*.local` for mDNS).
    pub address: String,
    /// Port.
    pub port: u16,
    /// Candidate type.
    pub typ: CandidateType,
    /// Related address (`raddr`), for reflexive and relayed candidates.
    pub related_address: Option<String>,
    /// Related port (`rport`).
    pub related_port: Option<u16>,
    /// TCP candidate type (`tcptype`).
    pub tcp_type: Option<TcpType>,
    /// Other extension attributes (name, value), in order (`generation 0`, `network-id 1`, ...).
    pub extensions: Vec<(String, String)>,
}

fn is_ice_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '+' || c == '/'
}

fn is_token_char(c: char) -> bool {
    // RFC 8866 token-char: %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E
    matches!(c, '\x21' | '\x23'..='\x27' | '\x2a'..='\x2b' | '\x2d'..='\x2e' | '0'..='9' | 'A'..='Z' | '\x5e'..='\x7e')
}

fn is_connection_address(s: &str) -> bool {
    if s.is_empty() || s.len() > 255 {
        return false;
    }
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    // An FQDN (RFC 8839 allows it; mDNS names end in .local).
    s.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

impl IceCandidate {
    /// A UDP candidate for component `component` at `addr`, priority from the RFC 8445
    /// formula with `local_preference`.
    pub fn new(
        foundation: impl Into<String>,
        component: u16,
        addr: SocketAddr,
        typ: CandidateType,
        local_preference: u16,
    ) -> Self {
        IceCandidate {
            foundation: foundation.into(),
            component,
            transport: "UDP".to_owned(),
            priority: candidate_priority(typ, local_preference, component),
            address: addr.ip().to_string(),
            port: addr.port(),
            typ,
            related_address: None,
            related_port: None,
            tcp_type: None,
            extensions: Vec::new(),
        }
    }

    /// Returns this candidate with a related address (`raddr`/`rport`).
    pub fn with_related(mut self, related: SocketAddr) -> Self {
        self.related_address = Some(related.ip().to_string());
        self.related_port = Some(related.port());
        self
    }

    /// True when the transport is UDP.
    pub fn is_udp(&self) -> bool {
        self.transport.eq_ignore_ascii_case("udp")
    }

    /// The connection address as an IP, when it is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }

    /// The connection address and port, when the address is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.ip().map(|ip| SocketAddr::new(ip, self.port))
    }

    /// The related address and port, when both are present and the address is a literal.
    pub fn related_addr(&self) -> Option<SocketAddr> {
        let ip = self.related_address.as_deref()?.parse().ok()?;
        Some(SocketAddr::new(ip, self.related_port?))
    }

    /// Parses an `a=candidate` value (with or without a leading `candidate:`).
    pub fn parse(value: &str) -> Result<Self, IceSdpError> {
        let value = value.trim();
        let value = value
            .strip_prefix("candidate:")
            .or_else(|| value.strip_prefix("a=candidate:"))
            .unwrap_or(value);
        let mut it = value.split(' ').filter(|s| !s.is_empty());
        let mut next = |what: &'static str| it.next().ok_or(IceSdpError::Candidate(what));

        let foundation = next("missing foundation")?;
        if foundation.len() > MAX_FOUNDATION_LEN || !foundation.chars().all(is_ice_char) {
            return Err(IceSdpError::Candidate("bad foundation"));
        }
        let component = next("missing component id")?;
        if component.len() > 3 || !component.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IceSdpError::Candidate("bad component id"));
        }
        let component: u16 = component
            .parse()
            .map_err(|_| IceSdpError::Candidate("bad component id"))?;
        if component == 0 || component > 256 {
            return Err(IceSdpError::Candidate("component id out of range"));
        }
        let transport = next("missing transport")?;
        if !transport.chars().all(is_token_char) {
            return Err(IceSdpError::Candidate("bad transport"));
        }
        let priority = next("missing priority")?;
        if priority.len() > 10 || !priority.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IceSdpError::Candidate("bad priority"));
        }
        let priority: u32 = priority
            .parse()
            .map_err(|_| IceSdpError::Candidate("priority out of range"))?;
        let address = next("missing connection address")?;
        if !is_connection_address(address) {
            return Err(IceSdpError::Candidate("bad connection address"));
        }
        let port = parse_port(next("missing port")?)?;
        if !next("missing typ")?.eq_ignore_ascii_case("typ") {
            return Err(IceSdpError::Candidate("expected typ"));
        }
        let typ = CandidateType::parse(next("missing candidate type")?)
            .ok_or(IceSdpError::Candidate("unknown candidate type"))?;

        let mut cand = IceCandidate {
            foundation: foundation.to_owned(),
            component,
            transport: transport.to_owned(),
            priority,
            address: address.to_owned(),
            port,
            typ,
            related_address: None,
            related_port: None,
            tcp_type: None,
            extensions: Vec::new(),
        };
        while let Some(name) = it.next() {
            let value = it
                .next()
                .ok_or(IceSdpError::Candidate("extension without a value"))?;
            if name.eq_ignore_ascii_case("raddr") {
                if cand.related_address.is_some() || !is_connection_address(value) {
                    return Err(IceSdpError::Candidate("bad raddr"));
                }
                cand.related_address = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("rport") {
                if cand.related_port.is_some() {
                    return Err(IceSdpError::Candidate("duplicate rport"));
                }
                cand.related_port = Some(parse_port(value)?);
            } else if name.eq_ignore_ascii_case("tcptype") {
                cand.tcp_type =
                    Some(TcpType::parse(value).ok_or(IceSdpError::Candidate("unknown tcptype"))?);
            } else {
                if !name.chars().all(is_token_char) || !value.chars().all(|c| c.is_ascii_graphic())
                {
                    return Err(IceSdpError::Candidate("bad extension"));
                }
                if cand.extensions.len() >= MAX_CANDIDATE_EXTENSIONS {
                    return Err(IceSdpError::Candidate("too many extensions"));
                }
                cand.extensions.push((name.to_owned(), value.to_owned()));
            }
        }
        Ok(cand)
    }

    /// The `a=candidate` attribute for this candidate.
    pub fn to_attribute(&self) -> Attribute {
        Attribute::new("candidate", self.to_string())
    }
}

fn parse_port(s: &str) -> Result<u16, IceSdpError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IceSdpError::Candidate("bad port"));
    }
    s.parse()
        .map_err(|_| IceSdpError::Candidate("port out of range"))
}

impl FromStr for IceCandidate {
    type Err = IceSdpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IceCandidate::parse(s)
    }
}

impl fmt::Display for IceCandidate {
    /// The attribute value, without `candidate:`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {} typ {}",
            self.foundation,
            self.component,
            self.transport,
            self.priority,
            self.address,
            self.port,
            self.typ
        )?;
        if let Some(raddr) = &self.related_address {
            write!(f, " raddr {raddr}")?;
        }
        if let Some(rport) = self.related_port {
            write!(f, " rport {rport}")?;
        }
        if let Some(tcp) = self.tcp_type {
            write!(f, " tcptype {}", tcp.as_str())?;
        }
        for (name, value) in &self.extensions {
            write!(f, " {name} {value}")?;
        }
        Ok(())
    }
}

/// Checks an `a=ice-ufrag` value (RFC 8839 §5.4: 4 to 256 ice-chars).
pub fn validate_ufrag(ufrag: &str) -> Result<(), IceSdpError> {
    if (4..=256).contains(&ufrag.len()) && ufrag.chars().all(is_ice_char) {
        Ok(())
    } else {
        Err(IceSdpError::Ufrag)
    }
}

/// Checks an `a=ice-pwd` value (RFC 8839 §5.4: 22 to 256 ice-chars).
pub fn validate_pwd(pwd: &str) -> Result<(), IceSdpError> {
    if (22..=256).contains(&pwd.len()) && pwd.chars().all(is_ice_char) {
        Ok(())
    } else {
        Err(IceSdpError::Pwd)
    }
}

/// One entry of `a=remote-candidates` (RFC 8839 §5.2): component, address, port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCandidate {
    /// Component id.
    pub component: u16,
    /// Connection address.
    pub address: String,
    /// Port.
    pub port: u16,
}

/// Parses an `a=remote-candidates` value.
pub fn parse_remote_candidates(value: &str) -> Result<Vec<RemoteCandidate>, IceSdpError> {
    let parts: Vec<&str> = value.split(' ').filter(|s| !s.is_empty()).collect();
    if parts.is_empty() || !parts.len().is_multiple_of(3) || parts.len() / 3 > MAX_CANDIDATES {
        return Err(IceSdpError::RemoteCandidates(
            "expected component address port triples",
        ));
    }
    parts
        .chunks_exact(3)
        .map(|t| {
            let [component, address, port] = t else {
                return Err(IceSdpError::RemoteCandidates("short triple"));
            };
            let component: u16 = component
                .parse()
                .ok()
                .filter(|c| (1..=256).contains(c))
                .ok_or(IceSdpError::RemoteCandidates("bad component id"))?;
            if !is_connection_address(address) {
                return Err(IceSdpError::RemoteCandidates("bad address"));
            }
            let port = parse_port(port).map_err(|_| IceSdpError::RemoteCandidates("bad port"))?;
            Ok(RemoteCandidate {
                component,
                address: (*address).to_owned(),
                port,
            })
        })
        .collect()
}

/// Formats an `a=remote-candidates` value.
pub fn format_remote_candidates(candidates: &[RemoteCandidate]) -> String {
    candidates
        .iter()
        .map(|c| format!("{} {} {}", c.component, c.address, c.port))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Everything ICE-related of one `m=` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaIce {
    /// Username fragment.
    pub ufrag: String,
    /// Password.
    pub pwd: String,
    /// `a=ice-options` tokens (`trickle`, `ice2`, ...).
    pub options: Vec<String>,
    /// The agent is ICE lite (`a=ice-lite`, session level).
    pub lite: bool,
    /// Candidates that parsed (invalid lines are ignored, RFC 8839 §5.1), at most
    /// [`MAX_CANDIDATES`].
    pub candidates: Vec<IceCandidate>,
    /// `a=end-of-candidates` was present.
    pub end_of_candidates: bool,
    /// `a=remote-candidates` (from a controlling agent's subsequent offer).
    pub remote_candidates: Vec<RemoteCandidate>,
    /// `a=ice-mismatch` was present (the answerer saw our default address outside our candidates).
    pub mismatch: bool,
}

impl MediaIce {
    /// Credentials with no candidates yet.
    pub fn new(ufrag: impl Into<String>, pwd: impl Into<String>) -> Self {
        MediaIce {
            ufrag: ufrag.into(),
            pwd: pwd.into(),
            ..MediaIce::default()
        }
    }

    /// Reads the ICE attributes of `m=` section `index`: `Ok(None)` when the section has no
    /// ICE credentials (a peer without ICE); an error when the credentials are malformed.
    pub fn from_sdp(sdp: &SessionDescription, index: usize) -> Result<Option<Self>, IceSdpError> {
        let media = sdp.media.get(index).ok_or(IceSdpError::NoMedia(index))?;
        let find = |name: &str| -> Option<&str> {
            media
                .attributes
                .iter()
                .chain(sdp.attributes.iter())
                .find(|a| a.name == name)
                .and_then(|a| a.value.as_deref())
        };
        let (Some(ufrag), Some(pwd)) = (find("ice-ufrag"), find("ice-pwd")) else {
            return Ok(None);
        };
        let ufrag = ufrag.trim();
        let pwd = pwd.trim();
        validate_ufrag(ufrag)?;
        validate_pwd(pwd)?;
        let options = find("ice-options")
            .map(|v| {
                v.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let lite = sdp.attributes.iter().any(|a| a.name == "ice-lite");
        let candidates = media
            .attributes
            .iter()
            .filter(|a| a.name == "candidate")
            .filter_map(|a| a.value.as_deref())
            .filter_map(|v| IceCandidate::parse(v).ok())
            .take(MAX_CANDIDATES)
            .collect();
        let has = |name: &str| {
            media.attributes.iter().any(|a| a.name == name)
                || sdp.attributes.iter().any(|a| a.name == name)
        };
        let remote_candidates = match media
            .attributes
            .iter()
            .find(|a| a.name == "remote-candidates")
            .and_then(|a| a.value.as_deref())
        {
            Some(v) => parse_remote_candidates(v)?,
            None => Vec::new(),
        };
        Ok(Some(MediaIce {
            ufrag: ufrag.to_owned(),
            pwd: pwd.to_owned(),
            options,
            lite,
            candidates,
            end_of_candidates: has("end-of-candidates"),
            remote_candidates,
            mismatch: media.attributes.iter().any(|a| a.name == "ice-mismatch"),
        }))
    }

    /// True when `default` (the section's `c=`/`m=` address) is one of the RTP candidates
    /// (RFC 8839 §5.4: otherwise the peer's ICE is not usable, `a=ice-mismatch`).
    pub fn has_default_candidate(&self, default: SocketAddr) -> bool {
        self.candidates
            .iter()
            .any(|c| c.component == 1 && c.socket_addr() == Some(default))
    }

    /// Writes these attributes onto `media` (replacing any ICE attributes it had);
    /// `ice-lite` is session level and is not written here.
    pub fn apply_to(&self, media: &mut MediaDescription) {
        strip_ice_attributes(&mut media.attributes);
        media
            .attributes
            .push(Attribute::new("ice-ufrag", self.ufrag.clone()));
        media
            .attributes
            .push(Attribute::new("ice-pwd", self.pwd.clone()));
        if !self.options.is_empty() {
            media
                .attributes
                .push(Attribute::new("ice-options", self.options.join(" ")));
        }
        if self.mismatch {
            media.attributes.push(Attribute::flag("ice-mismatch"));
        }
        for c in &self.candidates {
            media.attributes.push(c.to_attribute());
        }
        if !self.remote_candidates.is_empty() {
            media.attributes.push(Attribute::new(
                "remote-candidates",
                format_remote_candidates(&self.remote_candidates),
            ));
        }
        if self.end_of_candidates {
            media.attributes.push(Attribute::flag("end-of-candidates"));
        }
    }
}

/// Removes every ICE attribute from an attribute list.
pub fn strip_ice_attributes(attributes: &mut Vec<Attribute>) {
    attributes.retain(|a| !ICE_ATTRIBUTES.contains(&a.name.as_str()));
}

/// Removes every ICE attribute of a description, session level and every `m=` section.
pub fn strip_ice(sdp: &mut SessionDescription) {
    strip_ice_attributes(&mut sdp.attributes);
    for m in &mut sdp.media {
        strip_ice_attributes(&mut m.attributes);
    }
}

/// True when the description carries ICE credentials on `m=` section `index` (or session level).
pub fn has_ice(sdp: &SessionDescription, index: usize) -> bool {
    matches!(MediaIce::from_sdp(sdp, index), Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc8839_examples() {
        let c = IceCandidate::parse("1 1 UDP 2130706431 203.0.113.141 8998 typ host").unwrap();
        assert_eq!(c.foundation, "1");
        assert_eq!(c.component, 1);
        assert!(c.is_udp());
        assert_eq!(c.priority, 2130706431);
        assert_eq!(c.socket_addr(), Some("203.0.113.141:8998".parse().unwrap()));
        assert_eq!(c.typ, CandidateType::Host);
        assert_eq!(
            c.to_string(),
            "1 1 UDP 2130706431 203.0.113.141 8998 typ host"
        );

        let s = "2 1 UDP 1694498815 192.0.2.3 45664 typ srflx raddr 203.0.113.141 rport 8998";
        let c = IceCandidate::parse(s).unwrap();
        assert_eq!(c.typ, CandidateType::Srflx);
        assert_eq!(
            c.related_addr(),
            Some("203.0.113.141:8998".parse().unwrap())
        );
        assert_eq!(c.to_string(), s);
    }

    #[test]
    fn parses_ipv6_tcp_fqdn_and_extensions() {
        let s = "candidate:3 1 TCP 1518280447 2001:db8::1 9 typ host tcptype active generation 0 network-id 1";
        let c = IceCandidate::parse(s).unwrap();
        assert!(!c.is_udp());
        assert_eq!(c.ip(), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(c.tcp_type, Some(TcpType::Active));
        assert_eq!(
            c.extensions,
            vec![
                ("generation".to_owned(), "0".to_owned()),
                ("network-id".to_owned(), "1".to_owned())
            ]
        );
        assert_eq!(format!("candidate:{c}"), s);

        let c = IceCandidate::parse(
            "a+/Z 2 udp 5 abcd-1234.local 5000 typ RELAY raddr 0.0.0.0 rport 0",
        )
        .unwrap();
        assert_eq!(c.component, 2);
        assert_eq!(c.ip(), None);
        assert_eq!(c.typ, CandidateType::Relay);
        assert_eq!(c.related_addr(), Some("0.0.0.0:0".parse().unwrap()));
    }

    #[test]
    fn rejects_malformed_candidates() {
        for bad in [
            "",
            "1",
            "1 1 UDP 1 1.2.3.4 5 host",
            "1 1 UDP 1 1.2.3.4 5 typ bogus",
            "1 0 UDP 1 1.2.3.4 5 typ host",
            "1 257 UDP 1 1.2.3.4 5 typ host",
            "1 1 UDP 4294967296 1.2.3.4 5 typ host",
            "1 1 UDP -1 1.2.3.4 5 typ host",
            "1 1 UDP 1 1.2.3.4 65536 typ host",
            "1 1 UDP 1 bad..name 5 typ host",
            "1 1 UDP 1 1.2.3.4 5 typ host raddr",
            "1 1 UDP 1 1.2.3.4 5 typ host tcptype maybe",
            "fo_o 1 UDP 1 1.2.3.4 5 typ host",
            "123456789012345678901234567890123 1 UDP 1 1.2.3.4 5 typ host",
        ] {
            assert!(IceCandidate::parse(bad).is_err(), "{bad:?} parsed");
        }
        let many: String = (0..=MAX_CANDIDATE_EXTENSIONS)
            .map(|i| format!(" x{i} 1"))
            .collect();
        assert!(IceCandidate::parse(&format!("1 1 UDP 1 1.2.3.4 5 typ host{many}")).is_err());
    }

    #[test]
    fn priority_formula() {
        assert_eq!(
            candidate_priority(CandidateType::Host, 65535, 1),
            2130706431
        );
        assert_eq!(candidate_priority(CandidateType::Relay, 0, 1), 255);
        let c = IceCandidate::new(
            "9",
            1,
            "10.0.0.1:4000".parse().unwrap(),
            CandidateType::Srflx,
            65535,
        )
        .with_related("192.168.1.2:4000".parse().unwrap());
        assert_eq!(c.priority, (100 << 24) + (65535 << 8) + 255);
        assert_eq!(
            IceCandidate::parse(&c.to_string()).unwrap(),
            c,
            "round trip"
        );
    }

    #[test]
    fn credentials_are_validated() {
        assert!(validate_ufrag("abcd").is_ok());
        assert!(validate_ufrag("abc").is_err());
        assert!(validate_ufrag("ab-d").is_err());
        assert!(validate_pwd("asd88fgpdd777uzjYhagZg").is_ok());
        assert!(validate_pwd("short").is_err());
    }

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 203.0.113.141\r\ns=-\r\nc=IN IP4 192.0.2.3\r\nt=0 0\r\n\
a=ice-options:ice2 trickle\r\na=ice-pwd:asd88fgpdd777uzjYhagZgSESS\r\n\
m=audio 45664 RTP/AVP 0\r\na=ice-ufrag:8hhY\r\na=ice-pwd:asd88fgpdd777uzjYhagZg\r\n\
a=candidate:1 1 UDP 2130706431 203.0.113.141 8998 typ host\r\n\
a=candidate:garbage\r\n\
a=candidate:2 1 UDP 1694498815 192.0.2.3 45664 typ srflx raddr 203.0.113.141 rport 8998\r\n\
a=end-of-candidates\r\n";

    #[test]
    fn reads_and_writes_a_media_section() {
        let sdp = SessionDescription::parse(OFFER).unwrap();
        let ice = MediaIce::from_sdp(&sdp, 0).unwrap().unwrap();
        assert_eq!(ice.ufrag, "8hhY");
        assert_eq!(ice.pwd, "asd88fgpdd777uzjYhagZg", "media level wins");
        assert_eq!(ice.options, vec!["ice2", "trickle"]);
        assert!(!ice.lite);
        assert_eq!(ice.candidates.len(), 2, "the garbage line is ignored");
        assert!(ice.end_of_candidates);
        assert!(ice.has_default_candidate("192.0.2.3:45664".parse().unwrap()));
        assert!(!ice.has_default_candidate("192.0.2.3:1".parse().unwrap()));
        assert!(has_ice(&sdp, 0));
        assert_eq!(MediaIce::from_sdp(&sdp, 1), Err(IceSdpError::NoMedia(1)));

        let mut out = sdp.clone();
        strip_ice(&mut out);
        assert!(!has_ice(&out, 0));
        assert!(out.media[0].attributes.is_empty());
        assert!(out.attributes.is_empty());
        ice.apply_to(&mut out.media[0]);
        let printed = out.to_string();
        let again = SessionDescription::parse(&printed).unwrap();
        let ice2 = MediaIce::from_sdp(&again, 0).unwrap().unwrap();
        assert_eq!(ice2, ice);
    }

    #[test]
    fn no_credentials_means_no_ice_and_bad_ones_are_errors() {
        let plain = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let sdp = SessionDescription::parse(plain).unwrap();
        assert_eq!(MediaIce::from_sdp(&sdp, 0), Ok(None));
        let bad = format!("{plain}a=ice-ufrag:ab\r\na=ice-pwd:asd88fgpdd777uzjYhagZg\r\n");
        let sdp = SessionDescription::parse(&bad).unwrap();
        assert_eq!(MediaIce::from_sdp(&sdp, 0), Err(IceSdpError::Ufrag));
    }

    #[test]
    fn remote_candidates_round_trip() {
        let v = "1 192.0.2.3 45664 2 2001:db8::1 45665";
        let rc = parse_remote_candidates(v).unwrap();
        assert_eq!(rc.len(), 2);
        assert_eq!(format_remote_candidates(&rc), v);
        assert!(parse_remote_candidates("1 192.0.2.3").is_err());
        assert!(parse_remote_candidates("0 192.0.2.3 1").is_err());
    }
}
