//! Tandem media: codecs (Opus, G.711, RFC 4733 telephone-event), RTP/RTCP with statistics,
//! SRTP (SDES and DTLS-SRTP), an adaptive jitter buffer with concealment, resampling, audio
//! devices (cpal, WAV files, null, tones) and the per-call media session that ties them together.

pub mod chain;
pub mod codec;
pub mod device;
pub mod dtmf;
pub mod jitter;
pub mod mixer;
pub mod ogg;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod session;
pub mod srtp;
pub mod stats;
pub mod tone;
pub mod wav;
