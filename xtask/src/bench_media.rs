//! `cargo xtask bench media`: the media numbers of the audio issue, in one bounded run.
//!
//! 1. The media crate's own benches (`cargo bench -p tandem-media --bench codec|pipeline`, whichever exist) are
//!    run and their `name key=value ...` lines collected: codec realtime factors, the in-process pipeline latency
//!    (capture -> RTP on loopback -> jitter buffer -> playout, target <= 60 ms at 0 % loss) and sessions per core.
//! 2. Real binaries on loopback, per codec (Opus, PCMU), four calls at once for `--call-secs` (default 20):
//!    * CPU: `tandem-cli call` -> `tandem-cli answer --no-register` and `baresip` -> `baresip` (auto answer),
//!      both sides playing a speech-like file and recording what they hear; user + system time of every process from
//!      `/proc/PID/stat` over the steady middle of the call.
//!    * Latency, the same method for both: a caller plays a WAV of 1 kHz bursts (one a second) to a baresip
//!      running the `echo` module (which loops its playout back into its capture through `aubridge`) and records
//!      what comes back. The round trip is the onset of each returned burst minus the onset of the burst sent,
//!      on the caller's own timeline: for `tandem-cli` the `--play` file and the `--record` file (both advanced by
//!      the same 20 ms tick), for baresip its `sndfile` dumps of the encoder input and the decoder output. The echo
//!      peer is the same for both callers, so the difference of the two round trips is the difference of the two
//!      callers' own send + receive pipelines, i.e. of their one-way mouth-to-ear latency.
//!
//! Every process started here runs in its own process group and is killed on the way out (also on errors);
//! every wait has a deadline. The report is printed and written to `<target>/bench-media/report.{json,md}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::bench_common::{
    BARESIP_MODULES, Proc, StopThread, Tails, build_bench, build_cli, check_baresip, clock_ticks,
    core_percent, free_block, fresh_run_dir, launch_baresip, loadavg, parse_secs, process_cpu,
    run_bench, wait_sip_ready, write_wav,
};
use crate::cmd::{cargo, target_dir};
use crate::packages::{Need, Probe};

/// What the real-binary part needs besides Rust: the reference peer, and the native build dependencies.
const MEDIA_PACKAGES: &[Need] = &[
    (Probe::Bin("baresip"), "baresip"),
    (Probe::Bin("cc"), "build-essential"),
    (Probe::Bin("pkg-config"), "pkg-config"),
    (Probe::Bin("cmake"), "cmake"),
    (
        Probe::File("/usr/lib/x86_64-linux-gnu/pkgconfig/alsa.pc"),
        "libasound2-dev",
    ),
];

/// The baresip modules the bench loads (from [`BARESIP_MODULES`]).
const NEEDED_MODULES: &[&str] = &[
    "opus.so",
    "g711.so",
    "aufile.so",
    "aubridge.so",
    "sndfile.so",
    "echo.so",
    "menu.so",
    "account.so",
];

/// Sample rate of every file the bench writes.
const RATE: u32 = 48_000;
/// Default and allowed length of the real calls.
const DEFAULT_CALL_SECS: u64 = 20;
const MAX_CALL_SECS: u64 = 40;
const MIN_CALL_SECS: u64 = 8;
/// Seconds of each media-crate bench measurement (`TANDEM_BENCH_SECS`).
const CRATE_BENCH_SECS: u64 = 4;
/// Deadline of one media-crate bench run (after it is built).
const CRATE_BENCH_TIMEOUT: Duration = Duration::from_secs(60);
/// CPU is sampled from this long after the calls start until this long before they end.
const CPU_SETTLE: Duration = Duration::from_millis(2500);
const CPU_TAIL: Duration = Duration::from_millis(1500);

/// Latency probe: a burst of `BURST_HZ` every `BURST_PERIOD`, the first one `FIRST_BURST` in.
const BURST_HZ: f64 = 1000.0;
const BURST_LEN: Duration = Duration::from_millis(120);
const BURST_PERIOD: Duration = Duration::from_millis(1000);
const FIRST_BURST: Duration = Duration::from_millis(1500);
const BURST_AMPLITUDE: f64 = 0.5;
/// A sample louder than this is sound (the bursts peak at 16384).
const ONSET_THRESHOLD: u16 = 4000;
/// An onset needs this much quiet before it.
const ONSET_QUIET: Duration = Duration::from_millis(250);
/// A returned burst pairs with the latest sent burst at most this long before it.
const MAX_ROUND_TRIP: Duration = Duration::from_millis(800);

/// baresip's buffers: the endpoints as in tests/peers/baresip-config.in (baresip's defaults), the echo lean.
const ENDPOINT_JITTER_BUFFER: &str = "5-10";
const ENDPOINT_AUDIO_BUFFER: &str = "20-160";
const ECHO_JITTER_BUFFER: &str = "1-4";
const ECHO_AUDIO_BUFFER: &str = "20-80";
/// How often the dump watcher looks at baresip's dump files.
const WATCH_INTERVAL: Duration = Duration::from_millis(1);

/// The codecs of the real calls: our name, baresip's `audio_codecs` name.
const CODECS: &[(&str, &str)] = &[("opus", "opus/48000/2"), ("pcmu", "PCMU/8000/1")];

// ---------------------------------------------------------------------------------------------------------------
// WAV files and onsets

/// Mono 16-bit PCM audio, and where its samples sit in the file.
struct Audio {
    rate: u32,
    pcm: Vec<i16>,
    /// Byte offset of the first sample in the file.
    data_offset: u64,
    /// Bytes per sample frame in the file (2 x channels).
    frame_bytes: u64,
}

impl Audio {
    fn secs(&self) -> f64 {
        self.pcm.len() as f64 / f64::from(self.rate.max(1))
    }

    /// RMS of the middle half (0 when empty).
    fn middle_rms(&self) -> f64 {
        let len = self.pcm.len();
        let part = self.pcm.get(len / 4..len * 3 / 4).unwrap_or(&[]);
        if part.is_empty() {
            return 0.0;
        }
        let sum: f64 = part.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        (sum / part.len() as f64).sqrt()
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads a 16-bit PCM WAV (any channel count, downmixed). A data chunk whose size was never patched (a writer
/// killed before closing) is read to the end of the file.
fn read_wav(path: &Path) -> Result<Audio> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let bad = |what: &str| anyhow::anyhow!("{}: {what}", path.display());
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(bad("not a RIFF/WAVE file"));
    }
    let mut at = 12usize;
    let mut format: Option<(u16, u32, u16)> = None;
    while let (Some(id), Some(size)) = (bytes.get(at..at + 4), u32_at(&bytes, at + 4)) {
        let body = at + 8;
        let size = size as usize;
        if id == b"fmt " {
            let tag = u16_at(&bytes, body).ok_or_else(|| bad("short fmt chunk"))?;
            let channels = u16_at(&bytes, body + 2).ok_or_else(|| bad("short fmt chunk"))?;
            let rate = u32_at(&bytes, body + 4).ok_or_else(|| bad("short fmt chunk"))?;
            let bits = u16_at(&bytes, body + 14).ok_or_else(|| bad("short fmt chunk"))?;
            if !(tag == 1 || tag == 0xFFFE) || bits != 16 || channels == 0 || rate == 0 {
                return Err(bad(&format!(
                    "unsupported format (tag {tag:#x}, {bits} bits, {channels} channels, {rate} Hz)"
                )));
            }
            format = Some((channels, rate, bits));
        } else if id == b"data" {
            let (channels, rate, _) = format.ok_or_else(|| bad("data chunk before fmt"))?;
            let available = bytes.len().saturating_sub(body);
            let len = if size == 0 || size > available {
                available
            } else {
                size
            };
            let data = bytes.get(body..body + len).unwrap_or(&[]);
            let frame = usize::from(channels) * 2;
            let pcm = data
                .chunks_exact(frame)
                .map(|f| {
                    let sum: i32 = f
                        .chunks_exact(2)
                        .map(|s| i32::from(i16::from_le_bytes([s[0], s[1]])))
                        .sum();
                    (sum / i32::from(channels)) as i16
                })
                .collect();
            return Ok(Audio {
                rate,
                pcm,
                data_offset: body as u64,
                frame_bytes: frame as u64,
            });
        }
        at = body.saturating_add(size).saturating_add(size & 1);
    }
    Err(bad("no data chunk"))
}

fn samples(d: Duration) -> usize {
    (d.as_secs_f64() * f64::from(RATE)) as usize
}

/// The latency probe: silence with a 1 kHz burst (5 ms raised-cosine edges) every second.
fn burst_signal(secs: f64) -> Vec<i16> {
    let total = (secs * f64::from(RATE)) as usize;
    let period = samples(BURST_PERIOD);
    let burst = samples(BURST_LEN);
    let first = samples(FIRST_BURST);
    let edge = samples(Duration::from_millis(5)).max(1);
    (0..total)
        .map(|i| {
            if i < first {
                return 0;
            }
            let phase = (i - first) % period;
            if phase >= burst {
                return 0;
            }
            let ramp = phase.min(burst - 1 - phase).min(edge) as f64 / edge as f64;
            let gain = 0.5 - 0.5 * (std::f64::consts::PI * ramp).cos();
            let t = i as f64 / f64::from(RATE);
            let v = BURST_AMPLITUDE * gain * (2.0 * std::f64::consts::PI * BURST_HZ * t).sin();
            (v * f64::from(i16::MAX)) as i16
        })
        .collect()
}

/// A speech-like load for the CPU calls (a pure tone is unrealistically cheap for Opus): a harmonic-rich
/// voice whose pitch wanders around `pitch_hz`, syllable-rate loudness changes, and a little noise.
fn speech_signal(pitch_hz: f64, secs: f64) -> Vec<i16> {
    use std::f64::consts::TAU;
    const HARMONICS: u32 = 12;
    let total = (secs * f64::from(RATE)) as usize;
    let norm: f64 = (1..=HARMONICS).map(|k| 1.0 / f64::from(k)).sum();
    let mut phase = 0.0f64;
    let mut noise_state = 0x2545_f491_u32;
    (0..total)
        .map(|i| {
            let t = i as f64 / f64::from(RATE);
            let pitch =
                pitch_hz * (1.0 + 0.15 * (TAU * 0.7 * t).sin() + 0.1 * (TAU * 2.3 * t).sin());
            phase = (phase + TAU * pitch / f64::from(RATE)) % TAU;
            let voice: f64 = (1..=HARMONICS)
                .map(|k| (f64::from(k) * phase).sin() / f64::from(k))
                .sum::<f64>()
                / norm;
            noise_state ^= noise_state << 13;
            noise_state ^= noise_state >> 17;
            noise_state ^= noise_state << 5;
            let noise = f64::from(noise_state) / f64::from(u32::MAX) * 2.0 - 1.0;
            let envelope = 0.2 + 0.8 * (TAU * 2.5 * t).sin().max(0.0);
            let v = 0.45 * envelope * (0.95 * voice + 0.05 * noise);
            (v * f64::from(i16::MAX)) as i16
        })
        .collect()
}

/// Indices of every sample louder than the threshold after enough quiet.
fn onsets(audio: &Audio) -> Vec<usize> {
    let quiet_needed = (ONSET_QUIET.as_secs_f64() * f64::from(audio.rate)) as u64;
    let mut quiet = 0u64;
    let mut found = Vec::new();
    for (i, s) in audio.pcm.iter().enumerate() {
        if s.unsigned_abs() > ONSET_THRESHOLD {
            if quiet >= quiet_needed {
                found.push(i);
            }
            quiet = 0;
        } else {
            quiet += 1;
        }
    }
    found
}

/// Onset times in seconds on the file's own sample timeline.
fn onset_secs(audio: &Audio) -> Vec<f64> {
    onsets(audio)
        .into_iter()
        .map(|i| i as f64 / f64::from(audio.rate))
        .collect()
}

/// When each byte length of a growing file was first seen (time since the watch started, length).
type Growth = Vec<(Duration, u64)>;

/// Watches a directory's `dump-*.wav` files (baresip's `sndfile` writes every 20 ms frame as it passes) and
/// records when each grew, so every sample gets the wall-clock time it was written.
struct DumpWatcher(StopThread<BTreeMap<PathBuf, Growth>>);

impl DumpWatcher {
    fn start(dir: PathBuf, epoch: Instant) -> DumpWatcher {
        DumpWatcher(StopThread::spawn(move |flag| {
            let mut seen: BTreeMap<PathBuf, Growth> = BTreeMap::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok(entries) = fs::read_dir(&dir) {
                    for e in entries.filter_map(|e| e.ok()) {
                        let path = e.path();
                        let is_dump = path
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("dump-") && n.ends_with(".wav"));
                        let Some(len) = is_dump
                            .then(|| fs::metadata(&path).ok())
                            .flatten()
                            .map(|m| m.len())
                        else {
                            continue;
                        };
                        let growth = seen.entry(path).or_default();
                        if growth.last().is_none_or(|(_, last)| *last != len) {
                            growth.push((epoch.elapsed(), len));
                        }
                    }
                }
                sleep(WATCH_INTERVAL);
            }
            seen
        }))
    }

    /// Stops watching and returns the growth of every dump file seen.
    fn finish(self) -> BTreeMap<PathBuf, Growth> {
        self.0.finish().unwrap_or_default()
    }
}

/// The wall-clock time (seconds since the watch started) at which sample `i` of `audio` was written: the time
/// of the write that contained it, plus its position within that write (each write is one realtime frame).
fn written_at(growth: &Growth, audio: &Audio, i: usize) -> Option<f64> {
    let end = audio.data_offset + (i as u64 + 1) * audio.frame_bytes;
    let k = growth.iter().position(|(_, len)| *len >= end)?;
    let before = match k.checked_sub(1) {
        Some(prev) => growth.get(prev).map_or(audio.data_offset, |(_, len)| *len),
        None => audio.data_offset,
    };
    let first = before.saturating_sub(audio.data_offset) / audio.frame_bytes.max(1);
    let (t, _) = growth.get(k)?;
    Some(t.as_secs_f64() + (i as f64 - first as f64) / f64::from(audio.rate))
}

/// Onset times of a watched dump, in seconds since the watch started.
fn onset_wall_secs(growth: &Growth, audio: &Audio) -> Vec<f64> {
    onsets(audio)
        .into_iter()
        .filter_map(|i| written_at(growth, audio, i))
        .collect()
}

/// Round trips (ms): each returned onset minus the latest sent onset before it, within `MAX_ROUND_TRIP`.
fn round_trips(sent: &[f64], returned: &[f64]) -> Vec<f64> {
    returned
        .iter()
        .filter_map(|r| {
            let s = sent.iter().rev().find(|s| **s <= *r)?;
            let ms = (r - s) * 1000.0;
            (ms < MAX_ROUND_TRIP.as_secs_f64() * 1000.0).then_some(ms)
        })
        .collect()
}

/// Median, min and max of a sample.
#[derive(Debug, Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
    count: usize,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Option<Spread> {
        values.sort_by(f64::total_cmp);
        Some(Spread {
            median: *values.get(values.len() / 2)?,
            min: *values.first()?,
            max: *values.last()?,
            count: values.len(),
        })
    }

    fn json(&self) -> Value {
        json!({ "median_ms": round1(self.median), "min_ms": round1(self.min), "max_ms": round1(self.max),
                "bursts": self.count })
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

// ---------------------------------------------------------------------------------------------------------------
// The media crate's benches

/// One `name key=value ...` line of a bench's output.
#[derive(Debug, Clone)]
struct BenchLine {
    name: String,
    fields: BTreeMap<String, String>,
}

impl BenchLine {
    fn parse(line: &str) -> Option<BenchLine> {
        let mut tokens = line.split_whitespace();
        let name = tokens.next()?;
        if name.contains('=') || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let mut fields = BTreeMap::new();
        for t in tokens {
            let (k, v) = t.split_once('=')?;
            if k.is_empty() {
                return None;
            }
            fields.insert(k.to_string(), v.trim_matches('"').to_string());
        }
        (!fields.is_empty()).then(|| BenchLine {
            name: name.to_string(),
            fields,
        })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    fn num(&self, key: &str) -> Option<f64> {
        self.get(key)?.parse().ok()
    }

    fn json(&self) -> Value {
        let mut map = serde_json::Map::new();
        map.insert("line".into(), Value::String(self.name.clone()));
        for (k, v) in &self.fields {
            let value = v
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Value::String(v.clone()), Value::Number);
            map.insert(k.clone(), value);
        }
        Value::Object(map)
    }
}

/// The bench targets of `tandem-media`, from `cargo metadata`.
fn media_bench_targets() -> Result<Vec<String>> {
    let out = cargo(&["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: Value = serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let packages = meta
        .get("packages")
        .and_then(Value::as_array)
        .context("cargo metadata has no packages")?;
    let media = packages
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some("tandem-media"))
        .context("the workspace has no tandem-media package")?;
    let mut benches: Vec<String> = media
        .get("targets")
        .and_then(Value::as_array)
        .map(|targets| {
            targets
                .iter()
                .filter(|t| {
                    t.get("kind")
                        .and_then(Value::as_array)
                        .is_some_and(|k| k.iter().any(|k| k.as_str() == Some("bench")))
                })
                .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    benches.sort();
    Ok(benches)
}

/// Runs one built media bench executable (as `cargo bench` would) with a deadline; returns its parsed lines.
fn run_media_bench(name: &str, exe: &Path, log_dir: &Path) -> Result<Vec<BenchLine>> {
    let mut cmd = Command::new(exe);
    cmd.arg("--bench")
        .current_dir(crate::cmd::workspace_root().join("media"))
        .env("TANDEM_BENCH_SECS", CRATE_BENCH_SECS.to_string());
    run_bench(
        name,
        cmd,
        CRATE_BENCH_TIMEOUT,
        log_dir,
        Tails::Plain,
        BenchLine::parse,
        "`name key=value`",
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Peers

/// What a baresip instance does.
enum BaresipRole<'a> {
    /// Answers automatically, plays `source`, decodes into an unpaired `aubridge` player.
    Callee { source: &'a Path },
    /// Dials `target` at start-up and quits after `quit_after` seconds; plays `source`.
    Caller {
        source: &'a Path,
        target: SocketAddr,
        quit_after: u64,
        /// The echo's lean buffers instead of baresip's defaults.
        lean: bool,
    },
    /// The `echo` module: answers and loops its playout back into its capture through `aubridge`.
    Echo,
}

/// Writes a baresip config directory and starts baresip; returns the process and its SIP address. Dumps of
/// the encoder input and decoder output go to `<dir>/<name>/dumps/` when `dumps` is set.
fn start_baresip(
    name: &str,
    role: &BaresipRole<'_>,
    codec: &str,
    dumps: bool,
    dir: &Path,
) -> Result<(Proc, SocketAddr)> {
    let conf = dir.join(name);
    let dump_dir = conf.join("dumps");
    fs::create_dir_all(&dump_dir).with_context(|| format!("creating {}", dump_dir.display()))?;
    // SIP on P (UDP/TCP) and P+1 (baresip's TLS listener); eight RTP/RTCP ports.
    let sip_port = free_block(2)?;
    let rtp = free_block(8)?;
    let sip = SocketAddr::from(([127, 0, 0, 1], sip_port));
    // The echo's aubridge needs the same channel count on both sides whatever the codec; it is kept lean
    // (short jitter and playout buffers) since it only reflects. The endpoints keep baresip's usual buffers.
    let (source, player, jitter, audio_buffer) = match role {
        BaresipRole::Caller {
            source, lean: true, ..
        } => (
            format!("aufile,{}", source.display()),
            format!("aubridge,{name}-sink"),
            ECHO_JITTER_BUFFER,
            ECHO_AUDIO_BUFFER,
        ),
        BaresipRole::Callee { source } | BaresipRole::Caller { source, .. } => (
            format!("aufile,{}", source.display()),
            format!("aubridge,{name}-sink"),
            ENDPOINT_JITTER_BUFFER,
            ENDPOINT_AUDIO_BUFFER,
        ),
        BaresipRole::Echo => (
            "aubridge,echo".to_string(),
            "aubridge,echo".to_string(),
            ECHO_JITTER_BUFFER,
            ECHO_AUDIO_BUFFER,
        ),
    };
    let mut modules = vec!["opus.so", "g711.so", "aubridge.so"];
    if !matches!(role, BaresipRole::Echo) {
        modules.push("aufile.so");
    }
    if dumps {
        modules.push("sndfile.so");
    }
    let mut config = format!(
        "poll_method\tepoll\nsip_listen\t{sip}\ncall_local_timeout\t120\ncall_max_calls\t4\n\
         audio_player\t{player}\naudio_source\t{source}\naudio_alert\t{player}\n\
         ausrc_srate\t48000\nauplay_srate\t48000\nausrc_channels\t1\nauplay_channels\t1\naudio_level\tno\n\
         ausrc_format\ts16\nauplay_format\ts16\nauenc_format\ts16\naudec_format\ts16\n\
         audio_buffer\t{audio_buffer}\nrtp_tos\t0\nrtp_ports\t{rtp}-{}\nrtcp_mux\tno\njitter_buffer_delay\t{jitter}\n\
         rtp_stats\tno\nopus_bitrate\t28000\nsnd_path\t{}\nmodule_path\t{BARESIP_MODULES}\n",
        rtp + 7,
        dump_dir.display()
    );
    for m in modules {
        let _ = writeln!(config, "module\t{m}");
    }
    config.push_str("module_tmp\tuuid.so\nmodule_tmp\taccount.so\nmodule_app\tmenu.so\n");
    if matches!(role, BaresipRole::Echo) {
        config.push_str("module_app\techo.so\n");
    }
    fs::write(conf.join("config"), config)?;
    // Every callee answers as `peer`; callers use their instance name.
    let user = match role {
        BaresipRole::Caller { .. } => name,
        BaresipRole::Callee { .. } | BaresipRole::Echo => "peer",
    };
    let mut account = format!("<sip:{user}@127.0.0.1>;regint=0;audio_codecs={codec}");
    if matches!(role, BaresipRole::Callee { .. }) {
        account.push_str(";answermode=auto");
    }
    let dial = match role {
        BaresipRole::Caller {
            target, quit_after, ..
        } => Some((*target, *quit_after)),
        BaresipRole::Callee { .. } | BaresipRole::Echo => None,
    };
    let proc = launch_baresip(name, &conf, &account, dial, None, dir, Tails::Plain)?;
    Ok((proc, sip))
}

/// The newest `dump-*-{kind}.wav` of a baresip instance (`enc` = encoder input, `dec` = decoder output).
fn baresip_dump(dir: &Path, name: &str, kind: &str) -> Result<PathBuf> {
    let dumps = dir.join(name).join("dumps");
    let suffix = format!("-{kind}.wav");
    let mut files: Vec<PathBuf> = fs::read_dir(&dumps)
        .with_context(|| format!("listing {}", dumps.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("dump-") && n.ends_with(&suffix))
        })
        .collect();
    files.sort();
    files
        .pop()
        .with_context(|| format!("baresip {name} wrote no {kind} dump in {}", dumps.display()))
}

/// A `tandem-cli` command line for a direct (registrar-less) account on 127.0.0.1.
fn cli_command(bin: &Path, user: &str, listen: SocketAddr, rest: &[String]) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "--user",
        user,
        "--domain",
        "127.0.0.1",
        "--transport",
        "udp",
    ])
    .arg("--listen")
    .arg(listen.to_string())
    .args(rest);
    c
}

/// The `media` event line's `codec=` value in a `tandem-cli` stdout.
fn cli_media_codec(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("media "))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("codec="))
                .map(str::to_string)
        })
}

// ---------------------------------------------------------------------------------------------------------------
// One codec's real calls

/// CPU of one endpoint over the measured window.
#[derive(Debug, Clone)]
struct EndpointCpu {
    who: String,
    cpu: Duration,
    wall: Duration,
}

impl EndpointCpu {
    /// Share of one core, in percent.
    fn percent(&self) -> f64 {
        core_percent(self.cpu, self.wall)
    }
}

/// The results of one codec's four calls.
struct CodecRun {
    codec: String,
    tandem_cpu: Vec<EndpointCpu>,
    baresip_cpu: Vec<EndpointCpu>,
    tandem_rtt: Option<Spread>,
    baresip_rtt: Option<Spread>,
    /// The same with the echo's lean buffers on the baresip caller.
    baresip_lean_rtt: Option<Spread>,
    notes: Vec<String>,
}

fn sample_all(procs: &[(&str, u32)], ticks: f64) -> Result<Vec<Duration>> {
    procs
        .iter()
        .map(|(name, pid)| {
            process_cpu(*pid, ticks).with_context(|| format!("{name} ended before the CPU sample"))
        })
        .collect()
}

/// The echo round trip of a baresip caller from the wall-clock write times of its encoder-input and
/// decoder-output dumps.
fn baresip_round_trip(dir: &Path, name: &str, watcher: DumpWatcher) -> Result<Option<Spread>> {
    let growth = watcher.finish();
    let mut csv = String::from("file,secs,bytes\n");
    for (path, g) in &growth {
        for (t, len) in g {
            let _ = writeln!(csv, "{},{:.4},{len}", path.display(), t.as_secs_f64());
        }
    }
    fs::write(dir.join(format!("{name}-dump-growth.csv")), csv)?;
    let enc_path = baresip_dump(dir, name, "enc")?;
    let dec_path = baresip_dump(dir, name, "dec")?;
    let (Some(enc_growth), Some(dec_growth)) = (growth.get(&enc_path), growth.get(&dec_path))
    else {
        bail!(
            "the dump watcher did not see {} and {}",
            enc_path.display(),
            dec_path.display()
        );
    };
    let sent = onset_wall_secs(enc_growth, &read_wav(&enc_path)?);
    let back = onset_wall_secs(dec_growth, &read_wav(&dec_path)?);
    Ok(Spread::of(round_trips(&sent, &back)))
}

fn run_codec(
    bin: &Path,
    codec: &str,
    baresip_codec: &str,
    call_secs: u64,
    dir: &Path,
    ticks: f64,
) -> Result<CodecRun> {
    let dir = dir.join(codec);
    fs::create_dir_all(&dir)?;
    let file_secs = call_secs as f64 + 10.0;
    let speech_a = dir.join("speech-120.wav");
    let speech_b = dir.join("speech-210.wav");
    let bursts = dir.join("bursts.wav");
    write_wav(&speech_a, RATE, &speech_signal(120.0, file_secs))?;
    write_wav(&speech_b, RATE, &speech_signal(210.0, file_secs))?;
    write_wav(&bursts, RATE, &burst_signal(file_secs))?;
    let codec_arg = codec.to_string();
    let s = |p: &Path| p.display().to_string();

    // Callees first: tandem-cli answer, baresip auto-answer, two baresip echoes.
    let t_callee_addr = SocketAddr::from(([127, 0, 0, 1], free_block(1)?));
    let t_callee_rec = dir.join("tandem-callee-heard.wav");
    let mut t_callee = Proc::spawn(
        "tandem-callee",
        cli_command(
            bin,
            "bob",
            t_callee_addr,
            &[
                "answer".into(),
                "--no-register".into(),
                "--count".into(),
                "1".into(),
                "--play".into(),
                s(&speech_b),
                "--record".into(),
                s(&t_callee_rec),
                "--codec".into(),
                codec_arg.clone(),
            ],
        ),
        &dir,
        Tails::Plain,
    )?;
    let (mut b_callee, b_callee_addr) = start_baresip(
        "baresip-callee",
        &BaresipRole::Callee { source: &speech_b },
        baresip_codec,
        true,
        &dir,
    )?;
    let (mut echo_t, echo_t_addr) = start_baresip(
        "echo-for-tandem",
        &BaresipRole::Echo,
        baresip_codec,
        false,
        &dir,
    )?;
    let (mut echo_b, echo_b_addr) = start_baresip(
        "echo-for-baresip",
        &BaresipRole::Echo,
        baresip_codec,
        false,
        &dir,
    )?;
    let (mut echo_lean, echo_lean_addr) = start_baresip(
        "echo-for-lean-baresip",
        &BaresipRole::Echo,
        baresip_codec,
        false,
        &dir,
    )?;
    let ready = Duration::from_secs(10);
    wait_sip_ready(echo_lean_addr, &mut echo_lean, ready, "bench")?;
    wait_sip_ready(t_callee_addr, &mut t_callee, ready, "bench")?;
    wait_sip_ready(b_callee_addr, &mut b_callee, ready, "bench")?;
    wait_sip_ready(echo_t_addr, &mut echo_t, ready, "bench")?;
    wait_sip_ready(echo_b_addr, &mut echo_b, ready, "bench")?;

    // Callers.
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let t_caller_rec = dir.join("tandem-caller-heard.wav");
    let mut t_caller = Proc::spawn(
        "tandem-caller",
        cli_command(
            bin,
            "alice",
            any,
            &[
                "call".into(),
                format!("sip:bob@{t_callee_addr}"),
                "--duration".into(),
                call_secs.to_string(),
                "--timeout".into(),
                "10".into(),
                "--play".into(),
                s(&speech_a),
                "--record".into(),
                s(&t_caller_rec),
                "--codec".into(),
                codec_arg.clone(),
            ],
        ),
        &dir,
        Tails::Plain,
    )?;
    let t_echo_rec = dir.join("tandem-echo-returned.wav");
    let mut t_prober = Proc::spawn(
        "tandem-echo-caller",
        cli_command(
            bin,
            "carol",
            any,
            &[
                "call".into(),
                format!("sip:peer@{echo_t_addr}"),
                "--duration".into(),
                call_secs.to_string(),
                "--timeout".into(),
                "10".into(),
                "--play".into(),
                s(&bursts),
                "--record".into(),
                s(&t_echo_rec),
                "--codec".into(),
                codec_arg.clone(),
            ],
        ),
        &dir,
        Tails::Plain,
    )?;
    let (mut b_caller, _) = start_baresip(
        "baresip-caller",
        &BaresipRole::Caller {
            source: &speech_a,
            target: b_callee_addr,
            quit_after: call_secs + 1,
            lean: false,
        },
        baresip_codec,
        true,
        &dir,
    )?;
    let epoch = Instant::now();
    let watcher = DumpWatcher::start(dir.join("baresip-echo-caller").join("dumps"), epoch);
    let lean_watcher =
        DumpWatcher::start(dir.join("baresip-lean-echo-caller").join("dumps"), epoch);
    let (mut b_prober, _) = start_baresip(
        "baresip-echo-caller",
        &BaresipRole::Caller {
            source: &bursts,
            target: echo_b_addr,
            quit_after: call_secs + 1,
            lean: false,
        },
        baresip_codec,
        true,
        &dir,
    )?;
    let (mut b_lean_prober, _) = start_baresip(
        "baresip-lean-echo-caller",
        &BaresipRole::Caller {
            source: &bursts,
            target: echo_lean_addr,
            quit_after: call_secs + 1,
            lean: true,
        },
        baresip_codec,
        true,
        &dir,
    )?;
    let calls_started = Instant::now();

    // CPU over the steady middle of the calls.
    sleep(CPU_SETTLE);
    let tandem_pids = [
        ("tandem-caller", t_caller.pid()),
        ("tandem-callee", t_callee.pid()),
    ];
    let baresip_pids = [
        ("baresip-caller", b_caller.pid()),
        ("baresip-callee", b_callee.pid()),
    ];
    let t0 = Instant::now();
    let tandem_before = sample_all(&tandem_pids, ticks)?;
    let baresip_before = sample_all(&baresip_pids, ticks)?;
    let window_end = calls_started + Duration::from_secs(call_secs) - CPU_TAIL;
    sleep(window_end.saturating_duration_since(Instant::now()));
    let tandem_after = sample_all(&tandem_pids, ticks)?;
    let baresip_after = sample_all(&baresip_pids, ticks)?;
    let wall = t0.elapsed();
    let cpu = |pids: &[(&str, u32)], before: &[Duration], after: &[Duration]| -> Vec<EndpointCpu> {
        pids.iter()
            .zip(before.iter().zip(after))
            .map(|((who, _), (b, a))| EndpointCpu {
                who: (*who).to_string(),
                cpu: a.saturating_sub(*b),
                wall,
            })
            .collect()
    };
    let tandem_cpu = cpu(&tandem_pids, &tandem_before, &tandem_after);
    let baresip_cpu = cpu(&baresip_pids, &baresip_before, &baresip_after);

    // Let every call end by itself (tandem-cli hangs up after --duration, baresip quits after -t).
    let end_deadline = calls_started + Duration::from_secs(call_secs + 12);
    let mut notes = Vec::new();
    for p in [&mut t_caller, &mut t_prober] {
        match p.wait_until(end_deadline)? {
            Some(status) if status.success() => {}
            Some(status) => bail!("{} failed ({status})\n{}", p.name, p.tails()),
            None => bail!("{} did not hang up in time\n{}", p.name, p.tails()),
        }
    }
    for p in [&mut b_caller, &mut b_prober, &mut b_lean_prober] {
        if p.wait_until(end_deadline)?.is_none() {
            notes.push(format!("{} had to be stopped", p.name));
        }
    }
    if t_callee
        .wait_until(Instant::now() + Duration::from_secs(5))?
        .is_none()
    {
        notes.push("tandem-callee did not exit after the BYE".into());
    }
    t_callee.stop();
    b_callee.stop();
    echo_t.stop();
    echo_b.stop();
    echo_lean.stop();

    // Both tandem-cli ends must have negotiated the codec asked for.
    for p in [&t_caller, &t_callee, &t_prober] {
        match cli_media_codec(&p.stdout_text()) {
            Some(c) if c.eq_ignore_ascii_case(codec) => {}
            Some(c) => bail!("{} negotiated {c}, not {codec}\n{}", p.name, p.tails()),
            None => bail!("{} printed no `media` line\n{}", p.name, p.tails()),
        }
    }
    // Audio really flowed both ways in the CPU calls (else the CPU numbers mean nothing).
    let heard = |path: &Path, who: &str| -> Result<()> {
        let audio = read_wav(path)?;
        let rms = audio.middle_rms();
        if rms < 1000.0 {
            bail!(
                "{who} recorded no audio ({}: {:.1} s, RMS {rms:.0})",
                path.display(),
                audio.secs()
            );
        }
        Ok(())
    };
    heard(&t_caller_rec, "tandem-caller")?;
    heard(&t_callee_rec, "tandem-callee")?;
    heard(
        &baresip_dump(&dir, "baresip-caller", "dec")?,
        "baresip-caller",
    )?;
    heard(
        &baresip_dump(&dir, "baresip-callee", "dec")?,
        "baresip-callee",
    )?;

    // Round trips through the echoes.
    // tandem-cli: the --play and --record files advance on the same 20 ms tick, so their sample timelines are
    // one clock.
    let sent = onset_secs(&read_wav(&bursts)?);
    let tandem_rtt = Spread::of(round_trips(&sent, &onset_secs(&read_wav(&t_echo_rec)?)));
    // baresip: its dumps carry no clock of their own; the watchers saw when each frame was written.
    let baresip_rtt = baresip_round_trip(&dir, "baresip-echo-caller", watcher)?;
    let baresip_lean_rtt = baresip_round_trip(&dir, "baresip-lean-echo-caller", lean_watcher)?;
    if tandem_rtt.is_none() {
        notes.push("no burst came back to tandem-cli through the echo".into());
    }
    if baresip_rtt.is_none() || baresip_lean_rtt.is_none() {
        notes.push("no burst came back to (one of the) baresip callers through the echo".into());
    }
    Ok(CodecRun {
        codec: codec.to_string(),
        tandem_cpu,
        baresip_cpu,
        tandem_rtt,
        baresip_rtt,
        baresip_lean_rtt,
        notes,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Report

fn mean_percent(cpus: &[EndpointCpu]) -> f64 {
    if cpus.is_empty() {
        return 0.0;
    }
    cpus.iter().map(EndpointCpu::percent).sum::<f64>() / cpus.len() as f64
}

fn per_core(percent: f64) -> String {
    if percent > 0.0 {
        format!("{:.0}", 100.0 / percent)
    } else {
        "n/a".into()
    }
}

fn fmt_spread(s: Option<&Spread>) -> String {
    s.map_or_else(
        || "n/a".into(),
        |s| {
            format!(
                "{:.1} ms (min {:.1}, max {:.1}, {} bursts)",
                s.median, s.min, s.max, s.count
            )
        },
    )
}

/// What the machine was doing while the bench ran.
struct Machine {
    cpus: usize,
    load_before: Option<f64>,
    load_after: Option<f64>,
}

fn build_report(
    crate_benches: &BTreeMap<String, Result<Vec<BenchLine>, String>>,
    runs: &[CodecRun],
    call_secs: u64,
    machine: &Machine,
) -> (Value, String) {
    let mut md = String::new();
    let _ = writeln!(md, "# cargo xtask bench media\n");
    let load = |l: Option<f64>| l.map_or_else(|| "?".into(), |l| format!("{l:.2}"));
    let _ = writeln!(
        md,
        "{} CPUs; load average {} before, {} after (a busy machine inflates CPU and latency figures).\n",
        machine.cpus,
        load(machine.load_before),
        load(machine.load_after)
    );

    // (1) codec realtime factors and (2)/(3) in-process pipeline, from the media crate's benches.
    let _ = writeln!(md, "## Media crate benches (in process)\n");
    let mut crate_json = serde_json::Map::new();
    for (name, result) in crate_benches {
        match result {
            Ok(lines) => {
                let _ = writeln!(md, "### `{name}`\n");
                for l in lines {
                    let fields: Vec<String> =
                        l.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let _ = writeln!(md, "- **{}** {}", l.name, fields.join(" "));
                }
                let _ = writeln!(md);
                crate_json.insert(
                    name.clone(),
                    Value::Array(lines.iter().map(BenchLine::json).collect()),
                );
            }
            Err(e) => {
                let _ = writeln!(md, "### `{name}`: FAILED\n\n```\n{e}\n```\n");
                crate_json.insert(name.clone(), json!({ "error": e }));
            }
        }
    }
    let pipeline_lines: Vec<&BenchLine> = crate_benches
        .values()
        .filter_map(|r| r.as_ref().ok())
        .flatten()
        .collect();
    let mut summary = Vec::new();
    for l in &pipeline_lines {
        if l.name == "pipeline_latency"
            && let (Some(codec), Some(median)) = (l.get("codec"), l.num("median_ms"))
        {
            let target = l.num("target_ms").unwrap_or(60.0);
            summary.push(format!(
                "pipeline latency {codec}: {median:.1} ms median (target <= {target:.0} ms: {})",
                if median <= target { "met" } else { "MISSED" }
            ));
        }
        if l.name == "calls_per_core"
            && let (Some(codec), Some(n)) = (l.get("codec"), l.get("calls_per_core"))
        {
            summary.push(format!("sessions per core {codec} (in process): {n}"));
        }
        if l.name == "codec"
            && let (Some(codec), Some(rtf)) = (l.get("codec"), l.get("realtime_factor"))
        {
            summary.push(format!(
                "codec {codec}: encode+decode of 20 ms frames runs {rtf}x realtime (enc {} us, dec {} us, PLC {} us per frame)",
                l.get("enc_us").unwrap_or("?"),
                l.get("dec_us").unwrap_or("?"),
                l.get("plc_us").unwrap_or("?"),
            ));
        }
        if l.name == "chain"
            && let (Some(codec), Some(legs)) = (l.get("codec"), l.get("legs_per_core"))
        {
            summary.push(format!(
                "chain {codec}: one call leg's audio path costs {} us per 20 ms = {legs} legs per core (codec work only)",
                l.get("us_per_20ms").unwrap_or("?"),
            ));
        }
    }

    // (3)/(4) real binaries.
    let _ = writeln!(
        md,
        "## Real binaries on loopback ({call_secs} s calls at once per codec)\n\n\
         ### CPU per endpoint process (share of one core over the steady middle of the call)\n"
    );
    let _ = writeln!(
        md,
        "| codec | tandem-cli caller | tandem-cli callee | endpoints/core | baresip caller | baresip callee | endpoints/core |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    let cpu_cell = |cpus: &[EndpointCpu], who: &str| {
        cpus.iter()
            .find(|c| c.who == who)
            .map_or_else(|| "n/a".into(), |c| format!("{:.2} %", c.percent()))
    };
    for r in runs {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.codec,
            cpu_cell(&r.tandem_cpu, "tandem-caller"),
            cpu_cell(&r.tandem_cpu, "tandem-callee"),
            per_core(mean_percent(&r.tandem_cpu)),
            cpu_cell(&r.baresip_cpu, "baresip-caller"),
            cpu_cell(&r.baresip_cpu, "baresip-callee"),
            per_core(mean_percent(&r.baresip_cpu)),
        );
    }
    let _ = writeln!(
        md,
        "\n### Round trip through a baresip echo (median, min-max; half of it in brackets)\n\n\
         | codec | tandem-cli | baresip, default buffers (jitter {ENDPOINT_JITTER_BUFFER} frames) | \
         baresip, lean buffers (jitter {ECHO_JITTER_BUFFER} frames) | tandem-cli minus baresip default | \
         tandem-cli minus baresip lean |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let rtt_cell = |s: Option<&Spread>| {
        s.map_or_else(
            || "n/a".into(),
            |s| {
                format!(
                    "{:.1} ms ({:.1}-{:.1}) [{:.1}]",
                    s.median,
                    s.min,
                    s.max,
                    s.median / 2.0
                )
            },
        )
    };
    let delta = |a: Option<&Spread>, b: Option<&Spread>| match (a, b) {
        (Some(a), Some(b)) => format!("{:+.1} ms", a.median - b.median),
        _ => "n/a".into(),
    };
    let mut runs_json = Vec::new();
    for r in runs {
        let t = mean_percent(&r.tandem_cpu);
        let b = mean_percent(&r.baresip_cpu);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            r.codec,
            rtt_cell(r.tandem_rtt.as_ref()),
            rtt_cell(r.baresip_rtt.as_ref()),
            rtt_cell(r.baresip_lean_rtt.as_ref()),
            delta(r.tandem_rtt.as_ref(), r.baresip_rtt.as_ref()),
            delta(r.tandem_rtt.as_ref(), r.baresip_lean_rtt.as_ref()),
        );
        summary.push(format!(
            "{}: CPU per endpoint tandem-cli {t:.2} % vs baresip {b:.2} % of a core ({} vs {} endpoints/core)",
            r.codec,
            per_core(t),
            per_core(b),
        ));
        summary.push(format!(
            "{}: echo round trip tandem-cli {}, baresip {} (default buffers) / {} (lean buffers)",
            r.codec,
            fmt_spread(r.tandem_rtt.as_ref()),
            fmt_spread(r.baresip_rtt.as_ref()),
            fmt_spread(r.baresip_lean_rtt.as_ref()),
        ));
        let cpu_json = |cpus: &[EndpointCpu]| -> Value {
            Value::Array(
                cpus.iter()
                    .map(|c| {
                        json!({ "process": c.who, "cpu_s": (c.cpu.as_secs_f64() * 1000.0).round() / 1000.0,
                                "wall_s": round1(c.wall.as_secs_f64()),
                                "percent_of_core": (c.percent() * 100.0).round() / 100.0 })
                    })
                    .collect(),
            )
        };
        runs_json.push(json!({
            "codec": r.codec,
            "tandem_cli": { "cpu": cpu_json(&r.tandem_cpu), "mean_percent_per_endpoint": (t * 100.0).round() / 100.0,
                            "echo_round_trip": r.tandem_rtt.as_ref().map(Spread::json) },
            "baresip": { "cpu": cpu_json(&r.baresip_cpu), "mean_percent_per_endpoint": (b * 100.0).round() / 100.0,
                         "echo_round_trip": r.baresip_rtt.as_ref().map(Spread::json),
                         "echo_round_trip_lean_buffers": r.baresip_lean_rtt.as_ref().map(Spread::json) },
            "notes": r.notes,
        }));
    }
    let _ = writeln!(md);
    for r in runs {
        for n in &r.notes {
            let _ = writeln!(md, "- note ({}): {n}", r.codec);
        }
    }
    let _ = writeln!(
        md,
        "\nMethod. CPU: utime+stime from /proc/PID/stat of each endpoint process over the steady middle of the \
         call (tandem-cli release build with --play/--record WAV files; baresip with an aufile source, decoding \
         into an unpaired aubridge player, sndfile dumps on). Latency: each caller sends 1 kHz bursts to a baresip \
         `echo` peer (aubridge; jitter_buffer_delay {ECHO_JITTER_BUFFER}, audio_buffer {ECHO_AUDIO_BUFFER} ms) and \
         the round trip is the returned onset minus the sent onset. tandem-cli: on the --play/--record sample \
         timeline (both advance on the same 20 ms tick, i.e. device hand-off to device hand-off). baresip: the \
         wall-clock times its sndfile dumps of the encoder input and the decoder output were written (watched \
         every {} ms), so its source and playout buffers (audio_buffer {ENDPOINT_AUDIO_BUFFER} ms) are not \
         included: a lower bound for baresip. baresip endpoints use baresip's own defaults (jitter_buffer_delay \
         {ENDPOINT_JITTER_BUFFER} frames, as in tests/peers/baresip-config.in); the lean baresip caller uses the \
         echo's buffers. Each caller has its own echo peer of identical configuration; both callers go through the same kind of echo, so the difference \
         of the round trips is the difference of the callers' own send + receive pipelines (one-way latency).",
        WATCH_INTERVAL.as_millis()
    );
    let _ = writeln!(md, "\n## Summary\n");
    for s in &summary {
        let _ = writeln!(md, "- {s}");
    }
    let report = json!({
        "call_secs": call_secs,
        "machine": { "cpus": machine.cpus, "loadavg_before": machine.load_before, "loadavg_after": machine.load_after },
        "crate_benches": Value::Object(crate_json),
        "real_calls": runs_json,
        "summary": summary,
    });
    (report, md)
}

// ---------------------------------------------------------------------------------------------------------------
// Entry point

/// `cargo xtask bench media`.
pub fn media(args: &[String]) -> Result<()> {
    let call_secs = parse_secs(
        args,
        "--call-secs",
        DEFAULT_CALL_SECS,
        MIN_CALL_SECS..=MAX_CALL_SECS,
        "media",
    )?;
    crate::packages::ensure(MEDIA_PACKAGES)?;
    check_baresip(NEEDED_MODULES)?;

    // Builds (not part of the bounded run).
    let bin = build_cli()?;
    let target = target_dir()?;
    let benches = media_bench_targets()?;
    if benches.is_empty() {
        bail!("tandem-media has no [[bench]] targets (expected codec and pipeline)");
    }
    println!(
        "xtask: == build tandem-media benches ({}) ==",
        benches.join(", ")
    );
    let mut executables = BTreeMap::new();
    for name in &benches {
        executables.insert(
            name.clone(),
            build_bench("tandem-media", name).map_err(|e| format!("{e:#}")),
        );
    }

    let out_dir = target.join("bench-media");
    // Each run keeps its logs and WAV files (about 60 MB) until the next run replaces them.
    let log_dir = fresh_run_dir(&out_dir)?;
    println!("xtask bench media: logs in {}", log_dir.display());
    let started = Instant::now();
    let load_before = loadavg();

    println!("xtask: == media crate benches ({}) ==", benches.join(", "));
    let mut crate_results = BTreeMap::new();
    for name in ["codec", "pipeline"] {
        if !benches.iter().any(|b| b == name) {
            crate_results.insert(
                name.to_string(),
                Err(format!("tandem-media has no `{name}` bench target")),
            );
        }
    }
    for (name, exe) in &executables {
        let r = exe
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|exe| run_media_bench(name, exe, &log_dir).map_err(|e| format!("{e:#}")));
        if let Err(e) = &r {
            eprintln!("xtask bench media: {e}");
        }
        crate_results.insert(name.clone(), r);
    }

    println!("xtask: == real calls: tandem-cli and baresip, {call_secs} s per codec ==");
    let ticks = clock_ticks();
    let mut runs = Vec::new();
    for (codec, baresip_codec) in CODECS {
        let t = Instant::now();
        let run = run_codec(&bin, codec, baresip_codec, call_secs, &log_dir, ticks).with_context(
            || format!("{codec} calls (logs in {})", log_dir.join(codec).display()),
        )?;
        println!("  {codec}: done in {:.0}s", t.elapsed().as_secs_f64());
        runs.push(run);
    }

    let machine = Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_before,
        load_after: loadavg(),
    };
    let (report, md) = build_report(&crate_results, &runs, call_secs, &machine);
    let json_path = out_dir.join("report.json");
    let md_path = out_dir.join("report.md");
    fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    fs::write(&md_path, &md)?;
    println!("\n{md}");
    println!(
        "xtask bench media: measured in {:.0}s; report in {} and {}",
        started.elapsed().as_secs_f64(),
        json_path.display(),
        md_path.display()
    );
    let failed: Vec<&String> = crate_results
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(n, _)| n)
        .collect();
    if !failed.is_empty() {
        bail!(
            "media crate bench(es) missing or failed: {}",
            failed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
