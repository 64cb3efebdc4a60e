//! The acceptance test of store-and-forward against the real `tandem-lab` binary: 100 MESSAGEs
//! to an unregistered user, `kill -9` of the server halfway through the submission, restart on
//! the same data directory, the rest submitted, then the user registers and answers 200 to
//! each: exactly 100 delivered, in submission order, no duplicates (identified by body). And
//! the same with the kill in the middle of delivery, where the guarantee is exactly-once for a
//! client that drops repeated `Tandem-Stored-Id`s (at most one repeat otherwise).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "im_util/lab_proc.rs"]
mod lab_proc;
mod sip_util;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use lab_proc::{ChildGuard, spawn_until_ready};

use bytes::Bytes;
use sip_util::{DOMAIN, Ua, answer, rand_token};
use tandem_proto::msg::{HeaderName, Message, Method, Request, Response};

const BIN: &str = env!("CARGO_BIN_EXE_tandem-lab");
const TOTAL: usize = 100;
const KILL_AFTER: usize = 50;

fn lab_cmd(data: &Path, config: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env_remove("TANDEM_LAB_CONFIG")
        .env_remove("TANDEM_LAB_PASSWORD")
        .env("RUST_LOG", "warn");
    cmd
}

/// Starts `tandem-lab serve`; returns the guard and its UDP address from the ready line.
fn serve(data: &Path, config: &Path) -> (ChildGuard, SocketAddr) {
    let mut cmd = lab_cmd(data, config);
    cmd.arg("serve").stderr(Stdio::inherit());
    let (guard, lines) = spawn_until_ready(cmd, Duration::from_secs(60));
    let udp = lines
        .last()
        .and_then(|line| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix("udp="))
        })
        .expect("udp= in the ready line")
        .parse()
        .unwrap();
    (guard, udp)
}

/// A temporary directory with a UDP-only configuration (no demo users) and the users alice
/// and bob added with `tandem-lab user add`; returns it with the data dir and config paths.
fn lab_dir() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("lab.toml");
    std::fs::write(
        &config,
        "demo_users = false\n[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = []\ntls = []\n",
    )
    .unwrap();
    for (user, pw) in [("alice", "alicepw"), ("bob", "bobpw")] {
        let out = lab_cmd(&data, &config)
            .args(["user", "add", user, "--password", pw])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    (dir, data, config)
}

/// Answers `req` (a MESSAGE from `from`) with 200 at `bob`; true when its transaction is new
/// (false for a retransmission of one already answered).
async fn answer_new(
    bob: &Ua,
    req: &Request,
    from: SocketAddr,
    answered: &mut HashMap<String, ()>,
) -> bool {
    bob.send_to(
        &Message::Response(answer(req, 200, "bobtag", &bob.contact())),
        from,
    )
    .await;
    let branch = req.headers.top_via().unwrap().branch().unwrap().to_string();
    answered.insert(branch, ()).is_none()
}

/// The `Tandem-Stored-Id` and body of a stored MESSAGE.
fn stored(req: &Request) -> (String, String) {
    let id = req
        .headers
        .get_str(&HeaderName::parse(tandem_labserver::im::STORED_ID_HEADER))
        .expect("stored messages carry their id")
        .to_owned();
    (id, String::from_utf8(req.body.to_vec()).unwrap())
}

/// MESSAGE number `n` from alice to bob (its own Call-ID and tag).
fn message(ua: &Ua, n: usize) -> Request {
    let text = format!("message {n:03}");
    let raw = format!(
        "MESSAGE sip:bob@{DOMAIN} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@{DOMAIN}>;tag={}\r\nTo: <sip:bob@{DOMAIN}>\r\nCall-ID: {}@im-kill\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
        ua.via(),
        rand_token(),
        rand_token(),
        text.len()
    );
    Request::parse(Bytes::from(raw)).unwrap()
}

/// Submits `request` (answering the 407) and returns the final response.
async fn submit(ua: &mut Ua, request: &Request) -> Response {
    ua.send(&Message::Request(request.clone())).await;
    let r = ua.response_for(Method::Message).await;
    if r.status != 407 {
        return r;
    }
    let authed = ua.authorize(request, &r, None);
    ua.send(&Message::Request(authed)).await;
    ua.response_for(Method::Message).await
}

/// `request` with the CSeq of `original` (credentials do not cover it).
fn with_cseq_of(mut request: Request, original: &Request) -> Request {
    let cseq = original.headers.get(&HeaderName::CSeq).unwrap().clone();
    request.headers.set(HeaderName::CSeq, cseq);
    request
}

/// Sends `request` again in a new transaction (new Via branch) with the same From tag, Call-ID
/// and CSeq, as a sender does that never saw an answer; re-authenticates if challenged.
async fn resubmit(ua: &mut Ua, request: &Request) -> Response {
    let mut again = request.clone();
    again.headers.set(HeaderName::Via, ua.via());
    ua.send(&Message::Request(again.clone())).await;
    let r = ua.response_for(Method::Message).await;
    if r.status != 407 {
        return r;
    }
    let authed = with_cseq_of(ua.authorize(&again, &r, None), &again);
    ua.send(&Message::Request(authed)).await;
    ua.response_for(Method::Message).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_messages_survive_kill_9_exactly_once_in_order() {
    let (_dir, data, config) = lab_dir();

    let (mut lab, udp) = serve(&data, &config);
    let mut alice = Ua::new("alice", "alicepw", udp).await;
    for n in 0..KILL_AFTER {
        let request = message(&alice, n);
        let r = submit(&mut alice, &request).await;
        assert_eq!(r.status, 202, "message {n}: {} {}", r.status, r.reason);
    }
    // The next submission is in flight when the server is killed: it may or may not have been
    // stored; the sender does not know and submits it again (same Call-ID, tag and CSeq).
    let first = message(&alice, KILL_AFTER);
    alice.send(&Message::Request(first.clone())).await;
    let challenge = alice.response_for(Method::Message).await;
    assert_eq!(challenge.status, 407);
    let in_flight = with_cseq_of(alice.authorize(&first, &challenge, None), &first);
    alice.send(&Message::Request(in_flight.clone())).await;
    lab.kill9();

    let (_lab, udp) = serve(&data, &config);
    let mut alice = Ua::new("alice", "alicepw", udp).await;
    let r = resubmit(&mut alice, &in_flight).await;
    assert_eq!(r.status, 202, "{} {}", r.status, r.reason);
    for n in KILL_AFTER + 1..TOTAL {
        let request = message(&alice, n);
        let r = submit(&mut alice, &request).await;
        assert_eq!(r.status, 202, "message {n}: {} {}", r.status, r.reason);
    }

    let mut bob = Ua::new("bob", "bobpw", udp).await;
    bob.register_self().await;
    let mut bodies: Vec<String> = Vec::new();
    let mut answered: HashMap<String, ()> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    // Collect until all arrived, then keep listening a little for duplicates.
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        if quiet_until.is_some_and(|q| now >= q) {
            break;
        }
        assert!(
            now < deadline,
            "only {} delivered: {bodies:?}",
            bodies.len()
        );
        let Some((msg, from)) = bob.recv_within(1.0).await else {
            continue;
        };
        let Message::Request(req) = msg else { continue };
        assert_eq!(req.method, Method::Message);
        if !answer_new(&bob, &req, from, &mut answered).await {
            continue; // a retransmission of a transaction already answered
        }
        bodies.push(String::from_utf8(req.body.to_vec()).unwrap());
        if bodies.len() == TOTAL && quiet_until.is_none() {
            quiet_until = Some(tokio::time::Instant::now() + Duration::from_secs(3));
        }
    }
    let expected: Vec<String> = (0..TOTAL).map(|n| format!("message {n:03}")).collect();
    assert_eq!(bodies, expected);
}

/// Receives MESSAGEs at `bob`, answering 200 to each, until `stop(unique)` says so, then until
/// the line has been quiet for `quiet`; returns every new transaction's (stored id, body) in
/// arrival order (retransmissions of an answered transaction are answered and skipped).
async fn collect(
    bob: &Ua,
    answered: &mut HashMap<String, ()>,
    got: &mut Vec<(String, String)>,
    stop: impl Fn(usize) -> bool,
    quiet: Duration,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        if quiet_until.is_some_and(|q| now >= q) {
            return;
        }
        assert!(now < deadline, "only {} delivered: {got:?}", got.len());
        let wait = quiet_until.map_or(1.0, |q| (q - now).as_secs_f64().max(0.01));
        let Some((Message::Request(req), from)) = bob.recv_within(wait).await else {
            continue;
        };
        assert_eq!(req.method, Method::Message);
        if !answer_new(bob, &req, from, answered).await {
            continue;
        }
        got.push(stored(&req));
        let unique: std::collections::HashSet<&String> = got.iter().map(|(id, _)| id).collect();
        if quiet_until.is_none() && stop(unique.len()) {
            if quiet.is_zero() {
                return;
            }
            quiet_until = Some(tokio::time::Instant::now() + quiet);
        }
    }
}

/// Registers `bob`, answering (and recording) MESSAGEs that arrive meanwhile.
async fn register_collecting(
    bob: &mut Ua,
    answered: &mut HashMap<String, ()>,
    got: &mut Vec<(String, String)>,
) {
    let contact = format!("<{}>", bob.contact());
    let mut request = bob.register_request(None, &[contact], Some(3600));
    bob.send(&Message::Request(request.clone())).await;
    loop {
        let (msg, from) = bob.recv_within(5.0).await.expect("REGISTER answered");
        match msg {
            Message::Response(r) if r.status == 401 => {
                request = bob.authorize(&request, &r, None);
                bob.send(&Message::Request(request.clone())).await;
            }
            Message::Response(r) if r.status == 200 => return,
            Message::Response(r) if r.status < 200 => {}
            Message::Response(r) => panic!("REGISTER: {} {}", r.status, r.reason),
            Message::Request(req) => {
                if answer_new(bob, &req, from, answered).await {
                    got.push(stored(&req));
                }
            }
        }
    }
}

/// Kill -9 in the middle of delivery: the message in flight may come again, but only with the
/// same Tandem-Stored-Id, so a client that drops repeated ids sees each message exactly once,
/// in order; without that, at most one duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_delivery_repeats_at_most_the_message_in_flight_with_its_id() {
    let (_dir, data, config) = lab_dir();
    let (mut lab, udp) = serve(&data, &config);
    let mut alice = Ua::new("alice", "alicepw", udp).await;
    for n in 0..TOTAL {
        let request = message(&alice, n);
        assert_eq!(submit(&mut alice, &request).await.status, 202);
    }
    let mut bob = Ua::new("bob", "bobpw", udp).await;
    bob.register_self().await;
    let mut answered = HashMap::new();
    let mut got = Vec::new();
    collect(
        &bob,
        &mut answered,
        &mut got,
        |n| n >= KILL_AFTER,
        Duration::ZERO,
    )
    .await;
    lab.kill9();

    // Bob registers again (his binding may be younger than the lab's write-behind interval, or
    // not: then delivery may resume before the REGISTER is answered, so MESSAGEs are taken too).
    let (_lab, udp) = serve(&data, &config);
    bob.server = udp;
    register_collecting(&mut bob, &mut answered, &mut got).await;
    collect(
        &bob,
        &mut answered,
        &mut got,
        |n| n >= TOTAL,
        Duration::from_secs(3),
    )
    .await;

    // Drop repeated ids (what a client does): exactly the 100, in order.
    let mut ids = std::collections::HashSet::new();
    let unique: Vec<&str> = got
        .iter()
        .filter(|(id, _)| ids.insert(id.clone()))
        .map(|(_, body)| body.as_str())
        .collect();
    let expected: Vec<String> = (0..TOTAL).map(|n| format!("message {n:03}")).collect();
    assert_eq!(unique, expected);
    // Only the message in flight at the kill may come again (with its id: dropped above).
    let repeats = got.len() - TOTAL;
    assert!(repeats <= 1, "{repeats} repeats: {got:?}");
}
