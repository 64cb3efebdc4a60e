//! MSRP requests and responses (RFC 4975 §7, §9), typed header values and printing.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use super::{MsrpError, MsrpUri};
use crate::auth::{Challenge, Credentials};

/// `To-Path`.
pub const TO_PATH: &str = "To-Path";
/// `From-Path`.
pub const FROM_PATH: &str = "From-Path";
/// `Message-ID`.
pub const MESSAGE_ID: &str = "Message-ID";
/// `Byte-Range`.
pub const BYTE_RANGE: &str = "Byte-Range";
/// `Success-Report`.
pub const SUCCESS_REPORT: &str = "Success-Report";
/// `Failure-Report`.
pub const FAILURE_REPORT: &str = "Failure-Report";
/// `Status`.
pub const STATUS: &str = "Status";
/// `Content-Type`.
pub const CONTENT_TYPE: &str = "Content-Type";
/// `Use-Path` (RFC 4976).
pub const USE_PATH: &str = "Use-Path";
/// `Expires` (RFC 4976).
pub const EXPIRES: &str = "Expires";
/// `Min-Expires` (RFC 4976).
pub const MIN_EXPIRES: &str = "Min-Expires";
/// `Max-Expires` (RFC 4976).
pub const MAX_EXPIRES: &str = "Max-Expires";
/// `WWW-Authenticate` (RFC 4976).
pub const WWW_AUTHENTICATE: &str = "WWW-Authenticate";
/// `Authorization` (RFC 4976).
pub const AUTHORIZATION: &str = "Authorization";
/// `Authentication-Info` (RFC 4976).
pub const AUTHENTICATION_INFO: &str = "Authentication-Info";

/// An MSRP method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `SEND`: a message or a chunk of one.
    Send,
    /// `REPORT`: delivery status of a message.
    Report,
    /// `AUTH`: authentication to a relay (RFC 4976).
    Auth,
    /// Any other method (upper-case token), answered 501 by endpoints.
    Other(String),
}

impl Method {
    /// The method name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Send => "SEND",
            Method::Report => "REPORT",
            Method::Auth => "AUTH",
            Method::Other(s) => s,
        }
    }
}

impl FromStr for Method {
    type Err = MsrpError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "SEND" => Ok(Method::Send),
            "REPORT" => Ok(Method::Report),
            "AUTH" => Ok(Method::Auth),
            _ if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_uppercase()) => {
                Ok(Method::Other(s.to_owned()))
            }
            _ => Err(MsrpError::InvalidStartLine("invalid method")),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The continuation flag of an end-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Continuation {
    /// `$`: the last chunk of the message.
    #[default]
    Complete,
    /// `+`: more chunks follow (also an interrupted chunk).
    More,
    /// `#`: the sender aborted the message.
    Aborted,
}

impl Continuation {
    /// The flag byte.
    pub fn as_byte(self) -> u8 {
        match self {
            Continuation::Complete => b'$',
            Continuation::More => b'+',
            Continuation::Aborted => b'#',
        }
    }

    /// Parses a flag byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'$' => Some(Continuation::Complete),
            b'+' => Some(Continuation::More),
            b'#' => Some(Continuation::Aborted),
            _ => None,
        }
    }
}

/// `Byte-Range: start-end/total` (1-based, inclusive; `end` and `total` may be `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    /// First byte (1-based).
    pub start: u64,
    /// Last byte (inclusive), `None` for `*`.
    pub end: Option<u64>,
    /// Total message size, `None` for `*`.
    pub total: Option<u64>,
}

impl ByteRange {
    /// Parses a header value.
    pub fn parse(s: &str) -> Result<Self, MsrpError> {
        let bad = |reason| MsrpError::InvalidHeaderValue {
            name: BYTE_RANGE,
            reason,
        };
        let (range, total) = s.trim().split_once('/').ok_or(bad("no '/'"))?;
        let (start, end) = range.split_once('-').ok_or(bad("no '-'"))?;
        let num = |t: &str| -> Result<u64, MsrpError> {
            if t.is_empty() || t.len() > 19 || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("not a number"));
            }
            t.parse().map_err(|_| bad("number out of range"))
        };
        let start = num(start)?;
        if start == 0 {
            return Err(bad("start is 0"));
        }
        let end = if end == "*" { None } else { Some(num(end)?) };
        let total = if total == "*" {
            None
        } else {
            Some(num(total)?)
        };
        if let Some(e) = end {
            // An empty chunk is written start-(start-1), e.g. 1-0/0.
            if e.saturating_add(1) < start {
                return Err(bad("end before start"));
            }
            if total.is_some_and(|t| e > t) {
                return Err(bad("end after total"));
            }
        }
        Ok(ByteRange { start, end, total })
    }

    /// The 0-based offset of the first byte (0 for a hand-built range starting at 0).
    pub fn offset(&self) -> u64 {
        self.start.saturating_sub(1)
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-", self.start)?;
        match self.end {
            Some(e) => write!(f, "{e}/")?,
            None => f.write_str("*/")?,
        }
        match self.total {
            Some(t) => write!(f, "{t}"),
            None => f.write_str("*"),
        }
    }
}

/// `Failure-Report` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FailureReport {
    /// `yes` (the default): responses and failure REPORTs.
    #[default]
    Yes,
    /// `no`: no responses, no failure REPORTs.
    No,
    /// `partial`: only negative responses and failure REPORTs.
    Partial,
}

impl FailureReport {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReport::Yes => "yes",
            FailureReport::No => "no",
            FailureReport::Partial => "partial",
        }
    }
}

/// `Status: namespace code [comment]` (RFC 4975 §9, in REPORTs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusHeader {
    /// The namespace (`000` = MSRP response codes).
    pub namespace: u16,
    /// The status code.
    pub code: u16,
    /// The reason text, if any.
    pub comment: Option<String>,
}

impl StatusHeader {
    /// A status in namespace 000 with the standard comment.
    pub fn new(code: u16) -> Self {
        StatusHeader {
            namespace: 0,
            code,
            comment: Some(default_comment(code).to_owned()),
        }
    }

    /// Parses a header value such as `000 200 OK`.
    pub fn parse(s: &str) -> Result<Self, MsrpError> {
        let bad = |reason| MsrpError::InvalidHeaderValue {
            name: STATUS,
            reason,
        };
        let s = s.trim();
        let mut it = s.splitn(3, ' ');
        let three = |t: Option<&str>| -> Result<u16, MsrpError> {
            let t = t.ok_or(bad("too short"))?;
            if t.len() != 3 || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("not three digits"));
            }
            t.parse().map_err(|_| bad("not a number"))
        };
        let namespace = three(it.next())?;
        let code = three(it.next())?;
        let comment = it
            .next()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        Ok(StatusHeader {
            namespace,
            code,
            comment,
        })
    }
}

impl fmt::Display for StatusHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03} {:03}", self.namespace, self.code)?;
        if let Some(c) = &self.comment {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

/// The comment RFC 4975 §7.2/§10 associates with a status code.
pub fn default_comment(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        408 => "Request Timeout",
        413 => "Message Too Large",
        415 => "Unsupported Media Type",
        423 => "Interval Out-of-Bounds",
        481 => "Session Does Not Exist",
        501 => "Not Implemented",
        506 => "Wrong Session",
        _ => "Unknown",
    }
}

/// Headers in wire order (names compared case-insensitively, values kept verbatim without surrounding spaces).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    list: Vec<(String, String)>,
}

impl Headers {
    /// An empty header list.
    pub fn new() -> Self {
        Headers::default()
    }

    /// Appends a header.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.list.push((name.to_owned(), value.into()));
    }

    /// Replaces every header `name` by a single one (appended if absent).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .list
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(i) => {
                self.list[i].1 = value;
                let mut seen = 0usize;
                self.list.retain(|(n, _)| {
                    if n.eq_ignore_ascii_case(name) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.push(name, value),
        }
    }

    /// Removes every header `name`.
    pub fn remove(&mut self, name: &str) {
        self.list.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.list
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.list
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All headers as (name, value) in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.list.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// No headers at all.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn required(&self, name: &'static str) -> Result<&str, MsrpError> {
        self.get(name).ok_or(MsrpError::MissingHeader(name))
    }

    /// `To-Path` URIs (required).
    pub fn to_path(&self) -> Result<Vec<MsrpUri>, MsrpError> {
        MsrpUri::parse_list(self.required(TO_PATH)?)
    }

    /// `From-Path` URIs (required).
    pub fn from_path(&self) -> Result<Vec<MsrpUri>, MsrpError> {
        MsrpUri::parse_list(self.required(FROM_PATH)?)
    }

    /// `Message-ID`, if present.
    pub fn message_id(&self) -> Option<&str> {
        self.get(MESSAGE_ID)
    }

    /// `Byte-Range`, if present.
    pub fn byte_range(&self) -> Result<Option<ByteRange>, MsrpError> {
        self.get(BYTE_RANGE).map(ByteRange::parse).transpose()
    }

    /// `Success-Report` (default `no`).
    pub fn success_report(&self) -> Result<bool, MsrpError> {
        match self.get(SUCCESS_REPORT).map(str::trim) {
            None | Some("no") => Ok(false),
            Some("yes") => Ok(true),
            Some(_) => Err(MsrpError::InvalidHeaderValue {
                name: SUCCESS_REPORT,
                reason: "neither yes nor no",
            }),
        }
    }

    /// `Failure-Report` (default `yes`).
    pub fn failure_report(&self) -> Result<FailureReport, MsrpError> {
        match self.get(FAILURE_REPORT).map(str::trim) {
            None | Some("yes") => Ok(FailureReport::Yes),
            Some("no") => Ok(FailureReport::No),
            Some("partial") => Ok(FailureReport::Partial),
            Some(_) => Err(MsrpError::InvalidHeaderValue {
                name: FAILURE_REPORT,
                reason: "not yes, no or partial",
            }),
        }
    }

    /// `Status`, if present.
    pub fn status(&self) -> Result<Option<StatusHeader>, MsrpError> {
        self.get(STATUS).map(StatusHeader::parse).transpose()
    }

    /// `Content-Type`, if present.
    pub fn content_type(&self) -> Option<&str> {
        self.get(CONTENT_TYPE)
    }

    /// `Use-Path` URIs (RFC 4976), if present.
    pub fn use_path(&self) -> Result<Option<Vec<MsrpUri>>, MsrpError> {
        self.get(USE_PATH).map(MsrpUri::parse_list).transpose()
    }

    fn seconds(&self, name: &'static str) -> Result<Option<u32>, MsrpError> {
        self.get(name)
            .map(|v| {
                let v = v.trim();
                if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(MsrpError::InvalidHeaderValue {
                        name,
                        reason: "not a number of seconds",
                    });
                }
                v.parse().map_err(|_| MsrpError::InvalidHeaderValue {
                    name,
                    reason: "out of range",
                })
            })
            .transpose()
    }

    /// `Expires` seconds (RFC 4976), if present.
    pub fn expires(&self) -> Result<Option<u32>, MsrpError> {
        self.seconds(EXPIRES)
    }

    /// `Min-Expires` seconds (RFC 4976), if present.
    pub fn min_expires(&self) -> Result<Option<u32>, MsrpError> {
        self.seconds(MIN_EXPIRES)
    }

    /// `Max-Expires` seconds (RFC 4976), if present.
    pub fn max_expires(&self) -> Result<Option<u32>, MsrpError> {
        self.seconds(MAX_EXPIRES)
    }

    /// Every parsable digest challenge in `WWW-Authenticate` headers, in order.
    pub fn challenges(&self) -> Vec<Challenge> {
        crate::auth::parse_challenges(self.get_all(WWW_AUTHENTICATE))
    }

    /// The digest credentials in `Authorization`, if present.
    pub fn credentials(&self) -> Result<Option<Credentials>, MsrpError> {
        Ok(self
            .get(AUTHORIZATION)
            .map(Credentials::parse)
            .transpose()?)
    }
}

/// An MSRP request (one chunk of a message for SEND).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The transaction id (also in the end-line).
    pub transaction_id: String,
    /// The method.
    pub method: Method,
    /// Headers in order (To-Path and From-Path are printed first whatever their position).
    pub headers: Headers,
    /// The body (chunk data); `None` when the request has no content stuff.
    pub body: Option<Bytes>,
    /// The end-line flag.
    pub continuation: Continuation,
}

/// An MSRP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The transaction id of the request answered.
    pub transaction_id: String,
    /// The status code (three digits).
    pub status: u16,
    /// The comment after the code, if any.
    pub comment: Option<String>,
    /// Headers in order.
    pub headers: Headers,
    /// The end-line flag (always `$` in practice).
    pub continuation: Continuation,
}

/// An MSRP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// Whether `tid` is a valid transaction id (`ident`: an alphanumeric and 3 to 31 more of
/// alphanumerics and `.-+%=`).
pub fn is_valid_transaction_id(tid: &str) -> bool {
    let b = tid.as_bytes();
    (4..=32).contains(&b.len())
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+' | b'%' | b'='))
}

/// The end-line `-------<tid><flag>` (without CRLF).
pub fn end_line(tid: &str, flag: Continuation) -> Vec<u8> {
    let mut v = Vec::with_capacity(tid.len() + 8);
    v.extend_from_slice(b"-------");
    v.extend_from_slice(tid.as_bytes());
    v.push(flag.as_byte());
    v
}

/// Whether `body` contains what a receiver would take as the end-line of `tid`.
pub fn body_contains_end_line(body: &[u8], tid: &str) -> bool {
    let mut needle = Vec::with_capacity(tid.len() + 9);
    needle.extend_from_slice(b"\r\n-------");
    needle.extend_from_slice(tid.as_bytes());
    // The framer takes the first "\r\n-------tid" + flag + "\r\n" after the blank line as the
    // end; on the wire the body is followed by "\r\n", which can complete a match.
    let mut probe = Vec::with_capacity(body.len() + 2);
    probe.extend_from_slice(body);
    probe.extend_from_slice(b"\r\n");
    let mut from = 0;
    while let Some(pos) = find(&probe[from..], &needle) {
        let at = from + pos + needle.len();
        if at + 3 <= probe.len()
            && Continuation::from_byte(probe[at]).is_some()
            && &probe[at + 1..at + 3] == b"\r\n"
        {
            return true;
        }
        from += pos + 1;
    }
    false
}

/// First position of `needle` in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&b| b == first) {
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
            None => return None,
        }
    }
    None
}

fn write_headers(out: &mut Vec<u8>, headers: &Headers) {
    for name in [TO_PATH, FROM_PATH] {
        for v in headers.get_all(name) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(sanitize(v).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    for (n, v) in headers.iter() {
        if n.eq_ignore_ascii_case(TO_PATH) || n.eq_ignore_ascii_case(FROM_PATH) {
            continue;
        }
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(sanitize(v).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn sanitize(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\r', '\n']) {
        std::borrow::Cow::Owned(v.replace(['\r', '\n'], " "))
    } else {
        std::borrow::Cow::Borrowed(v)
    }
}

impl Request {
    /// A request without headers or body.
    pub fn new(transaction_id: &str, method: Method) -> Self {
        Request {
            transaction_id: transaction_id.to_owned(),
            method,
            headers: Headers::new(),
            body: None,
            continuation: Continuation::Complete,
        }
    }

    /// The bytes before the body: start line, headers, and the blank line when there is a body.
    pub fn head_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"MSRP ");
        out.extend_from_slice(self.transaction_id.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
        write_headers(&mut out, &self.headers);
        if self.body.is_some() {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// The whole request on the wire. Header values with CR/LF have them turned into spaces;
    /// the caller must make sure the body does not contain the end-line ([`Request::check_body`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.head_bytes();
        if let Some(body) = &self.body {
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&end_line(&self.transaction_id, self.continuation));
        out.extend_from_slice(b"\r\n");
        out
    }

    /// Fails with [`MsrpError::EndLineInBody`] when the body would be cut short by a receiver.
    pub fn check_body(&self) -> Result<(), MsrpError> {
        match &self.body {
            Some(b) if body_contains_end_line(b, &self.transaction_id) => {
                Err(MsrpError::EndLineInBody(self.transaction_id.clone()))
            }
            _ => Ok(()),
        }
    }

    /// RFC 4975 checks a receiver makes before acting: To-Path/From-Path present and valid, a
    /// body only with Content-Type, valid Byte-Range/reports/Status, Message-ID on SEND and REPORT.
    pub fn validate(&self) -> Result<(), MsrpError> {
        self.headers.to_path()?;
        self.headers.from_path()?;
        self.headers.byte_range()?;
        self.headers.success_report()?;
        self.headers.failure_report()?;
        self.headers.status()?;
        if self.body.is_some() && self.headers.content_type().is_none() {
            return Err(MsrpError::MissingHeader(CONTENT_TYPE));
        }
        match self.method {
            Method::Send => {
                self.headers
                    .message_id()
                    .ok_or(MsrpError::MissingHeader(MESSAGE_ID))?;
            }
            Method::Report => {
                self.headers
                    .message_id()
                    .ok_or(MsrpError::MissingHeader(MESSAGE_ID))?;
                self.headers
                    .status()?
                    .ok_or(MsrpError::MissingHeader(STATUS))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The body, or an empty slice.
    pub fn body_bytes(&self) -> &[u8] {
        self.body.as_deref().unwrap_or_default()
    }
}

impl Response {
    /// A response to `request`: To-Path is the first From-Path URI of the request and From-Path
    /// the first To-Path URI (RFC 4975 §7.2); the comment is the standard one for `status`.
    pub fn for_request(request: &Request, status: u16) -> Result<Self, MsrpError> {
        let to = request.headers.from_path()?;
        let from = request.headers.to_path()?;
        let mut headers = Headers::new();
        if let Some(u) = to.first() {
            headers.push(TO_PATH, u.to_string());
        }
        if let Some(u) = from.first() {
            headers.push(FROM_PATH, u.to_string());
        }
        Ok(Response {
            transaction_id: request.transaction_id.clone(),
            status,
            comment: Some(default_comment(status).to_owned()),
            headers,
            continuation: Continuation::Complete,
        })
    }

    /// The response on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"MSRP ");
        out.extend_from_slice(self.transaction_id.as_bytes());
        out.extend_from_slice(format!(" {:03}", self.status).as_bytes());
        if let Some(c) = &self.comment {
            out.push(b' ');
            out.extend_from_slice(sanitize(c).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        write_headers(&mut out, &self.headers);
        out.extend_from_slice(&end_line(&self.transaction_id, self.continuation));
        out.extend_from_slice(b"\r\n");
        out
    }

    /// Checks To-Path/From-Path are present and valid.
    pub fn validate(&self) -> Result<(), MsrpError> {
        self.headers.to_path()?;
        self.headers.from_path()?;
        Ok(())
    }
}

impl Message {
    /// Parses exactly one complete message (with its end-line; trailing bytes are an error).
    pub fn parse(bytes: &[u8]) -> Result<Self, MsrpError> {
        let mut framer = super::Framer::new(super::FramerLimits {
            max_header_bytes: super::framer::DEFAULT_MAX_HEADER_BYTES,
            max_body_bytes: bytes.len(),
        });
        framer.push(bytes);
        let msg = framer.pop()?.ok_or(MsrpError::InvalidEndLine)?;
        if framer.buffered() != 0 {
            return Err(MsrpError::InvalidEndLine);
        }
        Ok(msg)
    }

    /// The message on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> &str {
        match self {
            Message::Request(r) => &r.transaction_id,
            Message::Response(r) => &r.transaction_id,
        }
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// See [`Request::validate`] / [`Response::validate`].
    pub fn validate(&self) -> Result<(), MsrpError> {
        match self {
            Message::Request(r) => r.validate(),
            Message::Response(r) => r.validate(),
        }
    }
}
