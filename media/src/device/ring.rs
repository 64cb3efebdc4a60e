//! The sample ring between a device's real-time callback and the call's frame clock.

use std::collections::VecDeque;
use std::time::Duration;

/// Counters of a [`LevelRing`]'s corrections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Samples discarded to keep latency bounded (overflow or drift trimming).
    pub dropped: u64,
    /// Silence samples handed out because the ring ran dry (underrun or drift the other way).
    pub inserted: u64,
    /// Number of trims done because a standing queue built up.
    pub trims: u64,
}

/// A mono i16 FIFO whose fill level is kept bounded, so clock drift between producer and consumer
/// never turns into growing latency.
///
/// Two mechanisms: a hard cap (the oldest samples are dropped when a push would exceed it), and
/// standing-queue trimming: the consumer side records the lowest level seen after each pop over a
/// window of about two seconds of consumption; if even that minimum exceeds the slack, the excess
/// (which is pure latency) is dropped from the oldest end. Underruns are filled with silence, and
/// after one (and at the start) the consumer gets silence until `prime` samples are queued again,
/// so the two clocks' jitter does not turn every period into a splice of audio and silence.
#[derive(Debug)]
pub struct LevelRing {
    buf: VecDeque<i16>,
    cap: usize,
    slack: usize,
    window: usize,
    consumed_in_window: usize,
    min_level: usize,
    prime: usize,
    primed: bool,
    stats: RingStats,
}

impl LevelRing {
    /// A ring for `rate` Hz audio holding at most `max_latency`, trimming standing queues above
    /// `slack`, without priming.
    pub fn new(rate: u32, max_latency: Duration, slack: Duration) -> Self {
        Self::with_prime(rate, max_latency, slack, Duration::ZERO)
    }

    /// Like [`LevelRing::new`], and after an underrun (and at the start) hands out silence until
    /// `prime` is queued (clamped to the slack).
    pub fn with_prime(rate: u32, max_latency: Duration, slack: Duration, prime: Duration) -> Self {
        let per = |d: Duration| (d.as_secs_f64() * f64::from(rate)).round() as usize;
        let cap = per(max_latency).max(1);
        let slack = per(slack).min(cap);
        Self {
            prime: per(prime).min(slack),
            primed: false,
            buf: VecDeque::with_capacity(cap),
            cap,
            slack,
            window: (rate as usize).saturating_mul(2).max(1),
            consumed_in_window: 0,
            min_level: usize::MAX,
            stats: RingStats::default(),
        }
    }

    /// Samples currently queued.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The hard cap in samples.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Correction counters so far.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// Appends samples (producer side), dropping the oldest ones beyond the cap.
    pub fn push(&mut self, samples: &[i16]) {
        let samples = if samples.len() > self.cap {
            let skip = samples.len() - self.cap;
            self.stats.dropped += skip as u64;
            &samples[skip..]
        } else {
            samples
        };
        let overflow = (self.buf.len() + samples.len()).saturating_sub(self.cap);
        if overflow > 0 {
            self.buf.drain(..overflow);
            self.stats.dropped += overflow as u64;
        }
        self.buf.extend(samples.iter().copied());
    }

    /// Fills `out` completely (consumer side): queued samples first, silence for the rest.
    /// Returns how many real samples were delivered.
    pub fn pop(&mut self, out: &mut [i16]) -> usize {
        if !self.primed {
            if self.buf.len() < self.prime.max(1) {
                out.fill(0);
                self.stats.inserted += out.len() as u64;
                return 0;
            }
            self.primed = true;
        }
        let n = out.len().min(self.buf.len());
        for (o, s) in out.iter_mut().zip(self.buf.drain(..n)) {
            *o = s;
        }
        if n < out.len() {
            out[n..].fill(0);
            self.stats.inserted += (out.len() - n) as u64;
            self.primed = false;
        }
        self.min_level = self.min_level.min(self.buf.len());
        self.consumed_in_window += out.len();
        if self.consumed_in_window >= self.window {
            if self.min_level != usize::MAX && self.min_level > self.slack {
                let excess = self.min_level - self.slack;
                self.buf.drain(..excess);
                self.stats.dropped += excess as u64;
                self.stats.trims += 1;
            }
            self.consumed_in_window = 0;
            self.min_level = usize::MAX;
        }
        n
    }

    /// Stops priming: from now on whatever is queued is handed out at once (the producer has
    /// stopped, so the tail must drain).
    pub fn release(&mut self) {
        self.prime = 0;
        self.primed = true;
    }

    /// Discards everything queued.
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}
