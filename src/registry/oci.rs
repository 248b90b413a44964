//! The real resolver, on oci-client: HEAD for the digest (one request for an unchanged tag),
//! a GET by digest only for digests never seen before (to tell images from manifest lists and
//! to verify content), and a digest-keyed cache because manifests are immutable.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;

use super::reference::host_of;
use super::{ChildManifest, ImageRef, ImageResolver, ImportRequest, RegistryError, ResolvedImage};
use crate::api::ImportMode;

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// Addresses a tenant must never be able to make the operator probe: link-local (cloud
/// metadata services live there) and well-known metadata host names.
const DEFAULT_BLOCKED: &[&str] = &[
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254",
    "100.100.100.200",
    "metadata.google.internal",
    "metadata",
];

#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// Registries (host or host:port) that may use TLS without verification or plain HTTP.
    pub insecure_registries: Vec<String>,
    /// When non-empty, only these registries (host, host:port, or `*.domain`) may be imported from.
    pub allowed_registries: Vec<String>,
    /// Registries never contacted, in addition to the link-local/metadata defaults.
    pub blocked_registries: Vec<String>,
    /// Platform chosen from a manifest list in Legacy mode when the tag states no preference.
    pub default_os: String,
    pub default_arch: String,
    pub timeout: Duration,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            allowed_registries: Vec::new(),
            blocked_registries: Vec::new(),
            default_os: "linux".into(),
            default_arch: "amd64".into(),
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug)]
enum Manifest {
    Image,
    List(Vec<ChildManifest>),
}

#[derive(Hash, PartialEq, Eq, Clone)]
struct ClientKey {
    registry: String,
    protocol_http: bool,
    credential: Option<(String, String)>,
}

pub struct OciResolver {
    config: ResolverConfig,
    // One client per registry, transport and credential: oci-client's auth store is
    // first-write-wins per registry, so sharing a client would leak one tenant's token to another.
    clients: Mutex<HashMap<ClientKey, Arc<Client>>>,
    manifests: Mutex<HashMap<String, Manifest>>,
}

impl OciResolver {
    pub fn new(config: ResolverConfig) -> Self {
        Self {
            config,
            clients: Mutex::default(),
            manifests: Mutex::default(),
        }
    }

    /// Refuses blocked or non-allowed registries before any connection is made.
    pub fn check_allowed(&self, image: &ImageRef) -> Result<(), RegistryError> {
        let registry = image.registry();
        let host = image.host();
        let forbidden = |why: &str| RegistryError::Forbidden {
            reference: image.to_string(),
            detail: format!("importing from registry {registry} is forbidden: {why}"),
        };
        let blocked = DEFAULT_BLOCKED
            .iter()
            .map(|s| s.to_string())
            .chain(self.config.blocked_registries.iter().cloned())
            .any(|b| registry_matches(&b, registry, host));
        if blocked {
            return Err(forbidden("it is on the operator's blocked list"));
        }
        let allowed = &self.config.allowed_registries;
        if !allowed.is_empty() && !allowed.iter().any(|a| registry_matches(a, registry, host)) {
            return Err(forbidden(
                "it is not on the operator's --allowed-registries list",
            ));
        }
        Ok(())
    }

    fn client(
        &self,
        registry: &str,
        http: bool,
        insecure: bool,
        auth: &RegistryAuth,
    ) -> Arc<Client> {
        let credential = match auth {
            RegistryAuth::Basic(u, p) => Some((u.clone(), p.clone())),
            _ => None,
        };
        let key = ClientKey {
            registry: registry.to_string(),
            protocol_http: http,
            credential,
        };
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Client::new(ClientConfig {
                    protocol: if http {
                        ClientProtocol::Http
                    } else {
                        ClientProtocol::Https
                    },
                    accept_invalid_certificates: insecure,
                    platform_resolver: None,
                    read_timeout: Some(self.config.timeout),
                    connect_timeout: Some(self.config.timeout),
                    ..Default::default()
                }))
            })
            .clone()
    }

    fn insecure_allowed(&self, req: &ImportRequest) -> bool {
        req.insecure
            || self
                .config
                .insecure_registries
                .iter()
                .any(|r| registry_matches(r, req.reference.registry(), req.reference.host()))
    }

    async fn resolve_inner(&self, req: ImportRequest) -> Result<ResolvedImage, RegistryError> {
        self.check_allowed(&req.reference)?;
        let credential = req.keyring.lookup(&req.reference).cloned();
        let auth = credential
            .as_ref()
            .map(|c| RegistryAuth::Basic(c.username.clone(), c.password.clone()))
            .unwrap_or(RegistryAuth::Anonymous);
        match self.resolve_with(&req, &auth).await {
            // A wrong secret must not hide a public image (OpenShift retries anonymously too).
            Err(RegistryError::Unauthorized { .. }) if credential.is_some() => {
                match self.resolve_with(&req, &RegistryAuth::Anonymous).await {
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

    async fn resolve_with(
        &self,
        req: &ImportRequest,
        auth: &RegistryAuth,
    ) -> Result<ResolvedImage, RegistryError> {
        let insecure = self.insecure_allowed(req);
        let registry = req.reference.registry();
        let https = self.client(registry, false, insecure, auth);
        match self.resolve_on(&https, req, auth).await {
            Err(e) if insecure && is_transport(&e) => {
                let http = self.client(registry, true, insecure, auth);
                self.resolve_on(&http, req, auth)
                    .await
                    .map_err(|e| classify(&req.reference, e, !matches!(auth, RegistryAuth::Anonymous)))
            }
            Err(e) if !insecure && looks_like_plain_http(&e) => Err(RegistryError::BadRequest {
                reference: req.reference.to_string(),
                detail: format!(
                    "the repository {registry} is HTTP only and requires the insecure flag to import: set importPolicy.insecure: true on the tag or the annotation openshift.io/image.insecureRepository: \"true\" on the stream"
                ),
            }),
            other => other
                .map_err(|e| classify(&req.reference, e, !matches!(auth, RegistryAuth::Anonymous))),
        }
    }

    async fn resolve_on(
        &self,
        client: &Client,
        req: &ImportRequest,
        auth: &RegistryAuth,
    ) -> Result<ResolvedImage, OciDistributionError> {
        let reference = req.reference.normalized();
        let digest = client.fetch_manifest_digest(reference, auth).await?;
        let manifest = match self.cached(&digest) {
            Some(m) => m,
            None => {
                let by_digest = req.reference.with_digest(&digest);
                let m = fetch_manifest(client, &by_digest, auth).await?;
                self.manifests
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(digest.clone(), m.clone());
                m
            }
        };
        Ok(self.pick(req, digest, manifest))
    }

    fn cached(&self, digest: &str) -> Option<Manifest> {
        self.manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
    }

    fn pick(&self, req: &ImportRequest, digest: String, manifest: Manifest) -> ResolvedImage {
        let children = match manifest {
            Manifest::Image => Vec::new(),
            Manifest::List(children) => children,
        };
        if children.is_empty() || req.import_mode == ImportMode::PreserveOriginal {
            return ResolvedImage {
                docker_image_reference: req.reference.pinned(&digest),
                digest,
                manifests: children,
            };
        }
        let child = choose_platform(
            &children,
            req.prefer_os.as_deref(),
            req.prefer_arch.as_deref(),
            &self.config.default_os,
            &self.config.default_arch,
        );
        ResolvedImage {
            docker_image_reference: req.reference.pinned(&child.digest),
            digest: child.digest.clone(),
            manifests: Vec::new(),
        }
    }
}

impl ImageResolver for OciResolver {
    fn resolve(
        &self,
        request: ImportRequest,
    ) -> BoxFuture<'_, Result<ResolvedImage, RegistryError>> {
        Box::pin(self.resolve_inner(request))
    }
}

/// Legacy mode's choice: the tag's preferred platform, then the operator's default, then
/// linux/amd64, then the first entry (OpenShift's order).
pub fn choose_platform<'a>(
    children: &'a [ChildManifest],
    prefer_os: Option<&str>,
    prefer_arch: Option<&str>,
    default_os: &str,
    default_arch: &str,
) -> &'a ChildManifest {
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
        .unwrap_or(&children[0])
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<RawChild>>,
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

const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

async fn fetch_manifest(
    client: &Client,
    by_digest: &Reference,
    auth: &RegistryAuth,
) -> Result<Manifest, OciDistributionError> {
    // oci-client verifies that the body hashes to the digest we asked for.
    let (body, _) = client
        .pull_manifest_raw(by_digest, auth, MANIFEST_TYPES)
        .await?;
    if body.len() > MAX_MANIFEST_BYTES {
        return Err(OciDistributionError::ManifestParsingError(format!(
            "manifest is {} bytes, more than the 4 MiB limit",
            body.len()
        )));
    }
    let raw: RawManifest = serde_json::from_slice(&body)
        .map_err(|e| OciDistributionError::ManifestParsingError(e.to_string()))?;
    let is_list = raw.manifests.is_some()
        || raw
            .media_type
            .as_deref()
            .is_some_and(|m| m.contains("list") || m.contains("index"));
    if !is_list {
        return Ok(Manifest::Image);
    }
    let children: Vec<ChildManifest> = raw
        .manifests
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            let p = c.platform.unwrap_or_default();
            ChildManifest {
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
        return Err(OciDistributionError::ManifestParsingError(
            "manifest list has no entries".into(),
        ));
    }
    Ok(Manifest::List(children))
}

fn registry_matches(pattern: &str, registry: &str, host: &str) -> bool {
    if let Some((net, bits)) = pattern.split_once('/') {
        let (Ok(net), Ok(bits), Ok(ip)) = (
            net.parse::<IpAddr>(),
            bits.parse::<u32>(),
            host.parse::<IpAddr>(),
        ) else {
            return false;
        };
        return in_cidr(ip, net, bits);
    }
    if let Some(domain) = pattern.strip_prefix("*.") {
        return host.ends_with(&format!(".{domain}"));
    }
    if let (Ok(p), Ok(h)) = (host_of(pattern).parse::<IpAddr>(), host.parse::<IpAddr>()) {
        return p == h
            && (!pattern.contains("]:") && pattern.parse::<IpAddr>().is_ok()
                || pattern == registry);
    }
    pattern.eq_ignore_ascii_case(registry)
        || (!pattern.contains(':') && pattern.eq_ignore_ascii_case(host))
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn is_transport(e: &OciDistributionError) -> bool {
    matches!(e, OciDistributionError::RequestError(r) if r.is_connect() || r.is_request() || r.is_timeout())
}

fn looks_like_plain_http(e: &OciDistributionError) -> bool {
    let OciDistributionError::RequestError(r) = e else {
        return false;
    };
    let chain = error_chain(r).to_ascii_lowercase();
    chain.contains("invalidcontenttype")
        || chain.contains("corrupt message")
        || chain.contains("http/1")
        || chain.contains("invalid content type")
        || chain.contains("wrong version number")
}

/// Map oci-client's errors to the reasons the controller writes.
fn classify(image: &ImageRef, e: OciDistributionError, had_credentials: bool) -> RegistryError {
    let reference = image.to_string();
    match e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => RegistryError::Unauthorized {
            reference,
            had_credentials,
        },
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let detail = envelope.to_string();
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown))
            {
                RegistryError::NotFound {
                    reference,
                    detail: "manifest unknown".into(),
                }
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized))
            {
                RegistryError::Unauthorized {
                    reference,
                    had_credentials,
                }
            } else if codes.iter().any(|c| matches!(c, OciErrorCode::Denied)) {
                RegistryError::Forbidden {
                    reference,
                    detail: format!("access denied by the registry: {detail}"),
                }
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Toomanyrequests))
            {
                RegistryError::RateLimited {
                    reference,
                    retry_after: None,
                }
            } else {
                RegistryError::Internal { reference, detail }
            }
        }
        OciDistributionError::ServerError { code, message, .. } => match code {
            404 => RegistryError::NotFound {
                reference,
                detail: "manifest unknown".into(),
            },
            401 => RegistryError::Unauthorized {
                reference,
                had_credentials,
            },
            403 => RegistryError::Forbidden {
                reference,
                detail: format!("access denied by the registry (HTTP 403) {message}")
                    .trim()
                    .to_string(),
            },
            429 => RegistryError::RateLimited {
                reference,
                retry_after: None,
            },
            c if (500..600).contains(&c) => RegistryError::Unreachable {
                reference,
                detail: format!("the registry answered HTTP {c}"),
            },
            c => RegistryError::Internal {
                reference,
                detail: format!("unexpected HTTP {c}: {message}"),
            },
        },
        OciDistributionError::RequestError(r) if r.is_timeout() || r.is_connect() => {
            RegistryError::Unreachable {
                reference,
                detail: error_chain(&r),
            }
        }
        OciDistributionError::DigestError(d) => RegistryError::Internal {
            reference,
            detail: format!("content integrity error: {d}"),
        },
        other => RegistryError::Internal {
            reference,
            detail: error_chain(&other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(os: &str, arch: &str, d: &str) -> ChildManifest {
        ChildManifest {
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
        assert_eq!(
            choose_platform(&list, None, Some("s390x"), "linux", "arm64").digest,
            "c"
        );
        assert_eq!(
            choose_platform(&list, None, None, "linux", "arm64").digest,
            "a"
        );
        assert_eq!(
            choose_platform(&list, None, None, "linux", "ppc64le").digest,
            "b"
        );
        let odd = [child("windows", "386", "w"), child("plan9", "x", "p")];
        assert_eq!(
            choose_platform(&odd, None, None, "linux", "amd64").digest,
            "w"
        );
    }

    #[test]
    fn blocked_registries_are_refused_before_any_connection() {
        let r = OciResolver::new(ResolverConfig {
            blocked_registries: vec!["evil.example.com".into()],
            ..Default::default()
        });
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
        let only = OciResolver::new(ResolverConfig {
            allowed_registries: vec!["*.corp.io".into(), "127.0.0.1:5000".into()],
            ..Default::default()
        });
        assert!(only
            .check_allowed(&ImageRef::parse("r.corp.io/x").unwrap())
            .is_ok());
        assert!(only
            .check_allowed(&ImageRef::parse("127.0.0.1:5000/x").unwrap())
            .is_ok());
        assert!(only
            .check_allowed(&ImageRef::parse("127.0.0.1:5001/x").unwrap())
            .is_err());
        assert!(only
            .check_allowed(&ImageRef::parse("quay.io/x").unwrap())
            .is_err());
    }
}
