//! Admission latency, in process: `cargo bench --bench admission`. 1,000 AdmissionReviews
//! (Deployments with a short image name, half of them rewritten) against a store of 1,000
//! streams; prints p50/p99 of the whole review (JSON in, JSON out), TLS excluded.

use std::time::Instant;

use imagestream_operator::admission::server::{review_json, Admission};
use imagestream_operator::api::ImageStream;
use kube::core::admission::AdmissionReview;
use kube::core::DynamicObject;
use kube::runtime::{reflector, watcher};
use serde_json::json;

fn stream(i: usize) -> ImageStream {
    let s = ImageStream::test(&format!("app{i}"))
        .in_namespace("bench")
        .imported("v1", &format!("quay.io/x/app{i}@sha256:abc"));
    match i.is_multiple_of(2) {
        true => s.local_lookup(),
        false => s,
    }
}

fn request(i: usize) -> AdmissionReview<DynamicObject> {
    serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": format!("u{i}"), "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "namespace": "bench", "operation": "CREATE", "name": format!("d{i}"), "userInfo": {},
            "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("d{i}"), "namespace": "bench"},
                "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": format!("app{i}:v1")}, {"name": "side", "image": "envoy:1"}]}}}}}
    }))
    .expect("review")
}

fn main() {
    let (store, mut writer) = reflector::store();
    for i in 0..1000 {
        writer.apply_watcher_event(&watcher::Event::Apply(stream(i)));
    }
    let admission = Admission::new(store);
    let requests: Vec<_> = (0..1000).map(request).collect();
    // Warm up allocators and caches.
    for r in requests.iter().take(100) {
        let _ = review_json(&admission, r.clone());
    }
    let mut times = Vec::with_capacity(requests.len());
    let mut patched = 0;
    for r in &requests {
        let body = serde_json::to_vec(r).expect("json");
        let started = Instant::now();
        let parsed: AdmissionReview<DynamicObject> = serde_json::from_slice(&body).expect("parse");
        let out = review_json(&admission, parsed);
        let bytes = serde_json::to_vec(&out).expect("json");
        times.push(started.elapsed());
        patched += usize::from(out["response"]["patch"].is_string());
        std::hint::black_box(bytes);
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!("1000 admission reviews (Deployments, {patched} rewritten) against 1000 streams, parse + decide + encode:");
    println!(
        "  p50 {:?}   p99 {:?}   max {:?}",
        pct(0.50),
        pct(0.99),
        times[times.len() - 1]
    );
}
