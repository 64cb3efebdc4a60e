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
    /// The media could not be set up or negotiated (unacceptable answer, SRTP policy, devices).
    #[error("media error: {0}")]
    Media(String),
    /// The user agent has been shut down.
    #[error("user agent closed")]
    Closed,
}

/// What a final rejection of a call means, for the user (busy, declined, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// 486 Busy Here or 600 Busy Everywhere.
    Busy,
    /// 603 Decline (or 607 Unwanted).
    Declined,
    /// 480 Temporarily Unavailable (not registered, do-not-disturb, unanswered at a proxy).
    Unavailable,
    /// 408 Request Timeout: nobody answered in time.
    NoAnswer,
    /// 487 Request Terminated: the call was cancelled.
    Cancelled,
    /// 404/604: no such user.
    NotFound,
    /// 488/606: no acceptable media (codecs, SRTP policy).
    NotAcceptable,
    /// Any other 3xx–6xx.
    Other(u16),
}

impl Rejection {
    /// Classifies a final status code.
    pub fn from_status(status: u16) -> Rejection {
        match status {
            486 | 600 => Rejection::Busy,
            603 | 607 => Rejection::Declined,
            480 => Rejection::Unavailable,
            408 => Rejection::NoAnswer,
            487 => Rejection::Cancelled,
            404 | 604 => Rejection::NotFound,
            488 | 606 => Rejection::NotAcceptable,
            other => Rejection::Other(other),
        }
    }

    /// A short lowercase name (`busy`, `declined`, `unavailable`, `no-answer`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Busy => "busy",
            Rejection::Declined => "declined",
            Rejection::Unavailable => "unavailable",
            Rejection::NoAnswer => "no-answer",
            Rejection::Cancelled => "cancelled",
            Rejection::NotFound => "not-found",
            Rejection::NotAcceptable => "not-acceptable",
            Rejection::Other(_) => "rejected",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

    /// What a [`UaError::Rejected`] means (busy, declined, …); `None` for other errors.
    pub fn rejection(&self) -> Option<Rejection> {
        self.status().map(Rejection::from_status)
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
