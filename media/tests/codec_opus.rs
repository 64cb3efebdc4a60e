//! Opus through libopus: frame sizes, in-band FEC recovery, DTX, PLC and hostile payloads.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tandem_media::codec::{
    AudioDecoder, AudioEncoder, CodecSpec, OpusDecoder, OpusEncoder, OpusParams, new_decoder,
    new_encoder,
};

fn goertzel(x: &[i16], rate: f64, freq: f64) -> f64 {
    let w = std::f64::consts::TAU * freq / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    2.0 * (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (x.len() as f64).powi(2)
}

fn tone(freq: f64, n: usize, offset: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            (8000.0 * (std::f64::consts::TAU * freq * (i + offset) as f64 / 48000.0).sin()) as i16
        })
        .collect()
}

/// Speech-like: harmonics of 180 Hz with a syllable-rate envelope.
fn voiced(n: usize, offset: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = (i + offset) as f64 / 48000.0;
            let env = 0.6 + 0.4 * (std::f64::consts::TAU * 3.0 * t).sin();
            let v: f64 = (1..=10)
                .map(|h| (std::f64::consts::TAU * 180.0 * h as f64 * t).sin() / h as f64)
                .sum();
            (v * 4000.0 * env) as i16
        })
        .collect()
}

fn snr_db(reference: &[i16], test: &[i16]) -> f64 {
    let sig: f64 = reference.iter().map(|&v| f64::from(v).powi(2)).sum();
    let err: f64 = reference
        .iter()
        .zip(test)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum();
    10.0 * (sig / err.max(1.0)).log10()
}

#[test]
fn every_frame_size_round_trips() {
    for ms in [10usize, 20, 40, 60] {
        let n = 48 * ms;
        let mut enc = OpusEncoder::new(&OpusParams::default()).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        let mut payload = Vec::new();
        for k in 0..(1200 / ms) {
            enc.encode(&tone(1000.0, n, k * n), &mut payload).unwrap();
            assert_eq!(dec.packet_samples(&payload), Some(n), "{ms} ms");
            dec.decode(&payload, &mut out).unwrap();
        }
        assert_eq!(out.len(), 57_600);
        let body = &out[9600..];
        let p1k = goertzel(body, 48000.0, 1000.0);
        let total: f64 =
            body.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / body.len() as f64;
        assert!(p1k / total > 0.9, "{ms} ms: tone fraction {}", p1k / total);
        assert!(goertzel(body, 48000.0, 1200.0) < p1k / 100.0);
    }
}

#[test]
fn in_band_fec_recovers_a_lost_packet_better_than_plc() {
    let spec = CodecSpec::from_rtpmap("opus", 48000, 2, 111, Some("useinbandfec=1")).unwrap();
    let mut enc = new_encoder(&spec).unwrap();
    enc.set_expected_loss(20);
    let frames: Vec<Vec<i16>> = (0..60).map(|k| voiced(960, k * 960)).collect();
    let payloads: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut p = Vec::new();
            enc.encode(f, &mut p).unwrap();
            p
        })
        .collect();
    let lost = 40;
    // Decoder A: FEC from packet 41; decoder B: PLC only.
    let mut a = new_decoder(&spec).unwrap();
    let mut b = new_decoder(&spec).unwrap();
    let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
    for (k, p) in payloads.iter().enumerate() {
        if k == lost {
            assert!(
                a.decode_fec(&payloads[k + 1], 960, &mut out_a),
                "no FEC in packet {}",
                k + 1
            );
            b.conceal(960, &mut out_b);
        } else {
            a.decode(p, &mut out_a).unwrap();
            b.decode(p, &mut out_b).unwrap();
        }
    }
    assert_eq!(out_a.len(), out_b.len());
    // Compare the recovered frame with what the decoder gives when nothing is lost.
    let mut c = new_decoder(&spec).unwrap();
    let mut clean = Vec::new();
    for p in &payloads {
        c.decode(p, &mut clean).unwrap();
    }
    let r = lost * 960..(lost + 1) * 960;
    let fec = snr_db(&clean[r.clone()], &out_a[r.clone()]);
    let plc = snr_db(&clean[r.clone()], &out_b[r]);
    assert!(
        fec > plc + 3.0 && fec > 3.0,
        "FEC {fec:.1} dB vs PLC {plc:.1} dB"
    );
    // FEC needs a packet that carries it: a CELT-only packet (TOC config >= 16) is refused.
    let celt_toc = [0xF8u8, 0xFF, 0xFE];
    assert!(!a.decode_fec(&celt_toc, 960, &mut out_a));
}

#[test]
fn dtx_stops_sending_in_silence() {
    let spec = CodecSpec::from_rtpmap("opus", 48000, 2, 111, Some("usedtx=1")).unwrap();
    let mut enc = new_encoder(&spec).unwrap();
    let mut payload = Vec::new();
    let mut empty = 0;
    for _ in 0..100 {
        enc.encode(&[0i16; 960], &mut payload).unwrap();
        if payload.is_empty() {
            empty += 1;
        }
    }
    assert!(empty > 50, "only {empty} of 100 silent frames suppressed");
    // Without DTX every frame is sent.
    let mut enc =
        new_encoder(&CodecSpec::from_rtpmap("opus", 48000, 2, 111, None).unwrap()).unwrap();
    for _ in 0..50 {
        enc.encode(&[0i16; 960], &mut payload).unwrap();
        assert!(!payload.is_empty());
    }
}

#[test]
fn plc_continues_and_stays_bounded() {
    let mut enc = OpusEncoder::new(&OpusParams::default()).unwrap();
    let mut dec = OpusDecoder::new().unwrap();
    let mut payload = Vec::new();
    let mut out = Vec::new();
    for k in 0..25 {
        enc.encode(&voiced(960, k * 960), &mut payload).unwrap();
        dec.decode(&payload, &mut out).unwrap();
    }
    let rms =
        |x: &[i16]| (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
    let before = rms(&out[out.len() - 960..]);
    let mut plc = Vec::new();
    dec.conceal(960, &mut plc);
    assert_eq!(plc.len(), 960);
    assert!(rms(&plc) > before * 0.2, "PLC is not silence");
    // Long losses stay bounded (libopus fades to its comfort level, it does not blow up).
    for _ in 0..20 {
        dec.conceal(960, &mut plc);
    }
    assert!(plc.chunks(960).all(|f| rms(f) < before * 3.0));
    // Odd sizes are produced exactly.
    let mut odd = Vec::new();
    dec.conceal(333, &mut odd);
    assert_eq!(odd.len(), 333);
}

#[test]
fn hostile_payloads_do_not_panic() {
    let mut dec = OpusDecoder::new().unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let mut out = Vec::new();
    let mut errors = 0;
    for _ in 0..2000 {
        let len = rng.random_range(0..300);
        let p: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if let Some(n) = dec.packet_samples(&p) {
            assert!(n <= 5760);
        }
        out.clear();
        match dec.decode(&p, &mut out) {
            Ok(()) => assert!(out.len() <= 5760),
            Err(_) => errors += 1,
        }
        let _ = dec.decode_fec(&p, 960, &mut out);
    }
    assert!(errors > 0, "random bytes should mostly be rejected");
    // Wrong-size input frames are an error, not a panic.
    let mut enc = OpusEncoder::new(&OpusParams::default()).unwrap();
    let mut payload = Vec::new();
    assert!(enc.encode(&[0; 1000], &mut payload).is_err());
    assert!(enc.encode(&[], &mut payload).is_err());
}
