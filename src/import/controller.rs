//! The import controller: for each ImageStream, decide what to import, ask the registry, compute
//! the new status, and write only what changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::{self, reflector, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use super::budget::{fit_with_condition, Fit, STATUS_BUDGET};
use super::plan::{has_scheduled_tags, imports_needed, is_scheduled, Cause, Hints};
use super::resolve::{resolve, Input, Outcome, RepositoryOutcome, TagChange};
use super::spec::source_of;
use crate::api::cache::{StreamCache, StreamEvent};
use crate::api::scope::{api_of, Scope};
use crate::api::{
    field_manager, reason, ImageStream, ImageStreamStatus, TagReference,
    CREDENTIAL_SERVICE_ACCOUNT, DEFAULT_CREDENTIAL_SERVICE_ACCOUNT, DOCKER_REPOSITORY_CHECK,
    MAX_SPEC_TAGS, PREFER_ARCH, PREFER_OS,
};
use crate::ops::events::EventRecorder;
use crate::registry::credentials::{Identity, DOCKER_CFG, DOCKER_CONFIG_JSON};
use crate::registry::tags::select;
use crate::registry::{
    ImageRef, ImageResolver, ImportRequest, Keyring, KnownImage, ListRequest, RegistryError,
};
use crate::schedule::Scheduler;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("could not serialize status: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("object has no {0}")]
    MissingField(&'static str),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub local_registry: Option<String>,
    pub max_history: usize,
    pub allow_cross_namespace: bool,
    pub max_retry_backoff: Duration,
    pub concurrency: u16,
    /// Tags imported from `spec.dockerImageRepository`; 0 = unlimited (OpenShift: 50).
    pub max_bulk_import: usize,
    /// Told when the stream cache has synced (readiness).
    pub health: Option<Arc<crate::ops::Health>>,
    /// Skip scheduled checks of streams that recently received a push notification.
    pub stretch_schedule_when_notified: bool,
    pub metrics: super::metrics::ImportMetrics,
    /// The namespaces whose streams and pull secrets are watched.
    pub scope: Scope,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            local_registry: None,
            max_history: 10,
            allow_cross_namespace: false,
            max_retry_backoff: Duration::from_secs(300),
            concurrency: 8,
            max_bulk_import: 50,
            health: None,
            stretch_schedule_when_notified: false,
            metrics: Default::default(),
            scope: Scope::Cluster,
        }
    }
}

/// A stream version between our two writes, and what the write still to come adds to it.
struct Pending {
    resource_version: String,
    follows: Follows,
}

enum Follows {
    /// The repository-check annotation (the status was written first).
    Annotation,
    /// This status (the annotation was written first, on a stream without status).
    Status(Box<ImageStreamStatus>),
}

#[derive(Debug, Clone, Copy)]
struct RetryState {
    attempts: u32,
    not_before: Instant,
}

pub struct Context {
    pub client: Client,
    pub resolver: Arc<dyn ImageResolver>,
    pub streams: Store<ImageStream>,
    pub secrets: Vec<Store<Secret>>,
    pub recorder: EventRecorder,
    pub scheduler: Scheduler,
    pub settings: Settings,
    retries: Mutex<HashMap<(String, String), RetryState>>,
    credentials_seen: Mutex<HashMap<String, String>>,
    /// Stream UID → the version one of our two writes produced, and what the other adds to it.
    pending_check: Mutex<HashMap<String, Pending>>,
    /// Streams with tags never imported, changed, or asked to be re-imported: while there are
    /// any, scheduled re-checks of other streams wait, so first imports never starve.
    urgent: Mutex<std::collections::HashSet<String>>,
    /// Stream UID → fingerprint of the status that could not be stored, so it is not sent again.
    rejected: Mutex<HashMap<String, u64>>,
    /// Status writes the cache has not shown back yet: uid → (the cached resourceVersion they
    /// were computed from, fingerprint). Kept until the stream's next reconcile.
    unconfirmed: Mutex<HashMap<String, (String, u64)>>,
}

impl Context {
    pub fn new(
        client: Client,
        resolver: Arc<dyn ImageResolver>,
        streams: Store<ImageStream>,
        secrets: Vec<Store<Secret>>,
        scheduler: Scheduler,
        settings: Settings,
    ) -> Self {
        let reporter = Reporter {
            controller: field_manager::IMPORT.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: EventRecorder::new(client.clone(), reporter),
            client,
            resolver,
            streams,
            secrets,
            scheduler,
            settings,
            retries: Mutex::default(),
            credentials_seen: Mutex::default(),
            pending_check: Mutex::default(),
            urgent: Mutex::default(),
            rejected: Mutex::default(),
            unconfirmed: Mutex::default(),
        }
    }

    fn lock_urgent(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.urgent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the schedule's load and the set of streams with urgent work up to date.
    pub fn observe_stream(&self, event: &StreamEvent) {
        let (StreamEvent::Applied(s) | StreamEvent::Deleted(s)) = event;
        let key = format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
        if let StreamEvent::Deleted(_) = event {
            self.scheduler.forget(&key);
            self.lock_urgent().remove(&key);
            if let Some(uid) = s.uid() {
                self.lock_pending_check().remove(&uid);
                self.unconfirmed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&uid);
                self.rejected
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&uid);
            }
            return;
        }
        self.scheduler.set_demand(&key, scheduled_demand(s));
        let urgent = imports_needed(s, &Hints::default()).values().any(|c| {
            !matches!(
                c,
                Cause::Scheduled | Cause::Retry | Cause::CredentialsChanged
            )
        });
        let rejected = s.uid().is_some_and(|uid| {
            let rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
            rejected.contains_key(&uid)
        });
        let mut set = self.lock_urgent();
        if urgent && !rejected {
            set.insert(key);
        } else {
            set.remove(&key);
        }
    }

    /// Records that `status` cannot be stored; true the first time for this status.
    fn reject(&self, stream: &ImageStream, status: &ImageStreamStatus) -> bool {
        let uid = stream.uid().unwrap_or_default();
        let print = fingerprint(status);
        let mut rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        rejected.insert(uid, print) != Some(print)
    }

    fn accepted(&self, stream: &ImageStream) {
        let uid = stream.uid().unwrap_or_default();
        let mut rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        rejected.remove(&uid);
    }

    fn wrote(&self, stream: &ImageStream, status: &ImageStreamStatus) {
        let uid = stream.uid().unwrap_or_default();
        let rv = stream.resource_version().unwrap_or_default();
        let mut unconfirmed = self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner());
        unconfirmed.insert(uid, (rv, fingerprint(status)));
    }

    /// Whether `status` (which differs from the cached one if `changed`) repeats the write made
    /// from this very version of the stream: the cache has not caught up with it (a watch
    /// relisting after an API server outage), and writing again would only stamp new times,
    /// once per scheduled check. The record goes as soon as the cache has moved on or nothing
    /// is left to write, so it lasts one reconcile in the normal case.
    fn repeats_unconfirmed_write(
        &self,
        stream: &ImageStream,
        status: &ImageStreamStatus,
        changed: bool,
    ) -> bool {
        let uid = stream.uid().unwrap_or_default();
        let mut unconfirmed = self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner());
        let Some((rv, print)) = unconfirmed.get(&uid) else {
            return false;
        };
        if !changed || stream.resource_version().as_ref() != Some(rv) {
            unconfirmed.remove(&uid);
            return false;
        }
        *print == fingerprint(status)
    }

    fn was_rejected(&self, stream: &ImageStream, status: &ImageStreamStatus) -> bool {
        let uid = stream.uid().unwrap_or_default();
        let rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        // Fingerprinting serialises the whole status: only for streams refused before.
        rejected
            .get(&uid)
            .is_some_and(|print| *print == fingerprint(status))
    }

    /// Whether streams other than `key` wait for a first (or requested) import.
    fn others_urgent(&self, key: &str) -> bool {
        let set = self.lock_urgent();
        set.len() > usize::from(set.contains(key))
    }

    fn lock_pending_check(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending_check.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn keyring(&self, namespace: &str) -> Keyring {
        let secrets: Vec<Arc<Secret>> = self
            .secrets
            .iter()
            .flat_map(|s| s.state())
            .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
            .collect();
        let (keyring, skipped) = Keyring::from_secrets(secrets.iter().map(|s| s.as_ref()));
        for s in skipped {
            warn!(secret = %s.secret, reason = %s.reason, "pull secret skipped");
        }
        keyring
    }
}

/// The ServiceAccount a token-mode credential provider is given a token of: the stream names
/// one of its own namespace, or gets `default`.
fn identity_of(stream: &ImageStream, namespace: &str) -> Identity {
    let named = stream
        .annotations()
        .get(CREDENTIAL_SERVICE_ACCOUNT)
        .filter(|n| !n.is_empty());
    Identity {
        namespace: namespace.to_string(),
        service_account: named
            .map_or(DEFAULT_CREDENTIAL_SERVICE_ACCOUNT, |n| n.as_str())
            .to_string(),
    }
}

/// Reconcile one stream, top to bottom: plan, import, resolve, write what changed, report.
pub async fn reconcile(stream: Arc<ImageStream>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = stream.namespace().ok_or(Error::MissingField("namespace"))?;
    let name = stream.name_any();
    let key = format!("{namespace}/{name}");
    let now = Instant::now();
    let stream = settled(&ctx, stream);
    let keyring = ctx
        .keyring(&namespace)
        .with_identity(identity_of(&stream, &namespace));

    let (hints, throttled) = hints_for(&ctx, &stream, &key, &keyring, now);
    let plan = imports_needed(&stream, &hints);
    let mut outcomes = import(&ctx, &stream, &plan, &keyring).await;
    let repository = import_repository(&ctx, &stream, &keyring, &mut outcomes).await;
    if checked_every_scheduled_tag(&stream, &plan) {
        ctx.scheduler.mark_checked(&key, now);
    }

    let lookup = |ns: &str, n: &str| ctx.streams.get(&ObjectRef::new(n).within(ns));
    let resolution = resolve(&Input {
        stream: &stream,
        outcomes: &outcomes,
        streams: &lookup,
        now: Time(jiff::Timestamp::now()),
        local_registry: ctx.settings.local_registry.as_deref(),
        max_history: ctx.settings.max_history,
        allow_cross_namespace: ctx.settings.allow_cross_namespace,
        repository: repository.as_ref(),
    });

    let old = stream.status.clone().unwrap_or_default();
    let mut status = resolution.status;
    // The stored status already fits: only a status that differs needs measuring.
    let fit = match old == status {
        true => Fit::Fits,
        false => fit_with_condition(
            &old,
            &mut status,
            STATUS_BUDGET,
            Time(jiff::Timestamp::now()),
        ),
    };
    let changed = old != status;
    if ctx.repeats_unconfirmed_write(&stream, &status, changed) {
        debug!(stream = %key, "the cache has not shown the last status write yet; not writing it again");
        return Ok(Action::requeue(next_wakeup(
            &ctx, &stream, &key, throttled, now,
        )));
    }
    if let Some(why) = changed
        .then(|| unstorable(&ctx, &stream, &status, &fit))
        .flatten()
    {
        return Ok(not_written(&ctx, &stream, &status, why, &outcomes, throttled, now).await);
    }
    let check_missing = stream
        .annotation(DOCKER_REPOSITORY_CHECK)
        .is_none_or(str::is_empty);
    let mark = (!outcomes.is_empty() || repository.is_some()) && (changed || check_missing);
    let api: Api<ImageStream> = Api::namespaced(ctx.client.clone(), &namespace);
    if let Err(why) = write(&ctx, &api, &stream, &status, changed, mark).await? {
        return Ok(not_written(&ctx, &stream, &status, why, &outcomes, throttled, now).await);
    }
    report_trim(&ctx, &stream, &old, &fit).await;
    report(&ctx, &stream, &resolution.changes).await;
    record_retries(&ctx, &stream, &key, &outcomes, now);
    Ok(Action::requeue(next_wakeup(
        &ctx, &stream, &key, throttled, now,
    )))
}

/// The status write (if `changed`) and the repository-check annotation (if `mark`): two writes,
/// since the status is a subresource. `Err(why)` when the API server refuses the status for
/// its size.
async fn write(
    ctx: &Context,
    api: &Api<ImageStream>,
    stream: &ImageStream,
    status: &ImageStreamStatus,
    changed: bool,
    mark: bool,
) -> Result<Result<(), String>, Error> {
    let name = stream.name_any();
    // A stream we have never written a status to is small: the annotation patch costs the API
    // server about half of what it costs once the status is there, and if the status write then
    // fails nothing is lost, since every tag still reads as never imported.
    let mark_first = mark && changed && stream.status.is_none();
    if mark_first {
        let rv = mark_repository_checked(api, &name).await?;
        expect_write(ctx, stream, rv, Follows::Status(Box::new(status.clone())));
    }
    let written = match changed {
        false => None,
        true => match store_status(ctx, api, stream, status).await {
            Ok(Ok(rv)) => Some(rv),
            refused_or_failed => {
                if mark_first {
                    // The status that was to follow the annotation never came.
                    forget_pending(ctx, stream);
                }
                return refused_or_failed.map(|r| r.map(|_| ()));
            }
        },
    };
    if mark && !mark_first {
        if let Some(rv) = written {
            expect_write(ctx, stream, rv, Follows::Annotation);
        }
        mark_repository_checked(api, &name).await?;
    }
    Ok(Ok(()))
}

/// Why a changed status cannot be stored without trying: over the budget even trimmed, or
/// refused by the API server before unchanged.
fn unstorable(
    ctx: &Context,
    stream: &ImageStream,
    status: &ImageStreamStatus,
    fit: &Fit,
) -> Option<String> {
    if let Fit::TooLarge { bytes } = fit {
        let kib = bytes / 1024;
        return Some(format!(
            "{kib} KiB even with every tag's newest image alone"
        ));
    }
    ctx.was_rejected(stream, status)
        .then(|| "the API server refused it before".into())
}

/// Writes a changed status; `Err(why)` when the API server refuses it for its size.
async fn store_status(
    ctx: &Context,
    api: &Api<ImageStream>,
    stream: &ImageStream,
    status: &ImageStreamStatus,
) -> Result<Result<String, String>, Error> {
    match write_status(api, &stream.name_any(), status).await {
        Err(Error::Kube(e)) if rejected_for_size(&e) => {
            Ok(Err(format!("the API server refused it: {e}")))
        }
        written => {
            let rv = written?;
            ctx.accepted(stream);
            ctx.wrote(stream, status);
            Ok(Ok(rv))
        }
    }
}

/// A status that cannot be stored: said once per distinct status (a Warning Event), never written
/// again unchanged; the known-good status stays as it is.
async fn not_written(
    ctx: &Context,
    stream: &ImageStream,
    status: &ImageStreamStatus,
    why: String,
    outcomes: &BTreeMap<String, Outcome>,
    throttled: Option<Duration>,
    now: Instant,
) -> Action {
    let key = format!(
        "{}/{}",
        stream.namespace().unwrap_or_default(),
        stream.name_any()
    );
    // Its tags stay unimported, but it must not hold back every other stream's schedule.
    ctx.lock_urgent().remove(&key);
    if ctx.reject(stream, status) {
        let note = format!(
            "status of {} tags not written: {why}; the stream keeps its last status. Split it \
             into several streams or remove tags",
            status.tags.len()
        );
        warn!(stream = %key, %note, "status too large");
        publish(
            ctx,
            stream,
            EventType::Warning,
            reason::STATUS_TOO_LARGE,
            note,
        )
        .await;
    }
    record_retries(ctx, stream, &key, outcomes, now);
    Action::requeue(next_wakeup(ctx, stream, &key, throttled, now))
}

/// A Warning when a status starts to be trimmed or is trimmed differently.
async fn report_trim(ctx: &Context, stream: &ImageStream, old: &ImageStreamStatus, fit: &Fit) {
    let Fit::Trimmed(t) = fit else {
        return;
    };
    let message = t.describe(STATUS_BUDGET);
    let before = old
        .conditions
        .iter()
        .find(|c| c.type_ == reason::STATUS_TRIMMED);
    if before.and_then(|c| c.message.as_deref()) != Some(message.as_str()) {
        publish(
            ctx,
            stream,
            EventType::Warning,
            reason::STATUS_TRIMMED,
            message,
        )
        .await;
    }
}

async fn publish(
    ctx: &Context,
    stream: &ImageStream,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Import".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &stream.object_ref(&())).await {
        warn!(error = %e, "could not publish event");
    }
}

/// 413, or etcd's `ResourceExhausted` / "too large" surfacing as a 500 or 422.
fn rejected_for_size(e: &kube::Error) -> bool {
    let kube::Error::Api(status) = e else {
        return false;
    };
    let message = status.message.to_ascii_lowercase();
    status.code == 413
        || (matches!(status.code, 422 | 500)
            && ["too large", "resourceexhausted", "too long", "exceeds"]
                .iter()
                .any(|m| message.contains(m)))
}

/// Between our two writes (status then annotation, or on a new stream annotation then status)
/// the stream exists in a version that has one and lacks the other. Seen as is, that version
/// reads as a request for a full re-import, or as tags never imported; it is therefore read with
/// what the second write is about to add, so no write's effect depends on the order of two.
fn settled(ctx: &Context, stream: Arc<ImageStream>) -> Arc<ImageStream> {
    let uid = stream.uid().unwrap_or_default();
    let mut pending = ctx.lock_pending_check();
    let Some(p) = pending.get(&uid) else {
        return stream;
    };
    if stream.resource_version().as_ref() != Some(&p.resource_version) {
        pending.remove(&uid);
        return stream;
    }
    let mut view = (*stream).clone();
    match &p.follows {
        Follows::Annotation => {
            view.annotations_mut()
                .insert(DOCKER_REPOSITORY_CHECK.into(), "pending".into());
        }
        Follows::Status(status) => view.status = Some((**status).clone()),
    }
    Arc::new(view)
}

fn expect_write(ctx: &Context, stream: &ImageStream, resource_version: String, follows: Follows) {
    if let Some(uid) = stream.uid() {
        ctx.lock_pending_check().insert(
            uid,
            Pending {
                resource_version,
                follows,
            },
        );
    }
}

/// The status did not follow the annotation: the version between is what the stream is.
fn forget_pending(ctx: &Context, stream: &ImageStream) {
    if let Some(uid) = stream.uid() {
        ctx.lock_pending_check().remove(&uid);
    }
}

/// Only an import that covered every scheduled tag restarts the stream's interval: a retry of
/// one failing tag (every 10 s while a registry misbehaves) must not keep postponing its
/// siblings' scheduled checks.
fn checked_every_scheduled_tag(stream: &ImageStream, plan: &BTreeMap<String, Cause>) -> bool {
    !plan.is_empty()
        && stream
            .spec_tags()
            .iter()
            .filter(|t| is_scheduled(stream, t))
            .all(|t| plan.contains_key(&t.name))
}

/// What the controller remembers that status does not: schedule, backoff, credential changes.
fn hints_for(
    ctx: &Context,
    stream: &ImageStream,
    key: &str,
    keyring: &Keyring,
    now: Instant,
) -> (Hints, Option<Duration>) {
    let uid = stream.uid().unwrap_or_default();
    ctx.scheduler.observe_backlog(now);
    let mut throttled = None;
    let due = has_scheduled_tags(stream) && ctx.scheduler.until_due(key, &uid, now).is_zero();
    let notified = due && stretched(ctx, stream);
    if notified {
        // Push notifications stand in for this check: it is not overdue.
        ctx.scheduler.mark_checked(key, now);
    }
    let mut scheduled_due = due && !notified;
    if scheduled_due && ctx.others_urgent(key) {
        // First imports elsewhere go first; this check moves one interval on.
        ctx.scheduler.mark_checked(key, now);
        scheduled_due = false;
    }
    let scheduled_due = scheduled_due
        && match ctx.scheduler.try_acquire() {
            Ok(()) => true,
            Err(wait) => {
                throttled = Some(wait);
                false
            }
        };
    let retry = ctx
        .retries
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|((k, _), r)| k == key && r.not_before <= now)
        .map(|((_, tag), _)| tag.clone())
        .collect();
    let fingerprint = keyring.fingerprint();
    let previous = ctx
        .credentials_seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key.to_string(), fingerprint.clone());
    let credentials_changed = previous.is_some_and(|p| p != fingerprint);
    (
        Hints {
            scheduled_due,
            retry,
            credentials_changed,
        },
        throttled,
    )
}

/// `--stretch-schedule-when-notified`: a stream whose registry sent a verified push notification
/// within the last four intervals skips its scheduled checks; if notifications stop (a broken
/// webhook), polling resumes by itself four intervals after the last one.
fn stretched(ctx: &Context, stream: &ImageStream) -> bool {
    if !ctx.settings.stretch_schedule_when_notified {
        return false;
    }
    let Some(n) = crate::api::Notified::of(stream) else {
        return false;
    };
    let window = ctx.scheduler.interval().saturating_mul(4);
    n.age(jiff::Timestamp::now().as_millisecond(), window)
        .is_some()
}

/// Ask the registry for every planned tag concurrently; the resolver enforces per-registry limits.
async fn import(
    ctx: &Context,
    stream: &ImageStream,
    plan: &BTreeMap<String, Cause>,
    keyring: &Keyring,
) -> BTreeMap<String, Outcome> {
    let requests = plan.iter().filter_map(|(tag, cause)| {
        let spec = stream.spec_tag(tag)?;
        let request =
            within_tag_limit(stream, spec).and_then(|()| request_for(stream, spec, keyring));
        let request = request.map(|mut r| {
            // A user's request or a changed spec always fetches; background checks of a tag
            // whose image is unchanged stop at the HEAD.
            if cause.is_background() {
                r.known = known_image(stream, tag);
            }
            r
        });
        Some(resolve_tag(ctx, stream, tag.clone(), *cause, request))
    });
    futures::future::join_all(requests)
        .await
        .into_iter()
        .collect()
}

/// One tag's registry round trip, timed, counted and logged the same way for every cause.
async fn resolve_tag(
    ctx: &Context,
    stream: &ImageStream,
    tag: String,
    cause: Cause,
    request: Result<ImportRequest, RegistryError>,
) -> (String, Outcome) {
    let started = Instant::now();
    let result = match request {
        Ok(req) => ctx.resolver.resolve(req).await,
        Err(e) => Err(e),
    };
    ctx.settings
        .metrics
        .record(&result, started.elapsed().as_secs_f64());
    log_outcome(stream, &tag, cause, &result);
    (tag, Outcome { cause, result })
}

/// OpenShift's full import: when the stream names a whole repository and the repository check
/// annotation is absent (or the repository changed), list its tags and import the first
/// `max_bulk_import` in priority order that have no spec tag of their own.
async fn import_repository(
    ctx: &Context,
    stream: &ImageStream,
    keyring: &Keyring,
    outcomes: &mut BTreeMap<String, Outcome>,
) -> Option<RepositoryOutcome> {
    let from = repository_import_due(stream)?;
    let insecure = stream.insecure_repository();
    let repository = match ImageRef::parse(&from) {
        Ok(r) => r,
        Err(e) => {
            return Some(RepositoryOutcome {
                listed: Err(RegistryError::Invalid {
                    reference: from.clone(),
                    detail: format!("{}; correct spec.dockerImageRepository", e.cause),
                }),
                from,
            })
        }
    };
    let limit = ctx.settings.max_bulk_import;
    let listed = ctx
        .resolver
        .list_tags(ListRequest {
            repository,
            insecure,
            keyring: keyring.clone(),
            max_tags: MAX_LISTED_TAGS,
        })
        .await;
    let tags = match listed {
        Ok(t) => t,
        Err(e) => {
            warn!(stream = %stream.name_any(), reason = e.reason(), error = %e, "repository listing failed");
            return Some(RepositoryOutcome {
                from,
                listed: Err(e),
            });
        }
    };
    let (take, rest) = select(&tags, limit);
    let requests = take
        .into_iter()
        .filter(|t| stream.spec_tag(t).is_none())
        .map(|tag| {
            let request = listed_tag_request(&from, &tag, insecure, keyring);
            resolve_tag(ctx, stream, tag, Cause::RepositoryCheck, request)
        });
    outcomes.extend(futures::future::join_all(requests).await);
    Some(RepositoryOutcome {
        from,
        listed: Ok(rest),
    })
}

/// Tags listed from one repository at most, so a hostile registry cannot exhaust memory.
const MAX_LISTED_TAGS: usize = 10_000;

/// The import of one tag a repository listing found (no spec tag names it).
fn listed_tag_request(
    from: &str,
    tag: &str,
    insecure: bool,
    keyring: &Keyring,
) -> Result<ImportRequest, RegistryError> {
    let reference = format!("{from}:{tag}");
    ImageRef::parse(&reference)
        .map(|r| ImportRequest {
            reference: r,
            insecure,
            import_mode: Default::default(),
            prefer_arch: None,
            prefer_os: None,
            keyring: keyring.clone(),
            known: None,
        })
        .map_err(|e| RegistryError::Invalid {
            reference,
            detail: e.cause,
        })
}

fn repository_import_due(stream: &ImageStream) -> Option<String> {
    let from = stream
        .spec
        .docker_image_repository
        .clone()
        .filter(|r| !r.is_empty())?;
    let check_missing = stream
        .annotation(DOCKER_REPOSITORY_CHECK)
        .is_none_or(str::is_empty);
    let last = stream
        .status
        .as_ref()
        .and_then(|s| s.repository.as_ref())
        .map(|r| r.from.as_str());
    (check_missing || last != Some(from.as_str())).then_some(from)
}

/// Only the first [`MAX_SPEC_TAGS`] spec tags are imported; a stream stored before the CRD
/// had that limit gets a condition on the others instead of a request each.
fn within_tag_limit(stream: &ImageStream, tag: &TagReference) -> Result<(), RegistryError> {
    let tags = stream.spec_tags();
    if tags.len() <= MAX_SPEC_TAGS || tags[..MAX_SPEC_TAGS].iter().any(|t| t.name == tag.name) {
        return Ok(());
    }
    Err(RegistryError::Invalid {
        reference: tag
            .from
            .as_ref()
            .map(|f| f.name.clone())
            .unwrap_or_default(),
        detail: format!(
            "the stream has {} spec tags and at most {MAX_SPEC_TAGS} are imported; move tags \
             past the first {MAX_SPEC_TAGS} into another ImageStream",
            tags.len()
        ),
    })
}

fn request_for(
    stream: &ImageStream,
    tag: &TagReference,
    keyring: &Keyring,
) -> Result<ImportRequest, RegistryError> {
    let from = tag.from.as_ref().map(|f| f.name.as_str()).unwrap_or("");
    let reference = ImageRef::parse(from).map_err(|e| RegistryError::Invalid {
        reference: from.to_string(),
        detail: format!("{}; correct spec.tags[{}].from.name", e.cause, tag.name),
    })?;
    Ok(ImportRequest {
        reference,
        insecure: tag.insecure() || stream.insecure_repository(),
        import_mode: tag.import_mode(),
        prefer_arch: tag.annotation(PREFER_ARCH).map(str::to_string),
        prefer_os: tag.annotation(PREFER_OS).map(str::to_string),
        keyring: keyring.clone(),
        known: None,
    })
}

/// The tag's current image, when its status also holds the image's metadata (an unchanged
/// answer carries none, and the status keeps what it has).
fn known_image(stream: &ImageStream, tag: &str) -> Option<KnownImage> {
    let status = stream.status.as_ref()?;
    let entry = status.tags.iter().find(|t| t.tag == tag)?;
    let item = entry.items.first().filter(|i| !i.image.is_empty())?;
    status
        .images
        .iter()
        .any(|d| d.image == item.image)
        .then(|| KnownImage {
            manifest: entry
                .manifest_list_digest
                .clone()
                .unwrap_or_else(|| item.image.clone()),
            image: item.image.clone(),
            docker_image_reference: item.docker_image_reference.clone(),
        })
}

fn log_outcome(
    stream: &ImageStream,
    tag: &str,
    cause: Cause,
    result: &Result<crate::registry::ResolvedImage, RegistryError>,
) {
    let namespace = stream.namespace().unwrap_or_default();
    let name = stream.name_any();
    // Every check at DEBUG; what changed (and new failures) is logged once by `report`.
    match result {
        Ok(image) => debug!(%namespace, %name, %tag, ?cause, digest = %image.digest, "resolved"),
        Err(e) => {
            debug!(%namespace, %name, %tag, ?cause, reason = e.reason(), error = %e, "import failed")
        }
    }
}

/// Server-side apply of the whole status; returns the resourceVersion it produced.
async fn write_status(
    api: &Api<ImageStream>,
    name: &str,
    status: &ImageStreamStatus,
) -> Result<String, Error> {
    let patch = json!({
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "status": status,
    });
    let written = api
        .patch_status(
            name,
            &PatchParams::apply(field_manager::IMPORT).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(written.resource_version().unwrap_or_default())
}

/// Returns the resourceVersion the patch produced.
async fn mark_repository_checked(api: &Api<ImageStream>, name: &str) -> Result<String, Error> {
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let patch = json!({ "metadata": { "annotations": { DOCKER_REPOSITORY_CHECK: now } } });
    let written = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(written.resource_version().unwrap_or_default())
}

/// Logs every change and publishes at most one Event for the whole reconcile, so the first
/// import of a stream with hundreds of tags is one Event, not hundreds.
async fn report(ctx: &Context, stream: &ImageStream, changes: &[TagChange]) {
    let namespace = stream.namespace().unwrap_or_default();
    let name = stream.name_any();
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
    // Name the push notification that asked for these imports, and time it.
    let notified = crate::api::Notified::of(stream);
    let by = notified.as_ref().and_then(|n| {
        let asked = changes
            .iter()
            .any(|c| matches!(c, TagChange::Imported { tag, .. } if n.tags.contains(tag)));
        let now = jiff::Timestamp::now().as_millisecond();
        let waited = n.age(now, crate::api::MAX_NOTIFIED_AGE).filter(|_| asked)?;
        ctx.settings
            .metrics
            .push_to_import
            .observe(waited.as_secs_f64());
        Some(n.source.clone())
    });
    let Some(event) = summary_event(changes, by.as_deref()) else {
        return;
    };
    if let Err(e) = ctx.recorder.publish(&event, &stream.object_ref(&())).await {
        warn!(error = %e, "could not publish event");
    }
}

/// Tags named in one Event before the rest are counted.
const EVENT_TAGS: usize = 10;

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
        note: Some(truncate(&note, 1000)),
        action: "Import".into(),
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

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Transient failures back off exponentially (10 s doubling, capped; a registry's Retry-After
/// is a floor); anything else clears the retry state for that tag. A scheduled tag's backoff
/// never exceeds its own schedule, so once a registry recovers it converges within one interval.
fn record_retries(
    ctx: &Context,
    stream: &ImageStream,
    key: &str,
    outcomes: &BTreeMap<String, Outcome>,
    now: Instant,
) {
    let interval = ctx.scheduler.interval_for(key);
    let mut retries = ctx.retries.lock().unwrap_or_else(|p| p.into_inner());
    for (tag, outcome) in outcomes {
        let id = (key.to_string(), tag.clone());
        match &outcome.result {
            Err(e) if e.is_transient() => {
                let attempts = retries.get(&id).map_or(0, |r| r.attempts) + 1;
                let scheduled = stream
                    .spec_tag(tag)
                    .is_some_and(|t| is_scheduled(stream, t));
                let cap = match scheduled {
                    true => ctx.settings.max_retry_backoff.min(interval),
                    false => ctx.settings.max_retry_backoff,
                };
                let backoff = Duration::from_secs(5)
                    .saturating_mul(1 << attempts.min(16))
                    .min(cap);
                // A registry's Retry-After is a floor, never a reason to retry sooner.
                let delay = e.retry_after().map_or(backoff, |r| r.max(backoff));
                retries.insert(
                    id,
                    RetryState {
                        attempts,
                        not_before: crate::api::untrusted::later(now, delay),
                    },
                );
            }
            _ => {
                retries.remove(&id);
            }
        }
    }
}

fn next_wakeup(
    ctx: &Context,
    stream: &ImageStream,
    key: &str,
    throttled: Option<Duration>,
    now: Instant,
) -> Duration {
    let mut next = ctx.scheduler.interval();
    if has_scheduled_tags(stream) {
        let due = ctx
            .scheduler
            .until_due(key, &stream.uid().unwrap_or_default(), now);
        next = next.min(throttled.unwrap_or(due).max(Duration::from_millis(100)));
    }
    let retries = ctx.retries.lock().unwrap_or_else(|p| p.into_inner());
    for ((k, _), r) in retries.iter() {
        if k == key {
            next = next.min(
                r.not_before
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(100)),
            );
        }
    }
    next
}

pub fn error_policy(stream: Arc<ImageStream>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.settings.metrics.reconcile_errors.inc();
    warn!(namespace = ?stream.namespace(), name = %stream.name_any(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

/// What a status says, without the times a recomputation stamps afresh.
fn fingerprint(status: &ImageStreamStatus) -> u64 {
    use std::hash::{Hash, Hasher};
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.remove("created");
                map.remove("lastTransitionTime");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(status).unwrap_or_default();
    strip(&mut value);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.to_string().hash(&mut h);
    h.finish()
}

/// Scheduled references per registry, for the schedule's budget.
fn scheduled_demand(stream: &ImageStream) -> Vec<(String, usize)> {
    let mut demand: BTreeMap<String, usize> = BTreeMap::new();
    for tag in stream.spec_tags() {
        if !super::plan::is_scheduled(stream, tag) {
            continue;
        }
        let from = tag.from.as_ref().map(|f| f.name.as_str()).unwrap_or("");
        if let Ok(image) = ImageRef::parse(from) {
            *demand.entry(image.registry().to_string()).or_insert(0) += 1;
        }
    }
    demand.into_iter().collect()
}

/// Which streams copy from or alias which: kept up to date from the cache's events, so finding
/// the streams that react to a change costs a lookup, not a scan of every stream's spec on
/// every event (quadratic in the number of streams during a first import).
#[derive(Default)]
struct SourceIndex {
    /// (namespace, stream) → the streams whose spec tags name it.
    dependents: HashMap<(String, String), std::collections::HashSet<ObjectRef<ImageStream>>>,
    /// A stream → the sources it names, to undo its entries when it changes.
    sources: HashMap<ObjectRef<ImageStream>, Vec<(String, String)>>,
}

impl SourceIndex {
    fn update(&mut self, stream: &ImageStream) {
        let me = ObjectRef::from_obj(stream);
        self.remove(&me);
        let mut named: Vec<(String, String)> = stream
            .spec_tags()
            .iter()
            .filter_map(|t| match source_of(stream, t) {
                Some(super::spec::Source::StreamTag {
                    namespace, stream, ..
                })
                | Some(super::spec::Source::StreamImage {
                    namespace, stream, ..
                }) => Some((namespace, stream)),
                _ => None,
            })
            .collect();
        named.sort();
        named.dedup();
        for source in &named {
            self.dependents
                .entry(source.clone())
                .or_default()
                .insert(me.clone());
        }
        if !named.is_empty() {
            self.sources.insert(me, named);
        }
    }

    fn remove(&mut self, me: &ObjectRef<ImageStream>) {
        for source in self.sources.remove(me).unwrap_or_default() {
            if let Some(set) = self.dependents.get_mut(&source) {
                set.remove(me);
                if set.is_empty() {
                    self.dependents.remove(&source);
                }
            }
        }
    }

    fn of(&self, namespace: &str, name: &str) -> Vec<ObjectRef<ImageStream>> {
        self.dependents
            .get(&(namespace.to_string(), name.to_string()))
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Run the controller on a stream cache of its own (tests, standalone use); the operator shares
/// one cache between all its parts through [`run_shared`].
pub async fn run(
    client: Client,
    resolver: Arc<dyn ImageResolver>,
    scheduler: Scheduler,
    settings: Settings,
) -> anyhow::Result<()> {
    let (cache, driver) = StreamCache::scoped(client.clone(), &settings.scope);
    tokio::select! {
        () = driver => Ok(()),
        r = run_shared(client, cache, resolver, scheduler, settings) => r,
    }
}

/// Run the controller until SIGTERM/SIGINT; in-flight reconciles finish first.
pub async fn run_shared(
    client: Client,
    cache: StreamCache,
    resolver: Arc<dyn ImageResolver>,
    scheduler: Scheduler,
    settings: Settings,
) -> anyhow::Result<()> {
    let streams: Api<ImageStream> = match settings.scope.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    if let Err(e) = streams
        .list(&kube::api::ListParams::default().limit(1))
        .await
    {
        anyhow::bail!(
            "cannot list ImageStreams ({e}); install the CRD first: kubectl apply -f crds/"
        );
    }
    let (secret_stores, secret_events) = pull_secret_watches(&client, &settings.scope);
    // The Controller's runner waits for the store to be ready, and the store's readiness signal
    // wakes only its latest waiter: start once the cache has synced, so nobody has to wait.
    cache.synced().await;
    let store = cache.store();
    let rates = resolver.clone();
    let scheduler = scheduler.with_rates(move |r| rates.request_rate(r).unwrap_or(f64::MAX));
    let ctx = Arc::new(Context::new(
        client.clone(),
        resolver,
        store.clone(),
        secret_stores,
        scheduler,
        settings,
    ));
    let controller =
        Controller::for_shared_stream(stream_changes(&cache, ctx.clone()), store.clone())
            .with_config(
                kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency),
            );
    let by_namespace = store.clone();
    controller
        .watches_stream(secret_events, move |secret: Secret| {
            streams_in(&by_namespace, &secret.namespace().unwrap_or_default())
        })
        .reconcile_on(dependents_of_changes(&cache))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "reconcile error");
            }
        })
        .await;
    Ok(())
}

/// Watches of the pull-secret types only (a field selector on `type`), so the operator holds
/// no other Secret: their stores (the keyrings' source) and their changes merged.
fn pull_secret_watches(
    client: &Client,
    scope: &Scope,
) -> (
    Vec<Store<Secret>>,
    futures::stream::BoxStream<'static, Result<Secret, watcher::Error>>,
) {
    let mut stores = Vec::new();
    let mut events = Vec::new();
    for type_ in [DOCKER_CONFIG_JSON, DOCKER_CFG] {
        let (reader, writer) = reflector::store();
        let config = watcher::Config::default().fields(&format!("type={type_}"));
        let api = api_of::<Secret>(client.clone());
        let changes = reflector(writer, scope.watch(api, config, reader.clone())).touched_objects();
        stores.push(reader);
        events.push(changes.boxed());
    }
    (stores, futures::stream::select_all(events).boxed())
}

/// Every stream already listed, then every change, each observed by the context (schedule load,
/// urgent first imports) on its way to the Controller (a stream seen twice is reconciled once).
fn stream_changes(
    cache: &StreamCache,
    observer: Arc<Context>,
) -> impl futures::Stream<Item = Arc<ImageStream>> {
    // Subscribe before listing, so no change falls between the two.
    let changes = cache.subscribe();
    let listed = cache.store().state().into_iter().map(StreamEvent::Applied);
    futures::stream::iter(listed)
        .chain(changes)
        .filter_map(move |e| {
            observer.observe_stream(&e);
            futures::future::ready(match e {
                StreamEvent::Applied(s) => Some(s),
                StreamEvent::Deleted(_) => None,
            })
        })
}

/// Streams that copy from or alias a changed stream, so they react to it.
fn dependents_of_changes(
    cache: &StreamCache,
) -> impl futures::Stream<Item = ObjectRef<ImageStream>> {
    let changes = cache.subscribe();
    let mut sources = SourceIndex::default();
    for s in cache.store().state() {
        sources.update(&s);
    }
    changes.flat_map(move |e| {
        let s = match e {
            StreamEvent::Applied(s) => {
                sources.update(&s);
                s
            }
            StreamEvent::Deleted(s) => {
                sources.remove(&ObjectRef::from_obj(s.as_ref()));
                s
            }
        };
        futures::stream::iter(sources.of(&s.namespace().unwrap_or_default(), &s.name_any()))
    })
}

/// The streams of one namespace (a pull secret there changed).
fn streams_in(store: &Store<ImageStream>, namespace: &str) -> Vec<ObjectRef<ImageStream>> {
    store
        .state()
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

#[cfg(test)]
mod source_index_tests {
    use super::*;

    fn stream(ns: &str, name: &str, from: &[(&str, &str)]) -> ImageStream {
        let tags: Vec<serde_json::Value> = from
            .iter()
            .enumerate()
            .map(|(i, (kind, n))| json!({"name": format!("t{i}"), "from": {"kind": kind, "name": n}}))
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
            "metadata": {"name": name, "namespace": ns}, "spec": {"tags": tags}
        }))
        .expect("stream")
    }

    #[test]
    fn dependents_follow_spec_changes_and_deletions() {
        let mut index = SourceIndex::default();
        let copy = stream(
            "a",
            "copy",
            &[("ImageStreamTag", "base:1"), ("DockerImage", "x:1")],
        );
        let alias = stream(
            "a",
            "base",
            &[("DockerImage", "x:1"), ("ImageStreamTag", "base:t0")],
        );
        index.update(&copy);
        index.update(&alias);
        let mut of_base: Vec<String> = index
            .of("a", "base")
            .iter()
            .map(|r| r.name.clone())
            .collect();
        of_base.sort();
        // A tracking tag of the same stream is not a dependency on the stream.
        assert_eq!(of_base, ["copy"]);
        assert!(index.of("a", "copy").is_empty());
        // The copy stops naming base: it no longer reacts to it.
        index.update(&stream("a", "copy", &[("DockerImage", "x:1")]));
        assert!(index.of("a", "base").is_empty());
        index.update(&stream(
            "a",
            "other",
            &[("ImageStreamImage", "base@sha256:abc")],
        ));
        assert_eq!(index.of("a", "base").len(), 1);
        index.remove(&ObjectRef::new("other").within("a"));
        index.remove(&ObjectRef::from_obj(&alias));
        assert!(index.sources.is_empty() && index.dependents.is_empty());
    }
}

#[cfg(test)]
mod schedule_tests {
    use super::*;

    #[test]
    fn only_an_import_of_every_scheduled_tag_restarts_the_interval() {
        let stream: ImageStream = serde_json::from_value(json!({
            "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
            "metadata": {"name": "s", "namespace": "a"}, "spec": {"tags": [
                {"name": "a", "from": {"kind": "DockerImage", "name": "r/x:a"}, "importPolicy": {"scheduled": true}},
                {"name": "b", "from": {"kind": "DockerImage", "name": "r/x:b"}, "importPolicy": {"scheduled": true}},
                {"name": "c", "from": {"kind": "DockerImage", "name": "r/x:c"}}]}
        }))
        .expect("stream");
        let plan = |tags: &[&str]| -> BTreeMap<String, Cause> {
            tags.iter().map(|t| (t.to_string(), Cause::Retry)).collect()
        };
        assert!(checked_every_scheduled_tag(&stream, &plan(&["a", "b"])));
        assert!(checked_every_scheduled_tag(
            &stream,
            &plan(&["a", "b", "c"])
        ));
        // A retry of one failing tag leaves its sibling's schedule alone.
        assert!(!checked_every_scheduled_tag(&stream, &plan(&["a"])));
        assert!(!checked_every_scheduled_tag(&stream, &plan(&["c"])));
        assert!(!checked_every_scheduled_tag(&stream, &plan(&[])));
    }
}
