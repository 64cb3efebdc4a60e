//! STUN/TURN attributes (RFC 8489 §14, RFC 8656 §18, RFC 8445 §16): typed values, strict decoding.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use super::{MAGIC_COOKIE, StunError, TransactionId};

/// Attribute type numbers (RFC 8489 §18.3, RFC 8656 §18, RFC 8445 §16.1).
pub mod types {
    /// MAPPED-ADDRESS.
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (HMAC-SHA1).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// CHANNEL-NUMBER (TURN).
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    /// LIFETIME (TURN).
    pub const LIFETIME: u16 = 0x000D;
    /// XOR-PEER-ADDRESS (TURN).
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    /// DATA (TURN).
    pub const DATA: u16 = 0x0013;
    /// REALM.
    pub const REALM: u16 = 0x0014;
    /// NONCE.
    pub const NONCE: u16 = 0x0015;
    /// XOR-RELAYED-ADDRESS (TURN).
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    /// REQUESTED-ADDRESS-FAMILY (TURN).
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    /// EVEN-PORT (TURN).
    pub const EVEN_PORT: u16 = 0x0018;
    /// REQUESTED-TRANSPORT (TURN).
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    /// DONT-FRAGMENT (TURN).
    pub const DONT_FRAGMENT: u16 = 0x001A;
    /// MESSAGE-INTEGRITY-SHA256.
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// PASSWORD-ALGORITHM.
    pub const PASSWORD_ALGORITHM: u16 = 0x001D;
    /// USERHASH.
    pub const USERHASH: u16 = 0x001E;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// RESERVATION-TOKEN (TURN).
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    /// PRIORITY (ICE).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (ICE).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// ADDITIONAL-ADDRESS-FAMILY (TURN).
    pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
    /// PASSWORD-ALGORITHMS.
    pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
    /// ALTERNATE-DOMAIN.
    pub const ALTERNATE_DOMAIN: u16 = 0x8003;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// ALTERNATE-SERVER.
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    /// FINGERPRINT.
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED (ICE).
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING (ICE).
    pub const ICE_CONTROLLING: u16 = 0x802A;
}

/// Longest USERNAME value in bytes (RFC 8489 §14.3).
pub const MAX_USERNAME: usize = 512;
/// Longest REALM, NONCE, SOFTWARE, reason phrase and ALTERNATE-DOMAIN value in bytes (RFC 8489 §14).
pub const MAX_TEXT: usize = 763;

/// One STUN attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attribute {
    /// MAPPED-ADDRESS (the RFC 3489 form, unobfuscated).
    MappedAddress(SocketAddr),
    /// XOR-MAPPED-ADDRESS: the reflexive transport address.
    XorMappedAddress(SocketAddr),
    /// USERNAME (UTF-8, at most 512 bytes).
    Username(String),
    /// USERHASH: SHA-256 of `username:realm`.
    UserHash([u8; 32]),
    /// MESSAGE-INTEGRITY as received (encoding computes it; a pushed one is ignored).
    MessageIntegrity([u8; 20]),
    /// MESSAGE-INTEGRITY-SHA256 as received (16 to 32 bytes; a pushed one is ignored).
    MessageIntegritySha256(Vec<u8>),
    /// FINGERPRINT as received (encoding computes it; a pushed one is ignored).
    Fingerprint(u32),
    /// ERROR-CODE: a 300–699 code and its reason phrase.
    ErrorCode {
        /// The status code.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
    /// REALM.
    Realm(String),
    /// NONCE.
    Nonce(String),
    /// PASSWORD-ALGORITHMS: `(algorithm, parameters)` pairs.
    PasswordAlgorithms(Vec<(u16, Vec<u8>)>),
    /// PASSWORD-ALGORITHM: the chosen algorithm and its parameters.
    PasswordAlgorithm(u16, Vec<u8>),
    /// UNKNOWN-ATTRIBUTES: the comprehension-required types not understood.
    UnknownAttributes(Vec<u16>),
    /// SOFTWARE.
    Software(String),
    /// ALTERNATE-SERVER.
    AlternateServer(SocketAddr),
    /// ALTERNATE-DOMAIN.
    AlternateDomain(String),
    /// CHANNEL-NUMBER (TURN): 0x4000–0x4FFF for a valid channel.
    ChannelNumber(u16),
    /// LIFETIME (TURN), in seconds.
    Lifetime(u32),
    /// XOR-PEER-ADDRESS (TURN).
    XorPeerAddress(SocketAddr),
    /// DATA (TURN).
    Data(Bytes),
    /// XOR-RELAYED-ADDRESS (TURN).
    XorRelayedAddress(SocketAddr),
    /// REQUESTED-ADDRESS-FAMILY (TURN): 0x01 IPv4, 0x02 IPv6.
    RequestedAddressFamily(u8),
    /// ADDITIONAL-ADDRESS-FAMILY (TURN): 0x02 IPv6.
    AdditionalAddressFamily(u8),
    /// EVEN-PORT (TURN): the R bit (reserve the next port).
    EvenPort(bool),
    /// REQUESTED-TRANSPORT (TURN): an IP protocol number, 17 for UDP.
    RequestedTransport(u8),
    /// DONT-FRAGMENT (TURN).
    DontFragment,
    /// RESERVATION-TOKEN (TURN).
    ReservationToken([u8; 8]),
    /// PRIORITY (ICE).
    Priority(u32),
    /// USE-CANDIDATE (ICE).
    UseCandidate,
    /// ICE-CONTROLLED (ICE): the tie-breaker.
    IceControlled(u64),
    /// ICE-CONTROLLING (ICE): the tie-breaker.
    IceControlling(u64),
    /// Any other attribute, kept raw.
    Other {
        /// The attribute type.
        kind: u16,
        /// The value (without padding).
        value: Bytes,
    },
}

/// True for attribute types a receiver must understand (0x0000–0x7FFF, RFC 8489 §14).
pub fn comprehension_required(kind: u16) -> bool {
    kind < 0x8000
}

impl Attribute {
    /// The attribute's type number.
    pub fn kind(&self) -> u16 {
        use types::*;
        match self {
            Attribute::MappedAddress(_) => MAPPED_ADDRESS,
            Attribute::XorMappedAddress(_) => XOR_MAPPED_ADDRESS,
            Attribute::Username(_) => USERNAME,
            Attribute::UserHash(_) => USERHASH,
            Attribute::MessageIntegrity(_) => MESSAGE_INTEGRITY,
            Attribute::MessageIntegritySha256(_) => MESSAGE_INTEGRITY_SHA256,
            Attribute::Fingerprint(_) => FINGERPRINT,
            Attribute::ErrorCode { .. } => ERROR_CODE,
            Attribute::Realm(_) => REALM,
            Attribute::Nonce(_) => NONCE,
            Attribute::PasswordAlgorithms(_) => PASSWORD_ALGORITHMS,
            Attribute::PasswordAlgorithm(..) => PASSWORD_ALGORITHM,
            Attribute::UnknownAttributes(_) => UNKNOWN_ATTRIBUTES,
            Attribute::Software(_) => SOFTWARE,
            Attribute::AlternateServer(_) => ALTERNATE_SERVER,
            Attribute::AlternateDomain(_) => ALTERNATE_DOMAIN,
            Attribute::ChannelNumber(_) => CHANNEL_NUMBER,
            Attribute::Lifetime(_) => LIFETIME,
            Attribute::XorPeerAddress(_) => XOR_PEER_ADDRESS,
            Attribute::Data(_) => DATA,
            Attribute::XorRelayedAddress(_) => XOR_RELAYED_ADDRESS,
            Attribute::RequestedAddressFamily(_) => REQUESTED_ADDRESS_FAMILY,
            Attribute::AdditionalAddressFamily(_) => ADDITIONAL_ADDRESS_FAMILY,
            Attribute::EvenPort(_) => EVEN_PORT,
            Attribute::RequestedTransport(_) => REQUESTED_TRANSPORT,
            Attribute::DontFragment => DONT_FRAGMENT,
            Attribute::ReservationToken(_) => RESERVATION_TOKEN,
            Attribute::Priority(_) => PRIORITY,
            Attribute::UseCandidate => USE_CANDIDATE,
            Attribute::IceControlled(_) => ICE_CONTROLLED,
            Attribute::IceControlling(_) => ICE_CONTROLLING,
            Attribute::Other { kind, .. } => *kind,
        }
    }

    /// True for the attribute types this codec decodes into a typed variant.
    pub fn is_known(kind: u16) -> bool {
        use types::*;
        matches!(
            kind,
            MAPPED_ADDRESS
                | XOR_MAPPED_ADDRESS
                | USERNAME
                | USERHASH
                | MESSAGE_INTEGRITY
                | MESSAGE_INTEGRITY_SHA256
                | FINGERPRINT
                | ERROR_CODE
                | REALM
                | NONCE
                | PASSWORD_ALGORITHMS
                | PASSWORD_ALGORITHM
                | UNKNOWN_ATTRIBUTES
                | SOFTWARE
                | ALTERNATE_SERVER
                | ALTERNATE_DOMAIN
                | CHANNEL_NUMBER
                | LIFETIME
                | XOR_PEER_ADDRESS
                | DATA
                | XOR_RELAYED_ADDRESS
                | REQUESTED_ADDRESS_FAMILY
                | ADDITIONAL_ADDRESS_FAMILY
                | EVEN_PORT
                | REQUESTED_TRANSPORT
                | DONT_FRAGMENT
                | RESERVATION_TOKEN
                | PRIORITY
                | USE_CANDIDATE
                | ICE_CONTROLLED
                | ICE_CONTROLLING
        )
    }

    /// Decodes one attribute value (without padding) of type `kind`.
    pub(crate) fn decode(
        kind: u16,
        value: &[u8],
        whole: &Bytes,
        offset: usize,
        tid: &TransactionId,
    ) -> Result<Attribute, StunError> {
        use types::*;
        let bad = |reason: &'static str| StunError::BadAttribute { kind, reason };
        let fixed = |n: usize| {
            if value.len() == n {
                Ok(())
            } else {
                Err(bad("wrong length"))
            }
        };
        let text = |max: usize| -> Result<String, StunError> {
            if value.len() > max {
                return Err(bad("too long"));
            }
            std::str::from_utf8(value)
                .map(str::to_owned)
                .map_err(|_| bad("not UTF-8"))
        };
        Ok(match kind {
            MAPPED_ADDRESS => Attribute::MappedAddress(decode_address(kind, value, None)?),
            ALTERNATE_SERVER => Attribute::AlternateServer(decode_address(kind, value, None)?),
            XOR_MAPPED_ADDRESS => {
                Attribute::XorMappedAddress(decode_address(kind, value, Some(tid))?)
            }
            XOR_PEER_ADDRESS => Attribute::XorPeerAddress(decode_address(kind, value, Some(tid))?),
            XOR_RELAYED_ADDRESS => {
                Attribute::XorRelayedAddress(decode_address(kind, value, Some(tid))?)
            }
            USERNAME => Attribute::Username(text(MAX_USERNAME)?),
            REALM => Attribute::Realm(text(MAX_TEXT)?),
            NONCE => Attribute::Nonce(text(MAX_TEXT)?),
            SOFTWARE => Attribute::Software(text(MAX_TEXT)?),
            ALTERNATE_DOMAIN => Attribute::AlternateDomain(text(MAX_TEXT)?),
            USERHASH => {
                fixed(32)?;
                let mut h = [0u8; 32];
                h.copy_from_slice(value);
                Attribute::UserHash(h)
            }
            MESSAGE_INTEGRITY => {
                fixed(20)?;
                let mut h = [0u8; 20];
                h.copy_from_slice(value);
                Attribute::MessageIntegrity(h)
            }
            MESSAGE_INTEGRITY_SHA256 => {
                if !(16..=32).contains(&value.len()) || !value.len().is_multiple_of(4) {
                    return Err(bad("wrong length"));
                }
                Attribute::MessageIntegritySha256(value.to_vec())
            }
            FINGERPRINT => Attribute::Fingerprint(be_u32(kind, value)?),
            ERROR_CODE => {
                if value.len() < 4 {
                    return Err(bad("too short"));
                }
                let class = u16::from(value[2] & 0x07);
                let number = u16::from(value[3]);
                if !(3..=6).contains(&class) || number > 99 {
                    return Err(bad("code out of range"));
                }
                let reason_bytes = &value[4..];
                if reason_bytes.len() > MAX_TEXT {
                    return Err(bad("too long"));
                }
                let reason = std::str::from_utf8(reason_bytes)
                    .map_err(|_| bad("not UTF-8"))?
                    .to_owned();
                Attribute::ErrorCode {
                    code: class * 100 + number,
                    reason,
                }
            }
            UNKNOWN_ATTRIBUTES => {
                if !value.len().is_multiple_of(2) {
                    return Err(bad("odd length"));
                }
                Attribute::UnknownAttributes(
                    value
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect(),
                )
            }
            PASSWORD_ALGORITHMS => {
                let mut algs = Vec::new();
                let mut rest = value;
                while !rest.is_empty() {
                    let (alg, params, next) = split_algorithm(kind, rest)?;
                    algs.push((alg, params.to_vec()));
                    rest = next;
                }
                Attribute::PasswordAlgorithms(algs)
            }
            PASSWORD_ALGORITHM => {
                let (alg, params, rest) = split_algorithm(kind, value)?;
                if !rest.is_empty() {
                    return Err(bad("trailing bytes"));
                }
                Attribute::PasswordAlgorithm(alg, params.to_vec())
            }
            CHANNEL_NUMBER => {
                fixed(4)?;
                Attribute::ChannelNumber(u16::from_be_bytes([value[0], value[1]]))
            }
            LIFETIME => Attribute::Lifetime(be_u32(kind, value)?),
            DATA => Attribute::Data(whole.slice(offset..offset + value.len())),
            REQUESTED_ADDRESS_FAMILY => {
                fixed(4)?;
                Attribute::RequestedAddressFamily(value[0])
            }
            ADDITIONAL_ADDRESS_FAMILY => {
                fixed(4)?;
                Attribute::AdditionalAddressFamily(value[0])
            }
            EVEN_PORT => {
                fixed(1)?;
                Attribute::EvenPort(value[0] & 0x80 != 0)
            }
            REQUESTED_TRANSPORT => {
                fixed(4)?;
                Attribute::RequestedTransport(value[0])
            }
            DONT_FRAGMENT => {
                fixed(0)?;
                Attribute::DontFragment
            }
            RESERVATION_TOKEN => {
                fixed(8)?;
                let mut t = [0u8; 8];
                t.copy_from_slice(value);
                Attribute::ReservationToken(t)
            }
            PRIORITY => Attribute::Priority(be_u32(kind, value)?),
            USE_CANDIDATE => {
                fixed(0)?;
                Attribute::UseCandidate
            }
            ICE_CONTROLLED => Attribute::IceControlled(be_u64(kind, value)?),
            ICE_CONTROLLING => Attribute::IceControlling(be_u64(kind, value)?),
            _ => Attribute::Other {
                kind,
                value: whole.slice(offset..offset + value.len()),
            },
        })
    }

    /// Appends the value (without header or padding) to `out`.
    pub(crate) fn encode_value(&self, out: &mut Vec<u8>, tid: &TransactionId) {
        match self {
            Attribute::MappedAddress(a) | Attribute::AlternateServer(a) => {
                encode_address(out, *a, None)
            }
            Attribute::XorMappedAddress(a)
            | Attribute::XorPeerAddress(a)
            | Attribute::XorRelayedAddress(a) => encode_address(out, *a, Some(tid)),
            Attribute::Username(s)
            | Attribute::Realm(s)
            | Attribute::Nonce(s)
            | Attribute::Software(s)
            | Attribute::AlternateDomain(s) => out.extend_from_slice(s.as_bytes()),
            Attribute::UserHash(h) => out.extend_from_slice(h),
            Attribute::MessageIntegrity(h) => out.extend_from_slice(h),
            Attribute::MessageIntegritySha256(h) => out.extend_from_slice(h),
            Attribute::Fingerprint(v) | Attribute::Lifetime(v) | Attribute::Priority(v) => {
                out.extend_from_slice(&v.to_be_bytes())
            }
            Attribute::ErrorCode { code, reason } => {
                let code = (*code).clamp(300, 699);
                out.extend_from_slice(&[0, 0, (code / 100) as u8, (code % 100) as u8]);
                out.extend_from_slice(reason.as_bytes());
            }
            Attribute::PasswordAlgorithms(algs) => {
                for (alg, params) in algs {
                    encode_algorithm(out, *alg, params);
                }
            }
            Attribute::PasswordAlgorithm(alg, params) => encode_algorithm(out, *alg, params),
            Attribute::UnknownAttributes(kinds) => {
                for k in kinds {
                    out.extend_from_slice(&k.to_be_bytes());
                }
            }
            Attribute::ChannelNumber(n) => {
                out.extend_from_slice(&n.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            Attribute::Data(d) => out.extend_from_slice(d),
            Attribute::RequestedAddressFamily(f) | Attribute::AdditionalAddressFamily(f) => {
                out.extend_from_slice(&[*f, 0, 0, 0])
            }
            Attribute::EvenPort(r) => out.push(if *r { 0x80 } else { 0 }),
            Attribute::RequestedTransport(p) => out.extend_from_slice(&[*p, 0, 0, 0]),
            Attribute::DontFragment | Attribute::UseCandidate => {}
            Attribute::ReservationToken(t) => out.extend_from_slice(t),
            Attribute::IceControlled(v) | Attribute::IceControlling(v) => {
                out.extend_from_slice(&v.to_be_bytes())
            }
            Attribute::Other { value, .. } => out.extend_from_slice(value),
        }
    }
}

fn be_u32(kind: u16, value: &[u8]) -> Result<u32, StunError> {
    let b: [u8; 4] = value.try_into().map_err(|_| StunError::BadAttribute {
        kind,
        reason: "wrong length",
    })?;
    Ok(u32::from_be_bytes(b))
}

fn be_u64(kind: u16, value: &[u8]) -> Result<u64, StunError> {
    let b: [u8; 8] = value.try_into().map_err(|_| StunError::BadAttribute {
        kind,
        reason: "wrong length",
    })?;
    Ok(u64::from_be_bytes(b))
}

/// Splits one `algorithm(2) length(2) params(padded)` entry off `value`.
fn split_algorithm(kind: u16, value: &[u8]) -> Result<(u16, &[u8], &[u8]), StunError> {
    let bad = |reason| StunError::BadAttribute { kind, reason };
    if value.len() < 4 {
        return Err(bad("truncated algorithm"));
    }
    let alg = u16::from_be_bytes([value[0], value[1]]);
    let len = usize::from(u16::from_be_bytes([value[2], value[3]]));
    let padded = len.div_ceil(4) * 4;
    let rest = &value[4..];
    if padded > rest.len() {
        return Err(bad("truncated algorithm parameters"));
    }
    Ok((alg, &rest[..len], &rest[padded..]))
}

fn encode_algorithm(out: &mut Vec<u8>, alg: u16, params: &[u8]) {
    out.extend_from_slice(&alg.to_be_bytes());
    out.extend_from_slice(&(params.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(params);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn decode_address(
    kind: u16,
    value: &[u8],
    xor: Option<&TransactionId>,
) -> Result<SocketAddr, StunError> {
    let bad = |reason| StunError::BadAttribute { kind, reason };
    if value.len() < 4 {
        return Err(bad("too short"));
    }
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let mut port = u16::from_be_bytes([value[2], value[3]]);
    if xor.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    let ip = match value[1] {
        0x01 => {
            let mut b: [u8; 4] = value[4..]
                .try_into()
                .map_err(|_| bad("wrong IPv4 length"))?;
            if xor.is_some() {
                for (x, c) in b.iter_mut().zip(cookie) {
                    *x ^= c;
                }
            }
            IpAddr::V4(Ipv4Addr::from(b))
        }
        0x02 => {
            let mut b: [u8; 16] = value[4..]
                .try_into()
                .map_err(|_| bad("wrong IPv6 length"))?;
            if let Some(tid) = xor {
                let mut mask = [0u8; 16];
                mask[..4].copy_from_slice(&cookie);
                mask[4..].copy_from_slice(tid.as_bytes());
                for (x, m) in b.iter_mut().zip(mask) {
                    *x ^= m;
                }
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return Err(bad("unknown address family")),
    };
    Ok(SocketAddr::new(ip, port))
}

fn encode_address(out: &mut Vec<u8>, addr: SocketAddr, xor: Option<&TransactionId>) {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let mut port = addr.port();
    if xor.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.extend_from_slice(&[0, 0x01]);
            out.extend_from_slice(&port.to_be_bytes());
            let mut b = ip.octets();
            if xor.is_some() {
                for (x, c) in b.iter_mut().zip(cookie) {
                    *x ^= c;
                }
            }
            out.extend_from_slice(&b);
        }
        IpAddr::V6(ip) => {
            out.extend_from_slice(&[0, 0x02]);
            out.extend_from_slice(&port.to_be_bytes());
            let mut b = ip.octets();
            if let Some(tid) = xor {
                let mut mask = [0u8; 16];
                mask[..4].copy_from_slice(&cookie);
                mask[4..].copy_from_slice(tid.as_bytes());
                for (x, m) in b.iter_mut().zip(mask) {
                    *x ^= m;
                }
            }
            out.extend_from_slice(&b);
        }
    }
}
