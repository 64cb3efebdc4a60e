//! RTCP sender and receiver reports of one RTP stream (RFC 3550 §6.4), shared by the audio and
//! the video engine: when to send (the randomised interval), whether we report as a sender,
//! the SR/RR + SDES CNAME compound built from our counters and the peer's reception
//! statistics, BYE, and the report blocks about our stream in what the peer sends.

use std::time::{Duration, Instant};

use rand::Rng;
use tracing::debug;

use crate::rtcp::{
    self, Bye, ReceiverReport, ReportBlock, RtcpError, RtcpPacket, Sdes, SenderReport,
};
use crate::rtp::SenderCounters;
use crate::stats::ReceiverStats;

/// A randomised report interval around `mean` (RFC 3550 §6.3.1: 0.5–1.5 ×).
pub fn randomized_interval(mean: Duration) -> Duration {
    mean.mul_f64(rand::rng().random_range(0.5..1.5))
}

/// Whether our next report is a sender report: RFC 3550 §6.4 makes a participant that sent
/// data since the last report *or the one before* a sender.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SenderRole {
    sent_in_previous_interval: bool,
}

impl SenderRole {
    /// A stream that has not sent yet.
    pub fn new() -> Self {
        SenderRole::default()
    }

    /// Called once per report with whether RTP went out since the previous one: true when
    /// this report is an SR.
    pub fn is_sender(&mut self, sent_since_last_report: bool) -> bool {
        let sender = sent_since_last_report || self.sent_in_previous_interval;
        self.sent_in_previous_interval = sent_since_last_report;
        sender
    }
}

/// Our side of a stream's regular RTCP reports: the CNAME, and whether we report as a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reporter {
    cname: String,
    role: SenderRole,
}

impl Reporter {
    /// Reports under `cname` (RFC 3550 §6.5.1), for a stream that has not sent yet.
    pub fn new(cname: String) -> Self {
        Reporter {
            cname,
            role: SenderRole::new(),
        }
    }

    /// Our CNAME (also for the SDES of feedback-only compounds).
    pub fn cname(&self) -> &str {
        &self.cname
    }

    /// The start of the next regular compound (see [`build_report`]): an SR when RTP went out
    /// since the previous report or in the interval before it and `counters` gives our
    /// counters (asked only then), else an RR.
    pub fn next_report(
        &mut self,
        now: Instant,
        ssrc: u32,
        receiver: &mut ReceiverStats,
        sent_since_last_report: bool,
        counters: impl FnOnce() -> Option<SenderCounters>,
    ) -> Vec<u8> {
        let sender = if self.role.is_sender(sent_since_last_report) {
            counters()
        } else {
            None
        };
        build_report(now, ssrc, &self.cname, receiver, sender)
    }
}

/// The start of a regular compound: an SR when `sender` gives our counters (else an RR) with
/// the block about the peer's stream, then our SDES CNAME. Marks the SR as sent in `receiver`
/// for the round-trip time of the peer's answer. Append feedback or [`append_bye`] after it.
pub fn build_report(
    now: Instant,
    ssrc: u32,
    cname: &str,
    receiver: &mut ReceiverStats,
    sender: Option<SenderCounters>,
) -> Vec<u8> {
    let reports: Vec<ReportBlock> = receiver.report_block(now).into_iter().collect();
    let report = match sender {
        Some(counters) => {
            let ntp = rtcp::ntp_now();
            receiver.on_report_sent(ntp, now);
            RtcpPacket::SenderReport(SenderReport {
                ssrc,
                ntp_timestamp: ntp,
                rtp_timestamp: counters.rtp_timestamp,
                packet_count: counters.packet_count,
                octet_count: counters.octet_count,
                reports,
            })
        }
        None => RtcpPacket::ReceiverReport(ReceiverReport { ssrc, reports }),
    };
    rtcp::build_compound(&[report, RtcpPacket::Sdes(Sdes::cname(ssrc, cname))])
}

/// Appends a BYE for `ssrc` with `reason` to a compound.
pub fn append_bye(compound: &mut Vec<u8>, ssrc: u32, reason: &str) {
    rtcp::write_packet(
        compound,
        &RtcpPacket::Bye(Bye {
            sources: vec![ssrc],
            reason: Some(reason.to_owned()),
        }),
    );
}

/// A report block about our stream from the peer, with the round trip it measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerReport {
    /// The block (loss, jitter, LSR/DLSR as the peer sees our stream).
    pub block: ReportBlock,
    /// The round-trip time from LSR/DLSR, when the block answers one of our SRs.
    pub rtt: Option<Duration>,
}

impl PeerReport {
    /// The fraction the peer lost since its previous report, 0.0..1.0.
    pub fn fraction_lost(&self) -> f32 {
        f32::from(self.block.fraction_lost) / 256.0
    }
}

/// Reads a received (plain) RTCP compound: the peer's SR goes into `receiver` (for our
/// LSR/DLSR), BYEs are logged, and the report blocks about `ours` come back with their RTT.
/// Feedback, XR and APP packets are skipped here.
pub fn read_reports(
    data: &[u8],
    now: Instant,
    ours: u32,
    receiver: &mut ReceiverStats,
) -> Result<Vec<PeerReport>, RtcpError> {
    let mut about_us = Vec::new();
    for packet in rtcp::parse_compound(data)? {
        let blocks = match packet {
            RtcpPacket::SenderReport(sr) => {
                receiver.on_sender_report(&sr, now);
                sr.reports
            }
            RtcpPacket::ReceiverReport(rr) => rr.reports,
            RtcpPacket::Bye(bye) => {
                debug!(sources = ?bye.sources, reason = ?bye.reason, "RTCP BYE received");
                continue;
            }
            _ => continue,
        };
        for block in blocks.into_iter().filter(|b| b.ssrc == ours) {
            let rtt = receiver.rtt_from_report(&block, now);
            about_us.push(PeerReport { block, rtt });
        }
    }
    Ok(about_us)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtpHeader;

    #[test]
    fn report_intervals_are_randomized_within_half_to_one_and_a_half() {
        let mean = Duration::from_secs(5);
        let draws: Vec<Duration> = (0..200).map(|_| randomized_interval(mean)).collect();
        assert!(draws.iter().all(|d| *d >= mean / 2 && *d < mean * 3 / 2));
        // Not a constant: the point of the randomisation is to avoid synchronised reports.
        assert!(draws.iter().any(|d| *d != draws[0]));
    }

    #[test]
    fn a_sender_stays_one_for_the_interval_after_it_stopped() {
        let mut role = SenderRole::new();
        assert!(!role.is_sender(false));
        assert!(role.is_sender(true));
        // Nothing sent since, but RTP went out in the interval before: still an SR.
        assert!(role.is_sender(false));
        assert!(!role.is_sender(false));
    }

    fn header(seq: u16, ts: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: ts,
            ssrc: 0xBEEF,
            csrc: Vec::new(),
        }
    }

    #[test]
    fn a_reporter_sends_an_sr_only_while_it_sends() {
        let now = Instant::now();
        let mut rx = ReceiverStats::new();
        let mut reporter = Reporter::new("me@tandem".into());
        assert_eq!(reporter.cname(), "me@tandem");
        let counters = || {
            Some(SenderCounters {
                rtp_timestamp: 1,
                packet_count: 2,
                octet_count: 3,
            })
        };
        let kinds: Vec<bool> = [false, true, false, false]
            .into_iter()
            .map(|sent| {
                let compound = reporter.next_report(now, 9, &mut rx, sent, counters);
                let packets = rtcp::parse_compound(&compound).unwrap();
                assert!(
                    matches!(&packets[1], RtcpPacket::Sdes(s) if s.cname_of(9) == Some("me@tandem"))
                );
                matches!(packets[0], RtcpPacket::SenderReport(_))
            })
            .collect();
        assert_eq!(kinds, [false, true, true, false]);
        // A sender without counters to give reports as a receiver.
        let compound = reporter.next_report(now, 9, &mut rx, true, || None);
        assert!(matches!(
            rtcp::parse_compound(&compound).unwrap()[0],
            RtcpPacket::ReceiverReport(_)
        ));
    }

    #[test]
    fn reports_carry_counters_blocks_cname_and_bye() {
        let now = Instant::now();
        let mut rx = ReceiverStats::new();
        for i in 0..10u16 {
            rx.on_packet(&header(100 + i, u32::from(i) * 160), now, 8000);
        }
        let counters = SenderCounters {
            rtp_timestamp: 1234,
            packet_count: 50,
            octet_count: 8000,
        };
        let mut compound = build_report(now, 0xCAFE, "me@tandem", &mut rx, Some(counters));
        append_bye(&mut compound, 0xCAFE, "call ended");
        let packets = rtcp::parse_compound(&compound).unwrap();
        assert_eq!(packets.len(), 3);
        let RtcpPacket::SenderReport(sr) = &packets[0] else {
            panic!("expected an SR, got {:?}", packets[0]);
        };
        assert_eq!(
            (sr.ssrc, sr.rtp_timestamp, sr.packet_count, sr.octet_count),
            (0xCAFE, 1234, 50, 8000)
        );
        assert_eq!(sr.reports.len(), 1);
        assert_eq!(sr.reports[0].ssrc, 0xBEEF);
        let RtcpPacket::Sdes(sdes) = &packets[1] else {
            panic!("expected SDES, got {:?}", packets[1]);
        };
        assert_eq!(sdes.cname_of(0xCAFE), Some("me@tandem"));
        let RtcpPacket::Bye(bye) = &packets[2] else {
            panic!("expected BYE, got {:?}", packets[2]);
        };
        assert_eq!(bye.sources, vec![0xCAFE]);
        assert_eq!(bye.reason.as_deref(), Some("call ended"));

        // Without counters it is an RR (no block yet: nothing received).
        let rr = build_report(now, 7, "x", &mut ReceiverStats::new(), None);
        let packets = rtcp::parse_compound(&rr).unwrap();
        assert!(matches!(
            &packets[0],
            RtcpPacket::ReceiverReport(ReceiverReport { ssrc: 7, reports }) if reports.is_empty()
        ));
    }

    #[test]
    fn only_blocks_about_our_stream_are_read_and_an_answered_sr_gives_the_rtt() {
        let start = Instant::now();
        // We sent an SR; the peer answers with a block about us carrying its LSR/DLSR and a
        // block about somebody else.
        let mut ours_rx = ReceiverStats::new();
        let sent = build_report(
            start,
            0xCAFE,
            "me",
            &mut ours_rx,
            Some(SenderCounters {
                rtp_timestamp: 0,
                packet_count: 1,
                octet_count: 160,
            }),
        );
        let RtcpPacket::SenderReport(our_sr) = &rtcp::parse_compound(&sent).unwrap()[0] else {
            panic!("expected an SR");
        };
        let lsr = rtcp::ntp_middle32(our_sr.ntp_timestamp);
        let about_us = ReportBlock {
            ssrc: 0xCAFE,
            fraction_lost: 64,
            lsr,
            dlsr: 0,
            ..ReportBlock::default()
        };
        let about_other = ReportBlock {
            ssrc: 0x1111,
            ..ReportBlock::default()
        };
        let answer = rtcp::build_compound(&[RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 0xBEEF,
            reports: vec![about_other, about_us],
        })]);
        let later = start + Duration::from_millis(40);
        let reports = read_reports(&answer, later, 0xCAFE, &mut ours_rx).unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].block, about_us);
        assert!((reports[0].fraction_lost() - 0.25).abs() < f32::EPSILON);
        // Sent at `start`, answered at once (DLSR 0), read 40 ms later.
        assert_eq!(reports[0].rtt, Some(Duration::from_millis(40)));

        assert!(read_reports(&[0x80], later, 0xCAFE, &mut ours_rx).is_err());
    }
}
