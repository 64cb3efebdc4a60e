//! SIP messages: parsing, printing, typed headers (RFC 3261 §7, §19, §20, §25).
//!
//! [`Message::parse`] slices the input [`bytes::Bytes`]: raw header values and the body share the
//! input buffer; typed values ([`Via`], [`NameAddr`], [`CSeq`], ...) are parsed on demand through
//! the accessors of [`Headers`]. [`Message::to_bytes`] prints headers in order with canonical
//! names and always recomputes Content-Length.

mod error;
mod framer;
mod header;
mod message;
mod method;
mod name_addr;
mod scan;
mod uri;
mod via;

pub use error::{FramingError, ParseError};
pub use framer::{Frame, StreamFramer};
pub use header::{Header, HeaderName, Headers};
pub use message::{
    MAX_HEADERS, MAX_LINE_LEN, MAX_MESSAGE_LEN, Message, ParseLimits, Request, Response,
    check_request_uri_scheme, error_response, reason_phrase, validate_request, validate_response,
};
pub use method::Method;
pub use name_addr::{ContactValue, NameAddr};
pub use uri::{Host, Scheme, Uri};
pub use via::{CSeq, Via};

/// Decodes the `%HH` escapes of a URI component into bytes.
pub fn unescape(s: &str) -> Result<Vec<u8>, ParseError> {
    scan::unescape_bytes(s)
}
