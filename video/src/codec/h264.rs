//! H.264 constrained baseline through openh264 (bundled source): a real-time, single-slice
//! encoder emitting Annex-B with SPS/PPS before every IDR, and a decoder that checks every SPS
//! against the size limits before openh264 allocates for it.
#![allow(unsafe_code)]

use std::os::raw::{c_int, c_void};

use openh264::OpenH264API;
use openh264::decoder::{Decoder, DecoderConfig, Flush};
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig as H264Config, FrameRate, FrameType,
    IntraFramePeriod, Profile, RateControlMode, SpsPpsStrategy, UsageType,
};
use openh264::formats::YUVSource;
use openh264_sys2::{
    ENCODER_OPTION, ENCODER_OPTION_BITRATE, ENCODER_OPTION_MAX_BITRATE, SBitrateInfo,
    SPATIAL_LAYER_0, SPATIAL_LAYER_ALL,
};

use super::{CodecError, EncodedFrame, EncoderConfig, VideoCodecKind, VideoDecoder, VideoEncoder};
use crate::frame::{MAX_HEIGHT, MAX_WIDTH, VideoFrame};

/// Keyframe distance ceiling in seconds (keyframes otherwise come on demand).
const KEYFRAME_INTERVAL_SECS: u32 = 10;
/// Largest access unit handed to openh264.
const MAX_ACCESS_UNIT_BYTES: usize = 16 << 20;

/// NAL unit type of a coded slice of an IDR picture.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;

/// The NAL units of an Annex-B byte stream (start codes removed, trailing zero bytes kept
/// as openh264 ignores them); empty units are skipped.
pub fn split_annexb(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
        // A 4-byte start code's leading zero belongs to the next start code, not this unit.
        while end > s && data[end - 1] == 0 && starts.get(k + 1).is_some() {
            end -= 1;
        }
        if end > s {
            out.push(&data[s..end]);
        }
    }
    out
}

/// The NAL unit type (low 5 bits of the header byte) of a unit from [`split_annexb`].
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// Reads Exp-Golomb coded fields from an RBSP (emulation prevention already removed).
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Result<u32, CodecError> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or_else(|| CodecError::Decode("SPS truncated".into()))?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(b))
    }

    fn bits(&mut self, n: u32) -> Result<u32, CodecError> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    fn ue(&mut self) -> Result<u32, CodecError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(CodecError::Decode("SPS Exp-Golomb code too long".into()));
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    fn se(&mut self) -> Result<i64, CodecError> {
        let k = i64::from(self.ue()?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// The payload of a NAL unit with emulation prevention bytes (00 00 03) removed.
fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// The picture size (after cropping) a sequence parameter set NAL unit (header byte included)
/// declares. Errors for malformed units; sizes are not limit-checked here.
pub fn sps_size(nal: &[u8]) -> Result<(u32, u32), CodecError> {
    // Only the first few dozen bytes matter; do not copy a huge hostile unit.
    let head = &nal[..nal.len().min(256)];
    let data = rbsp(head.get(1..).unwrap_or_default());
    let mut r = BitReader {
        data: &data,
        pos: 0,
    };
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return Err(CodecError::Decode("SPS chroma_format_idc".into()));
        }
        if chroma_format_idc == 3 {
            r.bit()?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256).rem_euclid(256);
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    let poc_type = r.ue()?;
    if poc_type == 0 {
        r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
    } else if poc_type == 1 {
        r.bit()?; // delta_pic_order_always_zero_flag
        r.se()?; // offset_for_non_ref_pic
        r.se()?; // offset_for_top_to_bottom_field
        let cycle = r.ue()?;
        if cycle > 255 {
            return Err(CodecError::Decode("SPS poc cycle too long".into()));
        }
        for _ in 0..cycle {
            r.se()?;
        }
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = u64::from(r.bit()?);
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let mut width = width_mbs * 16;
    let mut height = (2 - frame_mbs_only) * height_units * 16;
    if r.bit()? == 1 {
        let (l, rt, t, b) = (
            u64::from(r.ue()?),
            u64::from(r.ue()?),
            u64::from(r.ue()?),
            u64::from(r.ue()?),
        );
        let (sub_w, sub_h) = match chroma_format_idc {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let crop_x = sub_w * (l + rt);
        let crop_y = sub_h * (2 - frame_mbs_only) * (t + b);
        width = width.saturating_sub(crop_x);
        height = height.saturating_sub(crop_y);
    }
    if width == 0 || height == 0 {
        return Err(CodecError::Decode("SPS crops the picture away".into()));
    }
    let clamp = |v: u64| v.min(u64::from(u32::MAX)) as u32;
    Ok((clamp(width), clamp(height)))
}

/// A [`VideoFrame`] seen by openh264 (tightly packed strides).
struct FrameYuv<'a>(&'a VideoFrame);

impl YUVSource for FrameYuv<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.width as usize, self.0.height as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        let cw = self.0.chroma_width() as usize;
        (self.0.width as usize, cw, cw)
    }

    fn y(&self) -> &[u8] {
        &self.0.y
    }

    fn u(&self) -> &[u8] {
        &self.0.u
    }

    fn v(&self) -> &[u8] {
        &self.0.v
    }
}

/// An openh264 encoder: constrained baseline, one slice per picture, real-time camera usage,
/// bitrate rate control.
pub struct H264Encoder {
    config: EncoderConfig,
    /// Created lazily on the first frame (and again after a size change).
    encoder: Option<Encoder>,
    /// True once `encoder` has encoded a frame (openh264 initialises on the first encode).
    started: bool,
    frames: u64,
    sps: Vec<u8>,
    pps: Vec<u8>,
}

impl H264Encoder {
    /// An H.264 encoder for `config` (size checked against the maximum, bitrate and fps clamped).
    pub fn new(config: EncoderConfig) -> Result<Self, CodecError> {
        let config = config.validated()?;
        let mut enc = H264Encoder {
            config,
            encoder: None,
            started: false,
            frames: 0,
            sps: Vec::new(),
            pps: Vec::new(),
        };
        enc.create()?;
        Ok(enc)
    }

    fn create(&mut self) -> Result<(), CodecError> {
        let c = &self.config;
        let cfg = H264Config::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .profile(Profile::Baseline)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(c.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(c.fps as f32))
            .skip_frames(true)
            .complexity(Complexity::Low)
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .intra_frame_period(IntraFramePeriod::from_num_frames(
                c.fps * KEYFRAME_INTERVAL_SECS,
            ))
            .scene_change_detect(false)
            .background_detection(false)
            .long_term_reference(false)
            // openh264 threads work per slice; with one slice (RFC 6184 FU-A friendly) a
            // second thread would idle.
            .num_threads(1);
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), cfg)
            .map_err(|e| CodecError::Unavailable(format!("openh264 encoder: {e}")))?;
        self.encoder = Some(encoder);
        self.started = false;
        Ok(())
    }

    /// Sets one openh264 bitrate option on a running encoder.
    fn set_rate_option(
        encoder: &mut Encoder,
        option: ENCODER_OPTION,
        layer: c_int,
        bps: u32,
    ) -> bool {
        let mut info = SBitrateInfo {
            iLayer: layer,
            iBitrate: bps.min(i32::MAX as u32) as c_int,
        };
        // SAFETY: the encoder has been initialised (it encoded a frame); the bitrate options
        // take a pointer to an SBitrateInfo that lives for the duration of the call and only
        // change rate-control targets, which the wrapper does not rely on.
        let rc = unsafe {
            encoder
                .raw_api()
                .set_option(option, (&raw mut info).cast::<c_void>())
        };
        rc == 0
    }
}

impl VideoEncoder for H264Encoder {
    fn kind(&self) -> VideoCodecKind {
        VideoCodecKind::H264
    }

    fn encode(
        &mut self,
        frame: &VideoFrame,
        force_keyframe: bool,
    ) -> Result<Option<EncodedFrame>, CodecError> {
        super::check_dimensions(frame.width, frame.height)?;
        if !frame.is_consistent() {
            return Err(CodecError::Encode(
                "frame planes do not match its size".into(),
            ));
        }
        // H.264 4:2:0 pictures have even sizes: drop an odd last row/column.
        let even;
        let frame = if frame.width % 2 == 1 || frame.height % 2 == 1 {
            if frame.width < 2 || frame.height < 2 {
                return Err(CodecError::Config(format!(
                    "H.264 cannot encode {}x{}",
                    frame.width, frame.height
                )));
            }
            even = frame
                .cropped(frame.width & !1, frame.height & !1)
                .map_err(|e| CodecError::Encode(e.to_string()))?;
            &even
        } else {
            frame
        };
        if frame.width > 3840 || frame.height > 2160 {
            return Err(CodecError::Config(format!(
                "openh264 encodes at most 3840x2160, not {}x{}",
                frame.width, frame.height
            )));
        }
        if frame.width != self.config.width || frame.height != self.config.height {
            self.config.width = frame.width;
            self.config.height = frame.height;
            self.encoder = None;
        }
        if self.encoder.is_none() {
            self.create()?;
        }
        let Some(encoder) = self.encoder.as_mut() else {
            return Err(CodecError::Encode("no encoder".into()));
        };
        if force_keyframe && self.started {
            encoder.force_intra_frame();
        }
        let ts_ms = self.frames * 1000 / u64::from(self.config.fps.max(1));
        let stream = encoder
            .encode_at(&FrameYuv(frame), openh264::Timestamp::from_millis(ts_ms))
            .map_err(|e| CodecError::Encode(e.to_string()))?;
        self.started = true;
        self.frames += 1;
        let frame_type = stream.frame_type();
        if matches!(frame_type, FrameType::Skip | FrameType::Invalid) {
            return Ok(None);
        }
        let data = stream.to_vec();
        if data.is_empty() {
            return Ok(None);
        }
        let nals = split_annexb(&data);
        let keyframe = nals.iter().any(|n| nal_type(n) == Some(NAL_IDR));
        let mut has_sps = false;
        let mut has_pps = false;
        for nal in &nals {
            match nal_type(nal) {
                Some(NAL_SPS) => {
                    has_sps = true;
                    self.sps = nal.to_vec();
                }
                Some(NAL_PPS) => {
                    has_pps = true;
                    self.pps = nal.to_vec();
                }
                _ => {}
            }
        }
        let data = if keyframe && !(has_sps && has_pps) {
            if self.sps.is_empty() || self.pps.is_empty() {
                return Err(CodecError::Encode(
                    "openh264 produced an IDR without parameter sets".into(),
                ));
            }
            let mut with_ps = Vec::with_capacity(data.len() + self.sps.len() + self.pps.len() + 8);
            for ps in [&self.sps, &self.pps] {
                with_ps.extend_from_slice(&[0, 0, 0, 1]);
                with_ps.extend_from_slice(ps);
            }
            with_ps.extend_from_slice(&data);
            with_ps
        } else {
            data
        };
        Ok(Some(EncodedFrame { data, keyframe }))
    }

    fn set_bitrate(&mut self, bps: u32) -> Result<(), CodecError> {
        let bps = bps.clamp(super::MIN_BITRATE_BPS, super::MAX_BITRATE_BPS);
        let old = self.config.bitrate_bps;
        self.config.bitrate_bps = bps;
        if !self.started {
            // Not initialised yet: a fresh encoder picks the new target up at its first frame.
            self.encoder = None;
            return Ok(());
        }
        let Some(encoder) = self.encoder.as_mut() else {
            return Ok(());
        };
        let max = (SPATIAL_LAYER_0 as c_int, ENCODER_OPTION_MAX_BITRATE);
        let target = (SPATIAL_LAYER_ALL as c_int, ENCODER_OPTION_BITRATE);
        // Keep target <= max at every step.
        let order = if bps > old {
            [max, target]
        } else {
            [target, max]
        };
        let ok = order
            .iter()
            .all(|&(layer, option)| Self::set_rate_option(encoder, option, layer, bps));
        if !ok {
            // Fall back to a fresh encoder at the new rate (its first picture is an IDR).
            self.encoder = None;
            self.create()?;
        }
        Ok(())
    }

    fn config(&self) -> &EncoderConfig {
        &self.config
    }
}

/// An openh264 decoder taking one Annex-B access unit per call.
pub struct H264Decoder {
    decoder: Decoder,
    have_sps: bool,
}

impl H264Decoder {
    /// An H.264 decoder.
    pub fn new() -> Result<Self, CodecError> {
        let decoder = Decoder::with_api_config(
            OpenH264API::from_source(),
            DecoderConfig::new().flush_after_decode(Flush::NoFlush),
        )
        .map_err(|e| CodecError::Unavailable(format!("openh264 decoder: {e}")))?;
        Ok(H264Decoder {
            decoder,
            have_sps: false,
        })
    }
}

impl VideoDecoder for H264Decoder {
    fn kind(&self) -> VideoCodecKind {
        VideoCodecKind::H264
    }

    fn decode(&mut self, data: &[u8]) -> Result<Option<VideoFrame>, CodecError> {
        if data.len() > MAX_ACCESS_UNIT_BYTES {
            return Err(CodecError::Decode(format!(
                "access unit of {} bytes is too large",
                data.len()
            )));
        }
        let nals = split_annexb(data);
        if nals.is_empty() {
            return Err(CodecError::Decode("no NAL unit in the access unit".into()));
        }
        let mut has_slice = false;
        for nal in &nals {
            match nal_type(nal) {
                Some(NAL_SPS) => {
                    let (width, height) = sps_size(nal)?;
                    if width > MAX_WIDTH || height > MAX_HEIGHT {
                        return Err(CodecError::TooLarge { width, height });
                    }
                    self.have_sps = true;
                }
                Some(1..=5) => has_slice = true,
                _ => {}
            }
        }
        if has_slice && !self.have_sps {
            return Err(CodecError::Decode(
                "H.264 slice before any sequence parameter set".into(),
            ));
        }
        let decoded = self
            .decoder
            .decode(data)
            .map_err(|e| CodecError::Decode(e.to_string()))?;
        let Some(yuv) = decoded else {
            return Ok(None);
        };
        let (w, h) = yuv.dimensions();
        let (sy, su, sv) = yuv.strides();
        let (width, height) = (
            u32::try_from(w).unwrap_or(u32::MAX),
            u32::try_from(h).unwrap_or(u32::MAX),
        );
        if width > MAX_WIDTH || height > MAX_HEIGHT {
            return Err(CodecError::TooLarge { width, height });
        }
        if width == 0 || height == 0 {
            return Ok(None);
        }
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let copy =
            |src: &[u8], stride: usize, pw: usize, ph: usize| -> Result<Vec<u8>, CodecError> {
                if stride < pw {
                    return Err(CodecError::Decode(
                        "decoded plane stride below width".into(),
                    ));
                }
                let mut out = Vec::with_capacity(pw * ph);
                for row in 0..ph {
                    let line = src
                        .get(row * stride..row * stride + pw)
                        .ok_or_else(|| CodecError::Decode("decoded plane too short".into()))?;
                    out.extend_from_slice(line);
                }
                Ok(out)
            };
        let y = copy(yuv.y(), sy, w, h)?;
        let u = copy(yuv.u(), su, cw, ch)?;
        let v = copy(yuv.v(), sv, cw, ch)?;
        VideoFrame::from_planes(width, height, y, u, v)
            .map(Some)
            .map_err(|e| CodecError::Decode(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_split() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5,
        ];
        let nals = split_annexb(&data);
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]
        );
        assert!(split_annexb(&[1, 2, 3]).is_empty());
        assert!(split_annexb(&[0, 0, 1]).is_empty());
    }

    #[test]
    fn rbsp_removes_emulation_prevention() {
        assert_eq!(rbsp(&[0, 0, 3, 1, 0, 0, 3, 0]), vec![0, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn sps_of_known_streams() {
        // Baseline 640x480 (40x30 MBs): profile 66, level 30, ue fields hand-coded.
        // sps_id=0 '1', log2_max_frame_num-4=0 '1', poc_type=2 '011', max_ref=1 '010',
        // gaps=0 '0', width_mbs-1=39 '00000101000', height-1=29 '000011110', frame_mbs_only '1',
        // direct_8x8 '1', cropping '0', vui '0', stop '1'.
        let bits = "1 1 011 010 0 00000101000 000011110 1 1 0 0 1";
        let bits: String = bits.split_whitespace().collect();
        let mut bytes = vec![0x67, 66, 0xc0, 30];
        let mut padded = bits.clone();
        while !padded.len().is_multiple_of(8) {
            padded.push('0');
        }
        for chunk in padded.as_bytes().chunks(8) {
            let s = std::str::from_utf8(chunk).unwrap();
            bytes.push(u8::from_str_radix(s, 2).unwrap());
        }
        assert_eq!(sps_size(&bytes).unwrap(), (640, 480));
        assert!(matches!(sps_size(&bytes[..5]), Err(CodecError::Decode(_))));
    }
}
