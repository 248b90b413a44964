//! Namespace users reach ImageStreams through the cluster's default roles, as on OpenShift: the
//! chart's aggregated ClusterRoles let an `edit` user create and change streams and a `view`
//! user read them, and neither write status, which is the operator's.

use k8s_openapi::api::rbac::v1::ClusterRole;
use serde_json::json;

use super::{cluster, enabled, fixtures, helm};

fn stream_manifest(ns: &str, name: &str) -> String {
    json!({
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"tags": [{"name": "1", "from": {"kind": "DockerImage", "name": "127.0.0.1:9/app:1"}}]},
    })
    .to_string()
}

#[tokio::test]
async fn edit_users_manage_streams_and_view_users_read_them() {
    if !enabled() {
        return;
    }
    let (Some(helm_bin), Some(kubectl)) = (helm::tool("helm"), helm::tool("kubectl")) else {
        return;
    };
    let (_admin, ns, mut cleanup) = cluster("is-e2e-users").await;
    let release = format!("e2e-users-{}", std::process::id());
    for role in helm::render(&helm_bin, &release, &ns, &json!({}), false) {
        if role["kind"] != "ClusterRole" || !helm::aggregated(&role) {
            continue;
        }
        cleanup.cluster_scoped::<ClusterRole>(role["metadata"]["name"].as_str().unwrap());
        helm::run(&kubectl, &["apply", "-f", "-"], Some(&role.to_string())).unwrap();
    }
    for (user, role) in [("alice", "edit"), ("bob", "view")] {
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": user, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        });
        helm::run(&kubectl, &["apply", "-f", "-"], Some(&binding.to_string())).unwrap();
    }
    // The controller manager folds the labelled roles into edit and view.
    let streams = "imagestreams.image.openshift.io";
    fixtures::until(
        "edit to aggregate ImageStreams",
        std::time::Duration::from_secs(60),
        || async { helm::can_i(&kubectl, "alice", &ns, "create", streams).then_some(()) },
    )
    .await;

    helm::run(
        &kubectl,
        &["apply", "--as", "alice", "-f", "-"],
        Some(&stream_manifest(&ns, "by-alice")),
    )
    .unwrap_or_else(|e| panic!("an edit user creates a stream: {e}"));
    for verb in ["get", "list", "watch", "update", "patch", "delete"] {
        assert!(
            helm::can_i(&kubectl, "alice", &ns, verb, streams),
            "edit may {verb}"
        );
    }
    assert!(!helm::can_i(
        &kubectl,
        "alice",
        &ns,
        "patch",
        &format!("{streams}/status")
    ));

    let listed = helm::run(
        &kubectl,
        &["get", "is", "-n", &ns, "--as", "bob", "-o", "name"],
        None,
    )
    .unwrap_or_else(|e| panic!("a view user lists streams: {e}"));
    assert!(listed.contains("by-alice"), "{listed}");
    assert!(helm::can_i(
        &kubectl,
        "bob",
        &ns,
        "get",
        &format!("{streams}/status")
    ));
    let refused = helm::run(
        &kubectl,
        &["apply", "--as", "bob", "-f", "-"],
        Some(&stream_manifest(&ns, "by-bob")),
    );
    assert!(
        matches!(&refused, Err(e) if e.contains("forbidden")),
        "a view user cannot create: {refused:?}"
    );
    for verb in ["create", "update", "patch", "delete"] {
        assert!(
            !helm::can_i(&kubectl, "bob", &ns, verb, streams),
            "view may not {verb}"
        );
    }
}
