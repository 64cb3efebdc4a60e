//! `name-addr` / `addr-spec` header values (From, To, Contact, Route, ...; RFC 3261 §20.10).

use std::fmt;
use std::str::FromStr;

use super::error::ParseError;
use super::scan::{self, Params};
use super::uri::{Uri, UriRef};

/// A display name, a URI and header parameters (`"Bob" <sip:bob@b.example>;tag=1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted and unescaped.
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (after the URI) as written; quoted values keep their quotes.
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// A name-addr with no display name and no parameters.
    pub fn new(uri: Uri) -> Self {
        NameAddr {
            display: None,
            uri,
            params: Vec::new(),
        }
    }

    /// Parses `name-addr` or `addr-spec` followed by header parameters.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let mut uri_params = Params::new();
        let mut params = Params::new();
        let parts = NameAddrRef::parse(
            s,
            &mut |n, v| uri_params.push((n.to_string(), v.map(str::to_string))),
            &mut |n, v| params.push((n.to_string(), v.map(str::to_string))),
        )?;
        let display = match parts.display {
            DisplayRef::Absent => None,
            DisplayRef::Quoted(raw) => Some(scan::take_quoted(raw).map_err(ParseError::Uri)?.1),
            DisplayRef::Tokens(name) => Some(
                name.split([' ', '\t'])
                    .filter(|w| !w.is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        };
        Ok(NameAddr {
            display,
            uri: parts.uri.to_owned(uri_params)?,
            params,
        })
    }

    /// Checks `s` like [`NameAddr::parse`] (same rules, same errors) without building it.
    pub(crate) fn check(s: &str) -> Result<(), ParseError> {
        NameAddrRef::parse(s, &mut |_, _| {}, &mut |_, _| {}).map(drop)
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// Sets (or replaces) the `tag` parameter.
    pub fn set_tag(&mut self, tag: &str) {
        scan::set_param(&mut self.params, "tag", Some(tag));
    }

    /// A header parameter by case-insensitive name: `Some(None)` for a parameter without value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        scan::find_param(&self.params, name)
    }

    /// Sets (or replaces) a header parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        scan::set_param(&mut self.params, name, value);
    }

    /// Removes every header parameter of that name.
    pub fn remove_param(&mut self, name: &str) {
        scan::remove_param(&mut self.params, name);
    }

    /// The `q` parameter of a Contact as a number between 0 and 1.
    pub fn q(&self) -> Option<f32> {
        self.param("q")
            .flatten()
            .and_then(|q| q.parse::<f32>().ok())
            .filter(|q| (0.0..=1.0).contains(q))
    }

    /// The `expires` parameter of a Contact, in seconds (saturating at `u32::MAX`).
    pub fn expires(&self) -> Option<u32> {
        let v = self.param("expires").flatten()?;
        if scan::all_digits(v) {
            Some(
                scan::parse_digits(v)
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(u32::MAX),
            )
        } else {
            None
        }
    }
}

/// The display name of a [`NameAddrRef`], as written.
#[derive(Debug, Clone, Copy)]
enum DisplayRef<'a> {
    /// No display name.
    Absent,
    /// A quoted string, with its quotes, checked.
    Quoted(&'a str),
    /// Tokens separated by whitespace, checked and non-empty.
    Tokens(&'a str),
}

/// A name-addr checked in place: its parts borrow the input.
#[derive(Debug, Clone, Copy)]
struct NameAddrRef<'a> {
    display: DisplayRef<'a>,
    uri: UriRef<'a>,
}

impl<'a> NameAddrRef<'a> {
    /// Checks `name-addr` or `addr-spec` followed by header parameters (the rules and errors of
    /// [`NameAddr::parse`]), handing the URI parameters to `uri_sink` and the header parameters
    /// to `sink` as they are checked.
    fn parse(
        s: &'a str,
        uri_sink: &mut dyn FnMut(&'a str, Option<&'a str>),
        sink: &mut dyn FnMut(&'a str, Option<&'a str>),
    ) -> Result<Self, ParseError> {
        let s = s.trim_matches([' ', '\t']);
        let bad = |what: String| ParseError::Uri(what);
        let (display, rest) = if s.starts_with('"') {
            let (raw, rest) = scan::skip_quoted(s).map_err(bad)?;
            let rest = scan::skip_ws(rest);
            if !rest.starts_with('<') {
                return Err(ParseError::Uri(
                    "quoted display name without <URI>".to_string(),
                ));
            }
            (DisplayRef::Quoted(raw), rest)
        } else if let Some(lt) = s.find('<') {
            let name = s[..lt].trim_matches([' ', '\t']);
            // display-name = *(token LWS): tokens separated by whitespace only.
            let ok = name
                .split([' ', '\t'])
                .filter(|w| !w.is_empty())
                .all(scan::is_token);
            if !ok {
                return Err(ParseError::Uri(format!(
                    "invalid display name {:?}",
                    name.chars().take(80).collect::<String>()
                )));
            }
            let display = if name.is_empty() {
                DisplayRef::Absent
            } else {
                DisplayRef::Tokens(name)
            };
            (display, &s[lt..])
        } else {
            // addr-spec: the URI ends at the first ';' (all parameters belong to the header);
            // a URI with '?', ',' or ';' must be written in name-addr form (§20).
            let end = s.find([';', ' ', '\t']).unwrap_or(s.len());
            let uri_str = &s[..end];
            if uri_str.contains(['?', ',', '<', '>', '"']) {
                return Err(ParseError::Uri(
                    "addr-spec with reserved characters must be in <>".to_string(),
                ));
            }
            let uri = UriRef::parse_with(uri_str, uri_sink)?;
            let params = &s[end..];
            scan::for_each_header_param(params, &mut *sink).map_err(bad)?;
            return Ok(NameAddrRef {
                display: DisplayRef::Absent,
                uri,
            });
        };
        // rest starts with '<'
        let inner = &rest[1..];
        let gt = inner
            .find('>')
            .ok_or_else(|| ParseError::Uri("missing '>'".to_string()))?;
        let uri = UriRef::parse_with(&inner[..gt], uri_sink)?;
        let params = &inner[gt + 1..];
        scan::for_each_header_param(params, &mut *sink).map_err(bad)?;
        Ok(NameAddrRef { display, uri })
    }
}

/// True when a display name can be written without quotes (tokens separated by single spaces).
fn display_is_tokens(d: &str) -> bool {
    !d.is_empty() && d.split(' ').all(scan::is_token)
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            if display_is_tokens(d) {
                write!(f, "{d} ")?;
            } else {
                write!(f, "{} ", scan::quote(d))?;
            }
        }
        write!(f, "<{}>", self.uri)?;
        scan::write_params(f, &self.params)
    }
}

impl FromStr for NameAddr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NameAddr::parse(s)
    }
}

/// One Contact header value: `*` (REGISTER wildcard) or an address with `q`/`expires` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactValue {
    /// The `*` wildcard (remove all bindings).
    Star,
    /// A contact address.
    Addr(NameAddr),
}

impl ContactValue {
    /// Parses one Contact value.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.trim_matches([' ', '\t']) == "*" {
            Ok(ContactValue::Star)
        } else {
            NameAddr::parse(s).map(ContactValue::Addr)
        }
    }

    /// Checks one Contact value like [`ContactValue::parse`] (same errors) without building it.
    pub(crate) fn check(s: &str) -> Result<(), ParseError> {
        if s.trim_matches([' ', '\t']) == "*" {
            Ok(())
        } else {
            NameAddr::check(s)
        }
    }
}

impl fmt::Display for ContactValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContactValue::Star => f.write_str("*"),
            ContactValue::Addr(a) => a.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let a = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(a.display.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(a.tag(), Some("98asjd8"));
        assert_eq!(
            a.to_string(),
            r#""J Rosenberg \\\"" <sip:jdrosen@example.com>;tag=98asjd8"#
        );
        let b = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(b.display.as_deref(), Some("caller"));
        let c = NameAddr::parse("sip:user@example.com;tag=1;unknownparam").unwrap();
        assert!(c.uri.params.is_empty());
        assert_eq!(c.params.len(), 2);
        assert_eq!(c.to_string(), "<sip:user@example.com>;tag=1;unknownparam");
        let mut d = NameAddr::new(Uri::parse("sip:x@y").unwrap());
        d.set_tag("abc");
        assert_eq!(d.to_string(), "<sip:x@y>;tag=abc");
    }

    #[test]
    fn invalid_forms() {
        assert!(NameAddr::parse(r#""Mr. J. User <sip:j.user@example.com>"#).is_err());
        assert!(NameAddr::parse(r#""Watson" < sip:t.watson@example.org >"#).is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:x%3E").is_err());
        assert!(ContactValue::parse(" * ").unwrap() == ContactValue::Star);
    }

    #[test]
    fn contact_params() {
        let a = NameAddr::parse("<sip:a@b>;q=0.5;expires=99999999999").unwrap();
        assert_eq!(a.q(), Some(0.5));
        assert_eq!(a.expires(), Some(u32::MAX));
    }
}
