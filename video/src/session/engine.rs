//! The session task: one select loop over the control channel, the media sockets, the encoder
//! and decoder threads and a housekeeping tick (NACKs, keyframe requests, RTCP, DTLS, timeouts).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_media::rtcp::{self, ReceiverReport, RtcpPacket, Sdes};
use tandem_media::rtp::{RtpHeader, RtpPacket, SenderCounters, duration_to_units};
use tandem_media::session::MediaSecurity;
use tandem_media::session::reports::{self, PeerReport, Reporter, randomized_interval};
use tandem_media::session::transport::{Inbound, RtpTransport, SecurityEvent, Via};
use tandem_media::srtp::SrtpError;
use tandem_media::stats::{ReceiverStats, SeqOutcome};
use tandem_proto::sdp::Direction;
use tandem_proto::sdp::video::VideoFeedback;
use tokio::sync::mpsc;
use tracing::{debug, trace, warn};

use super::decoder::{self, DecoderHandle, DecoderJob, DecoderResult};
use super::encoder::{self, EncoderCommand, EncoderHandle, EncoderNotice, EncoderOutput};
use super::{
    Control, KEYFRAME_MIN_INTERVAL, KEYFRAME_REQUEST_INTERVAL, LOW_BITRATE_BPS, NACK_INTERVAL,
    RESTORE_BITRATE_BPS, VideoConfig, VideoError, VideoEvent, VideoRecvCodec, VideoStats,
    VideoUpdate,
};
use crate::assembler::{AssemblerConfig, AssemblerStats, FrameAssembler};
use crate::codec::VideoCodecKind;
use crate::feedback::{Feedback, parse_feedback, write_feedback};
use crate::history::SendHistory;
use crate::rate::{RateController, ReceiveRate};
use crate::rtp::{Packetizer, packetizer};

/// The RTP clock of every video codec.
const CLOCK: u32 = VideoCodecKind::CLOCK_RATE;
/// How many sent packets are kept for retransmission, and for how long.
const HISTORY_PACKETS: usize = 1024;
const HISTORY_AGE: Duration = Duration::from_secs(2);
/// A packet is not sent again sooner than this after its last retransmission.
const RETRANSMIT_GUARD: Duration = Duration::from_millis(20);
/// At most this many sequence numbers of one NACK message are served.
const MAX_NACKED_PER_MESSAGE: usize = 256;
/// Retransmissions may use at most this share of the bitrate target on top of it, with a floor.
const RETRANSMIT_BUDGET_FLOOR_BPS: u32 = 300_000;
/// Round trip assumed until one is measured.
const DEFAULT_RTT: Duration = Duration::from_millis(100);
/// Timer period while frames are being assembled (NACKs go out every [`NACK_INTERVAL`]).
const BUSY_TICK: Duration = Duration::from_millis(10);
/// Longest sleep of the timers when nothing is pending.
const IDLE_TICK: Duration = Duration::from_millis(100);
/// Shortest sleep of the timers.
const TIMER_FLOOR: Duration = Duration::from_millis(5);
/// A peer that takes no keyframe requests (neither PLI nor FIR negotiated) gets a keyframe this
/// often, its only way to recover from loss.
const KEYFRAME_INTERVAL_WITHOUT_FEEDBACK: Duration = Duration::from_secs(3);
/// The lowest REMB we send: our estimate is only the received rate (an encoder that
/// undershoots its target must not talk the sender down); loss reports carry real congestion.
const REMB_FLOOR_BPS: u32 = RESTORE_BITRATE_BPS;
/// The lowest bitrate the rate controller goes down to.
const MIN_BITRATE_BPS: u32 = 50_000;

/// A token bucket bounding retransmission bytes.
#[derive(Debug)]
struct Budget {
    tokens: f64,
    at: Instant,
}

impl Budget {
    /// Takes `bytes` when available at a refill rate of `bps` (at most one second's worth kept).
    fn take(&mut self, now: Instant, bytes: usize, bps: u32) -> bool {
        let rate = f64::from(bps) / 8.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

/// Our outgoing stream.
struct Sender {
    payload_type: u8,
    packetizer: Box<dyn Packetizer>,
    encoder: Option<EncoderHandle>,
    history: SendHistory,
    sequence: u16,
    /// RTP timestamp of `epoch`.
    ts_base: u32,
    epoch: Instant,
    packets: u32,
    octets: u32,
    sent_since_report: bool,
    rate: RateController,
    bitrate: u32,
    halved: bool,
    /// When a keyframe was last forced for a request.
    last_forced: Option<Instant>,
    /// A request arrived inside the rate limit: force one when it ends.
    keyframe_pending: bool,
    /// When the last periodic keyframe was asked for (peers without keyframe requests).
    last_periodic: Instant,
    retransmitted: HashMap<u16, Instant>,
    budget: Budget,
}

impl Sender {
    fn timestamp_at(&self, at: Instant) -> u32 {
        self.ts_base.wrapping_add(duration_to_units(
            at.saturating_duration_since(self.epoch),
            CLOCK,
        ))
    }
}

/// The peer's stream.
struct Receiver {
    stats: ReceiverStats,
    assembler: Option<(VideoCodecKind, FrameAssembler)>,
    /// Counters of assemblers already replaced.
    old_assembler: AssemblerStats,
    rate: ReceiveRate,
    decoder: DecoderHandle,
    /// A keyframe request is due (receiving resumed, a local request).
    want_keyframe: bool,
    last_request: Option<Instant>,
    fir_seq: u8,
    got_rtp: bool,
    last_rtp: Instant,
    timed_out: bool,
}

/// The state of one video stream, driven by [`Engine::run`].
pub(super) struct Engine {
    /// Sockets, keys, demux and the outgoing queue.
    transport: RtpTransport,
    recv_codecs: Vec<VideoRecvCodec>,
    feedback: VideoFeedback,
    direction: Direction,
    /// CNAME, SR or RR (RFC 3550 §6.4).
    reporter: Reporter,
    rtp_timeout: Duration,
    report_interval: Duration,
    stats_interval: Duration,
    mtu_payload: usize,
    events: mpsc::UnboundedSender<VideoEvent>,
    snapshot: Arc<Mutex<VideoStats>>,

    ssrc: u32,
    sender: Option<Sender>,
    receiver: Receiver,
    stats: VideoStats,
    rtt: Option<Duration>,
    encoder_active: bool,
    next_report: Instant,
    next_stats: Instant,
    next_nack: Instant,
}

impl Engine {
    /// Builds the engine: codec threads, SDES context or DTLS endpoint.
    pub(super) fn new(
        config: VideoConfig,
        events: mpsc::UnboundedSender<VideoEvent>,
        snapshot: Arc<Mutex<VideoStats>>,
    ) -> Result<Self, VideoError> {
        if config.mtu_payload < 64 || config.mtu_payload > 65_000 {
            return Err(VideoError::Config(format!(
                "RTP payload size {} is outside 64..=65000",
                config.mtu_payload
            )));
        }
        if let Some(send) = config.send.as_ref() {
            if send.payload_type > 127 {
                return Err(VideoError::Config(format!(
                    "payload type {} is not 0..=127",
                    send.payload_type
                )));
            }
            if send.max_fps == 0 || send.max_width == 0 || send.max_height == 0 {
                return Err(VideoError::Config(
                    "send limits need a frame rate and a size".into(),
                ));
            }
        }
        let now = Instant::now();
        let kinds: Vec<VideoCodecKind> = config.recv.iter().map(|c| c.kind).collect();
        let decoder = decoder::spawn(&kinds, config.sink)?;
        let active = config.direction.sends() && !config.security.is_secure();
        let sender = match config.send {
            Some(send) => {
                let max_bps = send.max_bitrate_bps.max(MIN_BITRATE_BPS);
                let start_bps = send.start_bitrate_bps.clamp(MIN_BITRATE_BPS, max_bps);
                let encoder = encoder::spawn(encoder::EncoderSetup {
                    kind: send.kind,
                    source: send.source,
                    max_width: send.max_width,
                    max_height: send.max_height,
                    max_fps: send.max_fps,
                    bitrate_bps: start_bps,
                    active,
                    preview: config.preview,
                })?;
                Some(Sender {
                    payload_type: send.payload_type,
                    packetizer: packetizer(send.kind),
                    encoder: Some(encoder),
                    history: SendHistory::new(HISTORY_PACKETS, HISTORY_AGE),
                    sequence: rand::random(),
                    ts_base: rand::random(),
                    epoch: now,
                    packets: 0,
                    octets: 0,
                    sent_since_report: false,
                    rate: RateController::new(MIN_BITRATE_BPS, start_bps, max_bps),
                    bitrate: start_bps,
                    halved: false,
                    last_forced: None,
                    keyframe_pending: false,
                    last_periodic: now,
                    retransmitted: HashMap::new(),
                    budget: Budget {
                        tokens: 0.0,
                        at: now,
                    },
                })
            }
            None => None,
        };
        let mut engine = Engine {
            transport: RtpTransport::new(config.socket, config.remote_rtp, "video")
                .with_rtcp(config.rtcp_socket, config.remote_rtcp, config.rtcp_mux)
                .with_dtls_timeout(config.dtls_timeout),
            recv_codecs: config.recv,
            feedback: config.feedback,
            direction: config.direction,
            reporter: Reporter::new(config.cname),
            rtp_timeout: config.rtp_timeout,
            report_interval: config.report_interval.max(Duration::from_millis(100)),
            stats_interval: config.stats_interval.max(Duration::from_millis(100)),
            mtu_payload: config.mtu_payload,
            events,
            snapshot,
            ssrc: rand::random(),
            receiver: Receiver {
                stats: ReceiverStats::new(),
                assembler: None,
                old_assembler: AssemblerStats::default(),
                rate: ReceiveRate::with_window(Duration::from_secs(1), u64::from(REMB_FLOOR_BPS)),
                decoder,
                want_keyframe: false,
                last_request: None,
                fir_seq: 0,
                got_rtp: false,
                last_rtp: now,
                timed_out: false,
            },
            stats: VideoStats {
                target_bitrate_bps: sender.as_ref().map_or(0, |s| s.bitrate),
                ..VideoStats::default()
            },
            sender,
            rtt: None,
            encoder_active: active,
            // RFC 3550 §6.2: the first report goes out after half the interval.
            next_report: now + randomized_interval(config.report_interval / 2),
            next_stats: now + config.stats_interval,
            next_nack: now + NACK_INTERVAL,
        };
        if !config.security.is_secure() {
            engine.emit(VideoEvent::Secure(false));
        }
        engine
            .apply_security(now, config.security)
            .map_err(|e| VideoError::Srtp(e.to_string()))?;
        Ok(engine)
    }

    fn emit(&self, event: VideoEvent) {
        // The receiver may have been dropped by a caller not interested in events.
        let _ = self.events.send(event);
    }

    /// Installs new security (see [`RtpTransport::apply_security`]); the encoder runs only
    /// when media may flow.
    fn apply_security(&mut self, now: Instant, security: MediaSecurity) -> Result<(), SrtpError> {
        let applied = self.transport.apply_security(now, security);
        if let Ok(Some(event)) = &applied {
            self.on_security(now, event.clone());
        }
        self.update_encoder_active();
        applied.map(|_| ())
    }

    /// Reports a keying outcome of the transport: keys start the media with a keyframe, a
    /// failure stops the encoder.
    fn on_security(&mut self, now: Instant, event: SecurityEvent) {
        if let SecurityEvent::Failed(reason) = event {
            self.update_encoder_active();
            self.emit(VideoEvent::SecurityFailed(reason));
        } else {
            self.emit(VideoEvent::Secure(true));
            self.media_became_ready(now);
        }
    }

    /// Keys just became available: restart the RTP timeout, start with a keyframe.
    fn media_became_ready(&mut self, now: Instant) {
        self.receiver.last_rtp = now;
        self.receiver.timed_out = false;
        self.update_encoder_active();
        self.encoder_command(EncoderCommand::Keyframe);
    }

    /// Tells the encoder thread whether frames are wanted now.
    fn update_encoder_active(&mut self) {
        let active = self.direction.sends() && self.transport.media_ready();
        if active != self.encoder_active {
            self.encoder_active = active;
            self.encoder_command(EncoderCommand::Active(active));
        }
    }

    fn encoder_command(&self, command: EncoderCommand) {
        if let Some(encoder) = self.sender.as_ref().and_then(|s| s.encoder.as_ref()) {
            encoder.send(command);
        }
    }

    /// The task body: runs until stopped, then reports the final counters.
    pub(super) async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>) {
        let mut reader = self.transport.reader();
        let mut encoded = self
            .sender
            .as_mut()
            .and_then(|s| s.encoder.as_mut())
            .map(|e| std::mem::replace(&mut e.output, mpsc::channel(1).1));
        let mut decoded = Some(std::mem::replace(
            &mut self.receiver.decoder.results,
            mpsc::unbounded_channel().1,
        ));
        self.transport.flush().await;
        let reply = loop {
            let wake = tokio::time::Instant::from_std(self.next_wake(Instant::now()));
            tokio::select! {
                command = control.recv() => match command {
                    None => break None,
                    Some(Control::Stop(reply)) => break reply,
                    Some(command) => self.on_control(command),
                },
                (via, data, from) = reader.recv() => self.on_datagram(Instant::now(), data, from, via),
                notice = recv_encoder(encoded.as_mut()) => match notice {
                    Some(notice) => self.on_encoder(Instant::now(), notice),
                    // The thread has ended (it only does so when told): stop listening.
                    None => encoded = None,
                },
                result = recv_decoder(decoded.as_mut()) => match result {
                    Some(result) => self.on_decoded(result),
                    // The decoder thread is gone (it only ends when told, or by a panic in a
                    // codec library): stop listening rather than spin on the closed channel.
                    None => {
                        warn!("the video decoder thread ended");
                        decoded = None;
                    }
                },
                () = tokio::time::sleep_until(wake) => self.on_timers(Instant::now()),
            }
            self.transport.flush().await;
        };
        let stats = self.finish(decoded.as_mut()).await;
        if let Some(reply) = reply {
            let _ = reply.send(stats);
        }
    }

    /// Stop: RTCP BYE, codec threads joined (the sink is finished), final counters.
    async fn finish(
        &mut self,
        decoded: Option<&mut mpsc::UnboundedReceiver<DecoderResult>>,
    ) -> VideoStats {
        let now = Instant::now();
        self.queue_report(now, Some("call ended"));
        self.transport.flush().await;
        let encoder = self
            .sender
            .as_mut()
            .and_then(|s| s.encoder.take())
            .and_then(EncoderHandle::stop);
        let decoder = self.receiver.decoder.stop();
        let joined = tokio::task::spawn_blocking(move || {
            // A codec thread that panicked has nothing more to give; its sink is gone.
            if let Some(thread) = encoder {
                let _ = thread.join();
            }
            if let Some(thread) = decoder {
                let _ = thread.join();
            }
        })
        .await;
        if joined.is_err() {
            warn!("joining the video codec threads failed");
        }
        if let Some(decoded) = decoded {
            while let Ok(result) = decoded.try_recv() {
                self.on_decoded(result);
            }
        }
        self.publish();
        self.stats.clone()
    }

    fn on_control(&mut self, command: Control) {
        let now = Instant::now();
        match command {
            Control::SetSource(source) => {
                if self.sender.is_some() {
                    self.encoder_command(EncoderCommand::Source(source));
                } else if source.is_some() {
                    self.emit(VideoEvent::Error(
                        "no video is sent in this session; the source is ignored".into(),
                    ));
                }
            }
            Control::RequestKeyframe => self.keyframe_requested(now),
            Control::SetDirection(direction) => self.set_direction(now, direction),
            Control::Update(update) => self.on_update(now, *update),
            // Handled by the loop.
            Control::Stop(_) => {}
        }
    }

    fn set_direction(&mut self, now: Instant, direction: Direction) {
        if direction == self.direction {
            return;
        }
        if direction.receives() && !self.direction.receives() {
            self.receiver.last_rtp = now;
            self.receiver.timed_out = false;
            self.receiver.want_keyframe = true;
        }
        self.direction = direction;
        self.update_encoder_active();
    }

    fn on_update(&mut self, now: Instant, update: VideoUpdate) {
        self.transport
            .update_remote(update.remote_rtp, update.remote_rtcp, update.rtcp_mux);
        if let Some(feedback) = update.feedback {
            self.feedback = feedback;
        }
        if let Some(direction) = update.direction {
            self.set_direction(now, direction);
        }
        if let Some(security) = update.security
            && let Err(e) = self.apply_security(now, security)
        {
            // The transport is left failed: no media until new keys.
            self.on_security(now, SecurityEvent::Failed(e.to_string()));
        }
    }

    // ----- sending -----

    fn on_encoder(&mut self, now: Instant, notice: EncoderNotice) {
        match notice {
            EncoderNotice::Frame(output) => self.send_frame(now, output),
            EncoderNotice::SourceEnded => self.emit(VideoEvent::SourceEnded),
            EncoderNotice::Error(message) => self.emit(VideoEvent::Error(message)),
        }
    }

    /// Packetizes one encoded frame and sends it (all packets carry the capture timestamp, the
    /// last one the marker bit); every datagram is kept for retransmission.
    fn send_frame(&mut self, now: Instant, output: EncoderOutput) {
        if !(self.direction.sends() && self.transport.media_ready()) {
            return;
        }
        let ssrc = self.ssrc;
        let mtu = self.mtu_payload;
        let Some(sender) = self.sender.as_mut() else {
            return;
        };
        let payloads = match sender.packetizer.packetize(&output.frame, mtu) {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => return,
            Err(e) => {
                debug!(error = %e, "packetizing an encoded frame failed");
                self.stats.encode_errors += 1;
                self.encoder_command(EncoderCommand::Keyframe);
                return;
            }
        };
        let timestamp = sender.timestamp_at(output.captured);
        let last = payloads.len() - 1;
        let mut protect_failed = false;
        for (i, payload) in payloads.into_iter().enumerate() {
            let len = payload.len();
            let packet = RtpPacket {
                header: RtpHeader {
                    marker: i == last,
                    payload_type: sender.payload_type,
                    sequence: sender.sequence,
                    timestamp,
                    ssrc,
                    csrc: Vec::new(),
                },
                payload: Bytes::from(payload),
            };
            let datagram = match self.transport.protect_rtp(packet.to_bytes()) {
                Ok(Some(datagram)) => datagram,
                // Keys went away (a failed re-keying) while the frame was encoded.
                Ok(None) => return,
                Err(e) => {
                    warn!(error = %e, "SRTP protect failed; video packet dropped");
                    protect_failed = true;
                    sender.sequence = sender.sequence.wrapping_add(1);
                    continue;
                }
            };
            sender.history.push(now, sender.sequence, datagram.clone());
            sender.retransmitted.remove(&sender.sequence);
            sender.sequence = sender.sequence.wrapping_add(1);
            sender.packets = sender.packets.wrapping_add(1);
            sender.octets = sender
                .octets
                .wrapping_add(u32::try_from(len).unwrap_or(u32::MAX));
            sender.sent_since_report = true;
            self.stats.packets_sent += 1;
            self.stats.bytes_sent += len as u64;
            self.transport.queue_rtp(datagram);
        }
        if protect_failed {
            self.encoder_command(EncoderCommand::Keyframe);
        }
        self.stats.frames_sent += 1;
        if output.frame.keyframe {
            self.stats.keyframes_sent += 1;
        }
        self.stats.send_width = output.width;
        self.stats.send_height = output.height;
    }

    /// A PLI, FIR or local request: a keyframe now, or when the rate limit allows.
    fn keyframe_requested(&mut self, now: Instant) {
        let Some(sender) = self.sender.as_mut() else {
            return;
        };
        let allowed = sender
            .last_forced
            .is_none_or(|at| now.saturating_duration_since(at) >= KEYFRAME_MIN_INTERVAL);
        if allowed {
            sender.last_forced = Some(now);
            sender.keyframe_pending = false;
            self.encoder_command(EncoderCommand::Keyframe);
        } else {
            sender.keyframe_pending = true;
            self.stats.keyframe_requests_coalesced += 1;
        }
    }

    /// Sends NACKed packets again, as they were first sent (same sequence number, RFC 4585).
    fn retransmit(&mut self, now: Instant, seqs: &[u16]) {
        let Some(sender) = self.sender.as_mut() else {
            return;
        };
        let budget_bps = sender.bitrate.max(RETRANSMIT_BUDGET_FLOOR_BPS);
        for &seq in seqs.iter().take(MAX_NACKED_PER_MESSAGE) {
            if sender
                .retransmitted
                .get(&seq)
                .is_some_and(|at| now.saturating_duration_since(*at) < RETRANSMIT_GUARD)
            {
                continue;
            }
            // The history holds the datagrams as sent (SRTP-protected in a secure call): a
            // retransmission is the same packet again, which the peer's replay window accepts
            // because it never got the original.
            let Some(datagram) = sender.history.get_fresh(now, seq) else {
                self.stats.retransmissions_missed += 1;
                continue;
            };
            if !sender.budget.take(now, datagram.len(), budget_bps) {
                self.stats.retransmissions_missed += 1;
                continue;
            }
            sender.retransmitted.insert(seq, now);
            self.stats.retransmissions += 1;
            self.transport.queue_rtp(datagram.to_vec());
        }
    }

    /// A new bitrate target: the encoder follows it, and a large source is halved below
    /// [`LOW_BITRATE_BPS`] until the target reaches [`RESTORE_BITRATE_BPS`] again.
    fn apply_target(&mut self, target: u32) {
        let Some(sender) = self.sender.as_mut() else {
            return;
        };
        self.stats.target_bitrate_bps = target;
        if target == sender.bitrate {
            return;
        }
        sender.bitrate = target;
        let large =
            u64::from(self.stats.send_width) * u64::from(self.stats.send_height) >= 640 * 480;
        let mut halve = None;
        if !sender.halved && target < LOW_BITRATE_BPS && large {
            sender.halved = true;
            halve = Some(true);
            self.stats.downscales += 1;
        } else if sender.halved && target >= RESTORE_BITRATE_BPS {
            sender.halved = false;
            halve = Some(false);
        }
        self.encoder_command(EncoderCommand::Bitrate(target));
        if let Some(halve) = halve {
            self.encoder_command(EncoderCommand::Halve(halve));
        }
    }

    // ----- receiving -----

    /// Demultiplexes one received datagram (RFC 7983).
    fn on_datagram(&mut self, now: Instant, data: &[u8], from: SocketAddr, via: Via) {
        match self.transport.receive(now, data, from, via) {
            Inbound::Rtp(packet) => self.on_rtp(now, &packet),
            Inbound::Rtcp(compound) => self.on_rtcp(now, &compound),
            Inbound::Security(event) => self.on_security(now, event),
            Inbound::Malformed => self.stats.malformed_dropped += 1,
            Inbound::Dropped => {}
        }
    }

    fn on_rtp(&mut self, now: Instant, packet: &RtpPacket) {
        if !self.direction.receives() {
            return;
        }
        let Some(codec) = self
            .recv_codecs
            .iter()
            .find(|c| c.payload_type == packet.header.payload_type)
            .copied()
        else {
            self.stats.unknown_pt_dropped += 1;
            return;
        };
        let outcome = self.receiver.stats.on_packet(&packet.header, now, CLOCK);
        match outcome {
            SeqOutcome::SsrcChanged { old, new } => {
                debug!(old, new, "peer video SSRC changed");
                self.stats.ssrc_changes += 1;
                self.reset_receive_stream();
                self.emit(VideoEvent::SsrcChanged { old, new });
            }
            SeqOutcome::Restarted => self.reset_receive_stream(),
            _ => {}
        }
        if !outcome.is_accepted() {
            // A stray source, an unconfirmed jump or the newest packet again.
            return;
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += packet.payload.len() as u64;
        let receiver = &mut self.receiver;
        receiver.got_rtp = true;
        receiver.last_rtp = now;
        if receiver.timed_out {
            receiver.timed_out = false;
            self.emit(VideoEvent::RtpResumed);
        }
        let receiver = &mut self.receiver;
        receiver.rate.on_packet(now, packet.payload.len());
        if receiver
            .assembler
            .as_ref()
            .is_none_or(|(kind, _)| *kind != codec.kind)
        {
            self.new_assembler(codec.kind);
        }
        if let Some((_, assembler)) = self.receiver.assembler.as_mut() {
            assembler.insert(now, packet);
        }
        self.pop_frames(now);
    }

    /// A new source or a restarted one: fresh assembler and decoders.
    fn reset_receive_stream(&mut self) {
        if let Some((kind, _)) = self.receiver.assembler {
            self.new_assembler(kind);
        }
        self.receiver.decoder.submit(DecoderJob::Reset);
    }

    fn new_assembler(&mut self, kind: VideoCodecKind) {
        let fresh = FrameAssembler::new(kind, assembler_config(self.feedback.nack));
        if let Some((_, old)) = self.receiver.assembler.replace((kind, fresh)) {
            add_assembler_stats(&mut self.receiver.old_assembler, &old.stats());
        }
    }

    /// Hands every complete frame to the decoder thread.
    fn pop_frames(&mut self, now: Instant) {
        loop {
            let receiver = &mut self.receiver;
            let Some((kind, assembler)) = receiver.assembler.as_mut() else {
                return;
            };
            let kind = *kind;
            let Some(frame) = assembler.pop_frame(now) else {
                return;
            };
            self.stats.frames_received += 1;
            if frame.keyframe {
                self.stats.keyframes_received += 1;
            }
            let submitted = receiver.decoder.submit(DecoderJob::Frame {
                kind,
                data: frame.data,
                keyframe: frame.keyframe,
            });
            if !submitted {
                // The decoder is behind: the references are broken until a keyframe, which
                // the assembler waits for (and asks for).
                self.stats.frames_dropped_decoder += 1;
                assembler.decoder_failed();
            }
        }
    }

    fn on_decoded(&mut self, result: DecoderResult) {
        match result {
            DecoderResult::Decoded { width, height } => {
                self.stats.frames_decoded += 1;
                if self.stats.frames_decoded == 1 {
                    self.emit(VideoEvent::FirstFrame { width, height });
                } else if (width, height) != (self.stats.recv_width, self.stats.recv_height) {
                    self.emit(VideoEvent::SizeChanged { width, height });
                }
                self.stats.recv_width = width;
                self.stats.recv_height = height;
            }
            DecoderResult::NoPicture | DecoderResult::Skipped => {}
            DecoderResult::Failed(message) => {
                trace!(%message, "video frame not decodable");
                self.stats.decode_errors += 1;
                self.decoder_failed();
            }
            DecoderResult::Oversized { width, height } => {
                debug!(width, height, "oversized video frame dropped");
                self.stats.oversized_dropped += 1;
                self.decoder_failed();
            }
        }
    }

    /// Drops frames until a keyframe and asks for one (through the assembler's request).
    fn decoder_failed(&mut self) {
        match self.receiver.assembler.as_mut() {
            Some((_, assembler)) => assembler.decoder_failed(),
            None => self.receiver.want_keyframe = true,
        }
    }

    fn on_rtcp(&mut self, now: Instant, data: &[u8]) {
        match reports::read_reports(data, now, self.ssrc, &mut self.receiver.stats) {
            Ok(peer_reports) => {
                for report in &peer_reports {
                    self.on_peer_report(now, report);
                }
            }
            Err(e) => {
                self.stats.malformed_dropped += 1;
                trace!(error = %e, "malformed RTCP");
            }
        }
        // Feedback (RTPFB/PSFB) is read from the compound as it came.
        for feedback in parse_feedback(data) {
            self.on_feedback(now, feedback);
        }
    }

    fn on_peer_report(&mut self, now: Instant, report: &PeerReport) {
        if report.rtt.is_some() {
            self.rtt = report.rtt;
        }
        self.stats.remote_loss_percent = Some(report.block.fraction_lost_percent());
        let target = match self.sender.as_mut() {
            Some(sender) => sender.rate.on_loss_report(now, report.fraction_lost()),
            None => return,
        };
        self.apply_target(target);
    }

    /// Feedback is about our stream when it names our SSRC (0: peers that leave it unset).
    fn about_us(&self, media_ssrc: u32) -> bool {
        media_ssrc == self.ssrc || media_ssrc == 0
    }

    fn on_feedback(&mut self, now: Instant, feedback: Feedback) {
        match feedback {
            Feedback::Nack {
                media_ssrc, seqs, ..
            } if self.about_us(media_ssrc) => {
                self.stats.nacks_received += 1;
                self.retransmit(now, &seqs);
            }
            Feedback::Pli { media_ssrc, .. } if self.about_us(media_ssrc) => {
                self.stats.plis_received += 1;
                self.keyframe_requested(now);
            }
            Feedback::Fir { media_ssrc, .. } if self.about_us(media_ssrc) => {
                self.stats.firs_received += 1;
                self.keyframe_requested(now);
            }
            Feedback::Remb {
                bitrate_bps, ssrcs, ..
            } if ssrcs.is_empty() || ssrcs.contains(&self.ssrc) => {
                self.stats.remb_received_bps = bitrate_bps;
                let target = match self.sender.as_mut() {
                    Some(sender) => sender.rate.on_remb(bitrate_bps),
                    None => return,
                };
                self.apply_target(target);
            }
            other => trace!(?other, "feedback about another source ignored"),
        }
    }

    // ----- timers -----

    /// RTP is expected from the peer and has not timed out yet.
    fn rtp_timeout_armed(&self) -> bool {
        self.direction.receives()
            && !self.recv_codecs.is_empty()
            && self.transport.media_ready()
            && !self.receiver.timed_out
    }

    /// When the timers must run next: every [`BUSY_TICK`] while frames are being assembled or a
    /// keyframe is awaited (NACKs, give-ups, requests), else at the next report, statistics,
    /// DTLS or timeout deadline, at most [`IDLE_TICK`] away.
    fn next_wake(&self, now: Instant) -> Instant {
        let busy = self.receiver.want_keyframe
            || self.sender.as_ref().is_some_and(|s| s.keyframe_pending)
            || self
                .receiver
                .assembler
                .as_ref()
                .is_some_and(|(_, a)| a.buffered_packets() > 0 || a.waiting_for_keyframe());
        let mut next = now + if busy { BUSY_TICK } else { IDLE_TICK };
        next = next.min(self.next_report).min(self.next_stats);
        if let Some(t) = self.transport.next_timeout() {
            next = next.min(t);
        }
        if self.rtp_timeout_armed() {
            next = next.min(self.receiver.last_rtp + self.rtp_timeout);
        }
        // A deadline that stays due (a DTLS timer the endpoint did not move) must not spin.
        next.max(now + TIMER_FLOOR)
    }

    fn on_timers(&mut self, now: Instant) {
        if let Some(event) = self.transport.on_timeout(now) {
            self.on_security(now, event);
        }
        self.pop_frames(now);
        if self.next_nack <= now {
            self.next_nack = now + NACK_INTERVAL;
            self.send_nacks(now);
        }
        self.request_keyframe_if_needed(now);
        self.release_pending_keyframe(now);
        self.periodic_keyframe(now);
        if self.rtp_timeout_armed()
            && now.saturating_duration_since(self.receiver.last_rtp) >= self.rtp_timeout
        {
            self.receiver.timed_out = true;
            self.emit(VideoEvent::RtpTimeout);
        }
        if self.next_report <= now {
            self.queue_report(now, None);
            self.next_report = now + randomized_interval(self.report_interval);
            if let Some(sender) = self.sender.as_mut() {
                sender
                    .retransmitted
                    .retain(|_, at| now.saturating_duration_since(*at) < HISTORY_AGE);
            }
        }
        self.publish();
        if self.next_stats <= now {
            self.next_stats = now + self.stats_interval;
            self.emit(VideoEvent::Stats(self.stats.clone()));
        }
    }

    fn send_nacks(&mut self, now: Instant) {
        if !self.feedback.nack || !self.direction.receives() {
            return;
        }
        let rtt = self.rtt.unwrap_or(DEFAULT_RTT);
        let Some((_, assembler)) = self.receiver.assembler.as_mut() else {
            return;
        };
        let seqs = assembler.nacks(now, rtt);
        let Some(media_ssrc) = self.receiver.stats.ssrc() else {
            return;
        };
        if seqs.is_empty() {
            return;
        }
        self.stats.nacks_sent += 1;
        self.stats.nacked_packets += seqs.len() as u64;
        let feedback = Feedback::Nack {
            sender_ssrc: self.ssrc,
            media_ssrc,
            seqs,
        };
        self.queue_feedback(&feedback);
    }

    fn request_keyframe_if_needed(&mut self, now: Instant) {
        let receiver = &mut self.receiver;
        if let Some((_, assembler)) = receiver.assembler.as_mut()
            && assembler.take_keyframe_request()
        {
            receiver.want_keyframe = true;
        }
        if !receiver.want_keyframe || !self.direction.receives() {
            return;
        }
        if receiver
            .last_request
            .is_some_and(|at| now.saturating_duration_since(at) < KEYFRAME_REQUEST_INTERVAL)
        {
            return;
        }
        let Some(media_ssrc) = receiver.stats.ssrc() else {
            return;
        };
        let feedback = if self.feedback.pli {
            self.stats.plis_sent += 1;
            Feedback::Pli {
                sender_ssrc: self.ssrc,
                media_ssrc,
            }
        } else if self.feedback.fir {
            receiver.fir_seq = receiver.fir_seq.wrapping_add(1);
            self.stats.firs_sent += 1;
            Feedback::Fir {
                sender_ssrc: self.ssrc,
                media_ssrc,
                seq_nr: receiver.fir_seq,
            }
        } else {
            // The peer takes no keyframe requests: wait for its periodic keyframes.
            receiver.want_keyframe = false;
            return;
        };
        receiver.want_keyframe = false;
        receiver.last_request = Some(now);
        self.queue_feedback(&feedback);
    }

    fn release_pending_keyframe(&mut self, now: Instant) {
        let due = self.sender.as_ref().is_some_and(|s| {
            s.keyframe_pending
                && s.last_forced
                    .is_none_or(|at| now.saturating_duration_since(at) >= KEYFRAME_MIN_INTERVAL)
        });
        if due && let Some(sender) = self.sender.as_mut() {
            sender.keyframe_pending = false;
            sender.last_forced = Some(now);
            self.encoder_command(EncoderCommand::Keyframe);
        }
    }

    /// Without PLI/FIR the peer cannot ask for a keyframe after a loss: send one regularly.
    fn periodic_keyframe(&mut self, now: Instant) {
        if self.feedback.pli || self.feedback.fir {
            return;
        }
        let due = self.sender.as_mut().is_some_and(|s| {
            let due = now.saturating_duration_since(s.last_periodic)
                >= KEYFRAME_INTERVAL_WITHOUT_FEEDBACK;
            if due {
                s.last_periodic = now;
            }
            due
        });
        if due {
            self.encoder_command(EncoderCommand::Keyframe);
        }
    }

    // ----- RTCP out -----

    /// Protects and queues an RTCP compound (nothing before the keys exist).
    fn queue_rtcp(&mut self, compound: Vec<u8>) {
        self.transport.send_rtcp(compound);
    }

    /// Feedback goes out at once in a minimal compound: an empty RR and the SDES CNAME first
    /// (RFC 4585 §3.1: no reduced-size RTCP), the report blocks stay with the regular reports.
    fn queue_feedback(&mut self, feedback: &Feedback) {
        let mut compound = rtcp::build_compound(&[
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: self.ssrc,
                reports: Vec::new(),
            }),
            RtcpPacket::Sdes(Sdes::cname(self.ssrc, self.reporter.cname())),
        ]);
        write_feedback(&mut compound, feedback);
        self.queue_rtcp(compound);
    }

    /// The regular report: SR (we sent in the last two intervals) or RR with the block about the
    /// peer's stream, SDES CNAME, REMB when negotiated, BYE when `bye` gives a reason.
    fn queue_report(&mut self, now: Instant, bye: Option<&str>) {
        if !self.transport.media_ready() {
            return;
        }
        let ssrc = self.ssrc;
        let sent = self
            .sender
            .as_mut()
            .is_some_and(|sender| std::mem::take(&mut sender.sent_since_report));
        let sender = self.sender.as_ref();
        let mut compound =
            self.reporter
                .next_report(now, ssrc, &mut self.receiver.stats, sent, || {
                    sender.map(|sender| SenderCounters {
                        rtp_timestamp: sender.timestamp_at(now),
                        packet_count: sender.packets,
                        octet_count: sender.octets,
                    })
                });
        if self.feedback.remb
            && self.direction.receives()
            && let Some(media) = self.receiver.stats.ssrc()
            && self.receiver.got_rtp
        {
            let loss = f32::from(self.receiver.stats.last_fraction_lost()) / 256.0;
            let bitrate_bps = self.receiver.rate.estimate(now, loss);
            if bitrate_bps > 0 {
                self.stats.remb_sent_bps = bitrate_bps;
                write_feedback(
                    &mut compound,
                    &Feedback::Remb {
                        sender_ssrc: ssrc,
                        bitrate_bps,
                        ssrcs: vec![media],
                    },
                );
            }
        }
        if let Some(reason) = bye {
            reports::append_bye(&mut compound, ssrc, reason);
        }
        self.queue_rtcp(compound);
    }

    /// Refreshes the counters the handles read.
    fn publish(&mut self) {
        let rx = &self.receiver.stats;
        self.stats.packets_lost = rx.cumulative_lost();
        self.stats.loss_percent = rx.loss_percent();
        self.stats.rtt_ms = self.rtt.map(|d| d.as_secs_f32() * 1000.0);
        self.stats.srtp = self.transport.srtp_active();
        self.stats.srtp_auth_failures = self.transport.auth_failures();
        let mut assembled = self.receiver.old_assembler;
        if let Some((_, assembler)) = self.receiver.assembler.as_ref() {
            add_assembler_stats(&mut assembled, &assembler.stats());
        }
        self.stats.frames_dropped_assembler = assembled.frames_dropped;
        self.stats.packets_dropped =
            assembled.packets_late + assembled.packets_duplicate + assembled.packets_dropped;
        self.stats.malformed_dropped = self
            .stats
            .malformed_dropped
            .max(assembled.packets_malformed);
        if let Some(encoder) = self.sender.as_ref().and_then(|s| s.encoder.as_ref()) {
            self.stats.frames_skipped = encoder.counters.skipped.load(Ordering::Relaxed);
            self.stats.encode_errors = self
                .stats
                .encode_errors
                .max(encoder.counters.errors.load(Ordering::Relaxed));
        }
        let mut shared = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        shared.clone_from(&self.stats);
    }
}

/// Adds the counters of `more` to `total`.
fn add_assembler_stats(total: &mut AssemblerStats, more: &AssemblerStats) {
    total.packets_accepted += more.packets_accepted;
    total.keyframes_complete += more.keyframes_complete;
    total.packets_lost += more.packets_lost;
    total.packets_recovered += more.packets_recovered;
    total.frames_complete += more.frames_complete;
    total.frames_dropped += more.frames_dropped;
    total.packets_late += more.packets_late;
    total.packets_duplicate += more.packets_duplicate;
    total.packets_malformed += more.packets_malformed;
    total.packets_dropped += more.packets_dropped;
    total.nacked += more.nacked;
    total.keyframe_requests += more.keyframe_requests;
}

/// The next notice of the encoder thread, or never when there is none.
async fn recv_encoder(rx: Option<&mut mpsc::Receiver<EncoderNotice>>) -> Option<EncoderNotice> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next result of the decoder thread, or never when it is gone.
async fn recv_decoder(
    rx: Option<&mut mpsc::UnboundedReceiver<DecoderResult>>,
) -> Option<DecoderResult> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// How long a missing packet is waited for when the peer takes no NACKs: only reordering can
/// still bring it, so the frame is given up (and a keyframe asked for) after this.
const NO_NACK_MAX_WAIT: Duration = Duration::from_millis(80);

/// The assembler's settings for a stream: without NACK a gap cannot be repaired by
/// retransmission, so it is given up after a short reordering allowance instead of the full
/// NACK window, and keyframe requests repeat sooner (a PLI-only peer like baresip 1.0 recovers
/// in one round trip instead of freezing for the NACK window).
fn assembler_config(nack: bool) -> AssemblerConfig {
    let default = AssemblerConfig::default();
    if nack {
        default
    } else {
        AssemblerConfig {
            max_wait: NO_NACK_MAX_WAIT,
            nack_retries: 0,
            keyframe_retry: Duration::from_millis(500),
            ..default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmission_budget_refills_at_its_rate() {
        let start = Instant::now();
        let mut budget = Budget {
            tokens: 0.0,
            at: start,
        };
        // 80 kbit/s = 10 000 bytes/s.
        assert!(!budget.take(start, 1000, 80_000));
        let later = start + Duration::from_millis(100);
        assert!(budget.take(later, 1000, 80_000));
        assert!(!budget.take(later, 1000, 80_000));
        // Never more than one second's worth, however long it idled.
        let much_later = later + Duration::from_secs(60);
        let mut taken = 0;
        while budget.take(much_later, 1000, 80_000) {
            taken += 1;
        }
        assert_eq!(taken, 10);
    }
}
