//! The trigger controller over kube's mocked transport: the exact requests each situation makes.

mod common;

use std::sync::Arc;

use http::{Method, Response};
use imagestream_operator::api::*;
use imagestream_operator::triggers::controller::{
    reconcile_meta, reconcile_workload, Fired, Meta, TriggerContext,
};
use imagestream_operator::triggers::index::WorkloadKey;
use imagestream_operator::triggers::workload::Kind;
use kube::client::Body;
use kube::core::{DynamicObject, PartialObjectMeta};
use kube::runtime::{reflector, watcher};
use serde_json::{json, Value};

use common::api::{self, Call, Handle, Reply};

const NEW: &str = "quay.io/team/example@sha256:0a1b2c";

/// `example:latest`, imported at `NEW`.
fn example(namespace: &str) -> ImageStream {
    ImageStream::test("example")
        .in_namespace(namespace)
        .tag("latest", "quay.io/team/example")
        .imported("latest", NEW)
}

fn workload(kind: Kind, triggers: &str, image: &str) -> DynamicObject {
    let ar = kind.api_resource();
    let pod_spec = json!({"containers": [{"name": "web", "image": image}, {"name": "sidecar", "image": "envoy:1"}]});
    let spec = match kind {
        Kind::Job => json!({"template": {"spec": pod_spec}}),
        _ => {
            json!({"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}})
        }
    };
    serde_json::from_value(json!({
        "apiVersion": ar.api_version, "kind": ar.kind,
        "metadata": {"name": "web", "namespace": "demo", "resourceVersion": "5", "uid": "w-1",
                     "annotations": {TRIGGERS: triggers}},
        "spec": spec,
    }))
    .unwrap()
}

fn trigger(extra: &str) -> String {
    format!(
        r#"[{{"from":{{"kind":"ImageStreamTag","name":"example:latest"{extra}}},"fieldPath":"spec.template.spec.containers[?(@.name=='web')].image"}}]"#
    )
}

fn context(streams: Vec<ImageStream>) -> (Arc<TriggerContext>, Handle) {
    let (client, handle) = api::mock_client("default");
    let (store, mut writer) = reflector::store();
    for s in streams {
        writer.apply_watcher_event(&watcher::Event::Apply(s));
    }
    (Arc::new(TriggerContext::new(client, store)), handle)
}

fn key(kind: Kind) -> WorkloadKey {
    WorkloadKey {
        kind,
        namespace: "demo".into(),
        name: "web".into(),
    }
}

/// Evaluate once while answering exactly `answers.len()` requests, then check nothing else came.
async fn evaluate(
    ctx: &Arc<TriggerContext>,
    handle: &mut Handle,
    obj: DynamicObject,
    kind: Kind,
    answers: Vec<Value>,
) -> (Fired, Vec<Call>) {
    let task = {
        let ctx = ctx.clone();
        tokio::spawn(async move { reconcile_workload(&ctx, &key(kind), &obj).await })
    };
    let seen = answer(handle, answers).await;
    let fired = task.await.unwrap().expect("evaluation failed");
    (fired, seen)
}

/// Answers exactly `answers.len()` requests (a null answer echoes the request body), then checks
/// that no other request comes.
async fn answer(handle: &mut Handle, answers: Vec<Value>) -> Vec<Call> {
    let replies = answers
        .into_iter()
        .map(|a| match a {
            Value::Null => Reply::Echo,
            v => Reply::Json(v),
        })
        .collect();
    let seen = api::answer_all(handle, replies).await;
    api::assert_no_more_requests(handle).await;
    seen
}

/// The metadata the workload watch delivers for `obj` at `generation`.
fn meta_of(obj: &DynamicObject, generation: i64) -> Arc<Meta> {
    let mut metadata = obj.metadata.clone();
    metadata.generation = Some(generation);
    Arc::new(PartialObjectMeta {
        types: obj.types.clone(),
        metadata,
        _phantom: Default::default(),
    })
}

#[tokio::test]
async fn a_workload_whose_tags_have_no_image_yet_is_not_even_read() {
    let (ctx, mut handle) = context(vec![]);
    let obj = workload(Kind::Deployment, &trigger(""), "example:old");
    let task = tokio::spawn(reconcile_meta(
        Kind::Deployment,
        meta_of(&obj, 1),
        ctx.clone(),
    ));
    let seen = answer(&mut handle, vec![]).await;
    assert!(task.await.unwrap().is_ok());
    assert!(seen.is_empty());
}

#[tokio::test]
async fn one_read_from_the_watch_cache_one_patch_and_the_patch_echo_is_not_evaluated() {
    let (ctx, mut handle) = context(vec![example("demo")]);
    let obj = workload(Kind::Deployment, &trigger(""), "example:old");
    let mut patched = serde_json::to_value(workload(Kind::Deployment, &trigger(""), NEW)).unwrap();
    patched["metadata"]["generation"] = json!(2);
    let task = tokio::spawn(reconcile_meta(
        Kind::Deployment,
        meta_of(&obj, 1),
        ctx.clone(),
    ));
    let current = serde_json::to_value(&obj).unwrap();
    let seen = answer(&mut handle, vec![current, patched, Value::Null]).await;
    assert!(task.await.unwrap().is_ok());
    let calls: Vec<_> = seen
        .iter()
        .map(|s| (s.method.clone(), s.uri.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            (
                Method::GET,
                "/apis/apps/v1/namespaces/demo/deployments/web?&resourceVersion=0"
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/demo/deployments/web?&fieldManager=imagestream-operator-triggers"
            ),
            (Method::POST, "/apis/events.k8s.io/v1/namespaces/demo/events?"),
        ]
    );
    // The watch then shows generation 2, our own patch: skipped once; a later generation is
    // someone else's change and is evaluated.
    let echo = meta_of(&obj, 2);
    assert!(ctx.is_own_echo(Kind::Deployment, &echo));
    assert!(!ctx.is_own_echo(Kind::Deployment, &echo));
    assert!(!ctx.is_own_echo(Kind::Deployment, &meta_of(&obj, 3)));
}

#[tokio::test]
async fn resolved_tag_patches_exactly_the_image_field_once() {
    let (ctx, mut handle) = context(vec![example("demo")]);
    let obj = workload(Kind::Deployment, &trigger(""), "example:old");
    let patched = serde_json::to_value(workload(Kind::Deployment, &trigger(""), NEW)).unwrap();
    let (fired, seen) = evaluate(
        &ctx,
        &mut handle,
        obj,
        Kind::Deployment,
        vec![patched, Value::Null],
    )
    .await;
    assert!(
        matches!(fired, Fired::Patched(ref u) if u.len() == 1),
        "{fired:?}"
    );

    let [patch, event] = seen.as_slice() else {
        panic!("expected the workload patch and an Event: {seen:?}");
    };
    assert_eq!(patch.method, Method::PATCH);
    assert_eq!(
        patch.uri,
        "/apis/apps/v1/namespaces/demo/deployments/web?&fieldManager=imagestream-operator-triggers"
    );
    assert_eq!(patch.content_type, "application/strategic-merge-patch+json");
    assert_eq!(
        patch.body,
        json!({"metadata": {"resourceVersion": "5"}, "spec": {"template": {"spec": {"containers": [{"name": "web", "image": NEW}]}}}})
    );
    assert_eq!(event.method, Method::POST);
    assert!(
        event.uri.contains("/namespaces/demo/events"),
        "{}",
        event.uri
    );
    assert_eq!(event.body["reason"], "ImageTriggered");
    let note = event.body["note"].as_str().unwrap();
    assert!(note.contains("container web: image example:old -> quay.io/team/example@sha256:0a1b2c (from demo/example:latest)"), "{note}");
}

#[tokio::test]
async fn unchanged_image_makes_no_request() {
    let (ctx, mut handle) = context(vec![example("demo")]);
    let obj = workload(Kind::StatefulSet, &trigger(""), NEW);
    let (fired, seen) = evaluate(&ctx, &mut handle, obj, Kind::StatefulSet, vec![]).await;
    assert_eq!(fired, Fired::Unchanged);
    assert!(seen.is_empty());
}

#[tokio::test]
async fn paused_trigger_makes_no_request() {
    let (ctx, mut handle) = context(vec![example("demo")]);
    let paused = trigger("").replace("}]", r#","paused":"true"}]"#);
    let obj = workload(Kind::Deployment, &paused, "example:old");
    let (fired, seen) = evaluate(&ctx, &mut handle, obj, Kind::Deployment, vec![]).await;
    assert_eq!(fired, Fired::Unchanged);
    assert!(seen.is_empty());
}

#[tokio::test]
async fn tag_without_image_is_skipped_quietly() {
    let (ctx, mut handle) = context(vec![]);
    let obj = workload(Kind::DaemonSet, &trigger(""), "example:old");
    let (fired, seen) = evaluate(&ctx, &mut handle, obj, Kind::DaemonSet, vec![]).await;
    assert_eq!(fired, Fired::Unchanged);
    assert!(seen.is_empty());
}

#[tokio::test]
async fn malformed_annotation_gets_one_event_and_no_patch() {
    let (ctx, mut handle) = context(vec![example("demo")]);
    let bad = r#"[{"from":{"kind":"ImageStreamTag","name":"example"},"fieldPath":"spec.template.spec.containers[0].image"}]"#;
    let (fired, seen) = evaluate(
        &ctx,
        &mut handle,
        workload(Kind::Deployment, bad, "x"),
        Kind::Deployment,
        vec![Value::Null],
    )
    .await;
    assert!(matches!(fired, Fired::Skipped(_)));
    let [event] = seen.as_slice() else {
        panic!("expected one Event: {seen:?}");
    };
    assert_eq!(event.body["reason"], "InvalidTrigger");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(
        event.body["note"],
        "trigger 0: from.name \"example\" must be STREAM:TAG, e.g. example:latest"
    );
    // The same problem again is not reported again.
    let (_, seen) = evaluate(
        &ctx,
        &mut handle,
        workload(Kind::Deployment, bad, "x"),
        Kind::Deployment,
        vec![],
    )
    .await;
    assert!(seen.is_empty());
}

#[tokio::test]
async fn cross_namespace_without_permission_gets_an_event_and_no_patch() {
    let (ctx, mut handle) = context(vec![example("shared")]);
    let obj = workload(
        Kind::Deployment,
        &trigger(r#","namespace":"shared""#),
        "example:old",
    );
    let denied = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {}, "status": {"allowed": false}});
    let (fired, seen) = evaluate(
        &ctx,
        &mut handle,
        obj,
        Kind::Deployment,
        vec![denied, Value::Null],
    )
    .await;
    assert_eq!(fired, Fired::Unchanged);
    let [sar, event] = seen.as_slice() else {
        panic!("expected the access review and an Event: {seen:?}");
    };
    assert_eq!(
        sar.uri,
        "/apis/authorization.k8s.io/v1/subjectaccessreviews?"
    );
    assert_eq!(
        sar.body["spec"]["user"],
        "system:serviceaccount:demo:default"
    );
    assert_eq!(
        sar.body["spec"]["resourceAttributes"],
        json!({"namespace": "shared", "verb": "get", "group": "image.openshift.io", "resource": "imagestreams", "name": "example"})
    );
    assert_eq!(event.body["reason"], "TriggerForbidden");
    assert!(
        ctx.awaiting_grant(&key(Kind::Deployment)),
        "a denied workload is evaluated again when the denial expires"
    );
    // Within the denial's lifetime the cached answer is used: no new review, no new Event.
    let obj = workload(
        Kind::Deployment,
        &trigger(r#","namespace":"shared""#),
        "example:old",
    );
    let (_, seen) = evaluate(&ctx, &mut handle, obj, Kind::Deployment, vec![]).await;
    assert!(seen.is_empty());
}

#[tokio::test]
async fn cross_namespace_with_permission_fires() {
    let (ctx, mut handle) = context(vec![example("shared")]);
    let obj = workload(
        Kind::Deployment,
        &trigger(r#","namespace":"shared""#),
        "example:old",
    );
    let allowed = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {}, "status": {"allowed": true}});
    let patched = serde_json::to_value(workload(Kind::Deployment, &trigger(""), NEW)).unwrap();
    let (fired, seen) = evaluate(
        &ctx,
        &mut handle,
        obj,
        Kind::Deployment,
        vec![allowed, patched, Value::Null],
    )
    .await;
    assert!(matches!(fired, Fired::Patched(_)));
    let [_review, patch, _event] = seen.as_slice() else {
        panic!("expected the access review, the patch and an Event: {seen:?}");
    };
    assert_eq!(patch.method, Method::PATCH);
    assert!(!ctx.awaiting_grant(&key(Kind::Deployment)));
}

#[tokio::test]
async fn jobs_are_skipped_with_an_explanation() {
    let (ctx, mut handle) = context(vec![example("demo")]);
    let obj = workload(Kind::Job, &trigger(""), "example:old");
    let (fired, seen) = evaluate(&ctx, &mut handle, obj, Kind::Job, vec![Value::Null]).await;
    assert!(matches!(fired, Fired::Skipped(_)));
    let [event] = seen.as_slice() else {
        panic!("expected one Event: {seen:?}");
    };
    assert_eq!(event.body["reason"], "TriggerSkipped");
    assert!(event.body["note"]
        .as_str()
        .unwrap()
        .contains("cannot change after creation"));
}

/// `obj` as its controller created it: a controller ownerReference to `owner`.
fn owned_by(mut obj: DynamicObject, owner: &str) -> DynamicObject {
    obj.metadata.owner_references = Some(vec![serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": owner, "name": "web", "uid": "owner-1",
        "controller": true, "blockOwnerDeletion": true,
    }))
    .unwrap()]);
    obj
}

/// Controllers copy the owner's annotations onto what they create (a Deployment's onto its
/// ReplicaSets). Those copies are never evaluated, patched or reported on, whether the copied
/// trigger would fire or is malformed.
#[tokio::test]
async fn objects_owned_by_a_controller_make_no_request_and_no_event() {
    let bad = r#"[{"from":{"kind":"ImageStreamTag","name":"example"},"fieldPath":"spec.template.spec.containers[0].image"}]"#;
    for (kind, owner) in [
        (Kind::ReplicaSet, "Deployment"),
        (Kind::Pod, "ReplicaSet"),
        (Kind::Job, "CronJob"),
        (Kind::ReplicationController, "DeploymentConfig"),
    ] {
        for annotation in [trigger(""), bad.to_string()] {
            let (ctx, mut handle) = context(vec![example("demo")]);
            let obj = owned_by(workload(kind, &annotation, "example:old"), owner);
            let (fired, seen) = evaluate(&ctx, &mut handle, obj.clone(), kind, vec![]).await;
            assert!(
                matches!(fired, Fired::Skipped(_)),
                "{kind:?} owned by {owner}: {fired:?}"
            );
            assert!(seen.is_empty(), "{kind:?} owned by {owner} made requests");
            assert_eq!(
                ctx.observe(kind, &obj.metadata),
                None,
                "{kind:?} owned by {owner} stays out of the index"
            );
            assert!(ctx
                .index
                .lock()
                .dependents("demo/example:latest")
                .is_empty());
        }
    }
}

/// A non-controller owner (e.g. a garbage-collection parent) does not make an object owned.
#[tokio::test]
async fn a_non_controller_owner_does_not_stop_the_trigger() {
    let (ctx, mut handle) = context(vec![example("demo")]);
    let mut obj = owned_by(
        workload(Kind::Deployment, &trigger(""), "example:old"),
        "App",
    );
    if let Some(refs) = obj.metadata.owner_references.as_mut() {
        refs[0].controller = Some(false);
    }
    assert!(ctx.observe(Kind::Deployment, &obj.metadata).is_some());
    let (fired, seen) = evaluate(
        &ctx,
        &mut handle,
        obj,
        Kind::Deployment,
        vec![Value::Null, Value::Null],
    )
    .await;
    assert!(matches!(fired, Fired::Patched(_)), "{fired:?}");
    let [patch, _event] = seen.as_slice() else {
        panic!("expected the patch and an Event: {seen:?}");
    };
    assert_eq!(patch.method, Method::PATCH);
}

/// A 409 on the patch (the workload changed in between, often only its status) is reported as a
/// conflict, so the caller reads the workload again rather than waiting for a spec change.
#[tokio::test]
async fn a_conflicting_patch_asks_for_another_read() {
    let (ctx, mut handle) = context(vec![example("demo")]);
    let obj = workload(Kind::Deployment, &trigger(""), "example:old");
    let task = {
        let ctx = ctx.clone();
        tokio::spawn(async move { reconcile_workload(&ctx, &key(Kind::Deployment), &obj).await })
    };
    let (req, send) = handle.next_request().await.expect("a patch");
    assert_eq!(req.method(), Method::PATCH);
    let conflict = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"});
    send.send_response(
        Response::builder()
            .status(409)
            .body(Body::from(serde_json::to_vec(&conflict).unwrap()))
            .unwrap(),
    );
    assert_eq!(task.await.unwrap().unwrap(), Fired::Conflict);
}

/// `--trigger-excluded-namespaces` (kube-system by default): an annotated workload there is
/// treated as not annotated, so it is never indexed, fetched or patched.
#[tokio::test]
async fn workloads_in_an_excluded_namespace_are_never_followed() {
    let (client, _handle) = api::mock_client("default");
    let (store, _writer) = reflector::store();
    let mut ctx = TriggerContext::new(client, store);
    ctx.excluded = vec!["kube-system".to_string()].into();
    let mut obj = workload(Kind::Deployment, &trigger(""), "example:old");
    assert!(ctx.observe(Kind::Deployment, &obj.metadata).is_some());
    obj.metadata.namespace = Some("kube-system".into());
    assert!(ctx.observe(Kind::Deployment, &obj.metadata).is_none());
    assert!(ctx
        .index
        .lock()
        .dependents("kube-system/example:latest")
        .is_empty());
}
