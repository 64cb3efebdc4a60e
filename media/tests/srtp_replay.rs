//! SRTP/SRTCP replay protection and header-extension handling of `SrtpContext`:
//!
//! * forged packets (bad tag) must never move the replay window (RFC 3711 §3.3.2: the window
//!   is updated only after authentication), so genuine packets that follow are accepted;
//! * replays and packets older than the 128-packet window are refused and counted, reordering
//!   inside the window is accepted, the rollover counter is estimated across a wrap.

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
