//! Fuzz target: RTCP compound parsing (RFC 3550 §6) never panics, and whatever parses is
//! rebuilt by `build_compound` into bytes that parse again to the same packets (minus the
//! packet types the builder does not write).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_media::rtcp::{RtcpPacket, build_compound, parse_compound};

fuzz_target!(|data: &[u8]| {
    let Ok(packets) = parse_compound(data) else {
        return;
    };
    assert!(
        !packets.is_empty(),
        "a non-empty compound parsed to no packets"
    );
    for p in &packets {
        if let RtcpPacket::SenderReport(sr) = p {
            for b in &sr.reports {
                let _ = (b.fraction_lost_percent(), b.jitter_ms(8000), b.jitter_ms(0));
            }
        }
        if let RtcpPacket::Sdes(sdes) = p {
            for c in &sdes.chunks {
                let _ = sdes.cname_of(c.ssrc);
            }
        }
    }
    let written: Vec<RtcpPacket> = packets
        .iter()
        .filter(|p| !matches!(p, RtcpPacket::Other { .. }))
        .cloned()
        .collect();
    let bytes = build_compound(&written);
    if written.is_empty() {
        assert!(bytes.is_empty());
        return;
    }
    assert_eq!(bytes.len() % 4, 0, "built RTCP is not 32-bit aligned");
    let again = match parse_compound(&bytes) {
        Ok(p) => p,
        Err(e) => panic!("built RTCP compound does not parse again: {e}"),
    };
    // Printing is stable: a second build gives the same bytes.
    assert_eq!(
        build_compound(&again),
        bytes,
        "RTCP build/parse is not stable"
    );
    assert_eq!(again.len(), written.len(), "packet count changed");
});
