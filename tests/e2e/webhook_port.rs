//! The webhook's port answers the API server only, and only about the namespace under review.
//! The operator binary runs as the chart's ServiceAccount with `admission.clientCA` set. A
//! second kube-apiserver on the same etcd has the README's `AdmissionConfiguration`, whose
//! kubeconfig gives it a client certificate for the webhook. Through it, a short name is
//! resolved. Through the first API server (no client certificate), nothing is resolved and the
//! object is admitted as written (failurePolicy Ignore). Direct callers get no TLS session
//! without that CA's certificate. With the certificate, a hand-written AdmissionReview for
//! namespace A never carries namespace B's image, whatever it says.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::{json, Value};

use super::identity::{eventually, install_chart, operator_log, spawn_as_chart_sa, Process};
use super::{cluster, common, enabled, fixtures, helm};

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `name` in `dir` and a client certificate it signs: `<name>-ca.crt`,
/// `<name>-client.crt`, `<name>-client.key`.
fn client_pki(dir: &Path, name: &str) {
    let ca = format!("{name}-ca");
    let client = format!("{name}-client");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.crt"),
            "-days",
            "1",
            "-subj",
            &format!("/CN={ca}"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{client}.key"),
            "-out",
            &format!("{client}.csr"),
            "-subj",
            "/CN=kube-apiserver-webhook-client",
        ],
    );
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{client}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{client}.crt"),
            "-days",
            "1",
            "-extfile",
            "client.ext",
        ],
    );
}

/// A second kube-apiserver beside the one in KUBECONFIG: same etcd, certificates and flags (read
/// from the running one's command line), another port, and `--admission-control-config-file`.
/// None, with the reason printed, when KUBECONFIG's cluster is not `../shared/k8s/up.sh`'s.
fn second_api_server(admission_config: &Path, dir: &Path) -> Option<(Process, PathBuf)> {
    use std::io::Write;
    let skip = |why: &str| {
        let _ = writeln!(std::io::stderr(), "SKIP webhook_port: {why}");
        None
    };
    let Ok(k8s) = std::env::var("IMAGESTREAM_K8S_DIR") else {
        return skip("IMAGESTREAM_K8S_DIR is not set (the cluster is not ../shared/k8s/up.sh's)");
    };
    let k8s = PathBuf::from(k8s);
    let Ok(pid) = std::fs::read_to_string(k8s.join("apiserver.pid")) else {
        return skip("no apiserver.pid in IMAGESTREAM_K8S_DIR");
    };
    let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
    let (Ok(cmdline), Ok(exe)) = (
        std::fs::read(proc.join("cmdline")),
        std::fs::read_link(proc.join("exe")),
    ) else {
        return skip("the running kube-apiserver's command line is not readable");
    };
    let mut args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .skip(1)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let port = common::free_port();
    let Some(at) = args.iter().position(|a| a == "--secure-port") else {
        return skip("the running kube-apiserver has no --secure-port flag to change");
    };
    args[at + 1] = port.to_string();
    args.push("--admission-control-config-file".into());
    args.push(admission_config.display().to_string());
    let log = std::fs::File::create(dir.join("apiserver2.log")).unwrap();
    let child = std::process::Command::new(exe)
        .args(&args)
        .current_dir(&k8s)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the second kube-apiserver starts");
    let admin = std::fs::read_to_string(std::env::var("KUBECONFIG").unwrap()).unwrap();
    let first = regex::Regex::new(r"https://127\.0\.0\.1:\d+").unwrap();
    let kubeconfig = dir.join("kubeconfig-apiserver2");
    std::fs::write(
        &kubeconfig,
        first
            .replace(&admin, format!("https://127.0.0.1:{port}").as_str())
            .as_ref(),
    )
    .unwrap();
    Some((Process(child), kubeconfig))
}

async fn client_of(kubeconfig: &Path) -> Client {
    let config = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// The AdmissionConfiguration of the README, with the webhook named as the API server names a
/// `url` webhook: its host and port.
fn admission_config(dir: &Path, webhook_host: &str) -> PathBuf {
    let kubeconfig = dir.join("webhook-kubeconfig.yaml");
    std::fs::write(
        &kubeconfig,
        json!({
            "apiVersion": "v1", "kind": "Config",
            "users": [{"name": webhook_host, "user": {
                "client-certificate": dir.join("apiserver-client.crt"),
                "client-key": dir.join("apiserver-client.key")}}],
        })
        .to_string(),
    )
    .unwrap();
    let config = dir.join("admission-config.yaml");
    std::fs::write(
        &config,
        json!({
            "apiVersion": "apiserver.config.k8s.io/v1", "kind": "AdmissionConfiguration",
            "plugins": [{"name": "MutatingAdmissionWebhook", "configuration": {
                "apiVersion": "apiserver.config.k8s.io/v1", "kind": "WebhookAdmissionConfiguration",
                "kubeConfigFile": kubeconfig}}],
        })
        .to_string(),
    )
    .unwrap();
    config
}

fn pod(ns: &str, image: &str, resolve_all: bool) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "short", "namespace": ns},
        "spec": {"containers": [{"name": "db", "image": image}]},
    });
    if resolve_all {
        p["metadata"]["annotations"] =
            json!({"alpha.image.policy.openshift.io/resolve-names": "*"});
    }
    p
}

/// The image a dry-run creation of a `db:latest` pod in `ns` is stored with.
async fn created_image(client: Client, ns: String) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let p: Pod = serde_json::from_value(pod(&ns, "db:latest", false)).unwrap();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let created = pods.create(&dry, &p).await.ok()?;
    created.spec?.containers.first()?.image.clone()
}

/// A hand-written AdmissionReview for `namespace` carrying `object`.
fn review(namespace: &str, object: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "mallory"},
            "object": object,
        }
    })
}

/// A client for the webhook port trusting its serving CA, presenting `identity` (the PEM of a
/// client certificate and key) if any.
fn caller(serving_ca: &str, identity: Option<&Path>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(serving_ca.as_bytes()).unwrap())
        .timeout(Duration::from_secs(5));
    if let Some(prefix) = identity {
        let mut pem = std::fs::read(prefix.with_extension("crt")).unwrap();
        pem.extend(std::fs::read(prefix.with_extension("key")).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// The answer's text with its JSON patch decoded (the patch travels base64-encoded).
async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Result<String, String> {
    let response = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let text = response.text().await.map_err(|e| format!("{e:?}"))?;
    let review: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    let patch = review["response"]["patch"].as_str().unwrap_or_default();
    let patch = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, patch)
        .map_err(|e| format!("{e}: {text}"))?;
    Ok(format!(
        "{text}\npatch: {}",
        String::from_utf8_lossy(&patch)
    ))
}

#[tokio::test]
async fn only_the_api_server_gets_answers_and_only_about_the_namespace_under_review() {
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
    let digest_a = reg.push_image("team-a/db", "latest", "a", false).await;
    let digest_b = reg.push_image("team-b/db", "latest", "b", false).await;
    let dir = tempfile::tempdir().unwrap();
    client_pki(dir.path(), "apiserver");
    client_pki(dir.path(), "impostor");
    std::fs::copy(
        dir.path().join("apiserver-ca.crt"),
        dir.path().join("client-ca.crt"),
    )
    .unwrap();

    let (admin, ns, mut cleanup) = cluster("is-e2e-port").await;
    let (a, b) = (
        format!("is-e2e-port-a-{}", std::process::id()),
        format!("is-e2e-port-b-{}", std::process::id()),
    );
    fixtures::namespace(&admin, &mut cleanup, &a).await;
    fixtures::namespace(&admin, &mut cleanup, &b).await;
    let release = format!("e2e-port-{}", std::process::id());
    let ca_map: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "apiserver-client-ca"},
        "data": {"ca.crt": std::fs::read_to_string(dir.path().join("apiserver-ca.crt")).unwrap()}}))
        .unwrap();
    Api::<ConfigMap>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &ca_map)
        .await
        .unwrap();
    let values = json!({
        "controller": {"insecureRegistries": [reg.addr], "logFormat": "text"},
        "admission": {
            "clientCA": {"configMap": "apiserver-client-ca", "key": "ca.crt"},
            "namespaceSelectorExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [a, b]}],
        },
    });
    let ports = (common::free_port(), common::free_port());
    let host = format!("127.0.0.1:{}", ports.1);
    let url = format!("https://{host}/mutate");
    install_chart(
        &helm_bin,
        &kubectl,
        &release,
        &ns,
        &values,
        &url,
        &mut cleanup,
    );
    let (mut operator, _) =
        spawn_as_chart_sa(&admin, &helm_bin, &release, &ns, &values, ports, dir.path()).await;
    let log = || operator_log(dir.path());

    let Some((_apiserver2, kubeconfig2)) =
        second_api_server(&admission_config(dir.path(), &host), dir.path())
    else {
        return;
    };
    let checks = async {
        for (ns, repo, digest) in [(&a, "team-a/db", &digest_a), (&b, "team-b/db", &digest_b)] {
            let streams =
                fixtures::stream(&admin, ns, "db", &format!("{}/{repo}", reg.addr), true).await;
            eventually("the import", 60, || async {
                streams.get("db").await.ok().filter(|s| {
                    s.status_tag("latest")
                        .is_some_and(|t| t.items.first().is_some_and(|i| &i.image == digest))
                })
            })
            .await;
        }
        let pinned_a = format!("{}/team-a/db@{digest_a}", reg.addr);
        let serving_ca = eventually("the injected CA bundle", 60, || async {
            let hooks: Api<
                k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
            > = Api::all(admin.clone());
            let hook = hooks.get(&release).await.ok()?;
            let bundle = hook.webhooks?.first()?.client_config.ca_bundle.clone()?;
            String::from_utf8(bundle.0).ok()
        })
        .await;

        // Through the API server that presents the client certificate: resolved.
        let via_identity = client_of(&kubeconfig2).await;
        eventually("the second API server", 90, || async {
            via_identity.apiserver_version().await.ok()
        })
        .await;
        let resolved = eventually(
            "the rewrite through the API server with the identity",
            60,
            || created_image(via_identity.clone(), a.clone()),
        )
        .await;
        assert_eq!(resolved, pinned_a);
        // Through the API server without it: the handshake fails, the pod is admitted as written.
        let unresolved = created_image(admin.clone(), a.clone()).await;
        assert_eq!(unresolved.as_deref(), Some("db:latest"));

        // Direct callers: nothing without the CA's certificate.
        let ours = review(&a, &pod(&a, "db:latest", false));
        for (who, identity) in [
            ("no certificate", None),
            (
                "another CA's certificate",
                Some(dir.path().join("impostor-client")),
            ),
        ] {
            let answer = post(&caller(&serving_ca, identity.as_deref()), &url, &ours).await;
            assert!(answer.is_err(), "{who}: the webhook answered {answer:?}");
        }
        // With it, a review for A reveals nothing of B, whatever it carries.
        let trusted = caller(&serving_ca, Some(&dir.path().join("apiserver-client")));
        let answer = post(&trusted, &url, &ours).await.unwrap();
        assert!(
            answer.contains(&digest_a),
            "the identity is answered: {answer}"
        );
        for object in [
            pod(&b, "db:latest", false),
            pod(&b, "db:latest", true),
            pod(&a, &format!("{}/team-b/db:latest", reg.addr), true),
            pod("", "db:latest", false),
        ] {
            let answer = post(&trusted, &url, &review(&a, &object)).await.unwrap();
            assert!(
                !answer.contains(&digest_b),
                "a review for {a} revealed {b}'s image: {object}\n{answer}"
            );
        }
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(240),
        futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(checks)),
    )
    .await
    .unwrap_or_else(|_| panic!("timed out; operator log:\n{}", log()));
    if let Err(panic) = outcome {
        eprintln!("operator log:\n{}", log());
        eprintln!(
            "second API server log (tail):\n{}",
            std::fs::read_to_string(dir.path().join("apiserver2.log"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::panic::resume_unwind(panic);
    }
    assert!(
        operator.0.try_wait().ok().flatten().is_none(),
        "the operator exited:\n{}",
        log()
    );
    drop(cleanup);
}
