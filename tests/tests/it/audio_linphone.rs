//! Tone calls between `tandem-cli` and linphonec (direct, no registrar; linphonec with WAV files instead of a
//! sound card): `tandem-cli` calls with Opus, linphonec calls with PCMU; both sides record the other's tone.

use std::net::SocketAddr;

use tandem_tests::sip::wait_until_answers;
use tandem_tests::{CliAccount, Linphone, LinphoneOptions, TestDir, Transport, free_port};

use crate::audio_common::{
    SNR_FLOOR_DB, TONE_CALLEE, TONE_CALLER, assert_media, assert_tone, tone_file,
};
use crate::common::{assert_exit, ok, secs};

#[test]
fn cli_calls_linphonec_opus() {
    let dir = ok(TestDir::new("audio-linphone-out"));
    let lp_rec = dir.path().join("linphone-heard.wav");
    let mut opts = LinphoneOptions::new("lp");
    opts.auto_answer = true;
    opts.play = Some(tone_file(dir.path(), TONE_CALLEE));
    opts.record = Some(lp_rec.clone());
    opts.codecs = vec!["opus".into()];
    let mut lp = ok(Linphone::start(opts, dir.path()));

    let cli_rec = dir.path().join("cli-heard.wav");
    let tone = tone_file(dir.path(), TONE_CALLER).display().to_string();
    let rec = cli_rec.display().to_string();
    let alice = CliAccount::direct("alice", SocketAddr::from(([127, 0, 0, 1], 0)));
    let call = ok(alice.run(
        "cli-call",
        &[
            "call",
            &lp.uri(),
            "--duration",
            "3",
            "--timeout",
            "10",
            "--codec",
            "opus",
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
    assert_media(&call.stdout, "opus", "no", "tandem-cli");
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
fn linphonec_calls_cli_pcmu() {
    let dir = ok(TestDir::new("audio-linphone-in"));
    let cli_rec = dir.path().join("cli-heard.wav");
    let tone = tone_file(dir.path(), TONE_CALLEE).display().to_string();
    let rec = cli_rec.display().to_string();
    let bob_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let bob = CliAccount::direct("bob", bob_addr);
    let mut answer = ok(bob.spawn(
        "cli-answer",
        &[
            "answer",
            "--no-register",
            "--count",
            "1",
            "--codec",
            "pcmu",
            "--play",
            &tone,
            "--record",
            &rec,
        ],
        dir.path(),
    ));
    ok(wait_until_answers(bob_addr, Transport::Udp, secs(10)));

    let lp_rec = dir.path().join("linphone-heard.wav");
    let mut opts = LinphoneOptions::new("lp");
    opts.play = Some(tone_file(dir.path(), TONE_CALLER));
    opts.record = Some(lp_rec.clone());
    opts.codecs = vec!["PCMU".into()];
    let mut lp = ok(Linphone::start(opts, dir.path()));
    ok(lp.call(&bob.direct_uri(), secs(10)));
    std::thread::sleep(secs(3));
    ok(lp.terminate());
    ok(lp.wait_ended(secs(10)));
    let status = ok(answer.wait_exit(secs(15)));
    let out = answer.stdout();
    assert_eq!(status.code(), Some(0), "{out}\n{}", answer.tails());
    ok(lp.quit(secs(10)));
    assert_media(&out, "pcmu", "no", "tandem-cli");
    assert_tone(
        &cli_rec,
        TONE_CALLER,
        SNR_FLOOR_DB,
        secs(2),
        "tandem-cli hears linphonec",
    );
    assert_tone(
        &lp_rec,
        TONE_CALLEE,
        SNR_FLOOR_DB,
        secs(2),
        "linphonec hears tandem-cli",
    );
}
