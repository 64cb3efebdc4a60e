//! Stream framing: push bytes from a TCP/TLS connection, pop complete MSRP messages (chunks).
//!
//! The end of a body is the first `CRLF -------<tid><flag> CRLF` after the blank line, as RFC 4975
//! §6 prescribes (senders never put their own end-line in a body). Look-alikes with another
//! transaction id, a longer id with the same prefix, or no valid flag are body bytes. The scan is
//! incremental, so a body arriving in many small reads is examined once.

use bytes::{Buf, BytesMut};

use super::message::{self, Continuation, Headers, Method, Request, Response};
use super::{Message, MsrpError};

/// Default limit for the start line plus headers: 64 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Default limit for one chunk's body: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most CRLFs skipped between messages before the stream is considered garbage.
const MAX_BLANK_LINES: usize = 16;

/// Framer limits; exceeding one is a fatal framing error (close the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramerLimits {
    /// Bytes for the start line and headers together.
    pub max_header_bytes: usize,
    /// Bytes of one chunk's body.
    pub max_body_bytes: usize,
}

impl Default for FramerLimits {
    fn default() -> Self {
        FramerLimits {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// The parsed start line.
#[derive(Debug, Clone)]
enum StartLine {
    Request(Method),
    Response(u16, Option<String>),
}

#[derive(Debug)]
enum State {
    /// Reading lines; `line_start` is where the next unread line begins, `scan_from` where
    /// the search for its CRLF resumes (so a line trickling in byte by byte is scanned once).
    Head {
        start: Option<(String, StartLine)>,
        headers: Headers,
        line_start: usize,
        scan_from: usize,
        blank_lines: usize,
    },
    /// Searching for the end-line after the blank line.
    Body {
        tid: String,
        start: StartLine,
        headers: Headers,
        body_start: usize,
        scan_from: usize,
    },
}

impl State {
    fn fresh() -> Self {
        State::Head {
            start: None,
            headers: Headers::new(),
            line_start: 0,
            scan_from: 0,
            blank_lines: 0,
        }
    }
}

/// Incremental MSRP stream framer.
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    limits: FramerLimits,
    state: State,
    poisoned: bool,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new(FramerLimits::default())
    }
}

impl Framer {
    /// A framer with the given limits.
    pub fn new(limits: FramerLimits) -> Self {
        Framer {
            buf: BytesMut::new(),
            limits,
            state: State::fresh(),
            poisoned: false,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> FramerLimits {
        self.limits
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if !self.poisoned {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes buffered and not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Pops the next complete message. `Ok(None)` means more bytes are needed; an error means
    /// the stream cannot be framed any more (close the connection): every later call fails too.
    pub fn pop(&mut self) -> Result<Option<Message>, MsrpError> {
        if self.poisoned {
            return Err(MsrpError::Poisoned);
        }
        match self.step() {
            Ok(m) => Ok(m),
            Err(e) => {
                self.poisoned = true;
                self.buf = BytesMut::new();
                self.state = State::fresh();
                Err(e)
            }
        }
    }

    fn step(&mut self) -> Result<Option<Message>, MsrpError> {
        loop {
            match &mut self.state {
                State::Head {
                    start,
                    headers,
                    line_start,
                    scan_from,
                    blank_lines,
                } => {
                    let from = (*scan_from).max(*line_start);
                    let Some(rel) = message::find(&self.buf[from..], b"\r\n") else {
                        // a trailing CR may still be completed by the next read
                        *scan_from = self.buf.len().saturating_sub(1).max(*line_start);
                        if self.buf.len() > self.limits.max_header_bytes {
                            return Err(MsrpError::HeadersTooLarge {
                                limit: self.limits.max_header_bytes,
                            });
                        }
                        return Ok(None);
                    };
                    let line_end = from + rel;
                    let next = line_end + 2;
                    if next > self.limits.max_header_bytes {
                        return Err(MsrpError::HeadersTooLarge {
                            limit: self.limits.max_header_bytes,
                        });
                    }
                    let line = &self.buf[*line_start..line_end];
                    match start {
                        None => {
                            if line.is_empty() {
                                // tolerate stray CRLFs between messages (bounded)
                                *blank_lines += 1;
                                if *blank_lines > MAX_BLANK_LINES {
                                    return Err(MsrpError::InvalidStartLine(
                                        "too many blank lines",
                                    ));
                                }
                                self.buf.advance(next);
                                *line_start = 0;
                                *scan_from = 0;
                                continue;
                            }
                            *start = Some(parse_start_line(line)?);
                            *line_start = next;
                        }
                        Some((tid, sl)) => {
                            if line.is_empty() {
                                let tid = std::mem::take(tid);
                                let sl = sl.clone();
                                let headers = std::mem::take(headers);
                                // the body begins after the blank line; the end-line search starts
                                // with its own CRLF, so an empty body is found at once
                                self.state = State::Body {
                                    tid,
                                    start: sl,
                                    headers,
                                    body_start: next,
                                    scan_from: next,
                                };
                                continue;
                            }
                            if let Some(rest) = line.strip_prefix(b"-------") {
                                let flag = end_flag(rest, tid)?;
                                let tid = std::mem::take(tid);
                                let sl = sl.clone();
                                let headers = std::mem::take(headers);
                                self.buf.advance(next);
                                self.state = State::fresh();
                                return Ok(Some(build(tid, sl, headers, None, flag)));
                            }
                            let (name, value) = parse_header_line(line)?;
                            headers.push(&name, value);
                            *line_start = next;
                        }
                    }
                }
                State::Body {
                    tid,
                    start,
                    headers,
                    body_start,
                    scan_from,
                } => {
                    let mut needle = Vec::with_capacity(tid.len() + 9);
                    needle.extend_from_slice(b"\r\n-------");
                    needle.extend_from_slice(tid.as_bytes());
                    loop {
                        let Some(rel) = message::find(&self.buf[*scan_from..], &needle) else {
                            // nothing before len - (needle - 1) can start a match any more
                            let keep = needle.len() - 1;
                            *scan_from = self.buf.len().saturating_sub(keep).max(*scan_from);
                            if *scan_from - *body_start > self.limits.max_body_bytes {
                                return Err(MsrpError::BodyTooLarge {
                                    limit: self.limits.max_body_bytes,
                                });
                            }
                            return Ok(None);
                        };
                        let at = *scan_from + rel;
                        if at - *body_start > self.limits.max_body_bytes {
                            return Err(MsrpError::BodyTooLarge {
                                limit: self.limits.max_body_bytes,
                            });
                        }
                        let after = at + needle.len();
                        if self.buf.len() < after + 3 {
                            *scan_from = at;
                            return Ok(None);
                        }
                        let flag = Continuation::from_byte(self.buf[after]);
                        match flag {
                            Some(flag) if &self.buf[after + 1..after + 3] == b"\r\n" => {
                                let tid = std::mem::take(tid);
                                let sl = start.clone();
                                let headers = std::mem::take(headers);
                                let body_start = *body_start;
                                let mut head = self.buf.split_to(after + 3);
                                head.advance(body_start);
                                head.truncate(at - body_start);
                                let body = head.freeze();
                                self.state = State::fresh();
                                return Ok(Some(build(tid, sl, headers, Some(body), flag)));
                            }
                            _ => *scan_from = at + 1,
                        }
                    }
                }
            }
        }
    }
}

fn build(
    tid: String,
    start: StartLine,
    headers: Headers,
    body: Option<bytes::Bytes>,
    continuation: Continuation,
) -> Message {
    match start {
        StartLine::Request(method) => Message::Request(Request {
            transaction_id: tid,
            method,
            headers,
            body,
            continuation,
        }),
        // responses carry no body (RFC 4975 §7.2); one sent anyway is dropped
        StartLine::Response(status, comment) => Message::Response(Response {
            transaction_id: tid,
            status,
            comment,
            headers,
            continuation,
        }),
    }
}

fn end_flag(rest: &[u8], tid: &str) -> Result<Continuation, MsrpError> {
    let (flag, id) = rest.split_last().ok_or(MsrpError::InvalidEndLine)?;
    if id != tid.as_bytes() {
        return Err(MsrpError::InvalidEndLine);
    }
    Continuation::from_byte(*flag).ok_or(MsrpError::InvalidEndLine)
}

fn parse_start_line(line: &[u8]) -> Result<(String, StartLine), MsrpError> {
    if has_control(line) {
        return Err(MsrpError::InvalidStartLine("control character"));
    }
    let line = std::str::from_utf8(line).map_err(|_| MsrpError::InvalidStartLine("not UTF-8"))?;
    let rest = line
        .strip_prefix("MSRP ")
        .ok_or(MsrpError::InvalidStartLine("does not begin with MSRP"))?;
    let (tid, rest) = rest
        .split_once(' ')
        .ok_or(MsrpError::InvalidStartLine("no method or status"))?;
    if !message::is_valid_transaction_id(tid) {
        return Err(MsrpError::InvalidStartLine("invalid transaction id"));
    }
    let (word, comment) = match rest.split_once(' ') {
        Some((w, c)) => (w, Some(c)),
        None => (rest, None),
    };
    if word.len() == 3 && word.bytes().all(|b| b.is_ascii_digit()) {
        let status: u16 = word
            .parse()
            .map_err(|_| MsrpError::InvalidStartLine("invalid status"))?;
        if !(100..=999).contains(&status) {
            return Err(MsrpError::InvalidStartLine("invalid status"));
        }
        let comment = comment.map(str::to_owned);
        Ok((tid.to_owned(), StartLine::Response(status, comment)))
    } else {
        if comment.is_some() {
            return Err(MsrpError::InvalidStartLine("junk after method"));
        }
        Ok((tid.to_owned(), StartLine::Request(word.parse()?)))
    }
}

/// Control characters other than HTAB never appear in a start line or header (RFC 4975 §9:
/// `utf8text`); a bare CR or LF there would also print differently from how it parsed.
fn has_control(line: &[u8]) -> bool {
    line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

fn parse_header_line(line: &[u8]) -> Result<(String, String), MsrpError> {
    if has_control(line) {
        return Err(MsrpError::InvalidHeaderLine);
    }
    let line = std::str::from_utf8(line).map_err(|_| MsrpError::InvalidHeaderLine)?;
    let (name, value) = line.split_once(':').ok_or(MsrpError::InvalidHeaderLine)?;
    if name.is_empty()
        || !name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'!' | b'%' | b'*' | b'+' | b'`' | b'\'' | b'~'
                )
        })
    {
        return Err(MsrpError::InvalidHeaderLine);
    }
    let value = value.trim_matches([' ', '\t']);
    Ok((name.to_owned(), value.to_owned()))
}
