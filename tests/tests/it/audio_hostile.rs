//! Hostile SDP offers: raw INVITEs with broken SDP (missing lines, 500 m-lines, port 99999, junk) sent to a
//! `tandem-cli answer` directly and through the lab server are refused with 488 or 400; afterwards both still run and
//! a normal call still works.

use std::net::SocketAddr;

use tandem_tests::process::Stream;
use tandem_tests::sip::{invite_udp, wait_until_answers};
use tandem_tests::{CliAccount, LabOptions, LabServer, TestDir, Transport, free_port};

use crate::common::{assert_event, assert_exit, ok, secs};

/// The broken offers: (name, SDP body).
fn hostile_offers() -> Vec<(&'static str, String)> {
    let good_head = "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n";
    let mut many = good_head.to_string();
    for i in 0..500 {
        many.push_str(&format!(
            "m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            20_000 + 2 * i
        ));
    }
    vec![
        (
            "no v= and o=",
            "s=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n".to_string(),
        ),
        (
            "no c= for an active stream",
            "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
                .to_string(),
        ),
        ("500 m-lines", many),
        (
            "port 99999",
            format!("{good_head}m=audio 99999 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"),
        ),
        (
            "non-numeric port",
            format!("{good_head}m=audio http RTP/AVP 0\r\n"),
        ),
        (
            "no common codec",
            format!("{good_head}m=audio 4000 RTP/AVP 98\r\na=rtpmap:98 NOSUCH/8000\r\n"),
        ),
        ("junk", "\u{1}\u{2}garbage=\r\n=\r\nm=\r\n".to_string()),
        (
            "absurd payload type list",
            format!(
                "{good_head}m=audio 4000 RTP/AVP {}\r\n",
                (0..1000)
                    .map(|i| (i % 128).to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ),
    ]
}

fn assert_refused(to: SocketAddr, uri: &str, via: &str) {
    for (name, sdp) in hostile_offers() {
        let r = ok(invite_udp(to, uri, &sdp, secs(10)));
        assert!(
            r.status == 488 || r.status == 400,
            "{via}: offer with {name}: expected 488 or 400, got:\n{}",
            r.text
        );
        eprintln!("{via}: {name} -> {}", r.status);
    }
}

#[test]
fn hostile_sdp_to_cli_directly() {
    let dir = ok(TestDir::new("audio-hostile-direct"));
    let bob_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let bob = CliAccount::direct("bob", bob_addr);
    let mut answer = ok(bob.spawn("cli-answer", &["answer", "--no-register"], dir.path()));
    ok(wait_until_answers(bob_addr, Transport::Udp, secs(10)));
    let uri = bob.direct_uri();
    assert_refused(bob_addr, &uri, "direct");
    assert!(answer.is_running(), "tandem-cli died:\n{}", answer.tails());

    // Still answers a real call.
    let alice = CliAccount::direct("alice", SocketAddr::from(([127, 0, 0, 1], 0)));
    let call = ok(alice.run(
        "cli-call",
        &["call", &uri, "--duration", "1", "--timeout", "10"],
        dir.path(),
        secs(30),
    ));
    assert_exit(&call, 0);
    assert_event(&call, "answered");
    assert!(answer.is_running(), "tandem-cli died:\n{}", answer.tails());
}

#[test]
fn hostile_sdp_through_lab() {
    let dir = ok(TestDir::new("audio-hostile-lab"));
    let mut lab = ok(LabServer::start(
        LabOptions {
            // Our raw INVITEs come from 127.0.0.1 without credentials.
            trusted: vec!["127.0.0.1/32".into()],
            ..LabOptions::default()
                .user("alice", "alicepw")
                .user("bob", "bobpw")
        },
        dir.path(),
    ));
    let bob = CliAccount::new("bob", lab.domain(), "bobpw", lab.udp(), Transport::Udp);
    let mut answer = ok(bob.spawn("cli-answer", &["answer"], dir.path()));
    ok(answer.wait_for_line(Stream::Stdout, "registered", secs(10)));
    assert_refused(lab.udp(), "sip:bob@127.0.0.1", "through the lab");
    assert!(lab.is_running(), "the lab server died");
    assert!(answer.is_running(), "tandem-cli died:\n{}", answer.tails());

    let alice = CliAccount::new("alice", lab.domain(), "alicepw", lab.udp(), Transport::Udp);
    let call = ok(alice.run(
        "cli-call",
        &[
            "call",
            "sip:bob@127.0.0.1",
            "--duration",
            "1",
            "--timeout",
            "10",
        ],
        dir.path(),
        secs(30),
    ));
    assert_exit(&call, 0);
    assert_event(&call, "answered");
    assert!(lab.is_running(), "the lab server died");
    assert!(answer.is_running(), "tandem-cli died:\n{}", answer.tails());
}
