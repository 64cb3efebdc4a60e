//! Fuzz target: SRTP/SRTCP unprotect (RFC 3711, RFC 7714) with fixed keys never panics on
//! arbitrary bytes and counts every failure; a packet we protect unprotects to the same bytes
//! on the peer's context, and the same packet with one byte changed is refused and counted.
//!
//! Input: byte 0 chooses the suite, MKI use and RTP or RTCP; byte 1 the byte to tamper with;
//! the rest is the packet.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_media::rtcp::parse_compound;
use tandem_media::rtp::RtpPacket;
use tandem_media::srtp::{CryptoSuite, SdesCrypto, SrtpContext};

/// 46 bytes of key material: enough for every suite's key||salt.
const KEY_A: [u8; 46] = *b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ";
const KEY_B: [u8; 46] = *b"JIHGFEDCBAzyxwvutsrqponmlkjihgfedcba9876543210";

const SUITES: [CryptoSuite; 3] = [
    CryptoSuite::AesCm128HmacSha1_80,
    CryptoSuite::AesCm128HmacSha1_32,
    CryptoSuite::AeadAes128Gcm,
];

fn line(suite: CryptoSuite, key: &[u8; 46], mki: bool) -> SdesCrypto {
    SdesCrypto {
        tag: 1,
        suite,
        key_salt: key[..suite.key_salt_len()].to_vec(),
        lifetime: None,
        mki: mki.then_some((5, 2)),
        params: String::new(),
    }
}

/// Two contexts facing each other: `a` protects with KEY_A, `b` unprotects KEY_A.
fn pair(suite: CryptoSuite, mki: bool) -> (SrtpContext, SrtpContext) {
    let a_line = line(suite, &KEY_A, mki);
    let b_line = line(suite, &KEY_B, mki);
    let a = SrtpContext::from_sdes(&a_line, &b_line).expect("context a");
    let b = SrtpContext::from_sdes(&b_line, &a_line).expect("context b");
    (a, b)
}

fuzz_target!(|data: &[u8]| {
    let [mode, tamper, packet @ ..] = data else {
        return;
    };
    let suite = SUITES[usize::from(mode & 0x03) % SUITES.len()];
    let mki = mode & 0x04 != 0 && suite != CryptoSuite::AeadAes128Gcm;
    let rtcp = mode & 0x08 != 0;
    let (mut a, mut b) = pair(suite, mki);

    // Arbitrary bytes as SRTP/SRTCP: refused (and counted) or accepted, never a panic.
    let result = if rtcp {
        b.unprotect_rtcp(packet)
    } else {
        b.unprotect_rtp(packet)
    };
    let c = b.counters();
    match &result {
        Ok(plain) => {
            assert!(
                plain.len() < packet.len(),
                "unprotect did not shrink the packet"
            );
            assert_eq!(c.rtp_unprotected + c.rtcp_unprotected, 1);
        }
        Err(e) => assert_eq!(
            c.auth_failures + c.malformed,
            1,
            "refused packet ({e}) not counted exactly once: {c:?}"
        ),
    }

    // The same bytes as plaintext: protect on `a`, tamper, unprotect on a fresh `b`.
    let valid = if rtcp {
        parse_compound(packet).is_ok()
    } else {
        RtpPacket::parse(packet).is_ok()
    };
    if !valid {
        return;
    }
    let protected = if rtcp {
        a.protect_rtcp(packet)
    } else {
        a.protect_rtp(packet)
    };
    let Ok(protected) = protected else {
        return;
    };
    let (_, mut b) = pair(suite, mki);
    let mut bad = protected.clone();
    let at = usize::from(*tamper) % bad.len();
    bad[at] ^= 0x01;
    let tampered = if rtcp {
        b.unprotect_rtcp(&bad)
    } else {
        b.unprotect_rtp(&bad)
    };
    if let Ok(plain) = tampered {
        panic!(
            "tampered {} packet (byte {at} of {}) was accepted: {} plaintext bytes",
            if rtcp { "SRTCP" } else { "SRTP" },
            bad.len(),
            plain.len()
        );
    }
    let c = b.counters();
    assert_eq!(
        c.auth_failures + c.malformed,
        1,
        "tampered packet not counted: {c:?}"
    );
    let plain = if rtcp {
        b.unprotect_rtcp(&protected)
    } else {
        b.unprotect_rtp(&protected)
    };
    match plain {
        Ok(plain) => assert_eq!(plain, packet, "SRTP round trip changed the packet"),
        Err(e) => panic!("our own protected packet was refused: {e}"),
    }
    // A replay of the same packet is refused and counted.
    let replay = if rtcp {
        b.unprotect_rtcp(&protected)
    } else {
        b.unprotect_rtp(&protected)
    };
    assert!(replay.is_err(), "replayed packet accepted");
    assert_eq!(
        b.counters().replays,
        1,
        "replay not counted: {:?}",
        b.counters()
    );
});
