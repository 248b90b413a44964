//! Deployments own ReplicaSets that carry a copy of the trigger annotation: only the Deployment is
//! ever patched, so every tag move makes the Deployment controller roll a new ReplicaSet — also
//! when the Deployment existed before the operator started, and across an operator restart.

use std::time::Duration;

use imagestream_operator::api::field_manager;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::Api;
use kube::Client;

use super::{cluster, common, enabled, fixtures, start_operator, wait_for};

fn template_image(spec: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>) -> String {
    spec.and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// Waits until the Deployment's template has `want` and a ReplicaSet with that template exists;
/// then checks that no ReplicaSet was ever written by the trigger field manager.
async fn rolled_to(client: &Client, ns: &str, want: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let mut last = String::new();
    for _ in 0..240 {
        let d = deployments.get("web").await.ok();
        let pinned = d
            .as_ref()
            .is_some_and(|d| template_image(d.spec.as_ref().map(|s| &s.template)) == want);
        let list = sets
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let rolled = list
            .iter()
            .any(|rs| template_image(rs.spec.as_ref().and_then(|s| s.template.as_ref())) == want);
        last = list
            .iter()
            .map(|rs| {
                format!(
                    "{} {}",
                    rs.metadata.name.clone().unwrap_or_default(),
                    template_image(rs.spec.as_ref().and_then(|s| s.template.as_ref()))
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        if pinned && rolled {
            for rs in &list {
                let managers: Vec<_> = rs
                    .metadata
                    .managed_fields
                    .iter()
                    .flatten()
                    .filter_map(|m| m.manager.clone())
                    .collect();
                assert!(
                    !managers.iter().any(|m| m == field_manager::TRIGGERS),
                    "ReplicaSet {:?} was written by the trigger controller: {managers:?}",
                    rs.metadata.name
                );
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("no rollout to {want}; ReplicaSets: {last}");
}

#[tokio::test]
async fn only_the_deployment_is_patched_and_every_push_rolls_a_new_replicaset() {
    if !enabled() {
        return;
    }
    common::install_crypto();
    let Some(reg) = common::Registry::start(None).await else {
        return;
    };
    let first = reg.push_image("e2e/rs", "latest", "one", false).await;
    let (client, ns, cleanup) = cluster("is-e2e-rs").await;

    // Stream and Deployment exist before the operator starts, so the Deployment's ReplicaSet
    // (with its copy of the annotation) reaches the operator in its first watch list.
    let from = format!("{}/e2e/rs", reg.addr);
    let streams = fixtures::stream(&client, &ns, "web", &from, false).await;
    let trigger = fixtures::trigger("web:latest", None);
    fixtures::deployment(&client, &ns, "web", 2, Some(&trigger), "web:v1").await;
    rolled_to(&client, &ns, "web:v1").await;

    let operator = start_operator(&client, &reg);
    let spec = |digest: &str| format!("{}/e2e/rs@{digest}", reg.addr);
    rolled_to(&client, &ns, &spec(&first)).await;

    let second = reg.push_image("e2e/rs", "latest", "two", false).await;
    rolled_to(&client, &ns, &spec(&second)).await;

    // A restart (or a new leader) sees every ReplicaSet again in its first watch list.
    operator.stop();
    let operator = start_operator(&client, &reg);
    let third = reg.push_image("e2e/rs", "latest", "three", false).await;
    rolled_to(&client, &ns, &spec(&third)).await;
    wait_for(&streams, "web", "three images in history", |s| {
        s.status_tag("latest").is_some_and(|t| t.items.len() == 3)
    })
    .await;

    operator.stop();
    drop(cleanup);
}
