//! The session task: one select loop over the control channel, the media sockets, the frame
//! tick and the protocol timers (RTCP, quality, DTLS).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;
use tandem_proto::sdp::Direction;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tracing::{debug, trace, warn};

use super::{
    Control, MediaConfig, MediaError, MediaEvent, MediaSecurity, MediaSocket, MediaUpdate,
    SessionTuning, Snapshot,
};
use crate::chain::{AudioReceiveChain, AudioSendChain};
use crate::codec::CodecSpec;
use crate::device::{CaptureDevice, PlaybackDevice};
use crate::dtmf::{DtmfReceiver, DtmfSender, TelephoneEvent};
use crate::rtcp::{self, Bye, ReceiverReport, ReportBlock, RtcpPacket, Sdes, SenderReport};
use crate::rtp::{PacketKind, RtpPacket, RtpStream, classify};
use crate::srtp::{DtlsRole, DtlsSrtp, SdesCrypto, SrtpContext};
use crate::stats::{CallQuality, ReceiverStats, SeqOutcome, mos_estimate};

/// Largest datagram we read; media packets are far smaller, DTLS flights are fragmented to
/// the path MTU.
const RECV_BUFFER: usize = 4096;

/// Datagrams read per socket before a frame tick is processed.
const MAX_DRAIN: usize = 64;

/// The shortest wait before a DTLS timer that did not move is handled again.
const DTLS_TIMER_FLOOR: Duration = Duration::from_millis(10);
/// The frame clock wakes the task every ptime; a wake-up this much later than that means the
/// task was starved (a loaded machine), and what it reads now had been waiting for it.
const STALL_SLACK: Duration = Duration::from_millis(30);

/// Which socket a datagram goes out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Rtp,
    Rtcp,
}

/// Keys and handshake state of the call.
struct Security {
    /// SDES or DTLS-SRTP was negotiated: never send or accept plain RTP.
    secure: bool,
    /// The SRTP context once keys exist.
    srtp: Option<SrtpContext>,
    /// The SDES lines `srtp` was made from (a re-INVITE repeating them keeps the context).
    sdes: Option<(SdesCrypto, SdesCrypto)>,
    /// The DTLS association (kept after the handshake to answer retransmitted flights).
    dtls: Option<DtlsSrtp>,
    /// (role, fingerprint) of `dtls`, to recognise a re-INVITE that keeps the association.
    dtls_key: Option<(DtlsRole, String)>,
    /// When the current DTLS handshake must have finished.
    dtls_deadline: Option<Instant>,
    /// When the DTLS retransmission timer was last handled.
    dtls_handled_at: Option<Instant>,
    /// Keying failed; no media until new keys arrive in an update.
    failed: bool,
    /// Authentication failures of contexts already replaced.
    old_auth_failures: u64,
    /// Packets dropped because they arrived before the keys existed.
    early_dropped: u64,
}

impl Security {
    fn plain() -> Self {
        Security {
            secure: false,
            srtp: None,
            sdes: None,
            dtls: None,
            dtls_key: None,
            dtls_deadline: None,
            dtls_handled_at: None,
            failed: false,
            old_auth_failures: 0,
            early_dropped: 0,
        }
    }

    /// Media may flow: plain, or secure with keys.
    fn ready(&self) -> bool {
        !self.secure || self.srtp.is_some()
    }

    fn auth_failures(&self) -> u64 {
        self.old_auth_failures + self.srtp.as_ref().map_or(0, SrtpContext::auth_failures)
    }

    fn replace_context(&mut self, ctx: Option<SrtpContext>) {
        if let Some(old) = self.srtp.take() {
            self.old_auth_failures += old.auth_failures();
        }
        self.srtp = ctx;
    }
}

/// The state of one call's media, driven by [`Engine::run`].
pub(super) struct Engine {
    /// RTP went out in the report interval before the last one (RFC 3550 §6.4: an SR covers two intervals).
    sent_in_previous_interval: bool,
    socket: MediaSocket,
    rtcp_socket: Option<MediaSocket>,
    remote_rtp: SocketAddr,
    remote_rtcp: Option<SocketAddr>,
    rtcp_mux: bool,
    send_codec: CodecSpec,
    recv_codecs: Vec<CodecSpec>,
    send_dtmf: Option<(u8, u32)>,
    recv_dtmf: Vec<(u8, u32)>,
    ptime: Duration,
    direction: Direction,
    capture: Box<dyn CaptureDevice>,
    playback: Box<dyn PlaybackDevice>,
    cname: String,
    rtp_timeout: Duration,
    tuning: SessionTuning,
    events: mpsc::UnboundedSender<MediaEvent>,
    snapshot: Arc<Mutex<Snapshot>>,

    security: Security,
    send_chain: AudioSendChain,
    recv_chain: AudioReceiveChain,
    stream: RtpStream,
    /// The next audio packet starts a talkspurt (RTP marker bit).
    marker_next: bool,
    dtmf_sender: Option<DtmfSender>,
    dtmf_receiver: DtmfReceiver,
    rx_stats: ReceiverStats,
    /// Clock rate of the audio payload type last received (the stream's timestamp clock).
    rx_clock: u32,
    capture_buf: Vec<i16>,
    playout_buf: Vec<i16>,
    muted: bool,
    capture_ended: bool,
    capture_error_reported: bool,
    playback_error_reported: bool,
    /// First valid RTP seen.
    got_rtp: bool,
    /// Last valid RTP, or when we last started expecting it.
    last_rtp: Instant,
    /// When the task last handled a datagram, a tick or a timer (stall detection).
    last_wake: Instant,
    timed_out: bool,
    rtt: Option<Duration>,
    remote_loss_percent: Option<f32>,
    next_rtcp: Instant,
    next_quality: Instant,
    /// Outgoing datagrams waiting for the socket.
    outbox: Vec<(Via, SocketAddr, Vec<u8>)>,
    /// A new ptime needs a new interval.
    retime: bool,
}

/// Samples in one frame of `ptime` at `rate` Hz.
fn frame_samples(rate: u32, ptime: Duration) -> usize {
    usize::try_from(u128::from(rate) * ptime.as_micros() / 1_000_000).unwrap_or(0)
}

fn sends(direction: Direction) -> bool {
    matches!(direction, Direction::SendRecv | Direction::SendOnly)
}

fn receives(direction: Direction) -> bool {
    matches!(direction, Direction::SendRecv | Direction::RecvOnly)
}

/// A randomised report interval around `mean` (RFC 3550 §6.3.1: 0.5–1.5 ×).
fn randomized(mean: Duration) -> Duration {
    mean.mul_f64(rand::rng().random_range(0.5..1.5))
}

fn validate_ptime(ptime: Duration) -> Result<(), MediaError> {
    if ptime < Duration::from_millis(5) || ptime > Duration::from_millis(120) {
        return Err(MediaError::Config(format!(
            "ptime {} ms is outside 5..=120 ms",
            ptime.as_millis()
        )));
    }
    Ok(())
}

impl Engine {
    /// Builds the engine: audio chains, RTP stream, SDES context or DTLS endpoint.
    pub(super) fn new(
        config: MediaConfig,
        tuning: SessionTuning,
        events: mpsc::UnboundedSender<MediaEvent>,
        snapshot: Arc<Mutex<Snapshot>>,
    ) -> Result<Self, MediaError> {
        validate_ptime(config.ptime)?;
        if config.send_codec.clock_rate == 0 {
            return Err(MediaError::Config("send codec clock rate is 0".into()));
        }
        let send_chain =
            AudioSendChain::new(&config.send_codec, config.capture.rate(), config.ptime)?;
        let mut recv_chain =
            AudioReceiveChain::new(config.recv_codecs.clone(), config.playback.rate())?;
        recv_chain.set_delay_bounds(tuning.jitter_min_delay, tuning.jitter_max_delay);
        // The frame clock follows the packet time the codec really uses (Opus: 10/20/40/60 ms).
        let ptime = send_chain.ptime();
        let stream = RtpStream::new(
            RtpStream::random_ssrc(),
            config.send_codec.payload_type,
            config.send_codec.clock_rate,
        );
        let now = Instant::now();
        let mut engine = Engine {
            sent_in_previous_interval: false,
            socket: config.socket,
            rtcp_socket: config.rtcp_socket,
            remote_rtp: config.remote_rtp,
            remote_rtcp: config.remote_rtcp,
            rtcp_mux: config.rtcp_mux,
            rx_clock: config.send_codec.clock_rate,
            dtmf_sender: config.send_dtmf.map(|(_, clock)| DtmfSender::new(clock)),
            send_codec: config.send_codec,
            recv_codecs: config.recv_codecs,
            send_dtmf: config.send_dtmf,
            recv_dtmf: config.recv_dtmf,
            ptime,
            direction: config.direction,
            capture: config.capture,
            playback: config.playback,
            cname: config.cname,
            rtp_timeout: config.rtp_timeout,
            tuning,
            events,
            snapshot,
            security: Security::plain(),
            send_chain,
            recv_chain,
            stream,
            marker_next: true,
            dtmf_receiver: DtmfReceiver::new(),
            rx_stats: ReceiverStats::new(),
            capture_buf: Vec::new(),
            playout_buf: Vec::new(),
            muted: false,
            capture_ended: false,
            capture_error_reported: false,
            playback_error_reported: false,
            got_rtp: false,
            last_rtp: now,
            last_wake: now,
            timed_out: false,
            rtt: None,
            remote_loss_percent: None,
            // RFC 3550 §6.2: the first report goes out after half the minimum interval.
            next_rtcp: now + randomized(tuning.rtcp_interval / 2),
            next_quality: now + tuning.quality_interval,
            outbox: Vec::new(),
            retime: false,
        };
        engine.apply_security(now, config.security)?;
        Ok(engine)
    }

    /// Installs new security: SDES keys at once, DTLS by starting a handshake.
    fn apply_security(&mut self, now: Instant, security: MediaSecurity) -> Result<(), MediaError> {
        match security {
            MediaSecurity::Plain => {
                self.security.replace_context(None);
                self.security.secure = false;
                self.security.sdes = None;
                self.security.dtls = None;
                self.security.dtls_key = None;
                self.security.dtls_deadline = None;
                self.security.failed = false;
            }
            MediaSecurity::Sdes { local, remote } => {
                let same = self
                    .security
                    .sdes
                    .as_ref()
                    .is_some_and(|(l, r)| *l == local && *r == remote);
                self.security.secure = true;
                if !same || self.security.srtp.is_none() {
                    let ctx = SrtpContext::from_sdes(&local, &remote)?;
                    self.security.replace_context(Some(ctx));
                    self.security.sdes = Some((local, remote));
                    self.security.dtls = None;
                    self.security.dtls_key = None;
                    self.security.dtls_deadline = None;
                    self.security.failed = false;
                    self.emit(MediaEvent::SecureEstablished);
                    self.media_became_ready(now);
                }
            }
            MediaSecurity::Dtls {
                role,
                cert,
                remote_fingerprint,
            } => {
                let key = (role, remote_fingerprint.clone());
                self.security.secure = true;
                if self.security.dtls_key.as_ref() == Some(&key) && !self.security.failed {
                    return Ok(());
                }
                let dtls = DtlsSrtp::new(role, cert, remote_fingerprint)?;
                self.security.replace_context(None);
                self.security.sdes = None;
                self.security.dtls = Some(dtls);
                self.security.dtls_key = Some(key);
                self.security.dtls_deadline = Some(now + self.tuning.dtls_timeout);
                self.security.failed = false;
                self.drive_dtls(now);
            }
        }
        Ok(())
    }

    /// Drains the DTLS endpoint: datagrams to send, a finished handshake, a failure.
    fn drive_dtls(&mut self, now: Instant) {
        let Some(dtls) = self.security.dtls.as_mut() else {
            return;
        };
        while let Some(datagram) = dtls.poll_transmit() {
            self.outbox.push((Via::Rtp, self.remote_rtp, datagram));
        }
        match dtls.poll_result() {
            Some(Ok(ctx)) => {
                debug!("DTLS-SRTP handshake complete");
                self.security.dtls_deadline = None;
                self.security.replace_context(Some(ctx));
                self.emit(MediaEvent::SecureEstablished);
                self.media_became_ready(now);
            }
            Some(Err(e)) => {
                warn!(error = %e, "DTLS-SRTP handshake failed");
                self.security_failed(e.to_string());
            }
            None => {}
        }
    }

    fn security_failed(&mut self, reason: String) {
        self.security.failed = true;
        self.security.dtls = None;
        self.security.dtls_deadline = None;
        self.security.replace_context(None);
        self.emit(MediaEvent::SecurityFailed(reason));
    }

    /// Keys just became available (or media was just enabled): restart the RTP timeout.
    fn media_became_ready(&mut self, now: Instant) {
        self.last_rtp = now;
        self.timed_out = false;
        self.marker_next = true;
    }

    fn emit(&self, event: MediaEvent) {
        // The receiver may have been dropped by a caller not interested in events.
        let _ = self.events.send(event);
    }

    /// The task body: runs until stopped, then reports the final quality.
    pub(super) async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>) {
        let socket = self.socket.clone();
        let rtcp_socket = self.rtcp_socket.clone();
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut rtcp_buf = vec![0u8; RECV_BUFFER];
        let mut ticker = new_ticker(self.ptime);
        self.flush().await;
        let reply = loop {
            if self.retime {
                self.retime = false;
                ticker = new_ticker(self.ptime);
            }
            let wake = tokio::time::Instant::from_std(self.next_timer());
            tokio::select! {
                command = control.recv() => match command {
                    None => break None,
                    Some(Control::Stop(reply)) => break reply,
                    Some(command) => self.on_control(command),
                },
                received = socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => {
                        let data = buf.get(..len).unwrap_or_default();
                        self.on_datagram(Instant::now(), data, from, Via::Rtp);
                    }
                    Err(e) => debug!(error = %e, "RTP socket receive error"),
                },
                received = recv_optional(rtcp_socket.as_ref(), &mut rtcp_buf) => match received {
                    Ok((len, from)) => {
                        let data = rtcp_buf.get(..len).unwrap_or_default();
                        self.on_datagram(Instant::now(), data, from, Via::Rtcp);
                    }
                    Err(e) => debug!(error = %e, "RTCP socket receive error"),
                },
                _ = ticker.tick() => {
                    // Take in everything that has arrived before playing out this frame, so a
                    // task woken late does not conceal frames whose packets are waiting.
                    self.drain(&socket, &mut buf, Via::Rtp);
                    if let Some(rtcp_socket) = rtcp_socket.as_ref() {
                        self.drain(rtcp_socket, &mut rtcp_buf, Via::Rtcp);
                    }
                    self.on_tick(Instant::now());
                }
                () = tokio::time::sleep_until(wake) => self.on_timers(Instant::now()),
            }
            self.flush().await;
        };
        let quality = self.finish().await;
        if let Some(reply) = reply {
            let _ = reply.send(quality);
        }
    }

    /// Reads the datagrams already queued on `socket` without waiting (at most a bounded
    /// number, so a flood cannot stall the frame clock).
    fn drain(&mut self, socket: &MediaSocket, buf: &mut [u8], via: Via) {
        for _ in 0..MAX_DRAIN {
            match socket.try_recv_from(buf) {
                Ok((len, from)) => {
                    let data = buf.get(..len).unwrap_or_default();
                    self.on_datagram(Instant::now(), data, from, via);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    debug!(error = %e, "media socket receive error");
                    break;
                }
            }
        }
    }

    /// Stop: RTCP BYE, playback device finished, final quality.
    async fn finish(&mut self) -> CallQuality {
        let now = Instant::now();
        self.queue_rtcp(now, Some("call ended"));
        self.flush().await;
        if let Err(e) = self.playback.finish() {
            warn!(error = %e, "finishing the playback device failed");
        }
        let quality = self.quality(now);
        self.publish(&quality);
        quality
    }

    /// The earliest of the RTCP, quality and DTLS timers.
    fn next_timer(&self) -> Instant {
        let mut next = self.next_rtcp.min(self.next_quality);
        if let Some(dtls) = self.security.dtls.as_ref()
            && let Some(t) = dtls.poll_timeout()
        {
            // A timer that is still due right after it was handled must not spin the loop.
            let t = match self.security.dtls_handled_at {
                Some(handled) if t <= handled => handled + DTLS_TIMER_FLOOR,
                _ => t,
            };
            next = next.min(t);
        }
        if let Some(deadline) = self.security.dtls_deadline {
            next = next.min(deadline);
        }
        next
    }

    /// Sends everything queued; UDP send errors are logged (media is loss tolerant).
    async fn flush(&mut self) {
        for (via, to, datagram) in std::mem::take(&mut self.outbox) {
            if to.ip().is_unspecified() || to.port() == 0 {
                // Legacy hold (`c=0.0.0.0`) or a rejected stream: nowhere to send. Linux would
                // deliver a datagram for 0.0.0.0 to this host.
                continue;
            }
            let socket = match via {
                Via::Rtcp => self.rtcp_socket.as_ref().unwrap_or(&self.socket),
                Via::Rtp => &self.socket,
            };
            if let Err(e) = socket.send_to(&datagram, to).await {
                debug!(error = %e, %to, "media send failed");
            }
        }
    }

    fn on_control(&mut self, command: Control) {
        let now = Instant::now();
        match command {
            Control::Update(update) => self.on_update(now, *update),
            Control::SendDtmf(digits, duration) => self.queue_dtmf(&digits, duration),
            Control::Mute(muted) => self.muted = muted,
            Control::SwitchDevices(capture, playback) => self.switch_devices(capture, playback),
            // Handled by the loop.
            Control::Stop(_) => {}
        }
    }

    fn queue_dtmf(&mut self, digits: &str, duration: Duration) {
        let Some(sender) = self.dtmf_sender.as_mut() else {
            self.emit(MediaEvent::Error(
                "the peer accepts no RFC 4733 telephone-event; DTMF not sent".into(),
            ));
            return;
        };
        let mut bad = Vec::new();
        for digit in digits.chars() {
            if let Err(e) = sender.start(digit, duration) {
                bad.push(e);
            }
        }
        for e in bad {
            self.emit(MediaEvent::Error(format!("DTMF: {e}")));
        }
    }

    fn switch_devices(
        &mut self,
        capture: Option<Box<dyn CaptureDevice>>,
        playback: Option<Box<dyn PlaybackDevice>>,
    ) {
        if let Some(capture) = capture {
            self.send_chain.set_device_rate(capture.rate());
            self.capture = capture;
            self.capture_ended = false;
            self.capture_error_reported = false;
        }
        if let Some(playback) = playback {
            self.recv_chain.set_device_rate(playback.rate());
            let mut old = std::mem::replace(&mut self.playback, playback);
            if let Err(e) = old.finish() {
                warn!(error = %e, "finishing the previous playback device failed");
            }
            self.playback_error_reported = false;
        }
    }

    fn on_update(&mut self, now: Instant, update: MediaUpdate) {
        if let Some(addr) = update.remote_rtp {
            self.remote_rtp = addr;
        }
        if let Some(addr) = update.remote_rtcp {
            self.remote_rtcp = Some(addr);
        }
        if let Some(mux) = update.rtcp_mux {
            self.rtcp_mux = mux;
        }
        if let Some(ptime) = update.ptime {
            match validate_ptime(ptime) {
                Ok(()) => self.send_chain.set_ptime(ptime),
                Err(e) => self.emit(MediaEvent::Error(format!("ptime change refused: {e}"))),
            }
        }
        if let Some(codec) = update.send_codec
            && codec != self.send_codec
        {
            match self.send_chain.set_codec(&codec) {
                Ok(()) => {
                    self.stream.set_codec(codec.payload_type, codec.clock_rate);
                    self.marker_next = true;
                    self.send_codec = codec;
                }
                Err(e) => self.emit(MediaEvent::Error(format!("codec change refused: {e}"))),
            }
        }
        let ptime = self.send_chain.ptime();
        if ptime != self.ptime {
            self.ptime = ptime;
            self.retime = true;
        }
        if let Some(codecs) = update.recv_codecs {
            self.recv_chain.set_codecs(codecs.clone());
            self.recv_codecs = codecs;
        }
        if let Some(send_dtmf) = update.send_dtmf
            && send_dtmf != self.send_dtmf
        {
            let same_clock = send_dtmf.map(|d| d.1) == self.send_dtmf.map(|d| d.1);
            self.send_dtmf = send_dtmf;
            if !same_clock {
                self.dtmf_sender = send_dtmf.map(|(_, clock)| DtmfSender::new(clock));
            }
        }
        if let Some(recv_dtmf) = update.recv_dtmf {
            self.recv_dtmf = recv_dtmf;
        }
        if let Some(direction) = update.direction
            && direction != self.direction
        {
            if receives(direction) && !receives(self.direction) {
                self.last_rtp = now;
                self.timed_out = false;
            }
            if sends(direction) && !sends(self.direction) {
                self.marker_next = true;
            }
            self.direction = direction;
        }
        if let Some(security) = update.security
            && let Err(e) = self.apply_security(now, security)
        {
            self.security_failed(e.to_string());
        }
    }

    /// One frame time: capture → encode → send; receive chain → playback; RTP timeout.
    fn on_tick(&mut self, now: Instant) {
        self.check_stall(now);
        self.capture_frame(now);
        self.playout_frame(now);
        if receives(self.direction)
            && self.security.ready()
            && !self.timed_out
            && now.saturating_duration_since(self.last_rtp) >= self.rtp_timeout
        {
            self.timed_out = true;
            self.emit(MediaEvent::RtpTimeout);
        }
        let quality = self.quality(now);
        self.publish(&quality);
    }

    fn capture_frame(&mut self, now: Instant) {
        let len = frame_samples(self.capture.rate(), self.ptime);
        self.capture_buf.clear();
        self.capture_buf.resize(len, 0);
        match self.capture.read_frame(&mut self.capture_buf) {
            Ok(true) => {}
            Ok(false) => {
                if !self.capture_ended {
                    self.capture_ended = true;
                    self.emit(MediaEvent::CaptureEnded);
                }
            }
            Err(e) => {
                self.capture_buf.fill(0);
                if !self.capture_error_reported {
                    self.capture_error_reported = true;
                    self.emit(MediaEvent::Error(format!("capture device: {e}")));
                }
            }
        }
        if self.muted {
            // Encoded silence keeps NAT bindings and the peer's jitter buffer alive.
            self.capture_buf.fill(0);
        }
        self.send_chain.push(&self.capture_buf);
        let may_send = sends(self.direction) && self.security.ready();
        // At most one DTMF packet per tick; it replaces that tick's audio packet.
        let mut dtmf_sent = false;
        if may_send {
            dtmf_sent = self.send_dtmf_packet();
        } else if !sends(self.direction)
            && let Some(sender) = self.dtmf_sender.as_mut()
        {
            // Digits queued while on hold are dropped, not sent at resume; digits queued
            // while DTLS keys are still being agreed wait for them.
            sender.clear();
        }
        while let Some(frame) = self.send_chain.next_payload() {
            if !may_send || dtmf_sent || frame.payload.is_empty() {
                // Hold, replaced by DTMF, or DTX silence: time advances, nothing is sent.
                self.stream.advance_at(now, frame.samples);
                if !dtmf_sent {
                    self.marker_next = true;
                }
                continue;
            }
            let marker = std::mem::take(&mut self.marker_next);
            let packet = self
                .stream
                .next_packet_at(now, frame.payload, frame.samples, marker);
            self.send_rtp(&packet);
        }
    }

    /// Sends this tick's DTMF packet, if an event is in progress; true when one was sent.
    fn send_dtmf_packet(&mut self) -> bool {
        let (Some(sender), Some((pt, _))) = (self.dtmf_sender.as_mut(), self.send_dtmf) else {
            return false;
        };
        let frame = frame_samples(sender.clock_rate(), self.ptime);
        let Some(packet) = sender.poll(u32::try_from(frame).unwrap_or(u32::MAX)) else {
            return false;
        };
        // Every packet of one event carries the event's start timestamp (RFC 4733 §2.3.1),
        // which lies `timestamp_offset` before this tick's audio timestamp. The offset counts
        // in the event clock; a peer whose telephone-event clock differs from the audio clock
        // (opus/48000 with telephone-event/8000 only) gets it scaled to the stream's clock.
        let offset = u64::from(packet.timestamp_offset) * u64::from(self.stream.clock_rate())
            / u64::from(sender.clock_rate().max(1));
        let offset = u32::try_from(offset).unwrap_or(u32::MAX);
        let ts = self.stream.timestamp().wrapping_sub(offset);
        let rtp = self
            .stream
            .packet_with(pt, packet.payload, ts, packet.marker);
        self.send_rtp(&rtp);
        true
    }

    fn send_rtp(&mut self, packet: &RtpPacket) {
        let bytes = packet.to_bytes();
        let datagram = match self.security.srtp.as_mut() {
            Some(ctx) => match ctx.protect_rtp(&bytes) {
                Ok(protected) => protected,
                Err(e) => {
                    warn!(error = %e, "SRTP protect failed; packet dropped");
                    return;
                }
            },
            None if self.security.secure => return,
            None => bytes,
        };
        self.outbox.push((Via::Rtp, self.remote_rtp, datagram));
    }

    fn playout_frame(&mut self, now: Instant) {
        let len = frame_samples(self.playback.rate(), self.ptime);
        self.playout_buf.clear();
        self.recv_chain.pull(now, len, &mut self.playout_buf);
        self.playout_buf.resize(len, 0);
        if !receives(self.direction) || !self.security.ready() {
            self.playout_buf.fill(0);
        }
        if let Err(e) = self.playback.write_frame(&self.playout_buf)
            && !self.playback_error_reported
        {
            self.playback_error_reported = true;
            self.emit(MediaEvent::Error(format!("playback device: {e}")));
        }
    }

    fn on_timers(&mut self, now: Instant) {
        self.check_stall(now);
        if let Some(dtls) = self.security.dtls.as_mut()
            && dtls.poll_timeout().is_some_and(|t| t <= now)
        {
            dtls.handle_timeout(now);
            self.security.dtls_handled_at = Some(now);
            self.drive_dtls(now);
        }
        if let Some(deadline) = self.security.dtls_deadline
            && deadline <= now
            && self.security.srtp.is_none()
        {
            self.security_failed("DTLS handshake timed out".into());
        }
        if self.next_rtcp <= now {
            self.queue_rtcp(now, None);
            self.next_rtcp = now + randomized(self.tuning.rtcp_interval);
        }
        if self.next_quality <= now {
            let quality = self.quality(now);
            self.emit(MediaEvent::Quality(quality));
            self.next_quality = now + self.tuning.quality_interval;
        }
    }

    /// Where RTCP goes: the RTCP socket's peer when not muxed, else the RTP address.
    fn rtcp_destination(&self) -> (Via, SocketAddr) {
        if self.rtcp_mux {
            // RFC 5761 §5.1.3: with rtcp-mux, RTCP goes to the RTP address (an a=rtcp line
            // kept for non-mux fallback does not apply).
            return (Via::Rtp, self.remote_rtp);
        }
        let to = self.remote_rtcp.unwrap_or_else(|| {
            let mut addr = self.remote_rtp;
            addr.set_port(addr.port().wrapping_add(1));
            addr
        });
        let via = if self.rtcp_socket.is_some() {
            Via::Rtcp
        } else {
            Via::Rtp
        };
        (via, to)
    }

    /// Queues a compound report: SR (we sent in the last two report intervals) or RR, SDES CNAME,
    /// and BYE when `bye` gives a reason.
    fn queue_rtcp(&mut self, now: Instant, bye: Option<&str>) {
        if !self.security.ready() {
            return;
        }
        let mut reports: Vec<ReportBlock> = Vec::new();
        if let Some(block) = self.rx_stats.report_block(now) {
            reports.push(block);
        }
        let ssrc = self.stream.ssrc();
        // RFC 3550 §6.4: a participant that sent data since the last report *or the one before* sends an SR.
        let sent_now = self.stream.take_sent_since_report();
        let is_sender = sent_now || self.sent_in_previous_interval;
        self.sent_in_previous_interval = sent_now;
        let report = if is_sender {
            let counters = self.stream.sender_counters(now);
            let ntp = rtcp::ntp_now();
            self.rx_stats.on_report_sent(ntp, now);
            RtcpPacket::SenderReport(SenderReport {
                ssrc,
                ntp_timestamp: ntp,
                rtp_timestamp: counters.rtp_timestamp,
                packet_count: counters.packet_count,
                octet_count: counters.octet_count,
                reports,
            })
        } else {
            RtcpPacket::ReceiverReport(ReceiverReport { ssrc, reports })
        };
        let mut packets = vec![report, RtcpPacket::Sdes(Sdes::cname(ssrc, &self.cname))];
        if let Some(reason) = bye {
            packets.push(RtcpPacket::Bye(Bye {
                sources: vec![ssrc],
                reason: Some(reason.to_owned()),
            }));
        }
        let compound = rtcp::build_compound(&packets);
        let datagram = match self.security.srtp.as_mut() {
            Some(ctx) => match ctx.protect_rtcp(&compound) {
                Ok(protected) => protected,
                Err(e) => {
                    warn!(error = %e, "SRTCP protect failed; report dropped");
                    return;
                }
            },
            None => compound,
        };
        let (via, to) = self.rtcp_destination();
        self.outbox.push((via, to, datagram));
    }

    /// Notices a starved task: the frame clock wakes it every ptime, so a longer pause means
    /// it could not run, and the jitter buffer must not take the packets that queued up
    /// meanwhile for network jitter, nor the tick burst that follows for a delay to cut.
    fn check_stall(&mut self, now: Instant) {
        let pause = now.saturating_duration_since(self.last_wake);
        if pause > self.ptime + STALL_SLACK {
            debug!(pause_ms = pause.as_millis(), "media task was starved");
            self.recv_chain.note_stall(self.last_wake, now);
        }
        self.last_wake = self.last_wake.max(now);
    }

    /// Demultiplexes one received datagram (RFC 7983).
    fn on_datagram(&mut self, now: Instant, data: &[u8], from: SocketAddr, via: Via) {
        self.check_stall(now);
        match classify(data) {
            PacketKind::Rtp if via == Via::Rtp => self.on_rtp(now, data),
            // On a separate RTCP port every 128..=191 datagram is RTCP.
            PacketKind::Rtp | PacketKind::Rtcp => self.on_rtcp(now, data),
            // Without rtcp-mux a peer such as baresip runs a second DTLS association on its
            // RTCP port (RFC 5764 §4.1). Ours lives on the RTP port only: a ClientHello from
            // the RTCP component must never reach it, or rtc-dtls keeps that hello's random and
            // signs the RTP client's ServerKeyExchange over the wrong one (bad signature).
            PacketKind::Dtls if via == Via::Rtcp => {
                debug!(%from, "DTLS datagram on the separate RTCP port ignored");
            }
            PacketKind::Dtls => {
                if let Some(dtls) = self.security.dtls.as_mut() {
                    dtls.handle_datagram(now, data);
                    self.drive_dtls(now);
                } else {
                    trace!(%from, "DTLS datagram without a DTLS association dropped");
                }
            }
            // ICE connectivity checks are the NAT issue's; nothing answers them here yet.
            PacketKind::Stun => trace!(%from, "STUN datagram ignored"),
            PacketKind::Unknown => trace!(%from, len = data.len(), "unknown datagram dropped"),
        }
    }

    fn on_rtp(&mut self, now: Instant, data: &[u8]) {
        let plain;
        let data = if self.security.secure {
            let Some(ctx) = self.security.srtp.as_mut() else {
                self.security.early_dropped += 1;
                return;
            };
            match ctx.unprotect_rtp(data) {
                Ok(p) => {
                    plain = p;
                    plain.as_slice()
                }
                Err(e) => {
                    // Counted by the context (bad tag, replay, plain RTP in a secure call).
                    trace!(error = %e, "SRTP packet dropped");
                    return;
                }
            }
        } else {
            data
        };
        let packet = match RtpPacket::parse(data) {
            Ok(p) => p,
            Err(e) => {
                trace!(error = %e, "malformed RTP dropped");
                return;
            }
        };
        let header = &packet.header;
        if !self.got_rtp {
            self.got_rtp = true;
            self.emit(MediaEvent::FirstRtp);
        }
        self.last_rtp = now;
        if self.timed_out {
            self.timed_out = false;
            self.emit(MediaEvent::RtpResumed);
        }
        let is_dtmf = self
            .recv_dtmf
            .iter()
            .any(|(pt, _)| *pt == header.payload_type);
        // One SSRC has one timestamp clock: the audio codec's (telephone events ride on it).
        let clock = self
            .recv_codecs
            .iter()
            .find(|c| c.payload_type == header.payload_type)
            .map_or(self.rx_clock, |c| c.clock_rate);
        let outcome = self.rx_stats.on_packet(header, now, clock);
        if let SeqOutcome::SsrcChanged { old, new } = outcome {
            self.emit(MediaEvent::SsrcChanged { old, new });
            self.dtmf_receiver = DtmfReceiver::new();
            self.recv_chain.reset_stream();
        }
        if !outcome.is_accepted() {
            // A stray source or a sequence jump not (yet) confirmed.
            return;
        }
        if is_dtmf {
            if let Ok(event) = TelephoneEvent::parse(&packet.payload)
                && let Some(digit) = self.dtmf_receiver.on_packet(header.timestamp, &event)
            {
                self.emit(MediaEvent::Dtmf(digit));
            }
            return;
        }
        self.rx_clock = clock;
        if receives(self.direction) {
            self.recv_chain.push_rtp(
                now,
                header.payload_type,
                header.sequence,
                header.timestamp,
                packet.payload,
            );
        }
    }

    fn on_rtcp(&mut self, now: Instant, data: &[u8]) {
        let plain;
        let data = if self.security.secure {
            let Some(ctx) = self.security.srtp.as_mut() else {
                self.security.early_dropped += 1;
                return;
            };
            match ctx.unprotect_rtcp(data) {
                Ok(p) => {
                    plain = p;
                    plain.as_slice()
                }
                Err(e) => {
                    trace!(error = %e, "SRTCP packet dropped");
                    return;
                }
            }
        } else {
            data
        };
        let packets = match rtcp::parse_compound(data) {
            Ok(p) => p,
            Err(e) => {
                trace!(error = %e, "malformed RTCP dropped");
                return;
            }
        };
        let ours = self.stream.ssrc();
        for packet in packets {
            let blocks = match packet {
                RtcpPacket::SenderReport(sr) => {
                    self.rx_stats.on_sender_report(&sr, now);
                    sr.reports
                }
                RtcpPacket::ReceiverReport(rr) => rr.reports,
                RtcpPacket::Bye(bye) => {
                    debug!(sources = ?bye.sources, reason = ?bye.reason, "RTCP BYE received");
                    continue;
                }
                _ => continue,
            };
            for block in blocks.iter().filter(|b| b.ssrc == ours) {
                if let Some(rtt) = self.rx_stats.rtt_from_report(block, now) {
                    self.rtt = Some(rtt);
                }
                let loss = f32::from(block.fraction_lost) * 100.0 / 256.0;
                self.remote_loss_percent = Some(loss);
                // Opus tunes its in-band FEC to the loss the peer sees.
                self.send_chain
                    .set_expected_loss(loss.round().clamp(0.0, 100.0) as u8);
            }
        }
    }

    /// The current call quality.
    fn quality(&self, _now: Instant) -> CallQuality {
        let jitter_ms = self.rx_stats.jitter_ms();
        let loss_percent = self.rx_stats.loss_percent();
        let rtt_ms = self.rtt.map(|d| d.as_secs_f32() * 1000.0);
        let codec = self.send_codec.name();
        CallQuality {
            codec: codec.to_owned(),
            packets_sent: u64::from(self.stream.packets_sent()),
            packets_received: u64::from(self.rx_stats.received()),
            packets_lost: self.rx_stats.cumulative_lost(),
            loss_percent,
            jitter_ms,
            rtt_ms,
            mos: mos_estimate(codec, loss_percent, jitter_ms, rtt_ms),
            srtp: self.security.secure && self.security.srtp.is_some(),
            srtp_auth_failures: self.security.auth_failures(),
            remote_loss_percent: self.remote_loss_percent,
        }
    }

    fn publish(&self, quality: &CallQuality) {
        let receive = self.recv_chain.stats();
        let mut shared = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        shared.quality.clone_from(quality);
        shared.receive = receive;
    }
}

/// The frame clock: catches up missed ticks so the RTP clock keeps pace with wall time.
fn new_ticker(ptime: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + ptime, ptime);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    ticker
}

/// `recv_from` on the RTCP socket, or never when RTCP is multiplexed.
async fn recv_optional(
    socket: Option<&MediaSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_follow_rate_and_ptime() {
        assert_eq!(frame_samples(48_000, Duration::from_millis(20)), 960);
        assert_eq!(frame_samples(8_000, Duration::from_millis(30)), 240);
        assert_eq!(frame_samples(16_000, Duration::from_millis(10)), 160);
        assert_eq!(frame_samples(44_100, Duration::from_millis(20)), 882);
    }

    #[test]
    fn report_intervals_are_randomized_within_half_to_one_and_a_half() {
        let mean = Duration::from_secs(5);
        let draws: Vec<Duration> = (0..200).map(|_| randomized(mean)).collect();
        assert!(draws.iter().all(|d| *d >= mean / 2 && *d < mean * 3 / 2));
        // Not a constant: the point of the randomisation is to avoid synchronised reports.
        assert!(draws.iter().any(|d| *d != draws[0]));
    }

    #[test]
    fn ptime_bounds() {
        assert!(validate_ptime(Duration::from_millis(20)).is_ok());
        assert!(validate_ptime(Duration::from_millis(120)).is_ok());
        assert!(validate_ptime(Duration::ZERO).is_err());
        assert!(validate_ptime(Duration::from_millis(500)).is_err());
    }

    #[test]
    fn directions() {
        assert!(sends(Direction::SendRecv) && receives(Direction::SendRecv));
        assert!(sends(Direction::SendOnly) && !receives(Direction::SendOnly));
        assert!(!sends(Direction::RecvOnly) && receives(Direction::RecvOnly));
        assert!(!sends(Direction::Inactive) && !receives(Direction::Inactive));
    }

    #[test]
    fn plain_security_is_ready_and_secure_waits_for_keys() {
        let mut security = Security::plain();
        assert!(security.ready());
        security.secure = true;
        assert!(!security.ready());
        assert_eq!(security.auth_failures(), 0);
    }
}
