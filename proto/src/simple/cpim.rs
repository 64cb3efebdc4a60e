//! Common Presence and Instant Messaging message format (RFC 3862, `message/cpim`).
//!
//! A CPIM message is a block of message headers, an empty line, a block of MIME content headers,
//! an empty line and the body. Header names may carry a namespace prefix declared by `NS:`
//! (`NS: imdn <urn:ietf:params:imdn>` then `imdn.Message-ID: …`); lookups by namespace resolve the
//! prefix the sender chose, so any prefix works. Lines may end in CRLF or bare LF.

use bytes::Bytes;

use super::SimpleError;
use super::imdn::Disposition;
use super::ns::IMDN_CPIM;

/// Most header lines accepted in each header block.
pub const MAX_HEADERS: usize = 128;
/// Largest header section accepted (both blocks), in bytes.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest whole message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// A `Subject` header with its optional `;lang=` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The `lang` parameter.
    pub lang: Option<String>,
    /// The subject text.
    pub text: String,
}

/// A `message/cpim` message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpimMessage {
    /// `From` (`Display Name <uri>` as written).
    pub from: Option<String>,
    /// `To` headers.
    pub to: Vec<String>,
    /// `cc` headers.
    pub cc: Vec<String>,
    /// `DateTime` (RFC 3339).
    pub datetime: Option<String>,
    /// `Subject` headers.
    pub subject: Vec<Subject>,
    /// `NS` declarations: (prefix, namespace URI); a `None` prefix is the default namespace.
    pub ns: Vec<(Option<String>, String)>,
    /// `Require` header values (header names, possibly prefixed).
    pub require: Vec<String>,
    /// Other message headers, in order, names as written (possibly `prefix.Name`).
    pub headers: Vec<(String, String)>,
    /// The content's `Content-Type`.
    pub content_type: Option<String>,
    /// Other content (MIME) headers, in order, e.g. `Content-ID`, `Content-Disposition`.
    pub content_headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

/// Split off one line (without its terminator); `None` at the end of input.
fn next_line(input: &[u8], pos: &mut usize) -> Option<Vec<u8>> {
    let rest = input.get(*pos..)?;
    if rest.is_empty() {
        return None;
    }
    match rest.iter().position(|b| *b == b'\n') {
        Some(i) => {
            let line = rest.get(..i).unwrap_or_default();
            *pos += i + 1;
            Some(line.strip_suffix(b"\r").unwrap_or(line).to_vec())
        }
        None => {
            *pos = input.len();
            Some(rest.to_vec())
        }
    }
}

/// Read a header block up to its empty line; continuation lines (leading whitespace) fold.
fn header_block(
    input: &[u8],
    pos: &mut usize,
    what: &str,
) -> Result<Vec<(String, String)>, SimpleError> {
    let mut out: Vec<(String, String)> = Vec::new();
    loop {
        let Some(line) = next_line(input, pos) else {
            return Err(SimpleError::Cpim(format!(
                "{what} headers not terminated by an empty line"
            )));
        };
        if *pos > MAX_HEADER_BYTES {
            return Err(SimpleError::Cpim("header section too large".into()));
        }
        if line.is_empty() {
            return Ok(out);
        }
        let line = String::from_utf8(line)
            .map_err(|_| SimpleError::Cpim("header line is not UTF-8".into()))?;
        if line.starts_with([' ', '\t']) {
            match out.last_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(line.trim());
                    continue;
                }
                None => {
                    return Err(SimpleError::Cpim(
                        "continuation line without a header".into(),
                    ));
                }
            }
        }
        let (name, value) = line.split_once(':').ok_or_else(|| {
            SimpleError::Cpim(format!("header line without a colon: {:.60}", line))
        })?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(SimpleError::Cpim(format!("invalid header name {name:.60}")));
        }
        if out.len() >= MAX_HEADERS {
            return Err(SimpleError::Cpim("too many headers".into()));
        }
        out.push((name.to_string(), value.trim().to_string()));
    }
}

fn clean(v: &str) -> String {
    v.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

impl CpimMessage {
    /// A message with From, To, DateTime, a content type and a body.
    pub fn new(
        from: &str,
        to: &str,
        datetime: Option<&str>,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> Self {
        CpimMessage {
            from: Some(from.to_string()),
            to: vec![to.to_string()],
            datetime: datetime.map(str::to_string),
            content_type: Some(content_type.to_string()),
            body: body.into(),
            ..CpimMessage::default()
        }
    }

    /// Parse a `message/cpim` body.
    pub fn parse(input: &[u8]) -> Result<CpimMessage, SimpleError> {
        if input.len() > MAX_MESSAGE_BYTES {
            return Err(SimpleError::TooLarge {
                limit: MAX_MESSAGE_BYTES,
            });
        }
        let mut pos = 0;
        let message_headers = header_block(input, &mut pos, "message")?;
        let content = header_block(input, &mut pos, "content")?;
        let mut m = CpimMessage::default();
        for (name, value) in message_headers {
            match name.to_ascii_lowercase().as_str() {
                "from" if m.from.is_none() => m.from = Some(value),
                "to" => m.to.push(value),
                "cc" => m.cc.push(value),
                "datetime" if m.datetime.is_none() => m.datetime = Some(value),
                "subject" => m.subject.push(parse_subject(&value)),
                "ns" => m.ns.push(parse_ns(&value)?),
                "require" => m.require.extend(
                    value
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty()),
                ),
                _ => m.headers.push((name, value)),
            }
        }
        let mut content_length = None;
        for (name, value) in content {
            match name.to_ascii_lowercase().as_str() {
                "content-type" if m.content_type.is_none() => m.content_type = Some(value),
                "content-length" => {
                    content_length = value.parse::<usize>().ok();
                    m.content_headers.push((name, value));
                }
                _ => m.content_headers.push((name, value)),
            }
        }
        let rest = input.get(pos..).unwrap_or_default();
        let body = match content_length {
            Some(n) if n <= rest.len() => rest.get(..n).unwrap_or(rest),
            _ => rest,
        };
        m.body = Bytes::copy_from_slice(body);
        Ok(m)
    }

    /// Print as a `message/cpim` body (CRLF line ends).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = String::new();
        let mut line = |n: &str, v: &str| {
            out.push_str(n);
            out.push_str(": ");
            out.push_str(&clean(v));
            out.push_str("\r\n");
        };
        if let Some(f) = &self.from {
            line("From", f);
        }
        for t in &self.to {
            line("To", t);
        }
        for c in &self.cc {
            line("cc", c);
        }
        if let Some(d) = &self.datetime {
            line("DateTime", d);
        }
        for s in &self.subject {
            match &s.lang {
                Some(l) => line("Subject", &format!(";lang={l} {}", s.text)),
                None => line("Subject", &s.text),
            }
        }
        for (p, uri) in &self.ns {
            match p {
                Some(p) => line("NS", &format!("{p} <{uri}>")),
                None => line("NS", &format!("<{uri}>")),
            }
        }
        if !self.require.is_empty() {
            line("Require", &self.require.join(", "));
        }
        for (n, v) in &self.headers {
            line(n, v);
        }
        out.push_str("\r\n");
        let mut has_ct = false;
        if let Some(ct) = &self.content_type {
            has_ct = true;
            out.push_str(&format!("Content-Type: {}\r\n", clean(ct)));
        }
        for (n, v) in &self.content_headers {
            if n.eq_ignore_ascii_case("content-length") {
                continue;
            }
            out.push_str(&format!("{n}: {}\r\n", clean(v)));
        }
        if has_ct || !self.body.is_empty() {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        let mut b = out.into_bytes();
        b.extend_from_slice(&self.body);
        Bytes::from(b)
    }

    /// The prefix the message declares for namespace `uri` (`Some("")` for a default namespace).
    pub fn prefix_for(&self, uri: &str) -> Option<&str> {
        self.ns
            .iter()
            .find(|(_, u)| u == uri)
            .map(|(p, _)| p.as_deref().unwrap_or(""))
    }

    /// The value of header `name` in namespace `ns_uri` (whatever prefix the sender used).
    pub fn header_ns(&self, ns_uri: &str, name: &str) -> Option<&str> {
        let prefix = self.prefix_for(ns_uri)?;
        self.headers
            .iter()
            .find(|(n, _)| match n.split_once('.') {
                Some((p, local)) => p == prefix && local.eq_ignore_ascii_case(name),
                None => prefix.is_empty() && n.eq_ignore_ascii_case(name),
            })
            .map(|(_, v)| v.as_str())
    }

    /// The first unprefixed header `name` among the other headers.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `imdn.Message-ID` (RFC 5438 §6.3).
    pub fn imdn_message_id(&self) -> Option<&str> {
        self.header_ns(IMDN_CPIM, "Message-ID")
    }

    /// `imdn.Disposition-Notification` (RFC 5438 §6.2); unknown values are skipped.
    pub fn imdn_disposition_notification(&self) -> Vec<Disposition> {
        self.header_ns(IMDN_CPIM, "Disposition-Notification")
            .map(|v| {
                v.split(',')
                    .filter_map(|t| Disposition::from_token(t.trim()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Set `imdn.Message-ID` and (if non-empty) `imdn.Disposition-Notification`, declaring
    /// `NS: imdn <urn:ietf:params:imdn>` when the namespace is not declared yet.
    pub fn set_imdn(&mut self, message_id: &str, dispositions: &[Disposition]) {
        let prefix = match self.prefix_for(IMDN_CPIM) {
            Some(p) => p.to_string(),
            None => {
                self.ns.push((Some("imdn".into()), IMDN_CPIM.into()));
                "imdn".to_string()
            }
        };
        let full = |n: &str| {
            if prefix.is_empty() {
                n.to_string()
            } else {
                format!("{prefix}.{n}")
            }
        };
        let mid = full("Message-ID");
        let dn = full("Disposition-Notification");
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(&mid) && !n.eq_ignore_ascii_case(&dn));
        self.headers.push((mid, message_id.to_string()));
        if !dispositions.is_empty() {
            let v: Vec<&str> = dispositions.iter().map(|d| d.as_str()).collect();
            self.headers.push((dn, v.join(", ")));
        }
    }
}

fn parse_subject(v: &str) -> Subject {
    if let Some(rest) = v.strip_prefix(';') {
        let (param, text) = rest.split_once(' ').unwrap_or((rest, ""));
        if let Some(l) = param.strip_prefix("lang=") {
            return Subject {
                lang: Some(l.to_string()),
                text: text.trim().to_string(),
            };
        }
    }
    Subject {
        lang: None,
        text: v.to_string(),
    }
}

fn parse_ns(v: &str) -> Result<(Option<String>, String), SimpleError> {
    let open = v
        .find('<')
        .ok_or_else(|| SimpleError::Cpim(format!("NS header without <uri>: {v:.60}")))?;
    let close = v
        .rfind('>')
        .filter(|c| *c > open)
        .ok_or_else(|| SimpleError::Cpim(format!("NS header without <uri>: {v:.60}")))?;
    let prefix = v.get(..open).unwrap_or_default().trim();
    let uri = v.get(open + 1..close).unwrap_or_default().trim();
    Ok((
        (!prefix.is_empty()).then(|| prefix.to_string()),
        uri.to_string(),
    ))
}
