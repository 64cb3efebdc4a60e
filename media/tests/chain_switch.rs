//! Receive/send chain contract: exact output sizes, silence before the first packet, unknown
//! payload types, decoder switches on payload-type change, re-INVITE codec changes, ptime.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use bytes::Bytes;
use std::time::{Duration, Instant};
use tandem_media::chain::{AudioReceiveChain, AudioSendChain, ChainError, effective_ptime};
use tandem_media::codec::{CodecKind, CodecSpec};

fn opus() -> CodecSpec {
    CodecSpec::from_rtpmap("opus", 48000, 2, 111, Some("useinbandfec=1")).unwrap()
}

fn tone(freq: f64, rate: u32, n: usize, offset: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            (9000.0 * (std::f64::consts::TAU * freq * (i + offset) as f64 / f64::from(rate)).sin())
                as i16
        })
        .collect()
}

fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

#[test]
fn always_yields_the_requested_samples() {
    let mut rx = AudioReceiveChain::new(vec![CodecSpec::new(CodecKind::Pcmu, 0)], 44_100).unwrap();
    let now = Instant::now();
    let mut out = vec![7i16; 3]; // pull appends
    for n in [441usize, 1, 0, 1000, 4410] {
        let before = out.len();
        rx.pull(now, n, &mut out);
        assert_eq!(out.len() - before, n);
    }
    // Silence before the first packet.
    assert!(out[3..].iter().all(|&s| s == 0));
    assert_eq!(&out[..3], &[7, 7, 7]);
    assert!(matches!(
        AudioReceiveChain::new(vec![], 8000),
        Err(ChainError::NoCodecs)
    ));
    assert!(AudioReceiveChain::new(vec![opus()], 0).is_err());
}

#[test]
fn unknown_payload_types_are_counted_and_dropped() {
    let mut rx = AudioReceiveChain::new(vec![CodecSpec::new(CodecKind::Pcma, 8)], 8000).unwrap();
    let now = Instant::now();
    rx.push_rtp(now, 0, 1, 160, Bytes::from(vec![0xD5; 160]));
    rx.push_rtp(now, 101, 2, 320, Bytes::from_static(&[1, 0, 0, 160]));
    let s = rx.stats();
    assert_eq!((s.unknown_pt, s.packets, s.codec), (2, 0, None));
}

/// RTP state of the simulated sender and the virtual clock.
struct Link {
    base: Instant,
    seq: u16,
    ts: u32,
    t_ms: u64,
}

/// Runs a send chain into a receive chain for `frames` 20 ms frames on a clean network.
fn stream(
    tx: &mut AudioSendChain,
    rx: &mut AudioReceiveChain,
    pt: u8,
    link: &mut Link,
    frames: usize,
    out: &mut Vec<i16>,
) {
    let dev_frame = 960; // 20 ms at 48 kHz on both sides
    for _ in 0..frames {
        let now = link.base + Duration::from_millis(link.t_ms);
        tx.push(&tone(440.0, 48_000, dev_frame, (link.t_ms as usize) * 48));
        while let Some(f) = tx.next_payload() {
            if !f.payload.is_empty() {
                rx.push_rtp(now, pt, link.seq, link.ts, f.payload);
            }
            link.seq = link.seq.wrapping_add(1);
            link.ts = link.ts.wrapping_add(f.samples);
        }
        rx.pull(now, dev_frame, out);
        link.t_ms += 20;
    }
}

#[test]
fn payload_type_change_switches_the_decoder() {
    let pcmu = CodecSpec::new(CodecKind::Pcmu, 0);
    let mut rx = AudioReceiveChain::new(vec![opus(), pcmu.clone()], 48_000).unwrap();
    let mut tx = AudioSendChain::new(&opus(), 48_000, Duration::from_millis(20)).unwrap();
    let mut link = Link {
        base: Instant::now(),
        seq: 100,
        ts: 5000,
        t_ms: 0,
    };
    let mut out = Vec::new();
    stream(&mut tx, &mut rx, 111, &mut link, 50, &mut out);
    assert_eq!(rx.stats().codec, Some("opus"));
    assert!(rms(&out[out.len() - 9600..]) > 3000.0, "opus audio flows");
    // re-INVITE: the sender moves to PCMU (8 kHz RTP clock, new timestamps).
    tx.set_codec(&pcmu).unwrap();
    assert_eq!(tx.frame_timestamp_units(), 160);
    link.ts = 77;
    stream(&mut tx, &mut rx, 0, &mut link, 50, &mut out);
    let s = rx.stats();
    assert_eq!(s.codec, Some("PCMU"));
    assert_eq!(s.codec_switches, 1);
    assert!(
        s.jitter.received >= 95,
        "counters survive the switch: {s:?}"
    );
    assert!(rms(&out[out.len() - 9600..]) > 3000.0, "PCMU audio flows");
    assert_eq!(out.len(), 100 * 960);
}

#[test]
fn send_chain_frames_and_resamples() {
    let mut tx = AudioSendChain::new(
        &CodecSpec::new(CodecKind::Pcma, 8),
        44_100,
        Duration::from_millis(30),
    )
    .unwrap();
    assert_eq!(tx.ptime(), Duration::from_millis(30));
    assert_eq!(tx.frame_timestamp_units(), 240);
    // 1 s of 44.1 kHz capture in odd chunks gives 33 frames of 240 bytes (minus filter delay).
    let input = tone(1000.0, 44_100, 44_100, 0);
    let mut frames = Vec::new();
    for c in input.chunks(313) {
        tx.push(c);
        while let Some(f) = tx.next_payload() {
            assert_eq!(f.samples, 240);
            assert_eq!(f.payload.len(), 240);
            frames.push(f);
        }
    }
    assert_eq!(frames.len(), 33);
    assert!(tx.next_payload().is_none());
    // Opus cannot do 30 ms: 20 ms is used.
    assert_eq!(
        effective_ptime(CodecKind::Opus, Duration::from_millis(30)),
        Duration::from_millis(20)
    );
    let mut o = AudioSendChain::new(&opus(), 48_000, Duration::from_millis(30)).unwrap();
    assert_eq!(o.frame_timestamp_units(), 960);
    o.push(&[0; 960]);
    assert!(o.next_payload().is_some());
    assert!(AudioSendChain::new(&opus(), 0, Duration::from_millis(20)).is_err());
    assert!(AudioSendChain::new(&opus(), 48_000, Duration::ZERO).is_err());
}

#[test]
fn dtx_frames_advance_the_timestamp_with_empty_payloads() {
    let spec = CodecSpec::from_rtpmap("opus", 48000, 2, 111, Some("usedtx=1")).unwrap();
    let mut tx = AudioSendChain::new(&spec, 16_000, Duration::from_millis(20)).unwrap();
    let mut empty = 0;
    let mut total = 0;
    for _ in 0..100 {
        tx.push(&[0; 320]);
        while let Some(f) = tx.next_payload() {
            assert_eq!(f.samples, 960);
            total += 1;
            if f.payload.is_empty() {
                empty += 1;
            }
        }
    }
    assert!(total >= 98);
    assert!(empty > 50, "{empty}");
}

/// Milliseconds from a tone onset at the capture side to its onset at the playback side,
/// with 10 ms device frames at 48 kHz and no network delay or jitter.
fn pipeline_delay_ms(spec: CodecSpec) -> f64 {
    let pt = spec.payload_type;
    let mut tx = AudioSendChain::new(&spec, 48_000, Duration::from_millis(20)).unwrap();
    let mut rx = AudioReceiveChain::new(vec![spec], 48_000).unwrap();
    let base = Instant::now();
    let (mut seq, mut ts) = (0u16, 0u32);
    let mut out = Vec::new();
    for k in 0..100u64 {
        let now = base + Duration::from_millis(k * 10);
        let pcm = if k >= 50 {
            tone(1000.0, 48_000, 480, 0)
        } else {
            vec![0; 480]
        };
        tx.push(&pcm);
        while let Some(f) = tx.next_payload() {
            rx.push_rtp(now, pt, seq, ts, f.payload);
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(f.samples);
        }
        rx.pull(now, 480, &mut out);
    }
    let onset_out = out.iter().position(|&s| s.abs() > 2000).unwrap();
    (onset_out - 50 * 480) as f64 / 48.0
}

#[test]
fn pipeline_delay_on_a_clean_path_is_small() {
    // Packetisation (20 ms) + jitter buffer minimum (20 ms) + device frame granularity
    // (10 ms) + codec/resampler delays.
    let opus = pipeline_delay_ms(opus());
    let pcmu = pipeline_delay_ms(CodecSpec::new(CodecKind::Pcmu, 0));
    eprintln!("pipeline delay: opus {opus:.1} ms, PCMU (with 48k<->8k resampling) {pcmu:.1} ms");
    assert!(opus <= 45.0, "opus pipeline delay {opus} ms");
    assert!(pcmu <= 45.0, "PCMU pipeline delay {pcmu} ms");
}

#[test]
fn a_silent_peer_fades_to_silence() {
    for spec in [
        opus(),
        CodecSpec::new(CodecKind::Pcmu, 0),
        CodecSpec::new(CodecKind::G722, 9),
    ] {
        let name = spec.name();
        let pt = spec.payload_type;
        let mut tx = AudioSendChain::new(&spec, 48_000, Duration::from_millis(20)).unwrap();
        let mut rx = AudioReceiveChain::new(vec![spec], 48_000).unwrap();
        let base = Instant::now();
        let (mut seq, mut ts) = (0u16, 0u32);
        let mut out = Vec::new();
        for k in 0..150u64 {
            let now = base + Duration::from_millis(k * 20);
            // The peer talks for 1 s, then stops sending (hold, or it died).
            if k < 50 {
                tx.push(&tone(440.0, 48_000, 960, k as usize * 960));
                while let Some(f) = tx.next_payload() {
                    rx.push_rtp(now, pt, seq, ts, f.payload);
                    seq = seq.wrapping_add(1);
                    ts = ts.wrapping_add(f.samples);
                }
            }
            rx.pull(now, 960, &mut out);
        }
        assert!(
            rms(&out[40 * 960..45 * 960]) > 3000.0,
            "{name}: audio while sending"
        );
        // Well after the last packet (plus the jitter delay): nothing but silence.
        assert!(
            out[70 * 960..].iter().all(|&s| s == 0),
            "{name}: PLC goes on during silence"
        );
        let s = rx.stats();
        assert!(s.concealed_ms >= 1000, "{name}: {s:?}");
    }
}
