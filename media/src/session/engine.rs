//! The session task: one select loop over the control channel, the media sockets, the frame
//! tick and the protocol timers (RTCP, quality, DTLS).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tandem_proto::sdp::Direction;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tracing::{debug, trace, warn};

use super::reports::{self, Reporter, randomized_interval};
use super::transport::{Inbound, RtpTransport, SecurityEvent, SocketReader, Via};
use super::{
    Control, MediaConfig, MediaError, MediaEvent, MediaSecurity, MediaUpdate, SessionTuning,
    Snapshot,
};
use crate::chain::{AudioReceiveChain, AudioSendChain};
use crate::codec::CodecSpec;
use crate::device::{CaptureDevice, PlaybackDevice};
use crate::dtmf::{DtmfReceiver, DtmfSender, TelephoneEvent};
use crate::rtp::{RtpPacket, RtpStream};
use crate::stats::{CallQuality, ReceiverStats, SeqOutcome, mos_estimate};

/// Datagrams read per socket before a frame tick is processed.
const MAX_DRAIN: usize = 64;
/// The frame clock wakes the task every ptime; a wake-up this much later than that means the
/// task was starved (a loaded machine), and what it reads now had been waiting for it.
const STALL_SLACK: Duration = Duration::from_millis(30);

/// The state of one call's media, driven by [`Engine::run`].
pub(super) struct Engine {
    /// Sockets, keys, demux and the outgoing queue.
    transport: RtpTransport,
    /// CNAME, SR or RR (RFC 3550 §6.4: an SR covers two intervals).
    reporter: Reporter,
    send_codec: CodecSpec,
    recv_codecs: Vec<CodecSpec>,
    send_dtmf: Option<(u8, u32)>,
    recv_dtmf: Vec<(u8, u32)>,
    ptime: Duration,
    direction: Direction,
    capture: Box<dyn CaptureDevice>,
    playback: Box<dyn PlaybackDevice>,
    rtp_timeout: Duration,
    tuning: SessionTuning,
    events: mpsc::UnboundedSender<MediaEvent>,
    snapshot: Arc<Mutex<Snapshot>>,

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
    /// A new ptime needs a new interval.
    retime: bool,
}

/// Samples in one frame of `ptime` at `rate` Hz.
fn frame_samples(rate: u32, ptime: Duration) -> usize {
    usize::try_from(u128::from(rate) * ptime.as_micros() / 1_000_000).unwrap_or(0)
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
            transport: RtpTransport::new(config.socket, config.remote_rtp, "audio")
                .with_rtcp(config.rtcp_socket, config.remote_rtcp, config.rtcp_mux)
                .with_dtls_timeout(tuning.dtls_timeout),
            reporter: Reporter::new(config.cname),
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
            rtp_timeout: config.rtp_timeout,
            tuning,
            events,
            snapshot,
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
            next_rtcp: now + randomized_interval(tuning.rtcp_interval / 2),
            next_quality: now + tuning.quality_interval,
            retime: false,
        };
        engine.apply_security(now, config.security)?;
        Ok(engine)
    }

    /// Installs new security: SDES keys at once, DTLS by starting a handshake.
    fn apply_security(&mut self, now: Instant, security: MediaSecurity) -> Result<(), MediaError> {
        if let Some(event) = self.transport.apply_security(now, security)? {
            self.on_security(now, event);
        }
        Ok(())
    }

    /// Reports a keying outcome of the transport.
    fn on_security(&mut self, now: Instant, event: SecurityEvent) {
        match event {
            SecurityEvent::Established => {
                self.emit(MediaEvent::SecureEstablished);
                self.media_became_ready(now);
            }
            SecurityEvent::Failed(reason) => self.emit(MediaEvent::SecurityFailed(reason)),
        }
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
        let mut reader = self.transport.reader();
        let mut ticker = new_ticker(self.ptime);
        self.transport.flush().await;
        let reply = loop {
            if self.retime {
                self.retime = false;
                ticker = new_ticker(self.ptime);
            }
            let wake = tokio::time::Instant::from_std(self.next_timer());
            // Branches are polled in random order (tokio's fairness): none starves the others.
            tokio::select! {
                _ = ticker.tick() => {
                    // Take in everything that has arrived before playing out this frame, so a
                    // task woken late does not conceal frames whose packets are waiting.
                    self.drain(&mut reader, Via::Rtp);
                    self.drain(&mut reader, Via::Rtcp);
                    self.on_tick(Instant::now());
                }
                (via, data, from) = reader.recv() => self.on_datagram(Instant::now(), data, from, via),
                command = control.recv() => match command {
                    None => break None,
                    Some(Control::Stop(reply)) => break reply,
                    Some(command) => self.on_control(command),
                },
                () = tokio::time::sleep_until(wake) => self.on_timers(Instant::now()),
            }
            self.transport.flush().await;
        };
        let quality = self.finish().await;
        if let Some(reply) = reply {
            let _ = reply.send(quality);
        }
    }

    /// Reads the datagrams already queued on the `via` socket without waiting (at most a
    /// bounded number, so a flood cannot stall the frame clock).
    fn drain(&mut self, reader: &mut SocketReader, via: Via) {
        for _ in 0..MAX_DRAIN {
            match reader.try_recv(via) {
                Ok(Some((data, from))) => self.on_datagram(Instant::now(), data, from, via),
                Ok(None) => break,
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
        self.transport.flush().await;
        if let Err(e) = self.playback.finish() {
            warn!(error = %e, "finishing the playback device failed");
        }
        let quality = self.quality(now);
        self.publish(&quality);
        quality
    }

    /// The earliest of the RTCP, quality and DTLS timers.
    fn next_timer(&self) -> Instant {
        let next = self.next_rtcp.min(self.next_quality);
        self.transport.next_timeout().map_or(next, |t| next.min(t))
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
        self.transport
            .update_remote(update.remote_rtp, update.remote_rtcp, update.rtcp_mux);
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
            if direction.receives() && !self.direction.receives() {
                self.last_rtp = now;
                self.timed_out = false;
            }
            if direction.sends() && !self.direction.sends() {
                self.marker_next = true;
            }
            self.direction = direction;
        }
        if let Some(security) = update.security
            && let Err(e) = self.apply_security(now, security)
        {
            // The transport is left failed: no media until new keys.
            self.on_security(now, SecurityEvent::Failed(e.to_string()));
        }
    }

    /// One frame time: capture → encode → send; receive chain → playback; RTP timeout.
    fn on_tick(&mut self, now: Instant) {
        self.check_stall(now);
        self.capture_frame(now);
        self.playout_frame(now);
        if self.direction.receives()
            && self.transport.media_ready()
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
        let may_send = self.direction.sends() && self.transport.media_ready();
        // At most one DTMF packet per tick; it replaces that tick's audio packet.
        let mut dtmf_sent = false;
        if may_send {
            dtmf_sent = self.send_dtmf_packet();
        } else if !self.direction.sends()
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
        self.transport.send_rtp(packet.to_bytes());
    }

    fn playout_frame(&mut self, now: Instant) {
        let len = frame_samples(self.playback.rate(), self.ptime);
        self.playout_buf.clear();
        self.recv_chain.pull(now, len, &mut self.playout_buf);
        self.playout_buf.resize(len, 0);
        if !self.direction.receives() || !self.transport.media_ready() {
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
        if let Some(event) = self.transport.on_timeout(now) {
            self.on_security(now, event);
        }
        if self.next_rtcp <= now {
            self.queue_rtcp(now, None);
            self.next_rtcp = now + randomized_interval(self.tuning.rtcp_interval);
        }
        if self.next_quality <= now {
            let quality = self.quality(now);
            self.emit(MediaEvent::Quality(quality));
            self.next_quality = now + self.tuning.quality_interval;
        }
    }

    /// Queues a compound report: SR (we sent in the last two report intervals) or RR, SDES CNAME,
    /// and BYE when `bye` gives a reason.
    fn queue_rtcp(&mut self, now: Instant, bye: Option<&str>) {
        if !self.transport.media_ready() {
            return;
        }
        let ssrc = self.stream.ssrc();
        let sent = self.stream.take_sent_since_report();
        let stream = &self.stream;
        let mut compound = self
            .reporter
            .next_report(now, ssrc, &mut self.rx_stats, sent, || {
                Some(stream.sender_counters(now))
            });
        if let Some(reason) = bye {
            reports::append_bye(&mut compound, ssrc, reason);
        }
        self.transport.send_rtcp(compound);
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
        match self.transport.receive(now, data, from, via) {
            Inbound::Rtp(packet) => self.on_rtp(now, packet),
            Inbound::Rtcp(compound) => self.on_rtcp(now, &compound),
            Inbound::Security(event) => self.on_security(now, event),
            Inbound::Malformed | Inbound::Dropped => {}
        }
    }

    fn on_rtp(&mut self, now: Instant, packet: RtpPacket) {
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
        if self.direction.receives() {
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
        let ours = self.stream.ssrc();
        let peer_reports = match reports::read_reports(data, now, ours, &mut self.rx_stats) {
            Ok(peer_reports) => peer_reports,
            Err(e) => {
                trace!(error = %e, "malformed RTCP dropped");
                return;
            }
        };
        for report in peer_reports {
            if report.rtt.is_some() {
                self.rtt = report.rtt;
            }
            let loss = report.block.fraction_lost_percent();
            self.remote_loss_percent = Some(loss);
            // Opus tunes its in-band FEC to the loss the peer sees.
            self.send_chain
                .set_expected_loss(loss.round().clamp(0.0, 100.0) as u8);
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
            srtp: self.transport.srtp_active(),
            srtp_auth_failures: self.transport.auth_failures(),
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
    fn ptime_bounds() {
        assert!(validate_ptime(Duration::from_millis(20)).is_ok());
        assert!(validate_ptime(Duration::from_millis(120)).is_ok());
        assert!(validate_ptime(Duration::ZERO).is_err());
        assert!(validate_ptime(Duration::from_millis(500)).is_err());
    }
}
