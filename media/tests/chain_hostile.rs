//! Hostile RTP into the receive chain: random payload types, sequence numbers, timestamps,
//! payload sizes and bytes, arrival times that jump around, and random pull sizes. The chain
//! must never panic and must always return exactly the samples asked for.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use bytes::Bytes;
use proptest::prelude::*;
use std::time::{Duration, Instant};
use tandem_media::chain::AudioReceiveChain;
use tandem_media::codec::{CodecKind, CodecSpec};

fn codecs() -> Vec<CodecSpec> {
    vec![
        CodecSpec::from_rtpmap("opus", 48000, 2, 111, Some("useinbandfec=1")).unwrap(),
        CodecSpec::new(CodecKind::Pcmu, 0),
        CodecSpec::new(CodecKind::Pcma, 8),
        CodecSpec::new(CodecKind::G722, 9),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Packet {
        pt: u8,
        seq: u16,
        ts: u32,
        payload: Vec<u8>,
        advance_ms: u64,
    },
    Pull {
        samples: usize,
        advance_ms: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (
            prop::sample::select(vec![0u8, 8, 9, 111, 96, 101, 127]),
            any::<u16>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..400),
            0u64..50,
        )
            .prop_map(|(pt, seq, ts, payload, advance_ms)| Step::Packet {
                pt,
                seq,
                ts,
                payload,
                advance_ms
            }),
        (0usize..3000, 0u64..50).prop_map(|(samples, advance_ms)| Step::Pull {
            samples,
            advance_ms
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_traffic_never_breaks_the_contract(
        steps in prop::collection::vec(step(), 1..300),
        rate in prop::sample::select(vec![8000u32, 16000, 44100, 48000]),
    ) {
        let mut rx = AudioReceiveChain::new(codecs(), rate).unwrap();
        let base = Instant::now();
        let mut t = 0u64;
        let mut out = Vec::new();
        for s in steps {
            match s {
                Step::Packet { pt, seq, ts, payload, advance_ms } => {
                    t += advance_ms;
                    rx.push_rtp(base + Duration::from_millis(t), pt, seq, ts, Bytes::from(payload));
                }
                Step::Pull { samples, advance_ms } => {
                    t += advance_ms;
                    out.clear();
                    rx.pull(base + Duration::from_millis(t), samples, &mut out);
                    prop_assert_eq!(out.len(), samples);
                }
            }
        }
        let s = rx.stats();
        prop_assert!(s.jitter.buffered <= 100);
    }
}

#[test]
fn a_plausible_stream_with_garbage_mixed_in_still_plays() {
    // Valid PCMU packets every 20 ms, with random junk packets of the same PT interleaved
    // (wrong timestamps, odd sizes): the valid audio keeps flowing.
    let mut rx = AudioReceiveChain::new(codecs(), 8000).unwrap();
    let base = Instant::now();
    let mut out = Vec::new();
    let tone: Vec<u8> = (0..160)
        .map(|i| tandem_media::codec::linear_to_ulaw((8000.0 * (i as f32 * 0.785).sin()) as i16))
        .collect();
    let mut junk_seed = 12345u32;
    for k in 0..300u32 {
        let now = base + Duration::from_millis(u64::from(k) * 20);
        rx.push_rtp(now, 0, k as u16, 1000 + k * 160, Bytes::from(tone.clone()));
        junk_seed = junk_seed
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        if k % 7 == 3 {
            let len = (junk_seed >> 20) as usize % 500;
            rx.push_rtp(
                now,
                0,
                (junk_seed >> 8) as u16,
                junk_seed,
                Bytes::from(vec![0x55; len]),
            );
        }
        rx.pull(now, 160, &mut out);
    }
    let tail = &out[out.len() - 8000..];
    let loud = tail
        .chunks(160)
        .filter(|w| w.iter().map(|&v| i32::from(v).abs()).max().unwrap() > 4000)
        .count();
    assert!(
        loud >= 45,
        "only {loud} of 50 tail frames carry the tone: {:?}",
        rx.stats()
    );
}
