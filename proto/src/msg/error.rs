//! Errors of the SIP message layer.

/// Why bytes could not be parsed into a SIP message or a typed header value.
///
/// Every variant says what was wrong; [`ParseError::reason`] gives a short text for the
/// reason phrase of a 400 response and [`ParseError::status_code`] the status a server
/// should answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input holds no message (empty, or only line breaks).
    #[error("empty message")]
    Empty,
    /// The request or status line is malformed.
    #[error("malformed start line: {0}")]
    StartLine(String),
    /// The SIP version is well formed but not `SIP/2.0` (a server answers 505).
    #[error("unsupported SIP version {0:?}")]
    Version(String),
    /// A method token is malformed.
    #[error("invalid method {0:?}")]
    Method(String),
    /// A status code is not three digits between 100 and 699.
    #[error("invalid status code {0:?}")]
    Status(String),
    /// A URI is malformed.
    #[error("invalid URI: {0}")]
    Uri(String),
    /// The Request-URI uses a scheme this implementation does not support (a server answers 416).
    #[error("unsupported URI scheme {0:?}")]
    UnsupportedScheme(String),
    /// A header line is malformed (no colon, bad name, stray continuation line).
    #[error("malformed header line: {0}")]
    HeaderLine(String),
    /// A header value does not follow its grammar.
    #[error("invalid {header} header: {detail}")]
    Header {
        /// The canonical header name.
        header: String,
        /// What was wrong.
        detail: String,
    },
    /// A mandatory header is missing.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header that may appear once appears several times or holds several values.
    #[error("more than one {0} header value")]
    DuplicateHeader(&'static str),
    /// More header lines than the configured limit.
    #[error("more than {0} header lines")]
    TooManyHeaders(usize),
    /// A line longer than the configured limit.
    #[error("a line longer than {0} bytes")]
    LineTooLong(usize),
    /// The whole message is larger than the configured limit.
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    /// Content-Length is not a non-negative decimal number that fits, or values disagree.
    #[error("invalid Content-Length: {0}")]
    ContentLength(String),
    /// Content-Length announces more bytes than the message holds.
    #[error("Content-Length {declared} larger than the {available} body bytes received")]
    BodyTruncated {
        /// The announced body length.
        declared: usize,
        /// The body bytes actually present.
        available: usize,
    },
    /// The CSeq method differs from the request method.
    #[error("CSeq method {cseq} does not match request method {method}")]
    CSeqMismatch {
        /// The method of the request line.
        method: String,
        /// The method in the CSeq header.
        cseq: String,
    },
    /// A numeric field is larger than its grammar allows.
    #[error("{0} value out of range")]
    OutOfRange(&'static str),
    /// Text that must be UTF-8 is not.
    #[error("{0} is not valid UTF-8")]
    Utf8(&'static str),
    /// A response was given where a request was expected, or the reverse.
    #[error("expected a {0}")]
    WrongKind(&'static str),
}

impl ParseError {
    /// A short human-readable text suitable for the reason phrase of an error response.
    pub fn reason(&self) -> String {
        let text = match self {
            ParseError::Empty => "Empty Message".to_string(),
            ParseError::StartLine(_) => "Malformed Start Line".to_string(),
            ParseError::Version(_) => "Version Not Supported".to_string(),
            ParseError::Method(_) => "Invalid Method".to_string(),
            ParseError::Status(_) => "Invalid Status Code".to_string(),
            ParseError::Uri(_) => "Malformed URI".to_string(),
            ParseError::UnsupportedScheme(_) => "Unsupported URI Scheme".to_string(),
            ParseError::HeaderLine(_) => "Malformed Header Line".to_string(),
            ParseError::Header { header, .. } => format!("Invalid {header} Header"),
            ParseError::MissingHeader(h) => format!("Missing {h} Header"),
            ParseError::DuplicateHeader(h) => format!("Multiple {h} Values"),
            ParseError::TooManyHeaders(_) => "Too Many Headers".to_string(),
            ParseError::LineTooLong(_) => "Line Too Long".to_string(),
            ParseError::TooLarge(_) => "Message Too Large".to_string(),
            ParseError::ContentLength(_) => "Invalid Content-Length".to_string(),
            ParseError::BodyTruncated { .. } => "Content-Length Larger Than Body".to_string(),
            ParseError::CSeqMismatch { .. } => "CSeq Method Mismatch".to_string(),
            ParseError::OutOfRange(what) => format!("{what} Out Of Range"),
            ParseError::Utf8(what) => format!("{what} Not UTF-8"),
            ParseError::WrongKind(_) => "Unexpected Message Kind".to_string(),
        };
        // A reason phrase may not hold control characters; header names come from the peer.
        text.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(100)
            .collect()
    }

    /// The status code a server should answer a request that failed this way (400, 416 or 505).
    pub fn status_code(&self) -> u16 {
        match self {
            ParseError::Version(_) => 505,
            ParseError::UnsupportedScheme(_) => 416,
            _ => 400,
        }
    }

    /// Shorthand for a [`ParseError::Header`].
    pub(crate) fn header(header: &str, detail: impl Into<String>) -> Self {
        ParseError::Header {
            header: header.to_string(),
            detail: detail.into(),
        }
    }
}

/// Why a byte stream (TCP/TLS) could not be split into messages; the connection must be closed
/// (RFC 3261 §18.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// No end of the header section within the size limit.
    #[error("headers larger than {0} bytes")]
    HeadersTooLarge(usize),
    /// A message on a stream without a Content-Length header.
    #[error("message on a stream without Content-Length")]
    MissingContentLength,
    /// A Content-Length that is not a decimal number, or several that disagree.
    #[error("invalid Content-Length {0:?}")]
    InvalidContentLength(String),
    /// The announced message is larger than the size limit.
    #[error("message of {0} bytes larger than the limit")]
    BodyTooLarge(usize),
}
