//! The video stream of a call: [`VideoOptions`] (source, recording, codecs, limits), the
//! `m=video` line of our offers and answers (`tandem_proto::sdp::video`, RFC 3264 with the
//! audio line first), its own RTP socket or ICE session, the same SRTP policy as the audio
//! (its own SDES keys, the call's DTLS certificate), and the `tandem_video` session started
//! once negotiated, restarted when the peer's parameters change and stopped on downgrade.
//!
//! The application gets [`VideoNotice`]s through [`CallEvent::Video`](crate::CallEvent::Video),
//! the latest decoded remote frame through [`Call::video_frames`](crate::Call::video_frames)
//! and the frames we send through [`Call::local_video_frames`](crate::Call::local_video_frames).

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::BufWriter;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tandem_media::session::{MediaSecurity, MediaSocket};
use tandem_media::srtp::{
    DtlsCertificate, DtlsRole, SdesCrypto, SrtpPolicy, sdes_accept, sdes_answer, sdes_offer,
};
use tandem_proto::sdp::video::{
    self as sdpv, NegotiatedVideo, NegotiatedVideoCodec, VideoCodec, VideoFeedback, VideoLimits,
    VideoOfferParams,
};
use tandem_proto::sdp::{
    AnswerSecurity, Attribute, Connection, Direction, MediaDescription, SecurityKind,
    SessionDescription, TransportProfile, setup_answer,
};
use tandem_video::camera::CameraSource;
use tandem_video::codec::VideoCodecKind;
use tandem_video::frame::VideoFrame;
use tandem_video::session::{
    VideoConfig, VideoControl, VideoEvent, VideoRecvCodec, VideoSendConfig, VideoSession,
    VideoSink, VideoUpdate,
};
use tandem_video::source::{PatternSource, VideoSource, Y4mSource};
use tandem_video::y4m::{Y4mWriter, create_y4m};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::account::SrtpKeying;
use crate::error::{Result, UaError};
use crate::nat::ice::{IceEvent, IceSession};

/// The latest video frame of a stream (`None` before the first one), shared with the app.
pub type FrameReceiver = watch::Receiver<Option<Arc<VideoFrame>>>;

/// The sending side of a [`FrameReceiver`].
pub(crate) type FrameSender = Arc<watch::Sender<Option<Arc<VideoFrame>>>>;

/// Creates the channel of a call's remote or local frames.
pub(crate) fn frame_channel() -> FrameSender {
    Arc::new(watch::channel(None).0)
}

/// Default size and rate of the test pattern (`pattern`).
pub const DEFAULT_PATTERN: (u32, u32, u32) = (320, 240, 15);
/// Default capture size and rate of a camera (`camera`, `camera:<id>`).
pub const DEFAULT_CAMERA: (u32, u32, u32) = (640, 480, 15);
/// Default upper bound of our sending bitrate.
pub const DEFAULT_MAX_BITRATE_BPS: u32 = 1_500_000;
/// Lowest start bitrate we give the encoder (the pattern's frame counter survives from here).
const MIN_START_BITRATE_BPS: u32 = 150_000;
/// Payload bytes per RTP packet (leaves room for IP/UDP/RTP/SRTP headers and ICE/TURN).
const MTU_PAYLOAD: usize = 1200;
/// The frame rate written into a recording's header when nothing better is known.
const DEFAULT_RECORD_FPS: u32 = 15;

/// Where the video we send comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VideoSourceSpec {
    /// The moving test pattern with a frame counter (`tandem_video::source::PatternSource`).
    Pattern {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Frames per second.
        fps: u32,
    },
    /// A YUV4MPEG2 file, looped.
    File(PathBuf),
    /// A camera of this machine (`tandem_video::camera`), captured and scaled to this size.
    Camera {
        /// The camera's id, its name or a fragment of either; `None`: the first camera.
        id: Option<String>,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Frames per second.
        fps: u32,
    },
    /// Nothing: we only receive video.
    None,
}

impl Default for VideoSourceSpec {
    fn default() -> Self {
        let (width, height, fps) = DEFAULT_PATTERN;
        VideoSourceSpec::Pattern { width, height, fps }
    }
}

impl VideoSourceSpec {
    /// True for [`VideoSourceSpec::None`] (receive only).
    pub fn is_none(&self) -> bool {
        matches!(self, VideoSourceSpec::None)
    }

    /// The first camera at [`DEFAULT_CAMERA`]'s size and rate, or the camera `id` names.
    pub fn camera(id: Option<&str>) -> VideoSourceSpec {
        let (width, height, fps) = DEFAULT_CAMERA;
        VideoSourceSpec::Camera {
            id: id.map(str::to_owned),
            width,
            height,
            fps,
        }
    }

    /// Opens the source (`None` for [`VideoSourceSpec::None`]); reading a file's header or
    /// finding and starting a camera blocks briefly (the first camera use initialises GStreamer).
    pub fn open(&self) -> Result<Option<Box<dyn VideoSource>>> {
        match self {
            VideoSourceSpec::Pattern { width, height, fps } => {
                let source = PatternSource::new(*width, *height, *fps).map_err(|e| {
                    UaError::Config(format!("video pattern {width}x{height}@{fps}: {e}"))
                })?;
                Ok(Some(Box::new(source)))
            }
            VideoSourceSpec::File(path) => {
                let source = Y4mSource::open(path, true)
                    .map_err(|e| UaError::Config(format!("video file {}: {e}", path.display())))?;
                Ok(Some(Box::new(source)))
            }
            VideoSourceSpec::Camera {
                id,
                width,
                height,
                fps,
            } => {
                let source = CameraSource::open(id.as_deref(), *width, *height, *fps)
                    .map_err(|e| UaError::Media(format!("camera: {e}")))?;
                Ok(Some(Box::new(source)))
            }
            VideoSourceSpec::None => Ok(None),
        }
    }
}

impl fmt::Display for VideoSourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VideoSourceSpec::Pattern { width, height, fps } => {
                write!(f, "pattern:{width}x{height}@{fps}")
            }
            VideoSourceSpec::File(p) => write!(f, "{}", p.display()),
            VideoSourceSpec::Camera { id: None, .. } => f.write_str("camera"),
            VideoSourceSpec::Camera { id: Some(id), .. } => write!(f, "camera:{id}"),
            VideoSourceSpec::None => f.write_str("none"),
        }
    }
}

/// Parses `WxH` (both 16..=4096 x 16..=2304, even numbers not required).
pub fn parse_video_size(text: &str) -> std::result::Result<(u32, u32), String> {
    let (w, h) = text
        .trim()
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{text:?} is not WIDTHxHEIGHT"))?;
    let w: u32 = w
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: bad width"))?;
    let h: u32 = h
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: bad height"))?;
    let max_w = tandem_video::frame::MAX_WIDTH;
    let max_h = tandem_video::frame::MAX_HEIGHT;
    if !(16..=max_w).contains(&w) || !(16..=max_h).contains(&h) {
        return Err(format!("{text:?}: between 16x16 and {max_w}x{max_h}"));
    }
    Ok((w, h))
}

impl FromStr for VideoSourceSpec {
    type Err = String;

    /// `pattern` (320x240@15), `pattern:WxH@FPS`, `camera` (the first camera, 640x480@15),
    /// `camera:<id or name>`, `none`, or the path of a `.y4m` file.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("none") {
            return Ok(VideoSourceSpec::None);
        }
        if t.eq_ignore_ascii_case("pattern") {
            return Ok(VideoSourceSpec::default());
        }
        if t.eq_ignore_ascii_case("camera") {
            return Ok(VideoSourceSpec::camera(None));
        }
        if let Some(id) = t.strip_prefix("camera:") {
            let id = id.trim();
            if id.is_empty() {
                return Err(format!("{s:?}: camera: needs a camera id or name"));
            }
            return Ok(VideoSourceSpec::camera(Some(id)));
        }
        if let Some(rest) = t.strip_prefix("pattern:") {
            let (size, fps) = rest.split_once('@').unwrap_or((rest, "15"));
            let (width, height) = parse_video_size(size)?;
            let fps: u32 = fps
                .trim()
                .parse()
                .ok()
                .filter(|f| (1..=60).contains(f))
                .ok_or_else(|| format!("{s:?}: the frame rate must be 1 to 60"))?;
            return Ok(VideoSourceSpec::Pattern { width, height, fps });
        }
        if t.is_empty() {
            return Err("an empty video source".into());
        }
        Ok(VideoSourceSpec::File(PathBuf::from(t)))
    }
}

/// What a call does when the peer adds video to it (its re-INVITE or UPDATE offers an
/// `m=video` line while the call has none). The offer is always answered at once, never held
/// waiting for a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum VideoPolicy {
    /// Receive the peer's video (answer `recvonly`) when we can show it, without asking the
    /// user whether to send their camera too.
    Receive,
    /// Receive the peer's video (answer `recvonly`) when we can show it, and ask the user
    /// whether to turn their camera on ([`VideoNotice::PeerOffered`] with `ask`).
    #[default]
    Ask,
    /// Decline the peer's video (port 0); the call goes on with audio.
    Never,
}

impl VideoPolicy {
    /// The policy's name (`receive`, `ask`, `never`).
    pub fn as_str(self) -> &'static str {
        match self {
            VideoPolicy::Receive => "receive",
            VideoPolicy::Ask => "ask",
            VideoPolicy::Never => "never",
        }
    }
}

impl fmt::Display for VideoPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VideoPolicy {
    type Err = String;

    /// `receive` (or `accept`), `ask`, `never` (or `decline`), any case.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "receive" | "accept" => Ok(VideoPolicy::Receive),
            "ask" => Ok(VideoPolicy::Ask),
            "never" | "decline" => Ok(VideoPolicy::Never),
            _ => Err(format!("{s:?} is not a video policy (receive, ask, never)")),
        }
    }
}

/// Video options of a call (`MediaOptions::video`); `None` there means an audio-only call
/// whose peer's video follows the default [`VideoPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoOptions {
    /// Offer (and accept) video from the start of the call. False: the call starts with
    /// audio only, and these options apply once the peer adds video (per `policy`) or
    /// [`Call::set_video`](crate::Call::set_video) turns it on.
    pub offer: bool,
    /// What to do when the peer adds video to the call while it has none.
    pub policy: VideoPolicy,
    /// What we send (default: the 320x240@15 test pattern).
    pub source: VideoSourceSpec,
    /// Write the received video to this Y4M file (frames of another size are scaled to the first).
    pub record: Option<PathBuf>,
    /// Codecs in order of preference (`VP8`, `H264`; default both, VP8 first).
    pub codecs: Vec<String>,
    /// The most we send, in bits per second.
    pub max_bitrate_bps: u32,
    /// The largest picture and rate we want to receive (`a=imageattr`, fmtp limits).
    pub recv_limits: VideoLimits,
}

impl Default for VideoOptions {
    fn default() -> Self {
        VideoOptions {
            offer: true,
            policy: VideoPolicy::default(),
            source: VideoSourceSpec::default(),
            record: None,
            codecs: vec!["VP8".into(), "H264".into()],
            max_bitrate_bps: DEFAULT_MAX_BITRATE_BPS,
            recv_limits: VideoLimits {
                max_width: 1280,
                max_height: 720,
                max_fps: 30,
            },
        }
    }
}

/// Counters of a call's video (summed over every video session of the call).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VideoStats {
    /// Frames encoded and sent.
    pub frames_sent: u64,
    /// Keyframes among them.
    pub keyframes_sent: u64,
    /// RTP payload bytes sent.
    pub bytes_sent: u64,
    /// RTP packets sent (retransmissions included).
    pub packets_sent: u64,
    /// Packets retransmitted on NACK.
    pub retransmissions: u64,
    /// Source frames not sent (the encoder was behind, or dropped them for the bitrate).
    pub frames_skipped: u64,
    /// Complete frames received.
    pub frames_received: u64,
    /// Frames decoded.
    pub frames_decoded: u64,
    /// Keyframes received.
    pub keyframes_received: u64,
    /// Frames the decoder refused.
    pub decode_errors: u64,
    /// NACK requests we sent.
    pub nacks_sent: u64,
    /// NACK requests we received.
    pub nacks_received: u64,
    /// PLIs we sent.
    pub plis_sent: u64,
    /// PLIs we received.
    pub plis_received: u64,
    /// FIRs we received.
    pub firs_received: u64,
    /// RTP packets lost (never received, even after NACK).
    pub packets_lost: u64,
    /// The sender's current target bitrate.
    pub target_bitrate_bps: u64,
    /// Size of the last decoded frame (0 before one).
    pub recv_width: u32,
    /// Height of the last decoded frame.
    pub recv_height: u32,
    /// Size of the frames we send.
    pub send_width: u32,
    /// Height of the frames we send.
    pub send_height: u32,
}

impl VideoStats {
    pub(crate) fn from_session(s: &tandem_video::session::VideoStats) -> VideoStats {
        VideoStats {
            frames_sent: s.frames_sent,
            keyframes_sent: s.keyframes_sent,
            bytes_sent: s.bytes_sent,
            packets_sent: s.packets_sent,
            retransmissions: s.retransmissions,
            frames_skipped: s.frames_skipped,
            frames_received: s.frames_received,
            frames_decoded: s.frames_decoded,
            keyframes_received: s.keyframes_received,
            decode_errors: s.decode_errors,
            nacks_sent: s.nacks_sent,
            nacks_received: s.nacks_received,
            plis_sent: s.plis_sent,
            plis_received: s.plis_received,
            firs_received: s.firs_received,
            packets_lost: u64::try_from(s.packets_lost).unwrap_or(0),
            target_bitrate_bps: u64::from(s.target_bitrate_bps),
            recv_width: s.recv_width,
            recv_height: s.recv_height,
            send_width: s.send_width,
            send_height: s.send_height,
        }
    }

    /// These counters plus `later`'s (sizes and bitrate from `later` when it has them).
    pub fn plus(&self, later: &VideoStats) -> VideoStats {
        let size = |a: u32, b: u32| if b != 0 { b } else { a };
        VideoStats {
            frames_sent: self.frames_sent + later.frames_sent,
            keyframes_sent: self.keyframes_sent + later.keyframes_sent,
            bytes_sent: self.bytes_sent + later.bytes_sent,
            packets_sent: self.packets_sent + later.packets_sent,
            retransmissions: self.retransmissions + later.retransmissions,
            frames_skipped: self.frames_skipped + later.frames_skipped,
            frames_received: self.frames_received + later.frames_received,
            frames_decoded: self.frames_decoded + later.frames_decoded,
            keyframes_received: self.keyframes_received + later.keyframes_received,
            decode_errors: self.decode_errors + later.decode_errors,
            nacks_sent: self.nacks_sent + later.nacks_sent,
            nacks_received: self.nacks_received + later.nacks_received,
            plis_sent: self.plis_sent + later.plis_sent,
            plis_received: self.plis_received + later.plis_received,
            firs_received: self.firs_received + later.firs_received,
            packets_lost: self.packets_lost + later.packets_lost,
            target_bitrate_bps: if later.target_bitrate_bps != 0 {
                later.target_bitrate_bps
            } else {
                self.target_bitrate_bps
            },
            recv_width: size(self.recv_width, later.recv_width),
            recv_height: size(self.recv_height, later.recv_height),
            send_width: size(self.send_width, later.send_width),
            send_height: size(self.send_height, later.send_height),
        }
    }
}

/// A change of a call's video, for the application.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum VideoNotice {
    /// The video session started (at the answer, or after an upgrade).
    Started {
        /// The codec (`VP8`, `H264`): the one we send, else the first we receive.
        codec: String,
        /// Its payload type.
        payload_type: u8,
        /// What we send (width, height, fps), `None` when we do not send.
        send: Option<(u32, u32, u32)>,
        /// Whether the peer sends to us (the negotiated direction lets it).
        recv: bool,
        /// SRTP (SDES or DTLS) protects the video.
        secure: bool,
    },
    /// The first remote frame was decoded.
    FirstFrame {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The remote frames changed size.
    SizeChanged {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// Periodic counters (every report interval), summed over the call.
    Stats(VideoStats),
    /// The video stopped (downgrade, the peer disabled it, or the call ended); the final counters.
    Stopped(VideoStats),
    /// The peer declined our video (port 0 or no common codec): the call goes on with audio.
    Rejected(String),
    /// The peer added video to the call; its offer is already answered per the call's
    /// [`VideoPolicy`]. Turning our camera on ([`Call::set_video`](crate::Call::set_video)
    /// `(true)` or [`Call::set_camera`](crate::Call::set_camera)) re-offers the video with us
    /// sending; doing nothing leaves it as answered.
    PeerOffered {
        /// We receive the peer's video (answered `recvonly`): its picture shows at once
        /// ([`VideoNotice::Started`] follows). False: declined (policy `never`, or nothing
        /// can show video: no frame receiver and no recording).
        receiving: bool,
        /// The policy asks the user whether to send their camera too.
        ask: bool,
    },
    /// No video RTP from the peer for the call's RTP timeout.
    RtpTimeout,
    /// A non-fatal video problem (source, recording, SRTP, ICE).
    Warning(String),
}

/// How the video's RTP travels.
enum Transport {
    /// Our own UDP socket(s).
    Udp {
        rtp: Arc<UdpSocket>,
        rtcp: Option<Arc<UdpSocket>>,
    },
    /// An ICE session of its own (rtcp-mux), plus an RTCP socket named in `a=rtcp` for a
    /// peer without ICE that does not multiplex (baresip sends its RTCP there).
    Ice(Box<IceSession>, Option<Arc<UdpSocket>>),
}

/// The recording shared by every video session of a call; finished at the end of the call.
type Recorder = Arc<Mutex<Option<Y4mWriter<BufWriter<File>>>>>;

/// Gets the decoded frames of a session: the app's latest frame and the recording.
struct FrameSink {
    frames: FrameSender,
    recorder: Option<Recorder>,
}

impl VideoSink for FrameSink {
    fn frame(&mut self, frame: &VideoFrame) {
        if self.frames.receiver_count() > 0 {
            self.frames.send_replace(Some(Arc::new(frame.clone())));
        }
        if let Some(rec) = &self.recorder {
            let mut guard = rec.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(w) = guard.as_mut()
                && let Err(e) = w.write_frame(frame)
            {
                tracing::warn!(error = %e, "video recording failed: stopped");
                *guard = None;
            }
        }
    }
}

/// Shows the frames we send as the self view.
struct PreviewSink {
    frames: FrameSender,
}

impl VideoSink for PreviewSink {
    fn frame(&mut self, frame: &VideoFrame) {
        if self.frames.receiver_count() > 0 {
            self.frames.send_replace(Some(Arc::new(frame.clone())));
        }
    }
}

/// What a running session was started with: a codec change means a restart, the rest is
/// updated in place.
#[derive(Debug, Clone, PartialEq)]
struct SessionKey {
    remote_rtp: SocketAddr,
    remote_rtcp: Option<SocketAddr>,
    rtcp_mux: bool,
    direction: Direction,
    send: Option<(String, u8)>,
    recv: Vec<(String, u8)>,
    security: String,
    feedback: VideoFeedback,
}

struct Running {
    session: VideoSession,
    control: VideoControl,
    events: Option<mpsc::UnboundedReceiver<VideoEvent>>,
    key: SessionKey,
    send_codec: Option<NegotiatedVideoCodec>,
    /// The [`VideoNotice::Started`] it was started with (told again when its direction changes).
    started: VideoNotice,
}

/// The video part of a call's media (owned by `CallMedia`).
pub(crate) struct CallVideo {
    ip: IpAddr,
    policy: SrtpPolicy,
    keying: SrtpKeying,
    cname: String,
    rtp_timeout: Duration,
    report_interval: Duration,
    /// The options (from `MediaOptions::video`, or set by `set_video`/`set_camera`).
    pub opts: Option<VideoOptions>,
    /// We want video in the call.
    wanted: bool,
    /// The peer declined our last video offer: our re-offers carry port 0 until asked again
    /// (its own video offers are still accepted).
    declined: bool,
    /// We took the peer's video without sending (the policy answered its offer `recvonly`):
    /// our offers stay receive-only until the user turns the camera on.
    recv_only: bool,
    transport: Option<Transport>,
    offered_crypto: Vec<SdesCrypto>,
    /// The session description has an `m=video` line (kept, maybe with port 0, in re-offers).
    in_session: bool,
    /// Formats of the last video line, for a port-0 line.
    last_formats: Vec<String>,
    last_profile: Option<String>,
    /// The video line of our pending offer.
    offered_line: Option<MediaDescription>,
    negotiated: Option<NegotiatedVideo>,
    keys: Option<(SdesCrypto, SdesCrypto)>,
    dtls: Option<(DtlsRole, String)>,
    running: Option<Running>,
    frames: FrameSender,
    local_frames: FrameSender,
    recorder: Option<Recorder>,
    /// Counters of sessions already stopped.
    totals: VideoStats,
    notices: VecDeque<VideoNotice>,
    /// A video session ran in this call.
    ever_started: bool,
    /// Sessions stopping in the background, and their final counters.
    stopping: Vec<tokio::task::JoinHandle<()>>,
    stopped_tx: mpsc::UnboundedSender<VideoStats>,
    stopped_rx: mpsc::UnboundedReceiver<VideoStats>,
}

impl fmt::Debug for CallVideo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallVideo")
            .field("wanted", &self.wanted)
            .field("in_session", &self.in_session)
            .field("negotiated", &self.negotiated)
            .field("running", &self.running.is_some())
            .finish_non_exhaustive()
    }
}

/// Our codec list for `names` (preference order), restricted to what this build can code.
pub(crate) fn video_codecs(names: &[String]) -> Result<Vec<VideoCodec>> {
    let available = tandem_video::codec::available();
    let all: Vec<VideoCodec> = sdpv::default_video_codecs()
        .into_iter()
        .filter(|c| VideoCodecKind::from_name(&c.kind_name).is_some_and(|k| available.contains(&k)))
        .collect();
    let mut out: Vec<VideoCodec> = Vec::new();
    let wanted: Vec<&str> = if names.is_empty() {
        vec!["VP8", "H264"]
    } else {
        names.iter().map(|s| s.trim()).collect()
    };
    for name in wanted {
        if VideoCodecKind::from_name(name).is_none() {
            return Err(UaError::Config(format!(
                "unknown video codec {name:?} (vp8, h264)"
            )));
        }
        if let Some(c) = all.iter().find(|c| c.kind_name.eq_ignore_ascii_case(name))
            && !out.iter().any(|o| o.kind_name == c.kind_name)
        {
            out.push(c.clone());
        }
    }
    if out.is_empty() {
        return Err(UaError::Config(
            "none of the chosen video codecs is available in this build".into(),
        ));
    }
    Ok(out)
}

/// A start bitrate for a picture size and rate: about 0.15 bit per pixel, at least
/// [`MIN_START_BITRATE_BPS`], never above `max` (the user's or the peer's cap wins).
fn start_bitrate(width: u32, height: u32, fps: u32, max: u32) -> u32 {
    let bits = u64::from(width) * u64::from(height) * u64::from(fps.max(1)) * 3 / 20;
    let bits = u32::try_from(bits).unwrap_or(u32::MAX);
    bits.max(MIN_START_BITRATE_BPS).min(max.max(1))
}

fn key_security(security: &MediaSecurity) -> String {
    match security {
        MediaSecurity::Plain => "plain".into(),
        MediaSecurity::Sdes { local, remote } => format!(
            "sdes {} {}",
            local.to_attribute_value(),
            remote.to_attribute_value()
        ),
        MediaSecurity::Dtls {
            role,
            remote_fingerprint,
            ..
        } => format!("dtls {role:?} {remote_fingerprint}"),
        #[allow(unreachable_patterns)]
        _ => "other".into(),
    }
}

impl CallVideo {
    /// Video state for a call of an account with `policy`/`keying`; no socket yet.
    pub fn new(
        ip: IpAddr,
        policy: SrtpPolicy,
        keying: SrtpKeying,
        cname: String,
        opts: Option<VideoOptions>,
        rtp_timeout: Duration,
        report_interval: Duration,
    ) -> CallVideo {
        let offered_crypto = if policy != SrtpPolicy::Off && keying == SrtpKeying::Sdes {
            sdes_offer()
        } else {
            Vec::new()
        };
        let (stopped_tx, stopped_rx) = mpsc::unbounded_channel();
        CallVideo {
            ip,
            policy,
            keying,
            cname,
            rtp_timeout,
            report_interval,
            wanted: opts.as_ref().is_some_and(|o| o.offer),
            declined: false,
            recv_only: false,
            opts,
            transport: None,
            offered_crypto,
            in_session: false,
            last_formats: Vec::new(),
            last_profile: None,
            offered_line: None,
            negotiated: None,
            keys: None,
            dtls: None,
            running: None,
            frames: frame_channel(),
            local_frames: frame_channel(),
            recorder: None,
            totals: VideoStats::default(),
            notices: VecDeque::new(),
            ever_started: false,
            stopping: Vec::new(),
            stopped_tx,
            stopped_rx,
        }
    }

    /// Whether we want video (offer it, accept it).
    pub fn wanted(&self) -> bool {
        self.wanted
    }

    /// Wants video or not (the next offer follows; asking again after the peer declined
    /// offers it again); returns the previous wish.
    pub fn set_wanted(&mut self, on: bool) -> bool {
        if on {
            self.declined = false;
            if self.opts.is_none() {
                self.opts = Some(VideoOptions::default());
            }
        } else {
            self.recv_only = false;
        }
        std::mem::replace(&mut self.wanted, on)
    }

    /// Whether we take the peer's video without sending until the user turns the camera on.
    pub fn recv_only(&self) -> bool {
        self.recv_only
    }

    /// Restores the video wish and receive-only state from before a failed offer.
    pub fn restore(&mut self, wanted: bool, recv_only: bool) {
        self.set_wanted(wanted);
        self.recv_only = recv_only && wanted;
    }

    /// The user turns the camera on: our offers send again. Returns whether we were
    /// receive-only (a re-offer is then needed).
    pub fn send_again(&mut self) -> bool {
        std::mem::replace(&mut self.recv_only, false)
    }

    /// What the call does when the peer adds video.
    pub fn policy(&self) -> VideoPolicy {
        self.opts.as_ref().map(|o| o.policy).unwrap_or_default()
    }

    /// Whether we can show the peer's video: someone watches the decoded frames
    /// ([`Call::video_frames`](crate::Call::video_frames)) or they are recorded.
    pub fn can_show(&self) -> bool {
        self.frames.receiver_count() > 0 || self.opts.as_ref().is_some_and(|o| o.record.is_some())
    }

    /// Whether the peer's `offer` adds video the call does not have: an active `m=video`
    /// line while no video is negotiated and we do not want any.
    pub fn peer_adds(&self, offer: &SessionDescription) -> bool {
        let active = sdpv::video_index(offer)
            .and_then(|i| offer.media.get(i))
            .is_some_and(|m| m.port != 0);
        active && self.negotiated.is_none() && !self.wanted
    }

    /// Takes the peer's video receive-only (before answering its offer): video is wanted,
    /// and our direction does not send until [`Self::send_again`].
    pub fn receive_only(&mut self) {
        self.set_wanted(true);
        self.recv_only = true;
    }

    /// Whether the call already is as `on` asks (video negotiated or not, as wanted).
    pub fn is_as_wanted(&self, on: bool) -> bool {
        on == (self.wanted && !self.declined) && on == self.negotiated.is_some()
    }

    /// True once a socket or ICE session exists for the video.
    pub fn has_transport(&self) -> bool {
        self.transport.is_some()
    }

    /// Uses these UDP sockets for the video.
    pub fn set_udp(&mut self, rtp: Arc<UdpSocket>, rtcp: Option<Arc<UdpSocket>>) {
        self.transport = Some(Transport::Udp { rtp, rtcp });
    }

    /// Uses this ICE session for the video.
    pub fn set_ice(&mut self, ice: IceSession, rtcp: Option<Arc<UdpSocket>>) {
        self.transport = Some(Transport::Ice(Box::new(ice), rtcp));
    }

    /// The video ICE session, if any.
    pub fn ice_mut(&mut self) -> Option<&mut IceSession> {
        match self.transport.as_mut() {
            Some(Transport::Ice(ice, _)) => Some(ice),
            _ => None,
        }
    }

    /// The channel of decoded remote frames.
    pub fn frames(&self) -> FrameSender {
        self.frames.clone()
    }

    /// The channel of the frames we send (self view).
    pub fn local_frames(&self) -> FrameSender {
        self.local_frames.clone()
    }

    /// The negotiated video stream, if any.
    pub fn negotiated(&self) -> Option<&NegotiatedVideo> {
        self.negotiated.as_ref()
    }

    /// A live view of the counters: (counters of stopped sessions, or `None` before any
    /// video session; the running session's control).
    pub fn stats_parts(&self) -> (Option<VideoStats>, Option<VideoHandle>) {
        (
            self.ever_started.then(|| self.totals.clone()),
            self.running
                .as_ref()
                .map(|r| VideoHandle(r.control.clone())),
        )
    }

    /// The counters so far (stopped sessions plus the running one).
    pub fn stats(&self) -> VideoStats {
        match &self.running {
            Some(r) => self
                .totals
                .plus(&VideoStats::from_session(&r.control.stats())),
            None => self.totals.clone(),
        }
    }

    /// Our address and port for the video line.
    fn address(&self) -> Option<SocketAddr> {
        match self.transport.as_ref()? {
            Transport::Udp { rtp, .. } => rtp.local_addr().ok(),
            Transport::Ice(ice, _) => Some(ice.default_addr()),
        }
    }

    /// The `a=rtcp` port when RTCP is on a socket of its own not at RTP + 1 (with ICE: when
    /// the default candidate is a host address of that socket's IP).
    fn rtcp_port(&self) -> Option<u16> {
        match self.transport.as_ref()? {
            Transport::Udp {
                rtp,
                rtcp: Some(rtcp),
            } => {
                let rtp = rtp.local_addr().ok()?.port();
                let p = rtcp.local_addr().ok()?.port();
                (p != rtp.wrapping_add(1)).then_some(p)
            }
            Transport::Ice(ice, Some(rtcp)) => {
                let local = rtcp.local_addr().ok()?;
                (ice.default_addr().ip() == local.ip()).then_some(local.port())
            }
            _ => None,
        }
    }

    /// Our direction for the video line: send only with a source, nothing on hold.
    fn direction(&self, hold: bool) -> Direction {
        if hold {
            return Direction::Inactive;
        }
        let sends = !self.recv_only && self.opts.as_ref().is_some_and(|o| !o.source.is_none());
        Direction::from_flags(sends, true)
    }

    fn offer_profile(&self) -> TransportProfile {
        match (self.policy, self.keying) {
            (SrtpPolicy::Off, _) => TransportProfile::RtpAvp,
            (SrtpPolicy::Mandatory, SrtpKeying::Sdes) => TransportProfile::RtpSavp,
            (_, SrtpKeying::Sdes) => TransportProfile::RtpAvp,
            (_, _) => TransportProfile::UdpTlsRtpSavp,
        }
    }

    fn params(
        &self,
        port: u16,
        profile: TransportProfile,
        direction: Direction,
        attributes: Vec<Attribute>,
    ) -> Result<VideoOfferParams> {
        let opts = self.opts.clone().unwrap_or_default();
        Ok(VideoOfferParams {
            codecs: video_codecs(&opts.codecs)?,
            port,
            profile,
            direction,
            feedback: VideoFeedback::ALL,
            recv_limits: opts.recv_limits,
            attributes,
            rtcp_mux: true,
            rtcp_port: self.rtcp_port(),
            max_recv_bitrate_bps: None,
        })
    }

    /// Puts our ICE attributes and, when it differs from the session's, our address on `m`.
    fn finish_line(&self, m: &mut MediaDescription, session_ip: IpAddr, with_ice: bool) {
        if with_ice && let Some(Transport::Ice(ice, _)) = &self.transport {
            ice.local_ice().apply_to(m);
        }
        if let Some(addr) = self.address()
            && addr.ip() != session_ip
        {
            m.connection = Some(Connection::from_ip(addr.ip()));
        }
    }

    fn remember_line(&mut self, m: &MediaDescription) {
        self.in_session = true;
        if !m.formats.is_empty() {
            self.last_formats = m.formats.clone();
        }
        self.last_profile = Some(m.protocol.clone());
    }

    /// A disabled video line (port 0) keeping the session's m-line layout (RFC 3264 §8.2).
    fn disabled_line(&self) -> MediaDescription {
        let formats = if self.last_formats.is_empty() {
            vec!["96".to_string()]
        } else {
            self.last_formats.clone()
        };
        MediaDescription {
            media: "video".into(),
            port: 0,
            num_ports: None,
            protocol: self
                .last_profile
                .clone()
                .unwrap_or_else(|| self.offer_profile().as_str().to_string()),
            formats,
            connection: None,
            bandwidths: Vec::new(),
            attributes: Vec::new(),
            other_fields: Vec::new(),
        }
    }

    /// The video line of our next offer (`None`: the session has no video and we want none).
    pub fn offer_line(
        &mut self,
        hold: bool,
        session_ip: IpAddr,
        cert: Option<&DtlsCertificate>,
    ) -> Result<Option<MediaDescription>> {
        let addr = self.address();
        let line = match addr {
            Some(addr) if self.wanted && !self.declined && self.opts.is_some() => {
                let profile = self.offer_profile();
                let mut attributes = Vec::new();
                match (self.policy, self.keying) {
                    (SrtpPolicy::Off, _) => {}
                    (_, SrtpKeying::Sdes) => {
                        attributes.extend(
                            self.offered_crypto
                                .iter()
                                .map(|c| Attribute::new("crypto", c.to_attribute_value())),
                        );
                    }
                    (_, _) => {
                        let cert =
                            cert.ok_or_else(|| UaError::Media("no DTLS certificate".into()))?;
                        attributes.push(Attribute::new("fingerprint", cert.fingerprint()));
                        attributes.push(Attribute::new("setup", "actpass"));
                    }
                }
                let params = self.params(addr.port(), profile, self.direction(hold), attributes)?;
                let mut m = sdpv::video_offer(&params);
                self.finish_line(&mut m, session_ip, true);
                self.remember_line(&m);
                m
            }
            _ if self.in_session => self.disabled_line(),
            _ => {
                self.offered_line = None;
                return Ok(None);
            }
        };
        self.offered_line = Some(line.clone());
        Ok(Some(line))
    }

    /// Our offer failed: forget its video line.
    pub fn offer_failed(&mut self) {
        self.offered_line = None;
    }

    /// The peer declined our video or it cannot be used: audio goes on.
    fn reject(&mut self, reason: String) {
        tracing::info!(%reason, "no video in this call");
        self.negotiated = None;
        self.keys = None;
        self.dtls = None;
        if self.wanted && !self.declined {
            self.declined = true;
            self.notices.push_back(VideoNotice::Rejected(reason));
        }
    }

    /// Takes the video line of the peer's answer to our offer (after the audio was accepted).
    /// Returns the peer's ICE description to start on the video ICE session, if any.
    pub fn take_answer(
        &mut self,
        offer: &SessionDescription,
        answer: &SessionDescription,
        keep_offer: bool,
    ) {
        let ours = if keep_offer {
            self.offered_line.clone()
        } else {
            self.offered_line.take()
        };
        let Some(ours) = ours else {
            return;
        };
        if ours.port == 0 {
            self.negotiated = None;
            return;
        }
        let Some(index) = sdpv::video_index(offer) else {
            return;
        };
        let neg = match sdpv::accept_video_answer_in(offer, answer, index) {
            Ok(Some(neg)) => neg,
            Ok(None) => {
                self.reject("the peer declined video".into());
                return;
            }
            Err(e) => {
                self.reject(format!("unusable video answer: {e}"));
                return;
            }
        };
        match neg.security {
            SecurityKind::Dtls => {
                let Some(fp) = neg.fingerprint.clone() else {
                    self.reject("DTLS-SRTP video answer without a=fingerprint".into());
                    return;
                };
                // We offered actpass: an active peer makes us the DTLS server.
                let role = match neg.setup.as_deref().map(str::trim) {
                    Some(s) if s.eq_ignore_ascii_case("passive") => DtlsRole::Client,
                    _ => DtlsRole::Server,
                };
                self.dtls = Some((role, fp));
                self.keys = None;
            }
            SecurityKind::Sdes => {
                let accepted = neg
                    .crypto
                    .first()
                    .ok_or_else(|| "SRTP video answer without a=crypto".to_string())
                    .and_then(|v| SdesCrypto::parse(v).map_err(|e| format!("bad a=crypto: {e}")))
                    .and_then(|remote| {
                        sdes_accept(&self.offered_crypto, &remote)
                            .map_err(|e| format!("unacceptable a=crypto: {e}"))
                    });
                match accepted {
                    Ok(keys) => {
                        self.keys = Some(keys);
                        self.dtls = None;
                    }
                    Err(reason) => {
                        self.reject(reason);
                        return;
                    }
                }
            }
            _ => {
                if self.policy == SrtpPolicy::Mandatory {
                    self.reject("SRTP is mandatory but the video answer is plain RTP".into());
                    return;
                }
                self.keys = None;
                self.dtls = None;
            }
        }
        self.negotiated = Some(neg);
    }

    /// Answers the video line of the peer's offer into `answer` (built by the audio answer,
    /// with a port-0 line at the video's index). Returns the offer's video index when we
    /// accepted video.
    pub fn answer(
        &mut self,
        offer: &SessionDescription,
        answer: &mut SessionDescription,
        hold: bool,
        cert: Option<&DtlsCertificate>,
        with_ice: bool,
    ) -> Option<usize> {
        self.offered_line = None;
        let Some(index) = sdpv::video_index(offer) else {
            self.negotiated = None;
            return None;
        };
        let offered = offer.media.get(index)?;
        self.remember_line(offered);
        let rejected = sdpv::rejected_video(offered);
        if offered.port == 0 && self.wanted {
            if self.recv_only {
                // The peer's video we only watched is gone: its next one goes through the
                // policy again.
                self.wanted = false;
                self.recv_only = false;
            } else {
                // The peer turned video off: our re-offers keep it off until asked again.
                self.declined = true;
            }
        }
        let (Some(addr), true, true) = (self.address(), self.wanted, offered.port != 0) else {
            self.negotiated = None;
            if let Some(slot) = answer.media.get_mut(index) {
                *slot = rejected;
            }
            return None;
        };
        let (attributes, keys, dtls) = match self.choose_security(offer, index, cert) {
            Some(chosen) => chosen,
            None => {
                tracing::info!("declining the offered video: its security does not fit");
                self.negotiated = None;
                if let Some(slot) = answer.media.get_mut(index) {
                    *slot = rejected;
                }
                return None;
            }
        };
        let profile =
            TransportProfile::parse(&offered.protocol).unwrap_or_else(|| self.offer_profile());
        let result = self
            .params(addr.port(), profile, self.direction(hold), attributes)
            .ok()
            .map(|params| sdpv::answer_video_in(offer, index, &params));
        match result {
            Some(Ok(Some((mut line, neg)))) => {
                self.finish_line(&mut line, answer_ip(answer, self.ip), with_ice);
                if let Some(slot) = answer.media.get_mut(index) {
                    *slot = line;
                }
                self.negotiated = Some(neg);
                self.keys = keys;
                self.dtls = dtls;
                self.declined = false;
                Some(index)
            }
            other => {
                if let Some(Err(e)) = other {
                    tracing::info!(error = %e, "declining the offered video");
                }
                self.negotiated = None;
                if let Some(slot) = answer.media.get_mut(index) {
                    *slot = rejected;
                }
                None
            }
        }
    }

    /// Picks the answer's security for the offered video line `index` per the account's
    /// policy (as the audio chooser does): the attributes to answer with, and the keys or
    /// DTLS role they set up.
    #[allow(clippy::type_complexity)]
    fn choose_security(
        &self,
        offer: &SessionDescription,
        index: usize,
        cert: Option<&DtlsCertificate>,
    ) -> Option<(
        Vec<Attribute>,
        Option<(SdesCrypto, SdesCrypto)>,
        Option<(DtlsRole, String)>,
    )> {
        let offered = sdpv::offered_video_security(offer, index)?;
        if offered.profile.is_dtls() {
            if self.policy == SrtpPolicy::Off {
                return None;
            }
            let fp = offered.fingerprint?;
            let ours = cert?.fingerprint();
            let setup = setup_answer(offered.setup);
            let role = if setup == "active" {
                DtlsRole::Client
            } else {
                DtlsRole::Server
            };
            let chosen = AnswerSecurity::Dtls {
                fingerprint: ours,
                setup: setup.to_string(),
            };
            return sdpv::security_fits(&chosen, &offered).then(|| {
                (
                    sdpv::security_attributes(&chosen),
                    None,
                    Some((role, fp.to_string())),
                )
            });
        }
        if self.policy != SrtpPolicy::Off && !offered.crypto.is_empty() {
            let offered_keys = SdesCrypto::parse_all(&offered.crypto);
            let kept = self.keys.as_ref().and_then(|(local, remote)| {
                offered_keys
                    .iter()
                    .find(|c| *c == remote)
                    .map(|r| (r.clone(), local.clone()))
            });
            if let Some((remote, local)) = kept.or_else(|| sdes_answer(&offered_keys)) {
                let chosen = AnswerSecurity::Sdes(local.to_attribute_value());
                if sdpv::security_fits(&chosen, &offered) {
                    return Some((
                        sdpv::security_attributes(&chosen),
                        Some((local, remote)),
                        None,
                    ));
                }
            }
        }
        if offered.profile.is_plain() && self.policy != SrtpPolicy::Mandatory {
            return Some((Vec::new(), None, None));
        }
        None
    }

    fn security(&self, cert: Option<&DtlsCertificate>) -> Result<MediaSecurity> {
        if let Some((local, remote)) = &self.keys {
            return Ok(MediaSecurity::Sdes {
                local: local.clone(),
                remote: remote.clone(),
            });
        }
        if let Some((role, fp)) = &self.dtls {
            let cert = cert
                .cloned()
                .ok_or_else(|| UaError::Media("no DTLS certificate".into()))?;
            return Ok(MediaSecurity::Dtls {
                role: *role,
                cert,
                remote_fingerprint: fp.clone(),
            });
        }
        Ok(MediaSecurity::Plain)
    }

    /// Writes our video ICE attributes onto `m` (our answer's video line).
    pub fn add_ice(&self, m: &mut MediaDescription) {
        if let Some(Transport::Ice(ice, _)) = &self.transport {
            ice.local_ice().apply_to(m);
        }
    }

    /// Asks the running session for a keyframe (the peer may have dropped our first one
    /// while it was still setting up its SRTP context, e.g. before our 2xx reached it).
    pub fn request_keyframe(&self) {
        if let Some(r) = &self.running {
            r.control.request_keyframe();
        }
    }

    /// Queues a warning for the application.
    pub fn warn(&mut self, message: String) {
        self.notices.push_back(VideoNotice::Warning(message));
    }

    fn socket(&self) -> Option<(MediaSocket, Option<MediaSocket>)> {
        match self.transport.as_ref()? {
            Transport::Udp { rtp, rtcp } => {
                Some((rtp.clone().into(), rtcp.clone().map(MediaSocket::from)))
            }
            Transport::Ice(ice, rtcp) => Some((ice.socket(), rtcp.clone().map(MediaSocket::from))),
        }
    }

    /// Stops the running session in the background; its final counters arrive through
    /// `stopped_rx` (a [`VideoNotice::Stopped`] then), or are collected by [`Self::stop`].
    fn stop_running_now(&mut self) {
        if let Some(r) = self.running.take() {
            let tx = self.stopped_tx.clone();
            self.stopping.retain(|h| !h.is_finished());
            self.stopping.push(tokio::spawn(async move {
                let stats = r.session.stop().await;
                let _ = tx.send(VideoStats::from_session(&stats));
            }));
        }
    }

    /// Adds the final counters of a session stopped in the background.
    fn add_stopped(&mut self, stats: &VideoStats) -> VideoStats {
        self.totals = self.totals.plus(stats);
        self.totals.clone()
    }

    fn recorder(&mut self) -> Option<Recorder> {
        if self.recorder.is_none() {
            let opts = self.opts.as_ref()?;
            let path = opts.record.clone()?;
            let fps = match &opts.source {
                VideoSourceSpec::Pattern { fps, .. } => *fps,
                _ => DEFAULT_RECORD_FPS,
            };
            match create_y4m(&path, fps) {
                Ok(w) => self.recorder = Some(Arc::new(Mutex::new(Some(w)))),
                Err(e) => {
                    self.notices.push_back(VideoNotice::Warning(format!(
                        "cannot record video to {}: {e}",
                        path.display()
                    )));
                    if let Some(o) = self.opts.as_mut() {
                        o.record = None;
                    }
                    return None;
                }
            }
        }
        self.recorder.clone()
    }

    /// Starts, updates, restarts or stops the video session to match the negotiation.
    pub fn apply(&mut self, cert: Option<&DtlsCertificate>) -> Result<()> {
        let Some(neg) = self.negotiated.clone() else {
            self.stop_running_now();
            return Ok(());
        };
        let security = self.security(cert)?;
        let send_codec = neg
            .send
            .clone()
            .or_else(|| self.running.as_ref().and_then(|r| r.send_codec.clone()));
        let Some(remote_rtp) = neg.remote_rtp else {
            // On hold with c=0.0.0.0: nothing to send to; a running session only changes direction.
            if let Some(r) = self.running.as_mut() {
                r.control.set_direction(neg.direction);
                r.key.direction = neg.direction;
            }
            return Ok(());
        };
        let key = SessionKey {
            remote_rtp,
            remote_rtcp: neg.remote_rtcp,
            rtcp_mux: neg.rtcp_mux,
            direction: neg.direction,
            send: send_codec
                .as_ref()
                .map(|c| (c.kind_name.to_ascii_uppercase(), c.payload_type)),
            recv: neg
                .recv
                .iter()
                .map(|c| (c.kind_name.to_ascii_uppercase(), c.payload_type))
                .collect(),
            security: key_security(&security),
            feedback: neg.feedback,
        };
        if let Some(r) = self.running.as_mut()
            && r.key.send == key.send
            && r.key.recv == key.recv
        {
            if r.key != key {
                let old = &r.key;
                r.control.update(VideoUpdate {
                    remote_rtp: (old.remote_rtp != key.remote_rtp).then_some(key.remote_rtp),
                    remote_rtcp: (old.remote_rtcp != key.remote_rtcp)
                        .then_some(key.remote_rtcp)
                        .flatten(),
                    rtcp_mux: (old.rtcp_mux != key.rtcp_mux).then_some(key.rtcp_mux),
                    direction: (old.direction != key.direction).then_some(key.direction),
                    feedback: (old.feedback != key.feedback).then_some(key.feedback),
                    security: (old.security != key.security).then_some(security),
                });
                if old.direction != key.direction
                    && let VideoNotice::Started {
                        codec,
                        payload_type,
                        send,
                        secure,
                        ..
                    } = &r.started
                {
                    // The same session now sends or receives otherwise: tell it like a start.
                    self.notices.push_back(VideoNotice::Started {
                        codec: codec.clone(),
                        payload_type: *payload_type,
                        send: send.filter(|_| key.direction.sends()),
                        recv: key.direction.receives(),
                        secure: *secure,
                    });
                }
                r.key = key;
            }
            return Ok(());
        }
        self.stop_running_now();
        let Some((socket, rtcp_socket)) = self.socket() else {
            return Err(UaError::Media("no video socket".into()));
        };
        let opts = self.opts.clone().unwrap_or_default();
        let recv: Vec<VideoRecvCodec> = neg
            .recv
            .iter()
            .filter_map(|c| {
                VideoCodecKind::from_name(&c.kind_name).map(|kind| VideoRecvCodec {
                    kind,
                    payload_type: c.payload_type,
                })
            })
            .collect();
        let mut send_desc = None;
        let send = match send_codec
            .as_ref()
            .and_then(|c| VideoCodecKind::from_name(&c.kind_name).map(|k| (k, c.payload_type)))
        {
            Some((kind, payload_type)) => match opts.source.open() {
                Ok(Some(source)) => {
                    let (w, h) = source.size();
                    let fps = source.fps();
                    send_desc = Some((w, h, fps));
                    let max_fps = neg.peer_limits.max_fps.max(1);
                    // The peer's b=TIAS/b=AS caps what we send too.
                    let max_bitrate = neg
                        .peer_max_bitrate_bps
                        .map_or(opts.max_bitrate_bps, |p| p.min(opts.max_bitrate_bps))
                        .max(1);
                    Some(VideoSendConfig {
                        kind,
                        payload_type,
                        source,
                        max_width: neg.peer_limits.max_width,
                        max_height: neg.peer_limits.max_height,
                        max_fps,
                        start_bitrate_bps: start_bitrate(w, h, fps.min(max_fps), max_bitrate),
                        max_bitrate_bps: max_bitrate,
                    })
                }
                Ok(None) => None,
                Err(e) => {
                    self.notices.push_back(VideoNotice::Warning(e.to_string()));
                    None
                }
            },
            None => None,
        };
        let secure = !matches!(security, MediaSecurity::Plain);
        let sink = FrameSink {
            frames: self.frames.clone(),
            recorder: self.recorder(),
        };
        let mut config = VideoConfig::new(socket, remote_rtp);
        config.rtcp_socket = if neg.rtcp_mux { None } else { rtcp_socket };
        config.remote_rtcp = neg.remote_rtcp;
        config.rtcp_mux = neg.rtcp_mux;
        config.send = send;
        config.recv = recv;
        config.sink = Some(Box::new(sink));
        config.preview = Some(Box::new(PreviewSink {
            frames: self.local_frames.clone(),
        }));
        config.feedback = neg.feedback;
        config.direction = neg.direction;
        config.security = security;
        config.cname = self.cname.clone();
        config.rtp_timeout = self.rtp_timeout;
        config.stats_interval = self.report_interval;
        config.mtu_payload = MTU_PAYLOAD;
        let (session, events) = VideoSession::start(config)
            .map_err(|e| UaError::Media(format!("cannot start the video session: {e}")))?;
        let (codec, payload_type) = match send_codec.as_ref().or(neg.recv.first()) {
            Some(c) => (c.kind_name.to_ascii_uppercase(), c.payload_type),
            None => (String::new(), 0),
        };
        self.notices.push_back(VideoNotice::Started {
            codec: codec.clone(),
            payload_type,
            send: send_desc.filter(|_| neg.direction.sends()),
            recv: neg.direction.receives(),
            secure,
        });
        self.ever_started = true;
        self.running = Some(Running {
            control: session.control(),
            session,
            events: Some(events),
            key,
            send_codec,
            started: VideoNotice::Started {
                codec,
                payload_type,
                send: send_desc,
                recv: true,
                secure,
            },
        });
        Ok(())
    }

    /// Changes what we send: camera on, off or another one (the running session switches at
    /// once). Returns true when the negotiated direction must change (a re-offer is needed).
    pub fn set_camera(&mut self, source: Option<VideoSourceSpec>) -> Result<bool> {
        let spec = source.unwrap_or(VideoSourceSpec::None);
        if !spec.is_none() {
            self.recv_only = false;
        }
        let opened = match &self.running {
            Some(_) => spec.open()?,
            None => None,
        };
        let opts = self.opts.get_or_insert_with(VideoOptions::default);
        opts.source = spec.clone();
        if let Some(r) = &self.running {
            r.control.set_source(opened);
        }
        let sending_negotiated = self
            .negotiated
            .as_ref()
            .is_some_and(|n| n.send.is_some() || n.direction.sends());
        Ok(self.negotiated.is_some() && !spec.is_none() && !sending_negotiated)
    }

    /// The next notice for the application; pends while there is none.
    pub async fn next_notice(&mut self) -> VideoNotice {
        loop {
            if let Some(n) = self.notices.pop_front() {
                return n;
            }
            let running = &mut self.running;
            let transport = &mut self.transport;
            let stopped = &mut self.stopped_rx;
            let got = tokio::select! {
                ev = next_session_event(running) => Got::Session(ev.map(Box::new)),
                ev = next_ice_event(transport) => Got::Ice(ev),
                Some(s) = stopped.recv() => Got::Stopped(s),
            };
            match got {
                Got::Stopped(s) => {
                    let totals = self.add_stopped(&s);
                    // A session replaced by another (new codecs, camera turned on) is no stop.
                    if self.running.is_none() {
                        return VideoNotice::Stopped(totals);
                    }
                }
                Got::Session(Some(ev)) => {
                    if let Some(n) = self.on_event(*ev) {
                        return n;
                    }
                }
                Got::Session(None) => {
                    if let Some(r) = self.running.as_mut() {
                        r.events = None;
                    }
                }
                Got::Ice(IceEvent::Failed(reason)) => {
                    return VideoNotice::Warning(format!("video ICE failed: {reason}"));
                }
                Got::Ice(IceEvent::Selected(info)) => {
                    tracing::debug!(path = %info.path, local = %info.local, remote = %info.remote, "video ICE path");
                }
            }
        }
    }

    fn on_event(&mut self, ev: VideoEvent) -> Option<VideoNotice> {
        match ev {
            VideoEvent::FirstFrame { width, height } => {
                Some(VideoNotice::FirstFrame { width, height })
            }
            VideoEvent::SizeChanged { width, height } => {
                Some(VideoNotice::SizeChanged { width, height })
            }
            VideoEvent::Stats(s) => Some(VideoNotice::Stats(
                self.totals.plus(&VideoStats::from_session(&s)),
            )),
            VideoEvent::RtpTimeout => Some(VideoNotice::RtpTimeout),
            VideoEvent::SecurityFailed(e) => {
                Some(VideoNotice::Warning(format!("video SRTP failed: {e}")))
            }
            VideoEvent::Error(e) => Some(VideoNotice::Warning(format!("video: {e}"))),
            VideoEvent::SourceEnded => Some(VideoNotice::Warning(
                "the video source ended: no more frames are sent".into(),
            )),
            other => {
                tracing::debug!(event = ?other, "video event");
                None
            }
        }
    }

    /// The call's counters (`None` when it never had a video session).
    pub fn totals(&self) -> Option<VideoStats> {
        self.ever_started.then(|| self.stats())
    }

    /// Stops the session and finishes the recording; returns the call's final counters when
    /// a session was running.
    pub async fn stop(&mut self) -> Option<VideoStats> {
        let mut stopped = None;
        for h in std::mem::take(&mut self.stopping) {
            let _ = h.await;
        }
        while let Ok(s) = self.stopped_rx.try_recv() {
            stopped = Some(self.add_stopped(&s));
        }
        if let Some(r) = self.running.take() {
            let stats = r.session.stop().await;
            self.totals = self.totals.plus(&VideoStats::from_session(&stats));
            stopped = Some(self.totals.clone());
        }
        if let Some(rec) = self.recorder.take() {
            let writer = rec.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(w) = writer {
                let finished = tokio::task::spawn_blocking(move || w.finish().map(|_| ())).await;
                match finished {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "the video recording is incomplete"),
                    Err(e) => tracing::warn!(error = %e, "the video recording is incomplete"),
                }
            }
        }
        stopped
    }
}

/// What [`CallVideo::next_notice`] waited for.
enum Got {
    Session(Option<Box<VideoEvent>>),
    Ice(IceEvent),
    Stopped(VideoStats),
}

async fn next_session_event(running: &mut Option<Running>) -> Option<VideoEvent> {
    match running.as_mut().and_then(|r| r.events.as_mut()) {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_ice_event(transport: &mut Option<Transport>) -> IceEvent {
    match transport {
        Some(Transport::Ice(ice, _)) => match ice.next_event().await {
            Some(ev) => ev,
            // The ICE task has ended: nothing more from it.
            None => std::future::pending().await,
        },
        _ => std::future::pending().await,
    }
}

/// A running video session's control, shared with the call handle.
#[derive(Clone)]
pub(crate) struct VideoHandle(pub VideoControl);

impl fmt::Debug for VideoHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VideoHandle")
    }
}

/// The address of an answer's session-level `c=` (else `fallback`).
fn answer_ip(answer: &SessionDescription, fallback: IpAddr) -> IpAddr {
    answer
        .connection
        .as_ref()
        .and_then(Connection::ip)
        .unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs_parse() {
        assert_eq!(
            "pattern".parse::<VideoSourceSpec>().unwrap(),
            VideoSourceSpec::Pattern {
                width: 320,
                height: 240,
                fps: 15
            }
        );
        assert_eq!(
            "pattern:640x480@30".parse::<VideoSourceSpec>().unwrap(),
            VideoSourceSpec::Pattern {
                width: 640,
                height: 480,
                fps: 30
            }
        );
        assert_eq!(
            "none".parse::<VideoSourceSpec>().unwrap(),
            VideoSourceSpec::None
        );
        assert_eq!(
            "clip.y4m".parse::<VideoSourceSpec>().unwrap(),
            VideoSourceSpec::File("clip.y4m".into())
        );
        assert_eq!(
            "camera".parse::<VideoSourceSpec>().unwrap(),
            VideoSourceSpec::Camera {
                id: None,
                width: 640,
                height: 480,
                fps: 15
            }
        );
        let spec = "camera: USB Cam ".parse::<VideoSourceSpec>().unwrap();
        assert_eq!(spec, VideoSourceSpec::camera(Some("USB Cam")));
        assert_eq!(spec.to_string(), "camera:USB Cam");
        assert_eq!(VideoSourceSpec::camera(None).to_string(), "camera");
        assert!("camera:".parse::<VideoSourceSpec>().is_err());
        assert!("pattern:9x9".parse::<VideoSourceSpec>().is_err());
        assert!("pattern:640x480@0".parse::<VideoSourceSpec>().is_err());
        assert!("".parse::<VideoSourceSpec>().is_err());
        assert_eq!(parse_video_size("1280X720").unwrap(), (1280, 720));
        assert!(parse_video_size("99999x10").is_err());
        assert!(parse_video_size("640").is_err());
    }

    #[test]
    fn video_policies_parse_and_print() {
        assert_eq!(VideoPolicy::default(), VideoPolicy::Ask);
        for (text, policy) in [
            ("receive", VideoPolicy::Receive),
            ("Accept", VideoPolicy::Receive),
            (" ask ", VideoPolicy::Ask),
            ("NEVER", VideoPolicy::Never),
            ("decline", VideoPolicy::Never),
        ] {
            assert_eq!(text.parse::<VideoPolicy>().unwrap(), policy, "{text}");
        }
        for policy in [VideoPolicy::Receive, VideoPolicy::Ask, VideoPolicy::Never] {
            assert_eq!(policy.to_string().parse::<VideoPolicy>().unwrap(), policy);
        }
        assert!("maybe".parse::<VideoPolicy>().is_err());
        assert!("".parse::<VideoPolicy>().is_err());
    }

    #[test]
    fn codec_preferences() {
        let both = video_codecs(&["h264".into(), "vp8".into()]).unwrap();
        let names: Vec<&str> = both.iter().map(|c| c.kind_name.as_str()).collect();
        assert_eq!(names, ["H264", "VP8"]);
        let vp8 = video_codecs(&["VP8".into()]).unwrap();
        assert_eq!(vp8.len(), 1);
        assert!(video_codecs(&["theora".into()]).is_err());
        assert_eq!(video_codecs(&[]).unwrap().len(), 2);
    }

    #[test]
    fn start_bitrates_are_bounded() {
        assert_eq!(start_bitrate(320, 240, 15, 1_500_000), 172_800);
        assert_eq!(start_bitrate(320, 240, 15, 100_000), 100_000);
        assert_eq!(start_bitrate(160, 120, 5, 1_500_000), MIN_START_BITRATE_BPS);
        assert_eq!(start_bitrate(1280, 720, 30, 1_500_000), 1_500_000);
        assert_eq!(start_bitrate(4096, 2304, 60, u32::MAX), 84_934_656);
    }

    #[test]
    fn stats_add_up() {
        let a = VideoStats {
            frames_sent: 10,
            nacks_sent: 2,
            recv_width: 320,
            recv_height: 240,
            ..VideoStats::default()
        };
        let b = VideoStats {
            frames_sent: 5,
            nacks_sent: 1,
            ..VideoStats::default()
        };
        let sum = a.plus(&b);
        assert_eq!(sum.frames_sent, 15);
        assert_eq!(sum.nacks_sent, 3);
        assert_eq!((sum.recv_width, sum.recv_height), (320, 240));
    }
}
