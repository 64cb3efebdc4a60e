//! Packet-loss concealment for waveform codecs in the style of ITU-T G.711 Appendix I:
//! the pitch period of the last good audio is estimated by normalised cross-correlation, the
//! last period is repeated (its loop seam smoothed by a quarter-period overlap-add), after
//! 10 ms the repetition widens to two and then three periods so it does not buzz, the output
//! fades by 20 % per 10 ms after the first 10 ms (silence from 60 ms), and the first good
//! frame after a loss is cross-faded with the continued concealment.
//!
//! Unlike the reference code this version adds no algorithmic delay: the repeated cycle starts
//! one pitch period back, which continues the last good sample for periodic signals, and the
//! level difference at that seam is faded out over a quarter period instead of overlap-added.

/// Appendix I style concealment state for one mono stream.
#[derive(Debug, Clone)]
pub struct G711Plc {
    /// Samples per 10 ms.
    ten_ms: usize,
    pitch_min: usize,
    pitch_max: usize,
    corr_len: usize,
    /// The most recent good (or cross-faded) output, `hist_len` samples, oldest first.
    history: Vec<f32>,
    hist_len: usize,
    /// Samples concealed in the current loss (0 = not in a loss).
    erased: usize,
    pitch: usize,
    periods: usize,
    cycle: Vec<f32>,
    pos: usize,
    /// The previous cycle and position while switching to a longer one.
    fade_from: Option<(Vec<f32>, usize)>,
    fade_left: usize,
    /// Level offset between the last good sample and the cycle's predecessor, decayed over
    /// a quarter period so the concealment starts without a step.
    offset: f32,
    offset_left: usize,
    scratch: Vec<f32>,
}

impl G711Plc {
    /// Creates the concealment state for a stream at `rate` Hz (8000 for G.711).
    pub fn new(rate: u32) -> Self {
        let per_ms = (rate as usize / 1000).max(1);
        let ten_ms = per_ms * 10;
        // Pitch 66..200 Hz (5..15 ms), 20 ms correlation window, three periods of history.
        let pitch_min = per_ms * 5;
        let pitch_max = per_ms * 15;
        let corr_len = per_ms * 20;
        let hist_len = (3 * pitch_max + pitch_max / 4).max(corr_len + pitch_max);
        G711Plc {
            ten_ms,
            pitch_min,
            pitch_max,
            corr_len,
            history: vec![0.0; hist_len],
            hist_len,
            erased: 0,
            pitch: pitch_min,
            periods: 1,
            cycle: Vec::new(),
            pos: 0,
            fade_from: None,
            fade_left: 0,
            offset: 0.0,
            offset_left: 0,
            scratch: Vec::new(),
        }
    }

    /// True while a loss is being concealed.
    pub fn in_loss(&self) -> bool {
        self.erased > 0
    }

    /// Records a good frame; after a loss, cross-fades its start with the concealment.
    pub fn good_frame(&mut self, frame: &mut [i16]) {
        if self.erased > 0 {
            let extra_tens = (self.erased / self.ten_ms).saturating_sub(1);
            let ola = (self.pitch / 4 + extra_tens * self.ten_ms * 4 / 10)
                .min(self.ten_ms)
                .min(frame.len());
            let mut tail = std::mem::take(&mut self.scratch);
            tail.clear();
            for _ in 0..ola {
                tail.push(self.next_concealed());
            }
            for (j, (s, c)) in frame.iter_mut().zip(tail.iter()).enumerate() {
                let w = (j + 1) as f32 / (ola + 1) as f32;
                *s = to_i16(*c * (1.0 - w) + f32::from(*s) * w);
            }
            self.scratch = tail;
            self.erased = 0;
            self.fade_from = None;
            self.fade_left = 0;
        }
        self.push_history(frame);
    }

    /// Appends `samples` samples of concealment to `out`.
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        out.reserve(samples);
        for _ in 0..samples {
            let s = self.next_concealed();
            out.push(to_i16(s));
        }
    }

    fn push_history(&mut self, frame: &[i16]) {
        if frame.len() >= self.hist_len {
            self.history.clear();
            self.history.extend(
                frame[frame.len() - self.hist_len..]
                    .iter()
                    .map(|&s| f32::from(s)),
            );
        } else {
            self.history.drain(..frame.len());
            self.history.extend(frame.iter().map(|&s| f32::from(s)));
        }
    }

    fn next_concealed(&mut self) -> f32 {
        if self.erased == 0 {
            self.pitch = self.estimate_pitch();
            self.periods = 1;
            self.cycle = self.build_cycle(1);
            self.pos = 0;
            let end = self.history.len();
            self.offset = self.history[end - 1] - self.history[end - 1 - self.pitch];
            self.offset_left = (self.pitch / 4).max(1);
        } else if self.erased.is_multiple_of(self.ten_ms)
            && self.periods < 3
            && self.erased <= 2 * self.ten_ms
        {
            // Widen the repeated segment by one period, keeping the phase, cross-fading.
            let next = self.build_cycle(self.periods + 1);
            let old = std::mem::replace(&mut self.cycle, next);
            self.fade_from = Some((old, self.pos));
            self.fade_left = (self.pitch / 4).max(1);
            self.pos += self.pitch;
            self.periods += 1;
        }
        let gain = if self.erased < self.ten_ms {
            1.0
        } else {
            let over = (self.erased - self.ten_ms) as f32;
            (1.0 - over * 0.2 / self.ten_ms as f32).max(0.0)
        };
        self.erased = self.erased.saturating_add(1);
        if gain == 0.0 || self.cycle.is_empty() {
            return 0.0;
        }
        let mut s = self.cycle[self.pos % self.cycle.len()];
        self.pos = (self.pos + 1) % self.cycle.len();
        if let Some((old, old_pos)) = self.fade_from.as_mut() {
            let total = (self.pitch / 4).max(1);
            let w = self.fade_left as f32 / (total + 1) as f32;
            let o = old[*old_pos % old.len()];
            *old_pos = (*old_pos + 1) % old.len();
            s = o * w + s * (1.0 - w);
            self.fade_left -= 1;
            if self.fade_left == 0 {
                self.fade_from = None;
            }
        }
        if self.offset_left > 0 {
            let total = (self.pitch / 4).max(1);
            s += self.offset * self.offset_left as f32 / (total + 1) as f32;
            self.offset_left -= 1;
        }
        s * gain
    }

    /// The last `periods` pitch periods of history, with the loop seam smoothed by
    /// overlap-adding the quarter period that precedes the segment.
    fn build_cycle(&self, periods: usize) -> Vec<f32> {
        let p = self.pitch;
        let len = (p * periods).min(self.hist_len);
        let end = self.history.len();
        let start = end - len;
        let mut cycle: Vec<f32> = self.history[start..].to_vec();
        let quarter = (p / 4).min(start);
        for j in 0..quarter {
            let w = (j + 1) as f32 / (quarter + 1) as f32;
            let idx = len - quarter + j;
            cycle[idx] = cycle[idx] * (1.0 - w) + self.history[start - quarter + j] * w;
        }
        cycle
    }

    /// Pitch period by normalised cross-correlation of the last 20 ms against the lagged history.
    fn estimate_pitch(&self) -> usize {
        let h = &self.history;
        let end = h.len();
        let a = &h[end - self.corr_len..];
        let mut best = self.pitch_min;
        let mut best_score = f32::MIN;
        for lag in self.pitch_min..=self.pitch_max {
            let b = &h[end - self.corr_len - lag..end - lag];
            let (mut corr, mut energy) = (0.0f32, 0.0f32);
            for (x, y) in a.iter().zip(b) {
                corr += x * y;
                energy += y * y;
            }
            let score = if energy > 0.0 {
                corr / energy.sqrt()
            } else {
                0.0
            };
            if score > best_score {
                best_score = score;
                best = lag;
            }
        }
        best
    }
}

fn to_i16(x: f32) -> i16 {
    x.round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f32, n: usize, offset: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (8000.0 * (2.0 * std::f32::consts::PI * freq * (i + offset) as f32 / 8000.0).sin())
                    as i16
            })
            .collect()
    }

    #[test]
    fn conceals_a_periodic_signal_by_repetition() {
        let mut plc = G711Plc::new(8000);
        for k in 0..10 {
            let mut f = tone(200.0, 160, k * 160);
            plc.good_frame(&mut f);
        }
        let mut out = Vec::new();
        plc.conceal(80, &mut out);
        // The first 10 ms continue the tone almost exactly.
        let truth = tone(200.0, 80, 1600);
        let err: f32 = out
            .iter()
            .zip(&truth)
            .map(|(a, b)| (f32::from(*a) - f32::from(*b)).abs())
            .sum::<f32>()
            / 80.0;
        assert!(err < 200.0, "mean error {err}");
        // Then it fades out to silence by 60 ms.
        out.clear();
        plc.conceal(400, &mut out);
        assert!(out[396..].iter().all(|&s| s.abs() < 120));
        out.clear();
        plc.conceal(160, &mut out);
        assert!(out.iter().all(|&s| s == 0));
    }

    #[test]
    fn estimates_pitch() {
        let mut plc = G711Plc::new(8000);
        let mut f = tone(100.0, 400, 0);
        plc.good_frame(&mut f);
        // 100 Hz at 8 kHz = 80 samples.
        assert_eq!(plc.estimate_pitch(), 80);
    }
}
