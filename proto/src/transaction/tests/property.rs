//! Randomized runs over many seeds: under loss, duplication and reordering every
//! transaction terminates and each client transaction gives its TU exactly one outcome.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{NetConfig, Pair, Side, request, response};
use crate::msg::{HeaderName, Message, Method, Request, Response};
use crate::transaction::{TxConfig, TxEvent, TxId, ack_for};
use crate::{Flow, Transport};

/// Something B's TU or A's TU does at a given time.
#[derive(Debug, Clone)]
enum Action {
    /// B answers server tx with the status.
    Respond(TxId, u16),
    /// B's UAS core re-sends a 2xx (§13.3.1.4) with the given next interval.
    Resend2xx(TxId, Duration),
    /// A cancels an INVITE client tx.
    Cancel(TxId),
}

/// What A's TU saw for one client transaction.
#[derive(Debug, Default)]
struct ClientRecord {
    method: Option<Method>,
    finals: Vec<u16>,
    timeouts: usize,
    transport_errors: usize,
    terminated: usize,
    events_after_terminated: usize,
}

fn run_seed(seed: u64, stats: &mut Stats) {
    let mut rng = StdRng::seed_from_u64(seed);
    let transport = match rng.random_range(0..5) {
        0 => Transport::Tcp,
        _ => Transport::Udp,
    };
    // Most runs see moderate impairment; one in six a network bad enough for timeouts.
    let loss = if rng.random_range(0..6) == 0 {
        rng.random_range(0.5..0.9)
    } else {
        rng.random_range(0.0..0.3)
    };
    let net = NetConfig {
        loss,
        duplicate: rng.random_range(0.0..0.1),
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(rng.random_range(1..150)),
        seed: seed.wrapping_mul(31).wrapping_add(7),
        ..NetConfig::default()
    };
    let mut pair = Pair::with_configs(
        transport,
        net,
        TxConfig {
            seed: seed.wrapping_add(1000),
            ..TxConfig::default()
        },
        TxConfig {
            seed: seed.wrapping_add(2000),
            ..TxConfig::default()
        },
    );

    let mut clients: BTreeMap<TxId, ClientRecord> = BTreeMap::new();
    let mut actions: Vec<(Instant, u64, Action)> = Vec::new();
    let mut order = 0u64;
    let mut schedule = |actions: &mut Vec<(Instant, u64, Action)>, at: Instant, a: Action| {
        order += 1;
        actions.push((at, order, a));
    };

    // A's requests, spread over the first seconds.
    let count = rng.random_range(1..8);
    let mut starts = Vec::new();
    for i in 0..count {
        let method = match rng.random_range(0..4) {
            0 | 1 => Method::Invite,
            2 => Method::Options,
            _ => Method::Register,
        };
        let at = pair.start + Duration::from_millis(rng.random_range(0..3000));
        starts.push((at, request(method, &format!("prop-{seed}-{i}"), 1)));
    }
    starts.sort_by_key(|(at, _)| *at);
    let mut starts = starts.into_iter().peekable();

    // B's state: server requests and which have a final answer.
    let mut server_requests: HashMap<TxId, Request> = HashMap::new();
    let mut server_final: HashMap<TxId, u16> = HashMap::new();
    let mut acked: HashMap<String, bool> = HashMap::new();
    let mut b_terminated: HashMap<TxId, usize> = HashMap::new();

    let mut strays = 0usize;
    let end = pair.start + Duration::from_secs(300);
    loop {
        let next_action = actions.iter().map(|(at, _, _)| *at).min();
        let next_start = starts.peek().map(|(at, _)| *at);
        let limit = [next_action, next_start]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(end)
            .min(end);
        let progressed = pair.step(limit);

        // A's TU actions due now.
        while starts.peek().is_some_and(|(at, _)| *at <= pair.now) {
            let Some((_, req)) = starts.next() else { break };
            let method = req.method.clone();
            let tx = pair.send_request(Side::A, req);
            clients.insert(
                tx,
                ClientRecord {
                    method: Some(method.clone()),
                    ..ClientRecord::default()
                },
            );
            if method == Method::Invite && rng.random_bool(0.3) {
                let at = pair.now + Duration::from_millis(rng.random_range(0..2500));
                schedule(&mut actions, at, Action::Cancel(tx));
            }
        }
        let now = pair.now;
        actions.sort_by_key(|(at, o, _)| (*at, *o));
        let due: Vec<Action> = actions
            .iter()
            .filter(|(at, _, _)| *at <= now)
            .map(|(_, _, a)| a.clone())
            .collect();
        actions.retain(|(at, _, _)| *at > now);
        for action in due {
            match action {
                Action::Respond(tx, status) => {
                    let Some(req) = server_requests.get(&tx) else {
                        continue;
                    };
                    if status >= 200 && server_final.contains_key(&tx) {
                        continue;
                    }
                    let r = response(req, status);
                    if pair.b.layer.send_response(now, tx, r).is_ok() && status >= 200 {
                        server_final.insert(tx, status);
                        if req.method == Method::Invite && status < 300 {
                            schedule(
                                &mut actions,
                                now + pair.b.layer.config().t1,
                                Action::Resend2xx(tx, pair.b.layer.config().t1 * 2),
                            );
                        }
                    }
                }
                Action::Resend2xx(tx, interval) => {
                    let Some(req) = server_requests.get(&tx) else {
                        continue;
                    };
                    let call_id = req.headers.call_id().unwrap().to_owned();
                    if acked.get(&call_id).copied().unwrap_or(false) {
                        continue;
                    }
                    let r = response(req, 200);
                    if pair.b.layer.send_response(now, tx, r).is_ok() {
                        let t2 = pair.b.layer.config().t2;
                        schedule(
                            &mut actions,
                            now + interval,
                            Action::Resend2xx(tx, (interval * 2).min(t2)),
                        );
                    }
                }
                Action::Cancel(tx) => {
                    // Refused once the INVITE has its final response: that is fine.
                    if let Ok(cancel) = pair.a.layer.cancel(now, tx) {
                        clients.insert(
                            cancel,
                            ClientRecord {
                                method: Some(Method::Cancel),
                                ..ClientRecord::default()
                            },
                        );
                    }
                }
            }
        }
        pair.drain();

        // B's TU.
        for event in pair.b.take_events() {
            match event {
                TxEvent::Request { tx, request, .. } => {
                    let mut at = now;
                    if request.method == Method::Invite && rng.random_bool(0.5) {
                        at += Duration::from_millis(rng.random_range(0..400));
                        schedule(&mut actions, at, Action::Respond(tx, 180));
                    }
                    at += Duration::from_millis(rng.random_range(0..3000));
                    let status = [200, 200, 202, 404, 486, 500, 603][rng.random_range(0..7)];
                    schedule(&mut actions, at, Action::Respond(tx, status));
                    server_requests.insert(tx, request);
                }
                TxEvent::Cancel {
                    tx,
                    invite_tx,
                    request,
                    ..
                } => {
                    let status = if invite_tx.is_some() { 200 } else { 481 };
                    schedule(&mut actions, now, Action::Respond(tx, status));
                    if let Some(invite) = invite_tx {
                        schedule(&mut actions, now, Action::Respond(invite, 487));
                    }
                    server_requests.insert(tx, request);
                }
                TxEvent::Ack { request, .. } => {
                    let call_id = request.headers.call_id().unwrap().to_owned();
                    acked.insert(call_id, true);
                }
                TxEvent::Terminated { tx } => *b_terminated.entry(tx).or_default() += 1,
                _ => {}
            }
        }

        // A's TU.
        for event in pair.a.take_events() {
            let tx = match &event {
                TxEvent::Response { tx, .. }
                | TxEvent::Timeout { tx }
                | TxEvent::TransportError { tx }
                | TxEvent::Terminated { tx } => *tx,
                TxEvent::StrayResponse { .. } => {
                    // A response after its transaction ended (a 2xx after Timer M, a
                    // final after Timer B gave up): nothing for the transactions.
                    strays += 1;
                    continue;
                }
                other => panic!("seed {seed}: unexpected event at A: {other:?}"),
            };
            let record = clients.get_mut(&tx).expect("event for a known client tx");
            if record.terminated > 0 {
                record.events_after_terminated += 1;
            }
            match event {
                TxEvent::Response { response, .. } if response.status >= 200 => {
                    record.finals.push(response.status);
                    if record.method == Some(Method::Invite) && response.status < 300 {
                        let invite = pair.a.layer.client_request(tx).cloned();
                        if let Some(invite) = invite {
                            send_2xx_ack(&mut pair, &invite, &response);
                        }
                    }
                }
                TxEvent::Timeout { .. } => record.timeouts += 1,
                TxEvent::TransportError { .. } => record.transport_errors += 1,
                TxEvent::Terminated { .. } => record.terminated += 1,
                _ => {}
            }
        }

        if !progressed
            && actions.is_empty()
            && starts.peek().is_none()
            && pair.next_wakeup().is_none()
        {
            break;
        }
        assert!(pair.now < end, "seed {seed}: still running after 300 s");
    }

    assert!(
        pair.a.layer.is_empty(),
        "seed {seed}: A has {} left",
        pair.a.layer.len()
    );
    assert!(
        pair.b.layer.is_empty(),
        "seed {seed}: B has {} left",
        pair.b.layer.len()
    );
    for (tx, record) in &clients {
        let ctx = format!("seed {seed} {tx} {record:?}");
        assert_eq!(record.terminated, 1, "{ctx}");
        assert_eq!(record.events_after_terminated, 0, "{ctx}");
        assert_eq!(record.transport_errors, 0, "{ctx}");
        let held_cancel_dropped = record.method == Some(Method::Cancel)
            && record.finals.is_empty()
            && record.timeouts == 0;
        let outcome = match (record.finals.first(), record.timeouts) {
            (Some(&first), 0)
                if (200..300).contains(&first) && record.method == Some(Method::Invite) =>
            {
                // RFC 6026: every 2xx is passed up, but nothing else after it.
                record.finals.iter().all(|s| (200..300).contains(s))
            }
            (Some(_), 0) => record.finals.len() == 1,
            (None, 1) => true,
            (None, 0) => held_cancel_dropped,
            _ => false,
        };
        assert!(outcome, "{ctx}");
    }
    for (tx, n) in &b_terminated {
        assert_eq!(*n, 1, "seed {seed}: B {tx} terminated {n} times");
    }
    assert_eq!(b_terminated.len(), server_requests.len(), "seed {seed}");
    if loss < 0.3 {
        // Strays need a transaction that gave up, which moderate loss never causes.
        assert_eq!(strays, 0, "seed {seed}");
    }
    stats.runs += 1;
    for r in clients.values() {
        stats.timeouts += r.timeouts;
        stats.finals += r.finals.len().min(1);
    }
}

/// Totals over all runs, to check that the runs exercised both outcomes.
#[derive(Debug, Default)]
struct Stats {
    runs: usize,
    finals: usize,
    timeouts: usize,
}

/// A's UA core acknowledges a 2xx: an ACK in its own transaction (new branch), sent
/// statelessly.
fn send_2xx_ack(pair: &mut Pair, invite: &Request, ok: &Response) {
    let mut ack = ack_for(invite, ok);
    let branch = format!("z9hG4bKack{}", pair.a.sent.len());
    ack.headers.remove(&HeaderName::Via);
    ack.headers.push_front(
        HeaderName::Via,
        format!(
            "SIP/2.0/{} {};branch={branch}",
            pair.transport.via_token(),
            pair.a.addr
        ),
    );
    let flow: Flow = pair.flow_to_peer(Side::A);
    pair.a.layer.send_stateless(Message::Request(ack), flow);
    pair.drain();
}

#[test]
fn every_transaction_terminates_with_exactly_one_outcome() {
    let mut stats = Stats::default();
    for seed in 0..300 {
        run_seed(seed, &mut stats);
    }
    assert_eq!(stats.runs, 300);
    assert!(stats.finals > 1000, "{stats:?}");
    assert!(stats.timeouts > 10, "{stats:?}");
}
