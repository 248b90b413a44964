//! API server drills on the real control plane: the API server stopped for 20 s while a push
//! happens, and a second writer that makes every stream's first status write fail with 409.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imagestream_operator::api::ImageStream;
use imagestream_operator::import::controller::{self, Settings};
use imagestream_operator::schedule::Scheduler;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

use super::fixtures::{self, until};
use super::process::Operator;
use super::{cluster, common, enabled, resolver_for, wait_for};

/// The kube-apiserver that `../shared/k8s/up.sh` started, which a test may stop and start again
/// with the same command line. Started again on drop, so a failing drill never leaves the
/// cluster down for the tests after it.
struct ApiServer {
    dir: PathBuf,
    argv: Vec<String>,
    cwd: PathBuf,
    pid: Option<u32>,
    /// Set once this test started it (so it can be reaped).
    child: Option<std::process::Child>,
}

impl ApiServer {
    /// The API server of `IMAGESTREAM_K8S_DIR`, or why there is none to stop.
    fn find() -> Result<Self, String> {
        let dir =
            PathBuf::from(std::env::var("IMAGESTREAM_K8S_DIR").map_err(|_| {
                "IMAGESTREAM_K8S_DIR is not set (not the ../shared/k8s control plane)"
            })?);
        let pid: u32 = std::fs::read_to_string(dir.join("apiserver.pid"))
            .map_err(|e| format!("apiserver.pid: {e}"))?
            .trim()
            .parse()
            .map_err(|e| format!("apiserver.pid: {e}"))?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map_err(|e| format!("the API server (pid {pid}) is not running here: {e}"))?;
        let argv = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).map_err(|e| e.to_string())?;
        Ok(Self {
            dir,
            argv,
            cwd,
            pid: Some(pid),
            child: None,
        })
    }

    /// The API server to stop, or None after saying why `drill` is skipped (outside CI only:
    /// in CI a drill that cannot run fails).
    fn or_skip(drill: &str) -> Option<Self> {
        match Self::find() {
            Ok(a) => Some(a),
            Err(why) if std::env::var("CI").as_deref() == Ok("true") => panic!("{why}"),
            Err(why) => {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "SKIP {drill}: {why}");
                None
            }
        }
    }

    /// SIGTERM, and SIGKILL if it has not exited after 10 s (its graceful shutdown waits for
    /// long-running requests, and a drill needs it gone, not tidy).
    fn stop(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        let gone = |child: &mut Option<std::process::Child>| {
            if let Some(c) = child {
                return matches!(c.try_wait(), Ok(Some(_)));
            }
            // A server an earlier drill started is this process's child, and nobody holds its
            // handle any more: once it exits it stays a zombie until this process ends.
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => true,
                Ok(stat) => stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z')),
            }
        };
        for signal in ["-TERM", "-KILL"] {
            let _ = std::process::Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
            for _ in 0..100 {
                if gone(&mut self.child) {
                    self.child = None;
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("the API server (pid {pid}) did not stop");
    }

    fn start(&mut self) {
        use std::os::unix::process::CommandExt;
        if self.pid.is_some() {
            return;
        }
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.cwd.join("apiserver.log"))
            .expect("apiserver.log");
        let child = std::process::Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .current_dir(&self.cwd)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("the API server starts again");
        // down.sh stops it by this file.
        let _ = std::fs::write(self.dir.join("apiserver.pid"), child.id().to_string());
        self.pid = Some(child.id());
        self.child = Some(child);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.start();
    }
}

async fn ready(addr: &str) -> Option<(u16, String)> {
    let r = reqwest::get(format!("http://{addr}/readyz")).await.ok()?;
    let code = r.status().as_u16();
    Some((code, r.text().await.unwrap_or_default()))
}

async fn pinned_to(deployments: &Api<Deployment>, name: &str, image: &str) -> Option<()> {
    let d = deployments.get(name).await.ok()?;
    (fixtures::image(&d).as_deref() == Some(image)).then_some(())
}

#[tokio::test]
async fn api_server_outage_during_a_push_loses_nothing() {
    if !enabled() {
        return;
    }
    common::install_crypto();
    let Some(reg) = common::Registry::start(None).await else {
        return;
    };
    let repo = format!("{}/drill/app", reg.addr);
    let one = reg.push_image("drill/app", "latest", "one", false).await;
    let (client, ns, cleanup) = cluster("is-e2e-outage").await;
    // Only once this test has its turn: another drill may be restarting the API server.
    let Some(mut apiserver) = ApiServer::or_skip("the API server drill") else {
        return;
    };
    let streams = fixtures::stream(&client, &ns, "app", &repo, false).await;
    let deployments = fixtures::deployment(
        &client,
        &ns,
        "web",
        0,
        Some(&fixtures::trigger("app:latest", None)),
        "placeholder",
    )
    .await;
    // As the chart runs it: leader election on, its default 15 s lease.
    let mut operator = Operator::spawn(
        "outage",
        &[
            ("SCHEDULED_IMPORT_INTERVAL", "2s".into()),
            ("INSECURE_REGISTRIES", reg.addr.clone()),
            ("LEADER_ELECTION", "true".into()),
            ("POD_NAMESPACE", ns.clone()),
            ("POD_NAME", "outage".into()),
        ],
    );
    let first = format!("{repo}@{one}");
    until("the first rollout", Duration::from_secs(60), || {
        pinned_to(&deployments, "web", &first)
    })
    .await;
    until("readiness", Duration::from_secs(30), || async {
        ready(&operator.metrics).await.filter(|r| r.0 == 200)
    })
    .await;

    apiserver.stop();
    let stopped = Instant::now();
    let two = reg.push_image("drill/app", "latest", "two", false).await;
    let mut unready = None;
    while stopped.elapsed() < Duration::from_secs(20) {
        if let Some((503, body)) = ready(&operator.metrics).await {
            if body.contains("API server unreachable") && unready.is_none() {
                unready = Some(stopped.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    apiserver.start();
    let restarted = Instant::now();
    until("the API server", Duration::from_secs(90), || async {
        client.apiserver_version().await.ok()
    })
    .await;
    let back = restarted.elapsed();
    let second = format!("{repo}@{two}");
    until(
        "the rollout of the push made during the outage",
        Duration::from_secs(90),
        || pinned_to(&deployments, "web", &second),
    )
    .await;
    let rolled = restarted.elapsed();
    until(
        "readiness after the outage",
        Duration::from_secs(30),
        || async { ready(&operator.metrics).await.filter(|r| r.0 == 200) },
    )
    .await;
    let s = wait_for(&streams, "app", "history", |s| {
        s.status_tag("latest").is_some_and(|t| t.items.len() == 2)
    })
    .await;
    let items: Vec<&str> = s
        .status_tag("latest")
        .unwrap()
        .items
        .iter()
        .map(|i| i.image.as_str())
        .collect();
    assert_eq!(
        items,
        [two.as_str(), one.as_str()],
        "nothing lost, nothing doubled"
    );
    let unready = unready.expect("/readyz reported the outage");
    assert!(
        operator.alive(),
        "the operator ran through the outage without a restart"
    );
    let log = operator.log_text();
    assert!(
        !log.contains("leadership ended"),
        "the leader kept its lease through the outage: {log}"
    );
    println!(
        "API server down 20 s: /readyz 503 after {unready:.1?}; API server back {back:.1?} after its restart; push rolled out {rolled:.1?} after the restart; same operator process"
    );
    drop(operator);
    drop(cleanup);
}

/// Every stream's first status write is refused with 409 (as if a second writer had changed it
/// first), by a validating webhook served from this test. The import converges, and each
/// stream's status is written exactly twice: the refused write and the one after it.
#[tokio::test]
async fn a_conflict_on_every_first_status_write_converges_without_a_hot_loop() {
    if !enabled() {
        return;
    }
    use imagestream_operator::admission::server::{generate, tls_config, Certificate};
    const STREAMS: usize = 10;
    common::install_crypto();
    let Some(reg) = common::Registry::start(None).await else {
        return;
    };
    let (client, ns, mut cleanup) = cluster("is-e2e-conflict").await;
    let host = std::env::var("IMAGESTREAM_E2E_WEBHOOK_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = common::free_port();
    let cert = generate(std::slice::from_ref(&host)).unwrap();
    let Certificate::Generated { cert_pem, .. } = &cert else {
        unreachable!()
    };
    let writes: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let seen = writes.clone();
    let app = axum::Router::new().route(
        "/validate",
        axum::routing::post(move |axum::Json(review): axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                let request = &review["request"];
                let name = request["name"].as_str().unwrap_or_default().to_string();
                let mut seen = seen.lock().unwrap();
                let n = seen.entry(name).or_default();
                *n += 1;
                let response = match *n {
                    1 => json!({"uid": request["uid"], "allowed": false, "status": {"code": 409, "reason": "Conflict",
                        "message": "the object has been modified by another writer; apply your changes to the latest version and try again"}}),
                    _ => json!({"uid": request["uid"], "allowed": true}),
                };
                axum::Json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}))
            }
        }),
    );
    let bind: std::net::SocketAddr = format!("{host}:{port}").parse().unwrap();
    let tls = tls_config(&cert).await.unwrap();
    let server = tokio::spawn(axum_server::bind_rustls(bind, tls).serve(app.into_make_service()));
    let bundle = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cert_pem);
    let hooks: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let config_name = format!("imagestream-e2e-conflict-{}", std::process::id());
    cleanup.cluster_scoped::<ValidatingWebhookConfiguration>(&config_name);
    hooks
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": config_name},
                "webhooks": [{"name": "second-writer.e2e.imagestream-operator.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                    "failurePolicy": "Fail", "timeoutSeconds": 5,
                    "clientConfig": {"url": format!("https://{host}:{port}/validate"), "caBundle": bundle},
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                    "rules": [{"apiGroups": ["image.openshift.io"], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["imagestreams/status"]}]}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    // The API server reads new webhook configurations asynchronously.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut digests = Vec::new();
    for i in 0..STREAMS {
        let d = reg
            .push_image(&format!("conflict/s{i}"), "latest", &format!("c{i}"), false)
            .await;
        fixtures::stream(
            &client,
            &ns,
            &format!("s{i}"),
            &format!("{}/conflict/s{i}", reg.addr),
            false,
        )
        .await;
        digests.push(d);
    }
    let started = Instant::now();
    let ctrl = tokio::spawn(controller::run(
        client.clone(),
        Arc::new(resolver_for(&reg)),
        Scheduler::new(Duration::from_secs(3600), 0),
        Settings::default(),
    ));
    let streams: Api<ImageStream> = Api::namespaced(client.clone(), &ns);
    for (i, d) in digests.iter().enumerate() {
        wait_for(
            &streams,
            &format!("s{i}"),
            "the import after the conflict",
            |s| {
                s.status_tag("latest")
                    .is_some_and(|t| t.items.first().is_some_and(|x| &x.image == d))
            },
        )
        .await;
    }
    let converged = started.elapsed();
    // Quiet: nothing more may be written once the status is stored.
    tokio::time::sleep(Duration::from_secs(10)).await;
    ctrl.abort();
    server.abort();
    let writes = writes.lock().unwrap().clone();
    println!("409 on every first status write: {STREAMS} streams converged in {converged:.1?}; status writes per stream {writes:?}");
    for i in 0..STREAMS {
        assert_eq!(
            writes.get(&format!("s{i}")),
            Some(&2),
            "stream s{i}: the refused write and one more, nothing after: {writes:?}"
        );
    }
    drop(cleanup);
}

/// One stream whose status the API server refuses must not hold back anyone else's schedule.
/// Its spec nearly fills an object (220 tags carrying 6,000 bytes of annotations each), and each
/// tag names an image of its own with 8 KiB of config (the issue's recipe: together more than
/// the registry client's 1 MiB content cache holds). The status fits the operator's budget once
/// trimmed, but spec and status together are over what etcd stores, so the status write is
/// refused for its size. Beside it, with the operator binary at a 5 s interval, a scheduled
/// stream imports, a new digest is pushed for its tag, and the
/// scheduled re-check must pick it up within a few intervals.
///
/// Before the fix it did not: the stored status says the big stream's tags were never imported,
/// so every check of it imported all 220 afresh (HEAD, manifest GET and config GET each, since
/// the cache cannot hold 220 configs of 8 KiB), 660 requests at the registry's default 20 per
/// second, and the small stream's one HEAD waited behind them (19.4 s instead of 3.8 s,
/// measured with the default budget). Now the refused status is what the next
/// check starts from: the big stream costs one HEAD per tag per check and no GET at all, which
/// the registry's own log shows.
#[tokio::test]
async fn a_stream_whose_status_cannot_be_stored_does_not_stall_the_schedule() {
    if !enabled() {
        return;
    }
    const INTERVAL: Duration = Duration::from_secs(5);
    const TAGS: usize = 220;
    common::install_crypto();
    let registry_log = tempfile::NamedTempFile::new().unwrap();
    let Some(reg) = common::Registry::start_logged(registry_log.path()).await else {
        return;
    };
    let (client, ns, _cleanup) = cluster("is-e2e-unstorable").await;
    let streams: Api<ImageStream> = Api::namespaced(client.clone(), &ns);
    let config = "m".repeat(8 * 1024);
    use futures::StreamExt;
    futures::stream::iter(0..TAGS)
        .for_each_concurrent(16, |i| {
            let (reg, config) = (&reg, &config);
            async move {
                reg.push_image("big/app", &format!("t{i}"), &format!("{i}{config}"), true)
                    .await;
            }
        })
        .await;
    // 6,000 characters per tag, in values within the CRD's 2,048 per annotation.
    let filler = "x".repeat(2000);
    let tags: Vec<Value> = (0..TAGS)
        .map(|i| {
            json!({"name": format!("t{i}"), "annotations": {"filler-a": filler, "filler-b": filler, "filler-c": filler},
                "from": {"kind": "DockerImage", "name": format!("{}/big/app:t{i}", reg.addr)},
                "importPolicy": {"scheduled": true}})
        })
        .collect();
    streams
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
                "metadata": {"name": "unstorable"}, "spec": {"tags": tags}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let operator = Operator::spawn(
        "unstorable",
        &[
            ("SCHEDULED_IMPORT_INTERVAL", "5s".into()),
            ("INSECURE_REGISTRIES", reg.addr.clone()),
            // Ten times the default, so the first import of 660 requests takes seconds, not
            // half a minute; the registry's log, not the clock, is what proves the cause.
            ("REGISTRY_BUDGETS", format!("{}=200:400:16", reg.addr)),
        ],
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let too_large = || async {
        let list = events.list(&Default::default()).await.ok()?;
        let n = list
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("StatusTooLarge"))
            .count();
        (n > 0).then_some(n)
    };
    until(
        "the refused status is reported",
        Duration::from_secs(60),
        too_large,
    )
    .await;
    let gets_after_refusal = big_gets(registry_log.path());

    let first = reg.push_image("small/app", "latest", "one", false).await;
    fixtures::stream(
        &client,
        &ns,
        "small",
        &format!("{}/small/app", reg.addr),
        false,
    )
    .await;
    let image_of = |s: &ImageStream| {
        s.status_tag("latest")
            .and_then(|t| t.items.first())
            .map(|i| i.image.clone())
    };
    wait_for(&streams, "small", "the first import", |s| {
        image_of(s).as_ref() == Some(&first)
    })
    .await;
    let second = reg.push_image("small/app", "latest", "two", false).await;
    let pushed = Instant::now();
    let limit = INTERVAL * 4;
    let picked = tokio::time::timeout(limit, async {
        loop {
            if let Ok(s) = streams.get("small").await {
                if image_of(&s).as_ref() == Some(&second) {
                    return pushed.elapsed();
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    let reports = too_large().await.unwrap_or(0);
    let stored = streams.get("unstorable").await.unwrap();
    let log = operator.log_text();
    drop(operator);
    let picked = picked.unwrap_or_else(|_| {
        let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
        panic!(
            "the scheduled re-check did not pick up the push within {limit:?}; log tail:\n{tail}"
        )
    });
    println!(
        "unstorable stream ({TAGS} tags) beside a {INTERVAL:?} schedule: the push was picked up {picked:.1?} after it; {reports} StatusTooLarge Event(s)"
    );
    assert_eq!(reports, 1, "one Warning for one refused status");
    assert_eq!(
        big_gets(registry_log.path()),
        gets_after_refusal,
        "the refused stream's checks are one HEAD per tag: no manifest or config GET"
    );
    assert!(
        stored.status.is_none_or(|s| s.tags.is_empty()),
        "the refused status was never stored"
    );
}

/// GETs of the big stream's repository the registry has served, from its log.
fn big_gets(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("response completed") && l.contains("http.request.method=GET"))
        .filter(|l| l.contains("/v2/big/app/"))
        .count()
}

/// ImageStream LISTs the (restarted) API server has answered: a watch that resumes without
/// one did not relist.
async fn stream_lists(client: &kube::Client) -> f64 {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(request).await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| l.contains(r#"resource="imagestreams""#) && l.contains(r#"verb="LIST""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn restart(apiserver: &mut ApiServer, client: &kube::Client) {
    apiserver.stop();
    apiserver.start();
    until(
        "the API server is back",
        Duration::from_secs(60),
        || async { client.apiserver_version().await.ok() },
    )
    .await;
}

/// Streams the operator saw awaiting their first import, deleted while its watch was away, are
/// forgotten by the relist that ends the gap. The operator is frozen (SIGSTOP) while a dozen
/// streams are created (their events wait in its socket), the API server restarts, the streams
/// are deleted, and it restarts again, so its watch cache begins after the deletions. On
/// SIGCONT the operator reads the creations, its watch resumes from a version the API server no
/// longer has (410 Gone) and relists. Before relists reached subscribers as deletions, the
/// dozen stayed "awaiting their first import" for the life of the process, and every other
/// stream's scheduled re-check was put off each time: the push below was never picked up.
#[tokio::test]
async fn streams_deleted_during_a_watch_gap_are_forgotten_at_the_relist() {
    if !enabled() {
        return;
    }
    common::install_crypto();
    let Some(reg) = common::Registry::start(None).await else {
        return;
    };
    let repo = format!("{}/relist/app", reg.addr);
    let one = reg.push_image("relist/app", "latest", "one", false).await;
    let (client, ns, _cleanup) = cluster("is-e2e-relist").await;
    // Only once this test has its turn: another drill may be restarting the API server.
    let Some(mut apiserver) = ApiServer::or_skip("the relist drill") else {
        return;
    };
    let streams = fixtures::stream(&client, &ns, "kept", &repo, false).await;
    let operator = Operator::spawn(
        "relist",
        &[
            ("SCHEDULED_IMPORT_INTERVAL", "3s".into()),
            ("INSECURE_REGISTRIES", reg.addr.clone()),
        ],
    );
    let image = |s: &ImageStream| {
        s.status_tag("latest")
            .and_then(|t| t.items.first())
            .map(|i| i.image.clone())
    };
    wait_for(&streams, "kept", "the first import", |s| {
        image(s).as_ref() == Some(&one)
    })
    .await;

    let signal = |name: &str| {
        let pid = operator.pid().to_string();
        let ok = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {name} {pid}");
    };
    signal("-STOP");
    let gone: Vec<String> = (0..12).map(|i| format!("gone-{i}")).collect();
    for name in &gone {
        fixtures::stream(&client, &ns, name, &format!("{repo}-{name}"), false).await;
    }
    restart(&mut apiserver, &client).await;
    for name in &gone {
        streams.delete(name, &Default::default()).await.unwrap();
    }
    restart(&mut apiserver, &client).await;
    signal("-CONT");

    let two = reg.push_image("relist/app", "latest", "two", false).await;
    let resumed = Instant::now();
    let limit = Duration::from_secs(90);
    let picked = tokio::time::timeout(limit, async {
        loop {
            if let Ok(s) = streams.get("kept").await {
                if image(&s).as_ref() == Some(&two) {
                    return resumed.elapsed();
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    let lists = stream_lists(&client).await;
    let log = operator.log_text();
    drop(operator);
    let picked = picked.unwrap_or_else(|_| {
        panic!("the scheduled re-check never ran after the relist (within {limit:?}); operator log:\n{log}")
    });
    println!(
        "relist drill: {} streams vanished during the gap; {lists} ImageStream LIST(s) after it; the push was picked up {picked:.1?} after the operator resumed",
        gone.len()
    );
    assert!(
        lists >= 1.0,
        "the operator's watch resumed without a relist"
    );
}
