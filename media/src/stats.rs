//! Reception statistics (RFC 3550 Appendix A.1, A.3, A.8), round-trip time from report blocks
//! (RFC 3550 §6.4.1), the per-call [`CallQuality`] summary and an E-model MOS estimate
//! (ITU-T G.107, reduced form).

use std::time::{Duration, Instant};

use crate::rtcp::{ReportBlock, SenderReport, duration_to_ntp_short, ntp_middle32};
use crate::rtp::RtpHeader;

/// Packets in sequence needed before a source is valid (RFC 3550 A.1).
pub const MIN_SEQUENTIAL: u32 = 2;
/// Largest forward sequence jump still treated as loss rather than a restart (RFC 3550 A.1).
pub const MAX_DROPOUT: u16 = 3000;
/// Largest backward sequence jump treated as reordering (RFC 3550 A.1).
pub const MAX_MISORDER: u16 = 100;
const RTP_SEQ_MOD: u32 = 1 << 16;
/// How many of our own sender reports are remembered for RTT matching.
const SENT_REPORTS_KEPT: usize = 16;

/// What [`ReceiverStats::on_packet`] made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqOutcome {
    /// In sequence, or a forward jump within [`MAX_DROPOUT`] (the gap counts as loss).
    Valid,
    /// From the current source but still in probation (not yet [`MIN_SEQUENTIAL`] in a row).
    Probation,
    /// A reordered (or duplicated) older packet within [`MAX_MISORDER`] (counted as received).
    Late,
    /// The newest packet again (same sequence number as the highest seen; counted as received
    /// per RFC 3550 A.1, but not worth decoding twice).
    Duplicate,
    /// A jump beyond [`MAX_DROPOUT`]; ignored unless the next packet confirms it.
    BadSequence,
    /// The packet after a [`SeqOutcome::BadSequence`] continued from it: the sender restarted,
    /// tracking was re-initialised at this packet.
    Restarted,
    /// The first packets of a new SSRC arrived in sequence: statistics restarted for it.
    SsrcChanged {
        /// The previous source.
        old: u32,
        /// The new source.
        new: u32,
    },
    /// From an SSRC other than the current one and not (yet) replacing it: not counted.
    OtherSource,
}

impl SeqOutcome {
    /// True when the packet belongs to the current source and may be decoded and played.
    pub fn is_accepted(&self) -> bool {
        !matches!(
            self,
            SeqOutcome::BadSequence | SeqOutcome::OtherSource | SeqOutcome::Duplicate
        )
    }
}

/// A candidate SSRC being watched for [`MIN_SEQUENTIAL`] packets in a row before switching.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    ssrc: u32,
    last_seq: u16,
    seen: u32,
}

/// Tracks our own sender reports so a received report block's LSR/DLSR yields the round trip.
#[derive(Debug, Clone, Default)]
pub struct RttEstimator {
    /// (middle 32 bits of the SR's NTP time, when it was sent), oldest first.
    sent: Vec<(u32, Instant)>,
    last: Option<Duration>,
}

impl RttEstimator {
    /// An estimator with no reports sent yet.
    pub fn new() -> RttEstimator {
        RttEstimator::default()
    }

    /// Records that we sent a sender report with NTP time `ntp` at `now`.
    pub fn on_report_sent(&mut self, ntp: u64, now: Instant) {
        if self.sent.len() >= SENT_REPORTS_KEPT {
            self.sent.remove(0);
        }
        self.sent.push((ntp_middle32(ntp), now));
    }

    /// The round trip given by a report block about our stream received at `now`:
    /// arrival − send time of the SR named by LSR − DLSR. `None` when LSR is zero (no SR
    /// received by the peer yet) or names an SR we do not know.
    pub fn rtt_from_report(&mut self, block: &ReportBlock, now: Instant) -> Option<Duration> {
        if block.lsr == 0 {
            return None;
        }
        let &(_, sent_at) = self.sent.iter().rev().find(|(lsr, _)| *lsr == block.lsr)?;
        let elapsed = now.saturating_duration_since(sent_at);
        let dlsr = crate::rtcp::ntp_short_to_duration(block.dlsr);
        let rtt = elapsed.saturating_sub(dlsr);
        self.last = Some(rtt);
        Some(rtt)
    }

    /// The most recent round-trip time measured.
    pub fn last_rtt(&self) -> Option<Duration> {
        self.last
    }
}

/// The round trip per RFC 3550 §6.4.1 from a report block and the arrival time `arrival_ntp`
/// (64-bit NTP time): A − LSR − DLSR in 1/65536 s. `None` when LSR is zero; negative results
/// (clock steps) give zero.
pub fn rtt_from_ntp(block: &ReportBlock, arrival_ntp: u64) -> Option<Duration> {
    if block.lsr == 0 {
        return None;
    }
    let a = ntp_middle32(arrival_ntp);
    let rtt = a.wrapping_sub(block.lsr).wrapping_sub(block.dlsr);
    // A wrapped (negative) result appears as a huge value: treat > 2^31 units as negative.
    if rtt > 0x8000_0000 {
        return Some(Duration::ZERO);
    }
    Some(crate::rtcp::ntp_short_to_duration(rtt))
}

/// Reception statistics for the remote source of one call (RFC 3550 A.1 sequence tracking with
/// probation and restarts, SSRC change detection, A.3 loss, A.8 jitter), plus the RTT of our
/// own sender reports.
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    ssrc: Option<u32>,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    candidate: Option<Candidate>,
    // A.8 jitter.
    clock_rate: u32,
    epoch: Option<Instant>,
    last_transit: Option<u32>,
    last_timestamp: Option<u32>,
    /// Jitter in 1/16 timestamp units (the integer form of A.8).
    jitter_q4: u32,
    // Last SR received from the source.
    /// (sender SSRC, middle 32 bits of its NTP time, arrival) of the last SR.
    last_sr: Option<(u32, u32, Instant)>,
    last_fraction: u8,
    last_arrival: Option<Instant>,
    rtt: RttEstimator,
}

impl Default for ReceiverStats {
    fn default() -> Self {
        ReceiverStats::new()
    }
}

impl ReceiverStats {
    /// Statistics with no source seen yet.
    pub fn new() -> ReceiverStats {
        ReceiverStats {
            ssrc: None,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            candidate: None,
            clock_rate: 0,
            epoch: None,
            last_transit: None,
            last_timestamp: None,
            jitter_q4: 0,
            last_sr: None,
            last_fraction: 0,
            last_arrival: None,
            rtt: RttEstimator::new(),
        }
    }

    /// The source being tracked, once one was seen.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// True once the source passed probation.
    pub fn is_valid(&self) -> bool {
        self.ssrc.is_some() && self.probation == 0
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    fn reset_for_source(&mut self, ssrc: u32, seq: u16) {
        self.ssrc = Some(ssrc);
        self.init_seq(seq);
        self.max_seq = seq.wrapping_sub(1);
        self.probation = MIN_SEQUENTIAL;
        self.candidate = None;
        self.last_transit = None;
        self.last_timestamp = None;
        self.jitter_q4 = 0;
        // An SR that arrived before the source's first RTP packet still counts.
        if self.last_sr.is_some_and(|(sr_ssrc, _, _)| sr_ssrc != ssrc) {
            self.last_sr = None;
        }
        self.last_fraction = 0;
    }

    /// RFC 3550 A.1 `update_seq` for the current source.
    fn update_seq(&mut self, seq: u16) -> SeqOutcome {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    return SeqOutcome::Valid;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return SeqOutcome::Probation;
        }
        let outcome = if udelta == 0 {
            SeqOutcome::Duplicate
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
            SeqOutcome::Valid
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets after a big jump: assume the sender restarted
                // (its timestamps likely restarted too, so the transit chain does).
                self.init_seq(seq);
                self.last_transit = None;
                self.last_timestamp = None;
                SeqOutcome::Restarted
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return SeqOutcome::BadSequence;
            }
        } else {
            SeqOutcome::Late
        };
        self.received = self.received.wrapping_add(1);
        outcome
    }

    /// Accounts one received RTP packet from the peer, arriving at `arrival`, whose payload
    /// type has RTP clock `clock_rate`. Call it for every RTP packet (audio and telephone
    /// events) so loss counts are right.
    pub fn on_packet(
        &mut self,
        header: &RtpHeader,
        arrival: Instant,
        clock_rate: u32,
    ) -> SeqOutcome {
        let seq = header.sequence;
        let outcome = match self.ssrc {
            None => {
                self.reset_for_source(header.ssrc, seq);
                self.update_seq(seq)
            }
            Some(current) if current == header.ssrc => {
                self.candidate = None;
                self.update_seq(seq)
            }
            Some(current) => {
                let seen = match self.candidate {
                    Some(c) if c.ssrc == header.ssrc && seq == c.last_seq.wrapping_add(1) => {
                        c.seen + 1
                    }
                    _ => 1,
                };
                if seen >= MIN_SEQUENTIAL {
                    // The new source sent enough in a row without the old one in between.
                    self.reset_for_source(header.ssrc, seq);
                    self.probation = 0;
                    self.init_seq(seq);
                    self.received = 1;
                    SeqOutcome::SsrcChanged {
                        old: current,
                        new: header.ssrc,
                    }
                } else {
                    self.candidate = Some(Candidate {
                        ssrc: header.ssrc,
                        last_seq: seq,
                        seen,
                    });
                    return SeqOutcome::OtherSource;
                }
            }
        };
        if matches!(
            outcome,
            SeqOutcome::Valid
                | SeqOutcome::Restarted
                | SeqOutcome::SsrcChanged { .. }
                | SeqOutcome::Probation
        ) {
            self.last_arrival = Some(arrival);
            self.update_jitter(header.timestamp, arrival, clock_rate);
        } else if matches!(outcome, SeqOutcome::Late | SeqOutcome::Duplicate) {
            self.last_arrival = Some(arrival);
        }
        outcome
    }

    /// RFC 3550 A.8, in integer 1/16 units; packets repeating the previous timestamp
    /// (telephone-event updates, video-style fragments) do not measure transit.
    fn update_jitter(&mut self, timestamp: u32, arrival: Instant, clock_rate: u32) {
        let clock_rate = clock_rate.max(1);
        if clock_rate != self.clock_rate {
            // Rescale the estimate to the new clock and restart the transit chain.
            if self.clock_rate != 0 {
                let scaled =
                    u64::from(self.jitter_q4) * u64::from(clock_rate) / u64::from(self.clock_rate);
                self.jitter_q4 = u32::try_from(scaled).unwrap_or(u32::MAX);
            }
            self.clock_rate = clock_rate;
            self.last_transit = None;
            self.last_timestamp = None;
        }
        if self.last_timestamp == Some(timestamp) {
            return;
        }
        let epoch = *self.epoch.get_or_insert(arrival);
        let arrival_units =
            crate::rtp::duration_to_units(arrival.saturating_duration_since(epoch), clock_rate);
        let transit = arrival_units.wrapping_sub(timestamp);
        if let Some(prev) = self.last_transit {
            let d = (transit.wrapping_sub(prev) as i32).unsigned_abs();
            // J += (|D| - J) / 16, kept in 1/16 units: J16 += |D| - ((J16 + 8) >> 4).
            let adj = (self.jitter_q4.saturating_add(8)) >> 4;
            self.jitter_q4 = self.jitter_q4.saturating_add(d).saturating_sub(adj);
        }
        self.last_transit = Some(transit);
        self.last_timestamp = Some(timestamp);
    }

    /// Records a sender report from the peer received at `now` (for LSR/DLSR). Reports from
    /// another SSRC than the tracked one are ignored once a source is known.
    pub fn on_sender_report(&mut self, sr: &SenderReport, now: Instant) {
        if self.ssrc.is_none_or(|s| s == sr.ssrc) {
            self.last_sr = Some((sr.ssrc, ntp_middle32(sr.ntp_timestamp), now));
        }
    }

    /// Extended highest sequence number received (cycles << 16 | max_seq).
    pub fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// Packets expected so far (RFC 3550 A.3).
    pub fn expected(&self) -> u32 {
        if !self.is_valid() {
            return 0;
        }
        self.extended_max()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    /// Packets received from the current source (duplicates included, as in A.1).
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Cumulative packets lost (negative when duplicates outnumber losses).
    pub fn cumulative_lost(&self) -> i64 {
        i64::from(self.expected()) - i64::from(self.received)
    }

    /// Loss over the whole stream, in percent (0 when nothing is expected yet).
    pub fn loss_percent(&self) -> f32 {
        let expected = self.expected();
        if expected == 0 {
            return 0.0;
        }
        let lost = self.cumulative_lost().max(0);
        (lost as f64 * 100.0 / f64::from(expected)) as f32
    }

    /// The fraction lost reported in the last [`ReceiverStats::report_block`], in 1/256.
    pub fn last_fraction_lost(&self) -> u8 {
        self.last_fraction
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter_q4 >> 4
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f32 {
        if self.clock_rate == 0 {
            return 0.0;
        }
        (f64::from(self.jitter_q4) / 16.0 * 1000.0 / f64::from(self.clock_rate)) as f32
    }

    /// When the last accepted packet arrived.
    pub fn last_arrival(&self) -> Option<Instant> {
        self.last_arrival
    }

    /// The report block about the tracked source for a report sent at `now`: cumulative and
    /// interval loss (RFC 3550 A.3; the interval ends here), jitter, LSR/DLSR. `None` before
    /// the source passed probation.
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let ssrc = self.ssrc?;
        if !self.is_valid() {
            return None;
        }
        let expected = self.expected();
        let lost = self.cumulative_lost().clamp(-0x80_0000, 0x7f_ffff);
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        self.last_fraction = fraction;
        let (lsr, dlsr) = match self.last_sr {
            Some((_, lsr, at)) => (
                lsr,
                duration_to_ntp_short(now.saturating_duration_since(at)),
            ),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost: fraction,
            // Clamped to the 24-bit range above.
            cumulative_lost: lost as i32,
            highest_seq: self.extended_max(),
            jitter: self.jitter(),
            lsr,
            dlsr,
        })
    }

    /// Records that we sent a sender report with NTP time `ntp` at `now` (for RTT).
    pub fn on_report_sent(&mut self, ntp: u64, now: Instant) {
        self.rtt.on_report_sent(ntp, now);
    }

    /// The round trip from a report block the peer sent about our stream, received at `now`
    /// (see [`RttEstimator::rtt_from_report`]).
    pub fn rtt_from_report(&mut self, block: &ReportBlock, now: Instant) -> Option<Duration> {
        self.rtt.rtt_from_report(block, now)
    }

    /// The most recent round-trip time measured.
    pub fn last_rtt(&self) -> Option<Duration> {
        self.rtt.last_rtt()
    }
}

/// A call's media quality summary, as shown to the user and logged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallQuality {
    /// Codec name in use for sending (e.g. "opus", "PCMU").
    pub codec: String,
    /// RTP packets we sent.
    pub packets_sent: u64,
    /// RTP packets we received.
    pub packets_received: u64,
    /// Packets lost from the peer (negative when duplicates outnumber losses).
    pub packets_lost: i64,
    /// Receive loss in percent.
    pub loss_percent: f32,
    /// Receive interarrival jitter in milliseconds.
    pub jitter_ms: f32,
    /// Round-trip time from RTCP, once measured.
    pub rtt_ms: Option<f32>,
    /// Estimated mean opinion score, 1.0..=4.5.
    pub mos: f32,
    /// True when media is SRTP-protected.
    pub srtp: bool,
    /// SRTP packets dropped for a bad authentication tag or replay.
    pub srtp_auth_failures: u64,
    /// Loss the peer reports about our stream (from its report blocks), in percent.
    pub remote_loss_percent: Option<f32>,
}

/// Equipment impairment Ie and packet-loss robustness Bpl of a codec (G.113 App. I values
/// where they exist; Opus by its published listening-test behaviour).
fn codec_impairment(codec: &str) -> (f64, f64) {
    let name = codec.to_ascii_lowercase();
    match name.as_str() {
        // G.711 with packet loss concealment (G.711 Appendix I): Ie 0, Bpl 25.1.
        "pcmu" | "pcma" | "g711" | "g711u" | "g711a" => (0.0, 25.1),
        // Opus at VoIP bitrates with in-band FEC: small impairment, good loss robustness.
        "opus" => (3.0, 20.0),
        // G.722 at 64 kbit/s on the narrowband scale.
        "g722" => (0.0, 20.0),
        // Unknown codecs: a cautious middle ground.
        _ => (10.0, 10.0),
    }
}

/// ITU-T G.107 E-model, reduced: R = 93.2 − Id − Ie,eff with Ie,eff = Ie + (95 − Ie)·Ppl /
/// (Ppl + Bpl) (random loss), Id from the one-way mouth-to-ear delay d = rtt/2 (25 ms when
/// unknown) + jitter buffer (2 × jitter + 20 ms) + 20 ms packetisation, then R → MOS.
pub fn mos_estimate(codec: &str, loss_percent: f32, jitter_ms: f32, rtt_ms: Option<f32>) -> f32 {
    let (ie, bpl) = codec_impairment(codec);
    let ppl = f64::from(loss_percent).clamp(0.0, 100.0);
    let ppl = if ppl.is_nan() { 0.0 } else { ppl };
    let ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl);
    let jitter = f64::from(jitter_ms);
    let jitter = if jitter.is_finite() {
        jitter.max(0.0)
    } else {
        0.0
    };
    let half_rtt = rtt_ms
        .map(f64::from)
        .filter(|r| r.is_finite())
        .map_or(25.0, |r| r.max(0.0) / 2.0);
    let d = half_rtt + 2.0 * jitter + 20.0 + 20.0;
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let r = 93.2 - id - ie_eff;
    r_to_mos(r) as f32
}

/// The G.107 mapping from the transmission rating R to a MOS (1.0..=4.5).
pub fn r_to_mos(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        (1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6).clamp(1.0, 4.5)
    }
}
