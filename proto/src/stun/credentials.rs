//! Long-term credentials (RFC 8489 §9.2), TURN REST credentials
//! (draft-uberti-behave-turn-rest-00) and a client that answers 401/438 challenges.

use base64::Engine;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

use super::attr::Attribute;
use super::message::{Integrity, Message};

/// The long-term key `MD5(username ":" realm ":" password)` (RFC 8489 §9.2.2; no SASLprep:
/// ASCII credentials are unchanged by it). It equals the SIP digest MD5 HA1 for the same triple.
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// The REST API password for `username`: `base64(HMAC-SHA1(secret, username))`.
pub fn rest_password(secret: &[u8], username: &str) -> String {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Splits a REST username `expiry[:user]` into its expiry (Unix seconds) and user part.
pub fn parse_rest_username(username: &str) -> Option<(u64, &str)> {
    let (expiry, user) = match username.split_once(':') {
        Some((e, u)) => (e, u),
        None => (username, ""),
    };
    if expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    expiry.parse().ok().map(|e| (e, user))
}

/// What the client should do after an error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeOutcome {
    /// Realm/nonce learnt or refreshed: send the request again, signed.
    Retry,
    /// The credentials were refused (a second 401 for the same realm and nonce).
    Rejected,
    /// Not an authentication error.
    NotAChallenge,
}

/// Client side of the long-term credential mechanism: remembers realm and nonce from the
/// server's 401/438 and signs requests with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY.
#[derive(Debug, Clone)]
pub struct LongTermClient {
    username: String,
    password: String,
    realm: Option<String>,
    nonce: Option<String>,
    key: Option<[u8; 16]>,
    signed_with: Option<(String, String)>,
}

impl LongTermClient {
    /// Credentials for `username`/`password`; the realm comes from the first challenge.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> LongTermClient {
        LongTermClient {
            username: username.into(),
            password: password.into(),
            realm: None,
            nonce: None,
            key: None,
            signed_with: None,
        }
    }

    /// The realm learnt from the server, if any.
    pub fn realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }

    /// The long-term key once the realm is known.
    pub fn key(&self) -> Option<&[u8; 16]> {
        self.key.as_ref()
    }

    /// Encodes `message`, adding USERNAME, REALM, NONCE and MESSAGE-INTEGRITY once a challenge
    /// was seen (before that, the request goes unsigned, as RFC 8489 §9.2.3 describes).
    pub fn encode(&mut self, message: &Message) -> Vec<u8> {
        match (&self.realm, &self.nonce, &self.key) {
            (Some(realm), Some(nonce), Some(key)) => {
                let mut m = message.clone();
                m.attributes.retain(|a| {
                    !matches!(
                        a,
                        Attribute::Username(_) | Attribute::Realm(_) | Attribute::Nonce(_)
                    )
                });
                m.push(Attribute::Username(self.username.clone()));
                m.push(Attribute::Realm(realm.clone()));
                m.push(Attribute::Nonce(nonce.clone()));
                self.signed_with = Some((realm.clone(), nonce.clone()));
                m.encode(Integrity::Sha1(key), true)
            }
            _ => message.encode(Integrity::None, true),
        }
    }

    /// Learns from an error response: 401 with REALM and NONCE (first time, or a new nonce),
    /// or 438 Stale Nonce.
    pub fn on_error(&mut self, response: &Message) -> ChallengeOutcome {
        let Some((code, _)) = response.error_code() else {
            return ChallengeOutcome::NotAChallenge;
        };
        if code != 401 && code != 438 {
            return ChallengeOutcome::NotAChallenge;
        }
        let (Some(realm), Some(nonce)) = (response.realm(), response.nonce()) else {
            return ChallengeOutcome::Rejected;
        };
        // A 401 after a signed request for this realm: the credentials are wrong (servers hand out
        // a fresh nonce with every challenge, so the nonce cannot tell).
        if code == 401 && self.signed_with.as_ref().is_some_and(|(r, _)| r == realm) {
            return ChallengeOutcome::Rejected;
        }
        if self.realm.as_deref() != Some(realm) {
            self.key = Some(long_term_key(&self.username, realm, &self.password));
            self.realm = Some(realm.to_owned());
        }
        self.nonce = Some(nonce.to_owned());
        ChallengeOutcome::Retry
    }

    /// Checks a success response's integrity with the key (when one is known).
    pub fn verify(&self, response: &Message) -> bool {
        self.key
            .as_ref()
            .is_some_and(|k| response.verify_integrity(k).is_ok())
    }
}
