//! RTCP compound packets (RFC 3550 §6) and the NTP helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use tandem_media::rtcp::{
    Bye, IntervalParams, NTP_UNIX_OFFSET_SECS, ReceiverReport, ReportBlock, RtcpError, RtcpPacket,
    SDES_CNAME, Sdes, SdesChunk, SdesItem, SenderReport, build_compound, duration_to_ntp_short,
    ntp_from_system_time, ntp_middle32, ntp_short_to_duration, parse_compound, report_interval,
};

/// SR with one report block, SDES CNAME, BYE with a reason, then a generic NACK (RTPFB, 205)
/// and an XR (207) a receiver must skip. Written out by hand from RFC 3550 §6.4.1, §6.5, §6.6
/// and RFC 4585 §6.2.1.
fn sample_compound() -> Vec<u8> {
    let mut b = Vec::new();
    // SR: V=2 RC=1 PT=200 length=12 (52 bytes).
    b.extend_from_slice(&[0x81, 200, 0x00, 0x0C]);
    b.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]); // sender SSRC
    b.extend_from_slice(&[0xE8, 0xF0, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00]); // NTP
    b.extend_from_slice(&[0x00, 0x00, 0x1F, 0x40]); // RTP ts 8000
    b.extend_from_slice(&[0x00, 0x00, 0x00, 0x64]); // 100 packets
    b.extend_from_slice(&[0x00, 0x00, 0x3E, 0x80]); // 16000 octets
    b.extend_from_slice(&[0xAA, 0xBB, 0xCC, 0xDD]); // block SSRC
    b.extend_from_slice(&[0x40, 0xFF, 0xFF, 0xFE]); // fraction 64, cumulative -2
    b.extend_from_slice(&[0x00, 0x01, 0x00, 0x05]); // ext. highest seq
    b.extend_from_slice(&[0x00, 0x00, 0x00, 0x20]); // jitter 32
    b.extend_from_slice(&[0x12, 0x34, 0x56, 0x78]); // LSR
    b.extend_from_slice(&[0x00, 0x01, 0x00, 0x00]); // DLSR 1 s
    // SDES: one chunk, CNAME "user@10.0.0.1" (13 bytes) + null = 20-byte chunk.
    b.extend_from_slice(&[0x81, 202, 0x00, 0x05]);
    b.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 1, 13]);
    b.extend_from_slice(b"user@10.0.0.1");
    b.push(0);
    // BYE with reason "done": 4 + 4 + 1 + 4 = 13 -> 16 bytes, length 3.
    b.extend_from_slice(&[0x81, 203, 0x00, 0x03, 0x11, 0x22, 0x33, 0x44, 4]);
    b.extend_from_slice(b"done");
    b.extend_from_slice(&[0, 0, 0]);
    // RTPFB generic NACK (FMT 1, PT 205), length 3.
    b.extend_from_slice(&[
        0x81, 205, 0x00, 0x03, 0, 0, 0, 1, 0, 0, 0, 2, 0x00, 0x10, 0x00, 0x03,
    ]);
    // XR (PT 207), length 1.
    b.extend_from_slice(&[0x80, 207, 0x00, 0x01, 0, 0, 0, 1]);
    b
}

#[test]
fn parses_a_compound_with_unknown_types() {
    let packets = parse_compound(&sample_compound()).unwrap();
    assert_eq!(packets.len(), 5);
    let RtcpPacket::SenderReport(sr) = &packets[0] else {
        panic!("not an SR: {:?}", packets[0]);
    };
    assert_eq!(sr.ssrc, 0x1122_3344);
    assert_eq!(sr.ntp_timestamp, 0xE8F0_0000_8000_0000);
    assert_eq!(sr.rtp_timestamp, 8000);
    assert_eq!(sr.packet_count, 100);
    assert_eq!(sr.octet_count, 16000);
    assert_eq!(
        sr.reports,
        vec![ReportBlock {
            ssrc: 0xAABB_CCDD,
            fraction_lost: 64,
            cumulative_lost: -2,
            highest_seq: 0x0001_0005,
            jitter: 32,
            lsr: 0x1234_5678,
            dlsr: 0x0001_0000,
        }]
    );
    let RtcpPacket::Sdes(sdes) = &packets[1] else {
        panic!("not SDES");
    };
    assert_eq!(sdes.cname_of(0x1122_3344), Some("user@10.0.0.1"));
    assert_eq!(sdes.cname_of(1), None);
    assert_eq!(
        packets[2],
        RtcpPacket::Bye(Bye {
            sources: vec![0x1122_3344],
            reason: Some("done".into())
        })
    );
    assert_eq!(packets[3], RtcpPacket::Other { pt: 205 });
    assert_eq!(packets[4], RtcpPacket::Other { pt: 207 });
}

#[test]
fn building_reproduces_the_hand_written_bytes() {
    let mut packets = parse_compound(&sample_compound()).unwrap();
    packets.truncate(3); // Other packets are not written.
    let full = sample_compound();
    assert_eq!(build_compound(&packets), full[..52 + 24 + 16].to_vec());
}

#[test]
fn padding_and_empty_reports() {
    // RR with no blocks, padded with 4 bytes (P bit, last octet = 4).
    let rr = [0xA0, 201, 0x00, 0x02, 0, 0, 0, 9, 0, 0, 0, 4];
    assert_eq!(
        parse_compound(&rr).unwrap(),
        vec![RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 9,
            reports: vec![]
        })]
    );
    let mut bad = rr;
    bad[11] = 9;
    assert_eq!(parse_compound(&bad), Err(RtcpError::BadPadding(9)));
    bad[11] = 0;
    assert_eq!(parse_compound(&bad), Err(RtcpError::BadPadding(0)));
}

#[test]
fn malformed_compounds_are_errors() {
    assert_eq!(parse_compound(&[]), Err(RtcpError::Empty));
    assert_eq!(
        parse_compound(&[0x80, 201, 0]),
        Err(RtcpError::TruncatedHeader)
    );
    assert_eq!(
        parse_compound(&[0x40, 201, 0, 1, 0, 0, 0, 1]),
        Err(RtcpError::BadVersion(1))
    );
    assert_eq!(
        parse_compound(&[0x80, 201, 0, 5, 0, 0, 0, 1]),
        Err(RtcpError::BadLength {
            words: 5,
            remaining: 8
        })
    );
    // RR claiming one block with no block present.
    assert_eq!(
        parse_compound(&[0x81, 201, 0, 1, 0, 0, 0, 1]),
        Err(RtcpError::TruncatedReport { pt: 201 })
    );
    // SR without its sender info.
    assert_eq!(
        parse_compound(&[0x80, 200, 0, 1, 0, 0, 0, 1]),
        Err(RtcpError::TruncatedReport { pt: 200 })
    );
    // SDES item running past the packet.
    assert_eq!(
        parse_compound(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 40, b'a', b'b']),
        Err(RtcpError::TruncatedSdes)
    );
    // BYE listing two sources with room for one.
    assert_eq!(
        parse_compound(&[0x82, 203, 0, 1, 0, 0, 0, 1]),
        Err(RtcpError::TruncatedBye)
    );
    // A valid packet followed by 3 stray bytes.
    let mut trailing = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
    trailing.extend_from_slice(&[0x80, 1, 2]);
    assert_eq!(parse_compound(&trailing), Err(RtcpError::TruncatedHeader));
}

#[test]
fn cumulative_loss_is_clamped_to_24_bits() {
    let block = |lost| ReportBlock {
        ssrc: 1,
        cumulative_lost: lost,
        ..ReportBlock::default()
    };
    for (given, expected) in [
        (0x7F_FFFF, 0x7F_FFFF),
        (0x100_0000, 0x7F_FFFF),
        (-0x80_0000, -0x80_0000),
        (i32::MIN, -0x80_0000),
        (-1, -1),
    ] {
        let rr = RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 2,
            reports: vec![block(given)],
        });
        let parsed = parse_compound(&build_compound(&[rr])).unwrap();
        let RtcpPacket::ReceiverReport(rr) = &parsed[0] else {
            panic!("not an RR");
        };
        assert_eq!(rr.reports[0].cumulative_lost, expected, "given {given}");
    }
}

#[test]
fn long_texts_and_counts_are_bounded() {
    let long = "é".repeat(200); // 400 bytes: cut at 254 to stay on a char boundary
    let sdes = RtcpPacket::Sdes(Sdes::cname(5, &long));
    let bye = RtcpPacket::Bye(Bye {
        sources: (0..40).collect(),
        reason: Some(long.clone()),
    });
    let parsed = parse_compound(&build_compound(&[sdes, bye])).unwrap();
    let RtcpPacket::Sdes(s) = &parsed[0] else {
        panic!("not SDES");
    };
    assert_eq!(s.cname_of(5).unwrap(), &long[..254]);
    let RtcpPacket::Bye(b) = &parsed[1] else {
        panic!("not BYE");
    };
    assert_eq!(b.sources, (0..31).collect::<Vec<u32>>());
    assert_eq!(b.reason.as_deref(), Some(&long[..254]));
}

#[test]
fn sdes_chunk_ending_on_a_word_boundary_gets_a_full_null_word() {
    // CNAME of 2 bytes: 4 (ssrc) + 2 + 2 = 8 bytes, so the terminating null needs 4 more.
    let bytes = build_compound(&[RtcpPacket::Sdes(Sdes::cname(1, "ab"))]);
    assert_eq!(bytes.len(), 4 + 12);
    assert_eq!(&bytes[12..], &[0, 0, 0, 0]);
    assert_eq!(
        parse_compound(&bytes).unwrap(),
        vec![RtcpPacket::Sdes(Sdes::cname(1, "ab"))]
    );
}

#[test]
fn ntp_helpers() {
    // The Unix epoch is 2208988800 s after the NTP epoch.
    assert_eq!(ntp_from_system_time(UNIX_EPOCH), NTP_UNIX_OFFSET_SECS << 32);
    let t = UNIX_EPOCH + Duration::from_millis(1_500);
    assert_eq!(
        ntp_from_system_time(t),
        ((NTP_UNIX_OFFSET_SECS + 1) << 32) | 0x8000_0000
    );
    // RFC 3550 §6.4.1 example values: 46853.125 s is 0xB705_2000 in the middle 32 bits.
    let ntp = (46_853u64 << 32) | 0x2000_0000;
    assert_eq!(ntp_middle32(ntp), 0xB705_2000);
    assert_eq!(
        duration_to_ntp_short(Duration::from_millis(5_250)),
        0x0005_4000
    );
    assert_eq!(
        ntp_short_to_duration(0x0005_4000),
        Duration::from_millis(5_250)
    );
    assert_eq!(
        duration_to_ntp_short(Duration::from_secs(1 << 20)),
        u32::MAX
    );
    let now = tandem_media::rtcp::ntp_now();
    let sys = ntp_from_system_time(SystemTime::now());
    assert!(sys >= now && sys - now < (1u64 << 32), "ntp_now is not now");
}

fn block_strategy() -> impl Strategy<Value = ReportBlock> {
    (
        any::<u32>(),
        any::<u8>(),
        -0x80_0000i32..=0x7F_FFFF,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(ssrc, fraction_lost, cumulative_lost, highest_seq, jitter, lsr, dlsr)| ReportBlock {
                ssrc,
                fraction_lost,
                cumulative_lost,
                highest_seq,
                jitter,
                lsr,
                dlsr,
            },
        )
}

fn text_strategy() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9@.:é-]{0,60}").unwrap()
}

fn packet_strategy() -> impl Strategy<Value = RtcpPacket> {
    let blocks = || proptest::collection::vec(block_strategy(), 0..=31);
    prop_oneof![
        (
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            blocks()
        )
            .prop_map(
                |(ssrc, ntp_timestamp, rtp_timestamp, packet_count, octet_count, reports)| {
                    RtcpPacket::SenderReport(SenderReport {
                        ssrc,
                        ntp_timestamp,
                        rtp_timestamp,
                        packet_count,
                        octet_count,
                        reports,
                    })
                }
            ),
        (any::<u32>(), blocks()).prop_map(|(ssrc, reports)| RtcpPacket::ReceiverReport(
            ReceiverReport { ssrc, reports }
        )),
        proptest::collection::vec(
            (
                any::<u32>(),
                proptest::collection::vec((1u8..=8, text_strategy()), 0..4)
            ),
            0..=31
        )
        .prop_map(|chunks| RtcpPacket::Sdes(Sdes {
            chunks: chunks
                .into_iter()
                .map(|(ssrc, items)| SdesChunk {
                    ssrc,
                    items: items
                        .into_iter()
                        .map(|(kind, value)| SdesItem { kind, value })
                        .collect(),
                })
                .collect(),
        })),
        (
            proptest::collection::vec(any::<u32>(), 0..=31),
            proptest::option::of(text_strategy())
        )
            .prop_map(|(sources, reason)| RtcpPacket::Bye(Bye { sources, reason })),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_compound(&data);
    }

    #[test]
    fn plausible_headers_never_panic(
        mut data in proptest::collection::vec(any::<u8>(), 4..400),
        pt in 200u8..=207,
    ) {
        data[0] = 0x80 | (data[0] & 0x3F);
        data[1] = pt;
        // A length that fits the buffer, so the body parsers run.
        let words = (data.len() / 4).saturating_sub(1);
        data[2] = (words >> 8) as u8;
        data[3] = words as u8;
        let _ = parse_compound(&data);
    }

    #[test]
    fn mutated_compounds_never_panic(
        packets in proptest::collection::vec(packet_strategy(), 1..4),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = build_compound(&packets);
        for (at, value) in flips {
            let i = at % bytes.len();
            bytes[i] = value;
        }
        let _ = parse_compound(&bytes);
        let _ = parse_compound(&bytes[..cut % (bytes.len() + 1)]);
    }

    #[test]
    fn build_then_parse_round_trips(packets in proptest::collection::vec(packet_strategy(), 1..5)) {
        let bytes = build_compound(&packets);
        prop_assert_eq!(bytes.len() % 4, 0);
        prop_assert_eq!(parse_compound(&bytes).unwrap(), packets);
    }
}

#[test]
fn cname_helper_builds_one_item() {
    let sdes = Sdes::cname(7, "alice@host");
    assert_eq!(sdes.chunks.len(), 1);
    assert_eq!(sdes.chunks[0].items[0].kind, SDES_CNAME);
}

#[test]
fn report_interval_follows_rfc_3550_6_3() {
    // Two parties at 64 kbit/s: the 5 s minimum dominates; randomised to [2.05, 6.16] s.
    let p = IntervalParams::two_party(64_000, true, false);
    let lo = report_interval(&p, 0.0).as_secs_f64();
    let mid = report_interval(&p, 0.5).as_secs_f64();
    let hi = report_interval(&p, 1.0).as_secs_f64();
    let c = std::f64::consts::E - 1.5;
    assert!((lo - 2.5 / c).abs() < 1e-6, "{lo}");
    assert!((mid - 5.0 / c).abs() < 1e-6, "{mid}");
    assert!((hi - 7.5 / c).abs() < 1e-6, "{hi}");
    // Before the first report the minimum is halved.
    let first = IntervalParams::two_party(64_000, false, true);
    assert!((report_interval(&first, 0.5).as_secs_f64() - 2.5 / c).abs() < 1e-6);
    // A large conference with little bandwidth: receivers share 75 % of it.
    let big = IntervalParams {
        members: 1000,
        senders: 10,
        rtcp_bandwidth: 1000.0,
        we_sent: false,
        avg_rtcp_size: 100.0,
        initial: false,
    };
    let t = report_interval(&big, 0.5).as_secs_f64();
    assert!((t - 100.0 * 990.0 / 750.0 / c).abs() < 1e-6, "{t}");
    // Senders share 25 % among themselves.
    let sender = IntervalParams {
        we_sent: true,
        ..big
    };
    let t = report_interval(&sender, 0.5).as_secs_f64();
    assert!((t - 5.0 / c).abs() < 1e-6, "{t}"); // 100 * 10 / 250 = 4 s -> 5 s minimum
    // Nonsense inputs stay bounded.
    for bw in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300] {
        let p = IntervalParams {
            rtcp_bandwidth: bw,
            ..big
        };
        let t = report_interval(&p, f64::NAN);
        assert!(
            t >= Duration::from_secs(2) && t <= Duration::from_secs(3600),
            "{bw}: {t:?}"
        );
    }
}

#[test]
fn report_block_helpers() {
    let b = ReportBlock {
        fraction_lost: 64,
        jitter: 480,
        ..ReportBlock::default()
    };
    assert_eq!(b.fraction_lost_percent(), 25.0);
    assert_eq!(b.jitter_ms(8000), 60.0);
    assert_eq!(b.jitter_ms(48_000), 10.0);
    assert_eq!(b.jitter_ms(0), 0.0);
}
