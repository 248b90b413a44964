//! HTTP for the distribution API, on reqwest: the request calls. Authentication is in `auth.rs`,
//! budgets and pauses in `budget.rs`. oci-client hides response headers and reads whole
//! bodies before checking their size, so the requests whose headers or size matter
//! (`Retry-After`, `Docker-Content-Digest`, `Link`, hostile bodies) go through here. Every request
//! passes the registry policy, the registry's budget and its 429 pause, carries the cached bearer
//! token for its scope, and is counted in the metrics.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::auth::{Auth, Challenges};
use super::budget::{Budget, Gate};
use super::credentials::hex;
use super::http::{error_envelope, retry_after, transport_error, MAX_ERROR_BODY};
pub use super::http::{Endpoint, HttpError};
use super::limits::{read_body, read_limited, Gates, Limits};
use super::metrics::RegistryMetrics;
use super::policy::{GuardedResolver, RegistryPolicy};
use super::{Listed, TagPage, TagSink};

/// A page of a tag list: thousands of tags, far below this.
const MAX_TAG_PAGE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct TransportConfig {
    pub policy: Arc<RegistryPolicy>,
    /// Whole-request timeout, so a body that trickles in cannot hold a worker forever.
    pub timeout: Duration,
    /// Trusted in addition to the system roots (`--registry-ca-bundle`).
    pub extra_roots: Vec<reqwest::Certificate>,
    /// Per-registry budgets by `host[:port]`; others get [`Budget::DEFAULT`].
    pub budgets: HashMap<String, Budget>,
    /// How long a registry is left alone after a 429 that names no `Retry-After`.
    pub default_pause: Duration,
    /// Requests in flight and bytes buffered, all registries together and per namespace.
    pub limits: Limits,
}

impl Default for TransportConfig {
    fn default() -> Self {
        let budgets = ["docker.io", "registry-1.docker.io", "index.docker.io"]
            .into_iter()
            .map(|h| (h.to_string(), Budget::DOCKER_HUB))
            .collect();
        Self {
            policy: Arc::default(),
            timeout: Duration::from_secs(30),
            extra_roots: Vec::new(),
            budgets,
            default_pause: Duration::from_secs(30),
            limits: Limits::default(),
        }
    }
}

/// Registries remembered before idle ones are forgotten: a tenant can name any number of hosts.
const SWEEP_REGISTRIES_ABOVE: usize = 256;
/// How long a registry's state outlives its last request.
const REGISTRY_IDLE: Duration = Duration::from_secs(600);

/// What the transport knows of one registry: its budget in force and how it wants to be asked.
struct RegistryState {
    gate: Gate,
    challenges: Challenges,
    last_used: Mutex<Instant>,
}

impl RegistryState {
    /// Forgetting it loses nothing: no request holds it, no pause is in force, and it has been
    /// idle long enough that its budget's bucket is full again.
    fn forgettable(self: &Arc<Self>, now: Instant) -> bool {
        let idle = now.saturating_duration_since(*self.last_used.lock());
        Arc::strong_count(self) == 1 && !self.gate.is_paused() && idle >= REGISTRY_IDLE
    }
}

pub struct Transport {
    config: TransportConfig,
    verified: reqwest::Client,
    unverified: reqwest::Client,
    registries: Mutex<HashMap<String, Arc<RegistryState>>>,
    gates: Gates,
    auth: Auth,
    pub metrics: Arc<RegistryMetrics>,
}

impl Transport {
    pub fn new(config: TransportConfig, metrics: Arc<RegistryMetrics>) -> Result<Self, String> {
        // reqwest is built without a default provider; the binary installs ring first, and this
        // makes library users (tests, the CLI) work too. A second install is a harmless no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let verified = client(&config, false)?;
        let unverified = client(&config, true)?;
        let auth = Auth::new(config.policy.clone(), metrics.clone());
        let gates = Gates::new(config.limits, config.timeout);
        Ok(Self {
            gates,
            config,
            verified,
            unverified,
            registries: Mutex::default(),
            auth,
            metrics,
        })
    }

    pub fn policy(&self) -> &RegistryPolicy {
        &self.config.policy
    }

    fn state(&self, registry: &str) -> Arc<RegistryState> {
        let now = Instant::now();
        let mut map = self.registries.lock();
        if let Some(state) = map.get(registry) {
            *state.last_used.lock() = now;
            return state.clone();
        }
        if map.len() >= SWEEP_REGISTRIES_ABOVE {
            map.retain(|_, state| !state.forgettable(now));
        }
        let budget = self
            .config
            .budgets
            .get(registry)
            .copied()
            .unwrap_or(Budget::DEFAULT);
        let state = Arc::new(RegistryState {
            gate: Gate::new(budget),
            challenges: Challenges::default(),
            last_used: Mutex::new(now),
        });
        map.insert(registry.to_string(), state.clone());
        state
    }

    /// The most response bytes held in memory at once since start, all registries together.
    pub fn peak_buffered_bytes(&self) -> usize {
        self.gates.peak_buffered()
    }

    /// Registries whose state is held now (idle ones are forgotten as new ones arrive).
    pub fn registries_known(&self) -> usize {
        self.registries.lock().len()
    }

    /// Sends one request with auth, budget and pause handling. Non-2xx answers become errors.
    async fn send(
        &self,
        ep: &Endpoint,
        method: Method,
        path: &str,
        accept: &[&str],
    ) -> Result<reqwest::Response, HttpError> {
        self.config
            .policy
            .check_registry(&ep.registry)
            .map_err(HttpError::Refused)?;
        let state = self.state(&ep.registry);
        state.gate.wait_out_pause().await?;
        let _slot = state.gate.slot().await?;
        let url = ep.url(path);
        let client = self.client_for(ep);
        let mut auth = self
            .auth
            .first_header(client, ep, &state.challenges)
            .await?;
        let mut retried = false;
        loop {
            // A request queued for a slot may find the registry paused by now.
            state.gate.wait_out_pause().await?;
            state.gate.until_ready().await;
            let response = self
                .once(ep, method.clone(), &url, accept, auth.as_ref())
                .await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                let answer = self
                    .auth
                    .answer_challenge(client, ep, &state.challenges, &response);
                if let Some(next) = answer.await? {
                    auth = Some(next);
                    continue;
                }
            }
            if status.is_success() {
                return Ok(response);
            }
            return Err(self
                .failure(ep, &state, method == Method::HEAD, response)
                .await);
        }
    }

    /// The HTTP client for this endpoint: verifying TLS, or not where the stream allows it.
    pub(super) fn client_for(&self, ep: &Endpoint) -> &reqwest::Client {
        if ep.skip_verify {
            &self.unverified
        } else {
            &self.verified
        }
    }

    async fn once(
        &self,
        ep: &Endpoint,
        method: Method,
        url: &str,
        accept: &[&str],
        auth: Option<&HeaderValue>,
    ) -> Result<reqwest::Response, HttpError> {
        let client = self.client_for(ep);
        let mut headers = HeaderMap::new();
        if !accept.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&accept.join(", ")) {
                headers.insert(ACCEPT, v);
            }
        }
        if let Some(a) = auth {
            headers.insert(AUTHORIZATION, a.clone());
        }
        let started = Instant::now();
        let result = client
            .request(method.clone(), url)
            .headers(headers)
            .send()
            .await;
        let result = result.map_err(transport_error);
        let outcome = match &result {
            Ok(r) => r.status().as_u16().to_string(),
            // An insecure registry's HTTPS attempt that cannot connect is the first step of the
            // designed fallback to plain HTTP, not a registry error.
            Err(e) if ep.skip_verify && !ep.plain_http && e.is_connection() => {
                "https_fallback".to_string()
            }
            Err(_) => "error".to_string(),
        };
        self.metrics
            .record(&ep.registry, method.as_str(), &outcome, started.elapsed());
        result
    }

    async fn failure(
        &self,
        ep: &Endpoint,
        state: &RegistryState,
        head: bool,
        response: reqwest::Response,
    ) -> HttpError {
        let code = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        if code == 429 {
            let pause = retry_after.unwrap_or(self.config.default_pause);
            state.gate.pause(pause);
            tracing::warn!(registry = %ep.registry, pause_secs = pause.as_secs(), "registry rate limited us; pausing requests to it");
        }
        let body = if head {
            Bytes::new()
        } else {
            read_limited(response, MAX_ERROR_BODY)
                .await
                .unwrap_or_default()
        };
        let (codes, message) = error_envelope(&body);
        HttpError::Status {
            code,
            codes,
            message,
            retry_after,
        }
    }

    /// HEAD a manifest: the digest from `Docker-Content-Digest`, or None when the registry
    /// sends none (then the caller GETs and hashes).
    pub async fn head_manifest(
        &self,
        ep: &Endpoint,
        reference: &str,
        accept: &[&str],
    ) -> Result<Option<String>, HttpError> {
        let _slot = self.gates.slot(&ep.tenant).await?;
        let r = self
            .send(ep, Method::HEAD, &format!("manifests/{reference}"), accept)
            .await?;
        Ok(content_digest(r.headers()))
    }

    /// GET a manifest, at most `limit` bytes, verified against the digest asked for, or, by
    /// tag, against the registry's `Docker-Content-Digest` (a body damaged on the way must not
    /// be recorded as an image that exists nowhere). Returns the body, its media type and its
    /// sha256 digest.
    pub async fn get_manifest(
        &self,
        ep: &Endpoint,
        reference: &str,
        accept: &[&str],
        limit: usize,
    ) -> Result<(Bytes, String, String), HttpError> {
        let slot = self.gates.slot(&ep.tenant).await?;
        let r = self
            .send(ep, Method::GET, &format!("manifests/{reference}"), accept)
            .await?;
        let media_type = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let announced = content_digest(r.headers());
        let body = read_body(r, limit, Some(&slot)).await?;
        self.metrics.record_bytes(&ep.registry, body.len());
        let digest = format!("sha256:{}", hex(&Sha256::digest(&body)));
        let expected = match reference.starts_with("sha256:") {
            true => Some(reference.to_string()),
            false => announced,
        };
        if let Some(expected) = expected.filter(|e| *e != digest) {
            return Err(HttpError::Integrity {
                expected,
                actual: digest,
            });
        }
        Ok((body, media_type, digest))
    }

    /// GET a blob by digest, at most `limit` bytes, verified.
    pub async fn get_blob(
        &self,
        ep: &Endpoint,
        digest: &str,
        limit: usize,
    ) -> Result<Bytes, HttpError> {
        let slot = self.gates.slot(&ep.tenant).await?;
        let r = self
            .send(ep, Method::GET, &format!("blobs/{digest}"), &[])
            .await?;
        let body = read_body(r, limit, Some(&slot)).await?;
        self.metrics.record_bytes(&ep.registry, body.len());
        let actual = format!("sha256:{}", hex(&Sha256::digest(&body)));
        if actual != digest {
            return Err(HttpError::Integrity {
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(body)
    }

    /// The repository's tags, page by page into `sink`, following `Link` pagination within
    /// the repository. More than `max_tags` makes the listing incomplete, never silently short.
    pub async fn list_tags(
        &self,
        ep: &Endpoint,
        page_size: usize,
        max_tags: usize,
        attempt: u32,
        sink: &TagSink<'_>,
    ) -> Result<Listed, HttpError> {
        let mut listed = Listed::default();
        let mut path = format!("tags/list?n={page_size}");
        loop {
            let slot = self.gates.slot(&ep.tenant).await?;
            let r = self.send(ep, Method::GET, &path, &[]).await?;
            let next = next_link(r.headers(), &ep.repository);
            let body = read_body(r, MAX_TAG_PAGE_BYTES, Some(&slot)).await?;
            self.metrics.record_bytes(&ep.registry, body.len());
            let mut tags = parse_tag_page(&body)?;
            listed.pages = listed.pages.saturating_add(1);
            let room = max_tags.saturating_sub(listed.tags);
            let truncated = tags.len() > room;
            tags.truncate(room);
            let empty = tags.is_empty();
            listed.tags = listed.tags.saturating_add(tags.len());
            sink(TagPage { attempt, tags });
            match next {
                _ if truncated => return Ok(listed),
                Some(_) if listed.tags >= max_tags => return Ok(listed),
                Some(p) if !empty => path = p,
                _ => break,
            }
        }
        listed.complete = true;
        Ok(listed)
    }
}

/// The registry's `Docker-Content-Digest`, when it is a sha256 digest.
fn content_digest(headers: &HeaderMap) -> Option<String> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .filter(|d| d.starts_with("sha256:"))
        .map(str::to_string)
}

/// One page of `GET /v2/<name>/tags/list`; a missing or null `tags` is an empty page.
fn parse_tag_page(body: &[u8]) -> Result<Vec<String>, HttpError> {
    #[derive(Deserialize)]
    struct Page {
        #[serde(default)]
        tags: Option<Vec<String>>,
    }
    let page: Page =
        serde_json::from_slice(body).map_err(|e| HttpError::Malformed(format!("tag list: {e}")))?;
    Ok(page.tags.unwrap_or_default())
}

fn client(config: &TransportConfig, skip_verify: bool) -> Result<reqwest::Client, String> {
    let policy = config.policy.clone();
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        let target = match (attempt.url().host_str(), attempt.url().port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return attempt.error("redirect without a host"),
        };
        if let Err(e) = policy.check_blocked(&target) {
            return attempt.error(format!("redirect refused: {e}"));
        }
        // Only a registry marked insecure may be followed from HTTPS to plain HTTP.
        let from_https = attempt
            .previous()
            .last()
            .is_some_and(|u| u.scheme() == "https");
        if !skip_verify && from_https && attempt.url().scheme() != "https" {
            return attempt.error(
                "redirect refused: from HTTPS to plain HTTP, which only a registry marked insecure may do",
            );
        }
        if attempt.previous().len() >= 5 {
            return attempt.error("too many redirects");
        }
        attempt.follow()
    });
    let resolver = Arc::new(GuardedResolver {
        policy: config.policy.clone(),
    });
    let mut builder = reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .redirect(redirects)
        .dns_resolver(resolver)
        .user_agent(concat!("imagestream-operator/", env!("CARGO_PKG_VERSION")))
        // As many idle connections per registry as its budget lets requests run at once: fewer
        // would close and reopen connections on every burst, more would sit idle.
        .pool_max_idle_per_host(max_concurrency(config));
    if skip_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    } else if !config.extra_roots.is_empty() {
        builder = builder.tls_certs_merge(config.extra_roots.iter().cloned());
    }
    builder
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

fn max_concurrency(config: &TransportConfig) -> usize {
    config
        .budgets
        .values()
        .map(|b| b.concurrency)
        .chain([Budget::DEFAULT.concurrency])
        .max()
        .unwrap_or(16)
}

/// The path of the next page from `Link: </v2/<repo>/tags/list?n=..&last=..>; rel="next"`.
fn next_link(headers: &HeaderMap, repository: &str) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    let target = link.split(';').next()?.trim();
    let target = target.strip_prefix('<')?.strip_suffix('>')?;
    // Only follow links within the same repository's tag list, never to another host.
    let prefix = format!("/v2/{repository}/");
    let path = target.split_once(&prefix).map(|(_, rest)| rest)?;
    path.starts_with("tags/list").then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Link` headers and tag pages from any registry (or anything pretending to be one) never
    /// panic the parser; 2 × 3,000 cases.
    mod never_panics {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]
            #[test]
            fn link(value in "<?[/a-z0-9?=&.%_<>; \"-]{0,120}") {
                let mut headers = HeaderMap::new();
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(reqwest::header::LINK, v);
                }
                if let Some(next) = next_link(&headers, "library/app") {
                    prop_assert!(next.starts_with("/v2/library/app/tags/list"), "{next}");
                }
            }

            #[test]
            fn tag_pages(body in proptest::collection::vec(any::<u8>(), 0..200), tags in "[\\[\\]\",a-z0-9 null{}]{0,80}") {
                let _ = parse_tag_page(&body);
                let _ = parse_tag_page(format!("{{\"name\":\"a\",\"tags\":{tags}}}").as_bytes());
            }
        }
    }

    #[test]
    fn next_link_stays_within_the_repository() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(r#"</v2/team/app/tags/list?last=b&n=2>; rel="next""#),
        );
        assert_eq!(
            next_link(&h, "team/app").as_deref(),
            Some("tags/list?last=b&n=2")
        );
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(r#"<http://169.254.169.254/v2/other/tags/list>; rel="next""#),
        );
        assert_eq!(next_link(&h, "team/app"), None);
    }
}
