//! The per-object retry delay every controller uses. kube-runtime leaves per-object backoff to
//! the caller (kube-rs/kube#1916 is open), and the import and trigger controllers had grown two
//! copies of it with different shapes.

use std::time::Duration;

/// The wait after the `attempts`-th failure in a row: 10 s, doubling, at most `cap`, and never
/// sooner than `floor` (a registry's `Retry-After`).
pub fn backoff(attempts: u32, cap: Duration, floor: Option<Duration>) -> Duration {
    let wait = Duration::from_secs(5)
        .saturating_mul(1 << attempts.min(16))
        .min(cap);
    floor.map_or(wait, |f| f.max(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_its_cap_and_honours_a_floor() {
        let cap = Duration::from_secs(300);
        assert_eq!(backoff(1, cap, None), Duration::from_secs(10));
        assert_eq!(backoff(2, cap, None), Duration::from_secs(20));
        assert_eq!(backoff(u32::MAX, cap, None), cap);
        let later = Some(Duration::from_secs(60));
        assert_eq!(backoff(1, cap, later), Duration::from_secs(60));
    }
}
