//! Header names and the ordered header list with typed accessors (RFC 3261 §7.3, §20).

use std::fmt;
use std::hash::{Hash, Hasher};

use bytes::Bytes;

use super::error::ParseError;
use super::name_addr::{ContactValue, NameAddr};
use super::scan;
use super::via::{CSeq, Via};

/// A header field name; compact forms are mapped to the long form, names compare
/// case-insensitively.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HeaderName {
    /// Via (`v`).
    Via,
    /// From (`f`).
    From,
    /// To (`t`).
    To,
    /// Call-ID (`i`).
    CallId,
    /// CSeq.
    CSeq,
    /// Contact (`m`).
    Contact,
    /// Max-Forwards.
    MaxForwards,
    /// Expires.
    Expires,
    /// Min-Expires.
    MinExpires,
    /// Route.
    Route,
    /// Record-Route.
    RecordRoute,
    /// Content-Type (`c`).
    ContentType,
    /// Content-Length (`l`).
    ContentLength,
    /// Authorization.
    Authorization,
    /// Proxy-Authorization.
    ProxyAuthorization,
    /// WWW-Authenticate.
    WwwAuthenticate,
    /// Proxy-Authenticate.
    ProxyAuthenticate,
    /// Allow.
    Allow,
    /// Supported (`k`).
    Supported,
    /// Require.
    Require,
    /// Proxy-Require.
    ProxyRequire,
    /// Unsupported.
    Unsupported,
    /// User-Agent.
    UserAgent,
    /// Server.
    Server,
    /// Event (`o`).
    Event,
    /// Subscription-State.
    SubscriptionState,
    /// Retry-After.
    RetryAfter,
    /// Date.
    Date,
    /// Accept.
    Accept,
    /// Subject (`s`).
    Subject,
    /// Refer-To (`r`).
    ReferTo,
    /// Referred-By (`b`).
    ReferredBy,
    /// Timestamp.
    Timestamp,
    /// Any other header, with the name as written (compact forms of other known headers are
    /// expanded to their long names).
    Other(String),
}

impl HeaderName {
    /// Maps a header name as written (any case, compact or long form) to a `HeaderName`.
    pub fn parse(name: &str) -> HeaderName {
        if name.len() == 1 {
            let c = name.as_bytes()[0].to_ascii_lowercase();
            return match c {
                b'v' => HeaderName::Via,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'i' => HeaderName::CallId,
                b'm' => HeaderName::Contact,
                b'c' => HeaderName::ContentType,
                b'l' => HeaderName::ContentLength,
                b'k' => HeaderName::Supported,
                b's' => HeaderName::Subject,
                b'o' => HeaderName::Event,
                b'r' => HeaderName::ReferTo,
                b'b' => HeaderName::ReferredBy,
                b'e' => HeaderName::Other("Content-Encoding".into()),
                b'u' => HeaderName::Other("Allow-Events".into()),
                b'x' => HeaderName::Other("Session-Expires".into()),
                b'a' => HeaderName::Other("Accept-Contact".into()),
                b'j' => HeaderName::Other("Reject-Contact".into()),
                b'd' => HeaderName::Other("Request-Disposition".into()),
                b'y' => HeaderName::Other("Identity".into()),
                b'n' => HeaderName::Other("Identity-Info".into()),
                _ => HeaderName::Other(name.to_string()),
            };
        }
        KNOWN
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, h)| h.clone())
            .unwrap_or_else(|| HeaderName::Other(name.to_string()))
    }

    /// The canonical long name (`Call-ID`, `CSeq`, `WWW-Authenticate`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Contact => "Contact",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::Expires => "Expires",
            HeaderName::MinExpires => "Min-Expires",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::ContentType => "Content-Type",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::Authorization => "Authorization",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderName::Allow => "Allow",
            HeaderName::Supported => "Supported",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Unsupported => "Unsupported",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Server => "Server",
            HeaderName::Event => "Event",
            HeaderName::SubscriptionState => "Subscription-State",
            HeaderName::RetryAfter => "Retry-After",
            HeaderName::Date => "Date",
            HeaderName::Accept => "Accept",
            HeaderName::Subject => "Subject",
            HeaderName::ReferTo => "Refer-To",
            HeaderName::ReferredBy => "Referred-By",
            HeaderName::Timestamp => "Timestamp",
            HeaderName::Other(s) => s,
        }
    }

    /// True for headers whose value is a comma-separated list (so [`Headers::values`] splits it).
    pub fn is_list(&self) -> bool {
        !matches!(
            self,
            HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::MaxForwards
                | HeaderName::Expires
                | HeaderName::MinExpires
                | HeaderName::ContentType
                | HeaderName::ContentLength
                | HeaderName::Authorization
                | HeaderName::ProxyAuthorization
                | HeaderName::WwwAuthenticate
                | HeaderName::ProxyAuthenticate
                | HeaderName::UserAgent
                | HeaderName::Server
                | HeaderName::Event
                | HeaderName::SubscriptionState
                | HeaderName::RetryAfter
                | HeaderName::Date
                | HeaderName::Subject
                | HeaderName::ReferTo
                | HeaderName::ReferredBy
                | HeaderName::Timestamp
        )
    }
}

const KNOWN: [(&str, HeaderName); 33] = [
    ("Via", HeaderName::Via),
    ("From", HeaderName::From),
    ("To", HeaderName::To),
    ("Call-ID", HeaderName::CallId),
    ("CSeq", HeaderName::CSeq),
    ("Contact", HeaderName::Contact),
    ("Max-Forwards", HeaderName::MaxForwards),
    ("Expires", HeaderName::Expires),
    ("Min-Expires", HeaderName::MinExpires),
    ("Route", HeaderName::Route),
    ("Record-Route", HeaderName::RecordRoute),
    ("Content-Type", HeaderName::ContentType),
    ("Content-Length", HeaderName::ContentLength),
    ("Authorization", HeaderName::Authorization),
    ("Proxy-Authorization", HeaderName::ProxyAuthorization),
    ("WWW-Authenticate", HeaderName::WwwAuthenticate),
    ("Proxy-Authenticate", HeaderName::ProxyAuthenticate),
    ("Allow", HeaderName::Allow),
    ("Supported", HeaderName::Supported),
    ("Require", HeaderName::Require),
    ("Proxy-Require", HeaderName::ProxyRequire),
    ("Unsupported", HeaderName::Unsupported),
    ("User-Agent", HeaderName::UserAgent),
    ("Server", HeaderName::Server),
    ("Event", HeaderName::Event),
    ("Subscription-State", HeaderName::SubscriptionState),
    ("Retry-After", HeaderName::RetryAfter),
    ("Date", HeaderName::Date),
    ("Accept", HeaderName::Accept),
    ("Subject", HeaderName::Subject),
    ("Refer-To", HeaderName::ReferTo),
    ("Referred-By", HeaderName::ReferredBy),
    ("Timestamp", HeaderName::Timestamp),
];

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            // Two known names are equal exactly when they are the same variant; only an
            // `Other` (which may spell a known name) needs the case-insensitive compare.
            (HeaderName::Other(_), _) | (_, HeaderName::Other(_)) => {
                self.as_str().eq_ignore_ascii_case(other.as_str())
            }
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for HeaderName {}

impl Hash for HeaderName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.as_str().bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
        state.write_u8(0xff);
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for HeaderName {
    fn from(s: &str) -> Self {
        HeaderName::parse(s)
    }
}

/// One header line: a name and its raw value (trimmed, line folding replaced by one space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header name.
    pub name: HeaderName,
    /// The raw value bytes.
    pub value: Bytes,
}

impl Header {
    /// A header line.
    pub fn new(name: HeaderName, value: impl Into<Bytes>) -> Self {
        Header {
            name,
            value: value.into(),
        }
    }

    /// The value as text, if valid UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

/// The ordered list of header lines of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

fn str_of<'a>(name: &HeaderName, value: &'a Bytes) -> Result<&'a str, ParseError> {
    std::str::from_utf8(value).map_err(|_| ParseError::header(name.as_str(), "not UTF-8"))
}

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// The header lines in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    /// The header lines in order, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Header> {
        self.0.iter_mut()
    }

    /// The number of header lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no header lines.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when at least one line has that name.
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.0.iter().any(|h| &h.name == name)
    }

    /// The raw value of the first line with that name.
    pub fn get(&self, name: &HeaderName) -> Option<&Bytes> {
        self.0.iter().find(|h| &h.name == name).map(|h| &h.value)
    }

    /// The value of the first line with that name, if it is valid UTF-8.
    pub fn get_str(&self, name: &HeaderName) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The raw values of every line with that name, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.0
            .iter()
            .filter(move |h| &h.name == name)
            .map(|h| &h.value)
    }

    /// The number of lines with that name.
    pub fn count(&self, name: &HeaderName) -> usize {
        self.0.iter().filter(|h| &h.name == name).count()
    }

    /// Every value of that header: all lines, each split on top-level commas (outside quotes and
    /// `<>`) when the header is a list ([`HeaderName::is_list`]); trimmed. Lines that are not
    /// UTF-8 are skipped.
    pub fn values(&self, name: &HeaderName) -> Vec<String> {
        let mut out = Vec::new();
        for v in self.get_all(name) {
            let Ok(s) = std::str::from_utf8(v) else {
                continue;
            };
            if name.is_list() {
                out.extend(
                    scan::split_top_level(s, b',')
                        .into_iter()
                        .map(str::to_string),
                );
            } else {
                let s = s.trim_matches([' ', '\t']);
                if !s.is_empty() {
                    out.push(s.to_string());
                }
            }
        }
        out
    }

    /// Appends a line.
    pub fn push(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        self.0.push(Header::new(name, value));
    }

    /// Inserts a line before the first line of that name, or at the top when there is none.
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        let i = self.0.iter().position(|h| h.name == name).unwrap_or(0);
        self.0.insert(i, Header::new(name, value));
    }

    /// Replaces every line of that name with one line, at the position of the first one (or at
    /// the end when there was none).
    pub fn set(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        let header = Header::new(name, value);
        match self.0.iter().position(|h| h.name == header.name) {
            Some(i) => {
                let name = header.name.clone();
                self.0[i] = header;
                let mut idx = 0usize;
                self.0.retain(|h| {
                    let keep = idx == i || h.name != name;
                    idx += 1;
                    keep
                });
            }
            None => self.0.push(header),
        }
    }

    /// Removes every line of that name; returns how many were removed.
    pub fn remove(&mut self, name: &HeaderName) -> usize {
        let before = self.0.len();
        self.0.retain(|h| &h.name != name);
        before - self.0.len()
    }

    /// Removes the first value of that header: when the first line holds comma-separated values,
    /// only its first value is removed and the rest of the line stays. Returns the removed value.
    pub fn remove_first(&mut self, name: &HeaderName) -> Option<Bytes> {
        let i = self.0.iter().position(|h| &h.name == name)?;
        let value = self.0[i].value.clone();
        let split = std::str::from_utf8(&value)
            .ok()
            .filter(|_| name.is_list())
            .and_then(|s| scan::find_top_level(s, b','));
        match split {
            Some(comma) => {
                let first = trim_bytes(value.slice(..comma));
                let rest = trim_bytes(value.slice(comma + 1..));
                if rest.is_empty() {
                    self.0.remove(i);
                } else {
                    self.0[i].value = rest;
                }
                Some(first)
            }
            None => Some(self.0.remove(i).value),
        }
    }

    /// Inserts a line at a position (clamped to the end).
    pub fn insert(&mut self, index: usize, name: HeaderName, value: impl Into<Bytes>) {
        let index = index.min(self.0.len());
        self.0.insert(index, Header::new(name, value));
    }

    fn first_str(&self, name: &HeaderName, label: &'static str) -> Result<&str, ParseError> {
        let v = self.get(name).ok_or(ParseError::MissingHeader(label))?;
        str_of(name, v)
    }

    fn list<T>(
        &self,
        name: &HeaderName,
        parse: impl Fn(&str) -> Result<T, ParseError>,
    ) -> Result<Vec<T>, ParseError> {
        let mut out = Vec::new();
        for v in self.get_all(name) {
            let s = str_of(name, v)?;
            for piece in scan::split_top_level(s, b',') {
                out.push(parse(piece)?);
            }
        }
        Ok(out)
    }

    /// Checks every value of a list header with `check` without collecting the values; returns
    /// how many there are. Same errors, in the same order, as the collecting accessors.
    fn check_list(
        &self,
        name: &HeaderName,
        check: impl Fn(&str) -> Result<(), ParseError>,
    ) -> Result<usize, ParseError> {
        let mut n = 0;
        for v in self.get_all(name) {
            for piece in scan::top_level(str_of(name, v)?, b',') {
                check(piece)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Checks every Via value like [`Headers::vias`]; returns how many there are.
    pub(crate) fn check_vias(&self) -> Result<usize, ParseError> {
        self.check_list(&HeaderName::Via, Via::check)
    }

    /// Checks the From value like [`Headers::from`].
    pub(crate) fn check_from(&self) -> Result<(), ParseError> {
        NameAddr::check(self.first_str(&HeaderName::From, "From")?)
            .map_err(|e| ParseError::header("From", e.to_string()))
    }

    /// Checks the To value like [`Headers::to`].
    pub(crate) fn check_to(&self) -> Result<(), ParseError> {
        NameAddr::check(self.first_str(&HeaderName::To, "To")?)
            .map_err(|e| ParseError::header("To", e.to_string()))
    }

    /// Checks every Contact value like [`Headers::contacts`].
    pub(crate) fn check_contacts(&self) -> Result<(), ParseError> {
        self.check_list(&HeaderName::Contact, |s| {
            ContactValue::check(s).map_err(|e| ParseError::header("Contact", e.to_string()))
        })
        .map(drop)
    }

    /// Checks every Route and then every Record-Route value like [`Headers::routes`] and
    /// [`Headers::record_routes`].
    pub(crate) fn check_routes(&self) -> Result<(), ParseError> {
        self.check_list(&HeaderName::Route, |s| {
            NameAddr::check(s).map_err(|e| ParseError::header("Route", e.to_string()))
        })?;
        self.check_list(&HeaderName::RecordRoute, |s| {
            NameAddr::check(s).map_err(|e| ParseError::header("Record-Route", e.to_string()))
        })
        .map(drop)
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.list(&HeaderName::Via, Via::parse)
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> Result<Via, ParseError> {
        let s = self.first_str(&HeaderName::Via, "Via")?;
        let first = scan::split_top_level(s, b',')
            .into_iter()
            .next()
            .ok_or_else(|| ParseError::header("Via", "empty"))?;
        Via::parse(first)
    }

    /// The topmost Via value (same as [`Headers::top_via`]).
    pub fn via(&self) -> Result<Via, ParseError> {
        self.top_via()
    }

    /// The From value.
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.first_str(&HeaderName::From, "From")?)
            .map_err(|e| ParseError::header("From", e.to_string()))
    }

    /// The To value.
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.first_str(&HeaderName::To, "To")?)
            .map_err(|e| ParseError::header("To", e.to_string()))
    }

    /// The Call-ID value. RFC 3261 says `word ["@" word]`; deployed stacks also use other
    /// visible characters (base64 `=`), so any non-empty run of visible characters is accepted.
    pub fn call_id(&self) -> Result<&str, ParseError> {
        let s = self.first_str(&HeaderName::CallId, "Call-ID")?;
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ParseError::header("Call-ID", "empty or holds whitespace"));
        }
        Ok(s)
    }

    /// The CSeq value.
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        CSeq::parse(self.first_str(&HeaderName::CSeq, "CSeq")?)
    }

    /// Every Contact value (`*` or addresses).
    pub fn contacts(&self) -> Result<Vec<ContactValue>, ParseError> {
        self.list(&HeaderName::Contact, |s| {
            ContactValue::parse(s).map_err(|e| ParseError::header("Contact", e.to_string()))
        })
    }

    /// Every Route value, top first.
    pub fn routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.list(&HeaderName::Route, |s| {
            NameAddr::parse(s).map_err(|e| ParseError::header("Route", e.to_string()))
        })
    }

    /// Every Record-Route value, top first.
    pub fn record_routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.list(&HeaderName::RecordRoute, |s| {
            NameAddr::parse(s).map_err(|e| ParseError::header("Record-Route", e.to_string()))
        })
    }

    fn number(&self, name: &HeaderName, label: &'static str) -> Result<Option<u64>, ParseError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let s = str_of(name, v)?.trim_matches([' ', '\t']);
        if !scan::all_digits(s) {
            return Err(ParseError::header(label, "not a decimal number"));
        }
        Ok(Some(scan::parse_digits(s).unwrap_or(u64::MAX)))
    }

    /// The Max-Forwards value (an error when not a number or larger than `u32`).
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        self.number(&HeaderName::MaxForwards, "Max-Forwards")?
            .map(|n| u32::try_from(n).map_err(|_| ParseError::OutOfRange("Max-Forwards")))
            .transpose()
    }

    /// The Expires value in seconds; values beyond `u32` saturate at `u32::MAX`.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        Ok(self
            .number(&HeaderName::Expires, "Expires")?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    /// The Content-Type value (media type with parameters), if present and UTF-8.
    pub fn content_type(&self) -> Option<&str> {
        self.get_str(&HeaderName::ContentType)
    }
}

fn trim_bytes(b: Bytes) -> Bytes {
    let start = b.iter().position(|&c| !scan::is_wsp(c)).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|&c| !scan::is_wsp(c))
        .map_or(start, |e| e + 1);
    b.slice(start..end.max(start))
}

impl IntoIterator for Headers {
    type Item = Header;
    type IntoIter = std::vec::IntoIter<Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<I: IntoIterator<Item = Header>>(iter: I) -> Self {
        Headers(iter.into_iter().collect())
    }
}

impl Extend<Header> for Headers {
    fn extend<I: IntoIterator<Item = Header>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(HeaderName::parse("v"), HeaderName::Via);
        assert_eq!(HeaderName::parse("CALL-id"), HeaderName::CallId);
        assert_eq!(HeaderName::parse("i").as_str(), "Call-ID");
        assert_eq!(
            HeaderName::parse("www-authenticate").as_str(),
            "WWW-Authenticate"
        );
        assert_eq!(
            HeaderName::parse("X-Foo"),
            HeaderName::Other("x-foo".into())
        );
        assert_eq!(HeaderName::parse("X-Foo").as_str(), "X-Foo");
        assert_eq!(HeaderName::Other("Via".into()), HeaderName::Via);
    }

    #[test]
    fn list_edits() {
        let mut h = Headers::new();
        h.push(
            HeaderName::Via,
            "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2",
        );
        h.push(HeaderName::Via, "SIP/2.0/UDP c;branch=z9hG4bK3");
        h.push_front(HeaderName::Via, "SIP/2.0/UDP top;branch=z9hG4bK0");
        assert_eq!(h.vias().unwrap().len(), 4);
        assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK0"));
        assert_eq!(
            h.remove_first(&HeaderName::Via).unwrap(),
            "SIP/2.0/UDP top;branch=z9hG4bK0"
        );
        assert_eq!(
            h.remove_first(&HeaderName::Via).unwrap(),
            "SIP/2.0/UDP a;branch=z9hG4bK1"
        );
        assert_eq!(
            h.get(&HeaderName::Via).unwrap(),
            "SIP/2.0/UDP b;branch=z9hG4bK2"
        );
        assert_eq!(h.values(&HeaderName::Via).len(), 2);
        h.set(HeaderName::Via, "SIP/2.0/TCP x");
        assert_eq!(h.len(), 1);
        assert_eq!(h.remove(&HeaderName::Via), 1);
        assert!(h.is_empty());
    }

    #[test]
    fn typed() {
        let mut h = Headers::new();
        h.push(HeaderName::Contact, "\"A, B\" <sip:a@b>;q=0.1, <sip:c@d>");
        h.push(HeaderName::Date, "Sat, 13 Nov 2010 23:29:00 GMT");
        h.push(HeaderName::MaxForwards, "0070");
        h.push(HeaderName::Expires, "99999999999");
        assert_eq!(h.contacts().unwrap().len(), 2);
        assert_eq!(h.values(&HeaderName::Date).len(), 1);
        assert_eq!(h.max_forwards().unwrap(), Some(70));
        assert_eq!(h.expires().unwrap(), Some(u32::MAX));
        assert_eq!(h.call_id(), Err(ParseError::MissingHeader("Call-ID")));
        h.push(HeaderName::CallId, "a b");
        assert!(h.call_id().is_err());
    }
}
