//! The resolver: one HEAD per unchanged tag — when the HEAD digest equals what the tag's status
//! already records, the check is done, whatever any cache holds. A GET of the manifest and
//! config blob only for digests the tag did not have; those are cached (immutable) in caches
//! bounded in bytes, purely to save requests when many tags share an image, and keyed by the
//! endpoint and credential that served them, so a hit never crosses a trust boundary.
//! Identical concurrent requests share one flight.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use lru::LruCache;

use super::credentials::plugins::Providers;
use super::credentials::{Credential, Keyring};
use super::error::{classify, vanished};
use super::metrics::RegistryMetrics;
use super::oci::{
    apply_config, parse_manifest, Parsed, MANIFEST_TYPES, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES,
};
use super::policy::RegistryPolicy;
use super::transport::{Endpoint, HttpError, Transport, TransportConfig};
use super::{
    ImageRef, ImageResolver, ImportRequest, KnownImage, ListRequest, Listed, RegistryError,
    ResolvedImage, TagSink,
};
use crate::api::{ImageDetails, ImageManifestEntry, ImportMode};

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
    /// The kubelet credential provider plugins (`--image-credential-provider-config`).
    pub providers: Option<Arc<Providers>>,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            transport: TransportConfig::default(),
            default_os: "linux".into(),
            default_arch: "amd64".into(),
            cache_bytes: 1024 * 1024,
            providers: None,
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

    /// The most registry response bytes held in memory at once since start.
    pub fn peak_buffered_bytes(&self) -> usize {
        self.inner.transport.peak_buffered_bytes()
    }

    /// Registries whose state the transport holds now.
    pub fn registries_known(&self) -> usize {
        self.inner.transport.registries_known()
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
            credential: self.inner.credential_key(&req.reference, &req.keyring),
            known: req.known.clone(),
        };
        let flight = {
            let mut flights = self.inner.flights.lock();
            flights
                .entry(key.clone())
                .or_insert_with(|| {
                    let inner = self.inner.clone();
                    async move { inner.resolve(req).await }.boxed().shared()
                })
                .clone()
        };
        let result = flight.await;
        self.inner.flights.lock().remove(&key);
        result
    }
}

impl Inner {
    async fn resolve(&self, req: ImportRequest) -> Result<ResolvedImage, RegistryError> {
        self.with_credentials(&req.reference, &req.keyring, |credential| {
            self.resolve_as(&req, credential)
        })
        .await
    }

    /// What makes two identical requests answer differently: the pull secret that matches,
    /// and the namespace when a token-mode provider speaks for it.
    fn credential_key(&self, image: &ImageRef, keyring: &Keyring) -> String {
        let mut key = keyring
            .lookup(image)
            .map(Credential::fingerprint)
            .unwrap_or_default();
        let per_namespace = self
            .config
            .providers
            .as_ref()
            .is_some_and(|p| p.per_namespace(&provider_image(image)));
        if let Some(identity) = keyring.identity().filter(|_| per_namespace) {
            key.push_str(&format!(
                "\0{}/{}",
                identity.namespace, identity.service_account
            ));
        }
        key
    }

    /// Credentials in the kubelet's order — the namespace's pull secret, then each matching
    /// credential provider's — each tried until one is not refused; then anonymously, as
    /// OpenShift does, so a wrong credential never hides a public image.
    async fn with_credentials<T, F, Fut>(
        &self,
        image: &ImageRef,
        keyring: &Keyring,
        op: F,
    ) -> Result<T, RegistryError>
    where
        F: Fn(Option<Credential>) -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let mut candidates: Vec<Credential> = keyring.lookup(image).cloned().into_iter().collect();
        let mut failure = None;
        if let Some(providers) = &self.config.providers {
            let provided = providers
                .credentials(&provider_image(image), keyring.identity())
                .await;
            for c in provided.credentials {
                if !candidates.contains(&c) {
                    candidates.push(c);
                }
            }
            failure = provided.failure;
        }
        let had_credentials = !candidates.is_empty();
        for credential in candidates {
            match op(Some(credential)).await {
                Err(RegistryError::Unauthorized { .. }) => continue,
                other => return other,
            }
        }
        let anonymous = op(None).await;
        anonymous.map_err(|e| match failure {
            Some(f) if e.credentials_may_help() => RegistryError::CredentialProvider {
                reference: image.to_string(),
                provider: f.provider,
                detail: f.detail,
            },
            _ if had_credentials => RegistryError::Unauthorized {
                reference: image.to_string(),
                had_credentials: true,
            },
            _ => e,
        })
    }

    fn insecure(&self, image: &ImageRef, requested: bool) -> bool {
        requested || self.transport.policy().is_insecure(image.registry())
    }

    fn endpoint(
        &self,
        image: &ImageRef,
        insecure: bool,
        credential: Option<Credential>,
        tenant: &str,
    ) -> Endpoint {
        Endpoint {
            registry: image.normalized().resolve_registry().to_string(),
            repository: image.repository().to_string(),
            plain_http: false,
            skip_verify: insecure,
            credential,
            tenant: tenant.to_string(),
        }
    }

    /// HTTPS first; plain HTTP only when insecure is allowed and HTTPS could not connect.
    async fn on_transports<T, F, Fut>(
        &self,
        image: &ImageRef,
        requested_insecure: bool,
        credential: Option<Credential>,
        keyring: &Keyring,
        op: F,
    ) -> Result<T, RegistryError>
    where
        F: Fn(Endpoint) -> Fut,
        Fut: std::future::Future<Output = Result<T, HttpError>>,
    {
        let insecure = self.insecure(image, requested_insecure);
        let had_credentials = credential.is_some();
        let tenant = keyring.identity().map_or("", |i| i.namespace.as_str());
        let ep = self.endpoint(image, insecure, credential, tenant);
        let classify = |e| classify(image, e, had_credentials);
        let http = Endpoint {
            plain_http: true,
            ..ep.clone()
        };
        // Remembered per registry so an HTTP-only registry costs no TLS attempt per check.
        if insecure && self.plain_http.lock().contains(&ep.registry) {
            match op(http.clone()).await {
                Err(e) if e.is_connection() => {
                    self.plain_http.lock().remove(&ep.registry);
                }
                other => return other.map_err(classify),
            }
        }
        match op(ep.clone()).await {
            Err(e) if insecure && e.is_connection() => {
                let result = op(http).await;
                if !matches!(&result, Err(e) if e.is_connection()) {
                    self.plain_http.lock().insert(ep.registry.clone());
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
        credential: Option<Credential>,
    ) -> Result<ResolvedImage, RegistryError> {
        let (image, keyring) = (&req.reference, &req.keyring);
        self.on_transports(image, req.insecure, credential, keyring, |ep| async move {
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
        let (digest, body) = self.current_digest(req, ep).await?;
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
        let (digest, details) = self.image_of(req, ep, digest, &top).await?;
        Ok(ResolvedImage {
            docker_image_reference: image.pinned(&digest),
            digest,
            details: Some(details),
            manifest_list,
        })
    }

    /// The digest the reference names now: one HEAD, or a GET (kept, to be parsed) when the
    /// registry's HEAD carries no digest. A digest-pinned reference must get that very digest.
    async fn current_digest(
        &self,
        req: &ImportRequest,
        ep: &Endpoint,
    ) -> Result<(String, Option<(Bytes, String)>), HttpError> {
        let image = &req.reference;
        let wanted = image.digest().or(image.tag()).unwrap_or("latest");
        let head = self.transport.head_manifest(ep, wanted, MANIFEST_TYPES);
        let (digest, body) = match head.await? {
            Some(d) => (d, None),
            None => {
                let get =
                    self.transport
                        .get_manifest(ep, wanted, MANIFEST_TYPES, MAX_MANIFEST_BYTES);
                let (b, media_type, d) = get.await?;
                (d, Some((b, media_type)))
            }
        };
        match image.digest() {
            Some(pinned) if pinned != digest => Err(HttpError::Integrity {
                expected: pinned.to_string(),
                actual: digest,
            }),
            _ => Ok((digest, body)),
        }
    }

    /// The image a manifest stands for, by import mode: a list kept whole (PreserveOriginal),
    /// the list's entry for the platform (Legacy), or the image itself; with its details.
    async fn image_of(
        &self,
        req: &ImportRequest,
        ep: &Endpoint,
        digest: String,
        top: &Parsed,
    ) -> Result<(String, ImageDetails), HttpError> {
        match top {
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
                Ok((digest, details))
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
                Ok((child.digest.clone(), details))
            }
            Parsed::Image { .. } => {
                let details = self.details(ep, &digest, top).await?;
                Ok((digest, details))
            }
        }
    }

    /// The parsed manifest for a digest the registry has just vouched for: from the cache, from
    /// the body a digest-less HEAD forced us to GET, or fetched (and verified) by digest.
    async fn manifest(
        &self,
        ep: &Endpoint,
        digest: &str,
        body: Option<(Bytes, String)>,
    ) -> Result<Arc<Parsed>, HttpError> {
        let key = content_key(ep, digest);
        if let Some(hit) = self.manifests.lock().get(&key).cloned() {
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
        self.manifests.lock().put(key, parsed.clone(), body.len());
        Ok(parsed)
    }

    async fn details(
        &self,
        ep: &Endpoint,
        digest: &str,
        parsed: &Parsed,
    ) -> Result<ImageDetails, HttpError> {
        let key = content_key(ep, digest);
        if let Some(hit) = self.details.lock().get(&key).cloned() {
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
        self.details.lock().put(key, details.clone(), weight);
        Ok(details)
    }

    async fn list_tags(
        &self,
        req: ListRequest,
        sink: &TagSink<'_>,
    ) -> Result<Listed, RegistryError> {
        let (max, page_size) = (req.max_tags, req.page_size);
        // Each try (credential, then HTTPS or HTTP) starts the listing over; the sink hears so.
        let attempts = AtomicU32::new(0);
        self.with_credentials(&req.repository, &req.keyring, |credential| {
            let (image, keyring) = (&req.repository, &req.keyring);
            let attempts = &attempts;
            self.on_transports(
                image,
                req.insecure,
                credential,
                keyring,
                move |ep| async move {
                    let attempt = attempts.fetch_add(1, Ordering::Relaxed);
                    self.transport
                        .list_tags(&ep, page_size, max, attempt, sink)
                        .await
                },
            )
        })
        .await
    }
}

/// Where cached content may be reused: only by the endpoint — registry, repository and
/// credential — that served it by digest before. A digest alone proves nothing: any registry
/// can answer a HEAD with a digest it learned elsewhere, and must not be handed the content
/// another tenant's credential fetched.
fn content_key(ep: &Endpoint, digest: &str) -> String {
    let credential = ep
        .credential
        .as_ref()
        .map(Credential::fingerprint)
        .unwrap_or_default();
    format!("{}\0{}\0{credential}\0{digest}", ep.registry, ep.repository)
}

/// The image as credential providers see it (the kubelet's): `registry[:port]/repository`,
/// Docker Hub's spelled `docker.io/library/…`, no tag or digest.
fn provider_image(image: &ImageRef) -> String {
    format!("{}/{}", image.registry(), image.repository())
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

    fn list_tags<'a>(
        &'a self,
        request: ListRequest,
        sink: &'a TagSink<'a>,
    ) -> BoxFuture<'a, Result<Listed, RegistryError>> {
        Box::pin(async move {
            self.check_allowed(&request.repository)?;
            self.inner.list_tags(request, sink).await
        })
    }

    fn credentials_per_namespace(&self) -> bool {
        self.inner.config.providers.is_some()
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
