//! Trigger fan-out benchmark: `cargo bench --bench triggers`. 1,000 annotated Deployments
//! following 100 stream tags are indexed; one tag moves. Prints the index lookup time, the
//! evaluation time for the dependents, and how many patches were sent (goal: = dependents).
//! The API server is an in-process stub that answers every request instantly.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use imagestream_operator::api::{ImageStream, TRIGGERS};
use imagestream_operator::triggers::controller::{reconcile_workload, Fired, TriggerContext};
use imagestream_operator::triggers::workload::Kind;
use kube::client::Body;
use kube::core::DynamicObject;
use kube::runtime::{reflector, watcher};
use serde_json::json;

const WORKLOADS: usize = 1000;
const STREAMS: usize = 100;

fn stream(i: usize, digest: &str) -> ImageStream {
    ImageStream::test(&format!("s{i}"))
        .in_namespace("bench")
        .tag("latest", &format!("quay.io/x/s{i}"))
        .imported("latest", &format!("quay.io/x/s{i}@{digest}"))
}

fn deployment(i: usize) -> DynamicObject {
    let s = i % STREAMS;
    let triggers = format!(
        r#"[{{"from":{{"kind":"ImageStreamTag","name":"s{s}:latest"}},"fieldPath":"spec.template.spec.containers[?(@.name=='app')].image"}}]"#
    );
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("d{i}"), "namespace": "bench", "resourceVersion": "1", "annotations": {TRIGGERS: triggers}},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": format!("quay.io/x/s{s}@sha256:old")}]}}}
    }))
    .expect("deployment")
}

#[tokio::main]
async fn main() {
    let patches = Arc::new(AtomicUsize::new(0));
    let counter = patches.clone();
    let service = tower::service_fn(move |req: Request<Body>| {
        let counter = counter.clone();
        async move {
            if req.method() == http::Method::PATCH {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            let reply = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "bench"}});
            Ok::<_, std::convert::Infallible>(Response::new(Body::from(
                serde_json::to_vec(&reply).expect("json"),
            )))
        }
    });
    let client = kube::Client::new(service, "bench");
    let (store, mut writer) = reflector::store();
    for i in 0..STREAMS {
        writer.apply_watcher_event(&watcher::Event::Apply(stream(i, "sha256:old")));
    }
    let ctx = TriggerContext::new(client, store);
    let workloads: std::collections::HashMap<String, _> = (0..WORKLOADS)
        .map(|i| (format!("d{i}"), deployment(i)))
        .collect();
    let started = Instant::now();
    for obj in workloads.values() {
        ctx.observe(Kind::Deployment, &obj.metadata);
    }
    let indexing = started.elapsed();

    // Tag s7:latest moves.
    writer.apply_watcher_event(&watcher::Event::Apply(stream(7, "sha256:new")));
    let rounds = 10_000u32;
    let started = Instant::now();
    let mut dependents = Vec::new();
    for _ in 0..rounds {
        dependents = ctx.index.lock().dependents("bench/s7:latest");
    }
    let lookup = started.elapsed() / rounds;

    let started = Instant::now();
    let mut fired = 0;
    for key in &dependents {
        let obj = &workloads[&key.name];
        if let Ok(Fired::Patched(_)) = reconcile_workload(&ctx, key, obj).await {
            fired += 1;
        }
    }
    let evaluation = started.elapsed();
    println!("{WORKLOADS} annotated Deployments over {STREAMS} stream tags (indexed in {indexing:?}); one tag moves:");
    println!(
        "  index lookup:  {lookup:?} per lookup ({} dependents)",
        dependents.len()
    );
    println!("  evaluation:    {evaluation:?} for all dependents, {fired} fired");
    println!(
        "  patches sent:  {} (dependents: {})",
        patches.load(Ordering::SeqCst),
        dependents.len()
    );
}
