//! Presence through the lab server: `tandem-cli watch` (SUBSCRIBE) sees a `tandem-cli presence` (PUBLISH)
//! user's state once the presentity's pres-rules (written over XCAP with curl) allow the watcher.

use std::process::Command;

use tandem_tests::process::Stream;
use tandem_tests::{CliAccount, LabOptions, LabServer, TestDir, Transport};

use crate::common::{assert_exit, ok, secs};

/// `alice`'s pres-rules allowing `bob@127.0.0.1` (RFC 5025 over common-policy, RFC 4745).
const ALLOW_BOB: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<cr:ruleset xmlns:cr=\"urn:ietf:params:xml:ns:common-policy\" xmlns:pr=\"urn:ietf:params:xml:ns:pres-rules\">\n\
<cr:rule id=\"bob\"><cr:conditions><cr:identity><cr:one id=\"sip:bob@127.0.0.1\"/></cr:identity></cr:conditions>\
<cr:actions><pr:sub-handling>allow</pr:sub-handling></cr:actions><cr:transformations>\
<pr:provide-services><pr:all-services/></pr:provide-services><pr:provide-persons><pr:all-persons/></pr:provide-persons>\
<pr:provide-devices><pr:all-devices/></pr:provide-devices><pr:provide-all-attributes/></cr:transformations></cr:rule>\n\
</cr:ruleset>\n";

#[test]
fn cli_watches_cli_presence_through_lab() {
    let dir = ok(TestDir::new("simple-presence"));
    let mut lab = ok(LabServer::start(
        LabOptions::default()
            .user("alice", "alicepw")
            .user("bob", "bobpw"),
        dir.path(),
    ));
    let xcap = lab.xcap().expect("the lab reports its XCAP listener");

    // bob watches alice: without pres-rules the lab asks alice to confirm (pending).
    let bob = CliAccount::new("bob", lab.domain(), "bobpw", lab.udp(), Transport::Udp);
    let mut watch = ok(bob.spawn(
        "cli-watch",
        &["watch", "sip:alice@127.0.0.1", "--duration", "60"],
        dir.path(),
    ));
    ok(watch.wait_for_line(Stream::Stdout, "presence-pending", secs(15)));

    // alice allows bob over XCAP; the lab re-evaluates the subscription.
    let body = dir.path().join("pres-rules.xml");
    std::fs::write(&body, ALLOW_BOB).unwrap();
    let url = format!(
        "https://127.0.0.1:{}/xcap-root/pres-rules/users/sip:alice@127.0.0.1/index",
        xcap.port()
    );
    let curl = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "20", "-X", "PUT", "--digest"])
        .args([
            "-u",
            "alice:alicepw",
            "-H",
            "Content-Type: application/auth-policy+xml",
        ])
        .arg("--cacert")
        .arg(lab.ca_cert())
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        curl.status.success(),
        "curl PUT {url}: {}",
        String::from_utf8_lossy(&curl.stderr)
    );

    // alice publishes: bob sees busy with the note, then (after alice removes it) offline.
    let alice = CliAccount::new("alice", lab.domain(), "alicepw", lab.udp(), Transport::Udp);
    let out = ok(alice.run(
        "cli-presence",
        &[
            "presence",
            "--status",
            "busy",
            "--note",
            "in a meeting",
            "--duration",
            "3",
        ],
        dir.path(),
        secs(40),
    ));
    assert_exit(&out, 0);
    let published = out.events("published");
    assert_eq!(published.len(), 1, "{}", out.dump());
    assert!(published[0].contains("status=busy"), "{}", out.dump());
    assert!(out.has_event("unpublished"), "{}", out.dump());

    let line = ok(watch.wait_for_line(
        Stream::Stdout,
        "presence entity=sip:alice@127.0.0.1 status=busy",
        secs(15),
    ));
    assert!(line.contains("note=\"in a meeting\""), "{line}");
    ok(watch.wait_for_line(
        Stream::Stdout,
        "presence entity=sip:alice@127.0.0.1 status=offline",
        secs(15),
    ));
    watch.stop();
    assert!(lab.is_running());
}
