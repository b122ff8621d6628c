//! Per-caller rate limits of HTTP-triggered functions (token buckets, by
//! the `governor` crate: GCRA, no background timers).
//!
//! Each function with a `rateLimit` has one keyed limiter; the key is the
//! caller ([`super::caller::Caller::rate_key`]). A redeploy with another
//! limit starts a fresh limiter. Keys of callers idle long enough to be
//! back at a full bucket are forgotten now and then, so client addresses of
//! anonymous callers cannot grow the table without bound.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::functions::RateLimit;

/// Calls between two sweeps of idle callers.
const SWEEP_EVERY: u64 = 4096;

/// One function's limiter, keyed by caller, and the limit it enforces.
type Limiter = (RateLimit, Arc<DefaultKeyedRateLimiter<String>>);

/// The limiters of every function with a rate limit.
pub(super) struct RateLimits {
    limiters: Mutex<HashMap<String, Limiter>>,
    calls: AtomicU64,
    clock: DefaultClock,
}

impl RateLimits {
    pub(super) fn new() -> RateLimits {
        RateLimits {
            limiters: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from `caller`'s budget at `function`; when it is
    /// spent, how long until the next request would be allowed.
    pub(super) fn check(
        &self,
        function: &str,
        limit: RateLimit,
        caller: &str,
    ) -> Result<(), Duration> {
        let limiter = self.limiter(function, limit);
        if self.calls.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter
            .check_key(&caller.to_string())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets a function's limiter (it was deleted).
    pub(super) fn forget(&self, function: &str) {
        self.limiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(function);
    }

    fn limiter(&self, function: &str, limit: RateLimit) -> Arc<DefaultKeyedRateLimiter<String>> {
        let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        match limiters.get(function) {
            Some((current, limiter)) if *current == limit => limiter.clone(),
            _ => {
                let limiter = Arc::new(RateLimiter::keyed(quota(limit)));
                limiters.insert(function.to_string(), (limit, limiter.clone()));
                limiter
            }
        }
    }
}

/// `requests` per `per_seconds`, as a bucket of `requests` refilled evenly.
fn quota(limit: RateLimit) -> Quota {
    let requests = NonZeroU32::new(limit.requests).unwrap_or(NonZeroU32::MIN);
    let window = Duration::from_secs(u64::from(limit.per_seconds.max(1)));
    let period = window / requests.get();
    Quota::with_period(period.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(requests))
        .allow_burst(requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_budget_then_is_told_when_to_retry() {
        let limits = RateLimits::new();
        let limit = RateLimit {
            requests: 3,
            per_seconds: 60,
        };
        for _ in 0..3 {
            assert!(limits.check("f", limit, "key:a").is_ok());
        }
        let wait = limits.check("f", limit, "key:a").unwrap_err();
        assert!(
            wait > Duration::from_secs(10) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Another caller has a budget of its own.
        assert!(limits.check("f", limit, "key:b").is_ok());
    }

    #[test]
    fn a_new_limit_starts_a_fresh_budget() {
        let limits = RateLimits::new();
        let one = RateLimit {
            requests: 1,
            per_seconds: 3600,
        };
        assert!(limits.check("f", one, "k").is_ok());
        assert!(limits.check("f", one, "k").is_err());
        let two = RateLimit {
            requests: 2,
            per_seconds: 3600,
        };
        assert!(limits.check("f", two, "k").is_ok());
    }
}
