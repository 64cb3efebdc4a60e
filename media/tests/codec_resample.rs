//! Resampler quality: a sine keeps its frequency and amplitude with low distortion between
//! every pair of 8, 16, 44.1 and 48 kHz; out-of-band tones are rejected when downsampling;
//! chunking does not change the output.

use tandem_media::resample::Resampler;

const RATES: [u32; 4] = [8000, 16000, 44100, 48000];

fn sine(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<i16> {
    (0..n)
        .map(|i| {
            (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin()).round()
                as i16
        })
        .collect()
}

/// Least-squares fit of a sine at `freq`: (amplitude, SNR in dB of the residual).
fn fit(x: &[i16], rate: u32, freq: f64) -> (f64, f64) {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let (mut ss, mut cc, mut sc, mut xs, mut xc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, &v) in x.iter().enumerate() {
        let (s, c) = (w * i as f64).sin_cos();
        let v = f64::from(v);
        ss += s * s;
        cc += c * c;
        sc += s * c;
        xs += v * s;
        xc += v * c;
    }
    let det = ss * cc - sc * sc;
    let a = (xs * cc - xc * sc) / det;
    let b = (xc * ss - xs * sc) / det;
    let mut sig = 0.0;
    let mut err = 0.0;
    for (i, &v) in x.iter().enumerate() {
        let (s, c) = (w * i as f64).sin_cos();
        let model = a * s + b * c;
        sig += model * model;
        err += (f64::from(v) - model).powi(2);
    }
    ((a * a + b * b).sqrt(), 10.0 * (sig / err.max(1e-9)).log10())
}

fn run_chunked(from: u32, to: u32, input: &[i16], chunk: usize) -> Vec<i16> {
    let mut r = Resampler::new(from, to);
    let mut out = Vec::new();
    for c in input.chunks(chunk) {
        r.process(c, &mut out);
    }
    out
}

#[test]
fn sine_survives_every_rate_pair() {
    for &from in &RATES {
        for &to in &RATES {
            for freq in [440.0, 1000.0, 3000.0] {
                if freq > 0.4 * f64::from(from.min(to)) {
                    continue;
                }
                let input = sine(freq, from, from as usize, 12_000.0);
                // 10 ms chunks, like device frames.
                let out = run_chunked(from, to, &input, from as usize / 100);
                let expect = to as usize;
                assert!(
                    out.len().abs_diff(expect) <= 1,
                    "{from}->{to}: {} samples",
                    out.len()
                );
                // Skip the filter start-up, then the fit must be a clean sine.
                let body = &out[to as usize / 20..out.len() - to as usize / 50];
                let (amp, snr) = fit(body, to, freq);
                eprintln!("{from}->{to} {freq} Hz: amplitude {amp:.1}, SNR {snr:.1} dB");
                assert!(
                    (amp / 12_000.0 - 1.0).abs() < 0.02,
                    "{from}->{to} {freq} Hz: amplitude {amp}"
                );
                assert!(snr > 75.0, "{from}->{to} {freq} Hz: SNR {snr:.1} dB");
            }
        }
    }
}

#[test]
fn downsampling_rejects_tones_above_the_new_nyquist() {
    for (from, to, freq) in [
        (48000, 8000, 6000.0),
        (44100, 8000, 5000.0),
        (48000, 16000, 10000.0),
        (48000, 44100, 23000.0),
    ] {
        let input = sine(freq, from, from as usize, 12_000.0);
        let out = run_chunked(from, to, &input, 480);
        let body = &out[to as usize / 20..];
        let power = body.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / body.len() as f64;
        let input_power = 12_000.0f64.powi(2) / 2.0;
        let db = 10.0 * (power / input_power).log10();
        assert!(db < -50.0, "{from}->{to} {freq} Hz leaks at {db:.1} dB");
    }
}

#[test]
fn chunking_does_not_change_the_output() {
    let input = sine(700.0, 44100, 20_000, 9000.0);
    for (from, to) in [(44100, 48000), (44100, 8000), (44100, 16000)] {
        let whole = run_chunked(from, to, &input, input.len());
        for chunk in [1, 7, 441, 1000] {
            assert_eq!(
                run_chunked(from, to, &input, chunk),
                whole,
                "{from}->{to} chunk {chunk}"
            );
        }
    }
}

#[test]
fn reset_and_extremes() {
    let mut r = Resampler::new(8000, 48000);
    let mut out = Vec::new();
    r.process(&[i16::MAX; 800], &mut out);
    r.process(&[i16::MIN; 800], &mut out);
    // Full-scale plateaus come out at full scale (ringing is clipped, not wrapped around).
    assert_eq!(out.len(), 2 * 4800);
    assert!(r.delay_samples() < 200);
    assert!(out[2000..4000].iter().all(|&s| s >= 32765), "plateau");
    assert!(
        out[out.len() - 500..].iter().all(|&s| s <= -32766),
        "negative plateau"
    );
    let overshoot_wrapped = out
        .windows(2)
        .any(|w| (i32::from(w[0]) - i32::from(w[1])).abs() > 20_000);
    assert!(!overshoot_wrapped);
    r.reset();
    out.clear();
    r.process(&[], &mut out);
    assert!(out.is_empty());
    assert_eq!((r.from_hz(), r.to_hz()), (8000, 48000));
}
