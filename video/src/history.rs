//! The sender's packet history: recently sent RTP packets kept for NACK retransmission,
//! bounded by count and by age, looked up by 16-bit sequence number.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Most packets a history keeps: half the sequence space, so a number is never ambiguous.
pub const MAX_HISTORY_PACKETS: usize = 1 << 15;

#[derive(Debug)]
struct Entry {
    sent: Instant,
    order: u64,
    packet: Vec<u8>,
}

/// Recently sent packets by sequence number.
#[derive(Debug)]
pub struct SendHistory {
    max_packets: usize,
    max_age: Duration,
    entries: HashMap<u16, Entry>,
    /// Sequence numbers in push order with the push counter that put them there.
    order: VecDeque<(u16, u64)>,
    pushes: u64,
    bytes: usize,
}

impl SendHistory {
    /// A history of at most `max_packets` packets (capped at [`MAX_HISTORY_PACKETS`], at
    /// least 1) no older than `max_age`.
    pub fn new(max_packets: usize, max_age: Duration) -> Self {
        SendHistory {
            max_packets: max_packets.clamp(1, MAX_HISTORY_PACKETS),
            max_age,
            entries: HashMap::new(),
            order: VecDeque::new(),
            pushes: 0,
            bytes: 0,
        }
    }

    /// Records a sent packet (the whole serialised RTP packet, before SRTP protection). A
    /// packet with the same sequence number replaces the older one.
    pub fn push(&mut self, now: Instant, seq: u16, packet: Vec<u8>) {
        self.expire(now);
        self.pushes += 1;
        self.bytes += packet.len();
        if let Some(old) = self.entries.insert(
            seq,
            Entry {
                sent: now,
                order: self.pushes,
                packet,
            },
        ) {
            self.bytes -= old.packet.len();
        }
        self.order.push_back((seq, self.pushes));
        while self.entries.len() > self.max_packets {
            self.pop_oldest();
        }
        // Stale order entries (replaced sequence numbers) are skipped by pop_oldest; keep
        // the deque from growing without bound when numbers are replaced often.
        while self.order.len() > 2 * self.max_packets {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((seq, order)) = self.order.pop_front()
            && self.entries.get(&seq).is_some_and(|e| e.order == order)
            && let Some(e) = self.entries.remove(&seq)
        {
            self.bytes -= e.packet.len();
        }
    }

    /// Forgets packets older than the maximum age.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(seq, order)) = self.order.front() {
            let live = self.entries.get(&seq).filter(|e| e.order == order);
            match live {
                Some(e) if now.saturating_duration_since(e.sent) <= self.max_age => break,
                _ => self.pop_oldest(),
            }
        }
    }

    /// The packet sent with sequence number `seq`, if still kept.
    pub fn get(&self, seq: u16) -> Option<&[u8]> {
        self.entries.get(&seq).map(|e| e.packet.as_slice())
    }

    /// The packet sent with `seq` if it is still younger than the maximum age at `now`.
    pub fn get_fresh(&self, now: Instant, seq: u16) -> Option<&[u8]> {
        self.entries
            .get(&seq)
            .filter(|e| now.saturating_duration_since(e.sent) <= self.max_age)
            .map(|e| e.packet.as_slice())
    }

    /// Number of packets kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no packet is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of packets kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_count_and_age_across_wrap() {
        let t0 = Instant::now();
        let mut h = SendHistory::new(4, Duration::from_secs(1));
        for (i, seq) in [65533u16, 65534, 65535, 0, 1, 2].into_iter().enumerate() {
            h.push(
                t0 + Duration::from_millis(i as u64 * 100),
                seq,
                vec![seq as u8; 3],
            );
        }
        assert_eq!(h.len(), 4);
        assert!(h.get(65533).is_none() && h.get(65534).is_none());
        assert_eq!(h.get(65535), Some(&[255u8; 3][..]));
        assert_eq!(h.get(2), Some(&[2u8; 3][..]));
        assert_eq!(h.bytes(), 12);
        h.expire(t0 + Duration::from_millis(1250));
        // Pushed at 200..500 ms: the one older than 1 s at 1250 ms is gone.
        assert!(h.get(65535).is_none());
        assert!(h.get(0).is_some() && h.get(2).is_some());
        assert!(h.get_fresh(t0 + Duration::from_millis(1350), 0).is_none());
        assert!(h.get_fresh(t0 + Duration::from_millis(1350), 1).is_some());
    }

    #[test]
    fn long_runs_keep_exactly_the_newest_packets() {
        let t0 = Instant::now();
        let mut h = SendHistory::new(500, Duration::from_secs(60));
        let start = 65_000u16;
        for i in 0..3000u32 {
            let seq = start.wrapping_add(i as u16);
            h.push(
                t0 + Duration::from_millis(u64::from(i)),
                seq,
                i.to_be_bytes().to_vec(),
            );
        }
        assert_eq!(h.len(), 500);
        for i in 0..3000u32 {
            let seq = start.wrapping_add(i as u16);
            let got = h.get(seq);
            if i >= 2500 {
                assert_eq!(got, Some(&i.to_be_bytes()[..]), "seq {seq}");
            } else {
                assert!(got.is_none(), "seq {seq} should be gone");
            }
        }
        // Oversized limits are capped at half the sequence space.
        let mut big = SendHistory::new(usize::MAX, Duration::from_secs(3600));
        for i in 0..70_000u32 {
            big.push(t0, i as u16, vec![1]);
        }
        assert_eq!(big.len(), MAX_HISTORY_PACKETS);
        assert!(big.get(69_999u32 as u16).is_some());
        assert!(
            big.get((70_000u32 - MAX_HISTORY_PACKETS as u32 - 1) as u16)
                .is_none()
        );
    }

    #[test]
    fn replacing_a_sequence_number() {
        let t0 = Instant::now();
        let mut h = SendHistory::new(2, Duration::from_secs(10));
        h.push(t0, 7, vec![1]);
        h.push(t0, 7, vec![2, 2]);
        h.push(t0, 8, vec![3]);
        assert_eq!(h.get(7), Some(&[2u8, 2][..]));
        assert_eq!(h.len(), 2);
        assert_eq!(h.bytes(), 3);
        h.push(t0, 9, vec![4]);
        assert!(h.get(7).is_none());
        assert_eq!(h.len(), 2);
    }
}
