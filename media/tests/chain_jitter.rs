//! Jitter buffer behaviour on a virtual clock: ordering, duplicates, late packets, loss with
//! FEC hints, DTX gaps, wrap-around, restarts, overflow and target adaptation.

use bytes::Bytes;
use std::time::{Duration, Instant};
use tandem_media::jitter::{JitterBuffer, JitterConfig, JitterOutput, MissReason};

const FRAME: u32 = 160; // 20 ms at 8 kHz

fn cfg() -> JitterConfig {
    JitterConfig {
        clock_rate: 8000,
        min_delay: Duration::from_millis(40),
        max_delay: Duration::from_millis(300),
        max_packets: 50,
    }
}

fn payload(n: u16) -> Bytes {
    Bytes::from(n.to_be_bytes().to_vec())
}

fn ms(base: Instant, m: u64) -> Instant {
    base + Duration::from_millis(m)
}

/// Pops until playout starts, returning the first non-buffering output.
fn first_output(jb: &mut JitterBuffer, base: Instant, from_ms: u64) -> (u64, JitterOutput) {
    let mut t = from_ms;
    loop {
        let o = jb.pop(ms(base, t), FRAME);
        if o != JitterOutput::Buffering {
            return (t, o);
        }
        t += 10;
        assert!(t < from_ms + 1000, "never started");
    }
}

/// Pushes packet `seq` (timestamp `seq` frames, payload `payload(seq)`) arriving at `at`.
fn push_frame(jb: &mut JitterBuffer, at: Instant, seq: u16) {
    jb.push(at, seq, u32::from(seq) * FRAME, payload(seq), FRAME);
}

/// A buffer with `cfg()` fed `n` packets sent every 20 ms, each odd one `extra_ms` late.
fn jittered(base: Instant, n: u16, extra_ms: u64) -> JitterBuffer {
    let mut jb = JitterBuffer::new(cfg());
    for i in 0..n {
        let extra = if i % 2 == 0 { 0 } else { extra_ms };
        push_frame(&mut jb, ms(base, u64::from(i) * 20 + extra), i);
    }
    jb
}

fn seq_of(o: &JitterOutput) -> Option<u16> {
    match o {
        JitterOutput::Packet { payload, .. } => Some(u16::from_be_bytes([payload[0], payload[1]])),
        _ => None,
    }
}

#[test]
fn buffers_until_target_then_plays_in_order_despite_reordering() {
    let base = Instant::now();
    let mut jb = JitterBuffer::new(cfg());
    assert_eq!(jb.pop(base, FRAME), JitterOutput::Buffering);
    // Packets 0..4 sent every 20 ms, arriving 0, 2, 1, 3, 4 (2 overtakes 1).
    let order = [(0u16, 0u64), (2, 40), (1, 45), (3, 60), (4, 80)];
    for (seq, at) in order {
        jb.push(
            ms(base, at),
            seq,
            1000 + u32::from(seq) * FRAME,
            payload(seq),
            FRAME,
        );
    }
    assert!(!jb.is_playing());
    let (_, first) = first_output(&mut jb, base, 0);
    assert_eq!(seq_of(&first), Some(0));
    let mut got = vec![0];
    for i in 1..5u64 {
        let o = jb.pop(ms(base, 100 + i * 20), FRAME);
        got.push(seq_of(&o).unwrap());
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    let s = jb.stats();
    assert_eq!((s.received, s.played, s.late, s.duplicates), (5, 5, 0, 0));
}

#[test]
fn duplicates_and_late_packets_are_dropped_and_counted() {
    let base = Instant::now();
    let mut jb = JitterBuffer::new(cfg());
    for seq in 0..4u16 {
        push_frame(&mut jb, ms(base, u64::from(seq) * 20), seq);
    }
    jb.push(ms(base, 65), 2, 2 * FRAME, payload(2), FRAME); // duplicate while buffered
    let (t, o) = first_output(&mut jb, base, 60);
    assert_eq!(seq_of(&o), Some(0));
    jb.push(ms(base, t + 1), 0, 0, payload(0), FRAME); // duplicate after playing
    let s = jb.stats();
    assert_eq!(s.duplicates, 2);
    // Packet 5 is missing when its turn comes (4 is lost too), then arrives late.
    let mut t = t;
    for _ in 0..3 {
        t += 20;
        assert!(seq_of(&jb.pop(ms(base, t), FRAME)).is_some());
    }
    t += 20;
    let o = jb.pop(ms(base, t), FRAME);
    assert!(
        matches!(
            o,
            JitterOutput::Missing {
                reason: MissReason::Underrun,
                samples: FRAME,
                ..
            }
        ),
        "{o:?}"
    );
    jb.push(ms(base, t + 5), 4, 4 * FRAME, payload(4), FRAME);
    assert_eq!(jb.stats().late, 1);
    assert_eq!(jb.stats().concealed, 1);
}

#[test]
fn a_lost_packet_is_reported_with_the_next_one_for_fec() {
    let base = Instant::now();
    let mut jb = JitterBuffer::new(cfg());
    for seq in [0u16, 1, 3, 4, 5] {
        push_frame(&mut jb, ms(base, u64::from(seq) * 20), seq);
    }
    let (mut t, o) = first_output(&mut jb, base, 0);
    assert_eq!(seq_of(&o), Some(0));
    t += 20;
    assert_eq!(seq_of(&jb.pop(ms(base, t), FRAME)), Some(1));
    t += 20;
    match jb.pop(ms(base, t), FRAME) {
        JitterOutput::Missing {
            samples,
            next,
            reason,
        } => {
            assert_eq!(samples, FRAME);
            assert_eq!(reason, MissReason::Lost);
            assert_eq!(next, Some(payload(3)));
        }
        o => panic!("expected a loss, got {o:?}"),
    }
    t += 20;
    assert_eq!(seq_of(&jb.pop(ms(base, t), FRAME)), Some(3));
}

#[test]
fn timestamp_gap_without_sequence_gap_is_silence() {
    let base = Instant::now();
    let mut jb = JitterBuffer::new(cfg());
    // DTX: seq 1 follows seq 0 but 3 frames later.
    jb.push(base, 0, 0, payload(0), FRAME);
    jb.push(ms(base, 80), 1, 4 * FRAME, payload(1), FRAME);
    let (mut t, o) = first_output(&mut jb, base, 0);
    assert_eq!(seq_of(&o), Some(0));
    let mut reasons = Vec::new();
    loop {
        t += 20;
        match jb.pop(ms(base, t), FRAME) {
            JitterOutput::Missing { reason, next, .. } => {
                assert!(next.is_none());
                reasons.push(reason);
            }
            o => {
                assert_eq!(seq_of(&o), Some(1));
                break;
            }
        }
    }
    assert!(
        !reasons.is_empty()
            && reasons
                .iter()
                .all(|r| *r == MissReason::Silence || *r == MissReason::Inserted),
        "{reasons:?}"
    );
    assert_eq!(jb.stats().concealed, 0);
}

#[test]
fn timestamps_wrap_around() {
    let base = Instant::now();
    let mut jb = JitterBuffer::new(cfg());
    let start = u32::MAX - FRAME; // the third packet wraps
    for i in 0..6u16 {
        let ts = start.wrapping_add(u32::from(i) * FRAME);
        jb.push(
            ms(base, u64::from(i) * 20),
            65534u16.wrapping_add(i),
            ts,
            payload(i),
            FRAME,
        );
    }
    let (mut t, o) = first_output(&mut jb, base, 0);
    let mut got = vec![seq_of(&o).unwrap()];
    for _ in 0..5 {
        t += 20;
        got.push(seq_of(&jb.pop(ms(base, t), FRAME)).unwrap());
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_timestamp_jump_restarts_the_stream() {
    let base = Instant::now();
    let mut jb = JitterBuffer::new(cfg());
    for i in 0..4u16 {
        push_frame(&mut jb, ms(base, u64::from(i) * 20), i);
    }
    let (t, _) = first_output(&mut jb, base, 0);
    // The sender restarts with unrelated timestamps.
    for i in 0..4u16 {
        jb.push(
            ms(base, t + 1 + u64::from(i) * 20),
            500 + i,
            90_000_000 + u32::from(i) * FRAME,
            payload(100 + i),
            FRAME,
        );
    }
    assert_eq!(jb.stats().resyncs, 1);
    let (_, o) = first_output(&mut jb, base, t + 1);
    assert_eq!(seq_of(&o), Some(100));
}

#[test]
fn overflow_drops_the_oldest() {
    let base = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig {
        max_packets: 5,
        ..cfg()
    });
    for i in 0..8u16 {
        push_frame(&mut jb, base, i);
    }
    let s = jb.stats();
    assert_eq!((s.buffered, s.dropped), (5, 3));
    let (_, o) = first_output(&mut jb, base, 0);
    assert_eq!(seq_of(&o), Some(3));
}

#[test]
fn target_follows_measured_jitter() {
    let base = Instant::now();
    // Alternating 0 / 100 ms extra delay: the target must cover 100 ms.
    let target = jittered(base, 100, 100).target_delay();
    assert!(
        target >= Duration::from_millis(100) && target <= Duration::from_millis(120),
        "{target:?}"
    );
    // Never beyond max_delay.
    assert_eq!(
        jittered(base, 100, 900).target_delay(),
        Duration::from_millis(300)
    );
    // Calm network: stays at min_delay.
    assert_eq!(
        jittered(base, 100, 0).target_delay(),
        Duration::from_millis(40)
    );
}

#[test]
fn delay_bounds_can_change_live() {
    let base = Instant::now();
    let mut jb = jittered(base, 50, 100);
    assert!(jb.target_delay() >= Duration::from_millis(100));
    jb.set_delay_bounds(Duration::from_millis(10), Duration::from_millis(60));
    assert_eq!(jb.target_delay(), Duration::from_millis(60));
    jb.set_delay_bounds(Duration::from_millis(80), Duration::from_millis(50));
    assert_eq!(jb.config().max_delay, Duration::from_millis(80));
    assert_eq!(jb.target_delay(), Duration::from_millis(80));
}

/// Real-time stream of 20 ms packets without jitter; the consumer starts popping at
/// `start_ms` (so the delay runs that far over the 40 ms target) and the audio is reported
/// quiet from pop `quiet_from` on. Returns the pop index of the first drop.
fn first_drop(start_ms: u64, quiet_from: usize) -> Option<usize> {
    let base = Instant::now();
    let mut jb = JitterBuffer::new(cfg());
    let mut pops = 0;
    for i in 0..150u16 {
        let t = u64::from(i) * 20;
        push_frame(&mut jb, ms(base, t), i);
        if t >= start_ms {
            jb.set_quiet(pops >= quiet_from);
            let _ = jb.pop(ms(base, t), FRAME);
            if jb.stats().dropped > 0 {
                return Some(pops);
            }
            pops += 1;
        }
    }
    None
}

#[test]
fn adjustments_prefer_quiet_audio() {
    // 40 ms over the target (drop threshold: target + 30 ms; urgent: target + 50 ms).
    assert_eq!(first_drop(80, 0), Some(0), "quiet: dropped at once");
    assert_eq!(
        first_drop(80, 30),
        Some(30),
        "loud: waits for the quiet moment"
    );
    assert_eq!(first_drop(80, 1000), None, "loud throughout: left alone");
    // 80 ms over: urgent, dropped even in loud audio.
    assert_eq!(first_drop(120, 1000), Some(0));
}

#[test]
fn a_single_stray_packet_does_not_restart_the_stream() {
    let base = Instant::now();
    let mut jb = JitterBuffer::new(cfg());
    let mut got = Vec::new();
    for i in 0..20u16 {
        let t = u64::from(i) * 20;
        push_frame(&mut jb, ms(base, t), i);
        if i == 10 {
            // A stray with a wild timestamp (and a plausible sequence number).
            jb.push(ms(base, t + 1), 11, 3_000_000_000, payload(999), FRAME);
        }
        if let Some(s) = seq_of(&jb.pop(ms(base, t), FRAME)) {
            got.push(s);
        }
    }
    let s = jb.stats();
    assert_eq!((s.outliers, s.resyncs), (1, 0), "{s:?}");
    assert!(!got.contains(&999));
    assert!(
        got.len() >= 15 && got.windows(2).all(|w| w[1] == w[0] + 1),
        "{got:?}"
    );
}

/// Plays packets `seqs` (20 ms apart on the sender's clock) arriving at the given times and
/// pops every 20 ms from `pop_from` to `pop_to`; returns the outputs' kinds.
fn outputs_for(
    jb: &mut JitterBuffer,
    base: Instant,
    arrivals: &[(u16, u64)],
    pop_from: u64,
    pop_to: u64,
) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut t = pop_from;
    while t <= pop_to {
        while let Some(&(seq, at)) = arrivals.get(next)
            && at <= t
        {
            push_frame(jb, ms(base, at), seq);
            next += 1;
        }
        out.push(match jb.pop(ms(base, t), FRAME) {
            JitterOutput::Packet { .. } => 'P',
            JitterOutput::Missing { reason, .. } => match reason {
                MissReason::Lost => 'L',
                MissReason::Underrun => 'U',
                MissReason::Silence => 'S',
                MissReason::Inserted => 'I',
            },
            JitterOutput::Buffering => 'B',
        });
        t += 20;
    }
    out
}

#[test]
fn packets_arriving_behind_a_long_underrun_are_played_not_judged_late() {
    // Packets 0..10 on time, 10..30 held up for 400 ms then delivered at once (a delay
    // spike, or the consumer's task starved), then on time again 400 ms late.
    let base = Instant::now();
    let mut jb = JitterBuffer::new(cfg());
    let mut arrivals: Vec<(u16, u64)> = (0..10u16).map(|s| (s, u64::from(s) * 20)).collect();
    arrivals.extend((10..30u16).map(|s| (s, 600)));
    arrivals.extend((30..80u16).map(|s| (s, u64::from(s) * 20 + 400)));
    let out = outputs_for(&mut jb, base, &arrivals, 5, 2000);
    let s = jb.stats();
    // The underrun is concealed while nothing arrives; once the packets come, every one of
    // them is played: none is late, and playout does not keep concealing.
    assert_eq!(s.late, 0, "{out} {s:?}");
    let tail = &out[out.len() - 40..];
    assert!(!tail.contains('U'), "{out}");
    assert!(tail.matches('P').count() >= 38, "{out}");
    // Not a lasting latency: the packets play no later than they arrive plus the target.
    assert!(s.played >= 70, "{out} {s:?}");
}

#[test]
fn a_stall_of_the_consumer_is_caught_up_without_raising_the_delay() {
    // The consumer pops every 20 ms, then is starved for 600 ms: the packets of that time
    // (sent on time by the peer) wait in the socket and come in a burst with the catch-up
    // pops, after the consumer noted the stall.
    let base = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig {
        min_delay: Duration::from_millis(10),
        ..cfg()
    });
    let (stall_from, stall_to) = (1000u64, 1600u64);
    let mut seq = 0u16;
    let mut out = String::new();
    let mut t = 0u64;
    while t <= 4000 {
        if t == stall_to {
            jb.note_stall(ms(base, stall_from), ms(base, stall_to));
        }
        if !(stall_from..stall_to).contains(&t) {
            // Everything the sender has sent by now (one packet per 20 ms, 2 ms in transit).
            while u64::from(seq) * 20 + 2 <= t {
                push_frame(&mut jb, ms(base, t), seq);
                seq += 1;
            }
            // Every tick that was due, in a burst after the stall.
            let due = if t == stall_to {
                (stall_to - stall_from) / 20 + 1
            } else {
                1
            };
            for _ in 0..due {
                out.push(match jb.pop(ms(base, t), FRAME) {
                    JitterOutput::Packet { .. } => 'P',
                    JitterOutput::Buffering => 'B',
                    JitterOutput::Missing { .. } => 'M',
                });
            }
        }
        t += 20;
    }
    let s = jb.stats();
    let started = out.trim_start_matches('B');
    assert!(!started.contains('M'), "{out} {s:?}");
    assert_eq!((s.late, s.dropped, s.inserted), (0, 0, 0), "{s:?}");
    assert!(
        jb.target_delay() < Duration::from_millis(40),
        "the stall raised the target to {:?}",
        jb.target_delay()
    );
}
