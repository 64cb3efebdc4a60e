//! Sans-IO STUN (RFC 8489) and TURN (RFC 8656) messages: attributes, integrity, fingerprint.
//!
//! - [`message`]: [`Message`] decode/encode with MESSAGE-INTEGRITY (HMAC-SHA1),
//!   MESSAGE-INTEGRITY-SHA256 and FINGERPRINT; strict length checks.
//! - [`attr`]: the typed [`Attribute`]s of STUN, TURN and ICE.
//! - [`channel`]: TURN ChannelData framing and the stream framer for TCP/TLS.
//! - [`credentials`]: long-term keys, TURN REST credentials and a client-side
//!   [`credentials::LongTermClient`] that answers 401/438 challenges.

pub mod attr;
pub mod channel;
pub mod credentials;
pub mod message;

pub use attr::Attribute;
pub use channel::{ChannelData, StreamFramer, is_channel_data, is_stun};
pub use credentials::{LongTermClient, long_term_key, rest_password};
pub use message::{Class, Integrity, Message, Method};

/// The magic cookie of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// The default STUN/TURN port over UDP and TCP.
pub const DEFAULT_PORT: u16 = 3478;
/// The default STUN/TURN port over TLS.
pub const DEFAULT_TLS_PORT: u16 = 5349;
/// The IP protocol number of UDP, for REQUESTED-TRANSPORT.
pub const TRANSPORT_UDP: u8 = 17;

/// Errors from decoding STUN messages and ChannelData.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StunError {
    /// Fewer bytes than a header.
    #[error("shorter than a STUN header")]
    TooShort,
    /// The leading bits or the magic cookie are wrong.
    #[error("not a STUN message")]
    NotStun,
    /// The length field is not a multiple of 4 or disagrees with the datagram size.
    #[error("wrong STUN message length")]
    BadLength,
    /// An attribute extends past the end of the message.
    #[error("truncated attribute")]
    TruncatedAttribute,
    /// An attribute's value is invalid.
    #[error("invalid attribute 0x{kind:04x}: {reason}")]
    BadAttribute {
        /// The attribute type.
        kind: u16,
        /// What is wrong.
        reason: &'static str,
    },
    /// More attributes than [`message::MAX_ATTRIBUTES`].
    #[error("too many attributes")]
    TooManyAttributes,
    /// Something follows FINGERPRINT.
    #[error("attribute after FINGERPRINT")]
    AttributeAfterFingerprint,
    /// FINGERPRINT does not match the message.
    #[error("FINGERPRINT mismatch")]
    FingerprintMismatch,
    /// MESSAGE-INTEGRITY(-SHA256) does not match the key.
    #[error("MESSAGE-INTEGRITY mismatch")]
    IntegrityMismatch,
    /// The message has no integrity attribute (or was not decoded from bytes).
    #[error("no MESSAGE-INTEGRITY")]
    NoIntegrity,
    /// A ChannelData message is malformed.
    #[error("invalid ChannelData: {0}")]
    BadChannelData(&'static str),
}

/// A 96-bit transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId([u8; 12]);

impl TransactionId {
    /// Wraps 12 bytes.
    pub fn new(bytes: [u8; 12]) -> TransactionId {
        TransactionId(bytes)
    }

    /// A fresh random id.
    pub fn random() -> TransactionId {
        TransactionId(rand::random())
    }

    /// The 12 bytes.
    pub fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }
}

/// The reason phrase RFC 8489 §14.8 and RFC 8656 §18 suggest for an error code.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        300 => "Try Alternate",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        405 => "Mobility Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        486 => "Allocation Quota Reached",
        500 => "Server Error",
        508 => "Insufficient Capacity",
        _ => "Error",
    }
}

/// CRC-32 (IEEE 802.3, as in ISO HDLC) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}
