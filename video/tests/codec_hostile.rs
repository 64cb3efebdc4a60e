//! Decoders fed garbage: random bytes, truncated and bit-flipped frames, headers claiming
//! absurd sizes. They must return errors (never panic or allocate for the claimed size) and
//! keep decoding once a good keyframe arrives.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use proptest::prelude::*;
use tandem_video::codec::h264::{split_annexb, sps_size};
use tandem_video::codec::vp8::keyframe_size;
use tandem_video::codec::{
    CodecError, EncodedFrame, EncoderConfig, VideoCodecKind, new_decoder, new_encoder,
};
use tandem_video::counter::read_counter;
use tandem_video::source::{PatternSource, VideoSource};

const KINDS: [VideoCodecKind; 2] = [VideoCodecKind::Vp8, VideoCodecKind::H264];

/// `count` encoded pattern frames (the first a keyframe) at 160x120.
fn stream(kind: VideoCodecKind, count: u32, keyframes_at: &[u32]) -> Vec<EncodedFrame> {
    let mut src = PatternSource::new(160, 120, 15).unwrap();
    let mut enc = new_encoder(
        kind,
        EncoderConfig {
            width: 160,
            height: 120,
            fps: 15,
            bitrate_bps: 200_000,
        },
    )
    .unwrap();
    (0..count)
        .map(|n| {
            enc.encode(&src.next_frame().unwrap(), keyframes_at.contains(&n))
                .unwrap()
                .unwrap()
        })
        .collect()
}

/// Writes bits MSB first, with Exp-Golomb helpers, to build hostile H.264 parameter sets.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    len: usize,
}

impl Bits {
    fn put(&mut self, value: u64, n: u32) {
        for i in (0..n).rev() {
            if self.len.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if value >> i & 1 == 1 {
                let last = self.bytes.len() - 1;
                self.bytes[last] |= 0x80 >> (self.len % 8);
            }
            self.len += 1;
        }
    }

    fn ue(&mut self, v: u64) {
        let x = v + 1;
        let bits = 64 - x.leading_zeros();
        self.put(0, bits - 1);
        self.put(x, bits);
    }
}

/// An Annex-B baseline SPS declaring `width_mbs` x `height_mbs` macroblocks.
fn sps(width_mbs: u64, height_mbs: u64) -> Vec<u8> {
    let mut b = Bits::default();
    b.put(0x67, 8); // NAL header: SPS
    b.put(66, 8); // profile_idc baseline
    b.put(0xc0, 8); // constraint flags
    b.put(51, 8); // level 5.1
    b.ue(0); // sps id
    b.ue(0); // log2_max_frame_num - 4
    b.ue(2); // poc type 2
    b.ue(1); // max_num_ref_frames
    b.put(0, 1); // gaps
    b.ue(width_mbs - 1);
    b.ue(height_mbs - 1);
    b.put(1, 1); // frame_mbs_only
    b.put(1, 1); // direct_8x8_inference
    b.put(0, 1); // no cropping
    b.put(0, 1); // no VUI
    b.put(1, 1); // rbsp stop bit
    let mut out = vec![0, 0, 0, 1];
    out.extend_from_slice(&b.bytes);
    out
}

#[test]
fn vp8_keyframe_claiming_16000x16000_is_too_large() {
    let mut dec = new_decoder(VideoCodecKind::Vp8).unwrap();
    let mut frame = vec![0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a];
    frame.extend_from_slice(&16000u16.to_le_bytes());
    frame.extend_from_slice(&16000u16.to_le_bytes());
    frame.extend_from_slice(&[0x55; 200]);
    assert!(matches!(
        dec.decode(&frame),
        Err(CodecError::TooLarge {
            width: 16000,
            height: 16000
        })
    ));
    // Just beyond the limit in one dimension, with scaling bits set (ignored).
    let mut wide = frame.clone();
    wide[6..8].copy_from_slice(&(4097u16 | 0xc000).to_le_bytes());
    wide[8..10].copy_from_slice(&100u16.to_le_bytes());
    assert!(matches!(
        dec.decode(&wide),
        Err(CodecError::TooLarge { width: 4097, .. })
    ));
    // A real keyframe with its size patched to 16000x16000.
    let real = stream(VideoCodecKind::Vp8, 1, &[]).remove(0);
    assert_eq!(keyframe_size(&real.data).unwrap(), Some((160, 120)));
    let mut patched = real.data.clone();
    patched[6..8].copy_from_slice(&16000u16.to_le_bytes());
    patched[8..10].copy_from_slice(&16000u16.to_le_bytes());
    assert!(matches!(
        dec.decode(&patched),
        Err(CodecError::TooLarge { .. })
    ));
    // The decoder still works.
    let d = dec.decode(&real.data).unwrap().unwrap();
    assert_eq!(read_counter(&d), Some(0));
}

#[test]
fn h264_sps_claiming_huge_sizes_is_too_large() {
    let mut dec = new_decoder(VideoCodecKind::H264).unwrap();
    // 16000x16000 = 1000x1000 macroblocks.
    let huge = sps(1000, 1000);
    assert_eq!(sps_size(split_annexb(&huge)[0]).unwrap(), (16000, 16000));
    assert!(matches!(
        dec.decode(&huge),
        Err(CodecError::TooLarge {
            width: 16000,
            height: 16000
        })
    ));
    // 4112 wide: one macroblock too many.
    assert!(matches!(
        dec.decode(&sps(257, 10)),
        Err(CodecError::TooLarge { width: 4112, .. })
    ));
    // Exactly the maximum is fine as far as the size check goes.
    assert_eq!(
        sps_size(split_annexb(&sps(256, 144))[0]).unwrap(),
        (4096, 2304)
    );
    // A real IDR with a hostile SPS in front of it is refused as a whole.
    let real = stream(VideoCodecKind::H264, 1, &[]).remove(0);
    let mut hostile = huge.clone();
    hostile.extend_from_slice(&real.data);
    assert!(matches!(
        dec.decode(&hostile),
        Err(CodecError::TooLarge { .. })
    ));
    let d = dec.decode(&real.data).unwrap().unwrap();
    assert_eq!(read_counter(&d), Some(0));
}

#[test]
fn empty_and_tiny_inputs_are_errors() {
    for kind in KINDS {
        let mut dec = new_decoder(kind).unwrap();
        for input in [
            &[][..],
            &[0],
            &[0, 0],
            &[0, 0, 1],
            &[0xff; 3],
            &[0, 0, 0, 1, 0x67],
        ] {
            assert!(dec.decode(input).is_err(), "{kind} accepted {input:?}");
        }
    }
}

#[test]
fn interframes_without_a_keyframe_are_errors() {
    for kind in KINDS {
        let frames = stream(kind, 5, &[]);
        let mut dec = new_decoder(kind).unwrap();
        for f in &frames[1..] {
            match dec.decode(&f.data) {
                Err(_) | Ok(None) => {}
                Ok(Some(_)) => panic!("{kind}: decoded an interframe without its keyframe"),
            }
        }
        let d = dec.decode(&frames[0].data).unwrap().unwrap();
        assert_eq!(read_counter(&d), Some(0));
    }
}

#[test]
fn truncated_frames_never_panic_and_decoding_recovers() {
    for kind in KINDS {
        let frames = stream(kind, 12, &[6]);
        let mut dec = new_decoder(kind).unwrap();
        for f in frames.iter().take(6) {
            // Every prefix of the first frames (stepping to keep the test fast).
            let step = (f.data.len() / 40).max(1);
            for cut in (0..f.data.len()).step_by(step) {
                let _ = dec.decode(&f.data[..cut]);
            }
        }
        // The keyframe at 6 restores a correct picture (after flushing any broken state).
        let mut ok_from_key = 0;
        for (n, f) in frames.iter().enumerate().skip(6) {
            if let Ok(Some(d)) = dec.decode(&f.data)
                && read_counter(&d) == Some(n as u32)
            {
                ok_from_key += 1;
            }
        }
        assert!(
            ok_from_key >= 5,
            "{kind}: only {ok_from_key} good frames after the keyframe"
        );
    }
}

#[test]
fn a_truncated_interframe_is_reported_until_the_next_keyframe() {
    for kind in KINDS {
        let frames = stream(kind, 12, &[8]);
        let mut dec = new_decoder(kind).unwrap();
        for f in &frames[..3] {
            dec.decode(&f.data).unwrap().unwrap();
        }
        let cut = &frames[3].data[..frames[3].data.len() / 2];
        let mut shown_wrong = 0;
        let mut errors = 0;
        for (n, data) in [(3, cut)]
            .into_iter()
            .chain((4..8).map(|n| (n, frames[n].data.as_slice())))
        {
            match dec.decode(data) {
                Ok(Some(d)) if read_counter(&d) != Some(n as u32) => shown_wrong += 1,
                Ok(_) => {}
                Err(_) => errors += 1,
            }
        }
        assert!(errors >= 1, "{kind}: the damage went unreported");
        assert_eq!(shown_wrong, 0, "{kind}: showed damaged pictures");
        // The keyframe at 8 brings back exact pictures.
        for (n, f) in frames.iter().enumerate().skip(8) {
            let d = dec.decode(&f.data).unwrap().unwrap();
            assert_eq!(read_counter(&d), Some(n as u32), "{kind}");
        }
    }
}

#[test]
fn bit_flipped_frames_never_panic() {
    for kind in KINDS {
        let frames = stream(kind, 10, &[]);
        let mut dec = new_decoder(kind).unwrap();
        let mut x = 0x1234_5678u32;
        for f in &frames {
            for _ in 0..20 {
                let mut bad = f.data.clone();
                for _ in 0..3 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let i = x as usize % bad.len();
                    bad[i] ^= 1 << (x % 8);
                }
                if let Ok(Some(d)) = dec.decode(&bad) {
                    assert!(d.is_consistent());
                    assert!(d.width <= 160 && d.height <= 120);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        prefix in 0usize..4,
    ) {
        // Random bytes, optionally after plausible headers so parsing goes deeper.
        let heads: [&[u8]; 4] = [
            &[],
            &[0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0xa0, 0x00, 0x78, 0x00],
            &[0, 0, 0, 1, 0x67, 66, 0xc0, 30],
            &[0, 0, 0, 1, 0x65],
        ];
        let mut input = heads[prefix].to_vec();
        input.extend_from_slice(&data);
        for kind in KINDS {
            let mut dec = new_decoder(kind).unwrap();
            if let Ok(Some(frame)) = dec.decode(&input) {
                prop_assert!(frame.is_consistent());
                prop_assert!(frame.width <= tandem_video::frame::MAX_WIDTH);
                prop_assert!(frame.height <= tandem_video::frame::MAX_HEIGHT);
            }
        }
    }

    #[test]
    fn random_bytes_after_a_good_keyframe_never_panic(
        garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..6),
    ) {
        for kind in KINDS {
            let frames = stream(kind, 2, &[]);
            let mut dec = new_decoder(kind).unwrap();
            dec.decode(&frames[0].data).unwrap();
            for g in &garbage {
                if let Ok(Some(frame)) = dec.decode(g) {
                    prop_assert!(frame.is_consistent());
                }
            }
        }
    }
}
