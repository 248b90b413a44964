//! The real resolver against a real `docker-registry` on 127.0.0.1.

mod common;

use base64::Engine;
use common::{install_crypto, Registry};
use imagestream_operator::api::ImportMode;
use imagestream_operator::registry::oci::{OciResolver, ResolverConfig};
use imagestream_operator::registry::{ImageRef, ImageResolver, ImportRequest, Keyring};
use k8s_openapi::api::core::v1::Secret;

fn request(reference: &str, insecure: bool, mode: ImportMode) -> ImportRequest {
    ImportRequest {
        reference: ImageRef::parse(reference).unwrap(),
        insecure,
        import_mode: mode,
        prefer_arch: None,
        prefer_os: None,
        keyring: Keyring::default(),
    }
}

fn resolver() -> OciResolver {
    OciResolver::new(ResolverConfig::default())
}

#[tokio::test]
async fn anonymous_tag_resolves_to_the_pushed_digest_in_both_media_types() {
    install_crypto();
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let docker = reg.push_image("team/app", "v1", "a", false).await;
    let oci = reg.push_image("team/app", "v2", "b", true).await;
    let r = resolver();
    for (tag, want) in [("v1", &docker), ("v2", &oci)] {
        let got = r
            .resolve(request(
                &format!("{}/team/app:{tag}", reg.addr),
                true,
                ImportMode::Legacy,
            ))
            .await
            .unwrap();
        assert_eq!(&got.digest, want);
        assert_eq!(
            got.docker_image_reference,
            format!("{}/team/app@{want}", reg.addr)
        );
    }
}

#[tokio::test]
async fn plain_http_registry_needs_the_insecure_flag() {
    install_crypto();
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    reg.push_image("app", "1", "a", false).await;
    let err = resolver()
        .resolve(request(
            &format!("{}/app:1", reg.addr),
            false,
            ImportMode::Legacy,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "BadRequest", "{err}");
    assert!(
        err.to_string().contains("requires the insecure flag"),
        "{err}"
    );
    let insecure_registry = OciResolver::new(ResolverConfig {
        insecure_registries: vec![reg.addr.clone()],
        ..Default::default()
    });
    assert!(insecure_registry
        .resolve(request(
            &format!("{}/app:1", reg.addr),
            false,
            ImportMode::Legacy
        ))
        .await
        .is_ok());
}

#[tokio::test]
async fn missing_tag_and_missing_repository_are_not_found() {
    install_crypto();
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    reg.push_image("app", "1", "a", false).await;
    let r = resolver();
    for missing in ["app:2", "nothing/here:1"] {
        let err = r
            .resolve(request(
                &format!("{}/{missing}", reg.addr),
                true,
                ImportMode::Legacy,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "NotFound", "{missing}: {err}");
        assert!(err.to_string().contains(missing), "{err}");
    }
}

#[tokio::test]
async fn manifest_lists_in_legacy_and_preserve_original_modes() {
    install_crypto();
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    for oci in [false, true] {
        let tag = if oci { "oci" } else { "docker" };
        let (list, amd, arm) = reg.push_list("multi", tag, oci).await;
        let r = OciResolver::new(ResolverConfig {
            default_arch: "arm64".into(),
            ..Default::default()
        });
        let reference = format!("{}/multi:{tag}", reg.addr);
        let legacy = r
            .resolve(request(&reference, true, ImportMode::Legacy))
            .await
            .unwrap();
        assert_eq!(
            legacy.digest, arm,
            "the operator's default platform wins without a preference"
        );
        let mut preferred = request(&reference, true, ImportMode::Legacy);
        preferred.prefer_arch = Some("amd64".into());
        assert_eq!(r.resolve(preferred).await.unwrap().digest, amd);
        let whole = r
            .resolve(request(&reference, true, ImportMode::PreserveOriginal))
            .await
            .unwrap();
        assert_eq!(whole.digest, list);
        let archs: Vec<_> = whole
            .manifests
            .iter()
            .map(|m| (m.architecture.as_str(), m.digest.as_str()))
            .collect();
        assert_eq!(archs, [("amd64", amd.as_str()), ("arm64", arm.as_str())]);
    }
}

#[tokio::test]
async fn basic_auth_with_a_dockerconfigjson_secret() {
    install_crypto();
    let Some(reg) = Registry::start(Some(("alice", "s3cret"))).await else {
        return;
    };
    let pushed = reg.push_image("private/app", "1", "p", false).await;
    let reference = format!("{}/private/app:1", reg.addr);
    let err = resolver()
        .resolve(request(&reference, true, ImportMode::Legacy))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "Unauthorized", "{err}");
    assert!(err.to_string().contains("no pull secret"), "{err}");

    let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    let config = serde_json::json!({"auths": {reg.addr.clone(): {"auth": auth}}}).to_string();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "pull", "namespace": "demo"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)},
    }))
    .unwrap();
    let (keyring, skipped) = Keyring::from_secrets([&secret]);
    assert!(skipped.is_empty());
    let mut req = request(&reference, true, ImportMode::Legacy);
    req.keyring = keyring;
    assert_eq!(resolver().resolve(req).await.unwrap().digest, pushed);
}
