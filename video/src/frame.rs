//! Raw video frames (I420).

use thiserror::Error;

/// The widest frame accepted anywhere (SDP, bitstream, files).
pub const MAX_WIDTH: u32 = 4096;
/// The tallest frame accepted anywhere (SDP, bitstream, files).
pub const MAX_HEIGHT: u32 = 2304;

/// Luma of black in limited (studio) range.
pub const BLACK_Y: u8 = 16;
/// Luma of white in limited (studio) range.
pub const WHITE_Y: u8 = 235;
/// Chroma of grey (no colour).
pub const NEUTRAL_UV: u8 = 128;

/// Why a frame could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Width or height beyond [`MAX_WIDTH`] x [`MAX_HEIGHT`].
    #[error("frame too large: {width}x{height} (max {MAX_WIDTH}x{MAX_HEIGHT})")]
    TooLarge {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// Width or height is zero.
    #[error("empty frame (zero width or height)")]
    Empty,
    /// A plane does not have the size the dimensions imply.
    #[error("{plane} plane has {actual} bytes, expected {expected}")]
    PlaneSize {
        /// Which plane (`"y"`, `"u"` or `"v"`).
        plane: &'static str,
        /// Bytes the dimensions require.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
}

/// Checks that `width` x `height` is a usable frame size (non-zero, within the maximum).
pub fn check_size(width: u32, height: u32) -> Result<(), FrameError> {
    if width == 0 || height == 0 {
        return Err(FrameError::Empty);
    }
    if width > MAX_WIDTH || height > MAX_HEIGHT {
        return Err(FrameError::TooLarge { width, height });
    }
    Ok(())
}

/// The byte sizes of the (Y, U/V) planes of a valid `width` x `height` I420 frame.
pub fn plane_sizes(width: u32, height: u32) -> Result<(usize, usize), FrameError> {
    check_size(width, height)?;
    let (w, h) = (width as usize, height as usize);
    Ok((w * h, w.div_ceil(2) * h.div_ceil(2)))
}

/// One I420 picture, tightly packed; chroma planes are ceil(w/2) x ceil(h/2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Luma plane, `width * height` bytes.
    pub y: Vec<u8>,
    /// Cb plane.
    pub u: Vec<u8>,
    /// Cr plane.
    pub v: Vec<u8>,
}

impl VideoFrame {
    /// A black frame (limited range: Y = 16, U = V = 128).
    pub fn black(width: u32, height: u32) -> Result<VideoFrame, FrameError> {
        Self::filled(width, height, BLACK_Y, NEUTRAL_UV, NEUTRAL_UV)
    }

    /// A frame of one colour.
    pub fn filled(width: u32, height: u32, y: u8, u: u8, v: u8) -> Result<VideoFrame, FrameError> {
        let (ys, cs) = plane_sizes(width, height)?;
        Ok(VideoFrame {
            width,
            height,
            y: vec![y; ys],
            u: vec![u; cs],
            v: vec![v; cs],
        })
    }

    /// A frame from its three planes, checking the size limits and every plane's length.
    pub fn from_planes(
        width: u32,
        height: u32,
        y: Vec<u8>,
        u: Vec<u8>,
        v: Vec<u8>,
    ) -> Result<VideoFrame, FrameError> {
        let (ys, cs) = plane_sizes(width, height)?;
        for (plane, expected, actual) in
            [("y", ys, y.len()), ("u", cs, u.len()), ("v", cs, v.len())]
        {
            if expected != actual {
                return Err(FrameError::PlaneSize {
                    plane,
                    expected,
                    actual,
                });
            }
        }
        Ok(VideoFrame {
            width,
            height,
            y,
            u,
            v,
        })
    }

    /// True when the plane lengths match the dimensions (fields are public, so this can break).
    pub fn is_consistent(&self) -> bool {
        match plane_sizes(self.width, self.height) {
            Ok((ys, cs)) => self.y.len() == ys && self.u.len() == cs && self.v.len() == cs,
            Err(_) => false,
        }
    }

    /// Width of the chroma planes: ceil(width / 2).
    pub fn chroma_width(&self) -> u32 {
        self.width.div_ceil(2)
    }

    /// Height of the chroma planes: ceil(height / 2).
    pub fn chroma_height(&self) -> u32 {
        self.height.div_ceil(2)
    }

    /// This frame resampled (bilinear) to `width` x `height`.
    pub fn scaled(&self, width: u32, height: u32) -> Result<VideoFrame, FrameError> {
        let (ys, cs) = plane_sizes(width, height)?;
        if !self.is_consistent() {
            let (expected, _) = plane_sizes(self.width, self.height)?;
            return Err(FrameError::PlaneSize {
                plane: "y",
                expected,
                actual: self.y.len(),
            });
        }
        if width == self.width && height == self.height {
            return Ok(self.clone());
        }
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        let mut out = VideoFrame {
            width,
            height,
            y: vec![0; ys],
            u: vec![0; cs],
            v: vec![0; cs],
        };
        scale_plane(&self.y, self.width, self.height, &mut out.y, width, height);
        scale_plane(
            &self.u,
            self.chroma_width(),
            self.chroma_height(),
            &mut out.u,
            cw,
            ch,
        );
        scale_plane(
            &self.v,
            self.chroma_width(),
            self.chroma_height(),
            &mut out.v,
            cw,
            ch,
        );
        Ok(out)
    }

    /// The top-left `width` x `height` part of this frame (both at most the frame's size).
    pub fn cropped(&self, width: u32, height: u32) -> Result<VideoFrame, FrameError> {
        check_size(width, height)?;
        if width > self.width || height > self.height || !self.is_consistent() {
            return Err(FrameError::TooLarge { width, height });
        }
        let crop = |src: &[u8], sw: u32, w: u32, h: u32| -> Vec<u8> {
            let mut out = Vec::with_capacity(w as usize * h as usize);
            for row in src.chunks_exact(sw as usize).take(h as usize) {
                out.extend_from_slice(&row[..w as usize]);
            }
            out
        };
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        Ok(VideoFrame {
            width,
            height,
            y: crop(&self.y, self.width, width, height),
            u: crop(&self.u, self.chroma_width(), cw, ch),
            v: crop(&self.v, self.chroma_width(), cw, ch),
        })
    }

    /// RGBA pixels (BT.601 limited range), `width * height * 4` bytes, alpha 255.
    /// An inconsistent frame (planes shorter than its size) yields black for missing samples.
    pub fn to_rgba(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.to_rgba_into(&mut out);
        out
    }

    /// Like [`VideoFrame::to_rgba`], into a reused buffer (resized to `width * height * 4`).
    pub fn to_rgba_into(&self, out: &mut Vec<u8>) {
        let (w, h) = (self.width as usize, self.height as usize);
        out.clear();
        out.resize(w * h * 4, 0);
        if w == 0 || h == 0 {
            return;
        }
        if !self.is_consistent() {
            let Ok(black) = VideoFrame::black(self.width, self.height) else {
                return;
            };
            let mut fixed = black;
            for (dst, src) in [
                (&mut fixed.y, &self.y),
                (&mut fixed.u, &self.u),
                (&mut fixed.v, &self.v),
            ] {
                let n = dst.len().min(src.len());
                dst[..n].copy_from_slice(&src[..n]);
            }
            fixed.to_rgba_into(out);
            return;
        }
        let cw = self.chroma_width() as usize;
        for (row, line) in out.chunks_exact_mut(w * 4).enumerate() {
            let ys = &self.y[row * w..row * w + w];
            let us = &self.u[(row / 2) * cw..(row / 2) * cw + cw];
            let vs = &self.v[(row / 2) * cw..(row / 2) * cw + cw];
            for (col, (px, &y)) in line.chunks_exact_mut(4).zip(ys).enumerate() {
                let y = i32::from(y) - 16;
                let u = i32::from(us[col / 2]) - 128;
                let v = i32::from(vs[col / 2]) - 128;
                // Fixed point (x256) BT.601 limited range coefficients.
                let c = 298 * y + 128;
                px[0] = clamp_u8((c + 409 * v) >> 8);
                px[1] = clamp_u8((c - 100 * u - 208 * v) >> 8);
                px[2] = clamp_u8((c + 516 * u) >> 8);
                px[3] = 255;
            }
        }
    }

    /// Mean absolute luma difference to `other` (0 = identical, 255 = opposite); `None` when the sizes differ.
    pub fn mean_abs_diff(&self, other: &VideoFrame) -> Option<f64> {
        if self.width != other.width
            || self.height != other.height
            || self.y.len() != other.y.len()
            || self.y.is_empty()
        {
            return None;
        }
        let sum: u64 = self
            .y
            .iter()
            .zip(&other.y)
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        Some(sum as f64 / self.y.len() as f64)
    }

    /// Mean luma of the rectangle `x..x+w`, `y..y+h` (clipped to the frame); `None` when empty.
    pub fn mean_luma(&self, x: u32, y: u32, w: u32, h: u32) -> Option<f64> {
        let x_end = x.saturating_add(w).min(self.width) as usize;
        let y_end = y.saturating_add(h).min(self.height) as usize;
        let (x, y) = (x as usize, y as usize);
        if x >= x_end || y >= y_end {
            return None;
        }
        let stride = self.width as usize;
        let mut sum = 0u64;
        for row in y..y_end {
            let line = self.y.get(row * stride + x..row * stride + x_end)?;
            sum += line.iter().map(|&p| u64::from(p)).sum::<u64>();
        }
        Some(sum as f64 / ((x_end - x) * (y_end - y)) as f64)
    }

    /// Fills the rectangle `x..x+w`, `y..y+h` (clipped) with the colour `[y, u, v]`.
    pub fn fill_rect(&mut self, x: u32, y: u32, w: u32, h: u32, [luma, u, v]: [u8; 3]) {
        if !self.is_consistent() {
            return;
        }
        let x_end = x.saturating_add(w).min(self.width) as usize;
        let y_end = y.saturating_add(h).min(self.height) as usize;
        let (x0, y0) = (x as usize, y as usize);
        if x0 >= x_end || y0 >= y_end {
            return;
        }
        let stride = self.width as usize;
        for row in y0..y_end {
            self.y[row * stride + x0..row * stride + x_end].fill(luma);
        }
        let cstride = self.chroma_width() as usize;
        let (cx0, cx1) = (x0 / 2, x_end.div_ceil(2));
        for row in y0 / 2..y_end.div_ceil(2) {
            self.u[row * cstride + cx0..row * cstride + cx1].fill(u);
            self.v[row * cstride + cx0..row * cstride + cx1].fill(v);
        }
    }
}

fn clamp_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// Bilinear resampling of one plane (pixel centres aligned), 8-bit fixed-point weights.
fn scale_plane(src: &[u8], sw: u32, sh: u32, dst: &mut [u8], dw: u32, dh: u32) {
    let (sw, sh, dw, dh) = (sw as usize, sh as usize, dw as usize, dh as usize);
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 || src.len() < sw * sh || dst.len() < dw * dh {
        return;
    }
    // Source coordinate of each destination column, in 1/256 pixels.
    let map = |d: usize, dn: usize, sn: usize| -> (usize, usize, u32) {
        let pos = ((2 * d + 1) * sn * 256 / (2 * dn)).saturating_sub(128);
        let i0 = (pos >> 8).min(sn - 1);
        let i1 = (i0 + 1).min(sn - 1);
        (i0, i1, (pos & 0xff) as u32)
    };
    let cols: Vec<(usize, usize, u32)> = (0..dw).map(|x| map(x, dw, sw)).collect();
    for (y, out_row) in dst.chunks_exact_mut(dw).take(dh).enumerate() {
        let (y0, y1, fy) = map(y, dh, sh);
        let r0 = &src[y0 * sw..y0 * sw + sw];
        let r1 = &src[y1 * sw..y1 * sw + sw];
        for (o, &(x0, x1, fx)) in out_row.iter_mut().zip(&cols) {
            let top = u32::from(r0[x0]) * (256 - fx) + u32::from(r0[x1]) * fx;
            let bottom = u32::from(r1[x0]) * (256 - fx) + u32::from(r1[x1]) * fx;
            *o = ((top * (256 - fy) + bottom * fy + (1 << 15)) >> 16) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn black_and_sizes() {
        let f = VideoFrame::black(5, 3).unwrap();
        assert_eq!((f.y.len(), f.u.len(), f.v.len()), (15, 6, 6));
        assert_eq!((f.chroma_width(), f.chroma_height()), (3, 2));
        assert_eq!(VideoFrame::black(0, 4), Err(FrameError::Empty));
        assert!(matches!(
            VideoFrame::black(MAX_WIDTH + 1, 16),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            VideoFrame::black(16, MAX_HEIGHT + 1),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn from_planes_checks_every_plane() {
        assert!(VideoFrame::from_planes(4, 4, vec![0; 16], vec![0; 4], vec![0; 4]).is_ok());
        assert_eq!(
            VideoFrame::from_planes(4, 4, vec![0; 15], vec![0; 4], vec![0; 4]),
            Err(FrameError::PlaneSize {
                plane: "y",
                expected: 16,
                actual: 15
            })
        );
        assert!(matches!(
            VideoFrame::from_planes(4, 4, vec![0; 16], vec![0; 5], vec![0; 4]),
            Err(FrameError::PlaneSize { plane: "u", .. })
        ));
        assert!(matches!(
            VideoFrame::from_planes(4, 4, vec![0; 16], vec![0; 4], vec![0; 3]),
            Err(FrameError::PlaneSize { plane: "v", .. })
        ));
    }

    #[test]
    fn scaling_keeps_flat_colour_and_gradients() {
        let f = VideoFrame::filled(64, 48, 100, 90, 200).unwrap();
        for (w, h) in [(32, 24), (33, 17), (128, 96), (1, 1)] {
            let s = f.scaled(w, h).unwrap();
            assert!(s.is_consistent());
            assert!(s.y.iter().all(|&p| p == 100));
            assert!(s.u.iter().all(|&p| p == 90));
            assert!(s.v.iter().all(|&p| p == 200));
        }
        // A horizontal ramp stays monotonic.
        let mut g = VideoFrame::black(256, 2).unwrap();
        for (i, p) in g.y.iter_mut().enumerate() {
            *p = (i % 256) as u8;
        }
        let s = g.scaled(100, 2).unwrap();
        assert!(s.y[..100].windows(2).all(|w| w[0] <= w[1]));
        assert!(s.y[0] < 5 && s.y[99] > 250);
    }

    #[test]
    fn rgba_of_limited_range_extremes() {
        let black = VideoFrame::black(2, 2).unwrap().to_rgba();
        assert_eq!(&black[..4], &[0, 0, 0, 255]);
        let white = VideoFrame::filled(2, 2, 235, 128, 128).unwrap().to_rgba();
        assert_eq!(&white[..4], &[255, 255, 255, 255]);
        // Pure red in BT.601 limited range: Y=81 U=90 V=240.
        let red = VideoFrame::filled(2, 2, 81, 90, 240).unwrap().to_rgba();
        assert!(red[0] > 250 && red[1] < 5 && red[2] < 5, "{:?}", &red[..4]);
        assert_eq!(white.len(), 16);
        // Missing samples render black instead of panicking.
        let mut short = VideoFrame::filled(4, 2, 235, 128, 128).unwrap();
        short.y.truncate(3);
        short.v.clear();
        let rgba = short.to_rgba();
        assert_eq!(rgba.len(), 32);
        assert_eq!(&rgba[..3], &[255, 255, 255]);
        assert!(rgba[12..15].iter().all(|&c| c < 20), "{:?}", &rgba[12..16]);
    }

    #[test]
    fn mean_abs_diff_and_rects() {
        let a = VideoFrame::black(8, 8).unwrap();
        let mut b = a.clone();
        assert_eq!(a.mean_abs_diff(&b), Some(0.0));
        b.fill_rect(0, 0, 4, 8, [16 + 64, 128, 128]);
        assert_eq!(a.mean_abs_diff(&b), Some(32.0));
        assert_eq!(b.mean_luma(0, 0, 4, 8), Some(80.0));
        assert_eq!(b.mean_luma(4, 0, 100, 100), Some(16.0));
        assert_eq!(b.mean_luma(8, 0, 1, 1), None);
        assert_eq!(a.mean_abs_diff(&VideoFrame::black(8, 4).unwrap()), None);
        let c = b.cropped(3, 5).unwrap();
        assert!(c.is_consistent());
        assert_eq!(c.y[0], 80);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

        #[test]
        fn resampling_any_size_is_consistent(
            w in 1u32..200, h in 1u32..200, w2 in 1u32..200, h2 in 1u32..200, seed: u8,
        ) {
            let mut f = VideoFrame::filled(w, h, seed, seed.wrapping_add(1), seed.wrapping_add(2)).unwrap();
            for (i, p) in f.y.iter_mut().enumerate() {
                *p = (i as u8).wrapping_mul(seed);
            }
            let s = f.scaled(w2, h2).unwrap();
            proptest::prop_assert!(s.is_consistent());
            proptest::prop_assert_eq!((s.width, s.height), (w2, h2));
            let c = f.cropped(w.div_ceil(2), h.div_ceil(2)).unwrap();
            proptest::prop_assert!(c.is_consistent());
            proptest::prop_assert_eq!(f.to_rgba().len(), (w * h * 4) as usize);
            proptest::prop_assert!(f.cropped(w + 1, h).is_err());
        }
    }
}
