//! G.711 against the ITU-T G.711 reference tables and the behaviour of its concealment.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tandem_media::codec::{
    AudioDecoder, CodecKind, CodecSpec, G711Decoder, G711Law, alaw_to_linear, linear_to_alaw,
    linear_to_ulaw, new_decoder, new_encoder, ulaw_to_linear,
};

/// The first 16 entries of the classic µ-law and A-law expansion tables (G.711 Tables 1a/2a
/// as printed in the ITU reference software, code order 0x00..0x0F).
const ULAW_HEAD: [i16; 16] = [
    -32124, -31100, -30076, -29052, -28028, -27004, -25980, -24956, -23932, -22908, -21884, -20860,
    -19836, -18812, -17788, -16764,
];
const ALAW_HEAD: [i16; 16] = [
    -5504, -5248, -6016, -5760, -4480, -4224, -4992, -4736, -7552, -7296, -8064, -7808, -6528,
    -6272, -7040, -6784,
];

#[test]
fn expansion_tables_match_the_reference() {
    for (code, &v) in ULAW_HEAD.iter().enumerate() {
        assert_eq!(ulaw_to_linear(code as u8), v, "ulaw {code:#x}");
        // The positive half mirrors the negative one.
        assert_eq!(
            ulaw_to_linear(code as u8 | 0x80),
            -v,
            "ulaw {:#x}",
            code | 0x80
        );
    }
    for (code, &v) in ALAW_HEAD.iter().enumerate() {
        assert_eq!(alaw_to_linear(code as u8), v, "alaw {code:#x}");
        assert_eq!(
            alaw_to_linear(code as u8 | 0x80),
            -v,
            "alaw {:#x}",
            code | 0x80
        );
    }
    // Smallest magnitudes.
    assert_eq!(ulaw_to_linear(0xFE), 8);
    assert_eq!(ulaw_to_linear(0x7E), -8);
    assert_eq!(alaw_to_linear(0xD5), 8);
    assert_eq!(alaw_to_linear(0xD4), 24);
}

#[test]
fn compression_is_monotonic_and_within_a_step() {
    for (enc, dec) in [
        (
            linear_to_ulaw as fn(i16) -> u8,
            ulaw_to_linear as fn(u8) -> i16,
        ),
        (linear_to_alaw, alaw_to_linear),
    ] {
        // Sorted reconstruction levels; the step around a level bounds its error.
        let mut levels: Vec<i32> = (0..=255u8).map(|c| i32::from(dec(c))).collect();
        levels.sort_unstable();
        levels.dedup();
        let mut prev = i32::MIN;
        for s in i16::MIN..=i16::MAX {
            let y = i32::from(dec(enc(s)));
            assert!(y >= prev, "not monotonic at {s}");
            prev = y;
            let i = levels.binary_search(&y).unwrap();
            let below = if i > 0 { y - levels[i - 1] } else { 0 };
            let above = levels.get(i + 1).map_or(0, |l| l - y);
            let clip = if i == 0 || i == levels.len() - 1 {
                1024
            } else {
                0
            };
            // Decision levels lie within a step of each reconstruction level (segment ends
            // are not midpoints in G.711), plus the 13/14-bit input truncation.
            let err = (y - i32::from(s)).abs();
            assert!(err <= below.max(above) + clip + 8, "{s} -> {y}");
        }
    }
}

#[test]
fn codec_factory_round_trips() {
    let pcm: Vec<i16> = (0..160)
        .map(|i| ((i as f32 * 0.7).sin() * 12000.0) as i16)
        .collect();
    for kind in [CodecKind::Pcmu, CodecKind::Pcma] {
        let spec = CodecSpec::new(kind, if kind == CodecKind::Pcmu { 0 } else { 8 });
        let mut enc = new_encoder(&spec).unwrap();
        let mut dec = new_decoder(&spec).unwrap();
        assert_eq!((enc.pcm_rate(), dec.pcm_rate()), (8000, 8000));
        let mut payload = Vec::new();
        enc.encode(&pcm, &mut payload).unwrap();
        assert_eq!(payload.len(), 160);
        assert_eq!(dec.packet_samples(&payload), Some(160));
        let mut out = Vec::new();
        dec.decode(&payload, &mut out).unwrap();
        let err: f64 = pcm
            .iter()
            .zip(&out)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>();
        let sig: f64 = pcm.iter().map(|&a| f64::from(a).powi(2)).sum();
        assert!(
            10.0 * (sig / err).log10() > 30.0,
            "{kind:?}: G.711 SNR too low"
        );
        let mut fec = Vec::new();
        assert!(!dec.decode_fec(&payload, 160, &mut fec));
        assert!(fec.is_empty());
    }
}

/// A voiced-speech-like signal: harmonics of a slowly gliding 120..160 Hz pitch.
fn voiced(n: usize) -> Vec<i16> {
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let f0 = 140.0 + 20.0 * (i as f64 / 8000.0 * 0.5 * std::f64::consts::TAU).sin();
            phase += std::f64::consts::TAU * f0 / 8000.0;
            let v: f64 = (1..=8).map(|h| (phase * h as f64).sin() / h as f64).sum();
            (v * 5000.0) as i16
        })
        .collect()
}

#[test]
fn concealment_beats_silence_and_has_no_clicks() {
    let signal = voiced(8000 * 10);
    let mut rng = StdRng::seed_from_u64(7);
    let mut enc = G711Decoder::new(G711Law::MuLaw);
    let mut encoder = new_encoder(&CodecSpec::new(CodecKind::Pcmu, 0)).unwrap();
    let (mut err_plc, mut err_zero, mut lost_frames) = (0.0f64, 0.0f64, 0);
    let mut out = Vec::new();
    let mut payload = Vec::new();
    let mut worst_jump = 0i32;
    for frame in signal.chunks_exact(160) {
        encoder.encode(frame, &mut payload).unwrap();
        let start = out.len();
        if rng.random_bool(0.1) {
            enc.conceal(160, &mut out);
            lost_frames += 1;
            for (a, b) in frame.iter().zip(&out[start..]) {
                err_plc += f64::from(a - b).powi(2);
                err_zero += f64::from(*a).powi(2);
            }
        } else {
            enc.decode(&payload, &mut out).unwrap();
        }
        if start > 0 {
            let jump = (i32::from(out[start]) - i32::from(out[start - 1])).abs();
            worst_jump = worst_jump.max(jump);
        }
    }
    assert!(lost_frames > 50);
    let gain_db = 10.0 * (err_zero / err_plc).log10();
    eprintln!("PLC gain over silence: {gain_db:.1} dB, worst boundary jump {worst_jump}");
    assert!(
        gain_db > 6.0,
        "PLC only {gain_db:.1} dB better than silence"
    );
    // The signal's own largest sample step is about 5000 * 2π * Σ f/h ≈ 3500; a click
    // (concealment starting or ending out of phase) would jump far more.
    let own = signal
        .windows(2)
        .map(|w| (i32::from(w[0]) - i32::from(w[1])).abs())
        .max()
        .unwrap();
    assert!(
        worst_jump <= own + own / 4,
        "boundary jump {worst_jump} vs signal step {own}"
    );
}

#[test]
fn long_losses_fade_to_silence_and_recover() {
    let signal = voiced(8000);
    let mut dec = G711Decoder::new(G711Law::ALaw);
    let mut enc = new_encoder(&CodecSpec::new(CodecKind::Pcma, 8)).unwrap();
    let mut payload = Vec::new();
    let mut out = Vec::new();
    for frame in signal[..4000].chunks_exact(160) {
        enc.encode(frame, &mut payload).unwrap();
        dec.decode(&payload, &mut out).unwrap();
    }
    let mut concealed = Vec::new();
    dec.conceal(800, &mut concealed); // 100 ms
    let rms =
        |x: &[i16]| (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
    assert!(
        rms(&concealed[..80]) > 1500.0,
        "the first 10 ms continue the voice"
    );
    assert!(
        rms(&concealed[240..320]) < rms(&concealed[..80]),
        "then it fades"
    );
    assert!(
        concealed[480..].iter().all(|&v| v == 0),
        "silent after 60 ms"
    );
    // Recovery: the next good frame fades in from silence without a click.
    enc.encode(&signal[4800..4960], &mut payload).unwrap();
    let mut back = Vec::new();
    dec.decode(&payload, &mut back).unwrap();
    assert!(
        back[0].abs() < 500,
        "fade-in starts near silence: {}",
        back[0]
    );
    assert!(rms(&back[80..]) > 1000.0);
}
