//! Digest authentication of AUTH requests (RFC 4976 §5) against the users table.

use std::sync::Mutex;
use std::time::Duration;

use tandem_proto::auth::{Algorithm, Challenge, NonceIssuer, NonceStatus};
use tandem_proto::msrp::{Request, report};

use crate::location::unix_now;
use crate::store::Store;

/// The outcome of checking an AUTH's credentials.
#[derive(Debug)]
pub(crate) enum AuthOutcome {
    /// Valid credentials of this user.
    User(String),
    /// Answer 401 with a fresh challenge (`stale` when the digest was right but the nonce old).
    Challenge {
        /// The digest was right but the nonce expired.
        stale: bool,
        /// Credentials were present (and wrong): counts as a failure.
        had_credentials: bool,
    },
    /// The Authorization header does not parse: answer 400.
    Malformed,
    /// The user store failed.
    StoreFailed,
}

/// Issues challenges and verifies credentials for the relay.
pub(crate) struct RelayAuth {
    store: Store,
    realm: String,
    domain: String,
    issuer: Mutex<NonceIssuer>,
}

impl RelayAuth {
    /// An authenticator for `realm` looking users up in `domain`.
    pub(crate) fn new(store: Store, realm: String, domain: String, lifetime: Duration) -> Self {
        RelayAuth {
            store,
            realm,
            domain,
            issuer: Mutex::new(NonceIssuer::new(rand::random(), lifetime)),
        }
    }

    /// A fresh MD5 challenge with `qop="auth"`.
    pub(crate) fn challenge(&self, stale: bool) -> Challenge {
        let now = u64::try_from(unix_now()).unwrap_or(0);
        self.issuer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .challenge(&self.realm, Algorithm::Md5, now, rand::random(), stale)
    }

    /// Checks the credentials of an AUTH request (digest URI: the rightmost To-Path URI).
    pub(crate) async fn check(&self, request: &Request) -> AuthOutcome {
        let creds = match report::auth_credentials(request) {
            Ok(Some(c)) => c,
            Ok(None) => {
                return AuthOutcome::Challenge {
                    stale: false,
                    had_credentials: false,
                };
            }
            Err(_) => return AuthOutcome::Malformed,
        };
        let wrong = AuthOutcome::Challenge {
            stale: false,
            had_credentials: true,
        };
        if creds.realm != self.realm || creds.algorithm != Algorithm::Md5 {
            return wrong;
        }
        let ha1 = match self
            .store
            .ha1(&creds.username, &self.domain, Algorithm::Md5)
            .await
        {
            Ok(Some(h)) => h,
            Ok(None) => return wrong,
            Err(e) => {
                tracing::warn!(error = %e, "MSRP relay: HA1 lookup failed");
                return AuthOutcome::StoreFailed;
            }
        };
        if !tandem_proto::auth::verify(&creds, "AUTH", &ha1) {
            return wrong;
        }
        let now = u64::try_from(unix_now()).unwrap_or(0);
        let status = self.issuer.lock().unwrap_or_else(|p| p.into_inner()).check(
            &creds.nonce,
            creds.nc,
            now,
        );
        match status {
            NonceStatus::Valid => AuthOutcome::User(creds.username),
            NonceStatus::Stale => AuthOutcome::Challenge {
                stale: true,
                had_credentials: true,
            },
            _ => wrong,
        }
    }
}
