//! Opus through libopus (the `opus` crate): mono at 48 kHz, in-band FEC, DTX, libopus PLC.

use super::{AudioDecoder, AudioEncoder, CodecError, fmtp_param};
use ::opus::{Application, Bandwidth, Bitrate, Channels};

/// Largest Opus packet duration: 120 ms at 48 kHz.
const MAX_FRAME: usize = 5760;
/// Opus frames are multiples of 2.5 ms: 120 samples at 48 kHz.
const MIN_FRAME: usize = 120;
/// Payload buffer size for one encoded frame (RFC 6716 §3.4 limit is 1275 bytes per frame).
const MAX_PAYLOAD: usize = 4000;

/// Encoder settings taken from the peer's `a=fmtp` for Opus (RFC 7587 §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusParams {
    /// `useinbandfec=1`: the peer can use in-band FEC, so we send it.
    pub inband_fec: bool,
    /// `usedtx=1`: the peer wants discontinuous transmission.
    pub dtx: bool,
    /// Target bitrate in bits/s: 32000, or less when `maxaveragebitrate` asks (at least 6000).
    pub bitrate: i32,
    /// Expected packet loss in percent (tunes FEC; default 10).
    pub expected_loss: u8,
    /// `cbr=1`: constant bitrate.
    pub cbr: bool,
    /// `maxplaybackrate`: the highest audio rate the peer plays, in Hz (caps the bandwidth).
    pub max_playback_rate: Option<u32>,
}

impl Default for OpusParams {
    fn default() -> Self {
        OpusParams {
            inband_fec: false,
            dtx: false,
            bitrate: 32_000,
            expected_loss: 10,
            cbr: false,
            max_playback_rate: None,
        }
    }
}

impl OpusParams {
    /// Reads `useinbandfec`, `usedtx`, `cbr`, `maxplaybackrate` and `maxaveragebitrate` from an
    /// fmtp string (`stereo` is ignored: we always send mono, which every Opus decoder accepts).
    pub fn from_fmtp(fmtp: Option<&str>) -> OpusParams {
        let mut p = OpusParams::default();
        if let Some(f) = fmtp {
            p.inband_fec = fmtp_param(f, "useinbandfec") == Some("1");
            p.dtx = fmtp_param(f, "usedtx") == Some("1");
            p.cbr = fmtp_param(f, "cbr") == Some("1");
            p.max_playback_rate = fmtp_param(f, "maxplaybackrate")
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|&r| r > 0);
            if let Some(rate) =
                fmtp_param(f, "maxaveragebitrate").and_then(|v| v.parse::<i32>().ok())
            {
                // An upper bound from the receiver: never above it, never above our voice default.
                p.bitrate = rate.clamp(6_000, 510_000).min(p.bitrate);
            }
        }
        p
    }
}

/// Opus encoder: mono, 48 kHz, VoIP application.
pub struct OpusEncoder {
    enc: ::opus::Encoder,
    dtx: bool,
    buf: Vec<u8>,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("dtx", &self.dtx)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// Creates an encoder with the given settings.
    pub fn new(params: &OpusParams) -> Result<Self, CodecError> {
        let mut enc = ::opus::Encoder::new(48_000, Channels::Mono, Application::Voip)?;
        enc.set_bitrate(Bitrate::Bits(params.bitrate))?;
        enc.set_inband_fec(params.inband_fec)?;
        enc.set_dtx(params.dtx)?;
        enc.set_packet_loss_perc(i32::from(params.expected_loss.min(100)))?;
        enc.set_vbr(!params.cbr)?;
        if let Some(rate) = params.max_playback_rate {
            // RFC 7587 §6.1: no point coding audio the peer cannot play back.
            let bw = match rate {
                0..=8_000 => Bandwidth::Narrowband,
                8_001..=12_000 => Bandwidth::Mediumband,
                12_001..=16_000 => Bandwidth::Wideband,
                16_001..=24_000 => Bandwidth::Superwideband,
                _ => Bandwidth::Fullband,
            };
            enc.set_max_bandwidth(bw)?;
        }
        Ok(OpusEncoder {
            enc,
            dtx: params.dtx,
            buf: vec![0; MAX_PAYLOAD],
        })
    }
}

impl AudioEncoder for OpusEncoder {
    fn pcm_rate(&self) -> u32 {
        48_000
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.clear();
        // Valid Opus frame sizes: 2.5, 5, 10, 20, 40, 60 ms (and 80/100/120 in libopus >= 1.2).
        let ok = matches!(
            pcm.len(),
            120 | 240 | 480 | 960 | 1920 | 2880 | 3840 | 4800 | 5760
        );
        if !ok {
            return Err(CodecError::FrameLength {
                got: pcm.len(),
                expected: 960,
            });
        }
        let n = self.enc.encode(pcm, &mut self.buf)?;
        // With DTX, libopus returns packets of 1-2 bytes (TOC only) that need not be sent.
        if self.dtx && n <= 2 {
            return Ok(());
        }
        out.extend_from_slice(self.buf.get(..n).unwrap_or_default());
        Ok(())
    }

    fn set_expected_loss(&mut self, percent: u8) {
        if let Err(e) = self.enc.set_packet_loss_perc(i32::from(percent.min(100))) {
            tracing::debug!("opus: cannot set expected loss: {e}");
        }
    }
}

/// Opus decoder: decodes any Opus packet (mono or stereo, any bandwidth) to mono 48 kHz.
pub struct OpusDecoder {
    dec: ::opus::Decoder,
    buf: Vec<i16>,
    last_samples: usize,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// Creates a mono 48 kHz decoder.
    pub fn new() -> Result<Self, CodecError> {
        Ok(OpusDecoder {
            dec: ::opus::Decoder::new(48_000, Channels::Mono)?,
            buf: vec![0; MAX_FRAME],
            last_samples: 960,
        })
    }
}

/// True when an Opus packet carries in-band FEC (LBRR) data for the frame before it.
///
/// Only SILK-only and hybrid packets (TOC configs 0..=15) can. The SILK header opens the
/// range-coded data with one VAD flag per SILK frame followed by the LBRR flag, all coded with
/// probability 1/2; for the first symbols of a range coder such bits are exactly the leading
/// bits of the first data byte (RFC 6716 §4.1, §4.2.3), so the flag is read directly. Packets
/// with several frames of signalled sizes (code 3) are assumed to carry FEC.
pub fn opus_packet_has_fec(payload: &[u8]) -> bool {
    let Some(&toc) = payload.first() else {
        return false;
    };
    let config = toc >> 3;
    if config >= 16 {
        return false;
    }
    // SILK frames per Opus frame: 10 and 20 ms one, 40 ms two, 60 ms three.
    let silk_frames: u32 = if config < 12 {
        match config % 4 {
            2 => 2,
            3 => 3,
            _ => 1,
        }
    } else {
        1
    };
    let data_start = match toc & 3 {
        0 | 1 => 1,
        2 => match payload.get(1) {
            Some(&len) if len < 252 => 2,
            Some(_) => 3,
            None => return false,
        },
        _ => return payload.len() > 2,
    };
    match payload.get(data_start) {
        // Bit `silk_frames` from the top: after the VAD flags.
        Some(&first) => first & (0x80 >> silk_frames) != 0,
        None => false,
    }
}

impl AudioDecoder for OpusDecoder {
    fn pcm_rate(&self) -> u32 {
        48_000
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        if payload.is_empty() {
            return Err(CodecError::Malformed("empty opus payload"));
        }
        let n = self.dec.decode(payload, &mut self.buf, false)?;
        let n = n.min(self.buf.len());
        self.last_samples = n.max(MIN_FRAME);
        out.extend_from_slice(&self.buf[..n]);
        Ok(())
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        let mut left = samples;
        while left > 0 {
            // libopus conceals in multiples of 2.5 ms.
            let chunk = left
                .div_ceil(MIN_FRAME)
                .saturating_mul(MIN_FRAME)
                .min(MAX_FRAME);
            let produced = match self.dec.decode(&[], &mut self.buf[..chunk], false) {
                Ok(n) => n.min(chunk),
                Err(e) => {
                    tracing::debug!("opus PLC failed: {e}");
                    0
                }
            };
            let take = produced.min(left);
            out.extend_from_slice(&self.buf[..take]);
            if take < left && produced == 0 {
                out.resize(out.len() + left, 0);
                return;
            }
            left -= take;
        }
    }

    fn decode_fec(&mut self, next_payload: &[u8], samples: usize, out: &mut Vec<i16>) -> bool {
        if !opus_packet_has_fec(next_payload)
            || samples == 0
            || samples > MAX_FRAME
            || !samples.is_multiple_of(MIN_FRAME)
        {
            return false;
        }
        match self
            .dec
            .decode(next_payload, &mut self.buf[..samples], true)
        {
            Ok(n) if n == samples => {
                out.extend_from_slice(&self.buf[..n]);
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::debug!("opus FEC decode failed: {e}");
                false
            }
        }
    }

    fn packet_samples(&self, payload: &[u8]) -> Option<usize> {
        if payload.is_empty() {
            return None;
        }
        ::opus::packet::get_nb_samples(payload, 48_000)
            .ok()
            .filter(|&n| n > 0 && n <= MAX_FRAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmtp_settings() {
        let p = OpusParams::from_fmtp(Some(
            "minptime=10;useinbandfec=1; usedtx=1;maxaveragebitrate=20000",
        ));
        assert!(p.inband_fec && p.dtx);
        assert_eq!(p.bitrate, 20000);
        let r = OpusParams::from_fmtp(Some("maxplaybackrate=16000;cbr=1"));
        assert_eq!((r.max_playback_rate, r.cbr), (Some(16000), true));
        let mut enc = OpusEncoder::new(&r).unwrap();
        let mut payload = Vec::new();
        let pcm: Vec<i16> = (0..960)
            .map(|i| ((i as f32 * 0.3).sin() * 8000.0) as i16)
            .collect();
        for _ in 0..10 {
            enc.encode(&pcm, &mut payload).unwrap();
        }
        // TOC bandwidth: wideband at most (SILK configs 0..=11, CELT NB/WB 16..=23; no hybrid
        // or CELT SWB/FB).
        let config = payload[0] >> 3;
        assert!(
            config <= 11 || (16..=23).contains(&config),
            "config {config}"
        );
        let q = OpusParams::from_fmtp(Some("maxaveragebitrate=1000000"));
        assert_eq!(q.bitrate, 32_000);
        assert!(!q.inband_fec);
        assert_eq!(OpusParams::from_fmtp(None), OpusParams::default());
    }

    #[test]
    fn fec_flag_follows_the_encoder_setting() {
        for fec in [true, false] {
            let params = OpusParams {
                inband_fec: fec,
                expected_loss: 20,
                ..OpusParams::default()
            };
            let mut enc = OpusEncoder::new(&params).unwrap();
            let mut flagged = 0;
            let mut payload = Vec::new();
            for k in 0..50 {
                // Voiced speech-like audio (a steady sine would soon be judged inactive by
                // the SILK VAD, and inactive frames get no LBRR).
                let pcm: Vec<i16> = (0..960)
                    .map(|i| {
                        let t = (k * 960 + i) as f32 / 48_000.0;
                        let env = 0.6 + 0.4 * (std::f32::consts::TAU * 3.0 * t).sin();
                        let v: f32 = (1..=8)
                            .map(|h| {
                                (std::f32::consts::TAU * 170.0 * h as f32 * t).sin() / h as f32
                            })
                            .sum();
                        (v * 5000.0 * env) as i16
                    })
                    .collect();
                enc.encode(&pcm, &mut payload).unwrap();
                if opus_packet_has_fec(&payload) {
                    flagged += 1;
                }
            }
            if fec {
                assert!(flagged >= 20, "{flagged} of 50 packets carry FEC");
            } else {
                assert_eq!(flagged, 0);
            }
        }
        assert!(!opus_packet_has_fec(&[]));
        assert!(!opus_packet_has_fec(&[0xF8, 0xFF]));
        assert!(!opus_packet_has_fec(&[0x08]));
    }

    #[test]
    fn encodes_and_decodes_a_frame() {
        let mut enc = OpusEncoder::new(&OpusParams::default()).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let pcm: Vec<i16> = (0..960)
            .map(|i| ((i as f32 * 0.13).sin() * 8000.0) as i16)
            .collect();
        let mut payload = Vec::new();
        enc.encode(&pcm, &mut payload).unwrap();
        assert!(!payload.is_empty());
        assert_eq!(dec.packet_samples(&payload), Some(960));
        let mut out = Vec::new();
        dec.decode(&payload, &mut out).unwrap();
        assert_eq!(out.len(), 960);
        out.clear();
        dec.conceal(960, &mut out);
        assert_eq!(out.len(), 960);
        out.clear();
        dec.conceal(100, &mut out);
        assert_eq!(out.len(), 100);
        assert!(enc.encode(&pcm[..100], &mut payload).is_err());
        assert!(dec.decode(&[], &mut out).is_err());
        assert_eq!(dec.packet_samples(&[]), None);
    }
}
