//! `multipart/related` bodies (RFC 2046 §5.1, RFC 2387) as used by RLS NOTIFYs (RFC 4662 §5):
//! build with a generated boundary, parse with bounds on part count and header size.

use bytes::Bytes;
use rand::RngCore;

use super::SimpleError;

/// Most parts accepted when parsing.
pub const MAX_PARTS: usize = 1024;
/// Most header lines accepted per part.
pub const MAX_PART_HEADERS: usize = 64;
/// Largest header block accepted per part, in bytes.
pub const MAX_PART_HEADER_BYTES: usize = 16 * 1024;
/// Largest body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// One body part: its MIME headers and content.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Part {
    /// Headers in order (`Content-Type`, `Content-ID`, `Content-Transfer-Encoding`, …).
    pub headers: Vec<(String, String)>,
    /// The content.
    pub body: Bytes,
}

impl Part {
    /// A part with a Content-Type and (optionally) a Content-ID given without angle brackets.
    pub fn new(content_type: &str, content_id: Option<&str>, body: impl Into<Bytes>) -> Self {
        let mut headers = vec![("Content-Type".to_string(), content_type.to_string())];
        if let Some(cid) = content_id {
            headers.push((
                "Content-ID".to_string(),
                format!("<{}>", cid.trim_start_matches('<').trim_end_matches('>')),
            ));
        }
        Part {
            headers,
            body: body.into(),
        }
    }

    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Content-Type` (default `text/plain` per RFC 2046 when absent).
    pub fn content_type(&self) -> &str {
        self.header("Content-Type").unwrap_or("text/plain")
    }

    /// `Content-ID` without its angle brackets.
    pub fn content_id(&self) -> Option<&str> {
        self.header("Content-ID")
            .map(|v| v.trim().trim_start_matches('<').trim_end_matches('>'))
    }
}

/// A random boundary (32 hex digits after a fixed prefix), valid per RFC 2046 and vanishingly
/// unlikely to occur in any body.
pub fn generate_boundary(rng: &mut impl RngCore) -> String {
    format!("tandem-{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

fn valid_boundary(b: &str) -> bool {
    !b.is_empty()
        && b.len() <= 70
        && !b.ends_with(' ')
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c))
}

/// The `Content-Type` header value for a `multipart/related` body whose root part has type
/// `root_type` and Content-ID `start` (without brackets).
pub fn content_type(boundary: &str, root_type: &str, start: Option<&str>) -> String {
    let mut s = format!("multipart/related;type=\"{root_type}\"");
    if let Some(cid) = start {
        s.push_str(&format!(";start=\"<{cid}>\""));
    }
    s.push_str(&format!(";boundary=\"{boundary}\""));
    s
}

/// A parameter of a `Content-Type` value (`boundary`, `type`, `start`), unquoted.
pub fn content_type_param(content_type: &str, name: &str) -> Option<String> {
    let mut rest = content_type.split_once(';')?.1;
    loop {
        let (k, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            let v = q.get(..end)?;
            let n = q.get(end + 1..)?;
            (v.to_string(), n.split_once(';').map(|x| x.1).unwrap_or(""))
        } else {
            let (v, n) = after.split_once(';').unwrap_or((after, ""));
            (v.trim().to_string(), n)
        };
        if k.trim().eq_ignore_ascii_case(name) {
            return Some(value);
        }
        if next.is_empty() {
            return None;
        }
        rest = next;
    }
}

/// Build a multipart body with this boundary (CRLF line ends, no preamble).
/// Fails if the boundary is invalid or occurs inside a part.
pub fn build(parts: &[Part], boundary: &str) -> Result<Bytes, SimpleError> {
    if !valid_boundary(boundary) {
        return Err(SimpleError::Multipart(format!(
            "invalid boundary {boundary:.80}"
        )));
    }
    let delim = format!("--{boundary}");
    let mut out = Vec::new();
    for p in parts {
        if find(&p.body, delim.as_bytes()).is_some() {
            return Err(SimpleError::Multipart(
                "boundary occurs inside a part".into(),
            ));
        }
        out.extend_from_slice(delim.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (n, v) in &p.headers {
            let v: String = v
                .chars()
                .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
                .collect();
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&p.body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(delim.as_bytes());
    out.extend_from_slice(b"--\r\n");
    Ok(Bytes::from(out))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Find the next delimiter line `--boundary` that starts a line at or after `from`; returns the
/// index where the delimiter's preceding line break begins (or `from` if it starts there) and
/// the index just after `--boundary`.
fn next_delimiter(body: &[u8], from: usize, delim: &[u8]) -> Option<(usize, usize)> {
    let mut at = from;
    loop {
        let rel = find(body.get(at..)?, delim)?;
        let i = at + rel;
        let line_start = i == 0 || body.get(i - 1) == Some(&b'\n');
        if line_start && delimiter_line_ends(body.get(i + delim.len()..).unwrap_or_default()) {
            let mut start = i;
            if i > from && body.get(i - 1) == Some(&b'\n') {
                start = i - 1;
                if start > from && body.get(start - 1) == Some(&b'\r') {
                    start -= 1;
                }
            }
            return Some((start, i + delim.len()));
        }
        at = i + 1;
    }
}

/// Whether what follows `--boundary` makes it a delimiter line: `--` (close), or optional
/// whitespace then a line end or the end of the body. Anything else is content that merely
/// starts like the boundary.
fn delimiter_line_ends(rest: &[u8]) -> bool {
    if rest.starts_with(b"--") {
        return true;
    }
    for b in rest {
        match b {
            b' ' | b'\t' | b'\r' => {}
            b'\n' => return true,
            _ => return false,
        }
    }
    true
}

/// Parse a multipart body with this boundary into its parts (preamble and epilogue ignored).
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, SimpleError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(SimpleError::TooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(SimpleError::Multipart("invalid boundary".into()));
    }
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let (_, mut pos) = next_delimiter(body, 0, delim)
        .ok_or_else(|| SimpleError::Multipart("no opening boundary".into()))?;
    let mut parts = Vec::new();
    loop {
        // After a delimiter: "--" closes; otherwise transport padding then a line break.
        let rest = body.get(pos..).unwrap_or_default();
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        let eol = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| SimpleError::Multipart("boundary line not terminated".into()))?;
        if !rest
            .get(..eol)
            .unwrap_or_default()
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r'))
        {
            return Err(SimpleError::Multipart("garbage after boundary".into()));
        }
        let part_start = pos + eol + 1;
        let (end, next) = next_delimiter(body, part_start, delim)
            .ok_or_else(|| SimpleError::Multipart("no closing boundary".into()))?;
        if parts.len() >= MAX_PARTS {
            return Err(SimpleError::TooManyElements { limit: MAX_PARTS });
        }
        parts.push(parse_part(body.get(part_start..end).unwrap_or_default())?);
        pos = next;
    }
}

fn parse_part(raw: &[u8]) -> Result<Part, SimpleError> {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut pos = 0;
    loop {
        let rest = raw.get(pos..).unwrap_or_default();
        if rest.is_empty() {
            // Headers without a body (or an empty part).
            return Ok(Part {
                headers,
                body: Bytes::new(),
            });
        }
        let eol = rest.iter().position(|b| *b == b'\n');
        let (line, adv) = match eol {
            Some(i) => (rest.get(..i).unwrap_or_default(), i + 1),
            None => (rest, rest.len()),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += adv;
        if pos > MAX_PART_HEADER_BYTES {
            return Err(SimpleError::Multipart("part headers too large".into()));
        }
        if line.is_empty() {
            break;
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| SimpleError::Multipart("part header is not UTF-8".into()))?;
        if line.starts_with([' ', '\t']) {
            match headers.last_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(line.trim());
                    continue;
                }
                None => return Err(SimpleError::Multipart("continuation without header".into())),
            }
        }
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| SimpleError::Multipart("part header without a colon".into()))?;
        if headers.len() >= MAX_PART_HEADERS {
            return Err(SimpleError::Multipart("too many part headers".into()));
        }
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    Ok(Part {
        headers,
        body: Bytes::copy_from_slice(raw.get(pos..).unwrap_or_default()),
    })
}
