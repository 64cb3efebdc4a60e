//! NAT acceptance (issue 4): nat_keepalive — a `tandem-cli` behind a NAT whose router forgets an idle UDP mapping
//! after 30 s registers once (for an hour); 10 minutes later a call reaches it over its registration flow, which
//! only its keep-alives (RFC 5626 outbound: STUN on the lab's SIP port every Flow-Timer) kept open, and the call
//! has audio both ways. Then the router's mapping changes (new port range, conntrack flushed): within a few
//! keep-alive intervals the client sees the new XOR-MAPPED-ADDRESS and re-registers (`reason=mapping-changed`),
//! and a second call reaches it.
//!
//! This scenario takes more than 10 minutes, mostly asleep: it is declared first in the `it` binary (libtest
//! starts tests in name order) and `cargo xtask test` gives that binary one test thread more than the cores, so it
//! does not hold a thread the other scenarios need.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure here is a test failure

use std::time::{Duration, Instant};

use tandem_tests::nat::{NatKind, Topology};
use tandem_tests::process::Stream;

use crate::audio_common::field;
use crate::common::{assert_exits_ok, ok, secs};
use crate::nat_calls::{Callee, DOMAIN, NatLab, assert_heard, place_call};

/// How long the registered client idles before the first call (the acceptance's 10 minutes).
const IDLE: Duration = Duration::from_secs(600);
/// The router's conntrack UDP timeout: far below the idle time, above the default 25 s keep-alive interval.
const NAT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the re-registration after the mapping change may take (a few keep-alive intervals).
const REREGISTER_WITHIN: Duration = Duration::from_secs(100);

#[test]
fn nat_keepalive_call_after_10_minutes_and_mapping_change() {
    let mut nat = NatLab::start(
        "nat-keepalive",
        Topology::builder()
            .router_with_udp_timeout(NatKind::Cone, 1, NAT_TIMEOUT)
            .router(NatKind::Cone, 1),
        &["alice", "bob"],
        "",
        false,
    );
    assert_eq!(ok(nat.topo.udp_timeout(0)), NAT_TIMEOUT.as_secs());
    let stun = format!("--stun={}", nat.turn());
    let mut bob = nat.phone(nat.topo.host(0, 0), "bob");
    // One registration for the whole test: only the keep-alives keep the NAT mapping.
    bob.expires = Some(3600);
    let alice = nat.phone(nat.topo.host(1, 0), "alice");
    let mut callee = Callee::start(&nat, &bob, 2, &[&stun]);
    let first = ok(callee
        .child
        .wait_for_line(Stream::Stdout, "registered", secs(5)));
    let wan = nat.topo.router(0).wan();
    if let Some(mapped) = field(&first, "mapped") {
        assert!(
            mapped.starts_with(&format!("{wan}:")),
            "the registrar saw bob at {mapped}, not behind the router's {wan}: {first}"
        );
    }

    // Idle for 10 minutes (checking that bob stays up), far beyond the router's 30 s UDP timeout.
    let start = Instant::now();
    while start.elapsed() < IDLE {
        assert!(
            callee.child.is_running(),
            "bob exited while idle:\n{}",
            callee.child.tails()
        );
        std::thread::sleep(secs(5));
    }
    let target = format!("sip:bob@{DOMAIN}");
    let (call, heard) = place_call(&nat, &alice, &target, &[&stun], "after-idle");
    let bob_heard = callee.call_done(1);
    assert!(
        call.stdout.lines().any(|l| l.starts_with("answered")),
        "the call after 10 minutes was not answered:\n{}",
        call.dump()
    );
    assert_heard(
        &heard,
        &bob_heard,
        "call after 10 minutes idle behind a NAT",
    );

    // A new mapping: bob notices on its next keep-alive and re-registers.
    let before = callee
        .child
        .matching_lines(Stream::Stdout, "registered")
        .len();
    ok(nat.topo.change_mapping(0));
    let changed = ok(callee.child.wait_for_line(
        Stream::Stdout,
        "registered.*reason=mapping-changed",
        REREGISTER_WITHIN,
    ));
    assert!(
        callee
            .child
            .matching_lines(Stream::Stdout, "registered")
            .len()
            > before,
        "no new registration after the mapping change"
    );
    if let Some(mapped) = field(&changed, "mapped") {
        let port: u16 = mapped
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("mapped= is not IP:PORT in {changed:?}"));
        assert!(
            mapped.starts_with(&format!("{wan}:")) && (10_000..20_000).contains(&port),
            "the new mapping {mapped} is not from the router's new port range: {changed}"
        );
    }
    let (call, heard) = place_call(&nat, &alice, &target, &[&stun], "after-change");
    let bob_heard = callee.call_done(2);
    assert!(
        call.stdout.lines().any(|l| l.starts_with("answered")),
        "the call after the mapping change was not answered:\n{}",
        call.dump()
    );
    assert_heard(&heard, &bob_heard, "call after the NAT mapping changed");
    assert_exits_ok(&mut callee.child, secs(15), "bob (answer --count 2)");
}
