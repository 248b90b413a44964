//! Workloads that image lookup never saw. Under `failurePolicy: Ignore` the API server stores an
//! object unchanged while no replica serves the webhook (an upgrade, a network blip), and an
//! object created before its stream enabled lookup was never resolved either: it keeps
//! `mysql:latest`, and the kubelet pulls whatever Docker Hub serves under that name. The leader
//! lists the webhook's kinds in every namespace with a lookup-enabled stream — shortly after it
//! starts and then every `--lookup-audit-interval` — and leaves a Warning Event on each object
//! that still carries a short name a stream resolves, once per object and finding.
//!
//! Cost: one paginated LIST per kind (8) per lookup-enabled namespace per pass, one namespace
//! at a time; nothing is kept but the last note per flagged object, keyed by UID.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use kube::api::{Api, ListParams};
use kube::core::DynamicObject;
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;
use tracing::{info, warn};

use super::lookup::lookups_at_creation;
use crate::api::untrusted::clean;
use crate::api::{action, field_manager, reason, ImageStream};
use crate::ops::events::EventRecorder;
use crate::triggers::workload::{pod_spec, Kind};

/// Objects per LIST page: bounds what one response holds in memory.
const PAGE: u32 = 200;
/// Longest image string quoted in a note (the Event note itself is capped at 1000).
const MAX_IMAGE: usize = 300;

/// A container the webhook would have rewritten had it seen the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub container: String,
    pub image: String,
    pub resolved: String,
}

/// The containers of `obj` still carrying a short name that image lookup resolves now.
pub fn findings(kind: Kind, obj: &Value, streams: super::lookup::Streams) -> Vec<Finding> {
    let Some(spec) = pod_spec(kind, obj) else {
        return Vec::new();
    };
    lookups_at_creation(kind, obj, streams)
        .into_iter()
        .filter_map(|(init, index, resolved)| {
            let list = if init { "initContainers" } else { "containers" };
            let container = spec.get(list)?.get(index)?;
            Some(Finding {
                container: container.get("name")?.as_str()?.to_string(),
                image: container.get("image")?.as_str()?.to_string(),
                resolved,
            })
        })
        .collect()
}

/// The Warning's note: what is wrong, why, and the command that fixes it at once.
pub fn note(kind: Kind, namespace: &str, name: &str, found: &[Finding]) -> String {
    let what: Vec<String> = found
        .iter()
        .map(|f| {
            format!(
                "container {} uses {}, which an ImageStream with lookupPolicy.local resolves to {}",
                clean(&f.container, 63),
                clean(&f.image, MAX_IMAGE),
                clean(&f.resolved, MAX_IMAGE)
            )
        })
        .collect();
    let remedy = match kind.template_immutable() {
        true => format!(
            "a {}'s pod template cannot change: delete it and create it again while the webhook serves",
            kind.name()
        ),
        false => {
            let images: Vec<String> = found
                .iter()
                .map(|f| format!("{}={}", clean(&f.container, 63), clean(&f.resolved, MAX_IMAGE)))
                .collect();
            format!(
                "to use the stream's image now: kubectl -n {} set image {}/{} {}",
                clean(namespace, 63),
                kind.name().to_ascii_lowercase(),
                clean(name, 253),
                images.join(" ")
            )
        }
    };
    format!(
        "{}; it was stored without image lookup (the webhook was unreachable, or the stream enabled lookup later), so the kubelet pulls the name as written; {remedy}",
        what.join("; ")
    )
}

/// Namespaces holding at least one stream with `lookupPolicy.local`.
fn lookup_namespaces(streams: &Store<ImageStream>) -> BTreeSet<String> {
    streams
        .state()
        .iter()
        .filter(|s| s.spec.lookup_policy.as_ref().is_some_and(|p| p.local))
        .filter_map(|s| s.namespace())
        .collect()
}

pub struct Audit {
    client: Client,
    streams: Store<ImageStream>,
    recorder: EventRecorder,
    /// The last note per flagged object (UID → (namespace, note)), so a standing finding is
    /// reported once; forgotten when a pass no longer finds it.
    told: HashMap<String, (String, String)>,
}

impl Audit {
    pub fn new(client: Client, streams: Store<ImageStream>) -> Self {
        let reporter = Reporter {
            controller: field_manager::LOOKUP.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: EventRecorder::new(client.clone(), reporter),
            client,
            streams,
            told: HashMap::new(),
        }
    }

    /// Audits every lookup-enabled namespace once; returns the Warnings published.
    pub async fn pass(&mut self) -> usize {
        let namespaces = lookup_namespaces(&self.streams);
        self.told.retain(|_, (ns, _)| namespaces.contains(ns));
        let mut published = 0;
        for ns in &namespaces {
            published += self.namespace(ns).await;
        }
        published
    }

    async fn namespace(&mut self, ns: &str) -> usize {
        let mut flagged = HashSet::new();
        let mut published = 0;
        for kind in Kind::ALL {
            match self.kind(ns, kind, &mut flagged).await {
                Ok(n) => published += n,
                Err(e) => {
                    // What this pass did not see is kept: a failed LIST proves nothing gone.
                    warn!(namespace = %ns, kind = kind.name(), error = %e, "lookup audit: cannot list");
                    return published;
                }
            }
        }
        self.told
            .retain(|uid, (n, _)| n != ns || flagged.contains(uid));
        published
    }

    async fn kind(
        &mut self,
        ns: &str,
        kind: Kind,
        flagged: &mut HashSet<String>,
    ) -> Result<usize, kube::Error> {
        let resource = kind.api_resource();
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &resource);
        let mut params = ListParams::default().limit(PAGE);
        let mut published = 0;
        loop {
            let page = api.list(&params).await?;
            for obj in &page.items {
                if self.object(kind, obj, flagged).await {
                    published += 1;
                }
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return Ok(published),
            }
        }
    }

    /// Whether a Warning was published for this object.
    async fn object(
        &mut self,
        kind: Kind,
        obj: &DynamicObject,
        flagged: &mut HashSet<String>,
    ) -> bool {
        let (Some(uid), Some(ns)) = (obj.uid(), obj.namespace()) else {
            return false;
        };
        let Ok(value) = serde_json::to_value(obj) else {
            return false;
        };
        let streams = &self.streams;
        let found = findings(kind, &value, &|ns, name| {
            streams.get(&ObjectRef::new(name).within(ns))
        });
        if found.is_empty() {
            return false;
        }
        flagged.insert(uid.clone());
        let note = note(kind, &ns, &obj.name_any(), &found);
        if self.told.get(&uid).is_some_and(|(_, told)| told == &note) {
            return false;
        }
        let event = Event {
            type_: EventType::Warning,
            reason: reason::SHORT_NAME_NOT_RESOLVED.into(),
            // The recorder cleans the note and caps it at the API server's limit, in bytes.
            note: Some(note.clone()),
            action: action::LOOKUP.into(),
            secondary: None,
        };
        let reference = obj.object_ref(&kind.api_resource());
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            warn!(error = %e, "could not publish event");
            return false;
        }
        info!(namespace = %ns, kind = kind.name(), name = %obj.name_any(), "short image name not resolved");
        self.told.insert(uid, (ns, note));
        true
    }
}

/// Audits after `delay` (the webhook of a starting replica must serve first, or what is
/// created meanwhile would be missed until the next pass), then every `interval`.
pub async fn run(client: Client, streams: Store<ImageStream>, delay: Duration, interval: Duration) {
    let mut audit = Audit::new(client, streams);
    tokio::time::sleep(delay).await;
    loop {
        let published = audit.pass().await;
        info!(published, "lookup audit done");
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn stream(local: bool) -> Arc<ImageStream> {
        let s = ImageStream::test("mysql")
            .in_namespace("team")
            .imported("latest", "reg.example/db/mysql@sha256:aaaa");
        Arc::new(match local {
            true => s.local_lookup(),
            false => s,
        })
    }

    fn deployment(image: &str, owned: bool) -> Value {
        let mut d = json!({
            "metadata": {"name": "web", "namespace": "team"},
            "spec": {"template": {"spec": {
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "db", "image": image}]}}},
        });
        if owned {
            d["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment",
                "name": "x", "uid": "u", "controller": true}]);
        }
        d
    }

    fn found(local: bool, obj: &Value) -> Vec<Finding> {
        let s = stream(local);
        findings(Kind::Deployment, obj, &|ns, name| {
            (ns == "team" && name == "mysql").then(|| s.clone())
        })
    }

    #[test]
    fn a_short_name_a_lookup_stream_resolves_is_found() {
        assert_eq!(
            found(true, &deployment("mysql:latest", false)),
            vec![Finding {
                container: "db".into(),
                image: "mysql:latest".into(),
                resolved: "reg.example/db/mysql@sha256:aaaa".into(),
            }]
        );
    }

    #[test]
    fn nothing_is_found_without_lookup_or_for_what_the_webhook_leaves_alone() {
        assert!(found(false, &deployment("mysql:latest", false)).is_empty());
        assert!(found(true, &deployment("reg.example/db/mysql@sha256:aaaa", false)).is_empty());
        assert!(found(true, &deployment("docker.io/library/mysql:latest", false)).is_empty());
        // Controller-owned objects follow their owner's template; the owner is the one flagged.
        assert!(found(true, &deployment("mysql:latest", true)).is_empty());
    }

    #[test]
    fn the_note_names_the_command_that_fixes_it() {
        let f = found(true, &deployment("mysql:latest", false));
        let n = note(Kind::Deployment, "team", "web", &f);
        assert!(
            n.ends_with(
                "kubectl -n team set image deployment/web db=reg.example/db/mysql@sha256:aaaa"
            ),
            "{n}"
        );
        let job = note(Kind::Job, "team", "migrate", &f);
        assert!(job.contains("delete it and create it again"), "{job}");
        assert!(!job.contains("set image"), "{job}");
    }

    #[test]
    fn the_note_carries_no_control_characters() {
        let f = vec![Finding {
            container: "db".into(),
            image: "mysql\u{1b}[2J:latest".into(),
            resolved: "r@sha256:a".into(),
        }];
        let n = note(Kind::Pod, "team", "p", &f);
        assert!(!n.chars().any(char::is_control), "{n:?}");
    }
}
