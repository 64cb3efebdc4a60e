//! STUN messages (RFC 8489 §5, §6, §14.5–14.7): header, attributes, integrity and fingerprint.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

use super::attr::{Attribute, comprehension_required, types};
use super::{MAGIC_COOKIE, StunError, TransactionId, crc32};

/// The value XORed into the CRC-32 of FINGERPRINT ("STUN").
const FINGERPRINT_XOR: u32 = 0x5354_554e;
/// Most attributes one message may carry.
pub const MAX_ATTRIBUTES: usize = 64;
/// The STUN header size.
pub const HEADER_LEN: usize = 20;

/// The class of a message (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// A request (expects a response).
    Request,
    /// An indication (no response).
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }

    fn from_bits(b: u16) -> Class {
        match b & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        }
    }
}

/// A STUN method (12 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(pub u16);

impl Method {
    /// Binding (RFC 8489).
    pub const BINDING: Method = Method(0x001);
    /// Allocate (TURN).
    pub const ALLOCATE: Method = Method(0x003);
    /// Refresh (TURN).
    pub const REFRESH: Method = Method(0x004);
    /// Send (TURN, indication).
    pub const SEND: Method = Method(0x006);
    /// Data (TURN, indication).
    pub const DATA: Method = Method(0x007);
    /// CreatePermission (TURN).
    pub const CREATE_PERMISSION: Method = Method(0x008);
    /// ChannelBind (TURN).
    pub const CHANNEL_BIND: Method = Method(0x009);
}

/// Encodes a method and class into the 14-bit message type (RFC 8489 §5).
pub fn message_type(class: Class, method: Method) -> u16 {
    let m = method.0 & 0x0FFF;
    let c = class.bits();
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

/// Splits a 14-bit message type into class and method.
pub fn split_message_type(t: u16) -> (Class, Method) {
    let c = ((t >> 4) & 1) | ((t >> 7) & 2);
    let m = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    (Class::from_bits(c), Method(m))
}

/// Which integrity attribute(s) to add when encoding, and with which key.
#[derive(Debug, Clone, Copy, Default)]
pub enum Integrity<'a> {
    /// No MESSAGE-INTEGRITY.
    #[default]
    None,
    /// MESSAGE-INTEGRITY (HMAC-SHA1) with this key.
    Sha1(&'a [u8]),
    /// MESSAGE-INTEGRITY-SHA256 (full 32 bytes) with this key.
    Sha256(&'a [u8]),
    /// Both: MESSAGE-INTEGRITY followed by MESSAGE-INTEGRITY-SHA256, one key.
    Both(&'a [u8]),
}

/// Where an integrity attribute sat in a decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IntegrityMark {
    /// Offset of the attribute header from the start of the message.
    offset: usize,
    /// The received HMAC.
    mac: Vec<u8>,
}

/// A STUN message: header fields and attributes (integrity and fingerprint are computed by
/// [`Message::encode`] and checked by [`Message::decode`] / [`Message::verify_integrity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The class.
    pub class: Class,
    /// The method.
    pub method: Method,
    /// The 96-bit transaction id.
    pub transaction_id: TransactionId,
    /// The attributes in order (on decode, the integrity/fingerprint ones too).
    pub attributes: Vec<Attribute>,
    raw: Option<Bytes>,
    integrity: Option<IntegrityMark>,
    integrity_sha256: Option<IntegrityMark>,
}

impl Message {
    /// A new message without attributes.
    pub fn new(class: Class, method: Method, transaction_id: TransactionId) -> Message {
        Message {
            class,
            method,
            transaction_id,
            attributes: Vec::new(),
            raw: None,
            integrity: None,
            integrity_sha256: None,
        }
    }

    /// A request with a random transaction id.
    pub fn request(method: Method) -> Message {
        Message::new(Class::Request, method, TransactionId::random())
    }

    /// A response of `class` to this request (same method and transaction id).
    pub fn response(&self, class: Class) -> Message {
        Message::new(class, self.method, self.transaction_id)
    }

    /// An error response with ERROR-CODE `code` and its standard reason phrase.
    pub fn error_response(&self, code: u16) -> Message {
        self.response(Class::Error).with(Attribute::ErrorCode {
            code,
            reason: super::reason_phrase(code).to_owned(),
        })
    }

    /// Adds an attribute (builder style).
    pub fn with(mut self, attribute: Attribute) -> Message {
        self.attributes.push(attribute);
        self
    }

    /// Adds an attribute.
    pub fn push(&mut self, attribute: Attribute) {
        self.attributes.push(attribute);
    }

    /// The first attribute of type `kind`.
    pub fn get(&self, kind: u16) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.kind() == kind)
    }

    /// USERNAME, if present.
    pub fn username(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Username(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// REALM, if present.
    pub fn realm(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Realm(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// NONCE, if present.
    pub fn nonce(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Nonce(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// ERROR-CODE `(code, reason)`, if present.
    pub fn error_code(&self) -> Option<(u16, &str)> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::ErrorCode { code, reason } => Some((*code, reason.as_str())),
            _ => None,
        })
    }

    /// XOR-MAPPED-ADDRESS (or, failing that, MAPPED-ADDRESS).
    pub fn mapped_address(&self) -> Option<std::net::SocketAddr> {
        self.attributes
            .iter()
            .find_map(|a| match a {
                Attribute::XorMappedAddress(s) => Some(*s),
                _ => None,
            })
            .or_else(|| {
                self.attributes.iter().find_map(|a| match a {
                    Attribute::MappedAddress(s) => Some(*s),
                    _ => None,
                })
            })
    }

    /// XOR-RELAYED-ADDRESS, if present.
    pub fn relayed_address(&self) -> Option<std::net::SocketAddr> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::XorRelayedAddress(s) => Some(*s),
            _ => None,
        })
    }

    /// Every XOR-PEER-ADDRESS, in order.
    pub fn peer_addresses(&self) -> Vec<std::net::SocketAddr> {
        self.attributes
            .iter()
            .filter_map(|a| match a {
                Attribute::XorPeerAddress(s) => Some(*s),
                _ => None,
            })
            .collect()
    }

    /// LIFETIME, if present.
    pub fn lifetime(&self) -> Option<u32> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Lifetime(s) => Some(*s),
            _ => None,
        })
    }

    /// DATA, if present.
    pub fn data(&self) -> Option<&Bytes> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Data(d) => Some(d),
            _ => None,
        })
    }

    /// CHANNEL-NUMBER, if present.
    pub fn channel_number(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::ChannelNumber(n) => Some(*n),
            _ => None,
        })
    }

    /// REQUESTED-TRANSPORT, if present.
    pub fn requested_transport(&self) -> Option<u8> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::RequestedTransport(p) => Some(*p),
            _ => None,
        })
    }

    /// True when the decoded message carried MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256.
    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some() || self.integrity_sha256.is_some()
    }

    /// The comprehension-required attribute types (0x0000–0x7FFF) this codec does not know,
    /// for a 420 response's UNKNOWN-ATTRIBUTES.
    pub fn unknown_comprehension_required(&self) -> Vec<u16> {
        self.attributes
            .iter()
            .filter_map(|a| match a {
                Attribute::Other { kind, .. } if comprehension_required(*kind) => Some(*kind),
                _ => None,
            })
            .collect()
    }

    /// Checks the received integrity with `key` (RFC 8489 §14.5/§14.6): MESSAGE-INTEGRITY-SHA256
    /// when present, else MESSAGE-INTEGRITY. Compares in constant time.
    pub fn verify_integrity(&self, key: &[u8]) -> Result<(), StunError> {
        let raw = self.raw.as_ref().ok_or(StunError::NoIntegrity)?;
        if let Some(mark) = &self.integrity_sha256 {
            let expected = hmac_sha256(key, &covered(raw, mark.offset, 4 + mark.mac.len()));
            return constant_time_prefix_eq(&expected, &mark.mac);
        }
        if let Some(mark) = &self.integrity {
            let expected = hmac_sha1(key, &covered(raw, mark.offset, 24));
            return constant_time_prefix_eq(&expected, &mark.mac);
        }
        Err(StunError::NoIntegrity)
    }

    /// Decodes one whole message (a UDP datagram or a framed stream message): strict header and
    /// length checks, every attribute bounded, FINGERPRINT checked when present (and last),
    /// attributes after MESSAGE-INTEGRITY other than the SHA-256 one and FINGERPRINT ignored.
    pub fn decode(buf: &[u8]) -> Result<Message, StunError> {
        Message::decode_bytes(Bytes::copy_from_slice(buf))
    }

    /// Like [`Message::decode`], keeping `buf` (DATA values are slices of it).
    pub fn decode_bytes(buf: Bytes) -> Result<Message, StunError> {
        if buf.len() < HEADER_LEN {
            return Err(StunError::TooShort);
        }
        let typ = u16::from_be_bytes([buf[0], buf[1]]);
        if typ & 0xC000 != 0 {
            return Err(StunError::NotStun);
        }
        let cookie = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if cookie != MAGIC_COOKIE {
            return Err(StunError::NotStun);
        }
        let length = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if !length.is_multiple_of(4) || HEADER_LEN + length != buf.len() {
            return Err(StunError::BadLength);
        }
        let (class, method) = split_message_type(typ);
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&buf[8..20]);
        let transaction_id = TransactionId::new(tid);
        let mut message = Message::new(class, method, transaction_id);
        let mut pos = HEADER_LEN;
        let mut seen_fingerprint = false;
        while pos < buf.len() {
            if seen_fingerprint {
                return Err(StunError::AttributeAfterFingerprint);
            }
            if message.attributes.len() >= MAX_ATTRIBUTES {
                return Err(StunError::TooManyAttributes);
            }
            let header = buf.get(pos..pos + 4).ok_or(StunError::TruncatedAttribute)?;
            let kind = u16::from_be_bytes([header[0], header[1]]);
            let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let start = pos + 4;
            let end = start + len;
            let padded_end = start + len.div_ceil(4) * 4;
            if padded_end > buf.len() {
                return Err(StunError::TruncatedAttribute);
            }
            let value = &buf[start..end];
            match kind {
                types::FINGERPRINT => {
                    let attr = Attribute::decode(kind, value, &buf, start, &transaction_id)?;
                    if let Attribute::Fingerprint(received) = attr {
                        let expected = fingerprint_of(&covered(&buf, pos, 8));
                        if received != expected {
                            return Err(StunError::FingerprintMismatch);
                        }
                    }
                    message.attributes.push(attr);
                    seen_fingerprint = true;
                }
                types::MESSAGE_INTEGRITY
                    if message.integrity.is_none() && message.integrity_sha256.is_none() =>
                {
                    let attr = Attribute::decode(kind, value, &buf, start, &transaction_id)?;
                    message.integrity = Some(IntegrityMark {
                        offset: pos,
                        mac: value.to_vec(),
                    });
                    message.attributes.push(attr);
                }
                types::MESSAGE_INTEGRITY_SHA256 if message.integrity_sha256.is_none() => {
                    let attr = Attribute::decode(kind, value, &buf, start, &transaction_id)?;
                    message.integrity_sha256 = Some(IntegrityMark {
                        offset: pos,
                        mac: value.to_vec(),
                    });
                    message.attributes.push(attr);
                }
                // RFC 8489 §14.5: everything else after an integrity attribute is ignored.
                _ if message.has_integrity() => {}
                _ => {
                    let attr = Attribute::decode(kind, value, &buf, start, &transaction_id)?;
                    message.attributes.push(attr);
                }
            }
            pos = padded_end;
        }
        message.raw = Some(buf);
        Ok(message)
    }

    /// Encodes the message with the requested integrity and, if `fingerprint`, a FINGERPRINT.
    /// Integrity and fingerprint attributes in `attributes` are skipped (they are computed).
    pub fn encode(&self, integrity: Integrity<'_>, fingerprint: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&message_type(self.class, self.method).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        out.extend_from_slice(self.transaction_id.as_bytes());
        for a in &self.attributes {
            if matches!(
                a,
                Attribute::MessageIntegrity(_)
                    | Attribute::MessageIntegritySha256(_)
                    | Attribute::Fingerprint(_)
            ) {
                continue;
            }
            let header = out.len();
            out.extend_from_slice(&a.kind().to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            a.encode_value(&mut out, &self.transaction_id);
            let len = (out.len() - header - 4).min(usize::from(u16::MAX));
            out[header + 2..header + 4].copy_from_slice(&(len as u16).to_be_bytes());
            while !out.len().is_multiple_of(4) {
                out.push(0);
            }
        }
        let (sha1_key, sha256_key) = match integrity {
            Integrity::None => (None, None),
            Integrity::Sha1(k) => (Some(k), None),
            Integrity::Sha256(k) => (None, Some(k)),
            Integrity::Both(k) => (Some(k), Some(k)),
        };
        if let Some(key) = sha1_key {
            set_length(&mut out, 24);
            let mac = hmac_sha1(key, &out);
            out.extend_from_slice(&types::MESSAGE_INTEGRITY.to_be_bytes());
            out.extend_from_slice(&20u16.to_be_bytes());
            out.extend_from_slice(&mac);
        }
        if let Some(key) = sha256_key {
            set_length(&mut out, 36);
            let mac = hmac_sha256(key, &out);
            out.extend_from_slice(&types::MESSAGE_INTEGRITY_SHA256.to_be_bytes());
            out.extend_from_slice(&32u16.to_be_bytes());
            out.extend_from_slice(&mac);
        }
        if fingerprint {
            set_length(&mut out, 8);
            let crc = fingerprint_of(&out);
            out.extend_from_slice(&types::FINGERPRINT.to_be_bytes());
            out.extend_from_slice(&4u16.to_be_bytes());
            out.extend_from_slice(&crc.to_be_bytes());
        }
        set_length(&mut out, 0);
        out
    }
}

/// Sets the header's length to the body so far plus `extra` bytes.
fn set_length(out: &mut [u8], extra: usize) {
    let len = (out.len() - HEADER_LEN + extra).min(usize::from(u16::MAX)) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
}

/// The bytes an integrity/fingerprint attribute at `offset` covers: everything before it, with
/// the header length rewritten to end just after that attribute (`attr_len` bytes with header).
fn covered(raw: &[u8], offset: usize, attr_len: usize) -> Vec<u8> {
    let mut v = raw[..offset].to_vec();
    set_length(&mut v, attr_len);
    v
}

// HMAC takes keys of any length, so `new_from_slice` cannot fail.
fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// FINGERPRINT value of `data` (RFC 8489 §14.7).
pub fn fingerprint_of(data: &[u8]) -> u32 {
    crc32(data) ^ FINGERPRINT_XOR
}

/// Compares a received (possibly truncated, RFC 8489 §14.6) MAC with the expected one.
fn constant_time_prefix_eq(expected: &[u8], received: &[u8]) -> Result<(), StunError> {
    if received.is_empty() || received.len() > expected.len() {
        return Err(StunError::IntegrityMismatch);
    }
    let diff = expected
        .iter()
        .zip(received)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff == 0 {
        Ok(())
    } else {
        Err(StunError::IntegrityMismatch)
    }
}
