//! The lookup audit on the real API server: a Deployment stored with `mysql:latest` while no
//! webhook served (here: none is registered) gets one Warning, its ReplicaSet and Pods none
//! (their owner's template is what lookup resolves), a second pass repeats nothing, and the
//! command the Warning names pins the image at once.

use std::sync::Arc;
use std::time::Duration;

use imagestream_operator::admission::audit::Audit;
use imagestream_operator::api::cache::StreamCache;
use imagestream_operator::api::reason;
use imagestream_operator::api::scope::Scope;
use imagestream_operator::import::controller::{self, Settings};
use imagestream_operator::schedule::Scheduler;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use super::{cluster, common, enabled, fixtures, helm, plugin, resolver_for};

async fn warnings(events: &Api<Event>) -> Vec<Event> {
    let all = events.list(&ListParams::default()).await.unwrap();
    all.items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason::SHORT_NAME_NOT_RESOLVED))
        .collect()
}

#[tokio::test]
async fn a_workload_stored_without_lookup_is_warned_once_with_a_remedy_that_works() {
    if !enabled() {
        return;
    }
    let Some(kubectl) = helm::tool("kubectl") else {
        return;
    };
    common::install_crypto();
    let Some(reg) = common::Registry::start(None).await else {
        return;
    };
    let digest = reg.push_image("library/mysql", "latest", "db", false).await;
    let (client, ns, cleanup) = cluster("is-e2e-audit").await;
    let imports = tokio::spawn(controller::run(
        client.clone(),
        Arc::new(resolver_for(&reg)),
        Scheduler::new(Duration::from_secs(3600), 0),
        Settings::default(),
    ));
    let from = format!("--from={}/library/mysql", reg.addr);
    plugin(
        &client,
        &ns,
        &["import-image", "mysql:latest", &from, "--confirm"],
    )
    .await;
    plugin(&client, &ns, &["set", "image-lookup", "mysql"]).await;
    let pinned = format!("{}/library/mysql@{digest}", reg.addr);

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "db", "image": "mysql:latest"}]}}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    // The controller-manager makes its ReplicaSet and Pod: owned, so never flagged themselves.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    fixtures::until("the Deployment's pod", Duration::from_secs(60), || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        (!list.items.is_empty()).then_some(())
    })
    .await;

    let (cache, driver) =
        StreamCache::scoped(client.clone(), &Scope::from_list(std::slice::from_ref(&ns)));
    let driver = tokio::spawn(driver);
    cache.synced().await;
    let mut audit = Audit::new(client.clone(), cache.store());
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);

    assert_eq!(audit.pass().await, 1, "one Warning: the Deployment's");
    let told = warnings(&events).await;
    assert_eq!(told.len(), 1, "{told:#?}");
    let regarding = told[0].regarding.clone().unwrap_or_default();
    assert_eq!(
        (regarding.kind.as_deref(), regarding.name.as_deref()),
        (Some("Deployment"), Some("web"))
    );
    assert_eq!(told[0].type_.as_deref(), Some("Warning"));
    let note = told[0].note.clone().unwrap_or_default();
    println!("the Warning: {note}");

    assert_eq!(audit.pass().await, 0, "a standing finding is told once");
    assert_eq!(warnings(&events).await.len(), 1);

    // The remedy, exactly as the note words it.
    let command = note
        .split("to use the stream's image now: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no command in {note:?}"));
    let args: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(args.first(), Some(&"kubectl"), "{command}");
    helm::run(&kubectl, &args[1..], None).unwrap_or_else(|e| panic!("{command}: {e}"));
    let fixed = deployments.get("web").await.unwrap();
    assert_eq!(fixtures::image(&fixed).as_deref(), Some(pinned.as_str()));
    assert_eq!(audit.pass().await, 0, "nothing left to tell");

    imports.abort();
    driver.abort();
    drop(cleanup);
}
