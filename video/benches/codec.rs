//! Video codec cost: milliseconds per frame to encode and to decode.
//!
//! `cargo bench -p tandem-video --bench codec` encodes `PatternSource` frames (scrolling colour
//! bars, a bouncing box and the stamped frame counter) with VP8 (libvpx) and H.264 (openh264) at
//! 640x480 (800 kbit/s) and 1280x720 (2 Mbit/s), 30 fps, decodes every encoded frame again, and
//! prints one line per case for `cargo xtask bench video` to collect:
//!
//! `video_codec codec=VP8 size=640x480 fps=30 bitrate_kbps=800 frames=150 encode_ms_mean=…
//! encode_ms_p95=… decode_ms_mean=… decode_ms_p95=… bytes_per_frame=… kbps=… keyframes=…
//! dropped=… luma_mad=…`
//!
//! `kbps` is the bitrate the encoder really produced, `dropped` the frames it skipped, and
//! `luma_mad` the mean absolute luma difference between each decoded frame and its source (0 =
//! identical; a sanity check that the decoded pictures are the encoded ones, not a quality score).
//! `TANDEM_BENCH_FRAMES` (default 150) sets the frames per case.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may unwrap

use std::hint::black_box;
use std::time::{Duration, Instant};

use tandem_video::codec::{EncoderConfig, VideoCodecKind, available, new_decoder, new_encoder};
use tandem_video::source::{PatternSource, VideoSource};

/// Frame rate of every case (the encoders' rate control works per second).
const FPS: u32 = 30;

/// The sizes and bitrates measured.
const CASES: &[(u32, u32, u32)] = &[(640, 480, 800_000), (1280, 720, 2_000_000)];

fn frames_per_case() -> usize {
    std::env::var("TANDEM_BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(150)
        .clamp(10, 3000)
}

/// Mean and 95th percentile of a sample, in milliseconds.
fn mean_p95_ms(times: &[Duration]) -> (f64, f64) {
    if times.is_empty() {
        return (0.0, 0.0);
    }
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    let rank = ((ms.len() as f64 * 0.95).ceil() as usize).clamp(1, ms.len());
    (mean, ms[rank - 1])
}

fn bench_case(kind: VideoCodecKind, width: u32, height: u32, bitrate_bps: u32, frames: usize) {
    let mut source = PatternSource::new(width, height, FPS).unwrap();
    // The source frames are made before the clock starts: only the codecs are timed.
    let inputs: Vec<_> = (0..frames).map(|_| source.next_frame().unwrap()).collect();
    let mut encoder = new_encoder(
        kind,
        EncoderConfig {
            width,
            height,
            fps: FPS,
            bitrate_bps,
        },
    )
    .unwrap();
    let mut decoder = new_decoder(kind).unwrap();
    let mut encode_times = Vec::with_capacity(frames);
    let mut decode_times = Vec::with_capacity(frames);
    let mut bytes = 0usize;
    let mut keyframes = 0usize;
    let mut dropped = 0usize;
    let mut mad_sum = 0.0;
    let mut mad_count = 0usize;
    for (i, input) in inputs.iter().enumerate() {
        let start = Instant::now();
        let encoded = encoder.encode(black_box(input), i == 0).unwrap();
        encode_times.push(start.elapsed());
        let Some(encoded) = encoded else {
            dropped += 1;
            continue;
        };
        bytes += encoded.data.len();
        keyframes += usize::from(encoded.keyframe);
        let start = Instant::now();
        let decoded = decoder.decode(black_box(&encoded.data)).unwrap();
        decode_times.push(start.elapsed());
        let decoded = decoded.unwrap_or_else(|| {
            panic!("{kind} decoder produced no picture for frame {i}");
        });
        if let Some(mad) = decoded.mean_abs_diff(input) {
            mad_sum += mad;
            mad_count += 1;
        }
    }
    let (enc_mean, enc_p95) = mean_p95_ms(&encode_times);
    let (dec_mean, dec_p95) = mean_p95_ms(&decode_times);
    let produced = frames - dropped;
    let bytes_per_frame = bytes as f64 / produced.max(1) as f64;
    let kbps = bytes as f64 * 8.0 * f64::from(FPS) / frames as f64 / 1000.0;
    let luma_mad = if mad_count > 0 {
        mad_sum / mad_count as f64
    } else {
        f64::NAN
    };
    println!(
        "video_codec codec={} size={width}x{height} fps={FPS} bitrate_kbps={} frames={frames} \
         encode_ms_mean={enc_mean:.2} encode_ms_p95={enc_p95:.2} decode_ms_mean={dec_mean:.2} \
         decode_ms_p95={dec_p95:.2} bytes_per_frame={bytes_per_frame:.0} kbps={kbps:.0} \
         keyframes={keyframes} dropped={dropped} luma_mad={luma_mad:.2}",
        kind.name(),
        bitrate_bps / 1000,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that short.
    let testing = !std::env::args().any(|a| a == "--bench");
    let frames = if testing { 10 } else { frames_per_case() };
    let kinds = available();
    if kinds.is_empty() {
        println!("video_codec skipped=no_codecs_in_this_build");
        return;
    }
    for &(width, height, bitrate) in CASES {
        for &kind in &kinds {
            bench_case(kind, width, height, bitrate, frames);
        }
    }
}
