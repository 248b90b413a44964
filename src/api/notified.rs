//! The record a push notification leaves on a stream. The receiver (`notify/`) writes it; the
//! import and trigger controllers read it to name the source in their Events and to measure
//! push → import → rollout. It is part of the stream's API, so it lives here.

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

impl Notified {
    pub fn of(stream: &ImageStream) -> Option<Notified> {
        serde_json::from_str(stream.annotation(NOTIFIED)?).ok()
    }
}
