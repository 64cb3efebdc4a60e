//! ICE calls between two Tandem user agents through an in-process `tandem-lab` on loopback:
//! the selected path and audio both ways (host pairs, and relay-only through the lab's TURN
//! server), an ICE restart, and the fallback to plain RTP for a callee without ICE.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tandem_client_core::nat::ice::{IcePathInfo, IcePathKind, IcePolicy};
use tandem_client_core::types::DeviceSpec;
use tandem_client_core::{Call, CallEvent, MediaOptions};
use tandem_proto::sdp::SessionDescription;
use tandem_proto::sdp::ice::{CandidateType, MediaIce};

mod common;

use common::{Lab, Phone};

/// The lab with its TURN server relaying to loopback peers over plain UDP.
async fn start_lab() -> Lab {
    Lab::start_with(|config| {
        config.turn.allow_loopback_peers = true;
        config.turn.tls = false;
    })
    .await
}

fn tone(hz: f32) -> MediaOptions {
    MediaOptions {
        capture: DeviceSpec::Tone(hz),
        report_interval: Duration::from_millis(500),
        ..MediaOptions::default()
    }
}

async fn path(call: &mut Call) -> IcePathInfo {
    match common::wait_for(Duration::from_secs(20), call, |e| {
        matches!(e, CallEvent::IcePath(_))
    })
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
    let (ev, _) = common::wait_for(
        Duration::from_secs(20),
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
    let lab = start_lab().await;
    let alice = Phone::new(lab.account("alice")).await;
    let mut bob = Phone::new(lab.account("bob")).await;
    let mut out = alice.call("bob", tone(440.0)).await;
    let mut inn = bob.answer(tone(880.0)).await;

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
    let (_, before) = common::wait_for(Duration::from_secs(20), &mut out, |e| {
        matches!(e, CallEvent::IcePath(_))
    })
    .await;
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
    common::wait_for(Duration::from_secs(20), &mut out, |e| {
        matches!(e, CallEvent::Ended { .. })
    })
    .await;
}

#[tokio::test]
async fn relay_only_policy_sends_the_media_through_the_lab_turn_server() {
    let lab = start_lab().await;
    let mut account = lab.account("alice");
    account.turn = Some(lab.turn_config("alice"));
    account.ice_policy = IcePolicy::Relay;
    let alice = Phone::new(account).await;
    let mut bob = Phone::new(lab.account("bob")).await;
    let mut out = alice.call("bob", tone(440.0)).await;
    let mut inn = bob.answer(tone(880.0)).await;

    let pa = path(&mut out).await;
    let pb = path(&mut inn).await;
    assert_eq!(pa.path, IcePathKind::Relay, "{pa}");
    assert_eq!(pa.local_type, CandidateType::Relay);
    assert_eq!(pb.path, IcePathKind::Relay, "{pb}");
    assert_eq!(pb.remote_type, CandidateType::Relay);
    assert_eq!(pa.local.ip(), lab.turn().ip(), "relayed on the lab");
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
    common::wait_for(Duration::from_secs(20), &mut out, |e| {
        matches!(e, CallEvent::Ended { .. })
    })
    .await;
}

#[tokio::test]
async fn a_callee_without_ice_gets_plain_rtp() {
    let lab = start_lab().await;
    let alice = Phone::new(lab.account("alice")).await;
    let mut account = lab.account("bob");
    account.ice = false;
    let mut bob = Phone::new(account).await;
    let mut out = alice.call("bob", tone(440.0)).await;
    let mut inn = bob.answer(tone(880.0)).await;

    let (_, seen) = common::wait_for(Duration::from_secs(20), &mut out, |e| {
        matches!(e, CallEvent::IceOff(_))
    })
    .await;
    assert!(!seen.iter().any(|e| matches!(e, CallEvent::IcePath(_))));
    let answer = out.media().remote_sdp.expect("the answer");
    assert_eq!(MediaIce::from_sdp(&answer, 0).unwrap(), None);
    audio_flows(&mut out, 20).await;
    audio_flows(&mut inn, 20).await;
    out.hangup();
    common::wait_for(Duration::from_secs(20), &mut out, |e| {
        matches!(e, CallEvent::Ended { .. })
    })
    .await;
}

#[tokio::test]
async fn a_network_change_gathers_again_and_restarts_ice() {
    let lab = start_lab().await;
    let alice = Phone::new(lab.account("alice")).await;
    let mut bob = Phone::new(lab.account("bob")).await;
    let mut out = alice.call("bob", tone(440.0)).await;
    let mut inn = bob.answer(tone(880.0)).await;
    let first = path(&mut out).await;
    path(&mut inn).await;
    audio_flows(&mut inn, 10).await;
    let before = local_ice(&out);

    alice.ua.notify_network_change();
    let (_, seen) = common::wait_for(Duration::from_secs(20), &mut out, |e| {
        matches!(e, CallEvent::IcePath(_))
    })
    .await;
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
    common::wait_for(Duration::from_secs(20), &mut out, |e| {
        matches!(e, CallEvent::Ended { .. })
    })
    .await;
}
