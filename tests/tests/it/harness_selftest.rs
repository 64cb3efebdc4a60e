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

#[test]
fn baresip_plays_a_wav_file_and_records_what_it_hears() {
    use crate::audio_common::{SNR_FLOOR_DB, assert_tone, tone_file};
    let dir = TestDir::new("baresip-audio").unwrap();
    let mut a_opts = BaresipOptions::new("alice", "127.0.0.1", "x", "127.0.0.1:9".parse().unwrap());
    a_opts.registrar = None;
    a_opts.source = tandem_tests::BaresipSource::File(tone_file(dir.path(), 440.0));
    a_opts.record = true;
    a_opts.audio_codecs = Some("PCMU/8000/1".into());
    let mut b_opts = BaresipOptions::new("bob", "127.0.0.1", "x", "127.0.0.1:9".parse().unwrap());
    b_opts.registrar = None;
    b_opts.auto_answer = true;
    b_opts.source = tandem_tests::BaresipSource::Sine(1250);
    b_opts.record = true;
    let mut a = Baresip::start(a_opts, dir.path()).unwrap();
    let mut b = Baresip::start(b_opts, dir.path()).unwrap();
    a.command("dial", &format!("sip:bob@{}", b.sip_addr()), SECS(5))
        .unwrap();
    a.wait_event_type("CALL_ESTABLISHED", SECS(10)).unwrap();
    a.command("sndcode", "5", SECS(5)).unwrap();
    assert_eq!(b.wait_dtmf(1, SECS(5)).unwrap(), "5");
    std::thread::sleep(SECS(3));
    a.command("hangup", "", SECS(5)).unwrap();
    a.wait_event_type("CALL_CLOSED", SECS(10)).unwrap();
    b.wait_event_type("CALL_CLOSED", SECS(10)).unwrap();
    let b_heard = crate::audio_baresip::baresip_recording(&b, 1);
    let a_heard = crate::audio_baresip::baresip_recording(&a, 1);
    assert_tone(
        &b_heard,
        440.0,
        SNR_FLOOR_DB,
        SECS(2),
        "bob hears alice's file",
    );
    assert_tone(
        &a_heard,
        1250.0,
        SNR_FLOOR_DB,
        SECS(2),
        "alice hears bob's sine",
    );
}

#[test]
fn linphonec_calls_linphonec_with_wav_files() {
    use crate::audio_common::{SNR_FLOOR_DB, assert_tone, tone_file};
    use tandem_tests::{Linphone, LinphoneOptions};
    let dir = TestDir::new("linphone-audio").unwrap();
    let mut a = LinphoneOptions::new("lpa");
    a.auto_answer = true;
    a.play = Some(tone_file(dir.path(), 440.0));
    a.record = Some(dir.path().join("a.wav"));
    a.codecs = vec!["PCMU".into()];
    let mut b = LinphoneOptions::new("lpb");
    b.play = Some(tone_file(dir.path(), 1250.0));
    b.record = Some(dir.path().join("b.wav"));
    b.codecs = vec!["PCMU".into()];
    let mut la = Linphone::start(a, dir.path()).unwrap();
    let mut lb = Linphone::start(b, dir.path()).unwrap();
    lb.call(&la.uri(), SECS(10)).unwrap();
    std::thread::sleep(SECS(3));
    lb.terminate().unwrap();
    lb.wait_ended(SECS(10)).unwrap();
    la.wait_ended(SECS(10)).unwrap();
    la.quit(SECS(10)).unwrap();
    lb.quit(SECS(10)).unwrap();
    assert_tone(
        &dir.path().join("a.wav"),
        1250.0,
        SNR_FLOOR_DB,
        SECS(2),
        "a hears b",
    );
    assert_tone(
        &dir.path().join("b.wav"),
        440.0,
        SNR_FLOOR_DB,
        SECS(2),
        "b hears a",
    );
}

#[test]
fn netns_pair_forwards_and_impairs() {
    use tandem_tests::NetnsPair;
    use tandem_tests::impair::Impairment;
    if !tandem_tests::netns::is_root() {
        eprintln!("SKIPPED netns_pair_forwards_and_impairs: needs root");
        return;
    }
    let net = NetnsPair::create().unwrap();
    // tandem-cli's OPTIONS from a to b, across the bridge (SIP passes unimpaired).
    let dir = TestDir::new("netns-pair").unwrap();
    let port = tandem_tests::free_port();
    let mut bob =
        tandem_tests::CliAccount::direct("bob", std::net::SocketAddr::new(net.addr_b(), port));
    bob.netns = Some(net.b().to_string());
    let _answer = bob
        .spawn("cli-answer", &["answer", "--no-register"], dir.path())
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut alice =
        tandem_tests::CliAccount::direct("alice", std::net::SocketAddr::new(net.addr_a(), 0));
    alice.netns = Some(net.a().to_string());
    let target = format!("sip:{}:{port}", net.addr_b());
    let out = alice
        .run("cli-options", &["options", &target], dir.path(), SECS(20))
        .unwrap();
    let stats = net.bridge_stats().unwrap();
    assert_eq!(out.code(), Some(0), "{} bridge: {stats:?}", out.dump());
    assert!(
        stats[0].forwarded > 0 && stats[1].forwarded > 0,
        "{stats:?}"
    );
    net.impair(Impairment {
        loss_percent: 5.0,
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(20),
    })
    .unwrap();
}
