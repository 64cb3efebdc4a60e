//! `tandem-cli` video end to end: two CLI processes on loopback with `--video`,
//! `--video-size`, `--video-codec` and `--record-video`; the printed `video …` lines, the
//! recordings, a receive-only recorder, an audio-only caller, and usage errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{BIN, free_udp_port};

/// Kills the child on drop (also when a test fails).
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Guard {
    /// Waits for the process to exit (bounded) and returns its output.
    fn finish(mut self, secs: u64) -> Output {
        let mut child = self.0.take().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Starts alice answering one call (no registrar) with `extra` options; returns the process
/// and the URI that reaches her.
fn answerer(extra: &[&str]) -> (Guard, String) {
    let port = free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "--user",
        "alice",
        "--domain",
        "127.0.0.1",
        "--listen",
        &listen,
        "answer",
        "--no-register",
        "--count",
        "1",
    ];
    args.extend_from_slice(extra);
    let child = Command::new(BIN)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    (Guard(Some(child)), format!("sip:alice@127.0.0.1:{port}"))
}

/// bob calls `target` for `secs` seconds with `extra` options.
fn call(target: &str, secs: &str, extra: &[&str]) -> Output {
    let mut args = call_args(target, secs);
    args.extend_from_slice(extra);
    Command::new(BIN).args(&args).output().unwrap()
}

/// The arguments for bob to call `target` for `secs` seconds (on loopback, no registrar).
fn call_args<'a>(target: &'a str, secs: &'a str) -> Vec<&'a str> {
    vec![
        "--user",
        "bob",
        "--domain",
        "127.0.0.1",
        "--listen",
        "127.0.0.1:0",
        "call",
        target,
        "--duration",
        secs,
    ]
}

fn line<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with(prefix))
        .map(String::as_str)
}

/// The numeric `key=` of a line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .parse()
        .unwrap()
}

/// The size and frame count of a Y4M recording (`FRAME` lines without parameters).
fn recording(path: &Path) -> (u32, u32, u64) {
    let data = std::fs::read(path).unwrap();
    let header_end = data.iter().position(|b| *b == b'\n').unwrap();
    let header = std::str::from_utf8(&data[..header_end]).unwrap();
    assert!(header.starts_with("YUV4MPEG2 "), "{header}");
    let get = |p: char| -> u32 {
        header
            .split_whitespace()
            .find_map(|t| t.strip_prefix(p))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (w, h) = (get('W'), get('H'));
    let frame = 6 + (w * h + 2 * w.div_ceil(2) * h.div_ceil(2)) as usize;
    let body = data.len() - header_end - 1;
    assert_eq!(body % frame, 0, "whole frames only");
    (w, h, (body / frame) as u64)
}

#[test]
fn video_both_ways_with_recordings() {
    let dir = tempfile::tempdir().unwrap();
    let alice_rec = dir.path().join("alice.y4m");
    let bob_rec = dir.path().join("bob.y4m");
    let (alice, target) = answerer(&[
        "--video",
        "pattern",
        "--video-size",
        "160x120",
        "--video-codec",
        "h264",
        "--record-video",
        alice_rec.to_str().unwrap(),
    ]);
    let out = call(
        &target,
        "3",
        &[
            "--video",
            "pattern",
            "--video-size",
            "160x120",
            "--video-fps",
            "15",
            "--record-video",
            bob_rec.to_str().unwrap(),
        ],
    );
    let bob = lines(&out);
    assert_eq!(out.status.code(), Some(0), "{bob:?}");
    let alice = lines(&alice.finish(10));
    for (who, l) in [("alice", &alice), ("bob", &bob)] {
        assert_eq!(
            line(l, "video started"),
            Some("video started codec=H264 pt=97 send=160x120@15 recv=yes"),
            "{who}: {l:?}"
        );
        assert_eq!(
            line(l, "video first-frame"),
            Some("video first-frame 160x120"),
            "{who}: {l:?}"
        );
        let stats = line(l, "video stats").unwrap_or_else(|| panic!("{who}: {l:?}"));
        assert!(field(stats, "sent") >= 25, "{who}: {stats}");
        assert!(field(stats, "decoded") >= 25, "{who}: {stats}");
        assert!(field(stats, "keyframes") >= 1, "{who}: {stats}");
        assert_eq!(field(stats, "decode_errors"), 0, "{who}: {stats}");
        // The stats come after the final quality line, before `ended`.
        let pos = |p: &str| l.iter().position(|x| x.starts_with(p)).unwrap();
        assert!(pos("video stats") < pos("ended"), "{who}: {l:?}");
    }
    for (who, rec, l) in [("alice", &alice_rec, &alice), ("bob", &bob_rec, &bob)] {
        let (w, h, frames) = recording(rec);
        assert_eq!((w, h), (160, 120), "{who}");
        let decoded = field(line(l, "video stats").unwrap(), "decoded");
        // Every decoded frame is recorded (the last one may race the hang-up).
        assert!(
            frames <= decoded && frames + 1 >= decoded,
            "{who}: {frames} frames recorded, {decoded} decoded"
        );
    }
}

#[test]
fn receive_only_recording_and_audio_only_caller() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("in.y4m");
    // bob only records: he offers recvonly video, alice sends VP8.
    let (alice, target) = answerer(&["--video", "pattern", "--video-size", "176x144"]);
    let out = call(&target, "2", &["--record-video", rec.to_str().unwrap()]);
    let bob = lines(&out);
    assert_eq!(out.status.code(), Some(0), "{bob:?}");
    assert_eq!(
        line(&bob, "video started"),
        Some("video started codec=VP8 pt=96 send=no recv=yes"),
        "{bob:?}"
    );
    let alice = lines(&alice.finish(10));
    assert_eq!(
        line(&alice, "video started"),
        Some("video started codec=VP8 pt=96 send=176x144@15 recv=no"),
        "{alice:?}"
    );
    let stats = line(&bob, "video stats").unwrap();
    assert_eq!(field(stats, "sent"), 0, "{stats}");
    let (w, h, frames) = recording(&rec);
    assert_eq!((w, h), (176, 144));
    assert!(frames >= 15, "{frames} frames");

    // An audio-only caller: the answerer's video options change nothing.
    let (alice, target) = answerer(&["--video", "pattern"]);
    let out = call(&target, "1", &[]);
    let bob = lines(&out);
    assert_eq!(out.status.code(), Some(0), "{bob:?}");
    assert!(bob.iter().all(|l| !l.starts_with("video")), "{bob:?}");
    let alice = lines(&alice.finish(10));
    assert!(alice.iter().all(|l| !l.starts_with("video")), "{alice:?}");
}

#[test]
fn video_usage_errors_exit_2() {
    let cases: &[&[&str]] = &[
        &["call", "b", "--video", "/nonexistent/clip.y4m"],
        &["call", "b", "--video-codec", "vp8"],
        &["call", "b", "--video", "pattern", "--video-codec", "theora"],
        &["call", "b", "--video", "pattern", "--video-size", "10x10"],
        &["call", "b", "--video", "pattern", "--video-fps", "0"],
        &["answer", "--video", "pattern", "--video-size", "640"],
    ];
    common::assert_usage_errors(cases);
}

/// Reads a child's stdout lines on a thread.
fn line_reader(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line starting with `prefix`; returns it.
fn wait_line(
    rx: &std::sync::mpsc::Receiver<String>,
    prefix: &str,
    seen: &mut Vec<String>,
) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| panic!("no {prefix:?} line; saw {seen:?}"));
        seen.push(line.clone());
        if line.starts_with(prefix) {
            return line;
        }
    }
}

#[test]
fn stdin_turns_video_on_and_off() {
    use std::io::Write;
    let (alice, target) = answerer(&["--video", "pattern", "--video-size", "160x120"]);
    let mut child = Command::new(BIN)
        .args(call_args(&target, "30"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = line_reader(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    let bob = Guard(Some(child));
    let mut seen = Vec::new();
    wait_line(&rx, "answered", &mut seen);
    assert!(seen.iter().all(|l| !l.starts_with("video")), "{seen:?}");
    writeln!(stdin, "camera pattern:160x120@15").unwrap();
    writeln!(stdin, "video on").unwrap();
    stdin.flush().unwrap();
    assert_eq!(
        wait_line(&rx, "video started", &mut seen),
        "video started codec=VP8 pt=96 send=160x120@15 recv=yes"
    );
    assert_eq!(
        wait_line(&rx, "video first-frame", &mut seen),
        "video first-frame 160x120"
    );
    writeln!(stdin, "video off").unwrap();
    stdin.flush().unwrap();
    wait_line(&rx, "video stopped", &mut seen);
    writeln!(stdin, "hangup").unwrap();
    stdin.flush().unwrap();
    let stats = wait_line(&rx, "video stats", &mut seen);
    assert!(field(&stats, "decoded") >= 1, "{stats}");
    wait_line(&rx, "ended", &mut seen);
    assert!(seen.iter().all(|l| !l.starts_with("error")), "{seen:?}");
    drop(bob.finish(10));
    let alice = lines(&alice.finish(10));
    assert!(line(&alice, "video started").is_some(), "{alice:?}");
    assert!(line(&alice, "video stopped").is_some(), "{alice:?}");
}
