//! Per-client-IP throttling of login and signup attempts: a token bucket per address, refilled
//! evenly over a minute. The map is pruned of full (idle) buckets when it grows large, so a flood
//! of distinct addresses cannot grow it without bound.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Above this many tracked addresses, idle ones are dropped on the next new address.
const PRUNE_ABOVE: usize = 50_000;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
pub struct AttemptLimiter {
    burst: f64,
    refill_per_sec: f64,
    buckets: DashMap<IpAddr, Bucket>,
}

impl AttemptLimiter {
    pub fn per_minute(attempts: u32) -> Self {
        let burst = f64::from(attempts.max(1));
        Self { burst, refill_per_sec: burst / 60.0, buckets: DashMap::new() }
    }

    /// Takes one attempt for `ip`, or says how long until the next one is allowed.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.buckets.len() > PRUNE_ABOVE && !self.buckets.contains_key(&ip) {
            self.prune(now);
        }
        let mut bucket = self.buckets.entry(ip).or_insert(Bucket { tokens: self.burst, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.refill_per_sec).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.refill_per_sec))
        }
    }

    fn prune(&self, now: Instant) {
        self.buckets.retain(|_, bucket| {
            let refilled =
                bucket.tokens + now.saturating_duration_since(bucket.updated).as_secs_f64() * self.refill_per_sec;
            refilled < self.burst
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_until_the_bucket_refills() {
        let limiter = AttemptLimiter::per_minute(3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(ip, t0).is_ok());
        }
        let wait = limiter.check(ip, t0).unwrap_err();
        assert!(wait > Duration::from_secs(19) && wait <= Duration::from_secs(20), "{wait:?}");
        assert!(limiter.check(other, t0).is_ok(), "addresses are throttled separately");
        assert!(limiter.check(ip, t0 + Duration::from_secs(21)).is_ok());
    }

    #[test]
    fn idle_addresses_are_pruned_when_the_map_is_large() {
        let limiter = AttemptLimiter::per_minute(2);
        let t0 = Instant::now();
        for i in 0..=PRUNE_ABOVE as u32 {
            limiter.check(IpAddr::from(i.to_be_bytes()), t0).unwrap();
        }
        let later = t0 + Duration::from_secs(120);
        limiter.check("198.51.100.7".parse().unwrap(), later).unwrap();
        assert_eq!(limiter.buckets.len(), 1);
    }
}
