//! Hold and resume with baresip through the lab server, both ways, checked in the audio:
//! - `tandem-cli` holds (stdin `hold`/`resume`): baresip answers `recvonly` and stops sending, so `tandem-cli`'s
//!   recording has a silent stretch as long as the hold, with the tone before and after it;
//! - baresip holds (`hold`/`resume` over ctrl_tcp): `tandem-cli` prints `held by=remote` / `resumed by=remote`,
//!   sends nothing while held (its `sent` counter, read with stdin `quality`, stands still) and sends again after
//!   the resume. (baresip 1.0 itself stops decoding after its own hold and resume, even with another baresip, so
//!   its dump cannot show our audio coming back; and it sends nothing while it holds.)

use std::time::Duration;

use tandem_tests::process::Stream;
use tandem_tests::{
    Baresip, BaresipOptions, BaresipSource, ChildGuard, CliAccount, TestDir, Transport,
};

use crate::audio_baresip::{Registrar, Server};
use crate::audio_common::{
    Recording, SNR_FLOOR_DB, TONE_CALLEE, TONE_CALLER, assert_tone_active, call_bob_pcmu, num,
    tone_file,
};
use crate::common::{assert_exits_ok_verbose, ok, secs};

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
    let mut call = call_bob_pcmu(&alice, "cli-call", dir.path(), &tone, Some(&rec));
    ok(call.wait_for_line(Stream::Stdout, "answered", secs(10)));
    std::thread::sleep(Duration::from_millis(1500));
    ok(call.send_line("hold"));
    ok(call.wait_for_line(Stream::Stdout, "held", secs(5)));
    std::thread::sleep(HOLD);
    ok(call.send_line("resume"));
    ok(call.wait_for_line(Stream::Stdout, "resumed", secs(5)));
    std::thread::sleep(Duration::from_millis(2000));
    ok(call.send_line("hangup"));
    let out = assert_exits_ok_verbose(&mut call, secs(15));
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
    // About 3.5 s of tone around a 2.5 s hold (longer when the machine is loaded).
    assert_tone_active(
        &rec_path,
        TONE_CALLEE,
        SNR_FLOOR_DB,
        secs(4),
        0.35,
        "tandem-cli hears baresip",
    );
}

/// Asks a running `tandem-cli` for a `quality` line over stdin and returns it.
fn query_quality(cli: &mut ChildGuard) -> String {
    let pattern = "quality .*report=query";
    let before = cli.matching_lines(Stream::Stdout, pattern).len();
    ok(cli.send_line("quality"));
    ok(cli.wait_for_nth_line(Stream::Stdout, pattern, before + 1, secs(5)))
}

#[test]
fn baresip_holds_and_resumes_cli() {
    let dir = ok(TestDir::new("audio-hold-remote"));
    let (_registrar, mut bob, alice) = setup(&dir);
    let tone_path = tone_file(dir.path(), TONE_CALLER);
    let tone = tone_path.display().to_string();
    let rec_path = dir.path().join("alice-heard.wav");
    let rec = rec_path.display().to_string();
    let mut call = call_bob_pcmu(&alice, "cli-call", dir.path(), &tone, Some(&rec));
    ok(bob.wait_event_type("CALL_ESTABLISHED", secs(10)));
    std::thread::sleep(Duration::from_millis(1500));
    ok(bob.command("hold", "", secs(5)));
    ok(call.wait_for_line(Stream::Stdout, "held.*by=remote", secs(5)));
    let hold_start = query_quality(&mut call);
    std::thread::sleep(HOLD);
    let hold_end = query_quality(&mut call);
    ok(bob.command("resume", "", secs(5)));
    ok(call.wait_for_line(Stream::Stdout, "resumed.*by=remote", secs(5)));
    let resumed = query_quality(&mut call);
    std::thread::sleep(Duration::from_millis(2000));
    let later = query_quality(&mut call);
    ok(call.send_line("hangup"));
    ok(bob.wait_event_type("CALL_CLOSED", secs(10)));
    assert_exits_ok_verbose(&mut call, secs(15));

    // Held by a sendonly peer, we answer recvonly and send nothing.
    let sent_while_held = num(&hold_end, "sent") - num(&hold_start, "sent");
    assert!(
        sent_while_held <= 5.0,
        "tandem-cli sent {sent_while_held} packets while held:\n{hold_start}\n{hold_end}"
    );
    // Resumed: about 100 packets in 2 s.
    let sent_after = num(&later, "sent") - num(&resumed, "sent");
    assert!(
        sent_after >= 70.0,
        "tandem-cli sent only {sent_after} packets in the 2 s after the resume:\n{resumed}\n{later}"
    );
    // baresip 1.0 sends nothing while it holds (despite its sendonly): tone before and after.
    assert_tone_active(
        &rec_path,
        TONE_CALLEE,
        SNR_FLOOR_DB,
        secs(5),
        0.35,
        "tandem-cli hears baresip",
    );
}
