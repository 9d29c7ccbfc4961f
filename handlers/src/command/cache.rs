//! The handlers' state cache: aggregate id → the aggregate's slot, bounded
//! in count, with idle slots dropped.
//!
//! Every command looks its aggregate up here once, so the lookup is kept to
//! a hash, a short mutex hold on one of many shards, and a reference-count
//! increment. Eviction is approximate LRU done in bulk: when a shard is full,
//! one pass drops its idle slots and, if that is not enough, the
//! least-recently-used eighth; between passes inserts cost nothing extra.
//! A slot in use (a command holds it) is never dropped, so one process
//! never holds two slots for one aggregate. Idle slots are also dropped by
//! a pass that a lookup runs at most every half idle period per shard; with
//! no lookups at all, nothing runs (there is no background thread).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shards at most: enough that two cores rarely meet on one lock.
const MAX_SHARDS: usize = 64;

pub(crate) struct SlotCache<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    hasher: RandomState,
    idle: Duration,
}

struct Shard<V> {
    map: HashMap<Box<str>, Entry<V>>,
    capacity: usize,
    last_sweep: Instant,
}

struct Entry<V> {
    value: Arc<V>,
    used: Instant,
}

impl<V> SlotCache<V> {
    /// A cache of at most `capacity` slots (at least one), dropping slots
    /// unused for `idle`.
    pub(crate) fn new(capacity: u64, idle: Duration) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        let count = capacity.min(MAX_SHARDS);
        let now = Instant::now();
        // The shards' capacities add up to `capacity` exactly.
        let shards = (0..count)
            .map(|i| {
                Mutex::new(Shard {
                    map: HashMap::new(),
                    capacity: capacity / count + usize::from(i < capacity % count),
                    last_sweep: now,
                })
            })
            .collect();
        SlotCache {
            shards,
            hasher: RandomState::new(),
            idle,
        }
    }

    /// The slot of `key`, made by `make` when there is none.
    pub(crate) fn get_or_insert_with(&self, key: &str, make: impl FnOnce() -> V) -> Arc<V> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        if now.saturating_duration_since(shard.last_sweep) >= self.idle / 2 {
            shard.sweep(now, self.idle, 0);
        }
        if let Some(entry) = shard.map.get_mut(key) {
            entry.used = now;
            return entry.value.clone();
        }
        if shard.map.len() >= shard.capacity {
            let keep = shard.capacity - shard.capacity.div_ceil(8);
            shard.sweep(now, self.idle, keep);
        }
        let value = Arc::new(make());
        // Every slot may be in use: then the shard holds one more until
        // the next pass rather than dropping a slot a command holds.
        shard.map.insert(
            key.into(),
            Entry {
                value: value.clone(),
                used: now,
            },
        );
        value
    }

    /// The slot of `key`, when one is held.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<V>> {
        self.shard(key).map.get(key).map(|e| e.value.clone())
    }

    /// Slots held, over all shards.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).map.len())
            .sum()
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard<V>> {
        let index = (self.hasher.hash_one(key) % self.shards.len() as u64) as usize;
        // The lock only guards map operations, which do not panic midway;
        // a poisoned shard is still consistent.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<V> Shard<V> {
    /// Drops slots unused for `idle`, then, while more than `keep` remain,
    /// the least recently used; never a slot in use.
    fn sweep(&mut self, now: Instant, idle: Duration, keep: usize) {
        self.last_sweep = now;
        let free = |entry: &Entry<V>| Arc::strong_count(&entry.value) == 1;
        self.map
            .retain(|_, e| !free(e) || now.saturating_duration_since(e.used) < idle);
        if self.map.len() <= keep {
            return;
        }
        let mut times: Vec<Instant> = self
            .map
            .values()
            .filter(|e| free(e))
            .map(|e| e.used)
            .collect();
        let excess = self.map.len() - keep;
        if excess >= times.len() {
            self.map.retain(|_, e| !free(e));
            return;
        }
        // The `excess` oldest free slots go: those used at or before the
        // excess-th oldest time.
        let (_, cutoff, _) = times.select_nth_unstable(excess - 1);
        let cutoff = *cutoff;
        let mut dropped = 0;
        self.map.retain(|_, e| {
            if dropped < excess && free(e) && e.used <= cutoff {
                dropped += 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_keeps_its_slot() {
        let cache = SlotCache::new(10, Duration::from_secs(60));
        let a = cache.get_or_insert_with("a", || 1);
        let again = cache.get_or_insert_with("a", || 2);
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(*again, 1);
    }

    #[test]
    fn the_count_stays_within_capacity() {
        for capacity in [1u64, 7, 64, 100, 1000] {
            let cache = SlotCache::new(capacity, Duration::from_secs(600));
            for i in 0..capacity * 5 {
                drop(cache.get_or_insert_with(&format!("k{i}"), || i));
            }
            let held = cache.len() as u64;
            assert!(held <= capacity, "{capacity}: {held}");
            assert!(held >= capacity / 2, "{capacity}: only {held} kept");
        }
    }

    #[test]
    fn the_least_recently_used_go_first() {
        // 64 shards of 8: every shard fills and evicts many times over.
        let cache = SlotCache::new(512, Duration::from_secs(600));
        drop(cache.get_or_insert_with("hot", || 0));
        for i in 0..5000 {
            drop(cache.get_or_insert_with("hot", || 1));
            drop(cache.get_or_insert_with(&format!("k{i}"), || 1));
        }
        assert!(cache.len() <= 512);
        let hot = cache.get_or_insert_with("hot", || 2);
        assert_eq!(*hot, 0, "a slot used all along stayed");
    }

    #[test]
    fn a_slot_in_use_is_never_dropped() {
        let cache = SlotCache::new(1, Duration::from_secs(600));
        let held = cache.get_or_insert_with("held", || 1);
        for i in 0..10 {
            drop(cache.get_or_insert_with(&format!("k{i}"), || 2));
        }
        let again = cache.get_or_insert_with("held", || 3);
        assert!(Arc::ptr_eq(&held, &again));
    }

    #[test]
    fn idle_slots_leave() {
        let cache = SlotCache::new(10_000, Duration::from_millis(20));
        drop(cache.get_or_insert_with("old", || 1));
        drop(cache.get_or_insert_with("fresh", || 1));
        std::thread::sleep(Duration::from_millis(30));
        // A lookup in a shard last swept over half the idle period ago
        // sweeps it first: far below capacity, only idleness drops a slot.
        assert_eq!(*cache.get_or_insert_with("old", || 3), 3);
        assert_eq!(*cache.get_or_insert_with("fresh", || 3), 3);
        // Used again just now: kept.
        assert_eq!(*cache.get_or_insert_with("old", || 4), 3);
    }
}
