//! The trigger controller: watches annotated workloads of every supported kind and the image
//! streams, and when a referenced tag's image differs from a triggered container's image, sets
//! that one field — once per change, never while paused, with an Event for every fire, skip and
//! error.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, reflector, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tracing::{info, warn};

use super::annotation::{parse, Trigger};
use super::index::{TriggerIndex, WorkloadKey};
use super::workload::{
    owned_by_controller, patch_body, plan, service_account, ImageUpdate, Kind, Skip,
};
use crate::api::{ImageStream, TRIGGERS};

/// Field manager recorded for the image fields triggers write (for GitOps ignore rules).
pub const TRIGGER_FIELD_MANAGER: &str = "imagestream-operator-triggers";
/// How long a SubjectAccessReview answer is trusted: no longer than the API server's own webhook
/// authorizer caches answers (5 min allowed, 30 s denied). Denied workloads are evaluated again
/// when their denial expires, so a RoleBinding granted after a `TriggerForbidden` takes effect
/// within 30 s with nothing else touched (25 s plus one evaluation).
const ALLOWED_TTL: Duration = Duration::from_secs(300);
pub const DENIED_TTL: Duration = Duration::from_secs(25);

#[derive(Default)]
pub struct TriggerMetrics {
    pub fires: Counter,
    /// Failures by Event reason (InvalidTrigger, TriggerForbidden, TriggerFailed, …).
    pub failures: Family<Vec<(String, String)>, Counter>,
}

impl TriggerMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "trigger_fires",
            "Workload image fields set by triggers",
            self.fires.clone(),
        );
        registry.register(
            "trigger_failures",
            "Triggers that could not fire, by reason",
            self.failures.clone(),
        );
    }
}

/// (workload namespace, service account, source namespace, stream).
type AccessKey = (String, String, String, String);

/// What one evaluation of a workload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    Patched(Vec<ImageUpdate>),
    Unchanged,
    Skipped(String),
}

pub struct TriggerContext {
    pub client: Client,
    pub streams: Store<ImageStream>,
    pub recorder: Recorder,
    pub index: Mutex<TriggerIndex>,
    pub metrics: Arc<TriggerMetrics>,
    access: Mutex<HashMap<AccessKey, (bool, Instant)>>,
    /// The last warning per workload and reason, so a standing problem is reported once.
    told: Mutex<HashMap<(WorkloadKey, &'static str), String>>,
    /// Workloads with a cross-namespace trigger the last evaluation found forbidden: they are
    /// evaluated again once the denial expires, so a grant takes effect with nothing touched.
    denied: Mutex<HashSet<WorkloadKey>>,
}

impl TriggerContext {
    pub fn new(client: Client, streams: Store<ImageStream>) -> Self {
        let reporter = Reporter {
            controller: TRIGGER_FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            streams,
            index: Mutex::default(),
            metrics: crate::ops::metrics::global().triggers.clone(),
            access: Mutex::default(),
            told: Mutex::default(),
            denied: Mutex::default(),
        }
    }

    /// Whether the last evaluation of `key` found a cross-namespace trigger forbidden.
    pub fn awaiting_grant(&self, key: &WorkloadKey) -> bool {
        self.denied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }

    fn note_denied(&self, key: &WorkloadKey, denied: bool) {
        let mut set = self.denied.lock().unwrap_or_else(|p| p.into_inner());
        if denied {
            set.insert(key.clone());
        } else {
            set.remove(key);
        }
    }

    fn lock_index(&self) -> std::sync::MutexGuard<'_, TriggerIndex> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records (or forgets) a workload in the fan-out index; true when it carries triggers.
    pub fn observe(&self, kind: Kind, obj: DynamicObject) -> Option<WorkloadKey> {
        let key = WorkloadKey {
            kind,
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
        };
        let owned = owned_by_controller(obj.owner_references());
        let Some(annotation) = obj.annotations().get(TRIGGERS).filter(|_| !owned).cloned() else {
            self.forget(&key);
            return None;
        };
        let tags = parse(&annotation, kind)
            .map(|ts| ts.iter().map(|t| t.tag_key(&key.namespace)).collect())
            .unwrap_or_default();
        self.lock_index().upsert(key.clone(), Arc::new(obj), tags);
        Some(key)
    }

    pub fn forget(&self, key: &WorkloadKey) {
        self.lock_index().remove(key);
        self.all_clear(key);
        self.note_denied(key, false);
    }

    async fn warn_once(
        &self,
        key: &WorkloadKey,
        obj: &DynamicObject,
        reason: &'static str,
        note: String,
    ) {
        let repeated = {
            let mut told = self.told.lock().unwrap_or_else(|p| p.into_inner());
            told.insert((key.clone(), reason), note.clone()).as_ref() == Some(&note)
        };
        if repeated {
            return;
        }
        self.metrics
            .failures
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
        warn!(workload = %key, reason, %note, "trigger not applied");
        self.publish(key, obj, EventType::Warning, reason, note)
            .await;
    }

    fn all_clear(&self, key: &WorkloadKey) {
        self.told
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(k, _), _| k != key);
    }

    async fn publish(
        &self,
        key: &WorkloadKey,
        obj: &DynamicObject,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let reference = obj.object_ref(&key.kind.api_resource());
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "Trigger".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            warn!(error = %e, "could not publish event");
        }
    }

    /// Whether the workload's service account may read the source stream (cached).
    async fn may_read(
        &self,
        key: &WorkloadKey,
        sa: &str,
        namespace: &str,
        stream: &str,
    ) -> Result<bool, kube::Error> {
        let id = (
            key.namespace.clone(),
            sa.to_string(),
            namespace.to_string(),
            stream.to_string(),
        );
        if let Some((allowed, at)) = self
            .access
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            if at.elapsed() < if *allowed { ALLOWED_TTL } else { DENIED_TTL } {
                return Ok(*allowed);
            }
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(format!("system:serviceaccount:{}:{sa}", key.namespace)),
                groups: Some(vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{}", key.namespace),
                ]),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(namespace.into()),
                    verb: Some("get".into()),
                    group: Some("image.openshift.io".into()),
                    resource: Some("imagestreams".into()),
                    name: Some(stream.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = api.create(&PostParams::default(), &review).await?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        self.access
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, (allowed, Instant::now()));
        Ok(allowed)
    }

    /// The stream a trigger follows (its own namespace unless the trigger names another).
    fn source(&self, namespace: &str, t: &Trigger) -> Option<Arc<ImageStream>> {
        let ns = t.namespace.as_deref().unwrap_or(namespace);
        self.streams.get(&ObjectRef::new(&t.stream).within(ns))
    }

    /// Seconds since the push notification that moved this tag arrived (recent ones only).
    fn notified_at(&self, namespace: &str, t: &Trigger) -> Option<f64> {
        let stream = self.source(namespace, t)?;
        let n = crate::notify::Notified::of(&stream).filter(|n| n.tags.contains(&t.tag))?;
        let elapsed = jiff::Timestamp::now().as_millisecond() - n.at_ms;
        (0..600_000)
            .contains(&elapsed)
            .then(|| elapsed as f64 / 1000.0)
    }

    /// Seconds since the tag's current image was recorded.
    fn tag_changed_at(&self, namespace: &str, t: &Trigger) -> Option<f64> {
        let stream = self.source(namespace, t)?;
        let created = stream.status_tag(&t.tag)?.items.first()?.created.0;
        let elapsed = jiff::Timestamp::now().as_millisecond() - created.as_millisecond();
        Some(elapsed.max(0) as f64 / 1000.0)
    }

    fn pull_spec(&self, namespace: &str, t: &Trigger) -> Option<String> {
        self.source(namespace, t)?.pull_spec(&t.tag)
    }
}

/// Evaluate one workload: parse, check access, compare, patch the differing images, report.
pub async fn reconcile_workload(
    ctx: &TriggerContext,
    key: &WorkloadKey,
    obj: &DynamicObject,
) -> Result<Fired, kube::Error> {
    if owned_by_controller(obj.owner_references()) {
        return Ok(Fired::Skipped(
            "a controller owns this object and its pod template".into(),
        ));
    }
    let Some(annotation) = obj.annotations().get(TRIGGERS) else {
        return Ok(Fired::Unchanged);
    };
    let triggers = match parse(annotation, key.kind) {
        Ok(t) => t,
        Err(e) => {
            ctx.warn_once(key, obj, "InvalidTrigger", e.message.clone())
                .await;
            return Ok(Fired::Skipped(e.message));
        }
    };
    if key.kind.template_immutable() {
        let note = "a Job's pod template cannot change after creation, so image triggers are not applied to Jobs; the admission webhook resolves them when a Job is created; a Job created before its tag had an image keeps the image it was created with".to_string();
        ctx.warn_once(key, obj, "TriggerSkipped", note.clone())
            .await;
        return Ok(Fired::Skipped(note));
    }
    let allowed = cross_namespace_access(ctx, key, obj, &triggers).await?;
    let resolved = |i: usize| {
        allowed[i]
            .then(|| ctx.pull_spec(&key.namespace, &triggers[i]))
            .flatten()
    };
    let (updates, skips) = plan(key.kind, &obj.data, &triggers, &resolved);
    for Skip::NoSuchContainer { trigger, container } in skips {
        let note = format!(
            "trigger {trigger}: the pod template has no container {container}; correct the fieldPath in image.openshift.io/triggers"
        );
        ctx.warn_once(key, obj, "InvalidTrigger", note).await;
    }
    if updates.is_empty() {
        if allowed.iter().all(|a| *a) {
            ctx.all_clear(key);
        }
        return Ok(Fired::Unchanged);
    }
    patch(ctx, key, obj, &triggers, updates).await
}

async fn cross_namespace_access(
    ctx: &TriggerContext,
    key: &WorkloadKey,
    obj: &DynamicObject,
    triggers: &[Trigger],
) -> Result<Vec<bool>, kube::Error> {
    let sa = service_account(key.kind, &obj.data);
    let mut allowed = Vec::with_capacity(triggers.len());
    for (i, t) in triggers.iter().enumerate() {
        let ns = t.namespace.as_deref().unwrap_or(&key.namespace);
        if ns == key.namespace || t.paused {
            allowed.push(true);
            continue;
        }
        let ok = ctx.may_read(key, &sa, ns, &t.stream).await?;
        if !ok {
            let note = format!(
                "trigger {i}: service account {}/{sa} may not get imagestreams/{} in namespace {ns}; grant it read access there or copy the tag into this namespace",
                key.namespace, t.stream
            );
            ctx.warn_once(key, obj, "TriggerForbidden", note).await;
        }
        allowed.push(ok);
    }
    ctx.note_denied(key, allowed.contains(&false));
    Ok(allowed)
}

async fn patch(
    ctx: &TriggerContext,
    key: &WorkloadKey,
    obj: &DynamicObject,
    triggers: &[Trigger],
    updates: Vec<ImageUpdate>,
) -> Result<Fired, kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &key.namespace, &key.kind.api_resource());
    let params = PatchParams {
        field_manager: Some(TRIGGER_FIELD_MANAGER.into()),
        ..Default::default()
    };
    let body = patch_body(key.kind, obj, &updates);
    match api
        .patch(&key.name, &params, &Patch::Strategic(&body))
        .await
    {
        Ok(_) => {}
        // Changed since we looked: the watch delivers the new version and we decide again.
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Fired::Unchanged),
        Err(e) => {
            ctx.warn_once(
                key,
                obj,
                "TriggerFailed",
                format!("could not set the image: {e}"),
            )
            .await;
            return Err(e);
        }
    }
    for u in &updates {
        ctx.metrics.fires.inc();
        if let Some(since) = triggers
            .get(u.trigger)
            .and_then(|t| ctx.tag_changed_at(&key.namespace, t))
        {
            crate::ops::metrics::global()
                .tag_to_patch_latency
                .observe(since);
        }
        if let Some(since) = triggers
            .get(u.trigger)
            .and_then(|t| ctx.notified_at(&key.namespace, t))
        {
            crate::ops::metrics::global()
                .notify
                .push_to_rollout
                .observe(since);
        }
        let from = triggers
            .get(u.trigger)
            .map(|t| t.tag_key(&key.namespace))
            .unwrap_or_default();
        info!(workload = %key, container = %u.container, old = %u.old, new = %u.new, "image trigger fired");
        let note = format!(
            "container {}: image {} -> {} (from {from})",
            u.container, u.old, u.new
        );
        ctx.publish(key, obj, EventType::Normal, "ImageTriggered", note)
            .await;
    }
    ctx.all_clear(key);
    Ok(Fired::Patched(updates))
}

/// Coalescing work queue: a workload queued twice before it is evaluated is evaluated once.
struct Queue {
    tx: mpsc::UnboundedSender<WorkloadKey>,
    pending: Mutex<HashSet<WorkloadKey>>,
    /// Keys with a delayed push under way (one timer per key).
    delayed: Mutex<HashSet<WorkloadKey>>,
}

impl Queue {
    fn push_after(self: &Arc<Self>, key: WorkloadKey, delay: Duration) {
        if !self
            .delayed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone())
        {
            return;
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue
                .delayed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            queue.push(key);
        });
    }

    fn push(&self, key: WorkloadKey) {
        if self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone())
        {
            let _ = self.tx.unbounded_send(key);
        }
    }
    fn take(&self, key: &WorkloadKey) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// Pull specs per `namespace/stream:tag` from a stream, to notice which tags moved.
fn heads(stream: &ImageStream) -> Vec<(String, Option<String>)> {
    let ns = stream.namespace().unwrap_or_default();
    let name = stream.name_any();
    stream
        .status
        .iter()
        .flat_map(|s| &s.tags)
        .map(|t| (format!("{ns}/{name}:{}", t.tag), stream.pull_spec(&t.tag)))
        .collect()
}

pub async fn run(client: Client, health: Option<Arc<crate::ops::Health>>) -> anyhow::Result<()> {
    let (store, writer) = reflector::store();
    if let Some(health) = health {
        let synced = store.clone();
        tokio::spawn(async move {
            if synced.wait_until_ready().await.is_ok() {
                health.cache_synced();
            }
        });
    }
    let ctx = Arc::new(TriggerContext::new(client.clone(), store));
    let (tx, rx) = mpsc::unbounded();
    let queue = Arc::new(Queue {
        tx,
        pending: Mutex::default(),
        delayed: Mutex::default(),
    });

    let seen: Mutex<HashMap<String, Option<String>>> = Mutex::default();
    let streams = reflector(
        writer,
        watcher(
            Api::<ImageStream>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects()
    .for_each(|s| {
        if let Ok(stream) = s {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            for (tag, spec) in heads(&stream) {
                if seen.get(&tag) != Some(&spec) {
                    seen.insert(tag.clone(), spec);
                    for w in ctx.lock_index().dependents(&tag) {
                        queue.push(w);
                    }
                }
            }
        }
        futures::future::ready(())
    });

    let watches = Kind::ALL.map(|kind| {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.api_resource());
        watcher(api, watcher::Config::default())
            .default_backoff()
            .map(move |e| (kind, e))
            .boxed()
    });
    let workloads = futures::stream::select_all(watches).for_each(|(kind, event)| {
        match event {
            Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                if let Some(key) = ctx.observe(kind, obj) {
                    queue.push(key);
                }
            }
            Ok(watcher::Event::Delete(obj)) => ctx.forget(&WorkloadKey {
                kind,
                namespace: obj.namespace().unwrap_or_default(),
                name: obj.name_any(),
            }),
            Ok(_) => {}
            Err(e) => warn!(kind = kind.name(), error = %e, "workload watch failed; retrying"),
        }
        futures::future::ready(())
    });

    let worker = rx.for_each_concurrent(8, |key: WorkloadKey| {
        let ctx = ctx.clone();
        let queue = queue.clone();
        async move {
            queue.take(&key);
            let Some(obj) = ctx.lock_index().get(&key) else {
                return;
            };
            if let Err(e) = reconcile_workload(&ctx, &key, &obj).await {
                warn!(workload = %key, error = %e, "trigger evaluation failed; retrying in 10s");
                tokio::time::sleep(Duration::from_secs(10)).await;
                queue.push(key);
            } else if ctx.awaiting_grant(&key) {
                queue.push_after(key, DENIED_TTL);
            }
        }
    });
    tokio::select! {
        _ = streams => {}
        _ = workloads => {}
        _ = worker => {}
    }
    Ok(())
}
