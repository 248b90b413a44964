//! A cross-namespace trigger that was forbidden fires by itself within 30 s of the RoleBinding
//! that allows it: denials are cached no longer than the API server's authorizer caches them,
//! and denied workloads are evaluated again when the denial expires.

use std::time::{Duration, Instant};

use imagestream_operator::api::{ImageStream, TRIGGERS};
use imagestream_operator::triggers::controller::DENIED_TTL;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use super::{cluster, common, enabled, start_operator, wait_for};

#[tokio::test]
async fn a_granted_cross_namespace_trigger_fires_within_thirty_seconds_untouched() {
    if !enabled() {
        return;
    }
    common::install_crypto();
    let Some(reg) = common::Registry::start(None).await else {
        return;
    };
    let digest = reg.push_image("e2e/shared", "latest", "one", false).await;
    let (client, source_ns, mut cleanup) = cluster("is-e2e-grant-src").await;
    let app_ns = format!("is-e2e-grant-app-{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": app_ns}})).unwrap(),
        )
        .await
        .unwrap();
    cleanup.namespace(&app_ns);

    let streams: Api<ImageStream> = Api::namespaced(client.clone(), &source_ns);
    streams
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
                "metadata": {"name": "shared"},
                "spec": {"tags": [{"name": "latest", "from": {"kind": "DockerImage", "name": format!("{}/e2e/shared", reg.addr)}}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let operator = start_operator(&client, &reg);
    wait_for(&streams, "shared", "import", |s| {
        s.status_tag("latest").is_some_and(|t| !t.items.is_empty())
    })
    .await;

    let trigger = format!(
        r#"[{{"from":{{"kind":"ImageStreamTag","name":"shared:latest","namespace":"{source_ns}"}},"fieldPath":"spec.template.spec.containers[?(@.name=='web')].image"}}]"#
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &app_ns);
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "web", "annotations": {TRIGGERS: trigger}},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "placeholder"}]}}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), &app_ns);
    let mut forbidden = false;
    for _ in 0..60 {
        let list = events.list(&ListParams::default()).await.unwrap();
        if list
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("TriggerForbidden"))
        {
            forbidden = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        forbidden,
        "the denied trigger is reported as TriggerForbidden"
    );

    // The grant: the app namespace's default service account may read the source stream.
    let roles: Api<Role> = Api::namespaced(client.clone(), &source_ns);
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "read-shared"}, "rules": [
                {"apiGroups": ["image.openshift.io"], "resources": ["imagestreams"], "resourceNames": ["shared"], "verbs": ["get"]}]}))
            .unwrap(),
        )
        .await
        .unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &source_ns);
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "read-shared"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-shared"},
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": app_ns}]}))
            .unwrap(),
        )
        .await
        .unwrap();
    let granted = Instant::now();
    let want = format!("{}/e2e/shared@{digest}", reg.addr);
    loop {
        let d = deployments.get("web").await.unwrap();
        let image = d
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|s| s.containers.first().and_then(|c| c.image.clone()));
        if image.as_deref() == Some(want.as_str()) {
            break;
        }
        assert!(
            granted.elapsed() < Duration::from_secs(30),
            "the trigger did not fire within 30 s of the grant (denials are cached {DENIED_TTL:?})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("grant → trigger fired in {:?}", granted.elapsed());
    operator.stop();
    drop(cleanup);
}
