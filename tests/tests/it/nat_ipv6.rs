//! NAT acceptance (issue 4): nat_ipv6 — the IPv6-only host's `tandem-cli` calls an IPv4-only `tandem-cli` behind
//! a NAT through the lab: the families differ, so the lab anchors the media on its relay, which faces the caller
//! over IPv6 and the callee over IPv4. Tone both ways.
//!
//! Both ends run ICE (the default): the IPv6-only caller's offer has no IPv4 candidate, so the lab anchors the
//! call even though the callee registered `+sip.ice`, and strips ICE so both ends send plain RTP to the relay.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure here is a test failure

use std::net::IpAddr;

use tandem_tests::nat::{LAB_V4, LAB_V6, NatKind, Topology};

use crate::nat_calls::{Callee, DOMAIN, NatLab, assert_heard, media_remote, place_call};

use crate::common::{assert_exits_ok, secs};

#[test]
fn nat_ipv6_only_calls_ipv4_behind_nat_through_relay() {
    let mut nat = NatLab::start(
        "nat-ipv6",
        Topology::builder().router(NatKind::Cone, 1).ipv6_host(),
        &["alice", "bob"],
        "",
        false,
    );
    let relay = nat.relay_ips();
    assert!(
        relay.contains(&IpAddr::V4(LAB_V4)) && relay.contains(&IpAddr::V6(LAB_V6)),
        "the lab's ready line should advertise a relay on {LAB_V4} and {LAB_V6}: {relay:?}"
    );
    let v6 = nat
        .topo
        .ipv6_host()
        .expect("built with the IPv6 host")
        .clone();
    let alice = nat.phone(&v6, "alice");
    let bob = nat.phone(nat.topo.host(0, 0), "bob");
    let stun = format!("--stun={}", nat.turn());
    let mut callee = Callee::start(&nat, &bob, 1, &[&stun]);
    let (call, heard) = place_call(&nat, &alice, &format!("sip:bob@{DOMAIN}"), &[], "v6");
    let bob_heard = callee.call_done(1);
    assert_exits_ok(&mut callee.child, secs(15), "tandem-cli answer (IPv4)");
    let bob_out = callee.child.stdout();
    assert_eq!(
        media_remote(&call.stdout, "IPv6 caller"),
        IpAddr::V6(LAB_V6),
        "the IPv6 caller's media goes to the relay's IPv6 address:\n{}",
        call.dump()
    );
    assert_eq!(
        media_remote(&bob_out, "IPv4 callee"),
        IpAddr::V4(LAB_V4),
        "the IPv4 callee's media goes to the relay's IPv4 address:\n{bob_out}"
    );
    assert_heard(
        &heard,
        &bob_heard,
        "IPv6-only ↔ IPv4-only through the relay",
    );
    nat.assert_relayed_calls(1);
}
