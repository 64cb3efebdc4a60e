//! SIP digest authentication (RFC 7616, RFC 8760, RFC 2617 compatibility, RFC 3261 §22).
//!
//! Everything here is pure: parsing and printing of `WWW-Authenticate` /
//! `Proxy-Authenticate` challenges and `Authorization` / `Proxy-Authorization`
//! credentials, the digest computations, a client that answers challenges and a
//! server-side nonce issuer with stateless, HMAC-protected nonces. Time and
//! randomness are passed in by the caller.
//!
//! Server-side checklist (what [`verify`] does *not* check): the realm is ours,
//! the `uri` parameter matches the Request-URI, the username exists, and
//! [`NonceIssuer::check`] accepted the nonce and nonce count.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use hmac::Hmac;
use hmac::Mac;
use hmac::digest::KeyInit;
use md5::Md5;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Errors from parsing digest headers or answering challenges.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The header uses another authentication scheme (e.g. `Basic`, `Bearer`).
    #[error("authentication scheme {0:?} is not Digest")]
    NotDigest(String),
    /// The parameter list is malformed.
    #[error("malformed digest parameters: {0}")]
    Syntax(&'static str),
    /// A mandatory parameter is absent.
    #[error("missing digest parameter {0:?}")]
    MissingParameter(&'static str),
    /// A parameter occurs more than once (RFC 7235 §2.1 forbids it).
    #[error("digest parameter {0:?} appears more than once")]
    DuplicateParameter(String),
    /// The `algorithm` is not one we implement.
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// A parameter has a value that is not allowed for it.
    #[error("invalid value {value:?} for digest parameter {name:?}")]
    InvalidValue {
        /// The parameter name.
        name: &'static str,
        /// The offending value.
        value: String,
    },
    /// None of the offered challenges uses an algorithm and qop we support.
    #[error("no challenge with a supported algorithm and qop")]
    NoSupportedChallenge,
    /// The server challenged again, without `stale=true`, after we answered:
    /// the username or password is wrong.
    #[error("credentials for realm {realm:?} were rejected")]
    CredentialsRejected {
        /// The realm whose credentials were refused.
        realm: String,
    },
}

/// A digest hash algorithm (RFC 7616 §3.3 / IANA registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// `MD5` (the default when a challenge names no algorithm).
    #[default]
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl Algorithm {
    /// The token used on the wire (`MD5`, `MD5-sess`, `SHA-256`, `SHA-256-sess`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Whether this is a `-sess` variant (HA1 mixes in nonce and cnonce).
    pub fn is_session(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// The same hash without the `-sess` suffix (what a stored HA1 is computed with).
    pub fn base(self) -> Algorithm {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => Algorithm::Md5,
            Algorithm::Sha256 | Algorithm::Sha256Sess => Algorithm::Sha256,
        }
    }

    fn hash_hex(self, data: &[u8]) -> String {
        match self.base() {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            _ => hex::encode(Sha256::digest(data)),
        }
    }
}

impl FromStr for Algorithm {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("MD5") {
            Ok(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("MD5-sess") {
            Ok(Algorithm::Md5Sess)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Ok(Algorithm::Sha256)
        } else if s.eq_ignore_ascii_case("SHA-256-sess") {
            Ok(Algorithm::Sha256Sess)
        } else {
            Err(AuthError::UnsupportedAlgorithm(s.to_owned()))
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A digest challenge: the value of a `WWW-Authenticate` or `Proxy-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The protection space (`realm`).
    pub realm: String,
    /// The server nonce.
    pub nonce: String,
    /// Opaque data the client must echo back.
    pub opaque: Option<String>,
    /// The hash algorithm (MD5 when absent).
    pub algorithm: Algorithm,
    /// Offered quality-of-protection values (`auth`, `auth-int`); empty for RFC 2069 style.
    pub qop: Vec<String>,
    /// `stale=true`: the previous nonce expired but the credentials were right.
    pub stale: bool,
    /// The `domain` parameter (space-separated URIs), if any.
    pub domain: Option<String>,
    /// `userhash=true`: the server supports hashed usernames (RFC 7616 §3.4.4).
    pub userhash: bool,
}

impl Challenge {
    /// Parses a header value such as `Digest realm="a", nonce="b", qop="auth"`.
    ///
    /// Unknown parameters are ignored; an unsupported algorithm is an error
    /// ([`AuthError::UnsupportedAlgorithm`]) so that the caller can skip that challenge.
    pub fn parse(header_value: &str) -> Result<Self, AuthError> {
        let params = Params::parse(header_value)?;
        let realm = params.required("realm")?.to_owned();
        let nonce = params.required("nonce")?.to_owned();
        let algorithm = match params.get("algorithm") {
            Some(a) => a.parse()?,
            None => Algorithm::Md5,
        };
        let qop = params
            .get("qop")
            .map(|q| {
                q.split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Challenge {
            realm,
            nonce,
            opaque: params.get("opaque").map(str::to_owned),
            algorithm,
            qop,
            stale: params.flag("stale")?,
            domain: params.get("domain").map(str::to_owned),
            userhash: params.flag("userhash")?,
        })
    }

    /// The qop this library would use to answer: `auth` if offered, else
    /// `auth-int`, `None` when no qop was offered (RFC 2069 compatibility).
    /// `Err` when only unknown qop values are offered.
    pub fn preferred_qop(&self) -> Result<Option<&'static str>, AuthError> {
        if self.qop.is_empty() {
            return Ok(None);
        }
        if self.qop.iter().any(|q| q.eq_ignore_ascii_case("auth")) {
            Ok(Some("auth"))
        } else if self.qop.iter().any(|q| q.eq_ignore_ascii_case("auth-int")) {
            Ok(Some("auth-int"))
        } else {
            Err(AuthError::NoSupportedChallenge)
        }
    }
}

/// Every usable digest challenge in a set of `WWW-Authenticate` or
/// `Proxy-Authenticate` header values, in order.
///
/// A value may hold several comma-separated challenges (RFC 7235 §4.1).
/// Other schemes (`Basic`, `Bearer`, ...), malformed challenges and challenges
/// with an algorithm we do not support are skipped, as RFC 8760 §2.4 requires.
pub fn parse_challenges<'a>(header_values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    header_values
        .into_iter()
        .flat_map(split_challenges)
        .filter_map(|piece| Challenge::parse(piece).ok())
        .collect()
}

/// Splits a header value into its challenges: a new challenge starts after a
/// top-level comma when the next token is not followed by `=` (it is a scheme).
fn split_challenges(value: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            ',' => {
                let rest = value.get(i + 1..).unwrap_or_default().trim_start();
                let token_len = rest
                    .find(|ch: char| !is_token_char(ch))
                    .unwrap_or(rest.len());
                let after = rest.get(token_len..).unwrap_or_default().trim_start();
                if token_len > 0 && !after.starts_with('=') {
                    pieces.push(value.get(start..i).unwrap_or_default());
                    start = i + 1;
                }
            }
            _ => {}
        }
    }
    pieces.push(value.get(start..).unwrap_or_default());
    pieces
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest realm=")?;
        write_quoted(f, &self.realm)?;
        if let Some(domain) = &self.domain {
            f.write_str(", domain=")?;
            write_quoted(f, domain)?;
        }
        f.write_str(", nonce=")?;
        write_quoted(f, &self.nonce)?;
        if let Some(opaque) = &self.opaque {
            f.write_str(", opaque=")?;
            write_quoted(f, opaque)?;
        }
        if self.stale {
            f.write_str(", stale=true")?;
        }
        write!(f, ", algorithm={}", self.algorithm)?;
        if !self.qop.is_empty() {
            f.write_str(", qop=")?;
            write_quoted(f, &self.qop.join(","))?;
        }
        if self.userhash {
            f.write_str(", userhash=true")?;
        }
        Ok(())
    }
}

/// Digest credentials: the value of an `Authorization` or `Proxy-Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (decoded from `username*` when that form was used).
    pub username: String,
    /// The realm being answered.
    pub realm: String,
    /// The server nonce being answered.
    pub nonce: String,
    /// The digest URI (the Request-URI in SIP).
    pub uri: String,
    /// The request digest, lowercase hex.
    pub response: String,
    /// The hash algorithm.
    pub algorithm: Algorithm,
    /// The client nonce (required with qop and with `-sess` algorithms).
    pub cnonce: Option<String>,
    /// The opaque value echoed from the challenge.
    pub opaque: Option<String>,
    /// The chosen quality of protection (`auth`, `auth-int`).
    pub qop: Option<String>,
    /// The nonce count (printed as 8 hex digits).
    pub nc: Option<u32>,
}

impl Credentials {
    /// Parses a header value such as `Digest username="bob", realm="a", ...`.
    pub fn parse(header_value: &str) -> Result<Self, AuthError> {
        let params = Params::parse(header_value)?;
        let username = match (params.get("username"), params.get("username*")) {
            (Some(u), None) => u.to_owned(),
            (None, Some(ext)) => decode_ext_value(ext)?,
            (Some(_), Some(_)) => return Err(AuthError::DuplicateParameter("username*".into())),
            (None, None) => return Err(AuthError::MissingParameter("username")),
        };
        let algorithm = match params.get("algorithm") {
            Some(a) => a.parse()?,
            None => Algorithm::Md5,
        };
        let nc = params.get("nc").map(parse_nc).transpose()?;
        let qop = params.get("qop").map(str::to_owned);
        let cnonce = params.get("cnonce").map(str::to_owned);
        if qop.is_some() {
            if cnonce.is_none() {
                return Err(AuthError::MissingParameter("cnonce"));
            }
            if nc.is_none() {
                return Err(AuthError::MissingParameter("nc"));
            }
        }
        Ok(Credentials {
            username,
            realm: params.required("realm")?.to_owned(),
            nonce: params.required("nonce")?.to_owned(),
            uri: params.required("uri")?.to_owned(),
            response: params.required("response")?.to_owned(),
            algorithm,
            cnonce,
            opaque: params.get("opaque").map(str::to_owned),
            qop,
            nc,
        })
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest username=")?;
        write_quoted(f, &self.username)?;
        f.write_str(", realm=")?;
        write_quoted(f, &self.realm)?;
        f.write_str(", nonce=")?;
        write_quoted(f, &self.nonce)?;
        f.write_str(", uri=")?;
        write_quoted(f, &self.uri)?;
        f.write_str(", response=")?;
        write_quoted(f, &self.response)?;
        write!(f, ", algorithm={}", self.algorithm)?;
        if let Some(cnonce) = &self.cnonce {
            f.write_str(", cnonce=")?;
            write_quoted(f, cnonce)?;
        }
        if let Some(opaque) = &self.opaque {
            f.write_str(", opaque=")?;
            write_quoted(f, opaque)?;
        }
        if let Some(qop) = &self.qop {
            // qop is a token (RFC 7616 §3.4); anything else is quoted so it survives a round trip.
            if !qop.is_empty() && qop.chars().all(is_token_char) {
                write!(f, ", qop={qop}")?;
            } else {
                f.write_str(", qop=")?;
                write_quoted(f, qop)?;
            }
        }
        if let Some(nc) = self.nc {
            write!(f, ", nc={nc:08x}")?;
        }
        Ok(())
    }
}

/// HA1 = H(username ":" realm ":" password), lowercase hex, with the base hash of `algorithm`.
///
/// This is what a server stores; `-sess` algorithms derive the session key from it in [`response`].
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// The request digest (RFC 7616 §3.4.1, RFC 2617 §3.2.2, RFC 2069 when `qop` is `None`).
///
/// `ha1_hex` is the plain HA1 from [`ha1`]; for `-sess` algorithms the session
/// HA1 is derived here from it, `nonce` and `cnonce`. For `qop=auth-int` the
/// body is taken as empty; use [`response_with_body`] when the request has one.
#[allow(clippy::too_many_arguments)]
pub fn response(
    algorithm: Algorithm,
    ha1_hex: &str,
    nonce: &str,
    nc: Option<u32>,
    cnonce: Option<&str>,
    qop: Option<&str>,
    method: &str,
    digest_uri: &str,
) -> String {
    response_with_body(
        algorithm, ha1_hex, nonce, nc, cnonce, qop, method, digest_uri, b"",
    )
}

/// Like [`response`], with the message body used by `qop=auth-int`.
#[allow(clippy::too_many_arguments)]
pub fn response_with_body(
    algorithm: Algorithm,
    ha1_hex: &str,
    nonce: &str,
    nc: Option<u32>,
    cnonce: Option<&str>,
    qop: Option<&str>,
    method: &str,
    digest_uri: &str,
    body: &[u8],
) -> String {
    let ha1_hex = ha1_hex.to_ascii_lowercase();
    let cnonce = cnonce.unwrap_or("");
    let key = if algorithm.is_session() {
        algorithm.hash_hex(format!("{ha1_hex}:{nonce}:{cnonce}").as_bytes())
    } else {
        ha1_hex
    };
    let ha2 = match qop {
        Some(q) if q.eq_ignore_ascii_case("auth-int") => {
            let body_hash = algorithm.hash_hex(body);
            algorithm.hash_hex(format!("{method}:{digest_uri}:{body_hash}").as_bytes())
        }
        _ => algorithm.hash_hex(format!("{method}:{digest_uri}").as_bytes()),
    };
    let data = match qop {
        Some(q) => format!("{key}:{nonce}:{:08x}:{cnonce}:{q}:{ha2}", nc.unwrap_or(0)),
        None => format!("{key}:{nonce}:{ha2}"),
    };
    algorithm.hash_hex(data.as_bytes())
}

/// Checks `creds.response` against the expected digest, in constant time.
///
/// `ha1_hex` is the stored HA1 for `creds.username`/`creds.realm` and the
/// algorithm in `creds.algorithm`. The nonce, realm and uri must be checked
/// separately (see the module docs). For `qop=auth-int` with a body use
/// [`verify_with_body`].
pub fn verify(creds: &Credentials, method: &str, ha1_hex: &str) -> bool {
    verify_with_body(creds, method, ha1_hex, b"")
}

/// Like [`verify`], with the message body used by `qop=auth-int`.
pub fn verify_with_body(creds: &Credentials, method: &str, ha1_hex: &str, body: &[u8]) -> bool {
    if let Some(qop) = &creds.qop {
        let known = qop.eq_ignore_ascii_case("auth") || qop.eq_ignore_ascii_case("auth-int");
        if !known || creds.nc.is_none() || creds.cnonce.is_none() {
            return false;
        }
    }
    if creds.algorithm.is_session() && creds.cnonce.is_none() {
        return false;
    }
    let expected = response_with_body(
        creds.algorithm,
        ha1_hex,
        &creds.nonce,
        creds.nc,
        creds.cnonce.as_deref(),
        creds.qop.as_deref(),
        method,
        &creds.uri,
        body,
    );
    constant_time_eq(
        expected.as_bytes(),
        creds.response.to_ascii_lowercase().as_bytes(),
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    diff == 0
}

/// How many `stale=true` challenges in a row we answer for one realm before giving up.
const MAX_STALE_RETRIES: u8 = 3;

#[derive(Debug, Clone)]
struct RealmState {
    challenge: Challenge,
    nc: u32,
}

/// Client side of digest authentication for one account.
///
/// Keeps the nonce count for the current nonce of each realm, answers the
/// topmost supported challenge per realm (RFC 8760 §2.4: the server lists its
/// challenges in preference order, so a server preferring SHA-256 puts it
/// first), retries on `stale=true` and reports a repeated non-stale challenge
/// for a realm as [`AuthError::CredentialsRejected`]. Call [`DigestClient::accepted`]
/// when a request carrying our credentials got a final response other than 401/407.
#[derive(Debug, Clone)]
pub struct DigestClient {
    username: String,
    password: String,
    realms: HashMap<String, RealmState>,
    pending: HashMap<String, u8>,
}

impl DigestClient {
    /// A client for `username` with `password`.
    pub fn new(username: &str, password: &str) -> Self {
        DigestClient {
            username: username.to_owned(),
            password: password.to_owned(),
            realms: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    /// The user name this client authenticates as.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Answers a 401/407: picks the topmost usable challenge and returns the
    /// credentials for its realm. `cnonce` is a fresh random token from the caller.
    pub fn authorize(
        &mut self,
        challenges: &[Challenge],
        method: &str,
        uri: &str,
        cnonce: &str,
    ) -> Result<Credentials, AuthError> {
        self.authorize_with_body(challenges, method, uri, cnonce, b"")
    }

    /// Like [`DigestClient::authorize`], with the request body (used only for `qop=auth-int`).
    pub fn authorize_with_body(
        &mut self,
        challenges: &[Challenge],
        method: &str,
        uri: &str,
        cnonce: &str,
        body: &[u8],
    ) -> Result<Credentials, AuthError> {
        let chosen = challenges
            .iter()
            .find(|c| c.preferred_qop().is_ok())
            .ok_or(AuthError::NoSupportedChallenge)?;
        self.answer(chosen, method, uri, cnonce, body)
    }

    /// Answers every realm present in `challenges` (e.g. a 407 from several
    /// proxies after forking, RFC 3261 §22.3), one credential per realm in
    /// order of first appearance, each for the topmost usable challenge of that realm.
    pub fn authorize_all(
        &mut self,
        challenges: &[Challenge],
        method: &str,
        uri: &str,
        cnonce: &str,
        body: &[u8],
    ) -> Result<Vec<Credentials>, AuthError> {
        let mut seen = HashSet::new();
        let mut picked = Vec::new();
        for c in challenges {
            if c.preferred_qop().is_ok() && seen.insert(c.realm.as_str()) {
                picked.push(c);
            }
        }
        if picked.is_empty() {
            return Err(AuthError::NoSupportedChallenge);
        }
        picked
            .into_iter()
            .map(|c| self.answer(c, method, uri, cnonce, body))
            .collect()
    }

    /// Credentials for `realm` reusing the last nonce with the next nonce
    /// count (pre-emptive authentication of a refresh), if we have one.
    pub fn preemptive(
        &mut self,
        realm: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
    ) -> Option<Credentials> {
        let state = self.realms.get_mut(realm)?;
        state.nc = state.nc.checked_add(1)?;
        let challenge = state.challenge.clone();
        let nc = state.nc;
        self.build(&challenge, nc, method, uri, cnonce, b"").ok()
    }

    /// Tells the client that the last credentials were accepted, so a later
    /// 401/407 is treated as a fresh challenge rather than a wrong password.
    pub fn accepted(&mut self) {
        self.pending.clear();
    }

    /// Forgets all nonces and attempts (e.g. after the password changed).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.realms.clear();
    }

    fn answer(
        &mut self,
        challenge: &Challenge,
        method: &str,
        uri: &str,
        cnonce: &str,
        body: &[u8],
    ) -> Result<Credentials, AuthError> {
        let realm = challenge.realm.clone();
        if let Some(stale_count) = self.pending.get(&realm).copied() {
            if !challenge.stale || stale_count >= MAX_STALE_RETRIES {
                return Err(AuthError::CredentialsRejected { realm });
            }
            self.pending.insert(realm.clone(), stale_count + 1);
        } else {
            self.pending.insert(realm.clone(), 0);
        }
        let nc = match self.realms.get_mut(&realm) {
            Some(state) if state.challenge.nonce == challenge.nonce => {
                state.nc = state.nc.saturating_add(1);
                state.challenge = challenge.clone();
                state.nc
            }
            _ => {
                self.realms.insert(
                    realm,
                    RealmState {
                        challenge: challenge.clone(),
                        nc: 1,
                    },
                );
                1
            }
        };
        self.build(challenge, nc, method, uri, cnonce, body)
    }

    fn build(
        &self,
        challenge: &Challenge,
        nc: u32,
        method: &str,
        uri: &str,
        cnonce: &str,
        body: &[u8],
    ) -> Result<Credentials, AuthError> {
        let qop = challenge.preferred_qop()?;
        let needs_cnonce = qop.is_some() || challenge.algorithm.is_session();
        let cnonce = needs_cnonce.then(|| cnonce.to_owned());
        let nc = qop.map(|_| nc);
        let key = ha1(
            challenge.algorithm,
            &self.username,
            &challenge.realm,
            &self.password,
        );
        let response = response_with_body(
            challenge.algorithm,
            &key,
            &challenge.nonce,
            nc,
            cnonce.as_deref(),
            qop,
            method,
            uri,
            body,
        );
        Ok(Credentials {
            username: self.username.clone(),
            realm: challenge.realm.clone(),
            nonce: challenge.nonce.clone(),
            uri: uri.to_owned(),
            response,
            algorithm: challenge.algorithm,
            cnonce,
            opaque: challenge.opaque.clone(),
            qop: qop.map(str::to_owned),
            nc,
        })
    }
}

/// The outcome of [`NonceIssuer::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    /// Ours, fresh, and (with a nonce count) not seen before.
    Valid,
    /// Ours but expired: challenge again with `stale=true` if the digest was right.
    Stale,
    /// Not issued by us (bad format or MAC) or from the future.
    Invalid,
    /// The nonce count is not higher than one already accepted for this nonce.
    Replay,
}

/// Default number of nonces whose highest nonce count is remembered.
pub const DEFAULT_NONCE_CAPACITY: usize = 65_536;

const NONCE_ID_LEN: usize = 16;
const NONCE_MAC_LEN: usize = 16;
/// Tolerated clock step backwards when a nonce's timestamp is in the future.
const FUTURE_SKEW_SECS: u64 = 5;

/// Server side: issues stateless nonces and checks them.
///
/// A nonce is the hex of `timestamp (8 bytes BE) || random (8 bytes) || HMAC-SHA256(secret, first 16 bytes)[..16]`.
/// Validity needs no state; replay protection for `qop` remembers the highest
/// nonce count per nonce in a bounded map (oldest entries evicted; a nonce whose
/// entry was evicted is reported [`NonceStatus::Stale`] so the client fetches a new one).
#[derive(Debug, Clone)]
pub struct NonceIssuer {
    mac: Hmac<Sha256>,
    lifetime: Duration,
    capacity: usize,
    highest_nc: HashMap<[u8; NONCE_ID_LEN], u32>,
    order: VecDeque<([u8; NONCE_ID_LEN], u64)>,
    evicted_up_to: Option<u64>,
}

impl NonceIssuer {
    /// An issuer keyed by `secret`, whose nonces go stale after `lifetime`.
    pub fn new(secret: [u8; 32], lifetime: Duration) -> Self {
        // HMAC pads keys shorter than the block size with zeros, so padding the
        // 32-byte secret to the 64-byte block gives the same MAC and an infallible constructor.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&secret);
        let mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
        NonceIssuer {
            mac,
            lifetime,
            capacity: DEFAULT_NONCE_CAPACITY,
            highest_nc: HashMap::new(),
            order: VecDeque::new(),
            evicted_up_to: None,
        }
    }

    /// Sets how many nonces' counts are remembered (at least 1).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The configured nonce lifetime.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Creates a nonce stamped with `now_unix_secs`, using `random` for uniqueness.
    pub fn issue(&self, now_unix_secs: u64, random: u64) -> String {
        let mut raw = [0u8; NONCE_ID_LEN + NONCE_MAC_LEN];
        raw[..8].copy_from_slice(&now_unix_secs.to_be_bytes());
        raw[8..16].copy_from_slice(&random.to_be_bytes());
        let tag = self.tag(&raw[..NONCE_ID_LEN]);
        raw[NONCE_ID_LEN..].copy_from_slice(&tag[..NONCE_MAC_LEN]);
        hex::encode(raw)
    }

    /// A challenge with a fresh nonce and `qop="auth"` for `realm`.
    pub fn challenge(
        &self,
        realm: &str,
        algorithm: Algorithm,
        now_unix_secs: u64,
        random: u64,
        stale: bool,
    ) -> Challenge {
        Challenge {
            realm: realm.to_owned(),
            nonce: self.issue(now_unix_secs, random),
            opaque: None,
            algorithm,
            qop: vec!["auth".to_owned()],
            stale,
            domain: None,
            userhash: false,
        }
    }

    /// Checks a nonce from credentials: MAC, age, and (when `nc` is given) replay.
    ///
    /// Call it only after the digest itself verified, so a forged request cannot
    /// consume nonce counts. A `Valid` result with `Some(nc)` records `nc`.
    pub fn check(&mut self, nonce: &str, nc: Option<u32>, now_unix_secs: u64) -> NonceStatus {
        let Some(id) = self.authentic_id(nonce) else {
            return NonceStatus::Invalid;
        };
        let mut ts_bytes = [0u8; 8];
        ts_bytes.copy_from_slice(&id[..8]);
        let issued = u64::from_be_bytes(ts_bytes);
        if issued > now_unix_secs.saturating_add(FUTURE_SKEW_SECS) {
            return NonceStatus::Invalid;
        }
        let lifetime = self.lifetime.as_secs();
        if now_unix_secs.saturating_sub(issued) > lifetime {
            return NonceStatus::Stale;
        }
        self.prune_expired(now_unix_secs);
        let Some(nc) = nc else {
            return NonceStatus::Valid;
        };
        if nc == 0 {
            return NonceStatus::Invalid;
        }
        match self.highest_nc.get_mut(&id) {
            Some(highest) if nc <= *highest => NonceStatus::Replay,
            Some(highest) => {
                *highest = nc;
                NonceStatus::Valid
            }
            None => {
                if self.evicted_up_to.is_some_and(|w| issued <= w) {
                    // Its count may have been forgotten: make the client take a new nonce.
                    return NonceStatus::Stale;
                }
                while self.highest_nc.len() >= self.capacity {
                    let Some((old, old_ts)) = self.order.pop_front() else {
                        break;
                    };
                    if self.highest_nc.remove(&old).is_some() {
                        self.evicted_up_to =
                            Some(self.evicted_up_to.map_or(old_ts, |w| w.max(old_ts)));
                    }
                }
                self.highest_nc.insert(id, nc);
                self.order.push_back((id, issued));
                NonceStatus::Valid
            }
        }
    }

    fn tag(&self, id: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(id);
        mac.finalize().into_bytes().into()
    }

    fn authentic_id(&self, nonce: &str) -> Option<[u8; NONCE_ID_LEN]> {
        let mut raw = [0u8; NONCE_ID_LEN + NONCE_MAC_LEN];
        hex::decode_to_slice(nonce, &mut raw).ok()?;
        let (id, tag) = raw.split_at(NONCE_ID_LEN);
        let mut mac = self.mac.clone();
        mac.update(id);
        mac.verify_truncated_left(tag).ok()?;
        let mut out = [0u8; NONCE_ID_LEN];
        out.copy_from_slice(id);
        Some(out)
    }

    fn prune_expired(&mut self, now_unix_secs: u64) {
        let lifetime = self.lifetime.as_secs();
        while let Some((id, ts)) = self.order.front().copied() {
            if now_unix_secs.saturating_sub(ts) <= lifetime {
                break;
            }
            self.order.pop_front();
            self.highest_nc.remove(&id);
        }
    }
}

/// Parsed `name=value` auth-params of a Digest header (names lowercased).
struct Params {
    items: Vec<(String, String)>,
}

impl Params {
    fn parse(header_value: &str) -> Result<Self, AuthError> {
        let s = header_value.trim_start();
        let scheme_end = s.find(|c: char| c.is_ascii_whitespace()).unwrap_or(s.len());
        let (scheme, rest) = s.split_at(scheme_end);
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(AuthError::NotDigest(scheme.to_owned()));
        }
        let mut items: Vec<(String, String)> = Vec::new();
        let mut chars = rest.char_indices().peekable();
        loop {
            // Skip separators.
            while chars
                .peek()
                .is_some_and(|&(_, c)| c == ',' || c.is_ascii_whitespace())
            {
                chars.next();
            }
            let Some(&(start, _)) = chars.peek() else {
                break;
            };
            let mut end = start;
            while let Some(&(i, c)) = chars.peek() {
                if is_token_char(c) {
                    end = i + c.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let name = rest.get(start..end).unwrap_or_default();
            if name.is_empty() {
                return Err(AuthError::Syntax("expected a parameter name"));
            }
            skip_ws(&mut chars);
            if !matches!(chars.next(), Some((_, '='))) {
                return Err(AuthError::Syntax("expected '=' after a parameter name"));
            }
            skip_ws(&mut chars);
            let value = if matches!(chars.peek(), Some(&(_, '"'))) {
                chars.next();
                let mut v = String::new();
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, escaped)) => v.push(escaped),
                            None => break,
                        },
                        other => v.push(other),
                    }
                }
                if !closed {
                    return Err(AuthError::Syntax("unterminated quoted string"));
                }
                v
            } else {
                let mut v = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c == ',' || c.is_ascii_whitespace() || c == '"' {
                        break;
                    }
                    v.push(c);
                    chars.next();
                }
                if v.is_empty() {
                    return Err(AuthError::Syntax("expected a parameter value"));
                }
                v
            };
            skip_ws(&mut chars);
            match chars.peek() {
                None | Some(&(_, ',')) => {}
                Some(_) => return Err(AuthError::Syntax("expected ',' between parameters")),
            }
            let name = name.to_ascii_lowercase();
            if items.iter().any(|(n, _)| *n == name) {
                return Err(AuthError::DuplicateParameter(name));
            }
            items.push((name, value));
        }
        Ok(Params { items })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &'static str) -> Result<&str, AuthError> {
        self.get(name).ok_or(AuthError::MissingParameter(name))
    }

    fn flag(&self, name: &'static str) -> Result<bool, AuthError> {
        match self.get(name) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(AuthError::InvalidValue {
                name,
                value: v.to_owned(),
            }),
        }
    }
}

fn skip_ws(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>) {
    while chars.peek().is_some_and(|&(_, c)| c.is_ascii_whitespace()) {
        chars.next();
    }
}

/// RFC 7230 tchar, plus `*` for extended parameter names like `username*`.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn parse_nc(v: &str) -> Result<u32, AuthError> {
    if v.is_empty() || v.len() > 8 || !v.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(AuthError::InvalidValue {
            name: "nc",
            value: v.to_owned(),
        });
    }
    u32::from_str_radix(v, 16).map_err(|_| AuthError::InvalidValue {
        name: "nc",
        value: v.to_owned(),
    })
}

/// Decodes an RFC 8187 ext-value (`UTF-8''J%C3%A4ger`).
fn decode_ext_value(v: &str) -> Result<String, AuthError> {
    let bad = || AuthError::InvalidValue {
        name: "username*",
        value: v.to_owned(),
    };
    let mut parts = v.splitn(3, '\'');
    let charset = parts.next().ok_or_else(bad)?;
    let _language = parts.next().ok_or_else(bad)?;
    let encoded = parts.next().ok_or_else(bad)?;
    if !charset.eq_ignore_ascii_case("UTF-8") {
        return Err(bad());
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hexpair = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let mut decoded = [0u8; 1];
            hex::decode_to_slice(hexpair, &mut decoded).map_err(|_| bad())?;
            out.push(decoded[0]);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// Writes a quoted-string; control characters (which a quoted-string cannot
/// hold, and which could split a header) are left out.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars().filter(|&c| c == '\t' || !c.is_control()) {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}
