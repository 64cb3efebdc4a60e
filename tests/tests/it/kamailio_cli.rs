//! `tandem-cli` against Kamailio: digest registration over UDP, TCP and TLS, and a call to a SIPp UAS through it.

use tandem_tests::{CliAccount, Kamailio, KamailioOptions, Sipp, TestDir, Transport};

use crate::common::{assert_event, assert_exit, ok, secs};

fn register(transport: Transport) {
    let dir = ok(TestDir::new("kam-cli-reg"));
    let mut k = ok(Kamailio::start(
        KamailioOptions::default().user("alice", "alicepw"),
        dir.path(),
    ));
    let mut account = CliAccount::new(
        "alice",
        "127.0.0.1",
        "alicepw",
        k.addr(transport),
        transport,
    );
    if transport == Transport::Tls {
        account.ca_file = Some(k.ca_cert().to_path_buf());
    }
    let out = ok(account.run("cli-register", &["register"], dir.path(), secs(30)));
    assert_exit(&out, 0);
    assert_event(&out, "registered");
    assert_event(&out, "unregistered");
    assert!(
        out.events("registered")[0].contains("aor=sip:alice@127.0.0.1"),
        "{}",
        out.dump()
    );

    // Wrong credentials: a second challenge means exit code 3.
    account.password = Some("wrong".into());
    let bad = ok(account.run("cli-register-bad", &["register"], dir.path(), secs(30)));
    assert_exit(&bad, 3);
    assert!(k.is_running());
}

#[test]
fn cli_registers_with_kamailio_udp() {
    register(Transport::Udp);
}

#[test]
fn cli_registers_with_kamailio_tcp() {
    register(Transport::Tcp);
}

#[test]
fn cli_registers_with_kamailio_tls() {
    register(Transport::Tls);
}

#[test]
fn cli_calls_sipp_uas_through_kamailio() {
    let dir = ok(TestDir::new("kam-cli-call"));
    let k = ok(Kamailio::start(
        KamailioOptions::default()
            .user("alice", "alicepw")
            .user("service", "svcpass"),
        dir.path(),
    ));
    let proxy = k.addr(Transport::Udp);
    let uas = ok(Sipp::new("sipp-call-uas.xml")
        .calls(1)
        .timeout(secs(40))
        .spawn_uas(dir.path()));
    let service = CliAccount::new("service", "127.0.0.1", "svcpass", proxy, Transport::Udp);
    let contact = uas.contact("service");
    let reg = ok(service.run(
        "cli-register-uas",
        &["register", "--contact", &contact, "--keep"],
        dir.path(),
        secs(20),
    ));
    assert_exit(&reg, 0);
    assert_event(&reg, "registered");

    let alice = CliAccount::new("alice", "127.0.0.1", "alicepw", proxy, Transport::Udp);
    let call = ok(alice.run(
        "cli-call",
        &[
            "call",
            "sip:service@127.0.0.1",
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
    assert_event(&call, "ended");
    assert!(
        call.events("ended")[0].contains("by=local"),
        "{}",
        call.dump()
    );
    let u = ok(uas.finish());
    assert_eq!((u.successful, u.failed), (1, 0), "UAS: {u:?}");
}
