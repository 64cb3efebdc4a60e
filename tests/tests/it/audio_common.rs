//! Helpers of the audio scenarios: tone files, recorded-tone checks, and the `tandem-cli` media event lines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_media::tone::{ToneAnalysis, active_segments, analyze, longest_gap, write_tone_wav};
use tandem_media::wav::read_wav;

/// The caller's tone (Hz).
pub const TONE_CALLER: f32 = 440.0;
/// The callee's tone (Hz): not a harmonic of the caller's, so crosstalk or echo cannot pass for it.
pub const TONE_CALLEE: f32 = 1250.0;
/// The third party's tone in transfer scenarios (Hz).
pub const TONE_THIRD: f32 = 770.0;
/// Dominant-frequency tolerance (fraction of the expected frequency).
pub const FREQ_TOLERANCE: f32 = 0.02;
/// SNR floor of a clean path (dB). Quiet runs measure 29–38 dB (G.711's quantisation alone leaves about 35 dB
/// for a half-scale tone); a machine at load average 8 on 2 cores, where concealment and time-stretching kick in,
/// measured 17–19 dB. Garbage (a wrong codec or clock rate, noise, echo of our own tone) stays far below.
pub const SNR_FLOOR_DB: f32 = 15.0;
/// Audio skipped at the start of a recording (call setup, jitter buffer fill).
pub const SKIP_START: Duration = Duration::from_millis(600);
/// Audio skipped at the end of a recording (teardown).
pub const SKIP_END: Duration = Duration::from_millis(300);
/// RMS (i16 units) below which a 20 ms window counts as silence; our tones are half scale (RMS ~11,600).
pub const SILENCE_RMS: f32 = 1000.0;

/// Writes a 12 s, 48 kHz mono, half-scale tone WAV `<dir>/tone-<hz>.wav` and returns its path.
pub fn tone_file(dir: &Path, hz: f32) -> PathBuf {
    let path = dir.join(format!("tone-{hz}.wav"));
    write_tone_wav(&path, hz, 48_000, 12.0)
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// A recorded WAV file: its rate and mono samples.
pub struct Recording {
    /// Sample rate.
    pub rate: u32,
    /// Mono samples.
    pub pcm: Vec<i16>,
}

impl Recording {
    /// Reads a recording, failing the test readably when it is missing or malformed.
    pub fn read(path: &Path) -> Recording {
        let (rate, pcm) = read_wav(path)
            .unwrap_or_else(|e| panic!("reading the recording {}: {e}", path.display()));
        Recording { rate, pcm }
    }

    /// Its length.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.pcm.len() as f64 / f64::from(self.rate.max(1)))
    }

    /// The samples without the first `skip_start` and the last `skip_end`.
    pub fn middle(&self, skip_start: Duration, skip_end: Duration) -> &[i16] {
        let from = (skip_start.as_secs_f64() * f64::from(self.rate)) as usize;
        let cut = (skip_end.as_secs_f64() * f64::from(self.rate)) as usize;
        let to = self.pcm.len().saturating_sub(cut);
        self.pcm.get(from..to).unwrap_or(&[])
    }

    /// Tone analysis of the middle part.
    pub fn analyze(&self, skip_start: Duration) -> ToneAnalysis {
        analyze(self.middle(skip_start, SKIP_END), self.rate)
    }

    /// The fraction of 20 ms windows of the middle part that carry sound.
    pub fn active_fraction(&self, skip_start: Duration) -> f32 {
        let middle = self.middle(skip_start, SKIP_END);
        if middle.is_empty() {
            return 0.0;
        }
        let active: Duration =
            active_segments(middle, self.rate, Duration::from_millis(20), SILENCE_RMS)
                .iter()
                .map(|s| s.duration())
                .sum();
        let total = middle.len() as f64 / f64::from(self.rate);
        (active.as_secs_f64() / total) as f32
    }

    /// The longest silent stretch after `skip_start` (and before the last [`SKIP_END`]).
    pub fn longest_gap(&self, skip_start: Duration) -> Duration {
        longest_gap(
            &self.pcm,
            self.rate,
            Duration::from_millis(20),
            SILENCE_RMS,
            skip_start,
            SKIP_END,
        )
    }

    /// The runs of sound (20 ms windows) over the whole recording.
    pub fn segments(&self) -> Vec<(Duration, Duration)> {
        active_segments(&self.pcm, self.rate, Duration::from_millis(20), SILENCE_RMS)
            .iter()
            .map(|s| (s.start, s.end))
            .collect()
    }
}

/// Asserts that `path` holds at least `min_len` of the tone `expect_hz`: dominant frequency within ±2 %, SNR at
/// least `min_snr_db`, and sound in at least 80 % of the middle part. Returns the analysis.
#[track_caller]
pub fn assert_tone(
    path: &Path,
    expect_hz: f32,
    min_snr_db: f32,
    min_len: Duration,
    what: &str,
) -> ToneAnalysis {
    assert_tone_active(path, expect_hz, min_snr_db, min_len, 0.8, what)
}

/// [`assert_tone`] with the minimum fraction of 20 ms windows carrying sound as a parameter (lower for
/// recordings with an intended silence, such as a hold).
#[track_caller]
pub fn assert_tone_active(
    path: &Path,
    expect_hz: f32,
    min_snr_db: f32,
    min_len: Duration,
    min_active: f32,
    what: &str,
) -> ToneAnalysis {
    assert_tone_after(
        path, expect_hz, min_snr_db, min_len, min_active, SKIP_START, what,
    )
}

/// [`assert_tone_active`] ignoring the first `skip_start` of the recording (e.g. a DTLS handshake).
#[track_caller]
pub fn assert_tone_after(
    path: &Path,
    expect_hz: f32,
    min_snr_db: f32,
    min_len: Duration,
    min_active: f32,
    skip_start: Duration,
    what: &str,
) -> ToneAnalysis {
    let rec = Recording::read(path);
    assert!(
        rec.duration() >= min_len,
        "{what}: the recording {} lasts {:?}, expected at least {min_len:?}",
        path.display(),
        rec.duration()
    );
    let a = rec.analyze(skip_start);
    let err = (a.dominant_hz - expect_hz).abs() / expect_hz;
    assert!(
        err <= FREQ_TOLERANCE,
        "{what}: dominant frequency {:.1} Hz, expected {expect_hz} Hz ±2 % (SNR {:.1} dB, RMS {:.0}) in {}",
        a.dominant_hz,
        a.snr_db,
        a.rms,
        path.display()
    );
    assert!(
        a.snr_db >= min_snr_db,
        "{what}: SNR {:.1} dB below the {min_snr_db} dB floor ({:.1} Hz, RMS {:.0}) in {}",
        a.snr_db,
        a.dominant_hz,
        a.rms,
        path.display()
    );
    let active = rec.active_fraction(skip_start);
    assert!(
        active >= min_active,
        "{what}: sound in only {:.0} % of the recording (segments {:?}) in {}",
        active * 100.0,
        rec.segments(),
        path.display()
    );
    eprintln!(
        "{what}: {:.1} Hz (expected {expect_hz}), SNR {:.1} dB, RMS {:.0}, {:.0} % active, {:?}",
        a.dominant_hz,
        a.snr_db,
        a.rms,
        active * 100.0,
        rec.duration()
    );
    a
}

/// The value of `key=` in an event line (quotes removed).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .map(|v| v.trim_matches('"'))
}

/// The event lines named `event` in `stdout`.
pub fn lines<'a>(stdout: &'a str, event: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(event))
        .collect()
}

/// Asserts `stdout` has a `media` line whose codec starts with `codec` (case-insensitive) and whose `secure=` is
/// `secure` (`no`, `sdes`, `dtls`); returns that line.
#[track_caller]
pub fn assert_media<'a>(stdout: &'a str, codec: &str, secure: &str, what: &str) -> &'a str {
    let media = lines(stdout, "media");
    let line = media.first().unwrap_or_else(|| {
        panic!("{what}: no `media` line from tandem-cli:\n{stdout}");
    });
    let got = field(line, "codec").unwrap_or_default();
    assert!(
        got.to_ascii_lowercase()
            .starts_with(&codec.to_ascii_lowercase()),
        "{what}: codec {got:?}, expected {codec}: {line}"
    );
    assert_eq!(
        field(line, "secure"),
        Some(secure),
        "{what}: unexpected security: {line}"
    );
    line
}

/// The last `quality` line of `stdout` (printed at the end of each call).
#[track_caller]
pub fn last_quality<'a>(stdout: &'a str, what: &str) -> &'a str {
    lines(stdout, "quality")
        .last()
        .copied()
        .unwrap_or_else(|| panic!("{what}: no `quality` line from tandem-cli:\n{stdout}"))
}

/// A numeric field of an event line.
#[track_caller]
pub fn num(line: &str, key: &str) -> f64 {
    field(line, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {key}= in {line:?}"))
}

/// The `tandem-cli` arguments answering one call, playing `tone` and recording what it hears into `record`, then
/// `extra` (answer options).
pub fn answer_args<'a>(tone: &'a str, record: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["answer", "--count", "1", "--play", tone, "--record", record];
    args.extend_from_slice(extra);
    args
}

/// Starts `alice` calling `sip:bob@127.0.0.1` with PCMU for up to a minute, playing `tone` (and recording what it
/// hears into `record`), with the stdin control channel open.
pub fn call_bob_pcmu(
    alice: &tandem_tests::CliAccount,
    name: &str,
    dir: &Path,
    tone: &str,
    record: Option<&str>,
) -> tandem_tests::process::ChildGuard {
    let mut args = vec![
        "call",
        "sip:bob@127.0.0.1",
        "--duration",
        "60",
        "--timeout",
        "10",
        "--codec",
        "pcmu",
        "--play",
        tone,
    ];
    if let Some(record) = record {
        args.extend(["--record", record]);
    }
    crate::common::ok(alice.spawn_interactive(name, &args, dir))
}
