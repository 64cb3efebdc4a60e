//! The per-call media engine: one tokio task per call that captures, encodes, protects and
//! sends audio, and receives, authenticates, buffers, decodes and plays the peer's audio.
//!
//! The task owns the RTP socket (and the RTCP socket when RTCP is not multiplexed). Every
//! `ptime` a [`tokio::time::interval`] tick reads one frame from the capture device, encodes
//! it with [`crate::chain::AudioSendChain`] and sends it as RTP (SRTP when the call is secure),
//! unless an RFC 4733 DTMF packet takes that tick; the same tick pulls one frame from
//! [`crate::chain::AudioReceiveChain`] into the playback device. Received datagrams are
//! demultiplexed by their first byte (RFC 7983): RTP and RTCP (RFC 5761), DTLS (the
//! DTLS-SRTP handshake, RFC 5763/5764, runs on the same socket before media flows) and STUN
//! (ignored here). RTCP SR/RR with SDES CNAME go out about every five seconds (RFC 3550 §6.3),
//! and the report blocks we receive give the round-trip time for [`CallQuality`].
//!
//! [`MediaSession`] is the owning handle ([`MediaSession::stop`] sends RTCP BYE, finishes the
//! playback device and returns the final quality); [`MediaControl`] is a cloneable handle for
//! the other controls. Events (first RTP, DTMF digits, SSRC changes, RTP timeout, security
//! outcome, quality reports) arrive on the receiver returned by [`MediaSession::start`].
//!
//! The parts every RTP engine needs are public building blocks, also used by the video
//! session: [`transport`] (sockets, keys and the DTLS-SRTP handshake, RFC 7983 demux,
//! protect/unprotect, where RTCP goes) and [`reports`] (SR/RR with SDES CNAME built from the
//! stream's counters, BYE, reading the peer's report blocks, the randomised interval).

mod engine;
pub mod reports;
mod socket;
pub mod transport;

pub use socket::{MediaSocket, MediaTransport, SendFuture};

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tandem_proto::sdp::Direction;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::chain::{ChainError, ReceiveChainStats};
use crate::codec::CodecSpec;
use crate::device::{CaptureDevice, PlaybackDevice};
use crate::srtp::{DtlsCertificate, DtlsRole, SdesCrypto, SrtpError};
use crate::stats::CallQuality;

/// Errors that prevent a media session from starting.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MediaError {
    /// [`MediaSession::start`] was called outside a tokio runtime.
    #[error("media session must be started inside a tokio runtime")]
    NoRuntime,
    /// The configuration is unusable (zero ptime, a codec clock of zero, ...).
    #[error("invalid media configuration: {0}")]
    Config(String),
    /// The send or receive audio chain could not be built for the negotiated codecs.
    #[error("audio chain: {0}")]
    Chain(#[from] ChainError),
    /// The SDES keys could not be turned into an SRTP context.
    #[error("SRTP: {0}")]
    Srtp(#[from] SrtpError),
}

/// How the media of a call is protected.
pub enum MediaSecurity {
    /// Plain RTP/RTCP (RTP/AVP).
    Plain,
    /// SRTP keyed by SDES `a=crypto` lines (RFC 4568): our key and the peer's key.
    Sdes {
        /// The crypto attribute we sent (our sending key).
        local: SdesCrypto,
        /// The crypto attribute the peer sent (its sending key).
        remote: SdesCrypto,
    },
    /// SRTP keyed by a DTLS handshake on the media socket (RFC 5763/5764).
    Dtls {
        /// Our DTLS role, from the `a=setup` negotiation.
        role: DtlsRole,
        /// Our certificate (its fingerprint went into our SDP).
        cert: DtlsCertificate,
        /// The peer's `a=fingerprint` value (`sha-256 AB:CD:...`).
        remote_fingerprint: String,
    },
}

impl MediaSecurity {
    /// True for SDES and DTLS-SRTP: media flows only once keys exist, plain RTP is dropped.
    pub fn is_secure(&self) -> bool {
        !matches!(self, MediaSecurity::Plain)
    }
}

impl fmt::Debug for MediaSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        match self {
            MediaSecurity::Plain => f.write_str("Plain"),
            MediaSecurity::Sdes { local, remote } => f
                .debug_struct("Sdes")
                .field("local_tag", &local.tag)
                .field("local_suite", &local.suite)
                .field("remote_tag", &remote.tag)
                .field("remote_suite", &remote.suite)
                .finish_non_exhaustive(),
            MediaSecurity::Dtls {
                role,
                remote_fingerprint,
                ..
            } => f
                .debug_struct("Dtls")
                .field("role", role)
                .field("remote_fingerprint", remote_fingerprint)
                .finish_non_exhaustive(),
        }
    }
}

/// Everything a media session needs: sockets, the negotiated SDP values, security and devices.
pub struct MediaConfig {
    /// The RTP socket or transport (and RTCP when `rtcp_mux`).
    pub socket: MediaSocket,
    /// The RTCP socket when RTCP is not multiplexed (`None`: RTCP goes over `socket`).
    pub rtcp_socket: Option<MediaSocket>,
    /// Where the peer wants RTP (the SDP address; no latching here).
    pub remote_rtp: SocketAddr,
    /// Where the peer wants RTCP without rtcp-mux (`None`: the RTP port + 1); with rtcp-mux
    /// RTCP always goes to `remote_rtp` (RFC 5761).
    pub remote_rtcp: Option<SocketAddr>,
    /// Both sides agreed on `a=rtcp-mux` (RFC 5761).
    pub rtcp_mux: bool,
    /// The codec we send, with the payload type number the peer expects.
    pub send_codec: CodecSpec,
    /// Every payload type we accept (ours and, leniently, the peer's numbering).
    pub recv_codecs: Vec<CodecSpec>,
    /// The telephone-event (payload type, clock rate) the peer expects, if it has one.
    pub send_dtmf: Option<(u8, u32)>,
    /// The telephone-event payload types we accept, with their clock rates.
    pub recv_dtmf: Vec<(u8, u32)>,
    /// Packetisation time of what we send (20 ms unless the peer asked otherwise).
    pub ptime: Duration,
    /// Media direction from our point of view.
    pub direction: Direction,
    /// Plain, SDES-SRTP or DTLS-SRTP.
    pub security: MediaSecurity,
    /// Where our audio comes from.
    pub capture: Box<dyn CaptureDevice>,
    /// Where the peer's audio goes.
    pub playback: Box<dyn PlaybackDevice>,
    /// Our RTCP CNAME.
    pub cname: String,
    /// No RTP received for this long while the peer is supposed to send: [`MediaEvent::RtpTimeout`].
    pub rtp_timeout: Duration,
}

impl MediaConfig {
    /// A plain sendrecv configuration with one codec, 20 ms frames, rtcp-mux, no DTMF, a
    /// random CNAME and a 30 s RTP timeout; adjust the public fields afterwards.
    pub fn new(
        socket: impl Into<MediaSocket>,
        remote_rtp: SocketAddr,
        codec: CodecSpec,
        capture: Box<dyn CaptureDevice>,
        playback: Box<dyn PlaybackDevice>,
    ) -> Self {
        MediaConfig {
            socket: socket.into(),
            rtcp_socket: None,
            remote_rtp,
            remote_rtcp: None,
            rtcp_mux: true,
            recv_codecs: vec![codec.clone()],
            send_codec: codec,
            send_dtmf: None,
            recv_dtmf: Vec::new(),
            ptime: Duration::from_millis(20),
            direction: Direction::SendRecv,
            security: MediaSecurity::Plain,
            capture,
            playback,
            cname: format!("{:016x}@tandem", rand::random::<u64>()),
            rtp_timeout: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for MediaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaConfig")
            .field("local", &self.socket.local_addr().ok())
            .field("remote_rtp", &self.remote_rtp)
            .field("remote_rtcp", &self.remote_rtcp)
            .field("rtcp_mux", &self.rtcp_mux)
            .field("send_codec", &self.send_codec)
            .field("recv_codecs", &self.recv_codecs)
            .field("send_dtmf", &self.send_dtmf)
            .field("recv_dtmf", &self.recv_dtmf)
            .field("ptime", &self.ptime)
            .field("direction", &self.direction)
            .field("security", &self.security)
            .field("cname", &self.cname)
            .field("rtp_timeout", &self.rtp_timeout)
            .finish_non_exhaustive()
    }
}

/// Timing knobs of a session; [`Default`] is what calls use, tests shorten the intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionTuning {
    /// Mean RTCP report interval before the RFC 3550 §6.3 randomisation (0.5–1.5 ×).
    pub rtcp_interval: Duration,
    /// How often a [`MediaEvent::Quality`] is emitted.
    pub quality_interval: Duration,
    /// Give up on a DTLS-SRTP handshake that has not finished after this long.
    pub dtls_timeout: Duration,
    /// The jitter buffer's smallest target delay (default 10 ms; the frame clock adds up to one
    /// frame of waiting on top of the buffer's target).
    pub jitter_min_delay: Duration,
    /// The jitter buffer's largest target delay.
    pub jitter_max_delay: Duration,
}

impl Default for SessionTuning {
    fn default() -> Self {
        SessionTuning {
            rtcp_interval: Duration::from_secs(5),
            quality_interval: Duration::from_secs(5),
            dtls_timeout: Duration::from_secs(10),
            // Playout pulls whole frames on the frame clock, which adds 0..ptime of waiting on
            // top of the buffer's target: 10 ms gives 10-30 ms (20 ms on average) on a clean
            // path, and the target grows with measured jitter.
            jitter_min_delay: Duration::from_millis(10),
            jitter_max_delay: Duration::from_millis(300),
        }
    }
}

impl SessionTuning {
    /// Returns these settings with another mean RTCP interval.
    pub fn with_rtcp_interval(mut self, interval: Duration) -> Self {
        self.rtcp_interval = interval;
        self
    }

    /// Returns these settings with another quality event interval.
    pub fn with_quality_interval(mut self, interval: Duration) -> Self {
        self.quality_interval = interval;
        self
    }

    /// Returns these settings with other jitter buffer delay bounds.
    pub fn with_jitter_delay(mut self, min: Duration, max: Duration) -> Self {
        self.jitter_min_delay = min;
        self.jitter_max_delay = max.max(min);
        self
    }

    /// Returns these settings with another DTLS handshake limit.
    pub fn with_dtls_timeout(mut self, timeout: Duration) -> Self {
        self.dtls_timeout = timeout;
        self
    }
}

/// A change from a re-INVITE or UPDATE; `None` fields stay as they are.
#[derive(Debug, Default)]
pub struct MediaUpdate {
    /// New RTP destination.
    pub remote_rtp: Option<SocketAddr>,
    /// New RTCP destination.
    pub remote_rtcp: Option<SocketAddr>,
    /// New rtcp-mux agreement.
    pub rtcp_mux: Option<bool>,
    /// New send codec (payload type as the peer numbers it).
    pub send_codec: Option<CodecSpec>,
    /// New set of receivable payload types.
    pub recv_codecs: Option<Vec<CodecSpec>>,
    /// New telephone-event payload type of the peer (`Some(None)`: it has none any more).
    pub send_dtmf: Option<Option<(u8, u32)>>,
    /// New receivable telephone-event payload types.
    pub recv_dtmf: Option<Vec<(u8, u32)>>,
    /// New packetisation time.
    pub ptime: Option<Duration>,
    /// New direction (hold: `SendOnly`/`Inactive`; resume: `SendRecv`).
    pub direction: Option<Direction>,
    /// New keys (SDES re-keying) or a new DTLS association.
    pub security: Option<MediaSecurity>,
}

/// What a media session reports to the call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MediaEvent {
    /// The first valid RTP packet arrived (after SRTP authentication when secure).
    FirstRtp,
    /// An RFC 4733 DTMF digit arrived (once per key press).
    Dtmf(char),
    /// The peer's SSRC changed.
    SsrcChanged {
        /// The SSRC we were receiving.
        old: u32,
        /// The SSRC now received.
        new: u32,
    },
    /// No RTP for `rtp_timeout` while the peer is supposed to send.
    RtpTimeout,
    /// RTP arrives again after an [`MediaEvent::RtpTimeout`].
    RtpResumed,
    /// SRTP keys are in place (SDES at once, DTLS after the handshake); media flows.
    SecureEstablished,
    /// The DTLS-SRTP handshake or SDES keying failed; no media flows (never plain RTP).
    SecurityFailed(String),
    /// A finite capture source (a WAV file played once) has ended; silence follows.
    CaptureEnded,
    /// Periodic call quality (every `quality_interval`, 5 s by default).
    Quality(CallQuality),
    /// A non-fatal problem: DTMF without a telephone-event payload type, a device error, ...
    Error(String),
}

/// What the task publishes for the handles after every frame.
#[derive(Debug, Default)]
struct Snapshot {
    quality: CallQuality,
    receive: ReceiveChainStats,
}

/// Commands from the handles to the session task.
enum Control {
    Update(Box<MediaUpdate>),
    SendDtmf(String, Duration),
    Mute(bool),
    SwitchDevices(
        Option<Box<dyn CaptureDevice>>,
        Option<Box<dyn PlaybackDevice>>,
    ),
    Stop(Option<oneshot::Sender<CallQuality>>),
}

/// A cloneable handle to a running session's controls.
#[derive(Clone)]
pub struct MediaControl {
    tx: mpsc::UnboundedSender<Control>,
    snapshot: Arc<Mutex<Snapshot>>,
}

impl fmt::Debug for MediaControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaControl")
            .field("running", &!self.tx.is_closed())
            .finish()
    }
}

impl MediaControl {
    /// Applies a re-INVITE/UPDATE result: addresses, codecs, DTMF payload types, direction, keys.
    pub fn update(&self, update: MediaUpdate) {
        // A closed channel means the session has ended: nothing left to update.
        let _ = self.tx.send(Control::Update(Box::new(update)));
    }

    /// Queues RFC 4733 digits (`0-9*#A-D`); an [`MediaEvent::Error`] when the peer has no
    /// telephone-event payload type or a character is not a DTMF digit.
    pub fn send_dtmf(&self, digits: &str, duration: Duration) {
        let _ = self.tx.send(Control::SendDtmf(digits.to_owned(), duration));
    }

    /// Mutes or unmutes: muted, encoded silence keeps RTP flowing.
    pub fn set_mute(&self, muted: bool) {
        let _ = self.tx.send(Control::Mute(muted));
    }

    /// Replaces the capture and/or playback device during the call (the old playback device
    /// is finished).
    pub fn switch_devices(
        &self,
        capture: Option<Box<dyn CaptureDevice>>,
        playback: Option<Box<dyn PlaybackDevice>>,
    ) {
        let _ = self.tx.send(Control::SwitchDevices(capture, playback));
    }

    /// A live snapshot of the call quality.
    pub fn quality(&self) -> CallQuality {
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .quality
            .clone()
    }

    /// A live snapshot of the receive side: jitter buffer delay and target, concealment, FEC
    /// recoveries, decode errors, unknown payload types.
    pub fn receive_stats(&self) -> ReceiveChainStats {
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .receive
            .clone()
    }

    /// True while the session task runs.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }
}

/// The owning handle of a call's media task; dropping it stops the task (like [`Self::stop`]
/// without waiting).
pub struct MediaSession {
    control: MediaControl,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaSession")
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

impl MediaSession {
    /// Starts the media task with default timing; events arrive on the returned receiver.
    pub fn start(
        config: MediaConfig,
    ) -> Result<(MediaSession, mpsc::UnboundedReceiver<MediaEvent>), MediaError> {
        Self::start_tuned(config, SessionTuning::default())
    }

    /// Starts the media task with explicit timing knobs.
    pub fn start_tuned(
        config: MediaConfig,
        tuning: SessionTuning,
    ) -> Result<(MediaSession, mpsc::UnboundedReceiver<MediaEvent>), MediaError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| MediaError::NoRuntime)?;
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        let engine = engine::Engine::new(config, tuning, event_tx, Arc::clone(&snapshot))?;
        let task = handle.spawn(engine.run(ctrl_rx));
        Ok((
            MediaSession {
                control: MediaControl {
                    tx: ctrl_tx,
                    snapshot,
                },
                task: Some(task),
            },
            event_rx,
        ))
    }

    /// A cloneable handle to this session's controls.
    pub fn control(&self) -> MediaControl {
        self.control.clone()
    }

    /// See [`MediaControl::update`].
    pub fn update(&self, update: MediaUpdate) {
        self.control.update(update);
    }

    /// See [`MediaControl::send_dtmf`].
    pub fn send_dtmf(&self, digits: &str, duration: Duration) {
        self.control.send_dtmf(digits, duration);
    }

    /// See [`MediaControl::set_mute`].
    pub fn set_mute(&self, muted: bool) {
        self.control.set_mute(muted);
    }

    /// See [`MediaControl::switch_devices`].
    pub fn switch_devices(
        &self,
        capture: Option<Box<dyn CaptureDevice>>,
        playback: Option<Box<dyn PlaybackDevice>>,
    ) {
        self.control.switch_devices(capture, playback);
    }

    /// See [`MediaControl::quality`].
    pub fn quality(&self) -> CallQuality {
        self.control.quality()
    }

    /// See [`MediaControl::receive_stats`].
    pub fn receive_stats(&self) -> ReceiveChainStats {
        self.control.receive_stats()
    }

    /// Sends RTCP BYE, finishes the playback device (a WAV sink is complete on disk after
    /// this) and returns the final call quality.
    pub async fn stop(mut self) -> CallQuality {
        let (tx, rx) = oneshot::channel();
        let final_quality = if self.control.tx.send(Control::Stop(Some(tx))).is_ok() {
            rx.await.ok()
        } else {
            None
        };
        if let Some(task) = self.task.take() {
            // The task ends right after answering; a panic inside it is reported by tokio.
            let _ = task.await;
        }
        final_quality.unwrap_or_else(|| self.control.quality())
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        if self.task.is_some() {
            let _ = self.control.tx.send(Control::Stop(None));
        }
    }
}
