//! Video codecs: the encoder/decoder traits and their VP8 (libvpx) and H.264 (openh264) implementations.

use thiserror::Error;

use crate::frame::VideoFrame;

/// A video codec Tandem speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VideoCodecKind {
    /// VP8 (RFC 6386, RTP payload RFC 7741).
    Vp8,
    /// H.264 constrained baseline (RTP payload RFC 6184, packetization-mode 1).
    H264,
}

impl VideoCodecKind {
    /// The RTP clock rate of every video codec.
    pub const CLOCK_RATE: u32 = 90_000;

    /// The SDP encoding name (`VP8`, `H264`).
    pub fn name(self) -> &'static str {
        match self {
            VideoCodecKind::Vp8 => "VP8",
            VideoCodecKind::H264 => "H264",
        }
    }

    /// The codec of an SDP encoding name, case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("VP8") {
            Some(VideoCodecKind::Vp8)
        } else if name.eq_ignore_ascii_case("H264") {
            Some(VideoCodecKind::H264)
        } else {
            None
        }
    }
}

impl std::fmt::Display for VideoCodecKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How an encoder is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second the source delivers.
    pub fps: u32,
    /// Target bitrate in bits per second.
    pub bitrate_bps: u32,
}

/// One encoded frame: a VP8 frame, or an H.264 access unit in Annex-B form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedFrame {
    /// The bitstream (H.264: start codes, SPS and PPS before every IDR).
    pub data: Vec<u8>,
    /// True for a keyframe (VP8 key frame, H.264 IDR).
    pub keyframe: bool,
}

/// Why a codec could not be created or failed on a frame.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The codec is not built into this binary (e.g. on Android).
    #[error("video codec unavailable: {0}")]
    Unavailable(String),
    /// The configuration is unusable.
    #[error("video codec configuration: {0}")]
    Config(String),
    /// The encoder failed.
    #[error("video encoding failed: {0}")]
    Encode(String),
    /// The bitstream could not be decoded.
    #[error("video decoding failed: {0}")]
    Decode(String),
    /// A frame size beyond [`crate::frame::MAX_WIDTH`] x [`crate::frame::MAX_HEIGHT`].
    #[error("video frame too large: {width}x{height}")]
    TooLarge {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
}

/// A video encoder.
pub trait VideoEncoder: Send {
    /// The codec it produces.
    fn kind(&self) -> VideoCodecKind;
    /// Encodes one frame; a frame of another size than configured re-initialises the encoder
    /// (the next output is a keyframe). `Ok(None)` when the encoder dropped the frame.
    fn encode(
        &mut self,
        frame: &VideoFrame,
        force_keyframe: bool,
    ) -> Result<Option<EncodedFrame>, CodecError>;
    /// Changes the target bitrate.
    fn set_bitrate(&mut self, bps: u32) -> Result<(), CodecError>;
    /// The current configuration.
    fn config(&self) -> &EncoderConfig;
}

/// A video decoder.
pub trait VideoDecoder: Send {
    /// The codec it reads.
    fn kind(&self) -> VideoCodecKind;
    /// Decodes one complete frame (VP8 frame, H.264 access unit in Annex-B); `Ok(None)` when
    /// no picture came out. Never panics on garbage; sizes beyond the maximum are
    /// [`CodecError::TooLarge`].
    fn decode(&mut self, data: &[u8]) -> Result<Option<VideoFrame>, CodecError>;
}
