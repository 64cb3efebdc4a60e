//! SDES (RFC 4568): the `a=crypto` attribute and the offer/answer selection.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rand::TryRngCore as _;

use super::{CryptoSuite, SrtpError};

/// Standard base64 that accepts the key with or without `=` padding (both appear in the wild).
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Largest MKI length RFC 4568 allows, in bytes.
const MAX_MKI_LEN: u32 = 128;

/// One `a=crypto` attribute (RFC 4568 §9.1) with a single inline key.
#[derive(Clone, PartialEq, Eq)]
pub struct SdesCrypto {
    /// The tag that pairs an answer with the offered line (1..=999999999).
    pub tag: u32,
    /// The crypto suite.
    pub suite: CryptoSuite,
    /// Master key followed by master salt (`suite.key_salt_len()` bytes).
    pub key_salt: Vec<u8>,
    /// Master key lifetime in packets, when the attribute limits it.
    pub lifetime: Option<u64>,
    /// Master key identifier: (value, length in bytes), when the packets carry an MKI.
    pub mki: Option<(u32, u32)>,
    /// The session parameters after the key parameters, verbatim (space separated).
    pub params: String,
}

impl std::fmt::Debug for SdesCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never goes to logs.
        f.debug_struct("SdesCrypto")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .field("key_salt", &format_args!("<{} bytes>", self.key_salt.len()))
            .field("lifetime", &self.lifetime)
            .field("mki", &self.mki)
            .field("params", &self.params)
            .finish()
    }
}

impl SdesCrypto {
    /// Parses the value of an `a=crypto:` attribute (everything after the colon).
    ///
    /// Only the first key of a multi-key attribute is kept. Session parameters are kept
    /// verbatim in `params`; whether we can honour them is checked by [`SdesCrypto::check_supported`].
    pub fn parse(attr_value: &str) -> Result<Self, SrtpError> {
        let mut fields = attr_value.split_ascii_whitespace();
        let tag_str = fields
            .next()
            .ok_or_else(|| SrtpError::MalformedCrypto("empty attribute".into()))?;
        let tag = parse_tag(tag_str)?;
        let suite_str = fields
            .next()
            .ok_or_else(|| SrtpError::MalformedCrypto("missing crypto suite".into()))?;
        let suite: CryptoSuite = suite_str.parse()?;
        let key_params = fields
            .next()
            .ok_or_else(|| SrtpError::MalformedCrypto("missing key parameters".into()))?;
        let params = fields.collect::<Vec<_>>().join(" ");

        // key-params = key-param *(";" key-param); we keep the first.
        let first = key_params.split(';').next().unwrap_or_default();
        let (method, info) = first.split_once(':').ok_or_else(|| {
            SrtpError::MalformedCrypto(format!("key parameter {first:?} has no key method"))
        })?;
        if !method.eq_ignore_ascii_case("inline") {
            return Err(SrtpError::Unsupported(format!("key method {method:?}")));
        }
        let mut parts = info.split('|');
        let key_b64 = parts.next().unwrap_or_default();
        if key_b64.is_empty() {
            return Err(SrtpError::BadBase64("empty key".into()));
        }
        let key_salt = LENIENT_B64
            .decode(key_b64)
            .map_err(|e| SrtpError::BadBase64(e.to_string()))?;
        if key_salt.len() != suite.key_salt_len() {
            return Err(SrtpError::KeyLength {
                suite,
                expected: suite.key_salt_len(),
                actual: key_salt.len(),
            });
        }

        let mut lifetime = None;
        let mut mki = None;
        for part in parts {
            if part.contains(':') {
                if mki.is_some() {
                    return Err(SrtpError::BadMki(part.to_owned()));
                }
                mki = Some(parse_mki(part)?);
            } else {
                // The lifetime comes before the MKI.
                if lifetime.is_some() || mki.is_some() {
                    return Err(SrtpError::MalformedCrypto(format!(
                        "unexpected key-info field {part:?}"
                    )));
                }
                lifetime = Some(parse_lifetime(part)?);
            }
        }

        Ok(SdesCrypto {
            tag,
            suite,
            key_salt,
            lifetime,
            mki,
            params,
        })
    }

    /// Parses every value it can and skips the rest (unknown suites, bad keys): the lenient
    /// reading of the crypto lines of a remote offer or answer.
    pub fn parse_all<S: AsRef<str>>(values: &[S]) -> Vec<SdesCrypto> {
        values
            .iter()
            .filter_map(|v| match SdesCrypto::parse(v.as_ref()) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::debug!(error = %e, "skipping crypto attribute");
                    None
                }
            })
            .collect()
    }

    /// Formats the attribute value (without the `a=crypto:` prefix).
    pub fn to_attribute_value(&self) -> String {
        let mut out = format!(
            "{} {} inline:{}",
            self.tag,
            self.suite,
            base64::engine::general_purpose::STANDARD.encode(&self.key_salt)
        );
        if let Some(lifetime) = self.lifetime {
            if lifetime.is_power_of_two() {
                let _ = write!(out, "|2^{}", lifetime.trailing_zeros());
            } else {
                let _ = write!(out, "|{lifetime}");
            }
        }
        if let Some((value, len)) = self.mki {
            let _ = write!(out, "|{value}:{len}");
        }
        if !self.params.is_empty() {
            out.push(' ');
            out.push_str(&self.params);
        }
        out
    }

    /// A fresh attribute with a random key and salt from the operating system's RNG.
    pub fn generate(tag: u32, suite: CryptoSuite) -> Self {
        let mut key_salt = vec![0u8; suite.key_salt_len()];
        if rand::rngs::OsRng.try_fill_bytes(&mut key_salt).is_err() {
            // The OS RNG failing is exceptional; the thread RNG is a CSPRNG seeded from it.
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut key_salt);
        }
        SdesCrypto {
            tag,
            suite,
            key_salt,
            lifetime: None,
            mki: None,
            params: String::new(),
        }
    }

    /// The master key part of `key_salt`.
    pub fn master_key(&self) -> &[u8] {
        self.key_salt
            .get(..self.suite.key_len())
            .unwrap_or(&self.key_salt)
    }

    /// The master salt part of `key_salt`.
    pub fn master_salt(&self) -> &[u8] {
        self.key_salt.get(self.suite.key_len()..).unwrap_or(&[])
    }

    /// Checks that an SRTP context can be built from this attribute: key length, an MKI we
    /// can carry, and session parameters we can honour (RFC 4568 §6.3: `KDR` other than 0,
    /// `UNENCRYPTED_*`, `UNAUTHENTICATED_SRTP` and `FEC_KEY` are not supported; `WSH` and
    /// `FEC_ORDER` are accepted and `-`-prefixed extensions ignored).
    pub fn check_supported(&self) -> Result<(), SrtpError> {
        if self.key_salt.len() != self.suite.key_salt_len() {
            return Err(SrtpError::KeyLength {
                suite: self.suite,
                expected: self.suite.key_salt_len(),
                actual: self.key_salt.len(),
            });
        }
        if let Some((value, len)) = self.mki {
            if self.suite == CryptoSuite::AeadAes128Gcm {
                return Err(SrtpError::Unsupported(
                    "MKI with AEAD_AES_128_GCM".to_owned(),
                ));
            }
            check_mki(value, len, &format!("{value}:{len}"))?;
        }
        if self.lifetime == Some(0) {
            return Err(SrtpError::BadLifetime("0".to_owned()));
        }
        for param in self.params.split_ascii_whitespace() {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            match name {
                "KDR" if value == "0" => {}
                "WSH" if value.parse::<u32>().is_ok() => {}
                "FEC_ORDER" => {}
                _ if name.starts_with('-') => {}
                _ => return Err(SrtpError::Unsupported(format!("session parameter {param}"))),
            }
        }
        Ok(())
    }
}

fn parse_tag(s: &str) -> Result<u32, SrtpError> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SrtpError::MalformedCrypto(format!(
            "tag {s:?} is not 1 to 9 digits"
        )));
    }
    s.parse()
        .map_err(|_| SrtpError::MalformedCrypto(format!("tag {s:?}")))
}

fn parse_lifetime(s: &str) -> Result<u64, SrtpError> {
    let bad = || SrtpError::BadLifetime(s.to_owned());
    let value = if let Some(exp) = s.strip_prefix("2^") {
        if exp.is_empty() || !exp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let exp: u32 = exp.parse().map_err(|_| bad())?;
        if exp > 63 {
            return Err(bad());
        }
        1u64 << exp
    } else {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())?
    };
    if value == 0 {
        return Err(bad());
    }
    Ok(value)
}

fn parse_mki(s: &str) -> Result<(u32, u32), SrtpError> {
    let bad = || SrtpError::BadMki(s.to_owned());
    let (value, len) = s.split_once(':').ok_or_else(bad)?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(value) || !digits(len) || len.len() > 3 {
        return Err(bad());
    }
    let value: u32 = value.parse().map_err(|_| bad())?;
    let len: u32 = len.parse().map_err(|_| bad())?;
    check_mki(value, len, s)?;
    Ok((value, len))
}

fn check_mki(value: u32, len: u32, text: &str) -> Result<(), SrtpError> {
    if len == 0 || len > MAX_MKI_LEN {
        return Err(SrtpError::BadMki(text.to_owned()));
    }
    if len < 4 && u64::from(value) >= 1u64 << (8 * len) {
        return Err(SrtpError::BadMki(text.to_owned()));
    }
    Ok(())
}

/// Our SDES offer: one fresh key per supported suite, tags 1.., in the order
/// AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32, AEAD_AES_128_GCM.
pub fn sdes_offer() -> Vec<SdesCrypto> {
    CryptoSuite::ALL
        .iter()
        .zip(1u32..)
        .map(|(suite, tag)| SdesCrypto::generate(tag, *suite))
        .collect()
}

/// Answers a remote SDES offer: picks the first offered line (the offerer's preference) that
/// we can honour and returns it with our answer (same tag and suite, a fresh key).
pub fn sdes_answer(offered: &[SdesCrypto]) -> Option<(SdesCrypto, SdesCrypto)> {
    offered
        .iter()
        .find_map(|remote| match remote.check_supported() {
            Ok(()) => Some((
                remote.clone(),
                SdesCrypto::generate(remote.tag, remote.suite),
            )),
            Err(e) => {
                tracing::debug!(tag = remote.tag, error = %e, "skipping offered crypto line");
                None
            }
        })
}

/// Accepts the crypto line of an answer to our offer: returns (our offered line, the answer).
pub fn sdes_accept(
    our_offer: &[SdesCrypto],
    answer: &SdesCrypto,
) -> Result<(SdesCrypto, SdesCrypto), SrtpError> {
    let local = our_offer
        .iter()
        .find(|c| c.tag == answer.tag)
        .ok_or(SrtpError::TagNotOffered(answer.tag))?;
    if local.suite != answer.suite {
        return Err(SrtpError::SuiteMismatch {
            tag: answer.tag,
            offered: local.suite,
            answered: answer.suite,
        });
    }
    answer.check_supported()?;
    Ok((local.clone(), answer.clone()))
}
