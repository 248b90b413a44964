//! The record a push notification leaves on a stream. The receiver (`notify/`) writes it; the
//! import and trigger controllers read it to name the source in their Events and to measure
//! push → import → rollout. It is part of the stream's API, so it lives here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ImageStream;

/// Stream annotation recording the notification that requested the pending import, so the
/// controllers can name the source in their Event and measure push→import→rollout latency.
pub const NOTIFIED: &str = "imagestream-operator.io/notified";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notified {
    pub source: String,
    /// Milliseconds since the Unix epoch when the notification arrived.
    pub at_ms: i64,
    pub tags: Vec<String>,
}

/// How old a notification may be and still be timed or named: push → import → rollout takes
/// seconds; anything older is not the notification that caused what is being measured.
pub const MAX_NOTIFIED_AGE: Duration = Duration::from_secs(600);

impl Notified {
    pub fn of(stream: &ImageStream) -> Option<Notified> {
        serde_json::from_str(stream.annotation(NOTIFIED)?).ok()
    }

    /// How long ago the notification arrived, when that is between zero and `max`. Anyone who
    /// may edit the stream may write this annotation: a time in the future, far in the past or
    /// absurd (`i64::MIN`) is ignored rather than skewing histograms or stopping polling.
    pub fn age(&self, now_ms: i64, max: Duration) -> Option<Duration> {
        let ms = u64::try_from(now_ms.checked_sub(self.at_ms)?).ok()?;
        let age = Duration::from_millis(ms);
        (age <= max).then_some(age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_times_have_no_age() {
        let at = |at_ms| Notified {
            source: "distribution".into(),
            at_ms,
            tags: vec![],
        };
        let max = MAX_NOTIFIED_AGE;
        assert_eq!(at(1_000).age(3_000, max), Some(Duration::from_secs(2)));
        assert_eq!(at(5_000).age(3_000, max), None, "in the future");
        assert_eq!(at(0).age(700_000, max), None, "older than the window");
        assert_eq!(at(i64::MIN).age(3_000, max), None);
        assert_eq!(at(i64::MAX).age(i64::MIN, max), None);
    }
}
