//! How hard the operator may press one registry: a request budget (token bucket and concurrency
//! cap, per registry, from `--registry-budget`) and the pause a 429 imposes.

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::http::HttpError;
use crate::api::untrusted;

/// The longest registry pause (`Retry-After` of a 429) a request waits out instead of failing.
const MAX_PAUSE_WAIT: Duration = Duration::from_secs(10);

/// Request budget for one registry: a token bucket and a concurrency cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub per_second: u32,
    pub burst: u32,
    pub concurrency: usize,
}

impl Budget {
    pub const DEFAULT: Budget = Budget {
        per_second: 20,
        burst: 40,
        concurrency: 16,
    };
    /// Docker Hub throttles aggressively and counts anonymous pulls per source address.
    pub const DOCKER_HUB: Budget = Budget {
        per_second: 2,
        burst: 10,
        concurrency: 4,
    };

    /// Parses `host=RATE[:BURST[:CONCURRENCY]]`, the `--registry-budget` flag.
    pub fn parse_flag(flag: &str) -> Result<(String, Budget), String> {
        let (host, spec) = flag
            .split_once('=')
            .ok_or_else(|| format!("{flag:?}: expected HOST=RATE[:BURST[:CONCURRENCY]]"))?;
        let nums: Vec<u32> = spec
            .split(':')
            .map(|n| {
                n.parse::<u32>()
                    .map_err(|e| format!("{flag:?}: {n:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let budget = match nums[..] {
            [rate] => Budget {
                per_second: rate,
                burst: rate.saturating_mul(2),
                ..Budget::DEFAULT
            },
            [rate, burst] => Budget {
                per_second: rate,
                burst,
                ..Budget::DEFAULT
            },
            [rate, burst, concurrency] => Budget {
                per_second: rate,
                burst,
                concurrency: concurrency as usize,
            },
            _ => {
                return Err(format!(
                    "{flag:?}: expected HOST=RATE[:BURST[:CONCURRENCY]]"
                ))
            }
        };
        if budget.per_second == 0 || budget.burst == 0 || budget.concurrency == 0 {
            return Err(format!(
                "{flag:?}: rate, burst and concurrency must be positive"
            ));
        }
        Ok((host.to_string(), budget))
    }
}

/// One registry's budget in force: the token bucket, the concurrency slots and the 429 pause.
pub(super) struct Gate {
    limiter: DefaultDirectRateLimiter,
    slots: Semaphore,
    paused_until: Mutex<Option<Instant>>,
}

impl Gate {
    pub(super) fn new(budget: Budget) -> Self {
        let quota =
            Quota::per_second(nonzero(budget.per_second)).allow_burst(nonzero(budget.burst));
        Self {
            limiter: RateLimiter::direct(quota),
            slots: Semaphore::new(budget.concurrency.max(1)),
            paused_until: Mutex::new(None),
        }
    }

    /// One of the registry's concurrency slots, held until the permit drops.
    pub(super) async fn slot(&self) -> Result<SemaphorePermit<'_>, HttpError> {
        self.slots
            .acquire()
            .await
            .map_err(|_| HttpError::Refused("transport shut down".into()))
    }

    /// Waits for the token bucket.
    pub(super) async fn until_ready(&self) {
        self.limiter.until_ready().await;
    }

    /// Leaves the registry alone for `pause` (after a 429), at most an hour.
    pub(super) fn pause(&self, pause: Duration) {
        let until = untrusted::later(Instant::now(), pause);
        *self.paused_until.lock() = Some(until);
    }

    /// Whether a 429's pause is in force: the registry's state must outlive it.
    pub(super) fn is_paused(&self) -> bool {
        self.paused_for().is_some()
    }

    /// A short pause (a registry's `Retry-After` of a few seconds) is waited out: failing every
    /// queued import for it would turn one 429 into hundreds of failure conditions. A longer one
    /// fails at once, so the tag says so and is retried after it.
    pub(super) async fn wait_out_pause(&self) -> Result<(), HttpError> {
        while let Some(left) = self.paused_for() {
            if left > MAX_PAUSE_WAIT {
                return Err(HttpError::Paused { retry_after: left });
            }
            tokio::time::sleep(left).await;
        }
        Ok(())
    }

    fn paused_for(&self) -> Option<Duration> {
        let mut paused = self.paused_until.lock();
        match *paused {
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => {
                    *paused = None;
                    None
                }
            },
            None => None,
        }
    }
}

fn nonzero(n: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_from_flags() {
        assert_eq!(
            Budget::parse_flag("quay.io=5:9:3").unwrap(),
            (
                "quay.io".to_string(),
                Budget {
                    per_second: 5,
                    burst: 9,
                    concurrency: 3
                }
            )
        );
        assert_eq!(Budget::parse_flag("r:5000=4").unwrap().1.burst, 8);
        assert!(Budget::parse_flag("quay.io").is_err());
        assert!(Budget::parse_flag("quay.io=0").is_err());
        assert!(Budget::parse_flag("quay.io=1:2:3:4").is_err());
    }

    /// A registry's absurd `Retry-After` (the header parse clamps it too) cannot overflow the
    /// clock here: the pause is an hour, and the next request fails fast instead of waiting.
    #[tokio::test]
    async fn an_absurd_pause_is_an_hour_and_fails_fast() {
        let gate = Gate::new(Budget::DEFAULT);
        gate.pause(Duration::MAX);
        assert!(gate.is_paused());
        match gate.wait_out_pause().await {
            Err(HttpError::Paused { retry_after }) => {
                assert!(retry_after <= untrusted::MAX_DELAY, "{retry_after:?}")
            }
            other => panic!("expected a pause, got {other:?}"),
        }
    }
}
