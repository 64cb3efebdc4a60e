//! baresip (a real softphone) and `tandem-cli` calling each other through the lab server.

use tandem_tests::process::Stream;
use tandem_tests::{Baresip, BaresipOptions, CliAccount, TestDir, Transport};

use crate::common::{assert_event, assert_exit, baresip_lab as lab, ok, secs};

#[test]
fn baresip_calls_cli_through_lab() {
    let dir = ok(TestDir::new("baresip-lab-out"));
    let mut lab = lab(&dir);
    let mut bob = ok(Baresip::start(
        BaresipOptions::new("bob", lab.domain(), "bobpw", lab.udp()),
        dir.path(),
    ));
    ok(bob.wait_registered(secs(10)));

    let alice = CliAccount::new("alice", lab.domain(), "alicepw", lab.udp(), Transport::Udp);
    let mut answer = ok(alice.spawn("cli-answer", &["answer", "--count", "1"], dir.path()));
    ok(answer.wait_for_line(Stream::Stdout, "registered", secs(10)));

    ok(bob.command("dial", "sip:alice@127.0.0.1", secs(5)));
    ok(bob.wait_event_type("CALL_ESTABLISHED", secs(10)));
    ok(answer.wait_for_line(Stream::Stdout, "answered", secs(5)));
    std::thread::sleep(secs(1));
    ok(bob.command("hangup", "", secs(5)));
    ok(bob.wait_event_type("CALL_CLOSED", secs(10)));

    let status = ok(answer.wait_exit(secs(15)));
    let out = answer.stdout();
    assert_eq!(
        status.code(),
        Some(0),
        "tandem-cli answer:\n{out}\n{}",
        answer.tails()
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("incoming ") && l.contains("from=sip:bob@")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ended ") && l.contains("by=remote")),
        "{out}"
    );
    assert!(lab.is_running());
}

#[test]
fn cli_calls_baresip_through_lab() {
    let dir = ok(TestDir::new("baresip-lab-in"));
    let mut lab = lab(&dir);
    let mut opts = BaresipOptions::new("bob", lab.domain(), "bobpw", lab.udp());
    opts.auto_answer = true;
    let mut bob = ok(Baresip::start(opts, dir.path()));
    ok(bob.wait_registered(secs(10)));

    let alice = CliAccount::new("alice", lab.domain(), "alicepw", lab.udp(), Transport::Udp);
    let call = ok(alice.run(
        "cli-call",
        &[
            "call",
            "sip:bob@127.0.0.1",
            "--duration",
            "2",
            "--timeout",
            "15",
        ],
        dir.path(),
        secs(40),
    ));
    assert_exit(&call, 0);
    assert_event(&call, "answered");
    assert_event(&call, "ended");
    assert!(
        call.events("ended")[0].contains("by=local"),
        "{}",
        call.dump()
    );
    ok(bob.wait_event_type("CALL_ESTABLISHED", secs(5)));
    ok(bob.wait_event_type("CALL_CLOSED", secs(10)));
    assert!(lab.is_running());
}
