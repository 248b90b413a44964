//! Push, don't poll: registry notifications request an immediate import of exactly the spec tags
//! whose `from` names the pushed reference. `payload.rs` parses each source's JSON; this file
//! authenticates, maps through an in-memory index, and writes the re-import request.

pub mod index;
pub mod payload;

use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use futures::future::BoxFuture;
use futures::StreamExt;
use kube::api::{Api, PostParams};
use kube::Client;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::api::cache::StreamCache;
use crate::api::index::Index;
use crate::api::update::update;
use crate::api::{ImageStream, Notified, NOTIFIED};
use crate::registry::ImageRef;
pub use index::{key, Target, TargetIndex};
use payload::{Push, Source};

/// Largest accepted notification body.
pub const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyLabels {
    pub source: String,
    /// accepted, unauthorized, bad_request, unsupported_media_type, unknown_repository, error
    pub outcome: String,
}

#[derive(Clone, Debug)]
pub struct NotifyMetrics {
    pub notifications: Family<NotifyLabels, Counter>,
    /// From a notification's arrival to the import it requested being recorded.
    pub push_to_import: Histogram,
    /// From a notification's arrival to the triggered workload patch.
    pub push_to_rollout: Histogram,
}

impl Default for NotifyMetrics {
    fn default() -> Self {
        Self {
            notifications: Family::default(),
            push_to_import: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
            push_to_rollout: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
        }
    }
}

impl NotifyMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        use prometheus_client::registry::Unit;
        registry.register(
            "notifications",
            "Registry push notifications by source and outcome",
            self.notifications.clone(),
        );
        registry.register_with_unit(
            "push_to_import",
            "From a push notification to the tag imported",
            Unit::Seconds,
            self.push_to_import.clone(),
        );
        registry.register_with_unit(
            "push_to_rollout",
            "From a push notification to the workload patched",
            Unit::Seconds,
            self.push_to_rollout.clone(),
        );
    }
}

/// Shared secrets; a source without its secret configured refuses every request.
#[derive(Debug, Clone, Default)]
pub struct NotifyConfig {
    /// Bearer token (header `Authorization: Bearer …`, Harbor's auth header, or `?token=` for
    /// Quay and Docker Hub, which cannot send headers).
    pub token: Option<String>,
    /// GitHub webhook secret (`X-Hub-Signature-256`).
    pub hmac_secret: Option<String>,
    /// Registry host as it appears in notifications → host as written in image streams
    /// (e.g. a registry's internal address → its public name).
    pub registry_aliases: HashMap<String, String>,
    pub metrics: NotifyMetrics,
}

/// Writes the re-import request (the API server in production).
pub trait Requester: Send + Sync {
    fn request(
        &self,
        namespace: String,
        stream: String,
        tags: Vec<String>,
        notified: Notified,
    ) -> BoxFuture<'_, Result<(), String>>;
}

/// Notifications for one target within this window make at most two requests: the first at
/// once, and one at the window's end if a push of another digest arrived meanwhile (so the last
/// push is never lost, and a burst of forged digests costs two writes, not one each).
const COALESCE_MS: i64 = 2_000;

/// The last request made for a target, and whether another is due at the window's end.
struct Pending {
    at: i64,
    digest: Option<String>,
    trailing: bool,
}

#[derive(Clone)]
pub struct Receiver {
    pub config: Arc<NotifyConfig>,
    pub index: Arc<Mutex<TargetIndex>>,
    pub requester: Arc<dyn Requester>,
    /// Recent requests by target (see [`COALESCE_MS`]).
    pending: Arc<Mutex<HashMap<Target, Pending>>>,
}

impl Receiver {
    pub fn new(
        config: NotifyConfig,
        index: Arc<Mutex<TargetIndex>>,
        requester: Arc<dyn Requester>,
    ) -> Self {
        Self {
            config: Arc::new(config),
            index,
            requester,
            pending: Arc::default(),
        }
    }
}

fn outcome(metrics: &NotifyMetrics, source: &str, outcome: &str) {
    metrics
        .notifications
        .get_or_create(&NotifyLabels {
            source: source.into(),
            outcome: outcome.into(),
        })
        .inc();
}

fn same_secret(given: &str, expected: &str) -> bool {
    // Compare digests so the time taken does not depend on where the strings differ.
    use sha2::{Digest, Sha256};
    Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
}

fn authenticated(
    config: &NotifyConfig,
    source: Source,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
) -> bool {
    if source == Source::Ghcr {
        let Some(secret) = &config.hmac_secret else {
            return false;
        };
        let Some(sig) = headers
            .get("x-hub-signature-256")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("sha256="))
        else {
            return false;
        };
        let Some(sig) = hex_decode(sig) else {
            return false;
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        return ring::hmac::verify(&key, body, &sig).is_ok();
    }
    let Some(token) = &config.token else {
        return false;
    };
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim());
    // Only Quay and Docker Hub cannot send a header; elsewhere a token in the URL would only
    // end up in access logs.
    let in_query = matches!(source, Source::Quay | Source::DockerHub);
    let given = header.or(query.get("token").filter(|_| in_query).map(String::as_str));
    given.is_some_and(|g| same_secret(g, token))
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Handles one notification; returns the status and a short JSON body.
pub async fn receive(
    receiver: &Receiver,
    source: &str,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
) -> (StatusCode, String) {
    let received = jiff::Timestamp::now().as_millisecond();
    let (src, pushes) = match accept(receiver, source, headers, query, body) {
        Ok(accepted) => accepted,
        Err(refusal) => return refusal,
    };
    let found = targets_of(receiver, &pushes);
    if found.is_empty() {
        outcome(&receiver.config.metrics, src.name(), "unknown_repository");
        return (StatusCode::ACCEPTED, r#"{"requested":0}"#.into());
    }
    let (by_stream, later) = coalesce(receiver, found, received);
    for target in later {
        tokio::spawn(trailing(receiver.clone(), src, target, received));
    }
    let mut requested = 0;
    for ((ns, stream), tags) in by_stream {
        if send(receiver, src, ns, stream, tags.clone(), received).await {
            requested += tags.len();
        }
    }
    outcome(&receiver.config.metrics, src.name(), "accepted");
    (
        StatusCode::ACCEPTED,
        format!(r#"{{"requested":{requested}}}"#),
    )
}

/// Writes one stream's re-import request; false (logged and counted) when it failed.
async fn send(
    receiver: &Receiver,
    src: Source,
    ns: String,
    stream: String,
    tags: Vec<String>,
    received: i64,
) -> bool {
    let notified = Notified {
        source: src.name().into(),
        at_ms: received,
        tags: tags.clone(),
    };
    let request = receiver
        .requester
        .request(ns.clone(), stream.clone(), tags, notified);
    match request.await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(namespace = %ns, %stream, error = %e, "could not request the import for a push notification");
            outcome(&receiver.config.metrics, src.name(), "error");
            false
        }
    }
}

/// The request at the end of a target's window, for the pushes coalesced into it.
async fn trailing(receiver: Receiver, src: Source, target: Target, received: i64) {
    let due = {
        let pending = receiver.pending.lock();
        pending
            .get(&target)
            .map_or(received, |p| p.at.saturating_add(COALESCE_MS))
    };
    let wait = u64::try_from(due.saturating_sub(received)).unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    let now = jiff::Timestamp::now().as_millisecond();
    {
        let mut pending = receiver.pending.lock();
        if let Some(p) = pending.get_mut(&target) {
            p.at = now;
            p.trailing = false;
        }
    }
    let Target {
        namespace,
        stream,
        tag,
    } = target;
    send(&receiver, src, namespace, stream, vec![tag], now).await;
}

/// A known source, its content type, the token or signature, and a payload that parses; or the
/// answer that says which of these failed (counted by outcome).
fn accept(
    receiver: &Receiver,
    source: &str,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<(Source, Vec<Push>), (StatusCode, String)> {
    let Some(src) = Source::parse(source) else {
        let error =
            format!("unknown source {source:?}; use distribution, harbor, quay, dockerhub or ghcr");
        return Err((StatusCode::NOT_FOUND, error_body(&error)));
    };
    let metrics = &receiver.config.metrics;
    // Nothing about what this endpoint accepts is told to a caller without the secret.
    if !authenticated(&receiver.config, src, headers, query, body) {
        outcome(metrics, src.name(), "unauthorized");
        let error = "missing or wrong notification token or signature";
        return Err((StatusCode::UNAUTHORIZED, error_body(error)));
    }
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !src.accepts(content_type) {
        outcome(metrics, src.name(), "unsupported_media_type");
        let error = format!(
            "content type {content_type:?} is not a {} notification",
            src.name()
        );
        return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, error_body(&error)));
    }
    match payload::parse(src, body) {
        Ok(pushes) => Ok((src, pushes)),
        Err(e) => {
            outcome(metrics, src.name(), "bad_request");
            Err((StatusCode::BAD_REQUEST, error_body(&e.to_string())))
        }
    }
}

/// `{"error": "…"}`, valid JSON whatever the text (a caller's path or content type included).
fn error_body(error: &str) -> String {
    let error = crate::api::untrusted::clean(error, crate::api::untrusted::MAX_TEXT);
    serde_json::json!({ "error": error }).to_string()
}

/// The spec tags following each pushed reference, with the push's digest (one index lookup).
fn targets_of(receiver: &Receiver, pushes: &[Push]) -> Vec<(Target, Option<String>)> {
    let index = receiver.index.lock();
    pushes
        .iter()
        .flat_map(|p| {
            let wanted = wanted_keys(&receiver.config, std::slice::from_ref(p));
            let digest = p.digest.clone();
            index
                .targets(&wanted)
                .into_iter()
                .map(move |t| (t, digest.clone()))
        })
        .collect()
}

/// Tags to request, by (namespace, stream).
type ByStream = BTreeMap<(String, String), Vec<String>>;

/// Per stream, the tags to request now; and the targets that get a request at the end of their
/// window, because a push of another digest arrived within it.
fn coalesce(
    receiver: &Receiver,
    found: Vec<(Target, Option<String>)>,
    received: i64,
) -> (ByStream, Vec<Target>) {
    let mut now = ByStream::new();
    let mut later = Vec::new();
    let mut pending = receiver.pending.lock();
    pending.retain(|_, p| p.trailing || received.saturating_sub(p.at) < COALESCE_MS);
    for (t, digest) in found {
        match pending.get_mut(&t) {
            Some(p) if p.trailing || p.digest == digest => {}
            Some(p) => {
                p.trailing = true;
                p.digest = digest;
                later.push(t);
            }
            None => {
                pending.insert(
                    t.clone(),
                    Pending {
                        at: received,
                        digest,
                        trailing: false,
                    },
                );
                let tags = now.entry((t.namespace, t.stream)).or_default();
                if !tags.contains(&t.tag) {
                    tags.push(t.tag);
                }
            }
        }
    }
    (now, later)
}

fn wanted_keys(config: &NotifyConfig, pushes: &[Push]) -> BTreeSet<String> {
    pushes
        .iter()
        .filter_map(|p| {
            let registry = p.registry.as_deref().unwrap_or("docker.io");
            let registry = config
                .registry_aliases
                .get(registry)
                .map(String::as_str)
                .unwrap_or(registry);
            ImageRef::parse(&format!("{registry}/{}:{}", p.repository, p.tag)).ok()
        })
        .map(|r| key(&r))
        .collect()
}

pub fn router(receiver: Receiver) -> Router {
    Router::new()
        .route(
            "/notify/{source}",
            post(
                |State(r): State<Receiver>,
                 Path(source): Path<String>,
                 Query(query): Query<HashMap<String, String>>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let (status, body) = receive(&r, &source, &headers, &query, &body).await;
                    (
                        status,
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                },
            ),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(receiver)
}

/// The production requester: the re-import request `import-image` also writes (spec tag
/// generation = the stream's next generation) plus the notification annotation, in one update
/// with the resourceVersion as precondition.
pub struct ApiRequester {
    pub client: Client,
}

impl Requester for ApiRequester {
    fn request(
        &self,
        namespace: String,
        stream: String,
        tags: Vec<String>,
        notified: Notified,
    ) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let api: Api<ImageStream> = Api::namespaced(self.client.clone(), &namespace);
            let note = serde_json::to_string(&notified).map_err(|e| e.to_string())?;
            let params = PostParams {
                field_manager: Some(crate::api::field_manager::NOTIFY.into()),
                ..Default::default()
            };
            let request = |s: &mut ImageStream| {
                let next = s.reimport_generation();
                for t in s.spec.tags.iter_mut().flatten() {
                    if tags.contains(&t.name) {
                        t.generation = Some(next);
                    }
                }
                s.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(NOTIFIED.into(), note.clone());
                Ok::<_, std::convert::Infallible>(())
            };
            update(&api, &stream, &params, 3, request)
                .await
                .map(|_| ())
                .map_err(|e| format!("{namespace}/{stream}: {e}"))
        })
    }
}

/// Keeps the notification index equal to the stream cache.
pub async fn maintain_index(cache: &StreamCache, index: Arc<Mutex<TargetIndex>>) {
    let changes = cache.subscribe();
    index
        .lock()
        .reset(cache.store().state().iter().map(|s| s.as_ref()));
    changes
        .for_each(move |event| {
            event.update(&mut *index.lock());
            futures::future::ready(())
        })
        .await
}
