//! End-to-end video latency of two in-process video sessions on loopback UDP.
//!
//! `cargo bench -p tandem-video --bench latency`: session A sends a `PatternSource` (each frame
//! stamped with its number by `counter::stamp_counter`) to session B over 127.0.0.1. A wrapper
//! around the source notes the instant each numbered frame leaves the source (where a camera
//! would hand it over); B's sink reads the number back from every decoded frame with
//! `counter::read_counter` and notes when it arrived. The latency of a frame is arrival minus
//! departure: A's pacing and encoding, packetization, UDP, B's frame assembly and decoding,
//! everything between the camera and the renderer. The first `WARM_UP` of each run (the first
//! keyframe, the encoder warming up) is left out.
//!
//! Per codec (VP8, H.264) and shape (320x240@15, 640x480@30) one line for `cargo xtask bench
//! video`: `video_latency codec=VP8 size=320x240 fps=15 secs=5 frames_sent=… frames_decoded=…
//! frames_matched=… unreadable=… p50_ms=… p95_ms=… max_ms=…`. `TANDEM_BENCH_SECS` (default 5)
//! sets the seconds per case.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may unwrap

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tandem_proto::sdp::Direction;
use tandem_video::codec::{VideoCodecKind, available};
use tandem_video::counter::read_counter;
use tandem_video::frame::VideoFrame;
use tandem_video::session::{
    VideoConfig, VideoRecvCodec, VideoSendConfig, VideoSession, VideoSink,
};
use tandem_video::source::{PatternSource, SourceError, VideoSource};
use tokio::net::UdpSocket;

/// The call shapes measured: width, height, fps, bitrate.
const SHAPES: &[(u32, u32, u32, u32)] = &[(320, 240, 15, 300_000), (640, 480, 30, 1_000_000)];
/// Frames leaving the source this early in a run are not counted.
const WARM_UP: Duration = Duration::from_millis(700);
/// RTP payload type of the stream (any dynamic one: both ends are ours).
const PAYLOAD_TYPE: u8 = 96;

/// When each frame number left the source.
type Departures = Arc<Mutex<HashMap<u32, Instant>>>;

/// The pattern, noting the departure instant of every frame number.
struct TimedPattern {
    inner: PatternSource,
    departures: Departures,
}

impl VideoSource for TimedPattern {
    fn next_frame(&mut self) -> Result<VideoFrame, SourceError> {
        let n = self.inner.frame_number();
        let frame = self.inner.next_frame()?;
        self.departures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(n, Instant::now());
        Ok(frame)
    }

    fn size(&self) -> (u32, u32) {
        self.inner.size()
    }

    fn fps(&self) -> u32 {
        self.inner.fps()
    }
}

/// What the receiving sink saw.
#[derive(Default)]
struct Arrivals {
    /// First arrival of each frame number.
    at: HashMap<u32, Instant>,
    /// Decoded frames whose number could not be read.
    unreadable: u64,
}

/// The receiving end's renderer: notes when each numbered frame arrived.
struct ArrivalSink(Arc<Mutex<Arrivals>>);

impl VideoSink for ArrivalSink {
    fn frame(&mut self, frame: &VideoFrame) {
        let now = Instant::now();
        let mut arrivals = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match read_counter(frame) {
            Some(n) => {
                arrivals.at.entry(n).or_insert(now);
            }
            None => arrivals.unreadable += 1,
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn run_case(kind: VideoCodecKind, shape: (u32, u32, u32, u32), secs: f64) {
    let (width, height, fps, bitrate) = shape;
    let sock_a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sock_b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr_a = sock_a.local_addr().unwrap();
    let addr_b = sock_b.local_addr().unwrap();

    let departures: Departures = Arc::default();
    let arrivals: Arc<Mutex<Arrivals>> = Arc::default();
    let source = TimedPattern {
        inner: PatternSource::new(width, height, fps).unwrap(),
        departures: Arc::clone(&departures),
    };
    let mut send = VideoSendConfig::new(kind, PAYLOAD_TYPE, Box::new(source));
    send.max_width = width;
    send.max_height = height;
    send.max_fps = fps;
    send.start_bitrate_bps = bitrate;
    send.max_bitrate_bps = bitrate * 3 / 2;
    let mut config_a = VideoConfig::new(sock_a, addr_b);
    config_a.send = Some(send);
    config_a.direction = Direction::SendOnly;
    let mut config_b = VideoConfig::new(sock_b, addr_a);
    config_b.recv = vec![VideoRecvCodec {
        kind,
        payload_type: PAYLOAD_TYPE,
    }];
    config_b.sink = Some(Box::new(ArrivalSink(Arc::clone(&arrivals))));
    config_b.direction = Direction::RecvOnly;

    let (session_b, _events_b) = VideoSession::start(config_b).unwrap();
    let started = Instant::now();
    let (session_a, _events_a) = VideoSession::start(config_a).unwrap();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let stats_a = session_a.stop().await;
    // Frames still on their way get a moment to arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats_b = session_b.stop().await;

    let departures = departures.lock().unwrap_or_else(PoisonError::into_inner);
    let arrivals = arrivals.lock().unwrap_or_else(PoisonError::into_inner);
    let mut latencies: Vec<f64> = departures
        .iter()
        .filter(|(_, sent)| sent.duration_since(started) >= WARM_UP)
        .filter_map(|(n, sent)| {
            let arrived = arrivals.at.get(n)?;
            Some(arrived.checked_duration_since(*sent)?.as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "video_latency codec={} size={width}x{height} fps={fps} bitrate_kbps={} secs={secs} \
         frames_sent={} frames_decoded={} frames_matched={} unreadable={} p50_ms={:.1} \
         p95_ms={:.1} max_ms={:.1} min_ms={:.1}",
        kind.name(),
        bitrate / 1000,
        stats_a.frames_sent,
        stats_b.frames_decoded,
        latencies.len(),
        arrivals.unreadable,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        latencies.last().copied().unwrap_or(f64::NAN),
        latencies.first().copied().unwrap_or(f64::NAN),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that short.
    let testing = !std::env::args().any(|a| a == "--bench");
    let secs = if testing {
        1.5
    } else {
        std::env::var("TANDEM_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(5.0)
            .clamp(1.5, 60.0)
    };
    let kinds = available();
    if kinds.is_empty() {
        println!("video_latency skipped=no_codecs_in_this_build");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for &shape in SHAPES {
        for &kind in &kinds {
            runtime.block_on(run_case(kind, shape, secs));
        }
    }
}
