//! RTCP feedback: NACK, PLI, FIR and REMB written and parsed, inside compound packets next to
//! SR/RR/SDES, byte layouts as Chrome and baresip send them (built from the RFC layouts), and
//! hostile bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use proptest::prelude::*;
use tandem_media::rtcp::{self, ReceiverReport, ReportBlock, RtcpPacket, Sdes};
use tandem_video::feedback::{Feedback, nack_fcis, parse_feedback, write_feedback};

fn written(fb: &Feedback) -> Vec<u8> {
    let mut out = Vec::new();
    write_feedback(&mut out, fb);
    out
}

#[test]
fn nack_bytes_follow_rfc_4585() {
    let fb = Feedback::Nack {
        sender_ssrc: 0x0102_0304,
        media_ssrc: 0xa0b0_c0d0,
        seqs: vec![100, 101, 103, 116, 117, 200],
    };
    let bytes = written(&fb);
    assert_eq!(
        bytes,
        vec![
            0x81, 205, 0, 5, // V=2 FMT=1 PT=RTPFB length=5
            1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0, // SSRCs
            0, 100, 0x80, 0x05, // PID 100, BLP: 101, 103, 116
            0, 117, 0, 0, // 117 does not fit: 117 - 100 = 17
            0, 200, 0, 0,
        ]
    );
    assert_eq!(parse_feedback(&bytes), vec![fb]);
    // Empty NACKs are not written.
    let empty = Feedback::Nack {
        sender_ssrc: 1,
        media_ssrc: 2,
        seqs: vec![],
    };
    assert!(written(&empty).is_empty());
}

#[test]
fn chrome_style_nack_and_pli() {
    // A compound as Chrome sends it: RR + SDES(CNAME) + generic NACK (PID 0xfffe, BLP bits 0
    // and 2 -> 0xffff, 0x0001) + PLI.
    let mut compound = rtcp::build_compound(&[
        RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 0x1111_1111,
            reports: vec![ReportBlock {
                ssrc: 0x2222_2222,
                fraction_lost: 12,
                cumulative_lost: 40,
                highest_seq: 70_000,
                jitter: 90,
                lsr: 0,
                dlsr: 0,
            }],
        }),
        RtcpPacket::Sdes(Sdes::cname(0x1111_1111, "aBcDeFgHiJkLmNoP")),
    ]);
    compound.extend_from_slice(&[
        0x81, 0xcd, 0x00, 0x03, 0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x22, 0x22, 0xff, 0xfe, 0x00,
        0x05,
    ]);
    compound.extend_from_slice(&[
        0x81, 0xce, 0x00, 0x02, 0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x22, 0x22,
    ]);
    let fbs = parse_feedback(&compound);
    assert_eq!(
        fbs,
        vec![
            Feedback::Nack {
                sender_ssrc: 0x1111_1111,
                media_ssrc: 0x2222_2222,
                seqs: vec![0xfffe, 0xffff, 1],
            },
            Feedback::Pli {
                sender_ssrc: 0x1111_1111,
                media_ssrc: 0x2222_2222,
            },
        ]
    );
    // The audio RTCP parser still reads the compound, skipping the feedback packets.
    let packets = rtcp::parse_compound(&compound).unwrap();
    assert_eq!(packets.len(), 4);
    assert!(matches!(packets[2], RtcpPacket::Other { pt: 205 }));
    assert!(matches!(packets[3], RtcpPacket::Other { pt: 206 }));
}

#[test]
fn baresip_style_fir_and_pli() {
    // RFC 5104 FIR: media source field 0, FCI = SSRC + seq nr + 3 reserved bytes.
    let fir = [
        0x84, 0xce, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0x0b, 0xad, 0xf0, 0x0d, 7, 0,
        0, 0,
    ];
    let fb = Feedback::Fir {
        sender_ssrc: 0xdead_beef,
        media_ssrc: 0x0bad_f00d,
        seq_nr: 7,
    };
    assert_eq!(parse_feedback(&fir), vec![fb.clone()]);
    assert_eq!(written(&fb), fir.to_vec());
    // Two FCI entries are two requests.
    let mut two = fir.to_vec();
    two[3] = 6;
    two.extend_from_slice(&[0, 0, 0, 9, 8, 0, 0, 0]);
    assert_eq!(parse_feedback(&two).len(), 2);
    let pli = Feedback::Pli {
        sender_ssrc: 5,
        media_ssrc: 6,
    };
    assert_eq!(
        written(&pli),
        vec![0x81, 0xce, 0, 2, 0, 0, 0, 5, 0, 0, 0, 6]
    );
}

#[test]
fn remb_bytes_and_values() {
    // Chrome-style REMB: 1 SSRC, 1.5 Mbit/s = mantissa 187500 (0x2dc6c), exponent 3.
    let bytes = [
        0x8f, 0xce, 0x00, 0x05, 0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0, b'R', b'E', b'M', b'B', 0x01,
        0x0e, 0xdc, 0x6c, 0x12, 0x34, 0x56, 0x78,
    ];
    let fbs = parse_feedback(&bytes);
    assert_eq!(
        fbs,
        vec![Feedback::Remb {
            sender_ssrc: 1,
            bitrate_bps: 1_500_000,
            ssrcs: vec![0x1234_5678],
        }]
    );
    assert_eq!(written(&fbs[0]), bytes.to_vec());
    for bps in [0u64, 30_000, 262_143, 262_144, 999_999, 12_345_678, 1 << 40] {
        let fb = Feedback::Remb {
            sender_ssrc: 9,
            bitrate_bps: bps,
            ssrcs: vec![1, 2, 3],
        };
        let Feedback::Remb {
            bitrate_bps, ssrcs, ..
        } = parse_feedback(&written(&fb)).remove(0)
        else {
            panic!("not a REMB");
        };
        assert_eq!(ssrcs, vec![1, 2, 3]);
        // 18 significant bits: within 1/2^17 below.
        assert!(
            bitrate_bps <= bps && bps - bitrate_bps <= bps >> 17,
            "{bps} {bitrate_bps}"
        );
    }
    // Another application-layer feedback (not "REMB") is skipped.
    let mut other = bytes;
    other[12] = b'X';
    assert!(parse_feedback(&other).is_empty());
    // A SSRC count beyond the packet is malformed and skipped.
    let mut lying = bytes;
    lying[16] = 9;
    assert!(parse_feedback(&lying).is_empty());
}

#[test]
fn compound_walk_skips_and_stops_safely() {
    let pli = written(&Feedback::Pli {
        sender_ssrc: 1,
        media_ssrc: 2,
    });
    // Unknown FMTs and packet types are skipped; parsing continues after them.
    let mut c = vec![0x82, 205, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]; // RTPFB FMT 2
    c.extend_from_slice(&[0x83, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]); // SLI without FCI
    c.extend_from_slice(&[0x80, 204, 0, 0]); // APP, empty
    c.extend_from_slice(&pli);
    assert_eq!(parse_feedback(&c).len(), 1);
    // Too short for the feedback header: skipped.
    let mut c = vec![0x81, 206, 0, 1, 0, 0, 0, 1];
    c.extend_from_slice(&pli);
    assert_eq!(parse_feedback(&c).len(), 1);
    // A wrong version stops the walk, as does a length past the end.
    let mut c = pli.clone();
    c.extend_from_slice(&[0x41, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
    c.extend_from_slice(&pli);
    assert_eq!(parse_feedback(&c).len(), 1);
    let mut c = pli.clone();
    c.extend_from_slice(&[0x81, 206, 0, 9, 0, 0, 0, 1, 0, 0, 0, 2]);
    assert_eq!(parse_feedback(&c).len(), 1);
    // Padding is honoured; a bad padding count skips the packet.
    let padded = [0xa1, 206, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 4];
    assert_eq!(parse_feedback(&padded).len(), 1);
    let bad_pad = [0xa1, 206, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 40];
    assert!(parse_feedback(&bad_pad).is_empty());
    // A NACK whose FCI is cut short by its length keeps the whole FCIs only.
    let nack = [
        0x81, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 10, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(
        parse_feedback(&nack[..16]),
        vec![Feedback::Nack {
            sender_ssrc: 1,
            media_ssrc: 2,
            seqs: vec![10]
        }]
    );
    assert!(parse_feedback(&[]).is_empty());
    assert!(parse_feedback(&[0x81]).is_empty());
}

#[test]
fn large_nack_sets_spread_over_many_fcis() {
    // Every third sequence number of 3000 across the wrap.
    let seqs: Vec<u16> = (0..3000u32)
        .map(|i| 64_000u16.wrapping_add((i * 3) as u16))
        .collect();
    let fb = Feedback::Nack {
        sender_ssrc: 1,
        media_ssrc: 2,
        seqs: seqs.clone(),
    };
    let bytes = written(&fb);
    // 6 numbers per FCI (offsets 0, 3, ..., 15), 3000 / 6 = 500 FCIs.
    assert_eq!(bytes.len(), 12 + 500 * 4);
    assert_eq!(nack_fcis(&seqs).len(), 500);
    assert_eq!(parse_feedback(&bytes), vec![fb]);
}

fn arb_feedback() -> impl Strategy<Value = Feedback> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u32>(),
            any::<u16>(),
            prop::collection::vec(0u16..200, 1..80)
        )
            .prop_map(|(s, m, base, offs)| {
                Feedback::Nack {
                    sender_ssrc: s,
                    media_ssrc: m,
                    seqs: offs.iter().map(|o| base.wrapping_add(*o)).collect(),
                }
            }),
        (any::<u32>(), any::<u32>()).prop_map(|(s, m)| Feedback::Pli {
            sender_ssrc: s,
            media_ssrc: m
        }),
        (any::<u32>(), any::<u32>(), any::<u8>()).prop_map(|(s, m, n)| Feedback::Fir {
            sender_ssrc: s,
            media_ssrc: m,
            seq_nr: n
        }),
        (
            any::<u32>(),
            0u64..(1 << 18),
            prop::collection::vec(any::<u32>(), 0..10)
        )
            .prop_map(|(s, b, ssrcs)| Feedback::Remb {
                sender_ssrc: s,
                bitrate_bps: b,
                ssrcs
            }),
    ]
}

/// NACK sequence numbers as a set, ordered from the first one.
fn normalised(fb: &Feedback) -> Feedback {
    match fb {
        Feedback::Nack {
            sender_ssrc,
            media_ssrc,
            seqs,
        } => {
            let base = *seqs
                .iter()
                .min_by_key(|s| s.wrapping_sub(seqs[0]) as i16)
                .unwrap();
            let mut v = seqs.clone();
            v.sort_by_key(|s| s.wrapping_sub(base));
            v.dedup();
            Feedback::Nack {
                sender_ssrc: *sender_ssrc,
                media_ssrc: *media_ssrc,
                seqs: v,
            }
        }
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn round_trip_in_compounds(fbs in prop::collection::vec(arb_feedback(), 1..6)) {
        let mut compound = rtcp::build_compound(&[RtcpPacket::ReceiverReport(ReceiverReport { ssrc: 1, reports: vec![] })]);
        for fb in &fbs {
            write_feedback(&mut compound, fb);
        }
        let parsed = parse_feedback(&compound);
        let want: Vec<Feedback> = fbs.iter().map(normalised).collect();
        prop_assert_eq!(parsed, want);
        prop_assert!(rtcp::parse_compound(&compound).is_ok());
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_feedback(&bytes);
    }

    #[test]
    fn plausible_headers_with_random_bodies_never_panic(
        fmt in 0u8..32, pt in prop::sample::select(vec![205u8, 206]), words in 0u16..12,
        body in prop::collection::vec(any::<u8>(), 0..60), pad in any::<bool>(),
    ) {
        let mut p = vec![0x80 | if pad { 0x20 } else { 0 } | fmt, pt];
        p.extend_from_slice(&words.to_be_bytes());
        p.extend_from_slice(&body);
        for fb in parse_feedback(&p) {
            if let Feedback::Remb { ssrcs, .. } = fb {
                prop_assert!(ssrcs.len() <= 255);
            }
        }
    }
}
