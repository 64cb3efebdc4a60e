//! Scenario tests of the four state machines, their timers and the matching rules.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{NetConfig, Pair, Side, parse, request, response, statuses};
use crate::msg::{HeaderName, Message, Method, Request};
use crate::transaction::{SentBy, TransactionLayer, TxConfig, TxError, TxEvent, TxId, ack_for};
use crate::{Flow, Transport};

const MS: Duration = Duration::from_millis(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Offsets from `start` in milliseconds.
fn offsets(start: Instant, times: &[Instant]) -> Vec<u64> {
    times
        .iter()
        .map(|t| (*t - start).as_millis() as u64)
        .collect()
}

/// The (time, event) pairs of `side` that concern `tx`.
fn events_of(pair: &Pair, side: Side, tx: TxId) -> Vec<(Instant, TxEvent)> {
    let node = match side {
        Side::A => &pair.a,
        Side::B => &pair.b,
    };
    node.events
        .iter()
        .filter(|(_, e)| event_tx(e) == Some(tx))
        .cloned()
        .collect()
}

fn event_tx(e: &TxEvent) -> Option<TxId> {
    match e {
        TxEvent::Request { tx, .. }
        | TxEvent::Cancel { tx, .. }
        | TxEvent::Response { tx, .. }
        | TxEvent::Timeout { tx }
        | TxEvent::TransportError { tx }
        | TxEvent::Terminated { tx } => Some(*tx),
        _ => None,
    }
}

/// Takes B's new server transactions (tx, request).
fn incoming(pair: &mut Pair) -> Vec<(TxId, Request)> {
    let mut out = Vec::new();
    let mut keep = Vec::new();
    for (at, e) in std::mem::take(&mut pair.b.events) {
        match e {
            TxEvent::Request { tx, request, .. } => out.push((tx, request)),
            other => keep.push((at, other)),
        }
    }
    pair.b.events = keep;
    out
}

/// Runs until B has a new request, answering nothing.
fn wait_request(pair: &mut Pair, limit: Duration) -> (TxId, Request) {
    let limit = pair.start + limit;
    loop {
        if let Some(r) = incoming(pair).into_iter().next() {
            return r;
        }
        assert!(pair.step(limit), "no request reached B");
    }
}

// ----- non-INVITE -----

#[test]
fn non_invite_over_udp_with_30_percent_loss_completes() {
    for seed in 1..=20 {
        let mut pair = Pair::new(
            Transport::Udp,
            NetConfig {
                loss: 0.3,
                seed,
                ..NetConfig::default()
            },
        );
        let tx = pair.send_request(Side::A, request(Method::Options, "loss", 1));
        let limit = pair.start + Duration::from_secs(60);
        while pair.step(limit) {
            for (stx, req) in incoming(&mut pair) {
                pair.respond(Side::B, stx, response(&req, 200));
            }
        }
        let events: Vec<TxEvent> = events_of(&pair, Side::A, tx)
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        assert_eq!(statuses(&events), vec![200], "seed {seed}");
        assert!(
            !events.iter().any(|e| matches!(e, TxEvent::Timeout { .. })),
            "seed {seed}"
        );
        assert!(matches!(events.last(), Some(TxEvent::Terminated { .. })));
        assert!(
            pair.a.layer.is_empty() && pair.b.layer.is_empty(),
            "seed {seed}"
        );
    }
}

#[test]
fn timer_e_doubles_up_to_t2_and_timer_f_fires_at_64_t1() {
    let mut pair = Pair::new(
        Transport::Udp,
        NetConfig {
            drop_from_a: true,
            ..NetConfig::default()
        },
    );
    let tx = pair.send_request(Side::A, request(Method::Register, "timer-e", 1));
    pair.run_for(Duration::from_secs(40));
    assert_eq!(
        offsets(pair.start, &pair.a.sent_times("REGISTER")),
        vec![
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    let events = events_of(&pair, Side::A, tx);
    assert_eq!(events.len(), 2);
    assert!(matches!(events[0].1, TxEvent::Timeout { .. }));
    assert_eq!(events[0].0 - pair.start, Duration::from_secs(32));
    assert!(matches!(events[1].1, TxEvent::Terminated { .. }));
    assert!(pair.a.layer.is_empty());
}

#[test]
fn timer_e_uses_t2_in_proceeding_and_provisional_is_resent() {
    let mut pair = Pair::new(Transport::Udp, NetConfig::default());
    let tx = pair.send_request(Side::A, request(Method::Options, "proceeding", 1));
    let (stx, req) = wait_request(&mut pair, ms(100));
    pair.respond(Side::B, stx, response(&req, 100));
    pair.run_until(pair.start + ms(9000));
    // Retransmissions: T1 (armed in Trying), then every T2 from there.
    assert_eq!(
        offsets(pair.start, &pair.a.sent_times("OPTIONS")),
        vec![0, 500, 4500, 8500]
    );
    // Each retransmission made B re-send its last provisional.
    assert_eq!(pair.b.sent_times("SIP/2.0 100").len(), 4);
    pair.respond(Side::B, stx, response(&req, 200));
    pair.run_for(ms(100));
    let events: Vec<TxEvent> = events_of(&pair, Side::A, tx)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    // A sees every provisional retransmission but exactly one final.
    assert_eq!(statuses(&events), vec![100, 100, 100, 100, 200]);
    // Timer K = T4 on UDP, then Timer J = 64*T1 on B.
    pair.run_for(Duration::from_secs(6));
    assert!(pair.a.layer.is_empty());
    assert!(!pair.b.layer.is_empty());
    pair.run_for(Duration::from_secs(33));
    assert!(pair.b.layer.is_empty());
}

#[test]
fn non_invite_over_tcp_has_no_retransmissions_and_no_wait_states() {
    let mut pair = Pair::new(Transport::Tcp, NetConfig::default());
    let tx = pair.send_request(Side::A, request(Method::Options, "tcp", 1));
    let (stx, req) = wait_request(&mut pair, ms(100));
    pair.run_for(Duration::from_secs(10));
    assert_eq!(pair.a.sent_times("OPTIONS").len(), 1);
    pair.respond(Side::B, stx, response(&req, 200));
    // Timer J = 0: B's transaction is gone as soon as the final is sent.
    assert!(pair.b.layer.is_empty());
    pair.run_for(ms(20));
    let events = events_of(&pair, Side::A, tx);
    // Timer K = 0: the Response and Terminated come at the same instant.
    assert_eq!(events.len(), 2);
    assert!(matches!(events[1].1, TxEvent::Terminated { .. }));
    assert_eq!(events[0].0, events[1].0);
    assert!(pair.a.layer.is_empty());
}

#[test]
fn timer_f_over_tcp_without_retransmissions() {
    let mut pair = Pair::new(
        Transport::Tcp,
        NetConfig {
            drop_from_a: true,
            ..NetConfig::default()
        },
    );
    let tx = pair.send_request(Side::A, request(Method::Options, "tcp-f", 1));
    pair.run_for(Duration::from_secs(40));
    assert_eq!(pair.a.sent_times("OPTIONS").len(), 1);
    let events = events_of(&pair, Side::A, tx);
    assert!(matches!(events[0].1, TxEvent::Timeout { .. }));
    assert_eq!(events[0].0 - pair.start, Duration::from_secs(32));
}

// ----- INVITE -----

#[test]
fn invite_100_180_486_generates_ack_that_server_absorbs() {
    let mut pair = Pair::new(Transport::Udp, NetConfig::default());
    let tx = pair.send_request(Side::A, request(Method::Invite, "busy", 1));
    let (stx, req) = wait_request(&mut pair, ms(100));
    // The TU is slow: the layer sends 100 Trying itself after timer_100 (200 ms).
    pair.run_until(pair.start + ms(310));
    assert_eq!(
        offsets(pair.start, &pair.b.sent_times("SIP/2.0 100")),
        vec![210]
    );
    pair.respond(Side::B, stx, response(&req, 180));
    pair.run_for(ms(100));
    pair.respond(Side::B, stx, response(&req, 486));
    pair.run_for(ms(100));
    let events: Vec<TxEvent> = events_of(&pair, Side::A, tx)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(statuses(&events), vec![100, 180, 486]);
    // Timer A never fired: the 100 arrived before T1.
    assert_eq!(pair.a.sent_times("INVITE").len(), 1);
    let acks: Vec<_> = pair
        .a
        .sent
        .iter()
        .filter(|(_, t)| t.data.starts_with(b"ACK"))
        .collect();
    assert_eq!(acks.len(), 1);
    let Message::Request(ack) = Message::parse(acks[0].1.data.clone()).unwrap() else {
        panic!("ACK is a request")
    };
    let invite = pair.a.layer.client_request(tx).unwrap();
    assert_eq!(
        ack.headers.top_via().unwrap().branch(),
        invite.headers.top_via().unwrap().branch()
    );
    assert_eq!(ack.headers.to().unwrap().tag(), Some("b1"));
    assert_eq!(ack.headers.cseq().unwrap().method, Method::Ack);
    assert_eq!(ack.uri, invite.uri);
    // The ACK was absorbed by B's transaction: no Ack event for B's TU.
    assert!(
        !pair
            .b
            .events
            .iter()
            .any(|(_, e)| matches!(e, TxEvent::Ack { .. }))
    );
    // B: Confirmed, Timer I = T4; A: Completed, Timer D = 32 s.
    let acked = pair.now;
    pair.run_until(acked + Duration::from_secs(5) + ms(20));
    assert!(pair.b.layer.is_empty());
    assert!(!pair.a.layer.is_empty());
    pair.run_until(pair.start + Duration::from_secs(33));
    assert!(pair.a.layer.is_empty());
}

#[test]
fn retransmitted_final_is_re_acked_not_passed_up() {
    let mut pair = Pair::new(Transport::Udp, NetConfig::default());
    let tx = pair.send_request(Side::A, request(Method::Invite, "reack", 1));
    let (stx, req) = wait_request(&mut pair, ms(100));
    pair.respond(Side::B, stx, response(&req, 603));
    // Lose A's ACKs from now on: B retransmits the 603 by Timer G.
    pair.net.drop_from_a = true;
    pair.run_for(ms(2000));
    let events: Vec<TxEvent> = events_of(&pair, Side::A, tx)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(statuses(&events), vec![603]);
    let acks = pair.a.sent_times("ACK").len();
    assert_eq!(acks, 1 + pair.b.sent_times("SIP/2.0 603").len() - 1);
    assert!(acks >= 3);
}

#[test]
fn timer_g_retransmits_and_timer_h_times_out_without_ack() {
    let mut pair = Pair::new(Transport::Udp, NetConfig::default());
    pair.send_request(Side::A, request(Method::Invite, "no-ack", 1));
    let (stx, req) = wait_request(&mut pair, ms(100));
    // Cut the network both ways: no ACK, and no INVITE retransmission that would make
    // B re-send its final outside Timer G.
    pair.net.drop_from_a = true;
    pair.net.drop_from_b = true;
    let answered = pair.now;
    pair.respond(Side::B, stx, response(&req, 480));
    pair.run_until(answered + Duration::from_secs(40));
    assert_eq!(
        offsets(answered, &pair.b.sent_times("SIP/2.0 480")),
        vec![
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    let events = events_of(&pair, Side::B, stx);
    let timeout = events
        .iter()
        .find(|(_, e)| matches!(e, TxEvent::Timeout { .. }))
        .expect("Timer H");
    assert_eq!(timeout.0 - answered, Duration::from_secs(32));
    assert!(matches!(
        events.last(),
        Some((_, TxEvent::Terminated { .. }))
    ));
    assert!(pair.b.layer.is_empty());
}

#[test]
fn timer_a_doubles_and_timer_b_times_out() {
    let mut pair = Pair::new(
        Transport::Udp,
        NetConfig {
            drop_from_a: true,
            ..NetConfig::default()
        },
    );
    let tx = pair.send_request(Side::A, request(Method::Invite, "timer-b", 1));
    pair.run_for(Duration::from_secs(40));
    assert_eq!(
        offsets(pair.start, &pair.a.sent_times("INVITE")),
        vec![0, 500, 1500, 3500, 7500, 15500, 31500]
    );
    let events = events_of(&pair, Side::A, tx);
    assert!(matches!(events[0].1, TxEvent::Timeout { .. }));
    assert_eq!(events[0].0 - pair.start, Duration::from_secs(32));
    assert!(pair.a.layer.is_empty());
}

#[test]
fn invite_over_tls_has_no_timer_a_and_no_timer_d() {
    let mut pair = Pair::new(Transport::Tls, NetConfig::default());
    let tx = pair.send_request(Side::A, request(Method::Invite, "tls", 1));
    let (stx, req) = wait_request(&mut pair, ms(100));
    pair.run_for(Duration::from_secs(5));
    assert_eq!(pair.a.sent_times("INVITE").len(), 1);
    pair.respond(Side::B, stx, response(&req, 486));
    pair.run_for(ms(50));
    // Timer D = 0 and Timer I = 0: both transactions are gone after the ACK.
    assert!(pair.a.layer.is_empty());
    assert!(pair.b.layer.is_empty());
    assert_eq!(pair.b.sent_times("SIP/2.0 486").len(), 1);
    let events: Vec<TxEvent> = events_of(&pair, Side::A, tx)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(statuses(&events), vec![100, 486]);
}

#[test]
fn invite_2xx_enters_accepted_and_2xx_retransmissions_are_passed_up() {
    let mut pair = Pair::new(Transport::Udp, NetConfig::default());
    let tx = pair.send_request(Side::A, request(Method::Invite, "ok", 1));
    let (stx, req) = wait_request(&mut pair, ms(100));
    let ok = response(&req, 200);
    pair.respond(Side::B, stx, ok.clone());
    // The UAS core retransmits its 2xx (§13.3.1.4); the server tx forwards each.
    pair.run_for(ms(500));
    pair.respond(Side::B, stx, ok.clone());
    pair.run_for(ms(1000));
    pair.respond(Side::B, stx, ok);
    // A non-2xx is refused in Accepted.
    let now = pair.now;
    assert!(matches!(
        pair.b.layer.send_response(now, stx, response(&req, 500)),
        Err(TxError::InvalidState { status: 500, .. })
    ));
    pair.run_for(ms(100));
    let events: Vec<TxEvent> = events_of(&pair, Side::A, tx)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(statuses(&events), vec![200, 200, 200]);
    // The client tx never ACKs a 2xx itself.
    assert!(pair.a.sent_times("ACK").is_empty());
    // The TU's ACK (new branch) reaches B's TU as a stray ACK.
    let invite = pair.a.layer.client_request(tx).unwrap().clone();
    let Some(TxEvent::Response { response: ok, .. }) = events.first().cloned() else {
        panic!()
    };
    let mut ack = ack_for(&invite, &ok);
    ack.headers.remove(&HeaderName::Via);
    ack.headers.push_front(
        HeaderName::Via,
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKack2xx",
    );
    let flow = pair.flow_to_peer(Side::A);
    pair.a.layer.send_stateless(Message::Request(ack), flow);
    pair.run_for(ms(100));
    assert_eq!(
        pair.b
            .events
            .iter()
            .filter(|(_, e)| matches!(e, TxEvent::Ack { .. }))
            .count(),
        1
    );
    // Timers M and L (64*T1) end both transactions.
    pair.run_until(pair.start + Duration::from_secs(34));
    assert!(pair.a.layer.is_empty());
    assert!(pair.b.layer.is_empty());
}

#[test]
fn retransmitted_invite_in_accepted_is_absorbed() {
    let mut layer = server_layer(TxConfig::default());
    let now = Instant::now();
    let src = udp("192.0.2.1:5060");
    let invite = raw_invite("z9hG4bKacc", "acc");
    layer.handle_receive(now, invite.clone(), src);
    let (tx, req) = take_request(&mut layer);
    layer.send_response(now, tx, response(&req, 200)).unwrap();
    assert!(layer.poll_transmit().is_some());
    layer.handle_receive(now + MS, invite, src);
    assert!(layer.poll_transmit().is_none());
    assert!(layer.poll_event().is_none());
}

// ----- CANCEL -----

#[test]
fn cancel_matches_invite_and_both_complete() {
    let mut pair = Pair::new(Transport::Udp, NetConfig::default());
    let inv = pair.send_request(Side::A, request(Method::Invite, "cancel", 1));
    let (stx, req) = wait_request(&mut pair, ms(100));
    pair.respond(Side::B, stx, response(&req, 180));
    pair.run_for(ms(50));
    let now = pair.now;
    let cancel = pair.a.layer.cancel(now, inv).unwrap();
    assert_eq!(
        pair.a.layer.cancel(now, inv),
        Err(TxError::AlreadyCancelled(inv))
    );
    pair.drain();
    let cancel_req = pair.a.layer.client_request(cancel).unwrap().clone();
    let invite_req = pair.a.layer.client_request(inv).unwrap().clone();
    assert_eq!(cancel_req.method, Method::Cancel);
    assert_eq!(cancel_req.uri, invite_req.uri);
    assert_eq!(
        cancel_req.headers.top_via().unwrap(),
        invite_req.headers.top_via().unwrap()
    );
    assert_eq!(cancel_req.headers.vias().unwrap().len(), 1);
    assert_eq!(cancel_req.headers.cseq().unwrap().seq, 1);
    assert_eq!(cancel_req.headers.cseq().unwrap().method, Method::Cancel);
    assert_eq!(
        cancel_req.headers.call_id().unwrap(),
        invite_req.headers.call_id().unwrap()
    );
    pair.run_for(ms(50));
    let cancels: Vec<_> = std::mem::take(&mut pair.b.events)
        .into_iter()
        .filter_map(|(_, e)| match e {
            TxEvent::Cancel {
                tx,
                invite_tx,
                request,
                ..
            } => Some((tx, invite_tx, request)),
            _ => None,
        })
        .collect();
    assert_eq!(cancels.len(), 1);
    let (ctx, invite_tx, creq) = cancels[0].clone();
    assert_eq!(invite_tx, Some(stx));
    pair.respond(Side::B, ctx, response(&creq, 200));
    pair.respond(Side::B, stx, response(&req, 487));
    pair.run_for(ms(100));
    let cancel_events: Vec<TxEvent> = events_of(&pair, Side::A, cancel)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(statuses(&cancel_events), vec![200]);
    let invite_events: Vec<TxEvent> = events_of(&pair, Side::A, inv)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(statuses(&invite_events), vec![180, 487]);
    assert_eq!(pair.a.sent_times("ACK").len(), 1);
    assert_eq!(
        pair.a.layer.cancel(pair.now, inv),
        Err(TxError::AlreadyFinal(inv))
    );
    pair.run_for(Duration::from_secs(40));
    assert!(pair.a.layer.is_empty() && pair.b.layer.is_empty());
}

#[test]
fn cancel_before_provisional_is_held_until_one_arrives() {
    let mut pair = Pair::new(Transport::Udp, NetConfig::default());
    let inv = pair.send_request(Side::A, request(Method::Invite, "held", 1));
    let now = pair.now;
    let cancel = pair.a.layer.cancel(now, inv).unwrap();
    pair.drain();
    assert!(pair.a.sent_times("CANCEL").is_empty());
    // B's TU is slow; B's automatic 100 (sent at 210 ms) arrives at 220 ms.
    let (_stx, _req) = wait_request(&mut pair, ms(100));
    pair.run_until(pair.start + ms(400));
    assert_eq!(offsets(pair.start, &pair.a.sent_times("CANCEL")), vec![220]);
    let cancels = pair
        .b
        .events
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                TxEvent::Cancel {
                    invite_tx: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(cancels, 1);
    assert!(pair.a.layer.client_request(cancel).is_some());
}

#[test]
fn held_cancel_is_dropped_when_a_final_comes_first() {
    let mut pair = Pair::new(Transport::Udp, NetConfig::default());
    let inv = pair.send_request(Side::A, request(Method::Invite, "held-final", 1));
    let now = pair.now;
    let cancel = pair.a.layer.cancel(now, inv).unwrap();
    let (stx, req) = wait_request(&mut pair, ms(100));
    pair.respond(Side::B, stx, response(&req, 486));
    pair.run_for(ms(100));
    assert!(pair.a.sent_times("CANCEL").is_empty());
    let events: Vec<TxEvent> = events_of(&pair, Side::A, cancel)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(events.len(), 1);
    assert!(matches!(events[0], TxEvent::Terminated { .. }));
}

#[test]
fn cancelled_invite_without_final_is_destroyed_after_64_t1() {
    let mut pair = Pair::new(Transport::Udp, NetConfig::default());
    let inv = pair.send_request(Side::A, request(Method::Invite, "no-487", 1));
    let (stx, req) = wait_request(&mut pair, ms(100));
    pair.respond(Side::B, stx, response(&req, 180));
    pair.run_for(ms(50));
    let cancelled_at = pair.now;
    pair.a.layer.cancel(cancelled_at, inv).unwrap();
    // B's TU answers neither the CANCEL nor the INVITE.
    pair.run_for(Duration::from_secs(40));
    let events = events_of(&pair, Side::A, inv);
    let timeout = events
        .iter()
        .find(|(_, e)| matches!(e, TxEvent::Timeout { .. }))
        .expect("INVITE destroyed");
    assert_eq!(timeout.0 - cancelled_at, Duration::from_secs(32));
}

#[test]
fn cancel_errors() {
    let mut pair = Pair::new(Transport::Udp, NetConfig::default());
    let opt = pair.send_request(Side::A, request(Method::Options, "c-err", 1));
    let now = pair.now;
    assert_eq!(pair.a.layer.cancel(now, opt), Err(TxError::NotInvite(opt)));
    assert_eq!(
        pair.a.layer.cancel(now, TxId(999)),
        Err(TxError::UnknownTransaction(TxId(999)))
    );
}

// ----- matching, addressing, robustness (one layer fed raw datagrams) -----

fn udp(addr: &str) -> Flow {
    Flow::new(Transport::Udp, addr.parse::<SocketAddr>().unwrap())
}

fn server_layer(cfg: TxConfig) -> TransactionLayer {
    let mut layer = TransactionLayer::new(cfg);
    layer.set_sent_by(Transport::Udp, SentBy::new("192.0.2.100", 5060));
    layer
}

fn take_request(layer: &mut TransactionLayer) -> (TxId, Request) {
    match layer.poll_event() {
        Some(TxEvent::Request { tx, request, .. }) => (tx, request),
        other => panic!("expected a request event, got {other:?}"),
    }
}

fn raw_request(method: &str, via: &str, call_id: &str, to_tag: &str) -> Bytes {
    Bytes::from(format!(
        "{method} sip:bob@192.0.2.100 SIP/2.0\r\n\
         Via: {via}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=f1\r\n\
         To: <sip:bob@example.com>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 7 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

fn raw_invite(branch: &str, call_id: &str) -> Bytes {
    raw_request(
        "INVITE",
        &format!("SIP/2.0/UDP 192.0.2.1:5060;branch={branch}"),
        call_id,
        "",
    )
}

fn transmits(layer: &mut TransactionLayer) -> Vec<(Flow, Message)> {
    std::iter::from_fn(|| layer.poll_transmit())
        .map(|t| (t.flow, Message::parse(t.data).unwrap()))
        .collect()
}

#[test]
fn duplicated_requests_are_absorbed_and_last_response_resent() {
    let mut layer = server_layer(TxConfig::default());
    let now = Instant::now();
    let src = udp("192.0.2.1:5060");
    let options = raw_request(
        "OPTIONS",
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKdup1",
        "dup",
        "",
    );
    layer.handle_receive(now, options.clone(), src);
    let (tx, req) = take_request(&mut layer);
    // A duplicate before any response: absorbed silently (Trying).
    layer.handle_receive(now + MS, options.clone(), src);
    assert!(layer.poll_event().is_none());
    assert!(layer.poll_transmit().is_none());
    layer.send_response(now, tx, response(&req, 100)).unwrap();
    let first = layer.poll_transmit().unwrap();
    layer.handle_receive(now + MS, options.clone(), src);
    assert_eq!(layer.poll_transmit().unwrap(), first);
    layer.send_response(now, tx, response(&req, 202)).unwrap();
    let last = layer.poll_transmit().unwrap();
    layer.handle_receive(now + 2 * MS, options.clone(), src);
    assert_eq!(layer.poll_transmit().unwrap(), last);
    assert!(layer.poll_event().is_none());
    assert_eq!(layer.len(), 1);
    // A second final is refused.
    assert!(matches!(
        layer.send_response(now, tx, response(&req, 500)),
        Err(TxError::InvalidState { .. })
    ));
    // Timer J (64*T1) ends it; later copies are new requests again.
    layer.handle_timeout(now + Duration::from_secs(32));
    assert!(matches!(
        layer.poll_event(),
        Some(TxEvent::Terminated { .. })
    ));
    assert!(layer.is_empty());
}

#[test]
fn invite_retransmission_resends_provisional() {
    let mut layer = server_layer(TxConfig::default());
    let now = Instant::now();
    let src = udp("192.0.2.1:5060");
    let invite = raw_invite("z9hG4bKinvdup", "invdup");
    layer.handle_receive(now, invite.clone(), src);
    let (tx, req) = take_request(&mut layer);
    layer.send_response(now, tx, response(&req, 180)).unwrap();
    let ringing = layer.poll_transmit().unwrap();
    layer.handle_receive(now + MS, invite.clone(), src);
    assert_eq!(layer.poll_transmit().unwrap(), ringing);
    // The automatic 100 is not sent once the TU answered.
    layer.handle_timeout(now + Duration::from_secs(1));
    assert!(layer.poll_transmit().is_none());
}

#[test]
fn rfc2543_requests_match_without_magic_cookie() {
    let mut layer = server_layer(TxConfig::default());
    let now = Instant::now();
    let src = udp("192.0.2.1:5060");
    let via = "SIP/2.0/UDP 192.0.2.1:5060";
    let invite = raw_request("INVITE", via, "old", "");
    layer.handle_receive(now, invite.clone(), src);
    let (tx, req) = take_request(&mut layer);
    // Retransmission: same Request-URI, tags, Call-ID, CSeq and Via.
    layer.handle_receive(now + MS, invite.clone(), src);
    assert!(layer.poll_event().is_none());
    // A CANCEL matches the INVITE the RFC 2543 way.
    let cancel = raw_request("CANCEL", via, "old", "");
    layer.handle_receive(now + MS, cancel, src);
    match layer.poll_event() {
        Some(TxEvent::Cancel { invite_tx, .. }) => assert_eq!(invite_tx, Some(tx)),
        other => panic!("expected Cancel, got {other:?}"),
    }
    // Another Call-ID is another transaction.
    layer.handle_receive(now + MS, raw_request("INVITE", via, "other", ""), src);
    assert!(matches!(layer.poll_event(), Some(TxEvent::Request { .. })));
    layer.send_response(now, tx, response(&req, 486)).unwrap();
    transmits(&mut layer);
    // An ACK with another To tag is not ours: the TU gets it.
    layer.handle_receive(now + MS, raw_request("ACK", via, "old", ";tag=zz"), src);
    assert!(matches!(layer.poll_event(), Some(TxEvent::Ack { .. })));
    // An ACK with the To tag of our 486 is absorbed by the transaction...
    layer.handle_receive(now + MS, raw_request("ACK", via, "old", ";tag=b1"), src);
    assert!(layer.poll_event().is_none());
    // ...which is now Confirmed: no more 486 retransmissions, gone after T4.
    layer.handle_timeout(now + Duration::from_secs(3));
    assert!(
        !transmits(&mut layer)
            .iter()
            .any(|(_, m)| matches!(m, Message::Response(r) if r.status == 486))
    );
    layer.handle_timeout(now + Duration::from_secs(6));
    assert!(
        std::iter::from_fn(|| layer.poll_event())
            .any(|e| matches!(e, TxEvent::Terminated { tx: t } if t == tx))
    );
}

#[test]
fn rfc3261_ack_for_non_2xx_confirms_and_sent_by_matters() {
    let mut layer = server_layer(TxConfig::default());
    let now = Instant::now();
    let src = udp("192.0.2.1:5060");
    layer.handle_receive(now, raw_invite("z9hG4bKconf", "conf"), src);
    let (tx, req) = take_request(&mut layer);
    layer.send_response(now, tx, response(&req, 404)).unwrap();
    transmits(&mut layer);
    // Same branch from another sent-by: not this transaction (§17.2.3).
    let foreign = raw_request(
        "ACK",
        "SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bKconf",
        "conf",
        ";tag=b1",
    );
    layer.handle_receive(now + MS, foreign, src);
    assert!(matches!(layer.poll_event(), Some(TxEvent::Ack { .. })));
    let ack = raw_request(
        "ACK",
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKconf",
        "conf",
        ";tag=b1",
    );
    layer.handle_receive(now + MS, ack.clone(), src);
    assert!(layer.poll_event().is_none());
    // Confirmed absorbs further ACKs.
    layer.handle_receive(now + 2 * MS, ack, src);
    assert!(layer.poll_event().is_none());
    assert_eq!(layer.len(), 1);
    layer.handle_timeout(now + MS + Duration::from_secs(5));
    assert!(matches!(
        layer.poll_event(),
        Some(TxEvent::Terminated { .. })
    ));
}

#[test]
fn received_and_rport_are_added_and_responses_follow_them() {
    let mut layer = server_layer(TxConfig::default());
    let now = Instant::now();
    // rport requested, sent-by is a name: received + rport, answer to the source.
    let nat = udp("203.0.113.9:40000");
    layer.handle_receive(
        now,
        raw_request(
            "OPTIONS",
            "SIP/2.0/UDP client.example.com:5062;branch=z9hG4bKnat;rport",
            "nat",
            "",
        ),
        nat,
    );
    let (tx, req) = take_request(&mut layer);
    let via = req.headers.top_via().unwrap();
    assert_eq!(via.received(), Some("203.0.113.9"));
    assert_eq!(via.rport(), Some(Some(40000)));
    layer.send_response(now, tx, response(&req, 200)).unwrap();
    let (flow, _) = transmits(&mut layer).remove(0);
    assert_eq!(flow, nat);

    // No rport, sent-by IP equals the source: nothing added, answer to sent-by port.
    let src = udp("192.0.2.7:40001");
    layer.handle_receive(
        now,
        raw_request(
            "OPTIONS",
            "SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKplain",
            "plain",
            "",
        ),
        src,
    );
    let (tx, req) = take_request(&mut layer);
    let via = req.headers.top_via().unwrap();
    assert_eq!(via.received(), None);
    assert_eq!(via.rport(), None);
    layer.send_response(now, tx, response(&req, 200)).unwrap();
    assert_eq!(transmits(&mut layer).remove(0).0, udp("192.0.2.7:5062"));

    // No rport, a name, no port: received added, answer to received:5060.
    layer.handle_receive(
        now,
        raw_request(
            "OPTIONS",
            "SIP/2.0/UDP pc.example.com;branch=z9hG4bKname",
            "name",
            "",
        ),
        src,
    );
    let (tx, req) = take_request(&mut layer);
    assert_eq!(req.headers.top_via().unwrap().received(), Some("192.0.2.7"));
    layer.send_response(now, tx, response(&req, 200)).unwrap();
    assert_eq!(transmits(&mut layer).remove(0).0, udp("192.0.2.7:5060"));

    // Over TCP too (§18.2.1 "over any transport", RFC 3581 §4) received and rport are
    // added, and the answer goes back on the connection.
    let tcp = Flow::new(Transport::Tcp, "198.51.100.3:50123".parse().unwrap());
    layer.handle_receive(
        now,
        raw_request(
            "OPTIONS",
            "SIP/2.0/TCP pc.example.com;branch=z9hG4bKtcp;rport",
            "tcp",
            "",
        ),
        tcp,
    );
    let (tx, req) = take_request(&mut layer);
    let via = req.headers.top_via().unwrap();
    assert_eq!(via.received(), Some("198.51.100.3"));
    assert_eq!(via.rport(), Some(Some(50123)));
    layer.send_response(now, tx, response(&req, 200)).unwrap();
    assert_eq!(transmits(&mut layer).remove(0).0, tcp);
}

#[test]
fn malformed_request_gets_400_or_is_dropped() {
    let mut layer = server_layer(TxConfig::default());
    let now = Instant::now();
    let src = udp("192.0.2.1:5060");
    // Content-Length larger than the datagram, but the key headers are intact.
    let bad = "OPTIONS sip:bob@192.0.2.100 SIP/2.0\r\n\
               Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbad\r\n\
               From: <sip:alice@example.com>;tag=f1\r\n\
               To: <sip:bob@example.com>\r\n\
               Call-ID: bad\r\n\
               CSeq: 1 OPTIONS\r\n\
               Content-Length: 500\r\n\r\nshort";
    layer.handle_receive(now, Bytes::from(bad), src);
    let out = transmits(&mut layer);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, src);
    match &out[0].1 {
        Message::Response(r) => assert_eq!(r.status, 400),
        other => panic!("expected a 400, got {other:?}"),
    }
    assert!(layer.poll_event().is_none());
    assert!(layer.is_empty());
    // The CSeq method differs from the request method (RFC 4475 mismatch01): 400.
    let mismatch = "OPTIONS sip:bob@192.0.2.100 SIP/2.0\r\n\
                    Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmm;rport\r\n\
                    From: <sip:alice@example.com>;tag=f1\r\n\
                    To: <sip:bob@example.com>\r\n\
                    Call-ID: mm\r\n\
                    CSeq: 1 INVITE\r\n\
                    Content-Length: 0\r\n\r\n";
    layer.handle_receive(now, Bytes::from(mismatch), src);
    let out = transmits(&mut layer);
    assert_eq!(out.len(), 1);
    match &out[0].1 {
        Message::Response(r) => assert_eq!(r.status, 400),
        other => panic!("expected a 400, got {other:?}"),
    }
    assert!(layer.poll_event().is_none());
    assert!(layer.is_empty());
    // An unsupported Request-URI scheme is answered with 416.
    let scheme = mismatch
        .replace("OPTIONS sip:bob@192.0.2.100", "OPTIONS http://example.com/")
        .replace("1 INVITE", "1 OPTIONS");
    layer.handle_receive(now, Bytes::from(scheme), src);
    match &transmits(&mut layer)[..] {
        [(_, Message::Response(r))] => assert_eq!(r.status, 416),
        other => panic!("expected a 416, got {other:?}"),
    }
    assert!(layer.is_empty());
    // The same request built by hand (so it reaches the layer parsed): the semantic
    // check answers 400, carrying the Via stamped with received/rport.
    let mut built = request(Method::Options, "mm2", 1);
    built.headers.set(HeaderName::CSeq, "1 INVITE");
    built.headers.push_front(
        HeaderName::Via,
        "SIP/2.0/UDP client.example.com:5060;branch=z9hG4bKmm2;rport",
    );
    layer.handle_message(now, Message::Request(built), src);
    match &transmits(&mut layer)[..] {
        [(flow, Message::Response(r))] => {
            assert_eq!(*flow, src);
            assert_eq!(r.status, 400);
            let via = r.headers.top_via().unwrap();
            assert_eq!(via.rport(), Some(Some(5060)));
            assert_eq!(via.received(), Some("192.0.2.1"));
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    assert!(layer.is_empty());
    // Garbage: nothing to answer.
    layer.handle_receive(now, Bytes::from_static(b"\x00\x01garbage\r\n\r\n"), src);
    assert!(layer.poll_transmit().is_none());
    // A malformed response is dropped.
    layer.handle_receive(now, Bytes::from_static(b"SIP/2.0 2x0 OK\r\n\r\n"), src);
    assert!(layer.poll_transmit().is_none());
    assert!(layer.poll_event().is_none());
}

#[test]
fn overload_answers_503_statelessly() {
    let mut layer = server_layer(TxConfig {
        max_transactions: 2,
        ..TxConfig::default()
    });
    let now = Instant::now();
    let src = udp("192.0.2.1:5060");
    for i in 0..3 {
        layer.handle_receive(
            now,
            raw_request(
                "OPTIONS",
                &format!("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKov{i}"),
                &format!("ov{i}"),
                "",
            ),
            src,
        );
    }
    assert!(matches!(layer.poll_event(), Some(TxEvent::Request { .. })));
    assert!(matches!(layer.poll_event(), Some(TxEvent::Request { .. })));
    assert!(layer.poll_event().is_none());
    assert_eq!(layer.len(), 2);
    let out = transmits(&mut layer);
    assert_eq!(out.len(), 1);
    let Message::Response(r) = &out[0].1 else {
        panic!("a response")
    };
    assert_eq!(r.status, 503);
    assert_eq!(r.headers.get_str(&HeaderName::RetryAfter), Some("5"));
    assert!(r.headers.to().unwrap().tag().is_some());
    assert_eq!(r.headers.call_id().unwrap(), "ov2");
    // ACKs create no state and still reach the TU.
    layer.handle_receive(
        now,
        raw_request(
            "ACK",
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKovack",
            "x",
            ";tag=t",
        ),
        src,
    );
    assert!(matches!(layer.poll_event(), Some(TxEvent::Ack { .. })));
}

#[test]
fn stray_responses_are_reported() {
    let mut layer = server_layer(TxConfig::default());
    let src = udp("192.0.2.1:5060");
    let msg = parse(
        "SIP/2.0 200 OK\n\
         Via: SIP/2.0/UDP 192.0.2.100:5060;branch=z9hG4bKnobody\n\
         From: <sip:a@example.com>;tag=1\n\
         To: <sip:b@example.com>;tag=2\n\
         Call-ID: stray\n\
         CSeq: 1 INVITE\n\
         Content-Length: 0\n\n",
    );
    layer.handle_message(Instant::now(), msg, src);
    assert!(matches!(layer.poll_event(), Some(TxEvent::StrayResponse { flow, .. }) if flow == src));
}

#[test]
fn stateless_response_is_routed_by_its_via() {
    let mut layer = server_layer(TxConfig::default());
    let Message::Response(r) = parse(
        "SIP/2.0 200 OK\n\
         Via: SIP/2.0/UDP pc.example.com:5062;branch=z9hG4bKfw;received=198.51.100.8;rport=6000\n\
         Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKup\n\
         From: <sip:a@example.com>;tag=1\n\
         To: <sip:b@example.com>;tag=2\n\
         Call-ID: fw\n\
         CSeq: 1 INVITE\n\
         Content-Length: 0\n\n",
    ) else {
        panic!()
    };
    layer.send_stateless_response(r.clone());
    assert_eq!(
        layer.poll_transmit().unwrap().flow,
        udp("198.51.100.8:6000")
    );
    let mut r2 = r.clone();
    r2.headers.remove_first(&HeaderName::Via);
    layer.send_stateless_response(r2);
    assert_eq!(layer.poll_transmit().unwrap().flow, udp("192.0.2.1:5060"));
    // A host name without received cannot be routed without DNS: dropped.
    let mut r3 = r;
    r3.headers.set(
        HeaderName::Via,
        "SIP/2.0/TLS pc.example.com;branch=z9hG4bKn",
    );
    layer.send_stateless_response(r3);
    assert!(layer.poll_transmit().is_none());
}

#[test]
fn send_request_adds_our_via_and_checks_input() {
    let cfg = TxConfig {
        seed: 7,
        user_agent: Some("Tandem/test".into()),
        ..TxConfig::default()
    };
    let mut layer = TransactionLayer::new(cfg.clone());
    let now = Instant::now();
    let flow = udp("192.0.2.1:5060");
    assert_eq!(
        layer.send_request(now, request(Method::Options, "v", 1), flow),
        Err(TxError::NoSentBy(Transport::Udp))
    );
    layer.set_sent_by(Transport::Udp, SentBy::new("192.0.2.100", 5060));
    assert_eq!(
        layer.send_request(now, request(Method::Ack, "v", 1), flow),
        Err(TxError::AckInTransaction)
    );
    let mut mismatched = request(Method::Options, "v", 1);
    mismatched.headers.set(HeaderName::CSeq, "1 INVITE");
    assert!(matches!(
        layer.send_request(now, mismatched, flow),
        Err(TxError::InvalidRequest(_))
    ));
    let tx = layer
        .send_request(now, request(Method::Options, "v", 1), flow)
        .unwrap();
    let sent = layer.client_request(tx).unwrap().clone();
    let via = sent.headers.top_via().unwrap();
    assert_eq!(via.transport, "UDP");
    assert_eq!(
        via.to_string().split(';').next(),
        Some("SIP/2.0/UDP 192.0.2.100:5060")
    );
    assert!(via.branch().unwrap().starts_with("z9hG4bK"));
    assert_eq!(via.rport(), Some(None));
    assert_eq!(
        sent.headers.get_str(&HeaderName::UserAgent),
        Some("Tandem/test")
    );
    let t = layer.poll_transmit().unwrap();
    assert_eq!(t.flow, flow);
    assert_eq!(t.data, sent.to_bytes());
    // Same seed, same branches: runs are reproducible.
    let mut twin = TransactionLayer::new(cfg);
    twin.set_sent_by(Transport::Udp, SentBy::new("192.0.2.100", 5060));
    let tx2 = twin
        .send_request(now, request(Method::Options, "v", 1), flow)
        .unwrap();
    assert_eq!(
        twin.client_request(tx2)
            .unwrap()
            .headers
            .top_via()
            .unwrap()
            .branch(),
        via.branch()
    );
}

#[test]
fn transport_error_ends_transactions_on_that_flow() {
    let mut pair = Pair::new(Transport::Tcp, NetConfig::default());
    let inv = pair.send_request(Side::A, request(Method::Invite, "terr", 1));
    let other_flow = Flow::new(Transport::Tcp, "192.0.2.50:5060".parse().unwrap());
    let now = pair.now;
    let other = pair
        .a
        .layer
        .send_request(now, request(Method::Options, "terr2", 1), other_flow)
        .unwrap();
    let flow = pair.flow_to_peer(Side::A);
    pair.a.layer.transport_error(now, flow);
    pair.drain();
    let events: Vec<TxEvent> = events_of(&pair, Side::A, inv)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert!(matches!(events[0], TxEvent::TransportError { .. }));
    assert!(matches!(events[1], TxEvent::Terminated { .. }));
    assert_eq!(pair.a.layer.len(), 1);
    assert!(pair.a.layer.client_request(other).is_some());
}

#[test]
fn response_status_and_unknown_tx_are_checked() {
    let mut layer = server_layer(TxConfig::default());
    let now = Instant::now();
    let src = udp("192.0.2.1:5060");
    layer.handle_receive(now, raw_invite("z9hG4bKst", "st"), src);
    let (tx, req) = take_request(&mut layer);
    let mut r = response(&req, 200);
    r.status = 99;
    assert_eq!(
        layer.send_response(now, tx, r),
        Err(TxError::InvalidStatus(99))
    );
    assert_eq!(
        layer.send_response(now, TxId(4242), response(&req, 200)),
        Err(TxError::UnknownTransaction(TxId(4242)))
    );
}

#[test]
fn degenerate_timer_values_are_clamped() {
    let mut layer = TransactionLayer::new(TxConfig {
        t1: Duration::ZERO,
        t2: Duration::ZERO,
        t4: Duration::MAX,
        timer_100: Duration::MAX,
        ..TxConfig::default()
    });
    assert_eq!(layer.config().t1, MS);
    assert_eq!(layer.config().t2, MS);
    layer.set_sent_by(Transport::Udp, SentBy::new("192.0.2.100", 5060));
    let now = Instant::now();
    let tx = layer
        .send_request(
            now,
            request(Method::Options, "zero", 1),
            udp("192.0.2.1:5060"),
        )
        .unwrap();
    // Timer E every 1 ms, Timer F at 64 ms: a finite run, no busy loop.
    let mut t = now;
    while let Some(next) = layer.poll_timeout() {
        assert!(next > t);
        t = next;
        layer.handle_timeout(t);
    }
    assert_eq!(t - now, 64 * MS);
    assert_eq!(std::iter::from_fn(|| layer.poll_transmit()).count(), 64);
    assert!(
        std::iter::from_fn(|| layer.poll_event())
            .any(|e| matches!(e, TxEvent::Timeout { tx: x } if x == tx))
    );
}
