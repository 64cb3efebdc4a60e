//! The tokio driver for Tandem's sans-IO SIP engines: transports, resolution and timers.
//!
//! One tokio task per [`Endpoint`] owns the sockets' write sides, the
//! [`TransactionLayer`](tandem_proto::transaction::TransactionLayer) and a command channel.
//! It runs one `select!` over datagrams, framed stream messages, accepted connections, the
//! layer's next timer and commands from [`Endpoint`] handles, and after every branch drains
//! the layer's transmits and events. It keeps no protocol state of its own.
//!
//! Transports: UDP, TCP and TLS (rustls), IPv4 and IPv6, one connection per remote address
//! (incoming connections are reused for requests back, RFC 5923 style), idle timeout,
//! connection limit, CRLF keep-alives (RFC 5626 §4.4.1), STUN Binding on the SIP UDP sockets
//! (answered, and sent as flow keep-alives with [`Endpoint::stun_binding`], RFC 5626 §8),
//! flow-closed notifications ([`Endpoint::flow_events`]). Server location: RFC 3263 in
//! [`resolve`].

mod config;
mod driver;
mod endpoint;
mod error;
pub mod resolve;
mod stun;
mod transport;
mod uri;

pub use config::{EndpointConfig, default_tls_client};
pub use endpoint::{ClientTx, Endpoint, FlowEvent, Incoming, IncomingEvent, Target, TxOutcome};
pub use error::NetError;
pub use resolve::{DnsConfig, ResolveTarget, SipResolver, TargetHost};
pub use stun::{StunRetry, StunStats};
