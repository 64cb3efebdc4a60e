//! Tone calls between two `tandem-cli`s (direct, no registrar): each side plays its own tone and records the
//! other's; Opus and PCMU, plain RTP and SDES-SRTP.

use std::net::SocketAddr;

use tandem_tests::sip::wait_until_answers;
use tandem_tests::{CliAccount, TestDir, Transport, free_port};

use crate::audio_common::{
    SNR_FLOOR_DB, TONE_CALLEE, TONE_CALLER, assert_media, assert_tone, last_quality, num, tone_file,
};
use crate::common::{assert_exit, ok, secs};

fn tone_call(codec: &str, srtp: &str) {
    let dir = ok(TestDir::new(&format!("audio-cli-{codec}-{srtp}")));
    let caller_tone = tone_file(dir.path(), TONE_CALLER);
    let callee_tone = tone_file(dir.path(), TONE_CALLEE);
    let caller_rec = dir.path().join("alice-heard.wav");
    let callee_rec = dir.path().join("bob-heard.wav");

    let bob_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let bob = CliAccount::direct("bob", bob_addr);
    let bob_tone = callee_tone.display().to_string();
    let bob_rec = callee_rec.display().to_string();
    let mut answer = ok(bob.spawn(
        "cli-answer",
        &[
            "--srtp",
            srtp,
            "answer",
            "--no-register",
            "--count",
            "1",
            "--play",
            &bob_tone,
            "--record",
            &bob_rec,
            "--codec",
            codec,
        ],
        dir.path(),
    ));
    ok(wait_until_answers(bob_addr, Transport::Udp, secs(10)));

    let alice = CliAccount::direct("alice", SocketAddr::from(([127, 0, 0, 1], 0)));
    let target = bob.direct_uri();
    let alice_tone = caller_tone.display().to_string();
    let alice_rec = caller_rec.display().to_string();
    let call = ok(alice.run(
        "cli-call",
        &[
            "--srtp",
            srtp,
            "call",
            &target,
            "--duration",
            "3",
            "--timeout",
            "10",
            "--play",
            &alice_tone,
            "--record",
            &alice_rec,
            "--codec",
            codec,
        ],
        dir.path(),
        secs(30),
    ));
    assert_exit(&call, 0);
    let status = ok(answer.wait_exit(secs(15)));
    let bob_out = answer.stdout();
    assert_eq!(
        status.code(),
        Some(0),
        "answer:\n{bob_out}\n{}",
        answer.tails()
    );

    let secure = if srtp == "off" { "no" } else { "sdes" };
    assert_media(&call.stdout, codec, secure, "caller");
    assert_media(&bob_out, codec, secure, "callee");
    assert_tone(
        &caller_rec,
        TONE_CALLEE,
        SNR_FLOOR_DB,
        secs(2),
        "alice hears bob",
    );
    assert_tone(
        &callee_rec,
        TONE_CALLER,
        SNR_FLOOR_DB,
        secs(2),
        "bob hears alice",
    );
    for (who, out) in [
        ("caller", call.stdout.as_str()),
        ("callee", bob_out.as_str()),
    ] {
        let q = last_quality(out, who);
        assert!(num(q, "loss") < 1.0, "{who}: loss on loopback: {q}");
        if srtp != "off" {
            assert_eq!(num(q, "srtp_auth_failures"), 0.0, "{who}: {q}");
        }
    }
}

#[test]
fn cli_cli_opus_plain() {
    tone_call("opus", "off");
}

#[test]
fn cli_cli_pcmu_plain() {
    tone_call("pcmu", "off");
}

#[test]
fn cli_cli_opus_sdes() {
    tone_call("opus", "mandatory");
}

#[test]
fn cli_cli_pcmu_sdes() {
    tone_call("pcmu", "mandatory");
}
