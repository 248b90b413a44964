//! What a reconcile tells people: log lines for each change, at most one Event for its imports,
//! a Warning when the status is trimmed differently or cannot be stored. The recorder cleans and
//! caps every note, so nothing here truncates.

use std::time::Duration;

use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::budget::{Fit, STATUS_BUDGET};
use super::metrics::ImportMetrics;
use super::plan::Cause;
use super::resolve::TagChange;
use crate::api::{action, reason, ImageStream, ImageStreamStatus, Notified, MAX_NOTIFIED_AGE};
use crate::ops::events::EventRecorder;
use crate::registry::{RegistryError, ResolvedImage};

/// Tags named in one Event before the rest are counted.
const EVENT_TAGS: usize = 10;

/// Where a stream's reports go.
pub struct Report<'a> {
    pub recorder: &'a EventRecorder,
    pub metrics: &'a ImportMetrics,
    pub stream: &'a ImageStream,
}

impl Report<'_> {
    /// Logs every change and publishes at most one Event for the whole reconcile, so the first
    /// import of a stream with hundreds of tags is one Event, not hundreds.
    pub async fn changes(&self, changes: &[TagChange]) {
        let namespace = self.stream.namespace().unwrap_or_default();
        let name = self.stream.name_any();
        for change in changes {
            match change {
                TagChange::Imported { tag, reference } => {
                    info!(%namespace, %name, %tag, %reference, "tag imported")
                }
                TagChange::Failed {
                    tag,
                    reason,
                    message,
                } => warn!(%namespace, %name, %tag, %reason, %message, "import failed"),
            }
        }
        let by = self.notified_by(changes);
        if let Some(event) = summary_event(changes, by.as_deref()) {
            self.publish(&event).await;
        }
    }

    /// The push notification that asked for these imports, timed from push to import.
    fn notified_by(&self, changes: &[TagChange]) -> Option<String> {
        let n = Notified::of(self.stream)?;
        let asked = changes
            .iter()
            .any(|c| matches!(c, TagChange::Imported { tag, .. } if n.tags.contains(tag)));
        let now = jiff::Timestamp::now().as_millisecond();
        let waited = n.age(now, MAX_NOTIFIED_AGE).filter(|_| asked)?;
        self.metrics.push_to_import.observe(waited.as_secs_f64());
        Some(n.source.clone())
    }

    /// A Warning when a status starts to be trimmed or is trimmed differently.
    pub async fn trim(&self, old: &ImageStreamStatus, fit: &Fit) {
        let Fit::Trimmed(t) = fit else {
            return;
        };
        let message = t.describe(STATUS_BUDGET);
        let before = old
            .conditions
            .iter()
            .find(|c| c.type_ == reason::STATUS_TRIMMED);
        if before.and_then(|c| c.message.as_deref()) != Some(message.as_str()) {
            self.warn(reason::STATUS_TRIMMED, message).await;
        }
    }

    /// A status that cannot be stored (said once per distinct status by the caller).
    pub async fn not_stored(&self, tags: usize, why: &str) {
        let note = format!(
            "status of {tags} tags not written: {why}; the stream keeps its last status. Split \
             it into several streams or remove tags"
        );
        let stream = format!(
            "{}/{}",
            self.stream.namespace().unwrap_or_default(),
            self.stream.name_any()
        );
        warn!(%stream, %note, "status too large");
        self.warn(reason::STATUS_TOO_LARGE, note).await;
    }

    async fn warn(&self, reason: &str, note: String) {
        let event = Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(note),
            action: action::IMPORT.into(),
            secondary: None,
        };
        self.publish(&event).await;
    }

    async fn publish(&self, event: &Event) {
        let regarding = self.stream.object_ref(&());
        if let Err(e) = self.recorder.publish(event, &regarding).await {
            warn!(error = %e, "could not publish event");
        }
    }
}

/// Every check at DEBUG; what changed (and new failures) is logged once by [`Report::changes`].
pub fn log_outcome(
    stream: &ImageStream,
    tag: &str,
    cause: Cause,
    result: &Result<ResolvedImage, RegistryError>,
    took: Duration,
) {
    let namespace = stream.namespace().unwrap_or_default();
    let name = stream.name_any();
    match result {
        Ok(image) => {
            debug!(%namespace, %name, %tag, ?cause, ?took, digest = %image.digest, "resolved")
        }
        Err(e) => {
            debug!(%namespace, %name, %tag, ?cause, ?took, reason = e.reason(), error = %e, "import failed")
        }
    }
}

/// The one Event for a reconcile's changes: a Warning naming the new failures (and what was
/// imported beside them), else a Normal `Imported` naming the tags and their new images.
pub fn summary_event(changes: &[TagChange], notified_by: Option<&str>) -> Option<Event> {
    let imported: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            TagChange::Imported { tag, reference } => {
                Some(format!("tag {tag} now points at {reference}"))
            }
            TagChange::Failed { .. } => None,
        })
        .collect();
    let failed: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            TagChange::Failed {
                tag,
                reason,
                message,
            } => Some(format!("tag {tag}: {reason}: {message}")),
            TagChange::Imported { .. } => None,
        })
        .collect();
    let by = notified_by
        .map(|s| format!(" (requested by a {s} push notification)"))
        .unwrap_or_default();
    let (type_, reason, note) = match (failed.is_empty(), imported.is_empty()) {
        (true, true) => return None,
        (true, false) => (
            EventType::Normal,
            reason::IMPORTED,
            format!("{}{by}", listing(&imported)),
        ),
        (false, true) => (EventType::Warning, reason::IMPORT_FAILED, listing(&failed)),
        (false, false) => (
            EventType::Warning,
            reason::IMPORT_FAILED,
            format!(
                "{}; imported meanwhile: {}{by}",
                listing(&failed),
                listing(&imported)
            ),
        ),
    };
    Some(Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action::IMPORT.into(),
        secondary: None,
    })
}

fn listing(items: &[String]) -> String {
    let shown = items[..items.len().min(EVENT_TAGS)].join("; ");
    match items.len().saturating_sub(EVENT_TAGS) {
        0 => shown,
        more => format!("{shown}; and {more} more"),
    }
}
