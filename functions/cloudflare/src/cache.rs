//! A small time-bounded cache that lives as long as the isolate does.
//!
//! Workers reuse an isolate for many requests, so a parsed snapshot or a loaded model plan kept
//! here spares the KV read (and the parse) on every request. Time comes in as an argument so the
//! cache is deterministic and testable natively.

use std::collections::HashMap;
use std::hash::Hash;

/// One cached value and the instant it stops being served.
#[derive(Debug, Clone)]
struct Entry<V> {
    value: V,
    loaded_at_ms: f64,
    expires_at_ms: f64,
}

/// What a cache lookup found, with the age of the value it serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit<V> {
    /// The cached value.
    pub value: V,
    /// How long ago the value was loaded, in milliseconds.
    pub age_ms: f64,
}

/// Lookup counters, reported by the status route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Lookups served from the cache.
    pub hits: u64,
    /// Lookups that found nothing, or only an expired value.
    pub misses: u64,
    /// Entries currently held.
    pub entries: usize,
}

/// A bounded map whose entries expire after a time-to-live.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    entries: HashMap<K, Entry<V>>,
    capacity: usize,
    hits: u64,
    misses: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// An empty cache holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            hits: 0,
            misses: 0,
        }
    }

    /// The value under `key` if it has not expired at `now_ms`.
    pub fn get(&mut self, key: &K, now_ms: f64) -> Option<Hit<V>> {
        match self.entries.get(key) {
            Some(entry) if now_ms < entry.expires_at_ms => {
                self.hits += 1;
                Some(Hit {
                    value: entry.value.clone(),
                    age_ms: now_ms - entry.loaded_at_ms,
                })
            }
            Some(_) => {
                self.entries.remove(key);
                self.misses += 1;
                None
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Keeps `value` under `key` until `now_ms + ttl_ms`, evicting the entry closest to expiry
    /// when the cache is full.
    pub fn insert(&mut self, key: K, value: V, now_ms: f64, ttl_ms: f64) {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, entry| now_ms < entry.expires_at_ms);
            if self.entries.len() >= self.capacity
                && let Some(soonest) = self
                    .entries
                    .iter()
                    .min_by(|a, b| a.1.expires_at_ms.total_cmp(&b.1.expires_at_ms))
                    .map(|(key, _)| key.clone())
            {
                self.entries.remove(&soonest);
            }
        }
        self.entries.insert(
            key,
            Entry {
                value,
                loaded_at_ms: now_ms,
                expires_at_ms: now_ms + ttl_ms.max(0.0),
            },
        );
    }

    /// Replaces a live value under `key` with `update(value)`, keeping when it was loaded and
    /// when it expires; an absent or expired entry stays absent.
    pub fn replace(&mut self, key: &K, now_ms: f64, update: impl FnOnce(&V) -> V) {
        if let Some(entry) = self.entries.get_mut(key)
            && now_ms < entry.expires_at_ms
        {
            entry.value = update(&entry.value);
        }
    }

    /// Drops the value under `key`, so the next lookup loads a fresh one.
    pub fn invalidate(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Lookup counters and the number of entries held.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits,
            misses: self.misses,
            entries: self.entries.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_a_value_until_its_ttl_ends() {
        let mut cache = TtlCache::new(4);
        cache.insert("snapshot", 7, 1_000.0, 500.0);
        assert_eq!(
            cache.get(&"snapshot", 1_200.0),
            Some(Hit {
                value: 7,
                age_ms: 200.0
            })
        );
        assert_eq!(cache.get(&"snapshot", 1_500.0), None);
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 1,
                misses: 1,
                entries: 0
            }
        );
    }

    #[test]
    fn a_replaced_value_keeps_its_age_and_expiry() {
        let mut cache = TtlCache::new(4);
        cache.insert("state", 7, 1_000.0, 500.0);
        cache.replace(&"state", 1_100.0, |v| v + 1);
        assert_eq!(
            cache.get(&"state", 1_200.0),
            Some(Hit {
                value: 8,
                age_ms: 200.0
            })
        );
        assert_eq!(cache.get(&"state", 1_500.0), None);
        // Nothing to replace: an expired or absent entry is not brought back.
        cache.replace(&"state", 1_600.0, |v| v + 1);
        cache.insert("other", 1, 1_600.0, 10.0);
        cache.replace(&"other", 1_700.0, |v| v + 1);
        assert_eq!(cache.get(&"state", 1_600.0), None);
        assert_eq!(cache.get(&"other", 1_605.0).map(|hit| hit.value), Some(1));
    }

    #[test]
    fn a_missing_key_counts_as_a_miss() {
        let mut cache: TtlCache<&str, u8> = TtlCache::new(1);
        assert_eq!(cache.get(&"model", 0.0), None);
        assert_eq!(cache.stats().misses, 1);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first_then_the_one_expiring_soonest() {
        let mut cache = TtlCache::new(2);
        cache.insert("a", 1, 0.0, 100.0);
        cache.insert("b", 2, 0.0, 1_000.0);
        // "a" has expired at 150: it goes, "b" stays.
        cache.insert("c", 3, 150.0, 1_000.0);
        assert_eq!(cache.get(&"b", 160.0).map(|hit| hit.value), Some(2));
        assert_eq!(cache.get(&"c", 160.0).map(|hit| hit.value), Some(3));
        // Nothing expired: "b" (expires at 1000) goes before "c" (1150).
        cache.insert("d", 4, 200.0, 1_000.0);
        assert_eq!(cache.get(&"b", 210.0), None);
        assert_eq!(cache.get(&"c", 210.0).map(|hit| hit.value), Some(3));
        assert_eq!(cache.get(&"d", 210.0).map(|hit| hit.value), Some(4));
    }

    #[test]
    fn replacing_a_key_in_a_full_cache_evicts_nothing_else() {
        let mut cache = TtlCache::new(2);
        cache.insert("a", 1, 0.0, 100.0);
        cache.insert("b", 2, 0.0, 100.0);
        cache.insert("a", 10, 10.0, 100.0);
        assert_eq!(cache.get(&"a", 20.0).map(|hit| hit.value), Some(10));
        assert_eq!(cache.get(&"b", 20.0).map(|hit| hit.value), Some(2));
    }

    #[test]
    fn invalidate_forces_the_next_lookup_to_miss() {
        let mut cache = TtlCache::new(2);
        cache.insert("snapshot", 1, 0.0, 10_000.0);
        cache.invalidate(&"snapshot");
        assert_eq!(cache.get(&"snapshot", 1.0), None);
    }
}
