//! G.711 µ-law and A-law (ITU-T G.711), with Appendix I style concealment on the decoder.

use super::plc::G711Plc;
use super::{AudioDecoder, AudioEncoder, CodecError};

const ULAW_BIAS: i32 = 0x84;
/// Largest biased 14-bit µ-law magnitude.
const ULAW_MAX: i32 = 0x1FFF;
const ULAW_SEG_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const ALAW_SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

fn segment(value: i32, table: &[i32; 8]) -> usize {
    table.iter().position(|&end| value <= end).unwrap_or(8)
}

/// Encodes one 16-bit linear sample to a G.711 µ-law byte, as the ITU-T G.191 reference
/// (`ulaw_compress`): 14-bit magnitude, negative samples by one's complement, bias 33.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let s = i32::from(sample);
    let (magnitude, mask) = if s < 0 {
        ((!s) >> 2, 0x7F)
    } else {
        (s >> 2, 0xFF)
    };
    let value = (magnitude + (ULAW_BIAS >> 2)).min(ULAW_MAX);
    let seg = segment(value, &ULAW_SEG_END).min(7);
    // seg < 8 and the shifted value is masked to 4 bits, so the casts cannot truncate.
    let code = ((seg as u8) << 4) | (((value >> (seg + 1)) & 0x0F) as u8);
    code ^ mask
}

/// Decodes one G.711 µ-law byte to a 16-bit linear sample.
pub const fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let mut t = (((u & 0x0F) as i32) << 3) + ULAW_BIAS;
    t <<= (u & 0x70) >> 4;
    if u & 0x80 != 0 {
        (ULAW_BIAS - t) as i16
    } else {
        (t - ULAW_BIAS) as i16
    }
}

/// Encodes one 16-bit linear sample to a G.711 A-law byte, as the ITU-T G.191 reference
/// (`alaw_compress`): 13-bit value, negative samples by one's complement.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut value = i32::from(sample) >> 3;
    let mask: u8 = if value >= 0 {
        0xD5
    } else {
        value = -value - 1;
        0x55
    };
    let seg = segment(value, &ALAW_SEG_END);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let mantissa = if seg < 2 {
        (value >> 1) & 0x0F
    } else {
        (value >> seg) & 0x0F
    };
    (((seg as u8) << 4) | mantissa as u8) ^ mask
}

/// Decodes one G.711 A-law byte to a 16-bit linear sample.
pub const fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

const fn build_table(alaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if alaw {
            alaw_to_linear(i as u8)
        } else {
            ulaw_to_linear(i as u8)
        };
        i += 1;
    }
    table
}

static ULAW_TABLE: [i16; 256] = build_table(false);
static ALAW_TABLE: [i16; 256] = build_table(true);

/// Which G.711 companding law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G711Law {
    /// µ-law (PCMU).
    MuLaw,
    /// A-law (PCMA).
    ALaw,
}

impl G711Law {
    fn encode(self, sample: i16) -> u8 {
        match self {
            G711Law::MuLaw => linear_to_ulaw(sample),
            G711Law::ALaw => linear_to_alaw(sample),
        }
    }

    fn table(self) -> &'static [i16; 256] {
        match self {
            G711Law::MuLaw => &ULAW_TABLE,
            G711Law::ALaw => &ALAW_TABLE,
        }
    }
}

/// G.711 encoder (8 kHz, one byte per sample).
#[derive(Debug)]
pub struct G711Encoder {
    law: G711Law,
}

impl G711Encoder {
    /// Creates an encoder for the given law.
    pub fn new(law: G711Law) -> Self {
        G711Encoder { law }
    }
}

impl AudioEncoder for G711Encoder {
    fn pcm_rate(&self) -> u32 {
        8000
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.clear();
        out.extend(pcm.iter().map(|&s| self.law.encode(s)));
        Ok(())
    }
}

/// G.711 decoder with G.711 Appendix I style packet-loss concealment.
#[derive(Debug)]
pub struct G711Decoder {
    law: G711Law,
    plc: G711Plc,
    scratch: Vec<i16>,
}

impl G711Decoder {
    /// Creates a decoder for the given law.
    pub fn new(law: G711Law) -> Self {
        G711Decoder {
            law,
            plc: G711Plc::new(8000),
            scratch: Vec::new(),
        }
    }
}

impl AudioDecoder for G711Decoder {
    fn pcm_rate(&self) -> u32 {
        8000
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let table = self.law.table();
        self.scratch.clear();
        self.scratch
            .extend(payload.iter().map(|&b| table[usize::from(b)]));
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
        Some(payload.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_values() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        // G.191: negative samples are one's-complemented, so -1..=-4 are "negative zero".
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_ulaw(-4), 0x7F);
        assert_eq!(linear_to_ulaw(-5), 0x7E);
        assert_eq!(linear_to_ulaw(3), 0xFF);
        assert_eq!(linear_to_ulaw(4), 0xFE);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0xF0), 120);
        assert_eq!(ulaw_to_linear(0xEF), 132);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn every_code_round_trips() {
        for code in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(code)), code, "alaw {code:#x}");
            let back = linear_to_ulaw(ulaw_to_linear(code));
            // 0x7F is µ-law's negative zero: it decodes to 0, which encodes as 0xFF.
            let expect = if code == 0x7F { 0xFF } else { code };
            assert_eq!(back, expect, "ulaw {code:#x}");
        }
    }

    #[test]
    fn quantisation_error_is_bounded() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ulaw_to_linear(linear_to_ulaw(s));
            let a = alaw_to_linear(linear_to_alaw(s));
            let mag = i32::from(s).abs();
            // Half a quantisation step is at most 1/32 of the magnitude (plus the smallest
            // step); beyond the largest code the error is the clipping distance.
            let bound = if mag < 31_000 { mag / 16 + 16 } else { 700 };
            assert!(
                (i32::from(u) - i32::from(s)).abs() <= bound,
                "ulaw {s} -> {u}"
            );
            assert!(
                (i32::from(a) - i32::from(s)).abs() <= bound,
                "alaw {s} -> {a}"
            );
        }
    }

    #[test]
    fn monotonic_decode() {
        // Positive µ-law codes run 0xFF (smallest) down to 0x80 (largest).
        for c in 0x80..0xFFu8 {
            assert!(ulaw_to_linear(c) > ulaw_to_linear(c + 1));
        }
    }
}
