//! RFC behaviours of the transaction layer that are easy to get wrong, checked on raw
//! bytes through the public API: response routing (RFC 3261 §18.2.2, RFC 3581), ACK
//! matching (§17.2.3), CANCEL construction (§9.1), responses with extra Vias (§8.1.3.3)
//! and CRLF keep-alive datagrams (RFC 5626).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use tandem_proto::msg::{HeaderName, Method, Request, Response, Uri};
use tandem_proto::transaction::{SentBy, TransactionLayer, Transmit, TxConfig, TxEvent, TxId};
use tandem_proto::{Flow, Transport};

const PEER: &str = "192.0.2.9:40000";

fn layer() -> TransactionLayer {
    let mut l = TransactionLayer::new(TxConfig {
        seed: 7,
        ..TxConfig::default()
    });
    for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
        l.set_sent_by(t, SentBy::new("192.0.2.1", 5060));
    }
    l
}

fn peer(t: Transport) -> Flow {
    Flow::new(t, PEER.parse::<SocketAddr>().unwrap())
}

fn transmits(l: &mut TransactionLayer) -> Vec<Transmit> {
    std::iter::from_fn(|| l.poll_transmit()).collect()
}

fn events(l: &mut TransactionLayer) -> Vec<TxEvent> {
    std::iter::from_fn(|| l.poll_event()).collect()
}

fn raw_request(method: &str, via: &str, extra: &str) -> Bytes {
    Bytes::from(format!(
        "{method} sip:bob@192.0.2.1 SIP/2.0\r\n\
         Via: {via}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>{extra}\r\n\
         Call-ID: edge-1\r\n\
         CSeq: 1 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

fn request_event(evs: Vec<TxEvent>) -> (TxId, Request) {
    evs.into_iter()
        .find_map(|e| match e {
            TxEvent::Request { tx, request, .. } => Some((tx, request)),
            _ => None,
        })
        .expect("a request event")
}

fn answer(req: &Request, status: u16) -> Response {
    let mut r = Response::for_request(req, status);
    let mut to = r.headers.to().unwrap();
    if to.tag().is_none() {
        to.set_tag("b1");
    }
    r.headers.set(HeaderName::To, to.to_string());
    r
}

fn top_via_of(data: &Bytes) -> tandem_proto::msg::Via {
    Response::parse(data.clone())
        .unwrap()
        .headers
        .top_via()
        .unwrap()
}

/// RFC 3581 §4 and RFC 3261 §18.2.1 apply to every transport: a request over TCP gets
/// `received` and a filled-in `rport`, and its responses use the arrival connection.
#[test]
fn rport_and_received_are_filled_in_over_tcp() {
    for t in [Transport::Tcp, Transport::Tls] {
        let mut l = layer();
        let via = format!(
            "SIP/2.0/{} client.example.com:5099;branch=z9hG4bKtcp1;rport",
            t.via_token()
        );
        l.handle_receive(Instant::now(), raw_request("OPTIONS", &via, ""), peer(t));
        let (tx, req) = request_event(events(&mut l));
        let top = req.headers.top_via().unwrap();
        assert_eq!(top.rport(), Some(Some(40000)), "{t}");
        assert_eq!(top.received(), Some("192.0.2.9"), "{t}");
        l.send_response(Instant::now(), tx, answer(&req, 200))
            .unwrap();
        let out = transmits(&mut l);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].flow, peer(t), "streams answer on the arrival flow");
        let via = top_via_of(&out[0].data);
        assert_eq!(via.rport(), Some(Some(40000)));
        assert_eq!(via.received(), Some("192.0.2.9"));
    }
}

/// RFC 3261 §18.2.2 / RFC 3581 §4 over UDP: `received` + `rport`; without rport the
/// sent-by port; an IP `maddr` wins over both.
#[test]
fn udp_response_routing() {
    let cases = [
        (
            "SIP/2.0/UDP client.example.com:5099;branch=z9hG4bKu1;rport",
            "192.0.2.9:40000",
        ),
        (
            "SIP/2.0/UDP client.example.com:5099;branch=z9hG4bKu2",
            "192.0.2.9:5099",
        ),
        ("SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKu3", "192.0.2.9:5060"),
        (
            "SIP/2.0/UDP client.example.com:5099;branch=z9hG4bKu4;maddr=198.51.100.7",
            "198.51.100.7:5099",
        ),
        (
            "SIP/2.0/UDP client.example.com;branch=z9hG4bKu5;maddr=198.51.100.7;rport",
            "198.51.100.7:5060",
        ),
    ];
    for (via, to) in cases {
        let mut l = layer();
        l.handle_receive(
            Instant::now(),
            raw_request("OPTIONS", via, ""),
            peer(Transport::Udp),
        );
        let (tx, req) = request_event(events(&mut l));
        l.send_response(Instant::now(), tx, answer(&req, 200))
            .unwrap();
        let out = transmits(&mut l);
        assert_eq!(out.len(), 1, "{via}");
        assert_eq!(
            out[0].flow,
            Flow::new(Transport::Udp, to.parse().unwrap()),
            "{via}"
        );
    }
}

/// RFC 3261 §17.2.3 / RFC 6026: the ACK for a non-2xx final is absorbed by the INVITE
/// server transaction; an ACK for a 2xx (a new branch) goes to the TU.
#[test]
fn ack_matching_after_2xx_and_non_2xx() {
    let via = "SIP/2.0/UDP 192.0.2.9:40000;branch=z9hG4bKinv1";
    // Non-2xx: the ACK (same branch) is absorbed.
    let mut l = layer();
    let t0 = Instant::now();
    l.handle_receive(t0, raw_request("INVITE", via, ""), peer(Transport::Udp));
    let (tx, req) = request_event(events(&mut l));
    l.send_response(t0, tx, answer(&req, 486)).unwrap();
    let _ = transmits(&mut l);
    l.handle_receive(t0, raw_request("ACK", via, ";tag=b1"), peer(Transport::Udp));
    assert!(
        !events(&mut l)
            .iter()
            .any(|e| matches!(e, TxEvent::Ack { .. })),
        "ACK for a non-2xx must not reach the TU"
    );
    assert!(transmits(&mut l).is_empty());

    // 2xx: the ACK has its own branch and is the TU's.
    let mut l = layer();
    l.handle_receive(t0, raw_request("INVITE", via, ""), peer(Transport::Udp));
    let (tx, req) = request_event(events(&mut l));
    l.send_response(t0, tx, answer(&req, 200)).unwrap();
    let _ = transmits(&mut l);
    l.handle_receive(
        t0,
        raw_request(
            "ACK",
            "SIP/2.0/UDP 192.0.2.9:40000;branch=z9hG4bKack2",
            ";tag=b1",
        ),
        peer(Transport::Udp),
    );
    let evs = events(&mut l);
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, TxEvent::Ack { .. }))
            .count(),
        1
    );
    // The 2xx is not retransmitted in answer to the ACK.
    assert!(transmits(&mut l).is_empty());
}

fn invite_with_routes() -> Request {
    let mut r = Request::new(Method::Invite, Uri::parse("sip:bob@192.0.2.2").unwrap());
    r.headers.push(HeaderName::Route, "<sip:p1.example.com;lr>");
    r.headers.push(HeaderName::Route, "<sip:p2.example.com;lr>");
    r.headers
        .push(HeaderName::From, "<sip:alice@example.com>;tag=a1");
    r.headers.push(HeaderName::To, "<sip:bob@example.com>");
    r.headers.push(HeaderName::CallId, "cancel-1");
    r.headers.push(HeaderName::CSeq, "5 INVITE");
    r
}

/// RFC 3261 §9.1: the CANCEL has the INVITE's Request-URI, Call-ID, From, To, CSeq
/// number, the same single top Via, and the INVITE's Route headers.
#[test]
fn cancel_copies_routes_and_top_via() {
    let mut l = layer();
    let t0 = Instant::now();
    let to = peer(Transport::Udp);
    let tx = l.send_request(t0, invite_with_routes(), to).unwrap();
    let invite = Request::parse(transmits(&mut l).remove(0).data).unwrap();
    let provisional = Response::for_request(&invite, 180).to_bytes();
    l.handle_receive(t0, provisional, to);
    let _ = events(&mut l);
    l.cancel(t0, tx).unwrap();
    let out = transmits(&mut l);
    assert_eq!(out.len(), 1);
    let cancel = Request::parse(out[0].data.clone()).unwrap();
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(cancel.uri, invite.uri);
    assert_eq!(
        cancel.headers.vias().unwrap(),
        vec![invite.headers.top_via().unwrap()]
    );
    let routes: Vec<_> = cancel.headers.get_all(&HeaderName::Route).collect();
    let inv_routes: Vec<_> = invite.headers.get_all(&HeaderName::Route).collect();
    assert_eq!(routes, inv_routes);
    assert_eq!(routes.len(), 2);
    assert_eq!(cancel.headers.cseq().unwrap().seq, 5);
    assert_eq!(cancel.headers.cseq().unwrap().method, Method::Cancel);
    assert_eq!(
        cancel.headers.get(&HeaderName::From),
        invite.headers.get(&HeaderName::From)
    );
    assert_eq!(
        cancel.headers.get(&HeaderName::To),
        invite.headers.get(&HeaderName::To)
    );
}

/// RFC 3261 §8.1.3.3: a response with more Vias than the request we sent (a UAC's
/// request has one) is not for us and is dropped; the transaction carries on.
#[test]
fn response_with_extra_via_is_dropped() {
    let mut l = layer();
    let t0 = Instant::now();
    let to = peer(Transport::Udp);
    let mut req = invite_with_routes();
    req.method = Method::Options;
    req.headers.set(HeaderName::CSeq, "5 OPTIONS");
    let tx = l.send_request(t0, req, to).unwrap();
    let sent = Request::parse(transmits(&mut l).remove(0).data).unwrap();
    let mut bad = Response::for_request(&sent, 200);
    bad.headers.push(
        HeaderName::Via,
        "SIP/2.0/UDP 203.0.113.5;branch=z9hG4bKother",
    );
    l.handle_receive(t0, bad.to_bytes(), to);
    let evs = events(&mut l);
    assert!(
        !evs.iter().any(|e| matches!(e, TxEvent::Response { .. })),
        "{evs:?}"
    );
    assert!(l.client_request(tx).is_some());
    // The genuine response still completes it.
    l.handle_receive(t0, Response::for_request(&sent, 200).to_bytes(), to);
    assert!(events(&mut l).iter().any(
        |e| matches!(e, TxEvent::Response { tx: t, response } if *t == tx && response.status == 200)
    ));
}

/// RFC 5626 §3.5.1 keep-alives (and the common bare CRLF variants) arriving as UDP
/// datagrams are ignored: no 400, no event, no state.
#[test]
fn crlf_keepalive_datagrams_are_ignored() {
    let mut l = layer();
    for data in [
        &b"\r\n\r\n"[..],
        b"\r\n",
        b"\n",
        b"\r\n\r\n\r\n\r\n",
        b"\0\0\0\0",
        b" ",
    ] {
        l.handle_receive(
            Instant::now(),
            Bytes::copy_from_slice(data),
            peer(Transport::Udp),
        );
        assert!(transmits(&mut l).is_empty(), "{data:?}");
        assert!(events(&mut l).is_empty(), "{data:?}");
        assert!(l.is_empty());
    }
}
