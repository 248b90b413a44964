//! What the chart's webhook configuration does while the webhook cannot answer: namespaces are
//! admitted unchanged (failurePolicy Ignore), except those labelled
//! `imagestream-operator.io/lookup-failure-policy=Fail`, where a workload is refused until the
//! webhook is back.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use serde_json::json;

use super::{cluster, common, enabled, fixtures, helm};

fn pod(ns: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "short-name", "namespace": ns},
        "spec": {"containers": [{"name": "db", "image": "mysql:latest"}]},
    })
    .to_string()
}

#[tokio::test]
async fn a_webhook_that_is_away_admits_unchanged_except_where_a_namespace_asks_for_fail() {
    if !enabled() {
        return;
    }
    let (Some(helm_bin), Some(kubectl)) = (helm::tool("helm"), helm::tool("kubectl")) else {
        return;
    };
    let (admin, open, mut cleanup) = cluster("is-e2e-open").await;
    let strict = format!("is-e2e-strict-{}", std::process::id());
    fixtures::namespace(&admin, &mut cleanup, &strict).await;
    helm::run(
        &kubectl,
        &[
            "label",
            "namespace",
            &strict,
            "imagestream-operator.io/lookup-failure-policy=Fail",
        ],
        None,
    )
    .unwrap();
    let release = format!("e2e-fallback-{}", std::process::id());
    // Only this test's namespaces go through this webhook, which nothing serves.
    let values = json!({"admission": {"namespaceSelectorExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [open, strict]}]}});
    let away = format!("https://127.0.0.1:{}/mutate", common::free_port());
    for mut o in helm::render(&helm_bin, &release, &open, &values, false) {
        if o["kind"] != "MutatingWebhookConfiguration" {
            continue;
        }
        for hook in o["webhooks"].as_array_mut().into_iter().flatten() {
            hook["clientConfig"] = json!({"url": away});
        }
        cleanup.cluster_scoped::<MutatingWebhookConfiguration>(&release);
        helm::run(&kubectl, &["apply", "-f", "-"], Some(&o.to_string())).unwrap();
    }

    let create = |ns: &str| {
        helm::run(
            &kubectl,
            &[
                "create",
                "--dry-run=server",
                "-o",
                "jsonpath={.spec.containers[0].image}",
                "-f",
                "-",
            ],
            Some(&pod(ns)),
        )
    };
    // The configuration may take a moment to reach the API server's webhook cache.
    let refused = fixtures::until(
        "the Fail entry to refuse",
        std::time::Duration::from_secs(30),
        || async { create(&strict).err() },
    )
    .await;
    assert!(
        refused.contains("images-required.imagestream-operator.io"),
        "{refused}"
    );
    let admitted = create(&open).unwrap_or_else(|e| panic!("Ignore admits while away: {e}"));
    assert_eq!(admitted, "mysql:latest");
}
