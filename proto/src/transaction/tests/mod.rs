//! Test harness: two transaction layers joined by a simulated network on a virtual
//! clock, with seeded loss, duplication and reordering (the idea of quinn-proto's
//! `Pair`). Nothing sleeps: time jumps straight to the next deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod property;
mod scenarios;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{SentBy, TransactionLayer, Transmit, TxConfig, TxEvent};
use crate::msg::{HeaderName, Message, Method, Request, Response, Uri};
use crate::{Flow, Transport};

/// Which endpoint of a [`Pair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    A,
    B,
}

/// Impairments of the simulated network.
#[derive(Debug, Clone)]
pub(super) struct NetConfig {
    /// Probability that a datagram is lost (UDP only).
    pub loss: f64,
    /// Probability that a datagram is delivered twice (UDP only).
    pub duplicate: f64,
    /// One-way delay range; a range wider than zero reorders datagrams (UDP only).
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Drop everything sent by A / by B.
    pub drop_from_a: bool,
    pub drop_from_b: bool,
    /// Seed of the impairment generator.
    pub seed: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            drop_from_a: false,
            drop_from_b: false,
            seed: 1,
        }
    }
}

/// One endpoint: its layer, address and everything it sent and reported.
pub(super) struct Node {
    pub layer: TransactionLayer,
    pub addr: SocketAddr,
    /// Every transmit, with the time it was polled.
    pub sent: Vec<(Instant, Transmit)>,
    /// Events not yet taken by the test.
    pub events: Vec<(Instant, TxEvent)>,
}

impl Node {
    fn new(cfg: TxConfig, addr: SocketAddr) -> Self {
        let mut layer = TransactionLayer::new(cfg);
        for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
            layer.set_sent_by(t, SentBy::new(addr.ip().to_string(), addr.port()));
        }
        Self {
            layer,
            addr,
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Takes the accumulated events.
    pub fn take_events(&mut self) -> Vec<TxEvent> {
        std::mem::take(&mut self.events)
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    /// The times at which messages whose first line starts with `prefix` were sent.
    pub fn sent_times(&self, prefix: &str) -> Vec<Instant> {
        self.sent
            .iter()
            .filter(|(_, t)| t.data.starts_with(prefix.as_bytes()))
            .map(|(at, _)| *at)
            .collect()
    }
}

struct InFlight {
    at: Instant,
    seq: u64,
    to: Side,
    flow: Flow,
    data: Bytes,
}

/// Two layers and the network between them.
pub(super) struct Pair {
    pub start: Instant,
    pub now: Instant,
    pub a: Node,
    pub b: Node,
    pub transport: Transport,
    net: NetConfig,
    rng: StdRng,
    in_flight: Vec<InFlight>,
    seq: u64,
}

impl Pair {
    /// A pair over `transport` with default timers and the given network.
    pub fn new(transport: Transport, net: NetConfig) -> Self {
        Self::with_configs(
            transport,
            net,
            TxConfig {
                seed: 11,
                ..TxConfig::default()
            },
            TxConfig {
                seed: 22,
                ..TxConfig::default()
            },
        )
    }

    /// A pair with explicit layer configurations.
    pub fn with_configs(transport: Transport, net: NetConfig, a: TxConfig, b: TxConfig) -> Self {
        let now = Instant::now();
        Self {
            start: now,
            now,
            a: Node::new(a, "10.0.0.1:5060".parse().unwrap()),
            b: Node::new(b, "10.0.0.2:5070".parse().unwrap()),
            transport,
            rng: StdRng::seed_from_u64(net.seed),
            net,
            in_flight: Vec::new(),
            seq: 0,
        }
    }

    pub fn node(&mut self, side: Side) -> &mut Node {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// The flow from `side` to the other endpoint.
    pub fn flow_to_peer(&self, side: Side) -> Flow {
        let remote = match side {
            Side::A => self.b.addr,
            Side::B => self.a.addr,
        };
        Flow::new(self.transport, remote)
    }

    /// Moves every queued transmit onto the network and every event into the nodes.
    pub fn drain(&mut self) {
        for side in [Side::A, Side::B] {
            let now = self.now;
            let mut outgoing = Vec::new();
            {
                let node = self.node(side);
                while let Some(t) = node.layer.poll_transmit() {
                    node.sent.push((now, t.clone()));
                    outgoing.push(t);
                }
                while let Some(e) = node.layer.poll_event() {
                    node.events.push((now, e));
                }
            }
            for t in outgoing {
                self.put_on_wire(side, t);
            }
        }
    }

    fn put_on_wire(&mut self, from: Side, t: Transmit) {
        let (to, sender) = match from {
            Side::A => (Side::B, self.a.addr),
            Side::B => (Side::A, self.b.addr),
        };
        let target = match to {
            Side::A => self.a.addr,
            Side::B => self.b.addr,
        };
        let blocked = match from {
            Side::A => self.net.drop_from_a,
            Side::B => self.net.drop_from_b,
        };
        if blocked || t.flow.remote != target {
            return;
        }
        let unreliable = !t.flow.transport.is_reliable();
        let copies = if unreliable && self.rng.random::<f64>() < self.net.loss {
            0
        } else if unreliable && self.rng.random::<f64>() < self.net.duplicate {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = if unreliable && self.net.max_delay > self.net.min_delay {
                let span = (self.net.max_delay - self.net.min_delay).as_micros() as u64;
                self.net.min_delay + Duration::from_micros(self.rng.random_range(0..=span))
            } else {
                self.net.min_delay
            };
            self.seq += 1;
            self.in_flight.push(InFlight {
                at: self.now + delay,
                seq: self.seq,
                to,
                flow: Flow::new(t.flow.transport, sender),
                data: t.data.clone(),
            });
        }
    }

    /// The next instant something happens (a timer or a delivery).
    pub fn next_wakeup(&self) -> Option<Instant> {
        let deliveries = self.in_flight.iter().map(|f| f.at);
        [self.a.layer.poll_timeout(), self.b.layer.poll_timeout()]
            .into_iter()
            .flatten()
            .chain(deliveries)
            .min()
    }

    /// Processes everything due at the next wakeup, if it is not after `limit`; returns
    /// false (and moves the clock to `limit`) when nothing happens until then.
    pub fn step(&mut self, limit: Instant) -> bool {
        self.drain();
        let Some(at) = self.next_wakeup().filter(|at| *at <= limit) else {
            self.now = self.now.max(limit);
            return false;
        };
        self.now = self.now.max(at);
        let now = self.now;
        // Deliveries first, in send order among those due.
        let mut due: Vec<InFlight> = Vec::new();
        let mut i = 0;
        while i < self.in_flight.len() {
            if self.in_flight[i].at <= now {
                due.push(self.in_flight.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|f| (f.at, f.seq));
        for f in due {
            self.node(f.to).layer.handle_receive(now, f.data, f.flow);
        }
        for side in [Side::A, Side::B] {
            let node = self.node(side);
            if node.layer.poll_timeout().is_some_and(|t| t <= now) {
                node.layer.handle_timeout(now);
            }
        }
        self.drain();
        true
    }

    /// Runs until `limit` (inclusive).
    pub fn run_until(&mut self, limit: Instant) {
        while self.step(limit) {}
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        self.run_until(limit);
    }

    /// Sends a request from `side` to its peer.
    pub fn send_request(&mut self, side: Side, request: Request) -> super::TxId {
        let flow = self.flow_to_peer(side);
        let now = self.now;
        let id = self
            .node(side)
            .layer
            .send_request(now, request, flow)
            .unwrap();
        self.drain();
        id
    }

    /// Sends a response in a server transaction of `side`.
    pub fn respond(&mut self, side: Side, tx: super::TxId, response: Response) {
        let now = self.now;
        self.node(side)
            .layer
            .send_response(now, tx, response)
            .unwrap();
        self.drain();
    }
}

/// A request from alice@A to bob@B, without Via (the layer adds it).
pub(super) fn request(method: Method, call_id: &str, seq: u32) -> Request {
    let mut r = Request::new(method.clone(), Uri::parse("sip:bob@10.0.0.2:5070").unwrap());
    r.headers
        .push(HeaderName::From, "<sip:alice@10.0.0.1>;tag=a1");
    r.headers.push(HeaderName::To, "<sip:bob@10.0.0.2>");
    r.headers.push(HeaderName::CallId, call_id.to_owned());
    r.headers
        .push(HeaderName::CSeq, format!("{seq} {}", method.as_str()));
    r.headers.push(HeaderName::MaxForwards, "70");
    r
}

/// A response to `request` with a To tag.
pub(super) fn response(request: &Request, status: u16) -> Response {
    let mut r = Response::for_request(request, status);
    if status > 100 {
        let mut to = r.headers.to().unwrap();
        if to.tag().is_none() {
            to.set_tag("b1");
            r.headers.set(HeaderName::To, to.to_string());
        }
    }
    r
}

/// Parses raw text as a message (test input).
pub(super) fn parse(text: &str) -> Message {
    Message::parse(Bytes::from(text.replace('\n', "\r\n"))).unwrap()
}

/// The status of every `Response` event, per client transaction.
pub(super) fn statuses(events: &[TxEvent]) -> Vec<u16> {
    events
        .iter()
        .filter_map(|e| match e {
            TxEvent::Response { response, .. } => Some(response.status),
            _ => None,
        })
        .collect()
}

/// After a burst of finished transactions expires, the tables give their memory back.
#[test]
fn tables_shrink_after_a_burst() {
    let mut layer = TransactionLayer::new(TxConfig::default());
    layer.set_sent_by(Transport::Udp, SentBy::new("10.0.0.2".to_owned(), 5070));
    let flow = Flow::new(Transport::Udp, "10.0.0.1:5060".parse().unwrap());
    let start = Instant::now();
    for i in 0..20_000u32 {
        let mut req = request(Method::Register, &format!("burst-{i}"), 1);
        req.headers.push_front(
            HeaderName::Via,
            format!("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKburst{i}"),
        );
        layer.handle_message(start, Message::Request(req), flow);
        let Some(TxEvent::Request { tx, request, .. }) = layer.poll_event() else {
            panic!("request {i} was not passed up");
        };
        layer
            .send_response(start, tx, response(&request, 200))
            .unwrap();
        while layer.poll_transmit().is_some() {}
    }
    let full = layer.table_capacity();
    assert!(full >= 20_000);
    layer.handle_timeout(start + Duration::from_secs(40));
    while layer.poll_event().is_some() {}
    assert!(layer.is_empty());
    assert!(
        layer.table_capacity() <= 2048,
        "tables kept {} slots after the burst (were {full})",
        layer.table_capacity()
    );
}
