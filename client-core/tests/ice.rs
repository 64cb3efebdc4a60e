//! ICE calls between two Tandem user agents through an in-process `tandem-lab` on loopback:
//! the selected path and audio both ways (host pairs, and relay-only through the lab's TURN
//! server), an ICE restart, and the fallback to plain RTP for a callee without ICE.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use tandem_client_core::nat::ice::{IcePathInfo, IcePathKind, IcePolicy};
use tandem_client_core::nat::turn::TurnConfig;
use tandem_client_core::types::{DeviceSpec, DnsConfig, Transport};
use tandem_client_core::{
    Account, AnswerOptions, Call, CallEvent, CallOptions, MediaOptions, Registration, UaConfig,
    UaEvent, UaEvents, UserAgent, parse_uri,
};
use tandem_labserver::ca::LabCa;
use tandem_labserver::server::LabServer;
use tandem_labserver::store::Store;
use tandem_proto::sdp::SessionDescription;
use tandem_proto::sdp::ice::{CandidateType, MediaIce};
use tokio::time::timeout;

#[path = "../../labserver/tests/lab_fixture/mod.rs"]
mod lab_fixture;

use lab_fixture::{DOMAIN, loopback_config};

/// An in-process lab (SIP on loopback UDP, STUN/TURN relaying to loopback peers).
struct Lab {
    server: Option<LabServer>,
    udp: SocketAddr,
    turn: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Lab {
    async fn start() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let mut config = loopback_config(dir.path(), false);
        config.turn.allow_loopback_peers = true;
        config.turn.tls = false;
        let store = Store::open_in(dir.path()).await.unwrap();
        for u in ["alice", "bob"] {
            store.add_user(u, DOMAIN, &format!("{u}pw")).await.unwrap();
        }
        let ca = LabCa::load_or_create(dir.path(), &[DOMAIN.to_string()]).unwrap();
        let server = LabServer::start(config, store, ca).await.unwrap();
        let udp = server.local_addr(Transport::Udp).unwrap();
        let turn = server
            .ready_line()
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("turn="))
            .expect("no turn= in the ready line")
            .parse()
            .unwrap();
        Lab {
            server: Some(server),
            udp,
            turn,
            _dir: dir,
        }
    }

    fn account(&self, user: &str) -> Account {
        let mut a = Account::new(user, DOMAIN);
        a.password = Some(format!("{user}pw"));
        a.proxy = Some(parse_uri(&format!("sip:{}", self.udp)).unwrap());
        a
    }

    fn turn_config(&self, user: &str) -> TurnConfig {
        TurnConfig::new(&format!("turn:{}", self.turn), user, format!("{user}pw")).unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Dropping the server stops its tasks with the test's runtime.
        self.server.take();
    }
}

struct Phone {
    ua: UserAgent,
    events: UaEvents,
    account: Account,
    _registration: Registration,
}

impl Phone {
    async fn new(account: Account) -> Phone {
        let config = UaConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            transport: Transport::Udp,
            dns: DnsConfig::Disabled,
            ..UaConfig::default()
        };
        let (ua, events) = UserAgent::new(config).await.unwrap();
        let registration = ua.register(&account).await.unwrap();
        Phone {
            ua,
            events,
            account,
            _registration: registration,
        }
    }

    async fn call(&self, user: &str) -> Call {
        let target = parse_uri(&format!("sip:{user}@{DOMAIN}")).unwrap();
        let options = CallOptions {
            media: tone(440.0),
            ..CallOptions::default()
        };
        self.ua.call(&self.account, target, options).await.unwrap()
    }

    async fn answer(&mut self) -> Call {
        let incoming = loop {
            match timeout(Duration::from_secs(10), self.events.next())
                .await
                .expect("no incoming call")
                .expect("UA events ended")
            {
                UaEvent::IncomingCall(c) => break c,
                _ => continue,
            }
        };
        incoming
            .accept_with(AnswerOptions {
                account: Some(self.account.clone()),
                media: tone(880.0),
            })
            .await
            .unwrap()
    }
}

fn tone(hz: f32) -> MediaOptions {
    MediaOptions {
        capture: DeviceSpec::Tone(hz),
        report_interval: Duration::from_millis(500),
        ..MediaOptions::default()
    }
}

/// Waits for the first event matching `pred`, returning it and what came before.
async fn wait_for(
    call: &mut Call,
    pred: impl Fn(&CallEvent) -> bool,
) -> (CallEvent, Vec<CallEvent>) {
    let mut seen = Vec::new();
    loop {
        let ev = timeout(Duration::from_secs(20), call.next_event())
            .await
            .unwrap_or_else(|_| panic!("timed out; events so far: {seen:?}"))
            .unwrap_or_else(|| panic!("call events ended; events so far: {seen:?}"));
        if pred(&ev) {
            return (ev, seen);
        }
        seen.push(ev);
    }
}

async fn path(call: &mut Call) -> IcePathInfo {
    match wait_for(call, |e| matches!(e, CallEvent::IcePath(_)))
        .await
        .0
    {
        CallEvent::IcePath(p) => p,
        _ => unreachable!(),
    }
}

/// Waits until the call has received `more` RTP packets beyond `from`.
async fn audio_flows(call: &mut Call, more: u64) -> u64 {
    let start = call.quality().packets_received;
    let (ev, _) = wait_for(
        call,
        |e| matches!(e, CallEvent::Quality(q) if q.packets_received >= start + more),
    )
    .await;
    match ev {
        CallEvent::Quality(q) => q.packets_received,
        _ => unreachable!(),
    }
}

fn local_ice(call: &Call) -> MediaIce {
    let sdp: SessionDescription = call.media().local_sdp.expect("our SDP");
    MediaIce::from_sdp(&sdp, 0)
        .unwrap()
        .expect("our SDP carries ICE")
}

#[tokio::test]
async fn ice_call_through_the_lab_takes_a_direct_path_and_restarts() {
    let lab = Lab::start().await;
    let alice = Phone::new(lab.account("alice")).await;
    let mut bob = Phone::new(lab.account("bob")).await;
    let mut out = alice.call("bob").await;
    let mut inn = bob.answer().await;

    let pa = path(&mut out).await;
    let pb = path(&mut inn).await;
    assert_eq!(pa.path, IcePathKind::Direct, "{pa}");
    assert_eq!(pa.local_type, CandidateType::Host);
    assert_eq!(pb.remote_type, CandidateType::Host);
    assert_eq!(pa.remote, pb.local, "{pa} / {pb}");
    assert_eq!(pa.local, pb.remote, "{pa} / {pb}");
    // Our SDP: host candidates only (no STUN/TURN configured), the default in c=/m=.
    let ours = local_ice(&out);
    assert!(ours.end_of_candidates);
    assert!(ours.candidates.iter().all(|c| c.typ == CandidateType::Host));
    assert!(ours.has_default_candidate(out.media().local_rtp));
    audio_flows(&mut out, 20).await;
    audio_flows(&mut inn, 20).await;

    // A restart: new credentials in a re-INVITE, a path again on both sides, audio goes on.
    let ufrag = ours.ufrag.clone();
    out.ice_restart().await.unwrap();
    let (_, before) = wait_for(&mut out, |e| matches!(e, CallEvent::IcePath(_))).await;
    assert!(
        before
            .iter()
            .any(|e| matches!(e, CallEvent::IceRestart(r) if r == "requested")),
        "{before:?}"
    );
    assert_ne!(local_ice(&out).ufrag, ufrag, "new credentials");
    path(&mut inn).await;
    audio_flows(&mut out, 20).await;
    audio_flows(&mut inn, 20).await;
    out.hangup();
    wait_for(&mut out, |e| matches!(e, CallEvent::Ended { .. })).await;
}

#[tokio::test]
async fn relay_only_policy_sends_the_media_through_the_lab_turn_server() {
    let lab = Lab::start().await;
    let mut account = lab.account("alice");
    account.turn = Some(lab.turn_config("alice"));
    account.ice_policy = IcePolicy::Relay;
    let alice = Phone::new(account).await;
    let mut bob = Phone::new(lab.account("bob")).await;
    let mut out = alice.call("bob").await;
    let mut inn = bob.answer().await;

    let pa = path(&mut out).await;
    let pb = path(&mut inn).await;
    assert_eq!(pa.path, IcePathKind::Relay, "{pa}");
    assert_eq!(pa.local_type, CandidateType::Relay);
    assert_eq!(pb.path, IcePathKind::Relay, "{pb}");
    assert_eq!(pb.remote_type, CandidateType::Relay);
    assert_eq!(pa.local.ip(), lab.turn.ip(), "relayed on the lab");
    // Only the relay candidate was offered, and it is the default.
    let ours = local_ice(&out);
    assert_eq!(ours.candidates.len(), 1, "{ours:?}");
    assert_eq!(ours.candidates[0].typ, CandidateType::Relay);
    assert_eq!(
        Some(out.media().local_rtp),
        ours.candidates[0].socket_addr()
    );
    audio_flows(&mut out, 20).await;
    audio_flows(&mut inn, 20).await;
    out.hangup();
    wait_for(&mut out, |e| matches!(e, CallEvent::Ended { .. })).await;
}

#[tokio::test]
async fn a_callee_without_ice_gets_plain_rtp() {
    let lab = Lab::start().await;
    let alice = Phone::new(lab.account("alice")).await;
    let mut account = lab.account("bob");
    account.ice = false;
    let mut bob = Phone::new(account).await;
    let mut out = alice.call("bob").await;
    let mut inn = bob.answer().await;

    let (_, seen) = wait_for(&mut out, |e| matches!(e, CallEvent::IceOff(_))).await;
    assert!(!seen.iter().any(|e| matches!(e, CallEvent::IcePath(_))));
    let answer = out.media().remote_sdp.expect("the answer");
    assert_eq!(MediaIce::from_sdp(&answer, 0).unwrap(), None);
    audio_flows(&mut out, 20).await;
    audio_flows(&mut inn, 20).await;
    out.hangup();
    wait_for(&mut out, |e| matches!(e, CallEvent::Ended { .. })).await;
}

#[tokio::test]
async fn a_network_change_gathers_again_and_restarts_ice() {
    let lab = Lab::start().await;
    let alice = Phone::new(lab.account("alice")).await;
    let mut bob = Phone::new(lab.account("bob")).await;
    let mut out = alice.call("bob").await;
    let mut inn = bob.answer().await;
    let first = path(&mut out).await;
    path(&mut inn).await;
    audio_flows(&mut inn, 10).await;
    let before = local_ice(&out);

    alice.ua.notify_network_change();
    let (_, seen) = wait_for(&mut out, |e| matches!(e, CallEvent::IcePath(_))).await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, CallEvent::IceRestart(r) if r == "network-changed")),
        "{seen:?}"
    );
    let after = local_ice(&out);
    assert_ne!(after.ufrag, before.ufrag);
    let old_ports: Vec<u16> = before.candidates.iter().map(|c| c.port).collect();
    assert!(
        after
            .candidates
            .iter()
            .all(|c| !old_ports.contains(&c.port)),
        "new sockets: {before:?} -> {after:?}"
    );
    let again = path(&mut inn).await;
    assert_ne!(
        again.remote, first.local,
        "the peer now talks to the new socket"
    );
    // The running media sessions moved to the new path.
    audio_flows(&mut out, 20).await;
    audio_flows(&mut inn, 20).await;
    out.hangup();
    wait_for(&mut out, |e| matches!(e, CallEvent::Ended { .. })).await;
}
