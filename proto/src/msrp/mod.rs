//! MSRP (RFC 4975/4976), sans-IO: messages, chunking, reports, URIs; RFC 5547 SDP attributes.
//!
//! - [`uri`]: `msrp:`/`msrps:` URIs with the RFC 4975 §6.1 comparison rules.
//! - [`message`]: requests and responses, typed header values, printing.
//! - [`framer`]: a stream framer that pops complete messages (chunks) from TCP/TLS bytes.
//! - [`chunker`]: splits an outgoing message or file into SEND chunks.
//! - [`reassembly`]: byte-range reassembly of incoming chunks into memory or a [`reassembly::ChunkSink`].
//! - [`report`]: transaction responses, REPORT requests (RFC 4975 §7.1.2) and AUTH (RFC 4976).
//! - [`relay`]: To-Path/From-Path handling for endpoints and relays.
//! - [`sdp`]: the SDP attributes of MSRP media lines (RFC 4975 §8, RFC 5547).

pub mod chunker;
pub mod framer;
pub mod message;
pub mod reassembly;
pub mod relay;
pub mod report;
pub mod sdp;
pub mod uri;

pub use chunker::{Chunker, new_message_id, new_transaction_id};
pub use framer::{Framer, FramerLimits};
pub use message::{
    ByteRange, Continuation, FailureReport, Headers, Message, Method, Request, Response,
    StatusHeader,
};
pub use reassembly::{
    ChunkSink, Completed, FileSink, MemorySink, Progress, Reassembler, ReassemblyLimits, SeekSink,
};
pub use uri::MsrpUri;

/// The default MSRP port (RFC 4975 §15.2).
pub const DEFAULT_PORT: u16 = 2855;

/// Errors from parsing, framing, chunking and reassembling MSRP.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MsrpError {
    /// A URI that is not a valid `msrp:`/`msrps:` URI.
    #[error("invalid MSRP URI {uri:?}: {reason}")]
    InvalidUri {
        /// The offending text (truncated).
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The first line is neither a request nor a response line.
    #[error("invalid MSRP start line: {0}")]
    InvalidStartLine(&'static str),
    /// A header line without a colon or with an invalid name.
    #[error("invalid MSRP header line")]
    InvalidHeaderLine,
    /// A mandatory header is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header value that does not parse.
    #[error("invalid {name} header: {reason}")]
    InvalidHeaderValue {
        /// The header name.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The start line and headers exceed the framer's limit.
    #[error("MSRP headers longer than {limit} bytes")]
    HeadersTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A chunk body exceeds the framer's limit.
    #[error("MSRP chunk body longer than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The end-line is malformed or missing where one was expected.
    #[error("invalid MSRP end-line")]
    InvalidEndLine,
    /// The body contains this transaction's end-line: pick another transaction id.
    #[error("the body contains the end-line of transaction {0}")]
    EndLineInBody(String),
    /// The framer failed earlier; the connection must be closed.
    #[error("the MSRP stream is unusable after an earlier framing error")]
    Poisoned,
    /// A chunk's byte range contradicts the message (outside the total, overlapping differently, ...).
    #[error("inconsistent byte range: {0}")]
    InconsistentRange(&'static str),
    /// A message larger than allowed (answer 413).
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    MessageTooLarge {
        /// The (announced or reached) size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Too many messages are being reassembled at once (answer 413).
    #[error("too many incomplete messages (limit {0})")]
    TooManyMessages(usize),
    /// The in-memory reassembly budget is exhausted (answer 413).
    #[error("reassembly memory budget of {0} bytes exhausted")]
    MemoryBudget(usize),
    /// A chunk sink (file) failed.
    #[error("chunk sink I/O error: {0}")]
    Sink(#[from] std::io::Error),
    /// The chunker was used after its last chunk.
    #[error("the message has already been sent completely")]
    Finished,
    /// An SDP attribute that does not parse.
    #[error("invalid a={name} attribute: {reason}")]
    InvalidSdpAttribute {
        /// The attribute name.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Digest authentication data that does not parse.
    #[error("invalid authentication header: {0}")]
    Auth(#[from] crate::auth::AuthError),
}

impl MsrpError {
    /// The MSRP status code to answer a request that caused this error with (RFC 4975 §7.2, §10).
    ///
    /// Size and capacity problems, including a failing sink, give 413 ("stop sending this message"),
    /// since it is the only code that makes the sender give up the message; everything else is 400.
    pub fn status_code(&self) -> u16 {
        match self {
            MsrpError::BodyTooLarge { .. }
            | MsrpError::MessageTooLarge { .. }
            | MsrpError::TooManyMessages(_)
            | MsrpError::MemoryBudget(_)
            | MsrpError::Sink(_) => 413,
            _ => 400,
        }
    }
}
