//! Property tests: the WAV parser never panics on arbitrary or mutated input, and 16-bit mono
//! files round-trip exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use proptest::prelude::*;
use tandem_media::wav::{parse_wav_bytes, read_wav, write_wav};

fn valid_file(samples: &[i16], rate: u32) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.wav");
    write_wav(&path, rate, samples).unwrap();
    std::fs::read(&path).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_wav_bytes(&bytes);
    }

    #[test]
    fn arbitrary_chunks_after_a_riff_header_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = b"RIFF\0\0\0\0WAVE".to_vec();
        bytes.extend_from_slice(&tail);
        let _ = parse_wav_bytes(&bytes);
    }

    #[test]
    fn mutated_valid_files_never_panic(
        samples in proptest::collection::vec(any::<i16>(), 0..64),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = valid_file(&samples, 8000);
        for (at, v) in edits {
            let i = at % bytes.len();
            bytes[i] = v;
        }
        let keep = cut % (bytes.len() + 1);
        bytes.truncate(keep);
        if let Ok((fmt, pcm)) = parse_wav_bytes(&bytes) {
            // Whatever was accepted is self-consistent.
            prop_assert!(fmt.channels > 0 && fmt.rate > 0);
            prop_assert!(pcm.len() * usize::from(fmt.channels) * usize::from(fmt.bits / 8) <= bytes.len());
        }
    }

    #[test]
    fn sixteen_bit_round_trip(
        samples in proptest::collection::vec(any::<i16>(), 0..2000),
        rate in 1u32..200_000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.wav");
        write_wav(&path, rate, &samples).unwrap();
        let (r, back) = read_wav(&path).unwrap();
        prop_assert_eq!(r, rate);
        prop_assert_eq!(back, samples);
    }
}
