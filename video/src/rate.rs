//! Bandwidth adaptation: the sender's loss-based controller (the loss half of Google
//! Congestion Control, draft-ietf-rmcat-gcc-02 §6), capped by the receiver's REMB, and the
//! receiver's estimate it sends as REMB.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Loss fraction below which the rate grows.
pub const LOSS_LOW: f32 = 0.02;
/// Loss fraction above which the rate shrinks.
pub const LOSS_HIGH: f32 = 0.10;
/// Growth per second while loss is low (8 %).
pub const GROWTH_PER_SECOND: f64 = 1.08;
/// Smallest growth step, so that low rates still climb (bits per second per report).
pub const MIN_GROWTH_BPS: u32 = 1_000;

/// Lowest REMB estimate a default [`ReceiveRate`] reports while receiving (bits per second).
pub const DEFAULT_REMB_FLOOR_BPS: u64 = 50_000;

/// The sender's target bitrate, driven by receiver-report loss and REMB.
#[derive(Clone, Debug)]
pub struct RateController {
    min_bps: u32,
    max_bps: u32,
    target_bps: u32,
    remb_bps: Option<u64>,
    last_report: Option<Instant>,
}

impl RateController {
    /// A controller starting at `start_bps`, kept within `min_bps..=max_bps` (`max_bps`
    /// is raised to `min_bps` if lower).
    pub fn new(min_bps: u32, start_bps: u32, max_bps: u32) -> Self {
        let max_bps = max_bps.max(min_bps);
        RateController {
            min_bps,
            max_bps,
            target_bps: start_bps.clamp(min_bps, max_bps),
            remb_bps: None,
            last_report: None,
        }
    }

    /// The current target in bits per second.
    pub fn target_bps(&self) -> u32 {
        self.target_bps
    }

    /// The latest REMB cap, if any.
    pub fn remb_bps(&self) -> Option<u64> {
        self.remb_bps
    }

    /// Changes the limits (e.g. after renegotiation); the target is clamped into them.
    pub fn set_limits(&mut self, min_bps: u32, max_bps: u32) {
        self.min_bps = min_bps;
        self.max_bps = max_bps.max(min_bps);
        self.target_bps = self.cap(u64::from(self.target_bps));
    }

    fn cap(&self, bps: u64) -> u32 {
        let upper = match self.remb_bps {
            Some(r) => r.min(u64::from(self.max_bps)),
            None => u64::from(self.max_bps),
        };
        // Never below the minimum, even when the REMB is lower.
        bps.min(upper).max(u64::from(self.min_bps)) as u32
    }

    /// Applies the fraction lost (0.0..=1.0) of a receiver report: below 2 % the rate grows by
    /// about 8 % per second since the previous report, 2..10 % holds it, above 10 % multiplies
    /// it by (1 - 0.5 * loss). Returns the new target.
    pub fn on_loss_report(&mut self, now: Instant, fraction_lost: f32) -> u32 {
        let loss = if fraction_lost.is_finite() {
            fraction_lost.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let elapsed = match self.last_report {
            Some(t) => now.saturating_duration_since(t),
            // The first report: assume a typical one-second report interval.
            None => Duration::from_secs(1),
        };
        self.last_report = Some(now);
        let current = f64::from(self.target_bps);
        let next = if loss < LOSS_LOW {
            let secs = elapsed.as_secs_f64().min(5.0);
            let grown = current * GROWTH_PER_SECOND.powf(secs);
            grown.max(current + f64::from(MIN_GROWTH_BPS))
        } else if loss <= LOSS_HIGH {
            current
        } else {
            current * (1.0 - 0.5 * f64::from(loss))
        };
        self.target_bps = self.cap(next.round() as u64);
        self.target_bps
    }

    /// Applies a REMB from the receiver: the target never exceeds it (nor drops below the
    /// minimum). Returns the new target.
    pub fn on_remb(&mut self, bps: u64) -> u32 {
        self.remb_bps = Some(bps);
        self.target_bps = self.cap(u64::from(self.target_bps));
        self.target_bps
    }
}

/// The receiver's view of the incoming bitrate, and the estimate it reports as REMB.
#[derive(Clone, Debug)]
pub struct ReceiveRate {
    window: Duration,
    samples: VecDeque<(Instant, usize)>,
    bytes_in_window: usize,
    floor_bps: u64,
}

impl ReceiveRate {
    /// A meter over a one-second window whose estimate never goes below `floor_bps`.
    pub fn new(floor_bps: u64) -> Self {
        Self::with_window(Duration::from_secs(1), floor_bps)
    }

    /// A meter over `window` (at least 100 ms) whose estimate never goes below `floor_bps`.
    pub fn with_window(window: Duration, floor_bps: u64) -> Self {
        ReceiveRate {
            window: window.max(Duration::from_millis(100)),
            samples: VecDeque::new(),
            bytes_in_window: 0,
            floor_bps,
        }
    }

    fn trim(&mut self, now: Instant) {
        while let Some(&(t, bytes)) = self.samples.front() {
            if now.saturating_duration_since(t) <= self.window {
                break;
            }
            self.samples.pop_front();
            self.bytes_in_window -= bytes;
        }
    }

    /// Records `bytes` of RTP received at `now`.
    pub fn on_packet(&mut self, now: Instant, bytes: usize) {
        self.trim(now);
        self.samples.push_back((now, bytes));
        self.bytes_in_window += bytes;
    }

    /// Bits per second received over the window ending at `now`.
    pub fn bitrate_bps(&mut self, now: Instant) -> u64 {
        self.trim(now);
        (self.bytes_in_window as u64 * 8 * 1000) / self.window.as_millis().max(1) as u64
    }

    /// The estimate to send as REMB: the received rate with headroom to grow (x1.5) while loss
    /// is below 2 %, the received rate at 2..10 %, and the received rate times (1 - 0.5 * loss)
    /// above; never below the floor. `None` when nothing was received in the window.
    pub fn estimate_bps(&mut self, now: Instant, fraction_lost: f32) -> Option<u64> {
        let rate = self.bitrate_bps(now);
        if self.samples.is_empty() {
            return None;
        }
        let loss = if fraction_lost.is_finite() {
            fraction_lost.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let estimate = if loss < LOSS_LOW {
            rate.saturating_mul(3) / 2
        } else if loss <= LOSS_HIGH {
            rate
        } else {
            (rate as f64 * (1.0 - 0.5 * f64::from(loss))).round() as u64
        };
        Some(estimate.max(self.floor_bps))
    }

    /// [`ReceiveRate::estimate_bps`], with 0 when nothing was received (send no REMB then).
    pub fn estimate(&mut self, now: Instant, fraction_lost: f32) -> u64 {
        self.estimate_bps(now, fraction_lost).unwrap_or(0)
    }
}

impl Default for ReceiveRate {
    fn default() -> Self {
        Self::new(DEFAULT_REMB_FLOOR_BPS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_controller_grows_holds_and_backs_off() {
        let t0 = Instant::now();
        let mut r = RateController::new(100_000, 500_000, 2_000_000);
        assert_eq!(r.target_bps(), 500_000);
        // No loss for 1 s: +8 %.
        assert_eq!(r.on_loss_report(t0, 0.0), 540_000);
        let after = r.on_loss_report(t0 + Duration::from_secs(1), 0.01);
        assert_eq!(after, 583_200);
        // 5 % holds.
        assert_eq!(r.on_loss_report(t0 + Duration::from_secs(2), 0.05), 583_200);
        // 20 % loss: x0.9.
        assert_eq!(r.on_loss_report(t0 + Duration::from_secs(3), 0.2), 524_880);
        // Total loss: halves, but never below the minimum.
        for i in 4..20 {
            r.on_loss_report(t0 + Duration::from_secs(i), 1.0);
        }
        assert_eq!(r.target_bps(), 100_000);
        // NaN and nonsense are treated as no loss / clamped.
        assert!(r.on_loss_report(t0 + Duration::from_secs(21), f32::NAN) > 100_000);
        assert!(r.on_loss_report(t0 + Duration::from_secs(22), -3.0) > 100_000);
        // Growth stops at the maximum.
        for i in 23..200 {
            r.on_loss_report(t0 + Duration::from_secs(i), 0.0);
        }
        assert_eq!(r.target_bps(), 2_000_000);
    }

    #[test]
    fn remb_caps_the_target() {
        let t0 = Instant::now();
        let mut r = RateController::new(50_000, 800_000, 2_000_000);
        assert_eq!(r.on_remb(300_000), 300_000);
        assert_eq!(r.on_loss_report(t0, 0.0), 300_000);
        // A REMB below the minimum: the minimum wins.
        assert_eq!(r.on_remb(10_000), 50_000);
        assert_eq!(r.on_remb(u64::MAX), 50_000);
        assert_eq!(r.on_loss_report(t0 + Duration::from_secs(1), 0.0), 54_000);
        r.set_limits(60_000, 70_000);
        assert_eq!(r.target_bps(), 60_000);
        // Start outside the limits is clamped; max below min is raised.
        assert_eq!(RateController::new(100, 5, 50).target_bps(), 100);
    }

    #[test]
    fn receive_rate_over_a_window() {
        let t0 = Instant::now();
        let mut r = ReceiveRate::new(10_000);
        assert_eq!(r.estimate_bps(t0, 0.0), None);
        assert_eq!(r.estimate(t0, 0.0), 0);
        // 100 packets of 1250 bytes over one second: 1 Mbit/s.
        for i in 0..100u64 {
            r.on_packet(t0 + Duration::from_millis(i * 10), 1250);
        }
        let now = t0 + Duration::from_millis(990);
        assert_eq!(r.bitrate_bps(now), 1_000_000);
        assert_eq!(r.estimate_bps(now, 0.0), Some(1_500_000));
        assert_eq!(r.estimate_bps(now, 0.05), Some(1_000_000));
        assert_eq!(r.estimate_bps(now, 0.5), Some(750_000));
        // Half a second later half the window has slid out.
        assert_eq!(r.bitrate_bps(now + Duration::from_millis(505)), 500_000);
        // Long silence: nothing in the window.
        assert_eq!(r.estimate_bps(now + Duration::from_secs(5), 0.0), None);
        // The floor holds for tiny rates.
        r.on_packet(now + Duration::from_secs(6), 10);
        assert_eq!(
            r.estimate_bps(now + Duration::from_secs(6), 0.0),
            Some(10_000)
        );
    }
}
