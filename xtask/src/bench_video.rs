//! `cargo xtask bench video`: the video numbers of the video issue, in one bounded run (< ~5 minutes).
//!
//! 1. The video crate's own benches (`cargo bench -p tandem-video --bench codec|latency`) are built, run with a
//!    deadline, and their `name key=value ...` lines collected: VP8 and H.264 encode/decode milliseconds per
//!    frame at 640x480 and 1280x720, and the end-to-end latency of two in-process video sessions on loopback
//!    (source frame -> encoder -> RTP -> assembler -> decoder -> sink, matched by the stamped frame counter).
//! 2. Real binaries on loopback, one pair at a time, at 320x240@15 and 640x480@30, VP8, with Opus audio as in a
//!    normal call: `tandem-cli call` -> `tandem-cli answer --no-register` and `baresip` -> `baresip` (auto answer)
//!    at the same size, frame rate and bitrate. CPU is user + system time from `/proc/PID/stat` over the steady
//!    middle of each call, per endpoint, as a share of one core. Two sources:
//!    * the same content for both: a loop of moving bars made by this bench, read by `tandem-cli --video FILE`
//!      from a regular Y4M file (which it loops) and by baresip's `avformat` video source from a FIFO the bench
//!      keeps feeding (avformat stops at the end of a file) — the fair comparison;
//!    * each one's own synthetic source: tandem-cli's `--video pattern` and baresip's `fakevideo` (a still frame,
//!      which costs its encoder almost nothing — shown for reference, not as a like-for-like ratio).
//!
//!    Every call must show video both ways (tandem-cli's `video stats`, baresip's RTP statistics and its
//!    "receiving with resolution" line) or the bench fails: CPU of a call without video means nothing.
//!
//! Every process started here runs in its own process group and is stopped on the way out (also on errors);
//! every wait has a deadline. The report is printed and written to `<target>/bench-video/report.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench_common::{
    BARESIP_MODULES, Proc, StopThread, Tails, build_bench, build_cli, check_baresip, clock_ticks,
    core_percent, free_block, fresh_run_dir, launch_baresip, loadavg, parse_secs, process_cpu,
    run_bench, wait_sip_ready, write_wav,
};
use crate::cmd::target_dir;
use crate::packages::{Need, Probe};

/// What this bench needs besides Rust: the reference peer and the native build dependencies of the codecs.
const VIDEO_PACKAGES: &[Need] = &[
    (Probe::Bin("baresip"), "baresip"),
    (Probe::Bin("cc"), "build-essential"),
    (Probe::Bin("pkg-config"), "pkg-config"),
    (Probe::Bin("cmake"), "cmake"),
    (
        Probe::File("/usr/lib/x86_64-linux-gnu/pkgconfig/vpx.pc"),
        "libvpx-dev",
    ),
    (
        Probe::File("/usr/lib/x86_64-linux-gnu/pkgconfig/alsa.pc"),
        "libasound2-dev",
    ),
];

/// The baresip modules the bench loads (from [`BARESIP_MODULES`]).
const NEEDED_MODULES: &[&str] = &[
    "opus.so",
    "aufile.so",
    "aubridge.so",
    "vp8.so",
    "fakevideo.so",
    "avformat.so",
    "account.so",
    "menu.so",
    "uuid.so",
];

/// Default and allowed length of each real call, in seconds.
const DEFAULT_CALL_SECS: u64 = 12;
const MIN_CALL_SECS: u64 = 6;
const MAX_CALL_SECS: u64 = 30;
/// CPU is sampled from this long after the caller starts until this long before its call ends.
const CPU_SETTLE: Duration = Duration::from_millis(3000);
const CPU_TAIL: Duration = Duration::from_millis(1000);
/// A call counts only when each side decoded at least this share of the frames the other side's source made
/// over the call (the first second or two go to call set-up and the first keyframe).
const MIN_FRAME_SHARE: f64 = 0.5;
/// Deadlines of the video crate's benches (after they are built).
const CODEC_BENCH_TIMEOUT: Duration = Duration::from_secs(120);
const LATENCY_BENCH_TIMEOUT: Duration = Duration::from_secs(90);
/// Sample rate of the audio file both endpoints send.
const AUDIO_RATE: u32 = 48_000;
/// Loop length of the moving-bars Y4M stream, in frames.
const BARS_LOOP_FRAMES: u32 = 60;

/// tandem-cli's video bitrate ceiling (`tandem_client_core::video::DEFAULT_MAX_BITRATE_BPS`).
const TANDEM_MAX_BITRATE_BPS: u32 = 1_500_000;

/// One call shape of the real-binary part.
#[derive(Debug, Clone, Copy)]
struct Shape {
    width: u32,
    height: u32,
    fps: u32,
    /// tandem-cli's `--video-bitrate` when it has one (it has not: its rate controller starts near
    /// width x height x fps x 0.15 bit/s and rises towards `TANDEM_MAX_BITRATE_BPS`), and baresip's VP8 target
    /// when tandem-cli's real output could not be counted (else baresip gets what tandem-cli sent).
    bitrate_bps: u32,
}

impl Shape {
    fn size(&self) -> String {
        format!("{}x{}", self.width, self.height)
    }

    fn label(&self) -> String {
        format!("{}x{}@{}", self.width, self.height, self.fps)
    }
}

const SHAPES: &[Shape] = &[
    Shape {
        width: 320,
        height: 240,
        fps: 15,
        bitrate_bps: TANDEM_MAX_BITRATE_BPS,
    },
    Shape {
        width: 640,
        height: 480,
        fps: 30,
        bitrate_bps: TANDEM_MAX_BITRATE_BPS,
    },
];

/// Where the video of a call comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    /// The same moving bars for both implementations, streamed as Y4M through a FIFO.
    Bars,
    /// Each implementation's own synthetic source: tandem-cli `--video pattern`, baresip `fakevideo`.
    Own,
}

/// Which implementation a call pair runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Tandem,
    Baresip,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Tandem => "tandem-cli",
            Peer::Baresip => "baresip",
        }
    }

    fn source_name(self, content: Content) -> &'static str {
        match (self, content) {
            (_, Content::Bars) => "bars (Y4M)",
            (Peer::Tandem, Content::Own) => "pattern",
            (Peer::Baresip, Content::Own) => "fakevideo (still)",
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Media files: the audio both sides send, and the moving-bars Y4M stream

/// Writes a mono 16-bit PCM WAV of a speech-like signal (harmonics with a wandering pitch and a syllable-rate
/// envelope): the audio half of a normal call, the same file for both implementations.
fn write_speech_wav(path: &Path, secs: f64) -> Result<()> {
    use std::f64::consts::TAU;
    let total = (secs * f64::from(AUDIO_RATE)) as usize;
    let mut phase = 0.0f64;
    let pcm: Vec<i16> = (0..total)
        .map(|i| {
            let t = i as f64 / f64::from(AUDIO_RATE);
            let pitch = 150.0 * (1.0 + 0.15 * (TAU * 0.7 * t).sin());
            phase = (phase + TAU * pitch / f64::from(AUDIO_RATE)) % TAU;
            let voice: f64 = (1..=8)
                .map(|k| (f64::from(k) * phase).sin() / f64::from(k))
                .sum();
            let envelope = 0.2 + 0.8 * (TAU * 2.5 * t).sin().max(0.0);
            (0.15 * envelope * voice * f64::from(i16::MAX)) as i16
        })
        .collect();
    write_wav(path, AUDIO_RATE, &pcm)
}

/// One `FRAME` of the moving-bars stream (I420): diagonal luma bars drifting right, a soft vertical gradient,
/// a bright box bouncing across, and chroma bands drifting the other way — enough motion and detail that the
/// encoder works at the configured bitrate, like a real scene would make it.
fn bars_frame(width: u32, height: u32, n: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let mut frame = Vec::with_capacity(6 + w * h + 2 * cw * ch);
    frame.extend_from_slice(b"FRAME\n");
    let shift = n as usize * 4;
    let box_size = (h / 4).max(8);
    let span = w.saturating_sub(box_size).max(1);
    let step = n as usize * 7 % (2 * span);
    let box_x = if step < span { step } else { 2 * span - step };
    let box_y = (h - box_size.min(h)) / 2;
    for y in 0..h {
        for x in 0..w {
            let bar = ((x + y / 2 + shift) / 24 % 8) as u32;
            let mut v = 40 + bar * 22 + (y * 40 / h.max(1)) as u32;
            if (box_x..box_x + box_size).contains(&x) && (box_y..box_y + box_size).contains(&y) {
                v = 235 - ((x + y) % 16) as u32 * 3;
            }
            frame.push(v.min(255) as u8);
        }
    }
    for plane in 0..2usize {
        for y in 0..ch {
            for x in 0..cw {
                let band = (x + 2 * y + 1000 * cw - shift / 2) / 20 % 6;
                let base = if plane == 0 { 90 } else { 150 };
                frame.push((base + band * 12) as u8);
            }
        }
    }
    frame
}

/// Writes one loop of the moving bars as a regular Y4M file.
fn write_bars_file(path: &Path, width: u32, height: u32, fps: u32) -> Result<()> {
    let mut out = std::io::BufWriter::new(
        fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    out.write_all(format!("YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n").as_bytes())?;
    for n in 0..BARS_LOOP_FRAMES {
        out.write_all(&bars_frame(width, height, n))?;
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))
}

/// A file removed when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The moving bars as a Y4M stream written into a FIFO, looped, at whatever pace its reader takes frames. The
/// FIFO is held open read-write and written non-blocking, so the writer never blocks on a reader that has not
/// opened it yet or went away, and stops when dropped.
struct BarsFeed {
    /// The writing thread: stopped and joined when the feed is dropped.
    _writer: StopThread<Result<u64>>,
}

/// `O_NONBLOCK` on Linux (x86-64 and AArch64, the platforms xtask runs on).
const O_NONBLOCK: i32 = 0o4000;

impl BarsFeed {
    /// Creates the FIFO `path` and starts feeding it `width`x`height` frames at `fps` (the header's rate).
    fn start(path: &Path, width: u32, height: u32, fps: u32) -> Result<BarsFeed> {
        let _ = fs::remove_file(path);
        let status = Command::new("mkfifo")
            .arg(path)
            .status()
            .context("running mkfifo")?;
        if !status.success() {
            bail!("mkfifo {} failed ({status})", path.display());
        }
        let mut fifo = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(path)
            .with_context(|| format!("opening the FIFO {}", path.display()))?;
        let header = format!("YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n");
        let frames: Vec<Vec<u8>> = (0..BARS_LOOP_FRAMES)
            .map(|n| bars_frame(width, height, n))
            .collect();
        let writer = StopThread::spawn(move |flag| -> Result<u64> {
            let mut written = 0u64;
            let chunks = std::iter::once(header.as_bytes()).chain(
                (0..).map(|i: usize| frames.get(i % frames.len()).map_or(&[][..], Vec::as_slice)),
            );
            for chunk in chunks {
                let mut rest = chunk;
                while !rest.is_empty() {
                    if flag.load(Ordering::Relaxed) {
                        return Ok(written);
                    }
                    match fifo.write(rest) {
                        Ok(n) => rest = rest.get(n..).unwrap_or(&[]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            sleep(Duration::from_micros(300));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e).context("writing the bars FIFO"),
                    }
                }
                written += 1;
            }
            Ok(written)
        });
        Ok(BarsFeed { _writer: writer })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The video crate's benches

/// One `name key=value ...` line of a bench's output (the leading name is optional).
#[derive(Debug, Clone)]
struct BenchLine {
    name: String,
    fields: BTreeMap<String, String>,
}

impl BenchLine {
    fn parse(line: &str) -> Option<BenchLine> {
        let mut tokens = line.split_whitespace().peekable();
        let first = *tokens.peek()?;
        let name = if first.contains('=') {
            String::new()
        } else {
            if !first.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            tokens.next();
            first.to_string()
        };
        let mut fields = BTreeMap::new();
        for t in tokens {
            let (k, v) = t.split_once('=')?;
            if k.is_empty() {
                return None;
            }
            fields.insert(k.to_string(), v.trim_matches('"').to_string());
        }
        (!fields.is_empty()).then_some(BenchLine { name, fields })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    fn text(&self) -> String {
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if self.name.is_empty() {
            fields.join(" ")
        } else {
            format!("{} {}", self.name, fields.join(" "))
        }
    }
}

/// Runs one built bench executable (as `cargo bench` would) with a deadline; returns its parsed lines.
fn run_video_bench(
    name: &str,
    exe: &Path,
    timeout: Duration,
    log_dir: &Path,
) -> Result<Vec<BenchLine>> {
    let mut cmd = Command::new(exe);
    cmd.arg("--bench")
        .current_dir(crate::cmd::workspace_root().join("video"));
    run_bench(
        name,
        cmd,
        timeout,
        log_dir,
        Tails::Redrawn,
        BenchLine::parse,
        "`key=value`",
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Peers

/// Whether tandem-cli has a `--video-bitrate` option (then both implementations get the same bitrate).
fn cli_has_video_bitrate(bin: &Path) -> bool {
    Command::new(bin)
        .args(["call", "--help"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--video-bitrate"))
}

/// A `tandem-cli` command line for a direct (registrar-less) account on 127.0.0.1, plain RTP like baresip.
fn cli_command(bin: &Path, user: &str, listen: SocketAddr, rest: &[String]) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "--user",
        user,
        "--domain",
        "127.0.0.1",
        "--transport",
        "udp",
        "--srtp",
        "off",
    ])
    .arg("--listen")
    .arg(listen.to_string())
    .args(rest);
    c
}

/// The video options of one tandem-cli endpoint.
fn cli_video_args(shape: &Shape, video: &str, bitrate_flag: bool) -> Vec<String> {
    let mut args = vec![
        "--video".to_string(),
        video.to_string(),
        "--video-size".into(),
        shape.size(),
        "--video-fps".into(),
        shape.fps.to_string(),
        "--video-codec".into(),
        "vp8".into(),
        "--codec".into(),
        "opus".into(),
    ];
    if bitrate_flag {
        args.push("--video-bitrate".into());
        args.push(shape.bitrate_bps.to_string());
    }
    args
}

/// Writes a baresip config directory for one endpoint and starts it; returns the process and its SIP address.
/// `video`: its video source and the value of `video_bitrate`; `dial`: the caller's target and how long to stay
/// (it quits after that, hanging up); `gid`: the group it runs under (for the byte counters).
fn start_baresip(
    name: &str,
    shape: &Shape,
    (video_source, video_bitrate): (&str, u32),
    audio: &Path,
    dial: Option<(SocketAddr, u64)>,
    gid: Option<u32>,
    dir: &Path,
) -> Result<(Proc, SocketAddr)> {
    let conf = dir.join(name);
    fs::create_dir_all(&conf).with_context(|| format!("creating {}", conf.display()))?;
    // SIP on P (UDP/TCP) and P+1 (baresip's TLS listener); RTP/RTCP ports for audio and video.
    let sip_port = free_block(2)?;
    let rtp = free_block(8)?;
    let sip = SocketAddr::from(([127, 0, 0, 1], sip_port));
    let mut config = format!(
        "poll_method\tepoll\nsip_listen\t{sip}\ncall_local_timeout\t120\ncall_max_calls\t1\n\
         audio_player\taubridge,{name}-sink\naudio_source\taufile,{}\naudio_alert\taubridge,{name}-sink\n\
         ausrc_srate\t48000\nauplay_srate\t48000\nausrc_channels\t1\nauplay_channels\t1\naudio_level\tno\n\
         audio_buffer\t20-160\nrtp_tos\t0\nrtp_ports\t{rtp}-{}\nrtcp_mux\tno\njitter_buffer_delay\t5-10\n\
         rtp_stats\tyes\nopus_bitrate\t28000\n\
         video_source\t{video_source}\nvideo_display\tfakevideo,nil\nvideo_size\t{}\nvideo_bitrate\t{}\n\
         video_fps\t{}\nmodule_path\t{BARESIP_MODULES}\n",
        audio.display(),
        rtp + 7,
        shape.size(),
        video_bitrate,
        shape.fps,
    );
    for m in [
        "opus.so",
        "aubridge.so",
        "aufile.so",
        "vp8.so",
        "fakevideo.so",
        "avformat.so",
    ] {
        let _ = writeln!(config, "module\t{m}");
    }
    config.push_str("module_tmp\tuuid.so\nmodule_tmp\taccount.so\nmodule_app\tmenu.so\n");
    fs::write(conf.join("config"), config)?;
    let account = match dial {
        Some(_) => format!("<sip:{name}@127.0.0.1>;regint=0;audio_codecs=opus/48000/2"),
        None => "<sip:peer@127.0.0.1>;regint=0;audio_codecs=opus/48000/2;answermode=auto".into(),
    };
    // `/dial` places an audio + video call when a video source, display and codec are configured.
    let proc = launch_baresip(name, &conf, &account, dial, gid, dir, Tails::Redrawn)?;
    Ok((proc, sip))
}

/// What one endpoint reported about its video.
#[derive(Debug, Clone, Default)]
struct VideoFlow {
    /// Frames (tandem-cli) or RTP packets (baresip) sent and received.
    sent: u64,
    received: u64,
    /// Frames decoded (tandem-cli), or the last effective receive frame rate times the call (baresip: n/a).
    decoded: Option<u64>,
    /// The received picture size.
    recv_size: Option<String>,
    /// baresip: average video bitrate sent and received, kbit/s.
    kbps: Option<(f64, f64)>,
    /// baresip: the last effective frame rates (sent, received) of its status line.
    efps: Option<(f64, f64)>,
}

impl VideoFlow {
    fn summary(&self, peer: Peer) -> String {
        match peer {
            Peer::Tandem => format!(
                "{} sent / {} received / {} decoded frames, {}",
                self.sent,
                self.received,
                self.decoded.map_or_else(|| "?".into(), |d| d.to_string()),
                self.recv_size.as_deref().unwrap_or("no first frame")
            ),
            Peer::Baresip => format!(
                "{} sent / {} received packets, {} kbit/s out / {} in, {} fps out / {} in, {}",
                self.sent,
                self.received,
                self.kbps
                    .map_or_else(|| "?".into(), |k| format!("{:.0}", k.0)),
                self.kbps
                    .map_or_else(|| "?".into(), |k| format!("{:.0}", k.1)),
                self.efps
                    .map_or_else(|| "?".into(), |e| format!("{:.1}", e.0)),
                self.efps
                    .map_or_else(|| "?".into(), |e| format!("{:.1}", e.1)),
                self.recv_size.as_deref().unwrap_or("no picture")
            ),
        }
    }
}

/// The value of `key=` on the first line of `stdout` starting with `prefix`.
fn line_value<'a>(stdout: &'a str, prefix: &str, key: &str) -> Option<&'a str> {
    let tag = format!("{key}=");
    stdout
        .lines()
        .filter(|l| l.starts_with(prefix))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix(tag.as_str()))
        })
}

/// The video of a tandem-cli endpoint from its `video started`, `video first-frame` and `video stats` lines.
fn tandem_flow(stdout: &str) -> Result<VideoFlow> {
    let codec = line_value(stdout, "video started ", "codec")
        .context("no `video started` line (no video negotiated?)")?;
    if !codec.eq_ignore_ascii_case("VP8") {
        bail!("video negotiated {codec}, not VP8");
    }
    let num = |key: &str| -> Result<u64> {
        line_value(stdout, "video stats ", key)
            .with_context(|| format!("no `video stats` line with {key}="))?
            .parse()
            .with_context(|| format!("`video stats` {key}= is not a number"))
    };
    let recv_size = stdout
        .lines()
        .find_map(|l| l.strip_prefix("video first-frame "))
        .map(|s| s.trim().to_string());
    Ok(VideoFlow {
        sent: num("sent")?,
        received: num("received")?,
        decoded: Some(num("decoded")?),
        recv_size,
        kbps: None,
        efps: None,
    })
}

/// The video of a baresip endpoint from its output: the `video Transmit: Receive:` RTP statistics printed when
/// the call ends (`rtp_stats yes`), the "receiving with resolution" line and the last `efps=TX/RX` of the status
/// line (baresip writes that one to stderr: pass both).
fn baresip_flow(stdout: &str) -> Result<VideoFlow> {
    let text = stdout.replace('\r', "\n");
    let mut lines = text.lines().skip_while(|l| !l.starts_with("video "));
    let header = lines
        .next()
        .context("no video RTP statistics (rtp_stats)")?;
    if !header.contains("Transmit:") {
        bail!("unexpected video statistics header {header:?}");
    }
    let mut table: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for l in lines.take_while(|l| !l.trim().is_empty()) {
        if let Some((key, values)) = l.split_once(':') {
            let nums: Vec<f64> = values
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            if let [tx, rx, ..] = nums.as_slice() {
                table.insert(key.trim().to_string(), (*tx, *rx));
            }
        }
    }
    let (sent, received) = table
        .get("packets")
        .copied()
        .context("no `packets:` row in baresip's video statistics")?;
    let recv_size = text.lines().find_map(|l| {
        let rest = l.split("receiving with resolution ").nth(1)?;
        let mut it = rest.split_whitespace();
        let w = it.next()?;
        let _x = it.next()?;
        let h = it.next()?;
        Some(format!("{w}x{h}"))
    });
    let efps = text
        .rsplit("efps=")
        .next()
        .filter(|_| text.contains("efps="))
        .and_then(|rest| {
            let v = rest.split_whitespace().next()?;
            let (tx, rx) = v.split_once('/')?;
            Some((tx.parse().ok()?, rx.parse().ok()?))
        });
    Ok(VideoFlow {
        sent: sent as u64,
        received: received as u64,
        decoded: None,
        recv_size,
        kbps: table.get("avg. bitrate").copied(),
        efps,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Bytes on the wire

/// What the audio half of a call puts on the wire, kbit/s: Opus at about 28 kbit/s in 50 packets a second
/// plus their IP, UDP and RTP headers (40 bytes each), and RTCP.
const AUDIO_WIRE_KBPS: f64 = 46.0;

/// The video share of an endpoint's UDP output, as a VP8 target in kbit/s (at least 100).
fn video_share_kbps(udp_out_kbps: f64) -> u32 {
    (udp_out_kbps - AUDIO_WIRE_KBPS).max(100.0).round() as u32
}

/// Group ids the endpoints run under, so nftables can count each one's UDP output (`meta skgid`).
const CALLER_GID: u32 = 47_301;
const CALLEE_GID: u32 = 47_302;

/// An nftables table counting the UDP bytes sent by the sockets of each endpoint's group (all its RTP, RTCP and
/// SIP: audio + video on the wire, IP and UDP headers included). Named after this process and deleted on drop;
/// tables left by dead runs are removed first.
struct WireCounters {
    table: String,
}

impl WireCounters {
    fn start() -> Result<WireCounters> {
        Self::sweep_stale();
        let table = format!("tandem-vbench-{}", std::process::id());
        let counters = WireCounters { table };
        let t = counters.table.as_str();
        nft(&["add", "table", "inet", t])?;
        nft(&[
            "add",
            "chain",
            "inet",
            t,
            "out",
            "{ type filter hook output priority 0; policy accept; }",
        ])?;
        for gid in [CALLER_GID, CALLEE_GID] {
            nft(&[
                "add",
                "rule",
                "inet",
                t,
                "out",
                "meta",
                "skgid",
                &gid.to_string(),
                "meta",
                "l4proto",
                "udp",
                "counter",
            ])?;
        }
        Ok(counters)
    }

    /// UDP bytes sent so far by the caller's and the callee's group.
    fn bytes(&self) -> Result<(u64, u64)> {
        let out = Command::new("nft")
            .args(["list", "table", "inet", &self.table])
            .output()
            .context("running nft list")?;
        if !out.status.success() {
            bail!("nft list table {} failed", self.table);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let of = |gid: u32| -> Result<u64> {
            let tag = format!("skgid {gid} ");
            let line = text
                .lines()
                .find(|l| l.contains(&tag))
                .with_context(|| format!("no counter for gid {gid} in {}", self.table))?;
            let mut words = line.split_whitespace();
            words
                .by_ref()
                .find(|w| *w == "bytes")
                .and_then(|_| words.next())
                .and_then(|b| b.parse().ok())
                .with_context(|| format!("no byte count in {line:?}"))
        };
        Ok((of(CALLER_GID)?, of(CALLEE_GID)?))
    }

    /// Deletes the tables of earlier runs whose process is gone.
    fn sweep_stale() {
        let Ok(out) = Command::new("nft").args(["list", "tables"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(name) = line.strip_prefix("table inet ") else {
                continue;
            };
            let dead = name
                .strip_prefix("tandem-vbench-")
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
            if dead {
                let _ = nft(&["delete", "table", "inet", name]);
            }
        }
    }
}

impl Drop for WireCounters {
    fn drop(&mut self) {
        let _ = nft(&["delete", "table", "inet", &self.table]);
    }
}

fn nft(args: &[&str]) -> Result<()> {
    let out = Command::new("nft")
        .args(args)
        .output()
        .context("running nft")?;
    if !out.status.success() {
        bail!(
            "nft {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// One call pair

/// CPU of one endpoint over the measured window, and what it reported.
#[derive(Debug, Clone)]
struct Endpoint {
    who: &'static str,
    cpu: Duration,
    wall: Duration,
    flow: VideoFlow,
    /// UDP sent over the CPU window (audio + video + RTCP + SIP), kbit/s; None without nftables.
    out_kbps: Option<f64>,
}

impl Endpoint {
    /// Share of one core, in percent.
    fn percent(&self) -> f64 {
        core_percent(self.cpu, self.wall)
    }
}

/// One measured call.
#[derive(Debug, Clone)]
struct PairRun {
    shape: Shape,
    peer: Peer,
    content: Content,
    endpoints: Vec<Endpoint>,
    /// baresip: the VP8 target it was given, kbit/s.
    target_kbps: Option<u32>,
}

impl PairRun {
    /// Mean UDP output per endpoint, kbit/s (None without byte counts).
    fn mean_out_kbps(&self) -> Option<f64> {
        let k: Vec<f64> = self.endpoints.iter().filter_map(|e| e.out_kbps).collect();
        (!k.is_empty()).then(|| k.iter().sum::<f64>() / k.len() as f64)
    }

    /// Mean CPU per endpoint, percent of a core.
    fn mean_percent(&self) -> f64 {
        if self.endpoints.is_empty() {
            return 0.0;
        }
        self.endpoints.iter().map(Endpoint::percent).sum::<f64>() / self.endpoints.len() as f64
    }
}

/// Samples the CPU of both endpoints over the steady middle of a call that started at `started` and lasts
/// `call_secs` on the caller's side.
fn measure_cpu(
    caller: &Proc,
    callee: &Proc,
    started: Instant,
    call_secs: u64,
    setup: &CallSetup<'_>,
) -> Result<Window> {
    sleep(CPU_SETTLE.saturating_sub(started.elapsed()));
    let ticks = setup.ticks;
    let t0 = Instant::now();
    let w0 = setup.wire.and_then(|w| w.bytes().ok());
    let c0 = process_cpu(caller.pid(), ticks).context("the caller ended early")?;
    let e0 = process_cpu(callee.pid(), ticks).context("the callee ended early")?;
    let end = started + Duration::from_secs(call_secs) - CPU_TAIL;
    sleep(end.saturating_duration_since(Instant::now()));
    let c1 = process_cpu(caller.pid(), ticks).context("the caller ended early")?;
    let e1 = process_cpu(callee.pid(), ticks).context("the callee ended early")?;
    let w1 = setup.wire.and_then(|w| w.bytes().ok());
    let wall = t0.elapsed();
    let kbps = |a: u64, b: u64| (b.saturating_sub(a)) as f64 * 8.0 / wall.as_secs_f64() / 1000.0;
    let (caller_kbps, callee_kbps) = match (w0, w1) {
        (Some((a0, b0)), Some((a1, b1))) => (Some(kbps(a0, a1)), Some(kbps(b0, b1))),
        _ => (None, None),
    };
    Ok(Window {
        caller_cpu: c1.saturating_sub(c0),
        callee_cpu: e1.saturating_sub(e0),
        wall,
        caller_kbps,
        callee_kbps,
    })
}

/// What was measured over a call's steady middle.
struct Window {
    caller_cpu: Duration,
    callee_cpu: Duration,
    wall: Duration,
    caller_kbps: Option<f64>,
    callee_kbps: Option<f64>,
}

/// Checks that an endpoint decoded (or received) enough video for its CPU figure to mean something.
fn check_flow(
    peer: Peer,
    who: &str,
    flow: &VideoFlow,
    shape: &Shape,
    call_secs: u64,
) -> Result<()> {
    let expected = (shape.fps as f64 * call_secs as f64 * MIN_FRAME_SHARE) as u64;
    match peer {
        Peer::Tandem => {
            let decoded = flow.decoded.unwrap_or(0);
            if decoded < expected {
                bail!(
                    "{who} decoded {decoded} frames, fewer than {expected} ({}% of {} s at {} fps)",
                    (MIN_FRAME_SHARE * 100.0) as u32,
                    call_secs,
                    shape.fps
                );
            }
        }
        Peer::Baresip => {
            // Every frame is at least one packet.
            if flow.received < expected {
                bail!(
                    "{who} received {} video packets, fewer than {expected} frames' worth",
                    flow.received
                );
            }
        }
    }
    match &flow.recv_size {
        Some(size) if *size == shape.size() => Ok(()),
        Some(size) => bail!("{who} received {size} video, not {}", shape.size()),
        None => bail!("{who} reported no received picture size"),
    }
}

/// What every real call of the run shares.
struct CallSetup<'a> {
    /// The release tandem-cli.
    bin: &'a Path,
    call_secs: u64,
    /// The WAV both implementations send as audio.
    audio: &'a Path,
    /// tandem-cli has `--video-bitrate`.
    bitrate_flag: bool,
    /// The run's log directory.
    dir: &'a Path,
    /// Clock ticks per second of /proc times.
    ticks: f64,
    /// Per-endpoint UDP byte counters (None when nftables is unusable here).
    wire: Option<&'a WireCounters>,
}

/// Runs one tandem-cli -> tandem-cli call and measures it.
fn run_tandem_pair(setup: &CallSetup<'_>, shape: &Shape, content: Content) -> Result<PairRun> {
    let CallSetup {
        bin,
        call_secs,
        audio,
        bitrate_flag,
        dir,
        ..
    } = *setup;
    let tag = format!("tandem-{}-{}", shape.label(), content_tag(content));
    let dir = dir.join(&tag);
    fs::create_dir_all(&dir)?;
    // tandem-cli loops a regular Y4M file (its --video wants one); it holds the same frames the FIFOs feed
    // baresip, and is read from the page cache like a pipe would be.
    let bars_file = match content {
        Content::Own => None,
        Content::Bars => {
            let path = dir.join("bars.y4m");
            write_bars_file(&path, shape.width, shape.height, shape.fps)?;
            Some(RemoveOnDrop(path))
        }
    };
    let video = bars_file
        .as_ref()
        .map_or_else(|| "pattern".to_string(), |f| f.0.display().to_string());
    let (callee_video, caller_video) = (video.clone(), video);
    let s = |p: &Path| p.display().to_string();

    let callee_addr = SocketAddr::from(([127, 0, 0, 1], free_block(1)?));
    let mut callee_args = vec![
        "answer".to_string(),
        "--no-register".into(),
        "--count".into(),
        "1".into(),
        "--play".into(),
        s(audio),
    ];
    callee_args.extend(cli_video_args(shape, &callee_video, bitrate_flag));
    let mut callee_cmd = cli_command(bin, "bob", callee_addr, &callee_args);
    if setup.wire.is_some() {
        callee_cmd.gid(CALLEE_GID);
    }
    let mut callee = Proc::spawn("callee", callee_cmd, &dir, Tails::Redrawn)?;
    wait_sip_ready(callee_addr, &mut callee, Duration::from_secs(10), "vbench")?;

    let mut caller_args = vec![
        "call".to_string(),
        format!("sip:bob@{callee_addr}"),
        "--duration".into(),
        call_secs.to_string(),
        "--timeout".into(),
        "10".into(),
        "--play".into(),
        s(audio),
    ];
    caller_args.extend(cli_video_args(shape, &caller_video, bitrate_flag));
    let started = Instant::now();
    let mut caller_cmd = cli_command(
        bin,
        "alice",
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &caller_args,
    );
    if setup.wire.is_some() {
        caller_cmd.gid(CALLER_GID);
    }
    let mut caller = Proc::spawn("caller", caller_cmd, &dir, Tails::Redrawn)?;
    let window = measure_cpu(&caller, &callee, started, call_secs, setup)
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}\n{}", caller.tails(), callee.tails()))?;

    let deadline = started + Duration::from_secs(call_secs + 12);
    match caller.wait_until(deadline)? {
        Some(status) if status.success() => {}
        Some(status) => bail!("tandem-cli caller failed ({status})\n{}", caller.tails()),
        None => bail!(
            "tandem-cli caller did not hang up in time\n{}",
            caller.tails()
        ),
    }
    if callee
        .wait_until(Instant::now() + Duration::from_secs(5))?
        .is_none()
    {
        bail!(
            "tandem-cli callee did not exit after the BYE\n{}",
            callee.tails()
        );
    }
    drop(bars_file);
    let pair = Pair {
        peer: Peer::Tandem,
        shape,
        content,
        call_secs,
        tag: &tag,
    };
    pair.run(&window, &caller, &callee, None)
}

/// Runs one baresip -> baresip call with a VP8 target of `target_kbps` and measures it.
fn run_baresip_pair(
    setup: &CallSetup<'_>,
    shape: &Shape,
    content: Content,
    target_kbps: u32,
) -> Result<PairRun> {
    // baresip 1.0's vp8 module hands `video_bitrate` (bit/s) to libvpx's rc_target_bitrate, which is in kbit/s:
    // 1500000 there means no limit at all. The value is therefore written in kbit/s, which is what libvpx reads.
    let video_bitrate = target_kbps;
    let CallSetup {
        call_secs,
        audio,
        dir,
        ..
    } = *setup;
    let tag = format!("baresip-{}-{}", shape.label(), content_tag(content));
    let dir = dir.join(&tag);
    fs::create_dir_all(&dir)?;
    let mut feeds = Vec::new();
    let mut source_for = |who: &str| -> Result<String> {
        Ok(match content {
            Content::Own => "fakevideo,nil".to_string(),
            Content::Bars => {
                let fifo = dir.join(format!("{who}.y4m"));
                feeds.push(BarsFeed::start(
                    &fifo,
                    shape.width,
                    shape.height,
                    shape.fps,
                )?);
                format!("avformat,{}", fifo.display())
            }
        })
    };
    let callee_source = source_for("callee")?;
    let caller_source = source_for("caller")?;
    let (mut callee, callee_addr) = start_baresip(
        "callee",
        shape,
        (&callee_source, video_bitrate),
        audio,
        None,
        setup.wire.map(|_| CALLEE_GID),
        &dir,
    )?;
    wait_sip_ready(callee_addr, &mut callee, Duration::from_secs(10), "vbench")?;
    let started = Instant::now();
    let (mut caller, _) = start_baresip(
        "caller",
        shape,
        (&caller_source, video_bitrate),
        audio,
        Some((callee_addr, call_secs)),
        setup.wire.map(|_| CALLER_GID),
        &dir,
    )?;
    let window = measure_cpu(&caller, &callee, started, call_secs, setup)
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}\n{}", caller.tails(), callee.tails()))?;
    // The caller quits after -t seconds (BYE); the callee prints its statistics when the call closes.
    if caller
        .wait_until(started + Duration::from_secs(call_secs + 10))?
        .is_none()
    {
        bail!("baresip caller did not quit in time\n{}", caller.tails());
    }
    let stats_deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < stats_deadline && baresip_flow(&callee.all_output()).is_err() {
        sleep(Duration::from_millis(50));
    }
    callee.stop();
    drop(feeds);
    let pair = Pair {
        peer: Peer::Baresip,
        shape,
        content,
        call_secs,
        tag: &tag,
    };
    pair.run(&window, &caller, &callee, Some(target_kbps))
}

/// One measured call of a pair of the same implementation, for reading its endpoints' results.
struct Pair<'a> {
    peer: Peer,
    shape: &'a Shape,
    content: Content,
    call_secs: u64,
    /// Names the call in error messages.
    tag: &'a str,
}

impl Pair<'_> {
    /// Reads and checks the video flow of both endpoints (tandem-cli's stdout, baresip's stdout and stderr)
    /// and puts them together with their CPU `window`; `target_kbps` is baresip's VP8 target.
    fn run(
        &self,
        window: &Window,
        caller: &Proc,
        callee: &Proc,
        target_kbps: Option<u32>,
    ) -> Result<PairRun> {
        let mut endpoints = Vec::new();
        for (who, proc, cpu, out_kbps) in [
            ("caller", caller, window.caller_cpu, window.caller_kbps),
            ("callee", callee, window.callee_cpu, window.callee_kbps),
        ] {
            let flow = match self.peer {
                Peer::Tandem => tandem_flow(&proc.stdout_text()),
                Peer::Baresip => baresip_flow(&proc.all_output()),
            }
            .and_then(|f| check_flow(self.peer, who, &f, self.shape, self.call_secs).map(|()| f))
            .with_context(|| {
                format!(
                    "{} {who} ({})\n{}",
                    self.peer.name(),
                    self.tag,
                    proc.tails()
                )
            })?;
            endpoints.push(Endpoint {
                who,
                cpu,
                wall: window.wall,
                flow,
                out_kbps,
            });
        }
        Ok(PairRun {
            shape: *self.shape,
            peer: self.peer,
            content: self.content,
            endpoints,
            target_kbps,
        })
    }
}

fn content_tag(content: Content) -> &'static str {
    match content {
        Content::Bars => "bars",
        Content::Own => "own",
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Report

fn pct(v: f64) -> String {
    format!("{v:.1} %")
}

fn kbps_cell(k: Option<f64>) -> String {
    k.map_or_else(|| "n/a".into(), |k| format!("{k:.0} kbit/s"))
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "n/a".into()
    }
}

fn build_report(
    benches: &BTreeMap<&str, Result<Vec<BenchLine>, String>>,
    runs: &[PairRun],
    call_secs: u64,
    bitrate_flag: bool,
    loads: (Option<f64>, Option<f64>),
) -> String {
    let mut md = String::new();
    let load = |l: Option<f64>| l.map_or_else(|| "?".into(), |l| format!("{l:.2}"));
    let _ = writeln!(
        md,
        "# cargo xtask bench video\n\n{} CPUs; load average {} before, {} after (a busy machine inflates every \
         figure).\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load(loads.0),
        load(loads.1)
    );

    let _ = writeln!(md, "## Codecs (in process, ms per frame)\n");
    match benches.get("codec") {
        Some(Ok(lines)) => {
            let _ = writeln!(
                md,
                "| codec | size | target | produced | encode mean | encode p95 | decode mean | decode p95 | bytes/frame |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
            for l in lines.iter().filter(|l| l.get("codec").is_some()) {
                let g = |k: &str| l.get(k).unwrap_or("?").to_string();
                let _ = writeln!(
                    md,
                    "| {} | {} | {} kbit/s | {} kbit/s | {} | {} | {} | {} | {} |",
                    g("codec"),
                    g("size"),
                    g("bitrate_kbps"),
                    g("kbps"),
                    g("encode_ms_mean"),
                    g("encode_ms_p95"),
                    g("decode_ms_mean"),
                    g("decode_ms_p95"),
                    g("bytes_per_frame"),
                );
            }
        }
        Some(Err(e)) => {
            let _ = writeln!(md, "FAILED:\n\n```\n{e}\n```");
        }
        None => {
            let _ = writeln!(md, "not run");
        }
    }

    let _ = writeln!(
        md,
        "\n## End-to-end latency (two in-process video sessions on loopback)\n"
    );
    match benches.get("latency") {
        Some(Ok(lines)) => {
            let _ = writeln!(
                md,
                "| codec | shape | frames sent | frames matched | p50 | p95 | max |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|");
            for l in lines.iter().filter(|l| l.get("p50_ms").is_some()) {
                let g = |k: &str| l.get(k).unwrap_or("?").to_string();
                let _ = writeln!(
                    md,
                    "| {} | {}@{} | {} | {} | {} ms | {} ms | {} ms |",
                    g("codec"),
                    g("size"),
                    g("fps"),
                    g("frames_sent"),
                    g("frames_matched"),
                    g("p50_ms"),
                    g("p95_ms"),
                    g("max_ms"),
                );
            }
        }
        Some(Err(e)) => {
            let _ = writeln!(md, "FAILED:\n\n```\n{e}\n```");
        }
        None => {
            let _ = writeln!(md, "not run");
        }
    }

    let _ = writeln!(
        md,
        "\n## CPU of a running VP8 video call with Opus audio ({call_secs} s calls on loopback, one pair at a \
         time; share of one core per endpoint)\n"
    );
    let _ = writeln!(
        md,
        "| shape | source | tandem-cli caller | tandem-cli callee | baresip caller | baresip callee | tandem-cli / baresip CPU | UDP out per endpoint tandem-cli / baresip |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for shape in SHAPES {
        for content in [Content::Bars, Content::Own] {
            let find = |peer: Peer| {
                runs.iter().find(|r| {
                    r.peer == peer && r.content == content && r.shape.label() == shape.label()
                })
            };
            let (t, b) = (find(Peer::Tandem), find(Peer::Baresip));
            if t.is_none() && b.is_none() {
                continue;
            }
            let cell = |r: Option<&PairRun>, who: &str| {
                r.and_then(|r| r.endpoints.iter().find(|e| e.who == who))
                    .map_or_else(|| "n/a".into(), |e| pct(e.percent()))
            };
            let source = match content {
                Content::Bars => "same bars (Y4M) both".to_string(),
                Content::Own => format!(
                    "{} vs {}",
                    Peer::Tandem.source_name(content),
                    Peer::Baresip.source_name(content)
                ),
            };
            let r = match (t, b) {
                (Some(t), Some(b)) => ratio(t.mean_percent(), b.mean_percent()),
                _ => "n/a".into(),
            };
            let mean_kbps = |r: Option<&PairRun>| r.and_then(PairRun::mean_out_kbps);
            let _ = writeln!(
                md,
                "| {} | {source} | {} | {} | {} | {} | {r}{} | {} / {} |",
                shape.label(),
                cell(t, "caller"),
                cell(t, "callee"),
                cell(b, "caller"),
                cell(b, "callee"),
                if content == Content::Own {
                    " (different content)"
                } else {
                    ""
                },
                kbps_cell(mean_kbps(t)),
                kbps_cell(mean_kbps(b)),
            );
        }
    }
    // A side that rendered far fewer frames than it was sent did less decoding work: say so next to its CPU.
    let mut notes = Vec::new();
    for r in runs.iter().filter(|r| r.peer == Peer::Baresip) {
        for e in &r.endpoints {
            if let Some((_, rx)) = e.flow.efps
                && rx < 0.8 * f64::from(r.shape.fps)
            {
                notes.push(format!(
                    "baresip {} {} {} decoded only {rx:.1} of {} frames per second (its efps): its CPU figure \
                     covers less decoding than the others'",
                    r.shape.label(),
                    r.peer.source_name(r.content),
                    e.who,
                    r.shape.fps
                ));
            }
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(md);
        for n in &notes {
            let _ = writeln!(md, "- note: {n}");
        }
    }
    let _ = writeln!(md, "\n### What each endpoint reported\n");
    for r in runs {
        for e in &r.endpoints {
            let _ = writeln!(
                md,
                "- {} {} {} {}: {} CPU, {} UDP out — {}",
                r.peer.name(),
                r.shape.label(),
                r.peer.source_name(r.content),
                e.who,
                pct(e.percent()),
                kbps_cell(e.out_kbps),
                e.flow.summary(r.peer)
            );
        }
    }
    let targets: Vec<String> = runs
        .iter()
        .filter(|r| r.peer == Peer::Baresip && r.content == Content::Bars)
        .filter_map(|r| Some(format!("{} {} kbit/s", r.shape.label(), r.target_kbps?)))
        .collect();
    let _ = writeln!(
        md,
        "\nMethod. Each endpoint's utime+stime from /proc/PID/stat over the call's steady middle ({} s after the \
         caller starts until {} s before it hangs up), divided by the wall time. Both implementations: VP8, Opus \
         audio from the same WAV, plain RTP, direct on 127.0.0.1 without a registrar, received video decoded and \
         discarded (tandem-cli: no --record-video; baresip: fakevideo display). The like-for-like row is `same \
         bars`: both read the same moving Y4M frames (tandem-cli --video FILE looping a Y4M file, baresip's \
         avformat source reading a FIFO fed with the same frames). baresip's fakevideo source is a still frame \
         (its encoder has almost nothing to do), so that row is for reference only. UDP out: every UDP byte an \
         endpoint sent over the same window (audio + video + RTCP, IP/UDP headers included), counted by \
         nftables per endpoint (each runs under its own group id). Bitrate: tandem-cli {}; baresip's VP8 target \
         is what tandem-cli sent with the bars in the same run minus about {AUDIO_WIRE_KBPS:.0} kbit/s of audio \
         ({}), written to video_bitrate in kbit/s because baresip 1.0's vp8 module passes that setting unscaled \
         to libvpx's rc_target_bitrate (kbit/s): the usual bit/s value would mean no limit at all.",
        CPU_SETTLE.as_secs(),
        CPU_TAIL.as_secs(),
        if bitrate_flag {
            "--video-bitrate as configured".to_string()
        } else {
            format!(
                "has no --video-bitrate option: its rate controller starts near width x height x fps x 0.15 bit/s \
                 and rises towards its {} kbit/s ceiling",
                TANDEM_MAX_BITRATE_BPS / 1000
            )
        },
        if targets.is_empty() {
            "n/a".to_string()
        } else {
            targets.join(", ")
        },
    );
    md
}

// ---------------------------------------------------------------------------------------------------------------
// Entry point

/// `cargo xtask bench video`.
pub fn video(args: &[String]) -> Result<()> {
    let call_secs = parse_secs(
        args,
        "--secs",
        DEFAULT_CALL_SECS,
        MIN_CALL_SECS..=MAX_CALL_SECS,
        "video",
    )?;
    crate::packages::ensure(VIDEO_PACKAGES)?;
    check_baresip(NEEDED_MODULES)?;

    // Builds (not part of the bounded run).
    let bin = build_cli()?;
    let target = target_dir()?;
    println!("xtask: == build tandem-video benches (codec, latency) ==");
    let codec_exe = build_bench("tandem-video", "codec")?;
    let latency_exe = build_bench("tandem-video", "latency")?;

    let out_dir = target.join("bench-video");
    // Each run keeps its logs until the next run replaces them.
    let log_dir = fresh_run_dir(&out_dir)?;
    println!("xtask bench video: logs in {}", log_dir.display());
    let started = Instant::now();
    let load_before = loadavg();

    println!("xtask: == video crate benches ==");
    let mut benches: BTreeMap<&str, Result<Vec<BenchLine>, String>> = BTreeMap::new();
    for (name, exe, timeout) in [
        ("codec", &codec_exe, CODEC_BENCH_TIMEOUT),
        ("latency", &latency_exe, LATENCY_BENCH_TIMEOUT),
    ] {
        let r = run_video_bench(name, exe, timeout, &log_dir).map_err(|e| format!("{e:#}"));
        match &r {
            Ok(lines) => {
                for l in lines {
                    println!("    {}", l.text());
                }
            }
            Err(e) => eprintln!("xtask bench video: {e}"),
        }
        benches.insert(name, r);
    }

    println!("xtask: == real calls: tandem-cli and baresip, VP8 + Opus, {call_secs} s each ==");
    let ticks = clock_ticks();
    let bitrate_flag = cli_has_video_bitrate(&bin);
    let audio = log_dir.join("speech.wav");
    write_speech_wav(&audio, call_secs as f64 + 10.0)?;
    let wire = match WireCounters::start() {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("xtask bench video: no per-endpoint byte counts ({e:#})");
            None
        }
    };
    let setup = CallSetup {
        bin: &bin,
        call_secs,
        audio: &audio,
        bitrate_flag,
        dir: &log_dir,
        ticks,
        wire: wire.as_ref(),
    };
    let mut runs = Vec::new();
    for shape in SHAPES {
        // tandem-cli first: baresip's VP8 target is what tandem-cli really sent with the same content.
        let mut target_kbps = shape.bitrate_bps / 1000;
        for content in [Content::Bars, Content::Own] {
            let t = Instant::now();
            let run = run_tandem_pair(&setup, shape, content)
                .with_context(|| format!("tandem-cli call {} {content:?}", shape.label()))?;
            println!(
                "  tandem-cli {} {}: {:.1} % per endpoint ({:.0}s)",
                shape.label(),
                Peer::Tandem.source_name(content),
                run.mean_percent(),
                t.elapsed().as_secs_f64()
            );
            if content == Content::Bars
                && let Some(kbps) = run.mean_out_kbps()
            {
                target_kbps = video_share_kbps(kbps);
            }
            runs.push(run);
        }
        for content in [Content::Bars, Content::Own] {
            let t = Instant::now();
            let run = run_baresip_pair(&setup, shape, content, target_kbps)
                .with_context(|| format!("baresip call {} {content:?}", shape.label()))?;
            println!(
                "  baresip {} {} (VP8 target {target_kbps} kbit/s): {:.1} % per endpoint ({:.0}s)",
                shape.label(),
                Peer::Baresip.source_name(content),
                run.mean_percent(),
                t.elapsed().as_secs_f64()
            );
            runs.push(run);
        }
    }

    let md = build_report(
        &benches,
        &runs,
        call_secs,
        bitrate_flag,
        (load_before, loadavg()),
    );
    let md_path = out_dir.join("report.md");
    fs::write(&md_path, &md)?;
    println!("\n{md}");
    println!(
        "xtask bench video: measured in {:.0}s; report in {}",
        started.elapsed().as_secs_f64(),
        md_path.display()
    );
    let failed: Vec<&str> = benches
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(n, _)| *n)
        .collect();
    if !failed.is_empty() {
        bail!("video crate bench(es) failed: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_baresip_statistics() {
        let out = "stream: incoming rtp for 'video' established\r\nvideo: receiving with resolution 640 x 480 \
                   and format 'yuv420p'\r\n[0:00:05] audio=1/1 video=2/3 (bit/s) efps=29.5/30.0    \
                   [0:00:06] audio=1/1 video=2/3 (bit/s) efps=30.0/29.0    \nua: stop all\n\n\
                   audio           Transmit:     Receive:\npackets:            401          401\n\n\
                   video           Transmit:     Receive:\npackets:            900          880\n\
                   avg. bitrate:     950.5        940.1  (kbit/s)\nerrors:               0            0\n";
        let flow = baresip_flow(out).unwrap();
        assert_eq!((flow.sent, flow.received), (900, 880));
        assert_eq!(flow.recv_size.as_deref(), Some("640x480"));
        assert_eq!(flow.kbps, Some((950.5, 940.1)));
        assert_eq!(flow.efps, Some((30.0, 29.0)));
        assert!(baresip_flow("no stats here").is_err());
    }

    #[test]
    fn parses_tandem_video_lines() {
        let out = "media codec=opus\nvideo started codec=VP8 pt=96 send=320x240@15 recv=yes\n\
                   video first-frame 320x240\nvideo stats sent=150 received=148 decoded=147 keyframes=2 \
                   nacks_sent=0 nacks_received=0 plis_sent=0 plis_received=0 retransmitted=0 decode_errors=0 lost=0\n";
        let flow = tandem_flow(out).unwrap();
        assert_eq!(
            (flow.sent, flow.received, flow.decoded),
            (150, 148, Some(147))
        );
        assert_eq!(flow.recv_size.as_deref(), Some("320x240"));
        let shape = SHAPES[0];
        assert!(check_flow(Peer::Tandem, "x", &flow, &shape, 12).is_ok());
        assert!(check_flow(Peer::Tandem, "x", &flow, &shape, 30).is_err());
        assert!(tandem_flow("video started codec=H264 pt=97\n").is_err());
    }

    #[test]
    fn bench_lines_with_and_without_a_name() {
        let l = BenchLine::parse("codec=VP8 size=640x480 encode_ms_mean=3.2").unwrap();
        assert_eq!(l.get("size"), Some("640x480"));
        let l = BenchLine::parse("video_latency codec=H264 p50_ms=40").unwrap();
        assert_eq!(
            (l.name.as_str(), l.get("p50_ms")),
            ("video_latency", Some("40"))
        );
        assert!(BenchLine::parse("just some log text").is_none());
        assert_eq!(video_share_kbps(446.0), 400);
        assert_eq!(video_share_kbps(50.0), 100);
    }

    #[test]
    fn report_has_ratios_and_flags_a_peer_that_decoded_little() {
        let shape = SHAPES[1];
        let endpoint = |who, percent: f64, efps| Endpoint {
            who,
            cpu: Duration::from_secs_f64(percent / 100.0 * 10.0),
            wall: Duration::from_secs(10),
            flow: VideoFlow {
                efps,
                ..VideoFlow::default()
            },
            out_kbps: Some(1000.0),
        };
        let run = |peer, percent, efps| PairRun {
            shape,
            peer,
            content: Content::Bars,
            endpoints: vec![
                endpoint("caller", percent, efps),
                endpoint("callee", percent, efps),
            ],
            target_kbps: None,
        };
        let runs = [
            run(Peer::Tandem, 12.0, None),
            run(Peer::Baresip, 10.0, Some((30.0, 9.0))),
        ];
        let md = build_report(&BTreeMap::new(), &runs, 12, false, (None, None));
        assert!(md.contains("| 1.20x |"), "{md}");
        assert!(
            md.contains("decoded only 9.0 of 30 frames per second"),
            "{md}"
        );
        let runs = [
            run(Peer::Tandem, 12.0, None),
            run(Peer::Baresip, 10.0, Some((30.0, 29.0))),
        ];
        let md = build_report(&BTreeMap::new(), &runs, 12, false, (None, None));
        assert!(!md.contains("decoded only"), "{md}");
    }

    #[test]
    fn bars_frames_have_the_i420_size_and_move() {
        let a = bars_frame(322, 242, 0);
        let b = bars_frame(322, 242, 1);
        assert_eq!(a.len(), 6 + 322 * 242 + 2 * 161 * 121);
        assert_ne!(a, b);
    }
}
