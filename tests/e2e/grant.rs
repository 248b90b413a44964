//! A cross-namespace trigger that was forbidden fires by itself within 30 s of the RoleBinding
//! that allows it: denials are cached no longer than the API server's authorizer caches them,
//! and denied workloads are evaluated again when the denial expires.

use std::time::{Duration, Instant};

use imagestream_operator::triggers::access::DENIED_TTL;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};

use super::{cluster, common, enabled, fixtures, start_operator, wait_for};

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
    fixtures::namespace(&client, &mut cleanup, &app_ns).await;
    let from = format!("{}/e2e/shared", reg.addr);
    let streams = fixtures::stream(&client, &source_ns, "shared", &from, false).await;
    let operator = start_operator(&client, &reg);
    wait_for(&streams, "shared", "import", |s| {
        s.status_tag("latest").is_some_and(|t| !t.items.is_empty())
    })
    .await;
    let trigger = fixtures::trigger("shared:latest", Some(&source_ns));
    let deployments =
        fixtures::deployment(&client, &app_ns, "web", 1, Some(&trigger), "placeholder").await;
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

    // The grant: the app namespace's default service account may read the source streams.
    fixtures::grant_read(&client, &source_ns, &app_ns).await;
    let granted = Instant::now();
    let want = format!("{}/e2e/shared@{digest}", reg.addr);
    loop {
        let image = fixtures::image(&deployments.get("web").await.unwrap());
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
