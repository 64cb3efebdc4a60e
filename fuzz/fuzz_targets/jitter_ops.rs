//! Fuzz target: arbitrary push/pop sequences into the adaptive jitter buffer never panic and
//! keep its invariants: never more than `max_packets` held, every packet handed out was
//! pushed, concealment never asks for zero samples, counters only grow.

#![no_main]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tandem_media::jitter::{JitterBuffer, JitterConfig, JitterOutput};

#[derive(Debug, Arbitrary)]
enum Op {
    /// A packet arrives `advance_us` after the previous operation.
    Push {
        advance_us: u16,
        sequence: u16,
        timestamp: u32,
        samples: u16,
        len: u8,
    },
    /// A packet continuing the previous one (next sequence, timestamp + samples).
    Next {
        advance_us: u16,
        skip: u8,
        samples: u16,
    },
    /// The consumer wants the next frame.
    Pop { advance_us: u16, want: u16 },
    /// A long pause (up to ~65 s).
    Sleep { ms: u16 },
    /// New SSRC or codec.
    Reset,
}

#[derive(Debug, Arbitrary)]
struct Input {
    clock_rate: u32,
    min_delay_ms: u16,
    max_delay_ms: u16,
    max_packets: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let cfg = JitterConfig {
        clock_rate: input.clock_rate,
        min_delay: Duration::from_millis(u64::from(input.min_delay_ms)),
        max_delay: Duration::from_millis(u64::from(input.max_delay_ms)),
        max_packets: usize::from(input.max_packets),
    };
    let mut jb = JitterBuffer::new(cfg.clone());
    let mut now = Instant::now();
    let mut pushed: HashSet<(u32, Bytes)> = HashSet::new();
    let mut last: Option<(u16, u32)> = None;
    let mut prev = jb.stats();
    for (n, op) in input.ops.into_iter().take(2000).enumerate() {
        match op {
            Op::Push {
                advance_us,
                sequence,
                timestamp,
                samples,
                len,
            } => {
                now += Duration::from_micros(u64::from(advance_us));
                // Payloads are unique per push so we can tell where output came from.
                let payload = Bytes::from(format!("{n}:{len}"));
                pushed.insert((timestamp, payload.clone()));
                jb.push(now, sequence, timestamp, payload, u32::from(samples));
                last = Some((sequence, timestamp.wrapping_add(u32::from(samples))));
            }
            Op::Next {
                advance_us,
                skip,
                samples,
            } => {
                now += Duration::from_micros(u64::from(advance_us));
                let (seq, ts) = last.unwrap_or((0, 0));
                let seq = seq.wrapping_add(1).wrapping_add(u16::from(skip));
                let ts = ts.wrapping_add(u32::from(skip) * u32::from(samples));
                let payload = Bytes::from(format!("{n}"));
                pushed.insert((ts, payload.clone()));
                jb.push(now, seq, ts, payload, u32::from(samples));
                last = Some((seq, ts.wrapping_add(u32::from(samples))));
            }
            Op::Pop { advance_us, want } => {
                now += Duration::from_micros(u64::from(advance_us));
                match jb.pop(now, u32::from(want)) {
                    JitterOutput::Packet {
                        payload, timestamp, ..
                    } => {
                        assert!(
                            pushed.contains(&(timestamp, payload.clone())),
                            "popped a packet that was never pushed: ts {timestamp} {payload:?}"
                        );
                    }
                    JitterOutput::Missing { samples, next, .. } => {
                        assert!(samples > 0, "Missing with zero samples");
                        if let Some(next) = next {
                            assert!(
                                pushed.iter().any(|(_, p)| *p == next),
                                "FEC packet that was never pushed"
                            );
                        }
                    }
                    JitterOutput::Buffering => {}
                }
            }
            Op::Sleep { ms } => now += Duration::from_millis(u64::from(ms)),
            Op::Reset => jb.reset(),
        }
        let stats = jb.stats();
        assert!(
            stats.buffered <= cfg.max_packets.max(1),
            "{} packets held, max {}",
            stats.buffered,
            cfg.max_packets
        );
        assert!(stats.received >= prev.received && stats.played >= prev.played);
        assert!(stats.late >= prev.late && stats.dropped >= prev.dropped);
        assert!(stats.concealed >= prev.concealed && stats.duplicates >= prev.duplicates);
        assert!(stats.played <= stats.received, "played more than received");
        assert!(!stats.delay_ms.is_nan() && !stats.target_ms.is_nan() && !stats.jitter_ms.is_nan());
        let _ = jb.target_delay();
        let _ = jb.is_playing();
        prev = stats;
    }
});
