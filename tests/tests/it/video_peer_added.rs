//! "Bob turned on video": the peer adds video to an audio call and tandem-cli answers its re-INVITE at once per
//! `--video-policy` (receive-only into `--record-video`), prints `video offered by peer …`, and with
//! `--accept-video` turns its own camera on (a re-INVITE making the video two-way).
//!
//! Against baresip 1.0: tandem-cli calls audio-only; baresip's `video_dir sendrecv` command re-offers the call
//! with its video line (libre adds the `m=video` line its call always had), sending our pattern from a Y4M file.
//! Between two tandem-clis: the caller's `video on` on stdin; the callee's policy `receive` records it without
//! asking, and `never` declines it while the audio goes on.

use std::path::Path;
use std::time::{Duration, Instant};

use tandem_tests::process::{ChildGuard, Stream};
use tandem_tests::video::{check_recording, last_line, line_fields};
use tandem_tests::{
    Baresip, BaresipOptions, BaresipVideo, BaresipVideoSource, CliAccount, LabOptions, LabServer,
    TestDir, Transport,
};

use crate::common::{assert_exits_ok_verbose, baresip_lab, ok, secs};

/// baresip's picture size.
const BARESIP_SIZE: (u32, u32) = (320, 240);
/// tandem-cli's pattern size (so each side's decoded size proves it decoded the other's stream).
const CLI_SIZE: (u32, u32) = (352, 288);
const FPS: u32 = 15;

fn wait_line(child: &mut ChildGuard, prefix: &str, within: Duration) -> String {
    match child.wait_for_line(Stream::Stdout, prefix, within) {
        Ok(line) => line,
        Err(e) => panic!("{e}\n{}", child.tails()),
    }
}

/// The `video started` lines of a tandem-cli output, in order.
fn started_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("video started"))
        .collect()
}

/// Checks a recording of the pattern: `size`, at least `min_frames`, the counter advancing.
fn assert_pattern_recorded(path: &Path, size: (u32, u32), min_frames: u64, who: &str) {
    let rec = ok(check_recording(path));
    eprintln!("{who} recorded: {}", rec.summary());
    rec.assert_size(size.0, size.1, who);
    rec.assert_min_frames(min_frames, who);
    rec.assert_counter_advances(0.8, (min_frames / 2) as u32, 2 * FPS, 2 * FPS as usize, who);
}

/// baresip adds video to tandem-cli's audio call: tandem-cli takes it receive-only at once (its recording gets
/// baresip's pattern), then `--accept-video` turns our pattern on and baresip decodes it.
#[test]
fn video_baresip_adds_video_mid_call() {
    let dir = ok(TestDir::new("video-peer-added-baresip"));
    let source = dir.path().join("bob-source.y4m");
    ok(tandem_tests::video::write_pattern_y4m(
        &source,
        BARESIP_SIZE.0,
        BARESIP_SIZE.1,
        FPS,
        40,
    ));
    let mut lab = baresip_lab(&dir);
    let mut opts = BaresipOptions::new("bob", lab.domain(), "bobpw", lab.udp());
    opts.auto_answer = true;
    let mut video = BaresipVideo::vp8(
        BARESIP_SIZE.0,
        BARESIP_SIZE.1,
        BaresipVideoSource::File(source),
    );
    video.fps = FPS;
    video.bitrate_bps = 800_000;
    opts.video = Some(video);
    let mut bob = ok(Baresip::start(opts, dir.path()));
    ok(bob.wait_registered(secs(10)));

    let alice = CliAccount::new("alice", lab.domain(), "alicepw", lab.udp(), Transport::Udp);
    let rec = dir.path().join("alice-saw.y4m");
    let rec_arg = rec.display().to_string();
    let size = format!("{}x{}", CLI_SIZE.0, CLI_SIZE.1);
    let fps = FPS.to_string();
    let mut call = ok(alice.spawn_interactive(
        "cli-call",
        &[
            "call",
            "sip:bob@127.0.0.1",
            "--timeout",
            "15",
            "--video-policy",
            "ask",
            "--accept-video",
            "pattern",
            "--video-size",
            &size,
            "--video-fps",
            &fps,
            "--video-codec",
            "vp8",
            "--record-video",
            &rec_arg,
        ],
        dir.path(),
    ));
    ok(bob.wait_event_type("CALL_ESTABLISHED", secs(15)));
    wait_line(&mut call, "answered", secs(10));
    std::thread::sleep(secs(1));
    assert!(
        !call.stdout().contains("video started"),
        "tandem-cli offered video by itself:\n{}",
        call.stdout()
    );
    // baresip turns its video on: a re-INVITE with its m=video line.
    ok(bob.command("video_dir", "sendrecv", secs(5)));
    let offered = wait_line(&mut call, "video offered by peer", secs(10));
    let f = line_fields(&offered);
    assert_eq!(f.get("receiving"), Some(&"yes"), "{offered}");
    assert_eq!(f.get("ask"), Some(&"yes"), "{offered}");
    let first = wait_line(&mut call, "video first-frame", secs(15));
    assert_eq!(
        first,
        format!("video first-frame {}x{}", BARESIP_SIZE.0, BARESIP_SIZE.1)
    );
    // --accept-video: our camera goes on; baresip decodes our pattern at our size.
    let start = Instant::now();
    let stats = loop {
        let stats = ok(bob.video_debug(secs(5)));
        if let Some(s) = &stats
            && s.decoded_frames >= u64::from(FPS)
        {
            break s.clone();
        }
        assert!(
            start.elapsed() < secs(20),
            "baresip decoded too little of ours: {stats:#?}\n{}",
            call.tails()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!("baresip: {}", stats.raw);
    assert_eq!(
        (stats.decoded_width, stats.decoded_height),
        CLI_SIZE,
        "{}",
        stats.raw
    );
    std::thread::sleep(secs(2));
    ok(call.send_line("hangup"));
    let out = assert_exits_ok_verbose(&mut call, secs(15));
    ok(bob.wait_event_type("CALL_CLOSED", secs(10)));
    let started = started_lines(&out);
    let first = line_fields(started.first().expect("video started"));
    assert_eq!(first.get("send"), Some(&"no"), "{out}");
    assert_eq!(first.get("recv"), Some(&"yes"), "{out}");
    let last = line_fields(last_line(&out, "video started").expect("video started"));
    assert_eq!(
        last.get("send").copied(),
        Some(format!("{size}@{FPS}").as_str()),
        "{out}"
    );
    assert_pattern_recorded(&rec, BARESIP_SIZE, u64::from(FPS) * 2, "tandem-cli");
    assert!(lab.is_running());
    assert!(bob.is_running());
}

/// Runs a tandem-cli ↔ tandem-cli call where the caller turns video on mid-call and the callee answers with
/// `policy`; returns (caller's stdout, callee's stdout).
fn cli_adds_video(dir: &TestDir, policy: &str, record: Option<&Path>) -> (String, String) {
    let mut lab = ok(LabServer::start(
        LabOptions::default()
            .user("alice", "alicepw")
            .user("bob", "bobpw"),
        dir.path(),
    ));
    let alice = CliAccount::new("alice", lab.domain(), "alicepw", lab.udp(), Transport::Udp);
    let bob = CliAccount::new("bob", lab.domain(), "bobpw", lab.udp(), Transport::Udp);
    let rec_arg = record.map(|p| p.display().to_string());
    let mut bob_args = vec!["answer", "--count", "1", "--video-policy", policy];
    if let Some(r) = &rec_arg {
        bob_args.extend(["--record-video", r.as_str()]);
    }
    let mut answer = ok(bob.spawn("cli-answer", &bob_args, dir.path()));
    wait_line(&mut answer, "registered", secs(10));
    let mut call = ok(alice.spawn_interactive(
        "cli-call",
        &["call", "sip:bob@127.0.0.1", "--timeout", "15"],
        dir.path(),
    ));
    wait_line(&mut call, "answered", secs(15));
    ok(call.send_line("video on"));
    let offered = wait_line(&mut answer, "video offered by peer", secs(10));
    if policy == "never" {
        wait_line(&mut call, "video rejected", secs(10));
    } else {
        wait_line(&mut answer, "video first-frame", secs(15));
    }
    std::thread::sleep(secs(3));
    // The call is still up: it answers a quality query.
    ok(call.send_line("quality"));
    wait_line(&mut call, "quality", secs(5));
    ok(call.send_line("hangup"));
    let caller = assert_exits_ok_verbose(&mut call, secs(15));
    let callee = assert_exits_ok_verbose(&mut answer, secs(15));
    assert!(callee.contains(&offered));
    assert!(lab.is_running());
    (caller, callee)
}

/// `--video-policy receive` with `--record-video`: the caller's `video on` is taken receive-only without asking;
/// the recording's counter advances; the caller sends only.
#[test]
fn video_cli_adds_video_cli_receives() {
    let dir = ok(TestDir::new("video-peer-added-cli-rec"));
    let rec = dir.path().join("bob-saw.y4m");
    let (caller, callee) = cli_adds_video(&dir, "receive", Some(&rec));
    let offered = line_fields(last_line(&callee, "video offered by peer").unwrap());
    assert_eq!(offered.get("receiving"), Some(&"yes"), "{callee}");
    assert_eq!(offered.get("ask"), Some(&"no"), "{callee}");
    let started = line_fields(last_line(&callee, "video started").unwrap());
    assert_eq!(started.get("send"), Some(&"no"), "{callee}");
    assert_eq!(started.get("recv"), Some(&"yes"), "{callee}");
    let ours = line_fields(last_line(&caller, "video started").unwrap());
    assert_eq!(ours.get("recv"), Some(&"no"), "{caller}");
    assert_pattern_recorded(&rec, (320, 240), u64::from(FPS) * 2, "the callee");
}

/// `--video-policy never`: the caller's video is declined (port 0) and the call goes on.
#[test]
fn video_cli_adds_video_cli_never() {
    let dir = ok(TestDir::new("video-peer-added-cli-never"));
    let (caller, callee) = cli_adds_video(&dir, "never", None);
    let offered = line_fields(last_line(&callee, "video offered by peer").unwrap());
    assert_eq!(offered.get("receiving"), Some(&"no"), "{callee}");
    assert!(!callee.contains("video started"), "{callee}");
    assert!(caller.contains("video rejected"), "{caller}");
    assert!(caller.contains("ended"), "{caller}");
}
