//! STUN Binding discovery of a socket's server-reflexive address (RFC 8489).
//!
//! Two ways to run a Binding transaction:
//! - [`binding`]: async, on a UDP socket nobody else reads while it runs (it reads the socket
//!   and discards datagrams that are not the answer).
//! - [`BindingTransaction`]: sans-IO, for a socket someone else reads (an ICE socket, a SIP
//!   flow): it hands out the request bytes when a (re)transmission is due, and the reader feeds
//!   it every STUN datagram from the server; it matches the answer by transaction id.
//!
//! Retransmissions follow RFC 8489 §6.2.1: RTO 500 ms doubling, Rc = 7 sends, then Rm = 16 RTOs
//! of waiting (39.5 s in all with the default RTO); the caller's timeout may cut that short.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tandem_proto::stun::{Class, Integrity, Message, Method, TransactionId, is_stun};
use tokio::net::UdpSocket;

use super::NatError;

/// The initial retransmission timeout (RFC 8489 §6.2.1).
pub const DEFAULT_RTO: Duration = Duration::from_millis(500);
/// How many times a request is sent over UDP (Rc).
pub const MAX_SENDS: u32 = 7;
/// After the last send, wait this many RTOs (Rm) before giving up.
pub const LAST_WAIT_FACTOR: u32 = 16;

/// The total time a transaction with initial RTO `rto` waits before it fails:
/// `(2^Rc - 1 + Rm) × RTO` less the doublings past the last send (39.5 s for 500 ms).
pub fn transaction_timeout(rto: Duration) -> Duration {
    // Sends at 0, 1, 3, 7, 15, 31, 63 RTOs; the last wait is Rm RTOs: 63 + 16 = 79 half-units
    // of 500 ms, i.e. 2^(Rc-1) - 1 + Rm = 63 + 16 = 79 × RTO / 2 … computed exactly below.
    let mut total = Duration::ZERO;
    let mut step = rto;
    for _ in 1..MAX_SENDS {
        total += step;
        step *= 2;
    }
    total + rto * LAST_WAIT_FACTOR
}

/// What a datagram meant to a [`BindingTransaction`].
#[derive(Debug)]
pub enum BindingOutcome {
    /// Not the answer to this transaction (another transaction, another source, not STUN).
    NotMine,
    /// The answer: our server-reflexive (mapped) address.
    Mapped(SocketAddr),
    /// The answer was an error response or unusable.
    Failed(NatError),
}

/// A sans-IO STUN Binding client transaction over UDP.
#[derive(Debug, Clone)]
pub struct BindingTransaction {
    server: SocketAddr,
    id: TransactionId,
    request: Vec<u8>,
    rto: Duration,
    sends: u32,
    next_send: Instant,
    deadline: Instant,
    done: bool,
}

impl BindingTransaction {
    /// A new transaction towards `server` with the default RTO; the first send is due at `now`.
    pub fn new(server: SocketAddr, now: Instant) -> BindingTransaction {
        BindingTransaction::with_rto(server, DEFAULT_RTO, now)
    }

    /// A new transaction with initial retransmission timeout `rto`.
    pub fn with_rto(server: SocketAddr, rto: Duration, now: Instant) -> BindingTransaction {
        let request = Message::request(Method::BINDING);
        let id = request.transaction_id;
        let rto = rto.max(Duration::from_millis(1));
        BindingTransaction {
            server,
            id,
            request: request.encode(Integrity::None, true),
            rto,
            sends: 0,
            next_send: now,
            deadline: now + transaction_timeout(rto),
            done: false,
        }
    }

    /// The server this transaction asks.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The request's transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        self.id
    }

    /// The encoded request (the same bytes on every retransmission).
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// True once answered or timed out.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The request bytes when a (re)transmission is due at `now`; send them to [`Self::server`].
    pub fn poll_transmit(&mut self, now: Instant) -> Option<&[u8]> {
        if self.done || self.sends >= MAX_SENDS || now < self.next_send {
            return None;
        }
        let wait = self.rto * 2u32.saturating_pow(self.sends);
        self.sends += 1;
        self.next_send = now + wait;
        Some(&self.request)
    }

    /// When this transaction next needs [`Self::poll_transmit`] or [`Self::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            None
        } else if self.sends < MAX_SENDS {
            Some(self.next_send.min(self.deadline))
        } else {
            Some(self.deadline)
        }
    }

    /// At `now`: `Some(Timeout)` once the transaction has given up (then it is done).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<NatError> {
        if self.done || now < self.deadline {
            return None;
        }
        self.done = true;
        Some(NatError::Timeout {
            server: self.server,
            after: transaction_timeout(self.rto),
        })
    }

    /// Feeds a datagram received from `from`; the transaction is done after `Mapped`/`Failed`.
    pub fn handle_response(&mut self, buf: &[u8], from: SocketAddr) -> BindingOutcome {
        if self.done || !same_server(from, self.server) || !is_stun(buf) {
            return BindingOutcome::NotMine;
        }
        // Check the id before decoding, so other transactions' traffic costs nothing.
        if buf.get(8..20) != Some(&self.id.as_bytes()[..]) {
            return BindingOutcome::NotMine;
        }
        let outcome = parse_binding_response(buf, self.id, self.server);
        if !matches!(outcome, BindingOutcome::NotMine) {
            self.done = true;
        }
        outcome
    }
}

/// True when `from` is `server` (IPv4-mapped IPv6 forms compared as IPv4).
fn same_server(from: SocketAddr, server: SocketAddr) -> bool {
    from.port() == server.port() && from.ip().to_canonical() == server.ip().to_canonical()
}

/// Interprets `buf` as the answer to the Binding request `id` from `server`.
pub fn parse_binding_response(buf: &[u8], id: TransactionId, server: SocketAddr) -> BindingOutcome {
    let msg = match Message::decode(buf) {
        Ok(m) => m,
        Err(_) => return BindingOutcome::NotMine,
    };
    if msg.transaction_id != id || msg.method != Method::BINDING {
        return BindingOutcome::NotMine;
    }
    match msg.class {
        Class::Success => match msg.mapped_address() {
            Some(a) => BindingOutcome::Mapped(a),
            None => BindingOutcome::Failed(NatError::MissingAttribute {
                server,
                attribute: "XOR-MAPPED-ADDRESS",
            }),
        },
        Class::Error => {
            let (code, reason) = msg
                .error_code()
                .unwrap_or((500, "error without ERROR-CODE"));
            BindingOutcome::Failed(NatError::ServerError {
                server,
                request: "Binding",
                code,
                reason: reason.to_owned(),
            })
        }
        Class::Request | Class::Indication => BindingOutcome::NotMine,
    }
}

/// Asks `server` for this socket's server-reflexive address (RFC 8489 Binding over UDP), with
/// retransmissions, giving up after `timeout` (or the RFC's 39.5 s, whichever comes first).
///
/// It reads `socket` while it runs and discards datagrams that are not the answer: use
/// [`BindingTransaction`] on a socket that someone else reads.
pub async fn binding(
    socket: &UdpSocket,
    server: SocketAddr,
    timeout: Duration,
) -> Result<SocketAddr, NatError> {
    binding_with_rto(socket, server, timeout, DEFAULT_RTO).await
}

/// [`binding`] with an explicit initial RTO (tests and LANs use shorter ones).
pub async fn binding_with_rto(
    socket: &UdpSocket,
    server: SocketAddr,
    timeout: Duration,
    rto: Duration,
) -> Result<SocketAddr, NatError> {
    let start = Instant::now();
    let give_up = start + timeout;
    let mut tx = BindingTransaction::with_rto(server, rto, start);
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        if now >= give_up {
            return Err(NatError::Timeout {
                server,
                after: timeout,
            });
        }
        if let Some(e) = tx.handle_timeout(now) {
            return Err(e);
        }
        while let Some(bytes) = tx.poll_transmit(now) {
            socket.send_to(bytes, server).await?;
        }
        let wake = tx.poll_timeout().unwrap_or(give_up).min(give_up);
        let wait = wake.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
            Err(_) => continue,
            Ok(Err(e)) => {
                // ICMP port unreachable surfaces as ConnectionReset/Refused on some systems:
                // keep retransmitting, the server may come up; other errors are fatal.
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused
                ) {
                    tokio::time::sleep(Duration::from_millis(10).min(wait)).await;
                    continue;
                }
                return Err(NatError::Io(e));
            }
            Ok(Ok((n, from))) => match tx.handle_response(buf.get(..n).unwrap_or(&[]), from) {
                BindingOutcome::NotMine => continue,
                BindingOutcome::Mapped(a) => return Ok(a),
                BindingOutcome::Failed(e) => return Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_proto::stun::Attribute;

    #[test]
    fn retransmission_schedule_follows_rfc8489() {
        let t0 = Instant::now();
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let mut tx = BindingTransaction::new(server, t0);
        let mut sends = Vec::new();
        let mut now = t0;
        while let Some(next) = tx.poll_timeout() {
            now = next;
            if tx.handle_timeout(now).is_some() {
                break;
            }
            if tx.poll_transmit(now).is_some() {
                sends.push(now - t0);
            }
        }
        let ms: Vec<u128> = sends.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!((now - t0).as_millis(), 39500);
        assert!(tx.is_done());
    }

    #[test]
    fn matches_only_its_own_answer() {
        let t0 = Instant::now();
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let mut tx = BindingTransaction::new(server, t0);
        let req = Message::decode(tx.poll_transmit(t0).unwrap()).unwrap();
        let mapped: SocketAddr = "203.0.113.5:40000".parse().unwrap();
        let ok = req
            .response(Class::Success)
            .with(Attribute::XorMappedAddress(mapped))
            .encode(Integrity::None, true);
        // Wrong source, then a foreign transaction: ignored.
        let other: SocketAddr = "192.0.2.2:3478".parse().unwrap();
        assert!(matches!(
            tx.handle_response(&ok, other),
            BindingOutcome::NotMine
        ));
        let foreign = Message::request(Method::BINDING)
            .response(Class::Success)
            .with(Attribute::XorMappedAddress(mapped))
            .encode(Integrity::None, true);
        assert!(matches!(
            tx.handle_response(&foreign, server),
            BindingOutcome::NotMine
        ));
        assert!(matches!(
            tx.handle_response(b"\x80\x00junk", server),
            BindingOutcome::NotMine
        ));
        match tx.handle_response(&ok, server) {
            BindingOutcome::Mapped(a) => assert_eq!(a, mapped),
            other => panic!("{other:?}"),
        }
        assert!(tx.is_done());
        assert!(tx.poll_timeout().is_none());
    }

    #[test]
    fn error_response_fails() {
        let t0 = Instant::now();
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let mut tx = BindingTransaction::new(server, t0);
        let req = Message::decode(tx.poll_transmit(t0).unwrap()).unwrap();
        let err = req.error_response(400).encode(Integrity::None, true);
        match tx.handle_response(&err, server) {
            BindingOutcome::Failed(NatError::ServerError { code: 400, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    /// A tiny STUN server on loopback that drops the first `drop_first` requests.
    async fn server(drop_first: usize) -> (SocketAddr, tokio::task::JoinHandle<usize>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let mut seen = 0;
            loop {
                let (n, from) = sock.recv_from(&mut buf).await.unwrap();
                seen += 1;
                if seen <= drop_first {
                    continue;
                }
                let req = Message::decode(&buf[..n]).unwrap();
                let resp = req
                    .response(Class::Success)
                    .with(Attribute::XorMappedAddress(from))
                    .encode(Integrity::None, true);
                sock.send_to(&resp, from).await.unwrap();
                return seen;
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn binding_discovers_the_mapped_address_with_retransmissions() {
        let (addr, task) = server(2).await;
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Noise from elsewhere is ignored.
        let noise = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        noise
            .send_to(b"hello", sock.local_addr().unwrap())
            .await
            .unwrap();
        let mapped = binding_with_rto(
            &sock,
            addr,
            Duration::from_secs(5),
            Duration::from_millis(50),
        )
        .await
        .unwrap();
        assert_eq!(mapped, sock.local_addr().unwrap());
        assert_eq!(task.await.unwrap(), 3);
    }

    #[tokio::test]
    async fn binding_times_out() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let t0 = Instant::now();
        let err = binding(
            &sock,
            silent.local_addr().unwrap(),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, NatError::Timeout { .. }), "{err}");
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert!(t0.elapsed() < Duration::from_secs(3));
    }
}
