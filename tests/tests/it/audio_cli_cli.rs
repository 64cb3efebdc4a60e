//! Tone calls between two `tandem-cli`s (direct, no registrar): each side plays its own tone and records the
//! other's; Opus and PCMU, plain RTP, SDES-SRTP and DTLS-SRTP. Plus mute and hold, checked in the recordings.

use std::net::SocketAddr;

use std::time::Duration;

use tandem_tests::process::Stream;
use tandem_tests::sip::wait_until_answers;
use tandem_tests::{CliAccount, TestDir, Transport, free_port};

use crate::audio_common::{
    Recording, SNR_FLOOR_DB, TONE_CALLEE, TONE_CALLER, answer_args, assert_media, assert_tone,
    assert_tone_active, last_quality, num, tone_file,
};
use crate::common::{assert_exit, assert_exits_ok_verbose, ok, secs};

fn tone_call(codec: &str, srtp: &str) {
    tone_call_keyed(codec, srtp, "sdes");
}

fn tone_call_keyed(codec: &str, srtp: &str, keying: &str) {
    let dir = ok(TestDir::new(&format!("audio-cli-{codec}-{srtp}-{keying}")));
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
            "--srtp-keying",
            keying,
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
            "--srtp-keying",
            keying,
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
    let bob_out = assert_exits_ok_verbose(&mut answer, secs(15));

    let secure = if srtp == "off" { "no" } else { keying };
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

#[test]
fn cli_cli_opus_dtls() {
    tone_call_keyed("opus", "mandatory", "dtls");
}

/// A mutes for about a second (stdin `mute`/`unmute`): B's recording has a matching silence. A holds and resumes
/// (`--hold-after`/`--resume-after`): B answers recvonly and stops sending, so A's recording has a matching silence.
#[test]
fn cli_cli_mute_and_hold_in_the_audio() {
    let dir = ok(TestDir::new("audio-cli-mute-hold"));
    let caller_tone = tone_file(dir.path(), TONE_CALLER).display().to_string();
    let callee_tone = tone_file(dir.path(), TONE_CALLEE).display().to_string();
    let caller_rec = dir.path().join("alice-heard.wav");
    let callee_rec = dir.path().join("bob-heard.wav");
    let bob_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let bob = CliAccount::direct("bob", bob_addr);
    let bob_rec = callee_rec.display().to_string();
    let mut answer = ok(bob.spawn(
        "cli-answer",
        &answer_args(
            &callee_tone,
            &bob_rec,
            &["--no-register", "--codec", "pcmu"],
        ),
        dir.path(),
    ));
    ok(wait_until_answers(bob_addr, Transport::Udp, secs(10)));
    let alice = CliAccount::direct("alice", SocketAddr::from(([127, 0, 0, 1], 0)));
    let alice_rec = caller_rec.display().to_string();
    let target = bob.direct_uri();
    let mut call = ok(alice.spawn_interactive(
        "cli-call",
        &[
            "call",
            &target,
            "--duration",
            "6",
            "--codec",
            "pcmu",
            "--play",
            &caller_tone,
            "--record",
            &alice_rec,
            "--hold-after",
            "1",
            "--resume-after",
            "2.5",
        ],
        dir.path(),
    ));
    ok(call.wait_for_line(Stream::Stdout, "resumed by=local", secs(10)));
    std::thread::sleep(Duration::from_millis(1000));
    ok(call.send_line("mute"));
    ok(call.wait_for_line(Stream::Stdout, "muted", secs(5)));
    std::thread::sleep(Duration::from_millis(1000));
    ok(call.send_line("unmute"));
    ok(call.wait_for_line(Stream::Stdout, "unmuted", secs(5)));
    assert_exits_ok_verbose(&mut call, secs(15));
    ok(answer.wait_exit(secs(15)));
    let bob_out = answer.stdout();
    assert!(
        bob_out.contains("held by=remote") && bob_out.contains("resumed by=remote"),
        "{bob_out}"
    );

    // A's recording: B's tone, a ~1.5 s silence for the hold, the tone again.
    let a = Recording::read(&caller_rec);
    let gap = a.longest_gap(Duration::from_millis(500));
    assert!(
        (Duration::from_millis(1000)..=Duration::from_millis(2300)).contains(&gap),
        "hold silence at A: {gap:?}, segments {:?}",
        a.segments()
    );
    // B's recording: A's tone, a ~1 s silence for the mute, the tone again; the hold (A sendonly) kept A's audio.
    let b = Recording::read(&callee_rec);
    let gap = b.longest_gap(Duration::from_millis(500));
    assert!(
        (Duration::from_millis(600)..=Duration::from_millis(1800)).contains(&gap),
        "mute silence at B: {gap:?}, segments {:?}",
        b.segments()
    );
    let last = b.segments().last().copied().unwrap_or_default();
    assert!(
        last.1 - last.0 >= Duration::from_millis(800),
        "A's audio did not come back after unmute: {:?}",
        b.segments()
    );
    assert_tone_active(
        &caller_rec,
        TONE_CALLEE,
        SNR_FLOOR_DB,
        secs(4),
        0.5,
        "alice hears bob",
    );
    assert_tone_active(
        &callee_rec,
        TONE_CALLER,
        SNR_FLOOR_DB,
        secs(4),
        0.5,
        "bob hears alice",
    );
}
