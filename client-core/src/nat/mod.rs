//! NAT traversal for media: STUN binding discovery, a TURN client (RFC 8656) and ICE (RFC 8445/8839).

pub mod ice;
pub mod stun;
pub mod turn;

use std::net::SocketAddr;
use std::time::Duration;

use tandem_proto::stun::StunError;

/// Errors of STUN binding discovery and of the TURN client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatError {
    /// A socket or connection failed.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// No (valid) response arrived in time.
    #[error("no answer from STUN/TURN server {server} within {after:?}")]
    Timeout {
        /// The server asked.
        server: SocketAddr,
        /// How long we waited.
        after: Duration,
    },
    /// A message could not be decoded.
    #[error("invalid STUN/TURN message: {0}")]
    Codec(#[from] StunError),
    /// The TURN server refused the username/password (a second 401 after signing).
    #[error(
        "TURN server {server} refused the credentials of {username:?}: wrong password or unknown user"
    )]
    WrongPassword {
        /// The server.
        server: SocketAddr,
        /// The username we sent.
        username: String,
    },
    /// The server answered with an error response.
    #[error("STUN/TURN server {server} answered {code} {reason} to {request}")]
    ServerError {
        /// The server.
        server: SocketAddr,
        /// The request method's name.
        request: &'static str,
        /// ERROR-CODE class*100+number.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
    /// A success response lacks a mandatory attribute.
    #[error("response from {server} lacks {attribute}")]
    MissingAttribute {
        /// The server.
        server: SocketAddr,
        /// The missing attribute's name.
        attribute: &'static str,
    },
    /// A `turn:`/`turns:` URI (RFC 7065) is malformed.
    #[error("invalid TURN URI {uri:?}: {reason}")]
    BadUri {
        /// The URI as given.
        uri: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A host name did not resolve to a usable address.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// The TLS handshake with a `turns:` server failed.
    #[error("TLS with TURN server {host} failed: {reason}")]
    Tls {
        /// The server name.
        host: String,
        /// Why.
        reason: String,
    },
    /// The allocation is gone (closed, expired, or its connection dropped).
    #[error("TURN allocation closed: {0}")]
    Closed(String),
    /// An operation the allocation's state does not allow (e.g. a peer of a family it has no
    /// relayed address for).
    #[error("{0}")]
    Invalid(&'static str),
}

impl NatError {
    /// True when this is the server refusing our credentials.
    pub fn is_wrong_password(&self) -> bool {
        matches!(self, NatError::WrongPassword { .. })
    }
}

/// A copyable summary of a failure, for state kept in sans-IO machines and handed to waiters.
pub(crate) fn clone_error(e: &NatError) -> NatError {
    match e {
        NatError::Io(io) => NatError::Io(std::io::Error::new(io.kind(), io.to_string())),
        NatError::Timeout { server, after } => NatError::Timeout {
            server: *server,
            after: *after,
        },
        NatError::Codec(c) => NatError::Codec(c.clone()),
        NatError::WrongPassword { server, username } => NatError::WrongPassword {
            server: *server,
            username: username.clone(),
        },
        NatError::ServerError {
            server,
            request,
            code,
            reason,
        } => NatError::ServerError {
            server: *server,
            request,
            code: *code,
            reason: reason.clone(),
        },
        NatError::MissingAttribute { server, attribute } => NatError::MissingAttribute {
            server: *server,
            attribute,
        },
        NatError::BadUri { uri, reason } => NatError::BadUri {
            uri: uri.clone(),
            reason,
        },
        NatError::Resolve { host, reason } => NatError::Resolve {
            host: host.clone(),
            reason: reason.clone(),
        },
        NatError::Tls { host, reason } => NatError::Tls {
            host: host.clone(),
            reason: reason.clone(),
        },
        NatError::Closed(s) => NatError::Closed(s.clone()),
        NatError::Invalid(s) => NatError::Invalid(s),
    }
}
