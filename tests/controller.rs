//! The import reconciler driven through kube's client over a mocked HTTP transport: every request
//! it makes is asserted, and any request not expected fails the test.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::{Method, Response};
use imagestream_operator::api::*;
use imagestream_operator::import::controller::{reconcile, Context, Settings};
use imagestream_operator::registry::{
    ImageResolver, ImportRequest, KnownImage, ListRequest, Listed, RegistryError, ResolvedImage,
    TagSink,
};
use imagestream_operator::schedule::Scheduler;
use kube::client::Body;
use kube::runtime::reflector;
use serde_json::{json, Value};

use common::api::{self, Handle, Reply};

/// Answers from a list set by the test; records the references it was asked for.
#[derive(Default)]
struct ScriptedResolver {
    answer: Mutex<Option<Result<ResolvedImage, RegistryError>>>,
    asked: Mutex<Vec<String>>,
    /// The `known` image of each request, in order.
    known: Mutex<Vec<Option<KnownImage>>>,
}

impl ImageResolver for ScriptedResolver {
    fn resolve(
        &self,
        request: ImportRequest,
    ) -> BoxFuture<'_, Result<ResolvedImage, RegistryError>> {
        self.asked
            .lock()
            .unwrap()
            .push(request.reference.to_string());
        self.known.lock().unwrap().push(request.known.clone());
        let answer = self
            .answer
            .lock()
            .unwrap()
            .clone()
            .expect("resolver called without a scripted answer");
        Box::pin(async move { answer })
    }

    fn list_tags<'a>(
        &'a self,
        request: ListRequest,
        _sink: &'a TagSink<'a>,
    ) -> BoxFuture<'a, Result<Listed, RegistryError>> {
        let reference = request.repository.to_string();
        Box::pin(async move {
            Err(RegistryError::NotFound {
                reference,
                detail: "not scripted".into(),
            })
        })
    }
}

const DIGEST: &str = "sha256:4f1a2b3c";

fn resolved() -> ResolvedImage {
    ResolvedImage {
        digest: DIGEST.into(),
        docker_image_reference: format!("centos/python-35-centos7@{DIGEST}"),
        details: None,
        manifest_list: None,
    }
}

/// The stream every test starts from: `python:3.5` importing centos/python-35-centos7.
fn python() -> ImageStream {
    python_as("python", "uid-1")
}

/// The same spec as another stream (streams are told apart by UID).
fn python_as(name: &str, uid: &str) -> ImageStream {
    ImageStream::test(name)
        .with_uid(uid)
        .tag("3.5", "centos/python-35-centos7")
}

struct Harness {
    ctx: Arc<Context>,
    resolver: Arc<ScriptedResolver>,
    handle: Handle,
}

fn harness() -> Harness {
    harness_with(Settings::default())
}

fn harness_with(settings: Settings) -> Harness {
    let (client, handle) = api::mock_client("default");
    let resolver = Arc::new(ScriptedResolver::default());
    let (store, _writer) = reflector::store();
    let ctx = Context::new(
        client,
        resolver.clone(),
        store,
        Default::default(),
        Scheduler::new(Duration::from_secs(60), 60),
        settings,
    );
    Harness {
        ctx: Arc::new(ctx),
        resolver,
        handle,
    }
}

/// Expect one request, check it, and answer: Events echo back; writes to the stream answer with
/// the stream, as the API server does.
async fn expect(
    handle: &mut Handle,
    object: &Value,
    check: impl FnOnce(&Method, &str, &Value),
) -> Value {
    let call = api::answer_next(handle, |c| match c.uri.contains("/events") {
        true => Reply::Echo,
        false => Reply::Json(object.clone()),
    })
    .await;
    check(&call.method, &call.uri, &call.body);
    call.body
}

/// Run the reconcile while serving exactly the expected requests, then assert there were no others.
async fn run(
    h: Harness,
    s: ImageStream,
    expected: usize,
) -> (Vec<(Method, String, Value)>, Arc<ScriptedResolver>) {
    let Harness {
        ctx,
        resolver,
        mut handle,
    } = h;
    let object = serde_json::to_value(&s).unwrap();
    let task = tokio::spawn(reconcile(Arc::new(s), ctx));
    let mut seen = Vec::new();
    for _ in 0..expected {
        let mut captured = None;
        expect(&mut handle, &object, |m, u, b| {
            captured = Some((m.clone(), u.to_string(), b.clone()))
        })
        .await;
        seen.push(captured.unwrap());
    }
    task.await.unwrap().expect("reconcile failed");
    // Context (and with it the client) is gone once reconcile returns: any further request
    // would have been sent already.
    api::assert_no_more_requests(&mut handle).await;
    (seen, resolver)
}

fn imported_status() -> ImageStreamStatus {
    let json = json!({
        "dockerImageRepository": "",
        "tagSummary": "3.5",
        "tags": [{
            "tag": "3.5",
            "items": [{"created": "2026-01-01T00:00:00Z", "dockerImageReference": format!("centos/python-35-centos7@{DIGEST}"), "image": DIGEST, "generation": 1}],
        }]
    });
    let mut status: ImageStreamStatus = serde_json::from_value(json).unwrap();
    // The fingerprint the controller recorded on the first import.
    let s = python().checked();
    status.tags[0].observed_spec = Some(imagestream_operator::import::spec::fingerprint(
        &s,
        &s.spec_tags()[0],
    ));
    status
}

#[tokio::test]
async fn new_stream_gets_the_check_annotation_then_one_status_write_and_an_event() {
    let h = harness();
    *h.resolver.answer.lock().unwrap() = Some(Ok(resolved()));
    let (requests, resolver) = run(h, python(), 3).await;
    let [annotation, status, event] = requests.as_slice() else {
        panic!("expected the annotation, the status and an Event: {requests:?}");
    };

    let (m, uri, body) = status;
    assert_eq!(m, Method::PATCH);
    assert_eq!(uri, "/apis/image.openshift.io/v1/namespaces/demo/imagestreams/python/status?&force=true&fieldManager=imagestream-operator");
    assert_eq!(body["apiVersion"], "image.openshift.io/v1");
    assert_eq!(body["kind"], "ImageStream");
    let item = &body["status"]["tags"][0]["items"][0];
    assert_eq!(body["status"]["tags"][0]["tag"], "3.5");
    assert_eq!(item["image"], DIGEST);
    assert_eq!(
        item["dockerImageReference"],
        format!("centos/python-35-centos7@{DIGEST}")
    );
    assert_eq!(item["generation"], 1);
    assert!(body["status"]["tags"][0].get("conditions").is_none());

    // On a stream without status the annotation goes first: half the API server's work.
    let (m, uri, body) = annotation;
    assert_eq!(
        (m, uri.as_str()),
        (
            &Method::PATCH,
            "/apis/image.openshift.io/v1/namespaces/demo/imagestreams/python?"
        )
    );
    assert!(body["metadata"]["annotations"][DOCKER_REPOSITORY_CHECK]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    let (m, uri, body) = event;
    assert_eq!(
        (m, uri.as_str()),
        (
            &Method::POST,
            "/apis/events.k8s.io/v1/namespaces/demo/events?"
        )
    );
    assert_eq!(body["reason"], "Imported");
    assert_eq!(body["type"], "Normal");
    assert_eq!(
        resolver.asked.lock().unwrap().as_slice(),
        ["centos/python-35-centos7"]
    );
}

#[tokio::test]
async fn unchanged_scheduled_re_check_asks_the_registry_and_writes_nothing() {
    let h = harness();
    *h.resolver.answer.lock().unwrap() = Some(Ok(resolved()));
    h.ctx
        .scheduler
        .mark_checked("uid-1", Instant::now() - Duration::from_secs(120));
    let mut status = imported_status();
    let s = python().scheduled().checked();
    status.tags[0].observed_spec = Some(imagestream_operator::import::spec::fingerprint(
        &s,
        &s.spec_tags()[0],
    ));
    status.images = vec![ImageDetails {
        image: DIGEST.into(),
        ..Default::default()
    }];
    let (requests, resolver) = run(h, python().scheduled().checked().with_status(status), 0).await;
    assert!(requests.is_empty());
    assert_eq!(
        resolver.asked.lock().unwrap().len(),
        1,
        "the registry was asked once"
    );
    // ...with what the tag has, so an unchanged HEAD ends the check there.
    assert_eq!(
        resolver.known.lock().unwrap()[0],
        Some(KnownImage {
            manifest: DIGEST.into(),
            image: DIGEST.into(),
            docker_image_reference: format!("centos/python-35-centos7@{DIGEST}"),
        })
    );
}

/// An imported scheduled stream, due for its check, carrying a notification record of `at_ms`;
/// run with the schedule stretched by notifications. Returns what the registry was asked.
async fn due_and_notified_at(at_ms: i64) -> Vec<String> {
    let h = harness_with(Settings {
        stretch_schedule_when_notified: true,
        ..Settings::default()
    });
    *h.resolver.answer.lock().unwrap() = Some(Ok(resolved()));
    h.ctx
        .scheduler
        .mark_checked("uid-1", Instant::now() - Duration::from_secs(120));
    let s = python().scheduled().checked();
    let mut status = imported_status();
    status.tags[0].observed_spec = Some(imagestream_operator::import::spec::fingerprint(
        &s,
        &s.spec_tags()[0],
    ));
    let mut notified = python().scheduled().checked().with_status(status);
    let note = json!({"source": "harbor", "at_ms": at_ms, "tags": ["3.5"]});
    notified
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(imagestream_operator::api::NOTIFIED.into(), note.to_string());
    let (requests, resolver) = run(h, notified, 0).await;
    assert!(requests.is_empty(), "an unchanged check writes nothing");
    let asked = resolver.asked.lock().unwrap().clone();
    asked
}

#[tokio::test]
async fn stretched_schedule_skips_the_check_after_a_recent_notification() {
    let asked = due_and_notified_at(jiff::Timestamp::now().as_millisecond()).await;
    assert!(
        asked.is_empty(),
        "no scheduled check while notifications arrive"
    );
}

/// The record is an annotation anyone who may edit the stream can write: a time in the
/// future (or absurd) stopped polling for good. It is ignored now, and the check runs.
#[tokio::test]
async fn a_forged_notification_time_does_not_stop_polling() {
    let ten_years = 10 * 365 * 86_400_000;
    for at_ms in [
        jiff::Timestamp::now().as_millisecond() + ten_years,
        i64::MIN,
        i64::MAX,
    ] {
        let asked = due_and_notified_at(at_ms).await;
        assert_eq!(asked, ["centos/python-35-centos7"], "at_ms {at_ms}");
    }
}

#[tokio::test]
async fn failed_import_writes_one_condition_and_an_identical_failure_writes_nothing() {
    let not_found = RegistryError::NotFound {
        reference: "centos/python-35-centos7".into(),
        detail: "manifest unknown".into(),
    };
    let h = harness();
    *h.resolver.answer.lock().unwrap() = Some(Err(not_found.clone()));
    let mut s = python()
        .scheduled()
        .checked()
        .with_status(imported_status());
    s = s.at_generation(2).last_tag(|t| t.generation = Some(2));
    let (requests, _) = run(h, s.clone(), 3).await;
    let [status, annotation, event] = requests.as_slice() else {
        panic!("expected the status, the annotation and an Event: {requests:?}");
    };
    let (m, uri, body) = status;
    assert_eq!(m, Method::PATCH);
    assert!(
        uri.starts_with("/apis/image.openshift.io/v1/namespaces/demo/imagestreams/python/status?")
    );
    let tag = &body["status"]["tags"][0];
    assert_eq!(
        tag["items"][0]["image"], DIGEST,
        "the last good image stays"
    );
    let conditions = tag["conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 1);
    assert_eq!(conditions[0]["type"], "ImportSuccess");
    assert_eq!(conditions[0]["status"], "False");
    assert_eq!(conditions[0]["reason"], "NotFound");
    assert_eq!(conditions[0]["generation"], 2);
    assert_eq!(
        annotation.0,
        Method::PATCH,
        "status changed, so the check annotation is refreshed"
    );
    assert_eq!(event.2["reason"], "ImportFailed");
    assert_eq!(event.2["type"], "Warning");

    // The stream as the API server now holds it; a scheduled check fails identically.
    s.status = Some(serde_json::from_value(body["status"].clone()).unwrap());
    let h = harness();
    *h.resolver.answer.lock().unwrap() = Some(Err(not_found));
    h.ctx
        .scheduler
        .mark_checked("uid-1", Instant::now() - Duration::from_secs(120));
    let (requests, resolver) = run(h, s, 0).await;
    assert!(requests.is_empty(), "identical failure: no write, no event");
    assert_eq!(resolver.asked.lock().unwrap().len(), 1);
}

/// A user removed the repository-check annotation of an imported stream, and a tag moved: the
/// status goes first, then the annotation. A reconcile that sees exactly the version between
/// must not take it for a request to re-import everything; a later version without the
/// annotation (a user removed it again) still is one.
#[tokio::test]
async fn the_version_between_our_two_writes_does_not_re_import() {
    let Harness {
        ctx,
        resolver,
        mut handle,
    } = harness();
    *resolver.answer.lock().unwrap() = Some(Ok(resolved()));
    let mut moved = imported_status();
    moved.tags[0].items[0].image = "sha256:0bad".into();
    let first = python().with_status(moved).at_version("6");
    let between = python().with_status(imported_status()).at_version("7");
    let between_json = serde_json::to_value(&between).unwrap();

    let task = tokio::spawn(reconcile(Arc::new(first), ctx.clone()));
    let mut order = Vec::new();
    for _ in 0..3 {
        expect(&mut handle, &between_json, |m, u, _| {
            order.push(format!("{m} {}", u.split('?').next().unwrap_or_default()))
        })
        .await;
    }
    task.await.unwrap().expect("first reconcile");
    let stream_uri = "/apis/image.openshift.io/v1/namespaces/demo/imagestreams/python";
    assert_eq!(
        order[..2],
        [
            format!("PATCH {stream_uri}/status"),
            format!("PATCH {stream_uri}")
        ]
    );
    assert_eq!(resolver.asked.lock().unwrap().len(), 1);

    // The watch delivers the in-between version: nothing to import, nothing to write.
    tokio::time::timeout(
        Duration::from_secs(5),
        reconcile(Arc::new(between.clone()), ctx.clone()),
    )
    .await
    .expect("the in-between version made an API request (a re-import)")
    .expect("second reconcile");
    assert_eq!(resolver.asked.lock().unwrap().len(), 1, "no re-import");

    // A user removing the annotation later (a new version) is honoured.
    let removed = between.at_version("9");
    let removed_json = serde_json::to_value(&removed).unwrap();
    let task = tokio::spawn(reconcile(Arc::new(removed), ctx));
    expect(&mut handle, &removed_json, |m, u, _| {
        assert_eq!(
            (m, u.to_string()),
            (&Method::PATCH, format!("{stream_uri}?"))
        )
    })
    .await;
    task.await.unwrap().expect("third reconcile");
    assert_eq!(
        resolver.asked.lock().unwrap().len(),
        2,
        "re-imported on request"
    );
}

/// On a new stream the annotation goes first. The version between (annotated, no status yet)
/// reads as every tag never imported; a reconcile of exactly that version must not import again.
/// If the status write then fails, that version is what the stream is, and the retry imports.
#[tokio::test]
async fn the_version_between_the_annotation_and_the_first_status_does_not_re_import() {
    let Harness {
        ctx,
        resolver,
        mut handle,
    } = harness();
    *resolver.answer.lock().unwrap() = Some(Ok(resolved()));
    let annotated = python().checked().at_version("7");
    let written = python()
        .checked()
        .with_status(imported_status())
        .at_version("8");
    let (annotated_json, written_json) = (
        serde_json::to_value(&annotated).unwrap(),
        serde_json::to_value(&written).unwrap(),
    );

    let task = tokio::spawn(reconcile(Arc::new(python()), ctx.clone()));
    expect(&mut handle, &annotated_json, |_, u, _| {
        assert!(!u.contains("/status?"))
    })
    .await;
    expect(&mut handle, &written_json, |_, u, _| {
        assert!(u.contains("/status?"))
    })
    .await;
    expect(&mut handle, &Value::Null, |_, u, _| {
        assert!(u.contains("/events"))
    })
    .await;
    task.await.unwrap().expect("first reconcile");

    tokio::time::timeout(
        Duration::from_secs(5),
        reconcile(Arc::new(annotated.clone()), ctx.clone()),
    )
    .await
    .expect("the in-between version made an API request (a re-import)")
    .expect("second reconcile");
    assert_eq!(resolver.asked.lock().unwrap().len(), 1, "no re-import");

    // Again from a new stream, but the status write fails: the annotated version is then the
    // stream as it is, and its reconcile imports and writes both again.
    let task = tokio::spawn(reconcile(Arc::new(python()), ctx.clone()));
    expect(&mut handle, &annotated_json, |_, u, _| {
        assert!(!u.contains("/status?"))
    })
    .await;
    let (req, send) = handle.next_request().await.expect("status write");
    assert!(req.uri().to_string().contains("/status?"));
    let unavailable = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "ServiceUnavailable", "code": 503, "message": "etcd is down"});
    send.send_response(
        Response::builder()
            .status(503)
            .body(Body::from(serde_json::to_vec(&unavailable).unwrap()))
            .unwrap(),
    );
    assert!(task.await.unwrap().is_err(), "a failed write is an error");
    assert_eq!(resolver.asked.lock().unwrap().len(), 2);

    let task = tokio::spawn(reconcile(Arc::new(annotated), ctx));
    expect(&mut handle, &annotated_json, |_, u, _| {
        assert!(!u.contains("/status?"))
    })
    .await;
    expect(&mut handle, &written_json, |m, u, _| {
        assert_eq!((m, u.contains("/status?")), (&Method::PATCH, true))
    })
    .await;
    expect(&mut handle, &Value::Null, |_, u, _| {
        assert!(u.contains("/events"))
    })
    .await;
    task.await.unwrap().expect("retry");
    assert_eq!(resolver.asked.lock().unwrap().len(), 3, "imported again");
}

/// New before old: while another stream waits for its first import, a due scheduled re-check
/// is put off by one interval instead of spending the registry budget; once that stream is
/// imported, the re-check runs.
#[tokio::test]
async fn scheduled_re_checks_wait_while_another_stream_awaits_its_first_import() {
    use imagestream_operator::api::cache::StreamEvent;
    let fresh = python_as("fresh", "uid-2").scheduled();
    let done = fresh.clone().checked();
    let mut st = imported_status();
    st.tags[0].observed_spec = Some(imagestream_operator::import::spec::fingerprint(
        &done,
        &done.spec_tags()[0],
    ));
    let done = done.with_status(st);
    let due = || {
        let mut status = imported_status();
        let s = python().scheduled().checked();
        status.tags[0].observed_spec = Some(imagestream_operator::import::spec::fingerprint(
            &s,
            &s.spec_tags()[0],
        ));
        python().scheduled().checked().with_status(status)
    };
    for (others, asked) in [(vec![fresh.clone()], 0), (vec![fresh, done], 1)] {
        let h = harness();
        *h.resolver.answer.lock().unwrap() = Some(Ok(resolved()));
        for other in others {
            h.ctx.observe_stream(&StreamEvent::Applied(Arc::new(other)));
        }
        h.ctx
            .scheduler
            .mark_checked("uid-1", Instant::now() - Duration::from_secs(120));
        let (requests, resolver) = run(h, due(), 0).await;
        assert!(requests.is_empty());
        assert_eq!(resolver.asked.lock().unwrap().len(), asked);
    }
}

/// A relist that no longer contains a stream awaiting its first import (deleted while the watch
/// was away) must release the schedule: before the watch turned relists into deletions, the
/// stream stayed "urgent" for the life of the process and every other stream's scheduled
/// re-check was put off, every time.
#[tokio::test]
async fn a_relist_without_a_stream_awaiting_its_first_import_lets_scheduled_checks_run() {
    use futures::StreamExt;
    use imagestream_operator::api::cache::StreamCache;
    use imagestream_operator::api::scope::relisting;
    use imagestream_operator::import::controller::stream_changes;
    use kube::runtime::watcher::Event::{Apply, Init, InitApply, InitDone};
    use kube::ResourceExt;

    let (client, mut handle) = api::mock_client("default");
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let (store, writer) = reflector::store();
    let events = relisting(rx, None, store.clone());
    let (cache, driver) = StreamCache::over(store.clone(), writer, events);
    tokio::spawn(driver);
    let resolver = Arc::new(ScriptedResolver::default());
    *resolver.answer.lock().unwrap() = Some(Ok(resolved()));
    let ctx = Arc::new(Context::new(
        client,
        resolver.clone(),
        store,
        Default::default(),
        Scheduler::new(Duration::from_secs(60), 60),
        Settings::default(),
    ));
    let (seen_tx, mut seen) = futures::channel::mpsc::unbounded();
    let mut observed = stream_changes(&cache, ctx.clone()).boxed();
    tokio::spawn(async move {
        while let Some(s) = observed.next().await {
            let _ = seen_tx.unbounded_send(s.name_any());
        }
    });
    let fresh = python_as("fresh", "uid-2").scheduled();
    let mut status = imported_status();
    let checked = python().scheduled().checked();
    status.tags[0].observed_spec = Some(imagestream_operator::import::spec::fingerprint(
        &checked,
        &checked.spec_tags()[0],
    ));
    let due = Arc::new(python().scheduled().checked().with_status(status));
    let send = |e| tx.unbounded_send(Ok(e)).unwrap();
    let asked_after_due_check = |ctx: Arc<Context>, due: Arc<ImageStream>| async move {
        ctx.scheduler
            .mark_checked("uid-1", Instant::now() - Duration::from_secs(120));
        reconcile(due, ctx).await.expect("reconcile");
    };

    for e in [Init, InitApply(fresh), InitApply((*due).clone()), InitDone] {
        send(e);
    }
    for _ in 0..2 {
        seen.next().await;
    }
    asked_after_due_check(ctx.clone(), due.clone()).await;
    assert_eq!(resolver.asked.lock().unwrap().len(), 0, "fresh goes first");

    // The watch was away; its relist no longer has `fresh`. A later change marks the point by
    // which the relist has been observed.
    let marker = ImageStream::test("marker");
    for e in [Init, InitApply((*due).clone()), InitDone, Apply(marker)] {
        send(e);
    }
    while seen.next().await.as_deref() != Some("marker") {}
    asked_after_due_check(ctx.clone(), due).await;
    assert_eq!(resolver.asked.lock().unwrap().len(), 1, "the re-check ran");
    drop(ctx);
    api::assert_no_more_requests(&mut handle).await;
}

fn with_big_labels(bytes: usize) -> ResolvedImage {
    let labels = [("huge".to_string(), "x".repeat(bytes))].into();
    ResolvedImage {
        details: Some(ImageDetails {
            image: DIGEST.into(),
            labels: Some(labels),
            ..Default::default()
        }),
        ..resolved()
    }
}

/// An image with 1.2 MiB of labels: the status is written trimmed, keeps the tag's image, and
/// says what was dropped in a condition and a Warning Event.
#[tokio::test]
async fn a_status_over_the_budget_is_written_trimmed_and_says_so() {
    let h = harness();
    *h.resolver.answer.lock().unwrap() = Some(Ok(with_big_labels(1200 * 1024)));
    let (requests, _) = run(h, python(), 4).await;
    let [annotation, status, trimmed, imported] = requests.as_slice() else {
        panic!("expected the annotation, the status and two Events: {requests:?}");
    };

    assert!(annotation.1.ends_with("/imagestreams/python?"));
    let (m, uri, body) = status;
    assert_eq!(m, Method::PATCH);
    assert!(uri.contains("/imagestreams/python/status?"), "{uri}");
    let status = &body["status"];
    assert_eq!(status["tags"][0]["items"][0]["image"], DIGEST);
    assert!(status["images"][0].get("labels").is_none(), "{status}");
    assert!(serde_json::to_vec(status).unwrap().len() < 1024 * 1024);
    let condition = &status["conditions"][0];
    assert_eq!(condition["type"], "StatusTrimmed");
    assert_eq!(condition["status"], "True");
    let said = condition["message"].as_str().unwrap();
    assert!(
        said.contains("labels, env and layer lists of 1 image(s)"),
        "{said}"
    );

    let (m, uri, event) = trimmed;
    assert_eq!(m, Method::POST);
    assert!(uri.contains("/events"), "{uri}");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "StatusTrimmed");
    assert_eq!(event["note"], said);
    assert_eq!(imported.2["reason"], "Imported");
}

/// etcd refuses the write: one Warning, the stream keeps its last status, and neither the next
/// reconcile nor a later one sends the same status again.
#[tokio::test]
async fn a_status_the_api_server_refuses_for_size_is_not_sent_again() {
    let Harness {
        ctx,
        resolver,
        mut handle,
    } = harness();
    *resolver.answer.lock().unwrap() = Some(Ok(resolved()));
    let s = Arc::new(python());
    let task = tokio::spawn(reconcile(s.clone(), ctx.clone()));
    let annotated = serde_json::to_value(python().checked()).unwrap();
    expect(&mut handle, &annotated, |m, u, _| {
        assert_eq!(
            (m, u.ends_with("/imagestreams/python?")),
            (&Method::PATCH, true)
        );
    })
    .await;
    let (req, send) = handle.next_request().await.expect("status write");
    assert!(req.uri().to_string().contains("/status?"));
    let refusal = json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError",
        "code": 500,
        "message": "rpc error: code = ResourceExhausted desc = trying to send message larger than max (2301389 vs. 2097152)"
    });
    send.send_response(
        Response::builder()
            .status(500)
            .body(Body::from(serde_json::to_vec(&refusal).unwrap()))
            .unwrap(),
    );
    let event = expect(&mut handle, &Value::Null, |m, u, _| {
        assert_eq!((m, u.contains("/events")), (&Method::POST, true));
    })
    .await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "StatusTooLarge");
    let note = event["note"].as_str().unwrap();
    assert!(
        note.contains("ResourceExhausted") && note.contains("Split it"),
        "{note}"
    );
    task.await
        .unwrap()
        .expect("a refusal for size is not a reconcile error");

    // Neither the version before the annotation nor the one after it writes anything again.
    for s in [s.clone(), Arc::new(python().checked())] {
        reconcile(s, ctx.clone()).await.expect("reconcile");
    }
    let quiet = tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await;
    assert!(quiet.is_err(), "the refused status was sent again");
    // The version without the annotation asks for a repository check, so it imports again; the
    // annotated one plans from the refused status, in which every tag is imported: no registry
    // call. (Before, each check of such a stream imported every tag afresh, and took the
    // registry budget of every other stream.)
    assert_eq!(resolver.asked.lock().unwrap().len(), 2);
}

/// After an API server outage the watch may relist for a while (its backoff reaches 30 s), so
/// reconciles keep seeing the version from before the operator's own write. The same status is
/// not written again (nor its Event published) for that version; a different one is.
#[tokio::test]
async fn a_stale_cache_does_not_make_the_same_status_write_repeat() {
    let Harness {
        ctx,
        resolver,
        mut handle,
    } = harness();
    *resolver.answer.lock().unwrap() = Some(Ok(resolved()));
    let stale = Arc::new(python().scheduled().checked().at_version("41"));
    let written = (*stale).clone().at_version("42");
    let object = serde_json::to_value(&written).unwrap();
    let task = tokio::spawn(reconcile(stale.clone(), ctx.clone()));
    expect(&mut handle, &object, |m, u, _| {
        assert_eq!((m, u.contains("/status?")), (&Method::PATCH, false));
    })
    .await;
    expect(&mut handle, &object, |m, u, _| {
        assert_eq!((m, u.contains("/status?")), (&Method::PATCH, true));
    })
    .await;
    expect(&mut handle, &object, |m, u, _| {
        assert_eq!((m, u.contains("/events")), (&Method::POST, true));
    })
    .await;
    task.await.unwrap().expect("reconcile");

    // The cache still shows version 41: nothing is sent again (a request would go unanswered).
    let again = tokio::time::timeout(
        Duration::from_secs(2),
        reconcile(stale.clone(), ctx.clone()),
    )
    .await;
    assert!(again.is_ok(), "the same status was written again");

    // The registry moved meanwhile: that is news, and is written.
    let moved = ResolvedImage {
        digest: "sha256:5e6f".into(),
        docker_image_reference: "centos/python-35-centos7@sha256:5e6f".into(),
        ..resolved()
    };
    *resolver.answer.lock().unwrap() = Some(Ok(moved));
    let task = tokio::spawn(reconcile(stale, ctx));
    expect(&mut handle, &object, |m, u, _| {
        assert_eq!((m, u.contains("/status?")), (&Method::PATCH, false));
    })
    .await;
    let body = expect(&mut handle, &object, |m, u, _| {
        assert_eq!((m, u.contains("/status?")), (&Method::PATCH, true));
    })
    .await;
    assert_eq!(
        body["status"]["tags"][0]["items"][0]["image"],
        "sha256:5e6f"
    );
    expect(&mut handle, &object, |m, u, _| {
        // The recorder counts a repeated Event into the first one's series.
        assert!(u.contains("/events") && (m == Method::POST || m == Method::PATCH));
    })
    .await;
    task.await.unwrap().expect("reconcile");
}

/// A hostile registry's `Retry-After: u64::MAX` reached the retry bookkeeping as a duration
/// that overflowed `Instant` and panicked the operator on every restart. Now the tag reports
/// the rate limit and the reconcile returns normally.
#[tokio::test]
async fn an_absurd_retry_after_is_reported_not_a_crash() {
    let h = harness();
    *h.resolver.answer.lock().unwrap() = Some(Err(RegistryError::RateLimited {
        reference: "centos/python-35-centos7".into(),
        retry_after: Some(Duration::MAX),
    }));
    let (requests, _) = run(h, python(), 3).await;
    let [_annotation, status, event] = requests.as_slice() else {
        panic!("expected the annotation, the status and an Event: {requests:?}");
    };
    let condition = &status.2["status"]["tags"][0]["conditions"][0];
    assert_eq!(condition["reason"], "RateLimited");
    assert_eq!(event.2["type"], "Warning");
}

/// A stream stored with more spec tags than the CRD now allows is not a request per tag: the
/// first `MAX_SPEC_TAGS` are imported, the rest carry a condition saying what to do.
#[tokio::test]
async fn tags_past_the_limit_get_a_condition_not_a_request() {
    let h = harness();
    *h.resolver.answer.lock().unwrap() = Some(Ok(resolved()));
    let mut s = python();
    let template = s.spec_tags()[0].clone();
    s.spec.tags = Some(
        (0..=MAX_SPEC_TAGS)
            .map(|i| TagReference {
                name: format!("t{i:04}"),
                ..template.clone()
            })
            .collect(),
    );
    let (requests, resolver) = run(h, s, 3).await;
    assert_eq!(resolver.asked.lock().unwrap().len(), MAX_SPEC_TAGS);
    let [_annotation, status, _event] = requests.as_slice() else {
        panic!("expected the annotation, the status and an Event: {requests:?}");
    };
    let tags = status.2["status"]["tags"].as_array().unwrap();
    let last = tags
        .iter()
        .find(|t| t["tag"] == format!("t{MAX_SPEC_TAGS:04}"))
        .unwrap();
    let condition = &last["conditions"][0];
    assert_eq!(condition["reason"], "Invalid", "{last}");
    assert!(condition["message"]
        .as_str()
        .unwrap()
        .contains("into another ImageStream"));
}
