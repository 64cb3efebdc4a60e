//! The per-call video session: one tokio task per video stream that paces, encodes, packetizes,
//! protects and sends our video, and receives, authenticates, assembles, decodes and renders
//! the peer's, with RTCP feedback for loss recovery and bandwidth adaptation.
//!
//! The shape follows [`tandem_media::session`]: the task owns the RTP socket (and the RTCP
//! socket without rtcp-mux) and demultiplexes received datagrams by their first byte (RFC 7983):
//! RTP, RTCP (RFC 5761), DTLS (the DTLS-SRTP handshake, RFC 5763/5764) and STUN (ignored).
//! Security is the audio engine's: plain RTP, SDES-SRTP or DTLS-SRTP through
//! [`tandem_media::srtp`].
//!
//! Encoding and decoding never run on the task. A dedicated encoder thread reads the
//! [`crate::source::VideoSource`] at its frame rate (capped by the peer's limit), scales when
//! needed and encodes; when the encoder is slower than the source, frames are skipped rather
//! than queued. A decoder thread decodes assembled frames into the [`VideoSink`]; a bounded
//! queue in front of it drops frames (and asks for a keyframe) when decoding falls behind.
//!
//! Sending: every encoded frame is split by the codec's [`crate::rtp::Packetizer`]; all its
//! packets carry the 90 kHz timestamp of the capture instant, the last one the marker bit. Sent
//! datagrams (already protected) are kept in a [`crate::history::SendHistory`] and sent again
//! as they were when the peer NACKs them (RFC 4585 generic NACK). PLI and FIR (RFC 5104) ask
//! the encoder for a keyframe, at most one per [`KEYFRAME_MIN_INTERVAL`]; the rest of a flood is
//! coalesced and counted. Receiver reports and REMB feed a [`crate::rate::RateController`] whose
//! target becomes the encoder bitrate; below [`LOW_BITRATE_BPS`] a source of 640x480 or more is
//! sent at half its size until the target recovers.
//!
//! Receiving: RTP of an accepted payload type goes into a [`crate::assembler::FrameAssembler`];
//! while it has gaps, generic NACKs go out every [`NACK_INTERVAL`]; when it gives up on a gap or
//! the decoder fails, a PLI (or a FIR when the peer only negotiated `ccm fir`) goes out, at most
//! one per [`KEYFRAME_REQUEST_INTERVAL`]. Receiver reports carry the loss of the peer's stream,
//! with a REMB estimate when negotiated.

mod decoder;
mod encoder;
mod engine;

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use tandem_media::session::{MediaSecurity, MediaSocket, MediaTransport};
use tandem_proto::sdp::Direction;
use tandem_proto::sdp::video::VideoFeedback;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::codec::{CodecError, VideoCodecKind};
use crate::frame::VideoFrame;
use crate::source::VideoSource;
use crate::y4m::Y4mWriter;

/// The smallest interval between two keyframes produced for PLI/FIR requests.
pub const KEYFRAME_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// The smallest interval between two keyframe requests (PLI/FIR) we send.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);
/// How often missing packets are NACKed while the frame assembler has gaps.
pub const NACK_INTERVAL: Duration = Duration::from_millis(20);
/// Below this target bitrate a large source (640x480 or more) is sent at half its size.
pub const LOW_BITRATE_BPS: u32 = 150_000;
/// The target bitrate at which a halved source goes back to its full size.
pub const RESTORE_BITRATE_BPS: u32 = 250_000;
/// Payload bytes per RTP packet unless configured otherwise.
pub const DEFAULT_MTU_PAYLOAD: usize = 1200;

/// Errors that prevent a video session from starting.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum VideoError {
    /// [`VideoSession::start`] was called outside a tokio runtime.
    #[error("video session must be started inside a tokio runtime")]
    NoRuntime,
    /// The configuration is unusable (no frame rate, an MTU too small for a packet, ...).
    #[error("invalid video configuration: {0}")]
    Config(String),
    /// An encoder or decoder for the negotiated codecs could not be created.
    #[error("video codec: {0}")]
    Codec(#[from] CodecError),
    /// The SDES keys could not be turned into an SRTP context, or DTLS could not start.
    #[error("SRTP: {0}")]
    Srtp(String),
    /// A codec thread could not be spawned.
    #[error("video thread: {0}")]
    Thread(String),
}

/// What we send: codec, payload type, where frames come from, and the limits the peer set.
pub struct VideoSendConfig {
    /// The codec to encode with.
    pub kind: VideoCodecKind,
    /// The payload type number the peer expects for it.
    pub payload_type: u8,
    /// Where frames come from (a camera, the test pattern, a Y4M file).
    pub source: Box<dyn VideoSource>,
    /// The widest frame the peer accepts (larger sources are scaled down, aspect kept).
    pub max_width: u32,
    /// The tallest frame the peer accepts.
    pub max_height: u32,
    /// The highest frame rate the peer accepts (a faster source has frames skipped).
    pub max_fps: u32,
    /// The encoder bitrate at the start of the call.
    pub start_bitrate_bps: u32,
    /// The highest bitrate the rate controller may reach.
    pub max_bitrate_bps: u32,
}

impl VideoSendConfig {
    /// Sends `source` with `kind` as payload type `payload_type`, limited to 1280x720 at 30 fps,
    /// starting at 500 kbit/s with a 1.5 Mbit/s ceiling.
    pub fn new(kind: VideoCodecKind, payload_type: u8, source: Box<dyn VideoSource>) -> Self {
        VideoSendConfig {
            kind,
            payload_type,
            source,
            max_width: 1280,
            max_height: 720,
            max_fps: 30,
            start_bitrate_bps: 500_000,
            max_bitrate_bps: 1_500_000,
        }
    }
}

impl fmt::Debug for VideoSendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VideoSendConfig")
            .field("kind", &self.kind)
            .field("payload_type", &self.payload_type)
            .field("source_size", &self.source.size())
            .field("source_fps", &self.source.fps())
            .field("max_width", &self.max_width)
            .field("max_height", &self.max_height)
            .field("max_fps", &self.max_fps)
            .field("start_bitrate_bps", &self.start_bitrate_bps)
            .field("max_bitrate_bps", &self.max_bitrate_bps)
            .finish()
    }
}

/// One payload type we accept and the codec it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VideoRecvCodec {
    /// The codec.
    pub kind: VideoCodecKind,
    /// Its payload type number.
    pub payload_type: u8,
}

/// Where decoded frames go (a renderer, a recording, the app's latest-frame slot).
pub trait VideoSink: Send {
    /// Called on the decoder thread for every decoded frame, in order.
    fn frame(&mut self, frame: &VideoFrame);

    /// Called once when the session stops; flush buffered output here.
    fn finish(&mut self) {}
}

/// A Y4M recording of the decoded video; a write error is logged once per session (each
/// session decodes on its own thread) and the frame is lost.
impl<W: Write + Send> VideoSink for Y4mWriter<W> {
    fn frame(&mut self, frame: &VideoFrame) {
        if let Err(e) = self.write_frame(frame)
            && !RECORD_ERROR_LOGGED.with(|logged| logged.replace(true))
        {
            warn!(error = %e, "writing the video recording failed");
        }
    }
}

thread_local! {
    /// A recording written on this decoder thread has failed (and was logged).
    static RECORD_ERROR_LOGGED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Everything a video session needs: sockets, the negotiated SDP values, security, source and sink.
pub struct VideoConfig {
    /// The RTP socket or transport (and RTCP when `rtcp_mux`).
    pub socket: MediaSocket,
    /// The RTCP socket when RTCP is not multiplexed (`None`: RTCP goes over `socket`).
    pub rtcp_socket: Option<MediaSocket>,
    /// Where the peer wants RTP.
    pub remote_rtp: SocketAddr,
    /// Where the peer wants RTCP without rtcp-mux (`None`: the RTP port + 1).
    pub remote_rtcp: Option<SocketAddr>,
    /// Both sides agreed on `a=rtcp-mux`.
    pub rtcp_mux: bool,
    /// What we send (`None`: receive only).
    pub send: Option<VideoSendConfig>,
    /// The payload types we accept.
    pub recv: Vec<VideoRecvCodec>,
    /// Where decoded frames go (`None`: decoded and counted, not shown).
    pub sink: Option<Box<dyn VideoSink>>,
    /// Where our own captured frames go (self view), on the encoder thread.
    pub preview: Option<Box<dyn VideoSink>>,
    /// The RTCP feedback both sides negotiated.
    pub feedback: VideoFeedback,
    /// Media direction from our point of view.
    pub direction: Direction,
    /// Plain, SDES-SRTP or DTLS-SRTP.
    pub security: MediaSecurity,
    /// Our RTCP CNAME.
    pub cname: String,
    /// No RTP received for this long while the peer is supposed to send: [`VideoEvent::RtpTimeout`].
    pub rtp_timeout: Duration,
    /// Mean interval of our RTCP reports (randomised 0.5–1.5 ×).
    pub report_interval: Duration,
    /// How often a [`VideoEvent::Stats`] is emitted.
    pub stats_interval: Duration,
    /// Give up on a DTLS-SRTP handshake that has not finished after this long.
    pub dtls_timeout: Duration,
    /// Largest RTP payload in bytes (the packetizer splits frames to fit).
    pub mtu_payload: usize,
}

impl VideoConfig {
    /// A plain configuration with no sending, no receive codecs, all feedback on, rtcp-mux,
    /// sendrecv, a random CNAME, a 30 s RTP timeout, 1 s reports, 5 s stats and 1200-byte
    /// payloads; adjust the public fields afterwards.
    pub fn new(socket: impl Into<MediaSocket>, remote_rtp: SocketAddr) -> Self {
        VideoConfig {
            socket: socket.into(),
            rtcp_socket: None,
            remote_rtp,
            remote_rtcp: None,
            rtcp_mux: true,
            send: None,
            recv: Vec::new(),
            sink: None,
            preview: None,
            feedback: VideoFeedback {
                nack: true,
                pli: true,
                fir: true,
                remb: true,
            },
            direction: Direction::SendRecv,
            security: MediaSecurity::Plain,
            cname: format!("{:016x}@tandem", rand::random::<u64>()),
            rtp_timeout: Duration::from_secs(30),
            report_interval: Duration::from_secs(1),
            stats_interval: Duration::from_secs(5),
            dtls_timeout: Duration::from_secs(10),
            mtu_payload: DEFAULT_MTU_PAYLOAD,
        }
    }
}

impl fmt::Debug for VideoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VideoConfig")
            .field("local", &self.socket.local_addr().ok())
            .field("remote_rtp", &self.remote_rtp)
            .field("remote_rtcp", &self.remote_rtcp)
            .field("rtcp_mux", &self.rtcp_mux)
            .field("send", &self.send)
            .field("recv", &self.recv)
            .field("sink", &self.sink.is_some())
            .field("preview", &self.preview.is_some())
            .field("feedback", &self.feedback)
            .field("direction", &self.direction)
            .field("security", &self.security)
            .field("cname", &self.cname)
            .field("rtp_timeout", &self.rtp_timeout)
            .field("report_interval", &self.report_interval)
            .field("mtu_payload", &self.mtu_payload)
            .finish_non_exhaustive()
    }
}

/// A change from a re-INVITE or UPDATE; `None` fields stay as they are.
#[derive(Debug, Default)]
pub struct VideoUpdate {
    /// New RTP destination.
    pub remote_rtp: Option<SocketAddr>,
    /// New RTCP destination.
    pub remote_rtcp: Option<SocketAddr>,
    /// New rtcp-mux agreement.
    pub rtcp_mux: Option<bool>,
    /// New direction.
    pub direction: Option<Direction>,
    /// New negotiated feedback.
    pub feedback: Option<VideoFeedback>,
    /// New keys (SDES re-keying) or a new DTLS association.
    pub security: Option<MediaSecurity>,
}

/// What a video session reports to the call.
#[derive(Debug, Clone)]
#[non_exhaustive]
// Events are a few per second at most; the statistics stay inline as the contract has them.
#[allow(clippy::large_enum_variant)]
pub enum VideoEvent {
    /// The first frame of the peer's video was decoded.
    FirstFrame {
        /// Its width in pixels.
        width: u32,
        /// Its height in pixels.
        height: u32,
    },
    /// The decoded size changed.
    SizeChanged {
        /// The new width.
        width: u32,
        /// The new height.
        height: u32,
    },
    /// Periodic statistics (every `stats_interval`).
    Stats(VideoStats),
    /// No RTP for `rtp_timeout` while the peer is supposed to send.
    RtpTimeout,
    /// RTP arrives again after a [`VideoEvent::RtpTimeout`].
    RtpResumed,
    /// The peer's SSRC changed (a new assembler and decoder were set up).
    SsrcChanged {
        /// The SSRC we were receiving.
        old: u32,
        /// The SSRC now received.
        new: u32,
    },
    /// True: SRTP keys are in place (SDES at once, DTLS after the handshake). False: the
    /// session runs plain RTP.
    Secure(bool),
    /// The DTLS-SRTP handshake or SDES keying failed; no media flows (never plain RTP).
    SecurityFailed(String),
    /// A finite source (a Y4M file played once) has ended; no more frames are sent.
    SourceEnded,
    /// A non-fatal problem: a source or encoder error, a codec that cannot be created.
    Error(String),
}

/// Counters of a video session (cumulative since the start).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct VideoStats {
    /// Encoded frames sent.
    pub frames_sent: u64,
    /// Keyframes among them.
    pub keyframes_sent: u64,
    /// RTP payload bytes sent (retransmissions excluded).
    pub bytes_sent: u64,
    /// RTP packets sent (retransmissions excluded).
    pub packets_sent: u64,
    /// Packets sent again for NACKs.
    pub retransmissions: u64,
    /// NACKed packets no longer in the send history.
    pub retransmissions_missed: u64,
    /// Source frames not encoded because the encoder was busy or the frame rate cap.
    pub frames_skipped: u64,
    /// Encoder errors.
    pub encode_errors: u64,
    /// Complete frames out of the frame assembler.
    pub frames_received: u64,
    /// Frames decoded into pictures.
    pub frames_decoded: u64,
    /// Keyframes among the received frames.
    pub keyframes_received: u64,
    /// Frames the decoder rejected.
    pub decode_errors: u64,
    /// Frames dropped before decoding because the decoder fell behind.
    pub frames_dropped_decoder: u64,
    /// Decoded pictures larger than [`crate::frame::MAX_WIDTH`] x [`crate::frame::MAX_HEIGHT`],
    /// dropped.
    pub oversized_dropped: u64,
    /// Frames the assembler dropped (incomplete, no keyframe to start from).
    pub frames_dropped_assembler: u64,
    /// NACK messages sent.
    pub nacks_sent: u64,
    /// Sequence numbers requested in them.
    pub nacked_packets: u64,
    /// NACK messages received about our stream.
    pub nacks_received: u64,
    /// PLIs sent.
    pub plis_sent: u64,
    /// FIRs sent.
    pub firs_sent: u64,
    /// PLIs received about our stream.
    pub plis_received: u64,
    /// FIRs received about our stream.
    pub firs_received: u64,
    /// Keyframe requests received while a keyframe had just been sent (coalesced).
    pub keyframe_requests_coalesced: u64,
    /// The last REMB the peer sent (0: none).
    pub remb_received_bps: u64,
    /// The last REMB we sent (0: none).
    pub remb_sent_bps: u64,
    /// The rate controller's current target (our encoder bitrate).
    pub target_bitrate_bps: u32,
    /// Width of the last decoded frame.
    pub recv_width: u32,
    /// Height of the last decoded frame.
    pub recv_height: u32,
    /// Width of the last frame sent.
    pub send_width: u32,
    /// Height of the last frame sent.
    pub send_height: u32,
    /// RTP packets received from the peer (retransmissions included).
    pub packets_received: u64,
    /// RTP payload bytes received.
    pub bytes_received: u64,
    /// Cumulative packets lost of the peer's stream (RFC 3550 A.3; retransmissions fill gaps).
    pub packets_lost: i64,
    /// Loss of the peer's stream over the whole call, in percent.
    pub loss_percent: f32,
    /// Loss the peer reported about our stream in its last report, in percent.
    pub remote_loss_percent: Option<f32>,
    /// Round-trip time from the report blocks about our sender reports.
    pub rtt_ms: Option<f32>,
    /// Datagrams dropped as malformed (bad RTP/RTCP, unparsable payloads).
    pub malformed_dropped: u64,
    /// RTP packets of a payload type we did not negotiate, dropped.
    pub unknown_pt_dropped: u64,
    /// RTP packets the assembler refused (too late, duplicate, over its bounds).
    pub packets_dropped: u64,
    /// Changes of the peer's SSRC.
    pub ssrc_changes: u64,
    /// SRTP/SRTCP packets that failed authentication.
    pub srtp_auth_failures: u64,
    /// Whether SRTP keys are in place.
    pub srtp: bool,
    /// Times the sent resolution was halved for a low bitrate.
    pub downscales: u64,
}

/// Commands from the handles to the session task.
enum Control {
    SetSource(Option<Box<dyn VideoSource>>),
    RequestKeyframe,
    SetDirection(Direction),
    Update(Box<VideoUpdate>),
    Stop(Option<oneshot::Sender<VideoStats>>),
}

/// A cloneable handle to a running session's controls.
#[derive(Clone)]
pub struct VideoControl {
    tx: mpsc::UnboundedSender<Control>,
    snapshot: Arc<Mutex<VideoStats>>,
}

impl fmt::Debug for VideoControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VideoControl")
            .field("running", &!self.tx.is_closed())
            .finish()
    }
}

impl VideoControl {
    /// Switches the source: camera on, off (`None`: no frames, RTCP continues) or another one.
    pub fn set_source(&self, source: Option<Box<dyn VideoSource>>) {
        // A closed channel means the session has ended: nothing left to change.
        let _ = self.tx.send(Control::SetSource(source));
    }

    /// Asks our encoder for a keyframe (subject to the same rate limit as a PLI).
    pub fn request_keyframe(&self) {
        let _ = self.tx.send(Control::RequestKeyframe);
    }

    /// Changes the direction (hold, upgrade to sendrecv, ...).
    pub fn set_direction(&self, direction: Direction) {
        let _ = self.tx.send(Control::SetDirection(direction));
    }

    /// Applies a re-INVITE/UPDATE result: addresses, direction, feedback, keys.
    pub fn update(&self, update: VideoUpdate) {
        let _ = self.tx.send(Control::Update(Box::new(update)));
    }

    /// A live snapshot of the counters.
    pub fn stats(&self) -> VideoStats {
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// True while the session task runs.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }
}

/// The owning handle of a video stream's task; dropping it stops the task (like
/// [`Self::stop`] without waiting).
pub struct VideoSession {
    control: VideoControl,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for VideoSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VideoSession")
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

impl VideoSession {
    /// Starts the session task (and its codec threads); events arrive on the returned receiver.
    pub fn start(
        config: VideoConfig,
    ) -> Result<(VideoSession, mpsc::UnboundedReceiver<VideoEvent>), VideoError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| VideoError::NoRuntime)?;
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let snapshot = Arc::new(Mutex::new(VideoStats::default()));
        let engine = engine::Engine::new(config, event_tx, Arc::clone(&snapshot))?;
        let task = handle.spawn(engine.run(ctrl_rx));
        Ok((
            VideoSession {
                control: VideoControl {
                    tx: ctrl_tx,
                    snapshot,
                },
                task: Some(task),
            },
            event_rx,
        ))
    }

    /// A cloneable handle to this session's controls.
    pub fn control(&self) -> VideoControl {
        self.control.clone()
    }

    /// See [`VideoControl::stats`].
    pub fn stats(&self) -> VideoStats {
        self.control.stats()
    }

    /// Sends RTCP BYE, stops the codec threads, finishes and drops the sink (a recording is
    /// complete on disk after this) and returns the final counters.
    pub async fn stop(mut self) -> VideoStats {
        let (tx, rx) = oneshot::channel();
        let last = if self.control.tx.send(Control::Stop(Some(tx))).is_ok() {
            rx.await.ok()
        } else {
            None
        };
        if let Some(task) = self.task.take() {
            // The task ends right after answering; a panic inside it is reported by tokio.
            let _ = task.await;
        }
        last.unwrap_or_else(|| self.control.stats())
    }
}

impl Drop for VideoSession {
    fn drop(&mut self) {
        if self.task.is_some() {
            let _ = self.control.tx.send(Control::Stop(None));
        }
    }
}
