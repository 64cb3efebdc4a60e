//! Audio codecs: G.711 µ-law/A-law (with Appendix I style packet-loss concealment), Opus
//! (through libopus, with in-band FEC, DTX and libopus PLC) and G.722 (64 kbit/s SB-ADPCM).
//!
//! All PCM is mono `i16`. An encoder takes exactly one frame (`pcm_rate * ptime` samples) and
//! produces one RTP payload; a decoder turns one payload back into PCM at its `pcm_rate`, and
//! conceals lost packets.

mod g711;
mod g722;
mod opus_codec;
mod plc;

pub use g711::{
    G711Decoder, G711Encoder, G711Law, alaw_to_linear, linear_to_alaw, linear_to_ulaw,
    ulaw_to_linear,
};
pub use g722::{G722Decoder, G722Encoder};
pub use opus_codec::{OpusDecoder, OpusEncoder, OpusParams, opus_packet_has_fec};
pub use plc::G711Plc;

/// Errors from creating or running a codec.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// libopus reported an error.
    #[error("opus: {0}")]
    Opus(String),
    /// The input frame does not have a length the codec accepts.
    #[error("bad frame length {got} (codec expects {expected})")]
    FrameLength {
        /// Samples given.
        got: usize,
        /// Samples (or a multiple) the codec accepts.
        expected: usize,
    },
    /// The payload could not be decoded.
    #[error("malformed payload: {0}")]
    Malformed(&'static str),
    /// The codec description is not usable (unknown codec, wrong clock rate).
    #[error("unsupported codec: {0}")]
    Unsupported(String),
}

impl From<::opus::Error> for CodecError {
    fn from(e: ::opus::Error) -> Self {
        CodecError::Opus(e.to_string())
    }
}

/// The audio codecs Tandem can encode and decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodecKind {
    /// Opus (RFC 6716, RTP payload RFC 7587), always 48 kHz mono inside Tandem.
    Opus,
    /// G.711 µ-law (PCMU, static payload type 0).
    Pcmu,
    /// G.711 A-law (PCMA, static payload type 8).
    Pcma,
    /// G.722 SB-ADPCM at 64 kbit/s (16 kHz audio, RTP clock 8000; static payload type 9).
    G722,
}

impl CodecKind {
    /// The SDP encoding name (`opus`, `PCMU`, `PCMA`, `G722`).
    pub fn name(self) -> &'static str {
        match self {
            CodecKind::Opus => "opus",
            CodecKind::Pcmu => "PCMU",
            CodecKind::Pcma => "PCMA",
            CodecKind::G722 => "G722",
        }
    }

    /// The PCM sample rate the codec works at (8000 for G.711, 48000 for Opus).
    pub fn pcm_rate(self) -> u32 {
        match self {
            CodecKind::Opus => 48_000,
            CodecKind::Pcmu | CodecKind::Pcma => 8_000,
            CodecKind::G722 => 16_000,
        }
    }

    /// The RTP clock rate of the codec (8000 for G.711 and G.722, 48000 for Opus).
    pub fn rtp_clock_rate(self) -> u32 {
        match self {
            CodecKind::Opus => 48_000,
            CodecKind::Pcmu | CodecKind::Pcma | CodecKind::G722 => 8_000,
        }
    }
}

/// A negotiated codec: what SDP said about one payload type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecSpec {
    /// Which codec.
    pub kind: CodecKind,
    /// The RTP payload type number.
    pub payload_type: u8,
    /// The RTP clock rate (8000, 48000; 8000 for G.722 although it samples at 16 kHz).
    pub clock_rate: u32,
    /// RTP channel count as in SDP (Opus is always 2 there; we encode and decode mono).
    pub channels: u8,
    /// The `a=fmtp` parameters for this payload type, if any.
    pub fmtp: Option<String>,
}

impl CodecSpec {
    /// Builds a spec from an `a=rtpmap` line's parts; `None` for codecs we do not implement
    /// or clock rates that do not match the codec. The name is matched case-insensitively.
    pub fn from_rtpmap(
        name: &str,
        clock_rate: u32,
        channels: u8,
        payload_type: u8,
        fmtp: Option<&str>,
    ) -> Option<CodecSpec> {
        let kind = if name.eq_ignore_ascii_case("opus") {
            CodecKind::Opus
        } else if name.eq_ignore_ascii_case("PCMU") {
            CodecKind::Pcmu
        } else if name.eq_ignore_ascii_case("PCMA") {
            CodecKind::Pcma
        } else if name.eq_ignore_ascii_case("G722") {
            CodecKind::G722
        } else {
            return None;
        };
        if clock_rate != kind.rtp_clock_rate() || payload_type > 127 {
            return None;
        }
        let channels = match kind {
            // RFC 7587: always "opus/48000/2".
            CodecKind::Opus => 2,
            _ if channels <= 1 => 1,
            _ => return None,
        };
        Some(CodecSpec {
            kind,
            payload_type,
            clock_rate,
            channels,
            fmtp: fmtp.map(str::to_owned),
        })
    }

    /// A spec for one of the static payload types (0 PCMU, 8 PCMA, 9 G722) or Opus at a
    /// dynamic payload type, without fmtp.
    pub fn new(kind: CodecKind, payload_type: u8) -> CodecSpec {
        CodecSpec {
            kind,
            payload_type,
            clock_rate: kind.rtp_clock_rate(),
            channels: if kind == CodecKind::Opus { 2 } else { 1 },
            fmtp: None,
        }
    }

    /// The SDP encoding name (`opus`, `PCMU`, `PCMA`, `G722`).
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// The PCM rate of the codec (8000 G.711, 48000 Opus, 16000 G.722).
    pub fn pcm_rate(&self) -> u32 {
        self.kind.pcm_rate()
    }

    /// Looks up one `key=value` fmtp parameter (case-insensitive key, `;`-separated list).
    pub fn fmtp_param(&self, key: &str) -> Option<&str> {
        self.fmtp.as_deref().and_then(|f| fmtp_param(f, key))
    }
}

/// Looks up one `key=value` parameter in an fmtp string (`a; b=c; d=e`), key case-insensitive.
pub fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// Turns PCM frames into RTP payloads.
pub trait AudioEncoder: Send {
    /// The PCM sample rate the encoder expects.
    fn pcm_rate(&self) -> u32;
    /// Encodes one frame (`pcm_rate * ptime` samples) into `out` (cleared first). With Opus
    /// DTX an empty `out` means "nothing to send for this frame".
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Tells the encoder how much loss to expect (percent), e.g. from RTCP reports; only
    /// Opus uses it (to size its in-band FEC).
    fn set_expected_loss(&mut self, _percent: u8) {}
}

/// Turns RTP payloads back into PCM and hides lost packets.
pub trait AudioDecoder: Send {
    /// The PCM sample rate the decoder produces.
    fn pcm_rate(&self) -> u32;
    /// Decodes one payload, appending the PCM to `out`.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError>;
    /// Produces `samples` samples of concealment for a lost packet, appended to `out`.
    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>);
    /// Recovers a lost packet of `samples` samples from the in-band FEC of the packet that
    /// follows it; appends the PCM and returns true, or returns false (nothing appended) when
    /// the codec or packet carries no FEC.
    fn decode_fec(&mut self, next_payload: &[u8], samples: usize, out: &mut Vec<i16>) -> bool;
    /// The number of PCM samples (at `pcm_rate`) the payload decodes to, if it parses.
    fn packet_samples(&self, payload: &[u8]) -> Option<usize>;
}

/// Creates an encoder for a negotiated codec.
pub fn new_encoder(spec: &CodecSpec) -> Result<Box<dyn AudioEncoder>, CodecError> {
    Ok(match spec.kind {
        CodecKind::Pcmu => Box::new(G711Encoder::new(G711Law::MuLaw)),
        CodecKind::Pcma => Box::new(G711Encoder::new(G711Law::ALaw)),
        CodecKind::G722 => Box::new(G722Encoder::new()),
        CodecKind::Opus => Box::new(OpusEncoder::new(&OpusParams::from_fmtp(
            spec.fmtp.as_deref(),
        ))?),
    })
}

/// Creates a decoder for a negotiated codec.
pub fn new_decoder(spec: &CodecSpec) -> Result<Box<dyn AudioDecoder>, CodecError> {
    Ok(match spec.kind {
        CodecKind::Pcmu => Box::new(G711Decoder::new(G711Law::MuLaw)),
        CodecKind::Pcma => Box::new(G711Decoder::new(G711Law::ALaw)),
        CodecKind::G722 => Box::new(G722Decoder::new()),
        CodecKind::Opus => Box::new(OpusDecoder::new()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtpmap_names_and_rates() {
        let o = CodecSpec::from_rtpmap("OPUS", 48000, 2, 111, Some("useinbandfec=1")).unwrap();
        assert_eq!(o.kind, CodecKind::Opus);
        assert_eq!(o.name(), "opus");
        assert_eq!(o.pcm_rate(), 48000);
        assert_eq!(o.fmtp_param("UseInbandFec"), Some("1"));
        let u = CodecSpec::from_rtpmap("pcmu", 8000, 1, 0, None).unwrap();
        assert_eq!(u.kind, CodecKind::Pcmu);
        assert!(CodecSpec::from_rtpmap("PCMU", 16000, 1, 0, None).is_none());
        assert!(CodecSpec::from_rtpmap("speex", 8000, 1, 97, None).is_none());
        assert!(CodecSpec::from_rtpmap("PCMA", 8000, 2, 8, None).is_none());
        let g = CodecSpec::from_rtpmap("g722", 8000, 1, 9, None).unwrap();
        assert_eq!(
            (g.pcm_rate(), g.clock_rate, g.name()),
            (16000, 8000, "G722")
        );
        assert!(CodecSpec::from_rtpmap("G722", 16000, 1, 9, None).is_none());
    }

    #[test]
    fn fmtp_parsing() {
        let f = "minptime=10; useinbandfec=1;usedtx=1 ; maxaveragebitrate = 24000";
        assert_eq!(fmtp_param(f, "usedtx"), Some("1"));
        assert_eq!(fmtp_param(f, "maxaveragebitrate"), Some("24000"));
        assert_eq!(fmtp_param(f, "stereo"), None);
    }
}
