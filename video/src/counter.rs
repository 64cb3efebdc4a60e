//! A frame number stamped into the picture so that it survives lossy coding at low bitrates.
//!
//! The top 40 % of the frame carries 32 big black/white luma blocks (8 columns x 4 rows, each
//! block 1/8 of the width and 1/10 of the height, so at least 20x12 px at 160x120): 24 bits of
//! counter and 8 check bits (CRC-8 of the counter, xor 0xA5, so a black or white frame does not
//! read as a number). A reader averages the centre of each block and refuses blocks that are
//! neither clearly black nor clearly white. Below the blocks the number is drawn in digits for
//! humans looking at a recording. Frames smaller than [`MIN_WIDTH`] x [`MIN_HEIGHT`] carry no stamp.

use crate::frame::{BLACK_Y, NEUTRAL_UV, VideoFrame, WHITE_Y};

/// The smallest frame width that carries a counter.
pub const MIN_WIDTH: u32 = 64;
/// The smallest frame height that carries a counter.
pub const MIN_HEIGHT: u32 = 48;
/// Counters are taken modulo this (24 bits).
pub const COUNTER_MODULUS: u32 = 1 << 24;

const COLS: u32 = 8;
const ROWS: u32 = 4;
/// Block averages below this are a 0 bit.
const ZERO_BELOW: f64 = 96.0;
/// Block averages above this are a 1 bit.
const ONE_ABOVE: f64 = 150.0;

/// CRC-8 (polynomial 0x07) of the counter's three bytes, xor 0xA5.
fn check_byte(n: u32) -> u8 {
    let mut crc = 0u8;
    for byte in [(n >> 16) as u8, (n >> 8) as u8, n as u8] {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc ^ 0xA5
}

/// The pixel rectangle (x, y, w, h) of bit block `i` in a `width` x `height` frame.
fn block_rect(width: u32, height: u32, i: u32) -> (u32, u32, u32, u32) {
    let bw = width / COLS;
    let bh = height * 2 / 5 / ROWS;
    let (col, row) = (i % COLS, i / COLS);
    (col * bw, row * bh, bw, bh)
}

/// Stamps `n` (modulo 2^24) into `frame` as luma blocks plus digits; no-op for frames below
/// [`MIN_WIDTH`] x [`MIN_HEIGHT`] or with inconsistent planes.
pub fn stamp_counter(frame: &mut VideoFrame, n: u32) {
    if frame.width < MIN_WIDTH || frame.height < MIN_HEIGHT || !frame.is_consistent() {
        return;
    }
    let n = n % COUNTER_MODULUS;
    let word = n | u32::from(check_byte(n)) << 24;
    let (w, h) = (frame.width, frame.height);
    for i in 0..COLS * ROWS {
        let (x, y, bw, bh) = block_rect(w, h, i);
        let luma = if word >> i & 1 == 1 { WHITE_Y } else { BLACK_Y };
        frame.fill_rect(x, y, bw, bh, [luma, NEUTRAL_UV, NEUTRAL_UV]);
    }
    draw_digits(frame, n);
}

/// Reads the counter stamped by [`stamp_counter`]; `None` when a block is unclear, the check
/// bits do not match or the frame is too small.
pub fn read_counter(frame: &VideoFrame) -> Option<u32> {
    if frame.width < MIN_WIDTH || frame.height < MIN_HEIGHT || !frame.is_consistent() {
        return None;
    }
    let mut word = 0u32;
    for i in 0..COLS * ROWS {
        let (x, y, bw, bh) = block_rect(frame.width, frame.height, i);
        // The centre half of the block in each direction: edges blur under coding.
        let mean = frame.mean_luma(x + bw / 4, y + bh / 4, (bw / 2).max(1), (bh / 2).max(1))?;
        if mean > ONE_ABOVE {
            word |= 1 << i;
        } else if mean >= ZERO_BELOW {
            return None;
        }
    }
    let n = word & (COUNTER_MODULUS - 1);
    ((word >> 24) as u8 == check_byte(n)).then_some(n)
}

/// 3x5 bitmaps of the digits 0-9, one row per 3 low bits (top row first).
const FONT: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b010, 0b010, 0b010],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

/// Draws `n` in white digits on a black box just below the bit blocks.
fn draw_digits(frame: &mut VideoFrame, n: u32) {
    let (w, h) = (frame.width, frame.height);
    let top = (h * 2 / 5 / ROWS) * ROWS;
    let text = n.to_string();
    // 8 digits of 4 cells (3 + gap) plus margins must fit the width; 5 rows + margins the rest.
    let scale = ((h - top) / 15).min(w / 36).max(1);
    let box_w = (text.len() as u32 * 4 + 1) * scale;
    let box_h = 7 * scale;
    if top + box_h > h || box_w > w {
        return;
    }
    let black = [BLACK_Y, NEUTRAL_UV, NEUTRAL_UV];
    let white = [WHITE_Y, NEUTRAL_UV, NEUTRAL_UV];
    frame.fill_rect(0, top, box_w, box_h, black);
    for (k, ch) in text.bytes().enumerate() {
        let glyph = FONT[usize::from(ch - b'0')];
        let x0 = (k as u32 * 4 + 1) * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..3u32 {
                if bits >> (2 - col) & 1 == 1 {
                    let (x, y) = (x0 + col * scale, top + (row as u32 + 1) * scale);
                    frame.fill_rect(x, y, scale, scale, white);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_and_read_exactly() {
        for (w, h) in [(64, 48), (160, 120), (321, 241), (1280, 720)] {
            let mut f = VideoFrame::black(w, h).unwrap();
            for n in [
                0,
                1,
                2,
                255,
                256,
                65535,
                65536,
                0xAB_CDEF,
                COUNTER_MODULUS - 1,
            ] {
                stamp_counter(&mut f, n);
                assert_eq!(read_counter(&f), Some(n), "{w}x{h} n={n}");
            }
            stamp_counter(&mut f, COUNTER_MODULUS + 7);
            assert_eq!(read_counter(&f), Some(7));
        }
    }

    #[test]
    fn plain_frames_do_not_read() {
        assert_eq!(read_counter(&VideoFrame::black(160, 120).unwrap()), None);
        assert_eq!(
            read_counter(&VideoFrame::filled(160, 120, WHITE_Y, 128, 128).unwrap()),
            None
        );
        assert_eq!(
            read_counter(&VideoFrame::filled(160, 120, 128, 128, 128).unwrap()),
            None
        );
        let mut small = VideoFrame::black(32, 32).unwrap();
        stamp_counter(&mut small, 5);
        assert_eq!(small, VideoFrame::black(32, 32).unwrap());
        assert_eq!(read_counter(&small), None);
    }

    #[test]
    fn a_flipped_block_is_detected() {
        let mut f = VideoFrame::black(160, 120).unwrap();
        stamp_counter(&mut f, 1234);
        // Flip one counter bit block: the check must catch it.
        let (x, y, bw, bh) = block_rect(160, 120, 3);
        let now = f.mean_luma(x, y, bw, bh).unwrap();
        let flipped = if now > 128.0 { BLACK_Y } else { WHITE_Y };
        f.fill_rect(x, y, bw, bh, [flipped, 128, 128]);
        assert_eq!(read_counter(&f), None);
    }

    #[test]
    fn survives_noise_and_scaling() {
        let mut f = VideoFrame::black(640, 480).unwrap();
        stamp_counter(&mut f, 424_242);
        let mut x = 12345u32;
        for p in f.y.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let noise = ((x >> 16) % 41) as i32 - 20;
            *p = (i32::from(*p) + noise).clamp(0, 255) as u8;
        }
        assert_eq!(read_counter(&f), Some(424_242));
        let small = f.scaled(320, 240).unwrap();
        assert_eq!(read_counter(&small), Some(424_242));
    }
}
