//! Test tones: sine generation, tone WAV files, and analysis of received audio (dominant frequency
//! with sub-bin accuracy, SNR around it, RMS), plus activity segmentation for concealment bounds.
//!
//! Levels (`rms`, `threshold`) are in i16 sample units: full-scale sine RMS is about 23170.

use std::f64::consts::PI;
use std::path::Path;
use std::time::Duration;

use crate::wav::{WavError, write_wav};

/// A phase-continuous sine generator producing i16 samples.
#[derive(Debug, Clone)]
pub struct SineGenerator {
    phase: f64,
    step: f64,
    amplitude: f64,
}

impl SineGenerator {
    /// A generator of `freq_hz` at `rate` Hz; `amplitude` is a fraction of full scale (clamped to 0..=1).
    pub fn new(freq_hz: f32, rate: u32, amplitude: f32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            phase: 0.0,
            step: 2.0 * PI * f64::from(freq_hz) / rate,
            amplitude: f64::from(amplitude.clamp(0.0, 1.0)) * 32767.0,
        }
    }

    /// Fills `out` with the next samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        for s in out.iter_mut() {
            *s = (self.phase.sin() * self.amplitude).round() as i16;
            self.phase += self.step;
            if self.phase >= 2.0 * PI {
                self.phase -= 2.0 * PI;
            }
        }
    }
}

/// A sine of `freq` Hz lasting `duration` at `rate` Hz; `amplitude` is a fraction of full scale.
pub fn sine(freq: f32, rate: u32, duration: Duration, amplitude: f32) -> Vec<i16> {
    let n = (duration.as_secs_f64() * f64::from(rate)).round() as usize;
    let mut out = vec![0i16; n];
    SineGenerator::new(freq, rate, amplitude).fill(&mut out);
    out
}

/// Writes a `secs`-second sine of `freq` Hz at half of full scale as a 16-bit mono WAV file.
pub fn write_tone_wav(
    path: impl AsRef<Path>,
    freq: f32,
    rate: u32,
    secs: f32,
) -> Result<(), WavError> {
    let duration = Duration::try_from_secs_f32(secs.max(0.0)).unwrap_or(Duration::ZERO);
    write_wav(path, rate, &sine(freq, rate, duration, 0.5))
}

/// The result of [`analyze`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneAnalysis {
    /// The frequency with the most power, interpolated between FFT bins (0 for silence).
    pub dominant_hz: f32,
    /// Power within +-2 % (at least +-5 FFT bins, the window's main lobe) of the dominant frequency against all other power
    /// above 20 Hz, in dB (`-inf` for silence, capped at 150 dB for a pure tone).
    pub snr_db: f32,
    /// RMS level of the whole input in i16 units.
    pub rms: f32,
}

/// In-place iterative radix-2 FFT over `re`/`im` (length a power of two).
fn fft(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    if n < 2 {
        return;
    }
    let bits = n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if j > i {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let ang = -2.0 * PI / len as f64;
        let (w_im, w_re) = ang.sin_cos();
        for start in (0..n).step_by(len) {
            let (mut c_re, mut c_im) = (1.0f64, 0.0f64);
            for k in 0..len / 2 {
                let a = start + k;
                let b = a + len / 2;
                let t_re = re[b] * c_re - im[b] * c_im;
                let t_im = re[b] * c_im + im[b] * c_re;
                re[b] = re[a] - t_re;
                im[b] = im[a] - t_im;
                re[a] += t_re;
                im[a] += t_im;
                let n_re = c_re * w_re - c_im * w_im;
                c_im = c_re * w_im + c_im * w_re;
                c_re = n_re;
            }
        }
        len <<= 1;
    }
}

/// Averaged (Welch, 4-term Blackman-Harris window with -92 dB side lobes, 50 % overlap) power
/// spectrum with segments of `seg` samples.
fn power_spectrum(pcm: &[i16], seg: usize) -> Vec<f64> {
    let window: Vec<f64> = (0..seg)
        .map(|i| {
            let x = 2.0 * PI * i as f64 / seg as f64;
            0.35875 - 0.48829 * x.cos() + 0.14128 * (2.0 * x).cos() - 0.01168 * (3.0 * x).cos()
        })
        .collect();
    let mut acc = vec![0.0f64; seg / 2 + 1];
    let hop = seg / 2;
    let mut re = vec![0.0f64; seg];
    let mut im = vec![0.0f64; seg];
    let mut start = 0;
    let mut count = 0usize;
    while start + seg <= pcm.len() {
        let chunk = &pcm[start..start + seg];
        let mean = chunk.iter().map(|&s| f64::from(s)).sum::<f64>() / seg as f64;
        for (i, (&s, w)) in chunk.iter().zip(&window).enumerate() {
            re[i] = (f64::from(s) - mean) * w;
            im[i] = 0.0;
        }
        fft(&mut re, &mut im);
        for (k, a) in acc.iter_mut().enumerate() {
            *a += re[k] * re[k] + im[k] * im[k];
        }
        count += 1;
        start += hop;
    }
    if count > 0 {
        for a in acc.iter_mut() {
            *a /= count as f64;
        }
    }
    acc
}

/// RMS of `pcm` in i16 units (0 for an empty slice).
pub fn rms(pcm: &[i16]) -> f32 {
    if pcm.is_empty() {
        return 0.0;
    }
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / pcm.len() as f64).sqrt() as f32
}

/// Finds the dominant frequency of `pcm` (sampled at `rate`), the SNR around it and the RMS level.
///
/// Uses a Welch-averaged Blackman-Harris-windowed FFT (segments of up to 16384 samples) and Gaussian
/// interpolation of the peak for sub-bin accuracy. Inputs shorter than 64 samples or silent report
/// `dominant_hz = 0`, `snr_db = -inf`.
pub fn analyze(pcm: &[i16], rate: u32) -> ToneAnalysis {
    let level = rms(pcm);
    let silent = ToneAnalysis {
        dominant_hz: 0.0,
        snr_db: f32::NEG_INFINITY,
        rms: level,
    };
    if pcm.len() < 64 || rate == 0 {
        return silent;
    }
    // The largest power of two not above the length, at most 16384.
    let seg = (1usize << (usize::BITS - 1 - pcm.len().leading_zeros())).min(16384);
    let spec = power_spectrum(pcm, seg);
    let bin_hz = f64::from(rate) / seg as f64;
    let min_bin = ((20.0 / bin_hz).ceil() as usize).max(1);
    let Some((peak, &peak_power)) = spec
        .iter()
        .enumerate()
        .skip(min_bin)
        .max_by(|a, b| a.1.total_cmp(b.1))
    else {
        return silent;
    };
    if peak_power <= 0.0 {
        return silent;
    }
    // Gaussian (log-parabolic) interpolation between the neighbours.
    let offset = match (spec.get(peak - 1), spec.get(peak + 1)) {
        (Some(&l), Some(&r)) if l > 0.0 && r > 0.0 => {
            let (l, c, r) = (l.ln(), peak_power.ln(), r.ln());
            let denom = l - 2.0 * c + r;
            if denom.abs() > f64::EPSILON {
                (0.5 * (l - r) / denom).clamp(-0.5, 0.5)
            } else {
                0.0
            }
        }
        _ => 0.0,
    };
    let dominant = (peak as f64 + offset) * bin_hz;
    let half_band = (dominant * 0.02).max(5.0 * bin_hz);
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for (k, &p) in spec.iter().enumerate().skip(min_bin) {
        if ((k as f64) * bin_hz - dominant).abs() <= half_band {
            signal += p;
        } else {
            noise += p;
        }
    }
    let snr_db = if noise <= 0.0 {
        150.0
    } else {
        (10.0 * (signal / noise).log10()).min(150.0)
    };
    ToneAnalysis {
        dominant_hz: dominant as f32,
        snr_db: snr_db as f32,
        rms: level,
    }
}

/// A stretch of audio whose windowed RMS is at or above the activity threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Offset of the first active window.
    pub start: Duration,
    /// Offset just past the last active window.
    pub end: Duration,
}

impl Segment {
    /// Length of the segment.
    pub fn duration(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

fn window_len(rate: u32, window: Duration) -> usize {
    ((window.as_secs_f64() * f64::from(rate)).round() as usize).max(1)
}

/// Per-window activity flags: `rms(window) >= threshold` (threshold in i16 units).
fn activity(pcm: &[i16], rate: u32, window: Duration, threshold: f32) -> (usize, Vec<bool>) {
    let w = window_len(rate, window);
    let flags = pcm.chunks(w).map(|c| rms(c) >= threshold).collect();
    (w, flags)
}

fn offset(samples: usize, rate: u32) -> Duration {
    Duration::from_secs_f64(samples as f64 / f64::from(rate.max(1)))
}

/// Splits `pcm` into windows of `window` and returns the runs of windows whose RMS is at least
/// `threshold` (i16 units), in order.
pub fn active_segments(pcm: &[i16], rate: u32, window: Duration, threshold: f32) -> Vec<Segment> {
    let (w, flags) = activity(pcm, rate, window, threshold);
    let mut out = Vec::new();
    let mut run_start: Option<usize> = None;
    for (i, &active) in flags.iter().enumerate() {
        match (active, run_start) {
            (true, None) => run_start = Some(i),
            (false, Some(s)) => {
                out.push(Segment {
                    start: offset(s * w, rate),
                    end: offset(i * w, rate),
                });
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = run_start {
        out.push(Segment {
            start: offset(s * w, rate),
            end: offset(pcm.len(), rate),
        });
    }
    out
}

/// The longest run of inactive windows (RMS below `threshold`, i16 units) in `pcm`, ignoring the
/// first `skip_start` and the last `skip_end` of the signal (call setup and teardown).
/// Returns zero when nothing is left after skipping.
pub fn longest_gap(
    pcm: &[i16],
    rate: u32,
    window: Duration,
    threshold: f32,
    skip_start: Duration,
    skip_end: Duration,
) -> Duration {
    let from = ((skip_start.as_secs_f64() * f64::from(rate)).round() as usize).min(pcm.len());
    let cut = (skip_end.as_secs_f64() * f64::from(rate)).round() as usize;
    let to = pcm.len().saturating_sub(cut);
    let Some(slice) = pcm.get(from..to) else {
        return Duration::ZERO;
    };
    let (w, flags) = activity(slice, rate, window, threshold);
    let mut longest = 0usize;
    let mut run = 0usize;
    for (i, &active) in flags.iter().enumerate() {
        if active {
            run = 0;
        } else {
            // The last window may be partial.
            let len = slice.len().saturating_sub(i * w).min(w);
            run += len;
            longest = longest.max(run);
        }
    }
    offset(longest, rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_of_impulse_is_flat() {
        let mut re = vec![0.0; 8];
        let mut im = vec![0.0; 8];
        re[0] = 1.0;
        fft(&mut re, &mut im);
        for k in 0..8 {
            assert!((re[k] - 1.0).abs() < 1e-12 && im[k].abs() < 1e-12);
        }
    }

    #[test]
    fn fft_finds_cosine_bin() {
        let n = 64;
        let mut re: Vec<f64> = (0..n)
            .map(|i| (2.0 * PI * 5.0 * i as f64 / n as f64).cos())
            .collect();
        let mut im = vec![0.0; n];
        fft(&mut re, &mut im);
        let mag: Vec<f64> = re
            .iter()
            .zip(&im)
            .map(|(r, i)| (r * r + i * i).sqrt())
            .collect();
        assert!((mag[5] - 32.0).abs() < 1e-9);
        assert!(mag[4] < 1e-9 && mag[6] < 1e-9);
    }
}
