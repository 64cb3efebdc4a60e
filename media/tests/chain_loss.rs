//! Send chain -> simulated network (loss, jitter, reordering, duplicates, clock drift) ->
//! receive chain, on a virtual clock: a 1 kHz tone must come out as a 1 kHz tone with bounded
//! gaps, for PCMU, PCMA and Opus.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};
use tandem_media::chain::{AudioReceiveChain, AudioSendChain};
use tandem_media::codec::{CodecKind, CodecSpec};

/// Goertzel power of `freq` in `x` (normalised so a full-scale sine of amplitude A gives A²/2).
fn goertzel(x: &[i16], rate: f64, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power / (x.len() as f64 * x.len() as f64)
}

fn mean_square(x: &[i16]) -> f64 {
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len().max(1) as f64
}

/// The strongest frequency between 100 and 4000 Hz in 10 Hz steps (average over 100 ms blocks).
fn dominant(x: &[i16], rate: u32) -> f64 {
    let block = rate as usize / 10;
    let mut best = (0.0, 0.0);
    let mut f = 100.0;
    while f <= 4000.0 {
        let p: f64 = x
            .chunks_exact(block)
            .map(|b| goertzel(b, f64::from(rate), f))
            .sum();
        if p > best.1 {
            best = (f, p);
        }
        f += 10.0;
    }
    best.0
}

/// Longest run of 10 ms windows more than 20 dB below the expected power (audible dropouts).
fn longest_gap_ms(x: &[i16], rate: u32, expected_ms: f64) -> usize {
    let win = rate as usize / 100;
    let (mut run, mut worst) = (0, 0);
    for w in x.chunks_exact(win) {
        if mean_square(w) < expected_ms * 0.01 {
            run += 1;
            worst = worst.max(run);
        } else {
            run = 0;
        }
    }
    worst * 10
}

struct NetConfig {
    loss: f64,
    base_delay_ms: f64,
    jitter_ms: f64,
    duplicate: f64,
    /// Receiver clock speed relative to the sender's (1.0 = same).
    rx_clock: f64,
    /// Tone 1 s on, 0.5 s off (speech-like pauses) instead of a steady tone.
    bursts: bool,
    /// Speech-like: the tone modulated at a syllable rate, over a 150 Hz harmonic series.
    voiced: bool,
    seconds: u64,
}

struct Outcome {
    out: Vec<i16>,
    rate: u32,
    stats: tandem_media::chain::ReceiveChainStats,
}

const AMPLITUDE: f64 = 10_000.0;

fn run(spec: CodecSpec, tx_rate: u32, rx_rate: u32, net: &NetConfig, seed: u64) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let ptime = Duration::from_millis(20);
    let mut tx = AudioSendChain::new(&spec, tx_rate, ptime).unwrap();
    let mut rx = AudioReceiveChain::new(vec![spec.clone()], rx_rate).unwrap();
    let base = Instant::now();
    // In flight: (arrival µs, seq, ts, payload).
    let mut flight: Vec<(u64, u16, u32, Bytes)> = Vec::new();
    let (mut seq, mut ts) = (40_000u16, 4_000_000_000u32); // both wrap during the run
    let tx_frame = (tx_rate / 50) as usize;
    let mut phase = 0u64;
    let mut out = Vec::new();
    let total_us = net.seconds * 1_000_000;
    let mut next_tx = 0u64;
    let rx_period_us = 10_000.0 / net.rx_clock;
    let mut next_rx = 0.0f64;
    let rx_frame = (rx_rate / 100) as usize;
    let mut t = 0u64;
    while t < total_us {
        if t >= next_tx {
            let pcm: Vec<i16> = (0..tx_frame)
                .map(|i| {
                    let n = phase + i as u64;
                    let in_pause = net.bursts && (n * 1000 / u64::from(tx_rate)) % 1500 >= 1000;
                    let amplitude = if in_pause { 0.0 } else { AMPLITUDE };
                    let t = n as f64 / f64::from(tx_rate);
                    let tone = (std::f64::consts::TAU * 1000.0 * t).sin();
                    let v = if net.voiced {
                        let env = 0.6 + 0.4 * (std::f64::consts::TAU * 3.0 * t).sin();
                        let harmonics: f64 = (1..=5)
                            .map(|h| {
                                (std::f64::consts::TAU * 150.0 * h as f64 * t).sin()
                                    / (2 * h) as f64
                            })
                            .sum();
                        env * (tone + harmonics * 0.5) * 0.8
                    } else {
                        tone
                    };
                    (amplitude * v) as i16
                })
                .collect();
            phase += tx_frame as u64;
            tx.push(&pcm);
            while let Some(frame) = tx.next_payload() {
                if !frame.payload.is_empty() && !rng.random_bool(net.loss) {
                    let d = net.base_delay_ms + rng.random_range(-net.jitter_ms..=net.jitter_ms);
                    let at = t + (d.max(0.0) * 1000.0) as u64;
                    flight.push((at, seq, ts, frame.payload.clone()));
                    if rng.random_bool(net.duplicate) {
                        flight.push((at + 3000, seq, ts, frame.payload.clone()));
                    }
                }
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(frame.samples);
            }
            next_tx += 20_000;
        }
        flight.sort_by_key(|p| p.0);
        while flight.first().is_some_and(|p| p.0 <= t) {
            let (at, s, stamp, payload) = flight.remove(0);
            rx.push_rtp(
                base + Duration::from_micros(at),
                spec.payload_type,
                s,
                stamp,
                payload,
            );
        }
        if t as f64 >= next_rx {
            rx.pull(base + Duration::from_micros(t), rx_frame, &mut out);
            next_rx += rx_period_us;
        }
        t += 1000;
    }
    Outcome {
        out,
        rate: rx_rate,
        stats: rx.stats(),
    }
}

fn check_tone(o: &Outcome, max_gap_ms: usize, min_tone_fraction: f64) {
    let skip = o.rate as usize; // the first second: buffering and adaptation
    let body = &o.out[skip..];
    let f = dominant(body, o.rate);
    assert!(
        (f - 1000.0).abs() <= 10.0,
        "dominant {f} Hz, stats {:?}",
        o.stats
    );
    let tone = goertzel(body, f64::from(o.rate), 1000.0);
    let fraction = tone / mean_square(body);
    assert!(
        fraction >= min_tone_fraction,
        "tone fraction {fraction:.3}, stats {:?}",
        o.stats
    );
    let gap = longest_gap_ms(body, o.rate, AMPLITUDE * AMPLITUDE / 2.0);
    eprintln!(
        "dominant {f} Hz, tone fraction {fraction:.3}, longest gap {gap} ms, {:?}",
        o.stats
    );
    assert!(gap <= max_gap_ms, "gap {gap} ms, stats {:?}", o.stats);
}

fn lossy() -> NetConfig {
    NetConfig {
        loss: 0.05,
        base_delay_ms: 60.0,
        jitter_ms: 40.0,
        duplicate: 0.01,
        rx_clock: 1.0,
        bursts: false,
        voiced: false,
        seconds: 20,
    }
}

#[test]
fn pcmu_tone_survives_loss_and_jitter() {
    let o = run(
        CodecSpec::new(CodecKind::Pcmu, 0),
        48_000,
        48_000,
        &lossy(),
        1,
    );
    assert_eq!(o.out.len(), 20 * 48_000);
    check_tone(&o, 20, 0.9);
    assert!(o.stats.jitter.concealed > 0);
    assert!(o.stats.concealed_ms > 0);
    assert!(o.stats.jitter.duplicates > 0);
    // ±40 ms of jitter needs a target near 80 ms.
    assert!(
        o.stats.jitter.target_ms >= 50.0 && o.stats.jitter.target_ms <= 150.0,
        "{:?}",
        o.stats
    );
}

#[test]
fn pcma_tone_survives_loss_and_jitter_with_resampling() {
    let o = run(
        CodecSpec::new(CodecKind::Pcma, 8),
        44_100,
        16_000,
        &lossy(),
        2,
    );
    assert_eq!(o.out.len(), 20 * 16_000);
    check_tone(&o, 20, 0.9);
}

#[test]
fn opus_tone_survives_loss_and_jitter() {
    let spec =
        CodecSpec::from_rtpmap("opus", 48000, 2, 111, Some("useinbandfec=1; usedtx=1")).unwrap();
    let o = run(spec, 48_000, 48_000, &lossy(), 3);
    assert_eq!(o.out.len(), 20 * 48_000);
    check_tone(&o, 30, 0.75);
}

#[test]
fn clean_path_has_no_concealment_and_low_delay() {
    let net = NetConfig {
        loss: 0.0,
        base_delay_ms: 5.0,
        jitter_ms: 0.0,
        duplicate: 0.0,
        rx_clock: 1.0,
        bursts: false,
        voiced: false,
        seconds: 10,
    };
    let o = run(CodecSpec::new(CodecKind::Pcmu, 0), 8_000, 8_000, &net, 4);
    check_tone(&o, 0, 0.95);
    assert_eq!(o.stats.jitter.concealed, 0, "{:?}", o.stats);
    assert_eq!(o.stats.jitter.late, 0);
    assert_eq!(
        o.stats.jitter.inserted + o.stats.jitter.dropped,
        0,
        "{:?}",
        o.stats
    );
    assert!(o.stats.jitter.delay_ms <= 45.0, "{:?}", o.stats);
}

#[test]
fn drift_is_absorbed_both_ways() {
    for (clock, seed) in [(1.005, 5), (0.995, 6)] {
        let net = NetConfig {
            loss: 0.0,
            base_delay_ms: 20.0,
            jitter_ms: 10.0,
            duplicate: 0.0,
            rx_clock: clock,
            bursts: false,
            voiced: false,
            seconds: 30,
        };
        let o = run(CodecSpec::new(CodecKind::Pcmu, 0), 8_000, 8_000, &net, seed);
        check_tone(&o, 20, 0.9);
        let j = &o.stats.jitter;
        // 0.5 % of 30 s = 150 ms: without drift handling the delay would drift that far.
        assert!(
            j.delay_ms <= j.target_ms + 40.0 && j.delay_ms >= j.target_ms - 40.0,
            "{clock}: {j:?}"
        );
        if clock > 1.0 {
            assert!(j.inserted >= 3, "{j:?}");
        } else {
            assert!(j.dropped >= 3, "{j:?}");
        }
    }
}

#[test]
fn g722_tone_survives_loss_and_jitter() {
    let o = run(
        CodecSpec::new(CodecKind::G722, 9),
        48_000,
        16_000,
        &lossy(),
        7,
    );
    assert_eq!(o.out.len(), 20 * 16_000);
    check_tone(&o, 20, 0.9);
    assert!(o.stats.jitter.concealed > 0);
}

#[test]
fn drift_drops_land_in_pauses() {
    // The receiver's clock is 1 % slow: about one 20 ms frame must go every 2 s. With pauses
    // in the audio, every drop should fall into a pause, leaving each 1 s burst whole.
    let net = NetConfig {
        loss: 0.0,
        base_delay_ms: 20.0,
        jitter_ms: 5.0,
        duplicate: 0.0,
        rx_clock: 0.99,
        bursts: true,
        voiced: false,
        seconds: 30,
    };
    let o = run(CodecSpec::new(CodecKind::Pcmu, 0), 8_000, 8_000, &net, 9);
    let j = &o.stats.jitter;
    assert!(j.dropped >= 8, "{j:?}");
    // Lengths of the loud runs, in 10 ms windows.
    let mut runs = Vec::new();
    let mut run = 0;
    for w in o.out.chunks_exact(80) {
        if mean_square(w) > AMPLITUDE * AMPLITUDE / 2.0 * 0.25 {
            run += 1;
        } else if run > 0 {
            runs.push(run);
            run = 0;
        }
    }
    let whole: Vec<_> = runs.iter().skip(1).copied().collect(); // the first may be cut by start-up
    assert!(whole.len() >= 15, "{runs:?}");
    assert!(
        whole.iter().all(|&r| (99..=101).contains(&r)),
        "bursts cut by drops: {runs:?} {j:?}"
    );
}

#[test]
fn opus_fec_recovers_at_least_half_the_losses_of_speech_like_audio() {
    let spec = CodecSpec::from_rtpmap("opus", 48000, 2, 111, Some("useinbandfec=1")).unwrap();
    let net = NetConfig {
        voiced: true,
        ..lossy()
    };
    let o = run(spec, 48_000, 48_000, &net, 10);
    let f = dominant(&o.out[48_000..], 48_000);
    assert!((f - 1000.0).abs() <= 10.0, "dominant {f}");
    let lost = o.stats.jitter.concealed;
    let fec = o.stats.fec_recovered;
    eprintln!(
        "lost/underrun frames {lost}, recovered by FEC {fec}: {:?}",
        o.stats
    );
    assert!(
        lost > 20 && fec * 2 >= lost,
        "FEC recovered {fec} of {lost}"
    );
}
