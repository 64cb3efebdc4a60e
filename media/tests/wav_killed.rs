//! A recording process killed with SIGKILL still leaves a readable WAV file holding (almost) all
//! the audio it wrote: the child is this test binary re-run with the `#[ignore]`d writer test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tandem_media::device::{PlaybackDevice, WavSink};
use tandem_media::tone::{SineGenerator, analyze};
use tandem_media::wav::read_wav;

const TARGET: &str = "TANDEM_TEST_WAV_TARGET";

/// Kills the child on drop, whatever happens.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn killed_recorder_leaves_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.wav");
    let child = Command::new(std::env::current_exe().unwrap())
        .env(TARGET, &path)
        .args([
            "inner_record_forever",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .spawn()
        .unwrap();
    let mut child = Kill(child);
    // Let it record about 2.5 s (the header lags at most a second).
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "recorder did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(2500));
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let recorded = started.elapsed();

    let (rate, pcm) = read_wav(&path).unwrap();
    assert_eq!(rate, 8000);
    let secs = pcm.len() as f64 / 8000.0;
    eprintln!("killed after {recorded:?}; file holds {secs:.2} s");
    assert!(secs >= 1.0, "only {secs} s readable");
    assert!(secs <= recorded.as_secs_f64() + 0.1);
    let a = analyze(&pcm, rate);
    assert!((a.dominant_hz - 1000.0).abs() < 1.0, "{a:?}");
    assert!(a.snr_db > 40.0, "{a:?}");
}

#[test]
#[ignore = "child process of killed_recorder_leaves_a_valid_file"]
fn inner_record_forever() {
    let Some(path) = std::env::var_os(TARGET) else {
        eprintln!("SKIP: run through killed_recorder_leaves_a_valid_file");
        return;
    };
    let mut sink = WavSink::create(&path, 8000).unwrap();
    let mut tone = SineGenerator::new(1000.0, 8000, 0.5);
    let mut frame = [0i16; 160];
    let start = Instant::now();
    // Real time, 20 ms frames, until killed (bounded so a lost parent cannot leave it running).
    for i in 0..3000u32 {
        let due = start + Duration::from_millis(20) * i;
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        tone.fill(&mut frame);
        sink.write_frame(&frame).unwrap();
    }
}
