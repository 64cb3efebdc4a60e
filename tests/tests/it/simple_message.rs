//! Page-mode instant messages (SIP MESSAGE, RFC 3428): `tandem-cli message` / `tandem-cli answer` against
//! baresip through the lab server and through Kamailio, and the lab's store-and-forward for offline users.

use tandem_tests::process::Stream;
use tandem_tests::{
    Baresip, BaresipOptions, CliAccount, CliOutput, Kamailio, KamailioOptions, LabOptions,
    LabServer, TestDir, Transport,
};

use crate::common::{assert_exit, ok, secs};

fn lab(dir: &TestDir) -> LabServer {
    ok(LabServer::start(
        LabOptions {
            // baresip 1.0 (libre) knows only MD5 digest.
            auth_algorithms: vec!["MD5".into()],
            ..LabOptions::default()
                .user("alice", "alicepw")
                .user("bob", "bobpw")
                .user("carol", "carolpw")
        },
        dir.path(),
    ))
}

/// The single `message status=…` line of a `tandem-cli message` run.
fn sent_line(out: &CliOutput) -> String {
    let lines = out.events("message");
    assert_eq!(lines.len(), 1, "{}", out.dump());
    lines[0].to_string()
}

/// Waits for baresip to play its message alert (`message.wav`), the one trace a received MESSAGE leaves in
/// baresip 1.0's log.
fn wait_message_alert(bob: &mut Baresip) {
    ok(bob
        .process()
        .wait_for_line(Stream::Stdout, "play: player complete", secs(10)));
}

#[test]
fn cli_messages_baresip_through_lab() {
    let dir = ok(TestDir::new("simple-msg-lab-out"));
    let mut lab = lab(&dir);
    let mut bob = ok(Baresip::start(
        BaresipOptions::new("bob", lab.domain(), "bobpw", lab.udp()),
        dir.path(),
    ));
    ok(bob.wait_registered(secs(10)));

    let alice = CliAccount::new("alice", lab.domain(), "alicepw", lab.udp(), Transport::Udp);
    let out = ok(alice.run(
        "cli-message",
        &["message", "sip:bob@127.0.0.1", "hello bob, from tandem"],
        dir.path(),
        secs(30),
    ));
    assert_exit(&out, 0);
    let line = sent_line(&out);
    assert!(
        line.contains("status=200") && line.contains("stored=no") && line.contains("id="),
        "{line}"
    );
    // The 200 can only come from baresip (the lab answers 202 when it stores). baresip 1.0 shows the
    // text only in its interactive UI (no ctrl_tcp event, nothing in the log); what it does log is the
    // message alert sound it plays on receipt.
    wait_message_alert(&mut bob);
    assert!(lab.is_running());
}

#[test]
fn baresip_messages_cli_through_lab() {
    let dir = ok(TestDir::new("simple-msg-lab-in"));
    let mut lab = lab(&dir);
    let alice = CliAccount::new("alice", lab.domain(), "alicepw", lab.udp(), Transport::Udp);
    let mut listen = ok(alice.spawn("cli-answer", &["answer"], dir.path()));
    ok(listen.wait_for_line(Stream::Stdout, "registered", secs(10)));

    let mut opts = BaresipOptions::new("bob", lab.domain(), "bobpw", lab.udp());
    opts.contacts = vec!["sip:alice@127.0.0.1".into()];
    let mut bob = ok(Baresip::start(opts, dir.path()));
    ok(bob.wait_registered(secs(10)));
    ok(bob.command("message", "hi alice, from baresip", secs(5)));

    let line = ok(listen.wait_for_line(Stream::Stdout, "message from=sip:bob@127.0.0.1", secs(10)));
    assert!(line.contains("type=text/plain"), "{line}");
    assert!(line.contains("cpim=no"), "{line}");
    assert!(line.contains("text=\"hi alice, from baresip\""), "{line}");
    listen.stop();
    assert!(lab.is_running());
}

#[test]
fn offline_messages_are_stored_and_delivered_in_order() {
    let dir = ok(TestDir::new("simple-msg-offline"));
    let mut lab = lab(&dir);
    let alice = CliAccount::new("alice", lab.domain(), "alicepw", lab.udp(), Transport::Udp);
    let texts = ["first, plain", "second, in CPIM", "third \"quoted\""];
    let mut ids = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let mut args = vec!["message", "sip:carol@127.0.0.1", text];
        if i == 1 {
            args.push("--cpim");
        }
        let out = ok(alice.run("cli-message", &args, dir.path(), secs(30)));
        assert_exit(&out, 0);
        let line = sent_line(&out);
        assert!(
            line.contains("status=202") && line.contains("stored=yes"),
            "{line}"
        );
        ids.push(line);
    }

    // carol comes online: the lab delivers the three messages, in order, once each.
    let carol = CliAccount::new("carol", lab.domain(), "carolpw", lab.udp(), Transport::Udp);
    let mut listen = ok(carol.spawn("cli-answer-carol", &["answer"], dir.path()));
    ok(listen.wait_for_line(Stream::Stdout, "registered", secs(10)));
    ok(listen.wait_for_nth_line(
        Stream::Stdout,
        "message from=sip:alice@127.0.0.1",
        3,
        secs(20),
    ));
    // Give a duplicate delivery a chance to show up before counting.
    std::thread::sleep(secs(2));
    let got = listen.matching_lines(Stream::Stdout, "message from=");
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(
        got[0].contains("text=\"first, plain\"") && got[0].contains("cpim=no"),
        "{got:#?}"
    );
    assert!(
        got[1].contains("text=\"second, in CPIM\"") && got[1].contains("cpim=yes"),
        "{got:#?}"
    );
    assert!(got[2].contains("text=\"third \\\"quoted\\\"\""), "{got:#?}");
    for line in &got {
        assert!(line.contains("type=text/plain"), "{line}");
        assert!(line.contains("stored-id="), "{line}");
    }
    listen.stop();
    assert!(lab.is_running());
}

#[test]
fn message_to_unknown_user_is_refused() {
    let dir = ok(TestDir::new("simple-msg-unknown"));
    let lab = lab(&dir);
    let alice = CliAccount::new("alice", lab.domain(), "alicepw", lab.udp(), Transport::Udp);
    let out = ok(alice.run(
        "cli-message",
        &["message", "sip:nobody@127.0.0.1", "anyone?"],
        dir.path(),
        secs(30),
    ));
    assert_exit(&out, 1);
    assert!(out.events("message").is_empty(), "{}", out.dump());
    assert!(!out.events("failed").is_empty(), "{}", out.dump());
}

#[test]
fn cli_and_baresip_message_through_kamailio() {
    let dir = ok(TestDir::new("simple-msg-kam"));
    let k = ok(Kamailio::start(
        KamailioOptions::default()
            .user("alice", "alicepw")
            .user("bob", "bobpw"),
        dir.path(),
    ));
    let mut opts = BaresipOptions::new("bob", "127.0.0.1", "bobpw", k.addr(Transport::Udp));
    opts.contacts = vec!["sip:alice@127.0.0.1".into()];
    let mut bob = ok(Baresip::start(opts, dir.path()));
    ok(bob.wait_registered(secs(10)));

    let alice = CliAccount::new(
        "alice",
        "127.0.0.1",
        "alicepw",
        k.addr(Transport::Udp),
        Transport::Udp,
    );
    let out = ok(alice.run(
        "cli-message",
        &["message", "sip:bob@127.0.0.1", "via kamailio"],
        dir.path(),
        secs(30),
    ));
    assert_exit(&out, 0);
    let line = sent_line(&out);
    assert!(
        line.contains("status=200") && line.contains("stored=no"),
        "{line}"
    );
    wait_message_alert(&mut bob);

    let mut listen = ok(alice.spawn("cli-answer", &["answer"], dir.path()));
    ok(listen.wait_for_line(Stream::Stdout, "registered", secs(10)));
    ok(bob.command("message", "back via kamailio", secs(5)));
    let got = ok(listen.wait_for_line(Stream::Stdout, "message from=sip:bob@127.0.0.1", secs(10)));
    assert!(got.contains("text=\"back via kamailio\""), "{got}");
    listen.stop();
}
