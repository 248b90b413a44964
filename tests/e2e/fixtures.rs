//! The objects e2e tests create again and again: namespaces (cleaned up by the guard), image
//! streams with one DockerImage tag, and Deployments with an optional trigger.

use imagestream_operator::api::{ImageStream, TRIGGERS};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::json;

use super::Cleanup;

/// Creates namespace `name`, deleted by `cleanup`.
pub async fn namespace(client: &Client, cleanup: &mut Cleanup, name: &str) {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
    cleanup.namespace(name);
}

/// An image stream `name` whose tag `latest` imports `from` (scheduled), optionally with
/// `lookupPolicy.local`.
pub async fn stream(
    client: &Client,
    ns: &str,
    name: &str,
    from: &str,
    lookup: bool,
) -> Api<ImageStream> {
    let api: Api<ImageStream> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
            "metadata": {"name": name},
            "spec": {"lookupPolicy": {"local": lookup}, "tags": [{"name": "latest", "from": {"kind": "DockerImage", "name": from}, "importPolicy": {"scheduled": true}}]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    api
}

/// The trigger annotation for container `web` following `stream_tag` (in `from_ns` if given).
pub fn trigger(stream_tag: &str, from_ns: Option<&str>) -> String {
    let namespace = from_ns
        .map(|n| format!(r#","namespace":"{n}""#))
        .unwrap_or_default();
    format!(
        r#"[{{"from":{{"kind":"ImageStreamTag","name":"{stream_tag}"{namespace}}},"fieldPath":"spec.template.spec.containers[?(@.name=='web')].image"}}]"#
    )
}

/// A Deployment `name` with one container `web` running `image`, and `trigger` if given.
pub async fn deployment(
    client: &Client,
    ns: &str,
    name: &str,
    replicas: i32,
    trigger: Option<&str>,
    image: &str,
) -> Api<Deployment> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let annotations = trigger.map(|t| json!({TRIGGERS: t})).unwrap_or(json!({}));
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image}]}}}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    api
}

/// The first container's image of a Deployment's template.
pub fn image(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
}

/// Lets the `default` ServiceAccount of `reader` get image streams in `source`.
pub async fn grant_read(admin: &Client, source: &str, reader: &str) {
    let roles: Api<Role> = Api::namespaced(admin.clone(), source);
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "read-streams"}, "rules": [
                {"apiGroups": ["image.openshift.io"], "resources": ["imagestreams"], "verbs": ["get"]}]}))
            .unwrap(),
        )
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), source)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "read-streams"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-streams"},
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": reader}]}))
            .unwrap(),
        )
        .await
        .unwrap();
}

/// Polls `probe` every 100 ms until it answers, failing the test after `limit`.
pub async fn until<T, F, Fut>(what: &str, limit: std::time::Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A distinct image for tag `t{t}` of repository `{prefix}/s{s}`, for `streams` × `tags`;
/// returns each (s, t)'s digest.
pub async fn push_grid(
    reg: &super::common::Registry,
    prefix: &str,
    streams: usize,
    tags: usize,
    marker: &str,
) -> std::collections::BTreeMap<(usize, usize), String> {
    use futures::{stream, StreamExt};
    stream::iter(0..streams)
        .map(|s| async move {
            let names: Vec<(String, String)> = (0..tags)
                .map(|t| (format!("t{t}"), format!("{marker}-{s}-{t}")))
                .collect();
            let digests = reg.push_variants(&format!("{prefix}/s{s}"), &names).await;
            digests
                .into_iter()
                .enumerate()
                .map(move |(t, d)| ((s, t), d))
        })
        .buffer_unordered(8)
        .flat_map(stream::iter)
        .collect()
        .await
}

/// Streams `s0`…: stream `s{s}` has scheduled tags `t0`… importing `{registry}/{prefix}/s{s}:t{t}`
/// (the images of `push_grid`).
pub async fn grid_streams(
    api: &Api<ImageStream>,
    registry: &str,
    prefix: &str,
    streams: usize,
    tags: usize,
) {
    for s in 0..streams {
        let tags: Vec<_> = (0..tags)
            .map(|t| json!({"name": format!("t{t}"), "from": {"kind": "DockerImage", "name": format!("{registry}/{prefix}/s{s}:t{t}")}, "importPolicy": {"scheduled": true}}))
            .collect();
        api.create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
                "metadata": {"name": format!("s{s}")}, "spec": {"tags": tags}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    }
}
