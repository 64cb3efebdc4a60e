//! Typed errors of the user agent, by operation outcome and by who is at fault.

use std::fmt;

/// Why a user-agent operation (register, call, options, …) did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UaError {
    /// The peer, proxy or registrar answered with a 3xx–6xx final response.
    #[error("rejected with {status} {reason}")]
    Rejected {
        /// The final status code.
        status: u16,
        /// The reason phrase sent by the peer.
        reason: String,
    },
    /// Our credentials were refused (a second, non-stale challenge after we authenticated).
    #[error("authentication failed{}", realm_suffix(.realm))]
    AuthFailed {
        /// The realm whose credentials were refused, when known.
        realm: Option<String>,
    },
    /// No final response arrived in time (transaction timeout or a user-set time limit).
    #[error("timed out")]
    Timeout,
    /// A transport, connection or DNS error.
    #[error("network error: {0}")]
    Network(String),
    /// The operation was cancelled (CANCEL sent or received) before it completed.
    #[error("cancelled")]
    Cancelled,
    /// The peer sent something we cannot work with (missing headers, unusable SDP, …).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The configuration or an argument is invalid (bad URI, missing user, …).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The user agent has been shut down.
    #[error("user agent closed")]
    Closed,
}

fn realm_suffix(realm: &Option<String>) -> RealmSuffix<'_> {
    RealmSuffix(realm.as_deref())
}

struct RealmSuffix<'a>(Option<&'a str>);

impl fmt::Display for RealmSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(realm) => write!(f, " for realm {realm:?}"),
            None => Ok(()),
        }
    }
}

impl UaError {
    /// The final status code carried by a [`UaError::Rejected`], if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            UaError::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A rejection built from a final response's status and reason.
    pub fn rejected(status: u16, reason: impl Into<String>) -> Self {
        UaError::Rejected {
            status,
            reason: reason.into(),
        }
    }
}

/// A short result alias for user-agent operations.
pub type Result<T, E = UaError> = std::result::Result<T, E>;
