//! Hold and resume with baresip through the lab server, both ways, checked in the audio:
//! - `tandem-cli` holds (stdin `hold`/`resume`): baresip answers `recvonly` and stops sending, so `tandem-cli`'s
//!   recording has a silent stretch as long as the hold, with the tone before and after it;
//! - baresip holds (`hold`/`resume` over ctrl_tcp): `tandem-cli` prints `held by=remote` / `resumed by=remote`
//!   and stops sending while held, so baresip decodes less audio than the call lasted, and the tone comes back.

use std::time::{Duration, Instant};

use tandem_tests::process::Stream;
use tandem_tests::{Baresip, BaresipOptions, BaresipSource, CliAccount, TestDir, Transport};

use crate::audio_baresip::{Registrar, Server, baresip_recording};
use crate::audio_common::{
    Recording, SNR_FLOOR_DB, TONE_CALLEE, TONE_CALLER, assert_tone, tone_file,
};
use crate::common::{ok, secs};

/// How long each test keeps the call on hold.
const HOLD: Duration = Duration::from_millis(2500);

fn setup(dir: &TestDir) -> (Registrar, Baresip, CliAccount) {
    let registrar = Registrar::start(Server::Lab, dir);
    let proxy = registrar.udp();
    let mut opts = BaresipOptions::new("bob", "127.0.0.1", "bobpw", proxy);
    opts.auto_answer = true;
    opts.source = BaresipSource::File(tone_file(dir.path(), TONE_CALLEE));
    opts.record = true;
    opts.audio_codecs = Some("PCMU/8000/1".into());
    let mut bob = ok(Baresip::start(opts, dir.path()));
    ok(bob.wait_registered(secs(10)));
    let alice = CliAccount::new("alice", "127.0.0.1", "alicepw", proxy, Transport::Udp);
    (registrar, bob, alice)
}

#[test]
fn cli_holds_and_resumes_baresip() {
    let dir = ok(TestDir::new("audio-hold-local"));
    let (_registrar, mut bob, alice) = setup(&dir);
    let tone = tone_file(dir.path(), TONE_CALLER).display().to_string();
    let rec_path = dir.path().join("alice-heard.wav");
    let rec = rec_path.display().to_string();
    let mut call = ok(alice.spawn_interactive(
        "cli-call",
        &[
            "call",
            "sip:bob@127.0.0.1",
            "--duration",
            "60",
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
    ));
    ok(call.wait_for_line(Stream::Stdout, "answered", secs(10)));
    std::thread::sleep(Duration::from_millis(1500));
    ok(call.send_line("hold"));
    ok(call.wait_for_line(Stream::Stdout, "held", secs(5)));
    std::thread::sleep(HOLD);
    ok(call.send_line("resume"));
    ok(call.wait_for_line(Stream::Stdout, "resumed", secs(5)));
    std::thread::sleep(Duration::from_millis(2000));
    ok(call.send_line("hangup"));
    let status = ok(call.wait_exit(secs(15)));
    let out = call.stdout();
    assert_eq!(status.code(), Some(0), "{out}\n{}", call.tails());
    assert!(
        out.lines()
            .any(|l| l.starts_with("held") && l.contains("by=local")),
        "{out}"
    );
    ok(bob.wait_event_type("CALL_CLOSED", secs(10)));

    let heard = Recording::read(&rec_path);
    let segments = heard.segments();
    let gap = heard.longest_gap(Duration::from_millis(800));
    assert!(
        gap >= HOLD - Duration::from_millis(800) && gap <= HOLD + Duration::from_millis(1500),
        "the hold should leave a silence of about {HOLD:?}, the longest is {gap:?}; segments {segments:?}"
    );
    // Tone before the hold and after the resume.
    let first = segments.first().copied().unwrap_or_default();
    let last = segments.last().copied().unwrap_or_default();
    assert!(
        segments.len() >= 2 && first.1 - first.0 >= Duration::from_millis(800),
        "no tone before the hold: {segments:?}"
    );
    assert!(
        last.1 - last.0 >= Duration::from_millis(1200),
        "the tone did not come back after the resume: {segments:?}"
    );
    assert_tone(
        &rec_path,
        TONE_CALLEE,
        SNR_FLOOR_DB,
        secs(4),
        "tandem-cli hears baresip",
    );
}

#[test]
fn baresip_holds_and_resumes_cli() {
    let dir = ok(TestDir::new("audio-hold-remote"));
    let (_registrar, mut bob, alice) = setup(&dir);
    let tone_path = tone_file(dir.path(), TONE_CALLER);
    let tone = tone_path.display().to_string();
    let rec_path = dir.path().join("alice-heard.wav");
    let rec = rec_path.display().to_string();
    let mut call = ok(alice.spawn_interactive(
        "cli-call",
        &[
            "call",
            "sip:bob@127.0.0.1",
            "--duration",
            "60",
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
    ));
    ok(bob.wait_event_type("CALL_ESTABLISHED", secs(10)));
    let established = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    ok(bob.command("hold", "", secs(5)));
    ok(call.wait_for_line(Stream::Stdout, "held.*by=remote", secs(5)));
    std::thread::sleep(HOLD);
    ok(bob.command("resume", "", secs(5)));
    ok(call.wait_for_line(Stream::Stdout, "resumed.*by=remote", secs(5)));
    std::thread::sleep(Duration::from_millis(2000));
    ok(call.send_line("hangup"));
    ok(bob.wait_event_type("CALL_CLOSED", secs(10)));
    let call_time = established.elapsed();
    let status = ok(call.wait_exit(secs(15)));
    assert_eq!(
        status.code(),
        Some(0),
        "{}\n{}",
        call.stdout(),
        call.tails()
    );

    // While held (baresip sendonly, we recvonly) tandem-cli must not send: baresip decoded less than the call.
    let dump = baresip_recording(&bob, 1);
    let decoded = Recording::read(&dump).duration();
    assert!(
        decoded + HOLD - Duration::from_millis(1000) <= call_time,
        "baresip decoded {decoded:?} of a {call_time:?} call with a {HOLD:?} hold: tandem-cli kept sending"
    );
    assert!(decoded >= secs(2), "baresip decoded only {decoded:?}");
    assert_tone(
        &dump,
        TONE_CALLER,
        SNR_FLOOR_DB,
        secs(2),
        "baresip hears tandem-cli",
    );
    // baresip keeps sending while it holds (sendonly): our recording has the tone throughout, to the end.
    let heard = Recording::read(&rec_path);
    let last = heard.segments().last().copied().unwrap_or_default();
    assert!(
        heard.duration().saturating_sub(last.1) <= Duration::from_millis(600),
        "the tone stopped before the end: {:?} of {:?}",
        heard.segments(),
        heard.duration()
    );
}
