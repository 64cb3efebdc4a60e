//! Raw video frames (I420).

/// The widest frame accepted anywhere (SDP, bitstream, files).
pub const MAX_WIDTH: u32 = 4096;
/// The tallest frame accepted anywhere (SDP, bitstream, files).
pub const MAX_HEIGHT: u32 = 2304;

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
