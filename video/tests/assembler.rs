//! The frame assembler on a virtual clock: ordering, reordering, duplicates, late packets,
//! NACK timing, giving up and waiting for a keyframe, wrap-around at 65535, stream starts in
//! the middle of a frame, bounds, and hostile packet sequences.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use tandem_media::rtp::{RtpHeader, RtpPacket};
use tandem_video::assembler::{
    AssembledFrame, AssemblerConfig, DropReason, FrameAssembler, InsertOutcome,
};
use tandem_video::codec::{EncodedFrame, VideoCodecKind};
use tandem_video::rtp::{Packetizer, packetizer};

const MS: Duration = Duration::from_millis(1);

/// A VP8 frame whose body encodes its index, so output frames can be identified.
fn vp8_frame(keyframe: bool, index: u32, size: usize) -> Vec<u8> {
    let mut f = if keyframe {
        vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]
    } else {
        vec![0x31, 0x01, 0x00]
    };
    f.extend_from_slice(&index.to_be_bytes());
    f.extend((0..size).map(|i| (i as u32 ^ index) as u8));
    f
}

fn index_of(frame: &AssembledFrame) -> u32 {
    let at = if frame.keyframe { 10 } else { 3 };
    u32::from_be_bytes(frame.data[at..at + 4].try_into().unwrap())
}

/// An RTP sender: packetizes frames with consecutive sequence numbers and 3000-tick timestamps.
struct Source {
    kind: VideoCodecKind,
    packetizer: Box<dyn Packetizer>,
    seq: u16,
    ts: u32,
    index: u32,
}

impl Source {
    fn new(kind: VideoCodecKind, first_seq: u16) -> Self {
        Source {
            kind,
            packetizer: packetizer(kind),
            seq: first_seq,
            ts: 90_000,
            index: 0,
        }
    }

    /// The packets of the next frame (`size` bytes of body, split at 500-byte payloads).
    fn frame(&mut self, keyframe: bool, size: usize) -> Vec<RtpPacket> {
        let data = match self.kind {
            VideoCodecKind::Vp8 => vp8_frame(keyframe, self.index, size),
            VideoCodecKind::H264 => h264_au(keyframe, self.index, size),
        };
        self.index += 1;
        let payloads = self
            .packetizer
            .packetize(&EncodedFrame { data, keyframe }, 500)
            .unwrap();
        let n = payloads.len();
        let out = payloads
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let seq = self.seq;
                self.seq = self.seq.wrapping_add(1);
                packet(seq, self.ts, i + 1 == n, p)
            })
            .collect();
        self.ts = self.ts.wrapping_add(3000);
        out
    }
}

fn packet(seq: u16, ts: u32, marker: bool, payload: Vec<u8>) -> RtpPacket {
    RtpPacket {
        header: RtpHeader {
            marker,
            payload_type: 96,
            sequence: seq,
            timestamp: ts,
            ssrc: 0x1234_5678,
            csrc: Vec::new(),
        },
        payload: Bytes::from(payload),
    }
}

/// An H.264 access unit: SPS + PPS + IDR for keyframes, one slice otherwise; no zero bytes.
fn h264_au(keyframe: bool, index: u32, size: usize) -> Vec<u8> {
    let mut au = Vec::new();
    if keyframe {
        au.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0xda]);
        au.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]);
        au.extend_from_slice(&[0, 0, 0, 1, 0x65]);
    } else {
        au.extend_from_slice(&[0, 0, 0, 1, 0x41]);
    }
    au.extend(index.to_be_bytes().iter().map(|b| b | 0x80));
    au.extend((0..size).map(|i| (i as u8) | 1));
    au
}

/// Inserts every packet at `now`, then collects what pops out.
fn feed(a: &mut FrameAssembler, now: Instant, packets: &[RtpPacket]) -> Vec<AssembledFrame> {
    for p in packets {
        a.insert(now, p);
    }
    drain(a, now)
}

fn drain(a: &mut FrameAssembler, now: Instant) -> Vec<AssembledFrame> {
    let mut out = Vec::new();
    while let Some(f) = a.pop_frame(now) {
        out.push(f);
    }
    out
}

fn config() -> AssemblerConfig {
    AssemblerConfig {
        max_wait: Duration::from_millis(300),
        nack_retries: 3,
        reorder_delay: Duration::from_millis(10),
        keyframe_retry: Duration::from_millis(500),
        ..AssemblerConfig::default()
    }
}

#[test]
fn in_order_frames_come_out_whole_for_both_codecs() {
    for kind in [VideoCodecKind::Vp8, VideoCodecKind::H264] {
        let t0 = Instant::now();
        let mut src = Source::new(kind, 1000);
        let mut a = FrameAssembler::new(kind, config());
        let mut got = Vec::new();
        for i in 0..20u32 {
            let packets = src.frame(i % 10 == 0, 300 + 97 * i as usize);
            let first = packets[0].header.sequence;
            let last = packets.last().unwrap().header.sequence;
            let ts = packets[0].header.timestamp;
            let out = feed(&mut a, t0 + i * 33 * MS, &packets);
            assert_eq!(out.len(), 1, "{kind} frame {i}");
            assert_eq!((out[0].first_seq, out[0].last_seq), (first, last));
            assert_eq!(out[0].rtp_timestamp, ts);
            assert_eq!(out[0].keyframe, i % 10 == 0);
            got.push(out[0].clone());
        }
        if kind == VideoCodecKind::Vp8 {
            let idx: Vec<u32> = got.iter().map(index_of).collect();
            assert_eq!(idx, (0..20).collect::<Vec<_>>());
            assert_eq!(got[3].data, vp8_frame(false, 3, 300 + 97 * 3));
        } else {
            assert_eq!(got[3].data, h264_au(false, 3, 300 + 97 * 3));
            assert_eq!(got[10].data, h264_au(true, 10, 300 + 970));
        }
        let s = a.stats();
        assert_eq!(s.frames_complete, 20);
        assert_eq!(s.keyframes_complete, 2);
        assert_eq!(s.frames_dropped, 0);
        assert_eq!(
            a.nacks(t0 + Duration::from_secs(2), 50 * MS),
            Vec::<u16>::new()
        );
        assert!(!a.take_keyframe_request());
        assert_eq!(a.buffered_packets(), 0);
    }
}

/// A deterministic shuffle (xorshift) of `items` within windows of `window`.
fn shuffle_windows<T>(items: &mut [T], window: usize, mut seed: u64) {
    for chunk in items.chunks_mut(window) {
        for i in (1..chunk.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            chunk.swap(i, (seed % (i as u64 + 1)) as usize);
        }
    }
}

#[test]
fn reordering_across_frames_and_the_wrap() {
    let t0 = Instant::now();
    // Start just below the wrap so the sequence crosses 65535 -> 0 mid-stream.
    let mut src = Source::new(VideoCodecKind::Vp8, 65_520);
    let mut all = Vec::new();
    for i in 0..12u32 {
        all.extend(src.frame(i == 0, 700 + 50 * i as usize));
    }
    let first_seq = all[0].header.sequence;
    // Keep the first packet first (the stream's start), shuffle the rest in windows of 7.
    shuffle_windows(&mut all[1..], 7, 0x9e37_79b9_7f4a_7c15);
    let mut a = FrameAssembler::new(VideoCodecKind::Vp8, config());
    let mut out = Vec::new();
    for p in &all {
        assert_eq!(a.insert(t0, p), InsertOutcome::Accepted);
        out.extend(drain(&mut a, t0));
    }
    let idx: Vec<u32> = out.iter().map(index_of).collect();
    assert_eq!(idx, (0..12).collect::<Vec<_>>());
    assert_eq!(out[0].first_seq, first_seq);
    assert!(
        out.iter().any(|f| f.first_seq < 100),
        "the sequence wrapped"
    );
    let s = a.stats();
    assert_eq!(s.frames_complete, 12);
    assert_eq!(s.frames_dropped + s.packets_lost + s.packets_late, 0);
}

#[test]
fn duplicates_and_late_packets_are_counted() {
    let t0 = Instant::now();
    let mut src = Source::new(VideoCodecKind::Vp8, 10);
    let mut a = FrameAssembler::new(VideoCodecKind::Vp8, config());
    let key = src.frame(true, 1200);
    assert_eq!(a.insert(t0, &key[0]), InsertOutcome::Accepted);
    assert_eq!(a.insert(t0, &key[0]), InsertOutcome::Duplicate);
    let out = feed(&mut a, t0, &key[1..]);
    assert_eq!(out.len(), 1);
    // Everything of a released frame is late now.
    assert_eq!(a.insert(t0, &key[1]), InsertOutcome::Late);
    let delta = src.frame(false, 100);
    assert_eq!(feed(&mut a, t0, &delta).len(), 1);
    assert_eq!(a.insert(t0, &delta[0]), InsertOutcome::Late);
    let s = a.stats();
    assert_eq!((s.packets_duplicate, s.packets_late), (1, 2));
    // Malformed payloads are refused at the door.
    let bad = packet(src.seq, src.ts, true, vec![0x80]);
    assert_eq!(
        a.insert(t0, &bad),
        InsertOutcome::Dropped(DropReason::Malformed)
    );
    assert_eq!(a.stats().packets_malformed, 1);
}

#[test]
fn nack_timing_retries_and_recovery() {
    let t0 = Instant::now();
    let mut src = Source::new(VideoCodecKind::Vp8, 65_530);
    let mut a = FrameAssembler::new(VideoCodecKind::Vp8, config());
    assert_eq!(feed(&mut a, t0, &src.frame(true, 2000)).len(), 1);
    // Frame of 3 packets; lose the middle one (across the wrap: seqs 65535, 0, 1).
    let f = src.frame(false, 1200);
    assert_eq!(f.len(), 3);
    let lost = f[1].header.sequence;
    a.insert(t0, &f[0]);
    a.insert(t0, &f[2]);
    assert!(a.pop_frame(t0).is_none());
    let rtt = 40 * MS;
    // Not before the reorder delay.
    assert!(a.nacks(t0 + 5 * MS, rtt).is_empty());
    assert_eq!(a.nacks(t0 + 10 * MS, rtt), vec![lost]);
    // Not again within one round trip.
    assert!(a.nacks(t0 + 30 * MS, rtt).is_empty());
    assert_eq!(a.nacks(t0 + 50 * MS, rtt), vec![lost]);
    assert_eq!(a.nacks(t0 + 90 * MS, rtt), vec![lost]);
    // Three retries configured: no more.
    assert!(a.nacks(t0 + 200 * MS, rtt).is_empty());
    assert_eq!(a.stats().nacked, 3);
    // The retransmission arrives before max_wait: the frame completes.
    assert_eq!(a.insert(t0 + 250 * MS, &f[1]), InsertOutcome::Accepted);
    let out = drain(&mut a, t0 + 250 * MS);
    assert_eq!(out.len(), 1);
    assert_eq!(index_of(&out[0]), 1);
    let s = a.stats();
    assert_eq!(
        (s.packets_recovered, s.packets_lost, s.frames_dropped),
        (1, 0, 0)
    );
    assert!(!a.take_keyframe_request());
    // Two gaps at once come out oldest first.
    let g = src.frame(false, 2400);
    assert!(g.len() >= 5);
    for (i, p) in g.iter().enumerate() {
        if i != 1 && i != 3 {
            a.insert(t0 + 300 * MS, p);
        }
    }
    assert_eq!(
        a.nacks(t0 + 320 * MS, rtt),
        vec![g[1].header.sequence, g[3].header.sequence]
    );
}

#[test]
fn unrecoverable_loss_waits_for_a_keyframe() {
    let t0 = Instant::now();
    let mut src = Source::new(VideoCodecKind::Vp8, 500);
    let mut a = FrameAssembler::new(VideoCodecKind::Vp8, config());
    assert_eq!(feed(&mut a, t0, &src.frame(true, 1500)).len(), 1);
    let lossy = src.frame(false, 1200);
    a.insert(t0, &lossy[0]);
    a.insert(t0, &lossy[2]);
    // The following delta frames are complete but must wait behind the gap.
    let d2 = src.frame(false, 300);
    let d3 = src.frame(false, 300);
    assert!(feed(&mut a, t0 + 10 * MS, &d2).is_empty());
    assert!(feed(&mut a, t0 + 20 * MS, &d3).is_empty());
    assert!(!a.take_keyframe_request());
    // Still inside max_wait (300 ms).
    assert!(a.pop_frame(t0 + 299 * MS).is_none());
    // Given up: the frame and everything until a keyframe is dropped, a keyframe is asked for.
    assert!(a.pop_frame(t0 + 300 * MS).is_none());
    assert!(a.waiting_for_keyframe());
    assert!(a.take_keyframe_request());
    assert!(!a.take_keyframe_request());
    assert_eq!(a.buffered_packets(), 0);
    let s = a.stats();
    assert_eq!(s.packets_lost, 1);
    assert_eq!(s.frames_dropped, 3);
    // More deltas are dropped; the request repeats after keyframe_retry (500 ms).
    assert!(feed(&mut a, t0 + 400 * MS, &src.frame(false, 300)).is_empty());
    assert!(!a.take_keyframe_request());
    assert!(feed(&mut a, t0 + 800 * MS, &src.frame(false, 300)).is_empty());
    assert!(a.take_keyframe_request());
    assert_eq!(a.stats().keyframe_requests, 2);
    // The keyframe resumes output, and the deltas after it.
    let key = src.frame(true, 3000);
    let out = feed(&mut a, t0 + 900 * MS, &key);
    assert_eq!(out.len(), 1);
    assert!(out[0].keyframe);
    assert!(!a.waiting_for_keyframe());
    assert_eq!(feed(&mut a, t0 + 930 * MS, &src.frame(false, 300)).len(), 1);
    assert!(!a.take_keyframe_request());
    assert_eq!(a.stats().frames_dropped, 5);
}

#[test]
fn keyframe_behind_a_lost_delta_is_taken_without_waiting() {
    let t0 = Instant::now();
    let mut src = Source::new(VideoCodecKind::Vp8, 7);
    let mut a = FrameAssembler::new(VideoCodecKind::Vp8, config());
    assert_eq!(feed(&mut a, t0, &src.frame(true, 200)).len(), 1);
    a.decoder_failed();
    assert!(a.take_keyframe_request());
    // A delta frame whose first packet is lost, then a keyframe: while waiting for a keyframe
    // the gap does not hold it back.
    let delta = src.frame(false, 1200);
    let key = src.frame(true, 1200);
    assert!(feed(&mut a, t0, &delta[1..]).is_empty());
    let out = feed(&mut a, t0 + MS, &key);
    assert_eq!(out.len(), 1);
    assert!(out[0].keyframe);
    assert_eq!(a.stats().frames_dropped, 1);
    // The lost packet arriving now is late.
    assert_eq!(a.insert(t0 + 2 * MS, &delta[0]), InsertOutcome::Late);
}

#[test]
fn stream_starting_with_a_delta_frame_asks_for_a_keyframe() {
    let t0 = Instant::now();
    let mut src = Source::new(VideoCodecKind::H264, 1);
    let mut a = FrameAssembler::new(VideoCodecKind::H264, config());
    assert!(feed(&mut a, t0, &src.frame(false, 800)).is_empty());
    assert!(a.take_keyframe_request());
    assert_eq!(a.stats().frames_dropped, 1);
    let out = feed(&mut a, t0 + 30 * MS, &src.frame(true, 2000));
    assert_eq!(out.len(), 1);
    assert!(out[0].keyframe);
}

#[test]
fn stream_joined_mid_frame_waits_for_the_start() {
    for kind in [VideoCodecKind::Vp8, VideoCodecKind::H264] {
        let t0 = Instant::now();
        let mut src = Source::new(kind, 0);
        let key = src.frame(true, 2000);
        assert!(key.len() >= 4);
        let mut a = FrameAssembler::new(kind, config());
        // The first two packets arrive last (reordered).
        assert!(feed(&mut a, t0, &key[2..]).is_empty());
        assert_eq!(
            a.nacks(t0 + 20 * MS, 30 * MS),
            vec![key[1].header.sequence],
            "{kind}"
        );
        assert!(feed(&mut a, t0 + 25 * MS, &key[1..2]).is_empty());
        assert_eq!(a.nacks(t0 + 40 * MS, 30 * MS), vec![key[0].header.sequence]);
        let out = feed(&mut a, t0 + 45 * MS, &key[..1]);
        assert_eq!(out.len(), 1, "{kind}");
        assert!(out[0].keyframe);
        assert_eq!(out[0].first_seq, 0);
        assert_eq!(a.stats().packets_late, 0);
        // A stream whose start never comes: given up after max_wait, then the next keyframe.
        let mut src = Source::new(kind, 40_000);
        let lost_key = src.frame(true, 2000);
        let mut a = FrameAssembler::new(kind, config());
        assert!(feed(&mut a, t0, &lost_key[1..]).is_empty());
        let out = drain(&mut a, t0 + 400 * MS);
        assert!(a.take_keyframe_request());
        match kind {
            VideoCodecKind::Vp8 => assert!(out.is_empty()),
            // Without its parameter sets the IDR is still tried once they are given up.
            VideoCodecKind::H264 => {
                assert_eq!(out.len(), 1);
                assert!(out[0].keyframe && out[0].data.starts_with(&[0, 0, 0, 1, 0x65]));
            }
        }
        let out = feed(&mut a, t0 + 500 * MS, &src.frame(true, 2000));
        assert_eq!(out.len(), 1, "{kind}");
    }
}

#[test]
fn h264_keyframe_with_lost_parameter_sets_waits_for_them() {
    let t0 = Instant::now();
    let mut src = Source::new(VideoCodecKind::H264, 100);
    let mut a = FrameAssembler::new(VideoCodecKind::H264, config());
    assert_eq!(feed(&mut a, t0, &src.frame(true, 1500)).len(), 1);
    a.decoder_failed();
    let key = src.frame(true, 1500);
    // key[0] is the STAP-A (SPS, PPS) + ... ; key[1] starts the IDR FU-A.
    assert_eq!(key[0].payload[0] & 0x1f, 24);
    assert!(
        feed(&mut a, t0, &key[1..]).is_empty(),
        "no IDR without its SPS/PPS"
    );
    assert_eq!(a.nacks(t0 + 20 * MS, 30 * MS), vec![key[0].header.sequence]);
    let out = feed(&mut a, t0 + 40 * MS, &key[..1]);
    assert_eq!(out.len(), 1);
    assert!(out[0].keyframe);
    assert!(out[0].data.starts_with(&[0, 0, 0, 1, 0x67]));
}

#[test]
fn frames_without_marker_end_at_the_timestamp_change() {
    let t0 = Instant::now();
    let mut src = Source::new(VideoCodecKind::Vp8, 300);
    let mut a = FrameAssembler::new(VideoCodecKind::Vp8, config());
    let mut key = src.frame(true, 1200);
    key.last_mut().unwrap().header.marker = false;
    assert!(feed(&mut a, t0, &key).is_empty());
    let delta = src.frame(false, 100);
    let out = feed(&mut a, t0, &delta);
    assert_eq!(out.len(), 2);
    assert!(out[0].keyframe && !out[1].keyframe);
}

#[test]
fn bounded_by_packets_and_frame_size() {
    let t0 = Instant::now();
    let cfg = AssemblerConfig {
        max_buffered_packets: 16,
        max_frame_bytes: 4000,
        ..config()
    };
    let mut src = Source::new(VideoCodecKind::Vp8, 50_000);
    let mut a = FrameAssembler::new(VideoCodecKind::Vp8, cfg);
    assert_eq!(feed(&mut a, t0, &src.frame(true, 1000)).len(), 1);
    // A lost packet holds everything behind it: the buffer stays at its bound.
    let held = src.frame(false, 1200);
    a.insert(t0, &held[0]);
    for _ in 0..20 {
        for p in src.frame(false, 300) {
            a.insert(t0, &p);
            assert!(a.buffered_packets() <= 16);
        }
    }
    assert!(a.stats().packets_dropped > 0);
    assert!(a.take_keyframe_request());
    // A frame larger than max_frame_bytes is dropped whole.
    let big = src.frame(true, 6000);
    assert!(feed(&mut a, t0, &big).is_empty());
    assert!(a.stats().frames_dropped > 0);
    // A single payload over the limit is refused.
    let cfg = AssemblerConfig {
        max_frame_bytes: 100,
        ..config()
    };
    let mut a = FrameAssembler::new(VideoCodecKind::Vp8, cfg);
    let p = packet(1, 1, true, [&[0x10][..], &vp8_frame(true, 0, 200)].concat());
    assert_eq!(
        a.insert(t0, &p),
        InsertOutcome::Dropped(DropReason::TooLarge)
    );
}

#[test]
fn sequence_jumps_stray_packets_and_restarts() {
    let t0 = Instant::now();
    let mut src = Source::new(VideoCodecKind::Vp8, 1000);
    let mut a = FrameAssembler::new(VideoCodecKind::Vp8, config());
    assert_eq!(feed(&mut a, t0, &src.frame(true, 600)).len(), 1);
    // One stray packet far away is dropped and changes nothing.
    let stray = packet(
        src.seq.wrapping_add(20_000),
        5,
        true,
        vec![0x90, 0x31, 1, 0],
    );
    assert_eq!(
        a.insert(t0, &stray),
        InsertOutcome::Dropped(DropReason::OutOfRange)
    );
    assert_eq!(feed(&mut a, t0, &src.frame(false, 600)).len(), 1);
    assert!(a.nacks(t0 + Duration::from_secs(1), 10 * MS).is_empty());
    // The sender jumps back 10000 (restarted): after two packets the buffer follows.
    src.seq = src.seq.wrapping_sub(10_000);
    let key = src.frame(true, 1500);
    let out = feed(&mut a, t0 + 50 * MS, &key);
    assert_eq!(out.len(), 0, "the first packet of the jump is dropped");
    assert!(a.take_keyframe_request());
    let key = src.frame(true, 1500);
    let out = feed(&mut a, t0 + 80 * MS, &key);
    assert_eq!(out.len(), 1);
    assert!(out[0].keyframe);
}

#[derive(Debug, Clone)]
enum Hostile {
    Packet {
        seq_delta: i16,
        ts: u32,
        marker: bool,
        payload: Vec<u8>,
    },
    Advance(u16),
    Nacks(u16),
    Pop,
    DecoderFailed,
}

fn hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        6 => (any::<i16>(), 0u32..4, any::<bool>(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(
            |(d, ts, marker, mut payload)| {
                // Mostly near the last sequence number, mostly with a plausible first byte.
                if let Some(b) = payload.first_mut() {
                    *b = [0x90, 0x80, 0x10, 0x7c, 0x78, 0x65, *b][usize::from(*b) % 7];
                }
                Hostile::Packet { seq_delta: d % 40, ts, marker, payload }
            }
        ),
        1 => any::<i16>().prop_map(|d| Hostile::Packet { seq_delta: d, ts: 9, marker: true, payload: vec![0x10, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0, 0, 0, 0] }),
        2 => (0u16..400).prop_map(Hostile::Advance),
        2 => (0u16..200).prop_map(Hostile::Nacks),
        2 => Just(Hostile::Pop),
        1 => Just(Hostile::DecoderFailed),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn hostile_sequences_never_panic_and_stay_bounded(
        kind in prop_oneof![Just(VideoCodecKind::Vp8), Just(VideoCodecKind::H264)],
        ops in prop::collection::vec(hostile(), 1..200),
    ) {
        let t0 = Instant::now();
        let cfg = AssemblerConfig { max_buffered_packets: 64, max_frame_bytes: 1000, ..config() };
        let mut a = FrameAssembler::new(kind, cfg);
        let mut now = t0;
        let mut seq = 0u16;
        for op in ops {
            match op {
                Hostile::Packet { seq_delta, ts, marker, payload } => {
                    seq = seq.wrapping_add(seq_delta as u16);
                    a.insert(now, &packet(seq, ts, marker, payload));
                    prop_assert!(a.buffered_packets() <= 64);
                }
                Hostile::Advance(ms) => now += u32::from(ms) * MS,
                Hostile::Nacks(rtt) => {
                    let n = a.nacks(now, u32::from(rtt) * MS);
                    prop_assert!(n.len() <= tandem_video::assembler::MAX_NACKS_PER_CALL);
                }
                Hostile::Pop => {
                    while let Some(f) = a.pop_frame(now) {
                        prop_assert!(f.data.len() <= 2 * 1000);
                    }
                }
                Hostile::DecoderFailed => a.decoder_failed(),
            }
        }
        let _ = a.take_keyframe_request();
    }

    /// A lossy, reordering, duplicating network with retransmissions on NACK: as long as every
    /// packet eventually arrives within max_wait, every frame comes out, in order, intact.
    #[test]
    fn lossy_network_with_retransmission_delivers_every_frame(
        kind in prop_oneof![Just(VideoCodecKind::Vp8), Just(VideoCodecKind::H264)],
        first_seq in any::<u16>(),
        sizes in prop::collection::vec(100usize..3000, 5..25),
        fate in prop::collection::vec(0u8..10, 300),
    ) {
        let t0 = Instant::now();
        let mut src = Source::new(kind, first_seq);
        let mut a = FrameAssembler::new(kind, AssemblerConfig { max_wait: Duration::from_secs(2), nack_retries: 20, ..config() });
        let frames: Vec<Vec<RtpPacket>> =
            sizes.iter().enumerate().map(|(i, &s)| src.frame(i == 0, s)).collect();
        let all: Vec<RtpPacket> = frames.iter().flatten().cloned().collect();
        // The first packet always arrives first; afterwards: 0-1 lost, 2 duplicated, 3 delayed.
        let mut delayed = Vec::new();
        let mut now = t0;
        let mut out = Vec::new();
        for (i, p) in all.iter().enumerate() {
            now += MS;
            let last_frame = i >= all.len() - frames.last().map_or(0, Vec::len);
            let f = if i == 0 || last_frame { 9 } else { fate[i % fate.len()] };
            match f {
                0 | 1 => {}
                2 => { a.insert(now, p); a.insert(now, p); }
                3 => delayed.push(p.clone()),
                _ => { a.insert(now, p); }
            }
            if i % 4 == 3 {
                for d in delayed.drain(..) { a.insert(now, &d); }
            }
            out.extend(drain(&mut a, now));
        }
        for d in delayed.drain(..) { a.insert(now, &d); }
        // Retransmit whatever is NACKed until nothing is missing.
        for _ in 0..50 {
            now += 60 * MS;
            let seqs = a.nacks(now, 50 * MS);
            for s in seqs {
                if let Some(p) = all.iter().find(|p| p.header.sequence == s) {
                    a.insert(now, p);
                }
            }
            out.extend(drain(&mut a, now));
        }
        prop_assert_eq!(out.len(), frames.len());
        for (got, sent) in out.iter().zip(&frames) {
            prop_assert_eq!(got.first_seq, sent[0].header.sequence);
            prop_assert_eq!(got.rtp_timestamp, sent[0].header.timestamp);
        }
        let s = a.stats();
        prop_assert_eq!(s.frames_dropped, 0);
        prop_assert_eq!(s.packets_lost, 0);
        prop_assert!(!a.take_keyframe_request());
    }
}

#[test]
fn unanswered_nacks_give_up_before_max_wait() {
    let t0 = Instant::now();
    let mut src = Source::new(VideoCodecKind::Vp8, 9);
    let cfg = AssemblerConfig {
        max_wait: Duration::from_secs(5),
        ..config()
    };
    let mut a = FrameAssembler::new(VideoCodecKind::Vp8, cfg);
    assert_eq!(feed(&mut a, t0, &src.frame(true, 300)).len(), 1);
    let f = src.frame(false, 1200);
    a.insert(t0, &f[0]);
    a.insert(t0, &f[2]);
    let rtt = 30 * MS;
    let mut sent = 0;
    let mut now = t0;
    while now < t0 + 200 * MS {
        now += 5 * MS;
        sent += a.nacks(now, rtt).len();
        assert!(a.pop_frame(now).is_none());
    }
    assert_eq!(sent, 3);
    // Last NACK at 10 + 2 * 30 = 70 ms; two round trips later (130 ms) it was given up.
    assert_eq!(a.stats().packets_lost, 1);
    assert!(a.take_keyframe_request());
    assert_eq!(a.insert(now, &f[1]), InsertOutcome::Late);
}

#[test]
fn endless_backward_restarts_never_run_the_numbers_down() {
    let t0 = Instant::now();
    // A zero-sized buffer is raised to the minimum rather than making every packet "far".
    let cfg = AssemblerConfig {
        max_buffered_packets: 0,
        ..config()
    };
    let mut a = FrameAssembler::new(VideoCodecKind::Vp8, cfg);
    let key = [&[0x90, 0x80, 0x80, 0x01][..], &vp8_frame(true, 0, 20)].concat();
    let mut seq = 0u16;
    // Each round jumps back by 30000 with two consecutive packets (a "restart"): without
    // rebasing, 2^32 / 30000 rounds would run the unrolled numbers into zero.
    for round in 0..150_000u32 {
        seq = seq.wrapping_sub(30_000);
        a.insert(t0, &packet(seq, round, true, key.clone()));
        a.insert(t0, &packet(seq.wrapping_add(1), round, true, key.clone()));
        seq = seq.wrapping_add(1);
        if round % 10_000 == 0 {
            drain(&mut a, t0);
        }
    }
    assert!(a.buffered_packets() <= 8);
    let out = feed(
        &mut a,
        t0,
        &[packet(seq.wrapping_add(1), 7, true, key.clone())],
    );
    assert_eq!(out.last().map(|f| f.rtp_timestamp), Some(7));
}

#[test]
fn keyframe_search_finds_late_starts_in_a_long_buffer() {
    let t0 = Instant::now();
    let mut src = Source::new(VideoCodecKind::Vp8, 60_000);
    let mut a = FrameAssembler::new(VideoCodecKind::Vp8, AssemblerConfig::default());
    assert_eq!(feed(&mut a, t0, &src.frame(true, 300)).len(), 1);
    a.decoder_failed();
    // A lost packet blocks the head; 1500 packets of deltas pile up behind it, each insert
    // followed by a pop (the keyframe search must stay cheap and find nothing).
    let blocked = src.frame(false, 1200);
    a.insert(t0, &blocked[0]);
    let started = std::time::Instant::now();
    for _ in 0..500 {
        for p in src.frame(false, 1200) {
            a.insert(t0, &p);
            assert!(a.pop_frame(t0).is_none());
        }
    }
    assert!(a.buffered_packets() > 1400);
    // The keyframe's start arrives after its other packets, below the searched range.
    let key = src.frame(true, 1500);
    for p in &key[1..] {
        a.insert(t0, p);
        assert!(a.pop_frame(t0).is_none());
    }
    a.insert(t0, &key[0]);
    let out = drain(&mut a, t0);
    assert_eq!(out.len(), 1);
    assert!(out[0].keyframe);
    assert_eq!(a.buffered_packets(), 0);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "keyframe search too slow: {:?}",
        started.elapsed()
    );
}
