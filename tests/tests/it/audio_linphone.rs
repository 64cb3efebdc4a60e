//! Tone calls between `tandem-cli` and linphonec (direct, no registrar; linphonec with WAV files instead of a
//! sound card): Opus and PCMU, plain RTP and SDES-SRTP (mandatory on both sides), the caller alternating; both
//! sides record the other's tone.

use std::net::SocketAddr;

use tandem_tests::sip::wait_until_answers;
use tandem_tests::{CliAccount, Linphone, LinphoneOptions, TestDir, Transport, free_port};

use crate::audio_common::{
    SNR_FLOOR_DB, TONE_CALLEE, TONE_CALLER, assert_media, assert_tone, tone_file,
};
use crate::common::{assert_exit, assert_exits_ok_verbose, ok, secs};

fn tone_call(codec: &str, srtp: bool, cli_calls: bool) {
    let dir = ok(TestDir::new(&format!(
        "audio-linphone-{codec}-{}-{}",
        if srtp { "sdes" } else { "plain" },
        if cli_calls { "out" } else { "in" }
    )));
    let srtp_arg = if srtp { "mandatory" } else { "off" };
    let cli_rec = dir.path().join("cli-heard.wav");
    let lp_rec = dir.path().join("linphone-heard.wav");
    let cli_tone = tone_file(dir.path(), TONE_CALLER).display().to_string();
    let rec = cli_rec.display().to_string();
    let mut opts = LinphoneOptions::new("lp");
    opts.auto_answer = cli_calls;
    opts.play = Some(tone_file(dir.path(), TONE_CALLEE));
    opts.record = Some(lp_rec.clone());
    opts.codecs = vec![codec.to_string()];
    opts.srtp = srtp;

    let cli_out = if cli_calls {
        let mut lp = ok(Linphone::start(opts, dir.path()));
        let alice = CliAccount::direct("alice", SocketAddr::from(([127, 0, 0, 1], 0)));
        let call = ok(alice.run(
            "cli-call",
            &[
                "--srtp",
                srtp_arg,
                "call",
                &lp.uri(),
                "--duration",
                "3",
                "--timeout",
                "10",
                "--codec",
                codec,
                "--play",
                &cli_tone,
                "--record",
                &rec,
            ],
            dir.path(),
            secs(30),
        ));
        assert_exit(&call, 0);
        ok(lp.wait_ended(secs(10)));
        ok(lp.quit(secs(10)));
        call.stdout
    } else {
        let bob_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let bob = CliAccount::direct("bob", bob_addr);
        let mut answer = ok(bob.spawn(
            "cli-answer",
            &[
                "--srtp",
                srtp_arg,
                "answer",
                "--no-register",
                "--count",
                "1",
                "--codec",
                codec,
                "--play",
                &cli_tone,
                "--record",
                &rec,
            ],
            dir.path(),
        ));
        ok(wait_until_answers(bob_addr, Transport::Udp, secs(10)));
        let mut lp = ok(Linphone::start(opts, dir.path()));
        ok(lp.call(&bob.direct_uri(), secs(10)));
        std::thread::sleep(secs(3));
        ok(lp.terminate());
        ok(lp.wait_ended(secs(10)));
        let out = assert_exits_ok_verbose(&mut answer, secs(15));
        ok(lp.quit(secs(10)));
        out
    };
    assert_media(
        &cli_out,
        codec,
        if srtp { "sdes" } else { "no" },
        "tandem-cli",
    );
    assert_tone(
        &cli_rec,
        TONE_CALLEE,
        SNR_FLOOR_DB,
        secs(2),
        "tandem-cli hears linphonec",
    );
    assert_tone(
        &lp_rec,
        TONE_CALLER,
        SNR_FLOOR_DB,
        secs(2),
        "linphonec hears tandem-cli",
    );
}

#[test]
fn linphone_opus_plain_cli_calls() {
    tone_call("opus", false, true);
}

#[test]
fn linphone_pcmu_plain_linphonec_calls() {
    tone_call("pcmu", false, false);
}

#[test]
fn linphone_opus_sdes_linphonec_calls() {
    tone_call("opus", true, false);
}

#[test]
fn linphone_pcmu_sdes_cli_calls() {
    tone_call("pcmu", true, true);
}

/// linphonec registered at Kamailio (GRUU off, see TESTBED.md), called by `tandem-cli` through it.
#[test]
fn linphone_via_kamailio_pcmu_cli_calls() {
    use tandem_tests::{Kamailio, KamailioOptions, LinphoneRegistrar};
    let dir = ok(TestDir::new("audio-linphone-kamailio"));
    let k = ok(Kamailio::start(
        KamailioOptions::default()
            .user("alice", "alicepw")
            .user("lp", "lppw"),
        dir.path(),
    ));
    let proxy = k.addr(Transport::Udp);
    let lp_rec = dir.path().join("linphone-heard.wav");
    let mut opts = LinphoneOptions::new("lp");
    opts.auto_answer = true;
    opts.play = Some(tone_file(dir.path(), TONE_CALLEE));
    opts.record = Some(lp_rec.clone());
    opts.codecs = vec!["PCMU".into()];
    opts.registrar = Some(LinphoneRegistrar {
        addr: proxy,
        domain: "127.0.0.1".into(),
        password: "lppw".into(),
    });
    let mut lp = ok(Linphone::start(opts, dir.path()));

    let cli_rec = dir.path().join("cli-heard.wav");
    let tone = tone_file(dir.path(), TONE_CALLER).display().to_string();
    let rec = cli_rec.display().to_string();
    let alice = CliAccount::new("alice", "127.0.0.1", "alicepw", proxy, Transport::Udp);
    let call = ok(alice.run(
        "cli-call",
        &[
            "call",
            "sip:lp@127.0.0.1",
            "--duration",
            "3",
            "--timeout",
            "10",
            "--codec",
            "pcmu",
            "--play",
            &tone,
            "--record",
            &rec,
        ],
        dir.path(),
        secs(30),
    ));
    assert_exit(&call, 0);
    ok(lp.wait_ended(secs(10)));
    ok(lp.quit(secs(10)));
    assert_media(&call.stdout, "pcmu", "no", "tandem-cli");
    assert_tone(
        &cli_rec,
        TONE_CALLEE,
        SNR_FLOOR_DB,
        secs(2),
        "tandem-cli hears linphonec",
    );
    assert_tone(
        &lp_rec,
        TONE_CALLER,
        SNR_FLOOR_DB,
        secs(2),
        "linphonec hears tandem-cli",
    );
}
