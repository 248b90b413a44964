//! The resolver against registries a tenant runs to attack the operator or other tenants: real
//! sockets on 127.0.0.x (a real `docker-registry` where the victim's side matters, small fakes
//! where the attack is in the answer). Every address contacted or refused is on loopback.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine;
use common::{install_crypto, read_head, respond, Registry};
use imagestream_operator::api::ImportMode;
use imagestream_operator::registry::policy::RegistryPolicy;
use imagestream_operator::registry::resolver::{RegistryResolver, ResolverConfig};
use imagestream_operator::registry::{ImageRef, ImageResolver, ImportRequest, Keyring};
use k8s_openapi::api::core::v1::Secret;

fn request(reference: &str, keyring: Keyring) -> ImportRequest {
    ImportRequest {
        reference: ImageRef::parse(reference).unwrap(),
        insecure: true,
        import_mode: ImportMode::Legacy,
        prefer_arch: None,
        prefer_os: None,
        keyring,
        known: None,
    }
}

fn keyring_for(registry: &str, user: &str, password: &str) -> Keyring {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = serde_json::json!({"auths": {registry: {"auth": auth}}}).to_string();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "pull", "namespace": "team-a"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)},
    }))
    .unwrap();
    Keyring::from_secrets([&secret]).0
}

fn resolver(policy: RegistryPolicy) -> RegistryResolver {
    RegistryResolver::new(ResolverConfig::with_policy(policy)).unwrap()
}

/// A fake registry: every connection's request goes to `answer`; returns its address and a
/// count of the requests it received.
fn fake<F>(answer: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(&common::RequestHead) -> (String, Vec<(&'static str, String)>, Vec<u8>)
        + Send
        + Sync
        + 'static,
{
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let answer = Arc::new(answer);
    let addr = common::spawn_server(move |mut stream| {
        let answer = answer.clone();
        let seen = seen.clone();
        async move {
            let Some(head) = read_head(&mut stream).await else {
                return;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            let (status, headers, body) = answer(&head);
            respond(&mut stream, &status, &headers, &body).await;
        }
    });
    (addr, count)
}

/// Namespace A imports a private image with its pull secret; namespace B, with no secret,
/// points a stream at a registry that answers HEAD with A's digest and nothing else. Before,
/// the caches keyed by digest alone handed B A's image config, env (an API key) included.
#[tokio::test]
async fn a_head_with_another_tenants_digest_reveals_nothing() {
    install_crypto();
    let Some(private) = Registry::start(Some(("alice", "s3cret"))).await else {
        return;
    };
    let digest = private
        .push_image("team-a/app", "v1", "API_KEY=hunter2", false)
        .await;
    let r = resolver(RegistryPolicy::default());
    let a = r
        .resolve(request(
            &format!("{}/team-a/app:v1", private.addr),
            keyring_for(&private.addr, "alice", "s3cret"),
        ))
        .await
        .unwrap();
    let env = a.details.as_ref().unwrap().env.clone().unwrap_or_default();
    assert!(
        env.iter().any(|e| e.contains("hunter2")),
        "the victim's own import: {env:?}"
    );

    let answer_digest = digest.clone();
    let (liar, _) = fake(move |head| match head.method.as_str() {
        "HEAD" => (
            "200 OK".into(),
            vec![
                ("Docker-Content-Digest", answer_digest.clone()),
                (
                    "Content-Type",
                    "application/vnd.docker.distribution.manifest.v2+json".into(),
                ),
            ],
            Vec::new(),
        ),
        _ => (
            "404 Not Found".into(),
            vec![],
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#.to_vec(),
        ),
    });
    let b = r
        .resolve(request(
            &format!("{liar}/team-b/app:v1"),
            Keyring::default(),
        ))
        .await;
    // The liar's registry is asked for the manifest itself, and has none to give.
    match b {
        Err(e) => assert!(!e.to_string().contains("hunter2"), "{e}"),
        Ok(got) => panic!("namespace B imported {got:?} from a HEAD alone"),
    }
    // Nor does the same registry and repository without A's credential reuse A's content.
    let anonymous = r
        .resolve(request(
            &format!("{}/team-a/app:v1", private.addr),
            Keyring::default(),
        ))
        .await;
    assert!(anonymous.is_err(), "{anonymous:?}");
}
