//! SRTP (RFC 3711, RFC 7714) keyed by SDES (RFC 4568) or DTLS-SRTP (RFC 5763/5764).
//!
//! * [`SdesCrypto`] parses and formats `a=crypto` attribute values; [`sdes_offer`],
//!   [`sdes_answer`] and [`sdes_accept`] run the offer/answer selection.
//! * [`SrtpContext`] protects and unprotects RTP and RTCP for one call (one `rtc-srtp`
//!   context per direction, replay protection on the receiving side) and counts the packets
//!   it dropped for a bad authentication tag or a replay.
//! * [`DtlsSrtp`] is a sans-IO DTLS-SRTP endpoint: feed it datagrams and timeouts, send what it
//!   hands back, and collect an [`SrtpContext`] when the handshake is done.

mod context;
mod dtls;
mod sdes;

use std::fmt;
use std::str::FromStr;

pub use context::{SrtpContext, SrtpCounters};
pub use dtls::{DEFAULT_HANDSHAKE_TIMEOUT, DtlsCertificate, DtlsRole, DtlsSrtp, SetupAttr};
pub use sdes::{SdesCrypto, sdes_accept, sdes_answer, sdes_offer};

use rtc_srtp::protection_profile::ProtectionProfile;

/// Errors of the SRTP layer: malformed crypto attributes, negotiation failures, packets that
/// fail authentication and DTLS-SRTP handshake failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// The `a=crypto` value does not follow the RFC 4568 grammar.
    #[error("malformed crypto attribute: {0}")]
    MalformedCrypto(String),
    /// The crypto suite name is not one we implement.
    #[error("unknown or unsupported crypto suite {0:?}")]
    UnknownSuite(String),
    /// The inline key is not valid base64.
    #[error("crypto attribute key is not valid base64: {0}")]
    BadBase64(String),
    /// The decoded key||salt has the wrong length for the suite.
    #[error("{suite} needs a {expected}-byte key||salt, the attribute has {actual} bytes")]
    KeyLength {
        /// The suite named in the attribute.
        suite: CryptoSuite,
        /// Key plus salt length the suite needs.
        expected: usize,
        /// Length that was decoded.
        actual: usize,
    },
    /// The key lifetime field is not a number or `2^N`.
    #[error("invalid key lifetime {0:?}")]
    BadLifetime(String),
    /// The MKI field is not `value:length` with a length of 1..=128 bytes that holds the value.
    #[error("invalid MKI {0:?}")]
    BadMki(String),
    /// The attribute asks for something this implementation cannot honour.
    #[error("unsupported crypto attribute feature: {0}")]
    Unsupported(String),
    /// The answer names a tag we did not offer.
    #[error("the answer's crypto tag {0} was not in our offer")]
    TagNotOffered(u32),
    /// The answer changed the suite of the offered tag.
    #[error("the answer's crypto tag {tag} uses {answered}, we offered {offered}")]
    SuiteMismatch {
        /// The tag of the crypto line.
        tag: u32,
        /// The suite we offered under that tag.
        offered: CryptoSuite,
        /// The suite the answer used.
        answered: CryptoSuite,
    },
    /// A received packet failed authentication (bad tag, wrong MKI).
    #[error("SRTP authentication failed")]
    AuthFailed,
    /// A received packet was a replay of one already accepted (or too old for the window).
    #[error("SRTP replayed packet (ssrc {ssrc:#010x}, index {index})")]
    Replay {
        /// SSRC of the packet.
        ssrc: u32,
        /// RTP sequence number or SRTCP index.
        index: u64,
    },
    /// A packet that is too short or not RTP/RTCP at all.
    #[error("malformed packet: {0}")]
    MalformedPacket(String),
    /// The master key was used for as many packets as its lifetime allows.
    #[error("SRTP master key lifetime of {0} packets exhausted")]
    KeyLifetimeExpired(u64),
    /// A failure inside the cryptographic library.
    #[error("SRTP crypto error: {0}")]
    Crypto(String),
    /// The DTLS handshake failed.
    #[error("DTLS handshake failed: {0}")]
    Dtls(String),
    /// The DTLS handshake did not finish in time.
    #[error("DTLS handshake timed out")]
    DtlsTimeout,
    /// The peer's certificate does not match the fingerprint signalled in SDP.
    #[error("DTLS peer certificate fingerprint mismatch: expected {expected}, got {actual}")]
    FingerprintMismatch {
        /// The fingerprint from the SDP.
        expected: String,
        /// The fingerprint of the certificate the peer presented.
        actual: String,
    },
    /// The SDP fingerprint attribute cannot be parsed or uses an unknown hash.
    #[error("invalid fingerprint attribute {0:?}")]
    BadFingerprint(String),
    /// The `a=setup` values of offer and answer do not give one client and one server.
    #[error("invalid a=setup combination: {0}")]
    BadSetup(String),
    /// The DTLS peer did not negotiate a usable use_srtp profile.
    #[error("DTLS peer negotiated no supported SRTP protection profile")]
    NoSrtpProfile,
    /// Creating the DTLS certificate failed.
    #[error("certificate generation failed: {0}")]
    Certificate(String),
}

/// Account policy for media encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SrtpPolicy {
    /// Plain RTP only; crypto offers from peers are declined.
    #[default]
    Off,
    /// Offer SRTP, accept plain RTP when the peer does not support it.
    Optional,
    /// SRTP or no call: never falls back to plain RTP.
    Mandatory,
}

impl SrtpPolicy {
    /// The lowercase name (`off`, `optional`, `mandatory`).
    pub fn as_str(self) -> &'static str {
        match self {
            SrtpPolicy::Off => "off",
            SrtpPolicy::Optional => "optional",
            SrtpPolicy::Mandatory => "mandatory",
        }
    }
}

impl fmt::Display for SrtpPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SrtpPolicy {
    type Err = SrtpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            Ok(SrtpPolicy::Off)
        } else if s.eq_ignore_ascii_case("optional") {
            Ok(SrtpPolicy::Optional)
        } else if s.eq_ignore_ascii_case("mandatory") {
            Ok(SrtpPolicy::Mandatory)
        } else {
            Err(SrtpError::Unsupported(format!(
                "SRTP policy {s:?} (expected off, optional or mandatory)"
            )))
        }
    }
}

/// An SRTP crypto suite that can be negotiated with SDES (and, for two of them, DTLS-SRTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CryptoSuite {
    /// AES-128 counter mode, HMAC-SHA1 with an 80-bit tag (RFC 4568 §6.2.1).
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 with a 32-bit RTP tag (80-bit for RTCP).
    AesCm128HmacSha1_32,
    /// AES-128 in Galois/counter mode with a 16-byte tag (RFC 7714).
    AeadAes128Gcm,
}

impl CryptoSuite {
    /// Every suite we support, in our order of preference for offers.
    pub const ALL: [CryptoSuite; 3] = [
        CryptoSuite::AesCm128HmacSha1_80,
        CryptoSuite::AesCm128HmacSha1_32,
        CryptoSuite::AeadAes128Gcm,
    ];

    /// The SDES name (RFC 4568 / RFC 7714).
    pub fn as_str(self) -> &'static str {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            CryptoSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            CryptoSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    /// Master key length in bytes.
    pub fn key_len(self) -> usize {
        16
    }

    /// Master salt length in bytes.
    pub fn salt_len(self) -> usize {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 | CryptoSuite::AesCm128HmacSha1_32 => 14,
            CryptoSuite::AeadAes128Gcm => 12,
        }
    }

    /// Length of the key||salt blob carried inline in SDES.
    pub fn key_salt_len(self) -> usize {
        self.key_len() + self.salt_len()
    }

    /// Bytes SRTP adds to each RTP packet (authentication tag), not counting an MKI.
    pub fn rtp_overhead(self) -> usize {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => 10,
            CryptoSuite::AesCm128HmacSha1_32 => 4,
            CryptoSuite::AeadAes128Gcm => 16,
        }
    }

    /// The DTLS-SRTP (RFC 5764 / RFC 7714) protection profile name of this suite.
    pub fn dtls_profile_name(self) -> &'static str {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => "SRTP_AES128_CM_HMAC_SHA1_80",
            CryptoSuite::AesCm128HmacSha1_32 => "SRTP_AES128_CM_HMAC_SHA1_32",
            CryptoSuite::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM",
        }
    }

    pub(crate) fn profile(self) -> ProtectionProfile {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            CryptoSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
            CryptoSuite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        }
    }
}

impl fmt::Display for CryptoSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CryptoSuite {
    type Err = SrtpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CryptoSuite::ALL
            .into_iter()
            .find(|suite| suite.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| SrtpError::UnknownSuite(s.to_owned()))
    }
}
