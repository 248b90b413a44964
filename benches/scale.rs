//! The scale benchmark: N image streams × 10 scheduled tags (each tag its own digest in a local
//! docker-registry) and N Deployments following them, plus unrelated Pods and ReplicaSets, on the
//! cluster named by KUBECONFIG (the shared control plane), with the operator binary running.
//!
//! `cargo bench --bench scale -- [--streams N] [--interval SECS] [--pods P] [--replicasets R]
//! [--default-budget] [--changes C] [--restart-default-budget]`
//!
//! Prints: time to import every tag and to pin every Deployment, the operator's RSS (VmHWM and
//! VmRSS), registry requests by method per reference (counted from the registry's own log), API
//! writes by verb and resource (from the API server's `apiserver_request_total`), and the same for
//! one steady-state interval and for a change of C tags; then the registry's own throughput for
//! the minimal request mix, measured in the same run. Without KUBECONFIG it prints why and exits.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use imagestream_operator::api::{ImageStream, TRIGGERS};
use imagestream_operator::crdgen::imagestream_crd;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

const TAGS: usize = 10;
const NAMESPACES: usize = 10;

struct Args {
    streams: usize,
    interval: u64,
    pods: usize,
    replicasets: usize,
    default_budget: bool,
    restart_default_budget: bool,
    changes: usize,
}

fn args() -> Args {
    let mut a = Args {
        streams: 1000,
        interval: 60,
        pods: 0,
        replicasets: 0,
        default_budget: false,
        restart_default_budget: false,
        changes: 100,
    };
    let argv: Vec<String> = std::env::args().collect();
    let num = |i: usize| -> usize {
        argv.get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{} takes a number", argv[i]))
    };
    for (i, arg) in argv.iter().enumerate() {
        match arg.as_str() {
            "--streams" => a.streams = num(i),
            "--interval" => a.interval = num(i) as u64,
            "--pods" => a.pods = num(i),
            "--replicasets" => a.replicasets = num(i),
            "--changes" => a.changes = num(i),
            "--default-budget" => a.default_budget = true,
            "--restart-default-budget" => a.restart_default_budget = true,
            _ => {}
        }
    }
    a
}

fn ns(i: usize) -> String {
    format!("scale-{}", i % NAMESPACES)
}

/// Requests the registry served, by method, from its log.
fn registry_requests(log: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    count_requests(text.lines())
}

/// Requests the registry served up to its last manifest GET: while nothing has moved, only a
/// first import GETs a manifest, so this is the first pass without the scheduled re-checks that
/// fall due while the benchmark notices the pass has ended.
fn first_pass_requests(log: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("msg=\"response completed"))
        .collect();
    let end = lines
        .iter()
        .rposition(|l| l.contains("method=GET") && l.contains("/manifests/"))
        .map_or(0, |i| i + 1);
    count_requests(lines[..end].iter().copied())
}

fn count_requests<'a>(lines: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in lines.filter(|l| l.contains("msg=\"response completed")) {
        let method = line
            .split("http.request.method=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("?");
        let what = if line.contains("/manifests/") {
            "manifest"
        } else if line.contains("/blobs/") {
            "blob"
        } else {
            "other"
        };
        *out.entry(format!("{method} {what}")).or_insert(0) += 1;
    }
    out
}

fn diff(
    after: &BTreeMap<String, usize>,
    before: &BTreeMap<String, usize>,
) -> BTreeMap<String, usize> {
    after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// Mutating requests the API server has served, by verb and resource.
async fn api_writes(client: &Client) -> BTreeMap<String, usize> {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = client.request_text(req).await.unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let label = |name: &str| {
            line.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        let verb = label("verb");
        if !["POST", "PUT", "PATCH", "APPLY", "DELETE"].contains(&verb.as_str()) {
            continue;
        }
        // Writes that took effect: a 409 (the object moved between read and write) is retried
        // and counted once it succeeds.
        if !label("code").starts_with('2') {
            continue;
        }
        let subresource = label("subresource");
        let resource = match subresource.as_str() {
            "" => label("resource"),
            s => format!("{}/{s}", label("resource")),
        };
        let count: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(format!("{verb} {resource}")).or_insert(0) += count as usize;
    }
    out
}

/// The API server's own CPU seconds (`process_cpu_seconds_total`), 0 if it does not say: what
/// the writes cost the control plane, which on one machine is CPU the registry does not get.
async fn api_cpu(client: &Client) -> f64 {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = client.request_text(req).await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The writes only the operator makes (the controller-manager's own writes are left out).
fn operator_writes(all: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    const OURS: [&str; 6] = [
        "APPLY imagestreams/status",
        "PATCH imagestreams",
        "PUT imagestreams",
        "POST events",
        "PATCH events",
        "PATCH deployments",
    ];
    all.iter()
        .filter(|(k, _)| OURS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// Starts the operator binary (under `IMAGESTREAM_BENCH_WRAPPER`, e.g. `heaptrack`, if set) in
/// its own process group, so a wrapper and the operator under it stop together.
fn spawn_operator(
    a: &Args,
    registry: &str,
    budget: &str,
    metrics_port: u16,
    log: &Path,
) -> (std::process::Child, StopGroup) {
    let binary = env!("CARGO_BIN_EXE_imagestream-operator");
    let mut command = match std::env::var("IMAGESTREAM_BENCH_WRAPPER") {
        Ok(wrapper) if !wrapper.is_empty() => {
            let mut c = std::process::Command::new(wrapper);
            c.arg(binary);
            c
        }
        _ => std::process::Command::new(binary),
    };
    let operator = command
        .arg("run")
        .env("SCHEDULED_IMPORT_INTERVAL", format!("{}s", a.interval))
        .env("MAX_SCHEDULED_IMPORTS_PER_MINUTE", "0")
        .env("INSECURE_REGISTRIES", registry)
        .env("REGISTRY_BUDGETS", budget)
        .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(log).expect("log"))
        .stderr(std::process::Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("operator binary");
    let stop = StopGroup(operator.id());
    (operator, stop)
}

/// The operator's `/metrics` text; empty while it does not answer.
async fn operator_metrics(http: &reqwest::Client, port: u16) -> String {
    match http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// `registry=seconds` for each registry the operator schedules.
async fn effective_intervals(http: &reqwest::Client, port: u16) -> String {
    let text = operator_metrics(http, port).await;
    text.lines()
        .filter(|l| l.starts_with("imagestream_schedule_effective_interval_seconds{"))
        .filter_map(|l| {
            let registry = l.split("registry=\"").nth(1)?.split('"').next()?;
            let value = l.rsplit(' ').next()?;
            Some(format!("{registry}={value}s"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything imported: a fresh operator with the default registry budget (20 requests/s)
/// reports how far it stretches the schedule, and keeps to the budget.
async fn default_budget_phase(
    a: &Args,
    http: &reqwest::Client,
    registry: &str,
    reg_log: &Path,
    log: &Path,
) {
    let port = common::free_port();
    let (mut operator, stop) = spawn_operator(a, registry, "", port, log);
    // Ready means the stream cache has synced: the schedule then knows every scheduled tag, and
    // the interval it reports is no longer growing with the streams still being listed.
    let mut said = String::new();
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ready = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        said = effective_intervals(http, port).await;
        if ready && !said.is_empty() {
            break;
        }
    }
    let before = registry_requests(reg_log);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let heads = diff(&registry_requests(reg_log), &before)
        .get("HEAD manifest")
        .copied()
        .unwrap_or(0);
    println!(
        "  default registry budget: effective scheduled interval {said} once ready, {} 30 s later; {:.1} HEAD/s over those 30 s",
        effective_intervals(http, port).await,
        heads as f64 / 30.0
    );
    drop(stop);
    let _ = operator.wait();
}

/// Stops the operator's process group however the benchmark ends, with SIGTERM so that a
/// profiler wrapper gets to write its data.
struct StopGroup(u32);

impl Drop for StopGroup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0)])
            .status();
    }
}

/// CPU seconds the process has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may contain spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// The operator's pid: the spawned process, or under a wrapper the binary in its process group.
fn operator_pid(spawned: u32, binary: &str) -> u32 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return spawned;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let pgrp = stat
                .rsplit_once(") ")
                .and_then(|(_, r)| r.split_whitespace().nth(2))
                .and_then(|v| v.parse::<u32>().ok());
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            pgrp == Some(spawned) && exe.is_some_and(|e| e == Path::new(binary))
        })
        .unwrap_or(spawned)
}

fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kib("VmHWM:"), kib("VmRSS:"))
}

fn per_ref(counts: &BTreeMap<String, usize>, refs: usize) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k} {:.2}", *v as f64 / refs as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Pushes the image of `repo:tag` (distinct per `version`) as one manifest PUT; the repository's
/// config and layer blobs are pushed once by `push_blobs`.
async fn push_tag(
    http: &reqwest::Client,
    reg: &str,
    repo: &str,
    tag: &str,
    version: &str,
    blobs: &(String, usize, String, usize),
) -> String {
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": blobs.1, "digest": blobs.0},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": blobs.3, "digest": blobs.2}],
        "annotations": {"bench.version": format!("{repo}:{tag}:{version}")},
    });
    let body = serde_json::to_vec(&manifest).expect("json");
    let digest = common::digest(&body);
    let r = http
        .put(format!("http://{reg}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(body)
        .send()
        .await
        .expect("push manifest");
    assert!(r.status().is_success(), "push {repo}:{tag}: {}", r.status());
    digest
}

async fn push_blob(http: &reqwest::Client, reg: &str, repo: &str, data: &[u8]) -> (String, usize) {
    let digest = common::digest(data);
    let start = http
        .post(format!("http://{reg}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("start upload");
    let location = start
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .expect("upload location")
        .to_string();
    let url = if location.starts_with("http") {
        location
    } else {
        format!("http://{reg}{location}")
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let r = http
        .put(format!("{url}{sep}digest={digest}"))
        .header("Content-Type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .expect("upload blob");
    assert!(r.status().is_success(), "blob upload: {}", r.status());
    (digest, data.len())
}

async fn setup_namespaces(client: &Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    for i in 0..NAMESPACES {
        let name = ns(i);
        // A previous run's namespaces may still be emptying: the garbage collection would load
        // the API server this run measures, and creating objects in them would fail.
        let exists = loop {
            match api.get_opt(&name).await {
                Ok(Some(old)) if old.metadata.deletion_timestamp.is_some() => {
                    tokio::time::sleep(Duration::from_secs(1)).await
                }
                Ok(Some(_)) => break true,
                _ => break false,
            }
        };
        if !exists {
            let _ = api
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns"),
                )
                .await;
        }
    }
}

async fn create_all<K, F>(api_for: impl Fn(&str) -> Api<K>, count: usize, make: F)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    F: Fn(usize) -> (String, K),
{
    stream::iter(0..count)
        .map(|i| {
            let (namespace, obj) = make(i);
            let api = api_for(&namespace);
            async move {
                let _ = api.create(&PostParams::default(), &obj).await;
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

/// Polls until `done(count)`; returns the time it took.
async fn until(
    what: &str,
    started: Instant,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> (usize, usize),
) -> Duration {
    loop {
        let (have, want) = probe().await;
        if have >= want {
            let took = started.elapsed();
            println!("  {what}: {have}/{want} in {:.1}s", took.as_secs_f64());
            return took;
        }
        if started.elapsed() > limit {
            println!(
                "  {what}: only {have}/{want} after {:.0}s",
                limit.as_secs_f64()
            );
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits until the operator's series (summed over its label sets) reaches `want`.
async fn wait_metric(
    http: &reqwest::Client,
    port: u16,
    series: &str,
    want: usize,
    limit: Duration,
) {
    let started = Instant::now();
    while started.elapsed() < limit {
        let text = operator_metrics(http, port).await;
        let sum: f64 = text
            .lines()
            .filter(|l| l.starts_with(series))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if sum >= want as f64 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Sums `count` over every object `api` lists with `params`, page by page.
async fn count_all<K>(api: Api<K>, params: ListParams, count: impl Fn(&K) -> usize) -> usize
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut total = 0;
    let mut params = params.limit(500);
    loop {
        let Ok(page) = api.list(&params).await else {
            return total;
        };
        total += page.items.iter().map(&count).sum::<usize>();
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => return total,
        }
    }
}

async fn imported_tags(client: &Client) -> usize {
    count_all(
        Api::<ImageStream>::all(client.clone()),
        ListParams::default(),
        |s| {
            let ours = s
                .metadata
                .namespace
                .as_deref()
                .is_some_and(|n| n.starts_with("scale-"));
            s.status
                .iter()
                .flat_map(|st| &st.tags)
                .filter(|t| ours && !t.items.is_empty())
                .count()
        },
    )
    .await
}

async fn pinned_deployments(
    client: &Client,
    digests: &std::collections::HashMap<String, String>,
) -> usize {
    let params = ListParams::default().labels("bench=scale");
    count_all(Api::<Deployment>::all(client.clone()), params, |d| {
        let name = d.metadata.name.clone().unwrap_or_default();
        let image = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        usize::from(
            digests
                .get(&name)
                .is_some_and(|want| image.ends_with(want.as_str())),
        )
    })
    .await
}

/// The registry's own throughput for the minimal request mix of a first import (HEAD, GET
/// manifest, GET config per reference), with as many requests at once as the operator may send.
async fn raw_throughput(reg: &str, refs: &[(String, String)], config_digest: &str) -> f64 {
    let http = reqwest::Client::new();
    let started = Instant::now();
    stream::iter(refs.iter())
        .map(|(repo, tag)| {
            let http = http.clone();
            async move {
                let accept = "application/vnd.oci.image.manifest.v1+json";
                let _ = http
                    .head(format!("http://{reg}/v2/{repo}/manifests/{tag}"))
                    .header("Accept", accept)
                    .send()
                    .await;
                if let Ok(r) = http
                    .get(format!("http://{reg}/v2/{repo}/manifests/{tag}"))
                    .header("Accept", accept)
                    .send()
                    .await
                {
                    let _ = r.bytes().await;
                }
                if let Ok(r) = http
                    .get(format!("http://{reg}/v2/{repo}/blobs/{config_digest}"))
                    .send()
                    .await
                {
                    let _ = r.bytes().await;
                }
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    refs.len() as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let a = args();
    if std::env::var("KUBECONFIG").map_or(true, |k| k.is_empty()) {
        println!(
            "SKIP scale benchmark: set KUBECONFIG to a cluster (eval \"$(../shared/k8s/up.sh)\")"
        );
        return;
    }
    common::install_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let reg_log = dir.path().join("registry.log");
    let Some(reg) = common::Registry::start_logged(&reg_log).await else {
        println!("SKIP scale benchmark: docker-registry is not installed");
        return;
    };
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG names a reachable cluster");
    let refs = a.streams * TAGS;
    println!(
        "scale: {} streams x {TAGS} tags = {refs} references, {} Deployments, {} unrelated Pods, {} unrelated ReplicaSets, interval {}s, {} registry budget",
        a.streams, a.streams, a.pods, a.replicasets, a.interval,
        if a.default_budget { "default" } else { "generous" }
    );

    // Images: per stream one repository, its blobs once, then one manifest per tag.
    let http = reqwest::Client::new();
    let started = Instant::now();
    let layer = b"bench layer".to_vec();
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Env":["BENCH=1"]},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let mut config_digest = String::new();
    let mut digests: std::collections::HashMap<String, String> = Default::default();
    let pushed: Vec<(usize, Vec<String>)> = stream::iter(0..a.streams)
        .map(|i| {
            let (http, reg, layer, config) = (
                http.clone(),
                reg.addr.clone(),
                layer.clone(),
                config.clone(),
            );
            async move {
                let repo = format!("bench/s{i}");
                let (cd, cs) = push_blob(&http, &reg, &repo, &config).await;
                let (ld, ls) = push_blob(&http, &reg, &repo, &layer).await;
                let blobs = (cd, cs, ld, ls);
                let mut tags = Vec::new();
                for t in 0..TAGS {
                    tags.push(push_tag(&http, &reg, &repo, &format!("t{t}"), "1", &blobs).await);
                }
                (i, tags)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (i, tags) in &pushed {
        digests.insert(format!("app-{i}"), tags[0].clone());
        if config_digest.is_empty() {
            config_digest = common::digest(&config);
        }
    }
    println!(
        "  pushed {refs} images in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // The cluster side.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "imagestreams.image.openshift.io",
        &PatchParams::apply("scale-bench").force(),
        &Patch::Apply(&imagestream_crd().expect("crd")),
    )
    .await
    .expect("CRD applied");
    tokio::time::sleep(Duration::from_secs(2)).await;
    setup_namespaces(&client).await;
    let started = Instant::now();
    let reg_addr = reg.addr.clone();
    create_all(
        |n| Api::<ImageStream>::namespaced(client.clone(), n),
        a.streams,
        |i| {
            let tags: Vec<_> = (0..TAGS)
                .map(|t| json!({"name": format!("t{t}"), "from": {"kind": "DockerImage", "name": format!("{reg_addr}/bench/s{i}:t{t}")}, "importPolicy": {"scheduled": true}}))
                .collect();
            (ns(i), serde_json::from_value(json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": format!("s{i}")}, "spec": {"tags": tags}})).expect("stream"))
        },
    )
    .await;
    create_all(
        |n| Api::<Deployment>::namespaced(client.clone(), n),
        a.streams,
        |i| {
            let trigger = format!(r#"[{{"from":{{"kind":"ImageStreamTag","name":"s{i}:t0"}},"fieldPath":"spec.template.spec.containers[?(@.name=='app')].image"}}]"#);
            (ns(i), serde_json::from_value(json!({"metadata": {"name": format!("app-{i}"), "labels": {"bench": "scale"}, "annotations": {TRIGGERS: trigger}},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": format!("app-{i}")}}, "template": {"metadata": {"labels": {"app": format!("app-{i}")}},
                "spec": {"containers": [{"name": "app", "image": "placeholder"}]}}}})).expect("deployment"))
        },
    )
    .await;
    create_all(
        |n| Api::<Pod>::namespaced(client.clone(), n),
        a.pods,
        |i| (ns(i), serde_json::from_value(json!({"metadata": {"name": format!("unrelated-{i}"), "labels": {"bench": "unrelated"}, "annotations": {"example.com/note": "x".repeat(200)}},
            "spec": {"containers": [{"name": "c", "image": "registry.example/none:1"}]}})).expect("pod")),
    )
    .await;
    create_all(
        |n| Api::<ReplicaSet>::namespaced(client.clone(), n),
        a.replicasets,
        |i| (ns(i), serde_json::from_value(json!({"metadata": {"name": format!("unrelated-{i}"), "labels": {"bench": "unrelated"}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"rs": format!("u{i}")}}, "template": {"metadata": {"labels": {"rs": format!("u{i}")}},
            "spec": {"containers": [{"name": "c", "image": "registry.example/none:1"}]}}}})).expect("rs")),
    )
    .await;
    println!(
        "  created the cluster objects in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // The operator.
    let budget = if a.default_budget {
        String::new()
    } else {
        format!("{}=2000:4000:64", reg.addr)
    };
    let metrics_port = common::free_port();
    let regs_before = registry_requests(&reg_log);
    let api_before = api_writes(&client).await;
    let api_cpu_before = api_cpu(&client).await;
    let started = Instant::now();
    let binary = env!("CARGO_BIN_EXE_imagestream-operator");
    let log = dir.path().join("operator.log");
    let (mut operator, _stop) = spawn_operator(&a, &reg.addr, &budget, metrics_port, &log);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = operator_pid(operator.id(), binary);
    let cpu_before = cpu_seconds(pid);
    let limit = Duration::from_secs(3600);
    // The operator's own counters say when to look; listing every stream every few seconds
    // would load the API server the benchmark is measuring.
    let successes = "imagestream_imports_total{outcome=\"success\"";
    wait_metric(&http, metrics_port, successes, refs, limit).await;
    let import_time = until("every tag imported", started, limit, async || {
        (imported_tags(&client).await, refs)
    })
    .await;
    wait_metric(
        &http,
        metrics_port,
        "imagestream_trigger_fires_total",
        a.streams,
        limit,
    )
    .await;
    let pin_time = until("every Deployment pinned", started, limit, async || {
        (pinned_deployments(&client, &digests).await, a.streams)
    })
    .await;
    let cpu_first = cpu_seconds(pid) - cpu_before;
    let first = diff(&first_pass_requests(&reg_log), &regs_before);
    let noticed = diff(&registry_requests(&reg_log), &regs_before);
    let api_first = diff(&api_writes(&client).await, &api_before);
    let api_cpu_first = api_cpu(&client).await - api_cpu_before;
    let (hwm, now) = rss(pid);
    println!(
        "  operator RSS after the initial import: VmHWM {} MiB, VmRSS {} MiB",
        hwm / 1024,
        now / 1024
    );
    println!(
        "  registry requests per reference, first pass (to the last first-import GET): {}",
        per_ref(&first, refs)
    );
    println!(
        "  ... and until the benchmark noticed the end (scheduled re-checks fall due): {}",
        per_ref(&noticed, refs)
    );
    println!(
        "  operator CPU, initial import: {cpu_first:.1} s ({:.2} ms per reference)",
        cpu_first * 1000.0 / refs as f64
    );
    println!(
        "  operator's API writes, initial import: {:?}",
        operator_writes(&api_first)
    );
    let events = api_first
        .iter()
        .filter(|(k, _)| k.ends_with(" events"))
        .map(|(_, v)| v)
        .sum::<usize>();
    println!("  Events written: {events} for {} streams", a.streams);
    println!(
        "  API server CPU, initial import (with the controller-manager's rollouts): {api_cpu_first:.1} s ({:.1} ms per stream)",
        api_cpu_first * 1000.0 / a.streams as f64
    );
    println!(
        "  import throughput: {:.0} references/s",
        refs as f64 / import_time.as_secs_f64()
    );
    let _ = pin_time;

    // One steady-state interval, after the first imports have settled into their schedule.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let regs = registry_requests(&reg_log);
    let api = api_writes(&client).await;
    tokio::time::sleep(Duration::from_secs(a.interval)).await;
    let steady = diff(&registry_requests(&reg_log), &regs);
    let api_steady = diff(&api_writes(&client).await, &api);
    println!(
        "  one steady interval ({}s): registry requests per reference: {}",
        a.interval,
        per_ref(&steady, refs)
    );
    println!(
        "  one steady interval: operator's API writes {:?}",
        operator_writes(&api_steady)
    );

    // A change of C tags that Deployments follow.
    let regs = registry_requests(&reg_log);
    let api = api_writes(&client).await;
    let started = Instant::now();
    let changed: Vec<(usize, String)> = stream::iter(0..a.changes.min(a.streams))
        .map(|i| {
            let (http, reg) = (http.clone(), reg.addr.clone());
            let layer = layer.clone();
            let config = config.clone();
            async move {
                let repo = format!("bench/s{i}");
                let blobs = (
                    common::digest(&config),
                    config.len(),
                    common::digest(&layer),
                    layer.len(),
                );
                (i, push_tag(&http, &reg, &repo, "t0", "2", &blobs).await)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (i, d) in &changed {
        digests.insert(format!("app-{i}"), d.clone());
    }
    until(
        "moved tags rolled out",
        started,
        Duration::from_secs(a.interval * 3 + 60),
        async || (pinned_deployments(&client, &digests).await, a.streams),
    )
    .await;
    let api_change = diff(&api_writes(&client).await, &api);
    let regs_change = diff(&registry_requests(&reg_log), &regs);
    println!(
        "  {} moved tags: operator's API writes {:?}",
        changed.len(),
        operator_writes(&api_change)
    );
    println!(
        "  {} moved tags: registry requests {regs_change:?}",
        changed.len()
    );
    let (hwm, now) = rss(pid);
    println!(
        "  operator RSS at the end: VmHWM {} MiB, VmRSS {} MiB",
        hwm / 1024,
        now / 1024
    );

    println!(
        "  effective scheduled interval: {}",
        effective_intervals(&http, metrics_port).await
    );
    drop(_stop);
    let _ = operator.wait();
    // The registry on its own (the operator stopped), same mix, same run.
    let sample: Vec<(String, String)> = (0..refs.min(10000))
        .map(|r| (format!("bench/s{}", r / TAGS), format!("t{}", r % TAGS)))
        .collect();
    let raw = raw_throughput(&reg.addr, &sample, &config_digest).await;
    println!(
        "  registry throughput for HEAD + GET manifest + GET config: {raw:.0} references/s; operator's first import: {:.2} of it",
        (refs as f64 / import_time.as_secs_f64()) / raw
    );

    if a.restart_default_budget {
        default_budget_phase(&a, &http, &reg.addr, &reg_log, &dir.path().join("o2.log")).await;
    }
    // Clean up what was created (namespaces take their objects with them).
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for i in 0..NAMESPACES {
        let _ = namespaces.delete(&ns(i), &DeleteParams::background()).await;
    }
}
