//! The real resolver against a real `docker-registry` on 127.0.0.1.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{install_crypto, keyring_for, Fault, FaultProxy, Registry, TokenServer};
use imagestream_operator::api::ImportMode;
use imagestream_operator::registry::metrics::RequestLabels;
use imagestream_operator::registry::policy::RegistryPolicy;
use imagestream_operator::registry::resolver::{RegistryResolver, ResolverConfig};
use imagestream_operator::registry::{
    collect_tags, ImageRef, ImageResolver, ImportRequest, Keyring, KnownImage, ListRequest, Listed,
    RegistryError, TagPage,
};

fn request(reference: &str, insecure: bool, mode: ImportMode) -> ImportRequest {
    ImportRequest {
        reference: ImageRef::parse(reference).unwrap(),
        insecure,
        import_mode: mode,
        prefer_arch: None,
        prefer_os: None,
        keyring: Keyring::default(),
        known: None,
    }
}

fn resolver() -> RegistryResolver {
    RegistryResolver::new(ResolverConfig::default()).unwrap()
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
    let insecure_registry = RegistryResolver::new(ResolverConfig::with_policy(RegistryPolicy {
        insecure: vec![reg.addr.clone()],
        ..Default::default()
    }))
    .unwrap();
    assert!(insecure_registry
        .resolve(request(
            &format!("{}/app:1", reg.addr),
            false,
            ImportMode::Legacy
        ))
        .await
        .is_ok());
    // The failed HTTPS attempt before the fallback is counted as what it is, not as an error.
    let count = |method: &str, outcome: &str| {
        insecure_registry
            .metrics()
            .requests
            .get_or_create(&RequestLabels {
                registry: reg.addr.clone(),
                method: method.into(),
                outcome: outcome.into(),
            })
            .get()
    };
    assert_eq!(count("HEAD", "https_fallback"), 1);
    assert_eq!(count("HEAD", "error"), 0);
    assert_eq!(count("HEAD", "200"), 1);
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
        let r = RegistryResolver::new(ResolverConfig {
            default_arch: "arm64".into(),
            ..Default::default()
        })
        .unwrap();
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
        let details = whole.details.unwrap();
        let archs: Vec<_> = details
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

    let mut req = request(&reference, true, ImportMode::Legacy);
    req.keyring = keyring_for(&reg.addr, "alice", "s3cret");
    assert_eq!(resolver().resolve(req).await.unwrap().digest, pushed);

    let mut wrong = request(&reference, true, ImportMode::Legacy);
    wrong.keyring = keyring_for(&reg.addr, "alice", "wrong");
    let err = resolver().resolve(wrong).await.unwrap_err();
    assert_eq!(
        err,
        RegistryError::Unauthorized {
            reference: reference.clone(),
            had_credentials: true
        }
    );
}

#[tokio::test]
async fn image_metadata_comes_from_the_config_blob_once_per_digest() {
    install_crypto();
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let pushed = reg.push_image("meta/app", "1", "m", true).await;
    let r = resolver();
    let reference = format!("{}/meta/app:1", reg.addr);
    let got = r
        .resolve(request(&reference, true, ImportMode::Legacy))
        .await
        .unwrap();
    let details = got.details.unwrap();
    assert_eq!(details.image, pushed);
    assert_eq!(details.architecture.as_deref(), Some("amd64"));
    assert_eq!(details.os.as_deref(), Some("linux"));
    assert_eq!(details.env, Some(vec!["MARKER=m".to_string()]));
    assert_eq!(details.layers.len(), 1);
    assert_eq!(details.size, Some(details.layers[0].size));
    let first = r.metrics().total_requests();
    // A re-check of an unchanged tag costs exactly one HEAD.
    r.resolve(request(&reference, true, ImportMode::Legacy))
        .await
        .unwrap();
    assert_eq!(r.metrics().total_requests() - first, 1);
}

#[tokio::test]
async fn bearer_tokens_from_a_real_token_flow_are_cached_per_scope() {
    install_crypto();
    let tokens = TokenServer::start();
    let Some(reg) = Registry::start_with_tokens(&tokens).await else {
        return;
    };
    let public = reg.push_image("public/app", "1", "pub", false).await;
    let private = reg.push_image("private/app", "1", "priv", false).await;
    let r = resolver();
    let before = tokens.requests.load(Ordering::SeqCst);

    // Anonymous: the token server grants pull on public/* only.
    let got = r
        .resolve(request(
            &format!("{}/public/app:1", reg.addr),
            true,
            ImportMode::Legacy,
        ))
        .await
        .unwrap();
    assert_eq!(got.digest, public);
    let err = r
        .resolve(request(
            &format!("{}/private/app:1", reg.addr),
            true,
            ImportMode::Legacy,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "Unauthorized", "{err}");

    // With the secret: basic credentials are exchanged for a token.
    let mut req = request(
        &format!("{}/private/app:1", reg.addr),
        true,
        ImportMode::Legacy,
    );
    req.keyring = keyring_for(&reg.addr, "alice", "s3cret");
    assert_eq!(r.resolve(req.clone()).await.unwrap().digest, private);
    let issued = tokens.requests.load(Ordering::SeqCst) - before;

    // Cached until expiry: re-checks fetch no new token and cost one request each.
    let requests = r.metrics().total_requests();
    for _ in 0..3 {
        r.resolve(req.clone()).await.unwrap();
    }
    assert_eq!(tokens.requests.load(Ordering::SeqCst) - before, issued);
    assert_eq!(r.metrics().total_requests() - requests, 3);
}

#[tokio::test]
async fn tag_listing_follows_pagination() {
    install_crypto();
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let (bytes, mt) = reg
        .image_manifest("many", "x", "linux", "amd64", false)
        .await;
    let mut want: Vec<String> = (0..230).map(|i| format!("t{i:03}")).collect();
    for tag in &want {
        reg.push_manifest("many", tag, bytes.clone(), mt).await;
    }
    // Debian's distribution 2.8 ignores `n`; the proxy pages the real list as distribution 3
    // and Docker Hub do.
    let proxy = FaultProxy::start(&reg.addr);
    proxy.fail("/tags/list", Fault::Paginate);
    let r = resolver();
    r.resolve(request(
        &format!("{}/many:t000", proxy.addr),
        true,
        ImportMode::Legacy,
    ))
    .await
    .unwrap();
    let many = |max_tags, page_size| ListRequest {
        repository: ImageRef::parse(&format!("{}/many", proxy.addr)).unwrap(),
        insecure: true,
        keyring: Keyring::default(),
        max_tags,
        page_size,
    };
    let before = r.metrics().total_requests();
    let (mut got, complete) = collect_tags(&r, many(10_000, 100)).await.unwrap();
    got.sort();
    want.sort();
    assert_eq!((got, complete), (want.clone(), true));
    // 100 tags per page: three pages.
    assert_eq!(r.metrics().total_requests() - before, 3);

    // Pages reach the sink as they arrive, and the listing says how it ended.
    let pages = std::sync::Mutex::new(Vec::new());
    let sink = |page: TagPage| pages.lock().unwrap().push((page.attempt, page.tags.len()));
    let listed = r.list_tags(many(10_000, 100), &sink).await.unwrap();
    assert_eq!(
        listed,
        Listed {
            tags: 230,
            pages: 3,
            complete: true
        }
    );
    assert_eq!(*pages.lock().unwrap(), [(0, 100), (0, 100), (0, 30)]);

    // The cap makes the listing incomplete instead of silently short, and stops paging.
    let before = r.metrics().total_requests();
    let listed = r.list_tags(many(150, 100), &|_| {}).await.unwrap();
    assert_eq!(
        listed,
        Listed {
            tags: 150,
            pages: 2,
            complete: false
        }
    );
    assert_eq!(r.metrics().total_requests() - before, 2);
    let listed = r.list_tags(many(230, 100), &|_| {}).await.unwrap();
    assert!(
        listed.complete,
        "exactly the cap, and no next page: {listed:?}"
    );

    // A page that fails mid-listing fails the listing; what came before it is only a part.
    proxy.clear();
    proxy.fail("last=t099", Fault::Status(404, vec![], "{}".into()));
    proxy.fail("/tags/list", Fault::Paginate);
    let pages = std::sync::Mutex::new(0);
    let err = r
        .list_tags(many(10_000, 100), &|_| *pages.lock().unwrap() += 1)
        .await
        .unwrap_err();
    assert_eq!(
        (err.reason(), *pages.lock().unwrap()),
        ("NotFound", 1),
        "{err}"
    );

    let err = r
        .list_tags(
            ListRequest {
                repository: ImageRef::parse(&format!("{}/absent", reg.addr)).unwrap(),
                insecure: true,
                keyring: Keyring::default(),
                max_tags: 10,
                page_size: 100,
            },
            &|_| {},
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "NotFound", "{err}");
}

#[tokio::test]
async fn identical_concurrent_requests_share_one_flight() {
    install_crypto();
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    reg.push_image("shared/app", "1", "s", false).await;
    let r = resolver();
    let reference = format!("{}/shared/app:1", reg.addr);
    // Warm the transport choice and caches, then ask 20 times at once.
    r.resolve(request(&reference, true, ImportMode::Legacy))
        .await
        .unwrap();
    let before = r.metrics().total_requests();
    let all = futures::future::join_all(
        (0..20).map(|_| r.resolve(request(&reference, true, ImportMode::Legacy))),
    )
    .await;
    assert!(all.iter().all(|x| x.is_ok()));
    assert_eq!(r.metrics().total_requests() - before, 1);
}

/// Every fault gives its reason, promptly, without panicking or reading unbounded bodies.
#[tokio::test]
async fn faults_are_classified() {
    install_crypto();
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let proxy = FaultProxy::start(&reg.addr);
    reg.push_image("ok/app", "1", "o", false).await;
    let mut config = ResolverConfig::default();
    config.transport.timeout = Duration::from_secs(2);
    let r = RegistryResolver::new(config).unwrap();
    let at = |repo: &str| {
        request(
            &format!("{}/{repo}:1", proxy.addr),
            true,
            ImportMode::Legacy,
        )
    };
    assert!(r.resolve(at("ok/app")).await.is_ok(), "the proxy forwards");

    let cases: Vec<(&str, Fault, &str, &str)> = vec![
        (
            "e500",
            Fault::Status(500, vec![], "boom".into()),
            "Unreachable",
            "HTTP 500",
        ),
        (
            "e503",
            Fault::Status(503, vec![], String::new()),
            "Unreachable",
            "HTTP 503",
        ),
        ("reset", Fault::Reset, "Unreachable", ""),
        ("hang", Fault::Hang, "Unreachable", "timed out"),
        ("slow", Fault::SlowBody, "Unreachable", "timed out"),
        (
            "garbage",
            Fault::Garbage,
            "InternalError",
            "unreadable manifest",
        ),
        (
            "huge",
            Fault::Oversized(64 * 1024 * 1024),
            "Invalid",
            "4 MiB",
        ),
        (
            "forbidden",
            Fault::Status(
                403,
                vec![],
                r#"{"errors":[{"code":"DENIED","message":"no"}]}"#.into(),
            ),
            "Forbidden",
            "HTTP 403",
        ),
    ];
    for (repo, fault, reason, text) in cases {
        proxy.fail(&format!("/{repo}/"), fault);
        let started = std::time::Instant::now();
        let err = r.resolve(at(repo)).await.unwrap_err();
        assert_eq!(err.reason(), reason, "{repo}: {err}");
        assert!(err.to_string().contains(text), "{repo}: {err}");
        assert!(
            err.to_string().contains(repo),
            "{repo}: message names the reference: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{repo} took {:?}",
            started.elapsed()
        );
    }

    // Digest mismatch: the registry's content does not hash to the digest it claimed.
    reg.push_image("corrupt/app", "1", "c", false).await;
    proxy.fail("/corrupt/app/manifests/sha256", Fault::Corrupt);
    let err = r.resolve(at("corrupt/app")).await.unwrap_err();
    assert_eq!(err.reason(), "InternalError", "{err}");
    assert!(err.to_string().contains("content integrity error"), "{err}");

    // The same by tag: no digest from HEAD, so only the GET's Docker-Content-Digest can tell
    // that the body was damaged; the damaged manifest must not become an "image".
    let pushed = reg.push_image("corrupt/bytag", "1", "c", false).await;
    proxy.fail("/corrupt/bytag/manifests/1", Fault::CorruptUndigested);
    let err = r.resolve(at("corrupt/bytag")).await.unwrap_err();
    assert!(err.to_string().contains("content integrity error"), "{err}");
    assert!(
        err.to_string().contains(&pushed),
        "names the announced digest: {err}"
    );

    // HEAD names a digest the registry then does not serve: its inconsistency, retried, and
    // not a "check the tag name" NotFound.
    reg.push_image("vanish/app", "1", "v", false).await;
    proxy.fail("/vanish/app/manifests/1", Fault::SlowBody);
    let err = r.resolve(at("vanish/app")).await.unwrap_err();
    assert_eq!(err.reason(), "InternalError", "{err}");
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("answered HTTP 404 for it"),
        "{err}"
    );
}

#[tokio::test]
async fn rate_limits_surface_retry_after_and_pause_only_that_registry() {
    install_crypto();
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    reg.push_image("app", "1", "a", false).await;
    let limited = FaultProxy::start(&reg.addr);
    let healthy = FaultProxy::start(&reg.addr);
    limited.fail(
        "/manifests/",
        Fault::Status(
            429,
            vec![("Retry-After", "120".into())],
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#.into(),
        ),
    );
    let r = resolver();
    let at = |addr: &str| request(&format!("{addr}/app:1"), true, ImportMode::Legacy);
    let err = r.resolve(at(&limited.addr)).await.unwrap_err();
    assert_eq!(err.reason(), "RateLimited", "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    assert!(err.to_string().contains("retry after 120s"), "{err}");

    // Paused: the next request is answered locally, without touching the registry.
    limited.clear();
    let forwarded = limited.forwarded.load(Ordering::SeqCst);
    let before = r.metrics().total_requests();
    let err = r.resolve(at(&limited.addr)).await.unwrap_err();
    assert_eq!(err.reason(), "RateLimited", "{err}");
    assert!(err
        .retry_after()
        .is_some_and(|d| d > Duration::from_secs(100)));
    assert_eq!(r.metrics().total_requests(), before);
    assert_eq!(limited.forwarded.load(Ordering::SeqCst), forwarded);

    // Another registry is unaffected.
    assert!(r.resolve(at(&healthy.addr)).await.is_ok());
}

/// A short Retry-After is waited out: the request that got the 429 fails (its tag says so), but
/// requests made during the pause wait for it to pass and then succeed, sending nothing before.
#[tokio::test]
async fn a_short_pause_is_waited_out_instead_of_failing_every_queued_import() {
    install_crypto();
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    reg.push_image("app", "1", "a", false).await;
    let proxy = FaultProxy::start(&reg.addr);
    proxy.fail(
        "/manifests/",
        Fault::Status(429, vec![("Retry-After", "2".into())], String::new()),
    );
    let r = resolver();
    let at = || request(&format!("{}/app:1", proxy.addr), true, ImportMode::Legacy);
    let err = r.resolve(at()).await.unwrap_err();
    assert_eq!(err.reason(), "RateLimited", "{err}");
    let limited_at = std::time::Instant::now();
    proxy.clear();
    let seen = proxy.log.lock().unwrap().len();
    assert!(r.resolve(at()).await.is_ok());
    let log = proxy.log.lock().unwrap();
    let first_after = log[seen].at.duration_since(limited_at);
    assert!(
        first_after >= Duration::from_millis(1900),
        "the next request went out {first_after:?} after a 2 s Retry-After"
    );
}

/// Counts, not timings: a first import costs one HEAD per reference (plus the GETs of what is
/// new), and an unchanged re-check of more digests than any cache holds costs exactly one HEAD
/// per reference and no GET, counted at a proxy in front of the real registry.
#[tokio::test]
async fn unchanged_recheck_is_one_head_per_reference_whatever_the_caches_hold() {
    install_crypto();
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    const TAGS: usize = 30;
    for i in 0..TAGS {
        reg.push_image("many", &format!("t{i}"), &format!("image {i}"), false)
            .await;
    }
    let proxy = FaultProxy::start(&reg.addr);
    // Caches too small to hold anything: only the tag's known digest can save requests.
    let r = RegistryResolver::new(ResolverConfig {
        cache_bytes: 1,
        ..Default::default()
    })
    .unwrap();
    let reference = |i: usize| format!("{}/many:t{i}", proxy.addr);
    let mut known = Vec::new();
    for i in 0..TAGS {
        let image = r
            .resolve(request(&reference(i), true, ImportMode::Legacy))
            .await
            .unwrap();
        assert!(image.details.is_some());
        known.push(KnownImage {
            manifest: image.digest.clone(),
            image: image.digest.clone(),
            docker_image_reference: image.docker_image_reference.clone(),
        });
    }
    let first = proxy.methods();
    assert_eq!(first.get("HEAD"), Some(&TAGS), "first import: {first:?}");

    proxy.seen.lock().unwrap().clear();
    for _ in 0..3 {
        for (i, k) in known.iter().enumerate() {
            let mut req = request(&reference(i), true, ImportMode::Legacy);
            req.known = Some(k.clone());
            let again = r.resolve(req).await.unwrap();
            assert_eq!(again.digest, k.image);
            assert!(
                again.details.is_none(),
                "unchanged: status keeps its metadata"
            );
        }
    }
    let rechecks = proxy.methods();
    assert_eq!(
        rechecks,
        std::collections::BTreeMap::from([("HEAD".to_string(), 3 * TAGS)]),
        "three unchanged passes"
    );

    // A moved tag is fetched in full.
    let moved = reg
        .push_image("many", "t0", "image 0, rebuilt", false)
        .await;
    proxy.seen.lock().unwrap().clear();
    let mut req = request(&reference(0), true, ImportMode::Legacy);
    req.known = Some(known[0].clone());
    let fresh = r.resolve(req).await.unwrap();
    assert_eq!(fresh.digest, moved);
    assert!(fresh.details.is_some());
    assert_eq!(proxy.methods().get("HEAD"), Some(&1));
}

/// A Legacy import of a manifest list records the list's digest, and an unchanged list is then
/// recognised with one HEAD.
#[tokio::test]
async fn an_unchanged_manifest_list_is_one_head() {
    install_crypto();
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let (list, amd, _) = reg.push_list("multi", "latest", true).await;
    let proxy = FaultProxy::start(&reg.addr);
    let r = RegistryResolver::new(ResolverConfig {
        cache_bytes: 1,
        ..Default::default()
    })
    .unwrap();
    let reference = format!("{}/multi:latest", proxy.addr);
    let image = r
        .resolve(request(&reference, true, ImportMode::Legacy))
        .await
        .unwrap();
    assert_eq!(image.digest, amd);
    assert_eq!(image.manifest_list.as_deref(), Some(list.as_str()));
    proxy.seen.lock().unwrap().clear();
    let mut req = request(&reference, true, ImportMode::Legacy);
    req.known = Some(KnownImage {
        manifest: list.clone(),
        image: amd.clone(),
        docker_image_reference: image.docker_image_reference.clone(),
    });
    let again = r.resolve(req).await.unwrap();
    assert_eq!(
        (again.digest.as_str(), again.manifest_list.as_deref()),
        (amd.as_str(), Some(list.as_str()))
    );
    assert_eq!(
        proxy.methods(),
        std::collections::BTreeMap::from([("HEAD".to_string(), 1)])
    );
}
