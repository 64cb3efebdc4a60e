//! The transaction layer driven only through its public API, the way `tandem-net`
//! drives it: a call (INVITE/180/200/ACK, then BYE/200) between two layers over UDP
//! on a virtual clock, draining every output after each input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tandem_proto::msg::{HeaderName, Message, Method, Request, Response, Uri};
use tandem_proto::transaction::{SentBy, TransactionLayer, TxConfig, TxEvent, TxId, ack_for};
use tandem_proto::{Flow, Transport};

struct Peer {
    layer: TransactionLayer,
    addr: SocketAddr,
}

impl Peer {
    fn new(addr: &str, seed: u64) -> Self {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut layer = TransactionLayer::new(TxConfig {
            seed,
            user_agent: Some("tandem-test".into()),
            ..TxConfig::default()
        });
        layer.set_sent_by(
            Transport::Udp,
            SentBy::new(addr.ip().to_string(), addr.port()),
        );
        Self { layer, addr }
    }
}

/// Delivers every pending datagram between the peers (in both directions, until
/// quiet) and returns the events each side produced.
fn pump(now: Instant, a: &mut Peer, b: &mut Peer) -> (Vec<TxEvent>, Vec<TxEvent>) {
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    loop {
        let mut moved = false;
        while let Some(t) = a.layer.poll_transmit() {
            assert_eq!(t.flow.remote, b.addr);
            b.layer
                .handle_receive(now, t.data, Flow::new(Transport::Udp, a.addr));
            moved = true;
        }
        while let Some(t) = b.layer.poll_transmit() {
            assert_eq!(t.flow.remote, a.addr);
            a.layer
                .handle_receive(now, t.data, Flow::new(Transport::Udp, b.addr));
            moved = true;
        }
        ea.extend(std::iter::from_fn(|| a.layer.poll_event()));
        eb.extend(std::iter::from_fn(|| b.layer.poll_event()));
        if !moved {
            return (ea, eb);
        }
    }
}

fn new_request(method: Method, seq: u32) -> Request {
    let mut r = Request::new(
        method.clone(),
        Uri::parse("sip:bob@192.0.2.2:5070").unwrap(),
    );
    r.headers
        .push(HeaderName::From, "<sip:alice@192.0.2.1>;tag=al");
    r.headers.push(HeaderName::To, "<sip:bob@192.0.2.2>");
    r.headers.push(HeaderName::CallId, "public-api-call");
    r.headers
        .push(HeaderName::CSeq, format!("{seq} {}", method.as_str()));
    r
}

fn answer(request: &Request, status: u16) -> Response {
    let mut r = Response::for_request(request, status);
    let mut to = r.headers.to().unwrap();
    to.set_tag("bo");
    r.headers.set(HeaderName::To, to.to_string());
    r
}

fn only_request(events: Vec<TxEvent>) -> (TxId, Request) {
    let mut found = None;
    for e in events {
        match e {
            TxEvent::Request { tx, request, .. } => {
                assert!(found.is_none());
                found = Some((tx, request));
            }
            TxEvent::Terminated { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    found.expect("one request")
}

#[test]
fn call_setup_and_teardown_through_the_public_api() {
    let start = Instant::now();
    let mut now = start;
    let mut a = Peer::new("192.0.2.1:5060", 1);
    let mut b = Peer::new("192.0.2.2:5070", 2);
    let to_b = Flow::new(Transport::Udp, b.addr);

    let invite_tx = a
        .layer
        .send_request(now, new_request(Method::Invite, 1), to_b)
        .unwrap();
    assert!(invite_tx.to_string().starts_with("tx"));
    let (_, eb) = pump(now, &mut a, &mut b);
    let (stx, invite) = only_request(eb);
    assert_eq!(invite.method, Method::Invite);
    assert_eq!(
        invite.headers.get_str(&HeaderName::UserAgent),
        Some("tandem-test")
    );

    b.layer
        .send_response(now, stx, answer(&invite, 180))
        .unwrap();
    b.layer
        .send_response(now, stx, answer(&invite, 200))
        .unwrap();
    let (ea, _) = pump(now, &mut a, &mut b);
    let statuses: Vec<u16> = ea
        .iter()
        .filter_map(|e| match e {
            TxEvent::Response { tx, response } if *tx == invite_tx => Some(response.status),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, vec![180, 200]);

    // The UA core ACKs the 2xx in a transaction of its own (new branch), statelessly.
    let sent_invite = a.layer.client_request(invite_tx).unwrap().clone();
    let ok = answer(&invite, 200);
    let mut ack = ack_for(&sent_invite, &ok);
    ack.headers.remove(&HeaderName::Via);
    ack.headers.push_front(
        HeaderName::Via,
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKpublicack;rport",
    );
    a.layer.send_stateless(Message::Request(ack), to_b);
    let (_, eb) = pump(now, &mut a, &mut b);
    assert!(eb.iter().any(|e| matches!(e, TxEvent::Ack { .. })));

    // BYE in the other direction.
    now += Duration::from_secs(1);
    let mut bye = new_request(Method::Bye, 2);
    bye.headers
        .set(HeaderName::To, "<sip:bob@192.0.2.2>;tag=bo");
    let bye_tx = a.layer.send_request(now, bye, to_b).unwrap();
    let (_, eb) = pump(now, &mut a, &mut b);
    let (bye_stx, bye) = only_request(eb);
    b.layer
        .send_response(now, bye_stx, answer(&bye, 200))
        .unwrap();
    let (ea, _) = pump(now, &mut a, &mut b);
    assert!(ea.iter().any(
        |e| matches!(e, TxEvent::Response { tx, response } if *tx == bye_tx && response.status == 200)
    ));

    // Drive both clocks like the driver does, until nothing is left.
    let mut terminated = 0;
    while let Some(next) = [a.layer.poll_timeout(), b.layer.poll_timeout()]
        .into_iter()
        .flatten()
        .min()
    {
        assert!(next >= now, "timeouts never lie in the past");
        now = next;
        a.layer.handle_timeout(now);
        b.layer.handle_timeout(now);
        let (ea, eb) = pump(now, &mut a, &mut b);
        terminated += ea
            .iter()
            .chain(eb.iter())
            .filter(|e| matches!(e, TxEvent::Terminated { .. }))
            .count();
        assert!(now - start < Duration::from_secs(60));
    }
    // INVITE and BYE on each side.
    assert_eq!(terminated, 4);
    assert!(a.layer.is_empty() && b.layer.is_empty());
    assert!(a.layer.client_request(invite_tx).is_none());
}
