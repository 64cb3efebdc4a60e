//! Real devices through cpal against a private user-space PulseAudio server with a null sink:
//! a 440 Hz tone played to the sink is captured from its monitor and analysed.
//!
//! The outer test starts the server (killed by a Drop guard) and re-runs this test binary with
//! `XDG_RUNTIME_DIR` pointing at it, running the `#[ignore]`d inner tests, which need that
//! environment (setting it in-process would race with other test threads).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem_media::device::{
    CaptureDevice, CpalCapture, CpalOptions, CpalPlayback, DeviceError, DeviceSpec, PlaybackDevice,
    list_devices, open_capture, open_playback,
};
use tandem_media::tone::{SineGenerator, analyze};

/// Set in the child's environment so the inner tests know a server is theirs.
const MARKER: &str = "TANDEM_TEST_PULSE";

/// A private PulseAudio server with a null sink named `null`; killed on drop.
struct Pulse {
    child: Child,
    runtime: tempfile::TempDir,
}

impl Pulse {
    fn start() -> Option<Pulse> {
        if Command::new("pulseaudio")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            eprintln!("SKIP: the pulseaudio binary is not installed");
            return None;
        }
        let runtime = tempfile::tempdir().unwrap();
        let child = Command::new("pulseaudio")
            .env("XDG_RUNTIME_DIR", runtime.path())
            .env("HOME", runtime.path())
            .env_remove("PULSE_SERVER")
            .args([
                "--daemonize=no",
                "-n",
                "--exit-idle-time=-1",
                "--disallow-exit=yes",
                "--system=no",
                "-L",
                "module-native-protocol-unix",
                "-L",
                "module-null-sink sink_name=null rate=48000",
                "-L",
                "module-always-sink",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pulse = Pulse { child, runtime };
        let socket = pulse.runtime.path().join("pulse/native");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "pulseaudio did not create {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for args in [
            ["set-default-source", "null.monitor"],
            ["set-default-sink", "null"],
        ] {
            let ok = pulse.pactl().args(args).status().unwrap().success();
            assert!(ok, "pactl {args:?} failed");
        }
        Some(pulse)
    }

    fn dir(&self) -> &Path {
        self.runtime.path()
    }

    fn pactl(&self) -> Command {
        let mut c = Command::new("pactl");
        c.env("XDG_RUNTIME_DIR", self.dir())
            .env("HOME", self.dir())
            .env_remove("PULSE_SERVER");
        c
    }

    /// Runs one inner test of this binary with the server's environment.
    fn run_inner(&self, test: &str) {
        let exe: PathBuf = std::env::current_exe().unwrap();
        let status = Command::new(exe)
            .env("XDG_RUNTIME_DIR", self.dir())
            .env("HOME", self.dir())
            .env_remove("PULSE_SERVER")
            .env(MARKER, "1")
            .args([
                test,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "inner test {test} failed");
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Playback options for tests. Unoptimised builds of the pure-Rust PulseAudio client answer the
/// server's requests too slowly for 40 ms periods on a loaded machine (the server underruns and
/// drops our audio); optimised builds (or `opt-level = 3` for the `pulseaudio` and `cpal` packages
/// in the dev profile) keep up with the default.
fn playback_options() -> CpalOptions {
    let period = if cfg!(debug_assertions) { 80 } else { 40 };
    CpalOptions {
        period: Duration::from_millis(period),
        ..CpalOptions::playback()
    }
}

/// What [`play_and_capture`] saw.
struct Run {
    /// Audio captured after the first sound arrived.
    captured: Vec<i16>,
    first_sound: Duration,
    max_queue_out: usize,
    max_queue_in: usize,
}

/// Drives both devices at the media clock (one 20 ms frame each per tick) with a 440 Hz tone
/// until sound comes back from the monitor (at most 10 s), then for `keep` more.
fn play_and_capture(capture: &mut CpalCapture, playback: &mut CpalPlayback, keep: Duration) -> Run {
    let (in_rate, out_rate) = (capture.rate(), playback.rate());
    let mut tone = SineGenerator::new(440.0, out_rate, 0.5);
    let mut out = vec![0i16; out_rate as usize / 50];
    let mut inp = vec![0i16; in_rate as usize / 50];
    let want = (keep.as_secs_f64() * f64::from(in_rate)) as usize;
    let mut run = Run {
        captured: Vec::with_capacity(want),
        first_sound: Duration::ZERO,
        max_queue_out: 0,
        max_queue_in: 0,
    };
    let start = Instant::now();
    let mut sounding = false;
    for i in 0u32.. {
        let due = start + Duration::from_millis(20) * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        tone.fill(&mut out);
        playback.write_frame(&out).unwrap();
        run.max_queue_out = run.max_queue_out.max(playback.queued());
        run.max_queue_in = run.max_queue_in.max(capture.queued());
        assert!(capture.read_frame(&mut inp).unwrap());
        if !sounding && inp.iter().any(|s| s.unsigned_abs() > 1000) {
            sounding = true;
            run.first_sound = start.elapsed();
        }
        if sounding {
            run.captured.extend_from_slice(&inp);
            if run.captured.len() >= want {
                return run;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no sound from the monitor after 10 s"
        );
    }
    unreachable!()
}

/// Checks that captured audio is our 440 Hz tone. Real-time streams on a loaded machine (and
/// unoptimised builds of the PulseAudio client) underrun now and then, so this looks at
/// half-second windows: the best one must be clean, and most must show 440 Hz.
fn check_tone(captured: &[i16], rate: u32) {
    let half = rate as usize / 2;
    let mut windows: Vec<_> = (0..=captured.len() - half)
        .step_by(half / 2)
        .map(|start| analyze(&captured[start..start + half], rate))
        .collect();
    let whole = analyze(captured, rate);
    windows.sort_by(|x, y| y.snr_db.total_cmp(&x.snr_db));
    let best = windows[0];
    eprintln!("captured tone: {whole:?}; best half-second {best:?}");
    assert!((best.dominant_hz - 440.0).abs() < 1.0, "{best:?}");
    assert!(best.snr_db > 20.0, "{best:?}");
    assert!(best.rms > 10_000.0, "{best:?}");
    let on_tone = windows
        .iter()
        .filter(|w| (w.dominant_hz - 440.0).abs() < 3.0)
        .count();
    assert!(
        on_tone * 2 >= windows.len(),
        "only {on_tone} of {} windows at 440 Hz",
        windows.len()
    );
}

fn inner_enabled() -> bool {
    if std::env::var_os(MARKER).is_none() {
        eprintln!("SKIP: inner test, run through its outer test");
        return false;
    }
    true
}

/// One outer test runs the inner ones one after the other: real-time streams in parallel test
/// processes would starve each other on a small machine.
#[test]
fn cpal_devices_through_pulseaudio_null_sink() {
    let Some(pulse) = Pulse::start() else { return };
    pulse.run_inner("inner_tone_loopback");
    pulse.run_inner("inner_list_and_specs");
    // Last: it kills the server.
    pulse.run_inner("inner_server_loss");
}

#[test]
#[ignore = "run by cpal_devices_through_pulseaudio_null_sink with its own PulseAudio"]
fn inner_tone_loopback() {
    if !inner_enabled() {
        return;
    }
    let mut capture = CpalCapture::open(Some("null.monitor")).unwrap();
    let mut playback = CpalPlayback::open_with(Some("null"), playback_options()).unwrap();
    assert_eq!(capture.host(), "PulseAudio");
    assert_eq!(playback.host(), "PulseAudio");
    assert_eq!(capture.name(), "null.monitor");
    assert_eq!(playback.name(), "null");
    let (in_rate, out_rate) = (capture.rate(), playback.rate());
    assert_eq!(out_rate, 48_000);
    assert_eq!(in_rate, 48_000);

    let run = play_and_capture(&mut capture, &mut playback, Duration::from_secs(3));
    playback.finish().unwrap();
    eprintln!(
        "first sound after {:?}; max queued out {}, in {}; ring out {:?}, in {:?}",
        run.first_sound,
        run.max_queue_out,
        run.max_queue_in,
        playback.ring_stats(),
        capture.ring_stats()
    );
    // Both rings stay bounded (400 ms hard cap).
    assert!(run.max_queue_out <= out_rate as usize * 4 / 10);
    assert!(run.max_queue_in <= in_rate as usize * 4 / 10);
    check_tone(&run.captured, in_rate);

    // Closing the streams is quick and leaves no thread spinning (a known cpal hazard with fixed
    // buffers).
    let closing = Instant::now();
    drop(capture);
    drop(playback);
    let close_time = closing.elapsed();
    assert!(
        close_time < Duration::from_millis(500),
        "closing took {close_time:?}"
    );
    let before = cpu_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks() - before;
    assert!(
        used < 30,
        "{used} CPU ticks used in the second after closing the streams"
    );
}

/// User + system CPU time of this process in clock ticks (usually 1/100 s), from /proc.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
#[ignore = "run by cpal_devices_through_pulseaudio_null_sink with its own PulseAudio"]
fn inner_list_and_specs() {
    if !inner_enabled() {
        return;
    }
    let devices = list_devices();
    eprintln!("{devices:#?}");
    let sink = devices
        .iter()
        .find(|d| d.name == "null")
        .expect("null sink listed");
    assert!(sink.output && !sink.input && sink.default);
    assert_eq!(sink.host, "PulseAudio");
    let monitor = devices
        .iter()
        .find(|d| d.name == "null.monitor")
        .expect("monitor listed");
    assert!(monitor.input && !monitor.output && monitor.default);

    // The default specs open the defaults; a unique part of a name works too.
    let cap = open_capture(&"default".parse::<DeviceSpec>().unwrap(), false).unwrap();
    assert_eq!(cap.rate(), 48_000);
    let mut play = open_playback(&DeviceSpec::Default).unwrap();
    play.write_frame(&[0; 960]).unwrap();
    play.finish().unwrap();
    assert!(play.write_frame(&[0; 960]).is_err());
    drop(cap);
    let by_part = CpalCapture::open(Some("monitor")).unwrap();
    assert_eq!(by_part.name(), "null.monitor");

    // Another rate is honoured (PulseAudio converts), and a tone at it comes back at 440 Hz.
    let mut cap16 = CpalCapture::open_with_rate(Some("null.monitor"), 16_000).unwrap();
    assert_eq!(cap16.rate(), 16_000);
    let mut play = CpalPlayback::open_with(Some("null"), playback_options()).unwrap();
    let run = play_and_capture(&mut cap16, &mut play, Duration::from_secs(2));
    check_tone(&run.captured, 16_000);
    drop(cap16);
    drop(play);

    // Unknown names are a clear error.
    let err = CpalPlayback::open(Some("no-such-device-here")).unwrap_err();
    assert!(err.to_string().contains("no-such-device-here"), "{err}");
}

#[test]
#[ignore = "run by cpal_devices_through_pulseaudio_null_sink with its own PulseAudio"]
fn inner_server_loss() {
    if !inner_enabled() {
        return;
    }
    let mut capture = CpalCapture::open(Some("null.monitor")).unwrap();
    let mut playback = CpalPlayback::open_with(Some("null"), playback_options()).unwrap();
    let mut frame = vec![0i16; 960];
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(20));
        playback.write_frame(&frame).unwrap();
        capture.read_frame(&mut frame).unwrap();
    }
    // Kill our private server (its pid file is in our runtime dir).
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").unwrap();
    let pid = std::fs::read_to_string(Path::new(&runtime).join("pulse/pid")).unwrap();
    let ok = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "could not kill pulseaudio {pid}");

    // Both devices report the failure as an error (no panic, no hang).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut cap_err, mut play_err) = (None, None);
    while (cap_err.is_none() || play_err.is_none()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        if play_err.is_none() {
            play_err = playback.write_frame(&frame).err();
        }
        if cap_err.is_none() {
            cap_err = capture.read_frame(&mut frame).err();
        }
    }
    eprintln!("after server loss: capture {cap_err:?}, playback {play_err:?}");
    assert!(
        matches!(cap_err, Some(DeviceError::StreamFailed(_))),
        "{cap_err:?}"
    );
    assert!(
        matches!(play_err, Some(DeviceError::StreamFailed(_))),
        "{play_err:?}"
    );
    let closing = Instant::now();
    drop(capture);
    drop(playback);
    assert!(
        closing.elapsed() < Duration::from_secs(2),
        "closing took {:?}",
        closing.elapsed()
    );
}
