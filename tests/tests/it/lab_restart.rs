//! Registrations survive a lab server restart: the callee is still reachable afterwards.

use tandem_tests::process::Stream;
use tandem_tests::{CliAccount, LabOptions, LabServer, TestDir, Transport};

use crate::common::{assert_event, assert_exit, ok, secs};

#[test]
fn registration_survives_restart() {
    let dir = ok(TestDir::new("lab-restart"));
    let mut lab = ok(LabServer::start(
        LabOptions::default()
            .user("alice", "alicepw")
            .user("bob", "bobpw"),
        dir.path(),
    ));
    let bob = CliAccount::new("bob", lab.domain(), "bobpw", lab.udp(), Transport::Udp);
    let mut answer = ok(bob.spawn("cli-answer", &["answer", "--count", "1"], dir.path()));
    ok(answer.wait_for_line(Stream::Stdout, "registered", secs(10)));

    ok(lab.restart());

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
    ok(answer.wait_for_line(Stream::Stdout, "answered", secs(5)));
    let status = ok(answer.wait_exit(secs(15)));
    assert_eq!(
        status.code(),
        Some(0),
        "tandem-cli answer:\n{}",
        answer.tails()
    );
    assert!(lab.is_running());
}
