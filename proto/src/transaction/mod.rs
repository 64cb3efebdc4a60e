//! SIP transactions (RFC 3261 §17, RFC 6026), sans-IO.
//!
//! [`TransactionLayer`] owns every client and server transaction of an endpoint. The
//! driver feeds it received messages ([`TransactionLayer::handle_receive`]), timer
//! expiries and flow failures; the transaction user (TU: a user agent core or a proxy)
//! sends requests and responses through it and reads [`TxEvent`]s. Four state machines
//! run inside: INVITE client (§17.1.1, with the RFC 6026 Accepted state), non-INVITE
//! client (§17.1.2), INVITE server (§17.2.1, RFC 6026) and non-INVITE server (§17.2.2),
//! with timers A–M in one table per transaction. Responses are matched by top Via
//! branch and CSeq method (§17.1.3), requests by branch, sent-by and method with the
//! RFC 2543 fallback (§17.2.3). UDP requests get `received`/`rport` (§18.2.1, RFC 3581)
//! and responses go where §18.2.2 says.

mod client;
mod key;
mod layer;
mod server;
mod timer;
mod types;

#[cfg(test)]
mod tests;

pub use client::ack_for;
pub use layer::TransactionLayer;
pub use types::{SentBy, Transmit, TxConfig, TxError, TxEvent, TxId};
