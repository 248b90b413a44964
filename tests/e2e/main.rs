//! End to end against a real cluster: set IMAGESTREAM_E2E=1 and KUBECONFIG (a kind cluster on a
//! laptop works unchanged). The controller runs in this process, out of cluster, so it reaches
//! the test's docker-registry on 127.0.0.1; the cluster only stores objects.

mod audit;
#[path = "../common/mod.rs"]
mod common;
mod drills;
mod failover;
mod fallback;
mod faults;
mod fixtures;
mod grant;
#[path = "../common/helm.rs"]
mod helm;
mod identity;
mod policies;
mod process;
mod providers;
mod replicasets;
mod tenants;
mod users;
mod webhook_port;

use std::sync::Arc;
use std::time::Duration;

use imagestream_operator::api::*;
use imagestream_operator::crdgen::imagestream_crd;
use imagestream_operator::import::controller::{self, Settings};
use imagestream_operator::registry::policy::RegistryPolicy;
use imagestream_operator::registry::resolver::{RegistryResolver, ResolverConfig};
use imagestream_operator::schedule::Scheduler;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

fn enabled() -> bool {
    let on = std::env::var("IMAGESTREAM_E2E").as_deref() == Ok("1");
    let kubeconfig = std::env::var("KUBECONFIG").is_ok_and(|k| !k.is_empty());
    if !(on && kubeconfig) {
        // Written to the stderr handle, not eprintln!, so the reason shows even though the
        // test harness captures the output of passing tests.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIP e2e: set IMAGESTREAM_E2E=1 and KUBECONFIG to run it against a real cluster (e.g. kind)");
    }
    on && kubeconfig
}

/// What a test created on the cluster — namespaces and cluster-scoped objects — deleted when the
/// guard drops, so a failing (panicking) test cleans up as well as a passing one.
#[derive(Default)]
struct Cleanup {
    namespaces: Vec<String>,
    cluster_scoped: Vec<(kube::core::ApiResource, String)>,
    /// Held for the whole test; released after the deletions (see `cluster`).
    turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// Every test runs operators that watch the whole cluster, each trusting only its own test
/// registry; two at once would import each other's streams and fight over their status. The
/// tests of one process therefore take turns (names still carry the pid, so two processes'
/// objects never collide).
static TURN: std::sync::LazyLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(Default::default);

impl Cleanup {
    fn namespace(&mut self, name: &str) {
        self.namespaces.push(name.to_string());
    }

    fn cluster_scoped<K: kube::Resource<DynamicType = ()>>(&mut self, name: &str) {
        self.cluster_scoped
            .push((kube::core::ApiResource::erase::<K>(&()), name.to_string()));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let namespaces = std::mem::take(&mut self.namespaces);
        let objects = std::mem::take(&mut self.cluster_scoped);
        // Drop may run while the test's runtime unwinds: delete from a runtime of our own.
        let turn = self.turn.take();
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(client) = Client::try_default().await else {
                    return;
                };
                let dp = DeleteParams::background();
                for (ar, name) in objects {
                    let api: Api<kube::core::DynamicObject> = Api::all_with(client.clone(), &ar);
                    let _ = api.delete(&name, &dp).await;
                }
                // The next test's cluster-wide operator must not meet this test's streams or
                // triggered workloads in a terminating namespace (its writes there are refused).
                // Those go first, and the turn is handed over once they are gone; the namespace
                // itself, which the namespace controller takes about 5 s to remove, is deleted
                // without waiting.
                for ns in &namespaces {
                    gone_from(&client, ns).await;
                }
                let api: Api<Namespace> = Api::all(client);
                for ns in &namespaces {
                    let _ = api.delete(ns, &dp).await;
                }
            });
        });
        let _ = done.join();
        drop(turn);
    }
}

/// Deletes the streams and the kinds of workload a trigger can annotate in `ns`, and waits
/// until no stream or Deployment is left (the rest are deleted at once, having no finalizers
/// a test adds).
async fn gone_from(client: &Client, ns: &str) {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    use kube::api::ListParams;
    let (dp, all) = (DeleteParams::background(), ListParams::default());
    let streams: Api<ImageStream> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let _ = streams.delete_collection(&dp, &all).await;
    let _ = deployments.delete_collection(&dp, &all).await;
    let _ = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .delete_collection(&dp, &all)
        .await;
    let _ = Api::<DaemonSet>::namespaced(client.clone(), ns)
        .delete_collection(&dp, &all)
        .await;
    let _ = Api::<CronJob>::namespaced(client.clone(), ns)
        .delete_collection(&dp, &all)
        .await;
    let _ = Api::<Job>::namespaced(client.clone(), ns)
        .delete_collection(&dp, &all)
        .await;
    for _ in 0..240 {
        let left = |n: Option<usize>| n.unwrap_or(0);
        let s = left(
            streams
                .list_metadata(&all)
                .await
                .ok()
                .map(|l| l.items.len()),
        );
        let d = left(
            deployments
                .list_metadata(&all)
                .await
                .ok()
                .map(|l| l.items.len()),
        );
        if s + d == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client for the cluster, the CRD applied and established, and a fresh namespace
/// `<prefix>-<pid>` that the returned guard deletes.
async fn cluster(prefix: &str) -> (Client, String, Cleanup) {
    let turn = TURN.clone().lock_owned().await;
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG names a reachable cluster");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = "imagestreams.image.openshift.io";
    crds.patch(
        name,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&imagestream_crd().unwrap()),
    )
    .await
    .unwrap();
    let established = kube::runtime::wait::conditions::is_crd_established();
    tokio::time::timeout(
        Duration::from_secs(30),
        kube::runtime::wait::await_condition(crds, name, established),
    )
    .await
    .expect("the CRD becomes established")
    .unwrap();
    let ns = format!("{prefix}-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let object: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    // A test of the same prefix before this one may have left its namespace terminating (the
    // turn is handed over without waiting for it): wait for it here, where it matters.
    for attempt in 0.. {
        match namespaces.create(&PostParams::default(), &object).await {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 240 => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Err(e) => panic!("creating namespace {ns}: {e}"),
        }
    }
    // Pods need the namespace's default ServiceAccount, which the controller manager creates a
    // moment later (later still while it removes the previous test's namespace).
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), &ns);
    for _ in 0..300 {
        if matches!(accounts.get_opt("default").await, Ok(Some(_))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut cleanup = Cleanup::default();
    cleanup.turn = Some(turn);
    cleanup.namespace(&ns);
    (client, ns, cleanup)
}

/// A resolver that may use plain HTTP to the test registry.
fn resolver_for(reg: &common::Registry) -> RegistryResolver {
    RegistryResolver::new(ResolverConfig::with_policy(RegistryPolicy {
        insecure: vec![reg.addr.clone()],
        ..Default::default()
    }))
    .unwrap()
}

/// The import and trigger controllers of one operator process, running in this process.
struct Operator(Vec<tokio::task::JoinHandle<anyhow::Result<()>>>);

impl Operator {
    fn stop(self) {
        for task in self.0 {
            task.abort();
        }
    }
}

fn start_operator(client: &Client, reg: &common::Registry) -> Operator {
    Operator(vec![
        tokio::spawn(controller::run(
            client.clone(),
            Arc::new(resolver_for(reg)),
            Scheduler::new(Duration::from_secs(2), 0),
            Settings::default(),
        )),
        tokio::spawn(imagestream_operator::triggers::controller::run(
            client.clone(),
            None,
        )),
    ])
}

async fn wait_for(
    api: &Api<ImageStream>,
    name: &str,
    what: &str,
    ok: impl Fn(&ImageStream) -> bool,
) -> ImageStream {
    for _ in 0..120 {
        if let Ok(s) = api.get(name).await {
            if ok(&s) {
                return s;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "timed out waiting for {what}: {:?}",
        api.get(name).await.ok().and_then(|s| s.status)
    );
}

#[tokio::test]
async fn seed_stream_is_imported_and_history_grows_on_push() {
    if !enabled() {
        return;
    }
    common::install_crypto();
    let Some(reg) = common::Registry::start(None).await else {
        return;
    };
    let first = reg.push_image("e2e/ruby", "latest", "one", false).await;

    let (client, ns_name, cleanup) = cluster("is-e2e").await;

    let resolver = resolver_for(&reg);
    let scheduler = Scheduler::new(Duration::from_secs(2), 0);
    let ctrl = tokio::spawn(controller::run(
        client.clone(),
        Arc::new(resolver),
        scheduler,
        Settings::default(),
    ));

    // The seed's scheduled example, pointed at the local registry.
    let streams: Api<ImageStream> = Api::namespaced(client.clone(), &ns_name);
    let stream: ImageStream = serde_json::from_value(json!({
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
        "metadata": {"name": "ruby"},
        "spec": {"tags": [{"name": "latest", "from": {"kind": "DockerImage", "name": format!("{}/e2e/ruby", reg.addr)}, "importPolicy": {"scheduled": true}}]}
    }))
    .unwrap();
    streams
        .create(&PostParams::default(), &stream)
        .await
        .unwrap();

    let s = wait_for(&streams, "ruby", "first import", |s| {
        s.status_tag("latest").is_some_and(|t| !t.items.is_empty())
    })
    .await;
    let items = &s.status_tag("latest").unwrap().items;
    assert_eq!(items[0].image, first);
    assert_eq!(
        items[0].docker_image_reference,
        format!("{}/e2e/ruby@{first}", reg.addr)
    );
    assert!(s.annotation(DOCKER_REPOSITORY_CHECK).is_some());

    let second = reg.push_image("e2e/ruby", "latest", "two", false).await;
    let s = wait_for(&streams, "ruby", "scheduled re-import", |s| {
        s.status_tag("latest").is_some_and(|t| t.items.len() == 2)
    })
    .await;
    let items = &s.status_tag("latest").unwrap().items;
    assert_eq!(
        (items[0].image.as_str(), items[1].image.as_str()),
        (second.as_str(), first.as_str())
    );

    ctrl.abort();
    drop(cleanup);
}

/// The seed's trigger example: Deployment `web` follows `example:latest`; a new image rolls a new
/// ReplicaSet; `paused: "true"` stops it.
#[tokio::test]
async fn seed_trigger_rolls_the_deployment_and_pause_stops_it() {
    if !enabled() {
        return;
    }
    common::install_crypto();
    let Some(reg) = common::Registry::start(None).await else {
        return;
    };
    let first = reg.push_image("e2e/example", "latest", "one", false).await;
    let (client, ns_name, cleanup) = cluster("is-e2e-trig").await;
    let resolver = resolver_for(&reg);
    let imports = tokio::spawn(controller::run(
        client.clone(),
        Arc::new(resolver),
        Scheduler::new(Duration::from_secs(2), 0),
        Settings::default(),
    ));
    let triggers = tokio::spawn(imagestream_operator::triggers::controller::run(
        client.clone(),
        None,
    ));

    let streams: Api<ImageStream> = Api::namespaced(client.clone(), &ns_name);
    streams
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
                "metadata": {"name": "example"},
                "spec": {"tags": [{"name": "latest", "from": {"kind": "DockerImage", "name": format!("{}/e2e/example", reg.addr)}, "importPolicy": {"scheduled": true}}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns_name);
    let trigger = r#"[{"from":{"kind":"ImageStreamTag","name":"example:latest"},"fieldPath":"spec.template.spec.containers[?(@.name='web')].image"}]"#;
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "web", "annotations": {TRIGGERS: trigger}},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "example:latest"}]}}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let image_of = |d: &k8s_openapi::api::apps::v1::Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|s| s.containers[0].image.clone().unwrap_or_default())
            .unwrap_or_default()
    };
    let wait_image = |want: String| {
        let deployments = deployments.clone();
        async move {
            for _ in 0..120 {
                if let Ok(d) = deployments.get("web").await {
                    if image_of(&d) == want {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            panic!("deployment never got image {want}");
        }
    };
    wait_image(format!("{}/e2e/example@{first}", reg.addr)).await;

    let second = reg.push_image("e2e/example", "latest", "two", false).await;
    wait_image(format!("{}/e2e/example@{second}", reg.addr)).await;
    let replicasets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(client.clone(), &ns_name);
    let mut sets = 0;
    for _ in 0..60 {
        sets = replicasets
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len();
        if sets >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        sets >= 2,
        "a new ReplicaSet appears when the tag moves ({sets})"
    );

    let paused = trigger.replace("}]", r#","paused":"true"}]"#);
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {TRIGGERS: paused}}})),
        )
        .await
        .unwrap();
    let third = reg
        .push_image("e2e/example", "latest", "three", false)
        .await;
    wait_for(&streams, "example", "third import", |s| {
        s.status_tag("latest")
            .is_some_and(|t| t.items.first().is_some_and(|i| i.image == third))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d = deployments.get("web").await.unwrap();
    assert_eq!(
        image_of(&d),
        format!("{}/e2e/example@{second}", reg.addr),
        "paused trigger does not fire"
    );

    imports.abort();
    triggers.abort();
    drop(cleanup);
}

async fn plugin(client: &Client, ns: &str, args: &[&str]) -> String {
    use clap::Parser;
    let mut argv = vec!["kubectl-imagestream"];
    argv.extend_from_slice(args);
    let cli = imagestream_operator::cli::Cli::try_parse_from(argv).unwrap();
    let mut out = String::new();
    imagestream_operator::cli::execute(cli, client.clone(), ns, &mut out)
        .await
        .unwrap_or_else(|e| panic!("kubectl imagestream {args:?}: {e}\n{out}"));
    out
}

/// The seed walkthrough with the plugin: import python:3.5, tag it as latest, describe shows two
/// tags with the same image, re-import a new image, roll back, delete 3.5.
#[tokio::test]
async fn seed_walkthrough_with_the_plugin() {
    if !enabled() {
        return;
    }
    common::install_crypto();
    let Some(reg) = common::Registry::start(None).await else {
        return;
    };
    let v1 = reg
        .push_image("centos/python-35-centos7", "latest", "v1", false)
        .await;
    let (client, ns, cleanup) = cluster("is-e2e-cli").await;
    let resolver = resolver_for(&reg);
    let ctrl = tokio::spawn(controller::run(
        client.clone(),
        Arc::new(resolver),
        Scheduler::new(Duration::from_secs(60), 0),
        Settings::default(),
    ));
    let from = format!("--from={}/centos/python-35-centos7", reg.addr);
    let out = plugin(
        &client,
        &ns,
        &["import-image", "python:3.5", &from, "--confirm"],
    )
    .await;
    assert!(out.starts_with("imported\n"), "{out}");
    let out = plugin(&client, &ns, &["tag", "python:3.5", "python:latest"]).await;
    assert_eq!(out, format!("Tag python:latest set to python@{v1}.\n"));
    let streams: Api<ImageStream> = Api::namespaced(client.clone(), &ns);
    wait_for(&streams, "python", "latest copied", |s| {
        s.status_tag("latest").is_some_and(|t| !t.items.is_empty())
    })
    .await;
    let out = plugin(&client, &ns, &["describe", "is", "python"]).await;
    assert!(
        out.contains("Tags:\t\t\t2\n") && out.contains("Unique Images:\t\t1\n"),
        "{out}"
    );

    let v2 = reg
        .push_image("centos/python-35-centos7", "latest", "v2", false)
        .await;
    let out = plugin(&client, &ns, &["import-image", "python:3.5"]).await;
    assert!(out.contains(&v2), "{out}");
    let out = plugin(&client, &ns, &["rollback", "python:3.5"]).await;
    assert!(out.contains("rolled back"), "{out}");
    wait_for(&streams, "python", "rollback", |s| {
        s.status_tag("3.5")
            .and_then(|t| t.items.first())
            .is_some_and(|i| i.image == v1)
    })
    .await;
    let out = plugin(&client, &ns, &["tag", "-d", "python:3.5"]).await;
    assert_eq!(out, format!("Deleted tag {ns}/python:3.5.\n"));
    let s = streams.get("python").await.unwrap();
    assert!(s.spec_tag("3.5").is_none() && s.status_tag("3.5").is_none());

    ctrl.abort();
    drop(cleanup);
}

/// The webhook against a real API server: registered with `clientConfig.url` pointing at this
/// process. The API server must reach it: set IMAGESTREAM_E2E_WEBHOOK_HOST to an address of this
/// machine that the cluster can reach (with kind, the docker bridge gateway, e.g. 172.18.0.1);
/// the default 127.0.0.1 suits clusters whose API server runs on this host.
#[tokio::test]
async fn webhook_resolves_short_names_and_job_triggers() {
    if !enabled() {
        return;
    }
    use imagestream_operator::admission::server::{generate, Certificate};
    common::install_crypto();
    let Some(reg) = common::Registry::start(None).await else {
        return;
    };
    let digest = reg.push_image("library/mysql", "latest", "db", false).await;
    let (client, ns, mut cleanup) = cluster("is-e2e-hook").await;
    let host = std::env::var("IMAGESTREAM_E2E_WEBHOOK_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = common::free_port();
    let cert = generate(std::slice::from_ref(&host)).unwrap();
    let Certificate::Generated { cert_pem, .. } = &cert else {
        unreachable!()
    };
    let bundle = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cert_pem);
    let bind: std::net::SocketAddr = format!("{host}:{port}")
        .parse()
        .expect("IMAGESTREAM_E2E_WEBHOOK_HOST is an IP address");
    let endpoint = imagestream_operator::serve::Endpoint {
        addr: bind,
        notify_addr: None,
        cert: cert.clone(),
        shared: None,
        client_ca: None,
        notify: None,
        metrics: Default::default(),
    };
    let hook = tokio::spawn(imagestream_operator::serve::run(client.clone(), endpoint));
    let hooks: Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
        Api::all(client.clone());
    let config_name = format!("imagestream-e2e-{}", std::process::id());
    cleanup.cluster_scoped::<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration>(&config_name);
    hooks
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": config_name},
                "webhooks": [{"name": "images.imagestream-operator.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                    "failurePolicy": "Ignore", "timeoutSeconds": 5, "reinvocationPolicy": "IfNeeded",
                    "clientConfig": {"url": format!("https://{host}:{port}/mutate"), "caBundle": bundle},
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                    "rules": [{"apiGroups": ["apps", "batch"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments", "jobs"]}]}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let resolver = resolver_for(&reg);
    let ctrl = tokio::spawn(controller::run(
        client.clone(),
        Arc::new(resolver),
        Scheduler::new(Duration::from_secs(60), 0),
        Settings::default(),
    ));
    let from = format!("--from={}/library/mysql", reg.addr);
    plugin(
        &client,
        &ns,
        &["import-image", "mysql:latest", &from, "--confirm"],
    )
    .await;
    plugin(&client, &ns, &["set", "image-lookup", "mysql"]).await;
    let pinned = format!("{}/library/mysql@{digest}", reg.addr);
    // The webhook's cache sees the lookup flag shortly after the write.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns);
    let created = deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "db"}, "spec": {"selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "mysql:latest"}]}}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let image = created.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(
        image.as_deref(),
        Some(pinned.as_str()),
        "the stored Deployment has the digest"
    );

    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &ns);
    let trigger = r#"[{"from":{"kind":"ImageStreamTag","name":"mysql:latest"},"fieldPath":"spec.template.spec.containers[?(@.name=='worker')].image"}]"#;
    let job = jobs
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "migrate", "annotations": {TRIGGERS: trigger}},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "worker", "image": "placeholder"}]}}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let image = job.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(
        image.as_deref(),
        Some(pinned.as_str()),
        "the Job was created with the resolved image"
    );

    ctrl.abort();
    hook.abort();
    drop(cleanup);
}

/// Push, don't poll: with the schedule at 1 h, a push to docker-registry (notifications pointed
/// at the receiver) rolls the triggered Deployment within 2 s.
#[tokio::test]
async fn push_notification_rolls_the_deployment_within_two_seconds() {
    if !enabled() {
        return;
    }
    use futures::StreamExt;
    use imagestream_operator::api::index::Index;
    use imagestream_operator::notify::{router, ApiRequester, NotifyConfig, Receiver, TargetIndex};
    use kube::ResourceExt;
    common::install_crypto();
    let (client, ns, cleanup) = cluster("is-e2e-push").await;
    // The receiver (plain HTTP on 127.0.0.1 here; the operator serves it on its own TLS listener).
    let index = Arc::new(parking_lot::Mutex::new(TargetIndex::default()));
    let indexed = index.clone();
    let watch = kube::runtime::watcher(Api::<ImageStream>::all(client.clone()), Default::default())
        .for_each(move |e| {
            if let Ok(
                kube::runtime::watcher::Event::Apply(s)
                | kube::runtime::watcher::Event::InitApply(s),
            ) = e
            {
                indexed.lock().apply(&s);
            }
            futures::future::ready(())
        });
    let watch = tokio::spawn(watch);
    let config = NotifyConfig {
        token: Some("e2e-token".into()),
        ..Default::default()
    };
    let app = router(Receiver::new(
        config,
        index,
        Arc::new(ApiRequester {
            client: client.clone(),
        }),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/notify/distribution",
        listener.local_addr().unwrap()
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let Some(reg) = common::Registry::start_notifying(&url, Some("e2e-token")).await else {
        return;
    };
    let first = reg.push_image("e2e/pushed", "latest", "one", false).await;

    let resolver = resolver_for(&reg);
    let imports = tokio::spawn(controller::run(
        client.clone(),
        Arc::new(resolver),
        Scheduler::new(Duration::from_secs(3600), 0),
        Settings::default(),
    ));
    let triggers = tokio::spawn(imagestream_operator::triggers::controller::run(
        client.clone(),
        None,
    ));
    let streams: Api<ImageStream> = Api::namespaced(client.clone(), &ns);
    streams
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": "example"},
                "spec": {"tags": [{"name": "latest", "from": {"kind": "DockerImage", "name": format!("{}/e2e/pushed", reg.addr)}, "importPolicy": {"scheduled": true}}]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns);
    let trigger = r#"[{"from":{"kind":"ImageStreamTag","name":"example:latest"},"fieldPath":"spec.template.spec.containers[?(@.name='web')].image"}]"#;
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "web", "annotations": {TRIGGERS: trigger}},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "example:latest"}]}}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let image = |d: &k8s_openapi::api::apps::v1::Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.containers[0].image.clone())
            .unwrap_or_default()
    };
    let wait = |want: String, limit: Duration| {
        let deployments = deployments.clone();
        async move {
            let started = std::time::Instant::now();
            while started.elapsed() < limit {
                if deployments
                    .get("web")
                    .await
                    .map(|d| image(&d) == want)
                    .unwrap_or(false)
                {
                    return started.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("deployment did not get {want} within {limit:?}");
        }
    };
    wait(
        format!("{}/e2e/pushed@{first}", reg.addr),
        Duration::from_secs(60),
    )
    .await;
    let second = reg.push_image("e2e/pushed", "latest", "two", false).await;
    let took = wait(
        format!("{}/e2e/pushed@{second}", reg.addr),
        Duration::from_secs(2),
    )
    .await;
    eprintln!("push → Deployment image changed in {took:?}");
    let s = streams.get("example").await.unwrap();
    assert!(s
        .annotations()
        .contains_key(imagestream_operator::api::NOTIFIED));

    for t in [imports, triggers] {
        t.abort();
    }
    watch.abort();
    server.abort();
    drop(cleanup);
}
