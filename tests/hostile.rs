//! The resolver against registries a tenant runs to attack the operator or other tenants: real
//! sockets on 127.0.0.x (a real `docker-registry` where the victim's side matters, small fakes
//! where the attack is in the answer). Every address contacted or refused is on loopback.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{install_crypto, keyring_for, read_head, respond, Registry};
use imagestream_operator::api::ImportMode;
use imagestream_operator::registry::policy::RegistryPolicy;
use imagestream_operator::registry::resolver::{RegistryResolver, ResolverConfig};
use imagestream_operator::registry::{ImageRef, ImageResolver, ImportRequest, Keyring};

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

/// A listener on `ip` that counts the connections it accepts and answers none.
fn counting_listener(ip: &str) -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((_stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, count)
}

fn blocking(blocked: &[&str]) -> RegistryPolicy {
    RegistryPolicy {
        // Insecure, so the plain-HTTP fallback is tried too: it must be refused as well.
        insecure: vec!["127.0.0.0/8".into(), "localhost".into()],
        blocked: blocked.iter().map(|b| b.to_string()).collect(),
        ..Default::default()
    }
}

/// `--blocked-registries 127.0.0.2/32` let four of five spellings of that address through.
/// Every spelling, and a name that resolves to a blocked address, is now refused before any
/// connection: the listener behind them is never contacted.
#[tokio::test]
async fn no_spelling_or_name_reaches_a_blocked_address() {
    install_crypto();
    let (port, contacted) = counting_listener("127.0.0.2");
    let r = resolver(blocking(&["127.0.0.2/32"]));
    for host in [
        "127.0.0.2",
        "2130706434",
        "0x7f000002",
        "0177.0.0.2",
        "127.2",
        "[::ffff:127.0.0.2]",
    ] {
        // (IPv6 hosts are not image references; the realm test below covers them.)
        let reference = format!("{host}:{port}/app:1");
        let err = match ImageRef::parse(&reference) {
            Ok(_) => r.resolve(request(&reference, Keyring::default())).await,
            // A spelling the reference grammar refuses never reaches the network either.
            Err(_) => continue,
        }
        .unwrap_err();
        assert_eq!(err.reason(), "Forbidden", "{reference}: {err}");
    }
    let (local_port, local_contacted) = counting_listener("127.0.0.1");
    let r = resolver(blocking(&["127.0.0.0/8", "::1"]));
    let reference = format!("localhost:{local_port}/app:1");
    let err = r
        .resolve(request(&reference, Keyring::default()))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "Forbidden", "{err}");
    assert!(err.to_string().contains("refused addresses"), "{err}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(contacted.load(Ordering::SeqCst), 0);
    assert_eq!(local_contacted.load(Ordering::SeqCst), 0);
}

/// A registry that challenges with a token realm of the tenant's choosing.
fn challenging(realm: String) -> (String, Arc<AtomicUsize>) {
    fake(move |_| {
        (
            "401 Unauthorized".into(),
            vec![(
                "WWW-Authenticate",
                format!("Bearer realm=\"{realm}\",service=\"x\""),
            )],
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_vec(),
        )
    })
}

/// A token realm is a host like any other: a blocked address in any spelling is refused before
/// the connection, and an internal service's error body never reaches the tenant's condition.
#[tokio::test]
async fn token_realms_pass_the_address_policy_and_their_bodies_stay_inside() {
    install_crypto();
    let (port, contacted) = counting_listener("127.0.0.2");
    let r = resolver(blocking(&["127.0.0.2/32"]));
    for host in [
        "2130706434",
        "0x7f000002",
        "127.2",
        "[::ffff:127.0.0.2]",
        "[::ffff:7f00:2]",
    ] {
        let (registry, _) = challenging(format!("http://{host}:{port}/token"));
        let err = r
            .resolve(request(&format!("{registry}/app:1"), Keyring::default()))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "Forbidden", "{host}: {err}");
    }
    assert_eq!(contacted.load(Ordering::SeqCst), 0);

    let (internal, asked) = fake(|_| {
        (
            "500 Internal Server Error".into(),
            vec![],
            b"db_password=hunter2 internal stack trace".to_vec(),
        )
    });
    let (registry, _) = challenging(format!("http://{internal}/token"));
    let err = r
        .resolve(request(&format!("{registry}/app:1"), Keyring::default()))
        .await
        .unwrap_err();
    assert!(asked.load(Ordering::SeqCst) > 0, "the realm was asked");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(err.to_string().contains("HTTP 500"), "{err}");
}

/// A TLS registry on 127.0.0.1 with a certificate the resolver trusts, answering every request
/// with `answer(path)`; returns the resolver and the registry's address.
async fn tls_registry(
    answer: impl Fn(&str) -> axum::response::Response + Clone + Send + Sync + 'static,
) -> (RegistryResolver, String) {
    use imagestream_operator::admission::server::{generate, serve_router, Certificate};
    let cert = generate(&["127.0.0.1".to_string()]).unwrap();
    let Certificate::Generated { cert_pem, .. } = &cert else {
        unreachable!()
    };
    let mut config = ResolverConfig::default();
    config.transport.extra_roots =
        vec![reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()];
    let port = common::free_port();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let answer = answer.clone();
        async move { answer(req.uri().path()) }
    });
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    tokio::spawn(serve_router(addr, cert, app));
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    (RegistryResolver::new(config).unwrap(), addr.to_string())
}

fn reply(status: u16, headers: &[(&'static str, String)]) -> axum::response::Response {
    let mut r = axum::response::Response::new(axum::body::Body::empty());
    *r.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        r.headers_mut().insert(*k, v.parse().unwrap());
    }
    r
}

/// A TLS-verified registry whose challenge names an `http://` realm got the pull secret's
/// password as Basic over plain HTTP. The realm is now refused unless the registry is marked
/// insecure, and the plain-HTTP server never sees a request.
#[tokio::test]
async fn credentials_never_go_to_a_plain_http_realm_of_a_verified_registry() {
    install_crypto();
    let (cleartext, asked) = fake(|_| ("200 OK".into(), vec![], br#"{"token":"t"}"#.to_vec()));
    let realm = format!("http://{cleartext}/token");
    let (r, registry) = tls_registry(move |_| {
        reply(
            401,
            &[("www-authenticate", format!("Bearer realm=\"{realm}\""))],
        )
    })
    .await;
    let mut req = request(
        &format!("{registry}/app:1"),
        keyring_for(&registry, "alice", "s3cret"),
    );
    req.insecure = false;
    let err = r.resolve(req).await.unwrap_err();
    assert_eq!(err.reason(), "Forbidden", "{err}");
    assert!(err.to_string().contains("not HTTPS"), "{err}");
    assert_eq!(asked.load(Ordering::SeqCst), 0);
}

/// Nor does a verified registry's redirect to plain HTTP get followed.
#[tokio::test]
async fn a_verified_registry_cannot_redirect_to_plain_http() {
    install_crypto();
    let (cleartext, asked) = fake(|_| ("200 OK".into(), vec![], b"{}".to_vec()));
    let target = format!("http://{cleartext}/elsewhere");
    let (r, registry) = tls_registry(move |_| reply(307, &[("location", target.clone())])).await;
    let mut req = request(&format!("{registry}/app:1"), Keyring::default());
    req.insecure = false;
    let err = r.resolve(req).await.unwrap_err();
    assert!(err.to_string().contains("plain HTTP"), "{err}");
    assert_eq!(asked.load(Ordering::SeqCst), 0);
}

fn tenant(namespace: &str) -> Keyring {
    Keyring::default().with_identity(imagestream_operator::registry::credentials::Identity {
        namespace: namespace.into(),
        service_account: "default".into(),
    })
}

/// A registry that announces a 3.9 MiB manifest and sends it slowly.
fn slow_manifest() -> String {
    common::spawn_server(|mut stream| async move {
        use tokio::io::AsyncWriteExt;
        let Some(head) = read_head(&mut stream).await else {
            return;
        };
        if head.method == "HEAD" {
            // No digest: the operator must GET the manifest to learn it.
            respond(&mut stream, "200 OK", &[], b"").await;
            return;
        }
        let len = 3_900_000;
        let _ = stream
            .write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {len}\r\n\r\n").as_bytes())
            .await;
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..len / chunk.len() {
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        }
    })
}

/// One namespace's stream with 100 tags on 100 hosts, each serving a 3.9 MiB manifest slowly,
/// took the operator from 21 to 454 MiB. Now that namespace holds at most its share of the
/// response buffer (16 MiB), the transport forgets idle hosts, and another namespace's import
/// from a real registry goes through meanwhile.
#[tokio::test]
async fn slow_huge_hosts_hold_one_share_of_memory_and_starve_no_one() {
    install_crypto();
    let Some(honest) = Registry::start(None).await else {
        return;
    };
    let digest = honest.push_image("team-b/app", "v1", "b", true).await;
    let mut config = ResolverConfig::default();
    config.transport.timeout = std::time::Duration::from_secs(2);
    config.transport.policy = Arc::new(RegistryPolicy {
        insecure: vec!["127.0.0.1".into()],
        ..Default::default()
    });
    let r = RegistryResolver::new(config).unwrap();
    // 48 hosts are three times the namespace's request share: enough to show the bound
    // without making the test wait for a hundred time-outs.
    let attacks: Vec<_> = (0..48)
        .map(|i| {
            let host = slow_manifest();
            let r = r.clone();
            async move {
                let req = request(&format!("{host}/evil/app:{i}"), tenant("team-a"));
                r.resolve(req).await
            }
        })
        .collect();
    let attack = tokio::spawn(futures::future::join_all(attacks));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let b = r
        .resolve(request(
            &format!("{}/team-b/app:v1", honest.addr),
            tenant("team-b"),
        ))
        .await
        .unwrap();
    assert_eq!(b.digest, digest);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "team-b waited {:?} behind team-a's registries",
        started.elapsed()
    );
    let results = attack.await.unwrap();
    assert!(results.iter().all(|r| r.is_err()));
    let peak = r.peak_buffered_bytes();
    assert!(peak <= 16 * 1024 * 1024, "peak buffered {peak} bytes");
    assert!(peak >= 3_900_000, "the attack was buffered at all: {peak}");
}

/// A registry that accepts `Bearer good` and otherwise challenges with the realm `realm_for`
/// names for the request's path (read at each request, so a test can move it).
fn token_registry(
    realm_for: impl Fn(&str) -> String + Send + Sync + 'static,
    digest: &'static str,
) -> (String, Arc<AtomicUsize>) {
    fake(move |head| match head.header("authorization") {
        Some("Bearer good") => (
            "200 OK".into(),
            vec![
                ("Docker-Content-Digest", digest.to_string()),
                (
                    "Content-Type",
                    "application/vnd.oci.image.manifest.v1+json".into(),
                ),
            ],
            Vec::new(),
        ),
        _ => (
            "401 Unauthorized".into(),
            vec![(
                "WWW-Authenticate",
                format!("Bearer realm=\"{}\"", realm_for(&head.path)),
            )],
            Vec::new(),
        ),
    })
}

/// An import that the registry confirms unchanged with one HEAD (no manifest needed).
fn recheck(reference: &str, digest: &str, namespace: &str) -> ImportRequest {
    let mut req = request(reference, tenant(namespace));
    req.known = Some(imagestream_operator::registry::KnownImage {
        manifest: digest.into(),
        image: digest.into(),
        docker_image_reference: format!("{reference}@{digest}"),
    });
    req
}

/// One repository's bad realm was cached for the whole host, so other namespaces' imports from
/// the same registry failed before the registry was asked. Challenges are now per repository,
/// and a cached realm that fails is forgotten: the next request asks the registry afresh.
#[tokio::test]
async fn a_failing_realm_poisons_neither_the_host_nor_the_future() {
    install_crypto();
    const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
    let (good, _) = fake(|_| ("200 OK".into(), vec![], br#"{"token":"good"}"#.to_vec()));
    let (bad, _) = fake(|_| ("500 Internal Server Error".into(), vec![], Vec::new()));
    let (good, bad) = (
        format!("http://{good}/token"),
        format!("http://{bad}/token"),
    );
    let moved = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let realm_moved = moved.clone();
    let (registry, _) = token_registry(
        move |path| match path.contains("/tenant-a/") || realm_moved.load(Ordering::SeqCst) {
            true => bad.clone(),
            false => good.clone(),
        },
        DIGEST,
    );
    let r = resolver(RegistryPolicy {
        insecure: vec!["127.0.0.1".into()],
        ..Default::default()
    });
    let a = format!("{registry}/tenant-a/app:1");
    let b = format!("{registry}/tenant-b/app:1");
    assert!(r.resolve(recheck(&a, DIGEST, "a")).await.is_err());
    let got = r.resolve(recheck(&b, DIGEST, "b")).await.unwrap();
    assert_eq!(
        got.digest, DIGEST,
        "tenant-b's import is not failed by tenant-a's realm"
    );

    // tenant-d's realm is down at first import, then the registry moves it to one that
    // works: the next import asks the registry again instead of failing at the cached realm.
    moved.store(true, Ordering::SeqCst);
    let d = format!("{registry}/tenant-d/app:1");
    assert!(r.resolve(recheck(&d, DIGEST, "d")).await.is_err());
    moved.store(false, Ordering::SeqCst);
    let got = r.resolve(recheck(&d, DIGEST, "d")).await.unwrap();
    assert_eq!(got.digest, DIGEST);
}

/// Registry text with newlines, ESC/OSC sequences and a megabyte of words reached conditions,
/// Events and terminals raw. The error the controller writes is one printable line of at most
/// 1 KiB.
#[tokio::test]
async fn registry_text_arrives_as_one_printable_bounded_line() {
    install_crypto();
    let (registry, _) = fake(|head| {
        if head.method == "HEAD" {
            // No digest: the manifest GET follows, and its error has a body.
            return ("200 OK".into(), vec![], Vec::new());
        }
        let message = format!(
            "denied\n2026-12-02T00:00:00Z INFO forged line\u{1b}]0;owned\u{7}\u{1b}[2J{}",
            "x".repeat(60_000)
        );
        let body =
            serde_json::json!({"errors": [{"code": "DENIED\u{1b}[31m", "message": message}]});
        (
            "403 Forbidden".into(),
            vec![],
            body.to_string().into_bytes(),
        )
    });
    let r = resolver(RegistryPolicy {
        insecure: vec!["127.0.0.1".into()],
        ..Default::default()
    });
    let err = r
        .resolve(request(&format!("{registry}/app:1"), Keyring::default()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("denied 2026-12-02T00:00:00Z INFO forged line]0;owned[2J"),
        "{err}"
    );
    assert!(!err.chars().any(char::is_control), "{err:?}");
    assert!(err.len() < 1400, "{} bytes", err.len());
}
