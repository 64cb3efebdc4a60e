//! Media pipeline bench: end-to-end latency and calls per core of real media sessions.
//!
//! * Latency: two sessions on loopback UDP; A's capture device emits silence with a tone burst
//!   every second; B's playback device timestamps the first loud sample of each burst. The
//!   latency is playback time minus capture time of the onset sample, both measured where the
//!   session hands frames to / takes frames from the device (so device driver buffers are not
//!   included: with file devices there are none). Reported per codec: median, min, max.
//! * Calls per core: N session pairs on a current-thread runtime for T seconds with tone
//!   capture and null playback; the process CPU time (user + system, `/proc/self/stat`)
//!   divided by the session-seconds gives the CPU cost of one call leg, and its inverse the
//!   number of calls (one session each) a core sustains.
//!
//! `cargo bench -p tandem-media --bench pipeline`; `TANDEM_BENCH_SECS` (default 6) and
//! `TANDEM_BENCH_PAIRS` (default 10) shorten or lengthen the run. Output lines are
//! `key=value` pairs for `cargo xtask bench media` to collect.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_media::codec::{CodecKind, CodecSpec};
use tandem_media::device::{CaptureDevice, DeviceError, NullPlayback, PlaybackDevice, ToneCapture};
use tandem_media::session::{MediaConfig, MediaSession, SessionTuning};
use tandem_media::tone::SineGenerator;
use tokio::net::UdpSocket;

const RATE: u32 = 48_000;
/// A sample louder than this is "sound" for onset detection.
const ONSET_THRESHOLD: i16 = 4000;
/// Tone burst length and period of the latency probe.
const BURST: Duration = Duration::from_millis(300);
const PERIOD: Duration = Duration::from_millis(1000);

/// Capture device: silence with a 1 kHz burst every `PERIOD`, remembering when each burst's
/// first sample was handed to the session.
struct BurstCapture {
    generator: SineGenerator,
    position: u64,
    onsets: Arc<Mutex<Vec<Instant>>>,
}

impl CaptureDevice for BurstCapture {
    fn rate(&self) -> u32 {
        RATE
    }

    fn read_frame(&mut self, out: &mut [i16]) -> Result<bool, DeviceError> {
        let now = Instant::now();
        let period = samples(PERIOD);
        let burst = samples(BURST);
        for (i, sample) in out.iter_mut().enumerate() {
            let pos = self.position + i as u64;
            let phase = pos % period;
            // The first burst starts one period in, after the call has settled.
            if pos >= period && phase < burst {
                let mut one = [0i16; 1];
                self.generator.fill(&mut one);
                *sample = one[0];
                if phase == 0 {
                    self.onsets
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(now + sample_time(i));
                }
            } else {
                *sample = 0;
            }
        }
        self.position += out.len() as u64;
        Ok(true)
    }
}

/// Playback device: the instant of the first loud sample after each silence.
struct OnsetPlayback {
    quiet_run: u64,
    detections: Arc<Mutex<Vec<Instant>>>,
}

impl PlaybackDevice for OnsetPlayback {
    fn rate(&self) -> u32 {
        RATE
    }

    fn write_frame(&mut self, pcm: &[i16]) -> Result<(), DeviceError> {
        let now = Instant::now();
        for (i, &s) in pcm.iter().enumerate() {
            if s.unsigned_abs() > ONSET_THRESHOLD.unsigned_abs() {
                // A burst starts after at least 100 ms of quiet.
                if self.quiet_run > samples(Duration::from_millis(100)) {
                    self.detections
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(now + sample_time(i));
                }
                self.quiet_run = 0;
            } else {
                self.quiet_run += 1;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}

fn samples(d: Duration) -> u64 {
    (d.as_secs_f64() * f64::from(RATE)) as u64
}

fn sample_time(i: usize) -> Duration {
    Duration::from_secs_f64(i as f64 / f64::from(RATE))
}

fn codecs() -> [(&'static str, CodecSpec); 2] {
    [
        ("opus", CodecSpec::new(CodecKind::Opus, 111)),
        ("pcmu", CodecSpec::new(CodecKind::Pcmu, 0)),
    ]
}

async fn bound() -> std::io::Result<(Arc<UdpSocket>, SocketAddr)> {
    let s = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = s.local_addr()?;
    Ok((Arc::new(s), addr))
}

async fn latency(
    name: &str,
    codec: CodecSpec,
    secs: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let (sa, addr_a) = bound().await?;
    let (sb, addr_b) = bound().await?;
    let onsets = Arc::new(Mutex::new(Vec::new()));
    let detections = Arc::new(Mutex::new(Vec::new()));
    let capture = BurstCapture {
        generator: SineGenerator::new(1000.0, RATE, 0.5),
        position: 0,
        onsets: Arc::clone(&onsets),
    };
    let playback = OnsetPlayback {
        quiet_run: 0,
        detections: Arc::clone(&detections),
    };
    let cfg_a = MediaConfig::new(
        sa,
        addr_b,
        codec.clone(),
        Box::new(capture),
        Box::new(NullPlayback::new(RATE)),
    );
    let cfg_b = MediaConfig::new(
        sb,
        addr_a,
        codec,
        Box::new(ToneCapture::new(0.0, RATE, 0.0)),
        Box::new(playback),
    );
    // `TANDEM_BENCH_JB_MIN_MS` overrides the jitter buffer's minimum delay.
    let mut tuning = SessionTuning::default();
    if let Some(min) = std::env::var("TANDEM_BENCH_JB_MIN_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        tuning = tuning.with_jitter_delay(Duration::from_millis(min), tuning.jitter_max_delay);
    }
    let (a, _ea) = MediaSession::start_tuned(cfg_a, tuning)?;
    let (b, _eb) = MediaSession::start_tuned(cfg_b, tuning)?;
    tokio::time::sleep(Duration::from_secs(secs.max(3))).await;
    let receive = b.receive_stats();
    a.stop().await;
    b.stop().await;
    let onsets = onsets.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let detections = detections.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // Pair each detection with the latest onset before it.
    let mut ms: Vec<f64> = detections
        .iter()
        .filter_map(|d| {
            onsets
                .iter()
                .rev()
                .find(|o| *o <= d)
                .map(|o| d.duration_since(*o).as_secs_f64() * 1000.0)
        })
        .filter(|ms| *ms < PERIOD.as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    match (ms.first(), ms.get(ms.len() / 2), ms.last()) {
        (Some(min), Some(median), Some(max)) => println!(
            "pipeline_latency codec={name} bursts={} median_ms={median:.1} min_ms={min:.1} max_ms={max:.1} target_ms=60 jitter_delay_ms={:.1} jitter_target_ms={:.1} concealed_ms={}",
            ms.len(),
            receive.jitter.delay_ms,
            receive.jitter.target_ms,
            receive.concealed_ms,
        ),
        _ => println!("pipeline_latency codec={name} bursts=0 error=no-onset-detected"),
    }
    Ok(())
}

/// User + system CPU time of this process.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = clock_ticks();
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks as f64,
    ))
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

async fn calls_per_core(
    name: &str,
    codec: CodecSpec,
    pairs: usize,
    secs: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut sessions = Vec::new();
    for i in 0..pairs {
        let (sa, addr_a) = bound().await?;
        let (sb, addr_b) = bound().await?;
        let freq = 300.0 + 50.0 * i as f32;
        for (socket, remote, f) in [(sa, addr_b, freq), (sb, addr_a, freq * 1.5)] {
            let cfg = MediaConfig::new(
                socket,
                remote,
                codec.clone(),
                Box::new(ToneCapture::new(f, RATE, 0.3)),
                Box::new(NullPlayback::new(RATE)),
            );
            let (session, events) = MediaSession::start(cfg)?;
            sessions.push((session, events));
        }
    }
    // Let the encoders and jitter buffers settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = process_cpu();
    let wall0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let wall = wall0.elapsed();
    let cpu1 = process_cpu();
    let mut lost = 0i64;
    let mut received = 0u64;
    let count = sessions.len();
    for (session, _events) in sessions {
        let q = session.stop().await;
        lost += q.packets_lost.max(0);
        received += q.packets_received;
    }
    let (Some(cpu0), Some(cpu1)) = (cpu0, cpu1) else {
        println!("calls_per_core codec={name} error=no-/proc/self/stat");
        return Ok(());
    };
    let cpu = cpu1.saturating_sub(cpu0).as_secs_f64();
    let session_seconds = count as f64 * wall.as_secs_f64();
    let per_session = cpu / session_seconds;
    let per_core = if per_session > 0.0 {
        1.0 / per_session
    } else {
        f64::INFINITY
    };
    println!(
        "calls_per_core codec={name} sessions={count} secs={:.1} cpu_ms_per_session_second={:.2} calls_per_core={per_core:.0} loss_packets={lost} received_packets={received}",
        wall.as_secs_f64(),
        per_session * 1000.0
    );
    Ok(())
}

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo test --benches` runs this with `--bench`-less args; keep that run short.
    let quick = !std::env::args().any(|a| a == "--bench");
    let secs = if quick {
        3
    } else {
        env_u64("TANDEM_BENCH_SECS", 6)
    };
    let pairs = if quick {
        2
    } else {
        env_u64("TANDEM_BENCH_PAIRS", 10) as usize
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        for (name, codec) in codecs() {
            latency(name, codec, secs).await?;
        }
        for (name, codec) in codecs() {
            calls_per_core(name, codec, pairs, secs).await?;
        }
        Ok(())
    })
}
