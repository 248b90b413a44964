//! The built `imagestream-operator` binary, run as the chart's ServiceAccount with exactly the
//! permissions the chart's rendered ClusterRole and Role grant, leader election on: it imports,
//! writes status, emits Events, fires a trigger, holds the Lease, generates and injects its
//! webhook certificate and serves the webhook — and its log shows no Forbidden answer. A missing
//! rule fails this test, not a user's install. It also may not do what it does not need.

use std::time::Duration;

use imagestream_operator::api::ImageStream;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::{json, Value};

use super::{cluster, common, enabled, fixtures, helm, Cleanup};

/// A child process killed when dropped, so a failing test leaves no operator behind.
pub(super) struct Process(pub(super) std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A kubeconfig for the current cluster whose only user is `token`.
fn token_kubeconfig(token: &str) -> Value {
    let admin = Kubeconfig::read().expect("KUBECONFIG is readable");
    let context = admin
        .contexts
        .iter()
        .find(|c| Some(&c.name) == admin.current_context.as_ref())
        .and_then(|c| c.context.clone())
        .expect("a current context");
    let cluster = admin
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .expect("the current context's cluster");
    json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [serde_json::to_value(cluster).unwrap()],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster.name, "user": "operator"}}],
        "current-context": "operator",
    })
}

/// Renders the chart for `release` into `ns`; applies everything the binary needs from it (the
/// ServiceAccount, its RBAC, and the webhook configuration pointed at `webhook_url`).
pub(super) fn install_chart(
    helm_bin: &str,
    kubectl: &str,
    release: &str,
    ns: &str,
    values: &Value,
    webhook_url: &str,
    cleanup: &mut Cleanup,
) -> Vec<(String, String)> {
    let objects = helm::render(helm_bin, release, ns, values, false);
    let mut applied = Vec::new();
    for mut o in objects {
        let kind = o["kind"].as_str().unwrap_or_default().to_string();
        let name = o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match kind.as_str() {
            // No kubelet here: this process plays the pod, so its Deployment, Services and PDB
            // are left out.
            "Deployment" | "Service" | "PodDisruptionBudget" => continue,
            "MutatingWebhookConfiguration" => {
                for hook in o["webhooks"].as_array_mut().into_iter().flatten() {
                    hook["clientConfig"] = json!({"url": webhook_url});
                }
                cleanup.cluster_scoped::<MutatingWebhookConfiguration>(&name);
            }
            "ClusterRole" => cleanup.cluster_scoped::<ClusterRole>(&name),
            "ClusterRoleBinding" => cleanup.cluster_scoped::<ClusterRoleBinding>(&name),
            _ => {}
        }
        // Namespaced mode renders Roles into the managed namespaces.
        let target = o["metadata"]["namespace"]
            .as_str()
            .unwrap_or(ns)
            .to_string();
        helm::run(
            kubectl,
            &["apply", "-n", &target, "-f", "-"],
            Some(&o.to_string()),
        )
        .unwrap_or_else(|e| panic!("applying {kind}/{name}: {e}"));
        applied.push((kind, name));
    }
    applied
}

/// The env of the chart's operator container, with the downward API resolved as the kubelet
/// would and the listeners moved to 127.0.0.1.
fn chart_env(
    helm_bin: &str,
    release: &str,
    ns: &str,
    values: &Value,
    pod: &str,
    ports: (u16, u16),
    plugins: &std::path::Path,
) -> Vec<(String, String)> {
    let objects = helm::render(helm_bin, release, ns, values, false);
    let (provider_config, provider_bin) = provider_files(&objects, plugins);
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("the chart renders a Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"], json!(["run"]));
    let mut env = Vec::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or_default().to_string();
        let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => pod.to_string(),
            Some("metadata.namespace") => ns.to_string(),
            Some(other) => panic!("unexpected fieldRef {other}"),
            None => e["value"].as_str().unwrap_or_default().to_string(),
        };
        let value = match name.as_str() {
            "METRICS_ADDR" => format!("127.0.0.1:{}", ports.0),
            "ADMISSION_ADDR" => format!("127.0.0.1:{}", ports.1),
            "ADMISSION_HOSTS" => "127.0.0.1".to_string(),
            // What the client CA ConfigMap would have mounted (the test writes it there).
            "ADMISSION_CLIENT_CA_FILE" => plugins.join("client-ca.crt").display().to_string(),
            // What the ConfigMap and the init container would have put in the pod.
            "IMAGE_CREDENTIAL_PROVIDER_CONFIG" => provider_config.clone(),
            "IMAGE_CREDENTIAL_PROVIDER_BIN_DIR" => provider_bin.clone(),
            // More detail when debugging a failure of this test.
            "RUST_LOG" => std::env::var("IMAGESTREAM_E2E_OPERATOR_LOG").unwrap_or(value),
            _ => value,
        };
        env.push((name, value));
    }
    env
}

/// The chart's credential provider config, written where this process can read it, and a bin
/// dir with the test plugin under each provider's name (the init container's job in a pod).
fn provider_files(objects: &[Value], dir: &std::path::Path) -> (String, String) {
    let Some(map) = objects.iter().find(|o| {
        o["kind"] == "ConfigMap"
            && o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-credential-providers"))
    }) else {
        return Default::default();
    };
    let text = map["data"]["config.yaml"].as_str().unwrap_or_default();
    let config = dir.join("config.yaml");
    std::fs::write(&config, text).unwrap();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for p in imagestream_operator::registry::credentials::config::parse(text).unwrap() {
        std::os::unix::fs::symlink(common::plugin_binary(), bin.join(&p.name)).unwrap();
    }
    (config.display().to_string(), bin.display().to_string())
}

/// Starts the built binary as the chart's ServiceAccount `release` (a token of it in its own
/// kubeconfig), with the chart's env for `values` and its listeners on `ports`; returns the
/// process and that kubeconfig. Logs go to `dir` (see [`operator_log`]).
pub(super) async fn spawn_as_chart_sa(
    admin: &Client,
    helm_bin: &str,
    release: &str,
    ns: &str,
    values: &Value,
    ports: (u16, u16),
    dir: &std::path::Path,
) -> (Process, Value) {
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create_token_request(
            release,
            &PostParams::default(),
            &TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![],
                    expiration_seconds: Some(3600),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("a token for the chart's ServiceAccount")
        .status
        .expect("the token request is answered")
        .token;
    let kubeconfig_path = dir.join("kubeconfig");
    let kubeconfig = token_kubeconfig(&token);
    std::fs::write(&kubeconfig_path, kubeconfig.to_string()).unwrap();
    let pod = format!("{release}-pod-0");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_imagestream-operator"));
    command
        .arg("run")
        .env_clear()
        .env("KUBECONFIG", &kubeconfig_path)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(chart_env(helm_bin, release, ns, values, &pod, ports, dir))
        .stdout(std::fs::File::create(dir.join("operator.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("operator.stderr")).unwrap());
    let operator = Process(command.spawn().expect("the operator binary starts"));
    (operator, kubeconfig)
}

/// What the operator started by [`spawn_as_chart_sa`] in `dir` has logged.
pub(super) fn operator_log(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("operator.log")).unwrap_or_default()
        + &std::fs::read_to_string(dir.join("operator.stderr")).unwrap_or_default()
}

pub(super) async fn eventually<T, F, Fut>(what: &str, secs: u64, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..secs * 4 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out after {secs}s waiting for {what}");
}

fn forbidden<T: std::fmt::Debug>(what: &str, r: Result<T, kube::Error>) {
    match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => {
            panic!("{what}: expected 403 Forbidden for the operator's identity, got {other:?}")
        }
    }
}

#[tokio::test]
async fn the_operator_binary_runs_with_exactly_the_charts_permissions() {
    as_the_charts_service_account(false).await;
}

/// Namespaced mode (`controller.watchNamespaces`): the same work in the listed namespaces, with
/// Roles there instead of the cluster-wide grants; a namespace not listed is neither read nor
/// written, and `kubectl auth can-i` agrees.
#[tokio::test]
async fn in_namespaced_mode_the_identity_reaches_only_the_listed_namespaces() {
    as_the_charts_service_account(true).await;
}

async fn as_the_charts_service_account(namespaced: bool) {
    if !enabled() {
        return;
    }
    let (Some(helm_bin), Some(kubectl)) = (helm::tool("helm"), helm::tool("kubectl")) else {
        return;
    };
    common::install_crypto();
    let Some(reg) = common::Registry::start(None).await else {
        return;
    };
    let digest = reg.push_image("e2e/app", "latest", "one", false).await;
    // A private registry no pull secret opens: only the credential provider, in token mode.
    let Some(private) = common::Registry::start(Some(("tenant", "cloud-issued"))).await else {
        return;
    };
    let private_digest = private.push_image("cloud/app", "1", "c", false).await;
    let dir = tempfile::tempdir().unwrap();
    let plugin_log = dir.path().join("plugin.log");
    let (admin, ns, mut cleanup) = cluster("is-e2e-sa").await;
    let app = format!("is-e2e-sa-app-{}", std::process::id());
    fixtures::namespace(&admin, &mut cleanup, &app).await;
    // Namespaced mode manages app and the release namespace (two watches merged), not this one.
    let outside = format!("is-e2e-sa-outside-{}", std::process::id());
    fixtures::namespace(&admin, &mut cleanup, &outside).await;

    let release = format!("e2e-sa-{}", std::process::id());
    let values = json!({
        "controller": {"insecureRegistries": [reg.addr, private.addr], "scheduledImportInterval": "2s", "logFormat": "text"},
        "credentialProviders": {"enabled": true, "pluginImage": {"repository": "plugins.example/unused"}, "config": {
            "apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig",
            "providers": [{
                "name": "cloud-provider", "matchImages": [private.addr], "defaultCacheDuration": "1h",
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "env": [
                    {"name": "TEST_PROVIDER_USER", "value": "tenant"},
                    {"name": "TEST_PROVIDER_PASSWORD", "value": "cloud-issued"},
                    {"name": "TEST_PROVIDER_AUDIENCE", "value": "registry.e2e.example"},
                    {"name": "TEST_PROVIDER_LOG", "value": plugin_log.display().to_string()},
                ],
                "tokenAttributes": {"serviceAccountTokenAudience": "registry.e2e.example", "requireServiceAccount": true, "cacheType": "ServiceAccount"},
            }],
        }},
        // Only this test's app namespace goes through this test's webhook.
        "admission": {"namespaceSelectorExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [app]}]},
    });
    let mut values = values;
    if namespaced {
        values["controller"]["watchNamespaces"] = json!([app, ns]);
    }
    let ports = (common::free_port(), common::free_port());
    let url = format!("https://127.0.0.1:{}/mutate", ports.1);
    install_chart(
        &helm_bin,
        &kubectl,
        &release,
        &ns,
        &values,
        &url,
        &mut cleanup,
    );

    let (mut operator, kubeconfig) =
        spawn_as_chart_sa(&admin, &helm_bin, &release, &ns, &values, ports, dir.path()).await;
    let log = || operator_log(dir.path());
    let pod = format!("{release}-pod-0");

    let checks = async {
        // The Lease (Role: leases get/create/patch).
        let leases: Api<Lease> = Api::namespaced(admin.clone(), &ns);
        eventually("the leader lease", 60, || async {
            leases
                .get(&release)
                .await
                .ok()
                .filter(|l| l.spec.as_ref().and_then(|s| s.holder_identity.as_ref()) == Some(&pod))
        })
        .await;
        // The generated certificate, stored and injected (Role: secrets create/get;
        // mutatingwebhookconfigurations get/patch).
        let hooks: Api<MutatingWebhookConfiguration> = Api::all(admin.clone());
        eventually("the injected CA bundle", 60, || async {
            hooks.get(&release).await.ok().filter(|h| {
                h.webhooks
                    .iter()
                    .flatten()
                    .all(|w| w.client_config.ca_bundle.is_some())
            })
        })
        .await;
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
        assert!(secrets.get(&format!("{release}-webhook-tls")).await.is_ok());

        // Import, status, Events (imagestreams, imagestreams/status, events).
        let from = format!("{}/e2e/app", reg.addr);
        let streams = fixtures::stream(&admin, &app, "app", &from, true).await;
        let pinned = format!("{}/e2e/app@{digest}", reg.addr);
        eventually("the import", 60, || async {
            streams.get("app").await.ok().filter(|s| {
                s.status_tag("latest")
                    .is_some_and(|t| t.items.first().is_some_and(|i| i.image == digest))
            })
        })
        .await;
        // A private image through the token-mode provider (serviceaccounts get,
        // serviceaccounts/token create): the app namespace's own `default` token.
        let private_from = format!("{}/cloud/app:1", private.addr);
        let private_streams = fixtures::stream(&admin, &app, "cloud", &private_from, false).await;
        eventually("the import through the credential provider", 60, || async {
            private_streams.get("cloud").await.ok().filter(|s| {
                s.status_tag("latest")
                    .is_some_and(|t| t.items.first().is_some_and(|i| i.image == private_digest))
            })
        })
        .await;
        let calls = common::read_calls(&plugin_log);
        assert!(
            !calls.is_empty()
                && calls
                    .iter()
                    .all(|c| c["namespace"] == app.as_str() && c["serviceAccount"] == "default"),
            "{calls:?}"
        );
        let events: Api<Event> = Api::namespaced(admin.clone(), &app);
        let reasons = || async {
            events
                .list(&ListParams::default())
                .await
                .map(|l| {
                    l.items
                        .into_iter()
                        .filter_map(|e| e.reason)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        eventually("an Imported Event", 30, || async {
            reasons()
                .await
                .contains(&"Imported".to_string())
                .then_some(())
        })
        .await;

        // A trigger fires (deployments watch/patch).
        let trigger = fixtures::trigger("app:latest", None);
        let deployments =
            fixtures::deployment(&admin, &app, "web", 1, Some(&trigger), "placeholder").await;
        let image = |d: Deployment| fixtures::image(&d);
        eventually("the trigger", 60, || async {
            deployments
                .get("web")
                .await
                .ok()
                .and_then(image)
                .filter(|i| *i == pinned)
        })
        .await;
        eventually("an ImageTriggered Event", 30, || async {
            reasons()
                .await
                .contains(&"ImageTriggered".to_string())
                .then_some(())
        })
        .await;

        // A cross-namespace trigger, granted by a RoleBinding (subjectaccessreviews create).
        fixtures::grant_read(&admin, &app, &ns).await;
        let trigger = fixtures::trigger("app:latest", Some(&app));
        let cross =
            fixtures::deployment(&admin, &ns, "cross", 1, Some(&trigger), "placeholder").await;
        eventually("the cross-namespace trigger", 60, || async {
            cross
                .get("cross")
                .await
                .ok()
                .and_then(image)
                .filter(|i| *i == pinned)
        })
        .await;

        // The webhook resolves a short name (dry runs until its cache has the stream).
        let short = json!({
            "metadata": {"name": "short"},
            "spec": {"selector": {"matchLabels": {"app": "short"}}, "template": {
                "metadata": {"labels": {"app": "short"}},
                "spec": {"containers": [{"name": "c", "image": "app:latest"}]}}}
        });
        let short: Deployment = serde_json::from_value(short).unwrap();
        let dry = PostParams {
            dry_run: true,
            ..Default::default()
        };
        eventually("the webhook's rewrite", 60, || async {
            deployments
                .create(&dry, &short)
                .await
                .ok()
                .and_then(image)
                .filter(|i| *i == pinned)
        })
        .await;

        if namespaced {
            outside_is_untouched(&admin, &outside, &from).await;
        }

        // Readiness on the metrics listener.
        let readyz = format!("http://127.0.0.1:{}/readyz", ports.0);
        let ready = match reqwest::get(&readyz).await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        };
        assert_eq!(ready.0, 200, "/readyz: {}\n{}", ready.1, log());
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(240),
        futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(checks)),
    )
    .await
    .unwrap_or_else(|_| panic!("timed out; operator log:\n{}", log()));
    if let Err(panic) = outcome {
        eprintln!("operator log:\n{}", log());
        std::panic::resume_unwind(panic);
    }

    assert!(
        operator.0.try_wait().ok().flatten().is_none(),
        "the operator exited:\n{}",
        log()
    );
    let text = log();
    assert!(
        !text.to_ascii_lowercase().contains("forbidden"),
        "the chart's permissions fell short somewhere:\n{text}"
    );

    // What the identity must not be able to do.
    let sa: Client = {
        let kubeconfig: Kubeconfig = serde_json::from_value(kubeconfig).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        Client::try_from(config).unwrap()
    };
    let opaque: Secret = serde_json::from_value(
        json!({"metadata": {"name": "app-password"}, "stringData": {"password": "s3cret"}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(admin.clone(), &app)
        .create(&PostParams::default(), &opaque)
        .await
        .unwrap();
    forbidden(
        "get a Secret by name",
        Api::<Secret>::namespaced(sa.clone(), &app)
            .get("app-password")
            .await,
    );
    forbidden(
        "change its own certificate Secret",
        Api::<Secret>::namespaced(sa.clone(), &ns)
            .patch(
                &format!("{release}-webhook-tls"),
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
            )
            .await,
    );
    forbidden(
        "list ConfigMaps",
        Api::<ConfigMap>::all(sa.clone())
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "create a Pod",
        Api::<Pod>::namespaced(sa.clone(), &app)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "x", "image": "x"}]}}))
                    .unwrap(),
            )
            .await,
    );
    forbidden(
        "delete an ImageStream",
        Api::<ImageStream>::namespaced(sa.clone(), &app)
            .delete("app", &DeleteParams::default())
            .await,
    );
    forbidden(
        "delete a Deployment",
        Api::<Deployment>::namespaced(sa.clone(), &app)
            .delete("web", &DeleteParams::default())
            .await,
    );
    forbidden(
        "bind roles",
        Api::<RoleBinding>::namespaced(sa.clone(), &app)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "escalate"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                    "subjects": [{"kind": "ServiceAccount", "name": release, "namespace": ns}]}))
                .unwrap(),
            )
            .await,
    );
    if namespaced {
        let sa = format!("system:serviceaccount:{ns}:{release}");
        let can = |verb: &str, resource: &str, namespace: &str| {
            let answer = helm::run(
                &kubectl,
                &[
                    "auth", "can-i", verb, resource, "-n", namespace, "--as", &sa,
                ],
                None,
            );
            matches!(answer, Ok(out) if out.trim() == "yes")
        };
        for namespace in [outside.as_str(), "kube-system", "default"] {
            for (verb, resource) in [
                ("list", "secrets"),
                ("watch", "secrets"),
                ("patch", "deployments.apps"),
                ("patch", "pods"),
                ("patch", "daemonsets.apps"),
                ("create", "serviceaccounts/token"),
                ("list", "imagestreams.image.openshift.io"),
            ] {
                assert!(
                    !can(verb, resource, namespace),
                    "{verb} {resource} in {namespace}"
                );
            }
        }
        for (verb, resource) in [
            ("list", "secrets"),
            ("patch", "deployments.apps"),
            ("patch", "imagestreams.image.openshift.io"),
        ] {
            assert!(
                can(verb, resource, &app),
                "{verb} {resource} in the listed namespace"
            );
        }
    }
    drop(operator);
    drop(cleanup);
}

/// A stream and a triggered Deployment in a namespace the operator does not manage, created
/// after the managed namespace's import: neither is ever touched.
async fn outside_is_untouched(admin: &Client, outside: &str, from: &str) {
    let streams = fixtures::stream(admin, outside, "app", from, true).await;
    let trigger = fixtures::trigger("app:latest", None);
    let deployments =
        fixtures::deployment(admin, outside, "web", 1, Some(&trigger), "placeholder").await;
    // Several scheduled intervals (2 s) and the trigger's reaction time of the managed namespace.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let stream = streams.get("app").await.unwrap();
    assert!(stream.status.is_none(), "{:?}", stream.status);
    let image = deployments
        .get("web")
        .await
        .ok()
        .and_then(|d| fixtures::image(&d));
    assert_eq!(image.as_deref(), Some("placeholder"));
}
