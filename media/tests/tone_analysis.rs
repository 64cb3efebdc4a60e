//! Tone generation and analysis: sub-bin frequency accuracy, SNR, RMS, activity segments, gaps.

use std::time::Duration;

use tandem_media::tone::{
    Segment, SineGenerator, active_segments, analyze, longest_gap, rms, sine, write_tone_wav,
};
use tandem_media::wav::read_wav;

/// Deterministic white noise (xorshift) with the given peak amplitude.
fn noise(n: usize, peak: f64, seed: u64) -> Vec<f64> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * peak
        })
        .collect()
}

#[test]
fn dominant_frequency_is_accurate_between_bins() {
    for (freq, rate) in [
        (440.0f32, 8000u32),
        (440.3, 48_000),
        (1000.0, 16_000),
        (97.7, 8000),
        (3333.3, 48_000),
        (1234.5, 44_100),
    ] {
        let pcm = sine(freq, rate, Duration::from_secs(2), 0.5);
        let a = analyze(&pcm, rate);
        assert!(
            (a.dominant_hz - freq).abs() < 0.25,
            "{freq} Hz at {rate}: {a:?}"
        );
        assert!(a.snr_db > 60.0, "{freq} Hz at {rate}: {a:?}");
        // RMS of a sine at half scale is 0.5 * 32767 / sqrt(2).
        assert!((a.rms - 11585.0).abs() < 30.0, "{a:?}");
    }
    // A short 100 ms burst still lands within a few Hz.
    let pcm = sine(440.0, 8000, Duration::from_millis(100), 0.3);
    let a = analyze(&pcm, 8000);
    assert!((a.dominant_hz - 440.0).abs() < 4.0, "{a:?}");
}

#[test]
fn snr_reflects_added_noise() {
    let rate = 8000;
    let clean = sine(440.0, rate, Duration::from_secs(2), 0.5);
    // Uniform noise of peak p has RMS p / sqrt(3); pick SNR = 20 dB -> noise RMS = 1158.5.
    let n = noise(clean.len(), 1158.5 * 3f64.sqrt(), 7);
    let noisy: Vec<i16> = clean
        .iter()
        .zip(&n)
        .map(|(&s, &e)| (f64::from(s) + e).round() as i16)
        .collect();
    let a = analyze(&noisy, rate);
    assert!((a.dominant_hz - 440.0).abs() < 0.5, "{a:?}");
    // The noise inside the +-2 % band and below 20 Hz is a small fraction; expect about 20 dB.
    assert!((a.snr_db - 20.0).abs() < 1.5, "{a:?}");

    // Pure noise has no meaningful tone: SNR far below zero.
    let only: Vec<i16> = noise(16_000, 8000.0, 3).iter().map(|&v| v as i16).collect();
    assert!(analyze(&only, rate).snr_db < -5.0);
}

#[test]
fn louder_of_two_tones_wins() {
    let rate = 48_000;
    let a = sine(600.0, rate, Duration::from_secs(1), 0.2);
    let b = sine(1500.0, rate, Duration::from_secs(1), 0.6);
    let mix: Vec<i16> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| x.saturating_add(*y))
        .collect();
    let r = analyze(&mix, rate);
    assert!((r.dominant_hz - 1500.0).abs() < 0.5, "{r:?}");
    // Power ratio 9:1 -> about 9.5 dB.
    assert!((r.snr_db - 9.54).abs() < 0.5, "{r:?}");
}

#[test]
fn silence_and_tiny_inputs() {
    let a = analyze(&[0; 8000], 8000);
    assert_eq!(a.dominant_hz, 0.0);
    assert_eq!(a.snr_db, f32::NEG_INFINITY);
    assert_eq!(a.rms, 0.0);
    let a = analyze(&[100; 10], 8000);
    assert_eq!(a.dominant_hz, 0.0);
    // A DC offset is not a tone.
    let a = analyze(&[5000; 8000], 8000);
    assert_eq!(a.dominant_hz, 0.0);
    assert_eq!(
        analyze(&sine(440.0, 8000, Duration::from_secs(1), 0.5), 0).dominant_hz,
        0.0
    );
    assert_eq!(rms(&[]), 0.0);
    assert_eq!(rms(&[3, -3, 3, -3]), 3.0);
}

#[test]
fn generator_is_phase_continuous_across_frames() {
    let whole = sine(440.0, 8000, Duration::from_millis(200), 0.7);
    let mut g = SineGenerator::new(440.0, 8000, 0.7);
    let mut pieces = Vec::new();
    let mut frame = [0i16; 160];
    for _ in 0..10 {
        g.fill(&mut frame);
        pieces.extend_from_slice(&frame);
    }
    assert_eq!(pieces.len(), whole.len());
    for (a, b) in pieces.iter().zip(&whole) {
        assert!((i32::from(*a) - i32::from(*b)).abs() <= 1);
    }
    // Amplitude is clamped to full scale.
    let loud = sine(100.0, 8000, Duration::from_millis(100), 4.0);
    assert_eq!(loud.iter().max(), Some(&32767));
}

#[test]
fn tone_wav_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.wav");
    write_tone_wav(&path, 440.0, 8000, 1.5).unwrap();
    let (rate, pcm) = read_wav(&path).unwrap();
    assert_eq!((rate, pcm.len()), (8000, 12_000));
    let a = analyze(&pcm, rate);
    assert!((a.dominant_hz - 440.0).abs() < 0.2);
}

/// 1 s tone, 0.3 s silence, 0.5 s tone, 0.05 s silence, 0.2 s tone at 8 kHz.
fn gappy() -> Vec<i16> {
    let ms = |m| Duration::from_millis(m);
    let mut pcm = sine(440.0, 8000, ms(1000), 0.5);
    pcm.extend(vec![0; 2400]);
    pcm.extend(sine(440.0, 8000, ms(500), 0.5));
    pcm.extend(vec![0; 400]);
    pcm.extend(sine(440.0, 8000, ms(200), 0.5));
    pcm
}

#[test]
fn active_segments_follow_the_tone() {
    let segs = active_segments(&gappy(), 8000, Duration::from_millis(10), 1000.0);
    let ms = |m| Duration::from_millis(m);
    assert_eq!(
        segs,
        vec![
            Segment {
                start: ms(0),
                end: ms(1000)
            },
            Segment {
                start: ms(1300),
                end: ms(1800)
            },
            Segment {
                start: ms(1850),
                end: ms(2050)
            },
        ]
    );
    assert_eq!(segs[1].duration(), ms(500));
    assert!(active_segments(&[0; 800], 8000, ms(10), 1.0).is_empty());
}

#[test]
fn longest_gap_with_skips() {
    let ms = |m| Duration::from_millis(m);
    let pcm = gappy();
    assert_eq!(
        longest_gap(&pcm, 8000, ms(10), 1000.0, ms(0), ms(0)),
        ms(300)
    );
    // Skip past the first gap: only the 50 ms one remains.
    assert_eq!(
        longest_gap(&pcm, 8000, ms(10), 1000.0, ms(1400), ms(0)),
        ms(50)
    );
    // Leading silence is counted unless skipped.
    let mut lead = vec![0i16; 4000];
    lead.extend(sine(440.0, 8000, ms(1000), 0.5));
    assert_eq!(
        longest_gap(&lead, 8000, ms(10), 1000.0, ms(0), ms(0)),
        ms(500)
    );
    assert_eq!(
        longest_gap(&lead, 8000, ms(10), 1000.0, ms(600), ms(0)),
        ms(0)
    );
    // Trailing silence likewise, with skip_end.
    let mut trail = sine(440.0, 8000, ms(1000), 0.5);
    trail.extend(vec![0i16; 1600]);
    assert_eq!(
        longest_gap(&trail, 8000, ms(10), 1000.0, ms(0), ms(0)),
        ms(200)
    );
    assert_eq!(
        longest_gap(&trail, 8000, ms(10), 1000.0, ms(0), ms(250)),
        ms(0)
    );
    // Skipping everything leaves nothing.
    assert_eq!(
        longest_gap(&trail, 8000, ms(10), 1000.0, ms(2000), ms(2000)),
        ms(0)
    );
}

mod properties {
    use std::time::Duration;

    use proptest::prelude::*;
    use tandem_media::tone::{active_segments, analyze, longest_gap, sine};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn any_clean_tone_is_found(
            rate in prop::sample::select(vec![8000u32, 16_000, 44_100, 48_000]),
            frac in 0.01f32..0.45,
            amplitude in 0.01f32..1.0,
        ) {
            let freq = (rate as f32 * frac).max(60.0);
            let pcm = sine(freq, rate, Duration::from_millis(1000), amplitude);
            let a = analyze(&pcm, rate);
            prop_assert!((a.dominant_hz - freq).abs() < 0.5, "{} Hz at {}: {:?}", freq, rate, a);
            prop_assert!(a.snr_db > 40.0, "{} Hz at {}: {:?}", freq, rate, a);
        }

        #[test]
        fn segments_are_ordered_and_gaps_bounded(
            pcm in proptest::collection::vec(any::<i16>(), 0..4000),
            window_ms in 1u64..50,
            threshold in 0f32..20_000.0,
        ) {
            let window = Duration::from_millis(window_ms);
            let segs = active_segments(&pcm, 8000, window, threshold);
            let total = Duration::from_secs_f64(pcm.len() as f64 / 8000.0);
            let mut last_end = Duration::ZERO;
            for s in &segs {
                prop_assert!(s.start >= last_end && s.end > s.start && s.end <= total);
                last_end = s.end;
            }
            let gap = longest_gap(&pcm, 8000, window, threshold, Duration::ZERO, Duration::ZERO);
            prop_assert!(gap <= total);
        }
    }
}
