//! Streaming sample-rate conversion for mono i16 audio: a polyphase windowed-sinc (Kaiser)
//! filter for any rational ratio (8, 16, 32, 44.1, 48 kHz in any direction), with state kept
//! between calls so frames of any size can be fed in.

/// Zero crossings of the sinc on each side of the centre.
const ZERO_CROSSINGS: f64 = 16.0;
/// Cutoff as a fraction of the lower Nyquist frequency (leaves room for the transition band).
const CUTOFF: f64 = 0.86;
/// Kaiser window shape (about 80 dB stopband).
const KAISER_BETA: f64 = 8.0;
/// Refuse ratios whose polyphase table would be absurdly large.
const MAX_PHASES: usize = 4096;

/// A streaming mono resampler from one rate to another (pass-through when they are equal).
#[derive(Debug, Clone)]
pub struct Resampler {
    from_hz: u32,
    to_hz: u32,
    inner: Option<Polyphase>,
}

#[derive(Debug, Clone)]
struct Polyphase {
    /// Interpolation factor (phases).
    up: usize,
    /// Decimation factor.
    down: usize,
    /// Half the number of taps per phase.
    half: usize,
    /// `up` rows of `2 * half` coefficients.
    coefs: Vec<f32>,
    /// Pending input, oldest first; `buf[pos]` is the input sample the next output is based on.
    buf: Vec<f32>,
    pos: usize,
    phase: usize,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Modified Bessel function of the first kind, order 0 (power series).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..64 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-12 {
            break;
        }
    }
    sum
}

impl Resampler {
    /// Creates a resampler from `from_hz` to `to_hz` (a rate of 0 means pass-through). A
    /// ratio whose reduced form needs more than 4096 filter phases is approximated.
    pub fn new(from_hz: u32, to_hz: u32) -> Self {
        let inner = if from_hz == to_hz || from_hz == 0 || to_hz == 0 {
            None
        } else {
            Some(Polyphase::new(from_hz, to_hz))
        };
        Resampler {
            from_hz,
            to_hz,
            inner,
        }
    }

    /// The input rate.
    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    /// The output rate.
    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// True when input is copied through unchanged.
    pub fn is_passthrough(&self) -> bool {
        self.inner.is_none()
    }

    /// The filter's group delay in output samples (0 for pass-through).
    pub fn delay_samples(&self) -> usize {
        match &self.inner {
            None => 0,
            Some(p) => p.half * p.up / p.down,
        }
    }

    /// Converts `input`, appending the output to `out`: `input * to / from` samples (the
    /// fractional remainder carries over to the next call), lagging by [`Self::delay_samples`].
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        match &mut self.inner {
            None => out.extend_from_slice(input),
            Some(p) => p.process(input, out),
        }
    }

    /// Forgets buffered input (e.g. after a device switch).
    pub fn reset(&mut self) {
        *self = Resampler::new(self.from_hz, self.to_hz);
    }
}

impl Polyphase {
    fn new(from_hz: u32, to_hz: u32) -> Self {
        let g = gcd(u64::from(from_hz), u64::from(to_hz));
        let mut up = (u64::from(to_hz) / g) as usize;
        let mut down = (u64::from(from_hz) / g) as usize;
        if up > MAX_PHASES {
            // Approximate the ratio with at most MAX_PHASES phases.
            let scale = up.div_ceil(MAX_PHASES);
            up = (up / scale).max(1);
            down = (down / scale).max(1);
        }
        // Cutoff in cycles per input sample.
        let fc = 0.5 * CUTOFF * (up as f64 / down as f64).min(1.0);
        let half = ((ZERO_CROSSINGS / (2.0 * fc)).ceil() as usize).max(2);
        let taps = 2 * half;
        let mut coefs = vec![0f32; up * taps];
        let norm = bessel_i0(KAISER_BETA);
        for p in 0..up {
            let row = &mut coefs[p * taps..(p + 1) * taps];
            let mut sum = 0.0f64;
            let mut vals = vec![0f64; taps];
            for (k, v) in vals.iter_mut().enumerate() {
                let d = k as f64 - half as f64 + 1.0;
                let t = p as f64 / up as f64 - d;
                let x = 2.0 * fc * t;
                let sinc = if x.abs() < 1e-12 {
                    1.0
                } else {
                    (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
                };
                let r = t / half as f64;
                let w = if r.abs() >= 1.0 {
                    0.0
                } else {
                    bessel_i0(KAISER_BETA * (1.0 - r * r).sqrt()) / norm
                };
                *v = 2.0 * fc * sinc * w;
                sum += *v;
            }
            // Unity gain at DC for every phase.
            for (c, v) in row.iter_mut().zip(&vals) {
                *c = if sum.abs() > 1e-9 {
                    (*v / sum) as f32
                } else {
                    0.0
                };
            }
        }
        Polyphase {
            up,
            down,
            half,
            coefs,
            // Primed with a full filter length of silence: every input sample yields its share
            // of output at once (the signal lags by the filter delay, but block sizes are kept:
            // 160 samples at 8 kHz always give 960 at 48 kHz).
            buf: vec![0.0; 2 * half],
            pos: half,
            phase: 0,
        }
    }

    fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        self.buf.extend(input.iter().map(|&s| f32::from(s)));
        let taps = 2 * self.half;
        out.reserve(input.len() * self.up / self.down + 1);
        while self.pos + self.half < self.buf.len() {
            let start = self.pos + 1 - self.half;
            let x = &self.buf[start..start + taps];
            let row = &self.coefs[self.phase * taps..(self.phase + 1) * taps];
            let acc: f32 = x.iter().zip(row).map(|(a, b)| a * b).sum();
            out.push(acc.round().clamp(-32768.0, 32767.0) as i16);
            self.phase += self.down;
            self.pos += self.phase / self.up;
            self.phase %= self.up;
        }
        // Keep the history the next outputs need.
        let keep_from = (self.pos + 1).saturating_sub(self.half).min(self.buf.len());
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.pos -= keep_from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passthrough_when_equal() {
        let mut r = Resampler::new(8000, 8000);
        let mut out = Vec::new();
        r.process(&[1, 2, 3], &mut out);
        assert_eq!(out, vec![1, 2, 3]);
        assert!(r.is_passthrough());
    }

    #[test]
    fn output_count_tracks_ratio() {
        for (a, b) in [
            (8000, 48000),
            (48000, 8000),
            (44100, 48000),
            (48000, 44100),
            (16000, 44100),
            (44100, 8000),
        ] {
            let mut r = Resampler::new(a, b);
            let mut out = Vec::new();
            let mut fed = 0usize;
            for chunk in [7usize, 160, 441, 960, 1, 333].iter().cycle().take(60) {
                r.process(&vec![1000; *chunk], &mut out);
                fed += chunk;
            }
            let expect = fed * b as usize / a as usize;
            assert!(
                out.len().abs_diff(expect) <= 1,
                "{a}->{b}: {} vs {expect}",
                out.len()
            );
            // DC passes at unity gain once the filter is full.
            assert!(
                out[out.len() - 10..].iter().all(|&s| (s - 1000).abs() <= 2),
                "{a}->{b}"
            );
        }
    }
}
