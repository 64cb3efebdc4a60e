//! Camera capture against a real PipeWire session: a private dbus-daemon + pipewire + wireplumber (see
//! `tandem_tests::pipewire`) with a virtual camera, `TandemTestCam`, published by `gst-launch-1.0 … !
//! pipewiresink mode=provide`: live colour bars in YUY2 (as USB webcams deliver) for the listing, and for the
//! rest a Y4M file of our test pattern (I420 320x240 at 15 fps, so every picture carries the frame counter).
//! GStreamer's PipeWire device provider lists it as it lists a webcam.
//!
//! Checked: `tandem-cli cameras` finds no camera before it is published and then lists it with its YUY2 320x240
//! 15 fps format, and records from it (YUY2 converted and scaled); `cameras --record` captures frames of the
//! asked size (scaled to 352x288) whose counter advances; a tandem-cli ↔ tandem-cli call sending `--video camera:TandemTestCam` delivers the camera's pictures
//! (the receiver's recording's counter advances); and a camera unplugged mid-call (its publisher killed) gives a
//! `video warning` while the call goes on to its planned end, with no hang. When PipeWire cannot start, the tests
//! fail with the daemons' logs.

use std::net::SocketAddr;
use std::path::PathBuf;

use tandem_tests::pipewire::PipewireSession;
use tandem_tests::process::Stream;
use tandem_tests::video::{check_recording, write_pattern_y4m};
use tandem_tests::{CliAccount, CliOutput, TestDir, free_port};

use crate::common::{assert_exit, assert_exits_ok_verbose, ok, secs};

/// The virtual camera's name.
const CAM: &str = "TandemTestCam";
/// Its picture.
const CAM_SIZE: (u32, u32) = (320, 240);
/// Its frame rate.
const FPS: u32 = 15;

/// A session with the camera published, playing `seconds` of the pattern.
struct Setup {
    // Dropped in this order: the publisher, the session's daemons, then the directory.
    camera: tandem_tests::pipewire::VirtualCamera,
    session: PipewireSession,
    dir: TestDir,
}

fn setup(name: &str, seconds: u32) -> Setup {
    let dir = ok(TestDir::new(name));
    let session = match PipewireSession::start(dir.path()) {
        Ok(s) => s,
        Err(e) => panic!("the PipeWire session for the camera tests did not start: {e}"),
    };
    let clip = dir.path().join("camera.y4m");
    ok(write_pattern_y4m(
        &clip, CAM_SIZE.0, CAM_SIZE.1, FPS, seconds,
    ));
    let camera = ok(session.publish_y4m_camera(CAM, &clip));
    Setup {
        camera,
        session,
        dir,
    }
}

/// A direct-mode account on loopback whose processes use the session.
fn account(user: &str, setup: &Setup, port: u16) -> CliAccount {
    let mut a = CliAccount::direct(user, SocketAddr::from(([127, 0, 0, 1], port)));
    a.env = setup.session.env();
    a
}

fn cameras(setup: &Setup, args: &[&str]) -> CliOutput {
    let alice = account("alice", setup, 0);
    let mut command = vec!["cameras"];
    command.extend_from_slice(args);
    ok(alice.run("cli-cameras", &command, setup.dir.path(), secs(40)))
}

#[test]
fn video_camera_listing() {
    let dir = ok(TestDir::new("video-camera-list"));
    let session = ok(PipewireSession::start(dir.path()));
    let mut alice = CliAccount::direct("alice", SocketAddr::from(([127, 0, 0, 1], 0)));
    alice.env = session.env();
    // Nothing published yet: no camera, said in words.
    let out = ok(alice.run("cli-cameras-none", &["cameras"], dir.path(), secs(40)));
    assert_exit(&out, 0);
    assert!(out.stdout.contains("cameras count=0"), "{}", out.dump());
    assert!(
        out.stderr.contains("no camera is connected"),
        "{}",
        out.dump()
    );
    let camera = ok(session.publish_bars_camera(CAM, CAM_SIZE.0, CAM_SIZE.1, FPS));
    let out = ok(alice.run("cli-cameras", &["cameras"], dir.path(), secs(40)));
    assert_exit(&out, 0);
    let line = out
        .events("camera")
        .into_iter()
        .find(|l| l.contains(CAM))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{CAM} not listed:\n{}", out.dump()));
    assert!(
        line.contains(&format!("id=pipewire:{CAM} name={CAM}")),
        "{line}"
    );
    assert!(
        line.contains(&format!("YUY2 {}x{} {FPS}fps", CAM_SIZE.0, CAM_SIZE.1)),
        "{line}"
    );
    assert!(out.stdout.contains("cameras count=1"), "{}", out.dump());
    // YUY2 in, I420 of the asked size out.
    let rec = dir.path().join("bars.y4m");
    let rec_arg = rec.display().to_string();
    let out = ok(alice.run(
        "cli-cameras-record",
        &[
            "cameras",
            "--record",
            &rec_arg,
            "--seconds",
            "2",
            "--video-size",
            "160x120",
        ],
        dir.path(),
        secs(40),
    ));
    assert_exit(&out, 0);
    assert!(
        out.stdout.contains("format=\"YUY2 320x240@15\""),
        "{}",
        out.dump()
    );
    let report = ok(check_recording(&rec));
    report.assert_size(160, 120, "bars");
    report.assert_min_frames(30, "bars");
    // videotestsrc's bars: not flat.
    report.assert_frames_change(0.0, 0.0, "bars");
    drop(camera);
}

#[test]
fn video_camera_capture() {
    let setup = setup("video-camera-capture", 30);
    let rec: PathBuf = setup.dir.path().join("captured.y4m");
    let rec_arg = rec.display().to_string();
    let out = cameras(
        &setup,
        &[
            "--record",
            &rec_arg,
            "--camera",
            "testcam",
            "--seconds",
            "4",
            "--video-size",
            "352x288",
            "--video-fps",
            "15",
        ],
    );
    assert_exit(&out, 0);
    assert!(
        out.stdout
            .contains(&format!("camera recording=pipewire:{CAM} name={CAM}")),
        "{}",
        out.dump()
    );
    assert!(out.stdout.contains("camera recorded=60"), "{}", out.dump());
    let report = ok(check_recording(&rec));
    eprintln!("{}", report.summary());
    report.assert_size(352, 288, "capture");
    report.assert_min_frames(60, "capture");
    // Scaled from 320x240 to 352x288: the counter survives. The camera runs in real time and the capture keeps at
    // most two pictures, so a loaded machine may skip some, but never freezes for a second (15 frames).
    report.assert_counter_advances(0.95, 40, 15, 2, "capture");
    report.assert_frames_change(0.8, 0.0, "capture");
}

/// alice calls bob (receive-only, recording) sending the camera; returns alice's output, bob's output and bob's
/// recording path. With `unplug_after`, the camera is unplugged that long after bob saw the first frame.
fn camera_call(
    setup: &mut Setup,
    talk: u32,
    unplug_after: Option<u64>,
) -> (String, String, PathBuf) {
    let bob_rec = setup.dir.path().join("bob-saw.y4m");
    let bob = account("bob", setup, free_port());
    let alice = account("alice", setup, 0);
    let bob_rec_arg = bob_rec.display().to_string();
    let mut answer = ok(bob.spawn(
        "cli-answer",
        &[
            "answer",
            "--count",
            "1",
            "--no-register",
            "--video-codec",
            "vp8",
            "--record-video",
            &bob_rec_arg,
        ],
        setup.dir.path(),
    ));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(answer.is_running(), "{}", answer.tails());
    let target = bob.direct_uri();
    let talk_arg = talk.to_string();
    let video = format!("camera:{CAM}");
    let mut call = ok(alice.spawn(
        "cli-call",
        &[
            "call",
            &target,
            "--duration",
            &talk_arg,
            "--timeout",
            "15",
            "--video",
            &video,
            "--video-size",
            "320x240",
            "--video-fps",
            "15",
            "--video-codec",
            "vp8",
        ],
        setup.dir.path(),
    ));
    ok(answer.wait_for_line(Stream::Stdout, "video first-frame", secs(30)));
    if let Some(after) = unplug_after {
        std::thread::sleep(secs(after));
        setup.camera.unplug();
    }
    let alice_out = assert_exits_ok_verbose(&mut call, secs(u64::from(talk) + 30));
    ok(answer.wait_for_line(Stream::Stdout, "ended", secs(15)));
    let bob_out = assert_exits_ok_verbose(&mut answer, secs(15));
    (alice_out, bob_out, bob_rec)
}

#[test]
fn video_camera_call() {
    let mut setup = setup("video-camera-call", 40);
    let talk = 8;
    let (alice, bob, rec) = camera_call(&mut setup, talk, None);
    assert!(
        alice.contains("video started codec=VP8") && alice.contains("send=320x240@15"),
        "alice:\n{alice}"
    );
    assert!(!alice.contains("video warning"), "alice:\n{alice}");
    assert!(bob.contains("video first-frame 320x240"), "bob:\n{bob}");
    let report = ok(check_recording(&rec));
    eprintln!("{}", report.summary());
    report.assert_size(320, 240, "bob");
    report.assert_min_frames(u64::from(FPS * talk / 2), "bob");
    // The camera's pictures, in order, to the end of the call.
    report.assert_counter_advances(0.9, FPS * talk / 2, FPS, FPS as usize, "bob");
}

#[test]
fn video_camera_unplugged_mid_call() {
    let mut setup = setup("video-camera-unplug", 40);
    let talk = 10;
    let (alice, bob, rec) = camera_call(&mut setup, talk, Some(3));
    assert!(!setup.camera.is_running());
    // The loss is reported, and the call went on to its planned end (alice exited 0 after --duration).
    let warning = alice
        .lines()
        .find(|l| l.starts_with("video warning") && l.contains(CAM))
        .unwrap_or_else(|| panic!("no video warning naming the camera:\n{alice}"));
    eprintln!("alice: {warning}");
    assert!(alice.contains("ended"), "alice:\n{alice}");
    assert!(bob.contains("ended"), "bob:\n{bob}");
    // What bob recorded before the unplug is the camera's, in order.
    let report = ok(check_recording(&rec));
    eprintln!("{}", report.summary());
    report.assert_min_frames(u64::from(FPS * 2), "bob");
    let s = report.counter_stats();
    assert_eq!(s.backwards, 0, "{}", report.summary());
    assert!(
        s.last.zip(s.first).is_some_and(|(l, f)| l >= f + FPS * 2),
        "{}",
        report.summary()
    );
}
