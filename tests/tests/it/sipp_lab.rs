//! SIPp against the lab server: digest REGISTER load with unique AoRs, and calls UAC → lab → UAS, over UDP and TCP.

use tandem_tests::sipp::write_users_csv;
use tandem_tests::{CliAccount, LabOptions, LabServer, Sipp, TestDir, Transport};

use crate::common::{assert_event, assert_exit, ok, secs};

fn register_load(transport: Transport) {
    let dir = ok(TestDir::new("sipp-lab-reg"));
    let mut lab = ok(LabServer::start(
        LabOptions {
            third_party: vec!["labuser".into()],
            // SIPp 3.6.1 answers MD5 challenges only.
            auth_algorithms: vec!["MD5".into()],
            ..LabOptions::default().user("labuser", "secret")
        },
        dir.path(),
    ));
    let users = ok(write_users_csv(dir.path(), "aor", 50));
    let r = ok(Sipp::new("sipp-register-digest.xml")
        .transport(transport)
        .calls(50)
        .rate(25.0)
        .inf(&users)
        .timeout(secs(30))
        .run(lab.addr(transport).unwrap_or(lab.udp()), dir.path()));
    assert_eq!((r.successful, r.failed), (50, 0), "over {transport}: {r:?}");
    assert!(lab.is_running(), "the lab server died");
}

#[test]
fn sipp_digest_register_udp() {
    register_load(Transport::Udp);
}

#[test]
fn sipp_digest_register_tcp() {
    register_load(Transport::Tcp);
}

fn calls(transport: Transport) {
    let dir = ok(TestDir::new("sipp-lab-call"));
    let mut lab = ok(LabServer::start(
        LabOptions {
            trusted: vec!["127.0.0.1/32".into()],
            ..LabOptions::default().user("service", "svcpass")
        },
        dir.path(),
    ));
    let proxy = lab.addr(transport).unwrap_or(lab.udp());
    let uas = ok(Sipp::new("sipp-call-uas.xml")
        .transport(transport)
        .calls(50)
        .timeout(secs(60))
        .spawn_uas(dir.path()));
    let account = CliAccount::new("service", lab.domain(), "svcpass", proxy, transport);
    let contact = uas.contact("service");
    let reg = ok(account.run(
        "cli-register-uas",
        &["register", "--contact", &contact, "--keep"],
        dir.path(),
        secs(20),
    ));
    assert_exit(&reg, 0);
    assert_event(&reg, "registered");
    let r = ok(Sipp::new("sipp-call-uac.xml")
        .transport(transport)
        .calls(50)
        .rate(10.0)
        .service("service")
        .timeout(secs(60))
        .run(proxy, dir.path()));
    assert_eq!(
        (r.successful, r.failed),
        (50, 0),
        "UAC over {transport}: {r:?}"
    );
    let u = ok(uas.finish());
    assert_eq!(
        (u.successful, u.failed),
        (50, 0),
        "UAS over {transport}: {u:?}"
    );
    assert!(lab.is_running(), "the lab server died");
}

#[test]
fn sipp_calls_through_lab_udp() {
    calls(Transport::Udp);
}

#[test]
fn sipp_calls_through_lab_tcp() {
    calls(Transport::Tcp);
}
