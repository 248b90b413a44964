//! HTTP for the distribution API, on reqwest. oci-client hides response headers and reads whole
//! bodies before checking their size, so the requests whose headers or size matter
//! (`Retry-After`, `Docker-Content-Digest`, `Link`, hostile bodies) go through here. Every request
//! passes the registry policy, the registry's budget and its 429 pause, carries the cached bearer
//! token for its scope, and is counted in the metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use super::credentials::{hex, Credential};
use super::metrics::RegistryMetrics;
use super::policy::RegistryPolicy;

/// Error bodies are read only this far: enough for a distribution error envelope.
const MAX_ERROR_BODY: usize = 64 * 1024;
const MAX_TOKEN_BODY: usize = 64 * 1024;
/// The token lifetime the distribution spec assumes when the server names none.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The longest registry pause (`Retry-After` of a 429) a request waits out instead of failing.
const MAX_PAUSE_WAIT: Duration = Duration::from_secs(10);
/// Registries hand out tokens for minutes; anything longer is renewed hourly anyway.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Request budget for one registry: a token bucket and a concurrency cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub per_second: u32,
    pub burst: u32,
    pub concurrency: usize,
}

impl Budget {
    pub const DEFAULT: Budget = Budget {
        per_second: 20,
        burst: 40,
        concurrency: 16,
    };
    /// Docker Hub throttles aggressively and counts anonymous pulls per source address.
    pub const DOCKER_HUB: Budget = Budget {
        per_second: 2,
        burst: 10,
        concurrency: 4,
    };

    /// Parses `host=RATE[:BURST[:CONCURRENCY]]`, the `--registry-budget` flag.
    pub fn parse_flag(flag: &str) -> Result<(String, Budget), String> {
        let (host, spec) = flag
            .split_once('=')
            .ok_or_else(|| format!("{flag:?}: expected HOST=RATE[:BURST[:CONCURRENCY]]"))?;
        let nums: Vec<u32> = spec
            .split(':')
            .map(|n| {
                n.parse::<u32>()
                    .map_err(|e| format!("{flag:?}: {n:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let budget = match nums[..] {
            [rate] => Budget {
                per_second: rate,
                burst: rate.saturating_mul(2),
                ..Budget::DEFAULT
            },
            [rate, burst] => Budget {
                per_second: rate,
                burst,
                ..Budget::DEFAULT
            },
            [rate, burst, concurrency] => Budget {
                per_second: rate,
                burst,
                concurrency: concurrency as usize,
            },
            _ => {
                return Err(format!(
                    "{flag:?}: expected HOST=RATE[:BURST[:CONCURRENCY]]"
                ))
            }
        };
        if budget.per_second == 0 || budget.burst == 0 || budget.concurrency == 0 {
            return Err(format!(
                "{flag:?}: rate, burst and concurrency must be positive"
            ));
        }
        Ok((host.to_string(), budget))
    }
}

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
        }
    }
}

/// Where a request goes: one repository on one registry, with one transport and credential.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `host[:port]` as contacted (`docker.io` already mapped to `registry-1.docker.io`).
    pub registry: String,
    pub repository: String,
    pub plain_http: bool,
    pub skip_verify: bool,
    pub credential: Option<Credential>,
}

impl Endpoint {
    fn url(&self, path: &str) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}/v2/{}/{path}", self.registry, self.repository)
    }
}

/// What went wrong on the wire; the resolver turns it into a [`super::RegistryError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    Status {
        code: u16,
        /// Distribution error codes from the body (`MANIFEST_UNKNOWN`, `DENIED`, …).
        codes: Vec<String>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The registry is paused after a 429; no request was sent.
    Paused {
        retry_after: Duration,
    },
    Transport {
        detail: String,
        connect: bool,
        timeout: bool,
        plain_http: bool,
    },
    TooLarge {
        limit: usize,
    },
    Integrity {
        expected: String,
        actual: String,
    },
    Malformed(String),
    Refused(String),
}

impl HttpError {
    /// A failure of the connection itself, after which an insecure import tries plain HTTP.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Self::Transport { connect: true, .. }
                | Self::Transport {
                    plain_http: true,
                    ..
                }
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Basic,
}

struct RegistryState {
    limiter: DefaultDirectRateLimiter,
    slots: Semaphore,
    paused_until: Mutex<Option<Instant>>,
    challenge: Mutex<Option<Challenge>>,
}

#[derive(Hash, PartialEq, Eq, Clone)]
struct TokenKey {
    realm: String,
    service: Option<String>,
    scope: String,
    /// Fingerprint of the credential (or empty for anonymous): tokens never cross tenants.
    credential: String,
}

pub struct Transport {
    config: TransportConfig,
    verified: reqwest::Client,
    unverified: reqwest::Client,
    registries: Mutex<HashMap<String, Arc<RegistryState>>>,
    tokens: Mutex<HashMap<TokenKey, (String, Instant)>>,
    pub metrics: Arc<RegistryMetrics>,
}

impl Transport {
    pub fn new(config: TransportConfig, metrics: Arc<RegistryMetrics>) -> Result<Self, String> {
        // reqwest is built without a default provider; the binary installs ring first, and this
        // makes library users (tests, the CLI) work too. A second install is a harmless no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let verified = client(&config, false)?;
        let unverified = client(&config, true)?;
        Ok(Self {
            config,
            verified,
            unverified,
            registries: Mutex::default(),
            tokens: Mutex::default(),
            metrics,
        })
    }

    pub fn policy(&self) -> &RegistryPolicy {
        &self.config.policy
    }

    fn state(&self, registry: &str) -> Arc<RegistryState> {
        let mut map = self.registries.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(registry.to_string())
            .or_insert_with(|| {
                let budget = self
                    .config
                    .budgets
                    .get(registry)
                    .copied()
                    .unwrap_or(Budget::DEFAULT);
                let quota = Quota::per_second(nonzero(budget.per_second))
                    .allow_burst(nonzero(budget.burst));
                Arc::new(RegistryState {
                    limiter: RateLimiter::direct(quota),
                    slots: Semaphore::new(budget.concurrency.max(1)),
                    paused_until: Mutex::new(None),
                    challenge: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Sends one request with auth, budget and pause handling. Non-2xx answers become errors.
    pub async fn send(
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
        wait_out_pause(&state).await?;
        let _slot = state
            .slots
            .acquire()
            .await
            .map_err(|_| HttpError::Refused("transport shut down".into()))?;
        let url = ep.url(path);
        let mut auth = self.cached_auth(ep, &state).await?;
        let mut retried = false;
        loop {
            // A request queued for a slot may find the registry paused by now.
            wait_out_pause(&state).await?;
            state.limiter.until_ready().await;
            let response = self
                .once(ep, method.clone(), &url, accept, auth.as_ref())
                .await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                if let Some(next) = self.answer_challenge(ep, &state, &response).await? {
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

    async fn once(
        &self,
        ep: &Endpoint,
        method: Method,
        url: &str,
        accept: &[&str],
        auth: Option<&HeaderValue>,
    ) -> Result<reqwest::Response, HttpError> {
        let client = if ep.skip_verify {
            &self.unverified
        } else {
            &self.verified
        };
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

    /// The Authorization header to send first: a cached token for this scope, or basic
    /// credentials for a registry known to want them, or a fresh token when the registry's
    /// realm is already known (saving the 401 round trip).
    async fn cached_auth(
        &self,
        ep: &Endpoint,
        state: &RegistryState,
    ) -> Result<Option<HeaderValue>, HttpError> {
        let challenge = state
            .challenge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(ep.credential.as_ref().and_then(basic_header)),
            Some(Challenge::Bearer { realm, service }) => {
                self.token(ep, &realm, service.as_deref()).await.map(Some)
            }
        }
    }

    async fn answer_challenge(
        &self,
        ep: &Endpoint,
        state: &RegistryState,
        response: &reqwest::Response,
    ) -> Result<Option<HeaderValue>, HttpError> {
        let Some(challenge) = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
        else {
            return Ok(None);
        };
        *state.challenge.lock().unwrap_or_else(|p| p.into_inner()) = Some(challenge.clone());
        match challenge {
            Challenge::Basic => Ok(ep.credential.as_ref().and_then(basic_header)),
            Challenge::Bearer { realm, service } => {
                // A 401 despite a cached token means it was revoked or expired early.
                self.forget_token(ep, &realm, service.as_deref());
                self.token(ep, &realm, service.as_deref()).await.map(Some)
            }
        }
    }

    fn token_key(ep: &Endpoint, realm: &str, service: Option<&str>) -> TokenKey {
        TokenKey {
            realm: realm.to_string(),
            service: service.map(str::to_string),
            scope: format!("repository:{}:pull", ep.repository),
            credential: ep
                .credential
                .as_ref()
                .map(Credential::fingerprint)
                .unwrap_or_default(),
        }
    }

    fn forget_token(&self, ep: &Endpoint, realm: &str, service: Option<&str>) {
        let key = Self::token_key(ep, realm, service);
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }

    /// A bearer token for the endpoint's pull scope, from the cache until it expires.
    async fn token(
        &self,
        ep: &Endpoint,
        realm: &str,
        service: Option<&str>,
    ) -> Result<HeaderValue, HttpError> {
        let key = Self::token_key(ep, realm, service);
        let now = Instant::now();
        {
            let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((token, expires)) = tokens.get(&key) {
                if *expires > now {
                    return bearer_header(token);
                }
            }
            tokens.retain(|_, (_, expires)| *expires > now);
        }
        let (token, lifetime) = self.fetch_token(ep, realm, service, &key.scope).await?;
        // Renew a little early so a token never expires between check and use.
        let expires = now + lifetime.mul_f64(0.9);
        let header = bearer_header(&token)?;
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (token, expires));
        Ok(header)
    }

    async fn fetch_token(
        &self,
        ep: &Endpoint,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<(String, Duration), HttpError> {
        let url = reqwest::Url::parse(realm)
            .map_err(|e| HttpError::Malformed(format!("token realm {realm:?}: {e}")))?;
        let realm_host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => {
                return Err(HttpError::Malformed(format!(
                    "token realm {realm:?} has no host"
                )))
            }
        };
        // The realm comes from the registry, which a tenant may control.
        self.config
            .policy
            .check_blocked(&realm_host)
            .map_err(|e| HttpError::Refused(format!("token realm: {e}")))?;
        let mut query = vec![("scope", scope)];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let client = if ep.skip_verify {
            &self.unverified
        } else {
            &self.verified
        };
        let mut request = client.get(url).query(&query);
        if let Some(c) = &ep.credential {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let started = Instant::now();
        let result = request.send().await;
        let outcome = match &result {
            Ok(r) => r.status().as_u16().to_string(),
            Err(_) => "error".into(),
        };
        self.metrics
            .record(&realm_host, "GET", &outcome, started.elapsed());
        let response = result.map_err(transport_error)?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = retry_after(response.headers());
            let body = read_limited(response, MAX_ERROR_BODY)
                .await
                .unwrap_or_default();
            return Err(HttpError::Status {
                code: status.as_u16(),
                codes: Vec::new(),
                message: format!("token server: {}", String::from_utf8_lossy(&body).trim()),
                retry_after,
            });
        }
        let body = read_limited(response, MAX_TOKEN_BODY).await?;
        self.metrics.record_bytes(&realm_host, body.len());
        parse_token_response(&body)
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
            *state.paused_until.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Instant::now() + pause);
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
        let body = read_limited(r, limit).await?;
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
        let r = self
            .send(ep, Method::GET, &format!("blobs/{digest}"), &[])
            .await?;
        let body = read_limited(r, limit).await?;
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

    /// Every tag of the repository, following `Link` pagination, stopping after `max_tags`.
    pub async fn list_tags(
        &self,
        ep: &Endpoint,
        page_size: usize,
        max_tags: usize,
    ) -> Result<Vec<String>, HttpError> {
        let mut tags = Vec::new();
        let mut path = format!("tags/list?n={page_size}");
        loop {
            let r = self.send(ep, Method::GET, &path, &[]).await?;
            let next = next_link(r.headers(), &ep.repository);
            let body = read_limited(r, 4 * 1024 * 1024).await?;
            self.metrics.record_bytes(&ep.registry, body.len());
            let got = parse_tag_page(&body)?;
            let empty = got.is_empty();
            tags.extend(got);
            match next {
                Some(p) if !empty && tags.len() < max_tags => path = p,
                _ => break,
            }
        }
        Ok(tags)
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

/// A token server's answer: `token` (or OAuth2's `access_token`) and its lifetime, capped so a
/// server answering with an absurd `expires_in` cannot overflow the clock or pin a token forever.
fn parse_token_response(body: &[u8]) -> Result<(String, Duration), HttpError> {
    #[derive(Deserialize)]
    struct TokenResponse {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_in: Option<u64>,
    }
    let parsed: TokenResponse = serde_json::from_slice(body)
        .map_err(|e| HttpError::Malformed(format!("token response: {e}")))?;
    let token = parsed
        .token
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| HttpError::Malformed("token response has no token".into()))?;
    let lifetime = parsed
        .expires_in
        .map(Duration::from_secs)
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_TOKEN_LIFETIME)
        .min(MAX_TOKEN_LIFETIME);
    Ok((token, lifetime))
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
        if attempt.previous().len() >= 5 {
            return attempt.error("too many redirects");
        }
        attempt.follow()
    });
    let mut builder = reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .redirect(redirects)
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

fn nonzero(n: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN)
}

/// A short pause (a registry's `Retry-After` of a few seconds) is waited out: failing every
/// queued import for it would turn one 429 into hundreds of failure conditions. A longer one
/// fails at once, so the tag says so and is retried after it.
async fn wait_out_pause(state: &RegistryState) -> Result<(), HttpError> {
    while let Some(left) = paused_for(state) {
        if left > MAX_PAUSE_WAIT {
            return Err(HttpError::Paused { retry_after: left });
        }
        tokio::time::sleep(left).await;
    }
    Ok(())
}

fn paused_for(state: &RegistryState) -> Option<Duration> {
    let mut paused = state.paused_until.lock().unwrap_or_else(|p| p.into_inner());
    match *paused {
        Some(until) if until > Instant::now() => Some(until - Instant::now()),
        Some(_) => {
            *paused = None;
            None
        }
        None => None,
    }
}

fn parse_challenge(header: &str) -> Option<Challenge> {
    let challenges = http_auth::parse_challenges(header).ok()?;
    let bearer = challenges
        .iter()
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"));
    if let Some(c) = bearer {
        let param = |name: &str| {
            c.params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_unescaped())
        };
        return Some(Challenge::Bearer {
            realm: param("realm")?,
            service: param("service"),
        });
    }
    challenges
        .iter()
        .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
        .then_some(Challenge::Basic)
}

fn basic_header(c: &Credential) -> Option<HeaderValue> {
    use base64::Engine;
    let raw = format!("{}:{}", c.username, c.password);
    let mut v = HeaderValue::from_str(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
    .ok()?;
    v.set_sensitive(true);
    Some(v)
}

fn bearer_header(token: &str) -> Result<HeaderValue, HttpError> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        HttpError::Malformed("token server sent a token that is not a valid header".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// `Retry-After` in delta-seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate(value)?;
    let now = jiff::Timestamp::now();
    let secs = when.as_second() - now.as_second();
    Some(Duration::from_secs(secs.max(0) as u64))
}

fn httpdate(value: &str) -> Option<jiff::Timestamp> {
    jiff::fmt::rfc2822::parse(value).ok().map(|z| z.timestamp())
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

async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Bytes, HttpError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(HttpError::TooLarge { limit });
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if buf.len() + chunk.len() > limit {
            return Err(HttpError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn error_envelope(body: &[u8]) -> (Vec<String>, String) {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(default)]
        errors: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(e) if !e.errors.is_empty() => {
            let message = e
                .errors
                .iter()
                .map(|x| x.message.as_str())
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            (e.errors.into_iter().map(|x| x.code).collect(), message)
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.trim().chars().take(200).collect();
            (Vec::new(), text)
        }
    }
}

fn transport_error(e: reqwest::Error) -> HttpError {
    let detail = error_chain(&e);
    let lower = detail.to_ascii_lowercase();
    HttpError::Transport {
        connect: e.is_connect(),
        timeout: e.is_timeout(),
        // rustls reading a plain-HTTP answer as a TLS record.
        plain_http: lower.contains("invalidcontenttype")
            || lower.contains("corrupt message")
            || lower.contains("invalid content type")
            || lower.contains("wrong version number"),
        detail,
    }
}

pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Headers, token responses, tag pages and error bodies from any registry (or anything
    /// pretending to be one) never panic the parser; 5 × 3,000 cases.
    mod never_panics {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]
            #[test]
            fn www_authenticate(header in "(Bearer|Basic|bearer|Digest)?[ ,=\"a-z:/.]{0,120}") {
                let _ = parse_challenge(&header);
            }

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
            fn error_bodies(body in proptest::collection::vec(any::<u8>(), 0..300), json in "[\\[\\]{}:,\" 0-9a-zA-Z._/-]{0,200}") {
                let _ = error_envelope(&body);
                let _ = error_envelope(format!("{{\"errors\":[{json}]}}").as_bytes());
            }

            #[test]
            fn token_responses(body in proptest::collection::vec(any::<u8>(), 0..200), token in "[a-zA-Z0-9._-]{0,40}", expires in any::<u64>(), field in "(token|access_token|expires_in|x)") {
                let _ = parse_token_response(&body);
                let json = format!("{{\"{field}\":\"{token}\",\"expires_in\":{expires}}}");
                if let Ok((_, lifetime)) = parse_token_response(json.as_bytes()) {
                    prop_assert!(lifetime <= MAX_TOKEN_LIFETIME && !lifetime.is_zero());
                    // The renewal deadline is computed from this; it must never overflow.
                    let _ = Instant::now() + lifetime.mul_f64(0.9);
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
    fn challenges_parse_bearer_with_quoted_params_and_basic() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/python:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
        assert_eq!(parse_challenge("garbage ,,, ="), None);
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
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

    #[test]
    fn budgets_parse_from_flags() {
        assert_eq!(
            Budget::parse_flag("quay.io=5:9:3").unwrap(),
            (
                "quay.io".to_string(),
                Budget {
                    per_second: 5,
                    burst: 9,
                    concurrency: 3
                }
            )
        );
        assert_eq!(Budget::parse_flag("r:5000=4").unwrap().1.burst, 8);
        assert!(Budget::parse_flag("quay.io").is_err());
        assert!(Budget::parse_flag("quay.io=0").is_err());
        assert!(Budget::parse_flag("quay.io=1:2:3:4").is_err());
    }

    #[test]
    fn error_envelopes_yield_codes_and_messages() {
        let (codes, msg) = error_envelope(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        );
        assert_eq!(codes, vec!["MANIFEST_UNKNOWN"]);
        assert_eq!(msg, "manifest unknown");
        let (codes, msg) = error_envelope(b"<html>oops</html>");
        assert!(codes.is_empty());
        assert_eq!(msg, "<html>oops</html>");
    }
}
