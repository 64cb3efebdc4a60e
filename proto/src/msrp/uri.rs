//! MSRP URIs (RFC 4975 §6): `msrp[s]://[userinfo@]host[:port][/session-id];transport[;params]`.

use std::fmt;
use std::str::FromStr;

use super::MsrpError;

/// Longest URI accepted by the parser.
const MAX_URI_LEN: usize = 2048;

/// An MSRP or MSRPS URI.
#[derive(Debug, Clone)]
pub struct MsrpUri {
    /// `msrps` (TLS) rather than `msrp`.
    pub secure: bool,
    /// The userinfo before `@` (RFC 4976 relay URIs use it), kept as written.
    pub user: Option<String>,
    /// The host: a name, an IPv4 address or a bracketed IPv6 reference (`[::1]`).
    pub host: String,
    /// The port, if written.
    pub port: Option<u16>,
    /// The session id after `/`, if any (relay URIs have none).
    pub session_id: Option<String>,
    /// The transport (`tcp`, or an extension token), as written.
    pub transport: String,
    /// Further `;name[=value]` parameters, in order.
    pub params: Vec<(String, Option<String>)>,
}

impl MsrpUri {
    /// A URI for an endpoint: `msrp[s]://host:port/session_id;tcp`.
    pub fn new(secure: bool, host: &str, port: u16, session_id: &str) -> Self {
        MsrpUri {
            secure,
            user: None,
            host: host.to_owned(),
            port: Some(port),
            session_id: Some(session_id.to_owned()),
            transport: "tcp".to_owned(),
            params: Vec::new(),
        }
    }

    /// Parses a URI.
    pub fn parse(s: &str) -> Result<Self, MsrpError> {
        let bad = |reason| MsrpError::InvalidUri {
            uri: s.chars().take(80).collect(),
            reason,
        };
        if s.len() > MAX_URI_LEN {
            return Err(bad("too long"));
        }
        let (scheme, rest) = s.split_once("://").ok_or(bad("no scheme"))?;
        let secure = if scheme.eq_ignore_ascii_case("msrps") {
            true
        } else if scheme.eq_ignore_ascii_case("msrp") {
            false
        } else {
            return Err(bad("scheme is not msrp or msrps"));
        };
        let auth_end = rest.find(['/', ';']).ok_or(bad("no transport"))?;
        let (authority, rest) = rest.split_at(auth_end);
        let (user, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        if user.is_some_and(|u| u.is_empty() || !u.bytes().all(is_userinfo_char)) {
            return Err(bad("invalid userinfo"));
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let close = v6.find(']').ok_or(bad("unterminated IPv6 reference"))?;
            let addr = &v6[..close];
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("invalid IPv6 address"));
            }
            let after = &v6[close + 1..];
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or(bad("junk after IPv6 reference"))?,
                ),
            };
            (&hostport[..close + 2], port)
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        if !host.starts_with('[') && !host.bytes().all(is_host_char) {
            return Err(bad("invalid host"));
        }
        let port = match port {
            None => None,
            Some(p) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("invalid port"));
                }
                Some(p.parse::<u16>().map_err(|_| bad("port out of range"))?)
            }
        };
        let (session_id, rest) = match rest.strip_prefix('/') {
            Some(r) => {
                let end = r.find(';').ok_or(bad("no transport"))?;
                let sid = &r[..end];
                if sid.is_empty() || !sid.bytes().all(is_session_char) {
                    return Err(bad("invalid session-id"));
                }
                (Some(sid.to_owned()), &r[end..])
            }
            None => (None, rest),
        };
        let rest = rest.strip_prefix(';').ok_or(bad("no transport"))?;
        let mut parts = rest.split(';');
        let transport = parts.next().unwrap_or_default();
        if transport.is_empty() || !transport.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad("invalid transport"));
        }
        let mut params = Vec::new();
        for p in parts {
            let (name, value) = match p.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (p, None),
            };
            if name.is_empty() || !name.bytes().all(is_param_char) {
                return Err(bad("invalid parameter"));
            }
            if value.is_some_and(|v| !v.bytes().all(is_param_char)) {
                return Err(bad("invalid parameter value"));
            }
            params.push((name.to_owned(), value.map(str::to_owned)));
        }
        Ok(MsrpUri {
            secure,
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port,
            session_id,
            transport: transport.to_owned(),
            params,
        })
    }

    /// Parses a space-separated list of URIs (`To-Path`, `From-Path`, `Use-Path`, `a=path`).
    pub fn parse_list(s: &str) -> Result<Vec<Self>, MsrpError> {
        let list = s
            .split([' ', '\t'])
            .filter(|p| !p.is_empty())
            .map(MsrpUri::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(MsrpError::InvalidUri {
                uri: String::new(),
                reason: "empty URI list",
            });
        }
        Ok(list)
    }

    /// Prints a list of URIs separated by single spaces.
    pub fn format_list(list: &[MsrpUri]) -> String {
        let mut out = String::new();
        for (i, u) in list.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&u.to_string());
        }
        out
    }

    /// The scheme as written in lower case (`msrp` or `msrps`).
    pub fn scheme(&self) -> &'static str {
        if self.secure { "msrps" } else { "msrp" }
    }

    /// The port, or the default 2855 when none is written.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(super::DEFAULT_PORT)
    }

    /// RFC 4975 §6.1 equivalence: scheme, host and transport case-insensitively (after
    /// percent-decoding), userinfo and session-id case-sensitively, ports exactly (an explicit port
    /// never equals an absent one), parameters ignored.
    pub fn equivalent(&self, other: &MsrpUri) -> bool {
        self.secure == other.secure
            && self.port == other.port
            && self.transport.eq_ignore_ascii_case(&other.transport)
            && decode(&self.host).eq_ignore_ascii_case(&decode(&other.host))
            && self.user.as_deref().map(decode) == other.user.as_deref().map(decode)
            && self.session_id.as_deref().map(decode) == other.session_id.as_deref().map(decode)
    }
}

impl PartialEq for MsrpUri {
    fn eq(&self, other: &Self) -> bool {
        self.equivalent(other)
    }
}

impl Eq for MsrpUri {}

impl fmt::Display for MsrpUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme())?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if let Some(s) = &self.session_id {
            write!(f, "/{s}")?;
        }
        write!(f, ";{}", self.transport)?;
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

impl FromStr for MsrpUri {
    type Err = MsrpError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MsrpUri::parse(s)
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

fn is_userinfo_char(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || b == b'%' || b == b':'
}

fn is_host_char(b: u8) -> bool {
    is_unreserved(b) || b == b'%' || (is_sub_delim(b) && b != b';')
}

fn is_session_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'+' | b'=' | b'/' | b'%')
}

fn is_param_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'%' | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b':'
                | b'@'
                | b'['
                | b']'
        )
}

/// Percent-decodes escapes of unreserved characters (RFC 3986 §6.2.2.2 normalisation).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                if is_unreserved(v) {
                    out.push(v as char);
                    i += 3;
                    continue;
                }
                // keep other escapes, with the hex digits in upper case
                out.push('%');
                out.push_str(&hex.unwrap_or_default().to_ascii_uppercase());
                i += 3;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_escapes() {
        assert_eq!(decode("a%41b"), "aAb");
        assert_eq!(decode("a%2fb"), "a%2Fb");
        assert_eq!(decode("a%4"), "a%4");
        assert_eq!(decode("%"), "%");
    }
}
