//! Tenants that do not trust each other, on the real API server, with the operator binary as its
//! own process: namespace A imports a private image; namespace B tries every HEAD trick to get
//! A's image config, and runs hostile registries (an absurd `Retry-After`, a hundred hosts with
//! endless slow bodies). The operator must stay up, within the chart's memory limit, and keep
//! importing everyone else's streams.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use imagestream_operator::api::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::common::{self, read_head, respond};
use super::process::Operator;
use super::{cluster, enabled};

/// Half the chart's default memory limit (512Mi, charts/imagestream-operator/values.yaml): a
/// hostile registry must not take the operator anywhere near it.
const CHART_MEMORY_LIMIT: u64 = 256 * 1024 * 1024;
const SECRET_ENV: &str = "API_KEY=hunter2-e2e";

async fn create_stream(api: &Api<ImageStream>, name: &str, tags: &[(String, String)]) {
    let tags: Vec<_> = tags
        .iter()
        .map(|(tag, from)| json!({"name": tag, "from": {"kind": "DockerImage", "name": from}}))
        .collect();
    let stream: ImageStream = serde_json::from_value(json!({
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
        "metadata": {"name": name}, "spec": {"tags": tags}
    }))
    .unwrap();
    api.create(&PostParams::default(), &stream).await.unwrap();
}

fn pull_secret(registry: &str, user: &str, password: &str) -> Secret {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = json!({"auths": {registry: {"auth": auth}}}).to_string();
    serde_json::from_value(json!({
        "metadata": {"name": "private-pull"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)},
    }))
    .unwrap()
}

/// A status line and headers, for a body-less answer.
type Answer = (&'static str, Vec<(&'static str, String)>);

/// Serves every connection with `answer`; returns the address.
fn fake(answer: fn(&str, &str) -> Answer) -> String {
    common::spawn_server(move |mut stream| async move {
        let Some(head) = read_head(&mut stream).await else {
            return;
        };
        let (status, headers) = answer(&head.method, &head.path);
        respond(&mut stream, status, &headers, b"").await;
    })
}

/// Announces a 3.9 MiB manifest and sends a kilobyte a second: the body never ends within the
/// operator's timeout. Counts the connections it served.
fn endless(count: Arc<AtomicUsize>) -> String {
    common::spawn_server(move |mut stream| {
        let count = count.clone();
        async move {
            use tokio::io::AsyncWriteExt;
            let Some(head) = read_head(&mut stream).await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            if head.method == "HEAD" {
                respond(&mut stream, "200 OK", &[], b"").await;
                return;
            }
            let header = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 3900000\r\n\r\n";
            if stream.write_all(header.as_bytes()).await.is_err() {
                return;
            }
            for _ in 0..120 {
                if stream.write_all(&[b' '; 1024]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    })
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn tenants_cannot_read_each_other_or_take_the_operator_down() {
    if !enabled() {
        return;
    }
    common::install_crypto();
    let Some(private) = common::Registry::start(Some(("alice", "s3cret"))).await else {
        return;
    };
    let digest = private
        .push_image("team-a/app", "v1", SECRET_ENV, false)
        .await;
    let Some(public) = common::Registry::start(None).await else {
        return;
    };
    let (client, ns_a, mut cleanup) = cluster("tenant-a").await;
    let ns_b = format!("tenant-b-{}", std::process::id());
    super::fixtures::namespace(&client, &mut cleanup, &ns_b).await;
    Api::<Secret>::namespaced(client.clone(), &ns_a)
        .create(
            &PostParams::default(),
            &pull_secret(&private.addr, "alice", "s3cret"),
        )
        .await
        .unwrap();
    let mut operator = Operator::spawn(
        "tenants",
        &[
            ("SCHEDULED_IMPORT_INTERVAL", "5s".into()),
            ("INSECURE_REGISTRIES", "127.0.0.1".into()),
            // The endless bodies fail within seconds, so the attack's one reconcile (101 tags,
            // 16 at a time for the namespace) ends within the test.
            ("REGISTRY_TIMEOUT", "4s".into()),
        ],
    );

    // A imports its private image; its config (env included) is in A's status.
    let a: Api<ImageStream> = Api::namespaced(client.clone(), &ns_a);
    let private_ref = format!("{}/team-a/app:v1", private.addr);
    create_stream(&a, "app", &[("v1".into(), private_ref.clone())]).await;
    let imported = super::wait_for(&a, "app", "A's private import", |s| {
        s.status_tag("v1").is_some_and(|t| !t.items.is_empty())
    })
    .await;
    assert_eq!(imported.status_tag("v1").unwrap().items[0].image, digest);
    let a_json = serde_json::to_string(&imported.status).unwrap();
    assert!(a_json.contains(SECRET_ENV), "A sees its own config");

    // B: a registry that answers HEAD with A's digest, the private registry itself without
    // A's secret, A's repository by digest, and a copy of A's tag.
    static DIGEST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let _ = DIGEST.set(digest.clone());
    let liar = fake(|method, _| match method {
        "HEAD" => (
            "200 OK",
            vec![
                (
                    "Docker-Content-Digest",
                    DIGEST.get().cloned().unwrap_or_default(),
                ),
                (
                    "Content-Type",
                    "application/vnd.docker.distribution.manifest.v2+json".into(),
                ),
            ],
        ),
        _ => ("404 Not Found", vec![]),
    });
    let b: Api<ImageStream> = Api::namespaced(client.clone(), &ns_b);
    let tricks = [
        ("liar".to_string(), format!("{liar}/team-a/app:v1")),
        ("nosecret".to_string(), private_ref.clone()),
        (
            "bydigest".to_string(),
            format!("{}/team-a/app@{digest}", private.addr),
        ),
    ];
    create_stream(&b, "tricks", &tricks).await;
    let b_stream = super::wait_for(&b, "tricks", "B's tricks to fail", |s| {
        tricks
            .iter()
            .all(|(tag, _)| s.status_tag(tag).is_some_and(|t| !t.conditions.is_empty()))
    })
    .await;
    let b_json = serde_json::to_string(&b_stream).unwrap();
    assert!(
        !b_json.contains("hunter2"),
        "B obtained A's config: {b_json}"
    );
    for (tag, _) in &tricks {
        let t = b_stream.status_tag(tag).unwrap();
        assert!(t.items.is_empty(), "B's {tag} counts as imported: {t:?}");
    }

    // B's hostile registries: an absurd Retry-After, and 100 hosts with endless slow bodies.
    let rate_limited = fake(|_, _| {
        (
            "429 Too Many Requests",
            vec![("Retry-After", "18446744073709551615".to_string())],
        )
    });
    let served = Arc::new(AtomicUsize::new(0));
    let mut hostile = vec![("limited".to_string(), format!("{rate_limited}/x/y:1"))];
    hostile.extend((0..100).map(|i| {
        (
            format!("slow{i}"),
            format!("{}/x/y:1", endless(served.clone())),
        )
    }));
    create_stream(&b, "hostile", &hostile).await;
    let pid = operator.pid();
    let mut peak = 0;
    until(
        "the hostile registries to be contacted",
        Duration::from_secs(60),
        || {
            peak = peak.max(rss_bytes(pid));
            let served = served.load(Ordering::SeqCst);
            async move { served >= 20 }
        },
    )
    .await;

    // Meanwhile A's other stream imports from an honest registry, promptly.
    let fresh = public.push_image("team-a/web", "1", "web", true).await;
    let started = Instant::now();
    create_stream(
        &a,
        "web",
        &[("1".into(), format!("{}/team-a/web:1", public.addr))],
    )
    .await;
    let web = super::wait_for(&a, "web", "A's import during the attack", |s| {
        s.status_tag("1").is_some_and(|t| !t.items.is_empty())
    })
    .await;
    assert_eq!(web.status_tag("1").unwrap().items[0].image, fresh);
    let waited = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        peak = peak.max(rss_bytes(pid));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let limited = super::wait_for(&b, "hostile", "the attack's conditions", |s| {
        s.status_tag("limited")
            .is_some_and(|t| !t.conditions.is_empty())
    })
    .await;
    peak = peak.max(rss_bytes(pid));
    let condition = limited
        .status_tag("limited")
        .and_then(|t| t.conditions.first().cloned());
    assert!(
        operator.alive(),
        "the operator died:\n{}",
        operator.log_text()
    );
    eprintln!(
        "tenants e2e: peak RSS {} MiB during the attack, A's import took {waited:?}, {} slow requests served",
        peak / (1024 * 1024),
        served.load(Ordering::SeqCst)
    );
    assert!(
        peak > 0 && peak < CHART_MEMORY_LIMIT,
        "peak RSS {peak} bytes"
    );
    assert!(
        waited < Duration::from_secs(20),
        "A's import waited {waited:?}"
    );
    assert_eq!(
        condition.and_then(|c| c.reason).as_deref(),
        Some("RateLimited"),
        "the absurd Retry-After is a condition"
    );
    drop(cleanup);
}
