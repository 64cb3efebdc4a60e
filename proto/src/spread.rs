//! A hash map that grows and shrinks incrementally.
//!
//! A plain `HashMap` rehashes every entry at once when it grows: with a few hundred
//! thousand transactions or bindings that is tens of milliseconds in one call, during
//! which a single-threaded SIP core neither receives nor sends, so peers see a stall
//! followed by a burst (and retransmit). `SpreadMap` keeps the previous table beside
//! the new one and moves a bounded number of entries on every insert and remove.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Entries migrated from the previous table per insert or remove.
const STEP: usize = 64;
/// The smallest capacity a shrink goes down to.
const MIN_CAPACITY: usize = 1024;

/// A hash map whose resizes are spread over many operations (see the module docs).
#[derive(Debug)]
pub struct SpreadMap<K, V> {
    /// The current table: every insert goes here.
    new: HashMap<K, V>,
    /// The table being migrated into `new` (empty when no resize is under way).
    old: HashMap<K, V>,
}

impl<K, V> Default for SpreadMap<K, V> {
    fn default() -> Self {
        Self {
            new: HashMap::new(),
            old: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq, V> SpreadMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// A map holding the entries of `map`.
    pub fn from_map(map: HashMap<K, V>) -> Self {
        Self {
            new: map,
            old: HashMap::new(),
        }
    }

    /// The stored key equal to `key` and its value.
    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.new.get_key_value(key) {
            Some(kv) => Some(kv),
            None if self.old.is_empty() => None,
            None => self.old.get_key_value(key),
        }
    }

    /// Keeps only the entries for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.new.retain(&mut keep);
        self.old.retain(&mut keep);
        if self.old.is_empty() {
            self.old = HashMap::new();
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.new.len() + self.old.len()
    }

    /// True when the map holds no entry.
    pub fn is_empty(&self) -> bool {
        self.new.is_empty() && self.old.is_empty()
    }

    /// Slots allocated over both tables.
    pub fn capacity(&self) -> usize {
        self.new.capacity() + self.old.capacity()
    }

    /// The value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.new.get(key) {
            Some(v) => Some(v),
            None if self.old.is_empty() => None,
            None => self.old.get(key),
        }
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.new.values().chain(self.old.values())
    }

    /// The value of `key`, mutable.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.old.is_empty() || self.new.contains_key(key) {
            self.new.get_mut(key)
        } else {
            self.old.get_mut(key)
        }
    }

    /// Inserts `value` under `key`, returning the value it replaces.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.step();
        let previous = if self.old.is_empty() {
            None
        } else {
            self.take_old(&key)
        };
        if self.new.len() >= self.new.capacity() && !self.new.contains_key(&key) {
            // Full: the next insert would rehash everything. Double into a fresh table.
            let target = self.new.capacity().max(MIN_CAPACITY / 2) * 2;
            self.start_resize(target);
        }
        self.new.insert(key, value).or(previous)
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.step();
        match self.new.remove(key) {
            Some(v) => Some(v),
            None if self.old.is_empty() => None,
            None => self.take_old(key),
        }
    }

    /// Removes `key` from the previous table, releasing that table once it is empty.
    fn take_old<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let value = self.old.remove(key);
        if self.old.is_empty() {
            self.old = HashMap::new();
        }
        value
    }

    /// Starts giving memory back once under a quarter of the capacity is used (hysteresis,
    /// so steady load never reallocates); the entries move over the following operations.
    pub fn maybe_shrink(&mut self) {
        let capacity = self.new.capacity();
        if self.old.is_empty() && capacity > MIN_CAPACITY && self.new.len() < capacity / 4 {
            self.start_resize((self.new.len() * 2).max(MIN_CAPACITY));
            self.step();
        }
    }

    /// Makes a fresh table of `capacity` current; the entries follow step by step.
    fn start_resize(&mut self, capacity: usize) {
        // A resize still under way (only possible if a table filled within a migration):
        // finish it first so that there are never more than two tables.
        if !self.old.is_empty() {
            self.new.extend(self.old.drain());
        }
        let capacity = capacity.max(self.new.len() * 2);
        self.old = std::mem::replace(&mut self.new, HashMap::with_capacity(capacity));
    }

    /// Moves up to [`STEP`] entries from the previous table into the current one.
    fn step(&mut self) {
        if self.old.is_empty() {
            if self.old.capacity() > 0 {
                self.old = HashMap::new();
            }
            return;
        }
        for (k, v) in self.old.extract_if(|_, _| true).take(STEP) {
            self.new.insert(k, v);
        }
        if self.old.is_empty() {
            // Give the previous table's memory back.
            self.old = HashMap::new();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_hash_map_through_growth_and_shrink() {
        let mut m: SpreadMap<u64, u64> = SpreadMap::new();
        let mut reference = HashMap::new();
        for i in 0..50_000u64 {
            assert_eq!(m.insert(i, i * 3), reference.insert(i, i * 3));
            if i % 7 == 0 {
                let k = i / 2;
                assert_eq!(m.remove(&k), reference.remove(&k));
            }
            if i % 11 == 0 {
                let k = i / 3;
                assert_eq!(m.insert(k, 1), reference.insert(k, 1));
            }
            assert_eq!(m.len(), reference.len());
        }
        for (k, v) in &reference {
            assert_eq!(m.get(k), Some(v));
        }
        *m.get_mut(&49_999).unwrap() = 7;
        reference.insert(49_999, 7);
        assert_eq!(m.get(&49_999), Some(&7));
        assert_eq!(m.get(&100_000), None);
        let keys: Vec<u64> = reference.keys().copied().collect();
        for k in keys {
            assert_eq!(m.remove(&k), reference.remove(&k));
            m.maybe_shrink();
        }
        assert_eq!(m.len(), 0);
        m.maybe_shrink();
        assert!(
            m.capacity() <= 2048,
            "capacity {} after emptying",
            m.capacity()
        );
    }

    #[test]
    fn no_operation_migrates_more_than_a_step() {
        let mut m: SpreadMap<u64, u64> = SpreadMap::new();
        let mut i = 0;
        // Fill to just before a resize, then trigger it.
        while m.new.len() < m.new.capacity() || m.new.capacity() < 10_000 {
            m.insert(i, i);
            i += 1;
        }
        let before = m.new.len();
        m.insert(i, i);
        assert_eq!(m.old.len(), before, "the resize moved nothing at once");
        assert_eq!(m.new.len(), 1);
        m.insert(i + 1, i + 1);
        assert_eq!(m.old.len(), before - STEP);
        for k in 0..=i + 1 {
            assert_eq!(m.get(&k), Some(&k));
        }
    }

    #[test]
    fn from_map_retain_and_key_lookup() {
        let mut m: SpreadMap<String, u32> =
            SpreadMap::from_map((0..5000u32).map(|i| (format!("k{i}"), i)).collect());
        for i in 5000..20_000u32 {
            m.insert(format!("k{i}"), i);
        }
        m.retain(|_, v| *v % 2 == 0);
        assert_eq!(m.len(), 10_000);
        let (k, v) = m.get_key_value("k4").unwrap();
        assert_eq!((k.as_str(), *v), ("k4", 4));
        assert!(m.get_key_value("k5").is_none());
        assert!(!m.is_empty());
    }
}
