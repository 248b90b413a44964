//! Kubelet credential provider plugins against a real htpasswd docker-registry on 127.0.0.1,
//! with the test plugin (`examples/credential-provider.rs`): imports without a pull secret,
//! one run per cache period, shared runs, precedence with pull secrets, token mode's isolation,
//! and every way a plugin can fail ending as a condition, not a crash.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{install_crypto, ProviderSetup, Registry};
use futures::future::{BoxFuture, FutureExt};
use imagestream_operator::api::ImportMode;
use imagestream_operator::api::ALLOW_CREDENTIAL_PROVIDER;
use imagestream_operator::registry::credentials::accounts::{Account, ServiceAccounts};
use imagestream_operator::registry::credentials::plugins::Providers;
use imagestream_operator::registry::credentials::Identity;
use imagestream_operator::registry::policy::RegistryPolicy;
use imagestream_operator::registry::resolver::{RegistryResolver, ResolverConfig};
use imagestream_operator::registry::{
    ImageRef, ImageResolver, ImportRequest, Keyring, RegistryError,
};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-from-the-cloud";

fn request(reference: &str) -> ImportRequest {
    ImportRequest {
        reference: ImageRef::parse(reference).unwrap(),
        insecure: true,
        import_mode: ImportMode::Legacy,
        prefer_arch: None,
        prefer_os: None,
        keyring: Keyring::default(),
        known: None,
    }
}

fn resolver_with(
    setup: &ProviderSetup,
    accounts: Option<Arc<dyn ServiceAccounts>>,
) -> RegistryResolver {
    resolver_timing_out(setup, accounts, Duration::from_secs(60))
}

fn resolver_timing_out(
    setup: &ProviderSetup,
    accounts: Option<Arc<dyn ServiceAccounts>>,
    timeout: Duration,
) -> RegistryResolver {
    let providers = Providers::load(&setup.config, &setup.bin_dir, timeout, accounts).unwrap();
    let mut config = ResolverConfig::with_policy(RegistryPolicy::default());
    config.providers = Some(Arc::new(providers));
    RegistryResolver::new(config).unwrap()
}

fn ok_env(key_type: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("TEST_PROVIDER_USER", USER),
        ("TEST_PROVIDER_PASSWORD", PASSWORD),
        ("TEST_PROVIDER_KEY_TYPE", key_type),
    ]
}

#[tokio::test]
async fn a_private_image_imports_through_the_plugin_once_per_cache_period() {
    install_crypto();
    let Some(reg) = Registry::start(Some((USER, PASSWORD))).await else {
        return;
    };
    let mut pushed = Vec::new();
    for repo in ["cloud/a", "cloud/b", "cloud/c", "cloud/d"] {
        pushed.push(reg.push_image(repo, "1", repo, false).await);
    }
    let setup = ProviderSetup::new("cloud-provider", &[&reg.addr], &ok_env("Registry"), None);
    let r = resolver_with(&setup, None);

    // 100 imports, half of them at once, of four repositories, none with a pull secret.
    let wave = (0..50).map(|i| {
        let (r, repo) = (
            r.clone(),
            ["cloud/a", "cloud/b", "cloud/c", "cloud/d"][i % 4],
        );
        let reference = format!("{}/{repo}:1", reg.addr);
        async move { r.resolve(request(&reference)).await }
    });
    for (i, got) in futures::future::join_all(wave)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(got.unwrap().digest, pushed[i % 4]);
    }
    for i in 0..50 {
        let repo = ["cloud/a", "cloud/b", "cloud/c", "cloud/d"][i % 4];
        let got = r.resolve(request(&format!("{}/{repo}:1", reg.addr))).await;
        assert_eq!(got.unwrap().digest, pushed[i % 4]);
    }
    let calls = setup.calls();
    assert_eq!(
        calls.len(),
        1,
        "one run per cache period (Registry key): {calls:?}"
    );
    assert!(calls[0]["image"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/cloud/", reg.addr)));
    assert!(
        calls[0]["namespace"].is_null(),
        "no token outside token mode"
    );
}

/// An `Image` answer is good for its image only: each image gets one run, and concurrent
/// imports of one image share it, even when the first wave did not yet know the key type.
#[tokio::test]
async fn image_keyed_answers_run_once_per_image() {
    install_crypto();
    let Some(reg) = Registry::start(Some((USER, PASSWORD))).await else {
        return;
    };
    reg.push_image("cloud/a", "1", "a", false).await;
    reg.push_image("cloud/b", "1", "b", false).await;
    let setup = ProviderSetup::new("per-image", &[&reg.addr], &ok_env("Image"), None);
    let r = resolver_with(&setup, None);
    let wave = (0..40).map(|i| {
        let r = r.clone();
        let reference = format!("{}/cloud/{}:1", reg.addr, ["a", "b"][i % 2]);
        async move { r.resolve(request(&reference)).await }
    });
    for got in futures::future::join_all(wave).await {
        got.unwrap();
    }
    let mut images: Vec<String> = setup
        .calls()
        .iter()
        .map(|c| c["image"].as_str().unwrap().to_string())
        .collect();
    images.sort();
    assert_eq!(
        images,
        [
            format!("{}/cloud/a", reg.addr),
            format!("{}/cloud/b", reg.addr)
        ]
    );
}

/// `cacheDuration: 0` means "do not cache" (the kubelet's rule): every import runs it.
#[tokio::test]
async fn a_zero_cache_duration_is_not_cached() {
    install_crypto();
    let Some(reg) = Registry::start(Some((USER, PASSWORD))).await else {
        return;
    };
    reg.push_image("cloud/a", "1", "a", false).await;
    let mut env = ok_env("Global");
    env.push(("TEST_PROVIDER_DURATION", "0s"));
    let setup = ProviderSetup::new("uncached", &[&reg.addr], &env, None);
    let r = resolver_with(&setup, None);
    for _ in 0..3 {
        r.resolve(request(&format!("{}/cloud/a:1", reg.addr)))
            .await
            .unwrap();
    }
    assert_eq!(setup.calls().len(), 3);
}

/// The kubelet's order: the namespace's pull secret first, then the providers'; a refused one
/// is followed by the next, so a stale secret does not hide a working provider.
#[tokio::test]
async fn pull_secrets_come_first_and_a_refused_one_falls_through_to_the_provider() {
    install_crypto();
    let Some(reg) = Registry::start(Some((USER, PASSWORD))).await else {
        return;
    };
    let pushed = reg.push_image("cloud/a", "1", "a", false).await;
    let reference = format!("{}/cloud/a:1", reg.addr);

    let setup = ProviderSetup::new("cloud", &[&reg.addr], &ok_env("Registry"), None);
    let mut stale = request(&reference);
    stale.keyring = common::keyring_for(&reg.addr, USER, "expired");
    assert_eq!(
        resolver_with(&setup, None)
            .resolve(stale)
            .await
            .unwrap()
            .digest,
        pushed
    );

    // A working pull secret serves even when the provider fails.
    let broken = ProviderSetup::new(
        "broken",
        &[&reg.addr],
        &[("TEST_PROVIDER_MODE", "crash")],
        None,
    );
    let mut good = request(&reference);
    good.keyring = common::keyring_for(&reg.addr, USER, PASSWORD);
    assert_eq!(
        resolver_with(&broken, None)
            .resolve(good)
            .await
            .unwrap()
            .digest,
        pushed
    );
}

/// Hangs, crashes, garbage and a wrong API version each end as a `CredentialProviderFailed`
/// error naming the provider — the tag's condition and Warning Event — never a crash, never a
/// stall beyond the timeout, and never the plugin's stdout (it may hold credentials).
#[tokio::test]
async fn failing_plugins_become_a_condition_not_a_crash() {
    install_crypto();
    let Some(reg) = Registry::start(Some((USER, PASSWORD))).await else {
        return;
    };
    reg.push_image("cloud/a", "1", "a", false).await;
    let reference = format!("{}/cloud/a:1", reg.addr);
    let cases = [
        ("hang", "did not answer within 1s and was stopped"),
        ("crash", "exited with exit status: 3; stderr: provider exploded: no cloud credentials found see the provider's log"),
        ("garbage", "printed something that is not a JSON CredentialProviderResponse (not shown: it may hold credentials)"),
        ("wrong-version", "answered with apiVersion \"credentialprovider.kubelet.k8s.io/v1alpha1\", but the config says credentialprovider.kubelet.k8s.io/v1"),
    ];
    for (mode, detail) in cases {
        let mut env = ok_env("Registry");
        env.push(("TEST_PROVIDER_MODE", mode));
        let setup = ProviderSetup::new("flaky-provider", &[&reg.addr], &env, None);
        let r = resolver_timing_out(&setup, None, Duration::from_secs(1));
        let started = Instant::now();
        let err = r.resolve(request(&reference)).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{mode}: {:?}",
            started.elapsed()
        );
        assert_eq!(
            err,
            RegistryError::CredentialProvider {
                reference: reference.clone(),
                provider: "flaky-provider".into(),
                detail: detail.into(),
            },
            "{mode}"
        );
        assert_eq!(err.reason(), "CredentialProviderFailed");
        assert!(err.is_transient(), "retried with backoff");
        let message = err.to_string();
        assert!(
            message.contains("\"flaky-provider\" failed") && !message.contains(PASSWORD),
            "{message}"
        );
    }
}

/// A failing provider does not block an image the registry serves anonymously.
#[tokio::test]
async fn a_failing_provider_does_not_hide_a_public_image() {
    install_crypto();
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let pushed = reg.push_image("public/a", "1", "a", false).await;
    let setup = ProviderSetup::new(
        "broken",
        &[&reg.addr],
        &[("TEST_PROVIDER_MODE", "crash")],
        None,
    );
    let got = resolver_with(&setup, None)
        .resolve(request(&format!("{}/public/a:1", reg.addr)))
        .await
        .unwrap();
    assert_eq!(got.digest, pushed);
}

/// Token mode with a stand-in API: each namespace's imports get a token of that namespace's
/// ServiceAccount, answers are cached per ServiceAccount, and a burst mints one token.
#[derive(Default)]
struct FakeAccounts {
    minted: Mutex<Vec<(String, String, String)>>,
}

impl ServiceAccounts for FakeAccounts {
    fn account<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Account>, String>> {
        async move {
            let mut annotations =
                BTreeMap::from([("cloud/role".to_string(), format!("role-{namespace}"))]);
            if name == "opted-in" {
                annotations.insert(ALLOW_CREDENTIAL_PROVIDER.into(), "true".into());
            }
            Ok((name != "missing").then(|| Account {
                uid: format!("uid-{namespace}-{name}"),
                annotations,
            }))
        }
        .boxed()
    }

    fn token<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        audience: &'a str,
        _seconds: i64,
    ) -> BoxFuture<'a, Result<(String, Duration), String>> {
        async move {
            self.minted.lock().unwrap().push((namespace.into(), name.into(), audience.into()));
            let claims = serde_json::json!({"aud": [audience], "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name}}});
            let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            Ok((format!("{}.{}.sig", b64(&serde_json::json!({"alg": "none"})), b64(&claims)), Duration::from_secs(600)))
        }
        .boxed()
    }
}

fn minted_for(accounts: &FakeAccounts, name: &str) -> bool {
    accounts
        .minted
        .lock()
        .unwrap()
        .iter()
        .any(|(_, n, _)| n == name)
}

const TOKEN_MODE: &str = "      serviceAccountTokenAudience: registry.example\n      requireServiceAccount: true\n      optionalServiceAccountAnnotationKeys: [cloud/role]\n      cacheType: ServiceAccount\n";

#[tokio::test]
async fn token_mode_keeps_each_namespace_to_its_own_identity() {
    install_crypto();
    let Some(reg) = Registry::start(Some((USER, PASSWORD))).await else {
        return;
    };
    reg.push_image("cloud/a", "1", "a", false).await;
    let mut env = ok_env("Registry");
    env.push(("TEST_PROVIDER_AUDIENCE", "registry.example"));
    let setup = ProviderSetup::new("tokens", &[&reg.addr], &env, Some(TOKEN_MODE));
    let accounts = Arc::new(FakeAccounts::default());
    let r = resolver_with(&setup, Some(accounts.clone() as Arc<dyn ServiceAccounts>));
    let reference = format!("{}/cloud/a:1", reg.addr);
    let as_ns = |ns: &str, sa: &str| {
        let mut req = request(&reference);
        req.keyring = Keyring::default().with_identity(Identity {
            namespace: ns.into(),
            service_account: sa.into(),
        });
        req
    };
    let burst = (0..20).map(|i| r.resolve(as_ns(["team-a", "team-b"][i % 2], "default")));
    for got in futures::future::join_all(burst).await {
        got.unwrap();
    }
    r.resolve(as_ns("team-a", "default")).await.unwrap();

    let mut calls: Vec<(String, String)> = setup
        .calls()
        .iter()
        .map(|c| {
            (
                c["namespace"].as_str().unwrap().into(),
                c["audiences"][0].as_str().unwrap().into(),
            )
        })
        .collect();
    calls.sort();
    assert_eq!(
        calls,
        [
            ("team-a".into(), "registry.example".into()),
            ("team-b".into(), "registry.example".into())
        ],
        "one run per namespace, each with its own token"
    );
    let mut minted = accounts.minted.lock().unwrap().clone();
    minted.sort();
    assert_eq!(
        minted.len(),
        2,
        "one token per ServiceAccount for the burst: {minted:?}"
    );

    // A stream may name another ServiceAccount of its namespace only when that account has
    // opted in: otherwise anyone who may edit a stream chooses whose token is minted.
    let err = r.resolve(as_ns("team-a", "builder")).await.unwrap_err();
    assert_eq!(err.reason(), "CredentialProviderFailed");
    assert!(err.to_string().contains("has not opted in"), "{err}");
    assert!(!minted_for(&accounts, "builder"), "no token minted for it");
    r.resolve(as_ns("team-a", "opted-in")).await.unwrap();
    assert!(minted_for(&accounts, "opted-in"));

    // A ServiceAccount that does not exist is the tag's condition, naming what to do.
    let err = r.resolve(as_ns("team-c", "missing")).await.unwrap_err();
    assert_eq!(err.reason(), "CredentialProviderFailed");
    assert!(
        err.to_string()
            .contains("the ServiceAccount team-c/missing does not exist"),
        "{err}"
    );
}
