//! RTP payload formats: VP8 (RFC 7741) and H.264 packetization-mode 1 (RFC 6184) round trips
//! on random frames and MTUs, payloads as other implementations write them, and hostile input.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use proptest::prelude::*;
use tandem_video::codec::{EncodedFrame, VideoCodecKind};
use tandem_video::rtp::h264::{self, H264Packetizer};
use tandem_video::rtp::vp8::{self, Vp8Packetizer};
use tandem_video::rtp::{
    MAX_FRAME_BYTES, Packetizer, PayloadError, check_payload, depayload_frame, is_frame_start,
    is_keyframe, packetizer,
};

/// A VP8 frame: key frames get a plausible header (tag, start code, size); the rest is `body`.
fn vp8_frame(keyframe: bool, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    if keyframe {
        // Frame tag: P=0 (key), version 0, show_frame, partition size bits; then 9d 01 2a and 320x240.
        f.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]);
    } else {
        f.extend_from_slice(&[0x31, 0x01, 0x00]);
    }
    f.extend_from_slice(body);
    f
}

fn refs(payloads: &[Vec<u8>]) -> Vec<&[u8]> {
    payloads.iter().map(Vec::as_slice).collect()
}

#[test]
fn vp8_descriptor_written_as_specified() {
    let mut p = Vp8Packetizer::with_picture_id(0x7ffe);
    let frame = EncodedFrame {
        data: vp8_frame(true, &[7; 2000]),
        keyframe: true,
    };
    let payloads = p.packetize(&frame, 1000).unwrap();
    assert_eq!(payloads.len(), 3);
    // X=1 S=1 PID=0; I=1; M=1 + 15-bit PictureID 0x7ffe.
    assert_eq!(&payloads[0][..4], &[0x90, 0x80, 0xff, 0xfe]);
    assert_eq!(&payloads[1][..4], &[0x80, 0x80, 0xff, 0xfe]);
    assert_eq!(&payloads[2][..4], &[0x80, 0x80, 0xff, 0xfe]);
    // Even split: 2010 bytes over 3 packets of at most 996.
    let sizes: Vec<usize> = payloads.iter().map(|p| p.len() - 4).collect();
    assert_eq!(sizes, vec![670, 670, 670]);
    assert!(is_frame_start(VideoCodecKind::Vp8, &payloads[0]));
    assert!(!is_frame_start(VideoCodecKind::Vp8, &payloads[1]));
    assert!(is_keyframe(VideoCodecKind::Vp8, &payloads[0]));
    assert!(!is_keyframe(VideoCodecKind::Vp8, &payloads[1]));
    // The PictureID wraps at 15 bits.
    let next = p.packetize(&frame, 1000).unwrap();
    assert_eq!(&next[0][2..4], &[0xff, 0xff]);
    let next = p.packetize(&frame, 1000).unwrap();
    assert_eq!(&next[0][2..4], &[0x80, 0x00]);
    assert_eq!(p.next_picture_id(), 1);
}

#[test]
fn vp8_depayloads_every_optional_field() {
    let frame = vp8_frame(false, &[1, 2, 3, 4, 5, 6]);
    // Chrome-like: X, I (15-bit), L (TL0PICIDX), T (TID 1, Y) and K (KEYIDX 3).
    let p1 = [&[0x90, 0xf0, 0x81, 0x23, 0x09, 0x63][..], &frame[..4]].concat();
    let p2 = [&[0x80, 0xf0, 0x81, 0x23, 0x09, 0x63][..], &frame[4..]].concat();
    let out = depayload_frame(VideoCodecKind::Vp8, &[&p1, &p2]).unwrap();
    assert_eq!(out.data, frame);
    assert!(!out.keyframe);
    // Minimal: no extension byte at all.
    let key = vp8_frame(true, &[9; 30]);
    let p = [&[0x10][..], &key[..]].concat();
    let out = depayload_frame(VideoCodecKind::Vp8, &[&p]).unwrap();
    assert_eq!(out.data, key);
    assert!(out.keyframe);
    assert!(is_keyframe(VideoCodecKind::Vp8, &p));
    // 7-bit PictureID, N bit set.
    let p = [&[0xb0, 0x80, 0x05][..], &frame[..]].concat();
    let out = depayload_frame(VideoCodecKind::Vp8, &[&p]).unwrap();
    assert_eq!(out.data, frame);
    // Key frame with only the T/K byte (no PictureID).
    let p = [&[0x90, 0x30, 0x40][..], &key[..]].concat();
    assert!(is_keyframe(VideoCodecKind::Vp8, &p));
    assert_eq!(
        depayload_frame(VideoCodecKind::Vp8, &[&p]).unwrap().data,
        key
    );
}

#[test]
fn vp8_first_packet_checks() {
    let key = vp8_frame(true, &[5; 100]);
    let mut p = Vp8Packetizer::with_picture_id(10);
    let payloads = p
        .packetize(
            &EncodedFrame {
                data: key.clone(),
                keyframe: true,
            },
            50,
        )
        .unwrap();
    let all = refs(&payloads);
    // Missing first packet.
    assert!(matches!(
        depayload_frame(VideoCodecKind::Vp8, &all[1..]),
        Err(PayloadError::Malformed(_))
    ));
    // Two frame starts in one frame.
    assert!(matches!(
        depayload_frame(VideoCodecKind::Vp8, &[all[0], all[1], all[0]]),
        Err(PayloadError::Malformed(_))
    ));
    // Partition 1 start is not a frame start, and S=1/PID=1 never starts a frame.
    let pid1 = [&[0x91, 0x00][..], &key[..]].concat();
    assert!(!is_frame_start(VideoCodecKind::Vp8, &pid1));
    assert!(!is_keyframe(VideoCodecKind::Vp8, &pid1));
    // PictureID changing inside a frame.
    let mut other = payloads[1].clone();
    other[3] ^= 1;
    assert!(matches!(
        depayload_frame(VideoCodecKind::Vp8, &[all[0], &other]),
        Err(PayloadError::Malformed(_))
    ));
    // A key frame without its start code, and a truncated key frame.
    let bad = [
        &[0x10][..],
        &[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2b, 0, 0, 0, 0][..],
    ]
    .concat();
    assert!(matches!(
        depayload_frame(VideoCodecKind::Vp8, &[&bad]),
        Err(PayloadError::Malformed(_))
    ));
    assert_eq!(
        depayload_frame(VideoCodecKind::Vp8, &[&[0x10, 0x10, 0x02, 0x00]]),
        Err(PayloadError::Truncated)
    );
    // No payloads, empty payload, descriptor only.
    assert!(depayload_frame(VideoCodecKind::Vp8, &[]).is_err());
    assert!(depayload_frame(VideoCodecKind::Vp8, &[&[]]).is_err());
    assert!(depayload_frame(VideoCodecKind::Vp8, &[&[0x90, 0x80, 0x80, 0x01]]).is_err());
    assert!(check_payload(VideoCodecKind::Vp8, &[0x90, 0x80, 0x80, 0x01]).is_err());
    assert!(check_payload(VideoCodecKind::Vp8, &payloads[1]).is_ok());
}

#[test]
fn vp8_packetizer_limits() {
    let mut p = packetizer(VideoCodecKind::Vp8);
    let f = EncodedFrame {
        data: vp8_frame(false, &[1; 10]),
        keyframe: false,
    };
    assert_eq!(p.packetize(&f, 4), Err(PayloadError::MaxPayloadTooSmall(4)));
    // One data byte per packet still works.
    let payloads = p.packetize(&f, 5).unwrap();
    assert_eq!(payloads.len(), 13);
    assert_eq!(
        depayload_frame(VideoCodecKind::Vp8, &refs(&payloads))
            .unwrap()
            .data,
        f.data
    );
    let empty = EncodedFrame {
        data: Vec::new(),
        keyframe: false,
    };
    assert!(p.packetize(&empty, 1200).is_err());
    let huge = EncodedFrame {
        data: vec![0; MAX_FRAME_BYTES + 1],
        keyframe: false,
    };
    assert_eq!(p.packetize(&huge, 1200), Err(PayloadError::TooLarge));
}

/// An Annex-B access unit from NAL units, with a mix of 3- and 4-byte start codes.
fn annex_b(nals: &[Vec<u8>], long_codes: &[bool]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, n) in nals.iter().enumerate() {
        if long_codes.get(i).copied().unwrap_or(true) {
            out.extend_from_slice(&[0, 0, 0, 1]);
        } else {
            out.extend_from_slice(&[0, 0, 1]);
        }
        out.extend_from_slice(n);
    }
    out
}

fn nal(header: u8, len: usize, fill: u8) -> Vec<u8> {
    let mut n = vec![header];
    n.extend((0..len).map(|i| fill.wrapping_add(i as u8) | 1));
    n
}

#[test]
fn h264_stap_a_single_and_fu_a() {
    let sps = nal(0x67, 12, 0x42);
    let pps = nal(0x68, 4, 0xce);
    let idr = nal(0x65, 3000, 0x88);
    let au = annex_b(
        &[sps.clone(), pps.clone(), idr.clone()],
        &[true, false, true],
    );
    let mut p = H264Packetizer::new();
    let payloads = p
        .packetize(
            &EncodedFrame {
                data: au,
                keyframe: true,
            },
            1200,
        )
        .unwrap();
    // STAP-A(SPS, PPS): F=0, NRI = max(3, 3), type 24; sizes 13 and 5.
    let stap = &payloads[0];
    assert_eq!(stap[0], 0x78);
    assert_eq!(&stap[1..3], &[0, 13]);
    assert_eq!(&stap[3..16], &sps[..]);
    assert_eq!(&stap[16..18], &[0, 5]);
    assert_eq!(&stap[18..], &pps[..]);
    // FU-A of the IDR: indicator NRI 3 type 28; S on the first, E on the last, type 5.
    let fus = &payloads[1..];
    assert_eq!(fus.len(), 3);
    for (i, fu) in fus.iter().enumerate() {
        assert_eq!(fu[0], 0x7c);
        let start = i == 0;
        let end = i == fus.len() - 1;
        assert_eq!(fu[1], (u8::from(start) << 7) | (u8::from(end) << 6) | 5);
        assert!(fu.len() <= 1200);
    }
    assert!(is_frame_start(VideoCodecKind::H264, &payloads[0]));
    assert!(is_keyframe(VideoCodecKind::H264, &payloads[0]));
    assert!(is_frame_start(VideoCodecKind::H264, &fus[0]));
    assert!(is_keyframe(VideoCodecKind::H264, &fus[0]));
    assert!(!is_frame_start(VideoCodecKind::H264, &fus[1]));
    let out = depayload_frame(VideoCodecKind::H264, &refs(&payloads)).unwrap();
    assert!(out.keyframe);
    assert_eq!(out.data, annex_b(&[sps, pps, idr], &[]));
    // A small slice goes as a single NAL unit packet.
    let slice = nal(0x41, 100, 3);
    let payloads = p
        .packetize(
            &EncodedFrame {
                data: annex_b(std::slice::from_ref(&slice), &[false]),
                keyframe: false,
            },
            1200,
        )
        .unwrap();
    assert_eq!(payloads, vec![slice.clone()]);
    assert!(!is_keyframe(VideoCodecKind::H264, &payloads[0]));
    let out = depayload_frame(VideoCodecKind::H264, &refs(&payloads)).unwrap();
    assert!(!out.keyframe);
    assert_eq!(out.data, annex_b(&[slice], &[]));
}

#[test]
fn h264_rejects_interleaved_and_broken_fragments() {
    let kind = VideoCodecKind::H264;
    for (t, what) in [(25u8, "STAP-B"), (26, "MTAP"), (27, "MTAP"), (29, "FU-B")] {
        let p = [0x60 | t, 0x85, 1, 2, 3];
        assert_eq!(
            depayload_frame(kind, &[&p]),
            Err(PayloadError::Unsupported(what))
        );
        assert!(check_payload(kind, &p).is_err());
        assert!(!is_frame_start(kind, &p));
    }
    for t in [0u8, 30, 31] {
        assert!(matches!(
            depayload_frame(kind, &[&[t, 1, 2]]),
            Err(PayloadError::Malformed(_))
        ));
    }
    let start = [0x7c, 0x85, 1, 2];
    let middle = [0x7c, 0x05, 3, 4];
    let end = [0x7c, 0x45, 5, 6];
    let whole = depayload_frame(kind, &[&start, &middle, &end]).unwrap();
    assert_eq!(whole.data, vec![0, 0, 0, 1, 0x65, 1, 2, 3, 4, 5, 6]);
    assert!(whole.keyframe);
    let cases: [&[&[u8]]; 8] = [
        &[&middle, &end],                      // missing start
        &[&start, &middle],                    // missing end
        &[&start, &[0x5c, 0x05, 3], &end],     // NRI changes
        &[&start, &[0x7c, 0x01, 3], &end],     // type changes
        &[&[0x7c, 0xc5, 1]],                   // start and end at once
        &[&start, &start, &end],               // start inside a unit
        &[&start, &[0x41, 9], &end],           // interrupted by a single NAL
        &[&[0x7c, 0x98, 1], &[0x7c, 0x58, 2]], // FU-A of a STAP-A
    ];
    for c in cases {
        assert!(
            matches!(depayload_frame(kind, c), Err(PayloadError::Malformed(_))),
            "{c:?}"
        );
    }
    assert_eq!(
        depayload_frame(kind, &[&[0x7c]]),
        Err(PayloadError::Truncated)
    );
    // STAP-A: truncated length, size beyond the packet, zero size, no units.
    assert_eq!(
        depayload_frame(kind, &[&[0x78, 0]]),
        Err(PayloadError::Truncated)
    );
    assert_eq!(
        depayload_frame(kind, &[&[0x78, 0, 5, 0x67, 1]]),
        Err(PayloadError::Truncated)
    );
    assert!(matches!(
        depayload_frame(kind, &[&[0x78, 0, 0, 0, 1, 0x67]]),
        Err(PayloadError::Malformed(_))
    ));
    assert!(matches!(
        depayload_frame(kind, &[&[0x78]]),
        Err(PayloadError::Malformed(_))
    ));
    assert!(depayload_frame(kind, &[]).is_err());
    assert!(depayload_frame(kind, &[&[]]).is_err());
}

#[test]
fn h264_output_is_bounded() {
    // 70 fragments of 64 KiB: more than MAX_FRAME_BYTES.
    let chunk = vec![0x55u8; 64 * 1024];
    let start = [&[0x7c, 0x85][..], &chunk[..]].concat();
    let middle = [&[0x7c, 0x05][..], &chunk[..]].concat();
    let end = [&[0x7c, 0x45][..], &chunk[..]].concat();
    let mut payloads: Vec<&[u8]> = vec![&start];
    payloads.extend(std::iter::repeat_n(&middle[..], 68));
    payloads.push(&end);
    assert_eq!(
        depayload_frame(VideoCodecKind::H264, &payloads),
        Err(PayloadError::TooLarge)
    );
    // Annex-B input without start codes, or with garbage before the first.
    let mut p = H264Packetizer::new();
    for data in [
        vec![0x65, 1, 2],
        vec![7, 0, 0, 1, 0x65, 1],
        vec![0, 0, 1],
        vec![],
    ] {
        assert!(
            p.packetize(
                &EncodedFrame {
                    data,
                    keyframe: false
                },
                1200
            )
            .is_err()
        );
    }
    assert!(
        p.packetize(
            &EncodedFrame {
                data: vec![0, 0, 0, 1, 0x65, 1, 2, 3],
                keyframe: true
            },
            2
        )
        .is_err()
    );
}

#[test]
fn h264_split_handles_trailing_zeros_and_emulation_bytes() {
    // 00 00 03 is an emulation prevention sequence, not a start code; trailing zeros go.
    let data = [0, 0, 0, 1, 0x41, 0, 0, 3, 1, 5, 0, 0, 0, 0, 1, 0x41, 9];
    let nals = h264::split_annex_b(&data).unwrap();
    assert_eq!(nals, vec![&[0x41, 0, 0, 3, 1, 5][..], &[0x41, 9][..]]);
}

fn arb_vp8_frame() -> impl Strategy<Value = (bool, Vec<u8>)> {
    (any::<bool>(), prop::collection::vec(any::<u8>(), 0..6000))
        .prop_map(|(key, body)| (key, vp8_frame(key, &body)))
}

/// A NAL unit without zero bytes (so no start-code emulation) of a common type.
fn arb_nal() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![1u8, 5, 6, 7, 8, 9]),
        0u8..4,
        prop_oneof![
            prop::collection::vec(1u8..=255, 0..40),
            prop::collection::vec(1u8..=255, 0..4000),
        ],
    )
        .prop_map(|(t, nri, body)| {
            let mut n = vec![(nri << 5) | t];
            n.extend(body);
            n
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn vp8_round_trip((key, data) in arb_vp8_frame(), max_payload in 5usize..1500, pid in any::<u16>()) {
        let mut p = Vp8Packetizer::with_picture_id(pid);
        let frame = EncodedFrame { data: data.clone(), keyframe: key };
        let payloads = p.packetize(&frame, max_payload).unwrap();
        prop_assert!(payloads.iter().all(|p| p.len() <= max_payload && p.len() > vp8::DESCRIPTOR_LEN));
        let lens: Vec<usize> = payloads.iter().map(Vec::len).collect();
        prop_assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
        prop_assert_eq!(is_keyframe(VideoCodecKind::Vp8, &payloads[0]), key);
        for (i, pl) in payloads.iter().enumerate() {
            prop_assert_eq!(is_frame_start(VideoCodecKind::Vp8, pl), i == 0);
            prop_assert!(check_payload(VideoCodecKind::Vp8, pl).is_ok());
        }
        let out = depayload_frame(VideoCodecKind::Vp8, &refs(&payloads)).unwrap();
        prop_assert_eq!(out.data, data);
        prop_assert_eq!(out.keyframe, key);
    }

    #[test]
    fn h264_round_trip(nals in prop::collection::vec(arb_nal(), 1..8), codes in prop::collection::vec(any::<bool>(), 8), max_payload in 3usize..1500) {
        let au = annex_b(&nals, &codes);
        let key = nals.iter().any(|n| n[0] & 0x1f == 5);
        let mut p = H264Packetizer::new();
        let payloads = p.packetize(&EncodedFrame { data: au.clone(), keyframe: key }, max_payload).unwrap();
        prop_assert!(payloads.iter().all(|p| p.len() <= max_payload && !p.is_empty()));
        prop_assert!(is_frame_start(VideoCodecKind::H264, &payloads[0]));
        for pl in &payloads {
            prop_assert!(check_payload(VideoCodecKind::H264, pl).is_ok());
        }
        let out = depayload_frame(VideoCodecKind::H264, &refs(&payloads)).unwrap();
        prop_assert_eq!(out.keyframe, key);
        prop_assert_eq!(&out.data, &annex_b(&nals, &[]));
        prop_assert_eq!(h264::split_annex_b(&out.data).unwrap(), h264::split_annex_b(&au).unwrap());
    }

    #[test]
    fn random_payloads_never_panic(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..6)) {
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        for kind in [VideoCodecKind::Vp8, VideoCodecKind::H264] {
            if let Ok(f) = depayload_frame(kind, &refs) {
                prop_assert!(f.data.len() <= MAX_FRAME_BYTES);
            }
            for p in &refs {
                let _ = is_frame_start(kind, p);
                let _ = is_keyframe(kind, p);
                let _ = check_payload(kind, p);
            }
        }
        let _ = h264::split_annex_b(&payloads.concat());
    }
}

#[test]
fn vp8_multi_partition_frames_as_baresip_and_linphone_send_them() {
    // libvpx with VPX_CODEC_USE_OUTPUT_PARTITION: each partition starts with S=1 and its
    // index in PID; continuation packets have S=0 and the PID of their partition.
    let frame = vp8_frame(true, &[0x33; 40]);
    let (part0, part1) = frame.split_at(20);
    let pic = [0x80, 0x80 | 0x12, 0x34];
    let p1 = [&[0x90][..], &pic, &part0[..12]].concat();
    let p2 = [&[0x80][..], &pic, &part0[12..]].concat();
    let p3 = [&[0x91][..], &pic, &part1[..10]].concat();
    let p4 = [&[0x81][..], &pic, &part1[10..]].concat();
    let kind = VideoCodecKind::Vp8;
    assert!(is_frame_start(kind, &p1) && is_keyframe(kind, &p1));
    for p in [&p2, &p3, &p4] {
        assert!(!is_frame_start(kind, p));
        assert!(check_payload(kind, p).is_ok());
    }
    let out = depayload_frame(kind, &[&p1, &p2, &p3, &p4]).unwrap();
    assert_eq!(out.data, frame);
    assert!(out.keyframe);
    // Without the first partition's start the frame is refused.
    assert!(depayload_frame(kind, &[&p3, &p4]).is_err());
}
