//! The security of one RTP m-line, shared by the audio and the video offer/answer.
//!
//! An m-line's transport profile ([`TransportProfile`]) and its keys (RFC 4568
//! `a=crypto`, RFC 5763 `a=fingerprint`/`a=setup`) are read once ([`LineKeys`]);
//! an answerer's chooser sees them as an [`OfferedStream`] and returns an
//! [`AnswerSecurity`], which must [`fit`](AnswerSecurity::fits) the offer and
//! goes into the answer as [`attributes`](AnswerSecurity::attributes); an
//! offerer learns the agreed [`SecurityKind`] from the answer with
//! [`LineKeys::answered_kind`].

use std::fmt;

use super::Attribute;

/// An RTP transport profile of an `m=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportProfile {
    /// `RTP/AVP` (RFC 3551).
    RtpAvp,
    /// `RTP/AVPF` (RFC 4585).
    RtpAvpf,
    /// `RTP/SAVP` (RFC 3711, keys by SDES).
    RtpSavp,
    /// `RTP/SAVPF` (RFC 5124, keys by SDES).
    RtpSavpf,
    /// `UDP/TLS/RTP/SAVP` (RFC 5764, DTLS-SRTP).
    UdpTlsRtpSavp,
    /// `UDP/TLS/RTP/SAVPF` (RFC 5764, DTLS-SRTP with feedback).
    UdpTlsRtpSavpf,
}

impl TransportProfile {
    /// The protocol token as written on the `m=` line.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportProfile::RtpAvp => "RTP/AVP",
            TransportProfile::RtpAvpf => "RTP/AVPF",
            TransportProfile::RtpSavp => "RTP/SAVP",
            TransportProfile::RtpSavpf => "RTP/SAVPF",
            TransportProfile::UdpTlsRtpSavp => "UDP/TLS/RTP/SAVP",
            TransportProfile::UdpTlsRtpSavpf => "UDP/TLS/RTP/SAVPF",
        }
    }

    /// Parses a protocol token (case-insensitive); `None` for non-RTP or unknown protocols.
    pub fn parse(token: &str) -> Option<Self> {
        [
            TransportProfile::RtpAvp,
            TransportProfile::RtpAvpf,
            TransportProfile::RtpSavp,
            TransportProfile::RtpSavpf,
            TransportProfile::UdpTlsRtpSavp,
            TransportProfile::UdpTlsRtpSavpf,
        ]
        .into_iter()
        .find(|p| p.as_str().eq_ignore_ascii_case(token))
    }

    /// Plain RTP (`RTP/AVP`, `RTP/AVPF`); SDES keys may still ride along (best-effort SRTP).
    pub fn is_plain(self) -> bool {
        matches!(self, TransportProfile::RtpAvp | TransportProfile::RtpAvpf)
    }

    /// SRTP keyed by SDES `a=crypto` (`RTP/SAVP`, `RTP/SAVPF`).
    pub fn is_savp(self) -> bool {
        matches!(self, TransportProfile::RtpSavp | TransportProfile::RtpSavpf)
    }

    /// DTLS-SRTP (`UDP/TLS/RTP/SAVP`, `UDP/TLS/RTP/SAVPF`).
    pub fn is_dtls(self) -> bool {
        matches!(
            self,
            TransportProfile::UdpTlsRtpSavp | TransportProfile::UdpTlsRtpSavpf
        )
    }

    /// Whether the profile carries RTCP feedback (the `F` variants).
    pub fn has_feedback(self) -> bool {
        matches!(
            self,
            TransportProfile::RtpAvpf
                | TransportProfile::RtpSavpf
                | TransportProfile::UdpTlsRtpSavpf
        )
    }
}

impl fmt::Display for TransportProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The security parameters of one offered m-line, shown to the answer's security chooser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedStream<'a> {
    /// 0-based m-line index.
    pub index: usize,
    /// Offered transport profile.
    pub profile: TransportProfile,
    /// Offered `a=crypto` values in order (possibly on `RTP/AVP`: best-effort SRTP).
    pub crypto: Vec<&'a str>,
    /// Offered `a=fingerprint` (media level, else session level).
    pub fingerprint: Option<&'a str>,
    /// Offered `a=setup` (media level, else session level).
    pub setup: Option<&'a str>,
}

/// How we secure the stream we answer (returned by the answer's security chooser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerSecurity {
    /// Plain RTP (only valid for `RTP/AVP(F)`).
    Plain,
    /// SDES: our `a=crypto` value (same tag and suite as the offered line we picked).
    Sdes(String),
    /// DTLS-SRTP: our certificate fingerprint and `a=setup` (`active` or `passive`).
    Dtls {
        /// `a=fingerprint` value.
        fingerprint: String,
        /// `a=setup` value.
        setup: String,
    },
}

impl AnswerSecurity {
    /// The kind of security this is.
    pub fn kind(&self) -> SecurityKind {
        match self {
            AnswerSecurity::Plain => SecurityKind::Plain,
            AnswerSecurity::Sdes(_) => SecurityKind::Sdes,
            AnswerSecurity::Dtls { .. } => SecurityKind::Dtls,
        }
    }

    /// Whether this is a valid answer to `offered` (its profile and keys): plain only for
    /// `RTP/AVP(F)`, SDES for `RTP/SAVP(F)` or best-effort on `RTP/AVP(F)` with offered keys,
    /// DTLS only for `UDP/TLS/RTP/SAVP(F)` with an offered fingerprint; our own values must
    /// not be blank.
    pub fn fits(&self, offered: &OfferedStream<'_>) -> bool {
        match self {
            AnswerSecurity::Plain => offered.profile.is_plain(),
            AnswerSecurity::Sdes(value) => {
                !value.trim().is_empty()
                    && !offered.crypto.is_empty()
                    && (offered.profile.is_savp() || offered.profile.is_plain())
            }
            AnswerSecurity::Dtls { fingerprint, setup } => {
                offered.profile.is_dtls()
                    && offered.fingerprint.is_some()
                    && !fingerprint.trim().is_empty()
                    && !setup.trim().is_empty()
            }
        }
    }

    /// The attributes that carry this in an answer (`a=crypto`, or `a=fingerprint` + `a=setup`).
    pub fn attributes(&self) -> Vec<Attribute> {
        match self {
            AnswerSecurity::Plain => Vec::new(),
            AnswerSecurity::Sdes(value) => vec![Attribute::new("crypto", value.trim())],
            AnswerSecurity::Dtls { fingerprint, setup } => vec![
                Attribute::new("fingerprint", fingerprint.trim()),
                Attribute::new("setup", setup.trim()),
            ],
        }
    }

    /// What the security attributes of our own m-line declare: `a=fingerprint` (with its
    /// `a=setup`) means DTLS, else `a=crypto` SDES, else plain.
    pub fn declared_by(attrs: &[Attribute]) -> AnswerSecurity {
        let value = |name: &str| {
            attrs
                .iter()
                .find(|a| a.name.eq_ignore_ascii_case(name))
                .and_then(|a| a.value.clone())
        };
        if let Some(fingerprint) = value("fingerprint") {
            AnswerSecurity::Dtls {
                fingerprint,
                setup: value("setup").unwrap_or_default(),
            }
        } else if let Some(c) = value("crypto") {
            AnswerSecurity::Sdes(c)
        } else {
            AnswerSecurity::Plain
        }
    }
}

/// Which kind of security was agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SecurityKind {
    /// Plain RTP.
    #[default]
    Plain,
    /// SRTP keyed by SDES (RFC 4568).
    Sdes,
    /// DTLS-SRTP (RFC 5763/5764).
    Dtls,
}

/// Whether `security` is a valid answer to `offered` (see [`AnswerSecurity::fits`]).
pub fn security_fits(security: &AnswerSecurity, offered: &OfferedStream<'_>) -> bool {
    security.fits(offered)
}

/// The attributes that carry `security` in our answer (see [`AnswerSecurity::attributes`]).
pub fn security_attributes(security: &AnswerSecurity) -> Vec<Attribute> {
    security.attributes()
}

/// The `a=setup` to answer with (RFC 5763 §5): `active` for `actpass` or none, `passive` for `active`.
pub fn setup_answer(offered: Option<&str>) -> &'static str {
    match offered.map(str::trim) {
        Some(s) if s.eq_ignore_ascii_case("active") => "passive",
        _ => "active",
    }
}

/// A security chooser that accepts plain `RTP/AVP(F)` only (SRTP off), ignoring offered keys.
pub fn plain_only(stream: &OfferedStream<'_>) -> Option<AnswerSecurity> {
    stream.profile.is_plain().then_some(AnswerSecurity::Plain)
}

/// The first value of attribute `name` (trimmed) on the m-line, else at session level.
pub(crate) fn line_attr<'a>(
    media: &'a [Attribute],
    session: &'a [Attribute],
    name: &str,
) -> Option<&'a str> {
    let find = |attrs: &'a [Attribute]| {
        attrs
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .and_then(|a| a.value.as_deref())
            .map(str::trim)
    };
    find(media).or_else(|| find(session))
}

/// The security keys one side wrote for an m-line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LineKeys<'a> {
    /// `a=crypto` values of the m-line, in order.
    pub crypto: Vec<&'a str>,
    /// `a=fingerprint` (media level, else session level).
    pub fingerprint: Option<&'a str>,
    /// `a=setup` (media level, else session level).
    pub setup: Option<&'a str>,
}

impl<'a> LineKeys<'a> {
    /// Reads the keys of an m-line with attributes `media` in a description with session
    /// attributes `session` (`a=crypto` is media-level only).
    pub fn read(media: &'a [Attribute], session: &'a [Attribute]) -> Self {
        LineKeys {
            crypto: media
                .iter()
                .filter(|a| a.name.eq_ignore_ascii_case("crypto"))
                .filter_map(|a| a.value.as_deref())
                .map(str::trim)
                .collect(),
            fingerprint: line_attr(media, session, "fingerprint"),
            setup: line_attr(media, session, "setup"),
        }
    }

    /// These keys as offered on m-line `index` with `profile`, for a security chooser.
    pub fn offered(&self, index: usize, profile: TransportProfile) -> OfferedStream<'a> {
        OfferedStream {
            index,
            profile,
            crypto: self.crypto.clone(),
            fingerprint: self.fingerprint,
            setup: self.setup,
        }
    }

    /// The security an answer with these keys agrees to on our offered `profile`: DTLS needs
    /// the answer's `a=fingerprint`, `RTP/SAVP(F)` its `a=crypto`; on `RTP/AVP(F)` an answered
    /// `a=crypto` turns SDES on when we offered keys (`we_offered_crypto`). The error says
    /// what the answer lacks.
    pub fn answered_kind(
        &self,
        profile: TransportProfile,
        we_offered_crypto: bool,
    ) -> Result<SecurityKind, &'static str> {
        if profile.is_dtls() {
            if self.fingerprint.is_none() {
                return Err("DTLS-SRTP answer without a=fingerprint");
            }
            Ok(SecurityKind::Dtls)
        } else if profile.is_savp() {
            if self.crypto.is_empty() {
                return Err("SRTP answer without a=crypto");
            }
            Ok(SecurityKind::Sdes)
        } else if we_offered_crypto && !self.crypto.is_empty() {
            Ok(SecurityKind::Sdes)
        } else {
            Ok(SecurityKind::Plain)
        }
    }

    /// Owned copies for a negotiated stream: (`a=crypto` values, fingerprint, setup).
    pub fn to_owned_parts(&self) -> (Vec<String>, Option<String>, Option<String>) {
        (
            self.crypto.iter().map(|s| (*s).to_owned()).collect(),
            self.fingerprint.map(str::to_owned),
            self.setup.map(str::to_owned),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRYPTO: &str =
        "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    #[test]
    fn keys_fall_back_to_session_level_and_show_as_offered() {
        let media = vec![
            Attribute::new("crypto", format!(" {CRYPTO} ")),
            Attribute::new("setup", "actpass"),
        ];
        let session = vec![
            Attribute::new("fingerprint", "sha-256 AB:CD"),
            Attribute::new("setup", "active"),
            Attribute::new("crypto", "2 AES_CM_128_HMAC_SHA1_32 inline:x"),
        ];
        let keys = LineKeys::read(&media, &session);
        assert_eq!(keys.crypto, vec![CRYPTO], "a=crypto is media-level only");
        assert_eq!(keys.fingerprint, Some("sha-256 AB:CD"));
        assert_eq!(keys.setup, Some("actpass"));
        let offered = keys.offered(2, TransportProfile::RtpAvp);
        assert_eq!(offered.index, 2);
        assert!(AnswerSecurity::Sdes(CRYPTO.into()).fits(&offered));
        assert!(AnswerSecurity::Plain.fits(&offered));
        assert!(!AnswerSecurity::Sdes("  ".into()).fits(&offered));
        let dtls = AnswerSecurity::Dtls {
            fingerprint: "sha-256 01:02".into(),
            setup: setup_answer(offered.setup).into(),
        };
        assert!(!dtls.fits(&offered), "DTLS needs a DTLS profile");
        assert!(dtls.fits(&keys.offered(0, TransportProfile::UdpTlsRtpSavpf)));
        assert!(!AnswerSecurity::Plain.fits(&keys.offered(0, TransportProfile::RtpSavp)));
    }

    #[test]
    fn declared_security_round_trips_through_attributes() {
        for chosen in [
            AnswerSecurity::Plain,
            AnswerSecurity::Sdes(CRYPTO.into()),
            AnswerSecurity::Dtls {
                fingerprint: "sha-256 01:02".into(),
                setup: "passive".into(),
            },
        ] {
            let attrs = chosen.attributes();
            assert_eq!(AnswerSecurity::declared_by(&attrs), chosen);
            assert_eq!(AnswerSecurity::declared_by(&attrs).kind(), chosen.kind());
        }
    }

    #[test]
    fn answered_security_needs_the_profile_keys() {
        let none = LineKeys::default();
        let sdes = LineKeys {
            crypto: vec![CRYPTO],
            ..LineKeys::default()
        };
        let dtls = LineKeys {
            fingerprint: Some("sha-256 01:02"),
            ..LineKeys::default()
        };
        use TransportProfile as P;
        assert!(none.answered_kind(P::UdpTlsRtpSavp, false).is_err());
        assert_eq!(
            dtls.answered_kind(P::UdpTlsRtpSavp, false),
            Ok(SecurityKind::Dtls)
        );
        assert!(none.answered_kind(P::RtpSavpf, true).is_err());
        assert_eq!(sdes.answered_kind(P::RtpSavp, true), Ok(SecurityKind::Sdes));
        // Best-effort SDES on RTP/AVP: only when we offered keys.
        assert_eq!(sdes.answered_kind(P::RtpAvp, true), Ok(SecurityKind::Sdes));
        assert_eq!(
            sdes.answered_kind(P::RtpAvp, false),
            Ok(SecurityKind::Plain)
        );
        assert_eq!(
            none.answered_kind(P::RtpAvpf, true),
            Ok(SecurityKind::Plain)
        );
        assert_eq!(sdes.to_owned_parts(), (vec![CRYPTO.to_owned()], None, None));
    }
}
