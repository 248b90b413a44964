//! Test harness: a real `docker-registry` (Debian's package, installed by .ci/run) on 127.0.0.1
//! with a random port and a temporary storage directory, and helpers that push synthetic images
//! over the registry API.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest, Sha256};

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

/// The registry binary, or None with the reason printed (the test then skips, loudly).
pub fn registry_binary() -> Option<PathBuf> {
    let path = PathBuf::from(
        std::env::var("DOCKER_REGISTRY_BIN").unwrap_or_else(|_| "/usr/bin/docker-registry".into()),
    );
    if path.exists() {
        Some(path)
    } else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIP: {} not found; install Debian's docker-registry (as .ci/run does)",
            path.display()
        );
        None
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    /// Start a registry; with `htpasswd = Some((user, password))` it requires basic auth.
    pub async fn start(htpasswd: Option<(&str, &str)>) -> Option<Self> {
        let bin = registry_binary()?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut auth_section = String::new();
        let mut auth = RegistryAuth::Anonymous;
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
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth_section}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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
        let client = self.client();
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
