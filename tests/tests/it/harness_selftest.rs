//! Self-tests of the harness that need no Tandem code: they prove the peers (Kamailio, SIPp, baresip) work on this
//! machine and that the launchers drive them correctly.

use std::time::Duration;

use tandem_tests::sip::{Registration, register_contact};
use tandem_tests::sipp::write_users_csv;
use tandem_tests::{Baresip, BaresipOptions, Kamailio, KamailioOptions, Sipp, TestDir, Transport};

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn kamailio_answers_options_from_sipp() {
    let dir = TestDir::new("k-options").unwrap();
    let mut k = Kamailio::start(KamailioOptions::default(), dir.path()).unwrap();
    for t in [Transport::Udp, Transport::Tcp] {
        let r = Sipp::new("sipp-options.xml")
            .transport(t)
            .calls(3)
            .timeout(SECS(15))
            .run(k.addr(t), dir.path())
            .unwrap();
        assert_eq!((r.successful, r.failed), (3, 0), "over {t}: {r:?}");
    }
    assert!(k.is_running());
}

#[test]
fn sipp_digest_register_with_kamailio() {
    let dir = TestDir::new("k-register").unwrap();
    let k = Kamailio::start(
        KamailioOptions::default().user("labuser", "secret"),
        dir.path(),
    )
    .unwrap();
    let users = write_users_csv(dir.path(), "reg", 20).unwrap();
    let r = Sipp::new("sipp-register-digest.xml")
        .calls(20)
        .rate(20.0)
        .inf(&users)
        .timeout(SECS(20))
        .run(k.addr(Transport::Udp), dir.path())
        .unwrap();
    assert_eq!((r.successful, r.failed), (20, 0), "{r:?}");
}

#[test]
fn sipp_calls_sipp_through_kamailio() {
    let dir = TestDir::new("k-call").unwrap();
    let k = Kamailio::start(
        KamailioOptions::default().user("service", "svcpass"),
        dir.path(),
    )
    .unwrap();
    let uas = Sipp::new("sipp-call-uas.xml")
        .calls(5)
        .timeout(SECS(30))
        .spawn_uas(dir.path())
        .unwrap();
    let reg = register_contact(
        &Registration {
            registrar: k.addr(Transport::Udp),
            user: "service".into(),
            domain: "127.0.0.1".into(),
            auth_user: "service".into(),
            password: "svcpass".into(),
            contact: uas.contact("service"),
            expires: 300,
        },
        SECS(5),
    )
    .unwrap();
    assert_eq!(reg.status, 200, "{}", reg.text);
    let r = Sipp::new("sipp-call-uac.xml")
        .calls(5)
        .rate(5.0)
        .service("service")
        .timeout(SECS(30))
        .run(k.addr(Transport::Udp), dir.path())
        .unwrap();
    assert_eq!((r.successful, r.failed), (5, 0), "UAC: {r:?}");
    let u = uas.finish().unwrap();
    assert_eq!((u.successful, u.failed), (5, 0), "UAS: {u:?}");
}

#[test]
fn wrong_password_is_refused_by_kamailio() {
    let dir = TestDir::new("k-badpw").unwrap();
    let k = Kamailio::start(
        KamailioOptions::default().user("alice", "right"),
        dir.path(),
    )
    .unwrap();
    let reg = register_contact(
        &Registration {
            registrar: k.addr(Transport::Udp),
            user: "alice".into(),
            domain: "127.0.0.1".into(),
            auth_user: "alice".into(),
            password: "wrong".into(),
            contact: "sip:alice@127.0.0.1:9".into(),
            expires: 60,
        },
        SECS(5),
    )
    .unwrap();
    assert!(reg.status == 401 || reg.status == 403, "{}", reg.text);
}

#[test]
fn baresip_ctrl_tcp_answers() {
    let dir = TestDir::new("baresip-ctrl").unwrap();
    let mut opts = BaresipOptions::new("carol", "127.0.0.1", "x", "127.0.0.1:9".parse().unwrap());
    opts.registrar = None;
    let mut b = Baresip::start(opts, dir.path()).unwrap();
    let info = b.command("reginfo", "", SECS(5)).unwrap();
    assert!(info.contains("sip:carol@127.0.0.1"), "{info}");
    assert!(b.is_running());
}

#[test]
fn baresip_registers_and_calls_sipp_through_kamailio() {
    let dir = TestDir::new("baresip-kam").unwrap();
    let k = Kamailio::start(
        KamailioOptions::default()
            .user("bob", "bobpw")
            .user("service", "svcpass"),
        dir.path(),
    )
    .unwrap();
    let uas = Sipp::new("sipp-call-uas.xml")
        .calls(1)
        .timeout(SECS(40))
        .spawn_uas(dir.path())
        .unwrap();
    let reg = register_contact(
        &Registration {
            registrar: k.addr(Transport::Udp),
            user: "service".into(),
            domain: "127.0.0.1".into(),
            auth_user: "service".into(),
            password: "svcpass".into(),
            contact: uas.contact("service"),
            expires: 300,
        },
        SECS(5),
    )
    .unwrap();
    assert_eq!(reg.status, 200, "{}", reg.text);
    let mut b = Baresip::start(
        BaresipOptions::new("bob", "127.0.0.1", "bobpw", k.addr(Transport::Udp)),
        dir.path(),
    )
    .unwrap();
    b.wait_registered(SECS(10)).unwrap();
    b.command("dial", "sip:service@127.0.0.1", SECS(5)).unwrap();
    b.wait_event_type("CALL_ESTABLISHED", SECS(10)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    b.command("hangup", "", SECS(5)).unwrap();
    b.wait_event_type("CALL_CLOSED", SECS(10)).unwrap();
    let u = uas.finish().unwrap();
    assert_eq!((u.successful, u.failed), (1, 0), "UAS: {u:?}");
}
