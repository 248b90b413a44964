//! The push-notification receiver: authentication, content types, size cap, mapping and
//! coalescing; then a real docker-registry sending its notifications to it on 127.0.0.1.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use imagestream_operator::api::index::Index;
use imagestream_operator::api::{ImageStream, Notified};
use imagestream_operator::notify::{router, NotifyConfig, Receiver, Requester, TargetIndex};

const TOKEN: &str = "s3cr3t-token";
const HMAC: &str = "gh-secret";

/// (namespace, stream, tags, source) of one requested import.
type Requested = (String, String, Vec<String>, String);

#[derive(Default)]
struct Recorder {
    requests: Mutex<Vec<Requested>>,
}

impl Requester for Recorder {
    fn request(
        &self,
        namespace: String,
        stream: String,
        tags: Vec<String>,
        notified: Notified,
    ) -> BoxFuture<'_, Result<(), String>> {
        self.requests
            .lock()
            .unwrap()
            .push((namespace, stream, tags, notified.source));
        Box::pin(async { Ok(()) })
    }
}

/// Serves the receiver over plain HTTP on 127.0.0.1 (production mounts it on the webhook's TLS).
async fn serve(streams: Vec<ImageStream>) -> (String, Arc<Recorder>) {
    let mut index = TargetIndex::default();
    for s in &streams {
        index.apply(s);
    }
    let recorder = Arc::new(Recorder::default());
    let config = NotifyConfig {
        token: Some(TOKEN.into()),
        hmac_secret: Some(HMAC.into()),
        registry_aliases: HashMap::from([(
            "10.0.0.5:5000".to_string(),
            "registry.example.com".to_string(),
        )]),
        ..Default::default()
    };
    let app = router(Receiver::new(
        config,
        Arc::new(parking_lot::Mutex::new(index)),
        recorder.clone(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, recorder)
}

fn world() -> Vec<ImageStream> {
    vec![
        ImageStream::test("web")
            .in_namespace("shop")
            .tag("latest", "quay.io/mynamespace/repository")
            .tag("v1", "quay.io/mynamespace/repository:v1")
            .tag("pinned", "quay.io/mynamespace/repository@sha256:abc"),
        ImageStream::test("hub")
            .in_namespace("ops")
            .tag("latest", "svendowideit/testhook"),
        ImageStream::test("internal")
            .in_namespace("ops")
            .tag("latest", "registry.example.com/team/app"),
        ImageStream::test("gh")
            .in_namespace("ops")
            .tag("v1.2.0", "ghcr.io/octo-org/app:v1.2.0"),
    ]
}

const QUAY: &str = r#"{"repository":"mynamespace/repository","namespace":"mynamespace","name":"repository","docker_url":"quay.io/mynamespace/repository","updated_tags":["latest","v1"]}"#;
const DOCKERHUB: &str = r#"{"push_data":{"pushed_at":1417566161,"pusher":"trustedbuilder","tag":"latest"},"repository":{"repo_name":"svendowideit/testhook","namespace":"svendowideit","name":"testhook"}}"#;
const GHCR: &str = r#"{"action":"published","package":{"name":"app","package_type":"CONTAINER","owner":{"login":"Octo-Org"},"package_version":{"container_metadata":{"tag":{"name":"v1.2.0","digest":"sha256:3c5f"}}}}}"#;
const INTERNAL: &str = r#"{"events":[{"action":"push","target":{"repository":"team/app","tag":"latest","url":"http://10.0.0.5:5000/v2/team/app/manifests/sha256:1"},"request":{"host":"10.0.0.5:5000"}}]}"#;

async fn post(
    addr: &str,
    path: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn requested(r: &Recorder) -> Vec<Requested> {
    std::mem::take(&mut *r.requests.lock().unwrap())
}

fn bearer() -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {TOKEN}"))]
}

#[tokio::test]
async fn authenticated_notifications_request_exactly_the_matching_tags() {
    common::install_crypto();
    let (addr, rec) = serve(world()).await;
    let (code, body) = post(
        &addr,
        &format!("/notify/quay?token={TOKEN}"),
        "application/json",
        &[],
        QUAY.into(),
    )
    .await;
    assert_eq!((code, body.as_str()), (202, r#"{"requested":2}"#));
    assert_eq!(
        requested(&rec),
        vec![(
            "shop".into(),
            "web".into(),
            vec!["latest".into(), "v1".into()],
            "quay".into()
        )]
    );

    let (code, _) = post(
        &addr,
        &format!("/notify/dockerhub?token={TOKEN}"),
        "application/json",
        &[],
        DOCKERHUB.into(),
    )
    .await;
    assert_eq!(code, 202);
    assert_eq!(
        requested(&rec),
        vec![(
            "ops".into(),
            "hub".into(),
            vec!["latest".into()],
            "dockerhub".into()
        )]
    );

    // The registry's internal address in the payload maps to the public name streams use.
    let (code, _) = post(
        &addr,
        "/notify/distribution",
        "application/vnd.docker.distribution.events.v1+json",
        &bearer(),
        INTERNAL.into(),
    )
    .await;
    assert_eq!(code, 202);
    assert_eq!(
        requested(&rec),
        vec![(
            "ops".into(),
            "internal".into(),
            vec!["latest".into()],
            "distribution".into()
        )]
    );
}

#[tokio::test]
async fn github_notifications_need_a_valid_signature() {
    common::install_crypto();
    let (addr, rec) = serve(world()).await;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HMAC.as_bytes());
    let sig: String = ring::hmac::sign(&key, GHCR.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (code, _) = post(
        &addr,
        "/notify/ghcr",
        "application/json",
        &[("x-hub-signature-256", format!("sha256={sig}"))],
        GHCR.into(),
    )
    .await;
    assert_eq!(code, 202);
    assert_eq!(requested(&rec).len(), 1);
    let bad = "0".repeat(64);
    let (code, _) = post(
        &addr,
        "/notify/ghcr",
        "application/json",
        &[("x-hub-signature-256", format!("sha256={bad}"))],
        GHCR.into(),
    )
    .await;
    assert_eq!(code, 401);
    let (code, _) = post(
        &addr,
        "/notify/ghcr",
        "application/json",
        &bearer(),
        GHCR.into(),
    )
    .await;
    assert_eq!(code, 401, "a token is not a signature");
    assert!(requested(&rec).is_empty());
}

#[tokio::test]
async fn bad_tokens_content_types_bodies_and_sizes_change_nothing() {
    common::install_crypto();
    let (addr, rec) = serve(world()).await;
    // (path, content type, headers, body, expected status)
    type Case<'a> = (String, &'a str, Vec<(&'a str, String)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        (
            "/notify/quay".into(),
            "application/json",
            vec![],
            QUAY.into(),
            401,
        ),
        (
            "/notify/quay?token=wrong".into(),
            "application/json",
            vec![],
            QUAY.into(),
            401,
        ),
        (
            "/notify/distribution".into(),
            "application/vnd.docker.distribution.events.v1+json",
            vec![("authorization", "Bearer nope".into())],
            INTERNAL.into(),
            401,
        ),
        (
            format!("/notify/quay?token={TOKEN}"),
            "text/plain",
            vec![],
            QUAY.into(),
            415,
        ),
        (
            format!("/notify/quay?token={TOKEN}"),
            "application/json",
            vec![],
            b"{not json".to_vec(),
            400,
        ),
        (
            format!("/notify/dockerhub?token={TOKEN}"),
            "application/json",
            vec![],
            b"{}".to_vec(),
            400,
        ),
        (
            format!("/notify/quay?token={TOKEN}"),
            "application/json",
            vec![],
            vec![b' '; 2 * 1024 * 1024],
            413,
        ),
        (
            format!("/notify/nexus?token={TOKEN}"),
            "application/json",
            vec![],
            QUAY.into(),
            404,
        ),
    ];
    for (path, ct, headers, body, want) in cases {
        let (code, text) = post(&addr, &path, ct, &headers, body).await;
        assert_eq!(code, want, "{path} {ct}: {text}");
    }
    assert!(requested(&rec).is_empty());
}

#[tokio::test]
async fn unknown_repositories_and_pinned_tags_request_nothing() {
    common::install_crypto();
    let (addr, rec) = serve(world()).await;
    let other = r#"{"docker_url":"quay.io/someone/else","updated_tags":["latest"]}"#;
    let (code, body) = post(
        &addr,
        &format!("/notify/quay?token={TOKEN}"),
        "application/json",
        &[],
        other.into(),
    )
    .await;
    assert_eq!((code, body.as_str()), (202, r#"{"requested":0}"#));
    assert!(requested(&rec).is_empty());
}

#[tokio::test]
async fn bursts_for_one_reference_coalesce() {
    common::install_crypto();
    let (addr, rec) = serve(world()).await;
    for _ in 0..5 {
        post(
            &addr,
            &format!("/notify/dockerhub?token={TOKEN}"),
            "application/json",
            &[],
            DOCKERHUB.into(),
        )
        .await;
    }
    assert_eq!(requested(&rec).len(), 1);
}

/// Distinct digests pushed within the window (30 forged ones made 30 spec writes) make two
/// requests: one at once and one at the window's end, so the last push is still imported.
#[tokio::test]
async fn a_burst_of_digests_is_one_request_now_and_one_at_the_windows_end() {
    common::install_crypto();
    let (addr, rec) = serve(world()).await;
    for i in 0..30 {
        let digest = format!("sha256:{i}");
        let body = INTERNAL.replace(
            "manifests/sha256:1\"",
            &format!("manifests/{digest}\",\"digest\":\"{digest}\""),
        );
        post(
            &addr,
            "/notify/distribution",
            "application/json",
            &bearer(),
            body.into(),
        )
        .await;
    }
    assert_eq!(requested(&rec).len(), 1, "one request at once");
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    assert_eq!(requested(&rec).len(), 1, "and one when the window ends");
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    assert!(requested(&rec).is_empty(), "and no more");
}

/// Without the secret a caller learns nothing: not the content types a source accepts, and
/// errors are valid JSON whatever the caller sent. `?token=` works only for Quay and Docker
/// Hub, which cannot send headers.
#[tokio::test]
async fn authentication_comes_first_and_errors_are_json() {
    common::install_crypto();
    let (addr, rec) = serve(world()).await;
    let (code, body) = post(&addr, "/notify/quay", "text/plain", &[], QUAY.into()).await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = post(
        &addr,
        &format!("/notify/quay?token={TOKEN}"),
        "text/\"plain\"",
        &[],
        QUAY.into(),
    )
    .await;
    assert_eq!(code, 415);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(error["error"].as_str().unwrap().contains("plain"), "{body}");
    let (code, body) = post(
        &addr,
        &format!("/notify/distribution?token={TOKEN}"),
        "application/json",
        &[],
        INTERNAL.into(),
    )
    .await;
    assert_eq!(
        code, 401,
        "a token in the URL is refused for distribution: {body}"
    );
    let (code, body) = post(
        &addr,
        &format!("/notify/harbor?token={TOKEN}"),
        "application/json",
        &[],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(code, 401, "and for harbor: {body}");
    let (code, body) = post(
        &addr,
        &format!("/notify/quay?token={TOKEN}"),
        "application/json",
        &[],
        b"{\"docker_url\": 5}".to_vec(),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        serde_json::from_str::<serde_json::Value>(&body).is_ok(),
        "{body}"
    );
    assert!(requested(&rec).is_empty());
}

/// A real docker-registry notifies the receiver of a push; without the token nothing happens.
#[tokio::test]
async fn a_real_registry_push_requests_the_import() {
    common::install_crypto();
    // The registry's address is only known once it runs, so streams point at it after start.
    let recorder = Arc::new(Recorder::default());
    let index = Arc::new(parking_lot::Mutex::new(TargetIndex::default()));
    let config = NotifyConfig {
        token: Some(TOKEN.into()),
        ..Default::default()
    };
    let app = router(Receiver::new(config, index.clone(), recorder.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });

    for (token, expect) in [(Some(TOKEN), true), (None, false)] {
        let url = format!("http://{receiver}/notify/distribution");
        let Some(reg) = common::Registry::start_notifying(&url, token).await else {
            return;
        };
        let app = ImageStream::test("app")
            .in_namespace("shop")
            .tag("latest", &format!("{}/team/app", reg.addr));
        index.lock().apply(&app);
        reg.push_image("team/app", "latest", "n", false).await;
        let mut seen = Vec::new();
        for _ in 0..50 {
            seen = requested(&recorder);
            if !seen.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if expect {
            assert_eq!(
                seen,
                vec![(
                    "shop".to_string(),
                    "app".to_string(),
                    vec!["latest".to_string()],
                    "distribution".to_string()
                )]
            );
        } else {
            assert!(seen.is_empty(), "refused without the token: {seen:?}");
        }
        index.lock().delete(&app);
    }
}
