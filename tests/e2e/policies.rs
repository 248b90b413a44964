//! Tag policies on a real API server with a real registry: a Deployment triggered on a policy
//! tag rolls out each new matching version once, and stays on a non-matching, lower or
//! same-digest tag, on `hold`, and when pinned back to an earlier image.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::*;

const PREFIX: &str = "policy.imagestream-operator.io/";

async fn set_keys(streams: &Api<ImageStream>, keys: serde_json::Value) {
    let patch = json!([{"op": "replace", "path": "/spec/tags/0/annotations", "value": keys}]);
    streams
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(patch).unwrap()),
        )
        .await
        .unwrap();
}

fn policy(s: &ImageStream) -> Option<&TagPolicyStatus> {
    s.status_tag("stable")?.policy.as_ref()
}

/// The Deployment's image once it stops changing for `quiet`, and its generation.
async fn settled(deployments: &Api<Deployment>, quiet: Duration) -> (String, i64) {
    let read = || async {
        let d = deployments.get("web").await.unwrap();
        (
            fixtures::image(&d).unwrap_or_default(),
            d.metadata.generation.unwrap_or(0),
        )
    };
    let mut last = read().await;
    let mut since = std::time::Instant::now();
    while since.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = read().await;
        if now != last {
            (last, since) = (now, std::time::Instant::now());
        }
    }
    last
}

async fn rolled_to(deployments: &Api<Deployment>, want: &str) -> i64 {
    fixtures::until(
        &format!("the Deployment runs {want}"),
        Duration::from_secs(60),
        || async {
            let d = deployments.get("web").await.ok()?;
            (fixtures::image(&d)? == want).then_some(d.metadata.generation.unwrap_or(0))
        },
    )
    .await
}

#[tokio::test]
async fn a_policy_tag_rolls_out_each_newer_match_once_and_nothing_else() {
    if !enabled() {
        return;
    }
    common::install_crypto();
    let Some(reg) = common::Registry::start(None).await else {
        return;
    };
    let (client, ns, _cleanup) = cluster("is-e2e-policy").await;
    let repo = format!("{}/pol/app", reg.addr);
    let pinned = |digest: &str| format!("{repo}@{digest}");
    let d100 = reg.push_image("pol/app", "1.0.0", "v100", false).await;
    let d110 = reg.push_image("pol/app", "1.1.0", "v110", false).await;
    let operator = start_operator(&client, &reg);

    // Written as for OpenShift: the keys are plain tag annotations, the seed a real tag.
    let streams: Api<ImageStream> = Api::namespaced(client.clone(), &ns);
    let manifest = json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": "web"},
        "spec": {"tags": [{"name": "stable", "from": {"kind": "DockerImage", "name": format!("{repo}:1.0.0")},
            "importPolicy": {"scheduled": true}, "annotations": {format!("{PREFIX}semver"): "~1"}}]}});
    streams
        .create(
            &PostParams::default(),
            &serde_json::from_value(manifest).unwrap(),
        )
        .await
        .unwrap();
    let deployments = fixtures::deployment(
        &client,
        &ns,
        "web",
        0,
        Some(&fixtures::trigger("web:stable", None)),
        " ",
    )
    .await;

    let start = rolled_to(&deployments, &pinned(&d110)).await;
    let s = wait_for(&streams, "web", "the policy's first selection", |s| {
        policy(s).is_some()
    })
    .await;
    let p = policy(&s).unwrap();
    assert_eq!(
        (
            p.reason.as_str(),
            p.selected.as_ref().map(|x| x.tag.as_str())
        ),
        ("Moved", Some("1.1.0"))
    );

    // A newer match rolls out once; an out-of-range, a lower and a same-digest tag do not.
    let d120 = reg.push_image("pol/app", "1.2.0", "v120", false).await;
    let after_move = rolled_to(&deployments, &pinned(&d120)).await;
    assert_eq!(after_move, start + 1, "one patch per new digest");
    reg.push_image("pol/app", "2.0.0", "v200", false).await;
    reg.push_image("pol/app", "1.1.5", "v115", false).await;
    let (image, generation) = settled(&deployments, Duration::from_secs(8)).await;
    assert_eq!(
        (image.as_str(), generation),
        (pinned(&d120).as_str(), after_move)
    );
    let s = streams.get("web").await.unwrap();
    assert_eq!(
        policy(&s).map(|p| p.reason.as_str()),
        Some("Current"),
        "{:?}",
        policy(&s)
    );
    assert_eq!(
        s.status_tag("stable").map(|t| t.items.len()),
        Some(2),
        "history: 1.1.0, 1.2.0"
    );

    // A newer tag on the same image moves the selection, not the history or the Deployment.
    reg.push_image("pol/app", "1.2.1", "v120", false).await;
    let s = wait_for(&streams, "web", "the selection of 1.2.1", |s| {
        policy(s)
            .and_then(|p| p.selected.as_ref())
            .is_some_and(|x| x.tag == "1.2.1")
    })
    .await;
    assert_eq!(s.status_tag("stable").map(|t| t.items.len()), Some(2));
    assert_eq!(
        settled(&deployments, Duration::from_secs(3)).await.1,
        after_move
    );

    // Held: a newer match waits, and says so.
    set_keys(
        &streams,
        json!({format!("{PREFIX}semver"): "~1", format!("{PREFIX}hold"): "true"}),
    )
    .await;
    let d130 = reg.push_image("pol/app", "1.3.0", "v130", false).await;
    let s = wait_for(&streams, "web", "1.3.0 pending behind the hold", |s| {
        policy(s).is_some_and(|p| {
            p.reason == "Held" && p.pending.as_ref().is_some_and(|x| x.tag == "1.3.0")
        })
    })
    .await;
    assert_eq!(
        settled(&deployments, Duration::from_secs(3)).await.0,
        pinned(&d120),
        "{:?}",
        policy(&s)
    );

    // Released: it moves on, once.
    set_keys(&streams, json!({format!("{PREFIX}semver"): "~1"})).await;
    let released = rolled_to(&deployments, &pinned(&d130)).await;
    assert_eq!(released, after_move + 1);

    // Pinned back to an earlier image (what `rollback` writes): rolled back, and it stays.
    set_keys(
        &streams,
        json!({format!("{PREFIX}semver"): "~1", format!("{PREFIX}hold"): d110}),
    )
    .await;
    let back = rolled_to(&deployments, &pinned(&d110)).await;
    assert_eq!(back, released + 1);
    reg.push_image("pol/app", "1.4.0", "v140", false).await;
    let (image, generation) = settled(&deployments, Duration::from_secs(8)).await;
    assert_eq!((image, generation), (pinned(&d110), back));
    let _ = d100;
    operator.stop();
}
