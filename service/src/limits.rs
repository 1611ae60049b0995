//! Token-bucket rate limits per key: the ingest's per `user_id` and per source address, a
//! broadcaster's new viewers per address.
//!
//! A bucket holds up to `rate` tokens (one second of events) and refills at `rate` per
//! second; a request takes one token per event for each key it names, all or none. The
//! buckets are bounded: past `max_keys`, the full ones (which are the same as no bucket at
//! all) are dropped; if every bucket is in use, new keys go untracked until some refill, so
//! memory stays bounded whatever the clients send.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many keys a limiter tracks at most.
pub const DEFAULT_MAX_KEYS: usize = 200_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per key.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: f64,
    max_keys: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

/// A request over its limit: the key at fault and how long until it would pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited<K> {
    /// The key whose bucket is short.
    pub key: K,
    /// How long until the bucket holds enough.
    pub retry_after: Duration,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter of `rate` events per second per key (bursts up to `rate`).
    pub fn new(rate: f64, max_keys: usize) -> Self {
        RateLimiter {
            rate,
            max_keys,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` tokens for every `(key, n)` of `demand`, all or none.
    pub fn take_all(&self, demand: &[(K, u64)], now: Instant) -> Result<(), Limited<K>> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let rate = self.rate;
        let level = |bucket: Option<&Bucket>| {
            bucket.map_or(rate, |b| {
                (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate).min(rate)
            })
        };
        for (key, n) in demand {
            let have = level(buckets.get(key));
            let need = *n as f64;
            if have < need {
                // More than a second's worth never passes: ask to come back in a second.
                let wait = if need > rate {
                    1.0
                } else {
                    (need - have) / rate
                };
                return Err(Limited {
                    key: key.clone(),
                    retry_after: Duration::from_secs_f64(wait.max(0.001)),
                });
            }
        }
        if buckets.len() + demand.len() > self.max_keys {
            buckets.retain(|_, b| {
                (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate) < rate
            });
        }
        for (key, n) in demand {
            let tokens = level(buckets.get(key)) - *n as f64;
            if buckets.len() < self.max_keys || buckets.contains_key(key) {
                buckets.insert(key.clone(), Bucket { tokens, at: now });
            }
        }
        Ok(())
    }

    /// Keys tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_a_second_at_once_then_refills() {
        let limiter = RateLimiter::new(10.0, 100);
        let t0 = Instant::now();
        assert!(limiter.take_all(&[("u", 10)], t0).is_ok());
        let refused = limiter.take_all(&[("u", 1)], t0).unwrap_err();
        assert_eq!(refused.key, "u");
        assert!(
            refused.retry_after <= Duration::from_millis(101),
            "{refused:?}"
        );
        assert!(
            limiter
                .take_all(&[("u", 1)], t0 + Duration::from_millis(100))
                .is_ok()
        );
        assert!(
            limiter
                .take_all(&[("u", 5)], t0 + Duration::from_millis(150))
                .is_err()
        );
        assert!(
            limiter
                .take_all(&[("u", 5)], t0 + Duration::from_millis(600))
                .is_ok()
        );
        assert!(
            limiter.take_all(&[("v", 11)], t0).is_err(),
            "more than a second's worth"
        );
    }

    #[test]
    fn all_or_none() {
        let limiter = RateLimiter::new(5.0, 100);
        let t0 = Instant::now();
        assert!(limiter.take_all(&[("a", 4)], t0).is_ok());
        let refused = limiter.take_all(&[("b", 3), ("a", 2)], t0).unwrap_err();
        assert_eq!(refused.key, "a");
        // b was not charged for the refused request.
        assert!(limiter.take_all(&[("b", 5)], t0).is_ok());
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = RateLimiter::new(5.0, 100);
        let t0 = Instant::now();
        for i in 0..10_000 {
            let _ = limiter.take_all(&[(i, 1)], t0);
        }
        assert!(limiter.tracked() <= 100);
        // Once refilled, old buckets make room for new keys.
        assert!(
            limiter
                .take_all(&[(-1, 5)], t0 + Duration::from_secs(2))
                .is_ok()
        );
        assert!(
            limiter
                .take_all(&[(-1, 1)], t0 + Duration::from_secs(2))
                .is_err()
        );
    }
}
