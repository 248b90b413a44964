//! Running the kubelet's credential provider plugins (`credentialprovider.kubelet.k8s.io`): an
//! executable from the bin dir, the request on stdin, the response on stdout, no shell, a
//! timeout, bounded output. A plugin runs once per cache key (`Image`, `Registry`, `Global`,
//! as it answers) per validity period, and concurrent lookups of one key share one run.
//!
//! Token mode (`tokenAttributes`): the plugin is given a short-lived token of a ServiceAccount
//! of the stream's own namespace, and everything it answers is cached under that
//! ServiceAccount, so one namespace's cloud identity never serves another. Without it, a
//! provider speaks for the operator itself, as a node's provider speaks for the node.
//!
//! A failing plugin never fails the operator: its failure (the provider's name and a short
//! excerpt of its stderr, never its stdout, which may hold credentials) goes to the tag.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use super::accounts::{Account, ServiceAccounts};
use super::config::{self, Pattern, ProviderConfig, TokenAttributes};
use super::keyring::{hex, Credential, Identity};
use crate::api::{duration, untrusted};
use crate::api::{
    ALLOW_CREDENTIAL_PROVIDER, CREDENTIAL_SERVICE_ACCOUNT, DEFAULT_CREDENTIAL_SERVICE_ACCOUNT,
};

/// The kubelet's own limit for one plugin run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_STDOUT: u64 = 1024 * 1024;
const STDERR_KEPT: u64 = 64 * 1024;
const EXCERPT_CHARS: usize = 300;
/// The shortest lifetime the TokenRequest API grants.
const TOKEN_SECONDS: i64 = 600;
/// Expired cache entries are swept every this many insertions.
const SWEEP_EVERY: usize = 256;

/// A provider that could not answer, for the tag's condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderFailure {
    pub provider: String,
    pub detail: String,
}

/// What the providers matching one image gave: their credentials in config order, and the
/// first failure, if any.
#[derive(Debug, Default)]
pub struct Provided {
    pub credentials: Vec<Credential>,
    pub failure: Option<ProviderFailure>,
}

/// The configured providers, in config order.
pub struct Providers {
    plugins: Vec<Arc<Plugin>>,
}

impl Providers {
    /// Read the config and find every provider's executable, as the kubelet does at start.
    pub fn load(
        config: &Path,
        bin_dir: &Path,
        timeout: Duration,
        accounts: Option<Arc<dyn ServiceAccounts>>,
    ) -> Result<Self, String> {
        let configs = config::load(config)?;
        let mut plugins = Vec::new();
        for config in configs {
            let bin = bin_dir.join(&config.name);
            executable(&bin).map_err(|e| format!("provider {:?}: {e}", config.name))?;
            if config.token.is_some() && accounts.is_none() {
                return Err(format!(
                    "provider {:?} uses service account tokens, which need API access",
                    config.name
                ));
            }
            plugins.push(Arc::new(Plugin {
                config,
                bin,
                timeout,
                accounts: accounts.clone(),
                state: Mutex::default(),
                minting: tokio::sync::Mutex::default(),
            }));
        }
        Ok(Self { plugins })
    }

    pub fn names(&self) -> Vec<&str> {
        self.plugins
            .iter()
            .map(|p| p.config.name.as_str())
            .collect()
    }

    pub fn uses_service_account_tokens(&self) -> bool {
        self.plugins.iter().any(|p| p.config.token.is_some())
    }

    /// Whether what `image` imports with depends on the namespace (a token-mode provider
    /// matches it): then identical requests of two namespaces must not share a flight.
    pub fn per_namespace(&self, image: &str) -> bool {
        self.plugins
            .iter()
            .any(|p| p.config.token.is_some() && p.config.matches(image))
    }

    /// Credentials for `image` (`registry[:port]/repository`) from every matching provider.
    pub async fn credentials(&self, image: &str, identity: Option<&Identity>) -> Provided {
        let mut provided = Provided::default();
        for plugin in self.plugins.iter().filter(|p| p.config.matches(image)) {
            match plugin.credentials(image, identity).await {
                Ok(found) => provided.credentials.extend(found),
                Err(detail) => {
                    warn!(provider = %plugin.config.name, image, %detail, "credential provider failed");
                    provided.failure.get_or_insert(ProviderFailure {
                        provider: plugin.config.name.clone(),
                        detail,
                    });
                }
            }
        }
        provided
    }
}

fn executable(bin: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not an executable file", bin.display()));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Image,
    Registry,
    Global,
}

type Auth = Arc<Vec<(Pattern, Credential)>>;

struct Answer {
    key_type: KeyType,
    auth: Auth,
}

/// A shared run, and the image it ran for.
type Flight = Shared<BoxFuture<'static, Result<(Arc<Answer>, String), String>>>;

struct Cached {
    auth: Auth,
    expires: Instant,
}

/// A minted token and the ServiceAccount it speaks for, kept until 80% of its life.
#[derive(Clone)]
struct Minted {
    token: String,
    uid: String,
    annotations: BTreeMap<String, String>,
    renew_at: Instant,
    expires: Instant,
}

/// Who is asking: the cache key part that separates identities, and what the plugin is given.
#[derive(Clone, Default)]
struct Caller {
    key: String,
    token: Option<String>,
    annotations: BTreeMap<String, String>,
    /// Credentials fetched with a per-token cache must not outlive the token.
    until: Option<Instant>,
}

/// One caller's cached answers, by the key type each answer named.
#[derive(Default)]
struct Answers {
    by_image: HashMap<String, Cached>,
    by_registry: HashMap<String, Cached>,
    global: Option<Cached>,
}

impl Answers {
    /// Looked up as the kubelet does: by image, then registry, then global.
    fn get(&self, image: &str, registry: &str, now: Instant) -> Option<Auth> {
        let live = |c: &Cached| (c.expires > now).then(|| c.auth.clone());
        (self.by_image.get(image).and_then(live))
            .or_else(|| self.by_registry.get(registry).and_then(live))
            .or_else(|| self.global.as_ref().and_then(live))
    }

    fn put(&mut self, key_type: KeyType, image: &str, registry: &str, cached: Cached) {
        match key_type {
            KeyType::Image => {
                self.by_image.insert(image.to_string(), cached);
            }
            KeyType::Registry => {
                self.by_registry.insert(registry.to_string(), cached);
            }
            KeyType::Global => self.global = Some(cached),
        }
    }

    /// Drops expired answers; `true` when none is left.
    fn sweep(&mut self, now: Instant) -> bool {
        self.by_image.retain(|_, c| c.expires > now);
        self.by_registry.retain(|_, c| c.expires > now);
        self.global = self.global.take().filter(|c| c.expires > now);
        self.by_image.is_empty() && self.by_registry.is_empty() && self.global.is_none()
    }
}

#[derive(Default)]
struct State {
    /// Cached answers per caller (the identity part of the kubelet's cache key).
    cache: HashMap<String, Answers>,
    flights: HashMap<String, Flight>,
    /// The cache key type the plugin last answered with: concurrent lookups are keyed by it,
    /// so a `Registry` plugin runs once for many images of one registry.
    learned: Option<KeyType>,
    tokens: HashMap<(String, String), Minted>,
    inserts: usize,
}

struct Plugin {
    config: ProviderConfig,
    bin: PathBuf,
    timeout: Duration,
    accounts: Option<Arc<dyn ServiceAccounts>>,
    state: Mutex<State>,
    /// One TokenRequest at a time per plugin: a burst of imports mints one token.
    minting: tokio::sync::Mutex<()>,
}

impl Plugin {
    async fn credentials(
        self: &Arc<Self>,
        image: &str,
        identity: Option<&Identity>,
    ) -> Result<Vec<Credential>, String> {
        let caller = match &self.config.token {
            None => Caller::default(),
            Some(attributes) => match self.caller(identity, attributes).await? {
                Some(caller) => caller,
                None => return Ok(Vec::new()),
            },
        };
        let registry = image.split('/').next().unwrap_or(image);
        // Twice at most: a run shared with another image of the registry may answer for that
        // image only (`Image`), and then this image needs its own run.
        for _ in 0..2 {
            if let Some(auth) = self.cached(&caller.key, image, registry) {
                return Ok(matching(&auth, image));
            }
            let (answer, mine) = self.run_shared(image, registry, &caller).await?;
            if mine || answer.key_type != KeyType::Image {
                return Ok(matching(&answer.auth, image));
            }
        }
        let answer = self.run_and_remember(image, &caller).await?;
        Ok(matching(&answer.auth, image))
    }

    fn cached(&self, caller: &str, image: &str, registry: &str) -> Option<Auth> {
        let state = self.state.lock();
        state
            .cache
            .get(caller)?
            .get(image, registry, Instant::now())
    }

    /// Join the run for this key, or start it; `true` when the run was for this very image.
    async fn run_shared(
        self: &Arc<Self>,
        image: &str,
        registry: &str,
        caller: &Caller,
    ) -> Result<(Arc<Answer>, bool), String> {
        let flight = {
            let mut state = self.state.lock();
            let scope = match state.learned {
                Some(KeyType::Image) => image,
                Some(KeyType::Global) => "",
                Some(KeyType::Registry) | None => registry,
            };
            let key = format!("{}\0{scope}", caller.key);
            state
                .flights
                .entry(key.clone())
                .or_insert_with(|| {
                    let (this, image, caller) = (self.clone(), image.to_string(), caller.clone());
                    async move {
                        let result = this.run_and_remember(&image, &caller).await;
                        this.state.lock().flights.remove(&key);
                        result.map(|answer| (answer, image))
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        let (answer, ran_for) = flight.await?;
        Ok((answer, ran_for == image))
    }

    async fn run_and_remember(&self, image: &str, caller: &Caller) -> Result<Arc<Answer>, String> {
        let (answer, duration) = self.run(image, caller).await?;
        let answer = Arc::new(answer);
        self.remember(image, caller, &answer, duration);
        Ok(answer)
    }

    /// Cache an answer under its key type for `duration` (absent: the config's default; zero:
    /// not cached), never beyond the token it was fetched with when the cache is per token.
    fn remember(&self, image: &str, caller: &Caller, answer: &Answer, duration: Option<Duration>) {
        let mut state = self.state.lock();
        state.learned = Some(answer.key_type);
        let duration = duration.unwrap_or(self.config.default_cache_duration);
        if duration.is_zero() {
            return;
        }
        let mut expires = untrusted::later(Instant::now(), duration);
        if let Some(until) = caller.until {
            expires = expires.min(until);
        }
        let registry = image.split('/').next().unwrap_or(image);
        let auth = answer.auth.clone();
        let answers = state.cache.entry(caller.key.clone()).or_default();
        answers.put(answer.key_type, image, registry, Cached { auth, expires });
        state.inserts += 1;
        if state.inserts.is_multiple_of(SWEEP_EVERY) {
            let now = Instant::now();
            state.cache.retain(|_, answers| !answers.sweep(now));
        }
    }

    /// Token mode: the caller for `identity`, or `None` when the ServiceAccount lacks an
    /// annotation the provider requires (the kubelet's opt-in: the provider is skipped).
    async fn caller(
        &self,
        identity: Option<&Identity>,
        attributes: &TokenAttributes,
    ) -> Result<Option<Caller>, String> {
        let Some(identity) = identity else {
            return Ok(None);
        };
        let minted = self.minted(identity, attributes).await?;
        if let Some(missing) = attributes
            .required_annotations
            .iter()
            .find(|k| !minted.annotations.contains_key(*k))
        {
            debug!(provider = %self.config.name, namespace = %identity.namespace, service_account = %identity.service_account, annotation = %missing, "service account lacks a required annotation; provider skipped");
            return Ok(None);
        }
        let mut key = format!(
            "{}\0{}\0{}",
            identity.namespace, identity.service_account, minted.uid
        );
        for (k, v) in &minted.annotations {
            key.push_str(&format!("\0{k}={v}"));
        }
        if attributes.per_token {
            use sha2::Digest;
            key.push('\0');
            key.push_str(&hex(&sha2::Sha256::digest(minted.token.as_bytes())));
        }
        Ok(Some(Caller {
            key,
            token: Some(minted.token),
            annotations: minted.annotations,
            until: attributes.per_token.then_some(minted.expires),
        }))
    }

    async fn minted(
        &self,
        identity: &Identity,
        attributes: &TokenAttributes,
    ) -> Result<Minted, String> {
        let at = (identity.namespace.clone(), identity.service_account.clone());
        let fresh = |state: &State| {
            state
                .tokens
                .get(&at)
                .filter(|m| m.renew_at > Instant::now())
                .cloned()
        };
        if let Some(m) = fresh(&self.state.lock()) {
            return Ok(m);
        }
        let _one_at_a_time = self.minting.lock().await;
        if let Some(m) = fresh(&self.state.lock()) {
            return Ok(m);
        }
        let accounts = self
            .accounts
            .as_ref()
            .ok_or("service account tokens need API access")?;
        let (ns, name) = (&identity.namespace, &identity.service_account);
        let account = accounts.account(ns, name).await?.ok_or_else(|| {
            format!(
                "the ServiceAccount {ns}/{name} does not exist: create it, or name another \
                 with the stream annotation {CREDENTIAL_SERVICE_ACCOUNT}"
            )
        })?;
        Self::opted_in(ns, name, &account)?;
        let (token, valid) = accounts
            .token(ns, name, &attributes.audience, TOKEN_SECONDS)
            .await?;
        let wanted = |k: &String| {
            attributes.required_annotations.contains(k)
                || attributes.optional_annotations.contains(k)
        };
        let now = Instant::now();
        let minted = Minted {
            token,
            uid: account.uid,
            annotations: account
                .annotations
                .into_iter()
                .filter(|(k, _)| wanted(k))
                .collect(),
            renew_at: untrusted::later(now, valid.mul_f64(0.8)),
            expires: untrusted::later(now, valid),
        };
        self.state.lock().tokens.insert(at, minted.clone());
        Ok(minted)
    }

    /// A ServiceAccount other than `default` speaks for a namespace's imports only when it says so.
    fn opted_in(ns: &str, name: &str, account: &Account) -> Result<(), String> {
        let allowed = account
            .annotations
            .get(ALLOW_CREDENTIAL_PROVIDER)
            .map(String::as_str);
        if name == DEFAULT_CREDENTIAL_SERVICE_ACCOUNT || allowed == Some("true") {
            return Ok(());
        }
        Err(format!(
        "the ServiceAccount {ns}/{name} has not opted in to speak for image imports: annotate it \
         (kubectl annotate serviceaccount {name} -n {ns} {ALLOW_CREDENTIAL_PROVIDER}=true), or \
         remove the stream annotation {CREDENTIAL_SERVICE_ACCOUNT} to use default"
    ))
    }

    /// One run of the executable: the answer and the cache duration it asked for.
    async fn run(
        &self,
        image: &str,
        caller: &Caller,
    ) -> Result<(Answer, Option<Duration>), String> {
        let mut request = serde_json::json!({
            "apiVersion": self.config.api_version,
            "kind": "CredentialProviderRequest",
            "image": image,
        });
        if let Some(token) = &caller.token {
            request["serviceAccountToken"] = token.as_str().into();
            request["serviceAccountAnnotations"] = serde_json::json!(caller.annotations);
        }
        let (stdout, stderr) = self.exec(request.to_string().into_bytes()).await?;
        self.answer(&stdout)
            .map_err(|e| format!("{e}{}", excerpt(&stderr)))
    }

    async fn exec(&self, stdin: Vec<u8>) -> Result<(Vec<u8>, Vec<u8>), String> {
        let mut child = tokio::process::Command::new(&self.bin)
            .args(&self.config.args)
            .envs(self.config.env.iter().map(|e| (&e.name, &e.value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        let input = child.stdin.take();
        let output = child.stdout.take();
        // Read on its own so a chatty stderr can never block the plugin's stdout.
        let errors = child.stderr.take().map(|mut err| {
            tokio::spawn(async move {
                let mut kept = Vec::new();
                let _ = (&mut err).take(STDERR_KEPT).read_to_end(&mut kept).await;
                let _ = tokio::io::copy(&mut err, &mut tokio::io::sink()).await;
                kept
            })
        });
        let talk = async {
            if let Some(mut input) = input {
                // A plugin that ignores its stdin is not an error.
                let _ = input.write_all(&stdin).await;
            }
            let mut out = Vec::new();
            if let Some(output) = output {
                output
                    .take(MAX_STDOUT + 1)
                    .read_to_end(&mut out)
                    .await
                    .map_err(|e| format!("cannot read its output: {e}"))?;
            }
            if out.len() as u64 > MAX_STDOUT {
                return Err(format!("printed more than {} KiB", MAX_STDOUT / 1024));
            }
            let status = child.wait().await.map_err(|e| e.to_string())?;
            Ok((out, status))
        };
        let (out, status) = match tokio::time::timeout(self.timeout, talk).await {
            Ok(done) => done?,
            Err(_) => {
                return Err(format!(
                    "did not answer within {}s and was stopped",
                    self.timeout.as_secs_f64()
                ))
            }
        };
        let err = match errors {
            Some(task) => task.await.unwrap_or_default(),
            None => Vec::new(),
        };
        if !status.success() {
            return Err(format!("exited with {status}{}", excerpt(&err)));
        }
        Ok((out, err))
    }

    fn answer(&self, stdout: &[u8]) -> Result<(Answer, Option<Duration>), String> {
        // The output is never quoted in a message: it may hold credentials.
        let head: Head = serde_json::from_slice(stdout)
            .map_err(|_| "printed something that is not a JSON CredentialProviderResponse (not shown: it may hold credentials)".to_string())?;
        if head.api_version.as_deref() != Some(self.config.api_version.as_str()) {
            return Err(format!(
                "answered with apiVersion {:?}, but the config says {}",
                head.api_version.unwrap_or_default(),
                self.config.api_version
            ));
        }
        if head.kind.as_deref() != Some("CredentialProviderResponse") {
            return Err(format!(
                "answered with kind {:?}, expected CredentialProviderResponse",
                head.kind.unwrap_or_default()
            ));
        }
        let response: Response = serde_json::from_slice(stdout).map_err(|_| {
            "answered with a CredentialProviderResponse that cannot be read (not shown: it may hold credentials)".to_string()
        })?;
        let key_type = match response.cache_key_type.as_str() {
            "Image" => KeyType::Image,
            "Registry" => KeyType::Registry,
            "Global" => KeyType::Global,
            other => {
                return Err(format!(
                    "answered with cacheKeyType {other:?}, expected Image, Registry or Global"
                ))
            }
        };
        let duration = response
            .cache_duration
            .as_deref()
            .map(duration::parse)
            .transpose()
            .map_err(|e| format!("answered with cacheDuration {e}"))?;
        let source = format!("credential provider {}", self.config.name);
        // Reverse order of keys, as the kubelet's keyring tries them: the more specific first.
        let auth = response
            .auth
            .into_iter()
            .rev()
            .filter_map(|(key, a)| {
                let pattern = Pattern::parse(&key).ok()?;
                let credential = Credential {
                    username: a.username,
                    password: a.password,
                    source: source.clone(),
                };
                Some((pattern, credential))
            })
            .collect();
        Ok((
            Answer {
                key_type,
                auth: Arc::new(auth),
            },
            duration,
        ))
    }
}

fn matching(auth: &Auth, image: &str) -> Vec<Credential> {
    auth.iter()
        .filter(|(p, _)| p.matches(image))
        .map(|(_, c)| c.clone())
        .collect()
}

/// A short, single-line excerpt of a plugin's stderr for a condition message.
fn excerpt(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let visible: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = visible.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(EXCERPT_CHARS) {
        None if line.is_empty() => String::new(),
        None => format!("; stderr: {line}"),
        Some((at, _)) => format!("; stderr: {}…", &line[..at]),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    api_version: Option<String>,
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    cache_key_type: String,
    cache_duration: Option<String>,
    #[serde(default)]
    auth: BTreeMap<String, AuthConfig>,
}

#[derive(Deserialize)]
struct AuthConfig {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin() -> Plugin {
        let config = config::parse(
            "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- name: p\n  matchImages: [\"*.example.com\"]\n  defaultCacheDuration: 1h\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n",
        )
        .unwrap()
        .remove(0);
        Plugin {
            config,
            bin: PathBuf::from("/nonexistent"),
            timeout: DEFAULT_TIMEOUT,
            accounts: None,
            state: Mutex::default(),
            minting: tokio::sync::Mutex::default(),
        }
    }

    fn answer(key_type: KeyType, user: &str) -> Answer {
        let credential = Credential {
            username: user.into(),
            password: "pw".into(),
            source: "credential provider p".into(),
        };
        let auth = vec![(Pattern::parse("*.example.com").unwrap(), credential)];
        Answer {
            key_type,
            auth: Arc::new(auth),
        }
    }

    fn user(p: &Plugin, caller: &str, image: &str) -> Option<String> {
        let registry = image.split('/').next().unwrap();
        p.cached(caller, image, registry)
            .map(|auth| matching(&auth, image)[0].username.clone())
    }

    /// The kubelet's cache: an answer is kept under the key type it names, and looked up by
    /// image, then registry, then globally; separately per caller (identity).
    #[test]
    fn answers_are_cached_under_their_key_type() {
        let p = plugin();
        let none = Caller::default();
        p.remember(
            "a.example.com/app",
            &none,
            &answer(KeyType::Image, "image"),
            None,
        );
        assert_eq!(user(&p, "", "a.example.com/app").as_deref(), Some("image"));
        assert_eq!(
            user(&p, "", "a.example.com/other"),
            None,
            "Image: that image only"
        );

        p.remember(
            "a.example.com/app",
            &none,
            &answer(KeyType::Registry, "registry"),
            None,
        );
        assert_eq!(
            user(&p, "", "a.example.com/other").as_deref(),
            Some("registry")
        );
        assert_eq!(
            user(&p, "", "a.example.com/app").as_deref(),
            Some("image"),
            "image first"
        );
        assert_eq!(
            user(&p, "", "b.example.com/app"),
            None,
            "Registry: that registry only"
        );

        p.remember(
            "b.example.com/app",
            &none,
            &answer(KeyType::Global, "global"),
            None,
        );
        assert_eq!(user(&p, "", "c.example.com/x").as_deref(), Some("global"));
        assert_eq!(
            user(&p, "someone-else", "c.example.com/x"),
            None,
            "per caller"
        );
    }

    #[test]
    fn cache_durations_follow_the_kubelet() {
        let p = plugin();
        let none = Caller::default();
        // Zero: not cached at all.
        p.remember(
            "a.example.com/app",
            &none,
            &answer(KeyType::Global, "u"),
            Some(Duration::ZERO),
        );
        assert_eq!(user(&p, "", "a.example.com/app"), None);
        // Absent: the config's defaultCacheDuration (1h).
        p.remember(
            "a.example.com/app",
            &none,
            &answer(KeyType::Global, "u"),
            None,
        );
        let expires = |p: &Plugin| {
            let state = p.state.lock();
            state
                .cache
                .values()
                .next()
                .and_then(|a| a.global.as_ref())
                .map(|c| c.expires)
                .unwrap()
        };
        let left = expires(&p) - Instant::now();
        assert!(left > Duration::from_secs(3590) && left <= Duration::from_secs(3600));
        // Per-token caching never outlives the token.
        let p = plugin();
        let soon = Instant::now() + Duration::from_secs(60);
        let caller = Caller {
            until: Some(soon),
            ..Caller::default()
        };
        p.remember(
            "a.example.com/app",
            &caller,
            &answer(KeyType::Global, "u"),
            Some(Duration::from_secs(7200)),
        );
        assert_eq!(expires(&p), soon);
        // Expired entries are not served.
        p.state
            .lock()
            .cache
            .values_mut()
            .filter_map(|a| a.global.as_mut())
            .for_each(|c| c.expires = Instant::now());
        assert_eq!(user(&p, "", "a.example.com/app"), None);
    }

    #[test]
    fn stderr_excerpts_are_one_short_line() {
        assert_eq!(excerpt(b""), "");
        assert_eq!(excerpt(b"  boom\n\tagain \x07\n"), "; stderr: boom again");
        let long = "x".repeat(1000);
        let e = excerpt(long.as_bytes());
        assert!(e.ends_with('…') && e.chars().count() < 320, "{e}");
    }
}
