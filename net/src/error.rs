//! The errors of the network driver.

/// An error from the network layer: binding, resolving, connecting or a stopped driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A socket operation failed (bind, connect, write).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Name resolution (RFC 3263: NAPTR, SRV, A/AAAA) failed.
    #[error("cannot resolve: {0}")]
    Resolve(String),
    /// Resolution gave no usable target (no record, or no transport we can use).
    #[error("no usable target")]
    NoTarget,
    /// TLS configuration or handshake failed.
    #[error("TLS error: {0}")]
    Tls(String),
    /// The endpoint has been shut down.
    #[error("endpoint closed")]
    Closed,
    /// The transaction layer refused the operation.
    #[error("transaction error: {0}")]
    Tx(String),
    /// The configuration is invalid (e.g. TLS listeners without a server config).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A STUN keep-alive got an error or malformed answer.
    #[error("STUN: {0}")]
    Stun(String),
    /// A STUN keep-alive got no answer after all its retransmissions: the flow is dead.
    #[error("STUN keep-alive unanswered")]
    StunTimeout,
}
