//! Splitting an outgoing message (or file) into SEND chunks (RFC 4975 §5.1, §7.1.1).
//!
//! The chunker does not hold the data: the caller hands it each piece (read from memory or a
//! file at [`Chunker::position`]), and gets a SEND request with the right `Byte-Range` and flag.

use bytes::Bytes;
use rand::Rng;

use super::message::{
    BYTE_RANGE, ByteRange, CONTENT_TYPE, Continuation, FAILURE_REPORT, FROM_PATH, FailureReport,
    Headers, MESSAGE_ID, Method, Request, SUCCESS_REPORT, TO_PATH, body_contains_end_line,
};
use super::{MsrpError, MsrpUri};

/// Characters used for generated transaction and message ids.
const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn random_id<R: Rng + ?Sized>(rng: &mut R, len: usize) -> String {
    (0..len)
        .map(|_| char::from(ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())]))
        .collect()
}

/// A fresh transaction id (12 alphanumerics, about 71 bits).
pub fn new_transaction_id<R: Rng + ?Sized>(rng: &mut R) -> String {
    random_id(rng, 12)
}

/// A fresh Message-ID (20 alphanumerics, about 119 bits; unique per RFC 4975 §7.1.1).
pub fn new_message_id<R: Rng + ?Sized>(rng: &mut R) -> String {
    random_id(rng, 20)
}

/// Builds the SEND chunks of one message.
#[derive(Debug, Clone)]
pub struct Chunker {
    headers: Headers,
    total: Option<u64>,
    position: u64,
    chunk_size: usize,
    finished: bool,
}

impl Chunker {
    /// A chunker for a message of `total` bytes (`None` when unknown, e.g. a live stream) that
    /// goes from `from_path` to `to_path`, with chunks of at most `chunk_size` bytes (at least 1).
    pub fn new(
        to_path: &[MsrpUri],
        from_path: &[MsrpUri],
        message_id: &str,
        content_type: &str,
        total: Option<u64>,
        chunk_size: usize,
    ) -> Self {
        let mut headers = Headers::new();
        headers.push(TO_PATH, MsrpUri::format_list(to_path));
        headers.push(FROM_PATH, MsrpUri::format_list(from_path));
        headers.push(MESSAGE_ID, message_id);
        headers.push(CONTENT_TYPE, content_type);
        Chunker {
            headers,
            total,
            position: 0,
            chunk_size: chunk_size.max(1),
            finished: false,
        }
    }

    /// Asks for reports: `Success-Report` and `Failure-Report` headers on every chunk
    /// (`None` leaves the header out, i.e. the defaults `no` and `yes`).
    pub fn with_reports(mut self, success: Option<bool>, failure: Option<FailureReport>) -> Self {
        if let Some(s) = success {
            self.headers
                .set(SUCCESS_REPORT, if s { "yes" } else { "no" });
        }
        if let Some(f) = failure {
            self.headers.set(FAILURE_REPORT, f.as_str());
        }
        self
    }

    /// Adds a header to every chunk (e.g. `Content-Disposition` or other MIME headers).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(name, value);
        self
    }

    /// The Message-ID.
    pub fn message_id(&self) -> &str {
        self.headers.get(MESSAGE_ID).unwrap_or_default()
    }

    /// Bytes already chunked (0-based offset of the next chunk's first byte).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The total size, if known.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// The configured maximum chunk size.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Whether the last chunk (or an abort) has been produced.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// How many bytes the next chunk should carry: the chunk size, or what remains if less.
    pub fn next_len(&self) -> usize {
        match self.total {
            Some(t) => {
                let left = t.saturating_sub(self.position);
                usize::try_from(left).map_or(self.chunk_size, |l| l.min(self.chunk_size))
            }
            None => self.chunk_size,
        }
    }

    /// Continues from a 0-based byte `position`: resuming a transfer (RFC 5547 `a=file-range`),
    /// or re-sending after an interrupted chunk whose tail never went out.
    pub fn seek(&mut self, position: u64) {
        self.position = position;
        self.finished = false;
    }

    /// The next chunk carrying `data` (which starts at [`Chunker::position`]). With a known total,
    /// the chunk that reaches it is the last (`$`); with an unknown total, `last` says so (the
    /// total then becomes known). A fresh transaction id is drawn from `rng` until the body cannot
    /// be mistaken for its end-line.
    pub fn next_chunk<R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        data: &[u8],
        last: bool,
    ) -> Result<Request, MsrpError> {
        if self.finished {
            return Err(MsrpError::Finished);
        }
        let len = data.len() as u64;
        let end = self.position + len;
        let (total, last) = match self.total {
            Some(t) => {
                if end > t {
                    return Err(MsrpError::InconsistentRange(
                        "chunk goes past the total size",
                    ));
                }
                (Some(t), end == t)
            }
            None if last => (Some(end), true),
            None => (None, false),
        };
        if self.total.is_none() && last {
            self.total = Some(end);
        }
        let range = ByteRange {
            start: self.position + 1,
            end: Some(end),
            total,
        };
        let mut headers = self.headers.clone();
        headers.push(BYTE_RANGE, range.to_string());
        let tid = loop {
            let tid = new_transaction_id(rng);
            if !body_contains_end_line(data, &tid) {
                break tid;
            }
        };
        self.position = end;
        self.finished = last;
        Ok(Request {
            transaction_id: tid,
            method: Method::Send,
            headers,
            body: Some(Bytes::copy_from_slice(data)),
            continuation: if last {
                Continuation::Complete
            } else {
                Continuation::More
            },
        })
    }

    /// An abort chunk (`#`, RFC 4975 §7.1.1): an empty body at the current position; the
    /// message is then finished.
    pub fn abort<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Request {
        let mut headers = self.headers.clone();
        let range = ByteRange {
            start: self.position + 1,
            end: Some(self.position),
            total: self.total,
        };
        headers.push(BYTE_RANGE, range.to_string());
        self.finished = true;
        Request {
            transaction_id: new_transaction_id(rng),
            method: Method::Send,
            headers,
            body: Some(Bytes::new()),
            continuation: Continuation::Aborted,
        }
    }

    /// Splits a whole in-memory message into chunks of `chunk_size` bytes (one empty chunk for
    /// an empty message).
    pub fn split<R: Rng + ?Sized>(
        mut self,
        rng: &mut R,
        data: &[u8],
    ) -> Result<Vec<Request>, MsrpError> {
        self.total = Some(data.len() as u64);
        let mut out = Vec::new();
        if data.is_empty() {
            out.push(self.next_chunk(rng, data, true)?);
            return Ok(out);
        }
        for piece in data.chunks(self.chunk_size) {
            out.push(self.next_chunk(rng, piece, false)?);
        }
        Ok(out)
    }
}
