//! SRTP/SRTCP replay protection and header-extension handling of `SrtpContext`:
//!
//! * forged packets (bad tag) must never move the replay window (RFC 3711 §3.3.2: the window
//!   is updated only after authentication), so genuine packets that follow are accepted;
//! * replays and packets older than the 128-packet window are refused and counted, reordering
//!   inside the window is accepted, the rollover counter is estimated across a wrap;
//! * RTP packets with header extensions (RFC 8285 one-byte and two-byte forms, RFC 3550
//!   generic, and malformed element lists) are protected and unprotected at the right payload
//!   offset, never panic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use tandem_media::srtp::{CryptoSuite, SdesCrypto, SrtpContext, SrtpError};

const KEY_A: [u8; 30] = *b"0123456789abcdefghijklmnopqrst";
const KEY_B: [u8; 30] = *b"tsrqponmlkjihgfedcba9876543210";

fn line(suite: CryptoSuite, key: &[u8; 30]) -> SdesCrypto {
    SdesCrypto {
        tag: 1,
        suite,
        key_salt: key[..suite.key_salt_len()].to_vec(),
        lifetime: None,
        mki: None,
        params: String::new(),
    }
}

/// `(sender, receiver)`: the sender protects with KEY_A, the receiver unprotects KEY_A.
fn pair(suite: CryptoSuite) -> (SrtpContext, SrtpContext) {
    let a = line(suite, &KEY_A);
    let b = line(suite, &KEY_B);
    (
        SrtpContext::from_sdes(&a, &b).unwrap(),
        SrtpContext::from_sdes(&b, &a).unwrap(),
    )
}

const SSRC: u32 = 0x1122_3344;

/// An RTP packet; `ext` is `(profile, body)` with the body a multiple of 4 bytes.
fn rtp(seq: u16, ssrc: u32, ext: Option<(u16, &[u8])>, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80 | if ext.is_some() { 0x10 } else { 0 }, 111];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    if let Some((profile, body)) = ext {
        assert_eq!(body.len() % 4, 0);
        p.extend_from_slice(&profile.to_be_bytes());
        p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
        p.extend_from_slice(body);
    }
    p.extend_from_slice(payload);
    p
}

/// An RTCP receiver report with no report blocks.
fn rtcp_rr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

fn payload(seq: u16) -> Vec<u8> {
    (0..40u8).map(|i| i.wrapping_mul(7) ^ seq as u8).collect()
}

#[test]
fn forged_first_srtp_packet_does_not_poison_the_replay_window() {
    for suite in CryptoSuite::ALL {
        let (mut tx, mut rx) = pair(suite);
        // Forged packets of the genuine SSRC, far ahead and at the same index, arrive first.
        for forged_seq in [2000u16, 40_000, 1000, 65_535] {
            let mut forged = rtp(forged_seq, SSRC, None, &payload(forged_seq));
            forged.extend_from_slice(&[0xAB; 16]);
            assert_eq!(rx.unprotect_rtp(&forged), Err(SrtpError::AuthFailed));
        }
        for seq in 1000..1010u16 {
            let plain = rtp(seq, SSRC, None, &payload(seq));
            let protected = tx.protect_rtp(&plain).unwrap();
            assert_eq!(
                rx.unprotect_rtp(&protected).unwrap(),
                plain,
                "{suite}: genuine seq {seq} refused after forged packets"
            );
        }
        let c = rx.counters();
        assert_eq!(c.auth_failures, 4, "{suite}: {c:?}");
        assert_eq!(c.replays, 0, "{suite}: {c:?}");
        assert_eq!(c.rtp_unprotected, 10, "{suite}: {c:?}");
    }
}

#[test]
fn forged_first_srtcp_packet_does_not_poison_the_replay_window() {
    for suite in CryptoSuite::ALL {
        let (mut tx, mut rx) = pair(suite);
        for forged_index in [1000u32, 0x7fff_0000, 2] {
            let mut forged = rtcp_rr(SSRC);
            forged.extend_from_slice(&(0x8000_0000 | forged_index).to_be_bytes());
            let tag_len = if suite == CryptoSuite::AeadAes128Gcm {
                16
            } else {
                10
            };
            forged.extend_from_slice(&vec![0xCD; tag_len]);
            assert!(rx.unprotect_rtcp(&forged).is_err(), "{suite}");
        }
        for _ in 0..5 {
            let plain = rtcp_rr(SSRC);
            let protected = tx.protect_rtcp(&plain).unwrap();
            assert_eq!(
                rx.unprotect_rtcp(&protected).unwrap(),
                plain,
                "{suite}: genuine SRTCP refused after forged packets"
            );
        }
        let c = rx.counters();
        assert_eq!(c.auth_failures, 3, "{suite}: {c:?}");
        assert_eq!(c.replays, 0, "{suite}: {c:?}");
        assert_eq!(c.rtcp_unprotected, 5, "{suite}: {c:?}");
    }
}

#[test]
fn replays_are_refused_and_counted() {
    for suite in CryptoSuite::ALL {
        let (mut tx, mut rx) = pair(suite);
        let protected = tx.protect_rtp(&rtp(7, SSRC, None, &payload(7))).unwrap();
        rx.unprotect_rtp(&protected).unwrap();
        assert!(matches!(
            rx.unprotect_rtp(&protected),
            Err(SrtpError::Replay {
                ssrc: SSRC,
                index: 7
            })
        ));
        let srtcp = tx.protect_rtcp(&rtcp_rr(SSRC)).unwrap();
        rx.unprotect_rtcp(&srtcp).unwrap();
        assert!(matches!(
            rx.unprotect_rtcp(&srtcp),
            Err(SrtpError::Replay { ssrc: SSRC, .. })
        ));
        let c = rx.counters();
        assert_eq!((c.replays, c.auth_failures), (2, 2), "{suite}: {c:?}");
        assert_eq!(rx.auth_failures(), 2);
    }
}

#[test]
fn reordering_inside_the_window_is_accepted_older_packets_are_refused() {
    let (mut tx, mut rx) = pair(CryptoSuite::AesCm128HmacSha1_80);
    let packets: Vec<Vec<u8>> = (0..200u16)
        .map(|seq| {
            tx.protect_rtp(&rtp(seq, SSRC, None, &payload(seq)))
                .unwrap()
        })
        .collect();
    rx.unprotect_rtp(&packets[150]).unwrap();
    // 150 - 22 = 128: just outside the window.
    assert!(matches!(
        rx.unprotect_rtp(&packets[22]),
        Err(SrtpError::Replay { index: 22, .. })
    ));
    // 150 - 23 = 127: the oldest index the window still holds.
    rx.unprotect_rtp(&packets[23]).unwrap();
    rx.unprotect_rtp(&packets[149]).unwrap();
    rx.unprotect_rtp(&packets[199]).unwrap();
    rx.unprotect_rtp(&packets[100]).unwrap();
    assert!(rx.unprotect_rtp(&packets[100]).is_err());
    assert!(rx.unprotect_rtp(&packets[150]).is_err());
    assert_eq!(rx.counters().replays, 3);
    assert_eq!(rx.counters().rtp_unprotected, 5);
}

#[test]
fn rollover_counter_is_estimated_across_the_sequence_wrap() {
    for suite in CryptoSuite::ALL {
        let (mut tx, mut rx) = pair(suite);
        let seqs: Vec<u16> = (65_500..=65_535).chain(0..40).collect();
        let packets: Vec<Vec<u8>> = seqs
            .iter()
            .map(|&seq| {
                tx.protect_rtp(&rtp(seq, SSRC, None, &payload(seq)))
                    .unwrap()
            })
            .collect();
        // In order, except two late packets from before the wrap.
        for (i, p) in packets.iter().enumerate() {
            if i == 30 || i == 33 {
                continue;
            }
            rx.unprotect_rtp(p).unwrap();
        }
        rx.unprotect_rtp(&packets[30]).unwrap();
        rx.unprotect_rtp(&packets[33]).unwrap();
        // A pre-wrap packet replayed after the wrap is recognised with its full index.
        assert!(matches!(
            rx.unprotect_rtp(&packets[35]),
            Err(SrtpError::Replay { index: 65_535, .. })
        ));
        // A post-wrap replay carries ROC 1.
        assert!(matches!(
            rx.unprotect_rtp(&packets[36]),
            Err(SrtpError::Replay { index: 65_536, .. })
        ));
        assert_eq!(rx.counters().rtp_unprotected, seqs.len() as u64, "{suite}");
    }
}

#[test]
fn each_ssrc_has_its_own_window() {
    let (mut tx, mut rx) = pair(CryptoSuite::AesCm128HmacSha1_80);
    let a = tx.protect_rtp(&rtp(10, 1, None, &payload(10))).unwrap();
    let b = tx.protect_rtp(&rtp(10, 2, None, &payload(10))).unwrap();
    let far = tx.protect_rtp(&rtp(5000, 1, None, &payload(0))).unwrap();
    rx.unprotect_rtp(&far).unwrap();
    // SSRC 1 moved on, SSRC 2 did not.
    assert!(rx.unprotect_rtp(&a).is_err());
    rx.unprotect_rtp(&b).unwrap();
}

/// Header extensions as browsers send them, and malformed ones rtc-rtp would mis-size.
fn extension_cases() -> Vec<(&'static str, u16, Vec<u8>)> {
    vec![
        // ssrc-audio-level (id 1, 1 byte), abs-send-time (id 3, 3 bytes), transport-cc (id 5,
        // 2 bytes), then padding.
        (
            "one-byte browser",
            0xBEDE,
            vec![
                0x10, 0x85, 0x32, 0x01, 0x02, 0x03, 0x51, 0x00, 0x07, 0x00, 0x00, 0x00,
            ],
        ),
        // Padding between elements.
        (
            "one-byte padded",
            0xBEDE,
            vec![0x10, 0x85, 0x00, 0x00, 0x31, 0xAA, 0xBB, 0x00],
        ),
        // id 1 with 0 bytes, id 200 with 17 bytes (needs the two-byte form), padding.
        (
            "two-byte",
            0x1000,
            vec![
                0x01, 0x00, 200, 17, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
                0x00, 0x00, 0x00,
            ],
        ),
        ("generic RFC 3550", 0x1234, vec![9, 8, 7, 6, 5, 4, 3, 2]),
        // The reserved id 15 ends parsing: the rest of the block is opaque.
        (
            "one-byte id 15",
            0xBEDE,
            vec![0xFF, 0x01, 0x00, 0x00, 0x10, 0x20, 0x00, 0x00],
        ),
        // An element whose length runs past the end of the extension block.
        ("one-byte overrun", 0xBEDE, vec![0x00, 0x00, 0x00, 0x1F]),
        ("two-byte overrun", 0x1000, vec![0x05, 0x30, 0x00, 0x00]),
        ("empty block", 0xBEDE, vec![]),
    ]
}

#[test]
fn packets_with_header_extensions_round_trip_at_the_right_offset() {
    for suite in CryptoSuite::ALL {
        for (name, profile, body) in extension_cases() {
            let seq = 4242;
            let body_payload = payload(seq);
            let with_ext = rtp(seq, SSRC, Some((profile, &body)), &body_payload);
            let without = rtp(seq, SSRC, None, &body_payload);
            let (mut tx, mut rx) = pair(suite);
            let protected = tx
                .protect_rtp(&with_ext)
                .unwrap_or_else(|e| panic!("{suite} {name}: protect failed: {e}"));
            let header_len = with_ext.len() - body_payload.len();
            // The header (with its extension) is sent in the clear.
            assert_eq!(
                protected[..header_len],
                with_ext[..header_len],
                "{suite} {name}"
            );
            // The payload is encrypted with the keystream of (SSRC, index) alone: the same
            // ciphertext as the packet without an extension iff the offset is right.
            let (mut tx2, _) = pair(suite);
            let reference = tx2.protect_rtp(&without).unwrap();
            let n = body_payload.len();
            assert_eq!(
                protected[header_len..header_len + n],
                reference[12..12 + n],
                "{suite} {name}: payload encrypted at the wrong offset"
            );
            assert_eq!(
                rx.unprotect_rtp(&protected)
                    .unwrap_or_else(|e| panic!("{suite} {name}: unprotect failed: {e}")),
                with_ext,
                "{suite} {name}"
            );
            // Tampering with the extension is detected.
            let mut bad = protected.clone();
            bad[header_len - 1] ^= 0x40;
            let (_, mut rx2) = pair(suite);
            assert!(rx2.unprotect_rtp(&bad).is_err(), "{suite} {name}");
            let c = rx2.counters();
            assert_eq!(c.auth_failures + c.malformed, 1, "{suite} {name}: {c:?}");
        }
    }
}

#[test]
fn truncated_or_bogus_rtp_is_an_error_not_a_panic() {
    for suite in CryptoSuite::ALL {
        let (mut tx, mut rx) = pair(suite);
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x80, 0, 0],
            // Extension bit, no room for the extension header.
            rtp(1, SSRC, None, &[])
                .into_iter()
                .enumerate()
                .map(|(i, b)| if i == 0 { b | 0x10 } else { b })
                .collect(),
            // Extension length beyond the packet.
            {
                let mut p = rtp(1, SSRC, Some((0xBEDE, &[0x10, 1, 0, 0])), &[]);
                p[15] = 9;
                p
            },
            // CSRC count beyond the packet.
            {
                let mut p = rtp(1, SSRC, None, &[1, 2, 3, 4]);
                p[0] |= 0x0f;
                p
            },
            // Version 1.
            {
                let mut p = rtp(1, SSRC, None, &[1, 2, 3, 4]);
                p[0] = 0x40;
                p
            },
        ];
        for (i, p) in cases.iter().enumerate() {
            assert!(tx.protect_rtp(p).is_err(), "{suite} case {i}");
            assert!(rx.unprotect_rtp(p).is_err(), "{suite} case {i}");
        }
        // The fuzzer's inputs: a two-byte extension whose last element overruns the block.
        for first in [0x90u8, 0xB0] {
            let mut p = vec![
                first, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x00, 0x00, 0x02,
            ];
            p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0xff, 0x01, 0x00]);
            if first & 0x20 != 0 {
                // Padding bit: the last byte counts the padding.
                *p.last_mut().unwrap() = 1;
            }
            if let Ok(protected) = tx.protect_rtp(&p) {
                let (_, mut rx2) = pair(suite);
                assert_eq!(rx2.unprotect_rtp(&protected).unwrap(), p, "{suite}");
            }
        }
    }
}
