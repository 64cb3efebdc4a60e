//! Cutting a TCP/TLS byte stream into SIP messages by Content-Length (RFC 3261 §18.3) and
//! recognising CRLF keep-alives (RFC 5626 §3.5.1).

use bytes::{Bytes, BytesMut};

use super::error::FramingError;
use super::header::HeaderName;
use super::scan;

/// One item cut from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete message (start line, headers and body), ready for [`super::Message::parse`].
    Message(Bytes),
    /// A double CRLF keep-alive ping; answer with a single CRLF.
    KeepAlive,
    /// A single CRLF pong (the answer to our ping).
    Pong,
}

/// Splits a byte stream into messages framed by their Content-Length.
///
/// After [`StreamFramer::next`] returns an error the stream cannot be resynchronised: the
/// connection must be closed, and later calls return the same error.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    max_message: usize,
    failed: Option<FramingError>,
    /// How many leading bytes of `buf` were already searched for the end of the headers.
    scanned: usize,
    /// The total length of the message at the front of `buf`, once its headers are complete.
    pending: Option<usize>,
}

impl StreamFramer {
    /// A framer that accepts messages of at most `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        StreamFramer {
            buf: BytesMut::new(),
            max_message,
            failed: None,
            scanned: 0,
            pending: None,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// The number of buffered bytes not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete item, `None` when more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Frame, FramingError>> {
        if let Some(e) = &self.failed {
            return Some(Err(e.clone()));
        }
        if self.buf.starts_with(b"\r\n\r\n") {
            let _ = self.buf.split_to(4);
            self.scanned = 0;
            return Some(Ok(Frame::KeepAlive));
        }
        if self.buf.starts_with(b"\r\n") {
            // A lone CRLF is a pong; a CRLF followed by more CR/LF may be the start of a ping.
            if self.buf.len() == 2 || (self.buf[2] != b'\r' && self.buf[2] != b'\n') {
                let _ = self.buf.split_to(2);
                self.scanned = 0;
                return Some(Ok(Frame::Pong));
            }
            if self.buf.len() == 3 {
                return None;
            }
            // "\r\n\r" + something other than "\n": drop the CRLF as a pong.
            let _ = self.buf.split_to(2);
            self.scanned = 0;
            return Some(Ok(Frame::Pong));
        }
        let total = match self.pending {
            Some(total) => total,
            None => {
                // Resume the search where the last one stopped (minus a partial terminator), so
                // that a message arriving in small pieces is scanned once, not quadratically.
                let from = self.scanned.saturating_sub(3);
                let head_end = match find_head_end(&self.buf[from..]) {
                    Some(i) => from + i,
                    None => {
                        self.scanned = self.buf.len();
                        if self.buf.len() > self.max_message {
                            return Some(Err(
                                self.fail(FramingError::HeadersTooLarge(self.max_message))
                            ));
                        }
                        return None;
                    }
                };
                if head_end > self.max_message {
                    return Some(Err(
                        self.fail(FramingError::HeadersTooLarge(self.max_message))
                    ));
                }
                let length = match content_length(&self.buf[..head_end]) {
                    Ok(Some(n)) => n,
                    Ok(None) => return Some(Err(self.fail(FramingError::MissingContentLength))),
                    Err(e) => return Some(Err(self.fail(e))),
                };
                match head_end.checked_add(length) {
                    Some(t) if t <= self.max_message => {
                        self.pending = Some(t);
                        t
                    }
                    _ => {
                        return Some(Err(
                            self.fail(FramingError::BodyTooLarge(head_end.saturating_add(length)))
                        ));
                    }
                }
            }
        };
        if self.buf.len() < total {
            return None;
        }
        self.pending = None;
        self.scanned = 0;
        Some(Ok(Frame::Message(self.buf.split_to(total).freeze())))
    }

    fn fail(&mut self, e: FramingError) -> FramingError {
        self.failed = Some(e.clone());
        self.buf.clear();
        self.scanned = 0;
        self.pending = None;
        e
    }
}

/// The end (exclusive) of the header section: after the first empty line, CRLF or bare LF.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(nl) = buf[i..].iter().position(|&c| c == b'\n') {
        let at = i + nl;
        match buf.get(at + 1) {
            Some(b'\n') => return Some(at + 2),
            Some(b'\r') if buf.get(at + 2) == Some(&b'\n') => return Some(at + 3),
            _ => {}
        }
        i = at + 1;
    }
    None
}

/// Finds the Content-Length (or `l`) header in a header block; folded lines are joined.
fn content_length(head: &[u8]) -> Result<Option<usize>, FramingError> {
    let mut found: Option<usize> = None;
    let mut lines = head
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    // Skip the start line.
    lines.next();
    let mut current: Option<Vec<u8>> = None;
    let finish = |value: Vec<u8>, found: &mut Option<usize>| -> Result<(), FramingError> {
        let text = String::from_utf8_lossy(&value);
        let t = text.trim_matches([' ', '\t']);
        let n = scan::parse_digits(t)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| FramingError::InvalidContentLength(t.chars().take(30).collect()))?;
        match found {
            Some(prev) if *prev != n => Err(FramingError::InvalidContentLength(
                "conflicting values".into(),
            )),
            _ => {
                *found = Some(n);
                Ok(())
            }
        }
    };
    for line in lines {
        if line.first().is_some_and(|&c| scan::is_wsp(c)) {
            if let Some(v) = current.as_mut() {
                v.push(b' ');
                v.extend_from_slice(line);
            }
            continue;
        }
        if let Some(v) = current.take() {
            finish(v, &mut found)?;
        }
        if let Some(colon) = line.iter().position(|&c| c == b':') {
            let name = String::from_utf8_lossy(&line[..colon]);
            if HeaderName::parse(name.trim_end_matches([' ', '\t'])) == HeaderName::ContentLength {
                current = Some(line[colon + 1..].to_vec());
            }
        }
    }
    if let Some(v) = current.take() {
        finish(v, &mut found)?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\nVia: SIP/2.0/TCP h\r\n\r\nabc";

    #[test]
    fn frames_split_anywhere() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(MSG);
        for chunk in 1..stream.len() {
            let mut f = StreamFramer::new(4096);
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                f.push(piece);
                while let Some(item) = f.next() {
                    out.push(item.unwrap());
                }
            }
            let msgs: Vec<_> = out
                .iter()
                .filter(|f| matches!(f, Frame::Message(_)))
                .collect();
            assert_eq!(msgs.len(), 2, "chunk size {chunk}");
            assert_eq!(msgs[0], &Frame::Message(Bytes::from_static(MSG)));
            assert_eq!(f.buffered(), 0);
        }
    }

    #[test]
    fn bare_lf_and_byte_by_byte() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\nl: 2\nVia: SIP/2.0/TCP h\n\nok";
        let mut f = StreamFramer::new(4096);
        let mut out = Vec::new();
        for b in msg.iter().chain(MSG.iter()) {
            f.push(&[*b]);
            while let Some(item) = f.next() {
                out.push(item.unwrap());
            }
        }
        assert_eq!(
            out,
            vec![
                Frame::Message(Bytes::from_static(msg)),
                Frame::Message(Bytes::from_static(MSG))
            ]
        );
    }

    #[test]
    fn keepalive_and_pong() {
        let mut f = StreamFramer::new(4096);
        f.push(b"\r\n\r\n");
        assert_eq!(f.next(), Some(Ok(Frame::KeepAlive)));
        f.push(b"\r\n");
        assert_eq!(f.next(), Some(Ok(Frame::Pong)));
        assert_eq!(f.next(), None);
    }

    #[test]
    fn errors_poison() {
        let mut f = StreamFramer::new(4096);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n");
        assert_eq!(f.next(), Some(Err(FramingError::MissingContentLength)));
        assert_eq!(f.next(), Some(Err(FramingError::MissingContentLength)));
        let mut f = StreamFramer::new(100);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1000\r\n\r\n");
        assert!(matches!(f.next(), Some(Err(FramingError::BodyTooLarge(_)))));
        let mut f = StreamFramer::new(16);
        f.push(&[b'a'; 64]);
        assert!(matches!(
            f.next(),
            Some(Err(FramingError::HeadersTooLarge(16)))
        ));
        let mut f = StreamFramer::new(100);
        f.push(b"X sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n");
        assert!(matches!(
            f.next(),
            Some(Err(FramingError::InvalidContentLength(_)))
        ));
    }
}
