//! The Via header value (RFC 3261 §20.42, RFC 3581 rport, RFC 5118 IPv6) and CSeq (§20.16).

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use super::error::ParseError;
use super::method::Method;
use super::scan;
use super::uri::{Host, HostRef, host_ref};

/// One Via header value: `SIP/2.0/UDP host:port;branch=...;rport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The transport token, upper-cased (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, ...).
    pub transport: String,
    /// The sent-by host.
    pub host: Host,
    /// The sent-by port, if present.
    pub port: Option<u16>,
    /// Via parameters in order, as written.
    pub params: Vec<(String, Option<String>)>,
}

fn via_err(detail: impl Into<String>) -> ParseError {
    ParseError::header("Via", detail)
}

impl Via {
    /// A Via for `transport` from `host:port` with no parameters.
    pub fn new(transport: &str, host: Host, port: Option<u16>) -> Self {
        Via {
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params: Vec::new(),
        }
    }

    /// Parses one Via value (`sent-protocol LWS sent-by *( SEMI via-params )`); the protocol
    /// must be `SIP/2.0`.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::parse_impl(s, false)
    }

    /// Like [`Via::parse`] but accepting any protocol name and version (used to answer a
    /// request with an unsupported version with 505).
    pub(crate) fn parse_any_version(s: &str) -> Result<Self, ParseError> {
        Self::parse_impl(s, true)
    }

    fn parse_impl(s: &str, any_version: bool) -> Result<Self, ParseError> {
        let mut params = Vec::new();
        let parts = ViaRef::parse(s, any_version, &mut |n, v| {
            params.push((n.to_string(), v.map(str::to_string)));
        })?;
        Ok(Via {
            transport: parts.transport.to_ascii_uppercase(),
            host: parts.host.to_owned(),
            port: parts.port,
            params,
        })
    }

    /// Checks one Via value like [`Via::parse`] (same rules, same errors) without building it.
    pub(crate) fn check(s: &str) -> Result<(), ParseError> {
        ViaRef::parse(s, false, &mut |_, _| {}).map(drop)
    }

    /// A parameter by case-insensitive name: `Some(None)` for a parameter without value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        scan::find_param(&self.params, name)
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&str> {
        self.param("received").flatten()
    }

    /// The `rport` parameter: `Some(None)` when present without a value (RFC 3581 request).
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport")
            .map(|v| v.and_then(|p| p.parse::<u16>().ok()))
    }

    /// Sets (or replaces) a parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        scan::set_param(&mut self.params, name, value);
    }

    /// Removes every parameter of that name.
    pub fn remove_param(&mut self, name: &str) {
        scan::remove_param(&mut self.params, name);
    }

    /// `host[:port]` as sent (IPv6 in brackets).
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }

    /// True when the branch starts with the RFC 3261 magic cookie `z9hG4bK` and has more after it.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > 7 && b.starts_with("z9hG4bK"))
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.sent_by())?;
        scan::write_params(f, &self.params)
    }
}

impl FromStr for Via {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Via::parse(s)
    }
}

/// A Via value checked in place: its parts borrow the input.
#[derive(Debug, Clone, Copy)]
struct ViaRef<'a> {
    /// The transport token as written.
    transport: &'a str,
    host: HostRef<'a>,
    port: Option<u16>,
}

impl<'a> ViaRef<'a> {
    /// Checks one Via value (the rules and errors of [`Via::parse`]), handing each parameter
    /// to `sink` once the syntax of all of them is known to be valid.
    fn parse(
        s: &'a str,
        any_version: bool,
        sink: &mut dyn FnMut(&'a str, Option<&'a str>),
    ) -> Result<Self, ParseError> {
        let s = scan::skip_ws(s);
        let (name, rest) = scan::take_token(s);
        let rest = scan::skip_ws(rest)
            .strip_prefix('/')
            .ok_or_else(|| via_err("expected '/' after protocol name"))?;
        let (version, rest) = scan::take_token(scan::skip_ws(rest));
        let rest = scan::skip_ws(rest)
            .strip_prefix('/')
            .ok_or_else(|| via_err("expected '/' after protocol version"))?;
        let (transport, rest) = scan::take_token(scan::skip_ws(rest));
        if name.is_empty() || version.is_empty() {
            return Err(via_err("missing protocol name or version"));
        }
        if !any_version && (!name.eq_ignore_ascii_case("SIP") || version != "2.0") {
            return Err(via_err(format!("unsupported protocol {name}/{version}")));
        }
        if transport.is_empty() {
            return Err(via_err("missing transport"));
        }
        let after = scan::skip_ws(rest);
        if after.len() == rest.len() {
            return Err(via_err("expected whitespace before sent-by"));
        }
        let rest = after;
        let host_end = if rest.starts_with('[') {
            rest.find(']')
                .map(|i| i + 1)
                .ok_or_else(|| via_err("unterminated IPv6 reference"))?
        } else {
            rest.find([':', ';', ' ', '\t', ',']).unwrap_or(rest.len())
        };
        let host = host_ref(&rest[..host_end]).map_err(|_| {
            via_err(format!(
                "invalid sent-by host {:?}",
                rest[..host_end].chars().take(80).collect::<String>()
            ))
        })?;
        let mut rest = scan::skip_ws(&rest[host_end..]);
        let mut port = None;
        if let Some(r) = rest.strip_prefix(':') {
            let r = scan::skip_ws(r);
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            let p = scan::parse_digits(&r[..n])
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| via_err("invalid port"))?;
            port = Some(p);
            rest = &r[n..];
        }
        // Syntax of every parameter first, then the values of the known ones (so a syntax error
        // is reported before a bad value, as when the parameters were collected first).
        scan::for_each_header_param(rest, |_, _| {}).map_err(via_err)?;
        let mut bad_param = None;
        scan::for_each_header_param(rest, |name, v| {
            if bad_param.is_some() {
                return;
            }
            sink(name, v);
            // Names compare ASCII case-insensitively in place (no lower-cased copy).
            let is = |known: &str| name.eq_ignore_ascii_case(known);
            let ok = if is("branch") {
                v.is_some_and(scan::is_token)
            } else if is("received") || is("maddr") {
                // `Host::parse_lenient` without building the host.
                v.is_some_and(|v| v.parse::<Ipv6Addr>().is_ok() || host_ref(v).is_ok())
            } else if is("ttl") {
                v.is_some_and(|v| scan::parse_digits(v).is_some_and(|t| t <= 255))
            } else if is("rport") {
                v.is_none_or(|v| scan::parse_digits(v).is_some_and(|p| p <= 65535))
            } else {
                true
            };
            if !ok {
                bad_param = Some(name);
            }
        })
        .map_err(via_err)?;
        if let Some(name) = bad_param {
            return Err(via_err(format!("invalid {name} parameter")));
        }
        Ok(ViaRef {
            transport,
            host,
            port,
        })
    }
}

/// The CSeq header value: a sequence number and a method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CSeq {
    /// The sequence number.
    pub seq: u32,
    /// The method.
    pub method: Method,
}

impl CSeq {
    /// A CSeq value.
    pub fn new(seq: u32, method: Method) -> Self {
        CSeq { seq, method }
    }

    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim_matches([' ', '\t']);
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(ParseError::header("CSeq", "missing sequence number"));
        }
        let seq = scan::parse_digits(&s[..n])
            .and_then(|v| u32::try_from(v).ok())
            .ok_or(ParseError::OutOfRange("CSeq"))?;
        let rest = &s[n..];
        let method = scan::skip_ws(rest);
        if method.len() == rest.len() {
            return Err(ParseError::header(
                "CSeq",
                "expected whitespace before method",
            ));
        }
        let method = method
            .parse::<Method>()
            .map_err(|_| ParseError::header("CSeq", "invalid method"))?;
        Ok(CSeq { seq, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

impl FromStr for CSeq {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CSeq::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tortuous_via() {
        let v = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;rport;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::V4("192.0.2.2".parse().unwrap()));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP 192.0.2.2;rport;branch=390skdjuw"
        );
    }

    #[test]
    fn ipv6_via() {
        let v = Via::parse(
            "SIP/2.0/TCP [2001:db8::9:1]:5061;branch=z9hG4bKas3-111;received=[2001:db8::9:255]",
        )
        .unwrap();
        assert_eq!(v.sent_by(), "[2001:db8::9:1]:5061");
        assert_eq!(v.received(), Some("[2001:db8::9:255]"));
        let v = Via::parse("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas")
            .unwrap();
        assert_eq!(v.received(), Some("2001:db8::9:255"));
        assert!(Via::parse("SIP/2.0/UDP 2001:db8::9:1;branch=x").is_err());
    }

    #[test]
    fn via_errors_and_edit() {
        assert!(Via::parse("SIP/3.0/UDP host").is_err());
        assert!(Via::parse("SIP/2.0/UDPhost").is_err());
        let mut v = Via::parse("SIP/2.0/udp host.example:5070;branch=z9hG4bKx;rport").unwrap();
        v.set_param("rport", Some("4000"));
        v.set_param("received", Some("192.0.2.9"));
        assert_eq!(v.rport(), Some(Some(4000)));
        assert!(v.has_rfc3261_branch());
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP host.example:5070;branch=z9hG4bKx;rport=4000;received=192.0.2.9"
        );
    }

    #[test]
    fn cseq() {
        let c = CSeq::parse("0009 INVITE").unwrap();
        assert_eq!(c, CSeq::new(9, Method::Invite));
        assert_eq!(c.to_string(), "9 INVITE");
        assert_eq!(
            CSeq::parse("36893488147419103232 INVITE"),
            Err(ParseError::OutOfRange("CSeq"))
        );
        assert!(CSeq::parse("1INVITE").is_err());
    }
}
