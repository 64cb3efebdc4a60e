//! ITU-T G.722 sub-band ADPCM at 64 kbit/s (mode 1): 16 kHz audio, a 24-tap QMF splits it
//! into a 0-4 kHz band coded with 6 bits and a 4-8 kHz band coded with 2 bits per 8 kHz
//! sample, one byte per sample pair. RTP uses an 8000 Hz clock for it (RFC 3551 §4.5.2).
//!
//! The block names in comments (SUBTRA, QUANTL, INVQAL, LOGSCL, SCALEL, UPPOL1/2, UPZERO,
//! FILTEP, FILTEZ, PREDIC, ...) are those of the Recommendation; the arithmetic follows its
//! 16-bit fixed-point definitions so the bit stream interoperates with other implementations.

use super::plc::G711Plc;
use super::{AudioDecoder, AudioEncoder, CodecError};

/// QMF coefficients h(0)..h(23) (G.722 Table 11).
const QMF: [i32; 24] = [
    3, -11, -11, 53, 12, -156, 32, 362, -210, -805, 951, 3876, 3876, 951, -805, -210, 362, 32,
    -156, 12, 53, -11, -11, 3,
];

/// Lower-band quantiser decision levels (Q6, Table 6), magnitudes 1..=29 used.
const Q6: [i32; 31] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919, 0,
];

/// Code for a negative / positive lower-band error in decision interval `i` (Table 6).
const ILN: [u8; 31] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
    10, 9, 8, 7, 6, 5, 4,
];
const ILP: [u8; 31] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39,
    38, 37, 36, 35, 34, 33, 32,
];

/// 6-bit lower-band inverse quantiser outputs (Table 7, QQ6 with sign), indexed by code.
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];

/// 4-bit lower-band inverse quantiser outputs (QQ4 with sign) for the predictor.
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];

/// 2-bit higher-band inverse quantiser outputs (QQ2 with sign).
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];

/// Higher-band codes for a negative / positive error (mih = 1 or 2).
const IHN: [u8; 3] = [0, 1, 0];
const IHP: [u8; 3] = [0, 3, 2];

/// Lower-band log scale factor multipliers (WL, Table 8) and the 4-bit code to magnitude map.
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
const RL42: [usize; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];

/// Higher-band log scale factor multipliers (WH) and the 2-bit code map.
const WH: [i32; 3] = [0, -214, 798];
const RH2: [usize; 4] = [2, 1, 2, 1];

/// Inverse log table for the scale factors (ILB, Table 10).
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];

fn sat16(x: i32) -> i32 {
    x.clamp(-32768, 32767)
}

fn sat15(x: i32) -> i32 {
    x.clamp(-16384, 16383)
}

fn signs_differ(a: i32, b: i32) -> bool {
    (a < 0) != (b < 0)
}

/// Scale factor from the log scale factor (SCALEL / SCALEH): `ILB[...]` shifted by
/// `offset - nb/2048`, times 4.
fn scale(nb: i32, offset: i32) -> i32 {
    let mantissa = ILB[((nb >> 6) & 31) as usize];
    let shift = offset - (nb >> 11);
    let v = if shift < 0 {
        mantissa << -shift
    } else {
        mantissa >> shift
    };
    v << 2
}

/// Adaptive predictor and scale-factor state of one sub-band.
#[derive(Debug, Clone, Default)]
struct Band {
    /// Predicted signal (PREDIC).
    s: i32,
    /// Zero-section output (FILTEZ).
    sz: i32,
    /// Previous reconstructed signal.
    r1: i32,
    /// Pole coefficients a1, a2.
    a1: i32,
    a2: i32,
    /// Previous partially reconstructed signals p(n-1), p(n-2).
    p1: i32,
    p2: i32,
    /// Zero coefficients b1..b6.
    b: [i32; 6],
    /// Quantised differences d(n)..d(n-6).
    d: [i32; 7],
    /// Log scale factor.
    nb: i32,
    /// Scale factor.
    det: i32,
}

impl Band {
    fn new(det: i32) -> Self {
        Band {
            det,
            ..Band::default()
        }
    }

    /// LOGSCL / LOGSCH followed by SCALEL / SCALEH.
    fn adapt_scale(&mut self, w: i32, max: i32, offset: i32) {
        self.nb = (((self.nb * 127) >> 7) + w).clamp(0, max);
        self.det = scale(self.nb, offset);
    }

    /// RECONS, PARREC, UPPOL2, UPPOL1, FILTEP, UPZERO, DELAYA, FILTEZ, PREDIC for the
    /// quantised difference `dq`.
    fn update(&mut self, dq: i32) {
        let r = sat16(self.s + dq);
        let p = sat16(self.sz + dq);

        // UPPOL2: second pole coefficient.
        let wd1 = sat16(self.a1 << 2);
        let wd2 = if signs_differ(p, self.p1) { wd1 } else { -wd1 }.min(32767);
        let a2 = ((if signs_differ(p, self.p2) { -128 } else { 128 })
            + (wd2 >> 7)
            + ((self.a2 * 32512) >> 15))
            .clamp(-12288, 12288);

        // UPPOL1: first pole coefficient, limited by the second.
        let step = if signs_differ(p, self.p1) { -192 } else { 192 };
        let mut a1 = sat16(step + ((self.a1 * 32640) >> 15));
        let limit = sat16(15360 - a2);
        a1 = a1.clamp(-limit, limit);

        // FILTEP: pole section output.
        let sp = sat16(((a1 * sat16(r + r)) >> 15) + ((a2 * sat16(self.r1 + self.r1)) >> 15));
        self.r1 = r;
        self.a1 = a1;
        self.a2 = a2;
        self.p2 = self.p1;
        self.p1 = p;

        // UPZERO, DELAYA, FILTEZ: zero section.
        let g = if dq == 0 { 0 } else { 128 };
        self.d[0] = dq;
        let mut sz = 0i32;
        for i in (0..6).rev() {
            let sign_step = if signs_differ(self.d[i + 1], dq) {
                -g
            } else {
                g
            };
            self.b[i] = sat16(sign_step + ((self.b[i] * 32640) >> 15));
            sz += (self.b[i] * sat16(self.d[i] + self.d[i])) >> 15;
            self.d[i + 1] = self.d[i];
        }
        self.sz = sat16(sz);

        // PREDIC.
        self.s = sat16(sp + self.sz);
    }
}

/// Lower band: QUANTL for error `el` with scale factor `det` -> 6-bit code.
fn quantize_low(el: i32, det: i32) -> u8 {
    let magnitude = if el >= 0 { el } else { !el };
    let mut i = 1;
    while i < 30 && magnitude >= (Q6[i] * det) >> 12 {
        i += 1;
    }
    if el < 0 { ILN[i] } else { ILP[i] }
}

/// Lower-band decoder step shared by the encoder and decoder: INVQAL, LOGSCL, SCALEL and the
/// predictor update for 6-bit code `ilow`.
fn low_band_step(band: &mut Band, ilow: u8) {
    let ril = usize::from(ilow >> 2);
    let dlow = (band.det * QM4[ril]) >> 15;
    band.adapt_scale(WL[RL42[ril]], 18432, 8);
    band.update(dlow);
}

/// Higher-band step: INVQAH, LOGSCH, SCALEH and the predictor update; returns the quantised
/// difference.
fn high_band_step(band: &mut Band, ihigh: u8) -> i32 {
    let ih = usize::from(ihigh & 3);
    let dhigh = (band.det * QM2[ih]) >> 15;
    band.adapt_scale(WH[RH2[ih]], 22528, 10);
    band.update(dhigh);
    dhigh
}

/// G.722 encoder (64 kbit/s): 16 kHz PCM in, one byte per two samples out.
#[derive(Debug, Clone)]
pub struct G722Encoder {
    /// The last 24 input samples, oldest first.
    history: [i32; 24],
    low: Band,
    high: Band,
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Encoder {
    /// Creates an encoder in the reset state.
    pub fn new() -> Self {
        G722Encoder {
            history: [0; 24],
            low: Band::new(32),
            high: Band::new(8),
        }
    }

    fn encode_pair(&mut self, first: i16, second: i16) -> u8 {
        // Transmit QMF.
        self.history.copy_within(2.., 0);
        self.history[22] = i32::from(first);
        self.history[23] = i32::from(second);
        // xA = sum h(2i) x(j-2i), xB = sum h(2i+1) x(j-2i-1), x(j) the newest sample.
        let (mut xa, mut xb) = (0i32, 0i32);
        for i in 0..12 {
            xa += QMF[2 * i] * self.history[23 - 2 * i];
            xb += QMF[2 * i + 1] * self.history[22 - 2 * i];
        }
        // The QMF gain is 8192 (two filters of 4096); one more bit gives 15-bit band signals.
        let xlow = sat16((xa + xb) >> 14);
        let xhigh = sat16((xa - xb) >> 14);

        // Lower band: SUBTRA, QUANTL, then the shared adaptation.
        let el = sat16(xlow - self.low.s);
        let ilow = quantize_low(el, self.low.det);
        low_band_step(&mut self.low, ilow);

        // Higher band: SUBTRA, QUANTH, then the shared adaptation.
        let eh = sat16(xhigh - self.high.s);
        let magnitude = if eh >= 0 { eh } else { !eh };
        let mih = if magnitude >= (564 * self.high.det) >> 12 {
            2
        } else {
            1
        };
        let ihigh = if eh < 0 { IHN[mih] } else { IHP[mih] };
        high_band_step(&mut self.high, ihigh);

        (ihigh << 6) | ilow
    }
}

impl AudioEncoder for G722Encoder {
    fn pcm_rate(&self) -> u32 {
        16_000
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.clear();
        if !pcm.len().is_multiple_of(2) {
            return Err(CodecError::FrameLength {
                got: pcm.len(),
                expected: pcm.len() + 1,
            });
        }
        out.reserve(pcm.len() / 2);
        for pair in pcm.chunks_exact(2) {
            let code = self.encode_pair(pair[0], pair[1]);
            out.push(code);
        }
        Ok(())
    }
}

/// G.722 decoder (64 kbit/s) with pitch-repetition concealment at 16 kHz.
#[derive(Debug, Clone)]
pub struct G722Decoder {
    /// Receive QMF delay lines of the difference and sum signals, oldest first.
    xd: [i32; 12],
    xs: [i32; 12],
    low: Band,
    high: Band,
    plc: G711Plc,
    scratch: Vec<i16>,
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Decoder {
    /// Creates a decoder in the reset state.
    pub fn new() -> Self {
        G722Decoder {
            xd: [0; 12],
            xs: [0; 12],
            low: Band::new(32),
            high: Band::new(8),
            plc: G711Plc::new(16_000),
            scratch: Vec::new(),
        }
    }

    fn decode_byte(&mut self, code: u8) -> [i16; 2] {
        let ilow = code & 0x3F;
        let ihigh = code >> 6;

        // Lower band output: INVQBL with the 6-bit table, RECONS, LIMIT.
        let rlow = sat15(self.low.s + ((self.low.det * QM6[usize::from(ilow)]) >> 15));
        low_band_step(&mut self.low, ilow);

        // Higher band output: INVQAH, RECONS, LIMIT (predicted signal before the update).
        let sh = self.high.s;
        let dhigh = high_band_step(&mut self.high, ihigh);
        let rhigh = sat15(dhigh + sh);

        // Receive QMF: out1 = sum h(2i) xd(j-i), out2 = sum h(2i+1) xs(j-i).
        self.xd.copy_within(1.., 0);
        self.xs.copy_within(1.., 0);
        self.xd[11] = sat16(rlow - rhigh);
        self.xs[11] = sat16(rlow + rhigh);
        let (mut o1, mut o2) = (0i32, 0i32);
        for i in 0..12 {
            o1 += QMF[2 * i] * self.xd[11 - i];
            o2 += QMF[2 * i + 1] * self.xs[11 - i];
        }
        // QMF gain 4096, less one bit back to 16-bit PCM.
        [sat16(o1 >> 11) as i16, sat16(o2 >> 11) as i16]
    }
}

impl AudioDecoder for G722Decoder {
    fn pcm_rate(&self) -> u32 {
        16_000
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        self.scratch.clear();
        for &code in payload {
            let pair = self.decode_byte(code);
            self.scratch.extend_from_slice(&pair);
        }
        self.plc.good_frame(&mut self.scratch);
        out.extend_from_slice(&self.scratch);
        Ok(())
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        self.plc.conceal(samples, out);
    }

    fn decode_fec(&mut self, _next_payload: &[u8], _samples: usize, _out: &mut Vec<i16>) -> bool {
        false
    }

    fn packet_samples(&self, payload: &[u8]) -> Option<usize> {
        Some(payload.len() * 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_encodes_to_the_idle_pattern() {
        // Zero error: lower band interval 4 (positive) -> 58, higher band mih 1 -> 3.
        let mut enc = G722Encoder::new();
        let mut out = Vec::new();
        enc.encode(&[0; 320], &mut out).unwrap();
        assert_eq!(out.len(), 160);
        assert_eq!(out[0], 0xFA);
        assert!(enc.encode(&[0; 3], &mut out).is_err());
    }

    #[test]
    fn qmf_filters_have_unit_gain() {
        let even: i32 = QMF.iter().step_by(2).sum();
        let odd: i32 = QMF.iter().skip(1).step_by(2).sum();
        assert_eq!((even, odd), (4096, 4096));
    }
}
