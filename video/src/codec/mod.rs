//! Video codecs: the encoder/decoder traits and their VP8 (libvpx) and H.264 (openh264) implementations.

use thiserror::Error;

use crate::frame::{MAX_HEIGHT, MAX_WIDTH, VideoFrame};

#[cfg(not(target_os = "android"))]
pub mod h264;
#[cfg(not(target_os = "android"))]
pub mod vp8;

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

/// Lowest bitrate an encoder is configured with (lower requests are raised to it).
pub const MIN_BITRATE_BPS: u32 = 30_000;
/// Highest bitrate an encoder is configured with (higher requests are lowered to it).
pub const MAX_BITRATE_BPS: u32 = 20_000_000;
/// Highest frame rate an encoder is configured with.
pub const MAX_FPS: u32 = 120;

impl EncoderConfig {
    /// Checks the size against [`MAX_WIDTH`] x [`MAX_HEIGHT`] and clamps fps and bitrate to usable ranges.
    pub fn validated(&self) -> Result<EncoderConfig, CodecError> {
        check_dimensions(self.width, self.height)?;
        Ok(EncoderConfig {
            width: self.width,
            height: self.height,
            fps: self.fps.clamp(1, MAX_FPS),
            bitrate_bps: self.bitrate_bps.clamp(MIN_BITRATE_BPS, MAX_BITRATE_BPS),
        })
    }
}

/// Encoder threads for a frame size: two only above VGA and only with at least four CPUs.
/// On a busy two-core machine a second libvpx thread spin-waits against the first and made
/// 720p encodes 5-20x slower (measured: 36-157 ms vs 6-14 ms per frame).
#[cfg(not(target_os = "android"))]
pub(crate) fn encoder_threads(width: u32, height: u32) -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if u64::from(width) * u64::from(height) > 640 * 480 && cpus >= 4 {
        2
    } else {
        1
    }
}

/// `Ok` for a usable frame size, [`CodecError::TooLarge`] beyond the maximum, [`CodecError::Config`] for zero.
pub fn check_dimensions(width: u32, height: u32) -> Result<(), CodecError> {
    if width == 0 || height == 0 {
        return Err(CodecError::Config(format!(
            "empty frame size {width}x{height}"
        )));
    }
    if width > MAX_WIDTH || height > MAX_HEIGHT {
        return Err(CodecError::TooLarge { width, height });
    }
    Ok(())
}

/// A new encoder of `kind` set up with `config` ([`CodecError::Unavailable`] on Android).
pub fn new_encoder(
    kind: VideoCodecKind,
    config: EncoderConfig,
) -> Result<Box<dyn VideoEncoder>, CodecError> {
    #[cfg(not(target_os = "android"))]
    {
        match kind {
            VideoCodecKind::Vp8 => Ok(Box::new(vp8::Vp8Encoder::new(config)?)),
            VideoCodecKind::H264 => Ok(Box::new(h264::H264Encoder::new(config)?)),
        }
    }
    #[cfg(target_os = "android")]
    {
        let _ = config;
        Err(CodecError::Unavailable(format!(
            "{kind} is not built for Android"
        )))
    }
}

/// A new decoder of `kind` ([`CodecError::Unavailable`] on Android).
pub fn new_decoder(kind: VideoCodecKind) -> Result<Box<dyn VideoDecoder>, CodecError> {
    #[cfg(not(target_os = "android"))]
    {
        match kind {
            VideoCodecKind::Vp8 => Ok(Box::new(vp8::Vp8Decoder::new()?)),
            VideoCodecKind::H264 => Ok(Box::new(h264::H264Decoder::new()?)),
        }
    }
    #[cfg(target_os = "android")]
    {
        Err(CodecError::Unavailable(format!(
            "{kind} is not built for Android"
        )))
    }
}

/// The codecs this build can encode and decode, in preference order (`[Vp8, H264]` on desktop, `[]` on Android).
pub fn available() -> Vec<VideoCodecKind> {
    if cfg!(target_os = "android") {
        Vec::new()
    } else {
        vec![VideoCodecKind::Vp8, VideoCodecKind::H264]
    }
}
