//! Push → rollout latency: `cargo bench --bench notify [-- N]` (default 200 pushes).
//!
//! A real docker-registry on 127.0.0.1 sends its push notifications to the receiver; the
//! receiver's re-import request goes to the real import reconcile (which HEADs the registry) and
//! then to the real trigger evaluation. The Kubernetes API is an in-process stub that applies
//! writes to one ImageStream and one Deployment. Printed: p50/p99 from notification received to
//! status written, and to workload patched.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::{Method, Request, Response};
use imagestream_operator::api::index::Index;
use imagestream_operator::api::{ImageStream, Notified, TRIGGERS};
use imagestream_operator::import::controller::{reconcile, Context, Settings};
use imagestream_operator::notify::{router, NotifyConfig, Receiver, Requester, TargetIndex};
use imagestream_operator::registry::policy::RegistryPolicy;
use imagestream_operator::registry::resolver::{RegistryResolver, ResolverConfig};
use imagestream_operator::schedule::Scheduler;
use imagestream_operator::triggers::controller::{reconcile_workload, TriggerContext};
use imagestream_operator::triggers::index::WorkloadKey;
use imagestream_operator::triggers::workload::Kind;
use kube::client::Body;
use kube::core::DynamicObject;
use kube::runtime::{reflector, watcher};
use serde_json::{json, Value};

/// The stub API server's objects and the moments writes arrived.
struct World {
    stream: Value,
    deployment: Value,
    status_written: Option<Instant>,
    patched: Option<Instant>,
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

fn client(world: Arc<Mutex<World>>) -> kube::Client {
    let service = tower::service_fn(move |req: Request<Body>| {
        let world = world.clone();
        async move {
            let (method, uri) = (req.method().clone(), req.uri().path().to_string());
            let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let mut w = world.lock().expect("world");
            let reply = match (&method, uri.as_str()) {
                (&Method::PATCH, p) if p.ends_with("/status") => {
                    w.stream["status"] = body["status"].clone();
                    w.status_written.get_or_insert(Instant::now());
                    w.stream.clone()
                }
                (&Method::PATCH, p) if p.contains("/imagestreams/") => {
                    merge(&mut w.stream, &body);
                    w.stream.clone()
                }
                (&Method::PATCH, p) if p.contains("/deployments/") => {
                    merge(
                        &mut w.deployment,
                        &json!({"spec": {"template": {"spec": {"containers": body["spec"]["template"]["spec"]["containers"]}}}}),
                    );
                    w.patched.get_or_insert(Instant::now());
                    w.deployment.clone()
                }
                _ => body,
            };
            Ok::<_, std::convert::Infallible>(Response::new(Body::from(
                serde_json::to_vec(&reply).expect("json"),
            )))
        }
    });
    kube::Client::new(service, "bench")
}

/// The receiver's requester: bump the tag's generation as the API server would store it, and
/// hand the stream to the pipeline.
struct Pipe {
    world: Arc<Mutex<World>>,
    tx: tokio::sync::mpsc::UnboundedSender<Instant>,
}

impl Requester for Pipe {
    fn request(
        &self,
        _: String,
        _: String,
        _: Vec<String>,
        notified: Notified,
    ) -> BoxFuture<'_, Result<(), String>> {
        let received = Instant::now();
        let mut w = self.world.lock().expect("world");
        let generation = w.stream["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
        w.stream["metadata"]["generation"] = json!(generation);
        w.stream["spec"]["tags"][0]["generation"] = json!(generation);
        w.stream["metadata"]["annotations"][imagestream_operator::api::NOTIFIED] =
            json!(serde_json::to_string(&notified).expect("json"));
        w.status_written = None;
        w.patched = None;
        let _ = self.tx.send(received);
        Box::pin(async { Ok(()) })
    }
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

#[tokio::main]
async fn main() {
    common::install_crypto();
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(200);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let receiver_addr = listener.local_addr().expect("addr").to_string();
    let Some(reg) = common::Registry::start_notifying(
        &format!("http://{receiver_addr}/notify/distribution"),
        Some("t"),
    )
    .await
    else {
        return;
    };
    let from = format!("{}/bench/app", reg.addr);
    let world = Arc::new(Mutex::new(World {
        stream: json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
            "metadata": {"name": "app", "namespace": "bench", "generation": 1, "uid": "u1",
                "annotations": {"openshift.io/image.dockerRepositoryCheck": "2026-01-01T00:00:00Z"}},
            "spec": {"tags": [{"name": "latest", "from": {"kind": "DockerImage", "name": from}, "generation": 1}]}}),
        deployment: json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "bench", "resourceVersion": "1", "annotations": {TRIGGERS:
                r#"[{"from":{"kind":"ImageStreamTag","name":"app:latest"},"fieldPath":"spec.template.spec.containers[?(@.name=='web')].image"}]"#}},
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "app:latest"}]}}}}),
        status_written: None,
        patched: None,
    }));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut index = TargetIndex::default();
    let initial: ImageStream =
        serde_json::from_value(world.lock().expect("world").stream.clone()).expect("stream");
    index.apply(&initial);
    let config = NotifyConfig {
        token: Some("t".into()),
        hmac_secret: None,
        registry_aliases: HashMap::new(),
        ..Default::default()
    };
    let app = router(Receiver::new(
        config,
        Arc::new(parking_lot::Mutex::new(index)),
        Arc::new(Pipe {
            world: world.clone(),
            tx,
        }),
    ));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let kube = client(world.clone());
    let resolver = RegistryResolver::new(ResolverConfig::with_policy(RegistryPolicy {
        insecure: vec![reg.addr.clone()],
        ..Default::default()
    }))
    .expect("resolver");
    let (stream_store, _w) = reflector::store();
    let ctx = Arc::new(Context::new(
        kube.clone(),
        Arc::new(resolver),
        stream_store,
        Default::default(),
        Scheduler::new(Duration::from_secs(3600), 0),
        Settings::default(),
    ));
    let (trigger_store, mut trigger_writer) = reflector::store();
    let triggers = TriggerContext::new(kube, trigger_store);
    let key = WorkloadKey {
        kind: Kind::Deployment,
        namespace: "bench".into(),
        name: "web".into(),
    };

    let (mut to_status, mut to_patch) = (Vec::new(), Vec::new());
    for i in 0..n {
        reg.push_image("bench/app", "latest", &format!("m{i}"), false)
            .await;
        let Ok(Some(received)) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await
        else {
            eprintln!("push {i}: no notification within 10 s");
            continue;
        };
        let stream: ImageStream =
            serde_json::from_value(world.lock().expect("world").stream.clone()).expect("stream");
        let _ = reconcile(Arc::new(stream), ctx.clone()).await;
        let written: ImageStream =
            serde_json::from_value(world.lock().expect("world").stream.clone()).expect("stream");
        trigger_writer.apply_watcher_event(&watcher::Event::Apply(written));
        let deployment: DynamicObject =
            serde_json::from_value(world.lock().expect("world").deployment.clone())
                .expect("deployment");
        let _ = reconcile_workload(&triggers, &key, &deployment).await;
        let w = world.lock().expect("world");
        if let (Some(s), Some(p)) = (w.status_written, w.patched) {
            to_status.push(s - received);
            to_patch.push(p - received);
        }
    }
    println!("{n} pushes to a real docker-registry, notification → import (real HEAD) → trigger, Kubernetes API stubbed in process:");
    println!("  completed: {}", to_patch.len());
    if !to_patch.is_empty() {
        println!(
            "  notification received → status written:     p50 {:?}  p99 {:?}",
            percentile(&mut to_status, 0.5),
            percentile(&mut to_status, 0.99)
        );
        println!(
            "  notification received → workload patched:   p50 {:?}  p99 {:?}",
            percentile(&mut to_patch, 0.5),
            percentile(&mut to_patch, 0.99)
        );
    }
}
