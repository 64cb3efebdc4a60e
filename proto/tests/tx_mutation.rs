//! Random byte mutations of real messages fed through `TransactionLayer::handle_receive`
//! over UDP and TCP flows: nothing panics, the number of transactions stays within the
//! configured limit, and with a TU that answers every request all state drains once the
//! timers have run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use tandem_proto::msg::{Frame, HeaderName, Response, StreamFramer};
use tandem_proto::transaction::{SentBy, TransactionLayer, TxConfig, TxEvent};
use tandem_proto::{Flow, Transport};

const SEEDS: [&str; 6] = [
    "INVITE sip:bob@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKm1;rport\r\nMax-Forwards: 70\r\nFrom: \"A\" <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: m1@x\r\nCSeq: 1 INVITE\r\nContact: <sip:a@192.0.2.9>\r\nContent-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\no=- 1",
    "ACK sip:bob@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKm1\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>;tag=b\r\nCall-ID: m1@x\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
    "CANCEL sip:bob@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKm1\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: m1@x\r\nCSeq: 1 CANCEL\r\nRoute: <sip:p.example.com;lr>\r\nContent-Length: 0\r\n\r\n",
    "OPTIONS sip:bob@192.0.2.1 SIP/2.0\r\nv: SIP/2.0/TCP h.example.com;branch=z9hG4bKm2,SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKx;maddr=192.0.2.3\r\nf: <sip:a@example.com>;tag=2\r\nt: sip:bob@example.com\r\ni: m2\r\nCSeq: 00002 OPTIONS\r\nl: 0\r\n\r\n",
    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK0000000000000001;rport=5060\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>;tag=9\r\nCall-ID: m3\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP old.example.com\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: m4\r\nCSeq: 7 REGISTER\r\nContact: *\r\nExpires: 0\r\nAuthorization: Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:example.com\", response=\"0123\", nc=00000001, cnonce=\"c\", qop=auth\r\nContent-Length: 0\r\n\r\n",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 1..8),
                Just(b"\r\n".to_vec()),
                Just(b",".to_vec()),
                Just(b";".to_vec()),
                Just(b"\"".to_vec()),
                Just(b"<".to_vec()),
                Just(b"99999999999999999999".to_vec()),
                Just("\u{e9}\u{1F600}".as_bytes().to_vec()),
                Just(b"\r\n ".to_vec()),
            ]
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn apply(data: &mut Vec<u8>, m: &Mutation) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
    match m {
        Mutation::Flip(i, b) => {
            if !data.is_empty() {
                let k = i % data.len();
                data[k] = *b;
            }
        }
        Mutation::Insert(i, v) => {
            let k = at(*i, data.len());
            data.splice(k..k, v.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let k = at(*i, data.len());
            let end = (k + n).min(data.len());
            data.drain(k..end);
        }
        Mutation::Duplicate(i, n) => {
            let k = at(*i, data.len());
            let end = (k + n).min(data.len());
            let piece = data[k..end].to_vec();
            data.splice(k..k, piece);
        }
    }
}

const MAX_TX: usize = 8;

fn layer() -> TransactionLayer {
    let mut l = TransactionLayer::new(TxConfig {
        seed: 3,
        max_transactions: MAX_TX,
        ..TxConfig::default()
    });
    for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
        l.set_sent_by(t, SentBy::new("192.0.2.1", 5060));
    }
    l
}

/// A TU that answers every request and CANCEL with a final response.
fn answer_all(l: &mut TransactionLayer, now: Instant, status: u16) {
    while let Some(ev) = l.poll_event() {
        if let TxEvent::Request { tx, request, .. } | TxEvent::Cancel { tx, request, .. } = ev {
            let mut r = Response::for_request(&request, status);
            if let Ok(mut to) = r.headers.to()
                && to.tag().is_none()
            {
                to.set_tag("tu");
                r.headers.set(HeaderName::To, to.to_string());
            }
            // Refusals (e.g. a malformed To that for_request copied) are fine here.
            let _ = l.send_response(now, tx, r);
        }
    }
    while l.poll_transmit().is_some() {}
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn mutated_messages_never_panic_and_state_drains(
        inputs in proptest::collection::vec(
            (0usize..SEEDS.len(), proptest::collection::vec(mutation(), 0..6), any::<bool>(), 100u16..700),
            1..12,
        )
    ) {
        let mut l = layer();
        let mut now = Instant::now();
        for (which, muts, tcp, status) in inputs {
            let mut data = SEEDS[which].as_bytes().to_vec();
            for m in &muts {
                apply(&mut data, m);
            }
            let transport = if tcp { Transport::Tcp } else { Transport::Udp };
            let flow = Flow::new(transport, "192.0.2.9:5060".parse::<SocketAddr>().unwrap());
            l.handle_receive(now, Bytes::from(data), flow);
            prop_assert!(l.len() <= MAX_TX);
            answer_all(&mut l, now, status.max(200));
            now += Duration::from_millis(10);
            l.handle_timeout(now);
        }
        // Run every timer: a TU that answered everything leaves nothing behind.
        let mut steps = 0;
        while let Some(at) = l.poll_timeout() {
            prop_assert!(at >= now, "a timer deadline in the past");
            now = now.max(at);
            l.handle_timeout(now);
            answer_all(&mut l, now, 500);
            steps += 1;
            prop_assert!(steps < 10_000, "timers keep firing");
        }
        prop_assert!(l.is_empty(), "{} transactions left", l.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The same mutations on a TCP stream, cut into random chunks: the framer never
    /// buffers more than its limit, and whatever it frames goes through the layer.
    #[test]
    fn mutated_streams_are_framed_within_bounds(
        inputs in proptest::collection::vec(
            (0usize..SEEDS.len(), proptest::collection::vec(mutation(), 0..4)),
            1..8,
        ),
        chunk in 1usize..300,
    ) {
        const LIMIT: usize = 4096;
        let mut stream = Vec::new();
        for (which, muts) in inputs {
            let mut data = SEEDS[which].as_bytes().to_vec();
            for m in &muts {
                apply(&mut data, m);
            }
            stream.extend_from_slice(&data);
        }
        let mut framer = StreamFramer::new(LIMIT);
        let mut l = layer();
        let now = Instant::now();
        let flow = Flow::new(Transport::Tcp, "192.0.2.9:40000".parse::<SocketAddr>().unwrap());
        'outer: for piece in stream.chunks(chunk) {
            framer.push(piece);
            loop {
                match framer.next() {
                    Some(Ok(Frame::Message(m))) => {
                        prop_assert!(m.len() <= LIMIT);
                        l.handle_receive(now, m, flow);
                        answer_all(&mut l, now, 200);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) => break 'outer,
                    None => break,
                }
            }
            prop_assert!(framer.buffered() <= LIMIT + chunk);
            prop_assert!(l.len() <= MAX_TX);
        }
    }
}
