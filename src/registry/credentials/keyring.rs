//! Pull-secret credentials with kubelet/OpenShift keyring matching: the host and port must be
//! identical (so a key without `:80` never matches an image with `:80`), `*.` globs match one
//! label each, and the longest path prefix wins. Only secrets of the stream's own namespace are
//! ever passed in. Deliberately no credential helpers: a tenant's secret must never make the
//! operator run a program (only the administrator's credential providers run, `plugins.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

use super::super::ImageRef;
use crate::api::EXCLUDE_SECRET;

pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
pub const DOCKER_CFG: &str = "kubernetes.io/dockercfg";

#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
    /// `namespace/name` of the secret, for messages.
    pub source: String,
}

impl Credential {
    /// Identifies the credential without revealing it: tokens, clients and shared flights are
    /// keyed by it so they never cross tenants.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        hex(&sha2::Sha256::digest(format!(
            "{}\0{}",
            self.username, self.password
        )))
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({} from {})", self.username, self.source)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    host: String,
    port: Option<String>,
    path: String,
    key: String,
    credential: Credential,
}

/// The credentials of one namespace, cheap to clone: its pull secrets, and who it is to a
/// credential provider in service-account-token mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    entries: Arc<Vec<Entry>>,
    identity: Option<Arc<Identity>>,
}

/// The ServiceAccount a stream's imports speak as to a token-mode credential provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub namespace: String,
    pub service_account: String,
}

#[derive(Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// A secret that could not be used, with the reason (logged as a warning by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedSecret {
    pub secret: String,
    pub reason: String,
}

impl Keyring {
    /// Build the keyring from a namespace's secrets; unusable ones are returned, never fatal.
    pub fn from_secrets<'a>(
        secrets: impl IntoIterator<Item = &'a Secret>,
    ) -> (Self, Vec<SkippedSecret>) {
        let mut entries = Vec::new();
        let mut skipped = Vec::new();
        for secret in secrets {
            match entries_of(secret) {
                Ok(found) => entries.extend(found),
                Err(reason) => skipped.push(SkippedSecret {
                    secret: secret_name(secret),
                    reason,
                }),
            }
        }
        // Reverse lexicographic order of keys, as the kubelet keyring iterates: the more specific
        // `quay.io/org` is tried before `quay.io`.
        entries.sort_by(|a, b| b.key.cmp(&a.key));
        (
            Self {
                entries: Arc::new(entries),
                identity: None,
            },
            skipped,
        )
    }

    /// The keyring of several secrets, each parsed once on its own (`from_secrets` of one).
    pub fn merged<'a>(parts: impl IntoIterator<Item = &'a Keyring>) -> Self {
        let mut entries: Vec<Entry> = parts
            .into_iter()
            .flat_map(|k| k.entries.iter().cloned())
            .collect();
        entries.sort_by(|a, b| b.key.cmp(&a.key));
        Self {
            entries: Arc::new(entries),
            identity: None,
        }
    }

    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = Some(Arc::new(identity));
        self
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_deref()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The credential for `image`: the matching key with the longest path, ties broken by the
    /// reverse lexicographic order of keys.
    pub fn lookup(&self, image: &ImageRef) -> Option<&Credential> {
        let (host, port) = split_port(image.registry());
        let repo = image.repository();
        self.entries
            .iter()
            .filter(|e| e.port.as_deref() == port && host_matches(&e.host, host))
            .filter(|e| path_prefix(&e.path, repo))
            .max_by(|a, b| a.path.len().cmp(&b.path.len()).then(b.key.cmp(&a.key)))
            .map(|e| &e.credential)
    }

    /// A stable fingerprint of the usable credentials; changes when a pull secret changes.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for e in self.entries.iter() {
            for part in [&e.key, &e.credential.username, &e.credential.password] {
                h.update(part.as_bytes());
                h.update([0]);
            }
        }
        hex(&h.finalize()[..8])
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn secret_name(secret: &Secret) -> String {
    format!(
        "{}/{}",
        secret.metadata.namespace.as_deref().unwrap_or(""),
        secret.metadata.name.as_deref().unwrap_or("")
    )
}

fn entries_of(secret: &Secret) -> Result<Vec<Entry>, String> {
    let excluded = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EXCLUDE_SECRET))
        .is_some_and(|v| v == "true");
    if excluded {
        return Ok(Vec::new());
    }
    let data = secret.data.as_ref();
    let (auths, field) = match secret.type_.as_deref() {
        Some(DOCKER_CONFIG_JSON) => {
            let raw = data
                .and_then(|d| d.get(".dockerconfigjson"))
                .ok_or("has no .dockerconfigjson key")?;
            let cfg: DockerConfigJson = serde_json::from_slice(&raw.0)
                .map_err(|e| format!(".dockerconfigjson is not valid JSON: {e}"))?;
            (cfg.auths, ".dockerconfigjson")
        }
        Some(DOCKER_CFG) => {
            let raw = data
                .and_then(|d| d.get(".dockercfg"))
                .ok_or("has no .dockercfg key")?;
            let auths: BTreeMap<String, AuthEntry> = serde_json::from_slice(&raw.0)
                .map_err(|e| format!(".dockercfg is not valid JSON: {e}"))?;
            (auths, ".dockercfg")
        }
        _ => return Ok(Vec::new()),
    };
    let source = secret_name(secret);
    auths
        .into_iter()
        .map(|(key, auth)| {
            let credential =
                credential_of(&auth, &source).map_err(|e| format!("{field} entry {key:?}: {e}"))?;
            let (host, port, path) = parse_key(&key);
            Ok(Entry {
                host,
                port,
                path,
                key,
                credential,
            })
        })
        .collect()
}

fn credential_of(auth: &AuthEntry, source: &str) -> Result<Credential, String> {
    let (username, password) = match (&auth.username, &auth.password, &auth.auth) {
        (Some(u), Some(p), _) if !u.is_empty() => (u.clone(), p.clone()),
        (_, _, Some(encoded)) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| "auth is not base64".to_string())?;
            let text = String::from_utf8(decoded).map_err(|_| "auth is not UTF-8".to_string())?;
            let (u, p) = text
                .split_once(':')
                .ok_or("auth is not of the form user:password")?;
            (u.to_string(), p.to_string())
        }
        _ => return Err("neither auth nor username/password is set".into()),
    };
    Ok(Credential {
        username,
        password,
        source: source.to_string(),
    })
}

/// Normalise a config key (`https://host:port/v1/`, `host/path`, `*.host`) to host, port, path.
fn parse_key(key: &str) -> (String, Option<String>, String) {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path
        .strip_prefix("v1/")
        .or_else(|| path.strip_prefix("v2/"))
        .unwrap_or(path)
        .trim_matches('/');
    let path = if path == "v1" || path == "v2" {
        ""
    } else {
        path
    };
    let (host, port) = split_port(hostport);
    let host = canonical_host(&host.to_ascii_lowercase());
    (host, port.map(str::to_string), path.to_string())
}

fn canonical_host(host: &str) -> String {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        other => other.to_string(),
    }
}

fn split_port(hostport: &str) -> (&str, Option<&str>) {
    match hostport.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (hostport, None),
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let host = canonical_host(&host.to_ascii_lowercase());
    let pl: Vec<&str> = pattern.split('.').collect();
    let hl: Vec<&str> = host.split('.').collect();
    pl.len() == hl.len() && pl.iter().zip(&hl).all(|(p, h)| glob_label(p, h))
}

fn glob_label(pattern: &str, label: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == label,
        Some((pre, post)) => {
            label.len() >= pre.len() + post.len() && label.starts_with(pre) && label.ends_with(post)
        }
    }
}

fn path_prefix(prefix: &str, repo: &str) -> bool {
    prefix.is_empty()
        || repo == prefix
        || (repo.starts_with(prefix) && repo.as_bytes().get(prefix.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pull secrets are user data: any bytes under either key and any JSON shape never panic,
    /// and a bad secret never hides a good one; 2,000 cases.
    mod never_panics {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            #[test]
            fn secrets(
                bytes in proptest::collection::vec(any::<u8>(), 0..200),
                host in "[a-z0-9.:/-]{0,30}",
                auth in "[A-Za-z0-9+/=:]{0,40}",
                user in proptest::option::of("[a-z:]{0,8}"),
            ) {
                let shaped = serde_json::json!({"auths": {host.clone(): {"auth": auth, "username": user}}});
                let cfg = serde_json::json!({host: {"auth": "YTpi", "email": 1}});
                let raw = |type_: &str, key: &str, data: Vec<u8>| Secret {
                    type_: Some(type_.into()),
                    data: Some([(key.to_string(), ByteString(data))].into_iter().collect()),
                    ..secret("x", type_, key, serde_json::Value::Null)
                };
                let all = [
                    raw(DOCKER_CONFIG_JSON, ".dockerconfigjson", bytes.clone()),
                    raw(DOCKER_CFG, ".dockercfg", bytes),
                    raw(DOCKER_CONFIG_JSON, ".dockerconfigjson", shaped.to_string().into_bytes()),
                    raw(DOCKER_CFG, ".dockercfg", cfg.to_string().into_bytes()),
                    secret("good", DOCKER_CONFIG_JSON, ".dockerconfigjson",
                        serde_json::json!({"auths": {"good.example.com": {"auth": "YTpi"}}})),
                ];
                let (keyring, _) = Keyring::from_secrets(all.iter());
                let good = crate::registry::ImageRef::parse("good.example.com/app").unwrap();
                prop_assert!(keyring.lookup(&good).is_some());
            }
        }
    }
    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;

    fn secret(name: &str, type_: &str, key: &str, json: serde_json::Value) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            type_: Some(type_.into()),
            data: Some(
                [(key.to_string(), ByteString(json.to_string().into_bytes()))]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn auth(user: &str) -> serde_json::Value {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
        serde_json::json!({ "auth": b64 })
    }

    fn user_for(k: &Keyring, image: &str) -> Option<String> {
        k.lookup(&ImageRef::parse(image).unwrap())
            .map(|c| c.username.clone())
    }

    #[test]
    fn dockerconfigjson_and_dockercfg_with_exact_ports_globs_and_longest_path() {
        let a = secret(
            "a",
            DOCKER_CONFIG_JSON,
            ".dockerconfigjson",
            serde_json::json!({"auths": {
                "quay.io": auth("quay"),
                "quay.io/org": auth("org"),
                "https://index.docker.io/v1/": auth("hub"),
                "*.example.com": auth("glob"),
                "reg.local:80": auth("port80"),
            }}),
        );
        let b = secret(
            "b",
            DOCKER_CFG,
            ".dockercfg",
            serde_json::json!({"legacy.io": {"username": "legacy", "password": "x"}}),
        );
        let (k, skipped) = Keyring::from_secrets([&a, &b]);
        assert!(skipped.is_empty());
        assert_eq!(user_for(&k, "quay.io/org/app:1").as_deref(), Some("org"));
        assert_eq!(user_for(&k, "quay.io/orgx/app").as_deref(), Some("quay"));
        assert_eq!(user_for(&k, "python:3.5").as_deref(), Some("hub"));
        assert_eq!(user_for(&k, "r.example.com/x").as_deref(), Some("glob"));
        assert_eq!(
            user_for(&k, "a.r.example.com/x"),
            None,
            "a glob matches one label"
        );
        assert_eq!(user_for(&k, "reg.local:80/x").as_deref(), Some("port80"));
        assert_eq!(
            user_for(&k, "reg.local/x"),
            None,
            "the port must be identical"
        );
        assert_eq!(user_for(&k, "legacy.io/x").as_deref(), Some("legacy"));
        assert_eq!(user_for(&k, "other.io/x"), None);
    }

    #[test]
    fn excluded_foreign_and_malformed_secrets_are_skipped_by_name() {
        let mut excluded = secret(
            "ex",
            DOCKER_CONFIG_JSON,
            ".dockerconfigjson",
            serde_json::json!({"auths": {"quay.io": auth("ex")}}),
        );
        excluded.metadata.annotations =
            Some([(EXCLUDE_SECRET.to_string(), "true".to_string())].into());
        let opaque = secret("op", "Opaque", "x", serde_json::json!({}));
        let mut broken = secret(
            "broken",
            DOCKER_CONFIG_JSON,
            ".dockerconfigjson",
            serde_json::json!({}),
        );
        broken.data = Some(
            [(
                ".dockerconfigjson".to_string(),
                ByteString(b"{not json".to_vec()),
            )]
            .into(),
        );
        let bad_auth = secret(
            "badauth",
            DOCKER_CONFIG_JSON,
            ".dockerconfigjson",
            serde_json::json!({"auths": {"q.io": {"auth": "!!!"}}}),
        );
        let (k, skipped) = Keyring::from_secrets([&excluded, &opaque, &broken, &bad_auth]);
        assert!(k.is_empty());
        let names: Vec<_> = skipped.iter().map(|s| s.secret.as_str()).collect();
        assert_eq!(names, ["ns/broken", "ns/badauth"]);
        assert!(skipped[1].reason.contains("not base64"), "{:?}", skipped[1]);
    }

    #[test]
    fn fingerprint_changes_with_credentials() {
        let s1 = secret(
            "a",
            DOCKER_CONFIG_JSON,
            ".dockerconfigjson",
            serde_json::json!({"auths": {"q.io": auth("u1")}}),
        );
        let s2 = secret(
            "a",
            DOCKER_CONFIG_JSON,
            ".dockerconfigjson",
            serde_json::json!({"auths": {"q.io": auth("u2")}}),
        );
        let f1 = Keyring::from_secrets([&s1]).0.fingerprint();
        assert_eq!(f1, Keyring::from_secrets([&s1]).0.fingerprint());
        assert_ne!(f1, Keyring::from_secrets([&s2]).0.fingerprint());
    }
}
