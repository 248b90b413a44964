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
        let (base, media_type) = self
            .image_manifest(repo, repo, "linux", "amd64", true)
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

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 reader shared by the token server and the fault proxy.

pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub raw: Vec<u8>,
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request head; None on EOF, garbage (a TLS hello) or more than 64 KiB.
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<RequestHead> {
    use tokio::io::AsyncReadExt;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || raw.len() > 64 * 1024 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
        if !raw[0].is_ascii_uppercase() {
            // A TLS hello on a plain-HTTP port: answer as Go's HTTP servers (the registry) do.
            use tokio::io::AsyncWriteExt;
            let _ = stream
                .write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
                .await;
            return None;
        }
    }
    let text = String::from_utf8(raw.clone()).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(RequestHead {
        method,
        path,
        headers,
        raw,
    })
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) {
    use tokio::io::AsyncWriteExt;
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}

fn spawn_server<F, Fut>(handler: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap().to_string();
    let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
    let handler = std::sync::Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let h = handler.clone();
            tokio::spawn(async move { h(stream).await });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------
// A token server for the registry's `auth.token` scheme: ES256 JWTs carrying an x5c header with
// a self-signed certificate that the registry trusts as its root bundle.

pub const SERVICE: &str = "test-registry";
pub const ISSUER: &str = "test-issuer";
pub const TOKEN_USER: &str = "alice";
pub const TOKEN_PASSWORD: &str = "s3cret";

pub struct TokenServer {
    pub addr: String,
    pub cert_pem: String,
    /// Token requests answered (issued or refused).
    pub requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenServer {
    /// Grants everything to alice; anonymous callers may only pull `public/*`.
    pub fn start() -> Self {
        use base64::Engine;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["token-issuer".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let x5c = base64::engine::general_purpose::STANDARD.encode(cert.der());
        let signer = std::sync::Arc::new(
            ring::signature::EcdsaKeyPair::from_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &key.serialize_der(),
                &ring::rand::SystemRandom::new(),
            )
            .unwrap(),
        );
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = requests.clone();
        let addr = spawn_server(move |mut stream| {
            let signer = signer.clone();
            let x5c = x5c.clone();
            let counter = counter.clone();
            async move {
                let Some(head) = read_head(&mut stream).await else {
                    return;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                match issue(&head, &signer, &x5c) {
                    Ok(token) => {
                        let body =
                            serde_json::json!({"token": token, "expires_in": 300}).to_string();
                        respond(
                            &mut stream,
                            "200 OK",
                            &[("Content-Type", "application/json".into())],
                            body.as_bytes(),
                        )
                        .await
                    }
                    Err(status) => {
                        respond(&mut stream, status, &[], b"{\"details\":\"denied\"}").await
                    }
                }
            }
        });
        Self {
            addr,
            cert_pem: cert.pem(),
            requests,
        }
    }
}

fn issue(
    head: &RequestHead,
    signer: &ring::signature::EcdsaKeyPair,
    x5c: &str,
) -> Result<String, &'static str> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let user = match head.header("authorization") {
        None => None,
        Some(v) => {
            let decoded = v
                .strip_prefix("Basic ")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or("400 Bad Request")?;
            if decoded != format!("{TOKEN_USER}:{TOKEN_PASSWORD}") {
                return Err("401 Unauthorized");
            }
            Some(TOKEN_USER)
        }
    };
    let query = head.path.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut access = Vec::new();
    for (k, v) in query.split('&').filter_map(|p| p.split_once('=')) {
        if k != "scope" {
            continue;
        }
        let scope = v
            .replace("%3A", ":")
            .replace("%2F", "/")
            .replace("%2C", ",");
        let mut parts = scope.splitn(3, ':');
        let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|a| user.is_some() || (*a == "pull" && name.starts_with("public/")))
            .collect();
        access.push(serde_json::json!({"type": kind, "name": name, "actions": granted}));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": user.unwrap_or(""), "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let sig = signer
        .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
        .map_err(|_| "500 Internal Server Error")?;
    Ok(format!("{signing_input}.{}", b64.encode(sig.as_ref())))
}

// ---------------------------------------------------------------------------------------------
// A fault-injecting proxy in front of a registry: one request per connection; a request whose
// path contains a rule's pattern gets the rule's fault, every other request is forwarded.

#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status, extra headers and body.
    Status(u16, Vec<(&'static str, String)>, String),
    /// Close the connection without answering.
    Reset,
    /// Never answer.
    Hang,
    /// Headers at once, then the body one byte per 200 ms.
    SlowBody,
    /// 200 with a body that is not JSON (and a digest header for HEAD).
    Garbage,
    /// 200 with a body of this many bytes and no Content-Length.
    Oversized(usize),
    /// Forward, but flip one byte of the body (content no longer matches its digest).
    Corrupt,
    /// HEAD without a digest header (so the client GETs by tag), then a GET forwarded with one
    /// byte of the body flipped: only the registry's `Docker-Content-Digest` can tell.
    CorruptUndigested,
    /// Serve the upstream tag list in `Link`-paginated pages honouring `n` and `last`, as
    /// distribution 3 and Docker Hub do (Debian's distribution 2.8 ignores `n`).
    Paginate,
}

impl Fault {
    pub fn name(&self) -> String {
        match self {
            Fault::Status(code, ..) => format!("status {code}"),
            Fault::Reset => "reset".into(),
            Fault::Hang => "hang".into(),
            Fault::SlowBody => "slow body".into(),
            Fault::Garbage => "garbage".into(),
            Fault::Oversized(_) => "oversized".into(),
            Fault::Corrupt => "corrupt".into(),
            Fault::CorruptUndigested => "corrupt, undigested".into(),
            Fault::Paginate => "paginate".into(),
        }
    }
}

/// Random faults: each request gets one of `faults` with probability `percent`/100, drawn from
/// a seeded generator so a failing run can be repeated.
struct Chaos {
    percent: u64,
    faults: Vec<Fault>,
    state: u64,
}

impl Chaos {
    fn draw(&mut self) -> Option<Fault> {
        // xorshift64*: plenty for spreading faults, and no dependency.
        let mut next = || {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        if next() % 100 >= self.percent || self.faults.is_empty() {
            return None;
        }
        let i = (next() % self.faults.len() as u64) as usize;
        self.faults.get(i).cloned()
    }
}

/// One request as the proxy saw it: when, what, and the fault it got (if any).
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: std::time::Instant,
    pub method: String,
    pub path: String,
    pub fault: Option<String>,
}

type Shared<T> = std::sync::Arc<std::sync::Mutex<T>>;

pub struct FaultProxy {
    pub addr: String,
    rules: Shared<Vec<(String, Fault)>>,
    chaos: Shared<Option<Chaos>>,
    pub forwarded: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// (method, path) of every request that reached the proxy, in order.
    pub seen: Shared<Vec<(String, String)>>,
    /// Every request with its time and fault, in order.
    pub log: Shared<Vec<Seen>>,
}

impl FaultProxy {
    pub fn start(upstream: &str) -> Self {
        let rules: Shared<Vec<(String, Fault)>> = Default::default();
        let chaos: Shared<Option<Chaos>> = Default::default();
        let forwarded = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen: Shared<Vec<(String, String)>> = Default::default();
        let timed: Shared<Vec<Seen>> = Default::default();
        let upstream = upstream.to_string();
        let (r, c, f, log, t) = (
            rules.clone(),
            chaos.clone(),
            forwarded.clone(),
            seen.clone(),
            timed.clone(),
        );
        let addr = spawn_server(move |mut stream| {
            let (rules, chaos, forwarded) = (r.clone(), c.clone(), f.clone());
            let (log, timed) = (log.clone(), t.clone());
            let upstream = upstream.clone();
            async move {
                let Some(head) = read_head(&mut stream).await else {
                    return;
                };
                log.lock()
                    .unwrap()
                    .push((head.method.clone(), head.path.clone()));
                let fault = rules
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(p, _)| head.path.contains(p.as_str()))
                    .map(|(_, f)| f.clone())
                    .or_else(|| chaos.lock().unwrap().as_mut().and_then(Chaos::draw));
                timed.lock().unwrap().push(Seen {
                    at: std::time::Instant::now(),
                    method: head.method.clone(),
                    path: head.path.clone(),
                    fault: fault.as_ref().map(Fault::name),
                });
                match fault {
                    None => {
                        forwarded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        forward(stream, &head, &upstream, false).await
                    }
                    Some(f) => inject(stream, &head, f, &upstream).await,
                }
            }
        });
        Self {
            addr,
            rules,
            chaos,
            forwarded,
            seen,
            log: timed,
        }
    }

    /// From now on, `percent` % of requests (that no rule matches) get one of `faults`.
    pub fn chaos(&self, percent: u64, faults: Vec<Fault>, seed: u64) {
        *self.chaos.lock().unwrap() = Some(Chaos {
            percent,
            faults,
            state: seed.max(1),
        });
    }

    /// Requests seen so far by method, e.g. `{"HEAD": 20, "GET": 40}`.
    pub fn methods(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for (m, _) in self.seen.lock().unwrap().iter() {
            *out.entry(m.clone()).or_insert(0) += 1;
        }
        out
    }

    pub fn fail(&self, pattern: &str, fault: Fault) {
        self.rules
            .lock()
            .unwrap()
            .push((pattern.to_string(), fault));
    }

    /// Removes every rule and stops the chaos.
    pub fn clear(&self) {
        self.rules.lock().unwrap().clear();
        *self.chaos.lock().unwrap() = None;
    }
}

async fn forward(
    mut client: tokio::net::TcpStream,
    head: &RequestHead,
    upstream: &str,
    corrupt: bool,
) {
    use tokio::io::AsyncWriteExt;
    let Some(mut response) = upstream_response(head, upstream).await else {
        return;
    };
    if corrupt {
        if let Some(start) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            if let Some(b) = response.get_mut(start + 10) {
                *b ^= 0x20;
            }
        }
    }
    let _ = client.write_all(&response).await;
    let _ = client.shutdown().await;
}

async fn paginate(mut client: tokio::net::TcpStream, head: &RequestHead, upstream: &str) {
    let (path, query) = head.path.split_once('?').unwrap_or((&head.path, ""));
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let n: usize = param("n")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    let last = param("last");
    let Some(response) = upstream_response(head, upstream).await else {
        return;
    };
    let body_at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |p| p + 4);
    let list: serde_json::Value = serde_json::from_slice(&response[body_at..]).unwrap_or_default();
    let mut tags: Vec<String> = list["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    let rest: Vec<String> = tags
        .into_iter()
        .filter(|t| last.as_ref().is_none_or(|l| t > l))
        .collect();
    let page: Vec<String> = rest.iter().take(n).cloned().collect();
    let mut headers = vec![("Content-Type", "application/json".to_string())];
    if rest.len() > page.len() {
        if let Some(l) = page.last() {
            headers.push(("Link", format!("<{path}?last={l}&n={n}>; rel=\"next\"")));
        }
    }
    let body = serde_json::json!({"name": list["name"], "tags": page}).to_string();
    respond(&mut client, "200 OK", &headers, body.as_bytes()).await
}

async fn upstream_response(head: &RequestHead, upstream: &str) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut up = tokio::net::TcpStream::connect(upstream).await.ok()?;
    // One request per connection keeps the rules simple.
    let text =
        String::from_utf8_lossy(&head.raw).replace("Connection: keep-alive", "Connection: close");
    let text = if text.to_ascii_lowercase().contains("\r\nconnection:") {
        text
    } else {
        text.replacen("\r\n", "\r\nConnection: close\r\n", 1)
    };
    up.write_all(text.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).await.ok()?;
    Some(response)
}

async fn inject(
    mut stream: tokio::net::TcpStream,
    head: &RequestHead,
    fault: Fault,
    upstream: &str,
) {
    use tokio::io::AsyncWriteExt;
    let digest_header = (
        "Docker-Content-Digest",
        format!("sha256:{}", "0".repeat(64)),
    );
    match fault {
        Fault::Status(code, headers, body) => {
            let status = format!("{code} Fault");
            respond(&mut stream, &status, &headers, body.as_bytes()).await
        }
        Fault::Reset => drop(stream),
        Fault::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
        Fault::SlowBody => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nDocker-Content-Digest: sha256:0000000000000000000000000000000000000000000000000000000000000000\r\n\r\n")
                .await;
            if head.method == "HEAD" {
                return;
            }
            for _ in 0..1000 {
                if stream.write_all(b" ").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Fault::Garbage => {
            let ct = (
                "Content-Type",
                "application/vnd.oci.image.manifest.v1+json".to_string(),
            );
            // No digest header, so the client must GET by tag and parse what it gets.
            if head.method == "HEAD" {
                return respond(&mut stream, "200 OK", &[ct], b"").await;
            }
            respond(&mut stream, "200 OK", &[ct], b"{not json at all").await
        }
        Fault::Oversized(n) => {
            if head.method == "HEAD" {
                return respond(&mut stream, "200 OK", &[digest_header], b"").await;
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n")
                .await;
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            while sent < n {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
                sent += chunk.len();
            }
        }
        Fault::Corrupt => forward(stream, head, upstream, true).await,
        Fault::CorruptUndigested if head.method == "HEAD" => {
            respond(&mut stream, "200 OK", &[], b"").await
        }
        Fault::CorruptUndigested => forward(stream, head, upstream, true).await,
        Fault::Paginate => paginate(stream, head, upstream).await,
    }
}
