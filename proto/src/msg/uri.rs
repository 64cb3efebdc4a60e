//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966, RFC 5118).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::error::ParseError;
use super::scan::{self, Params};
use crate::Transport;

/// The host part of a URI or Via: a domain name or an IP address.
#[derive(Debug, Clone, Eq)]
pub enum Host {
    /// A domain name, as written (compared case-insensitively).
    Domain(String),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address (printed in `[brackets]`).
    V6(Ipv6Addr),
}

impl Host {
    /// Parses a host: a domain name, a dotted IPv4 address or a bracketed IPv6 reference.
    pub fn parse(s: &str) -> Result<Host, ParseError> {
        host_ref(s).map(HostRef::to_owned)
    }

    /// Parses a host that may also be an IPv6 address without brackets (Via `received`/`maddr`).
    pub fn parse_lenient(s: &str) -> Result<Host, ParseError> {
        match s.parse::<Ipv6Addr>() {
            Ok(v6) => Ok(Host::V6(v6)),
            Err(_) => Host::parse(s),
        }
    }

    /// True for a domain name (not an IP address literal).
    pub fn is_domain(&self) -> bool {
        matches!(self, Host::Domain(_))
    }

    /// The host lower-cased as a canonical string (IPv6 in brackets).
    pub fn canonical(&self) -> String {
        match self {
            Host::Domain(d) => d.to_ascii_lowercase(),
            other => other.to_string(),
        }
    }
}

/// A host checked in place: the domain name borrows the input.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HostRef<'a> {
    /// A domain name, as written.
    Domain(&'a str),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address.
    V6(Ipv6Addr),
}

impl HostRef<'_> {
    /// The owned host.
    pub(crate) fn to_owned(self) -> Host {
        match self {
            HostRef::Domain(d) => Host::Domain(d.to_string()),
            HostRef::V4(a) => Host::V4(a),
            HostRef::V6(a) => Host::V6(a),
        }
    }
}

/// Checks a host like [`Host::parse`] (same rules, same errors) without copying a domain name.
pub(crate) fn host_ref(s: &str) -> Result<HostRef<'_>, ParseError> {
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| ParseError::Uri(format!("unterminated IPv6 reference {s:?}")))?;
        return inner
            .parse::<Ipv6Addr>()
            .map(HostRef::V6)
            .map_err(|_| ParseError::Uri(format!("invalid IPv6 address {inner:?}")));
    }
    if let Ok(v4) = s.parse::<Ipv4Addr>() {
        return Ok(HostRef::V4(v4));
    }
    if is_hostname(s) {
        Ok(HostRef::Domain(s))
    } else {
        Err(ParseError::Uri(format!(
            "invalid host {:?}",
            s.chars().take(80).collect::<String>()
        )))
    }
}

/// RFC 3261 `hostname`: dot-separated labels of letters, digits and inner hyphens (relaxed to also
/// allow `_`, seen in deployed DNS names), an optional trailing dot, and a last label that starts
/// with a letter (so a malformed dotted quad like `192.0.2.300` is not a host name).
fn is_hostname(s: &str) -> bool {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    let top_ok = name
        .rsplit('.')
        .next()
        .and_then(|top| top.bytes().next())
        .is_some_and(|c| c.is_ascii_alphabetic());
    labels_ok && top_ok
}

impl PartialEq for Host {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            (Host::V4(a), Host::V4(b)) => a == b,
            (Host::V6(a), Host::V6(b)) => a == b,
            _ => false,
        }
    }
}

impl Hash for Host {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Host::Domain(d) => {
                0u8.hash(state);
                d.to_ascii_lowercase().hash(state);
            }
            Host::V4(a) => {
                1u8.hash(state);
                a.hash(state);
            }
            Host::V6(a) => {
                2u8.hash(state);
                a.hash(state);
            }
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

impl FromStr for Host {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Host::parse(s)
    }
}

impl From<std::net::IpAddr> for Host {
    fn from(ip: std::net::IpAddr) -> Self {
        match ip {
            std::net::IpAddr::V4(a) => Host::V4(a),
            std::net::IpAddr::V6(a) => Host::V6(a),
        }
    }
}

/// A URI scheme.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// Any other syntactically valid scheme, lower-cased; the rest of the URI is opaque and kept
    /// in [`Uri::user`] (RFC 4475 §3.3.2: such a Request-URI is answered with 416).
    Other(String),
}

impl Scheme {
    /// The scheme name without the colon.
    pub fn as_str(&self) -> &str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
            Scheme::Other(s) => s,
        }
    }

    /// True for `sip`, `sips` and `tel`, the schemes this implementation understands.
    pub fn is_supported(&self) -> bool {
        !matches!(self, Scheme::Other(_))
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SIP, SIPS or tel URI. Components are kept as written (escaped form) so that printing gives
/// back the same text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// The scheme.
    pub scheme: Scheme,
    /// The user part as written (escaped); for `tel:` the number; for unknown schemes the opaque part.
    pub user: Option<String>,
    /// The password as written (escaped).
    pub password: Option<String>,
    /// The host; `Domain("")` for tel: and unknown schemes.
    pub host: Host,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// URI parameters in order, as written (`;transport=tcp;lr`).
    pub params: Vec<(String, Option<String>)>,
    /// URI headers in order, as written (`?Subject=...&Priority=...`).
    pub headers: Vec<(String, String)>,
}

/// RFC 3261 `user-unreserved` plus `unreserved`.
fn is_user_char(c: u8) -> bool {
    scan::is_unreserved(c) || matches!(c, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

fn is_password_char(c: u8) -> bool {
    scan::is_unreserved(c) || matches!(c, b'&' | b'=' | b'+' | b'$' | b',')
}

/// RFC 3261 `paramchar`.
fn is_param_char(c: u8) -> bool {
    scan::is_unreserved(c) || matches!(c, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

/// RFC 3261 `hnv-unreserved` plus `unreserved`.
fn is_hnv_char(c: u8) -> bool {
    scan::is_unreserved(c) || matches!(c, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$')
}

/// RFC 3966 characters of a telephone-subscriber before parameters.
fn is_tel_char(c: u8) -> bool {
    c.is_ascii_hexdigit() || matches!(c, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#')
}

/// RFC 3986 characters of an opaque URI part (for unknown schemes): anything visible except
/// what would end the URI in a SIP message.
fn is_opaque_char(c: u8) -> bool {
    c.is_ascii_graphic() && !matches!(c, b'<' | b'>' | b'"')
}

/// A URI checked in place ([`Uri::parse`]'s rules and errors): its parts borrow the input;
/// the parameter and header sections are kept as (already checked) text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UriRef<'a> {
    /// The whole URI text (for error messages).
    text: &'a str,
    /// The scheme, or `None` for an unknown one.
    scheme: Option<KnownScheme>,
    /// The scheme as written.
    scheme_str: &'a str,
    /// The user part (the number for tel:, the opaque part for unknown schemes).
    user: Option<&'a str>,
    password: Option<&'a str>,
    /// The host; `None` for tel: and unknown schemes.
    host: Option<HostRef<'a>>,
    port: Option<u16>,
    /// `*( ";" pname [ "=" pvalue ] )`, checked.
    params: &'a str,
    /// The text after `?`, checked.
    headers: Option<&'a str>,
}

/// The schemes [`UriRef`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KnownScheme {
    Sip,
    Sips,
    Tel,
}

fn uri_err(s: &str, what: &str) -> ParseError {
    ParseError::Uri(format!(
        "{what} in {:?}",
        s.chars().take(120).collect::<String>()
    ))
}

impl<'a> UriRef<'a> {
    /// Checks a URI like [`Uri::parse`] (same rules, same errors) without building owned parts,
    /// handing each URI parameter to `sink` as it is checked.
    pub(crate) fn parse_with(
        s: &'a str,
        sink: &mut dyn FnMut(&'a str, Option<&'a str>),
    ) -> Result<UriRef<'a>, ParseError> {
        let bad = |what: &str| uri_err(s, what);
        let colon = s.find(':').ok_or_else(|| bad("no scheme"))?;
        let (scheme_str, rest) = (&s[..colon], &s[colon + 1..]);
        let scheme_ok = scheme_str
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme_str
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err(bad("invalid scheme"));
        }
        let mut uri = UriRef {
            text: s,
            scheme: None,
            scheme_str,
            user: None,
            password: None,
            host: None,
            port: None,
            params: "",
            headers: None,
        };
        let scheme = if scheme_str.eq_ignore_ascii_case("sip") {
            KnownScheme::Sip
        } else if scheme_str.eq_ignore_ascii_case("sips") {
            KnownScheme::Sips
        } else if scheme_str.eq_ignore_ascii_case("tel") {
            KnownScheme::Tel
        } else {
            if rest.is_empty() || !rest.bytes().all(is_opaque_char) {
                return Err(bad("invalid opaque part"));
            }
            uri.user = Some(rest);
            return Ok(uri);
        };
        uri.scheme = Some(scheme);

        if scheme == KnownScheme::Tel {
            let (number, params) = match rest.find(';') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            if number.is_empty() || !number.bytes().all(is_tel_char) {
                return Err(bad("invalid telephone number"));
            }
            for_each_uri_param(params, &mut *sink).map_err(|e| bad(&e))?;
            uri.user = Some(number);
            uri.params = params;
            return Ok(uri);
        }

        // userinfo: everything before the first '@' (user may hold ';' and '?').
        let rest = match rest.find('@') {
            Some(at) => {
                let userinfo = &rest[..at];
                let (user, password) = match userinfo.find(':') {
                    Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
                    None => (userinfo, None),
                };
                if user.is_empty() || !scan::check_escaped(user, is_user_char) {
                    return Err(bad("invalid user part"));
                }
                if let Some(p) = password
                    && !scan::check_escaped(p, is_password_char)
                {
                    return Err(bad("invalid password"));
                }
                uri.user = Some(user);
                uri.password = password;
                &rest[at + 1..]
            }
            None => rest,
        };

        // hostport
        let host_end = if rest.starts_with('[') {
            rest.find(']')
                .map(|i| i + 1)
                .ok_or_else(|| bad("unterminated IPv6 reference"))?
        } else {
            rest.find([':', ';', '?']).unwrap_or(rest.len())
        };
        uri.host = Some(host_ref(&rest[..host_end]).map_err(|_| bad("invalid host"))?);
        let mut rest = &rest[host_end..];
        if let Some(r) = rest.strip_prefix(':') {
            let end = r.find([';', '?']).unwrap_or(r.len());
            let digits = &r[..end];
            let p = scan::parse_digits(digits)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| bad("invalid port"))?;
            uri.port = Some(p);
            rest = &r[end..];
        }
        let (params_str, headers_str) = match rest.find('?') {
            Some(q) => (&rest[..q], Some(&rest[q + 1..])),
            None => (rest, None),
        };
        for_each_uri_param(params_str, &mut *sink).map_err(|e| bad(&e))?;
        uri.params = params_str;
        if let Some(h) = headers_str {
            for_each_uri_header(h, |_, _| {}).map_err(bad)?;
        }
        uri.headers = headers_str;
        Ok(uri)
    }

    /// The owned URI, with the parameters collected by [`UriRef::parse_with`].
    pub(crate) fn to_owned(self, params: Params) -> Result<Uri, ParseError> {
        let bad = |what: &str| uri_err(self.text, what);
        let mut headers = Vec::new();
        if let Some(h) = self.headers {
            for_each_uri_header(h, |n, v| headers.push((n.to_string(), v.to_string())))
                .map_err(bad)?;
        }
        let scheme = match self.scheme {
            Some(KnownScheme::Sip) => Scheme::Sip,
            Some(KnownScheme::Sips) => Scheme::Sips,
            Some(KnownScheme::Tel) => Scheme::Tel,
            None => Scheme::Other(self.scheme_str.to_ascii_lowercase()),
        };
        Ok(Uri {
            scheme,
            user: self.user.map(str::to_string),
            password: self.password.map(str::to_string),
            host: self
                .host
                .map_or_else(|| Host::Domain(String::new()), HostRef::to_owned),
            port: self.port,
            params,
            headers,
        })
    }
}

/// Walks the `hname=hvalue` pairs after `?` in a URI, handing each to `f`.
fn for_each_uri_header<'a>(
    h: &'a str,
    mut f: impl FnMut(&'a str, &'a str),
) -> Result<(), &'static str> {
    for pair in h.split('&') {
        let (name, value) = pair.split_once('=').ok_or("URI header without '='")?;
        if name.is_empty()
            || !scan::check_escaped(name, is_hnv_char)
            || !scan::check_escaped(value, is_hnv_char)
        {
            return Err("invalid URI header");
        }
        f(name, value);
    }
    Ok(())
}

impl Uri {
    /// Parses a URI (no surrounding whitespace or angle brackets).
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        let mut params = Params::new();
        let uri = UriRef::parse_with(s, &mut |n, v| {
            params.push((n.to_string(), v.map(str::to_string)));
        })?;
        uri.to_owned(params)
    }

    /// A `sip:` URI from its parts, without parameters.
    pub fn sip(user: Option<&str>, host: Host, port: Option<u16>) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: user.map(str::to_string),
            password: None,
            host,
            port,
            params: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// The user part with `%HH` escapes decoded (invalid UTF-8 replaced by U+FFFD).
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.as_deref().map(|u| match scan::unescape_bytes(u) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => u.to_string(),
        })
    }

    /// A URI parameter by case-insensitive name: `Some(None)` for a parameter without value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        scan::find_param(&self.params, name)
    }

    /// True when the URI has that parameter (case-insensitive name).
    pub fn has_param(&self, name: &str) -> bool {
        self.param(name).is_some()
    }

    /// Sets a parameter, replacing an existing one of the same name.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        scan::set_param(&mut self.params, name, value);
    }

    /// Removes every parameter of that name.
    pub fn remove_param(&mut self, name: &str) {
        scan::remove_param(&mut self.params, name);
    }

    /// The `transport=` parameter, when it names a transport we support.
    pub fn transport_param(&self) -> Option<Transport> {
        self.param("transport")
            .flatten()
            .and_then(|t| t.parse().ok())
    }

    /// True when the URI has the `lr` parameter (a loose router, RFC 3261 §16.12).
    pub fn is_loose_route(&self) -> bool {
        self.has_param("lr")
    }

    /// `host[:port]` as written in the URI (IPv6 in brackets).
    pub fn host_port(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }

    /// The default port of the URI's scheme (5061 for sips, 5060 otherwise).
    pub fn default_port(&self) -> u16 {
        if self.scheme == Scheme::Sips {
            5061
        } else {
            5060
        }
    }

    /// The canonical address-of-record, used as a registrar key (RFC 3261 §10.3): scheme, the
    /// unescaped user, the lower-cased host, the port only when not the default, no parameters.
    pub fn aor(&self) -> String {
        match &self.scheme {
            Scheme::Sip | Scheme::Sips => {
                let mut s = format!("{}:", self.scheme);
                if let Some(u) = self.user_unescaped() {
                    s.push_str(&u);
                    s.push('@');
                }
                s.push_str(&self.host.canonical());
                if let Some(p) = self.port
                    && p != self.default_port()
                {
                    s.push_str(&format!(":{p}"));
                }
                s
            }
            other => format!("{}:{}", other, self.user.as_deref().unwrap_or("")),
        }
    }

    /// URI comparison per RFC 3261 §19.1.4.
    pub fn equivalent(&self, other: &Uri) -> bool {
        if self.scheme != other.scheme {
            return false;
        }
        if !self.scheme.is_supported() || self.scheme == Scheme::Tel {
            return self.user == other.user && params_equivalent(&self.params, &other.params);
        }
        let unesc = |s: &Option<String>| {
            s.as_deref()
                .map(|v| scan::unescape_bytes(v).unwrap_or_else(|_| v.as_bytes().to_vec()))
        };
        if unesc(&self.user) != unesc(&other.user)
            || unesc(&self.password) != unesc(&other.password)
        {
            return false;
        }
        if self.host != other.host || self.port != other.port {
            return false;
        }
        if !params_equivalent(&self.params, &other.params) {
            return false;
        }
        // Header components are never ignored and must match in both directions.
        let header_set = |h: &[(String, String)]| {
            let mut v: Vec<(String, Vec<u8>)> = h
                .iter()
                .map(|(n, val)| {
                    (
                        n.to_ascii_lowercase(),
                        scan::unescape_bytes(val).unwrap_or_else(|_| val.as_bytes().to_vec()),
                    )
                })
                .collect();
            v.sort();
            v
        };
        header_set(&self.headers) == header_set(&other.headers)
    }
}

/// Parameters that must appear in both URIs if in either (RFC 3261 §19.1.4).
const STRICT_PARAMS: [&str; 5] = ["user", "ttl", "method", "maddr", "transport"];

fn params_equivalent(a: &Params, b: &Params) -> bool {
    let norm = |v: Option<&str>| {
        v.map(|v| scan::unescape_bytes(v).unwrap_or_else(|_| v.as_bytes().to_vec()))
            .map(|v| v.to_ascii_lowercase())
    };
    for (name, value) in a {
        match scan::find_param(b, name) {
            Some(other) if norm(value.as_deref()) != norm(other) => return false,
            Some(_) => {}
            None if STRICT_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name)) => return false,
            None => {}
        }
    }
    for (name, _) in b {
        if scan::find_param(a, name).is_none()
            && STRICT_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name))
        {
            return false;
        }
    }
    true
}

/// Walks `*( ";" pname [ "=" pvalue ] )` inside a URI (no whitespace allowed), handing each
/// parameter to `f`.
fn for_each_uri_param<'a>(
    s: &'a str,
    mut f: impl FnMut(&'a str, Option<&'a str>),
) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    let s = s
        .strip_prefix(';')
        .ok_or_else(|| "unexpected text after host".to_string())?;
    for p in s.split(';') {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
        };
        if name.is_empty() || !scan::check_escaped(name, is_param_char) {
            return Err(format!("invalid URI parameter name {name:?}"));
        }
        if let Some(v) = value
            && (v.is_empty() || !scan::check_escaped(v, is_param_char))
        {
            return Err(format!("invalid value of URI parameter {name}"));
        }
        f(name, value);
    }
    Ok(())
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        match &self.scheme {
            Scheme::Sip | Scheme::Sips => {
                if let Some(u) = &self.user {
                    f.write_str(u)?;
                    if let Some(p) = &self.password {
                        write!(f, ":{p}")?;
                    }
                    f.write_str("@")?;
                }
                write!(f, "{}", self.host)?;
                if let Some(p) = self.port {
                    write!(f, ":{p}")?;
                }
            }
            _ => f.write_str(self.user.as_deref().unwrap_or(""))?,
        }
        scan::write_params(f, &self.params)?;
        for (i, (n, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{n}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

impl FromStr for Uri {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uri::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_full_sip_uri() {
        let u =
            Uri::parse("sips:alice:secret@Example.COM:5071;transport=tcp;lr?Subject=hi&X=y%20z")
                .unwrap();
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, Host::Domain("example.com".into()));
        assert_eq!(u.port, Some(5071));
        assert_eq!(u.transport_param(), Some(Transport::Tcp));
        assert!(u.is_loose_route());
        assert_eq!(u.headers.len(), 2);
        assert_eq!(
            u.to_string(),
            "sips:alice:secret@Example.COM:5071;transport=tcp;lr?Subject=hi&X=y%20z"
        );
        assert_eq!(u.aor(), "sips:alice@example.com:5071");
    }

    #[test]
    fn ipv6_references() {
        let u = Uri::parse("sip:user@[2001:db8::10]:5070").unwrap();
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.host_port(), "[2001:db8::10]:5070");
        let u = Uri::parse("sip:user@[2001:db8::10:5070]").unwrap();
        assert_eq!(u.port, None);
        assert!(Uri::parse("sip:user@2001:db8::10").is_err());
        assert!(Uri::parse("sip:user@[2001:db8::10").is_err());
        assert!(Uri::parse("sip:[2001:db8:::192.0.2.1]").is_err());
        assert!(Uri::parse("sip:[2001:db8::192.0.2.1]").is_ok());
        assert!(Host::parse("192.0.2.300").is_err());
        assert!(Host::parse("a..b").is_err());
        assert!(Host::parse("-a.example").is_err());
        assert_eq!(
            Host::parse("Example.COM.").unwrap(),
            Host::Domain("example.com.".into())
        );
        assert!(Host::parse("_sip._udp.example.com").is_ok());
    }

    #[test]
    fn tel_and_unknown() {
        let u = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user.as_deref(), Some("+1-201-555-0123"));
        assert_eq!(
            u.to_string(),
            "tel:+1-201-555-0123;phone-context=example.com"
        );
        let u = Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent").unwrap();
        assert_eq!(u.scheme, Scheme::Other("nobodyknowsthisscheme".into()));
        assert!(!u.scheme.is_supported());
    }

    #[test]
    fn escapes_and_equivalence() {
        let u = Uri::parse("sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(u.user_unescaped().as_deref(), Some("sips:user@example.com"));
        let a = Uri::parse("sip:%61lice@atlanta.com;transport=TCP").unwrap();
        let b = Uri::parse("sip:alice@AtLanTa.CoM;Transport=tcp").unwrap();
        assert!(a.equivalent(&b));
        let c = Uri::parse("sip:alice@atlanta.com").unwrap();
        assert!(!a.equivalent(&c));
        let d = Uri::parse("sip:alice@atlanta.com:5060").unwrap();
        assert!(!c.equivalent(&d));
        let e = Uri::parse("sip:carol@chicago.com;newparam=5").unwrap();
        let g = Uri::parse("sip:carol@chicago.com;security=on").unwrap();
        assert!(e.equivalent(&g));
        assert!(Uri::parse("sip:user@example.com; lr").is_err());
        assert!(Uri::parse("sip:us er@example.com").is_err());
        assert!(Uri::parse("<sip:user@example.com>").is_err());
    }

    #[test]
    fn params_edit() {
        let mut u = Uri::sip(
            Some("bob"),
            Host::V4(Ipv4Addr::new(192, 0, 2, 1)),
            Some(5062),
        );
        u.set_param("transport", Some("udp"));
        u.set_param("lr", None);
        assert_eq!(u.to_string(), "sip:bob@192.0.2.1:5062;transport=udp;lr");
        u.remove_param("TRANSPORT");
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.to_string(), "sip:bob@192.0.2.1:5062;lr");
    }
}
