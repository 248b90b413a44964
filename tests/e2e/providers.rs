//! Kubelet credential providers in service-account-token mode against the real API server: the
//! operator mints a token of a ServiceAccount of each stream's own namespace (TokenRequest),
//! the test plugin reads the token's claims (audience, namespace, ServiceAccount) and refuses
//! a token for another audience; two namespaces importing the same private image each get
//! their own token, never the other's.

use std::sync::Arc;
use std::time::Duration;

use imagestream_operator::api::{ImageStream, CREDENTIAL_SERVICE_ACCOUNT};
use imagestream_operator::import::controller::{self, Settings};
use imagestream_operator::registry::credentials::accounts::{KubeServiceAccounts, ServiceAccounts};
use imagestream_operator::registry::credentials::plugins::Providers;
use imagestream_operator::registry::policy::RegistryPolicy;
use imagestream_operator::registry::resolver::{RegistryResolver, ResolverConfig};
use imagestream_operator::schedule::Scheduler;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::json;

use super::{cluster, common, enabled, wait_for};

const AUDIENCE: &str = "imagestream-e2e.example";

#[tokio::test]
async fn token_mode_gives_each_namespace_its_own_service_account_token() {
    if !enabled() {
        return;
    }
    common::install_crypto();
    let Some(reg) = common::Registry::start(Some(("tenant", "cloud-issued"))).await else {
        return;
    };
    let pushed = reg.push_image("tenant/app", "1", "t", false).await;
    let (client, ns_a, mut cleanup) = cluster("is-cred").await;
    let ns_b = format!("{ns_a}-b");
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns_b}})).unwrap(),
        )
        .await
        .unwrap();
    cleanup.namespace(&ns_b);
    // Namespace A names its own ServiceAccount; B gets `default` (made by the controller manager).
    Api::<ServiceAccount>::namespaced(client.clone(), &ns_a)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "importer", "annotations": {
                imagestream_operator::api::ALLOW_CREDENTIAL_PROVIDER: "true"}}}))
            .unwrap(),
        )
        .await
        .unwrap();

    let setup = common::ProviderSetup::new(
        "cloud-provider",
        &[&reg.addr],
        &[
            ("TEST_PROVIDER_USER", "tenant"),
            ("TEST_PROVIDER_PASSWORD", "cloud-issued"),
            ("TEST_PROVIDER_AUDIENCE", AUDIENCE),
        ],
        Some(&format!(
            "      serviceAccountTokenAudience: {AUDIENCE}\n      requireServiceAccount: true\n      cacheType: ServiceAccount\n"
        )),
    );
    let providers = Providers::load(
        &setup.config,
        &setup.bin_dir,
        Duration::from_secs(30),
        Some(Arc::new(KubeServiceAccounts::new(client.clone())) as Arc<dyn ServiceAccounts>),
    )
    .unwrap();
    let mut config = ResolverConfig::with_policy(RegistryPolicy {
        insecure: vec![reg.addr.clone()],
        ..Default::default()
    });
    config.providers = Some(Arc::new(providers));
    let ctrl = tokio::spawn(controller::run(
        client.clone(),
        Arc::new(RegistryResolver::new(config).unwrap()),
        Scheduler::new(Duration::from_secs(2), 0),
        Settings::default(),
    ));

    // The same private image in both namespaces, no pull secret anywhere.
    for (ns, account) in [(&ns_a, Some("importer")), (&ns_b, None)] {
        let annotations = account
            .map(|a| json!({ CREDENTIAL_SERVICE_ACCOUNT: a }))
            .unwrap_or(json!({}));
        let stream: ImageStream = serde_json::from_value(json!({
            "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
            "metadata": {"name": "app", "annotations": annotations},
            "spec": {"tags": [{"name": "1", "from": {"kind": "DockerImage", "name": format!("{}/tenant/app:1", reg.addr)}}]}
        }))
        .unwrap();
        Api::<ImageStream>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &stream)
            .await
            .unwrap();
    }
    for ns in [&ns_a, &ns_b] {
        let streams: Api<ImageStream> = Api::namespaced(client.clone(), ns);
        let imported = wait_for(&streams, "app", "the private image imported", |s| {
            s.status
                .as_ref()
                .and_then(|st| st.tags.first())
                .is_some_and(|t| !t.items.is_empty())
        })
        .await;
        let tag = &imported.status.unwrap().tags[0];
        assert_eq!(tag.items[0].image, pushed, "{ns}");
    }
    ctrl.abort();

    let mut seen: Vec<(String, String, String)> = setup
        .calls()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (
                s("namespace"),
                s("serviceAccount"),
                c["audiences"][0].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    seen.sort();
    let mut want = vec![
        (ns_a.clone(), "importer".to_string(), AUDIENCE.to_string()),
        (ns_b.clone(), "default".to_string(), AUDIENCE.to_string()),
    ];
    want.sort();
    assert_eq!(
        seen, want,
        "one run per namespace, each with its own namespace's token"
    );
}
