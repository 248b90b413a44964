//! The trigger controller: watches annotated workloads of every supported kind and the image
//! streams, and when a referenced tag's image differs from a triggered container's image, sets
//! that one field — once per change, never while paused, with an Event for every fire, skip and
//! error.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, GetParams, Patch, PatchParams};
use kube::core::DynamicObject;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{reflector, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use tracing::{info, warn};

use super::access::{AccessReviews, DENIED_TTL};
use super::annotation::{parse, Trigger};
use super::index::{Followed, TriggerIndex, WorkloadKey};
use super::metrics::FailureLabels;
pub use super::metrics::TriggerMetrics;
pub use super::watch::Meta;
use super::watch::{self, evaluation_inputs};
use super::workload::{
    owned_by_controller, patch_body, plan, service_account, ImageUpdate, Kind, Skip,
};
use crate::api::cache::{StreamCache, StreamEvent};
use crate::api::index::Index;
use crate::api::scope::Scope;
use crate::api::{action, field_manager, reason, ImageStream, TRIGGERS};
use crate::ops::backoff::backoff;
use crate::ops::events::EventRecorder;

/// How the trigger controllers run.
#[derive(Clone, Default)]
pub struct TriggerSettings {
    /// Workloads evaluated at once per kind; each evaluation is a GET and maybe a PATCH and an
    /// Event, so this also bounds the API connections the controllers hold.
    pub concurrency: u16,
    /// Told when each kind's watch has synced (readiness).
    pub health: Option<Arc<crate::ops::Health>>,
    pub metrics: Arc<TriggerMetrics>,
    /// The namespaces whose workloads are watched.
    pub scope: Scope,
    /// Namespaces whose workloads are never patched, whatever they are annotated with
    /// (`--trigger-excluded-namespaces`, kube-system by default).
    pub excluded: Arc<[String]>,
}

/// What one evaluation of a workload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    Patched(Vec<ImageUpdate>),
    Unchanged,
    /// The workload changed between reading and patching (409): evaluate the new version.
    Conflict,
    Skipped(String),
}

pub struct TriggerContext {
    pub client: Client,
    pub streams: Store<ImageStream>,
    pub recorder: EventRecorder,
    pub index: Mutex<TriggerIndex>,
    pub metrics: Arc<TriggerMetrics>,
    /// Namespaces whose workloads are dropped at the watch, as if they had no annotation.
    pub excluded: Arc<[String]>,
    access: AccessReviews,
    /// The last warning per workload and reason, so a standing problem is reported once.
    told: Mutex<HashMap<(WorkloadKey, &'static str), String>>,
    /// Workloads with a cross-namespace trigger the last evaluation found forbidden: they are
    /// evaluated again once the denial expires, so a grant takes effect with nothing touched.
    denied: Mutex<HashSet<WorkloadKey>>,
    /// Consecutive failed evaluations per workload, for the backoff.
    failures: Mutex<HashMap<WorkloadKey, u32>>,
    /// The generation each of our own patches produced, so the watch's echo of that patch is
    /// not evaluated (and fetched) again.
    echoes: Mutex<HashMap<WorkloadKey, i64>>,
}

impl TriggerContext {
    pub fn new(client: Client, streams: Store<ImageStream>) -> Self {
        let reporter = Reporter {
            controller: field_manager::TRIGGERS.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: EventRecorder::new(client.clone(), reporter),
            client,
            streams,
            index: Mutex::default(),
            metrics: Arc::default(),
            excluded: Arc::new([]),
            access: AccessReviews::default(),
            told: Mutex::default(),
            denied: Mutex::default(),
            failures: Mutex::default(),
            echoes: Mutex::default(),
        }
    }

    /// Whether this watch event only shows the generation our own last patch produced: the
    /// object is then exactly what the evaluation that wrote it decided.
    pub fn is_own_echo(&self, kind: Kind, meta: &Meta) -> bool {
        let key = WorkloadKey::of(kind, &meta.metadata);
        let mut echoes = self.echoes.lock();
        match (echoes.get(&key), meta.metadata.generation) {
            (Some(own), Some(seen)) if *own == seen => {
                echoes.remove(&key);
                true
            }
            (Some(own), Some(seen)) if seen > *own => {
                echoes.remove(&key);
                false
            }
            _ => false,
        }
    }

    /// Whether no trigger of this workload could set anything now: every one is paused or its
    /// tag has no image yet. Such a workload needs no GET; the tag's first image fans out to it.
    fn nothing_to_fire(&self, key: &WorkloadKey, meta: &Meta) -> bool {
        let Some(annotation) = meta
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TRIGGERS))
        else {
            return true;
        };
        // An annotation that does not parse is reported, which needs the object.
        parse(annotation, key.kind).is_ok_and(|triggers| {
            triggers
                .iter()
                .all(|t| t.paused || self.pull_spec(&key.namespace, t).is_none())
        })
    }

    /// Whether the last evaluation of `key` found a cross-namespace trigger forbidden.
    pub fn awaiting_grant(&self, key: &WorkloadKey) -> bool {
        self.denied.lock().contains(key)
    }

    fn note_denied(&self, key: &WorkloadKey, denied: bool) {
        let mut set = self.denied.lock();
        if denied {
            set.insert(key.clone());
        } else {
            set.remove(key);
        }
    }

    /// Records (or forgets) a workload in the fan-out index; its key when it carries triggers
    /// and no controller owns it.
    pub fn observe(&self, kind: Kind, meta: &ObjectMeta) -> Option<WorkloadKey> {
        let key = WorkloadKey::of(kind, meta);
        // An excluded namespace's workloads are treated as not annotated: never indexed, never
        // fetched, never patched.
        let ignored = owned_by_controller(meta.owner_references.as_deref().unwrap_or_default())
            || self.excluded.contains(&key.namespace);
        let annotation = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(TRIGGERS))
            .filter(|_| !ignored);
        let Some(annotation) = annotation else {
            self.forget(&key);
            return None;
        };
        let tags = parse(annotation, kind)
            .map(|ts| ts.iter().map(|t| t.tag_key(&key.namespace)).collect())
            .unwrap_or_default();
        let followed = Followed {
            key: key.clone(),
            tags,
        };
        self.index.lock().apply(&followed);
        Some(key)
    }

    /// A workload gone (or no longer annotated): nothing about it stays.
    pub fn forget(&self, key: &WorkloadKey) {
        self.index.lock().remove(key);
        self.echoes.lock().remove(key);
        self.failures.lock().remove(key);
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
            let mut told = self.told.lock();
            told.insert((key.clone(), reason), note.clone()).as_ref() == Some(&note)
        };
        if repeated {
            return;
        }
        self.metrics
            .failures
            .get_or_create(&FailureLabels { reason })
            .inc();
        warn!(workload = %key, reason, %note, "trigger not applied");
        self.publish(key, obj, EventType::Warning, reason, note)
            .await;
    }

    fn all_clear(&self, key: &WorkloadKey) {
        self.told.lock().retain(|(k, _), _| k != key);
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
            // The recorder cleans the note and caps it at the API server's limit, in bytes.
            note: Some(note),
            action: action::TRIGGER.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            warn!(error = %e, "could not publish event");
        }
    }

    /// The stream a trigger follows (its own namespace unless the trigger names another).
    fn source(&self, namespace: &str, t: &Trigger) -> Option<Arc<ImageStream>> {
        let ns = t.namespace.as_deref().unwrap_or(namespace);
        self.streams.get(&ObjectRef::new(&t.stream).within(ns))
    }

    /// Seconds since the push notification that moved this tag arrived (recent ones only).
    fn notified_at(&self, namespace: &str, t: &Trigger) -> Option<f64> {
        let stream = self.source(namespace, t)?;
        let n = crate::api::Notified::of(&stream).filter(|n| n.tags.contains(&t.tag))?;
        let now = jiff::Timestamp::now().as_millisecond();
        n.age(now, crate::api::MAX_NOTIFIED_AGE)
            .map(|age| age.as_secs_f64())
    }

    /// Seconds since the tag's current image was recorded.
    fn tag_changed_at(&self, namespace: &str, t: &Trigger) -> Option<f64> {
        let stream = self.source(namespace, t)?;
        let created = stream.status_tag(&t.tag)?.items.first()?.created.0;
        let elapsed = jiff::Timestamp::now().duration_since(created);
        Some(elapsed.as_secs_f64().max(0.0))
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
            ctx.warn_once(key, obj, reason::INVALID_TRIGGER, e.message.clone())
                .await;
            return Ok(Fired::Skipped(e.message));
        }
    };
    if key.kind.template_immutable() {
        let note = "a Job's pod template cannot change after creation, so image triggers are not applied to Jobs; the admission webhook resolves them when a Job is created; a Job created before its tag had an image keeps the image it was created with".to_string();
        ctx.warn_once(key, obj, reason::TRIGGER_SKIPPED, note.clone())
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
        ctx.warn_once(key, obj, reason::INVALID_TRIGGER, note).await;
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
        let ok = ctx
            .access
            .may_read(&ctx.client, &key.namespace, &sa, ns, &t.stream)
            .await?;
        if !ok {
            let note = format!(
                "trigger {i}: service account {}/{sa} may not get imagestreams/{} in namespace {ns}; grant it read access there or copy the tag into this namespace",
                key.namespace, t.stream
            );
            ctx.warn_once(key, obj, reason::TRIGGER_FORBIDDEN, note)
                .await;
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
        field_manager: Some(field_manager::TRIGGERS.into()),
        ..Default::default()
    };
    let body = patch_body(key.kind, obj, &updates);
    match api
        .patch(&key.name, &params, &Patch::Strategic(&body))
        .await
    {
        Ok(patched) => {
            if let Some(generation) = patched.metadata.generation {
                ctx.echoes.lock().insert(key.clone(), generation);
            }
        }
        // Changed since we looked (often only its status): read it again and decide again.
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Fired::Conflict),
        Err(e) => {
            ctx.warn_once(
                key,
                obj,
                reason::TRIGGER_FAILED,
                format!("could not set the image: {e}"),
            )
            .await;
            return Err(e);
        }
    }
    for u in &updates {
        report_fire(ctx, key, obj, triggers.get(u.trigger), u).await;
    }
    ctx.all_clear(key);
    Ok(Fired::Patched(updates))
}

/// One image set by a trigger: counted, timed from the tag's change (and from the push that
/// caused it, if any), logged, and told in an Event on the workload.
async fn report_fire(
    ctx: &TriggerContext,
    key: &WorkloadKey,
    obj: &DynamicObject,
    trigger: Option<&Trigger>,
    u: &ImageUpdate,
) {
    ctx.metrics.fires.inc();
    if let Some(since) = trigger.and_then(|t| ctx.tag_changed_at(&key.namespace, t)) {
        ctx.metrics.tag_to_patch_latency.observe(since);
    }
    if let Some(since) = trigger.and_then(|t| ctx.notified_at(&key.namespace, t)) {
        ctx.metrics.push_to_rollout.observe(since);
    }
    let from = trigger
        .map(|t| t.tag_key(&key.namespace))
        .unwrap_or_default();
    info!(workload = %key, container = %u.container, old = %u.old, new = %u.new, "image trigger fired");
    let note = format!(
        "container {}: image {} -> {} (from {from})",
        u.container, u.old, u.new
    );
    ctx.publish(key, obj, EventType::Normal, reason::IMAGE_TRIGGERED, note)
        .await;
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

/// Why an evaluation could not finish (it is retried with a per-workload backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
}

/// Run the controller on a stream cache of its own (tests, standalone use); the operator shares
/// one cache through [`run_shared`].
pub async fn run(client: Client, health: Option<Arc<crate::ops::Health>>) -> anyhow::Result<()> {
    let (cache, driver) = StreamCache::new(client.clone());
    let settings = TriggerSettings {
        concurrency: 8,
        health,
        ..Default::default()
    };
    tokio::select! {
        () = driver => Ok(()),
        r = run_shared(client, cache, settings) => r,
    }
}

/// One kube-runtime Controller per workload kind over a metadata-only watch: objects without the
/// trigger annotation, or owned by a controller, are dropped before they reach a store, so they
/// cost (almost) nothing; annotated ones are fetched in full only when evaluated. Tag moves in
/// the shared stream cache are fanned out to the workloads that follow them.
pub async fn run_shared(
    client: Client,
    cache: StreamCache,
    settings: TriggerSettings,
) -> anyhow::Result<()> {
    cache.synced().await;
    let mut ctx = TriggerContext::new(client.clone(), cache.store());
    ctx.metrics = settings.metrics.clone();
    ctx.excluded = settings.excluded.clone();
    let ctx = Arc::new(ctx);
    let mut senders = HashMap::new();
    let mut controllers = Vec::new();
    for kind in Kind::ALL {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        senders.insert(kind, tx);
        // Each kind's watch counts once towards readiness, however often it relists.
        let health = settings.health.clone();
        let ready = move || {
            if let Some(h) = &health {
                h.cache_synced_once(kind.name());
            }
        };
        let config = controller::Config::default().concurrency(settings.concurrency);
        let watched = Watched {
            kind,
            scope: settings.scope.clone(),
        };
        controllers.push(kind_controller(&client, watched, ctx.clone(), rx, ready, config).boxed());
    }
    let fan_out = fan_out(cache.subscribe(), ctx.clone(), senders);
    tokio::select! {
        () = fan_out => {}
        _ = futures::future::join_all(controllers) => {}
    }
    Ok(())
}

/// Sends each workload that follows a moved tag to its kind's controller.
async fn fan_out(
    changes: futures::channel::mpsc::UnboundedReceiver<StreamEvent>,
    ctx: Arc<TriggerContext>,
    senders: HashMap<Kind, futures::channel::mpsc::UnboundedSender<ObjectRef<Meta>>>,
) {
    // The last pull spec (hashed) of each tag some workload follows: 100,000 tags' full pull
    // specs would cost tens of MiB, and a tag nobody follows needs no memory. A workload that
    // starts following a tag is evaluated on its own change; the tag's next move fans out too.
    let mut seen: HashMap<String, u64> = HashMap::new();
    for stream in ctx.streams.state() {
        for (tag, spec) in heads(&stream) {
            if !ctx.index.lock().dependents(&tag).is_empty() {
                seen.insert(tag, spec_hash(&spec));
            }
        }
    }
    changes
        .for_each(|event| {
            if let StreamEvent::Applied(stream) = event {
                for (tag, spec) in heads(&stream) {
                    let hash = spec_hash(&spec);
                    if seen.get(&tag) == Some(&hash) {
                        continue;
                    }
                    let dependents = ctx.index.lock().dependents(&tag);
                    if dependents.is_empty() {
                        continue;
                    }
                    seen.insert(tag, hash);
                    for w in dependents {
                        if let Some(tx) = senders.get(&w.kind) {
                            let r = ObjectRef::new_with(&w.name, w.kind.api_resource())
                                .within(&w.namespace);
                            let _ = tx.unbounded_send(r);
                        }
                    }
                }
            }
            futures::future::ready(())
        })
        .await;
}

fn spec_hash(spec: &Option<String>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    spec.hash(&mut h);
    h.finish()
}

/// One kind, over the namespaces the operator manages.
struct Watched {
    kind: Kind,
    scope: Scope,
}

/// The metadata watch of one kind, filtered and slimmed before its store, driving a Controller.
async fn kind_controller(
    client: &Client,
    Watched { kind, scope }: Watched,
    ctx: Arc<TriggerContext>,
    moved: futures::channel::mpsc::UnboundedReceiver<ObjectRef<Meta>>,
    ready: impl Fn() + Send + 'static,
    config: controller::Config,
) {
    let ar = kind.api_resource();
    let writer: Writer<Meta> = Writer::new(ar.clone());
    let reader = writer.as_reader();
    let admit = ctx.clone();
    let (client, resource) = (client.clone(), ar.clone());
    let api = move |ns: Option<&str>| -> Api<Meta> {
        match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        }
    };
    // Metadata only: the annotation is all the watch needs.
    let events = scope
        .watch(api, watcher::Config::default(), reader.clone())
        .map_ok(move |event| {
            let gone = |m: &ObjectMeta| admit.forget(&WorkloadKey::of(kind, m));
            watch::admit(event, |m| admit.observe(kind, m).is_some(), gone)
        })
        .inspect(move |e| match e {
            Ok(watcher::Event::InitDone) => ready(),
            Err(error) => warn!(kind = kind.name(), %error, "workload watch failed; retrying"),
            Ok(_) => {}
        });
    // Re-evaluate on a change of the spec (generation) or of the trigger annotation, not on
    // every status update.
    let own = ctx.clone();
    let changes = reflector(writer, events)
        .applied_objects()
        .predicate_filter(evaluation_inputs, Default::default())
        .try_filter(move |m| futures::future::ready(!own.is_own_echo(kind, m)));
    Controller::for_stream_with(changes, reader, ar)
        .with_config(config)
        .reconcile_on(moved)
        .run(
            move |meta, ctx| reconcile_meta(kind, meta, ctx),
            move |meta, error, ctx| error_policy(kind, meta, error, ctx),
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}

const CONFLICT_RETRIES: usize = 5;

/// Fetch the annotated workload and evaluate it.
pub async fn reconcile_meta(
    kind: Kind,
    meta: Arc<Meta>,
    ctx: Arc<TriggerContext>,
) -> Result<Action, Error> {
    let key = WorkloadKey::of(kind, &meta.metadata);
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &key.namespace, &kind.api_resource());
    if ctx.nothing_to_fire(&key, &meta) {
        return Ok(Action::await_change());
    }
    // A conflict is usually the workload's own controller writing its status between our read
    // and our patch; that is no spec change the watch would report, so read it again here.
    let mut fired = Fired::Conflict;
    for attempt in 0..CONFLICT_RETRIES {
        // The first read may come from the API server's watch cache (no etcd read): it is at
        // least as new as the event that woke us, and the patch is conditional on it anyway.
        let params = match attempt {
            0 => GetParams::any(),
            _ => GetParams::default(),
        };
        let obj = match api.get_with(&key.name, &params).await {
            Ok(obj) => obj,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        };
        fired = reconcile_workload(&ctx, &key, &obj).await?;
        tracing::debug!(workload = %key, ?fired, "trigger evaluated");
        if fired != Fired::Conflict {
            break;
        }
    }
    if fired == Fired::Conflict {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    ctx.failures.lock().remove(&key);
    Ok(match ctx.awaiting_grant(&key) {
        true => Action::requeue(DENIED_TTL),
        false => Action::await_change(),
    })
}

/// Per-workload exponential backoff: 10 s doubling to 5 minutes.
fn error_policy(kind: Kind, meta: Arc<Meta>, error: &Error, ctx: Arc<TriggerContext>) -> Action {
    let key = WorkloadKey::of(kind, &meta.metadata);
    let attempts = {
        let mut failures = ctx.failures.lock();
        let n = failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(attempts, Duration::from_secs(300), None);
    warn!(workload = %key, %error, ?delay, "trigger evaluation failed; retrying");
    Action::requeue(delay)
}
