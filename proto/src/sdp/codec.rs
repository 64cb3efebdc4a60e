//! Our codecs as offered and answered: name, clock rate, channels, fmtp and our payload type.

use super::RtpMap;

/// A codec we can send and receive, for building offers and answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// Encoding name (`PCMU`, `opus`, `telephone-event`).
    pub name: String,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Channels (1 for mono).
    pub channels: u8,
    /// Our `a=fmtp` parameters, if any.
    pub fmtp: Option<String>,
    /// The payload type we use in our own offers.
    pub payload_type: u8,
}

impl Codec {
    /// A codec description.
    pub fn new(name: &str, clock_rate: u32, channels: u8, payload_type: u8) -> Self {
        Codec {
            name: name.to_owned(),
            clock_rate,
            channels,
            fmtp: None,
            payload_type,
        }
    }

    /// The same codec with `a=fmtp` parameters.
    pub fn with_fmtp(mut self, fmtp: &str) -> Self {
        self.fmtp = Some(fmtp.to_owned());
        self
    }

    /// Whether this is the RFC 4733 `telephone-event` pseudo-codec.
    pub fn is_telephone_event(&self) -> bool {
        self.name.eq_ignore_ascii_case("telephone-event")
    }

    pub(super) fn rtpmap_with_pt(&self, payload_type: u8) -> RtpMap {
        RtpMap {
            payload_type,
            encoding: self.name.clone(),
            clock_rate: self.clock_rate,
            channels: (self.channels != 1).then_some(self.channels),
        }
    }

    pub(super) fn fmtp_value(&self) -> Option<String> {
        match &self.fmtp {
            Some(f) => Some(f.clone()),
            None if self.is_telephone_event() => Some("0-16".to_owned()),
            None => None,
        }
    }

    /// Whether `map` describes this codec, exactly (name case-insensitive, channels default 1).
    pub(super) fn matches(&self, map: &RtpMap) -> bool {
        map.matches(&self.name, self.clock_rate, self.channels)
    }

    /// Whether `map` describes this codec, leniently: an `opus` rtpmap
    /// without the mandatory `/2` (RFC 7587 §7) still counts as Opus.
    pub fn accepts(&self, map: &RtpMap) -> bool {
        if self.name.eq_ignore_ascii_case("opus") && map.encoding.eq_ignore_ascii_case("opus") {
            return map.clock_rate == self.clock_rate;
        }
        self.matches(map)
    }

    /// Opus (RFC 7587): `opus/48000/2`, payload type 111, in-band FEC and DTX requested.
    pub fn opus() -> Self {
        Codec::new("opus", 48000, 2, 111).with_fmtp("useinbandfec=1;usedtx=1")
    }

    /// G.711 A-law, static payload type 8.
    pub fn pcma() -> Self {
        Codec::new("PCMA", 8000, 1, 8)
    }

    /// G.711 mu-law, static payload type 0.
    pub fn pcmu() -> Self {
        Codec::new("PCMU", 8000, 1, 0)
    }

    /// G.722, static payload type 9 (RTP clock 8000 by RFC 3551's historical error).
    pub fn g722() -> Self {
        Codec::new("G722", 8000, 1, 9)
    }

    /// RFC 4733 `telephone-event` at `clock_rate` with our payload type `payload_type`, events 0-16.
    pub fn telephone_event(clock_rate: u32, payload_type: u8) -> Self {
        Codec::new("telephone-event", clock_rate, 1, payload_type).with_fmtp("0-16")
    }
}

/// Our default audio codecs in preference order: Opus, PCMA, PCMU, then
/// `telephone-event` at 48000 (PT 110, for Opus) and 8000 (PT 101, for G.711).
pub fn default_audio_codecs() -> Vec<Codec> {
    vec![
        Codec::opus(),
        Codec::pcma(),
        Codec::pcmu(),
        Codec::telephone_event(48000, 110),
        Codec::telephone_event(8000, 101),
    ]
}
