//! RFC 3264 offer/answer for the video stream of a call (the `m=video` line).
//!
//! The client builds its audio description with [`super::audio`] and appends one
//! `m=video` line built by [`video_offer`], or answers an offered one with
//! [`answer_video`] / [`rejected_video`], and checks the peer's answer with
//! [`accept_video_answer`]. Security (`a=crypto`, `a=fingerprint`, `a=setup`) and
//! ICE attributes are chosen by the caller and passed verbatim in
//! [`VideoOfferParams::attributes`]; [`offered_video_security`] shows the offered
//! ones in the same [`OfferedStream`] shape the audio chooser uses, and
//! [`security_attributes`] turns the chosen [`AnswerSecurity`] into attributes.
//!
//! Codecs are VP8 (RFC 7741) and H.264 (RFC 6184, packetization-mode 1 only,
//! constrained baseline or baseline). RTCP feedback (RFC 4585 `nack`,
//! `nack pli`, RFC 5104 `ccm fir`, `goog-remb`) is intersected per payload type,
//! wildcard `*` included, on every RTP profile (baresip writes `a=rtcp-fb` on
//! plain `RTP/AVP`). Size and frame-rate limits come from `a=imageattr`
//! (RFC 6236, the `recv` sets), VP8 `max-fs`/`max-fr`, H.264 `profile-level-id`
//! levels with `max-fs`/`max-mbps`, and `a=framerate`; they are clamped to
//! [`VideoLimits::MAX`] with saturating arithmetic, so absurd values cannot
//! overflow.

use std::net::SocketAddr;

use super::line::{RtcpLine, empty_media, push_rtcp_and_direction};
use super::security::{AnswerSecurity, OfferedStream, SecurityKind, TransportProfile};
use super::security::{LineKeys, line_attr};
pub use super::security::{security_attributes, security_fits};
use super::{Attribute, Connection, Direction, MediaDescription, SdpError, SessionDescription};

/// RTP clock rate of every video payload format.
pub const VIDEO_CLOCK_RATE: u32 = 90_000;
/// Encoding name of VP8 in SDP.
pub const VP8: &str = "VP8";
/// Encoding name of H.264 in SDP.
pub const H264: &str = "H264";
/// Largest frame width accepted or requested anywhere.
pub const MAX_WIDTH: u32 = 4096;
/// Largest frame height accepted or requested anywhere.
pub const MAX_HEIGHT: u32 = 2304;
/// Highest frame rate accepted or requested anywhere.
pub const MAX_FPS: u32 = 60;
/// Our H.264 `profile-level-id` by default: constrained baseline, level 3.1 (720p at 30 fps).
pub const DEFAULT_H264_PROFILE_LEVEL_ID: &str = "42e01f";
/// Most `a=imageattr` sets looked at per direction (the rest are ignored).
const MAX_IMAGEATTR_SETS: usize = 64;
/// Side of a macroblock in pixels (VP8 and H.264).
const MB: u32 = 16;
/// Frame size limit in macroblocks ([`MAX_WIDTH`] x [`MAX_HEIGHT`]).
const MAX_FS: u64 = (MAX_WIDTH / MB) as u64 * (MAX_HEIGHT / MB) as u64;

/// One video codec we offer or accept, with our payload type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VideoCodec {
    /// Encoding name: `VP8` or `H264` (others are never matched).
    pub kind_name: String,
    /// Our RTP payload type (dynamic, 96..=127 normally).
    pub payload_type: u8,
    /// Our `a=fmtp` parameters (for VP8, `max-fs`/`max-fr` are added from the limits when absent).
    pub fmtp: Option<String>,
}

impl VideoCodec {
    /// VP8 under payload type `pt`, without fmtp.
    pub fn vp8(pt: u8) -> Self {
        VideoCodec {
            kind_name: VP8.to_owned(),
            payload_type: pt,
            fmtp: None,
        }
    }

    /// H.264 constrained baseline level 3.1, packetization-mode 1, under payload type `pt`.
    pub fn h264(pt: u8) -> Self {
        VideoCodec {
            kind_name: H264.to_owned(),
            payload_type: pt,
            fmtp: Some(format!(
                "profile-level-id={DEFAULT_H264_PROFILE_LEVEL_ID};packetization-mode=1"
            )),
        }
    }

    /// The codec family, if it is one we know (`VP8`/`H264`, case-insensitive).
    fn family(&self) -> Option<Family> {
        Family::from_name(&self.kind_name)
    }
}

/// Our default video codecs: VP8 on 96, H.264 on 97 (no clash with the audio payload types).
pub fn default_video_codecs() -> Vec<VideoCodec> {
    vec![VideoCodec::vp8(96), VideoCodec::h264(97)]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Vp8,
    H264,
}

impl Family {
    fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case(VP8) {
            Some(Family::Vp8)
        } else if name.eq_ignore_ascii_case(H264) {
            Some(Family::H264)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::Vp8 => VP8,
            Family::H264 => H264,
        }
    }
}

/// RTCP feedback messages (RFC 4585 / RFC 5104 / REMB) used on a video stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VideoFeedback {
    /// Generic NACK (`a=rtcp-fb:pt nack`).
    pub nack: bool,
    /// Picture loss indication (`a=rtcp-fb:pt nack pli`).
    pub pli: bool,
    /// Full intra request (`a=rtcp-fb:pt ccm fir`).
    pub fir: bool,
    /// Receiver estimated maximum bitrate (`a=rtcp-fb:pt goog-remb`).
    pub remb: bool,
}

impl VideoFeedback {
    /// Every feedback message on.
    pub const ALL: VideoFeedback = VideoFeedback {
        nack: true,
        pli: true,
        fir: true,
        remb: true,
    };

    /// What both `self` and `other` have.
    pub fn intersect(self, other: VideoFeedback) -> VideoFeedback {
        VideoFeedback {
            nack: self.nack && other.nack,
            pli: self.pli && other.pli,
            fir: self.fir && other.fir,
            remb: self.remb && other.remb,
        }
    }

    /// Whether no feedback message is on.
    pub fn is_empty(self) -> bool {
        self == VideoFeedback::default()
    }

    /// The feedback the `a=rtcp-fb` lines of `media` declare for payload type `pt` (wildcard `*` lines included).
    pub fn from_media(media: &MediaDescription, pt: u8) -> VideoFeedback {
        let mut fb = VideoFeedback::default();
        for value in media
            .attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("rtcp-fb"))
            .filter_map(|a| a.value.as_deref())
        {
            let mut words = value.split_ascii_whitespace();
            let applies = match words.next() {
                Some("*") => true,
                Some(p) => p.parse::<u8>().ok() == Some(pt),
                None => false,
            };
            if !applies {
                continue;
            }
            let kind = words.next().map(str::to_ascii_lowercase);
            let param = words.next().map(str::to_ascii_lowercase);
            match (kind.as_deref(), param.as_deref()) {
                (Some("nack"), None) => fb.nack = true,
                (Some("nack"), Some("pli")) => fb.pli = true,
                (Some("ccm"), Some("fir")) => fb.fir = true,
                (Some("goog-remb"), _) => fb.remb = true,
                _ => {}
            }
        }
        fb
    }

    /// The `a=rtcp-fb` attributes for payload type token `pt` (a number or `*`).
    pub fn attributes(self, pt: &str) -> Vec<Attribute> {
        let mut out = Vec::new();
        if self.nack {
            out.push(Attribute::new("rtcp-fb", format!("{pt} nack")));
        }
        if self.pli {
            out.push(Attribute::new("rtcp-fb", format!("{pt} nack pli")));
        }
        if self.fir {
            out.push(Attribute::new("rtcp-fb", format!("{pt} ccm fir")));
        }
        if self.remb {
            out.push(Attribute::new("rtcp-fb", format!("{pt} goog-remb")));
        }
        out
    }
}

/// Largest picture size and frame rate for one direction of a video stream.
///
/// Always within 16x16@1 ..= [`VideoLimits::MAX`] when built by [`VideoLimits::new`]
/// or derived from SDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VideoLimits {
    /// Largest width in pixels.
    pub max_width: u32,
    /// Largest height in pixels.
    pub max_height: u32,
    /// Highest frame rate in frames per second.
    pub max_fps: u32,
}

impl Default for VideoLimits {
    /// 1280x720 at 30 fps.
    fn default() -> Self {
        VideoLimits {
            max_width: 1280,
            max_height: 720,
            max_fps: 30,
        }
    }
}

impl VideoLimits {
    /// The hard ceiling: 4096x2304 at 60 fps.
    pub const MAX: VideoLimits = VideoLimits {
        max_width: MAX_WIDTH,
        max_height: MAX_HEIGHT,
        max_fps: MAX_FPS,
    };

    /// Limits clamped to 16x16@1 ..= [`VideoLimits::MAX`].
    pub fn new(max_width: u32, max_height: u32, max_fps: u32) -> Self {
        VideoLimits {
            max_width: max_width.clamp(MB, MAX_WIDTH),
            max_height: max_height.clamp(MB, MAX_HEIGHT),
            max_fps: max_fps.clamp(1, MAX_FPS),
        }
    }

    /// The same limits clamped to 16x16@1 ..= [`VideoLimits::MAX`].
    pub fn clamped(self) -> Self {
        VideoLimits::new(self.max_width, self.max_height, self.max_fps)
    }

    /// The tighter of both in every dimension.
    pub fn intersect(self, other: VideoLimits) -> Self {
        VideoLimits::new(
            self.max_width.min(other.max_width),
            self.max_height.min(other.max_height),
            self.max_fps.min(other.max_fps),
        )
    }

    /// Frame size in 16x16 macroblocks (`max-fs` of RFC 7741 / RFC 6184).
    pub fn frame_macroblocks(self) -> u32 {
        self.max_width.div_ceil(MB) * self.max_height.div_ceil(MB)
    }

    /// The largest 16:9 box (in pixels, multiples of 16) holding at most `max_fs`
    /// macroblocks, clamped to [`MAX_WIDTH`] x [`MAX_HEIGHT`]; `None` for 0.
    ///
    /// A `max-fs` constrains the area; the box is what a sender scales its frames into
    /// (3600 gives 1280x720, 1620 gives 848x480).
    pub fn box_for_macroblocks(max_fs: u64) -> Option<(u32, u32)> {
        if max_fs == 0 {
            return None;
        }
        let fs = max_fs.min(MAX_FS);
        let max_w_mb = u64::from(MAX_WIDTH / MB);
        let max_h_mb = u64::from(MAX_HEIGHT / MB);
        // Width of a 16:9 box of area fs, at least 1, then the height the area leaves.
        let w_mb = (fs * 16 / 9).isqrt().clamp(1, max_w_mb);
        let h_mb = (fs / w_mb).clamp(1, max_h_mb);
        // Both are at most 256 here: the conversions cannot fail.
        let w = u32::try_from(w_mb).unwrap_or(MAX_WIDTH / MB) * MB;
        let h = u32::try_from(h_mb).unwrap_or(MAX_HEIGHT / MB) * MB;
        Some((w, h))
    }

    /// The `a=imageattr` value announcing these limits as what we receive on `pt`.
    fn imageattr_recv(self, pt: &str) -> String {
        format!(
            "{pt} recv [x=[{MB}:{}],y=[{MB}:{}]]",
            self.max_width, self.max_height
        )
    }
}

/// What one SDP source says about the video a receiver takes (each part optional).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Constraint {
    /// An explicit largest size in pixels (`a=imageattr`).
    size: Option<(u32, u32)>,
    /// Largest frame in macroblocks (`max-fs`, H.264 level).
    max_fs: Option<u64>,
    /// Largest macroblock rate (`max-mbps`, H.264 level).
    max_mbps: Option<u64>,
    /// Largest frame rate (`max-fr`, `a=framerate`).
    fps: Option<u32>,
}

impl Constraint {
    /// Both constraints at once (the tighter value of each part).
    fn and(self, other: Constraint) -> Constraint {
        fn min<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        let size = match (self.size, other.size) {
            (Some((w1, h1)), Some((w2, h2))) => Some((w1.min(w2), h1.min(h2))),
            (a, b) => a.or(b),
        };
        Constraint {
            size,
            max_fs: min(self.max_fs, other.max_fs),
            max_mbps: min(self.max_mbps, other.max_mbps),
            fps: min(self.fps, other.fps),
        }
    }

    /// The limits this amounts to: the explicit size (else the 16:9 box of `max_fs`, else
    /// the 1280x720 default) shrunk to `max_fs` keeping its aspect; the explicit frame rate
    /// (else 30) lowered to what `max_mbps` allows at that size; all clamped.
    fn resolve(self) -> VideoLimits {
        let default = VideoLimits::default();
        let (w, h) = match (self.size, self.max_fs) {
            (Some(size), _) => size,
            (None, Some(fs)) => VideoLimits::box_for_macroblocks(fs)
                .unwrap_or((default.max_width, default.max_height)),
            (None, None) => (default.max_width, default.max_height),
        };
        let (mut w, mut h) = (w.clamp(MB, MAX_WIDTH), h.clamp(MB, MAX_HEIGHT));
        if let Some(fs) = self.max_fs {
            (w, h) = fit_area(w, h, fs);
        }
        let mut fps = self.fps.unwrap_or(default.max_fps);
        if let Some(mbps) = self.max_mbps {
            let frame = u64::from(w.div_ceil(MB)) * u64::from(h.div_ceil(MB));
            fps = fps.min(sat_u32(mbps / frame.max(1)));
        }
        VideoLimits::new(w, h, fps)
    }
}

/// Macroblocks of a `w` x `h` frame.
fn macroblocks(w: u32, h: u32) -> u64 {
    u64::from(w.div_ceil(MB)) * u64::from(h.div_ceil(MB))
}

/// Shrinks `w` x `h` (already within the maximum) to at most `max_fs` macroblocks, keeping the
/// aspect ratio, and each side to `sqrt(8 * max_fs)` macroblocks (RFC 7741 §6.1, RFC 6184 §8.1).
fn fit_area(w: u32, h: u32, max_fs: u64) -> (u32, u32) {
    let fs = max_fs.clamp(1, MAX_FS);
    let (mut w, mut h) = (w.max(MB), h.max(MB));
    let area = macroblocks(w, h);
    if area > fs {
        // Both sides are at most 4096 and fs/area < 1: the float results are small and exact enough.
        let scale = (fs as f64 / area as f64).sqrt();
        let shrink = |v: u32| ((f64::from(v) * scale / f64::from(MB)).floor() as u32).max(1) * MB;
        (w, h) = (shrink(w), shrink(h));
        // Rounding may leave it a macroblock row or column too large: trim (bounded by the sizes).
        while macroblocks(w, h) > fs && (w > MB || h > MB) {
            if w >= h {
                w -= MB;
            } else {
                h -= MB;
            }
        }
    }
    let side = u32::try_from((8 * fs).isqrt())
        .unwrap_or(u32::MAX)
        .saturating_mul(MB);
    (w.min(side), h.min(side))
}

/// Parses a decimal number, saturating at `u64::MAX` for absurdly long digit strings.
fn parse_saturating(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// A saturating u64 as u32.
fn sat_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// `key=value` parameters of an fmtp line (keys lowercased, values trimmed).
fn fmtp_params(fmtp: &str) -> impl Iterator<Item = (String, &str)> {
    fmtp.split(';').filter_map(|p| {
        let (k, v) = p.split_once('=')?;
        Some((k.trim().to_ascii_lowercase(), v.trim()))
    })
}

fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp_params(fmtp).find(|(k, _)| k == key).map(|(_, v)| v)
}

/// VP8 `max-fs`/`max-fr` (RFC 7741 §6.1); 0 is ignored.
fn vp8_constraint(fmtp: Option<&str>) -> Constraint {
    let Some(fmtp) = fmtp else {
        return Constraint::default();
    };
    Constraint {
        max_fs: fmtp_param(fmtp, "max-fs")
            .and_then(parse_saturating)
            .filter(|&f| f > 0),
        fps: fmtp_param(fmtp, "max-fr")
            .and_then(parse_saturating)
            .filter(|&f| f > 0)
            .map(sat_u32),
        ..Constraint::default()
    }
}

/// An H.264 `profile-level-id` (RFC 6184 §8.1): profile_idc, profile-iop, level_idc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct H264ProfileLevel {
    /// `profile_idc` (66 baseline, 77 main, 88 extended, 100 high, ...).
    pub profile_idc: u8,
    /// The constraint_set flags byte (`profile-iop`).
    pub profile_iop: u8,
    /// `level_idc` (31 = level 3.1; 11 with constraint_set3 = level 1b in baseline/main/extended; 9 = 1b).
    pub level_idc: u8,
}

/// H.264 levels (Table A-1): level_idc, MaxMBPS, MaxFS; in increasing order, 1b as idc 9.
const H264_LEVELS: &[(u8, u64, u64)] = &[
    (10, 1_485, 99),
    (9, 1_485, 99),
    (11, 3_000, 396),
    (12, 6_000, 396),
    (13, 11_880, 396),
    (20, 11_880, 396),
    (21, 19_800, 792),
    (22, 20_250, 1_620),
    (30, 40_500, 1_620),
    (31, 108_000, 3_600),
    (32, 216_000, 5_120),
    (40, 245_760, 8_192),
    (41, 245_760, 8_192),
    (42, 522_240, 8_704),
    (50, 589_824, 22_080),
    (51, 983_040, 36_864),
    (52, 2_073_600, 36_864),
    (60, 4_177_920, 139_264),
    (61, 8_355_840, 139_264),
    (62, 16_711_680, 139_264),
];

impl H264ProfileLevel {
    /// Parses the six hex digits of a `profile-level-id` value.
    pub fn parse(value: &str) -> Option<Self> {
        let v = value.trim();
        if v.len() != 6 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let byte = |i: usize| v.get(i..i + 2).and_then(|s| u8::from_str_radix(s, 16).ok());
        Some(H264ProfileLevel {
            profile_idc: byte(0)?,
            profile_iop: byte(2)?,
            level_idc: byte(4)?,
        })
    }

    /// Whether a constrained-baseline stream (what we send) is decodable under this profile:
    /// constrained baseline (`42e0xx`, `42c0xx`, `4d8xxx`, `58cxxx`) or baseline (`4280xx`, `4200xx`).
    pub fn accepts_constrained_baseline(self) -> bool {
        let iop = self.profile_iop;
        match self.profile_idc {
            0x42 => true,
            // Main with constraint_set0, extended with constraint_set0: decodable as baseline.
            0x4d | 0x58 => iop & 0x80 != 0,
            _ => false,
        }
    }

    /// Whether the profile is constrained baseline proper (`42e0xx`, `42c0xx`, `4d8xxx`, `58cxxx`).
    pub fn is_constrained_baseline(self) -> bool {
        let iop = self.profile_iop;
        match self.profile_idc {
            0x42 => iop & 0x40 != 0,
            0x4d => iop & 0x80 != 0,
            0x58 => iop & 0xc0 == 0xc0,
            _ => false,
        }
    }

    /// Whether this is level 1b (`level_idc` 9, or 11 with constraint_set3 in baseline/main/extended).
    fn is_level_1b(self) -> bool {
        self.level_idc == 9
            || (self.level_idc == 11
                && self.profile_iop & 0x10 != 0
                && matches!(self.profile_idc, 0x42 | 0x4d | 0x58))
    }

    /// Position of the level in [`H264_LEVELS`] (unknown idcs round down to the level below).
    fn level_rank(self) -> usize {
        if self.is_level_1b() {
            return 1;
        }
        H264_LEVELS
            .iter()
            .enumerate()
            .filter(|(_, (idc, ..))| *idc != 9 && *idc <= self.level_idc)
            .map(|(i, _)| i)
            .next_back()
            .unwrap_or(0)
    }

    /// (MaxMBPS, MaxFS) of the level.
    pub fn level_limits(self) -> (u64, u64) {
        H264_LEVELS
            .get(self.level_rank())
            .map_or((1_485, 99), |&(_, mbps, fs)| (mbps, fs))
    }

    /// The same profile with the level of `other`.
    fn with_level_of(self, other: H264ProfileLevel) -> Self {
        let mut out = self;
        if other.is_level_1b() {
            // 1b is written as idc 11 + constraint_set3 in baseline/main/extended, idc 9 elsewhere.
            if matches!(self.profile_idc, 0x42 | 0x4d | 0x58) {
                out.level_idc = 11;
                out.profile_iop |= 0x10;
            } else {
                out.level_idc = 9;
            }
        } else {
            out.level_idc = other.level_idc;
            if self.is_level_1b() && self.level_idc == 11 {
                out.profile_iop &= !0x10;
            }
        }
        out
    }
}

impl std::fmt::Display for H264ProfileLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02x}{:02x}{:02x}",
            self.profile_idc, self.profile_iop, self.level_idc
        )
    }
}

/// The H.264 parameters that matter for negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct H264Params {
    profile: Option<H264ProfileLevel>,
    packetization_mode: u64,
    level_asymmetry: bool,
    max_fs: Option<u64>,
    max_mbps: Option<u64>,
}

impl H264Params {
    fn parse(fmtp: Option<&str>) -> Self {
        let fmtp = fmtp.unwrap_or_default();
        H264Params {
            profile: fmtp_param(fmtp, "profile-level-id").and_then(H264ProfileLevel::parse),
            packetization_mode: fmtp_param(fmtp, "packetization-mode")
                .and_then(parse_saturating)
                .unwrap_or(0),
            level_asymmetry: fmtp_param(fmtp, "level-asymmetry-allowed")
                .is_some_and(|v| v.trim() == "1"),
            max_fs: fmtp_param(fmtp, "max-fs").and_then(parse_saturating),
            max_mbps: fmtp_param(fmtp, "max-mbps").and_then(parse_saturating),
        }
    }

    /// Whether we can exchange our constrained baseline, packetization-mode 1 stream with this format.
    /// A missing `profile-level-id` (baseline by default) is accepted.
    fn compatible(&self) -> bool {
        self.packetization_mode == 1
            && self
                .profile
                .is_none_or(H264ProfileLevel::accepts_constrained_baseline)
    }

    /// Whether this is exactly our kind of stream: mode 1, constrained baseline.
    fn is_constrained_baseline(&self) -> bool {
        self.compatible()
            && self
                .profile
                .is_some_and(H264ProfileLevel::is_constrained_baseline)
    }

    /// The size/rate the receiver of these parameters can take. Without a
    /// `profile-level-id` only `max-fs`/`max-mbps` constrain (lenient: RFC 6184's
    /// default would be level 1, which no real peer means).
    fn constraint(&self) -> Constraint {
        let level = self.profile.map(H264ProfileLevel::level_limits);
        // max-fs / max-mbps only raise what the level allows (RFC 6184 §8.1).
        let raise = |level: Option<u64>, param: Option<u64>| match (level, param) {
            (Some(l), Some(p)) => Some(l.max(p)),
            (l, p) => l.or(p),
        };
        Constraint {
            max_fs: raise(level.map(|(_, fs)| fs), self.max_fs).filter(|&f| f > 0),
            max_mbps: raise(level.map(|(mbps, _)| mbps), self.max_mbps).filter(|&m| m > 0),
            ..Constraint::default()
        }
    }
}

/// One `a=imageattr` direction: `*` (anything) or a list of sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageAttrSets {
    /// `*`: any size.
    Any,
    /// Explicit sets, each reduced to its largest width and height (pixels, saturated to u32).
    Sets(Vec<(u32, u32)>),
}

/// A parsed `a=imageattr` value (RFC 6236 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageAttr {
    /// The payload type, `None` for `*`.
    pub payload_type: Option<u8>,
    /// The `send` direction, if present.
    pub send: Option<ImageAttrSets>,
    /// The `recv` direction, if present.
    pub recv: Option<ImageAttrSets>,
}

impl ImageAttr {
    /// Parses an `a=imageattr` value; `None` when it is malformed.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let (pt, mut rest) = value.split_once(|c: char| c.is_ascii_whitespace())?;
        let payload_type = match pt {
            "*" => None,
            p => Some(p.parse::<u8>().ok().filter(|p| *p <= 127)?),
        };
        let mut send = None;
        let mut recv = None;
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            let (dir, after) = rest.split_at(rest.find(|c: char| c.is_ascii_whitespace())?);
            let (sets, remaining) = parse_attr_list(after.trim_start())?;
            match dir.to_ascii_lowercase().as_str() {
                "send" if send.is_none() => send = Some(sets),
                "recv" if recv.is_none() => recv = Some(sets),
                _ => return None,
            }
            rest = remaining;
        }
        if send.is_none() && recv.is_none() {
            return None;
        }
        Some(ImageAttr {
            payload_type,
            send,
            recv,
        })
    }
}

/// Parses `*` or a run of `[...]` sets at the start of `s`; returns the rest.
fn parse_attr_list(s: &str) -> Option<(ImageAttrSets, &str)> {
    if let Some(rest) = s.strip_prefix('*') {
        return Some((ImageAttrSets::Any, rest));
    }
    let mut sets = Vec::new();
    let mut rest = s;
    while rest.starts_with('[') {
        let end = matching_bracket(rest)?;
        let body = rest.get(1..end)?;
        if let Some(set) = parse_set(body)
            && sets.len() < MAX_IMAGEATTR_SETS
        {
            sets.push(set);
        }
        rest = rest.get(end + 1..)?.trim_start();
    }
    if sets.is_empty() {
        return None;
    }
    Some((ImageAttrSets::Sets(sets), rest))
}

/// Index of the `]` closing the `[` at the start of `s`.
fn matching_bracket(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits `s` at commas outside brackets.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(s.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(s.get(start..).unwrap_or_default());
    parts
}

/// One set `x=...,y=...[,sar=..,par=..,q=..]`: its largest x and y.
fn parse_set(body: &str) -> Option<(u32, u32)> {
    let mut x = None;
    let mut y = None;
    for part in split_top_level(body) {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "x" => x = Some(range_max(v.trim())?),
            "y" => y = Some(range_max(v.trim())?),
            _ => {}
        }
    }
    Some((x?, y?))
}

/// The largest value of an xyrange: `N`, `[a:b]`, `[a:step:b]` or `[a,b,c]`; 0 is invalid.
fn range_max(v: &str) -> Option<u32> {
    let max = match v.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        Some(inner) if inner.contains(':') => {
            let parts: Vec<&str> = inner.split(':').collect();
            if !(2..=3).contains(&parts.len()) {
                return None;
            }
            let nums: Option<Vec<u64>> = parts.iter().map(|p| parse_saturating(p)).collect();
            let nums = nums?;
            let (first, last) = (*nums.first()?, *nums.last()?);
            if first > last {
                return None;
            }
            last
        }
        Some(inner) => inner
            .split(',')
            .map(parse_saturating)
            .collect::<Option<Vec<u64>>>()?
            .into_iter()
            .max()?,
        None => parse_saturating(v)?,
    };
    (max > 0).then_some(sat_u32(max))
}

/// The largest size the `recv` sets of `media`'s `a=imageattr` for `pt` allow
/// (a line for `pt` wins over a `*` line; the set with the largest clamped area).
fn imageattr_constraint(media: &MediaDescription, pt: u8) -> Constraint {
    let parsed: Vec<ImageAttr> = media
        .attributes
        .iter()
        .filter(|a| a.name.eq_ignore_ascii_case("imageattr"))
        .filter_map(|a| a.value.as_deref())
        .filter_map(ImageAttr::parse)
        .collect();
    let chosen = parsed
        .iter()
        .find(|a| a.payload_type == Some(pt))
        .or_else(|| parsed.iter().find(|a| a.payload_type.is_none()));
    let Some(ImageAttrSets::Sets(sets)) = chosen.and_then(|a| a.recv.as_ref()) else {
        return Constraint::default();
    };
    let size = sets
        .iter()
        .map(|&(w, h)| (w.min(MAX_WIDTH), h.min(MAX_HEIGHT)))
        .max_by_key(|&(w, h)| u64::from(w) * u64::from(h));
    Constraint {
        size,
        ..Constraint::default()
    }
}

/// `a=framerate` (RFC 8866 §6.8), a recommendation for the sender; integer or decimal.
fn framerate_constraint(media: &MediaDescription) -> Constraint {
    let fps = media
        .attributes
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case("framerate"))
        .and_then(|a| a.value.as_deref())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f >= 0.5)
        // Clamped first: the cast is exact and cannot saturate.
        .map(|f| f.round().min(f64::from(MAX_FPS)) as u32);
    Constraint {
        fps,
        ..Constraint::default()
    }
}

/// What the side that wrote `media` lets us send with format `pt` of `family` (fmtp `fmtp`).
fn peer_limits(
    media: &MediaDescription,
    family: Family,
    pt: u8,
    fmtp: Option<&str>,
    extra: Constraint,
) -> VideoLimits {
    let codec = match family {
        Family::Vp8 => vp8_constraint(fmtp),
        Family::H264 => H264Params::parse(fmtp).constraint(),
    };
    codec
        .and(imageattr_constraint(media, pt))
        .and(framerate_constraint(media))
        .and(extra)
        .resolve()
}

/// What we put in a video offer (and, for codecs/direction/feedback/limits, in answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoOfferParams {
    /// Our codecs in preference order with our payload types.
    pub codecs: Vec<VideoCodec>,
    /// Our RTP port (0 = a disabled stream).
    pub port: u16,
    /// Transport profile of the offer (answers use the offered one).
    pub profile: TransportProfile,
    /// The direction we want, from our point of view.
    pub direction: Direction,
    /// Feedback messages we support.
    pub feedback: VideoFeedback,
    /// Largest video we want to receive (written as `a=imageattr` recv, VP8 `max-fs`/`max-fr`, `a=framerate`).
    pub recv_limits: VideoLimits,
    /// Security and ICE attributes (`a=crypto`, `a=fingerprint`, `a=setup`, `a=ice-ufrag`, `a=candidate`, ...), added verbatim.
    pub attributes: Vec<Attribute>,
    /// Whether we offer/accept RTP/RTCP multiplexing (RFC 5761).
    pub rtcp_mux: bool,
    /// Our RTCP port for `a=rtcp` (RFC 3605) when not RTP port + 1 (offers always, answers only when not muxed).
    pub rtcp_port: Option<u16>,
    /// Bandwidth we want to receive at most, written as `b=AS` and `b=TIAS`.
    pub max_recv_bitrate_bps: Option<u32>,
}

impl VideoOfferParams {
    /// A plain `RTP/AVP` sendrecv offer of `codecs` on `port` with all feedback, `rtcp-mux` and default limits.
    pub fn new(codecs: Vec<VideoCodec>, port: u16) -> Self {
        VideoOfferParams {
            codecs,
            port,
            profile: TransportProfile::RtpAvp,
            direction: Direction::SendRecv,
            feedback: VideoFeedback::ALL,
            recv_limits: VideoLimits::default(),
            attributes: Vec::new(),
            rtcp_mux: true,
            rtcp_port: None,
            max_recv_bitrate_bps: None,
        }
    }
}

/// One negotiated video codec with the payload type it travels under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NegotiatedVideoCodec {
    /// `VP8` or `H264` (our spelling, whatever case the peer used).
    pub kind_name: String,
    /// RTP payload type.
    pub payload_type: u8,
    /// fmtp: the peer's for the send codec, ours for receive codecs.
    pub fmtp: Option<String>,
}

/// The outcome of a video offer/answer, from our point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedVideo {
    /// What we send (numbered as the peer expects), `None` when our direction does not send.
    pub send: Option<NegotiatedVideoCodec>,
    /// Payload types we accept, first the preferred.
    pub recv: Vec<NegotiatedVideoCodec>,
    /// Where to send RTP; `None` for `c=0.0.0.0`/`::` (legacy hold).
    pub remote_rtp: Option<SocketAddr>,
    /// Where to send RTCP: the RTP address when muxed, `a=rtcp` (RFC 3605), else RTP port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    /// Whether RTP and RTCP share one port (both agreed).
    pub rtcp_mux: bool,
    /// Our direction after intersecting with the peer's.
    pub direction: Direction,
    /// The peer's direction as it declared it (`c=0.0.0.0` counts as not receiving).
    pub remote_direction: Direction,
    /// Feedback both sides declared for the send codec (for the first receive codec when we do not send).
    pub feedback: VideoFeedback,
    /// The largest video the peer lets us send with the send codec.
    pub peer_limits: VideoLimits,
    /// The peer's `b=TIAS` (or `b=AS` x 1000) for this stream, in bit/s.
    pub peer_max_bitrate_bps: Option<u32>,
    /// Transport profile of the stream (the offered one).
    pub profile: TransportProfile,
    /// Agreed security: from our attributes when answering, from the answer when offering.
    pub security: SecurityKind,
    /// The peer's `a=crypto` values on this m-line (all offered ones, or the answered one).
    pub crypto: Vec<String>,
    /// The peer's `a=fingerprint` (media level, else session level when known).
    pub fingerprint: Option<String>,
    /// The peer's `a=setup` (media level, else session level when known).
    pub setup: Option<String>,
}

/// Index of the first `m=video` line of `sdp`.
pub fn video_index(sdp: &SessionDescription) -> Option<usize> {
    sdp.media
        .iter()
        .position(|m| m.media.eq_ignore_ascii_case("video"))
}

/// Our `a=fmtp` for `codec` in an offer: VP8 gets `max-fs`/`max-fr` from `limits` unless given.
fn offer_fmtp(codec: &VideoCodec, family: Family, limits: VideoLimits) -> Option<String> {
    match family {
        Family::Vp8 => {
            let given = codec.fmtp.as_deref().map(str::trim).unwrap_or_default();
            if fmtp_param(given, "max-fs").is_some() || fmtp_param(given, "max-fr").is_some() {
                return Some(given.to_owned());
            }
            let ours = format!(
                "max-fs={};max-fr={}",
                limits.frame_macroblocks(),
                limits.max_fps
            );
            Some(if given.is_empty() {
                ours
            } else {
                format!("{given};{ours}")
            })
        }
        Family::H264 => codec
            .fmtp
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    }
}

fn push_bandwidth(m: &mut MediaDescription, bps: Option<u32>) {
    if let Some(bps) = bps.filter(|b| *b > 0) {
        m.bandwidths.push(format!("AS:{}", bps.div_ceil(1000)));
        m.bandwidths.push(format!("TIAS:{bps}"));
    }
}

/// Writes the attributes that follow the formats: limits, caller attributes, RTCP, direction.
fn push_tail(
    m: &mut MediaDescription,
    params: &VideoOfferParams,
    rtcp_mux: bool,
    direction: Direction,
    offering: bool,
) {
    m.attributes.push(Attribute::new(
        "framerate",
        params.recv_limits.clamped().max_fps.to_string(),
    ));
    m.attributes.extend(params.attributes.iter().cloned());
    push_rtcp_and_direction(m, params.rtcp_port, rtcp_mux, direction, offering);
}

/// Our `m=video` offer: formats with rtpmap/fmtp/rtcp-fb/imageattr, `a=framerate`,
/// the caller's attributes verbatim, `a=rtcp`, `a=rtcp-mux` and the direction.
///
/// Codecs other than VP8/H264 and repeated payload types are left out.
pub fn video_offer(params: &VideoOfferParams) -> MediaDescription {
    let mut m = empty_media("video", params.port, params.profile.as_str());
    push_bandwidth(&mut m, params.max_recv_bitrate_bps);
    let limits = params.recv_limits.clamped();
    for codec in &params.codecs {
        let Some(family) = codec.family() else {
            continue;
        };
        let pt = codec.payload_type.to_string();
        if codec.payload_type > 127 || m.formats.contains(&pt) {
            continue;
        }
        m.formats.push(pt.clone());
        m.attributes.push(Attribute::new(
            "rtpmap",
            format!("{pt} {}/{VIDEO_CLOCK_RATE}", family.name()),
        ));
        if let Some(fmtp) = offer_fmtp(codec, family, limits) {
            m.attributes
                .push(Attribute::new("fmtp", format!("{pt} {fmtp}")));
        }
        m.attributes.extend(params.feedback.attributes(&pt));
        m.attributes
            .push(Attribute::new("imageattr", limits.imageattr_recv(&pt)));
    }
    push_tail(&mut m, params, params.rtcp_mux, params.direction, true);
    m
}

/// The port-0 answer rejecting an offered m-line (formats echoed, RFC 3264 §6).
pub fn rejected_video(offered: &MediaDescription) -> MediaDescription {
    let mut m = empty_media(&offered.media, 0, &offered.protocol);
    m.formats = offered.formats.clone();
    m
}

/// The interpreted view of one m=video line.
struct VideoStream<'a> {
    profile: Option<TransportProfile>,
    /// Known video formats: (family, payload type, fmtp), in m= order.
    formats: Vec<(Family, u8, Option<&'a str>)>,
    keys: LineKeys<'a>,
    direction: Direction,
    remote_rtp: Option<SocketAddr>,
    rtcp: RtcpLine,
    max_bitrate_bps: Option<u32>,
    /// Whether the description does ICE (`a=ice-ufrag`): addresses then come from ICE.
    ice: bool,
}

impl<'a> VideoStream<'a> {
    /// The known video formats of `media` (family, payload type, fmtp), in m= order.
    fn formats_of(media: &MediaDescription) -> Vec<(Family, u8, Option<&str>)> {
        media
            .rtpmaps()
            .into_iter()
            .filter(|m| m.clock_rate == VIDEO_CLOCK_RATE)
            .filter_map(|m| {
                let family = Family::from_name(&m.encoding)?;
                Some((family, m.payload_type, media.fmtp(m.payload_type)))
            })
            .collect()
    }

    fn new(
        index: usize,
        media: &'a MediaDescription,
        session_conn: Option<&'a Connection>,
        session_attrs: &'a [Attribute],
    ) -> Result<Self, SdpError> {
        let formats = Self::formats_of(media);
        let explicit = |attrs: &[Attribute]| {
            attrs
                .iter()
                .filter(|a| a.value.is_none())
                .find_map(|a| Direction::from_attribute(&a.name.to_ascii_lowercase()))
        };
        let mut direction = explicit(&media.attributes)
            .or_else(|| explicit(session_attrs))
            .unwrap_or_default();
        let conn = media.connection.as_ref().or(session_conn);
        // With ICE, `c=0.0.0.0` + port 9 only says "no candidate yet" (RFC 8840 §4.2), not hold.
        let ice = line_attr(&media.attributes, session_attrs, "ice-ufrag").is_some();
        let mut remote_rtp = None;
        if media.port != 0 {
            let conn = conn.ok_or(SdpError::MissingConnection { index })?;
            match conn.ip() {
                Some(ip) if ip.is_unspecified() && !ice => {
                    direction = Direction::from_flags(direction.sends(), false);
                }
                Some(ip) if !ip.is_unspecified() => {
                    remote_rtp = Some(SocketAddr::new(ip, media.port));
                }
                _ => {}
            }
        }
        Ok(VideoStream {
            profile: TransportProfile::parse(&media.protocol),
            formats,
            keys: LineKeys::read(&media.attributes, session_attrs),
            direction,
            remote_rtp,
            rtcp: RtcpLine::read(&media.attributes),
            max_bitrate_bps: parse_bandwidth(&media.bandwidths),
            ice,
        })
    }

    fn remote_rtcp(&self, rtcp_mux: bool) -> Option<SocketAddr> {
        self.rtcp.remote(self.remote_rtp, rtcp_mux)
    }
}

/// `b=TIAS:bps` (RFC 3890), else `b=AS:kbps`; 0 and malformed values ignored.
fn parse_bandwidth(lines: &[String]) -> Option<u32> {
    let value = |kind: &str| {
        lines.iter().find_map(|b| {
            let (k, v) = b.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(kind)
                .then(|| parse_saturating(v))
                .flatten()
        })
    };
    value("TIAS")
        .or_else(|| value("AS").map(|kbps| kbps.saturating_mul(1000)))
        .filter(|b| *b > 0)
        .map(sat_u32)
}

/// The security attributes of an offered m-line in the shape the audio chooser takes
/// (`a=fingerprint`/`a=setup` fall back to the session level, as baresip writes them there).
///
/// `None` when `index` is not an RTP m-line.
pub fn offered_video_security(sdp: &SessionDescription, index: usize) -> Option<OfferedStream<'_>> {
    let media = sdp.media.get(index)?;
    let stream = VideoStream::new(index, media, sdp.connection.as_ref(), &sdp.attributes).ok()?;
    let profile = stream.profile?;
    Some(stream.keys.offered(index, profile))
}

/// The security our own attributes declare (checked against what was offered).
fn our_security(
    attrs: &[Attribute],
    offered: &OfferedStream<'_>,
    index: usize,
) -> Result<SecurityKind, SdpError> {
    let chosen = AnswerSecurity::declared_by(attrs);
    if !chosen.fits(offered) {
        return Err(SdpError::Unacceptable {
            index,
            reason: "our video security attributes do not fit the offered profile",
        });
    }
    Ok(chosen.kind())
}

/// An answered format we offered.
struct Answered<'a> {
    family: Family,
    /// The answer's payload type and fmtp.
    pt: u8,
    fmtp: Option<&'a str>,
    /// Our payload type and fmtp for it.
    our_pt: u8,
    our_fmtp: Option<&'a str>,
}

/// One codec in common: our codec, the offered payload type and fmtp, and the fmtp we answer with.
struct Common<'c, 'o> {
    ours: &'c VideoCodec,
    family: Family,
    pt: u8,
    offered_fmtp: Option<&'o str>,
    answer_fmtp: Option<String>,
}

/// Our H.264 fmtp answering `offered`: the offered profile at a level both can do, mode 1.
fn h264_answer_fmtp(ours: &VideoCodec, offered: &H264Params) -> String {
    let mine = H264Params::parse(ours.fmtp.as_deref());
    let our_pl = mine
        .profile
        .or_else(|| H264ProfileLevel::parse(DEFAULT_H264_PROFILE_LEVEL_ID));
    let asymmetric = offered.level_asymmetry && mine.level_asymmetry;
    let profile = match (offered.profile, our_pl) {
        // Their profile; our level when levels may differ, else the lower of both.
        (Some(theirs), Some(mine_pl))
            if asymmetric || mine_pl.level_rank() < theirs.level_rank() =>
        {
            Some(theirs.with_level_of(mine_pl))
        }
        (Some(theirs), _) => Some(theirs),
        (None, mine_pl) => mine_pl,
    };
    let mut out = Vec::new();
    if let Some(p) = profile {
        out.push(format!("profile-level-id={p}"));
    }
    out.push("packetization-mode=1".to_owned());
    if asymmetric {
        out.push("level-asymmetry-allowed=1".to_owned());
    }
    out.join(";")
}

/// Answers one offered `m=video` line (RFC 3264 §6).
///
/// `Ok(None)`: reject it (build the port-0 line with [`rejected_video`]): port 0, not an RTP
/// profile, or no codec in common (VP8; H.264 only with packetization-mode 1 and a
/// constrained-baseline-compatible profile). Otherwise our line on `ours.port` with the
/// offered profile, the common codecs in OUR preference order under the offered payload
/// types, the feedback both declared, `a=imageattr` when the offer had one, `ours.attributes`
/// verbatim, `rtcp-mux` when both,
/// and our direction (the offered one reversed, limited by `ours.direction`).
/// `ours.profile` is not used. The security `ours.attributes` carry must fit the offered
/// profile ([`security_fits`]), else [`SdpError::Unacceptable`]. Session-level
/// `a=fingerprint`/`a=setup`/direction are not seen: use [`answer_video_in`] for those.
pub fn answer_video(
    offered: &MediaDescription,
    session_conn: Option<&Connection>,
    ours: &VideoOfferParams,
) -> Result<Option<(MediaDescription, NegotiatedVideo)>, SdpError> {
    answer_stream(0, offered, session_conn, &[], ours)
}

/// [`answer_video`] for m-line `index` of a whole offer, honouring session-level
/// `c=`, direction, `a=fingerprint` and `a=setup`. `Ok(None)` also when `index` is not an m-line.
pub fn answer_video_in(
    offer: &SessionDescription,
    index: usize,
    ours: &VideoOfferParams,
) -> Result<Option<(MediaDescription, NegotiatedVideo)>, SdpError> {
    let Some(media) = offer.media.get(index) else {
        return Ok(None);
    };
    answer_stream(
        index,
        media,
        offer.connection.as_ref(),
        &offer.attributes,
        ours,
    )
}

fn answer_stream(
    index: usize,
    offered: &MediaDescription,
    session_conn: Option<&Connection>,
    session_attrs: &[Attribute],
    ours: &VideoOfferParams,
) -> Result<Option<(MediaDescription, NegotiatedVideo)>, SdpError> {
    if offered.port == 0 || !offered.media.eq_ignore_ascii_case("video") {
        return Ok(None);
    }
    let stream = VideoStream::new(index, offered, session_conn, session_attrs)?;
    let Some(profile) = stream.profile else {
        return Ok(None);
    };
    let mut common: Vec<Common<'_, '_>> = Vec::new();
    for codec in &ours.codecs {
        let Some(family) = codec.family() else {
            continue;
        };
        let candidates = stream
            .formats
            .iter()
            .filter(|(f, pt, _)| *f == family && !common.iter().any(|c| c.pt == *pt));
        // H.264: the first constrained-baseline format, else the first compatible one.
        let found = match family {
            Family::Vp8 => candidates.clone().next(),
            Family::H264 => candidates
                .clone()
                .find(|(_, _, fmtp)| H264Params::parse(*fmtp).is_constrained_baseline())
                .or_else(|| {
                    candidates
                        .clone()
                        .find(|(_, _, fmtp)| H264Params::parse(*fmtp).compatible())
                }),
        };
        let Some(&(_, pt, offered_fmtp)) = found else {
            continue;
        };
        let answer_fmtp = match family {
            Family::Vp8 => offer_fmtp(codec, family, ours.recv_limits.clamped()),
            Family::H264 => Some(h264_answer_fmtp(codec, &H264Params::parse(offered_fmtp))),
        };
        common.push(Common {
            ours: codec,
            family,
            pt,
            offered_fmtp,
            answer_fmtp,
        });
    }
    let Some(first) = common.first() else {
        return Ok(None);
    };
    let offered_security = stream.keys.offered(index, profile);
    let security = our_security(&ours.attributes, &offered_security, index)?;

    let remote_direction = stream.direction;
    let mut direction = remote_direction.reverse().intersect(ours.direction);
    if stream.remote_rtp.is_none() && !stream.ice {
        direction = Direction::from_flags(false, direction.receives());
    }
    let rtcp_mux = stream.rtcp.mux && ours.rtcp_mux;

    let mut m = empty_media("video", ours.port, &offered.protocol);
    push_bandwidth(&mut m, ours.max_recv_bitrate_bps);
    let limits = ours.recv_limits.clamped();
    // a=imageattr only in answer to an offer that used it (others may not parse it).
    let image_negotiated = offered
        .attributes
        .iter()
        .any(|a| a.name.eq_ignore_ascii_case("imageattr"));
    for c in &common {
        let pt = c.pt.to_string();
        m.formats.push(pt.clone());
        m.attributes.push(Attribute::new(
            "rtpmap",
            format!("{pt} {}/{VIDEO_CLOCK_RATE}", c.family.name()),
        ));
        if let Some(fmtp) = &c.answer_fmtp {
            m.attributes
                .push(Attribute::new("fmtp", format!("{pt} {fmtp}")));
        }
        let fb = ours
            .feedback
            .intersect(VideoFeedback::from_media(offered, c.pt));
        m.attributes.extend(fb.attributes(&pt));
        if image_negotiated {
            m.attributes
                .push(Attribute::new("imageattr", limits.imageattr_recv(&pt)));
        }
    }
    push_tail(&mut m, ours, rtcp_mux, direction, false);

    let feedback = ours
        .feedback
        .intersect(VideoFeedback::from_media(offered, first.pt));
    let send = direction.sends().then(|| NegotiatedVideoCodec {
        kind_name: first.family.name().to_owned(),
        payload_type: first.pt,
        fmtp: first.offered_fmtp.map(str::to_owned),
    });
    let recv = common
        .iter()
        .map(|c| NegotiatedVideoCodec {
            kind_name: c.family.name().to_owned(),
            payload_type: c.pt,
            fmtp: c.answer_fmtp.clone().or_else(|| c.ours.fmtp.clone()),
        })
        .collect();
    // Without level asymmetry the answered H.264 level binds both directions.
    let answered = match first.family {
        Family::H264 => {
            let ours = H264Params::parse(first.answer_fmtp.as_deref());
            if ours.level_asymmetry {
                Constraint::default()
            } else {
                ours.constraint()
            }
        }
        Family::Vp8 => Constraint::default(),
    };
    let peer = peer_limits(
        offered,
        first.family,
        first.pt,
        first.offered_fmtp,
        answered,
    );
    let (crypto, fingerprint, setup) = stream.keys.to_owned_parts();
    let negotiated = NegotiatedVideo {
        send,
        recv,
        remote_rtp: stream.remote_rtp,
        remote_rtcp: stream.remote_rtcp(rtcp_mux),
        rtcp_mux,
        direction,
        remote_direction,
        feedback,
        peer_limits: peer,
        peer_max_bitrate_bps: stream.max_bitrate_bps,
        profile,
        security,
        crypto,
        fingerprint,
        setup,
    };
    Ok(Some((m, negotiated)))
}

/// Checks the peer's `answer` to our offered `m=video` line (RFC 3264 §5, §6).
///
/// `Ok(None)` when the peer rejected it (port 0). The answer must keep the media type and
/// transport profile, and accept at least one offered codec (H.264 still packetization-mode 1);
/// an `RTP/SAVP(F)` answer needs `a=crypto`, a DTLS one `a=fingerprint`; on `RTP/AVP(F)`
/// with offered keys, an answered `a=crypto` turns SDES on. Session-level answer attributes
/// are not seen: use [`accept_video_answer_in`] for those.
pub fn accept_video_answer(
    our_offer: &MediaDescription,
    answer: &MediaDescription,
    session_conn: Option<&Connection>,
) -> Result<Option<NegotiatedVideo>, SdpError> {
    accept_stream(0, our_offer, answer, session_conn, &[])
}

/// [`accept_video_answer`] for m-line `index` of whole descriptions (session-level `c=`,
/// direction, `a=fingerprint`, `a=setup` honoured).
pub fn accept_video_answer_in(
    offer: &SessionDescription,
    answer: &SessionDescription,
    index: usize,
) -> Result<Option<NegotiatedVideo>, SdpError> {
    let (Some(o), Some(a)) = (offer.media.get(index), answer.media.get(index)) else {
        return Err(SdpError::MediaCountMismatch {
            offer: offer.media.len(),
            answer: answer.media.len(),
        });
    };
    accept_stream(index, o, a, answer.connection.as_ref(), &answer.attributes)
}

fn accept_stream(
    index: usize,
    our_offer: &MediaDescription,
    answer: &MediaDescription,
    session_conn: Option<&Connection>,
    session_attrs: &[Attribute],
) -> Result<Option<NegotiatedVideo>, SdpError> {
    if !our_offer.media.eq_ignore_ascii_case(&answer.media) {
        return Err(SdpError::MediaMismatch { index });
    }
    if answer.port == 0 {
        return Ok(None);
    }
    if our_offer.port == 0 {
        return Err(SdpError::MediaMismatch { index });
    }
    let unacceptable = |reason| SdpError::Unacceptable { index, reason };
    // Our own offer's c= may be at session level: only its formats and attributes matter here.
    let our_formats = VideoStream::formats_of(our_offer);
    let profile = TransportProfile::parse(&our_offer.protocol)
        .ok_or_else(|| unacceptable("we did not offer an RTP profile"))?;
    let theirs = VideoStream::new(index, answer, session_conn, session_attrs)?;
    if theirs.profile != Some(profile) {
        return Err(unacceptable("the answer changed the transport profile"));
    }
    let usable = |family: Family, fmtp: Option<&str>| {
        family != Family::H264 || H264Params::parse(fmtp).compatible()
    };
    // Answered formats we offered, in answer order.
    let mut common: Vec<Answered<'_>> = Vec::new();
    for &(family, pt, fmtp) in &theirs.formats {
        if !usable(family, fmtp) {
            continue;
        }
        // Same payload type first (the normal case), else the first of that family we offered.
        let mine = our_formats
            .iter()
            .filter(|(f, _, of)| *f == family && usable(*f, *of))
            .find(|(_, p, _)| *p == pt)
            .or_else(|| {
                our_formats
                    .iter()
                    .find(|(f, _, of)| *f == family && usable(*f, *of))
            });
        if let Some(&(_, our_pt, our_fmtp)) = mine
            && !common.iter().any(|c| c.pt == pt)
        {
            common.push(Answered {
                family,
                pt,
                fmtp,
                our_pt,
                our_fmtp,
            });
        }
    }
    let Some(first) = common.first() else {
        return Err(SdpError::MediaMismatch { index });
    };
    let (send_family, send_pt, send_fmtp) = (first.family, first.pt, first.fmtp);
    let our_crypto = our_offer
        .attributes
        .iter()
        .any(|a| a.name.eq_ignore_ascii_case("crypto"));
    let security = theirs
        .keys
        .answered_kind(profile, our_crypto)
        .map_err(unacceptable)?;
    let our_direction = our_offer.direction();
    let remote_direction = theirs.direction;
    let mut direction = our_direction.intersect(remote_direction.reverse());
    if theirs.remote_rtp.is_none() && !theirs.ice {
        direction = Direction::from_flags(false, direction.receives());
    }
    let rtcp_mux = RtcpLine::read(&our_offer.attributes).mux && theirs.rtcp.mux;
    let (crypto, fingerprint, setup) = theirs.keys.to_owned_parts();
    let mut recv: Vec<NegotiatedVideoCodec> = Vec::new();
    let mut push = |codec: NegotiatedVideoCodec| {
        if !recv.iter().any(|c| c.payload_type == codec.payload_type) {
            recv.push(codec);
        }
    };
    for &Answered {
        family,
        pt,
        our_pt,
        our_fmtp,
        ..
    } in &common
    {
        push(NegotiatedVideoCodec {
            kind_name: family.name().to_owned(),
            payload_type: our_pt,
            fmtp: our_fmtp.map(str::to_owned),
        });
        // Leniently also the answer's number, unless we offered it for something else.
        let offered_pt = our_offer
            .formats
            .iter()
            .any(|f| f.parse::<u8>().ok() == Some(pt));
        let same_family = our_formats.iter().any(|(f, p, _)| *p == pt && *f == family);
        let clashes = offered_pt && !same_family;
        if !clashes {
            push(NegotiatedVideoCodec {
                kind_name: family.name().to_owned(),
                payload_type: pt,
                fmtp: our_fmtp.map(str::to_owned),
            });
        }
    }
    // Feedback: what we offered for our payload type and what they answered for theirs.
    let our_pt_for_send = first.our_pt;
    let feedback = VideoFeedback::from_media(our_offer, our_pt_for_send)
        .intersect(VideoFeedback::from_media(answer, send_pt));
    Ok(Some(NegotiatedVideo {
        send: direction.sends().then(|| NegotiatedVideoCodec {
            kind_name: send_family.name().to_owned(),
            payload_type: send_pt,
            fmtp: send_fmtp.map(str::to_owned),
        }),
        recv,
        remote_rtp: theirs.remote_rtp,
        remote_rtcp: theirs.remote_rtcp(rtcp_mux),
        rtcp_mux,
        direction,
        remote_direction,
        feedback,
        peer_limits: peer_limits(
            answer,
            send_family,
            send_pt,
            send_fmtp,
            Constraint::default(),
        ),
        peer_max_bitrate_bps: theirs.max_bitrate_bps,
        profile,
        security,
        crypto,
        fingerprint,
        setup,
    }))
}
