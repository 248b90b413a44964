//! The import controller: for each ImageStream, decide what to import, ask the registry, compute
//! the new status, and write only what changed. Read [`reconcile`] top to bottom; what it
//! remembers between reconciles is in `memory.rs`, the writes in `write.rs`, what it tells
//! people in `report.rs`, the requests it builds in `requests.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, reflector, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use parking_lot::Mutex;
use tracing::{debug, info, warn};

use super::budget::{fit_with_condition, Fit, STATUS_BUDGET};
use super::index::{SourceIndex, StreamsByNamespace};
use super::listings::{self, Listings};
use super::memory::{uid, Memory};
use super::plan::{has_scheduled_tags, imports_needed, is_scheduled, Cause, Hints};
use super::policy::{self, Step};
use super::report::{log_outcome, Report};
use super::requests::{
    checked_every_scheduled_tag, identity_of, known_image, listed_tag_request,
    repository_import_due, request_for, scheduled_demand, within_tag_limit, MAX_LISTED_TAGS,
};
use super::resolve::{resolve, Input, Outcome, RepositoryOutcome};
use super::secrets::PullSecrets;
pub use super::write::Error;
use super::write::{unstorable, Stored, Writes};
use crate::api::cache::{StreamCache, StreamEvent};
use crate::api::index::Index;
use crate::api::scope::{api_of, Scope};
use crate::api::{
    field_manager, ImageStream, ImageStreamStatus, TagReference, DOCKER_REPOSITORY_CHECK,
};
use crate::ops::backoff::backoff;
use crate::ops::events::EventRecorder;
use crate::registry::credentials::{DOCKER_CFG, DOCKER_CONFIG_JSON};
use crate::registry::tags::select;
use crate::registry::{
    collect_tags, ImageRef, ImageResolver, ImportRequest, Keyring, ListRequest, RegistryError,
    TAG_PAGE_SIZE,
};
use crate::schedule::Scheduler;

#[derive(Debug, Clone)]
pub struct Settings {
    pub local_registry: Option<String>,
    pub max_history: usize,
    pub allow_cross_namespace: bool,
    pub max_retry_backoff: Duration,
    pub concurrency: u16,
    /// Tags imported from `spec.dockerImageRepository`; 0 = unlimited (OpenShift: 50).
    pub max_bulk_import: usize,
    /// Skip scheduled checks of streams that recently received a push notification.
    pub stretch_schedule_when_notified: bool,
    pub metrics: super::metrics::ImportMetrics,
    /// The namespaces whose streams and pull secrets are watched.
    pub scope: Scope,
    /// Tags one policy listing reads at most; more leave the policy where it is.
    pub max_listed_tags: usize,
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
            stretch_schedule_when_notified: false,
            metrics: Default::default(),
            scope: Scope::Cluster,
            max_listed_tags: policy::DEFAULT_MAX_LISTED_TAGS,
        }
    }
}

pub struct Context {
    pub client: Client,
    pub resolver: Arc<dyn ImageResolver>,
    pub streams: Store<ImageStream>,
    pub secrets: Arc<PullSecrets>,
    pub recorder: EventRecorder,
    /// Keyed by stream UID.
    pub scheduler: Scheduler,
    pub settings: Settings,
    pub memory: Memory,
    /// Tag listings shared by the policy tags of a repository, one per interval.
    pub listings: Listings,
    namespaces: Mutex<StreamsByNamespace>,
}

impl Context {
    pub fn new(
        client: Client,
        resolver: Arc<dyn ImageResolver>,
        streams: Store<ImageStream>,
        secrets: Arc<PullSecrets>,
        scheduler: Scheduler,
        settings: Settings,
    ) -> Self {
        let reporter = Reporter {
            controller: field_manager::IMPORT.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: EventRecorder::new(client.clone(), reporter),
            listings: Listings::new(listings::DEFAULT_BUDGET, scheduler.interval()),
            client,
            resolver,
            streams,
            secrets,
            scheduler,
            settings,
            memory: Memory::default(),
            namespaces: Mutex::default(),
        }
    }

    /// Keeps the schedule's load, the set of streams with urgent work and the namespace index
    /// up to date; a deleted stream leaves nothing behind.
    pub fn observe_stream(&self, event: &StreamEvent) {
        let s = event.update(&mut *self.namespaces.lock());
        let uid = s.uid().unwrap_or_default();
        if let StreamEvent::Deleted(_) = event {
            self.scheduler.forget(&uid);
            self.memory.forget(s);
            return;
        }
        self.scheduler.set_demand(&uid, scheduled_demand(s));
        let urgent = imports_needed(s, &Hints::default()).values().any(|c| {
            !matches!(
                c,
                Cause::Scheduled | Cause::Retry | Cause::CredentialsChanged
            )
        });
        self.memory.set_urgent(s, urgent);
    }

    fn report<'a>(&'a self, stream: &'a ImageStream) -> Report<'a> {
        Report {
            recorder: &self.recorder,
            metrics: &self.settings.metrics,
            stream,
        }
    }
}

/// Reconcile one stream, top to bottom: plan, import, resolve, write what changed, report.
pub async fn reconcile(stream: Arc<ImageStream>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = stream.namespace().ok_or(Error::MissingField("namespace"))?;
    let now = Instant::now();
    let stream = ctx.memory.with_pending_write(stream);
    let stored = stream.status.clone().unwrap_or_default();
    let stream = ctx.memory.with_refused_status(stream);
    let keyring = ctx
        .secrets
        .keyring(&namespace)
        .with_identity(identity_of(&stream, &namespace));

    let (hints, throttled) = hints_for(&ctx, &stream, &keyring, now);
    let plan = imports_needed(&stream, &hints);
    let mut outcomes = import(&ctx, &stream, &plan, &keyring).await;
    let repository = import_repository(&ctx, &stream, &keyring, &mut outcomes).await;
    if checked_every_scheduled_tag(&stream, &plan) {
        ctx.scheduler.mark_checked(&uid(&stream), now);
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
    // Changed against what the API server holds: while a refused status is the base, computing
    // it again is no change to it, and must not write (nor re-send the annotation) again.
    let changed = stored != status;
    let done = Done {
        outcomes: &outcomes,
        throttled,
        now,
    };
    if ctx
        .memory
        .repeats_unconfirmed_write(&stream, &status, changed)
    {
        debug!(stream = %key_of(&stream), "the cache has not shown the last status write yet; not writing it again");
        return Ok(done.requeue(&ctx, &stream));
    }
    let refused = changed
        .then(|| unstorable(&ctx.memory, &stream, &status, &fit))
        .flatten();
    if let Some(why) = refused {
        return Ok(not_written(&ctx, &stream, (&stored, &status), why, done).await);
    }
    let check_missing = stream
        .annotation(DOCKER_REPOSITORY_CHECK)
        .is_none_or(str::is_empty);
    let writes = Writes {
        api: &Api::namespaced(ctx.client.clone(), &namespace),
        memory: &ctx.memory,
        stream: &stream,
        status: &status,
        changed,
        mark: (!outcomes.is_empty() || repository.is_some()) && (changed || check_missing),
    };
    if let Stored::Refused(why) = writes.run().await? {
        return Ok(not_written(&ctx, &stream, (&stored, &status), why, done).await);
    }
    let report = ctx.report(&stream);
    report.trim(&old, &fit).await;
    report.changes(&resolution.changes).await;
    Ok(done.requeue(&ctx, &stream))
}

fn key_of(stream: &ImageStream) -> String {
    format!(
        "{}/{}",
        stream.namespace().unwrap_or_default(),
        stream.name_any()
    )
}

/// A reconcile's registry results and timing, for its retries and its next wake-up.
struct Done<'a> {
    outcomes: &'a BTreeMap<String, Outcome>,
    throttled: Option<Duration>,
    now: Instant,
}

impl Done<'_> {
    fn requeue(self, ctx: &Context, stream: &ImageStream) -> Action {
        record_retries(ctx, stream, self.outcomes, self.now);
        Action::requeue(next_wakeup(ctx, stream, self.throttled, self.now))
    }
}

/// A status that cannot be stored: said once per distinct status (a Warning Event), never
/// written again unchanged; the known-good status stays as it is, and the refused one is what
/// the next checks start from.
async fn not_written(
    ctx: &Context,
    stream: &ImageStream,
    (stored, status): (&ImageStreamStatus, &ImageStreamStatus),
    why: String,
    done: Done<'_>,
) -> Action {
    if ctx.memory.remember_refused(stream, stored, status) {
        ctx.report(stream).not_stored(status.tags.len(), &why).await;
    }
    done.requeue(ctx, stream)
}

/// What the controller remembers that status does not: schedule, backoff, credential changes.
fn hints_for(
    ctx: &Context,
    stream: &ImageStream,
    keyring: &Keyring,
    now: Instant,
) -> (Hints, Option<Duration>) {
    let uid = uid(stream);
    ctx.scheduler.observe_backlog(now);
    let mut throttled = None;
    let due = has_scheduled_tags(stream) && ctx.scheduler.until_due(&uid, &uid, now).is_zero();
    let notified = due && stretched(ctx, stream);
    if notified {
        // Push notifications stand in for this check: it is not overdue.
        ctx.scheduler.mark_checked(&uid, now);
    }
    let mut scheduled_due = due && !notified;
    if scheduled_due && ctx.memory.others_urgent(stream) {
        // First imports elsewhere go first; this check moves one interval on.
        ctx.scheduler.mark_checked(&uid, now);
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
    let hints = Hints {
        scheduled_due,
        retry: ctx.memory.retries_due(stream, now),
        sight: ctx
            .memory
            .observe_credentials(stream, keyring.fingerprint()),
    };
    (hints, throttled)
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
        Some(import_tag(ctx, stream, spec, *cause, request))
    });
    futures::future::join_all(requests)
        .await
        .into_iter()
        .collect()
}

/// A plain tag's import, or a policy tag's evaluation and the import of what it chose.
async fn import_tag(
    ctx: &Context,
    stream: &ImageStream,
    spec: &TagReference,
    cause: Cause,
    request: Result<ImportRequest, RegistryError>,
) -> (String, Outcome) {
    let tag = spec.name.clone();
    let has_policy = !crate::policy::keys::keys_of(spec.annotations.as_ref()).is_empty();
    let seed = match request {
        Ok(seed) if has_policy => seed,
        other => return resolve_tag(ctx, stream, tag, cause, other).await,
    };
    let sources = policy::Sources {
        resolver: ctx.resolver.as_ref(),
        listings: &ctx.listings,
        max_tags: ctx.settings.max_listed_tags,
    };
    // The user asked: list afresh. Otherwise a listing of this interval serves every policy.
    let reuse = cause != Cause::Requested;
    let evaluated = policy::evaluate(&sources, stream, spec, seed, reuse).await;
    let (tag, mut outcome) = match evaluated.step {
        Step::Import(request) => resolve_tag(ctx, stream, tag, cause, Ok(request)).await,
        Step::Keep(image) => (
            tag,
            Outcome {
                cause,
                result: Ok(image),
                policy: None,
            },
        ),
        Step::Fail(e) => resolve_tag(ctx, stream, tag, cause, Err(e)).await,
    };
    outcome.policy = Some(evaluated.status);
    (tag, outcome)
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
    let took = started.elapsed();
    ctx.settings.metrics.record(&result, took.as_secs_f64());
    log_outcome(stream, &tag, cause, &result, took);
    let policy = None;
    (
        tag,
        Outcome {
            cause,
            result,
            policy,
        },
    )
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
    let request = ListRequest {
        repository,
        insecure,
        keyring: keyring.clone(),
        max_tags: MAX_LISTED_TAGS,
        page_size: TAG_PAGE_SIZE,
    };
    let tags = match collect_tags(ctx.resolver.as_ref(), request).await {
        Ok((tags, complete)) => {
            if !complete {
                info!(stream = %stream.name_any(), listed = tags.len(), "the repository lists more tags than are read; the bulk import chose among the first");
            }
            tags
        }
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

/// Transient failures back off exponentially (10 s doubling, capped; a registry's Retry-After
/// is a floor); anything else clears the retry state for that tag. A scheduled tag's backoff
/// never exceeds its own schedule, so once a registry recovers it converges within one interval.
fn record_retries(
    ctx: &Context,
    stream: &ImageStream,
    outcomes: &BTreeMap<String, Outcome>,
    now: Instant,
) {
    let interval = ctx.scheduler.interval_for(&uid(stream));
    for (tag, outcome) in outcomes {
        match &outcome.result {
            Err(e) if e.is_transient() => {
                let scheduled = stream
                    .spec_tag(tag)
                    .is_some_and(|t| is_scheduled(stream, t));
                let cap = match scheduled {
                    true => ctx.settings.max_retry_backoff.min(interval),
                    false => ctx.settings.max_retry_backoff,
                };
                ctx.memory.failed_again(stream, tag, |attempts| {
                    crate::api::untrusted::later(now, backoff(attempts, cap, e.retry_after()))
                });
            }
            _ => ctx.memory.stop_retrying(stream, tag),
        }
    }
}

fn next_wakeup(
    ctx: &Context,
    stream: &ImageStream,
    throttled: Option<Duration>,
    now: Instant,
) -> Duration {
    let floor = Duration::from_millis(100);
    let mut next = ctx.scheduler.interval();
    if has_scheduled_tags(stream) {
        let uid = uid(stream);
        let due = ctx.scheduler.until_due(&uid, &uid, now);
        next = next.min(throttled.unwrap_or(due).max(floor));
    }
    if let Some(retry) = ctx.memory.next_retry(stream) {
        next = next.min(retry.saturating_duration_since(now).max(floor));
    }
    next
}

pub fn error_policy(stream: Arc<ImageStream>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.settings.metrics.reconcile_errors.inc();
    warn!(namespace = ?stream.namespace(), name = %stream.name_any(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(15))
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
    let secrets = Arc::new(PullSecrets::default());
    let secret_events = pull_secret_watches(&client, &settings.scope, secrets.clone());
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
        secrets,
        scheduler,
        settings,
    ));
    let controller =
        Controller::for_shared_stream(stream_changes(&cache, ctx.clone()), store.clone())
            .with_config(
                kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency),
            );
    let by_namespace = ctx.clone();
    controller
        .watches_stream(secret_events, move |secret: Secret| {
            let namespace = secret.namespace().unwrap_or_default();
            by_namespace.namespaces.lock().of(&namespace)
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
/// no other Secret: each change updates `secrets` (the keyrings' source) on its way to the
/// Controller. The reflector stores are what the watch learns from which secrets a relist no
/// longer contains.
fn pull_secret_watches(
    client: &Client,
    scope: &Scope,
    secrets: Arc<PullSecrets>,
) -> futures::stream::BoxStream<'static, Result<Secret, watcher::Error>> {
    let mut events = Vec::new();
    for type_ in [DOCKER_CONFIG_JSON, DOCKER_CFG] {
        let (reader, writer) = reflector::store();
        let config = watcher::Config::default().fields(&format!("type={type_}"));
        let api = api_of::<Secret>(client.clone());
        let index = secrets.clone();
        let changes = reflector(writer, scope.watch(api, config, reader))
            .inspect_ok(move |e| index.observe(e))
            .touched_objects();
        events.push(changes.boxed());
    }
    futures::stream::select_all(events).boxed()
}

/// Every stream already listed, then every change, each observed by the context (schedule load,
/// urgent first imports) on its way to the Controller (a stream seen twice is reconciled once).
pub fn stream_changes(
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
    sources.reset(cache.store().state().iter().map(|s| s.as_ref()));
    changes.flat_map(move |e| {
        let s = e.update(&mut sources);
        futures::stream::iter(sources.of(&s.namespace().unwrap_or_default(), &s.name_any()))
    })
}
