//! The resolver: one HEAD per unchanged tag — when the HEAD digest equals what the tag's status
//! already records, the check is done, whatever any cache holds. A GET of the manifest and
//! config blob only for digests the tag did not have; those are cached by digest (immutable) in
//! caches bounded in bytes, purely to save requests when many tags share an image. Identical
//! concurrent requests share one flight.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use lru::LruCache;
use serde::Deserialize;

use super::metrics::RegistryMetrics;
use super::policy::RegistryPolicy;
use super::transport::{Endpoint, HttpError, Transport, TransportConfig};
use super::{
    ImageRef, ImageResolver, ImportRequest, KnownImage, ListRequest, RegistryError, ResolvedImage,
};
use crate::api::{ImageDetails, ImageLayer, ImageManifestEntry, ImportMode};

/// Docker schema 2 manifest and list, OCI manifest and index: the full Accept list, so a
/// registry never downgrades to schema 1 or hides a list behind a single-platform answer.
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;
const TAG_PAGE_SIZE: usize = 100;

#[derive(Clone)]
pub struct ResolverConfig {
    pub transport: TransportConfig,
    /// Platform chosen from a manifest list in Legacy mode when the tag states no preference.
    pub default_os: String,
    pub default_arch: String,
    /// Approximate bytes of parsed manifests and image details kept in memory, each. Only an
    /// optimisation (an unchanged tag is recognised from its status with one HEAD); it spares
    /// a GET when several tags point at the same image.
    pub cache_bytes: usize,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            transport: TransportConfig::default(),
            default_os: "linux".into(),
            default_arch: "amd64".into(),
            cache_bytes: 1024 * 1024,
        }
    }
}

impl ResolverConfig {
    pub fn with_policy(policy: RegistryPolicy) -> Self {
        let mut c = Self::default();
        c.transport.policy = Arc::new(policy);
        c
    }
}

#[derive(Debug)]
enum Parsed {
    Image {
        media_type: String,
        config: Option<String>,
        layers: Vec<ImageLayer>,
    },
    List {
        media_type: String,
        children: Vec<ImageManifestEntry>,
    },
}

type Flight = Shared<BoxFuture<'static, Result<ResolvedImage, RegistryError>>>;

#[derive(Hash, PartialEq, Eq, Clone)]
struct FlightKey {
    reference: String,
    insecure: bool,
    mode: ImportMode,
    prefer_os: Option<String>,
    prefer_arch: Option<String>,
    credential: String,
    /// A request that may stop at an unchanged HEAD answers differently from one that may not.
    known: Option<KnownImage>,
}

struct Inner {
    config: ResolverConfig,
    transport: Transport,
    manifests: Mutex<ByteLru<Arc<Parsed>>>,
    details: Mutex<ByteLru<ImageDetails>>,
    flights: Mutex<HashMap<FlightKey, Flight>>,
    /// Insecure registries that answered over plain HTTP after HTTPS failed.
    plain_http: Mutex<HashSet<String>>,
}

#[derive(Clone)]
pub struct RegistryResolver {
    inner: Arc<Inner>,
}

impl RegistryResolver {
    pub fn new(config: ResolverConfig) -> Result<Self, String> {
        Self::with_metrics(config, Arc::default())
    }

    pub fn with_metrics(
        config: ResolverConfig,
        metrics: Arc<RegistryMetrics>,
    ) -> Result<Self, String> {
        let transport = Transport::new(config.transport.clone(), metrics)?;
        let bytes = config.cache_bytes;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                transport,
                manifests: Mutex::new(ByteLru::new(bytes)),
                details: Mutex::new(ByteLru::new(bytes)),
                flights: Mutex::default(),
                plain_http: Mutex::default(),
            }),
        })
    }

    pub fn metrics(&self) -> &RegistryMetrics {
        &self.inner.transport.metrics
    }

    /// Refuses blocked or non-allowed registries before any connection is made.
    pub fn check_allowed(&self, image: &ImageRef) -> Result<(), RegistryError> {
        self.inner
            .transport
            .policy()
            .check_registry(image.registry())
            .map_err(|detail| RegistryError::Forbidden {
                reference: image.to_string(),
                detail,
            })
    }

    async fn coalesced(&self, req: ImportRequest) -> Result<ResolvedImage, RegistryError> {
        self.check_allowed(&req.reference)?;
        let key = FlightKey {
            reference: req.reference.normalized().whole(),
            insecure: req.insecure,
            mode: req.import_mode,
            prefer_os: req.prefer_os.clone(),
            prefer_arch: req.prefer_arch.clone(),
            credential: req
                .keyring
                .lookup(&req.reference)
                .map(super::credentials::Credential::fingerprint)
                .unwrap_or_default(),
            known: req.known.clone(),
        };
        let flight = {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            flights
                .entry(key.clone())
                .or_insert_with(|| {
                    let inner = self.inner.clone();
                    async move { inner.resolve(req).await }.boxed().shared()
                })
                .clone()
        };
        let result = flight.await;
        self.inner
            .flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        result
    }
}

impl Inner {
    async fn resolve(&self, req: ImportRequest) -> Result<ResolvedImage, RegistryError> {
        let credential = req.keyring.lookup(&req.reference).cloned();
        match self.resolve_as(&req, credential.clone()).await {
            // A wrong secret must not hide a public image (OpenShift retries anonymously too).
            Err(RegistryError::Unauthorized { .. }) if credential.is_some() => {
                match self.resolve_as(&req, None).await {
                    Ok(found) => Ok(found),
                    Err(_) => Err(RegistryError::Unauthorized {
                        reference: req.reference.to_string(),
                        had_credentials: true,
                    }),
                }
            }
            other => other,
        }
    }

    fn insecure(&self, image: &ImageRef, requested: bool) -> bool {
        requested || self.transport.policy().is_insecure(image.registry())
    }

    fn endpoint(
        &self,
        image: &ImageRef,
        insecure: bool,
        credential: Option<super::credentials::Credential>,
    ) -> Endpoint {
        Endpoint {
            registry: image.normalized().resolve_registry().to_string(),
            repository: image.repository().to_string(),
            plain_http: false,
            skip_verify: insecure,
            credential,
        }
    }

    /// HTTPS first; plain HTTP only when insecure is allowed and HTTPS could not connect.
    async fn on_transports<T, F, Fut>(
        &self,
        image: &ImageRef,
        requested_insecure: bool,
        credential: Option<super::credentials::Credential>,
        op: F,
    ) -> Result<T, RegistryError>
    where
        F: Fn(Endpoint) -> Fut,
        Fut: std::future::Future<Output = Result<T, HttpError>>,
    {
        let insecure = self.insecure(image, requested_insecure);
        let had_credentials = credential.is_some();
        let ep = self.endpoint(image, insecure, credential);
        let classify = |e| classify(image, e, had_credentials);
        let http = Endpoint {
            plain_http: true,
            ..ep.clone()
        };
        // Remembered per registry so an HTTP-only registry costs no TLS attempt per check.
        if insecure && self.lock_http().contains(&ep.registry) {
            match op(http.clone()).await {
                Err(e) if e.is_connection() => {
                    self.lock_http().remove(&ep.registry);
                }
                other => return other.map_err(classify),
            }
        }
        match op(ep.clone()).await {
            Err(e) if insecure && e.is_connection() => {
                let result = op(http).await;
                if !matches!(&result, Err(e) if e.is_connection()) {
                    self.lock_http().insert(ep.registry.clone());
                }
                result.map_err(classify)
            }
            Err(HttpError::Transport {
                plain_http: true, ..
            }) => Err(RegistryError::BadRequest {
                reference: image.to_string(),
                detail: format!(
                    "the repository {} is HTTP only and requires the insecure flag to import: set importPolicy.insecure: true on the tag or the annotation openshift.io/image.insecureRepository: \"true\" on the stream",
                    image.registry()
                ),
            }),
            other => other.map_err(classify),
        }
    }

    async fn resolve_as(
        &self,
        req: &ImportRequest,
        credential: Option<super::credentials::Credential>,
    ) -> Result<ResolvedImage, RegistryError> {
        self.on_transports(&req.reference, req.insecure, credential, |ep| async move {
            self.resolve_on(req, &ep).await
        })
        .await
    }

    async fn resolve_on(
        &self,
        req: &ImportRequest,
        ep: &Endpoint,
    ) -> Result<ResolvedImage, HttpError> {
        let image = &req.reference;
        let wanted = image
            .digest()
            .or(image.tag())
            .unwrap_or("latest")
            .to_string();
        let (digest, body) = match self
            .transport
            .head_manifest(ep, &wanted, MANIFEST_TYPES)
            .await?
        {
            Some(d) => (d, None),
            None => {
                let (b, media_type, d) = self
                    .transport
                    .get_manifest(ep, &wanted, MANIFEST_TYPES, MAX_MANIFEST_BYTES)
                    .await?;
                (d, Some((b, media_type)))
            }
        };
        if let Some(pinned) = image.digest() {
            if pinned != digest {
                return Err(HttpError::Integrity {
                    expected: pinned.to_string(),
                    actual: digest,
                });
            }
        }
        if let Some(known) = req.known.as_ref().filter(|k| k.manifest == digest) {
            return Ok(ResolvedImage {
                digest: known.image.clone(),
                docker_image_reference: known.docker_image_reference.clone(),
                details: None,
                manifest_list: (known.manifest != known.image).then(|| known.manifest.clone()),
            });
        }
        let top = self.manifest(ep, &digest, body).await?;
        let list =
            matches!(&*top, Parsed::List { .. }) && req.import_mode != ImportMode::PreserveOriginal;
        let manifest_list = list.then(|| digest.clone());
        let (digest, details) = match &*top {
            Parsed::List {
                media_type,
                children,
            } if req.import_mode == ImportMode::PreserveOriginal => {
                let details = ImageDetails {
                    image: digest.clone(),
                    media_type: Some(media_type.clone()),
                    manifests: children.clone(),
                    ..Default::default()
                };
                (digest, details)
            }
            Parsed::List { children, .. } => {
                let child = choose_platform(
                    children,
                    req.prefer_os.as_deref(),
                    req.prefer_arch.as_deref(),
                    &self.config.default_os,
                    &self.config.default_arch,
                )
                .ok_or_else(|| HttpError::Malformed("manifest list has no entries".into()))?;
                let parsed = self.manifest(ep, &child.digest, None).await?;
                let details = self.details(ep, &child.digest, &parsed).await?;
                (child.digest.clone(), details)
            }
            Parsed::Image { .. } => {
                let details = self.details(ep, &digest, &top).await?;
                (digest, details)
            }
        };
        Ok(ResolvedImage {
            docker_image_reference: image.pinned(&digest),
            digest,
            details: Some(details),
            manifest_list,
        })
    }

    /// The parsed manifest for a digest the registry has just vouched for: from the cache, from
    /// the body a digest-less HEAD forced us to GET, or fetched (and verified) by digest.
    async fn manifest(
        &self,
        ep: &Endpoint,
        digest: &str,
        body: Option<(Bytes, String)>,
    ) -> Result<Arc<Parsed>, HttpError> {
        if let Some(hit) = self.lock_manifests().get(digest).cloned() {
            return Ok(hit);
        }
        let (body, media_type) = match body {
            Some(b) => b,
            None => {
                let (b, m, _) = self
                    .transport
                    .get_manifest(ep, digest, MANIFEST_TYPES, MAX_MANIFEST_BYTES)
                    .await
                    .map_err(|e| vanished(e, digest))?;
                (b, m)
            }
        };
        let parsed = Arc::new(parse_manifest(&body, &media_type)?);
        self.lock_manifests()
            .put(digest.to_string(), parsed.clone(), body.len());
        Ok(parsed)
    }

    async fn details(
        &self,
        ep: &Endpoint,
        digest: &str,
        parsed: &Parsed,
    ) -> Result<ImageDetails, HttpError> {
        if let Some(hit) = self.lock_details().get(digest).cloned() {
            return Ok(hit);
        }
        let Parsed::Image {
            media_type,
            config,
            layers,
        } = parsed
        else {
            return Err(HttpError::Malformed(
                "a manifest list names another manifest list as a platform image".into(),
            ));
        };
        let mut details = ImageDetails {
            image: digest.to_string(),
            media_type: Some(media_type.clone()),
            size: Some(layers.iter().map(|l| l.size).sum()),
            layers: layers.clone(),
            ..Default::default()
        };
        if let Some(config) = config {
            let blob = self
                .transport
                .get_blob(ep, config, MAX_CONFIG_BYTES)
                .await?;
            apply_config(&mut details, &blob)?;
        }
        let weight = serde_json::to_vec(&details).map_or(0, |v| v.len());
        self.lock_details()
            .put(digest.to_string(), details.clone(), weight);
        Ok(details)
    }

    async fn list_tags(&self, req: ListRequest) -> Result<Vec<String>, RegistryError> {
        let credential = req.keyring.lookup(&req.repository).cloned();
        let max = req.max_tags;
        self.on_transports(&req.repository, req.insecure, credential, |ep| async move {
            self.transport.list_tags(&ep, TAG_PAGE_SIZE, max).await
        })
        .await
    }

    fn lock_http(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.plain_http.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_manifests(&self) -> std::sync::MutexGuard<'_, ByteLru<Arc<Parsed>>> {
        self.manifests.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_details(&self) -> std::sync::MutexGuard<'_, ByteLru<ImageDetails>> {
        self.details.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An LRU map by digest whose budget is bytes, not entries: one huge image cannot push out
/// thousands of small ones unnoticed, and memory stays bounded whatever the images weigh.
struct ByteLru<V> {
    entries: LruCache<String, (V, usize)>,
    bytes: usize,
    budget: usize,
}

impl<V: Clone> ByteLru<V> {
    fn new(budget: usize) -> Self {
        Self {
            entries: LruCache::unbounded(),
            bytes: 0,
            budget,
        }
    }

    fn get(&mut self, key: &str) -> Option<&V> {
        self.entries.get(key).map(|(v, _)| v)
    }

    /// `weight`: the entry's approximate size in bytes (its key is added).
    fn put(&mut self, key: String, value: V, weight: usize) {
        let weight = weight + key.len();
        if weight > self.budget {
            return;
        }
        if let Some((_, old)) = self.entries.put(key, (value, weight)) {
            self.bytes -= old;
        }
        self.bytes += weight;
        while self.bytes > self.budget {
            match self.entries.pop_lru() {
                Some((_, (_, w))) => self.bytes -= w,
                None => break,
            }
        }
    }
}

impl ImageResolver for RegistryResolver {
    fn resolve(
        &self,
        request: ImportRequest,
    ) -> BoxFuture<'_, Result<ResolvedImage, RegistryError>> {
        Box::pin(self.coalesced(request))
    }

    fn list_tags(&self, request: ListRequest) -> BoxFuture<'_, Result<Vec<String>, RegistryError>> {
        Box::pin(async move {
            self.check_allowed(&request.repository)?;
            self.inner.list_tags(request).await
        })
    }

    fn request_rate(&self, registry: &str) -> Option<f64> {
        let budgets = &self.inner.config.transport.budgets;
        let budget = budgets
            .get(registry)
            .copied()
            .unwrap_or(super::budget::Budget::DEFAULT);
        Some(f64::from(budget.per_second))
    }
}

/// Legacy mode's choice: the tag's preferred platform, then the operator's default, then
/// linux/amd64, then the first entry (OpenShift's order).
pub fn choose_platform<'a>(
    children: &'a [ImageManifestEntry],
    prefer_os: Option<&str>,
    prefer_arch: Option<&str>,
    default_os: &str,
    default_arch: &str,
) -> Option<&'a ImageManifestEntry> {
    let find = |os: &str, arch: &str| {
        children
            .iter()
            .find(|c| c.os == os && c.architecture == arch)
    };
    let preferred = match (prefer_os, prefer_arch) {
        (None, None) => None,
        (os, arch) => children
            .iter()
            .find(|c| os.is_none_or(|o| c.os == o) && arch.is_none_or(|a| c.architecture == a)),
    };
    preferred
        .or_else(|| find(default_os, default_arch))
        .or_else(|| find("linux", "amd64"))
        .or_else(|| children.first())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    manifests: Option<Vec<RawChild>>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    digest: String,
    #[serde(default)]
    size: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawChild {
    digest: String,
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

#[derive(Deserialize, Default)]
struct RawPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

fn parse_manifest(body: &[u8], content_type: &str) -> Result<Parsed, HttpError> {
    let raw: RawManifest = serde_json::from_slice(body).map_err(|e| {
        HttpError::Malformed(format!("the registry sent an unreadable manifest: {e}"))
    })?;
    let media_type = raw
        .media_type
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| content_type.to_string());
    let is_list =
        raw.manifests.is_some() || media_type.contains("list") || media_type.contains("index");
    if is_list {
        let children: Vec<ImageManifestEntry> = raw
            .manifests
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.digest.starts_with("sha256:"))
            .map(|c| {
                let p = c.platform.unwrap_or_default();
                ImageManifestEntry {
                    digest: c.digest,
                    media_type: c.media_type,
                    size: c.size,
                    os: p.os,
                    architecture: p.architecture,
                    variant: p.variant,
                }
            })
            .collect();
        if children.is_empty() {
            return Err(HttpError::Malformed("manifest list has no entries".into()));
        }
        return Ok(Parsed::List {
            media_type,
            children,
        });
    }
    let layers = raw
        .layers
        .unwrap_or_default()
        .into_iter()
        .map(|l| ImageLayer {
            digest: l.digest,
            size: l.size,
        })
        .collect();
    Ok(Parsed::Image {
        media_type,
        config: raw
            .config
            .map(|c| c.digest)
            .filter(|d| d.starts_with("sha256:")),
        layers,
    })
}

#[derive(Deserialize, Default)]
struct RawConfigFile {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    config: Option<RawRunConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawRunConfig {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    exposed_ports: Option<HashMap<String, serde_json::Value>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

fn apply_config(details: &mut ImageDetails, blob: &[u8]) -> Result<(), HttpError> {
    let raw: RawConfigFile = serde_json::from_slice(blob).map_err(|e| {
        HttpError::Malformed(format!("the registry sent an unreadable image config: {e}"))
    })?;
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    details.architecture = nonempty(raw.architecture);
    details.os = nonempty(raw.os);
    details.variant = nonempty(raw.variant);
    details.created = nonempty(raw.created);
    details.author = nonempty(raw.author);
    let run = raw.config.unwrap_or_default();
    details.user = nonempty(run.user);
    details.working_dir = nonempty(run.working_dir);
    details.entrypoint = run.entrypoint.filter(|v| !v.is_empty());
    details.cmd = run.cmd.filter(|v| !v.is_empty());
    details.env = run.env.filter(|v| !v.is_empty());
    details.labels = run.labels.filter(|v| !v.is_empty());
    details.exposed_ports = run
        .exposed_ports
        .map(|p| {
            let mut ports: Vec<String> = p.into_keys().collect();
            ports.sort();
            ports
        })
        .filter(|v| !v.is_empty());
    Ok(())
}

/// The registry itself named this digest (a HEAD, or a list's entry), so a 404 for it is the
/// registry's inconsistency (replication lag, a half-deleted image), not a wrong name: say so,
/// and let the import be retried instead of telling the user to check the tag.
fn vanished(e: HttpError, digest: &str) -> HttpError {
    match e {
        HttpError::Status { code: 404, .. } => HttpError::Malformed(format!(
            "the registry named {digest} but answered HTTP 404 for it (still replicating, or \
             inconsistent); the import is retried automatically"
        )),
        e => e,
    }
}

/// Map wire failures to the reasons the controller writes, naming the reference and the cause.
fn classify(image: &ImageRef, e: HttpError, had_credentials: bool) -> RegistryError {
    let reference = image.to_string();
    match e {
        HttpError::Refused(detail) => RegistryError::Forbidden { reference, detail },
        HttpError::Paused { retry_after } => RegistryError::RateLimited {
            reference,
            retry_after: Some(retry_after),
        },
        HttpError::Status {
            code,
            codes,
            message,
            retry_after,
        } => classify_status(reference, code, &codes, message, retry_after, had_credentials),
        HttpError::Transport {
            detail, timeout, ..
        } => RegistryError::Unreachable {
            reference,
            detail: if timeout {
                format!("the request timed out: {detail}")
            } else {
                detail
            },
        },
        HttpError::TooLarge { limit } => RegistryError::Invalid {
            reference,
            detail: format!(
                "the registry sent a response larger than the {} MiB limit; refusing to read it",
                limit / (1024 * 1024)
            ),
        },
        HttpError::Integrity { expected, actual } => RegistryError::Internal {
            reference,
            detail: format!(
                "content integrity error: asked for {expected}, the registry sent content hashing to {actual}"
            ),
        },
        HttpError::Malformed(detail) => RegistryError::Internal { reference, detail },
    }
}

fn classify_status(
    reference: String,
    code: u16,
    codes: &[String],
    message: String,
    retry_after: Option<std::time::Duration>,
    had_credentials: bool,
) -> RegistryError {
    let has = |c: &str| codes.iter().any(|x| x.eq_ignore_ascii_case(c));
    let suffix = if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    };
    if code == 429 || has("TOOMANYREQUESTS") {
        return RegistryError::RateLimited {
            reference,
            retry_after,
        };
    }
    if code == 401 || has("UNAUTHORIZED") {
        return RegistryError::Unauthorized {
            reference,
            had_credentials,
        };
    }
    if code == 404 || has("MANIFEST_UNKNOWN") || has("NAME_UNKNOWN") || has("BLOB_UNKNOWN") {
        let what = if has("NAME_UNKNOWN") {
            "repository not found"
        } else {
            "manifest unknown"
        };
        return RegistryError::NotFound {
            reference,
            detail: what.into(),
        };
    }
    if code == 403 || has("DENIED") {
        return RegistryError::Forbidden {
            reference,
            detail: format!("access denied by the registry (HTTP {code}){suffix}"),
        };
    }
    if (500..600).contains(&code) {
        return RegistryError::Unreachable {
            reference,
            detail: format!("the registry answered HTTP {code}{suffix}"),
        };
    }
    RegistryError::Internal {
        reference,
        detail: format!("unexpected HTTP {code} from the registry{suffix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Manifests, indexes and config blobs are read from the network: any bytes, and JSON
    /// with the right field names holding the wrong things, never panic; 2 × 3,000 cases.
    mod never_panics {
        use super::*;
        use proptest::prelude::*;

        fn field() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("schemaVersion".to_string()),
                Just("mediaType".to_string()),
                Just("manifests".to_string()),
                Just("config".to_string()),
                Just("layers".to_string()),
                Just("platform".to_string()),
                Just("digest".to_string()),
                Just("size".to_string()),
                Just("architecture".to_string()),
                Just("os".to_string()),
                Just("Labels".to_string()),
                Just("Env".to_string()),
                Just("created".to_string()),
            ]
        }

        fn value() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                "[a-z0-9:./+-]{0,20}".prop_map(serde_json::Value::from),
            ];
            leaf.prop_recursive(3, 40, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4)
                        .prop_map(serde_json::Value::from),
                    proptest::collection::btree_map(field(), inner, 0..6)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]
            #[test]
            fn manifests_and_indexes(doc in value(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                for ct in ["", "application/vnd.oci.image.index.v1+json",
                           "application/vnd.docker.distribution.manifest.v2+json"] {
                    let _ = parse_manifest(doc.to_string().as_bytes(), ct);
                    let _ = parse_manifest(&bytes, ct);
                }
            }

            #[test]
            fn config_blobs(doc in value(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let mut details = ImageDetails::default();
                let _ = apply_config(&mut details, doc.to_string().as_bytes());
                let _ = apply_config(&mut details, &bytes);
            }
        }
    }

    fn child(os: &str, arch: &str, d: &str) -> ImageManifestEntry {
        ImageManifestEntry {
            digest: d.into(),
            media_type: "m".into(),
            size: 1,
            os: os.into(),
            architecture: arch.into(),
            variant: None,
        }
    }

    #[test]
    fn legacy_platform_choice_follows_openshift_order() {
        let list = [
            child("linux", "arm64", "a"),
            child("linux", "amd64", "b"),
            child("linux", "s390x", "c"),
        ];
        let pick = |os, arch, dos, darch| {
            choose_platform(&list, os, arch, dos, darch)
                .map(|c| c.digest.clone())
                .unwrap_or_default()
        };
        assert_eq!(pick(None, Some("s390x"), "linux", "arm64"), "c");
        assert_eq!(pick(None, None, "linux", "arm64"), "a");
        assert_eq!(pick(None, None, "linux", "ppc64le"), "b");
        let odd = [child("windows", "386", "w"), child("plan9", "x", "p")];
        assert_eq!(
            choose_platform(&odd, None, None, "linux", "amd64").map(|c| c.digest.as_str()),
            Some("w")
        );
        assert!(choose_platform(&[], None, None, "linux", "amd64").is_none());
    }

    #[test]
    fn blocked_registries_are_refused_before_any_connection() {
        let r = RegistryResolver::new(ResolverConfig::with_policy(RegistryPolicy {
            blocked: vec!["evil.example.com".into()],
            ..Default::default()
        }))
        .unwrap();
        for image in [
            "169.254.169.254/latest/meta-data",
            "metadata.google.internal/x",
            "evil.example.com/x:1",
        ] {
            let err = r
                .check_allowed(&ImageRef::parse(image).unwrap())
                .unwrap_err();
            assert_eq!(err.reason(), "Forbidden", "{image}");
        }
        assert!(r
            .check_allowed(&ImageRef::parse("quay.io/x").unwrap())
            .is_ok());
        assert_eq!(r.metrics().total_requests(), 0);
    }

    #[test]
    fn statuses_map_to_openshift_reasons() {
        let r = |code: u16, codes: &[&str]| {
            classify_status(
                "r".into(),
                code,
                &codes.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                String::new(),
                None,
                false,
            )
            .reason()
        };
        assert_eq!(r(404, &[]), "NotFound");
        assert_eq!(r(400, &["NAME_UNKNOWN"]), "NotFound");
        assert_eq!(r(401, &[]), "Unauthorized");
        assert_eq!(r(403, &[]), "Forbidden");
        assert_eq!(r(429, &[]), "RateLimited");
        assert_eq!(r(200, &["TOOMANYREQUESTS"]), "RateLimited");
        assert_eq!(r(503, &[]), "Unreachable");
        assert_eq!(r(418, &[]), "InternalError");
    }

    #[test]
    fn manifests_parse_tolerantly_and_reject_garbage() {
        let list = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"sha256:aa","mediaType":"m","size":3,"platform":{"os":"linux","architecture":"arm","variant":"v7"}}]}"#;
        match parse_manifest(list, "").unwrap() {
            Parsed::List { children, .. } => assert_eq!(children[0].variant.as_deref(), Some("v7")),
            other => panic!("{other:?}"),
        }
        assert!(parse_manifest(b"<html>", "").is_err());
        assert!(parse_manifest(br#"{"manifests":[]}"#, "").is_err());
        let image = br#"{"schemaVersion":2,"config":{"digest":"sha256:cc","size":1},"layers":[{"digest":"sha256:l1","size":10},{"digest":"sha256:l2","size":5}]}"#;
        match parse_manifest(image, "application/vnd.oci.image.manifest.v1+json").unwrap() {
            Parsed::Image {
                config,
                layers,
                media_type,
            } => {
                assert_eq!(config.as_deref(), Some("sha256:cc"));
                assert_eq!(layers.len(), 2);
                assert_eq!(media_type, "application/vnd.oci.image.manifest.v1+json");
            }
            other => panic!("{other:?}"),
        }
    }
}
