//! Publishing Events the way kube-runtime's `Recorder` does (an Event repeated for the same
//! object, type and reason within 6 minutes becomes a count on the first one), with a cache that
//! costs ~100 bytes per recent Event instead of a full copy of it. kube-runtime's recorder keeps
//! every published Event for 6 minutes and scans them all on each publish: after the first import
//! of 10,000 streams that is some 14,000 cached Events (tens of MiB) and 14,000 entries scanned
//! per Event.

use crate::api::untrusted;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::Client;
use serde_json::json;

/// How long a repeat counts into the first Event (kube-runtime's and client-go's window).
const SERIES_WINDOW: SignedDuration = SignedDuration::from_secs(6 * 60);

/// The first Event of a series: its name (to patch the count) and how often it was seen.
#[derive(Debug, Clone)]
struct Series {
    name: String,
    count: i32,
    last: Timestamp,
}

#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    reporter: Reporter,
    recent: Arc<Mutex<Recent>>,
}

#[derive(Default)]
struct Recent {
    series: HashMap<u64, Series>,
    swept: Option<Timestamp>,
}

impl Recent {
    /// Forgets series older than the window, at most once a minute (amortised O(1) per Event).
    fn sweep(&mut self, now: Timestamp) {
        if self
            .swept
            .is_some_and(|t| now.duration_since(t) < SignedDuration::from_secs(60))
        {
            return;
        }
        self.swept = Some(now);
        self.series
            .retain(|_, s| now.duration_since(s.last) < SERIES_WINDOW);
    }
}

impl EventRecorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            recent: Arc::default(),
        }
    }

    /// Creates the Event, or counts it into the series of an identical one (same object, type,
    /// action, reason and related object) published less than 6 minutes ago.
    pub async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = series_key(ev, regarding);
        let repeat = {
            let mut recent = self.recent.lock();
            recent.sweep(now);
            recent
                .series
                .get(&key)
                .filter(|s| now.duration_since(s.last) < SERIES_WINDOW)
                .cloned()
        };
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let series = match repeat {
            Some(s) => {
                let count = s.count + 1;
                let patch = json!({"series": {"count": count, "lastObservedTime": MicroTime(now)}});
                events
                    .patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                Series {
                    count,
                    last: now,
                    ..s
                }
            }
            None => {
                let event = self.event(ev, regarding, now);
                let name = event.metadata.name.clone().unwrap_or_default();
                events.create(&PostParams::default(), &event).await?;
                Series {
                    name,
                    count: 1,
                    last: now,
                }
            }
        };
        self.recent.lock().series.insert(key, series);
        Ok(())
    }

    fn event(&self, ev: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
        let controller = &self.reporter.controller;
        K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            // The API server caps a note at 1 KiB; the text may come from a registry.
            note: ev
                .note
                .as_deref()
                .map(|n| untrusted::clean(n, untrusted::MAX_TEXT)),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_ref().unwrap_or(controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            ..Default::default()
        }
    }
}

/// What makes two Events one series (as in kube-runtime: the note may differ).
fn series_key(ev: &Event, regarding: &ObjectReference) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    matches!(ev.type_, EventType::Warning).hash(&mut h);
    ev.action.hash(&mut h);
    ev.reason.hash(&mut h);
    for r in std::iter::once(regarding).chain(ev.secondary.as_ref()) {
        (&r.api_version, &r.kind, &r.namespace, &r.name, &r.uid).hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("image.openshift.io/v1".into()),
            kind: Some("ImageStream".into()),
            namespace: Some("demo".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
    }

    fn event(reason: &str, note: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Import".into(),
            secondary: None,
        }
    }

    #[test]
    fn a_series_is_one_object_type_action_and_reason_whatever_the_note() {
        let a = reference("a");
        assert_eq!(
            series_key(&event("Imported", "x"), &a),
            series_key(&event("Imported", "y"), &a)
        );
        assert_ne!(
            series_key(&event("Imported", "x"), &a),
            series_key(&event("ImportFailed", "x"), &a)
        );
        assert_ne!(
            series_key(&event("Imported", "x"), &a),
            series_key(&event("Imported", "x"), &reference("b"))
        );
    }

    #[test]
    fn old_series_are_forgotten_at_most_once_a_minute() {
        let mut recent = Recent::default();
        let t0 = Timestamp::now();
        let series = |last| Series {
            name: "n".into(),
            count: 1,
            last,
        };
        recent.series.insert(1, series(t0));
        recent.sweep(t0);
        let later = t0 + SERIES_WINDOW + SignedDuration::from_secs(1);
        recent.series.insert(2, series(later));
        recent.sweep(t0 + SignedDuration::from_secs(30));
        assert_eq!(
            recent.series.len(),
            2,
            "no sweep within a minute of the last"
        );
        recent.sweep(later);
        assert_eq!(recent.series.keys().collect::<Vec<_>>(), [&2]);
    }

    /// The API requests of two identical Events and a third of another reason: a create, a
    /// merge patch of the first one's count, a create.
    #[tokio::test]
    async fn a_repeat_patches_the_count_of_the_first_event() {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let recorder = EventRecorder::new(
            Client::new(service, "default"),
            Reporter {
                controller: "imagestream-operator".into(),
                instance: None,
            },
        );
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let (req, send) = handle.next_request().await.expect("a request");
                let (method, uri) = (req.method().to_string(), req.uri().to_string());
                let body = req.into_body().collect_bytes().await.expect("body");
                let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
                send.send_response(
                    Response::builder()
                        .body(Body::from(serde_json::to_vec(&body).expect("json")))
                        .expect("response"),
                );
                seen.push((method, uri, body));
            }
            seen
        });
        let a = reference("a");
        recorder
            .publish(&event("Imported", "one"), &a)
            .await
            .expect("create");
        recorder
            .publish(&event("Imported", "two"), &a)
            .await
            .expect("patch");
        recorder
            .publish(&event("ImportFailed", "three"), &a)
            .await
            .expect("create");
        let seen = server.await.expect("server");
        let [created, patched, other] = seen.as_slice() else {
            panic!("expected a create, a patch of it and another create: {seen:?}");
        };
        let name = created.2["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        assert!(name.starts_with("a."), "{name}");
        assert_eq!(
            (created.0.as_str(), created.1.as_str()),
            ("POST", "/apis/events.k8s.io/v1/namespaces/demo/events?")
        );
        assert_eq!(created.2["reason"], "Imported");
        assert_eq!(created.2["note"], "one");
        assert_eq!(created.2["reportingController"], "imagestream-operator");
        assert_eq!(created.2["regarding"]["uid"], "uid-a");
        assert_eq!(
            (patched.0.as_str(), patched.1.as_str()),
            (
                "PATCH",
                format!("/apis/events.k8s.io/v1/namespaces/demo/events/{name}?").as_str()
            )
        );
        assert_eq!(patched.2["series"]["count"], 2);
        assert!(patched.2["series"]["lastObservedTime"].is_string());
        assert_eq!(other.0, "POST");
        assert_eq!(other.2["reason"], "ImportFailed");
    }
}
