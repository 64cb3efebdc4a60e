//! Video for Tandem calls: I420 frames, VP8 (libvpx) and H.264 (openh264) codecs, RTP payload
//! formats (RFC 7741, RFC 6184), frame assembly with loss recovery, RTCP feedback (RFC 4585,
//! RFC 5104, REMB), bandwidth adaptation, headless sources (test pattern, Y4M), camera capture
//! (GStreamer) and the per-call video session that runs it all over a
//! [`tandem_media::session::MediaSocket`].

pub mod assembler;
pub mod camera;
pub mod codec;
pub mod counter;
pub mod feedback;
pub mod frame;
pub mod history;
pub mod rate;
pub mod rtp;
pub mod session;
pub mod source;
pub mod y4m;
