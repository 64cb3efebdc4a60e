//! Real bitstreams through the whole receive path on a virtual clock: encoder -> packetizer ->
//! RTP -> lossy network -> frame assembler -> decoder, with NACKs and PLIs carried as RTCP
//! feedback bytes and retransmissions served from the send history. The decoded frame counter
//! must advance exactly (with retransmission) or resume after a keyframe (without).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::time::{Duration, Instant};

use tandem_media::rtp::{RtpHeader, RtpPacket};
use tandem_video::assembler::{AssemblerConfig, FrameAssembler};
use tandem_video::codec::{EncoderConfig, VideoCodecKind, available, new_decoder, new_encoder};
use tandem_video::counter::read_counter;
use tandem_video::feedback::{Feedback, parse_feedback, write_feedback};
use tandem_video::history::SendHistory;
use tandem_video::rtp::packetizer;
use tandem_video::source::PatternSource;

const FPS: u32 = 15;
const FRAMES: u32 = 45;
const SSRC: u32 = 0x5eed_0001;

#[derive(Default, Debug)]
struct Outcome {
    counters: Vec<u32>,
    keyframes_sent: u32,
    plis: u32,
    nacked: u32,
    retransmitted: u32,
    decode_errors: u32,
}

/// Runs `FRAMES` frames; `lose(i)` says whether the i-th original packet is lost (never a
/// retransmission); `retransmit` serves NACKs from the history.
fn run(
    kind: VideoCodecKind,
    first_seq: u16,
    lose: impl Fn(usize) -> bool,
    retransmit: bool,
) -> Outcome {
    let source = PatternSource::new(160, 120, FPS).unwrap();
    let mut encoder = new_encoder(
        kind,
        EncoderConfig {
            width: 160,
            height: 120,
            fps: FPS,
            bitrate_bps: 250_000,
        },
    )
    .unwrap();
    let mut decoder = new_decoder(kind).unwrap();
    let mut packetizer = packetizer(kind);
    let mut history = SendHistory::new(1024, Duration::from_secs(2));
    let mut assembler = FrameAssembler::new(kind, AssemblerConfig::default());
    let mut out = Outcome::default();
    let t0 = Instant::now();
    let frame_time = Duration::from_secs(1) / FPS;
    let rtt = Duration::from_millis(20);
    let mut seq = first_seq;
    let mut sent = 0usize;
    let mut force_key = false;
    let deliver = |assembler: &mut FrameAssembler, now: Instant, bytes: &[u8]| {
        let packet = RtpPacket::parse(bytes).unwrap();
        assembler.insert(now, &packet);
    };
    for n in 0..FRAMES {
        let now = t0 + frame_time * n;
        let frame = source.frame(n).unwrap();
        if let Some(encoded) = encoder
            .encode(&frame, std::mem::take(&mut force_key))
            .unwrap()
        {
            out.keyframes_sent += u32::from(encoded.keyframe);
            // A small MTU so that frames span many packets (FU-A, VP8 continuation packets).
            let payloads = packetizer.packetize(&encoded, 300).unwrap();
            let count = payloads.len();
            for (i, payload) in payloads.into_iter().enumerate() {
                let bytes = RtpPacket {
                    header: RtpHeader {
                        marker: i + 1 == count,
                        payload_type: 96,
                        sequence: seq,
                        timestamp: n * (90_000 / FPS),
                        ssrc: SSRC,
                        csrc: Vec::new(),
                    },
                    payload: payload.into(),
                }
                .to_bytes();
                history.push(now, seq, bytes.clone());
                seq = seq.wrapping_add(1);
                if !lose(sent) {
                    deliver(&mut assembler, now, &bytes);
                }
                sent += 1;
            }
        }
        // The receiver's timer ticks three times per frame interval.
        for tick in 0..3 {
            let now = now + frame_time * tick / 3;
            let mut rtcp = Vec::new();
            let seqs = assembler.nacks(now, rtt);
            out.nacked += seqs.len() as u32;
            write_feedback(
                &mut rtcp,
                &Feedback::Nack {
                    sender_ssrc: 2,
                    media_ssrc: SSRC,
                    seqs,
                },
            );
            if assembler.take_keyframe_request() {
                write_feedback(
                    &mut rtcp,
                    &Feedback::Pli {
                        sender_ssrc: 2,
                        media_ssrc: SSRC,
                    },
                );
            }
            // The sender reads the feedback.
            for fb in parse_feedback(&rtcp) {
                match fb {
                    Feedback::Nack { seqs, .. } if retransmit => {
                        for s in seqs {
                            if let Some(bytes) = history.get(s) {
                                let bytes = bytes.to_vec();
                                out.retransmitted += 1;
                                deliver(&mut assembler, now + rtt / 2, &bytes);
                            }
                        }
                    }
                    Feedback::Pli { .. } => {
                        out.plis += 1;
                        force_key = true;
                    }
                    _ => {}
                }
            }
            while let Some(frame) = assembler.pop_frame(now + rtt / 2) {
                match decoder.decode(&frame.data) {
                    Ok(Some(picture)) => {
                        if let Some(c) = read_counter(&picture) {
                            out.counters.push(c);
                        }
                    }
                    Ok(None) => {}
                    Err(_) => {
                        out.decode_errors += 1;
                        assembler.decoder_failed();
                    }
                }
            }
        }
    }
    out
}

#[test]
fn clean_path_decodes_every_frame() {
    // Both codecs are built on desktop: the tests below must not be vacuous.
    assert_eq!(available(), vec![VideoCodecKind::Vp8, VideoCodecKind::H264]);
    for kind in available() {
        let out = run(kind, 65_500, |_| false, true);
        assert_eq!(
            out.counters,
            (0..FRAMES).collect::<Vec<_>>(),
            "{kind}: {out:?}"
        );
        assert_eq!(
            (out.nacked, out.plis, out.decode_errors),
            (0, 0, 0),
            "{kind}"
        );
    }
}

#[test]
fn loss_repaired_by_nack_decodes_every_frame() {
    for kind in available() {
        // About 6 % loss, including the very first packet (the keyframe's start).
        let out = run(kind, 65_000, |i| i == 0 || (i * 7919) % 100 < 5, true);
        assert_eq!(
            out.counters,
            (0..FRAMES).collect::<Vec<_>>(),
            "{kind}: {out:?}"
        );
        assert!(out.nacked > 0 && out.retransmitted > 0, "{kind}: {out:?}");
        assert_eq!((out.plis, out.decode_errors), (0, 0), "{kind}: {out:?}");
    }
}

#[test]
fn loss_without_retransmission_recovers_with_a_keyframe() {
    for kind in available() {
        // Lose two packets in the middle of the stream: nothing repairs them.
        let out = run(kind, 100, |i| i == 60 || i == 61, false);
        assert!(out.plis >= 1, "{kind}: {out:?}");
        assert!(out.keyframes_sent >= 2, "{kind}: {out:?}");
        assert_eq!(out.decode_errors, 0, "{kind}: {out:?}");
        // Counters strictly increase, skip the lost stretch, and reach the end again.
        assert!(
            out.counters.windows(2).all(|w| w[0] < w[1]),
            "{kind}: {out:?}"
        );
        assert!(out.counters.len() < FRAMES as usize, "{kind}: {out:?}");
        assert_eq!(out.counters.last(), Some(&(FRAMES - 1)), "{kind}: {out:?}");
    }
}
