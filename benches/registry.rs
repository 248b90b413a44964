//! Registry client benchmark against a real docker-registry on 127.0.0.1:
//! `cargo bench --bench registry [-- N]`. Prints requests per resolved tag (cold and for
//! unchanged re-checks, anonymous and with bearer tokens) and re-check throughput as a ratio
//! to raw HEAD throughput measured in the same run with the same concurrency.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{Registry, TokenServer};
use futures::StreamExt;
use imagestream_operator::api::ImportMode;
use imagestream_operator::registry::oci::MANIFEST_TYPES;
use imagestream_operator::registry::resolver::RegistryResolver;
use imagestream_operator::registry::{ImageRef, ImageResolver, ImportRequest, Keyring};

const CONCURRENCY: usize = 16;

fn resolver(addr: &str) -> RegistryResolver {
    common::unbudgeted_resolver(addr, CONCURRENCY)
}

fn request(reference: &str, keyring: &Keyring) -> ImportRequest {
    ImportRequest {
        reference: ImageRef::parse(reference).expect("reference"),
        insecure: true,
        import_mode: ImportMode::Legacy,
        prefer_arch: None,
        prefer_os: None,
        keyring: keyring.clone(),
        known: None,
    }
}

/// Resolves every reference once; returns (requests sent, seconds).
async fn pass(r: &RegistryResolver, refs: &[String], keyring: &Keyring) -> (u64, f64) {
    let before = r.metrics().total_requests();
    let started = Instant::now();
    let results: Vec<_> =
        futures::stream::iter(refs.iter().map(|x| r.resolve(request(x, keyring))))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    let secs = started.elapsed().as_secs_f64();
    let failed = results.iter().filter(|x| x.is_err()).count();
    assert_eq!(failed, 0, "{:?}", results.iter().find(|x| x.is_err()));
    (r.metrics().total_requests() - before, secs)
}

async fn raw_heads(addr: &str, paths: &[String]) -> f64 {
    let client = reqwest::Client::new();
    let accept = MANIFEST_TYPES.join(", ");
    let started = Instant::now();
    futures::stream::iter(paths.iter().map(|p| {
        let req = client
            .head(format!("http://{addr}/v2/{p}"))
            .header("Accept", accept.clone());
        async move {
            let r = req.send().await.expect("HEAD");
            assert!(r.status().is_success());
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .collect::<Vec<_>>()
    .await;
    paths.len() as f64 / started.elapsed().as_secs_f64()
}

async fn run(n: usize) {
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let (bytes, mt) = reg
        .image_manifest("bench/app", "x", "linux", "amd64", false)
        .await;
    let mut refs = Vec::new();
    let mut paths = Vec::new();
    for i in 0..n {
        // Distinct images, so the cold pass really fetches n manifests and configs.
        let (b, m) = if i == 0 {
            (bytes.clone(), mt)
        } else {
            reg.image_manifest("bench/app", &format!("m{i}"), "linux", "amd64", false)
                .await
        };
        reg.push_manifest("bench/app", &format!("t{i}"), b, m).await;
        refs.push(format!("{}/bench/app:t{i}", reg.addr));
        paths.push(format!("bench/app/manifests/t{i}"));
    }
    let r = resolver(&reg.addr);
    let none = Keyring::default();
    let (cold_req, cold_secs) = pass(&r, &refs, &none).await;
    let (warm_req, warm_secs) = pass(&r, &refs, &none).await;
    // Best of three for both sides, so one scheduler hiccup does not decide the ratio.
    let mut warm_rate: f64 = n as f64 / warm_secs;
    let mut raw_rate: f64 = 0.0;
    for _ in 0..3 {
        let (_, s) = pass(&r, &refs, &none).await;
        warm_rate = warm_rate.max(n as f64 / s);
        raw_rate = raw_rate.max(raw_heads(&reg.addr, &paths).await);
    }
    println!("anonymous registry, {n} distinct tags, concurrency {CONCURRENCY}:");
    println!(
        "  cold resolve:        {:.2} requests/tag, {:.0} tags/s",
        cold_req as f64 / n as f64,
        n as f64 / cold_secs
    );
    println!(
        "  unchanged re-check:  {:.2} requests/tag, {:.0} tags/s",
        warm_req as f64 / n as f64,
        warm_rate
    );
    println!("  raw HEAD:            {raw_rate:.0} requests/s");
    println!("  re-check / raw HEAD: {:.2}", warm_rate / raw_rate);

    let tokens = TokenServer::start();
    let Some(treg) = Registry::start_with_tokens(&tokens).await else {
        return;
    };
    let repos = 10.min(n);
    let mut trefs = Vec::new();
    for i in 0..n {
        let repo = format!("private/app{}", i % repos);
        let (b, m) = treg
            .image_manifest(&repo, &format!("t{i}"), "linux", "amd64", false)
            .await;
        treg.push_manifest(&repo, &format!("t{i}"), b, m).await;
        trefs.push(format!("{}/{repo}:t{i}", treg.addr));
    }
    let keyring = keyring(&treg.addr);
    let tr = resolver(&treg.addr);
    let t0 = tokens.requests.load(std::sync::atomic::Ordering::SeqCst);
    let (cold, _) = pass(&tr, &trefs, &keyring).await;
    let t1 = tokens.requests.load(std::sync::atomic::Ordering::SeqCst);
    let (warm, _) = pass(&tr, &trefs, &keyring).await;
    let t2 = tokens.requests.load(std::sync::atomic::Ordering::SeqCst);
    println!("bearer-token registry, {n} tags in {repos} repositories, with a pull secret:");
    println!(
        "  cold resolve:        {:.2} requests/tag ({} token fetches)",
        cold as f64 / n as f64,
        t1 - t0
    );
    println!(
        "  unchanged re-check:  {:.2} requests/tag ({} token fetches)",
        warm as f64 / n as f64,
        t2 - t1
    );
}

fn keyring(registry: &str) -> Keyring {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let auth = b64.encode(format!("{}:{}", common::TOKEN_USER, common::TOKEN_PASSWORD));
    let config = serde_json::json!({"auths": {registry: {"auth": auth}}}).to_string();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "pull", "namespace": "bench"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64.encode(config)},
    }))
    .expect("secret");
    Keyring::from_secrets([&secret]).0
}

fn main() {
    common::install_crypto();
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(n));
}
