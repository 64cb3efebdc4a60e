//! Digest authentication of requests against the user store.
//!
//! Challenges carry one `WWW-Authenticate`/`Proxy-Authenticate` header per configured algorithm,
//! SHA-256 first (RFC 8760), with stateless HMAC nonces from [`NonceIssuer`] and `qop="auth"`.
//! HA1 values come from [`Store::ha1`] through a small in-memory cache so that the hot REGISTER
//! path rarely touches the database.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tandem_proto::auth::{Algorithm, Challenge, Credentials, NonceIssuer, NonceStatus};

use tandem_proto::msg::{HeaderName, Request, Response};

use crate::config::IpNet;
use crate::location::unix_now;
use crate::store::{Store, StoreError};

/// How long a known HA1 stays cached.
const HA1_TTL: Duration = Duration::from_secs(30);
/// How long "no such user" stays cached.
const HA1_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Maximum cached HA1 entries; the cache is cleared when it grows beyond this.
const HA1_CACHE_MAX: usize = 65_536;

/// Errors building an [`Authenticator`] or looking up credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthnError {
    /// An `[auth] algorithms` entry is not a digest algorithm we support.
    #[error("unsupported digest algorithm {0:?} (use SHA-256 or MD5)")]
    UnknownAlgorithm(String),
    /// No digest algorithm is configured.
    #[error("no digest algorithm configured")]
    NoAlgorithm,
    /// The user store failed.
    #[error("user store: {0}")]
    Store(#[from] StoreError),
}

/// Which side of the digest exchange we play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRole {
    /// A registrar/UAS: 401 with `WWW-Authenticate`, credentials in `Authorization`.
    Registrar,
    /// A proxy: 407 with `Proxy-Authenticate`, credentials in `Proxy-Authorization`.
    Proxy,
}

impl AuthRole {
    fn status(self) -> u16 {
        match self {
            AuthRole::Registrar => 401,
            AuthRole::Proxy => 407,
        }
    }

    fn challenge_header(self) -> HeaderName {
        match self {
            AuthRole::Registrar => HeaderName::WwwAuthenticate,
            AuthRole::Proxy => HeaderName::ProxyAuthenticate,
        }
    }

    fn credentials_header(self) -> HeaderName {
        match self {
            AuthRole::Registrar => HeaderName::Authorization,
            AuthRole::Proxy => HeaderName::ProxyAuthorization,
        }
    }
}

/// Who sent a request, as far as authentication could tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The request carried valid digest credentials of this local user.
    User(String),
    /// The request came from a trusted network and was not challenged.
    Trusted,
}

impl Identity {
    /// The authenticated user name, if the request was authenticated by digest.
    pub fn user(&self) -> Option<&str> {
        match self {
            Identity::User(u) => Some(u),
            Identity::Trusted => None,
        }
    }
}

#[derive(Debug, Clone)]
struct CacheEntry {
    ha1: Option<String>,
    at: Instant,
}

/// Authenticates requests with HTTP digest (RFC 7616/8760) against the store.
pub struct Authenticator {
    realm: String,
    domain: String,
    algorithms: Vec<Algorithm>,
    issuer: Mutex<NonceIssuer>,
    store: Store,
    trusted: Vec<IpNet>,
    internal: Mutex<Vec<SocketAddr>>,
    cache: Mutex<HashMap<(String, u8), CacheEntry>>,
}

/// The settings an [`Authenticator`] is built from.
#[derive(Debug, Clone)]
pub struct AuthnSettings {
    /// The digest realm (also what HA1 values are computed with).
    pub realm: String,
    /// The user domain used to look up HA1 values in the store.
    pub domain: String,
    /// Digest algorithm names in challenge order (`SHA-256`, `MD5`).
    pub algorithms: Vec<String>,
    /// How long an issued nonce stays valid.
    pub nonce_lifetime: Duration,
    /// Networks whose requests are not challenged.
    pub trusted: Vec<IpNet>,
}

fn algorithm_key(alg: Algorithm) -> u8 {
    match alg {
        Algorithm::Md5 | Algorithm::Md5Sess => 0,
        _ => 1,
    }
}

/// Parses a digest algorithm name as used in `[auth] algorithms`.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, AuthnError> {
    let n = name.trim();
    if n.eq_ignore_ascii_case("SHA-256") || n.eq_ignore_ascii_case("SHA256") {
        Ok(Algorithm::Sha256)
    } else if n.eq_ignore_ascii_case("MD5") {
        Ok(Algorithm::Md5)
    } else if n.eq_ignore_ascii_case("SHA-256-sess") {
        Ok(Algorithm::Sha256Sess)
    } else if n.eq_ignore_ascii_case("MD5-sess") {
        Ok(Algorithm::Md5Sess)
    } else {
        Err(AuthnError::UnknownAlgorithm(name.to_string()))
    }
}

/// Store meta key of the persisted nonce secret.
const NONCE_SECRET_KEY: &str = "nonce_secret";

/// The nonce secret kept in the store (created on first use), so that nonces issued before a
/// restart stay valid; a fresh random one if the store cannot keep it.
pub async fn nonce_secret(store: &Store) -> [u8; 32] {
    if let Ok(Some(hex_text)) = store.get_meta(NONCE_SECRET_KEY).await {
        let mut secret = [0u8; 32];
        if hex::decode_to_slice(hex_text.trim(), &mut secret).is_ok() {
            return secret;
        }
    }
    let secret: [u8; 32] = rand::random();
    if let Err(e) = store.set_meta(NONCE_SECRET_KEY, &hex::encode(secret)).await {
        tracing::warn!(error = %e, "cannot persist the nonce secret; nonces end with this run");
    }
    secret
}

impl Authenticator {
    /// Builds an authenticator whose nonces are keyed by `secret` (see [`nonce_secret`]).
    pub fn new(
        settings: AuthnSettings,
        secret: [u8; 32],
        store: Store,
    ) -> Result<Authenticator, AuthnError> {
        let algorithms = settings
            .algorithms
            .iter()
            .map(|a| parse_algorithm(a))
            .collect::<Result<Vec<_>, _>>()?;
        if algorithms.is_empty() {
            return Err(AuthnError::NoAlgorithm);
        }
        let trusted = settings.trusted;
        Ok(Authenticator {
            realm: settings.realm,
            domain: settings.domain,
            algorithms,
            issuer: Mutex::new(NonceIssuer::new(secret, settings.nonce_lifetime)),
            store,
            trusted,
            internal: Mutex::new(Vec::new()),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The digest realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// True when `ip` is in one of the trusted networks.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(ip))
    }

    /// Marks a UDP socket of the lab server's own (media server, click-to-call UA) as trusted:
    /// its requests are proxied without a challenge.
    pub fn trust_internal(&self, addr: SocketAddr) {
        let mut internal = self.internal.lock().unwrap_or_else(|p| p.into_inner());
        if !internal.contains(&addr) {
            internal.push(addr);
        }
    }

    /// True when `source` is one of the lab server's own sockets ([`Authenticator::trust_internal`]).
    pub fn is_internal(&self, source: SocketAddr) -> bool {
        self.internal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&source)
    }

    /// Authenticates `request` from `source`: `Ok` with who sent it, or `Err` with the response to
    /// send (401/407 challenge; `stale=true` when the nonce had expired).
    pub async fn authenticate(
        &self,
        request: &Request,
        role: AuthRole,
        source: IpAddr,
    ) -> Result<Identity, Box<Response>> {
        if self.is_trusted(source) {
            return Ok(Identity::Trusted);
        }
        let candidates = self.candidates(request, role);
        let mut ha1s = Vec::with_capacity(candidates.len());
        for creds in &candidates {
            match self.ha1(&creds.username, creds.algorithm).await {
                Ok(h) => ha1s.push(h),
                Err(e) => {
                    tracing::warn!(error = %e, "HA1 lookup failed");
                    let mut r = Response::for_request(request, 500);
                    r.headers.push(HeaderName::RetryAfter, "5");
                    return Err(Box::new(r));
                }
            }
        }
        self.conclude(request, role, &candidates, ha1s)
    }

    /// Like [`Authenticator::authenticate`] without waiting: `None` when an HA1 it needs is not
    /// in the in-memory cache (then call `authenticate`, which asks the store).
    pub fn authenticate_cached(
        &self,
        request: &Request,
        role: AuthRole,
        source: IpAddr,
    ) -> Option<Result<Identity, Box<Response>>> {
        if self.is_trusted(source) {
            return Some(Ok(Identity::Trusted));
        }
        let candidates = self.candidates(request, role);
        let ha1s = candidates
            .iter()
            .map(|c| self.cached_ha1(&c.username, c.algorithm))
            .collect::<Option<Vec<_>>>()?;
        Some(self.conclude(request, role, &candidates, ha1s))
    }

    /// The credentials in `request` for our realm and one of our algorithms, in header order.
    fn candidates(&self, request: &Request, role: AuthRole) -> Vec<Credentials> {
        request
            .headers
            .get_all(&role.credentials_header())
            .filter_map(|raw| std::str::from_utf8(raw).ok())
            .filter_map(|text| Credentials::parse(text).ok())
            .filter(|creds| {
                creds.realm == self.realm
                    && self
                        .algorithms
                        .iter()
                        .any(|a| algorithm_key(*a) == algorithm_key(creds.algorithm))
            })
            .collect()
    }

    /// Checks each candidate against its HA1 (`None`: no such user); the first valid one with a
    /// valid nonce wins, else a challenge. Nonces are consumed only here, after the digest matched.
    fn conclude(
        &self,
        request: &Request,
        role: AuthRole,
        candidates: &[Credentials],
        ha1s: Vec<Option<String>>,
    ) -> Result<Identity, Box<Response>> {
        let now = u64::try_from(unix_now()).unwrap_or(0);
        let mut stale = false;
        for (creds, ha1) in candidates.iter().zip(ha1s) {
            let Some(ha1) = ha1 else {
                continue;
            };
            if !tandem_proto::auth::verify_with_body(
                creds,
                request.method.as_str(),
                &ha1,
                &request.body,
            ) {
                continue;
            }
            let status = self.issuer.lock().unwrap_or_else(|p| p.into_inner()).check(
                &creds.nonce,
                creds.nc,
                now,
            );
            match status {
                NonceStatus::Valid => return Ok(Identity::User(creds.username.clone())),
                NonceStatus::Stale => stale = true,
                _ => {}
            }
        }
        Err(Box::new(self.challenge(request, role, stale, now)))
    }

    /// A 401/407 response for `request` carrying one challenge per configured algorithm.
    pub fn challenge(&self, request: &Request, role: AuthRole, stale: bool, now: u64) -> Response {
        let mut response = Response::for_request(request, role.status());
        let mut challenge: Challenge = self
            .issuer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .challenge(&self.realm, Algorithm::Sha256, now, rand::random(), stale);
        for alg in &self.algorithms {
            challenge.algorithm = *alg;
            response
                .headers
                .push(role.challenge_header(), challenge.to_string());
        }
        crate::registrar::ensure_to_tag(&mut response);
        response
    }

    /// Removes the credentials for our realm (consumed by us) from a request before forwarding.
    pub fn strip_credentials(&self, request: &mut Request) {
        let name = HeaderName::ProxyAuthorization;
        let keep: Vec<String> = request
            .headers
            .get_all(&name)
            .filter_map(|raw| std::str::from_utf8(raw).ok())
            .filter(|text| {
                Credentials::parse(text)
                    .map(|c| c.realm != self.realm)
                    .unwrap_or(true)
            })
            .map(str::to_string)
            .collect();
        request.headers.remove(&name);
        for v in keep {
            request.headers.push(name.clone(), v);
        }
    }

    /// True when `user` exists in our domain (through the HA1 cache).
    pub async fn user_exists(&self, user: &str) -> Result<bool, AuthnError> {
        let alg = self.algorithms.first().copied().unwrap_or(Algorithm::Md5);
        Ok(self.ha1(user, alg).await?.is_some())
    }

    /// The cached HA1 of `user` for `alg`: `Some(None)` for a cached "no such user", `None` when
    /// nothing fresh is cached.
    fn cached_ha1(&self, user: &str, alg: Algorithm) -> Option<Option<String>> {
        let key = (user.to_string(), algorithm_key(alg));
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let e = cache.get(&key)?;
        let ttl = if e.ha1.is_some() {
            HA1_TTL
        } else {
            HA1_NEGATIVE_TTL
        };
        (e.at.elapsed() < ttl).then(|| e.ha1.clone())
    }

    /// The HA1 of `user` for `alg`, cached for a short time.
    async fn ha1(&self, user: &str, alg: Algorithm) -> Result<Option<String>, AuthnError> {
        if let Some(cached) = self.cached_ha1(user, alg) {
            return Ok(cached);
        }
        let key = (user.to_string(), algorithm_key(alg));
        let ha1 = self.store.ha1(user, &self.domain, alg).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= HA1_CACHE_MAX {
            cache.clear();
        }
        cache.insert(
            key,
            CacheEntry {
                ha1: ha1.clone(),
                at: Instant::now(),
            },
        );
        Ok(ha1)
    }

    /// Forgets every cached HA1 (after users were changed).
    pub fn clear_cache(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_parse() {
        assert_eq!(parse_algorithm("SHA-256").unwrap(), Algorithm::Sha256);
        assert_eq!(parse_algorithm("md5").unwrap(), Algorithm::Md5);
        assert!(parse_algorithm("SHA-512").is_err());
    }
}
