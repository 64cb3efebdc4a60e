//! NAT acceptance (issue 4): nat_relay — `tandem-cli` (ICE on) behind one cone NAT and baresip (no ICE module)
//! behind another, registered at the lab: the lab anchors the media on its relay (the callee or caller does not
//! do ICE and both are NATed), strips the ICE attributes, and the tone passes both ways, in both directions of
//! call setup. Both ends' media peer is the relay's address, never the other phone's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure here is a test failure

use std::net::IpAddr;

use tandem_tests::nat::{LAB_V4, NatKind, Topology};
use tandem_tests::{Baresip, BaresipOptions, BaresipSource};

use crate::audio_baresip::baresip_recording;
use crate::audio_common::{TONE_CALLEE, TONE_CALLER, lines, tone_file};
use crate::common::{assert_exits_ok, ok, secs};
use crate::nat_calls::{Callee, DOMAIN, NatLab, TALK_SECS, assert_heard, media_remote, place_call};

/// The lab, tandem-cli's host behind router 1 and baresip behind router 2 (registered, auto-answering when
/// `auto_answer`).
fn setup(name: &str, auto_answer: bool) -> (NatLab, Baresip) {
    let mut nat = NatLab::start(
        name,
        Topology::builder()
            .router(NatKind::Cone, 1)
            .router(NatKind::Cone, 1),
        &["alice", "bob"],
        "",
        true,
    );
    let relay = nat.relay_ips();
    assert!(
        relay.contains(&IpAddr::V4(LAB_V4)),
        "the lab's ready line advertises no IPv4 relay at {LAB_V4}: {relay:?}"
    );
    let host = nat.topo.host(1, 0).clone();
    let mut opts = BaresipOptions::new("bob", DOMAIN, "bobpw", nat.sip_udp(host.ip()));
    opts.netns = Some(host.ns().to_string());
    opts.listen_ip = Some(host.ip());
    opts.auto_answer = auto_answer;
    // baresip plays the tone of its role from a WAV file (the caller's when it calls).
    let tone = if auto_answer {
        TONE_CALLEE
    } else {
        TONE_CALLER
    };
    opts.source = BaresipSource::File(tone_file(nat.dir.path(), tone));
    opts.record = true;
    opts.audio_codecs = Some("PCMU/8000/1".into());
    let mut bob = ok(Baresip::start(opts, nat.dir.path()));
    ok(bob.wait_registered(secs(15)));
    (nat, bob)
}

/// Asserts `stdout` (tandem-cli's) shows a call through the relay: ICE was turned off because the (rewritten)
/// peer SDP has none, and media flows with the lab's relay address.
#[track_caller]
fn assert_relayed(stdout: &str, who: &str) {
    let off: Vec<&str> = lines(stdout, "ice")
        .into_iter()
        .filter(|l| l.split_whitespace().nth(1) == Some("off"))
        .collect();
    assert!(
        off.iter().any(|l| l.contains("reason=peer-without-ice")),
        "{who}: no `ice off reason=peer-without-ice` (the relay strips ICE):\n{stdout}"
    );
    assert_eq!(
        media_remote(stdout, who),
        IpAddr::V4(LAB_V4),
        "{who}: media does not go to the lab's relay:\n{stdout}"
    );
}

#[test]
fn nat_relay_cli_calls_baresip() {
    let (mut nat, mut bob) = setup("nat-relay-cli-calls", true);
    let alice = nat.phone(nat.topo.host(0, 0), "alice");
    let stun = format!("--stun={}", nat.turn());
    let (call, heard) = place_call(&nat, &alice, &format!("sip:bob@{DOMAIN}"), &[&stun], "1");
    ok(bob.wait_event_type("CALL_CLOSED", secs(10)));
    assert_relayed(&call.stdout, "tandem-cli (caller)");
    let bob_heard = baresip_recording(&bob, 1);
    assert_heard(
        &heard,
        &bob_heard,
        "tandem-cli calls baresip through the relay",
    );
    nat.assert_relayed_calls(1);
    assert!(bob.is_running());
}

#[test]
fn nat_relay_baresip_calls_cli() {
    let (mut nat, mut bob) = setup("nat-relay-baresip-calls", false);
    let alice = nat.phone(nat.topo.host(0, 0), "alice");
    let stun = format!("--stun={}", nat.turn());
    let mut callee = Callee::start(&nat, &alice, 1, &[&stun]);
    ok(bob.command("dial", &format!("sip:alice@{DOMAIN}"), secs(5)));
    ok(bob.wait_event_type("CALL_ESTABLISHED", secs(20)));
    std::thread::sleep(secs(TALK_SECS));
    ok(bob.command("hangup", "", secs(5)));
    ok(bob.wait_event_type("CALL_CLOSED", secs(10)));
    let alice_heard = callee.call_done(1);
    assert_exits_ok(&mut callee.child, secs(15), "tandem-cli answer");
    assert_relayed(&callee.child.stdout(), "tandem-cli (callee)");
    let bob_heard = baresip_recording(&bob, 1);
    assert_heard(
        &bob_heard,
        &alice_heard,
        "baresip calls tandem-cli through the relay",
    );
    nat.assert_relayed_calls(1);
}
