//! RTP packet parsing/serialisation, RFC 5761/7983 demultiplexing and the RtpStream packetizer.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use tandem_media::rtp::{
    PacketKind, RtpError, RtpHeader, RtpPacket, RtpStream, classify, duration_to_units, is_rtcp,
};

/// A PCMU packet as a phone sends it: V=2, M=1, PT 0, seq 0x1234, ts 0xDEADBEEF, SSRC
/// 0x01020304, 4 payload bytes.
const PCMU: [u8; 16] = [
    0x80, 0x80, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04, 0xFF, 0x7F, 0x00, 0x80,
];

#[test]
fn parses_fixed_header_and_payload() {
    let p = RtpPacket::parse(&PCMU).unwrap();
    assert!(p.header.marker);
    assert_eq!(p.header.payload_type, 0);
    assert_eq!(p.header.sequence, 0x1234);
    assert_eq!(p.header.timestamp, 0xDEAD_BEEF);
    assert_eq!(p.header.ssrc, 0x0102_0304);
    assert!(p.header.csrc.is_empty());
    assert_eq!(&p.payload[..], &[0xFF, 0x7F, 0x00, 0x80]);
    assert_eq!(p.to_bytes(), PCMU.to_vec());
    assert_eq!(p.encoded_len(), PCMU.len());
    // The zero-copy variant gives the same packet, its payload a slice of the input.
    let input = Bytes::copy_from_slice(&PCMU);
    let shared = RtpPacket::parse_bytes(input.clone()).unwrap();
    assert_eq!(shared, p);
    assert_eq!(shared.payload.as_ptr(), input[12..].as_ptr());
}

#[test]
fn csrc_extension_and_padding_are_handled() {
    // V=2 P=1 X=1 CC=2, PT 111, seq 1, ts 2, ssrc 3, CSRCs 7 and 8,
    // extension profile 0xBEDE with 1 word, payload "opus", 4 bytes of padding.
    let mut b = vec![0xB2, 111, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
    b.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 8]);
    b.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 0x10, 0xAA, 0x00, 0x00]);
    b.extend_from_slice(b"opus");
    b.extend_from_slice(&[0, 0, 0, 4]);
    let p = RtpPacket::parse(&b).unwrap();
    assert_eq!(p.header.csrc, vec![7, 8]);
    assert_eq!(p.header.payload_type, 111);
    assert!(!p.header.marker);
    assert_eq!(&p.payload[..], b"opus");
    // Re-serialised: CSRCs kept, extension and padding dropped.
    let again = RtpPacket::parse(&p.to_bytes()).unwrap();
    assert_eq!(again, p);
}

#[test]
fn malformed_packets_are_errors() {
    assert_eq!(RtpPacket::parse(&PCMU[..11]), Err(RtpError::TooShort(11)));
    let mut v1 = PCMU;
    v1[0] = 0x40;
    assert_eq!(RtpPacket::parse(&v1), Err(RtpError::BadVersion(1)));
    // CC=3 but only one CSRC word present.
    let mut cc = PCMU.to_vec();
    cc[0] = 0x83;
    assert_eq!(RtpPacket::parse(&cc), Err(RtpError::TruncatedCsrc));
    // Extension header claiming 100 words.
    let mut ext = PCMU[..12].to_vec();
    ext[0] = 0x90;
    ext.extend_from_slice(&[0xBE, 0xDE, 0x00, 100, 1, 2, 3, 4]);
    assert_eq!(RtpPacket::parse(&ext), Err(RtpError::TruncatedExtension));
    // Padding count larger than the payload.
    let mut pad = PCMU.to_vec();
    pad[0] = 0xA0;
    *pad.last_mut().unwrap() = 5;
    assert_eq!(RtpPacket::parse(&pad), Err(RtpError::BadPadding(5)));
    // Padding count zero.
    *pad.last_mut().unwrap() = 0;
    assert_eq!(RtpPacket::parse(&pad), Err(RtpError::BadPadding(0)));
    // Padding that exactly covers the payload leaves an empty payload.
    *pad.last_mut().unwrap() = 4;
    assert!(RtpPacket::parse(&pad).unwrap().payload.is_empty());
}

#[test]
fn rtcp_detection_follows_rfc_5761() {
    assert!(is_rtcp(&[0x80, 200]));
    assert!(is_rtcp(&[0x81, 201]));
    assert!(is_rtcp(&[0x80, 223]));
    assert!(!is_rtcp(&[0x80, 224]));
    assert!(!is_rtcp(&[0x80, 191]));
    // RTP PT 0 with marker (0x80) and PT 96 with marker (0xE0) are RTP.
    assert!(!is_rtcp(&[0x80, 0x80]));
    assert!(!is_rtcp(&[0x80, 0xE0]));
    assert!(!is_rtcp(&[0x80]));
    assert!(!is_rtcp(&[]));
}

#[test]
fn classify_follows_rfc_7983() {
    // STUN binding request: type 0x0001, length 0, magic cookie, transaction id.
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    stun.extend_from_slice(&[7; 12]);
    assert_eq!(classify(&stun), PacketKind::Stun);
    assert_eq!(classify(&stun[..10]), PacketKind::Unknown);
    // DTLS 1.2 handshake record header (content type 22).
    let dtls = [22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 1, 0, 0, 0];
    assert_eq!(classify(&dtls), PacketKind::Dtls);
    assert_eq!(classify(&[23, 0xFE, 0xFD]), PacketKind::Unknown);
    assert_eq!(classify(&PCMU), PacketKind::Rtp);
    assert_eq!(classify(&PCMU[..8]), PacketKind::Unknown);
    let rr = [0x80, 201, 0, 1, 1, 2, 3, 4];
    assert_eq!(classify(&rr), PacketKind::Rtcp);
    assert_eq!(classify(&rr[..6]), PacketKind::Unknown);
    // ZRTP (first byte 16) and TURN channel data (64..=79) are not ours.
    assert_eq!(classify(&[16; 40]), PacketKind::Unknown);
    assert_eq!(classify(&[0x40; 40]), PacketKind::Unknown);
    assert_eq!(classify(&[200; 40]), PacketKind::Unknown);
    assert_eq!(classify(&[]), PacketKind::Unknown);
}

#[test]
fn stream_numbers_packets_and_counts_for_sender_reports() {
    let mut s = RtpStream::with_initial(0xCAFE, 0, 8000, 0xFFFE, 0xFFFF_FF00);
    let a = s.next_packet(Bytes::from_static(&[1; 160]), 160, true);
    let b = s.next_packet(Bytes::from_static(&[2; 160]), 160, false);
    let c = s.next_packet(Bytes::from_static(&[3; 80]), 160, false);
    assert_eq!(
        (a.header.sequence, b.header.sequence, c.header.sequence),
        (0xFFFE, 0xFFFF, 0)
    );
    assert_eq!(a.header.timestamp, 0xFFFF_FF00);
    assert_eq!(b.header.timestamp, 0xFFFF_FFA0);
    assert_eq!(c.header.timestamp, 0x40); // wrapped
    assert!(a.header.marker && !b.header.marker);
    assert_eq!(a.header.ssrc, 0xCAFE);
    assert_eq!(s.packets_sent(), 3);
    assert_eq!(s.octets_sent(), 400);
    assert!(s.take_sent_since_report());
    assert!(!s.sent_since_report());

    // A telephone-event packet: own PT and timestamp, sequence continues, audio ts untouched.
    let ts_before = s.timestamp();
    let ev = s.packet_with(101, Bytes::from_static(&[1, 10, 0, 160]), 1234, true);
    assert_eq!(ev.header.payload_type, 101);
    assert_eq!(ev.header.timestamp, 1234);
    assert_eq!(ev.header.sequence, 1);
    assert_eq!(s.timestamp(), ts_before);
    s.advance(160);
    assert_eq!(s.timestamp(), ts_before.wrapping_add(160));
    assert_eq!(s.packets_sent(), 4);
    assert!(s.sent_since_report());
}

#[test]
fn sender_counters_extrapolate_the_rtp_clock() {
    let t0 = Instant::now();
    let mut s = RtpStream::with_initial(1, 111, 48000, 0, 1000);
    assert_eq!(s.sender_counters(t0).rtp_timestamp, 1000);
    let _ = s.next_packet_at(t0, Bytes::from_static(b"x"), 960, false);
    let c = s.sender_counters(t0 + Duration::from_millis(50));
    assert_eq!(c.rtp_timestamp, 1000 + 2400);
    assert_eq!((c.packet_count, c.octet_count), (1, 1));
    // Frames not sent (DTX, hold) move the anchor too.
    s.advance_at(t0 + Duration::from_millis(20), 960);
    let c = s.sender_counters(t0 + Duration::from_millis(20));
    assert_eq!(c.rtp_timestamp, 1960);
    // A codec change with another clock drops the anchor.
    s.set_codec(0, 8000);
    assert_eq!(s.payload_type(), 0);
    assert_eq!(s.clock_rate(), 8000);
    assert_eq!(
        s.sender_counters(t0 + Duration::from_secs(9)).rtp_timestamp,
        2920
    );
}

#[test]
fn random_initial_values_differ() {
    let values: std::collections::HashSet<(u16, u32)> = (0..8)
        .map(|_| {
            let s = RtpStream::new(1, 0, 8000);
            (s.sequence(), s.timestamp())
        })
        .collect();
    assert!(
        values.len() > 1,
        "initial sequence/timestamp are not random"
    );
}

#[test]
fn duration_to_units_converts_and_wraps() {
    assert_eq!(duration_to_units(Duration::from_millis(20), 8000), 160);
    assert_eq!(duration_to_units(Duration::from_millis(20), 48000), 960);
    // 536871 s at 8 kHz is 4_294_968_000 units: 704 past the 2^32 wrap.
    assert_eq!(duration_to_units(Duration::from_secs(536_871), 8000), 704);
}

fn header_strategy() -> impl Strategy<Value = RtpHeader> {
    (
        any::<bool>(),
        0u8..128,
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec(any::<u32>(), 0..=15),
    )
        .prop_map(
            |(marker, payload_type, sequence, timestamp, ssrc, csrc)| RtpHeader {
                marker,
                payload_type,
                sequence,
                timestamp,
                ssrc,
                csrc,
            },
        )
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let parsed = RtpPacket::parse(&data);
        prop_assert_eq!(&parsed, &RtpPacket::parse_bytes(Bytes::from(data.clone())));
        let _ = classify(&data);
        let _ = is_rtcp(&data);
    }

    #[test]
    fn version_two_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 12..300)) {
        data[0] = 0x80 | (data[0] & 0x3F);
        if let Ok(p) = RtpPacket::parse(&data) {
            prop_assert!(p.payload.len() <= data.len() - 12);
            prop_assert!(p.header.csrc.len() <= 15);
        }
    }

    #[test]
    fn build_then_parse_round_trips(
        header in header_strategy(),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let packet = RtpPacket { header, payload: Bytes::from(payload) };
        let bytes = packet.to_bytes();
        prop_assert_eq!(bytes.len(), packet.encoded_len());
        let parsed = RtpPacket::parse(&bytes).unwrap();
        prop_assert_eq!(&parsed, &packet);
        // A packet whose PT is not in 64..=95 never looks like RTCP.
        let pt = packet.header.payload_type;
        if !(64..=95).contains(&pt) {
            prop_assert_eq!(classify(&bytes), PacketKind::Rtp);
        }
    }
}
