//! The RFC 3261 §17 timers of one transaction, kept in a fixed table keyed by an enum,
//! plus the layer-wide deadline index that `poll_timeout` reads.

use std::collections::BTreeSet;
use std::time::Instant;

use super::TxId;

/// One of the transaction timers of RFC 3261 §17 (Table 4) and RFC 6026.
///
/// The declaration order is the firing order of timers due at the same instant: the
/// transaction timeouts (B, F, H) first, so that no retransmission is sent at the very
/// moment a transaction gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TxTimer {
    /// INVITE client: transaction timeout.
    B,
    /// Non-INVITE client: transaction timeout.
    F,
    /// INVITE server: wait time for the ACK.
    H,
    /// INVITE client: request retransmission (UDP only).
    A,
    /// INVITE client: wait time for response retransmissions in Completed.
    D,
    /// Non-INVITE client: request retransmission (UDP only).
    E,
    /// INVITE server: final response retransmission (UDP only).
    G,
    /// INVITE server: wait time for ACK retransmissions in Confirmed.
    I,
    /// Non-INVITE server: wait time for request retransmissions in Completed.
    J,
    /// Non-INVITE client: wait time for response retransmissions in Completed.
    K,
    /// INVITE server (RFC 6026): wait time for 2xx retransmissions in Accepted.
    L,
    /// INVITE client (RFC 6026): wait time for 2xx retransmissions in Accepted.
    M,
    /// INVITE server: send `100 Trying` if the TU has not answered yet (§17.2.1).
    Trying,
}

/// All pending deadlines of all transactions, ordered by time.
///
/// Every entry mirrors exactly one armed slot of some [`TimerTable`]; tables keep the
/// index in sync when timers are set, stopped or fire.
#[derive(Debug, Default)]
pub(crate) struct TimerIndex {
    deadlines: BTreeSet<(Instant, TxId, TxTimer)>,
}

impl TimerIndex {
    /// The earliest pending deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _, _)| *at)
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(TxId, TxTimer)> {
        let &(at, tx, timer) = self.deadlines.first()?;
        if at > now {
            return None;
        }
        self.deadlines.pop_first();
        Some((tx, timer))
    }

    /// The number of armed timers (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.deadlines.len()
    }
}

/// How many timers one transaction can have armed at once. The state machines never
/// arm more than two (A+B, E+F, G+H); one spare slot keeps `set` total.
const SLOTS: usize = 3;

/// The timers of one transaction: up to [`SLOTS`] armed (timer, deadline) pairs.
///
/// A compact table instead of one slot per [`TxTimer`]: it is held by every live
/// transaction, including the many that only wait in Completed for Timer J.
#[derive(Debug)]
pub(crate) struct TimerTable {
    tx: TxId,
    slots: [Option<(TxTimer, Instant)>; SLOTS],
}

impl TimerTable {
    /// An empty table for transaction `tx`.
    pub(crate) fn new(tx: TxId) -> Self {
        Self {
            tx,
            slots: [None; SLOTS],
        }
    }

    fn position(&self, timer: TxTimer) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.is_some_and(|(t, _)| t == timer))
    }

    /// The deadline of `timer`, if armed.
    #[cfg(test)]
    pub(crate) fn get(&self, timer: TxTimer) -> Option<Instant> {
        self.position(timer)
            .and_then(|i| self.slots.get(i).copied().flatten())
            .map(|(_, at)| at)
    }

    /// Arms `timer` to fire at `at`, replacing any earlier deadline.
    pub(crate) fn set(&mut self, index: &mut TimerIndex, timer: TxTimer, at: Instant) {
        self.stop(index, timer);
        let free = match self.slots.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                // Unreachable with the RFC 3261 machines (at most two timers at once);
                // if it ever happens, the latest deadline gives way so the index stays
                // an exact mirror of the table.
                debug_assert!(false, "more than {SLOTS} timers armed on {}", self.tx);
                let (latest, _) = self
                    .slots
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.map(|(_, at)| (i, at)))
                    .max_by_key(|&(_, at)| at)
                    .unwrap_or((0, at));
                if let Some(Some((t, old))) = self.slots.get_mut(latest).map(Option::take) {
                    index.deadlines.remove(&(old, self.tx, t));
                }
                latest
            }
        };
        if let Some(slot) = self.slots.get_mut(free) {
            *slot = Some((timer, at));
            index.deadlines.insert((at, self.tx, timer));
        }
    }

    /// Disarms `timer`.
    pub(crate) fn stop(&mut self, index: &mut TimerIndex, timer: TxTimer) {
        if let Some(i) = self.position(timer)
            && let Some(Some((_, at))) = self.slots.get_mut(i).map(Option::take)
        {
            index.deadlines.remove(&(at, self.tx, timer));
        }
    }

    /// Disarms every timer.
    pub(crate) fn stop_all(&mut self, index: &mut TimerIndex) {
        for slot in &mut self.slots {
            if let Some((timer, at)) = slot.take() {
                index.deadlines.remove(&(at, self.tx, timer));
            }
        }
    }

    /// Records that `timer` fired (the index entry was already popped).
    pub(crate) fn fired(&mut self, timer: TxTimer) {
        if let Some(i) = self.position(timer)
            && let Some(slot) = self.slots.get_mut(i)
        {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn index_tracks_table() {
        let now = Instant::now();
        let mut index = TimerIndex::default();
        let mut a = TimerTable::new(TxId(1));
        let mut b = TimerTable::new(TxId(2));
        a.set(&mut index, TxTimer::E, now + Duration::from_millis(500));
        a.set(&mut index, TxTimer::F, now + Duration::from_secs(32));
        b.set(&mut index, TxTimer::G, now + Duration::from_millis(100));
        assert_eq!(index.next(), Some(now + Duration::from_millis(100)));
        // Re-arming replaces the old deadline instead of adding one.
        b.set(&mut index, TxTimer::G, now + Duration::from_millis(900));
        assert_eq!(index.len(), 3);
        assert_eq!(index.next(), Some(now + Duration::from_millis(500)));
        assert_eq!(index.pop_due(now), None);
        assert_eq!(
            index.pop_due(now + Duration::from_secs(1)),
            Some((TxId(1), TxTimer::E))
        );
        a.fired(TxTimer::E);
        assert_eq!(a.get(TxTimer::E), None);
        assert_eq!(
            index.pop_due(now + Duration::from_secs(1)),
            Some((TxId(2), TxTimer::G))
        );
        b.fired(TxTimer::G);
        a.stop_all(&mut index);
        assert_eq!(index.len(), 0);
        assert_eq!(index.next(), None);
    }
}
