//! SIMPLE document formats: PIDF/RPID, watcher-info, resource-lists, pres-rules, CPIM, IMDN, is-composing, RLMI.
//!
//! Every XML format is parsed namespace-aware (any prefixes, default namespaces) through the bounded
//! tree in [`xml`] (≤ 1 MiB, depth 32, 20 000 elements, no DTDs) and never panics on hostile input.
//! Each type has `parse(&[u8])` and `to_xml()`; printing uses conventional prefixes.

use thiserror::Error;

pub mod conference_info;
pub mod cpim;
pub mod imdn;
pub mod iscomposing;
pub mod message_summary;
pub mod multipart;
pub mod pidf;
pub mod pres_rules;
pub mod resource_lists;
pub mod rlmi;
pub mod time;
pub mod watcherinfo;
pub mod xml;

pub use xml::RawXml;

/// Namespace URIs used by the SIMPLE formats.
pub mod ns {
    /// PIDF (RFC 3863).
    pub const PIDF: &str = "urn:ietf:params:xml:ns:pidf";
    /// PIDF data model: person, device (RFC 4479).
    pub const DATA_MODEL: &str = "urn:ietf:params:xml:ns:pidf:data-model";
    /// Rich presence extensions (RFC 4480).
    pub const RPID: &str = "urn:ietf:params:xml:ns:pidf:rpid";
    /// Contact information for presence (RFC 4482).
    pub const CIPID: &str = "urn:ietf:params:xml:ns:pidf:cipid";
    /// Presence capabilities (RFC 5196).
    pub const CAPS: &str = "urn:ietf:params:xml:ns:pidf:caps";
    /// Location types registry (RFC 4589), used by RPID place-type.
    pub const LOCATION_TYPE: &str = "urn:ietf:params:xml:ns:location-type";
    /// Common policy (RFC 4745).
    pub const COMMON_POLICY: &str = "urn:ietf:params:xml:ns:common-policy";
    /// Presence authorization rules (RFC 5025).
    pub const PRES_RULES: &str = "urn:ietf:params:xml:ns:pres-rules";
    /// Resource lists (RFC 4826).
    pub const RESOURCE_LISTS: &str = "urn:ietf:params:xml:ns:resource-lists";
    /// Watcher information (RFC 3858).
    pub const WATCHERINFO: &str = "urn:ietf:params:xml:ns:watcherinfo";
    /// Instant message disposition notification (RFC 5438).
    pub const IMDN: &str = "urn:ietf:params:xml:ns:imdn";
    /// The CPIM header namespace of IMDN (RFC 5438 §6).
    pub const IMDN_CPIM: &str = "urn:ietf:params:imdn";
    /// Message composition indication (RFC 3994).
    pub const ISCOMPOSING: &str = "urn:ietf:params:xml:ns:im-iscomposing";
    /// Resource list meta-information (RFC 4662).
    pub const RLMI: &str = "urn:ietf:params:xml:ns:rlmi";
}

/// Errors from parsing SIMPLE documents.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SimpleError {
    /// The XML is not well-formed (or uses something we refuse, such as a DOCTYPE).
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The document is not valid UTF-8.
    #[error("document is not UTF-8")]
    NotUtf8,
    /// The document exceeds the size limit.
    #[error("document larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Elements nest deeper than allowed.
    #[error("XML nested deeper than {limit} levels")]
    TooDeep {
        /// The depth limit.
        limit: usize,
    },
    /// The document has more elements (or parts, entries) than allowed.
    #[error("more than {limit} elements")]
    TooManyElements {
        /// The element limit.
        limit: usize,
    },
    /// The root element is not the one this format expects.
    #[error("expected root element {expected}, found {found}")]
    WrongRoot {
        /// `{namespace}local-name` expected.
        expected: String,
        /// `{namespace}local-name` found.
        found: String,
    },
    /// A mandatory element is absent.
    #[error("missing element <{0}>")]
    MissingElement(&'static str),
    /// A mandatory attribute is absent.
    #[error("missing attribute {attr:?} on <{element}>")]
    MissingAttribute {
        /// The element.
        element: &'static str,
        /// The attribute.
        attr: &'static str,
    },
    /// A value does not have the syntax its schema requires.
    #[error("invalid {what}: {value:?}")]
    InvalidValue {
        /// What was being parsed.
        what: &'static str,
        /// The offending value (truncated to 100 characters).
        value: String,
    },
    /// A CPIM message is malformed.
    #[error("malformed CPIM message: {0}")]
    Cpim(String),
    /// A multipart body is malformed.
    #[error("malformed multipart body: {0}")]
    Multipart(String),
    /// A message-summary body is malformed.
    #[error("malformed message-summary: {0}")]
    MessageSummary(String),
}

impl SimpleError {
    /// An `InvalidValue` error, truncating the value for the message.
    pub(crate) fn invalid(what: &'static str, value: &str) -> Self {
        SimpleError::InvalidValue {
            what,
            value: value.chars().take(100).collect(),
        }
    }
}
