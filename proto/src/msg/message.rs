//! Requests, responses, the datagram parser and the printer (RFC 3261 §7, §18.3, §25).

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::ParseError;
use super::header::{HeaderName, Headers};
use super::method::Method;
use super::scan;
use super::uri::Uri;
use super::via::CSeq;

/// Default cap on the number of header lines in one message.
pub const MAX_HEADERS: usize = 256;
/// Default cap on the length of one (unfolded) header line or the start line, in bytes.
pub const MAX_LINE_LEN: usize = 16 * 1024;
/// Default cap on the size of one message, in bytes.
pub const MAX_MESSAGE_LEN: usize = 1024 * 1024;

/// Size limits applied while parsing, so hostile input cannot make the parser allocate without
/// bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Maximum number of header lines.
    pub max_headers: usize,
    /// Maximum length of the start line or of one header line including its continuations.
    pub max_line_len: usize,
    /// Maximum size of the whole message.
    pub max_message_len: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_headers: MAX_HEADERS,
            max_line_len: MAX_LINE_LEN,
            max_message_len: MAX_MESSAGE_LEN,
        }
    }
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// The header lines.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code (100–699).
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The header lines.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

/// A SIP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// The default reason phrase of a status code (RFC 3261 §21 and extensions), or a generic one
/// for the class.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        430 => "Flow Failed",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => match status / 100 {
            1 => "Provisional",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

/// The byte ranges of one header line: name, and the value pieces (first line + continuations).
struct RawHeader {
    name: (usize, usize),
    pieces: Vec<(usize, usize)>,
}

/// Finds the next line in `data` from `pos`: returns (start, end without CR/LF, next position).
fn next_line(data: &[u8], pos: usize) -> Option<(usize, usize, usize)> {
    if pos >= data.len() {
        return None;
    }
    let rest = &data[pos..];
    match rest.iter().position(|&c| c == b'\n') {
        Some(nl) => {
            let end = if nl > 0 && rest[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            Some((pos, pos + end, pos + nl + 1))
        }
        None => Some((pos, data.len(), data.len())),
    }
}

fn trim_range(data: &[u8], mut s: usize, mut e: usize) -> (usize, usize) {
    while s < e && scan::is_wsp(data[s]) {
        s += 1;
    }
    while e > s && scan::is_wsp(data[e - 1]) {
        e -= 1;
    }
    (s, e)
}

/// The result of splitting a message into start line, header lines and body, before any
/// interpretation.
struct Skeleton {
    start: (usize, usize),
    headers: Vec<RawHeader>,
    body_start: usize,
    /// True when the header section ended with an empty line.
    terminated: bool,
}

fn split_message(data: &[u8], limits: &ParseLimits) -> Result<Skeleton, ParseError> {
    if data.len() > limits.max_message_len {
        return Err(ParseError::TooLarge(limits.max_message_len));
    }
    // RFC 3261 §7.5: ignore CRLFs before the start line.
    let mut pos = 0;
    while pos < data.len() && (data[pos] == b'\r' || data[pos] == b'\n') {
        pos += 1;
    }
    let (s, e, mut pos) = next_line(data, pos).ok_or(ParseError::Empty)?;
    if e - s > limits.max_line_len {
        return Err(ParseError::LineTooLong(limits.max_line_len));
    }
    let start = (s, e);
    let mut headers: Vec<RawHeader> = Vec::new();
    let mut terminated = false;
    let mut current_len = 0usize;
    while let Some((s, e, next)) = next_line(data, pos) {
        pos = next;
        if s == e {
            terminated = true;
            break;
        }
        // A CR is only allowed as part of a line end.
        if data[s..e].contains(&b'\r') {
            return Err(ParseError::HeaderLine(
                "bare CR inside a header line".into(),
            ));
        }
        if scan::is_wsp(data[s]) {
            // A continuation line (header folding).
            let last = headers.last_mut().ok_or_else(|| {
                ParseError::HeaderLine("continuation line before any header".into())
            })?;
            current_len += e - s;
            if current_len > limits.max_line_len {
                return Err(ParseError::LineTooLong(limits.max_line_len));
            }
            let (ts, te) = trim_range(data, s, e);
            if ts < te {
                last.pieces.push((ts, te));
            }
            continue;
        }
        if e - s > limits.max_line_len {
            return Err(ParseError::LineTooLong(limits.max_line_len));
        }
        current_len = e - s;
        if headers.len() >= limits.max_headers {
            return Err(ParseError::TooManyHeaders(limits.max_headers));
        }
        let line = &data[s..e];
        let colon = line.iter().position(|&c| c == b':').ok_or_else(|| {
            ParseError::HeaderLine(format!(
                "no colon in {:?}",
                String::from_utf8_lossy(&line[..line.len().min(60)])
            ))
        })?;
        let (ns, ne) = trim_range(data, s, s + colon);
        if ns != s || ns == ne || !data[ns..ne].iter().all(|&c| scan::is_token_char(c)) {
            return Err(ParseError::HeaderLine(format!(
                "invalid header name {:?}",
                String::from_utf8_lossy(&data[s..(s + colon).min(s + 60)])
            )));
        }
        let (vs, ve) = trim_range(data, s + colon + 1, e);
        let mut pieces = Vec::with_capacity(1);
        if vs < ve {
            pieces.push((vs, ve));
        }
        headers.push(RawHeader {
            name: (ns, ne),
            pieces,
        });
    }
    Ok(Skeleton {
        start,
        headers,
        body_start: pos,
        terminated,
    })
}

/// Builds the value of a header from its pieces: a zero-copy slice for one piece, otherwise the
/// pieces joined by single spaces.
fn header_value(data: &Bytes, pieces: &[(usize, usize)]) -> Bytes {
    match pieces {
        [] => Bytes::new(),
        [(s, e)] => data.slice(*s..*e),
        many => {
            let len = many.iter().map(|(s, e)| e - s + 1).sum();
            let mut out = BytesMut::with_capacity(len);
            for (i, (s, e)) in many.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b' ');
                }
                out.put_slice(&data[*s..*e]);
            }
            out.freeze()
        }
    }
}

/// Checks `SIP/x.y`; returns Ok for SIP/2.0, a Version error for another well-formed version.
fn check_version(v: &str) -> Result<(), ParseError> {
    let numbers = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .and_then(|_| v.get(4..));
    let well_formed = numbers.is_some_and(|n| {
        n.split_once('.')
            .is_some_and(|(a, b)| scan::all_digits(a) && scan::all_digits(b))
    });
    if !well_formed {
        return Err(ParseError::StartLine(format!(
            "invalid version {:?}",
            v.chars().take(40).collect::<String>()
        )));
    }
    if numbers == Some("2.0") {
        Ok(())
    } else {
        Err(ParseError::Version(v.chars().take(40).collect()))
    }
}

/// Interprets Content-Length and slices the body (datagram rules, RFC 3261 §18.3).
fn body_of(data: &Bytes, headers: &Headers, body_start: usize) -> Result<Bytes, ParseError> {
    let available = data.len().saturating_sub(body_start);
    let mut declared: Option<usize> = None;
    for v in headers.get_all(&HeaderName::ContentLength) {
        let s = std::str::from_utf8(v)
            .map_err(|_| ParseError::ContentLength("not UTF-8".into()))?
            .trim_matches([' ', '\t']);
        if !scan::all_digits(s) {
            return Err(ParseError::ContentLength(format!(
                "{:?} is not a decimal number",
                s.chars().take(30).collect::<String>()
            )));
        }
        let n = scan::parse_digits(s)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| ParseError::ContentLength("too large".into()))?;
        match declared {
            Some(d) if d != n => {
                return Err(ParseError::ContentLength("conflicting values".into()));
            }
            _ => declared = Some(n),
        }
    }
    match declared {
        // No Content-Length on a datagram: the body is the rest of the datagram.
        None => Ok(data.slice(body_start.min(data.len())..)),
        Some(n) if n > available => Err(ParseError::BodyTruncated {
            declared: n,
            available,
        }),
        // Extra bytes after the body in a datagram are discarded.
        Some(n) => Ok(data.slice(body_start..body_start + n)),
    }
}

impl Message {
    /// Parses and validates a message from one datagram (or one frame cut by [`super::StreamFramer`]).
    ///
    /// Requests are checked with [`validate_request`], responses with [`validate_response`].
    pub fn parse(data: Bytes) -> Result<Message, ParseError> {
        let msg = Self::parse_unvalidated(data, &ParseLimits::default())?;
        match &msg {
            Message::Request(r) => validate_request(r)?,
            Message::Response(r) => validate_response(r)?,
        }
        Ok(msg)
    }

    /// Parses the syntax of a message (start line, header lines, body framing) without the
    /// semantic checks of [`validate_request`] / [`validate_response`].
    pub fn parse_unvalidated(data: Bytes, limits: &ParseLimits) -> Result<Message, ParseError> {
        let sk = split_message(&data, limits)?;
        let _ = sk.terminated;
        let mut headers = Headers::new();
        for h in &sk.headers {
            let name = std::str::from_utf8(&data[h.name.0..h.name.1])
                .map_err(|_| ParseError::HeaderLine("header name not UTF-8".into()))?;
            headers.push(HeaderName::parse(name), header_value(&data, &h.pieces));
        }
        let body = body_of(&data, &headers, sk.body_start)?;
        let line = std::str::from_utf8(&data[sk.start.0..sk.start.1])
            .map_err(|_| ParseError::Utf8("start line"))?;
        let is_response = line
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"));
        if is_response {
            let mut parts = line.splitn(3, ' ');
            let version = parts.next().unwrap_or("");
            check_version(version)?;
            let code = parts.next().unwrap_or("");
            let status = if code.len() == 3 && scan::all_digits(code) {
                code.parse::<u16>().ok().filter(|c| (100..=699).contains(c))
            } else {
                None
            }
            .ok_or_else(|| ParseError::Status(code.chars().take(20).collect()))?;
            let reason = parts.next().unwrap_or("");
            if reason.bytes().any(|c| c.is_ascii_control() && c != b'\t') {
                return Err(ParseError::StartLine(
                    "control character in reason phrase".into(),
                ));
            }
            Ok(Message::Response(Response {
                status,
                reason: reason.to_string(),
                headers,
                body,
            }))
        } else {
            let parts: Vec<&str> = line.split(' ').collect();
            let [method, uri, version] = parts.as_slice() else {
                return Err(ParseError::StartLine(
                    "request line is not Method SP Request-URI SP SIP-Version".into(),
                ));
            };
            if method.is_empty() || uri.is_empty() {
                return Err(ParseError::StartLine(
                    "empty element in request line".into(),
                ));
            }
            let method: Method = method.parse()?;
            check_version(version)?;
            let uri = Uri::parse(uri)?;
            Ok(Message::Request(Request {
                method,
                uri,
                headers,
                body,
            }))
        }
    }

    /// The header lines.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// The header lines, mutably.
    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    /// True for a request.
    pub fn is_request(&self) -> bool {
        matches!(self, Message::Request(_))
    }

    /// Prints the message (Content-Length recomputed from the body).
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

/// Writes header lines with canonical names, Content-Length replaced by the body length (at the
/// position of the first Content-Length line, or at the end), an empty line and the body.
fn write_rest(out: &mut BytesMut, headers: &Headers, body: &Bytes) {
    let mut wrote_length = false;
    for h in headers.iter() {
        if h.name == HeaderName::ContentLength {
            if !wrote_length {
                put_content_length(out, body.len());
                wrote_length = true;
            }
            continue;
        }
        out.put_slice(h.name.as_str().as_bytes());
        out.put_slice(b": ");
        put_line_safe(out, &h.value);
        out.put_slice(b"\r\n");
    }
    if !wrote_length {
        put_content_length(out, body.len());
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
}

/// Writes the `Content-Length` line without an intermediate `String`.
fn put_content_length(out: &mut BytesMut, len: usize) {
    out.put_slice(b"Content-Length: ");
    // Writing into a BytesMut cannot fail (it grows as needed).
    let _ = write!(out, "{len}");
    out.put_slice(b"\r\n");
}

/// Writes a header value or reason phrase; a CR or LF (which would end the line and let a value
/// inject headers) is written as a space.
fn put_line_safe(out: &mut BytesMut, value: &[u8]) {
    if value.iter().any(|&c| c == b'\r' || c == b'\n') {
        out.extend(
            value
                .iter()
                .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
        );
    } else {
        out.put_slice(value);
    }
}

fn headers_len(headers: &Headers) -> usize {
    headers
        .iter()
        .map(|h| h.name.as_str().len() + h.value.len() + 4)
        .sum::<usize>()
        + 32
}

impl Request {
    /// A request with no headers and an empty body.
    pub fn new(method: Method, uri: Uri) -> Self {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Parses and validates a request.
    pub fn parse(data: Bytes) -> Result<Self, ParseError> {
        match Message::parse(data)? {
            Message::Request(r) => Ok(r),
            Message::Response(_) => Err(ParseError::WrongKind("request")),
        }
    }

    /// Prints the request (Content-Length recomputed from the body).
    pub fn to_bytes(&self) -> Bytes {
        let uri = self.uri.to_string();
        let mut out = BytesMut::with_capacity(
            self.method.as_str().len()
                + uri.len()
                + 12
                + headers_len(&self.headers)
                + self.body.len(),
        );
        out.put_slice(self.method.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(uri.as_bytes());
        out.put_slice(b" SIP/2.0\r\n");
        write_rest(&mut out, &self.headers, &self.body);
        out.freeze()
    }
}

impl Response {
    /// A response with the default reason phrase, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            reason: reason_phrase(status).to_string(),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Parses and validates a response.
    pub fn parse(data: Bytes) -> Result<Self, ParseError> {
        match Message::parse(data)? {
            Message::Response(r) => Ok(r),
            Message::Request(_) => Err(ParseError::WrongKind("response")),
        }
    }

    /// RFC 3261 §8.2.6: a response to `req` with its Via lines, From, To, Call-ID and CSeq copied
    /// (and Timestamp for 100). Adding a To tag, Contact and Record-Route is the caller's job.
    pub fn for_request(req: &Request, status: u16) -> Response {
        let mut resp = Response::new(status);
        for h in req.headers.iter() {
            let copy = matches!(
                h.name,
                HeaderName::Via
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq
            ) || (status == 100 && h.name == HeaderName::Timestamp);
            if copy {
                resp.headers.push(h.name.clone(), h.value.clone());
            }
        }
        resp
    }

    /// Prints the response (Content-Length recomputed from the body).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(
            self.reason.len() + 16 + headers_len(&self.headers) + self.body.len(),
        );
        // Writing into a BytesMut cannot fail (it grows as needed).
        let _ = write!(out, "SIP/2.0 {} ", self.status);
        put_line_safe(&mut out, self.reason.as_bytes());
        out.put_slice(b"\r\n");
        write_rest(&mut out, &self.headers, &self.body);
        out.freeze()
    }
}

/// Headers that may appear at most once and hold a single value.
const SINGLETONS: [(HeaderName, &str); 6] = [
    (HeaderName::From, "From"),
    (HeaderName::To, "To"),
    (HeaderName::CallId, "Call-ID"),
    (HeaderName::CSeq, "CSeq"),
    (HeaderName::MaxForwards, "Max-Forwards"),
    (HeaderName::ContentLength, "Content-Length"),
];

/// The checks shared by requests and responses; returns the parsed CSeq so a caller does not
/// parse it again.
fn check_common(headers: &Headers) -> Result<CSeq, ParseError> {
    // One pass over the lines counts every singleton (and remembers its first value) instead of
    // one pass per singleton.
    let mut counts = [0usize; SINGLETONS.len()];
    let mut firsts: [Option<&Bytes>; SINGLETONS.len()] = [None; SINGLETONS.len()];
    for h in headers.iter() {
        if let Some(i) = SINGLETONS.iter().position(|(name, _)| *name == h.name) {
            counts[i] += 1;
            firsts[i].get_or_insert(&h.value);
        }
    }
    for (i, (_, label)) in SINGLETONS.iter().enumerate() {
        if counts[i] > 1 {
            return Err(ParseError::DuplicateHeader(label));
        }
        if let Some(v) = firsts[i]
            && std::str::from_utf8(v).is_ok_and(|s| scan::find_top_level(s, b',').is_some())
        {
            return Err(ParseError::DuplicateHeader(label));
        }
    }
    // The typed values are checked in place, without building them (the transaction layer and
    // the TU parse the few they need).
    if headers.check_vias()? == 0 {
        return Err(ParseError::MissingHeader("Via"));
    }
    headers.check_from()?;
    headers.check_to()?;
    headers.call_id()?;
    let cseq = headers.cseq()?;
    if cseq.seq >= 1 << 31 {
        return Err(ParseError::OutOfRange("CSeq"));
    }
    if let Some(mf) = headers.max_forwards()?
        && mf > 255
    {
        return Err(ParseError::OutOfRange("Max-Forwards"));
    }
    if let Some(date) = headers.get(&HeaderName::Date) {
        let ok = std::str::from_utf8(date).is_ok_and(is_sip_date);
        if !ok {
            return Err(ParseError::header("Date", "not an RFC 1123 date in GMT"));
        }
    }
    Ok(cseq)
}

/// Semantic checks of a request that parsed (RFC 3261 §8.2, RFC 4475 §3.1.2/§3.3): mandatory
/// headers present and well formed (Via, From, To, Call-ID, CSeq), single-valued headers not
/// repeated, CSeq method equal to the request method, scalar fields in range, no headers in the
/// Request-URI, a well-formed Date.
pub fn validate_request(req: &Request) -> Result<(), ParseError> {
    let cseq = check_common(&req.headers)?;
    if cseq.method != req.method {
        return Err(ParseError::CSeqMismatch {
            method: req.method.to_string(),
            cseq: cseq.method.to_string(),
        });
    }
    if !req.uri.headers.is_empty() {
        return Err(ParseError::Uri(
            "headers are not allowed in a Request-URI".into(),
        ));
    }
    req.headers.check_contacts()?;
    // Proxies route on these: they must be usable.
    req.headers.check_routes()?;
    Ok(())
}

/// RFC 3261 §8.2.2.1, RFC 4475 §3.3.2/§3.3.3: a Request-URI scheme other than sip, sips or tel
/// is answered with 416. Returns [`ParseError::UnsupportedScheme`] (for [`error_response`]) then.
pub fn check_request_uri_scheme(req: &Request) -> Result<(), ParseError> {
    if req.uri.scheme.is_supported() {
        Ok(())
    } else {
        Err(ParseError::UnsupportedScheme(req.uri.scheme.to_string()))
    }
}

/// Semantic checks of a response: mandatory headers present and well formed (Via, From, To,
/// Call-ID, CSeq), single-valued headers not repeated.
pub fn validate_response(resp: &Response) -> Result<(), ParseError> {
    check_common(&resp.headers).map(drop)
}

/// True for `Date` values of the form `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 3261 §20.17).
fn is_sip_date(s: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let s = s.trim_matches([' ', '\t']);
    let Some((day, rest)) = s.split_once(',') else {
        return false;
    };
    let parts: Vec<&str> = rest.split_whitespace().collect();
    let [dd, mon, year, time, zone] = parts.as_slice() else {
        return false;
    };
    let num = |t: &str, n: usize, max: u32| {
        t.len() == n && scan::all_digits(t) && t.parse::<u32>().is_ok_and(|v| v <= max)
    };
    let time_ok = {
        let t: Vec<&str> = time.split(':').collect();
        t.len() == 3 && num(t[0], 2, 23) && num(t[1], 2, 59) && num(t[2], 2, 60)
    };
    DAYS.contains(&day)
        && num(dd, 2, 31)
        && MONTHS.contains(mon)
        && num(year, 4, 9999)
        && time_ok
        && *zone == "GMT"
}

/// The header lines of data that failed to parse, found by a lenient scan (for error responses).
fn lenient_headers(data: &[u8]) -> Option<Headers> {
    // The input is already in memory and only ranges are recorded, so the only cap needed here
    // is on the number of lines (an over-long line must still allow answering with 400).
    let limits = ParseLimits {
        max_headers: 4 * MAX_HEADERS,
        max_line_len: usize::MAX,
        max_message_len: usize::MAX,
    };
    let sk = split_message(data, &limits).ok()?;
    let data = Bytes::copy_from_slice(data);
    let mut headers = Headers::new();
    for h in &sk.headers {
        let name = std::str::from_utf8(&data[h.name.0..h.name.1]).ok()?;
        headers.push(HeaderName::parse(name), header_value(&data, &h.pieces));
    }
    Some(headers)
}

/// A deterministic To tag for a stateless error response, derived from the request.
fn stateless_tag(headers: &Headers) -> String {
    // FNV-1a over Call-ID and the top Via: the same request always gets the same tag.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        headers.get(&HeaderName::CallId),
        headers.get(&HeaderName::Via),
    ]
    .into_iter()
    .flatten()
    {
        for &b in part.iter() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// For data that failed to parse as a request: an error response (400, or 505 for a version
/// error, 416 for an unsupported scheme) as bytes, with the error as reason phrase, when enough
/// survived to build one (the Via lines and CSeq; From, To and Call-ID are copied when present,
/// and a To tag is added). `None` means drop silently: responses and ACKs are never answered
/// (RFC 3261 §17.2.1, §18.3), nor are requests whose Via cannot be recovered.
pub fn error_response(data: &[u8], err: &ParseError) -> Option<Bytes> {
    let start = data.iter().position(|&c| c != b'\r' && c != b'\n')?;
    let line_end = data[start..]
        .iter()
        .position(|&c| c == b'\n' || c == b'\r')
        .map_or(data.len(), |e| start + e);
    let line = &data[start..line_end];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    if line.starts_with(b"ACK ") {
        return None;
    }
    let headers = lenient_headers(data)?;
    let vias: Vec<_> = headers.get_all(&HeaderName::Via).cloned().collect();
    let cseq = headers.get(&HeaderName::CSeq)?.clone();
    if vias.is_empty() || cseq.is_empty() {
        return None;
    }
    // Only answer when the sent-by of the top Via is usable to route the response back: any SIP
    // version (a request with an unsupported version still gets its 505), broken parameters
    // ignored (RFC 4475 badinv01 still gets its 400).
    let top = headers.get_str(&HeaderName::Via)?;
    let first = scan::split_top_level(top, b',').into_iter().next()?;
    let sent_by = first.split(';').next().unwrap_or(first);
    super::via::Via::parse_any_version(sent_by).ok()?;
    if std::str::from_utf8(&cseq).is_ok_and(|s| s.trim_end().ends_with(" ACK")) {
        return None;
    }
    let status = err.status_code();
    let mut resp = Response::new(status);
    if status == 400 {
        resp.reason = err.reason();
    }
    for v in vias {
        resp.headers.push(HeaderName::Via, v);
    }
    if let Some(f) = headers.get(&HeaderName::From) {
        resp.headers.push(HeaderName::From, f.clone());
    }
    if let Some(t) = headers.get(&HeaderName::To) {
        let has_tag = std::str::from_utf8(t)
            .ok()
            .and_then(|s| super::NameAddr::parse(s).ok())
            .is_some_and(|a| a.tag().is_some());
        let mut value = BytesMut::from(&t[..]);
        if !has_tag {
            value.put_slice(format!(";tag={}", stateless_tag(&headers)).as_bytes());
        }
        resp.headers.push(HeaderName::To, value.freeze());
    }
    if let Some(c) = headers.get(&HeaderName::CallId) {
        resp.headers.push(HeaderName::CallId, c.clone());
    }
    resp.headers.push(HeaderName::CSeq, cseq);
    Some(resp.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    #[test]
    fn parse_and_print() {
        let m = Message::parse(Bytes::from_static(INVITE.as_bytes())).unwrap();
        let Message::Request(r) = &m else { panic!() };
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.headers.cseq().unwrap().seq, 314159);
        assert_eq!(&r.body[..], b"v=0\n");
        assert_eq!(m.to_bytes(), INVITE.as_bytes());
    }

    #[test]
    fn body_rules() {
        let extra = format!("{INVITE}garbage");
        let m = Message::parse(Bytes::from(extra)).unwrap();
        assert_eq!(&m.body()[..], b"v=0\n");
        let short = &INVITE[..INVITE.len() - 2];
        assert!(matches!(
            Message::parse(Bytes::copy_from_slice(short.as_bytes())),
            Err(ParseError::BodyTruncated {
                declared: 4,
                available: 2
            })
        ));
        let no_cl = INVITE.replace("Content-Length: 4\r\n", "");
        let m = Message::parse(Bytes::from(no_cl)).unwrap();
        assert_eq!(&m.body()[..], b"v=0\n");
    }

    #[test]
    fn version_and_mismatch() {
        let v = INVITE.replace(
            "bob@biloxi.example.com SIP/2.0",
            "bob@biloxi.example.com SIP/7.0",
        );
        let err = Message::parse(Bytes::from(v.clone())).unwrap_err();
        assert_eq!(err.status_code(), 505);
        let resp = error_response(v.as_bytes(), &err).unwrap();
        assert!(resp.starts_with(b"SIP/2.0 505 Version Not Supported\r\n"));
        let m = INVITE.replace("314159 INVITE", "314159 OPTIONS");
        let err = Message::parse(Bytes::from(m.clone())).unwrap_err();
        assert!(matches!(err, ParseError::CSeqMismatch { .. }));
        let resp = Response::parse(error_response(m.as_bytes(), &err).unwrap()).unwrap();
        assert_eq!(resp.status, 400);
        assert!(resp.headers.to().unwrap().tag().is_some());
    }

    #[test]
    fn for_request_copies() {
        let r = Request::parse(Bytes::from_static(INVITE.as_bytes())).unwrap();
        let resp = Response::for_request(&r, 180);
        assert_eq!(resp.headers.len(), 5);
        let parsed = Response::parse(resp.to_bytes()).unwrap();
        assert_eq!(parsed.reason, "Ringing");
        assert_eq!(
            parsed.headers.call_id().unwrap(),
            "a84b4c76e66710@pc33.atlanta.example.com"
        );
    }

    #[test]
    fn printing_cannot_inject_lines() {
        let mut r = Response::new(200);
        r.reason = "OK\r\nX-Evil: 1".into();
        r.headers.push(HeaderName::Subject, "hi\r\nX-Evil: 2");
        let b = r.to_bytes();
        assert_eq!(
            &b[..],
            b"SIP/2.0 200 OK  X-Evil: 1\r\nSubject: hi  X-Evil: 2\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn multibyte_start_lines_do_not_panic() {
        for line in [
            "SIP\u{e9}2.0 200 OK",
            "INVITE sip:a@b SIP\u{e9}.0",
            "INVITE sip:a@b S\u{e9}",
            "\u{e9}",
        ] {
            let data = format!("{line}\r\nVia: SIP/2.0/UDP h\r\n\r\n");
            assert!(Message::parse(Bytes::from(data)).is_err(), "{line}");
        }
    }

    #[test]
    fn error_response_drops_what_must_not_be_answered() {
        let err = ParseError::header("To", "bad");
        let ack = INVITE
            .replace("INVITE sip:", "ACK sip:")
            .replace("314159 INVITE", "314159 ACK");
        assert_eq!(error_response(ack.as_bytes(), &err), None);
        let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(error_response(resp.as_bytes(), &err), None);
        let no_via = INVITE.replace(
            "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n",
            "",
        );
        assert_eq!(error_response(no_via.as_bytes(), &err), None);
        assert_eq!(error_response(b"", &ParseError::Empty), None);
        assert_eq!(error_response(b"\r\n\r\n", &ParseError::Empty), None);
        // A request that already has a To tag keeps it.
        let tagged = INVITE.replace(
            "To: Bob <sip:bob@biloxi.example.com>",
            "To: <sip:b@c>;tag=x1",
        );
        let r = error_response(tagged.as_bytes(), &err).unwrap();
        let r = Response::parse(r).unwrap();
        assert_eq!(r.headers.to().unwrap().tag(), Some("x1"));
        assert_eq!(r.reason, "Invalid To Header");
    }

    #[test]
    fn dates() {
        assert!(is_sip_date("Sat, 13 Nov 2010 23:29:00 GMT"));
        assert!(!is_sip_date("Fri, 01 Jan 2010 16:00:00 EST"));
    }
}
