//! Codec, resampler, jitter buffer and chain throughput.
//!
//! `cargo bench -p tandem-media --bench codec` prints one `name key=value ...` line per
//! measurement (collected by `cargo xtask bench media`):
//!
//! * `codec codec=<name>`: microseconds per 20 ms frame to encode and to decode a speech-like
//!   signal, concealment per frame, and the realtime factor of encode + decode (seconds of
//!   audio processed per second of CPU).
//! * `resample from=<hz> to=<hz>`: realtime factor of the streaming resampler.
//! * `chain codec=<name>`: one call leg's whole audio path per 20 ms at a 48 kHz device rate
//!   (send chain: resample + encode; receive chain: jitter buffer + decode + resample) and
//!   the number of such legs one core sustains.
//!
//! `TANDEM_BENCH_SECS` (default 2) sets the time spent on each measurement.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may unwrap

use std::hint::black_box;
use std::time::{Duration, Instant};

use tandem_media::chain::{AudioReceiveChain, AudioSendChain};
use tandem_media::codec::{CodecKind, CodecSpec, new_decoder, new_encoder};
use tandem_media::resample::Resampler;

fn budget() -> Duration {
    let secs = std::env::var("TANDEM_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(2.0)
        .clamp(0.1, 60.0);
    // Several measurements share the budget.
    Duration::from_secs_f64(secs / 4.0)
}

/// Average time of one call of `f`, run repeatedly for `budget`.
fn time(budget: Duration, mut f: impl FnMut()) -> Duration {
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget {
        for _ in 0..10 {
            f();
        }
        n += 10;
    }
    start.elapsed() / n
}

/// Speech-like test audio: harmonics of a gliding pitch with a syllable envelope.
fn voiced(rate: u32, n: usize) -> Vec<i16> {
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let f0 = 150.0 + 30.0 * (std::f64::consts::TAU * 0.7 * t).sin();
            phase += std::f64::consts::TAU * f0 / f64::from(rate);
            let env = 0.55 + 0.45 * (std::f64::consts::TAU * 3.0 * t).sin();
            let v: f64 = (1..=12).map(|h| (phase * h as f64).sin() / h as f64).sum();
            (v * 5000.0 * env) as i16
        })
        .collect()
}

fn specs() -> Vec<CodecSpec> {
    vec![
        CodecSpec::from_rtpmap("opus", 48000, 2, 111, Some("useinbandfec=1;usedtx=1")).unwrap(),
        CodecSpec::new(CodecKind::Pcmu, 0),
        CodecSpec::new(CodecKind::Pcma, 8),
        CodecSpec::new(CodecKind::G722, 9),
    ]
}

fn bench_codec(spec: &CodecSpec, budget: Duration) {
    let mut enc = new_encoder(spec).unwrap();
    let mut dec = new_decoder(spec).unwrap();
    let rate = enc.pcm_rate();
    let frame = rate as usize / 50;
    let audio = voiced(rate, rate as usize * 2);
    let frames: Vec<&[i16]> = audio.chunks_exact(frame).collect();
    let payloads: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut p = Vec::new();
            enc.encode(f, &mut p).unwrap();
            p
        })
        .collect();
    let mut payload = Vec::new();
    let mut k = 0;
    let enc_t = time(budget, || {
        enc.encode(black_box(frames[k % frames.len()]), &mut payload)
            .unwrap();
        k += 1;
        black_box(&payload);
    });
    let mut out = Vec::with_capacity(frame * 6);
    let mut k = 0;
    let dec_t = time(budget, || {
        out.clear();
        let p = &payloads[k % payloads.len()];
        if !p.is_empty() {
            dec.decode(black_box(p), &mut out).unwrap();
        }
        k += 1;
        black_box(&out);
    });
    let plc_t = time(budget / 2, || {
        out.clear();
        dec.conceal(frame, &mut out);
        black_box(&out);
    });
    let realtime = 0.020 / (enc_t + dec_t).as_secs_f64();
    println!(
        "codec codec={} enc_us={:.2} dec_us={:.2} plc_us={:.2} realtime_factor={:.0}",
        spec.name(),
        enc_t.as_secs_f64() * 1e6,
        dec_t.as_secs_f64() * 1e6,
        plc_t.as_secs_f64() * 1e6,
        realtime
    );
}

fn bench_resample(from: u32, to: u32, budget: Duration) {
    let mut r = Resampler::new(from, to);
    let chunk = voiced(from, from as usize / 50);
    let mut out = Vec::with_capacity(chunk.len() * 7);
    let t = time(budget, || {
        out.clear();
        r.process(black_box(&chunk), &mut out);
        black_box(&out);
    });
    println!(
        "resample from={from} to={to} us_per_20ms={:.2} realtime_factor={:.0}",
        t.as_secs_f64() * 1e6,
        0.020 / t.as_secs_f64()
    );
}

fn bench_chain(spec: &CodecSpec, budget: Duration) {
    const DEVICE: u32 = 48_000;
    let mut tx = AudioSendChain::new(spec, DEVICE, Duration::from_millis(20)).unwrap();
    let mut rx = AudioReceiveChain::new(vec![spec.clone()], DEVICE).unwrap();
    let audio = voiced(DEVICE, DEVICE as usize * 2);
    let frames: Vec<&[i16]> = audio.chunks_exact(960).collect();
    let base = Instant::now();
    let (mut seq, mut ts, mut k) = (0u16, 0u32, 0u64);
    let mut out = Vec::with_capacity(960);
    // One iteration = one 20 ms tick of a call leg on a virtual clock.
    let t = time(budget, || {
        let now = base + Duration::from_millis(k * 20);
        tx.push(frames[(k as usize) % frames.len()]);
        while let Some(f) = tx.next_payload() {
            if !f.payload.is_empty() {
                rx.push_rtp(now, spec.payload_type, seq, ts, f.payload);
            }
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(f.samples);
        }
        out.clear();
        rx.pull(now, 960, &mut out);
        black_box(&out);
        k += 1;
    });
    let legs = 0.020 / t.as_secs_f64();
    println!(
        "chain codec={} us_per_20ms={:.2} realtime_factor={:.0} legs_per_core={:.0}",
        spec.name(),
        t.as_secs_f64() * 1e6,
        legs,
        legs
    );
}

fn main() {
    let budget = budget();
    for spec in specs() {
        bench_codec(&spec, budget);
    }
    for (from, to) in [
        (48_000, 8_000),
        (8_000, 48_000),
        (44_100, 48_000),
        (48_000, 16_000),
    ] {
        bench_resample(from, to, budget);
    }
    for spec in specs() {
        bench_chain(&spec, budget);
    }
}
