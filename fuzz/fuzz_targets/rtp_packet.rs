//! Fuzz target: RTP parsing (RFC 3550 §5) and media-port demultiplexing (RFC 5761 §4,
//! RFC 7983) never panic; a packet that parses prints to bytes that parse to the same packet,
//! and the copying and zero-copy parsers agree.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tandem_media::rtp::{PacketKind, RtpPacket, classify, is_rtcp};

fuzz_target!(|data: &[u8]| {
    let kind = classify(data);
    let rtcp = is_rtcp(data);
    if kind == PacketKind::Rtcp {
        assert!(rtcp, "classified as RTCP but is_rtcp says no");
    }
    let parsed = RtpPacket::parse(data);
    let shared = RtpPacket::parse_bytes(Bytes::copy_from_slice(data));
    assert_eq!(parsed, shared, "parse and parse_bytes disagree");
    if let Ok(packet) = parsed {
        assert!(packet.header.payload_type <= 127);
        assert!(packet.header.csrc.len() <= 15);
        assert!(packet.payload.len() <= data.len());
        let printed = packet.to_bytes();
        assert_eq!(printed.len(), packet.encoded_len(), "encoded_len is wrong");
        let again = match RtpPacket::parse(&printed) {
            Ok(p) => p,
            Err(e) => panic!("printed RTP packet does not parse again: {e}"),
        };
        assert_eq!(
            again, packet,
            "RTP print/parse round trip changed the packet"
        );
        // A parsed packet is never mistaken for STUN or DTLS.
        assert!(
            matches!(classify(data), PacketKind::Rtp | PacketKind::Rtcp),
            "a valid RTP packet was classified as {kind:?}"
        );
    }
});
