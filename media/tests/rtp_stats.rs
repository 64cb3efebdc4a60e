//! Receiver statistics (RFC 3550 A.1/A.3/A.8), RTT (§6.4.1) and the MOS estimate.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::time::{Duration, Instant};

use tandem_media::rtcp::{ReportBlock, SenderReport, ntp_middle32};
use tandem_media::rtp::RtpHeader;
use tandem_media::stats::{
    CallQuality, MAX_DROPOUT, ReceiverStats, RttEstimator, SeqOutcome, mos_estimate, r_to_mos,
    rtt_from_ntp,
};

fn hdr(ssrc: u32, sequence: u16, timestamp: u32) -> RtpHeader {
    RtpHeader {
        marker: false,
        payload_type: 0,
        sequence,
        timestamp,
        ssrc,
        csrc: vec![],
    }
}

const MS20: Duration = Duration::from_millis(20);

/// Feeds packets with the given sequence numbers, 20 ms apart, timestamps following the
/// sequence numbers (160 per packet at 8 kHz).
fn feed(stats: &mut ReceiverStats, t0: Instant, ssrc: u32, seqs: &[u16]) -> Vec<SeqOutcome> {
    seqs.iter()
        .enumerate()
        .map(|(i, &s)| {
            stats.on_packet(
                &hdr(ssrc, s, u32::from(s).wrapping_mul(160)),
                t0 + MS20 * i as u32,
                8000,
            )
        })
        .collect()
}

#[test]
fn probation_then_valid() {
    let mut st = ReceiverStats::new();
    let t0 = Instant::now();
    let out = feed(&mut st, t0, 7, &[100, 101, 102]);
    assert_eq!(
        out,
        vec![SeqOutcome::Probation, SeqOutcome::Valid, SeqOutcome::Valid]
    );
    assert_eq!(st.ssrc(), Some(7));
    assert!(st.is_valid());
    // A.1: the probation packet is not counted; counting starts at the validating one.
    assert_eq!(st.received(), 2);
    assert_eq!(st.expected(), 2);
    assert_eq!(st.cumulative_lost(), 0);
    assert_eq!(st.extended_max(), 102);
}

#[test]
fn probation_restarts_on_a_gap() {
    let mut st = ReceiverStats::new();
    let out = feed(&mut st, Instant::now(), 7, &[100, 105, 106, 107]);
    assert_eq!(
        out,
        vec![
            SeqOutcome::Probation,
            SeqOutcome::Probation,
            SeqOutcome::Valid,
            SeqOutcome::Valid
        ]
    );
    assert_eq!(st.expected(), 2);
    assert_eq!(st.received(), 2);
}

#[test]
fn no_report_before_the_source_is_valid() {
    let mut st = ReceiverStats::new();
    let t0 = Instant::now();
    assert!(st.report_block(t0).is_none());
    feed(&mut st, t0, 7, &[1]);
    assert!(st.report_block(t0).is_none());
    feed(&mut st, t0, 7, &[2]);
    assert!(st.report_block(t0).is_some());
}

#[test]
fn loss_fraction_per_interval_and_cumulative() {
    let mut st = ReceiverStats::new();
    let t0 = Instant::now();
    // 1..=10 then 13..=20: 2 lost (11, 12) out of 20 expected.
    let seqs: Vec<u16> = (1..=10).chain(13..=20).collect();
    feed(&mut st, t0, 9, &seqs);
    let b = st.report_block(t0).unwrap();
    assert_eq!(b.ssrc, 9);
    assert_eq!(b.highest_seq, 20);
    // Expected counts from the validating packet (2): 2..=20 = 19, received 17.
    assert_eq!(b.cumulative_lost, 2);
    assert_eq!(b.fraction_lost, (2 * 256 / 19) as u8);
    assert_eq!(st.last_fraction_lost(), b.fraction_lost);
    assert!((st.loss_percent() - 200.0 / 19.0).abs() < 0.01);
    // Next interval: 21..=30 without loss -> fraction 0, cumulative unchanged.
    let seqs: Vec<u16> = (21..=30).collect();
    feed(&mut st, t0, 9, &seqs);
    let b = st.report_block(t0).unwrap();
    assert_eq!(b.fraction_lost, 0);
    assert_eq!(b.cumulative_lost, 2);
    // An interval where every second packet is lost: 50 %.
    let seqs: Vec<u16> = (31..=50).filter(|s| s % 2 == 0).collect();
    feed(&mut st, t0, 9, &seqs);
    let b = st.report_block(t0).unwrap();
    assert_eq!(b.fraction_lost, 128);
    assert_eq!(b.cumulative_lost, 12);
}

#[test]
fn duplicates_make_interval_loss_zero_not_negative() {
    let mut st = ReceiverStats::new();
    let t0 = Instant::now();
    let out = feed(&mut st, t0, 3, &[1, 2, 3, 3, 2, 4]);
    assert_eq!(out[3], SeqOutcome::Duplicate);
    assert_eq!(out[4], SeqOutcome::Late);
    assert!(!out[3].is_accepted());
    assert!(out[4].is_accepted());
    let b = st.report_block(t0).unwrap();
    assert_eq!(b.cumulative_lost, -2);
    assert_eq!(b.fraction_lost, 0);
    assert_eq!(st.loss_percent(), 0.0);
}

#[test]
fn sequence_wrap_counts_cycles() {
    let mut st = ReceiverStats::new();
    let t0 = Instant::now();
    let seqs: Vec<u16> = (0..10u16).map(|i| 65530u16.wrapping_add(i)).collect();
    let out = feed(&mut st, t0, 1, &seqs);
    assert!(out[1..].iter().all(|o| *o == SeqOutcome::Valid), "{out:?}");
    assert_eq!(st.extended_max(), (1 << 16) + 3);
    assert_eq!(st.expected(), 9);
    assert_eq!(st.cumulative_lost(), 0);
    // A late packet from before the wrap does not add a cycle.
    assert_eq!(
        st.on_packet(&hdr(1, 65534, 0), t0 + Duration::from_secs(1), 8000),
        SeqOutcome::Late
    );
    assert_eq!(st.extended_max(), (1 << 16) + 3);
}

#[test]
fn large_jump_needs_confirmation_then_restarts() {
    let mut st = ReceiverStats::new();
    let t0 = Instant::now();
    feed(&mut st, t0, 1, &[10, 11, 12]);
    let far = 12 + MAX_DROPOUT + 500;
    let out = feed(&mut st, t0, 1, &[far]);
    assert_eq!(out, vec![SeqOutcome::BadSequence]);
    assert!(!out[0].is_accepted());
    // The old stream goes on: the jump was a stray packet.
    assert_eq!(feed(&mut st, t0, 1, &[13]), vec![SeqOutcome::Valid]);
    // Now two in a row from far away: a restart.
    let out = feed(&mut st, t0, 1, &[far + 10, far + 11, far + 12]);
    assert_eq!(
        out,
        vec![
            SeqOutcome::BadSequence,
            SeqOutcome::Restarted,
            SeqOutcome::Valid
        ]
    );
    assert_eq!(st.expected(), 2);
    assert_eq!(st.received(), 2);
    assert_eq!(st.cumulative_lost(), 0);
}

#[test]
fn ssrc_change_needs_two_in_a_row_and_resets() {
    let mut st = ReceiverStats::new();
    let t0 = Instant::now();
    feed(&mut st, t0, 1, &[1, 2, 3, 5]); // one lost
    assert_eq!(st.cumulative_lost(), 1);
    // A single stray packet of another SSRC is ignored.
    assert_eq!(feed(&mut st, t0, 2, &[900]), vec![SeqOutcome::OtherSource]);
    assert_eq!(feed(&mut st, t0, 1, &[6]), vec![SeqOutcome::Valid]);
    // Interleaved with the current source it never takes over.
    assert_eq!(feed(&mut st, t0, 2, &[901]), vec![SeqOutcome::OtherSource]);
    assert_eq!(feed(&mut st, t0, 1, &[7]), vec![SeqOutcome::Valid]);
    assert_eq!(feed(&mut st, t0, 2, &[902]), vec![SeqOutcome::OtherSource]);
    assert_eq!(st.ssrc(), Some(1));
    // Two in a row: the new source replaces the old one.
    assert_eq!(
        feed(&mut st, t0, 2, &[903]),
        vec![SeqOutcome::SsrcChanged { old: 1, new: 2 }]
    );
    assert_eq!(st.ssrc(), Some(2));
    assert!(st.is_valid());
    assert_eq!(st.cumulative_lost(), 0);
    assert_eq!(
        feed(&mut st, t0, 2, &[904, 905]),
        vec![SeqOutcome::Valid; 2]
    );
    let b = st.report_block(t0).unwrap();
    assert_eq!(b.ssrc, 2);
    assert_eq!(b.highest_seq, 905);
    assert_eq!(b.cumulative_lost, 0);
    // Old-source packets are now the strays.
    assert_eq!(feed(&mut st, t0, 1, &[8]), vec![SeqOutcome::OtherSource]);
}

#[test]
fn jitter_is_zero_for_perfect_timing() {
    let mut st = ReceiverStats::new();
    let t0 = Instant::now();
    let seqs: Vec<u16> = (0..100).collect();
    feed(&mut st, t0, 1, &seqs);
    assert_eq!(st.jitter(), 0);
    assert_eq!(st.jitter_ms(), 0.0);
}

#[test]
fn jitter_converges_to_the_mean_deviation() {
    // Arrivals alternate 0 / +10 ms around the nominal time: |D| = 80 units (10 ms at 8 kHz)
    // for every packet, so J converges to 80 units.
    let mut st = ReceiverStats::new();
    let t0 = Instant::now();
    for i in 0..500u32 {
        let late = if i % 2 == 1 {
            Duration::from_millis(10)
        } else {
            Duration::ZERO
        };
        st.on_packet(&hdr(1, i as u16, i * 160), t0 + MS20 * i + late, 8000);
    }
    assert!((78..=80).contains(&st.jitter()), "jitter {}", st.jitter());
    assert!((st.jitter_ms() - 10.0).abs() < 0.3, "{}", st.jitter_ms());
    assert_eq!(st.report_block(t0).unwrap().jitter, st.jitter());
}

#[test]
fn a_restart_with_new_timestamps_does_not_count_as_jitter() {
    let mut st = ReceiverStats::new();
    let t0 = Instant::now();
    for i in 0..50u32 {
        st.on_packet(&hdr(1, i as u16, i * 160), t0 + MS20 * i, 8000);
    }
    assert_eq!(st.jitter(), 0);
    // The sender restarts: sequence and timestamp jump far away, timing stays perfect.
    for i in 50..100u32 {
        let seq = (i + 20_000) as u16;
        st.on_packet(&hdr(1, seq, 0x4000_0000 + i * 160), t0 + MS20 * i, 8000);
    }
    assert_eq!(st.jitter(), 0);
}

#[test]
fn jitter_ignores_repeated_timestamps() {
    // Telephone-event updates repeat the event's timestamp while time goes on: no jitter.
    let mut st = ReceiverStats::new();
    let t0 = Instant::now();
    for i in 0..10u32 {
        st.on_packet(&hdr(1, i as u16, 16_000), t0 + MS20 * i, 8000);
    }
    assert_eq!(st.jitter(), 0);
}

#[test]
fn jitter_at_48khz_in_timestamp_units() {
    let mut st = ReceiverStats::new();
    let t0 = Instant::now();
    for i in 0..400u32 {
        let late = if i % 2 == 1 {
            Duration::from_millis(4)
        } else {
            Duration::ZERO
        };
        st.on_packet(&hdr(1, i as u16, i * 960), t0 + MS20 * i + late, 48_000);
    }
    // 4 ms at 48 kHz = 192 units.
    assert!((188..=192).contains(&st.jitter()), "jitter {}", st.jitter());
    assert!((st.jitter_ms() - 4.0).abs() < 0.1);
}

#[test]
fn lsr_and_dlsr_come_from_the_last_sender_report() {
    let mut st = ReceiverStats::new();
    let t0 = Instant::now();
    feed(&mut st, t0, 5, &[1, 2, 3]);
    let b = st.report_block(t0).unwrap();
    assert_eq!((b.lsr, b.dlsr), (0, 0));
    let sr = SenderReport {
        ssrc: 5,
        ntp_timestamp: 0xAABB_CCDD_EEFF_0011,
        ..SenderReport::default()
    };
    st.on_sender_report(&sr, t0);
    // A report from a foreign SSRC does not replace it.
    st.on_sender_report(
        &SenderReport {
            ssrc: 99,
            ntp_timestamp: 1 << 40,
            ..SenderReport::default()
        },
        t0,
    );
    let b = st.report_block(t0 + Duration::from_millis(1500)).unwrap();
    assert_eq!(b.lsr, 0xCCDD_EEFF);
    assert_eq!(b.dlsr, 0x0001_8000);
}

#[test]
fn a_sender_report_before_the_first_rtp_packet_counts() {
    let mut st = ReceiverStats::new();
    let t0 = Instant::now();
    let sr = |ssrc| SenderReport {
        ssrc,
        ntp_timestamp: 0x0000_1111_2222_0000,
        ..SenderReport::default()
    };
    st.on_sender_report(&sr(5), t0);
    feed(&mut st, t0, 5, &[1, 2]);
    assert_eq!(st.report_block(t0).unwrap().lsr, 0x1111_2222);
    // After an SSRC change the old source's SR no longer applies.
    feed(&mut st, t0, 6, &[50, 51]);
    assert_eq!(st.ssrc(), Some(6));
    assert_eq!(st.report_block(t0).unwrap().lsr, 0);
}

#[test]
fn rtt_from_the_rfc_3550_example() {
    // §6.4.1: A = 46864.500 s, LSR = 46853.125 s, DLSR = 5.250 s -> RTT 6.125 s.
    let block = ReportBlock {
        lsr: 0xB705_2000,
        dlsr: 0x0005_4000,
        ..ReportBlock::default()
    };
    let arrival = (46_864u64 << 32) | 0x8000_0000;
    assert_eq!(ntp_middle32(arrival), 0xB710_8000);
    assert_eq!(
        rtt_from_ntp(&block, arrival),
        Some(Duration::from_millis(6_125))
    );
    assert_eq!(rtt_from_ntp(&ReportBlock::default(), arrival), None);
    // Clock trouble giving a negative round trip yields zero, not 18 hours.
    let early = (46_853u64 << 32) | 0x2000_0000;
    assert_eq!(rtt_from_ntp(&block, early), Some(Duration::ZERO));
}

#[test]
fn rtt_from_our_own_sender_reports() {
    let t0 = Instant::now();
    let mut est = RttEstimator::new();
    let ntp1 = (1000u64 << 32) | 0x4000_0000;
    let ntp2 = (1005u64 << 32) | 0x4000_0000;
    est.on_report_sent(ntp1, t0);
    est.on_report_sent(ntp2, t0 + Duration::from_secs(5));
    // The peer held our second SR for 100 ms; it arrives 160 ms after we sent it.
    let block = ReportBlock {
        lsr: ntp_middle32(ntp2),
        dlsr: 6554, // ~100 ms
        ..ReportBlock::default()
    };
    let rtt = est
        .rtt_from_report(&block, t0 + Duration::from_millis(5160))
        .unwrap();
    assert!(
        rtt.abs_diff(Duration::from_millis(60)) < Duration::from_millis(1),
        "{rtt:?}"
    );
    assert_eq!(est.last_rtt(), Some(rtt));
    // LSR 0 (no SR seen by the peer) and unknown LSRs give nothing.
    assert_eq!(
        est.rtt_from_report(&ReportBlock::default(), t0 + Duration::from_secs(6)),
        None
    );
    let unknown = ReportBlock {
        lsr: 12345,
        ..block
    };
    assert_eq!(est.rtt_from_report(&unknown, t0), None);
    // The same through ReceiverStats.
    let mut st = ReceiverStats::new();
    st.on_report_sent(ntp1, t0);
    let block = ReportBlock {
        lsr: ntp_middle32(ntp1),
        dlsr: 0,
        ..ReportBlock::default()
    };
    assert_eq!(
        st.rtt_from_report(&block, t0 + Duration::from_millis(42)),
        Some(Duration::from_millis(42))
    );
    assert_eq!(st.last_rtt(), Some(Duration::from_millis(42)));
}

#[test]
fn only_recent_sender_reports_are_remembered() {
    let t0 = Instant::now();
    let mut est = RttEstimator::new();
    for i in 0..20u64 {
        est.on_report_sent(((100 + i) << 32) | 1 << 20, t0);
    }
    let oldest = ReportBlock {
        lsr: ntp_middle32((100u64 << 32) | 1 << 20),
        ..ReportBlock::default()
    };
    assert_eq!(est.rtt_from_report(&oldest, t0), None);
    let newest = ReportBlock {
        lsr: ntp_middle32((119u64 << 32) | 1 << 20),
        ..ReportBlock::default()
    };
    assert_eq!(est.rtt_from_report(&newest, t0), Some(Duration::ZERO));
}

#[test]
fn mos_follows_the_e_model() {
    // G.711 with no impairment: R = 93.2 - Id(d = 25 + 40 ms) -> about 4.4.
    let clean = mos_estimate("PCMU", 0.0, 0.0, None);
    assert!((4.35..=4.45).contains(&clean), "{clean}");
    assert_eq!(mos_estimate("pcma", 0.0, 0.0, None), clean);
    // Loss lowers it monotonically; 5 % random loss with PLC is still "fair" or better.
    let mut last = clean;
    for loss in [1.0, 2.0, 5.0, 10.0, 20.0, 40.0] {
        let m = mos_estimate("PCMU", loss, 0.0, None);
        assert!(m < last, "{loss}: {m} !< {last}");
        last = m;
    }
    let five = mos_estimate("PCMU", 5.0, 0.0, None);
    assert!((3.5..4.2).contains(&five), "{five}");
    // Delay lowers it, steeply past 177 ms one way.
    let slow = mos_estimate("PCMU", 0.0, 0.0, Some(600.0));
    assert!(slow < clean - 0.4, "{slow}");
    assert!(mos_estimate("PCMU", 0.0, 30.0, Some(100.0)) < clean);
    // Opus has a small equipment impairment; unknown codecs a larger one.
    let opus = mos_estimate("opus", 0.0, 0.0, None);
    assert!(opus < clean && opus > 4.2, "{opus}");
    assert!(mos_estimate("speex", 0.0, 0.0, None) < opus);
    // Nonsense inputs stay in range.
    for (l, j, r) in [
        (f32::NAN, f32::NAN, Some(f32::NAN)),
        (-5.0, -1.0, Some(-10.0)),
        (1000.0, 1e9, Some(1e9)),
        (f32::INFINITY, f32::INFINITY, Some(f32::INFINITY)),
    ] {
        let m = mos_estimate("PCMU", l, j, r);
        assert!((1.0..=4.5).contains(&m), "{l} {j} {r:?}: {m}");
    }
    assert_eq!(r_to_mos(-3.0), 1.0);
    assert_eq!(r_to_mos(120.0), 4.5);
    assert!((r_to_mos(50.0) - 2.58).abs() < 0.01);
}

#[test]
fn call_quality_is_a_plain_default_struct() {
    let q = CallQuality::default();
    assert_eq!(q.codec, "");
    assert_eq!(q.rtt_ms, None);
    let q2 = CallQuality {
        codec: "opus".into(),
        mos: 4.3,
        ..q.clone()
    };
    assert_ne!(q, q2);
    assert!(format!("{q2:?}").contains("opus"));
}
