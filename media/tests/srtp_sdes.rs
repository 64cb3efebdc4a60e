//! SDES (RFC 4568) attribute handling, offer/answer and SRTP protection through `SrtpContext`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use tandem_media::srtp::{
    CryptoSuite, SdesCrypto, SrtpContext, SrtpError, SrtpPolicy, sdes_accept, sdes_answer,
    sdes_offer,
};

/// A predicate on the error a malformed attribute must give.
type ErrorCheck = fn(&SrtpError) -> bool;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(s).unwrap()
}

/// A minimal RTP packet: V=2, PT 0, the given sequence number and SSRC, 20 bytes payload.
fn rtp_packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..20u8).map(|i| i.wrapping_mul(7).wrapping_add(seq as u8)));
    p
}

/// A receiver report with no report blocks plus a padding-free SDES-ish tail word.
fn rtcp_packet(ssrc: u32) -> Vec<u8> {
    // RR (PT 201), RC 0, length 1 word after the header word; then an APP-less extra
    // sender-info-sized body so there is payload to encrypt.
    let mut p = vec![0x80, 201, 0x00, 0x01];
    p.extend_from_slice(&ssrc.to_be_bytes());
    // SDES with one CNAME chunk.
    p.extend_from_slice(&[0x81, 202, 0x00, 0x03]);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[1, 5, b'a', b'l', b'i', b'c', b'e', 0]);
    p
}

/// Both ends of a call negotiated with SDES for the given suite.
fn pair(suite: CryptoSuite) -> (SrtpContext, SrtpContext) {
    let offer: Vec<SdesCrypto> = sdes_offer()
        .into_iter()
        .filter(|c| c.suite == suite)
        .collect();
    // Over the wire and back.
    let offered: Vec<SdesCrypto> = offer
        .iter()
        .map(|c| SdesCrypto::parse(&c.to_attribute_value()).unwrap())
        .collect();
    let (remote_of_bob, bob_local) = sdes_answer(&offered).unwrap();
    let answer_wire = SdesCrypto::parse(&bob_local.to_attribute_value()).unwrap();
    let (alice_local, alice_remote) = sdes_accept(&offer, &answer_wire).unwrap();
    let alice = SrtpContext::from_sdes(&alice_local, &alice_remote).unwrap();
    let bob = SrtpContext::from_sdes(&bob_local, &remote_of_bob).unwrap();
    (alice, bob)
}

#[test]
fn policy_parses() {
    assert_eq!("off".parse::<SrtpPolicy>().unwrap(), SrtpPolicy::Off);
    assert_eq!(
        "Optional".parse::<SrtpPolicy>().unwrap(),
        SrtpPolicy::Optional
    );
    assert_eq!(
        " mandatory ".parse::<SrtpPolicy>().unwrap(),
        SrtpPolicy::Mandatory
    );
    assert!("sometimes".parse::<SrtpPolicy>().is_err());
    assert_eq!(SrtpPolicy::Mandatory.to_string(), "mandatory");
}

#[test]
fn suite_names_and_lengths() {
    for suite in CryptoSuite::ALL {
        assert_eq!(suite.as_str().parse::<CryptoSuite>().unwrap(), suite);
    }
    assert_eq!(CryptoSuite::AesCm128HmacSha1_80.key_salt_len(), 30);
    assert_eq!(CryptoSuite::AesCm128HmacSha1_32.key_salt_len(), 30);
    assert_eq!(CryptoSuite::AeadAes128Gcm.key_salt_len(), 28);
    assert!(matches!(
        "AES_256_CM_HMAC_SHA1_80".parse::<CryptoSuite>(),
        Err(SrtpError::UnknownSuite(s)) if s == "AES_256_CM_HMAC_SHA1_80"
    ));
}

#[test]
fn parses_rfc4568_example_with_lifetime_mki_and_params() {
    let value = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4 KDR=0 WSH=64";
    let c = SdesCrypto::parse(value).unwrap();
    assert_eq!(c.tag, 1);
    assert_eq!(c.suite, CryptoSuite::AesCm128HmacSha1_80);
    assert_eq!(c.key_salt.len(), 30);
    assert_eq!(c.master_key().len(), 16);
    assert_eq!(c.master_salt().len(), 14);
    assert_eq!(c.lifetime, Some(1 << 20));
    assert_eq!(c.mki, Some((1, 4)));
    assert_eq!(c.params, "KDR=0 WSH=64");
    assert_eq!(c.to_attribute_value(), value);
    c.check_supported().unwrap();
    // The key is not printed by Debug.
    assert!(!format!("{c:?}").contains("PS1u"));
}

#[test]
fn decimal_lifetime_and_extra_whitespace() {
    let c = SdesCrypto::parse(
        "  7   AES_CM_128_HMAC_SHA1_32   inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1000  ",
    )
    .unwrap();
    assert_eq!(c.tag, 7);
    assert_eq!(c.lifetime, Some(1000));
    assert_eq!(c.mki, None);
    assert_eq!(c.params, "");
    assert_eq!(
        c.to_attribute_value(),
        "7 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1000"
    );
}

#[test]
fn gcm_key_is_padded_on_output_and_accepted_without_padding() {
    let c = SdesCrypto::generate(3, CryptoSuite::AeadAes128Gcm);
    let v = c.to_attribute_value();
    assert!(v.starts_with("3 AEAD_AES_128_GCM inline:"));
    assert!(v.ends_with("=="), "{v}");
    let unpadded = v.trim_end_matches('=');
    let back = SdesCrypto::parse(unpadded).unwrap();
    assert_eq!(back, c);
}

#[test]
fn generated_keys_are_random() {
    let a = SdesCrypto::generate(1, CryptoSuite::AesCm128HmacSha1_80);
    let b = SdesCrypto::generate(1, CryptoSuite::AesCm128HmacSha1_80);
    assert_eq!(a.key_salt.len(), 30);
    assert_ne!(a.key_salt, b.key_salt);
}

#[test]
fn malformed_attributes_give_clear_errors() {
    let key = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
    let cases: Vec<(String, ErrorCheck)> = vec![
        (String::new(), |e| {
            matches!(e, SrtpError::MalformedCrypto(_))
        }),
        ("1".into(), |e| matches!(e, SrtpError::MalformedCrypto(_))),
        ("1 AES_CM_128_HMAC_SHA1_80".into(), |e| {
            matches!(e, SrtpError::MalformedCrypto(_))
        }),
        (format!("x AES_CM_128_HMAC_SHA1_80 inline:{key}"), |e| {
            matches!(e, SrtpError::MalformedCrypto(_))
        }),
        (
            format!("1234567890 AES_CM_128_HMAC_SHA1_80 inline:{key}"),
            |e| matches!(e, SrtpError::MalformedCrypto(_)),
        ),
        (
            format!("1 F8_128_HMAC_SHA1_80 inline:{key}"),
            |e| matches!(e, SrtpError::UnknownSuite(s) if s == "F8_128_HMAC_SHA1_80"),
        ),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:not*base64!".into(), |e| {
            matches!(e, SrtpError::BadBase64(_))
        }),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:".into(), |e| {
            matches!(e, SrtpError::BadBase64(_))
        }),
        // 16 bytes only.
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODw==".into(),
            |e| {
                matches!(
                    e,
                    SrtpError::KeyLength {
                        expected: 30,
                        actual: 16,
                        ..
                    }
                )
            },
        ),
        // A 30-byte key under the 28-byte GCM suite.
        (format!("1 AEAD_AES_128_GCM inline:{key}"), |e| {
            matches!(
                e,
                SrtpError::KeyLength {
                    expected: 28,
                    actual: 30,
                    ..
                }
            )
        }),
        (format!("1 AES_CM_128_HMAC_SHA1_80 uri:{key}"), |e| {
            matches!(e, SrtpError::Unsupported(_))
        }),
        (format!("1 AES_CM_128_HMAC_SHA1_80 {key}"), |e| {
            matches!(e, SrtpError::MalformedCrypto(_))
        }),
        (format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^x"), |e| {
            matches!(e, SrtpError::BadLifetime(_))
        }),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^64"),
            |e| matches!(e, SrtpError::BadLifetime(_)),
        ),
        (format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|0"), |e| {
            matches!(e, SrtpError::BadLifetime(_))
        }),
        (format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|1:0"), |e| {
            matches!(e, SrtpError::BadMki(_))
        }),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|256:1"),
            |e| matches!(e, SrtpError::BadMki(_)),
        ),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|1:129"),
            |e| matches!(e, SrtpError::BadMki(_)),
        ),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}|1:4|2^20"),
            |e| matches!(e, SrtpError::MalformedCrypto(_)),
        ),
    ];
    for (value, check) in cases {
        let err = SdesCrypto::parse(&value).unwrap_err();
        assert!(check(&err), "{value:?} gave {err:?}");
        assert!(!err.to_string().is_empty());
    }
    // The message names what is wrong.
    let err =
        SdesCrypto::parse("1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODw==").unwrap_err();
    assert_eq!(
        err.to_string(),
        "AES_CM_128_HMAC_SHA1_80 needs a 30-byte key||salt, the attribute has 16 bytes"
    );
}

#[test]
fn parse_all_skips_what_it_cannot_use() {
    let lines = [
        "1 AES_256_CM_HMAC_SHA1_80 inline:8AbZePWwsKhLGX3GlXA+yHYPQ3cgraer/9DkFJYCOPZZy3o9wC0NIbIFYZfyHw==",
        "2 AES_CM_128_HMAC_SHA1_32 inline:VAzLKvoE3jG9cdH/AZsl/ZqWNXrUzyM4Gw6chrFr",
        "3 AES_CM_128_HMAC_SHA1_80 inline:short",
    ];
    let parsed = SdesCrypto::parse_all(&lines);
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].tag, 2);
}

#[test]
fn offer_lists_our_suites_in_order() {
    let offer = sdes_offer();
    let suites: Vec<_> = offer.iter().map(|c| (c.tag, c.suite)).collect();
    assert_eq!(
        suites,
        vec![
            (1, CryptoSuite::AesCm128HmacSha1_80),
            (2, CryptoSuite::AesCm128HmacSha1_32),
            (3, CryptoSuite::AeadAes128Gcm),
        ]
    );
    for c in &offer {
        assert_eq!(c.key_salt.len(), c.suite.key_salt_len());
        assert_eq!(SdesCrypto::parse(&c.to_attribute_value()).unwrap(), *c);
    }
}

#[test]
fn answer_takes_the_first_usable_offered_line() {
    let mut unencrypted = SdesCrypto::generate(1, CryptoSuite::AesCm128HmacSha1_80);
    unencrypted.params = "UNENCRYPTED_SRTP".into();
    let mut kdr = SdesCrypto::generate(2, CryptoSuite::AesCm128HmacSha1_80);
    kdr.params = "KDR=24".into();
    let mut gcm_mki = SdesCrypto::generate(3, CryptoSuite::AeadAes128Gcm);
    gcm_mki.mki = Some((1, 1));
    let mut ok = SdesCrypto::generate(4, CryptoSuite::AesCm128HmacSha1_32);
    ok.params = "WSH=128 -FUTURE_PARAM".into();
    let later = SdesCrypto::generate(5, CryptoSuite::AesCm128HmacSha1_80);

    let offered = vec![unencrypted, kdr, gcm_mki, ok.clone(), later];
    let (remote, ours) = sdes_answer(&offered).unwrap();
    assert_eq!(remote, ok);
    assert_eq!(ours.tag, 4);
    assert_eq!(ours.suite, CryptoSuite::AesCm128HmacSha1_32);
    assert_ne!(ours.key_salt, ok.key_salt);

    assert!(sdes_answer(&offered[..3]).is_none());
    assert!(sdes_answer(&[]).is_none());
}

#[test]
fn accept_checks_tag_and_suite() {
    let offer = sdes_offer();
    let answer = SdesCrypto::generate(9, CryptoSuite::AesCm128HmacSha1_80);
    assert_eq!(
        sdes_accept(&offer, &answer).unwrap_err(),
        SrtpError::TagNotOffered(9)
    );
    let answer = SdesCrypto::generate(1, CryptoSuite::AeadAes128Gcm);
    assert!(matches!(
        sdes_accept(&offer, &answer),
        Err(SrtpError::SuiteMismatch { tag: 1, .. })
    ));
    let answer = SdesCrypto::generate(3, CryptoSuite::AeadAes128Gcm);
    let (local, remote) = sdes_accept(&offer, &answer).unwrap();
    assert_eq!(local, offer[2]);
    assert_eq!(remote, answer);
}

#[test]
fn round_trip_every_suite_both_directions() {
    for suite in CryptoSuite::ALL {
        let (mut alice, mut bob) = pair(suite);
        assert_eq!(alice.suite(), suite);
        for seq in [65530u16, 65531, 65532, 65533, 65534, 65535, 0, 1, 2, 3] {
            let plain = rtp_packet(seq, 0x1122_3344);
            let prot = alice.protect_rtp(&plain).unwrap();
            assert_eq!(prot.len(), plain.len() + suite.rtp_overhead(), "{suite}");
            assert_eq!(prot[..12], plain[..12], "header stays in clear");
            assert_ne!(prot[12..plain.len()], plain[12..], "payload is encrypted");
            assert_eq!(
                bob.unprotect_rtp(&prot).unwrap(),
                plain,
                "{suite} seq {seq}"
            );

            let back = rtp_packet(seq, 0x5566_7788);
            let prot = bob.protect_rtp(&back).unwrap();
            assert_eq!(alice.unprotect_rtp(&prot).unwrap(), back);
        }
        for _ in 0..3 {
            let plain = rtcp_packet(0x1122_3344);
            let prot = alice.protect_rtcp(&plain).unwrap();
            assert_ne!(prot[8..plain.len()], plain[8..]);
            assert_eq!(bob.unprotect_rtcp(&prot).unwrap(), plain, "{suite} rtcp");
            let plain = rtcp_packet(0x5566_7788);
            let prot = bob.protect_rtcp(&plain).unwrap();
            assert_eq!(alice.unprotect_rtcp(&prot).unwrap(), plain);
        }
        assert_eq!(bob.auth_failures(), 0);
        assert_eq!(bob.counters().rtp_unprotected, 10);
        assert_eq!(bob.counters().rtcp_unprotected, 3);
        assert_eq!(alice.counters().rtp_protected, 10);
    }
}

#[test]
fn flipped_tag_bit_is_rejected_and_counted() {
    for suite in CryptoSuite::ALL {
        let (mut alice, mut bob) = pair(suite);
        let prot = alice.protect_rtp(&rtp_packet(10, 1)).unwrap();
        let mut bad = prot.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        assert_eq!(bob.unprotect_rtp(&bad).unwrap_err(), SrtpError::AuthFailed);
        assert_eq!(bob.auth_failures(), 1, "{suite}");
        // A flipped payload bit too.
        let mut bad = prot.clone();
        bad[14] ^= 0x80;
        assert_eq!(bob.unprotect_rtp(&bad).unwrap_err(), SrtpError::AuthFailed);
        assert_eq!(bob.auth_failures(), 2);
        // The genuine packet still passes after the forgeries.
        assert!(bob.unprotect_rtp(&prot).is_ok());

        let prot = alice.protect_rtcp(&rtcp_packet(1)).unwrap();
        let mut bad = prot.clone();
        let at = match suite {
            // The HMAC tag ends the packet.
            CryptoSuite::AesCm128HmacSha1_80 | CryptoSuite::AesCm128HmacSha1_32 => bad.len() - 1,
            // The GCM tag sits before the index word.
            _ => bad.len() - 5,
        };
        bad[at] ^= 0x10;
        assert_eq!(bob.unprotect_rtcp(&bad).unwrap_err(), SrtpError::AuthFailed);
        assert_eq!(bob.auth_failures(), 3);
        assert!(bob.unprotect_rtcp(&prot).is_ok());
        assert_eq!(bob.counters().replays, 0);
    }
}

#[test]
fn replayed_packets_are_rejected_and_counted() {
    for suite in CryptoSuite::ALL {
        let (mut alice, mut bob) = pair(suite);
        let first = alice.protect_rtp(&rtp_packet(100, 7)).unwrap();
        let second = alice.protect_rtp(&rtp_packet(101, 7)).unwrap();
        assert!(bob.unprotect_rtp(&first).is_ok());
        assert!(bob.unprotect_rtp(&second).is_ok());
        assert!(matches!(
            bob.unprotect_rtp(&first),
            Err(SrtpError::Replay {
                ssrc: 7,
                index: 100
            })
        ));
        assert!(matches!(
            bob.unprotect_rtp(&second),
            Err(SrtpError::Replay { .. })
        ));
        assert_eq!(bob.auth_failures(), 2);
        assert_eq!(bob.counters().replays, 2);

        // Reordering inside the window is fine.
        let p103 = alice.protect_rtp(&rtp_packet(103, 7)).unwrap();
        let p102 = alice.protect_rtp(&rtp_packet(102, 7)).unwrap();
        assert!(bob.unprotect_rtp(&p103).is_ok());
        assert!(bob.unprotect_rtp(&p102).is_ok());

        let rtcp = alice.protect_rtcp(&rtcp_packet(7)).unwrap();
        assert!(bob.unprotect_rtcp(&rtcp).is_ok());
        assert!(matches!(
            bob.unprotect_rtcp(&rtcp),
            Err(SrtpError::Replay { .. })
        ));
        assert_eq!(bob.auth_failures(), 3, "{suite}");
    }
}

#[test]
fn unencrypted_srtcp_is_refused() {
    let (mut alice, mut bob) = pair(CryptoSuite::AesCm128HmacSha1_80);
    let mut prot = alice.protect_rtcp(&rtcp_packet(1)).unwrap();
    // Clear the E flag: rtc-srtp alone would hand the ciphertext back unauthenticated.
    let e_at = prot.len() - 10 - 4;
    prot[e_at] &= 0x7f;
    assert_eq!(
        bob.unprotect_rtcp(&prot).unwrap_err(),
        SrtpError::AuthFailed
    );
    assert_eq!(bob.auth_failures(), 1);
}

#[test]
fn garbage_never_panics() {
    for suite in CryptoSuite::ALL {
        let (_, mut bob) = pair(suite);
        for len in 0..80usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let _ = bob.unprotect_rtp(&data);
            let _ = bob.unprotect_rtcp(&data);
            let mut rtpish = data.clone();
            if let Some(b) = rtpish.first_mut() {
                *b = 0x80;
            }
            let _ = bob.unprotect_rtp(&rtpish);
            let _ = bob.unprotect_rtcp(&rtpish);
        }
        let c = bob.counters();
        assert_eq!(c.rtp_unprotected + c.rtcp_unprotected, 0);
        assert!(c.auth_failures + c.malformed > 0);
    }
}

#[test]
fn mki_is_carried_and_checked() {
    let mut a_line = SdesCrypto::generate(1, CryptoSuite::AesCm128HmacSha1_80);
    a_line.mki = Some((5, 2));
    let b_line = SdesCrypto::generate(1, CryptoSuite::AesCm128HmacSha1_80);
    let mut alice = SrtpContext::from_sdes(&a_line, &b_line).unwrap();
    let mut bob = SrtpContext::from_sdes(&b_line, &a_line).unwrap();
    let plain = rtp_packet(1, 9);
    let prot = alice.protect_rtp(&plain).unwrap();
    assert_eq!(prot.len(), plain.len() + 2 + 10);
    assert_eq!(prot[plain.len()..plain.len() + 2], [0, 5]);
    assert_eq!(bob.unprotect_rtp(&prot).unwrap(), plain);
    let mut wrong = alice.protect_rtp(&rtp_packet(2, 9)).unwrap();
    wrong[plain.len() + 1] = 6;
    assert_eq!(
        bob.unprotect_rtp(&wrong).unwrap_err(),
        SrtpError::AuthFailed
    );
    let rtcp = rtcp_packet(9);
    let prot = alice.protect_rtcp(&rtcp).unwrap();
    assert_eq!(prot.len(), rtcp.len() + 4 + 2 + 10);
    assert_eq!(bob.unprotect_rtcp(&prot).unwrap(), rtcp);
    // GCM with an MKI is refused when building the context.
    let mut g = SdesCrypto::generate(1, CryptoSuite::AeadAes128Gcm);
    g.mki = Some((1, 1));
    assert!(matches!(
        SrtpContext::from_sdes(&g, &g),
        Err(SrtpError::Unsupported(_))
    ));
}

#[test]
fn key_lifetime_is_enforced() {
    let mut a_line = SdesCrypto::generate(1, CryptoSuite::AesCm128HmacSha1_80);
    a_line.lifetime = Some(2);
    let b_line = SdesCrypto::generate(1, CryptoSuite::AesCm128HmacSha1_80);
    let mut alice = SrtpContext::from_sdes(&a_line, &b_line).unwrap();
    alice.protect_rtp(&rtp_packet(1, 1)).unwrap();
    alice.protect_rtp(&rtp_packet(2, 1)).unwrap();
    assert_eq!(
        alice.protect_rtp(&rtp_packet(3, 1)).unwrap_err(),
        SrtpError::KeyLifetimeExpired(2)
    );
}

/// The master key and salt of libSRTP's `srtp_validate` reference packets.
const LIBSRTP_KEY: &str = "e1f97a0d3e018be0d64fa32c06de4139 0ec675ad498afeebb6960b3aabe6";
const LIBSRTP_RTP_PLAIN: &str = "800f1234decafbadcafebabe abababababababababababababababab";
const LIBSRTP_RTCP_PLAIN: &str = "81c8000bcafebabe abababababababababababababababab";

fn kat_contexts(suite: CryptoSuite, key_salt: Vec<u8>) -> (SrtpContext, SrtpContext) {
    let kat = SdesCrypto {
        tag: 1,
        suite,
        key_salt,
        lifetime: None,
        mki: None,
        params: String::new(),
    };
    let other = SdesCrypto::generate(1, suite);
    (
        SrtpContext::from_sdes(&kat, &other).unwrap(),
        SrtpContext::from_sdes(&other, &kat).unwrap(),
    )
}

#[test]
fn known_answer_aes_cm_hmac_sha1_80() {
    // Exercises the RFC 3711 key derivation (§4.3) and AES-CM keystream (§4.1.1) end to end.
    let (mut tx, mut rx) = kat_contexts(CryptoSuite::AesCm128HmacSha1_80, unhex(LIBSRTP_KEY));
    let expected =
        unhex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb");
    assert_eq!(tx.protect_rtp(&unhex(LIBSRTP_RTP_PLAIN)).unwrap(), expected);
    assert_eq!(
        rx.unprotect_rtp(&expected).unwrap(),
        unhex(LIBSRTP_RTP_PLAIN)
    );

    let expected_rtcp =
        unhex("81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798");
    assert_eq!(
        tx.protect_rtcp(&unhex(LIBSRTP_RTCP_PLAIN)).unwrap(),
        expected_rtcp
    );
    assert_eq!(
        rx.unprotect_rtcp(&expected_rtcp).unwrap(),
        unhex(LIBSRTP_RTCP_PLAIN)
    );
}

#[test]
fn known_answer_aes_cm_hmac_sha1_32() {
    let (mut tx, mut rx) = kat_contexts(CryptoSuite::AesCm128HmacSha1_32, unhex(LIBSRTP_KEY));
    // Same keystream, tag truncated to 32 bits.
    let expected = unhex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc");
    assert_eq!(tx.protect_rtp(&unhex(LIBSRTP_RTP_PLAIN)).unwrap(), expected);
    assert_eq!(
        rx.unprotect_rtp(&expected).unwrap(),
        unhex(LIBSRTP_RTP_PLAIN)
    );
    // SRTCP keeps the 80-bit tag with this suite.
    let expected_rtcp =
        unhex("81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798");
    assert_eq!(
        tx.protect_rtcp(&unhex(LIBSRTP_RTCP_PLAIN)).unwrap(),
        expected_rtcp
    );
}

#[test]
fn known_answer_aead_aes_128_gcm() {
    let key_salt = unhex("000102030405060708090a0b0c0d0e0f a0a1a2a3a4a5a6a7a8a9aaab");
    let (mut tx, mut rx) = kat_contexts(CryptoSuite::AeadAes128Gcm, key_salt);
    let expected = unhex(
        "800f1234decafbadcafebabe c5002ede04cfdd2eb91159e0880aa06e d2976826f796b201df3131a127e8a392",
    );
    assert_eq!(tx.protect_rtp(&unhex(LIBSRTP_RTP_PLAIN)).unwrap(), expected);
    assert_eq!(
        rx.unprotect_rtp(&expected).unwrap(),
        unhex(LIBSRTP_RTP_PLAIN)
    );
    let expected_rtcp = unhex(
        "81c8000bcafebabe c98b8b5df0392a55852b6c21ac8e7025 c52c6fbea2b3b446ea31123ba88ce61e 80000001",
    );
    assert_eq!(
        tx.protect_rtcp(&unhex(LIBSRTP_RTCP_PLAIN)).unwrap(),
        expected_rtcp
    );
    assert_eq!(
        rx.unprotect_rtcp(&expected_rtcp).unwrap(),
        unhex(LIBSRTP_RTCP_PLAIN)
    );
}

proptest::proptest! {
    /// Whatever arrives from the network, unprotecting it returns an error or a packet, never
    /// panics, and never authenticates a forgery.
    #[test]
    fn arbitrary_input_is_rejected_without_panicking(
        data in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        suite_index in 0usize..3,
    ) {
        let suite = CryptoSuite::ALL[suite_index];
        let (_, mut bob) = pair(suite);
        let mut rtp_like = data.clone();
        if let Some(b) = rtp_like.first_mut() {
            *b = 0x80 | (*b & 0x3f);
        }
        proptest::prop_assert!(bob.unprotect_rtp(&data).is_err());
        proptest::prop_assert!(bob.unprotect_rtp(&rtp_like).is_err());
        proptest::prop_assert!(bob.unprotect_rtcp(&data).is_err());
        proptest::prop_assert!(bob.unprotect_rtcp(&rtp_like).is_err());
    }

    /// Any attribute text parses or fails cleanly, and what parses formats back to itself.
    #[test]
    fn arbitrary_crypto_attributes_parse_or_fail_cleanly(text in "\\PC{0,120}") {
        if let Ok(c) = SdesCrypto::parse(&text) {
            let again = SdesCrypto::parse(&c.to_attribute_value()).unwrap();
            proptest::prop_assert_eq!(again, c);
        }
    }

    /// Near-valid attributes: whatever parses formats back to the same attribute.
    #[test]
    fn near_valid_crypto_attributes_round_trip(
        text in "[0-9]{1,3} (AES_CM_128_HMAC_SHA1_80|AES_CM_128_HMAC_SHA1_32|AEAD_AES_128_GCM) \
                 inline:[A-Za-z0-9+/]{36,40}={0,2}(\\|2\\^[0-9]{1,2})?(\\|[0-9]{1,4}:[0-9]{1,3})?\
                 ( (KDR=0|WSH=[0-9]{1,3}|-X))?"
    ) {
        if let Ok(c) = SdesCrypto::parse(&text) {
            let again = SdesCrypto::parse(&c.to_attribute_value()).unwrap();
            proptest::prop_assert_eq!(again, c);
        }
    }
}
