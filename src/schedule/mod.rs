//! When scheduled tags are due, and the cluster-wide budget for scheduled imports.
//!
//! State is in memory only: recording "last checked" in status would mean a write per check,
//! which is exactly what an unchanged check must not do. After a restart every stream gets a
//! phase inside the interval derived from its UID, so checks are spread evenly and a restart
//! causes no burst.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

pub struct Scheduler {
    interval: Duration,
    limiter: Option<DefaultDirectRateLimiter>,
    last_checked: Mutex<HashMap<String, Instant>>,
}

impl Scheduler {
    /// `per_minute == 0` disables the budget; the burst is twice the per-minute figure, as in
    /// OpenShift.
    pub fn new(interval: Duration, per_minute: u32) -> Self {
        let interval = interval.max(Duration::from_secs(1));
        let limiter = NonZeroU32::new(per_minute).map(|n| {
            let burst = NonZeroU32::new(per_minute.saturating_mul(2)).unwrap_or(n);
            RateLimiter::direct(Quota::per_minute(n).allow_burst(burst))
        });
        Self {
            interval,
            limiter,
            last_checked: Mutex::default(),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn phase(&self, uid: &str) -> Duration {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        uid.hash(&mut h);
        let millis = self.interval.as_millis().max(1) as u64;
        Duration::from_millis(h.finish() % millis)
    }

    /// Time until the stream's next scheduled check (zero when due now).
    pub fn until_due(&self, key: &str, uid: &str, now: Instant) -> Duration {
        let mut map = self.last_checked.lock().unwrap_or_else(|p| p.into_inner());
        let interval = self.interval;
        let phase = self.phase(uid);
        let last = *map
            .entry(key.to_string())
            .or_insert_with(|| now.checked_sub(interval - phase).unwrap_or(now));
        (last + interval).saturating_duration_since(now)
    }

    /// Any import of the stream (explicit or scheduled) restarts its interval.
    pub fn mark_checked(&self, key: &str, now: Instant) {
        self.last_checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), now);
    }

    pub fn forget(&self, key: &str) {
        self.last_checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Take one scheduled import from the cluster-wide budget, or say how long to wait.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        match &self.limiter {
            None => Ok(()),
            Some(l) => l
                .check()
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_check_is_spread_within_one_interval_and_then_periodic() {
        let s = Scheduler::new(Duration::from_secs(900), 60);
        let now = Instant::now();
        let mut firsts: Vec<u64> = (0..200)
            .map(|i| {
                s.until_due(&format!("ns/s{i}"), &format!("uid-{i}"), now)
                    .as_secs()
            })
            .collect();
        assert!(firsts.iter().all(|d| *d <= 900));
        firsts.sort();
        assert!(
            firsts[20] < 200 && firsts[180] > 700,
            "spread over the interval: {firsts:?}"
        );
        s.mark_checked("ns/s0", now);
        assert_eq!(s.until_due("ns/s0", "uid-0", now), Duration::from_secs(900));
        assert_eq!(
            s.until_due("ns/s0", "uid-0", now + Duration::from_secs(901)),
            Duration::ZERO
        );
    }

    #[test]
    fn budget_allows_a_burst_of_twice_the_rate_then_waits() {
        let s = Scheduler::new(Duration::from_secs(5), 60);
        for _ in 0..120 {
            assert!(s.try_acquire().is_ok());
        }
        let wait = s.try_acquire().unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(Scheduler::new(Duration::from_secs(5), 0)
            .try_acquire()
            .is_ok());
    }
}
