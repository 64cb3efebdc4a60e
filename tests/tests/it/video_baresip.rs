//! Video calls between `tandem-cli` and baresip 1.0 through the lab server: VP8 both ways (plain and SDES-SRTP),
//! H.264 (baresip's `avcodec`), and an H.264 offer tandem-cli cannot take (packetization-mode 0 only).
//!
//! baresip runs with the `vp8` codec module, the `fakevideo` display (decodes and discards; its `video_debug`
//! command counts the decoded frames and shows their size) and one of two sources: `fakevideo`'s own, which is
//! three static vertical bars (red, green, blue; every frame the same, so the bars' luma is what we check), or
//! `avformat` playing a Y4M file of our test pattern (moving bars with a frame counter, so the recording must
//! move and its counter advance). `tandem-cli` sends its pattern at another size than baresip's, so each side's
//! decoded size proves it decoded the other's stream.

use std::path::Path;
use std::time::{Duration, Instant};

use tandem_tests::process::{ChildGuard, Stream};
use tandem_tests::video::{
    CliVideoStats, RecordingReport, check_recording, last_line, line_fields,
};
use tandem_tests::{
    Baresip, BaresipOptions, BaresipVideo, BaresipVideoSource, BaresipVideoStats, CliAccount,
    LabServer, TestDir, Transport,
};

use crate::common::{assert_exits_ok_verbose, baresip_lab, ok, secs};

/// baresip's `video_size` (what tandem-cli must record).
const BARESIP_SIZE: (u32, u32) = (320, 240);
/// tandem-cli's `--video-size` (what baresip must decode).
const CLI_SIZE: (u32, u32) = (352, 288);
const CLI_SIZE_ARG: &str = "352x288";
/// Both sides' frame rate.
const FPS: u32 = 15;
/// Seconds of the call after it is answered.
const TALK: u64 = 6;

/// One scenario's media: the codec both sides use, and the security.
#[derive(Debug, Clone, Copy)]
struct Setup {
    /// `VP8` or `H264` (baresip's `video_codecs`, tandem-cli's `--video-codec`).
    codec: &'static str,
    /// baresip's `mediaenc` and tandem-cli's `--srtp-keying` (both mandatory): `None` for plain RTP.
    keying: Option<(&'static str, &'static str)>,
    /// baresip's source: our pattern from a file (true) or fakevideo's static bars.
    pattern: bool,
}

impl Setup {
    /// The test directory name.
    fn name(&self, direction: &str) -> String {
        format!(
            "video-baresip-{direction}-{}-{}-{}",
            self.codec.to_ascii_lowercase(),
            self.keying.map_or("plain", |k| k.1),
            if self.pattern { "pattern" } else { "fake" }
        )
    }
}

/// Starts baresip `bob` registered at `lab` with video as `setup` says, from `source`.
fn baresip(
    lab: &LabServer,
    dir: &TestDir,
    setup: Setup,
    source: BaresipVideoSource,
    auto_answer: bool,
) -> Baresip {
    let mut opts = BaresipOptions::new("bob", lab.domain(), "bobpw", lab.udp());
    opts.auto_answer = auto_answer;
    opts.media_enc = setup.keying.map(|k| k.0.to_string());
    let mut video = BaresipVideo::vp8(BARESIP_SIZE.0, BARESIP_SIZE.1, source);
    // baresip resolves `video_codecs` names to the first codec of that name: for H.264 that is avcodec's
    // packetization-mode 0 variant, which we do not do; without the list it also has the mode 1 variant.
    video.codecs = (setup.codec != "H264").then(|| setup.codec.to_string());
    video.fps = FPS;
    // Ample for 320x240: baresip skips source frames while its paced send queue is not empty.
    video.bitrate_bps = 800_000;
    opts.video = Some(video);
    let mut bob = ok(Baresip::start(opts, dir.path()));
    ok(bob.wait_registered(secs(10)));
    bob
}

/// A Y4M file of our pattern at baresip's size, longer than any call here (avformat rewinds at the end after a
/// 1 s pause, which would restart the counter).
fn pattern_file(dir: &TestDir) -> std::path::PathBuf {
    let path = dir.path().join("bob-source.y4m");
    let frames = ok(tandem_tests::video::write_pattern_y4m(
        &path,
        BARESIP_SIZE.0,
        BARESIP_SIZE.1,
        FPS,
        (TALK + 10) as u32,
    ));
    assert_eq!(frames, u64::from(FPS) * (TALK + 10));
    path
}

/// tandem-cli's video (and security) arguments: our pattern in `setup`'s codec, recording into `record`.
fn video_args(setup: Setup, record: &Path) -> Vec<String> {
    let codec = setup.codec.to_ascii_lowercase();
    let mut args: Vec<String> = [
        "--video",
        "pattern",
        "--video-size",
        CLI_SIZE_ARG,
        "--video-fps",
        &FPS.to_string(),
        "--video-codec",
        &codec,
        "--record-video",
        &record.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some((_, keying)) = setup.keying {
        args.extend(["--srtp", "mandatory", "--srtp-keying", keying].map(String::from));
    }
    args
}

/// Polls baresip's `video_debug` until it has decoded `min_frames` of ours (or `timeout`); returns the last view.
fn wait_baresip_decoded(
    bob: &mut Baresip,
    min_frames: u64,
    timeout: Duration,
) -> BaresipVideoStats {
    let start = Instant::now();
    loop {
        let stats = ok(bob.video_debug(secs(5)));
        if let Some(s) = &stats
            && s.decoded_frames >= min_frames
        {
            return s.clone();
        }
        if start.elapsed() > timeout {
            panic!(
                "baresip decoded fewer than {min_frames} frames of ours in {timeout:?}: {stats:#?}"
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Asserts baresip decoded tandem-cli's video in `setup`'s codec at tandem-cli's size (over SRTP when `setup`
/// says so).
#[track_caller]
fn assert_baresip_decoded(stats: &BaresipVideoStats, setup: Setup, min_frames: u64) {
    assert!(stats.started, "baresip's video:\n{}", stats.raw);
    assert_eq!(
        stats.decoder, setup.codec,
        "baresip's decoder:\n{}",
        stats.raw
    );
    assert_eq!(
        stats.encoder, setup.codec,
        "baresip's encoder:\n{}",
        stats.raw
    );
    let secure = stats.raw.contains("secure=yes");
    assert_eq!(
        secure,
        setup.keying.is_some(),
        "baresip's video security:\n{}",
        stats.raw
    );
    assert_eq!(
        (stats.decoded_width, stats.decoded_height),
        CLI_SIZE,
        "the size baresip decoded:\n{}",
        stats.raw
    );
    assert!(
        stats.decoded_frames >= min_frames && stats.keyframes >= 1,
        "baresip decoded {} frames ({} keyframes), expected ≥ {min_frames}:\n{}",
        stats.decoded_frames,
        stats.keyframes,
        stats.raw
    );
}

/// Asserts tandem-cli's video lines: VP8 started sending our size and receiving, first frame at baresip's size,
/// and stats at hang-up showing frames both ways without decode errors.
#[track_caller]
fn assert_cli_video(stdout: &str, setup: Setup, min_decoded: u64) -> CliVideoStats {
    let started = last_line(stdout, "video started")
        .unwrap_or_else(|| panic!("no `video started` line from tandem-cli:\n{stdout}"));
    let f = line_fields(started);
    assert_eq!(f.get("codec"), Some(&setup.codec), "{started}");
    assert_eq!(
        f.get("send").copied(),
        Some(format!("{CLI_SIZE_ARG}@{FPS}").as_str()),
        "{started}"
    );
    assert_eq!(f.get("recv"), Some(&"yes"), "{started}");
    let first = last_line(stdout, "video first-frame")
        .unwrap_or_else(|| panic!("no `video first-frame` line from tandem-cli:\n{stdout}"));
    assert_eq!(
        first,
        format!("video first-frame {}x{}", BARESIP_SIZE.0, BARESIP_SIZE.1),
        "{stdout}"
    );
    let stats = CliVideoStats::of(stdout, "tandem-cli");
    assert!(
        stats.get("decoded") >= min_decoded,
        "tandem-cli decoded too few frames: {}",
        stats.line
    );
    assert!(
        stats.get("sent") >= min_decoded,
        "tandem-cli sent too few frames: {}",
        stats.line
    );
    assert_eq!(stats.get("decode_errors"), 0, "{}", stats.line);
    stats
}

/// The minimum number of frames either side must have decoded over the talk time (half the nominal count: a
/// loaded machine, the first keyframe's round trip, and baresip skipping source frames under its pacing).
fn min_frames() -> u64 {
    u64::from(FPS) * TALK / 2
}

/// Checks what tandem-cli recorded of baresip's pattern file: baresip's size, moving, the counter advancing.
fn assert_pattern_recording(rec: &RecordingReport) {
    eprintln!("tandem-cli recorded: {}", rec.summary());
    rec.assert_size(BARESIP_SIZE.0, BARESIP_SIZE.1, "tandem-cli's recording");
    rec.assert_min_frames(min_frames(), "tandem-cli's recording");
    rec.assert_frames_change(0.8, 0.0, "tandem-cli's recording");
    // baresip drops source frames while its send queue drains; a second's gap (FPS) is the bound.
    rec.assert_counter_advances(
        0.8,
        FPS * (TALK as u32) / 2,
        FPS,
        2 * FPS as usize,
        "tandem-cli's recording",
    );
}

/// Checks what tandem-cli recorded of fakevideo's three static bars: baresip's size, readable, and the bars'
/// luma left to right (red ≈ 82, green ≈ 145, blue ≈ 41 in BT.601 limited range).
fn assert_bars_recording(path: &Path) {
    let rec = ok(check_recording(path));
    eprintln!("tandem-cli recorded: {}", rec.summary());
    rec.assert_size(BARESIP_SIZE.0, BARESIP_SIZE.1, "tandem-cli's recording");
    rec.assert_min_frames(min_frames(), "tandem-cli's recording");
    assert_eq!(rec.flat_frames, 0, "{}", rec.summary());
    let frame = ok(tandem_tests::video::last_frame(path));
    let (w, h) = (frame.width as usize, frame.height as usize);
    // The mean luma of the middle half of each third's columns, over all rows.
    let band = |third: usize| -> f64 {
        let (from, to) = (third * w / 3 + w / 12, (third + 1) * w / 3 - w / 12);
        let sum: u64 = (0..h)
            .flat_map(|row| {
                frame.y[row * w + from..row * w + to]
                    .iter()
                    .map(|&v| u64::from(v))
            })
            .sum();
        sum as f64 / ((to - from) * h) as f64
    };
    let bands = [band(0), band(1), band(2)];
    for (got, want, name) in [
        (bands[0], 82.0, "red"),
        (bands[1], 145.0, "green"),
        (bands[2], 41.0, "blue"),
    ] {
        assert!(
            (got - want).abs() <= 12.0,
            "the {name} bar's luma is {got:.1}, expected ≈ {want} (bands {bands:?})"
        );
    }
}

/// Waits for tandem-cli's first decoded frame of baresip's video.
fn wait_first_frame(cli: &mut ChildGuard) {
    if let Err(e) = cli.wait_for_line(Stream::Stdout, "video first-frame", secs(10)) {
        panic!("{e}\n{}", cli.tails());
    }
}

fn cli_calls_baresip(setup: Setup) {
    let dir = ok(TestDir::new(&setup.name("cli-calls")));
    let source = if setup.pattern {
        BaresipVideoSource::File(pattern_file(&dir))
    } else {
        BaresipVideoSource::Fake
    };
    let mut lab = baresip_lab(&dir);
    let mut bob = baresip(&lab, &dir, setup, source, true);
    let alice = CliAccount::new("alice", lab.domain(), "alicepw", lab.udp(), Transport::Udp);
    let rec_path = dir.path().join("alice-saw.y4m");
    let talk = TALK.to_string();
    let mut args = vec![
        "call",
        "sip:bob@127.0.0.1",
        "--duration",
        &talk,
        "--timeout",
        "15",
    ];
    let video = video_args(setup, &rec_path);
    args.extend(video.iter().map(String::as_str));
    let mut call = ok(alice.spawn("cli-call", &args, dir.path()));
    ok(bob.wait_event_type("CALL_ESTABLISHED", secs(15)));
    wait_first_frame(&mut call);
    // baresip's counters live only as long as the call: read them before tandem-cli hangs up.
    let bob_stats = wait_baresip_decoded(&mut bob, min_frames(), secs(TALK - 1));
    eprintln!("baresip: {}", bob_stats.raw);
    let out = assert_exits_ok_verbose(&mut call, secs(TALK + 20));
    ok(bob.wait_event_type("CALL_CLOSED", secs(10)));
    assert_baresip_decoded(&bob_stats, setup, min_frames());
    assert_cli_video(&out, setup, min_frames());
    if setup.pattern {
        assert_pattern_recording(&ok(check_recording(&rec_path)));
    } else {
        assert_bars_recording(&rec_path);
    }
    assert!(lab.is_running());
    assert!(bob.is_running());
}

fn baresip_calls_cli(setup: Setup) {
    let dir = ok(TestDir::new(&setup.name("calls-cli")));
    let source = if setup.pattern {
        BaresipVideoSource::File(pattern_file(&dir))
    } else {
        BaresipVideoSource::Fake
    };
    let mut lab = baresip_lab(&dir);
    let mut bob = baresip(&lab, &dir, setup, source, false);
    let alice = CliAccount::new("alice", lab.domain(), "alicepw", lab.udp(), Transport::Udp);
    let rec_path = dir.path().join("alice-saw.y4m");
    let mut args = vec!["answer", "--count", "1"];
    let video = video_args(setup, &rec_path);
    args.extend(video.iter().map(String::as_str));
    let mut answer = ok(alice.spawn("cli-answer", &args, dir.path()));
    ok(answer.wait_for_line(Stream::Stdout, "registered", secs(10)));
    ok(bob.command("dial", "sip:alice@127.0.0.1", secs(5)));
    ok(bob.wait_event_type("CALL_ESTABLISHED", secs(10)));
    let established = Instant::now();
    wait_first_frame(&mut answer);
    let bob_stats = wait_baresip_decoded(&mut bob, min_frames(), secs(TALK));
    eprintln!("baresip: {}", bob_stats.raw);
    std::thread::sleep(secs(TALK).saturating_sub(established.elapsed()));
    ok(bob.command("hangup", "", secs(5)));
    ok(bob.wait_event_type("CALL_CLOSED", secs(10)));
    let out = assert_exits_ok_verbose(&mut answer, secs(15));
    assert_baresip_decoded(&bob_stats, setup, min_frames());
    assert_cli_video(&out, setup, min_frames());
    if setup.pattern {
        assert_pattern_recording(&ok(check_recording(&rec_path)));
    } else {
        assert_bars_recording(&rec_path);
    }
    assert!(lab.is_running());
    assert!(bob.is_running());
}

/// tandem-cli calls baresip, which sends our pattern from a file: tandem-cli's recording moves and its counter
/// advances; baresip decoded ours.
#[test]
fn video_cli_calls_baresip_vp8_pattern() {
    cli_calls_baresip(Setup {
        codec: "VP8",
        keying: None,
        pattern: true,
    });
}

/// baresip calls tandem-cli and sends fakevideo's static bars: tandem-cli's recording shows the bars; baresip
/// decoded ours.
#[test]
fn video_baresip_calls_cli_vp8_fakevideo() {
    baresip_calls_cli(Setup {
        codec: "VP8",
        keying: None,
        pattern: false,
    });
}

/// Like [`video_cli_calls_baresip_vp8_pattern`] with H.264 (baresip's `avcodec`: libx264 and FFmpeg's decoder).
#[test]
fn video_cli_calls_baresip_h264_pattern() {
    cli_calls_baresip(Setup {
        codec: "H264",
        keying: None,
        pattern: true,
    });
}

/// tandem-cli calls baresip with VP8 over SDES-SRTP (mandatory on both sides): the video m-line is encrypted too.
///
/// tandem-cli calls, so baresip has its SRTP contexts before the first packet arrives. (When baresip calls over
/// SRTP, tandem-cli's first keyframe may beat the 200 OK to baresip and be dropped; baresip then asks for a picture
/// update with PLIs that tandem-cli does not read yet: see `video_loss::video_loss_vp8_baresip`.)
#[test]
fn video_cli_calls_baresip_vp8_sdes() {
    cli_calls_baresip(Setup {
        codec: "VP8",
        keying: Some(("srtp-mand", "sdes")),
        pattern: true,
    });
}

/// baresip calls with H.264 in packetization-mode 0 only (what its account's `video_codecs=H264` selects), which
/// tandem-cli does not do: tandem-cli declines the video m-line (port 0) and the call goes on with audio.
#[test]
fn video_baresip_h264_mode0_only_is_declined() {
    let dir = ok(TestDir::new("video-baresip-h264-mode0"));
    let mut lab = baresip_lab(&dir);
    let mut opts = BaresipOptions::new("bob", lab.domain(), "bobpw", lab.udp());
    let mut video = BaresipVideo::vp8(BARESIP_SIZE.0, BARESIP_SIZE.1, BaresipVideoSource::Fake);
    video.codecs = Some("H264".into());
    opts.video = Some(video);
    let mut bob = ok(Baresip::start(opts, dir.path()));
    ok(bob.wait_registered(secs(10)));
    let alice = CliAccount::new("alice", lab.domain(), "alicepw", lab.udp(), Transport::Udp);
    let rec_path = dir.path().join("alice-saw.y4m");
    let video = video_args(
        Setup {
            codec: "H264",
            keying: None,
            pattern: false,
        },
        &rec_path,
    );
    let mut args = vec!["answer", "--count", "1"];
    args.extend(video.iter().map(String::as_str));
    let mut answer = ok(alice.spawn("cli-answer", &args, dir.path()));
    ok(answer.wait_for_line(Stream::Stdout, "registered", secs(10)));
    ok(bob.command("dial", "sip:alice@127.0.0.1", secs(5)));
    ok(bob.wait_event_type("CALL_ESTABLISHED", secs(10)));
    if let Err(e) = answer.wait_for_line(Stream::Stdout, "answered", secs(5)) {
        panic!("{e}\n{}", answer.tails());
    }
    std::thread::sleep(secs(2));
    // baresip has no video stream in the call (or one that never started).
    let stats = ok(bob.video_debug(secs(5)));
    eprintln!("baresip: {stats:?}");
    assert!(
        stats
            .as_ref()
            .is_none_or(|s| !s.started && s.decoded_frames == 0 && s.source_frames == 0),
        "baresip has a running video stream: {stats:#?}"
    );
    ok(bob.command("hangup", "", secs(5)));
    ok(bob.wait_event_type("CALL_CLOSED", secs(10)));
    let out = assert_exits_ok_verbose(&mut answer, secs(15));
    assert!(
        last_line(&out, "video started").is_none()
            && CliVideoStats::parse(&out).is_none_or(|s| s.get("decoded") == 0),
        "tandem-cli started video although it declined it:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("media ") && l.contains("codec=")),
        "the call lost its audio:\n{out}"
    );
    assert!(!rec_path.exists() || ok(check_recording(&rec_path)).frames == 0);
    assert!(lab.is_running());
}
