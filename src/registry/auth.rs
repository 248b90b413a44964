//! Registry authentication: the `WWW-Authenticate` challenge, basic credentials, and bearer
//! tokens fetched from the registry's token realm and cached per realm, service, pull scope and
//! credential (so tokens never cross tenants) until shortly before they expire.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};
use serde::Deserialize;

use super::credentials::Credential;
use super::http::{retry_after, transport_error, Endpoint, HttpError};
use super::limits::read_limited;
use super::metrics::RegistryMetrics;
use super::policy::{same_host, RegistryPolicy};
use crate::api::untrusted;

const MAX_TOKEN_BODY: usize = 64 * 1024;
/// The token lifetime the distribution spec assumes when the server names none.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Registries hand out tokens for minutes; anything longer is renewed hourly anyway.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Basic,
}

#[derive(Hash, PartialEq, Eq, Clone)]
pub(super) struct TokenKey {
    realm: String,
    service: Option<String>,
    scope: String,
    /// Fingerprint of the credential (or empty for anonymous): tokens never cross tenants.
    credential: String,
}

/// Repositories remembered per registry: how each wants to be asked.
const CHALLENGES_PER_REGISTRY: usize = 256;

/// One registry's challenges, per repository: a registry may send repositories to different
/// realms, and one repository's bad realm must not fail another's imports (another tenant's,
/// perhaps) before the registry is even asked.
pub(super) struct Challenges(Mutex<lru::LruCache<String, Challenge>>);

impl Default for Challenges {
    fn default() -> Self {
        let size = std::num::NonZeroUsize::new(CHALLENGES_PER_REGISTRY)
            .unwrap_or(std::num::NonZeroUsize::MIN);
        Self(Mutex::new(lru::LruCache::new(size)))
    }
}

impl Challenges {
    fn get(&self, repository: &str) -> Option<Challenge> {
        self.0.lock().get(repository).cloned()
    }

    fn remember(&self, repository: &str, challenge: Challenge) {
        self.0.lock().put(repository.to_string(), challenge);
    }

    fn forget(&self, repository: &str) {
        self.0.lock().pop(repository);
    }
}

/// Bearer tokens by key, until they expire.
#[derive(Default)]
pub(super) struct Tokens(Mutex<HashMap<TokenKey, (String, Instant)>>);

impl Tokens {
    /// The cached token for `key` if it is still valid at `now`. Expired tokens are swept on a
    /// miss only, so the common case (every request to a registry) is one lookup.
    fn valid(&self, key: &TokenKey, now: Instant) -> Option<String> {
        let mut tokens = self.0.lock();
        match tokens.get(key) {
            Some((token, expires)) if *expires > now => Some(token.clone()),
            _ => {
                tokens.retain(|_, (_, expires)| *expires > now);
                None
            }
        }
    }

    fn insert(&self, key: TokenKey, token: String, expires: Instant) {
        self.0.lock().insert(key, (token, expires));
    }

    fn forget(&self, key: &TokenKey) {
        self.0.lock().remove(key);
    }
}

/// Authentication for every registry: the token cache, and the policy and metrics every token
/// request passes (a token realm is a host the registry names, so it is checked like one).
pub(super) struct Auth {
    tokens: Tokens,
    policy: Arc<RegistryPolicy>,
    metrics: Arc<RegistryMetrics>,
}

impl Auth {
    pub(super) fn new(policy: Arc<RegistryPolicy>, metrics: Arc<RegistryMetrics>) -> Self {
        Self {
            tokens: Tokens::default(),
            policy,
            metrics,
        }
    }

    /// The Authorization header to send first: a cached token for this scope, or basic
    /// credentials for a repository known to want them, or a fresh token when its realm is
    /// already known (saving the 401 round trip). When that realm fails, the challenge is
    /// forgotten and the request goes without credentials, so the registry's answer names the
    /// realm as it is now: a stale or bad realm costs one request, not every import after it.
    pub(super) async fn first_header(
        &self,
        client: &reqwest::Client,
        ep: &Endpoint,
        known: &Challenges,
    ) -> Result<Option<HeaderValue>, HttpError> {
        match known.get(&ep.repository) {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(ep.credential.as_ref().and_then(basic_header)),
            Some(Challenge::Bearer { realm, service }) => {
                match self.token(client, ep, &realm, service.as_deref()).await {
                    Ok(header) => Ok(Some(header)),
                    Err(e) => {
                        tracing::debug!(registry = %ep.registry, repository = %ep.repository, error = %e, "cached token realm failed; asking the registry for a fresh challenge");
                        known.forget(&ep.repository);
                        Ok(None)
                    }
                }
            }
        }
    }

    /// The header that answers a 401's challenge (remembered for the registry's next requests),
    /// or None when the challenge cannot be answered.
    pub(super) async fn answer_challenge(
        &self,
        client: &reqwest::Client,
        ep: &Endpoint,
        known: &Challenges,
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
        known.remember(&ep.repository, challenge.clone());
        match challenge {
            Challenge::Basic => Ok(ep.credential.as_ref().and_then(basic_header)),
            Challenge::Bearer { realm, service } => {
                // A 401 despite a cached token means it was revoked or expired early.
                self.forget_token(ep, &realm, service.as_deref());
                self.token(client, ep, &realm, service.as_deref())
                    .await
                    .map(Some)
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
        self.tokens.forget(&key);
    }

    /// A bearer token for the endpoint's pull scope, from the cache until it expires.
    async fn token(
        &self,
        client: &reqwest::Client,
        ep: &Endpoint,
        realm: &str,
        service: Option<&str>,
    ) -> Result<HeaderValue, HttpError> {
        let key = Self::token_key(ep, realm, service);
        let now = Instant::now();
        if let Some(token) = self.tokens.valid(&key, now) {
            return bearer_header(&token);
        }
        let (token, lifetime) = self
            .fetch_token(client, ep, realm, service, &key.scope)
            .await?;
        // Renew a little early so a token never expires between check and use.
        let expires = untrusted::later(now, lifetime.mul_f64(0.9));
        let header = bearer_header(&token)?;
        self.tokens.insert(key, token, expires);
        Ok(header)
    }

    async fn fetch_token(
        &self,
        client: &reqwest::Client,
        ep: &Endpoint,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<(String, Duration), HttpError> {
        let (url, realm_host) = self.checked_realm(ep, realm)?;
        let mut query = vec![("scope", scope)];
        if let Some(s) = service {
            query.push(("service", s));
        }
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
            // The body is the token server's, possibly an internal service a tenant aimed the
            // realm at: it is never reflected into tenant-readable conditions or Events.
            return Err(HttpError::Status {
                code: status.as_u16(),
                codes: Vec::new(),
                message: format!("the token server answered HTTP {}", status.as_u16()),
                retry_after: retry_after(response.headers()),
            });
        }
        let body = read_limited(response, MAX_TOKEN_BODY).await?;
        self.metrics.record_bytes(&realm_host, body.len());
        parse_token_response(&body)
    }
}

impl Auth {
    /// The realm's URL and `host[:port]`, if the policy lets the operator go there with this
    /// endpoint's credentials. The realm comes from the registry, which a tenant may control: a
    /// realm on another host passes the same policy as a registry (allow and block lists; its
    /// addresses are checked again when resolved), and plain HTTP is for insecure registries
    /// only, so a password never crosses the network in clear text unasked.
    fn checked_realm(
        &self,
        ep: &Endpoint,
        realm: &str,
    ) -> Result<(reqwest::Url, String), HttpError> {
        let shown = || untrusted::clean(realm, 256);
        let url = reqwest::Url::parse(realm)
            .map_err(|e| HttpError::Malformed(format!("token realm {:?}: {e}", shown())))?;
        let realm_host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => {
                return Err(HttpError::Malformed(format!(
                    "token realm {:?} has no host",
                    shown()
                )))
            }
        };
        match url.scheme() {
            "https" => {}
            "http" if ep.skip_verify => {}
            _ => {
                return Err(HttpError::Refused(format!(
                    "the registry's token realm {:?} is not HTTPS, and credentials are never sent \
                     in clear text: fix the registry's auth configuration, or, if plain HTTP is \
                     acceptable there, mark the registry insecure",
                    shown()
                )))
            }
        }
        let checked = match same_host(&realm_host, &ep.registry) {
            true => self.policy.check_blocked(&realm_host),
            false => self.policy.check_registry(&realm_host),
        };
        checked.map_err(|e| HttpError::Refused(format!("token realm: {e}")))?;
        Ok((url, realm_host))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Challenges and token responses from any registry (or anything pretending to be one) never
    /// panic the parser; 2 × 3,000 cases.
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
            fn token_responses(body in proptest::collection::vec(any::<u8>(), 0..200), token in "[a-zA-Z0-9._-]{0,40}", expires in any::<u64>(), field in "(token|access_token|expires_in|x)") {
                let _ = parse_token_response(&body);
                let json = format!("{{\"{field}\":\"{token}\",\"expires_in\":{expires}}}");
                if let Ok((_, lifetime)) = parse_token_response(json.as_bytes()) {
                    prop_assert!(lifetime <= MAX_TOKEN_LIFETIME && !lifetime.is_zero());
                    // The renewal deadline is computed from this; it must never overflow.
                    let _ = Instant::now() + lifetime.mul_f64(0.9);
                }
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
}
