//! The HTTPS admission endpoint: AdmissionReview v1 in, JSONPatch out, on its own port. The
//! certificate comes from files (cert-manager or a mounted Secret) reloaded when they change, or
//! is generated at start-up and its CA injected into the webhook configuration by the operator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use axum_server::tls_rustls::RustlsConfig;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation as KubeOperation,
};
use kube::core::DynamicObject;
use kube::runtime::reflector::{ObjectRef, Store};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tracing::warn;

use super::listener::{Limited, ListenerLimits};
use super::lookup::{may_need_work, mutate, Operation};
use crate::api::ImageStream;
use crate::triggers::workload::Kind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    pub kind: String,
    /// `unchanged`, `patched` or `error`.
    pub outcome: String,
}

pub struct AdmissionMetrics {
    pub admissions: Family<AdmissionLabels, Counter>,
    pub rewrites: Counter,
    pub latency: Histogram,
}

impl Default for AdmissionMetrics {
    fn default() -> Self {
        Self {
            admissions: Family::default(),
            rewrites: Counter::default(),
            latency: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        }
    }
}

impl AdmissionMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "admissions",
            "Admission requests by kind and outcome",
            self.admissions.clone(),
        );
        registry.register(
            "admission_rewrites",
            "Container images rewritten at admission",
            self.rewrites.clone(),
        );
        registry.register_with_unit(
            "admission_duration",
            "Time to answer one admission request (excluding TLS)",
            prometheus_client::registry::Unit::Seconds,
            self.latency.clone(),
        );
    }
}

#[derive(Clone)]
pub struct Admission {
    pub streams: Store<ImageStream>,
    pub metrics: Arc<AdmissionMetrics>,
}

impl Admission {
    pub fn new(streams: Store<ImageStream>) -> Self {
        Self {
            streams,
            metrics: Arc::default(),
        }
    }
}

/// Answers one review. Never denies: anything unexpected is admitted unchanged with a warning.
pub fn review(
    admission: &Admission,
    review: AdmissionReview<DynamicObject>,
) -> AdmissionReview<DynamicObject> {
    let started = Instant::now();
    let metrics = &admission.metrics;
    let req: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            return AdmissionResponse::invalid(format!("not an AdmissionReview request: {e}"))
                .into_review()
        }
    };
    let mut response = AdmissionResponse::from(&req);
    let kind = Kind::parse(&req.kind.kind);
    let op = match req.operation {
        KubeOperation::Create => Some(Operation::Create),
        KubeOperation::Update => Some(Operation::Update),
        _ => None,
    };
    let mut outcome = "unchanged";
    if let (Some(kind), Some(op), Some(obj), None) =
        (kind, op, req.object.as_ref(), req.sub_resource.as_ref())
    {
        let Some(value) = in_its_namespace(obj, &req) else {
            response.warnings = Some(vec![
                "image lookup skipped: the object's namespace is not the request's".into(),
            ]);
            return counted(metrics, &req.kind.kind, "refused", started, response);
        };
        if may_need_work(kind, &value) {
            let old = req.old_object.as_ref().map(|o| to_value(o, &req));
            let lookup =
                |ns: &str, name: &str| admission.streams.get(&ObjectRef::new(name).within(ns));
            let m = mutate(kind, op, &value, old.as_ref(), &lookup);
            if !m.warnings.is_empty() {
                response.warnings = Some(m.warnings);
            }
            if !m.patch.is_empty() {
                metrics.rewrites.inc_by(m.patch.len() as u64);
                (response, outcome) = with_patch(response, m.patch);
            }
        }
    }
    counted(metrics, &req.kind.kind, outcome, started, response)
}

fn counted(
    metrics: &AdmissionMetrics,
    kind: &str,
    outcome: &str,
    started: Instant,
    response: AdmissionResponse,
) -> AdmissionReview<DynamicObject> {
    metrics
        .admissions
        .get_or_create(&AdmissionLabels {
            kind: kind.into(),
            outcome: outcome.into(),
        })
        .inc();
    metrics.latency.observe(started.elapsed().as_secs_f64());
    response.into_review()
}

/// The response carrying the JSON patch, and the outcome to count ("patched", or "error" with
/// the response unchanged when the patch cannot be encoded: the object is admitted as sent).
fn with_patch(
    response: AdmissionResponse,
    ops: Vec<serde_json::Value>,
) -> (AdmissionResponse, &'static str) {
    let patch = match serde_json::from_value::<json_patch::Patch>(serde_json::Value::Array(ops)) {
        Ok(patch) => patch,
        Err(e) => {
            warn!(error = %e, "invalid admission patch");
            return (response, "error");
        }
    };
    match response.clone().with_patch(patch) {
        Ok(r) => (r, "patched"),
        Err(e) => {
            warn!(error = %e, "could not encode the admission patch");
            (response, "error")
        }
    }
}

/// The review as the API server expects it on the wire: `patch` as base64 (Go's encoding of
/// `[]byte`), where kube-core serialises a JSON array of bytes.
pub fn review_json(
    admission: &Admission,
    input: AdmissionReview<DynamicObject>,
) -> serde_json::Value {
    use base64::Engine;
    let mut out = serde_json::to_value(review(admission, input)).unwrap_or_default();
    if let Some(bytes) = out.pointer("/response/patch").and_then(|p| p.as_array()) {
        let raw: Vec<u8> = bytes
            .iter()
            .filter_map(|b| b.as_u64())
            .map(|b| b as u8)
            .collect();
        out["response"]["patch"] =
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(raw));
    }
    out
}

/// The object as JSON with its namespace filled in (create requests may omit it).
fn to_value(obj: &DynamicObject, req: &AdmissionRequest<DynamicObject>) -> serde_json::Value {
    let mut v = serde_json::to_value(obj).unwrap_or_default();
    if v.pointer("/metadata/namespace")
        .and_then(|n| n.as_str())
        .is_none_or(str::is_empty)
    {
        if let Some(ns) = &req.namespace {
            v["metadata"]["namespace"] = serde_json::Value::String(ns.clone());
        }
    }
    v
}

/// The object, when it lives in the namespace the request is for: lookups read only streams of
/// that namespace, so a review that names one namespace and carries an object of another (never
/// sent by an API server) resolves nothing in either.
fn in_its_namespace(
    obj: &DynamicObject,
    req: &AdmissionRequest<DynamicObject>,
) -> Option<serde_json::Value> {
    let requested = req.namespace.as_deref().filter(|n| !n.is_empty())?;
    let value = to_value(obj, req);
    let carried = value
        .pointer("/metadata/namespace")
        .and_then(|n| n.as_str());
    (carried == Some(requested)).then_some(value)
}

pub fn router(admission: Admission) -> Router {
    Router::new()
        .route(
            "/mutate",
            post(|State(a): State<Admission>, Json(body): Json<AdmissionReview<DynamicObject>>| async move { Json(review_json(&a, body)) }),
        )
        .with_state(admission)
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum Certificate {
    /// PEM files, re-read when their modification time changes.
    Files { cert: PathBuf, key: PathBuf },
    /// Generated (and shared through a Secret by `admission::keep_certificate`, which swaps it
    /// in place when it is renewed).
    Generated { cert_pem: String, key_pem: String },
}

/// A self-signed certificate for `hosts` (the webhook Service's DNS names), valid for a year.
pub fn generate(hosts: &[String]) -> anyhow::Result<Certificate> {
    let pair = super::certificate::generate(hosts, std::time::SystemTime::now())?;
    Ok(Certificate::Generated {
        cert_pem: pair.cert_pem,
        key_pem: pair.key_pem,
    })
}

/// The CA certificates whose clients a listener accepts (the API server's client certificate,
/// from an `AdmissionConfiguration` `kubeConfigFile`): a PEM bundle.
pub fn client_roots(pem: &[u8]) -> anyhow::Result<Arc<rustls::RootCertStore>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| anyhow::anyhow!("client CA bundle: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| anyhow::anyhow!("client CA bundle: {e}"))?;
    }
    if roots.is_empty() {
        anyhow::bail!("client CA bundle holds no certificate");
    }
    Ok(Arc::new(roots))
}

/// One listener's TLS: the certificate it serves, swappable while it runs, and the client CAs
/// it demands a certificate from (none: any client may connect).
#[derive(Clone)]
pub struct ServerTls {
    config: RustlsConfig,
    clients: Option<Arc<rustls::RootCertStore>>,
}

impl ServerTls {
    pub fn new(
        pair: &super::certificate::Pair,
        clients: Option<Arc<rustls::RootCertStore>>,
    ) -> anyhow::Result<Self> {
        let config = RustlsConfig::from_config(server_config(pair, clients.as_ref())?);
        Ok(Self { config, clients })
    }

    /// Serves `pair` from the next handshake on; connections already open keep theirs.
    pub fn load(&self, pair: &super::certificate::Pair) -> anyhow::Result<()> {
        self.config
            .reload_from_config(server_config(pair, self.clients.as_ref())?);
        Ok(())
    }
}

fn server_config(
    pair: &super::certificate::Pair,
    clients: Option<&Arc<rustls::RootCertStore>>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("admission TLS certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("admission TLS key: {e}"))?;
    let builder = rustls::ServerConfig::builder();
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder(roots.clone())
                .build()
                .map_err(|e| anyhow::anyhow!("client CA bundle: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| anyhow::anyhow!("admission TLS certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_pair(cert: &PathBuf, key: &PathBuf) -> anyhow::Result<super::certificate::Pair> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
    };
    Ok(super::certificate::Pair {
        cert_pem: read(cert)?,
        key_pem: read(key)?,
    })
}

/// The listener's TLS for `cert` (files are then re-read when they change).
pub async fn tls_for(
    cert: &Certificate,
    clients: Option<Arc<rustls::RootCertStore>>,
) -> anyhow::Result<ServerTls> {
    match cert {
        Certificate::Files { cert, key } => {
            let tls = ServerTls::new(&read_pair(cert, key)?, clients)?;
            tokio::spawn(reload_on_change(
                tls.clone(),
                cert.clone(),
                key.clone(),
                Duration::from_secs(10),
            ));
            Ok(tls)
        }
        Certificate::Generated { cert_pem, key_pem } => {
            let pair = super::certificate::Pair {
                cert_pem: cert_pem.clone(),
                key_pem: key_pem.clone(),
            };
            ServerTls::new(&pair, clients)
        }
    }
}

/// The rustls config of `cert` as axum-server takes it (benches and tests serving their own
/// routers).
pub async fn tls_config(cert: &Certificate) -> anyhow::Result<RustlsConfig> {
    Ok(tls_for(cert, None).await?.config)
}

/// Re-reads certificate files whenever their modification time changes, so cert-manager
/// renewals are served without a restart.
pub async fn reload_on_change(tls: ServerTls, cert: PathBuf, key: PathBuf, every: Duration) {
    let stamp = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = (stamp(&cert), stamp(&key));
    loop {
        tokio::time::sleep(every).await;
        let now = (stamp(&cert), stamp(&key));
        if now != last {
            match read_pair(&cert, &key).and_then(|pair| tls.load(&pair)) {
                Ok(()) => {
                    tracing::info!(cert = %cert.display(), "admission certificate reloaded");
                    last = now;
                }
                // A half-written pair: keep serving the old one and try again next tick.
                Err(e) => {
                    warn!(error = %e, "admission certificate reload failed; keeping the current one")
                }
            }
        }
    }
}

pub async fn serve(
    addr: SocketAddr,
    cert: Certificate,
    admission: Admission,
) -> anyhow::Result<()> {
    serve_router(addr, cert, router(admission)).await
}

/// Serves any router over the webhook's TLS.
pub async fn serve_router(addr: SocketAddr, cert: Certificate, app: Router) -> anyhow::Result<()> {
    serve_router_with(addr, cert, app, ListenerLimits::default()).await
}

/// [`serve_router`] with the listener's bounds given: a connection limit, the handshake and
/// first-request deadline, the header-read timeout and the idle timeout.
pub async fn serve_router_with(
    addr: SocketAddr,
    cert: Certificate,
    app: Router,
    limits: ListenerLimits,
) -> anyhow::Result<()> {
    serve_tls(addr, tls_for(&cert, None).await?, app, limits).await
}

/// Serves `app` on `addr` with `tls`, within `limits`.
pub async fn serve_tls(
    addr: SocketAddr,
    tls: ServerTls,
    app: Router,
    limits: ListenerLimits,
) -> anyhow::Result<()> {
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls.config)
        .handshake_timeout(limits.handshake)
        .acceptor(Limited::new(limits));
    let mut server = axum_server::bind(addr)
        .acceptor(acceptor)
        .first_request_timeout(limits.handshake);
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read);
    server
        .serve(app.into_make_service())
        .await
        .map_err(|e| anyhow::anyhow!("HTTPS server on {addr}: {e}"))
}
