//! The public value types of the transaction layer: configuration, ids, output and errors.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::msg::{Request, Response};
use crate::{Flow, Transport};

/// Timer values and limits of a [`TransactionLayer`](super::TransactionLayer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxConfig {
    /// RTT estimate T1 (RFC 3261 default 500 ms); most timers are multiples of it.
    pub t1: Duration,
    /// Maximum retransmission interval T2 for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// Maximum time a message stays in the network, T4 (5 s): timers I and K.
    pub t4: Duration,
    /// How long an INVITE server transaction waits for the TU before it sends
    /// `100 Trying` itself (RFC 3261 §17.2.1 allows up to 200 ms).
    pub timer_100: Duration,
    /// Overload guard: while this many transactions exist, a new request gets a
    /// stateless `503 Service Unavailable` with `Retry-After` and creates no state.
    pub max_transactions: usize,
    /// Seed of the random source used for branches and tags. Give every process a
    /// different, unpredictable seed in production: branches must be globally unique.
    pub seed: u64,
    /// Value for `User-Agent` (requests) and `Server` (responses) headers the layer
    /// adds when the message has none; `None` adds nothing.
    pub user_agent: Option<String>,
}

impl Default for TxConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_100: Duration::from_millis(200),
            max_transactions: 20_000,
            seed: 0,
            user_agent: None,
        }
    }
}

impl TxConfig {
    /// 64·T1: timers B, F, H, J (unreliable), L and M.
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// The sent-by part (host and port) of the Via header we put on our requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SentBy {
    /// Host name or IP address (IPv6 without brackets is accepted and bracketed).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl SentBy {
    /// A sent-by of `host` and `port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for SentBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') && !self.host.starts_with('[') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Identifies one transaction of a [`TransactionLayer`](super::TransactionLayer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub(crate) u64);

impl TxId {
    /// The numeric value (unique within one layer, never reused).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx{}", self.0)
    }
}

/// A datagram or stream write the driver must perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it (for stream transports: the connection to use or open).
    pub flow: Flow,
    /// The encoded SIP message.
    pub data: Bytes,
}

/// Something the transaction user (TU) must know about.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TxEvent {
    /// A new server transaction for a request other than ACK or CANCEL. For INVITE the
    /// layer sends `100 Trying` itself if the TU has not answered within `timer_100`.
    Request {
        /// The new server transaction; answer with `send_response`.
        tx: TxId,
        /// The request (top Via already carries `received`/`rport` for UDP).
        request: Request,
        /// Where it came from.
        flow: Flow,
    },
    /// An ACK that matched no INVITE server transaction (the ACK for a 2xx), or one
    /// received by an INVITE server transaction in the RFC 6026 Accepted state.
    Ack {
        /// The ACK.
        request: Request,
        /// Where it came from.
        flow: Flow,
    },
    /// A new CANCEL: its server transaction exists; the TU answers it (200 or 481) and,
    /// when `invite_tx` is some, answers that INVITE with 487 (RFC 3261 §9.2).
    Cancel {
        /// The CANCEL's own server transaction.
        tx: TxId,
        /// The INVITE server transaction it matches, if any.
        invite_tx: Option<TxId>,
        /// The CANCEL request.
        request: Request,
        /// Where it came from.
        flow: Flow,
    },
    /// A response for a client transaction: every provisional, the final one, and (for
    /// INVITE in the RFC 6026 Accepted state) every further 2xx, which the TU must ACK.
    Response {
        /// The client transaction.
        tx: TxId,
        /// The response.
        response: Response,
    },
    /// A response that matched no client transaction.
    StrayResponse {
        /// The response.
        response: Response,
        /// Where it came from.
        flow: Flow,
    },
    /// Timer B or F (client: no final response) or Timer H (server: no ACK) fired.
    Timeout {
        /// The transaction that timed out.
        tx: TxId,
    },
    /// The driver reported that the transaction's flow failed.
    TransportError {
        /// The transaction that lost its flow.
        tx: TxId,
    },
    /// The transaction is gone; its id will never be used again.
    Terminated {
        /// The removed transaction.
        tx: TxId,
    },
}

/// Why a transaction-layer call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// ACK creates no transaction: send it with `send_stateless`.
    #[error("ACK is not sent in a client transaction; use send_stateless")]
    AckInTransaction,
    /// No live transaction of the needed kind has this id.
    #[error("no such transaction: {0}")]
    UnknownTransaction(TxId),
    /// `set_sent_by` was never called for this transport.
    #[error("no Via sent-by configured for {0}")]
    NoSentBy(Transport),
    /// The request lacks or has a malformed mandatory header.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A response status outside 100–699.
    #[error("invalid response status {0}")]
    InvalidStatus(u16),
    /// The server transaction already sent a final response that forbids this one.
    #[error("{tx} cannot send a {status} response in its current state")]
    InvalidState {
        /// The transaction.
        tx: TxId,
        /// The refused status.
        status: u16,
    },
    /// `cancel` was called for a transaction that is not an INVITE client transaction.
    #[error("{0} is not an INVITE client transaction")]
    NotInvite(TxId),
    /// `cancel` was called after the INVITE got its final response (RFC 3261 §9.1).
    #[error("{0} already has a final response")]
    AlreadyFinal(TxId),
    /// A CANCEL for this INVITE was already created.
    #[error("{0} was already cancelled")]
    AlreadyCancelled(TxId),
}
