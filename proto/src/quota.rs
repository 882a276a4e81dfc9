//! Keyed token buckets: "at most `burst` at once and `per_minute` sustained, per key",
//! for quotas such as relay grants per caller key and per source IP.
//!
//! Bounded: at most `max_keys` keys are tracked; when the table is full, keys whose
//! buckets have refilled completely are forgotten first (they carry no state worth
//! keeping), and if none has, the request is refused (a flood of distinct keys must
//! not grow memory). Runs on [`Mono`] time, so a wall-clock step neither freezes nor
//! refills the buckets.

use crate::time::Mono;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

/// One quota: a bucket depth and a sustained refill rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// How many may be taken at once by a key that was quiet.
    pub burst: u32,
    /// Sustained allowance per hour.
    pub per_hour: u32,
}

impl Quota {
    /// `burst` at once, `per_minute` sustained.
    pub const fn new(burst: u32, per_minute: u32) -> Quota {
        Quota {
            burst,
            per_hour: per_minute.saturating_mul(60),
        }
    }

    /// `burst` at once, `per_hour` sustained (for rare, costly requests such as
    /// upload probes).
    pub const fn hourly(burst: u32, per_hour: u32) -> Quota {
        Quota { burst, per_hour }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens available, in 1/3,600,000 of a token (one per_hour token per ms).
    level: u64,
    at: Mono,
}

/// Token buckets per key, bounded in number.
#[derive(Debug)]
pub struct KeyedQuota<K> {
    quota: Quota,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
}

/// Units per token: an hour in milliseconds, so refilling `per_hour` tokens per hour
/// adds exactly `per_hour` units per millisecond.
const UNIT: u64 = 3_600_000;

impl<K: Eq + Hash + Clone> KeyedQuota<K> {
    /// Empty; at most `max_keys` keys tracked at once.
    pub fn new(quota: Quota, max_keys: usize) -> KeyedQuota<K> {
        KeyedQuota {
            quota,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    fn depth(&self) -> u64 {
        u64::from(self.quota.burst) * UNIT
    }

    fn refilled(&self, b: Bucket, now: Mono) -> u64 {
        let add = now.since(b.at).as_millis().min(u64::MAX as u128) as u64;
        b.level
            .saturating_add(add.saturating_mul(u64::from(self.quota.per_hour)))
            .min(self.depth())
    }

    /// Whether `key` could take one now (nothing is taken).
    pub fn allows(&self, key: &K, now: Mono) -> bool {
        match self.buckets.get(key) {
            Some(b) => self.refilled(*b, now) >= UNIT,
            None => self.quota.burst > 0,
        }
    }

    /// Takes one for `key` if its bucket has one; `false` means over quota.
    pub fn take(&mut self, key: &K, now: Mono) -> bool {
        let depth = self.depth();
        let level = match self.buckets.get(key) {
            Some(b) => self.refilled(*b, now),
            None => {
                if self.buckets.len() >= self.max_keys {
                    self.forget_full(now);
                    if self.buckets.len() >= self.max_keys {
                        return false;
                    }
                }
                depth
            }
        };
        if level < UNIT {
            self.buckets.insert(key.clone(), Bucket { level, at: now });
            return false;
        }
        self.buckets.insert(
            key.clone(),
            Bucket {
                level: level - UNIT,
                at: now,
            },
        );
        true
    }

    /// Forgets keys whose buckets are full again.
    fn forget_full(&mut self, now: Mono) {
        let depth = self.depth();
        let quota = self.quota;
        self.buckets.retain(|_, b| {
            let add = now.since(b.at).as_millis().min(u64::MAX as u128) as u64;
            b.level
                .saturating_add(add.saturating_mul(u64::from(quota.per_hour)))
                < depth
        });
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// How long until `key` may take one again (zero if it may now).
    pub fn wait(&self, key: &K, now: Mono) -> Duration {
        let Some(b) = self.buckets.get(key) else {
            return Duration::ZERO;
        };
        let level = self.refilled(*b, now);
        if level >= UNIT || self.quota.per_hour == 0 {
            return Duration::ZERO;
        }
        let ms = (UNIT - level).div_ceil(u64::from(self.quota.per_hour));
        Duration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut q = KeyedQuota::new(Quota::new(3, 6), 10);
        let t = Mono(1_000);
        assert!((0..3).all(|_| q.take(&"a", t)));
        assert!(!q.take(&"a", t), "the burst is spent");
        assert!(q.take(&"b", t), "other keys are not affected");
        // 6 a minute: one every 10 s.
        assert_eq!(q.wait(&"a", t), Duration::from_secs(10));
        assert!(!q.take(&"a", t + Duration::from_secs(9)));
        assert!(q.take(&"a", t + Duration::from_secs(10)));
        assert!(!q.take(&"a", t + Duration::from_secs(10)));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_idle_keys_first() {
        let mut q = KeyedQuota::new(Quota::new(1, 60), 2);
        let t = Mono(0);
        assert!(q.take(&1, t) && q.take(&2, t));
        assert!(!q.take(&3, t), "full of busy keys: refuse, do not grow");
        assert_eq!(q.len(), 2);
        // A second later both buckets are full again and may be forgotten.
        assert!(q.take(&3, t + Duration::from_secs(1)));
        assert!(q.len() <= 2);
    }

    #[test]
    fn an_hourly_quota_refills_per_hour() {
        let mut q = KeyedQuota::new(Quota::hourly(2, 4), 10);
        let t = Mono(0);
        assert!(q.take(&"a", t) && q.take(&"a", t));
        assert!(!q.take(&"a", t));
        // 4 an hour: one every 15 min.
        assert_eq!(q.wait(&"a", t), Duration::from_secs(15 * 60));
        assert!(!q.take(&"a", t + Duration::from_secs(14 * 60)));
        assert!(q.take(&"a", t + Duration::from_secs(15 * 60)));
    }
}
