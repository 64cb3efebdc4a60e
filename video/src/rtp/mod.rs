//! RTP payload formats for video: VP8 (RFC 7741, [`vp8`]) and H.264 packetization-mode 1
//! (RFC 6184, [`h264`]).
//!
//! A [`Packetizer`] turns one [`EncodedFrame`] into RTP payloads (the caller adds the RTP
//! headers and sets the marker bit on the last one); [`depayload_frame`] turns the payloads of
//! one RTP timestamp back into a frame. Nothing here panics on hostile payloads: every length
//! is checked and the output is bounded by [`MAX_FRAME_BYTES`].

pub mod h264;
pub mod vp8;

use thiserror::Error;

use crate::codec::{EncodedFrame, VideoCodecKind};

/// Largest frame (packetized or reassembled) this crate handles, in bytes.
pub const MAX_FRAME_BYTES: usize = 4 << 20;

/// Why a frame could not be packetized or depayloaded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// A payload ends inside a header or a length-prefixed unit.
    #[error("RTP payload truncated")]
    Truncated,
    /// The payload violates its format.
    #[error("malformed RTP payload: {0}")]
    Malformed(&'static str),
    /// A valid construct this implementation does not speak (e.g. H.264 STAP-B, MTAP, FU-B).
    #[error("unsupported RTP payload: {0}")]
    Unsupported(&'static str),
    /// The frame exceeds [`MAX_FRAME_BYTES`].
    #[error("video frame larger than {MAX_FRAME_BYTES} bytes")]
    TooLarge,
    /// The maximum payload size is too small to carry any data.
    #[error("maximum RTP payload size {0} is too small")]
    MaxPayloadTooSmall(usize),
}

/// Splits encoded frames into RTP payloads.
pub trait Packetizer: Send {
    /// Packetizes one frame into payloads of at most `max_payload` bytes, in sending order.
    /// The caller gives them consecutive sequence numbers, one RTP timestamp, and sets the
    /// marker bit on the last one.
    fn packetize(
        &mut self,
        frame: &EncodedFrame,
        max_payload: usize,
    ) -> Result<Vec<Vec<u8>>, PayloadError>;
}

/// A fresh packetizer for `kind` (VP8: 15-bit PictureID starting at a random value).
pub fn packetizer(kind: VideoCodecKind) -> Box<dyn Packetizer> {
    match kind {
        VideoCodecKind::Vp8 => Box::new(vp8::Vp8Packetizer::new()),
        VideoCodecKind::H264 => Box::new(h264::H264Packetizer::new()),
    }
}

/// A frame rebuilt from its RTP payloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepayloadedFrame {
    /// The bitstream: a VP8 frame, or an H.264 access unit in Annex-B form (start codes).
    pub data: Vec<u8>,
    /// True for a VP8 key frame / an access unit containing an H.264 IDR slice.
    pub keyframe: bool,
}

/// Rebuilds one frame from the payloads of one RTP timestamp, given in sequence order.
pub fn depayload_frame(
    kind: VideoCodecKind,
    payloads: &[&[u8]],
) -> Result<DepayloadedFrame, PayloadError> {
    match kind {
        VideoCodecKind::Vp8 => vp8::depayload(payloads),
        VideoCodecKind::H264 => h264::depayload(payloads),
    }
}

/// True when `payload` may be the first packet of a frame (VP8: S=1 and PID=0; H.264: a
/// single NAL unit, a STAP-A, or the first fragment of an FU-A).
pub fn is_frame_start(kind: VideoCodecKind, payload: &[u8]) -> bool {
    match kind {
        VideoCodecKind::Vp8 => vp8::is_frame_start(payload),
        VideoCodecKind::H264 => h264::is_frame_start(payload),
    }
}

/// True when the first payload of a frame announces a keyframe (VP8: P bit clear in the
/// payload header; H.264: an SPS or IDR NAL unit in the packet).
pub fn is_keyframe(kind: VideoCodecKind, first_payload: &[u8]) -> bool {
    match kind {
        VideoCodecKind::Vp8 => vp8::is_keyframe(first_payload),
        VideoCodecKind::H264 => h264::is_keyframe(first_payload),
    }
}

/// Cheap structural check of one payload, done when a packet arrives (VP8: the payload
/// descriptor parses and data follows it; H.264: a known packet type with its headers).
pub fn check_payload(kind: VideoCodecKind, payload: &[u8]) -> Result<(), PayloadError> {
    match kind {
        VideoCodecKind::Vp8 => vp8::check_payload(payload),
        VideoCodecKind::H264 => h264::check_payload(payload),
    }
}

/// Sizes of `count` chunks that split `total` bytes as evenly as possible (larger first).
pub(crate) fn even_split(total: usize, count: usize) -> impl Iterator<Item = usize> {
    let base = total / count.max(1);
    let extra = total % count.max(1);
    (0..count).map(move |i| base + usize::from(i < extra))
}
