//! A real `docker-registry` (Debian's package, installed by .ci/run) on 127.0.0.1 with a random
//! port and a temporary storage directory, and helpers that push synthetic images over the
//! registry API.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest, Sha256};

use super::tokens::{TokenServer, ISSUER, SERVICE, TOKEN_PASSWORD, TOKEN_USER};

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub struct Registry {
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
    pub auth: RegistryAuth,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The registry binary, or None with the reason printed (the test then skips, loudly). Under
/// `CI=true` a missing registry is a failure: CI installs it, so its absence is a broken CI, and
/// a suite that silently skipped its registry tests would pass without testing anything.
pub fn registry_binary() -> Option<PathBuf> {
    let path = PathBuf::from(
        std::env::var("DOCKER_REGISTRY_BIN").unwrap_or_else(|_| "/usr/bin/docker-registry".into()),
    );
    if path.exists() {
        return Some(path);
    }
    let why = format!(
        "{} not found; install Debian's docker-registry (as .ci/run does)",
        path.display()
    );
    if in_ci() {
        panic!("{why}; CI=true, so this is a failure, not a skip");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP: {why}");
    None
}

/// Whether the tests run in CI: `CI` set (`.ci/run` exports `CI=true`, as most CI systems do),
/// unless set to `false` or `0`.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "false" | "0"))
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    /// Start a registry; with `htpasswd = Some((user, password))` it requires basic auth.
    pub async fn start(htpasswd: Option<(&str, &str)>) -> Option<Self> {
        Self::start_with(htpasswd, None).await
    }

    /// Start a registry that accepts only bearer tokens issued by `token` (its real token
    /// verification: the registry checks the signature against the server's certificate).
    pub async fn start_with_tokens(token: &TokenServer) -> Option<Self> {
        Self::start_with(None, Some(token)).await
    }

    /// A registry that sends its push notifications to `url` (with `Authorization: Bearer
    /// token` when given), as `notifications.endpoints` configures it.
    pub async fn start_notifying(url: &str, token: Option<&str>) -> Option<Self> {
        let headers = token
            .map(|t| format!("      headers:\n        Authorization: [\"Bearer {t}\"]\n"))
            .unwrap_or_default();
        let section = format!(
            "notifications:\n  endpoints:\n    - name: operator\n      url: {url}\n{headers}      timeout: 2s\n      threshold: 1\n      backoff: 200ms\n"
        );
        Self::start_full(None, None, &section, None).await
    }

    async fn start_with(
        htpasswd: Option<(&str, &str)>,
        token: Option<&TokenServer>,
    ) -> Option<Self> {
        Self::start_full(htpasswd, token, "", None).await
    }

    /// An anonymous registry that logs every request it serves into `log` (one
    /// `response completed` line with the method and URI each), for counting at the registry.
    pub async fn start_logged(log: &std::path::Path) -> Option<Self> {
        Self::start_full(None, None, "", Some(log)).await
    }

    async fn start_full(
        htpasswd: Option<(&str, &str)>,
        token: Option<&TokenServer>,
        extra: &str,
        log: Option<&std::path::Path>,
    ) -> Option<Self> {
        let bin = registry_binary()?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut auth_section = String::new();
        let mut auth = RegistryAuth::Anonymous;
        if let Some(t) = token {
            let cert = dir.path().join("token.pem");
            std::fs::write(&cert, &t.cert_pem).unwrap();
            auth_section = format!(
                "auth:\n  token:\n    realm: http://{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                t.addr,
                cert.display()
            );
            auth = RegistryAuth::Basic(TOKEN_USER.into(), TOKEN_PASSWORD.into());
        }
        if let Some((user, password)) = htpasswd {
            let file = dir.path().join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apache2-utils) is installed");
            std::fs::write(&file, out.stdout).unwrap();
            auth_section = format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                file.display()
            );
            auth = RegistryAuth::Basic(user.into(), password.into());
        }
        let level = if log.is_some() { "info" } else { "error" };
        let config = format!(
            "version: 0.1\nlog:\n  level: {level}\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth_section}{extra}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let output = || match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("registry log file")),
            None => Stdio::null(),
        };
        let mut child = Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(output())
            .spawn()
            .expect("start docker-registry");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                return Some(Self {
                    addr,
                    child,
                    _dir: dir,
                    auth,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("docker-registry did not listen on {addr}");
    }

    pub fn client(&self) -> Client {
        Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..Default::default()
        })
    }

    /// Push a single-platform image whose config embeds `marker`; returns the manifest digest.
    pub async fn push_image(&self, repo: &str, tag: &str, marker: &str, oci: bool) -> String {
        let (bytes, media_type) = self
            .image_manifest(repo, marker, "linux", "amd64", oci)
            .await;
        self.push_manifest(repo, tag, bytes, media_type).await
    }

    /// Push one OCI image per `(tag, marker)` into `repo`, all sharing one layer and config and
    /// differing by a manifest annotation: a distinct digest per tag for one request each, so
    /// tests can push thousands quickly. Returns the digests in order.
    pub async fn push_variants(&self, repo: &str, tags: &[(String, String)]) -> Vec<String> {
        self.push_variants_of(repo, repo, tags).await
    }

    /// [`Self::push_variants`] whose shared config embeds `marker` (as large as a test needs).
    pub async fn push_variants_of(
        &self,
        repo: &str,
        marker: &str,
        tags: &[(String, String)],
    ) -> Vec<String> {
        let (base, media_type) = self
            .image_manifest(repo, marker, "linux", "amd64", true)
            .await;
        let base: serde_json::Value = serde_json::from_slice(&base).unwrap();
        // One client for all: building one loads the system's root certificates.
        let client = self.client();
        let mut digests = Vec::new();
        for (tag, marker) in tags {
            let mut manifest = base.clone();
            manifest["annotations"] = serde_json::json!({"test.marker": marker});
            let bytes = serde_json::to_vec(&manifest).unwrap();
            digests.push(
                self.push_manifest_with(&client, repo, tag, bytes, media_type)
                    .await,
            );
        }
        digests
    }

    /// Push an image for one platform and return (manifest bytes, media type) without tagging it.
    pub async fn image_manifest(
        &self,
        repo: &str,
        marker: &str,
        os: &str,
        arch: &str,
        oci: bool,
    ) -> (Vec<u8>, &'static str) {
        let client = self.client();
        let reference = Reference::with_tag(self.addr.clone(), repo.into(), "x".into());
        client
            .auth(&reference, &self.auth, RegistryOperation::Push)
            .await
            .unwrap();
        let layer = format!("layer {marker}").into_bytes();
        let config = serde_json::json!({"architecture": arch, "os": os, "config": {"Env": [format!("MARKER={marker}")]}, "rootfs": {"type": "layers", "diff_ids": [digest(&layer)]}}).to_string().into_bytes();
        client
            .push_blob(&reference, layer.clone(), &digest(&layer))
            .await
            .unwrap();
        client
            .push_blob(&reference, config.clone(), &digest(&config))
            .await
            .unwrap();
        let (mt, cfg_mt, layer_mt) = if oci {
            (
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar",
            )
        } else {
            (
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar",
            )
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": mt,
            "config": {"mediaType": cfg_mt, "size": config.len(), "digest": digest(&config)},
            "layers": [{"mediaType": layer_mt, "size": layer.len(), "digest": digest(&layer)}],
        });
        (serde_json::to_vec(&manifest).unwrap(), mt)
    }

    pub async fn push_manifest(
        &self,
        repo: &str,
        tag: &str,
        bytes: Vec<u8>,
        media_type: &str,
    ) -> String {
        self.push_manifest_with(&self.client(), repo, tag, bytes, media_type)
            .await
    }

    async fn push_manifest_with(
        &self,
        client: &Client,
        repo: &str,
        tag: &str,
        bytes: Vec<u8>,
        media_type: &str,
    ) -> String {
        let reference = Reference::with_tag(self.addr.clone(), repo.into(), tag.into());
        client
            .auth(&reference, &self.auth, RegistryOperation::Push)
            .await
            .unwrap();
        let d = digest(&bytes);
        client
            .push_manifest_raw(
                &reference,
                bytes,
                http::HeaderValue::from_str(media_type).unwrap(),
            )
            .await
            .unwrap();
        d
    }

    /// Push a two-platform list (linux/amd64, linux/arm64); returns (list digest, amd64, arm64).
    pub async fn push_list(&self, repo: &str, tag: &str, oci: bool) -> (String, String, String) {
        let mut children = Vec::new();
        for arch in ["amd64", "arm64"] {
            let (bytes, mt) = self
                .image_manifest(repo, &format!("{tag}-{arch}"), "linux", arch, oci)
                .await;
            let d = self
                .push_manifest(repo, &d_tag(arch, tag), bytes.clone(), mt)
                .await;
            children.push(serde_json::json!({"mediaType": mt, "size": bytes.len(), "digest": d, "platform": {"os": "linux", "architecture": arch}}));
        }
        let mt = if oci {
            "application/vnd.oci.image.index.v1+json"
        } else {
            "application/vnd.docker.distribution.manifest.list.v2+json"
        };
        let list = serde_json::json!({"schemaVersion": 2, "mediaType": mt, "manifests": children});
        let amd = children[0]["digest"].as_str().unwrap().to_string();
        let arm = children[1]["digest"].as_str().unwrap().to_string();
        (
            self.push_manifest(repo, tag, serde_json::to_vec(&list).unwrap(), mt)
                .await,
            amd,
            arm,
        )
    }
}

fn d_tag(arch: &str, tag: &str) -> String {
    format!("{tag}-{arch}")
}

pub fn digest(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// A keyring holding one `kubernetes.io/dockerconfigjson` pull secret for `registry`.
pub fn keyring_for(
    registry: &str,
    user: &str,
    password: &str,
) -> imagestream_operator::registry::Keyring {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = serde_json::json!({"auths": {registry: {"auth": auth}}}).to_string();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "pull", "namespace": "demo"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)},
    }))
    .unwrap();
    let (keyring, skipped) = imagestream_operator::registry::Keyring::from_secrets([&secret]);
    assert!(skipped.is_empty());
    keyring
}

/// A resolver that may use plain HTTP to `addr` and is limited only by `concurrency`: the
/// benchmarks measure the client, not the default budget (20/s, meant for remote registries).
pub fn unbudgeted_resolver(
    addr: &str,
    concurrency: usize,
) -> imagestream_operator::registry::resolver::RegistryResolver {
    use imagestream_operator::registry::budget::Budget;
    use imagestream_operator::registry::policy::RegistryPolicy;
    use imagestream_operator::registry::resolver::{RegistryResolver, ResolverConfig};
    let mut config = ResolverConfig::with_policy(RegistryPolicy {
        insecure: vec![addr.to_string()],
        ..Default::default()
    });
    let unlimited = Budget {
        per_second: 1_000_000,
        burst: 1_000_000,
        concurrency,
    };
    config.transport.budgets.insert(addr.to_string(), unlimited);
    RegistryResolver::new(config).expect("resolver")
}
