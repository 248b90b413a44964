//! The admission webhook: AdmissionReview JSON in, exact JSONPatch out, for every rule of the
//! reference notes §5 and the Job/Pod trigger path; then the real HTTPS endpoint.

mod common;

use std::time::Duration;

use base64::Engine;
use imagestream_operator::admission::server::{
    self, generate, review_json, Admission, Certificate,
};
use imagestream_operator::api::*;
use kube::core::admission::AdmissionReview;
use kube::core::DynamicObject;
use kube::runtime::{reflector, watcher};
use serde_json::{json, Value};

const DIGEST: &str = "sha256:5a1e0b7d6c4f";

/// A stream whose `tags` all point at one image of docker.io/library/`name`, served by the
/// integrated registry at registry.internal:5000.
fn imported(ns: &str, name: &str, tags: &[&str]) -> ImageStream {
    let image = format!("docker.io/library/{name}@{DIGEST}");
    tags.iter().fold(
        ImageStream::test(name)
            .in_namespace(ns)
            .with_repository(&format!("registry.internal:5000/{ns}/{name}")),
        |s, tag| s.imported(tag, &image),
    )
}

fn admission(streams: Vec<ImageStream>) -> Admission {
    let (store, mut writer) = reflector::store();
    for s in streams {
        writer.apply_watcher_event(&watcher::Event::Apply(s));
    }
    Admission::new(store)
}

fn world() -> Admission {
    admission(vec![
        imported("shop", "mysql", &["8", "latest"]).local_lookup(),
        imported("shop", "redis", &["7"]),
        imported("other", "nginx", &["1"]).local_lookup(),
    ])
}

fn deployment(image: &str, template_annotations: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}, "annotations": template_annotations},
            "spec": {"containers": [{"name": "web", "image": image}], "initContainers": [{"name": "init", "image": "busybox"}]}}}
    })
}

fn request(
    kind: &str,
    group: &str,
    version: &str,
    operation: &str,
    object: Value,
    old: Option<Value>,
) -> AdmissionReview<DynamicObject> {
    let resource = format!("{}s", kind.to_ascii_lowercase());
    serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "7c5c1d8a", "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "namespace": "shop", "operation": operation, "name": "web",
            "userInfo": {"username": "alice"}, "object": object, "oldObject": old, "dryRun": false
        }
    }))
    .unwrap()
}

/// (the JSONPatch, or None when no patch was sent; the warnings)
fn answer(
    a: &Admission,
    review_in: AdmissionReview<DynamicObject>,
) -> (Option<Value>, Vec<String>) {
    let out = review_json(a, review_in);
    let response = &out["response"];
    assert_eq!(response["uid"], "7c5c1d8a");
    assert_eq!(response["allowed"], true, "never denied: {out}");
    let patch = response["patch"].as_str().map(|p| {
        assert_eq!(response["patchType"], "JSONPatch");
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(p).unwrap())
            .unwrap()
    });
    let warnings = response["warnings"]
        .as_array()
        .map(|w| w.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    (patch, warnings)
}

fn create(object: Value) -> AdmissionReview<DynamicObject> {
    let kind = object["kind"].as_str().unwrap().to_string();
    let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), "v1".to_string()),
    };
    request(&kind, &group, &version, "CREATE", object, None)
}

fn replace(path: &str, image: &str) -> Value {
    json!([{"op": "replace", "path": path, "value": image}])
}

const PINNED: &str = "docker.io/library/mysql@sha256:5a1e0b7d6c4f";

#[test]
fn short_name_resolves_when_the_stream_has_local_lookup() {
    let (patch, _) = answer(
        &world(),
        create(deployment("mysql:8", json!({}), json!({}))),
    );
    assert_eq!(
        patch,
        Some(replace("/spec/template/spec/containers/0/image", PINNED))
    );
    // `mysql` means mysql:latest.
    let (patch, _) = answer(&world(), create(deployment("mysql", json!({}), json!({}))));
    assert_eq!(
        patch,
        Some(replace("/spec/template/spec/containers/0/image", PINNED))
    );
}

#[test]
fn without_local_lookup_or_with_a_path_nothing_changes() {
    for image in ["redis:7", "library/mysql:8", "docker.io/mysql:8", "nginx:1"] {
        let (patch, _) = answer(&world(), create(deployment(image, json!({}), json!({}))));
        assert_eq!(patch, None, "{image}");
    }
}

#[test]
fn streams_of_other_namespaces_are_never_used() {
    // nginx exists with local lookup, but in namespace `other`.
    let (patch, _) = answer(
        &world(),
        create(deployment("nginx:1", json!({}), json!({}))),
    );
    assert_eq!(patch, None);
}

#[test]
fn resolve_names_on_the_template_or_the_object_resolves_everything_in_the_namespace() {
    let all = json!({RESOLVE_NAMES: "*"});
    let redis = "docker.io/library/redis@sha256:5a1e0b7d6c4f";
    let (patch, _) = answer(
        &world(),
        create(deployment("redis:7", all.clone(), json!({}))),
    );
    assert_eq!(
        patch,
        Some(replace("/spec/template/spec/containers/0/image", redis))
    );
    let (patch, _) = answer(
        &world(),
        create(deployment("redis:7", json!({}), all.clone())),
    );
    assert_eq!(
        patch,
        Some(replace("/spec/template/spec/containers/0/image", redis))
    );
    // Forced: the registry and path are ignored and the name resolved in the object's namespace.
    let (patch, _) = answer(
        &world(),
        create(deployment("quay.io/team/redis:7", all.clone(), json!({}))),
    );
    assert_eq!(
        patch,
        Some(replace("/spec/template/spec/containers/0/image", redis))
    );
    let (patch, _) = answer(
        &world(),
        create(deployment(
            "redis:7",
            json!({RESOLVE_NAMES: "yes"}),
            json!({}),
        )),
    );
    assert_eq!(patch, None, "only * is valid");
}

#[test]
fn digest_references_are_untouched() {
    let (patch, _) = answer(
        &world(),
        create(deployment(
            "mysql@sha256:0000",
            json!({RESOLVE_NAMES: "*"}),
            json!({}),
        )),
    );
    assert_eq!(patch, None);
}

#[test]
fn missing_tag_points_at_the_stream_repository() {
    let (patch, _) = answer(
        &world(),
        create(deployment("mysql:9", json!({}), json!({}))),
    );
    assert_eq!(
        patch,
        Some(replace(
            "/spec/template/spec/containers/0/image",
            "registry.internal:5000/shop/mysql:9"
        ))
    );
}

#[test]
fn init_containers_and_other_kinds_use_their_pod_spec_paths() {
    let mut d = deployment("busybox", json!({}), json!({}));
    d["spec"]["template"]["spec"]["initContainers"][0]["image"] = json!("mysql:8");
    let (patch, _) = answer(&world(), create(d));
    assert_eq!(
        patch,
        Some(replace(
            "/spec/template/spec/initContainers/0/image",
            PINNED
        ))
    );
    let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "namespace": "shop"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "mysql:8"}]}}}}}});
    let (patch, _) = answer(&world(), create(cron));
    assert_eq!(
        patch,
        Some(replace(
            "/spec/jobTemplate/spec/template/spec/containers/0/image",
            PINNED
        ))
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"}, "spec": {"containers": [{"name": "p", "image": "mysql:8"}]}});
    let (patch, _) = answer(&world(), create(pod));
    assert_eq!(patch, Some(replace("/spec/containers/0/image", PINNED)));
}

#[test]
fn pods_owned_by_a_controller_are_left_alone() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": true}]},
        "spec": {"containers": [{"name": "p", "image": "mysql:8"}]}});
    let (patch, _) = answer(&world(), create(pod));
    assert_eq!(patch, None);
}

#[test]
fn updates_touch_only_changed_images_and_never_jobs() {
    let old = deployment("mysql:8", json!({}), json!({}));
    let (patch, _) = answer(
        &world(),
        request(
            "Deployment",
            "apps",
            "v1",
            "UPDATE",
            deployment("mysql:8", json!({}), json!({})),
            Some(old.clone()),
        ),
    );
    assert_eq!(patch, None, "unchanged image: untouched");
    let (patch, _) = answer(
        &world(),
        request(
            "Deployment",
            "apps",
            "v1",
            "UPDATE",
            deployment("mysql:latest", json!({}), json!({})),
            Some(old),
        ),
    );
    assert_eq!(
        patch,
        Some(replace("/spec/template/spec/containers/0/image", PINNED))
    );
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "shop"}, "spec": {"template": {"spec": {"containers": [{"name": "j", "image": "mysql:8"}]}}}});
    let (patch, _) = answer(
        &world(),
        request("Job", "batch", "v1", "UPDATE", job.clone(), Some(job)),
    );
    assert_eq!(patch, None);
}

fn job(triggers: &str, image: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "shop", "annotations": {TRIGGERS: triggers}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "worker", "image": image}]}}}})
}

#[test]
fn jobs_created_with_triggers_get_the_resolved_image() {
    let t = r#"[{"from":{"kind":"ImageStreamTag","name":"redis:7"},"fieldPath":"spec.template.spec.containers[?(@.name=='worker')].image"}]"#;
    let (patch, warnings) = answer(&world(), create(job(t, "redis:placeholder")));
    assert_eq!(
        patch,
        Some(replace(
            "/spec/template/spec/containers/0/image",
            "docker.io/library/redis@sha256:5a1e0b7d6c4f"
        ))
    );
    assert!(warnings.is_empty());
}

#[test]
fn job_before_its_tag_resolves_is_admitted_unchanged_with_a_warning() {
    let t = r#"[{"from":{"kind":"ImageStreamTag","name":"redis:8"},"fieldPath":"spec.template.spec.containers[?(@.name=='worker')].image"}]"#;
    let (patch, warnings) = answer(&world(), create(job(t, "redis:8")));
    assert_eq!(patch, None);
    assert_eq!(warnings, vec!["trigger 0: shop/redis:8 has no image yet; the Job is admitted with the image as written".to_string()]);
}

#[test]
fn malformed_trigger_annotation_is_admitted_unchanged_with_a_warning() {
    let (patch, warnings) = answer(&world(), create(job("[{not json", "busybox")));
    assert_eq!(patch, None);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].starts_with(
            "image.openshift.io/triggers ignored: image.openshift.io/triggers is not a JSON list"
        ),
        "{warnings:?}"
    );
}

#[test]
fn unsupported_kinds_and_subresources_pass_through() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}, "data": {"image": "mysql:8"}});
    let (patch, _) = answer(&world(), create(cm));
    assert_eq!(patch, None);
}

// ---------------------------------------------------------------------------------------------
// The HTTPS endpoint.

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn pems(cert: &Certificate) -> (String, String) {
    match cert {
        Certificate::Generated { cert_pem, key_pem } => (cert_pem.clone(), key_pem.clone()),
        Certificate::Files { .. } => unreachable!(),
    }
}

fn client_trusting(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(cert_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn https_endpoint_answers_and_reloads_rotated_certificates() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let (cert1, key1) = pems(&generate(&["127.0.0.1".to_string()]).unwrap());
    let (cert2, key2) = pems(&generate(&["127.0.0.1".to_string()]).unwrap());
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, &cert1).unwrap();
    std::fs::write(&key_path, &key1).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let pair = imagestream_operator::admission::certificate::Pair {
        cert_pem: cert1.clone(),
        key_pem: key1.clone(),
    };
    let tls = server::ServerTls::new(&pair, None).unwrap();
    tokio::spawn(server::reload_on_change(
        tls.clone(),
        cert_path.clone(),
        key_path.clone(),
        Duration::from_millis(100),
    ));
    let app = server::router(world());
    tokio::spawn(server::serve_tls(addr, tls, app, Default::default()));

    let url = format!("https://127.0.0.1:{port}/mutate");
    let body = serde_json::to_value(create(deployment("mysql:8", json!({}), json!({})))).unwrap();
    let mut reply = None;
    for _ in 0..50 {
        if let Ok(r) = client_trusting(&cert1).post(&url).json(&body).send().await {
            reply = Some(r.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = reply.expect("the endpoint answers over TLS");
    assert_eq!(reply["response"]["allowed"], true);
    assert_eq!(reply["response"]["patchType"], "JSONPatch");
    assert!(
        client_trusting(&cert2)
            .post(&url)
            .json(&body)
            .send()
            .await
            .is_err(),
        "not yet serving the second certificate"
    );

    // Rotate the files, as cert-manager does; the new certificate is served without a restart.
    std::fs::write(&key_path, &key2).unwrap();
    std::fs::write(&cert_path, &cert2).unwrap();
    let mut rotated = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if client_trusting(&cert2)
            .post(&url)
            .json(&body)
            .send()
            .await
            .is_ok()
        {
            rotated = true;
            break;
        }
    }
    assert!(rotated, "the rotated certificate is served");
}

/// Pod-bearing objects with arbitrary shapes where containers, templates and annotations are
/// expected: the webhook never panics and never denies; 3,000 cases.
mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let field = prop_oneof![
            Just("spec"),
            Just("template"),
            Just("containers"),
            Just("initContainers"),
            Just("image"),
            Just("name"),
            Just("metadata"),
            Just("annotations"),
            Just("jobTemplate"),
            Just("ownerReferences"),
            Just("controller"),
        ]
        .prop_map(String::from);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z0-9:./@-]{0,24}".prop_map(Value::from),
            Just(Value::from("mysql:8")),
            Just(Value::from(
                r#"[{"from":{"kind":"ImageStreamTag","name":"mysql:8"},"fieldPath":"spec.template.spec.containers[?(@.name==\"web\")].image"}]"#
            )),
        ];
        leaf.prop_recursive(4, 48, 5, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                proptest::collection::btree_map(field.clone(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn any_object_is_admitted(
            body in value(),
            kind in prop_oneof![Just("Pod"), Just("Deployment"), Just("CronJob"), Just("Job")],
        ) {
            let (group, version) = match kind {
                "Pod" => ("", "v1"),
                "CronJob" | "Job" => ("batch", "v1"),
                _ => ("apps", "v1"),
            };
            let mut object = json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": "web"}});
            if let (Some(o), Value::Object(extra)) = (object.as_object_mut(), body) {
                o.extend(extra);
            }
            let a = world();
            // Objects the API server would not accept as the kind are dropped by serde before
            // they reach us; the rest must be answered.
            if let Ok(review) = serde_json::from_value::<AdmissionReview<DynamicObject>>(json!({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {
                    "uid": "7c5c1d8a", "kind": {"group": group, "version": version, "kind": kind},
                    "resource": {"group": group, "version": version, "resource": "x"},
                    "namespace": "shop", "operation": "CREATE", "name": "web",
                    "userInfo": {"username": "alice"}, "object": object, "dryRun": false
                }
            })) {
                let out = review_json(&a, review);
                prop_assert_eq!(&out["response"]["allowed"], &Value::Bool(true));
            }
        }
    }
}

/// A hand-written review naming one namespace and carrying another's object resolved streams
/// of the object's namespace. Only an object of the request's namespace is looked up now.
#[test]
fn a_review_whose_object_is_in_another_namespace_resolves_nothing() {
    let mut object = deployment("nginx:1", json!({}), json!({}));
    object["metadata"]["namespace"] = json!("other");
    let (patch, warnings) = answer(&world(), create(object.clone()));
    assert_eq!(patch, None);
    assert!(
        warnings.iter().any(|w| w.contains("not the request's")),
        "{warnings:?}"
    );
    let mut review = serde_json::to_value(create(object)).unwrap();
    review["request"]["namespace"] = json!("other");
    let (patch, _) = answer(&world(), serde_json::from_value(review).unwrap());
    assert!(
        patch.is_some(),
        "consistent reviews of `other` still resolve in `other`"
    );
}

// ---------------------------------------------------------------------------------------------
// The generated certificate shared through a Secret (exact requests over the mocked API).

mod shared_certificate {
    use super::common::api::{answer_next, assert_no_more_requests, mock_client, Reply};
    use imagestream_operator::admission::certificate::{self, Pair};
    use imagestream_operator::admission::{shared_certificate, Shared};
    use serde_json::{json, Value};
    use std::time::{Duration, SystemTime};

    const SECRETS: &str = "/api/v1/namespaces/imagestream-system/secrets";

    fn shared(hosts: &[&str]) -> Shared {
        Shared {
            namespace: "imagestream-system".into(),
            secret: "iso-webhook-tls".into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            webhook: "iso".into(),
        }
    }

    fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn unb64(v: &Value) -> String {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        String::from_utf8(bytes).unwrap()
    }

    fn stored(pair: &Pair) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "iso-webhook-tls", "namespace": "imagestream-system", "resourceVersion": "41"},
            "data": {"tls.crt": b64(&pair.cert_pem), "tls.key": b64(&pair.key_pem)}})
    }

    /// A current certificate for today's names is read and served: one GET, nothing written.
    #[tokio::test]
    async fn a_fresh_certificate_is_served_as_stored() {
        let hosts = ["iso-webhook.imagestream-system.svc"];
        let pair = certificate::generate(&shared(&hosts).hosts, SystemTime::now()).unwrap();
        let (client, mut handle) = mock_client("default");
        let task = tokio::spawn(async move { shared_certificate(&client, &shared(&hosts)).await });
        let body = stored(&pair);
        let get = answer_next(&mut handle, |_| Reply::Json(body)).await;
        assert_eq!(
            (get.method.as_str(), get.uri.as_str()),
            ("GET", &*format!("{SECRETS}/iso-webhook-tls"))
        );
        let got = task.await.unwrap().unwrap();
        assert_eq!(got.pair, pair);
        assert_eq!(got.ca_bundle, pair.cert_pem);
        assert_no_more_requests(&mut handle).await;
    }

    /// A Secret whose certificate names another Service (the release was renamed, or
    /// --admission-hosts changed) is replaced: a PUT with the resourceVersion read, a
    /// certificate for today's names, and a CA bundle that still trusts the old one, which
    /// replicas not yet reloaded serve.
    #[tokio::test]
    async fn a_certificate_for_other_names_is_replaced_and_the_old_one_stays_trusted() {
        let old = certificate::generate(
            &["old-webhook.imagestream-system.svc".to_string()],
            SystemTime::now(),
        )
        .unwrap();
        let hosts = ["iso-webhook.imagestream-system.svc"];
        let (client, mut handle) = mock_client("default");
        let task = tokio::spawn(async move { shared_certificate(&client, &shared(&hosts)).await });
        let body = stored(&old);
        answer_next(&mut handle, |_| Reply::Json(body)).await;
        let put = answer_next(&mut handle, |_| Reply::Echo).await;
        assert_eq!(
            (put.method.as_str(), put.uri.as_str()),
            ("PUT", &*format!("{SECRETS}/iso-webhook-tls?"))
        );
        assert_eq!(put.body["metadata"]["resourceVersion"], "41");
        let new_cert = unb64(&put.body["data"]["tls.crt"]);
        assert!(matches!(
            certificate::assess(&new_cert, &shared(&hosts).hosts, SystemTime::now()),
            certificate::Verdict::Serve { .. }
        ));
        assert_eq!(
            unb64(&put.body["data"]["ca.crt"]),
            format!("{new_cert}{}", old.cert_pem)
        );
        // The replacement is read back and served.
        let written = put.body.clone();
        answer_next(&mut handle, |_| Reply::Json(written)).await;
        let got = task.await.unwrap().unwrap();
        assert_eq!(got.pair.cert_pem, new_cert);
        assert_eq!(got.ca_bundle, format!("{new_cert}{}", old.cert_pem));
        assert_no_more_requests(&mut handle).await;
    }

    /// Past two thirds of its life, a certificate is renewed; one that has expired is not kept
    /// in the bundle.
    #[tokio::test]
    async fn an_aging_certificate_is_renewed() {
        let hosts = ["iso-webhook.imagestream-system.svc"];
        let long_ago = SystemTime::now() - Duration::from_secs(300 * 24 * 3600);
        let aging = certificate::generate(&shared(&hosts).hosts, long_ago).unwrap();
        let (client, mut handle) = mock_client("default");
        let task = tokio::spawn(async move { shared_certificate(&client, &shared(&hosts)).await });
        let body = stored(&aging);
        answer_next(&mut handle, |_| Reply::Json(body)).await;
        let put = answer_next(&mut handle, |_| Reply::Echo).await;
        assert_eq!(put.method.as_str(), "PUT");
        let new_cert = unb64(&put.body["data"]["tls.crt"]);
        assert_ne!(new_cert, aging.cert_pem);
        assert_eq!(
            unb64(&put.body["data"]["ca.crt"]),
            format!("{new_cert}{}", aging.cert_pem)
        );
        let written = put.body.clone();
        answer_next(&mut handle, |_| Reply::Json(written)).await;
        task.await.unwrap().unwrap();

        let expired = certificate::generate(
            &shared(&hosts).hosts,
            SystemTime::now() - Duration::from_secs(400 * 24 * 3600),
        )
        .unwrap();
        let (client, mut handle) = mock_client("default");
        let task = tokio::spawn(async move { shared_certificate(&client, &shared(&hosts)).await });
        let body = stored(&expired);
        answer_next(&mut handle, |_| Reply::Json(body)).await;
        let put = answer_next(&mut handle, |_| Reply::Echo).await;
        let new_cert = unb64(&put.body["data"]["tls.crt"]);
        assert_eq!(
            unb64(&put.body["data"]["ca.crt"]),
            new_cert,
            "an expired certificate is not trusted on"
        );
        let written = put.body.clone();
        answer_next(&mut handle, |_| Reply::Json(written)).await;
        task.await.unwrap().unwrap();
    }
}
