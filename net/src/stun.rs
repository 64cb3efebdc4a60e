//! STUN on the SIP UDP sockets (RFC 5626 §8): answering Binding requests that arrive on a
//! SIP port, and Binding keep-alives we send over a SIP flow, matched by transaction id.
//!
//! A datagram whose first two bits are 0 and that carries the STUN magic cookie is STUN
//! (RFC 7983 §7); SIP text never starts that way, so the demultiplexing is exact.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tandem_proto::stun::{Attribute, Class, Integrity, Message, Method};
use tokio::sync::oneshot;

use crate::NetError;

/// Most keep-alive transactions awaited at once; older ones are dropped beyond it.
const MAX_WAITERS: usize = 1024;

/// The SOFTWARE attribute of our STUN messages.
const SOFTWARE: &str = "Tandem";

/// The retransmission schedule of one STUN Binding transaction (RFC 8489 §6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StunRetry {
    /// The first retransmission timeout; it doubles after each transmission.
    pub rto: Duration,
    /// How many times the request is sent (RFC 8489's `Rc`).
    pub transmissions: u32,
    /// How long to wait after the last transmission (RFC 8489: `Rm` × RTO).
    pub last_wait: Duration,
}

impl Default for StunRetry {
    /// RFC 8489's defaults: RTO 500 ms, 7 transmissions, a last wait of 16 × RTO (39.5 s in all).
    fn default() -> Self {
        StunRetry {
            rto: Duration::from_millis(500),
            transmissions: 7,
            last_wait: Duration::from_secs(8),
        }
    }
}

impl StunRetry {
    /// The schedule for flow keep-alives: RTO 500 ms, 5 transmissions, 4 s last wait, so a dead
    /// flow is noticed 11.5 s after the keep-alive (well within the 25 s default interval).
    pub fn keepalive() -> Self {
        StunRetry {
            rto: Duration::from_millis(500),
            transmissions: 5,
            last_wait: Duration::from_secs(4),
        }
    }

    /// How long to wait after transmission number `n` (0-based).
    pub(crate) fn wait_after(&self, n: u32) -> Duration {
        if n + 1 >= self.transmissions {
            self.last_wait
        } else {
            self.rto.saturating_mul(1u32 << n.min(16))
        }
    }
}

/// Counters of the STUN traffic seen on an endpoint's SIP UDP sockets.
#[derive(Debug, Default)]
pub struct StunStats {
    /// Binding requests answered.
    pub requests_answered: AtomicU64,
    /// Binding responses matched to a keep-alive we sent.
    pub responses_matched: AtomicU64,
    /// STUN messages dropped: undecodable, or not a Binding request / awaited response.
    pub dropped: AtomicU64,
}

impl StunStats {
    /// A snapshot as (answered, matched, dropped).
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.requests_answered.load(Ordering::Relaxed),
            self.responses_matched.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

/// What the driver does with one STUN datagram.
#[derive(Debug)]
pub(crate) enum StunAction {
    /// Send this Binding success response back where the request came from.
    Reply(Vec<u8>),
    /// Nothing to send (a response delivered to its waiter, or a dropped message).
    None,
}

/// The keep-alive transactions awaiting a response, by transaction id.
#[derive(Debug, Default)]
pub(crate) struct StunWaiters {
    waiting: HashMap<[u8; 12], oneshot::Sender<Result<SocketAddr, NetError>>>,
}

impl StunWaiters {
    /// Registers a transaction; the oldest are forgotten beyond [`MAX_WAITERS`].
    pub(crate) fn insert(
        &mut self,
        tid: [u8; 12],
        reply: oneshot::Sender<Result<SocketAddr, NetError>>,
    ) {
        if self.waiting.len() >= MAX_WAITERS {
            self.waiting.retain(|_, s| !s.is_closed());
            if self.waiting.len() >= MAX_WAITERS {
                self.waiting.clear();
            }
        }
        self.waiting.insert(tid, reply);
    }

    /// Forgets a transaction (its caller gave up).
    pub(crate) fn remove(&mut self, tid: &[u8; 12]) {
        self.waiting.remove(tid);
    }

    /// Handles one STUN datagram received from `from`.
    pub(crate) fn on_datagram(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        stats: &StunStats,
    ) -> StunAction {
        let Ok(msg) = Message::decode(data) else {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%from, len = data.len(), "undecodable STUN datagram dropped");
            return StunAction::None;
        };
        match (msg.class, msg.method) {
            (Class::Request, Method::BINDING) => {
                stats.requests_answered.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(%from, "STUN Binding request answered");
                StunAction::Reply(binding_success(&msg, from))
            }
            (Class::Success | Class::Error, Method::BINDING) => {
                let Some(waiter) = self.waiting.remove(msg.transaction_id.as_bytes()) else {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%from, "unexpected STUN Binding response dropped");
                    return StunAction::None;
                };
                stats.responses_matched.fetch_add(1, Ordering::Relaxed);
                let result = match (msg.class, msg.mapped_address()) {
                    (Class::Success, Some(mapped)) => Ok(mapped),
                    (Class::Success, None) => Err(NetError::Stun(
                        "Binding response without a mapped address".into(),
                    )),
                    _ => Err(NetError::Stun(match msg.error_code() {
                        Some((code, reason)) => format!("Binding error {code} {reason}"),
                        None => "Binding error response".into(),
                    })),
                };
                let _ = waiter.send(result);
                StunAction::None
            }
            _ => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%from, class = ?msg.class, method = ?msg.method, "STUN message on a SIP port dropped");
                StunAction::None
            }
        }
    }
}

/// The Binding success response to `request` from `from`: XOR-MAPPED-ADDRESS, SOFTWARE and a
/// FINGERPRINT (RFC 5626 §8 keep-alives need nothing more; no credentials are used).
pub(crate) fn binding_success(request: &Message, from: SocketAddr) -> Vec<u8> {
    request
        .response(Class::Success)
        .with(Attribute::XorMappedAddress(from))
        .with(Attribute::Software(SOFTWARE.into()))
        .encode(Integrity::None, true)
}

/// A fresh Binding request (with FINGERPRINT) and its transaction id.
pub(crate) fn binding_request() -> (Vec<u8>, [u8; 12]) {
    let msg = Message::request(Method::BINDING).with(Attribute::Software(SOFTWARE.into()));
    (
        msg.encode(Integrity::None, true),
        *msg.transaction_id.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_answered_with_the_source_address() {
        let stats = StunStats::default();
        let mut w = StunWaiters::default();
        let (req, tid) = binding_request();
        let from: SocketAddr = "203.0.113.9:40001".parse().unwrap();
        let StunAction::Reply(resp) = w.on_datagram(&req, from, &stats) else {
            panic!("a reply");
        };
        let msg = Message::decode(&resp).unwrap();
        assert_eq!(msg.class, Class::Success);
        assert_eq!(msg.transaction_id.as_bytes(), &tid);
        assert_eq!(msg.mapped_address(), Some(from));
        assert_eq!(stats.snapshot(), (1, 0, 0));
    }

    #[test]
    fn responses_go_to_their_waiter_and_junk_is_counted() {
        let stats = StunStats::default();
        let mut w = StunWaiters::default();
        let (req, tid) = binding_request();
        let (tx, mut rx) = oneshot::channel();
        w.insert(tid, tx);
        let mapped: SocketAddr = "[2001:db8::7]:5070".parse().unwrap();
        let resp = binding_success(&Message::decode(&req).unwrap(), mapped);
        assert!(matches!(
            w.on_datagram(&resp, mapped, &stats),
            StunAction::None
        ));
        assert_eq!(rx.try_recv().unwrap().unwrap(), mapped);
        // The same response again has no waiter any more.
        w.on_datagram(&resp, mapped, &stats);
        // Truncated and corrupted messages.
        w.on_datagram(&resp[..resp.len() - 3], mapped, &stats);
        let mut bad = resp.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        w.on_datagram(&bad, mapped, &stats);
        assert_eq!(stats.snapshot(), (0, 1, 3));
    }

    #[test]
    fn error_responses_fail_the_waiter() {
        let stats = StunStats::default();
        let mut w = StunWaiters::default();
        let (req, tid) = binding_request();
        let (tx, mut rx) = oneshot::channel();
        w.insert(tid, tx);
        let err = Message::decode(&req)
            .unwrap()
            .error_response(400)
            .encode(Integrity::None, true);
        w.on_datagram(&err, "192.0.2.1:1".parse().unwrap(), &stats);
        assert!(matches!(rx.try_recv().unwrap(), Err(NetError::Stun(_))));
    }

    #[test]
    fn retransmission_schedule() {
        let r = StunRetry::keepalive();
        let waits: Vec<u64> = (0..r.transmissions)
            .map(|n| r.wait_after(n).as_millis() as u64)
            .collect();
        assert_eq!(waits, vec![500, 1000, 2000, 4000, 4000]);
        let d = StunRetry::default();
        let total: Duration = (0..d.transmissions).map(|n| d.wait_after(n)).sum();
        assert_eq!(total, Duration::from_millis(39_500));
    }
}
