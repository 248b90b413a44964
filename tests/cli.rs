//! kubectl-imagestream: describe layouts against the seed documentation's own example output,
//! and the exact objects each mutating command writes (over kube's mocked transport).

mod common;

use clap::Parser;
use common::api::{self, Call, Reply};
use http::Method;
use imagestream_operator::api::*;
use imagestream_operator::cli::{execute, format, Cli};
use jiff::Timestamp;
use serde_json::{json, Value};

const NOW: &str = "2017-10-03T19:48:07Z";
const D34: &str = "sha256:28178e2352d31f240de1af1370be855db33ae9782de737bb005247d8791a54d0";
const D35: &str = "sha256:2efb79ca3ac9c9145a63675fb0c09220ab3b8d4005d35e0644417ee552548b10";
const DSEED: &str = "sha256:49c18358df82f4577386404991c51a9559f243e0b1bdc366df25";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/cli/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn stream(v: Value) -> ImageStream {
    serde_json::from_value(v).unwrap()
}

fn item(reference: &str, image: &str, created: &str) -> Value {
    json!({"created": created, "dockerImageReference": reference, "image": image, "generation": 1})
}

/// The seed's `oc describe is python` with tags 34 and 35 (001, "Using image streams").
#[test]
fn describe_is_matches_the_seed_python_34_35() {
    let s = stream(json!({
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
        "metadata": {"name": "python", "namespace": "imagestream", "creationTimestamp": "2017-10-02T18:48:07Z",
            "labels": {"app": "python"},
            "annotations": {"openshift.io/generated-by": "OpenShiftWebConsole", DOCKER_REPOSITORY_CHECK: "2017-10-03T19:48:00Z"}},
        "spec": {"tags": [
            {"name": "34", "from": {"kind": "DockerImage", "name": "centos/python-34-centos7"}},
            {"name": "35", "from": {"kind": "DockerImage", "name": "centos/python-35-centos7"}}]},
        "status": {"dockerImageRepository": "docker-registry.default.svc:5000/imagestream/python", "tags": [
            {"tag": "34", "items": [item(&format!("centos/python-34-centos7@{D34}"), D34, "2017-10-03T19:47:53Z")]},
            {"tag": "35", "items": [item(&format!("centos/python-35-centos7@{D35}"), D35, "2017-10-03T19:48:00Z")]}]}
    }));
    assert_eq!(
        format::describe_stream(&s, now()),
        fixture("describe-is-python-34-35.txt")
    );
}

/// The seed's walkthrough after `oc tag python:3.5 python:latest` (000, "Adding tags").
#[test]
fn describe_is_matches_the_seed_after_tagging_latest() {
    let s = stream(json!({
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
        "metadata": {"name": "python", "namespace": "default", "creationTimestamp": "2017-10-03T19:43:07Z",
            "annotations": {DOCKER_REPOSITORY_CHECK: "2017-10-02T17:05:11Z"}},
        "spec": {"tags": [
            {"name": "3.5", "from": {"kind": "DockerImage", "name": "centos/python-35-centos7"}},
            {"name": "latest", "from": {"kind": "ImageStreamImage", "name": format!("python@{DSEED}")}}]},
        "status": {"dockerImageRepository": "docker-registry.default.svc:5000/default/python", "tags": [
            {"tag": "3.5", "items": [item(&format!("centos/python-35-centos7@{DSEED}"), DSEED, "2017-10-03T19:43:07Z")]},
            {"tag": "latest", "items": [item(&format!("centos/python-35-centos7@{DSEED}"), DSEED, "2017-10-03T19:47:00Z")]}]}
    }));
    assert_eq!(
        format::describe_stream(&s, now()),
        fixture("describe-is-python-latest.txt")
    );
}

/// The seed's `oc describe istag/python:latest`; the seed elides some lines ("More information is
/// output than shown"), so its lines must appear in order.
#[test]
fn describe_istag_matches_the_seed() {
    let s = stream(json!({
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
        "metadata": {"name": "python", "namespace": "default"},
        "spec": {"tags": [{"name": "latest", "from": {"kind": "DockerImage", "name": "centos/python-35-centos7"}}]},
        "status": {"dockerImageRepository": "", "tags": [
            {"tag": "latest", "items": [item(&format!("centos/python-35-centos7@{DSEED}"), DSEED, "2017-10-03T19:46:07Z")]}],
          "images": [{"image": DSEED, "architecture": "amd64", "created": "2017-09-19T19:48:07Z",
            "entrypoint": ["container-entrypoint"], "cmd": ["/bin/sh", "-c", "$STI_SCRIPTS_PATH/usage"],
            "workingDir": "/opt/app-root/src", "user": "1001", "exposedPorts": ["8080/tcp"],
            "labels": {"build-date": "20170801"}, "size": 251_200_000,
            "layers": [{"digest": "sha256:l1", "size": 2_898_000}, {"digest": "sha256:l2", "size": 176_042_000}, {"digest": "sha256:l3", "size": 72_260_000}]}]}
    }));
    let text = format::describe_istag(&s, "latest", now()).unwrap();
    let mut lines = text.lines();
    for want in fixture("describe-istag-python-latest.txt")
        .lines()
        .filter(|l| !l.is_empty())
    {
        assert!(
            lines.any(|l| l == want),
            "missing or out of order: {want:?}\n---\n{text}"
        );
    }
}

#[test]
fn describe_shows_history_failures_pending_imports_and_aliases() {
    let s = stream(json!({
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
        "metadata": {"name": "origin-ruby-sample", "namespace": "test", "generation": 3, "creationTimestamp": "2017-09-01T13:40:11Z"},
        "spec": {"tags": [
            {"name": "latest", "from": {"kind": "DockerImage", "name": "quay.io/test/ruby"}, "importPolicy": {"scheduled": true}},
            {"name": "prod", "from": {"kind": "ImageStreamTag", "name": "latest"}},
            {"name": "next", "from": {"kind": "DockerImage", "name": "quay.io/test/ruby:next"}, "generation": 3, "importPolicy": {"insecure": true}, "referencePolicy": {"type": "Local"}}]},
        "status": {"dockerImageRepository": "172.30.56.218:5000/test/origin-ruby-sample", "tags": [
            {"tag": "latest", "items": [
                item("172.30.56.218:5000/test/origin-ruby-sample@sha256:47463d94eb5c049b2d23b03a9530bf944f8f967a0fe79147dd6b9135bf7dd13d", "sha256:909de62d1f609a717ec433cc25ca5cf00941545c83a01fb31527771e1fab3fc5", "2017-09-02T10:15:09Z"),
                item("172.30.56.218:5000/test/origin-ruby-sample@sha256:909de62d1f609a717ec433cc25ca5cf00941545c83a01fb31527771e1fab3fc5", "sha256:909de62d1f609a717ec433cc25ca5cf00941545c83a01fb31527771e1fab3fc5", "2017-09-01T13:40:11Z")],
             "conditions": [{"type": "ImportSuccess", "status": "False", "reason": "NotFound", "message": "quay.io/test/ruby: manifest unknown", "generation": 2, "lastTransitionTime": "2017-10-03T19:38:07Z"}]}]}
    }));
    let text = format::describe_stream(&s, now());
    let expected = "
latest (prod)
  updates automatically from registry quay.io/test/ruby

  ! error: Import failed (NotFound): quay.io/test/ruby: manifest unknown
      10 minutes ago
  * 172.30.56.218:5000/test/origin-ruby-sample@sha256:47463d94eb5c049b2d23b03a9530bf944f8f967a0fe79147dd6b9135bf7dd13d
      4 weeks ago\tsha256:909de62d1f609a717ec433cc25ca5cf00941545c83a01fb31527771e1fab3fc5
    172.30.56.218:5000/test/origin-ruby-sample@sha256:909de62d1f609a717ec433cc25ca5cf00941545c83a01fb31527771e1fab3fc5
      4 weeks ago

next
  tagged from quay.io/test/ruby:next
    will use insecure HTTPS or HTTP connections
    prefer registry pullthrough when referencing this tag

  ~ importing latest image ...
";
    assert!(text.ends_with(expected), "{text}");
    assert!(
        text.contains("Unique Images:\t\t1\nTags:\t\t\t3\n"),
        "{text}"
    );
}

#[test]
fn get_lists_streams_and_tags() {
    let s = stream(json!({
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
        "metadata": {"name": "python", "namespace": "default"},
        "spec": {},
        "status": {"dockerImageRepository": "", "tags": [
            {"tag": "34", "items": [item(&format!("centos/python-34-centos7@{D34}"), D34, "2017-10-03T19:47:53Z")]},
            {"tag": "35", "items": [item(&format!("centos/python-35-centos7@{D35}"), D35, "2017-10-03T19:48:00Z")]}]}
    }));
    assert_eq!(
        format::get_streams(std::slice::from_ref(&s), false, now()),
        "NAME     IMAGE REPOSITORY   TAGS    UPDATED\npython                      35,34   7 seconds ago\n"
    );
    let tags = format::get_tags(&[s], now());
    assert!(tags.starts_with("NAME        IMAGE REFERENCE"), "{tags}");
    assert!(
        tags.contains(&format!(
            "python:35   centos/python-35-centos7@{D35}   7 seconds ago"
        )),
        "{tags}"
    );
}

// ---------------------------------------------------------------------------------------------
// Mutating commands over the mocked transport.

/// Runs the command while answering each request with the next reply (Null = 404, "echo" =
/// the request body), then checks that nothing else was sent.
async fn run(args: &[&str], replies: Vec<Value>) -> (Result<(), String>, String, Vec<Call>) {
    let (client, mut handle) = api::mock_client("demo");
    let mut argv = vec!["kubectl-imagestream"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).unwrap();
    let task = tokio::spawn(async move {
        let mut out = String::new();
        let r = execute(cli, client, "demo", &mut out)
            .await
            .map_err(|e| e.to_string());
        (r, out)
    });
    let replies = replies
        .into_iter()
        .map(|r| match r {
            Value::Null => Reply::NotFound,
            r if r == json!("echo") => Reply::Echo,
            r => Reply::Json(r),
        })
        .collect();
    let calls = api::answer_all(&mut handle, replies).await;
    let (result, out) = task.await.unwrap();
    api::assert_no_more_requests(&mut handle).await;
    (result, out, calls)
}

fn python() -> Value {
    json!({
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
        "metadata": {"name": "python", "namespace": "demo", "generation": 4, "resourceVersion": "17"},
        "spec": {"tags": [
            {"name": "3.5", "from": {"kind": "DockerImage", "name": "centos/python-35-centos7"}}]},
        "status": {"dockerImageRepository": "", "tags": [
            {"tag": "3.5", "items": [
                item(&format!("centos/python-35-centos7@{D35}"), D35, "2017-10-03T19:48:00Z"),
                item(&format!("centos/python-35-centos7@{D34}"), D34, "2017-10-01T19:48:00Z")]}]}
    })
}

fn spec_tag(body: &Value, name: &str) -> Value {
    body["spec"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn tag_permanent_pins_the_source_image() {
    let (r, out, calls) = run(
        &["tag", "python:3.5", "python:latest"],
        vec![python(), python(), python(), json!("echo")],
    )
    .await;
    r.unwrap();
    assert_eq!(out, format!("Tag python:latest set to python@{D35}.\n"));
    assert_eq!(calls[3].method, Method::PUT);
    assert_eq!(calls[3].uri, "/apis/image.openshift.io/v1/namespaces/demo/imagestreams/python?&fieldManager=kubectl-imagestream");
    assert_eq!(calls[3].body["metadata"]["resourceVersion"], "17");
    assert_eq!(
        spec_tag(&calls[3].body, "latest"),
        json!({"name": "latest", "annotations": null, "generation": null, "from": {"kind": "ImageStreamImage", "name": format!("python@{D35}")}})
    );
}

#[tokio::test]
async fn tag_alias_tracks_and_refuses_other_streams() {
    let (r, out, calls) = run(
        &["tag", "--alias", "python:3.5", "python:latest"],
        vec![python(), python(), json!("echo")],
    )
    .await;
    r.unwrap();
    assert_eq!(out, "Tag python:latest set up to track python:3.5.\n");
    assert_eq!(
        spec_tag(&calls[2].body, "latest"),
        json!({"name": "latest", "annotations": null, "generation": null, "from": {"kind": "ImageStreamTag", "name": "python:3.5"}})
    );
    let (r, _, calls) = run(&["tag", "--alias", "ruby:3.5", "python:latest"], vec![]).await;
    assert_eq!(
        r.unwrap_err(),
        "cannot set alias across different Image Streams"
    );
    assert!(calls.is_empty());
}

#[tokio::test]
async fn tag_external_scheduled_and_reference() {
    let (r, out, calls) = run(
        &["tag", "docker.io/python:3.6.0", "python:3.6", "--scheduled"],
        vec![python(), python(), json!("echo")],
    )
    .await;
    r.unwrap();
    assert_eq!(
        out,
        "Tag python:3.6 set to import docker.io/python:3.6.0 periodically.\n"
    );
    assert_eq!(
        spec_tag(&calls[2].body, "3.6"),
        json!({"name": "3.6", "annotations": null, "from": {"kind": "DockerImage", "name": "docker.io/python:3.6.0"}, "generation": 5, "importPolicy": {"scheduled": true}})
    );
    let (r, out, calls) = run(
        &[
            "tag",
            "docker.io/python:3.6.0",
            "python:ref",
            "--reference",
            "--reference-policy=local",
        ],
        vec![python(), python(), json!("echo")],
    )
    .await;
    r.unwrap();
    assert_eq!(out, "Tag python:ref set to docker.io/python:3.6.0.\n");
    assert_eq!(
        spec_tag(&calls[2].body, "ref"),
        json!({"name": "ref", "annotations": null, "from": {"kind": "DockerImage", "name": "docker.io/python:3.6.0"}, "reference": true, "generation": 5, "referencePolicy": {"type": "Local"}})
    );
}

#[tokio::test]
async fn tag_creates_a_missing_stream() {
    let (r, _, calls) = run(
        &["tag", "docker.io/python:3.6.0", "py:3.6"],
        vec![Value::Null, json!("echo")],
    )
    .await;
    r.unwrap();
    assert_eq!(calls[1].method, Method::POST);
    assert_eq!(calls[1].body["metadata"]["name"], "py");
    assert_eq!(spec_tag(&calls[1].body, "3.6")["generation"], 1);
}

#[tokio::test]
async fn tag_delete_removes_spec_and_history() {
    let (r, out, calls) = run(
        &["tag", "-d", "python:3.5"],
        vec![python(), json!("echo"), python()],
    )
    .await;
    r.unwrap();
    assert_eq!(out, "Deleted tag demo/python:3.5.\n");
    assert_eq!(calls[1].method, Method::PUT);
    assert_eq!(calls[1].body["spec"]["tags"], json!([]));
    assert_eq!(calls[2].method, Method::PATCH);
    assert_eq!(calls[2].uri, "/apis/image.openshift.io/v1/namespaces/demo/imagestreams/python/status?&fieldManager=kubectl-imagestream");
    assert_eq!(calls[2].body, json!({"status": {"tags": []}}));
}

#[tokio::test]
async fn rollback_pins_the_previous_image() {
    let (r, out, calls) = run(&["rollback", "python:3.5"], vec![python(), json!("echo")]).await;
    r.unwrap();
    assert!(out.starts_with(&format!("Tag python:3.5 rolled back from centos/python-35-centos7@{D35} to centos/python-35-centos7@{D34}.")), "{out}");
    assert_eq!(
        spec_tag(&calls[1].body, "3.5"),
        json!({"name": "3.5", "annotations": null, "generation": null, "from": {"kind": "ImageStreamImage", "name": format!("python@{D34}")}})
    );
    let (r, _, _) = run(&["rollback", "python:3.5", "--to=7"], vec![python()]).await;
    assert!(r.unwrap_err().contains("has no history item 7"));
}

/// `python` whose 3.5 follows a policy (`~3.5`) seeded at 3.5.1.
fn python_policy() -> Value {
    let mut s = python();
    s["spec"]["tags"][0]["from"]["name"] = json!("centos/python-35-centos7:3.5.1");
    s["spec"]["tags"][0]["annotations"] =
        json!({"policy.imagestream-operator.io/semver": "~3.5", "description": "Python 3.5"});
    s["status"]["tags"][0]["policy"] = json!({
        "selected": {"tag": "3.5.2", "digest": D35}, "reason": "Moved",
        "message": "3.5.2 is the best of 2 of 3 tags matching ~3.5",
        "listing": {"tags": 3, "pages": 1, "complete": true},
        "counts": {"matched": 2, "outOfRange": 1},
        "candidates": [{"tag": "3.5.2", "firstSeen": "2017-10-03T19:48:00Z"}],
        "samples": [{"tag": "3.6.0", "reason": "OutOfRange"}]});
    s
}

#[tokio::test]
async fn a_policy_tag_is_rolled_back_by_holding_it_and_keeps_its_seed() {
    let (r, out, calls) = run(
        &["rollback", "python:3.5"],
        vec![python_policy(), json!("echo")],
    )
    .await;
    r.unwrap();
    assert!(out.contains("Its policy holds it there until you remove the annotation policy.imagestream-operator.io/hold"), "{out}");
    let tag = spec_tag(&calls[1].body, "3.5");
    assert_eq!(
        tag["from"],
        json!({"kind": "DockerImage", "name": "centos/python-35-centos7:3.5.1"})
    );
    assert_eq!(
        tag["annotations"]["policy.imagestream-operator.io/hold"],
        json!(D34)
    );
    assert_eq!(
        tag["annotations"]["policy.imagestream-operator.io/semver"],
        json!("~3.5")
    );
    assert_eq!(
        tag["generation"],
        json!(5),
        "an import is requested at once"
    );
}

#[tokio::test]
async fn tagging_onto_a_policy_tag_says_what_becomes_of_the_policy() {
    // Refused, and nothing written.
    let (r, _, calls) = run(
        &["tag", "docker.io/python:3.6", "python:3.5"],
        vec![python_policy(), python_policy()],
    )
    .await;
    let e = r.unwrap_err();
    assert!(
        e.contains("follows a tag policy") && e.contains("--remove-policy") && e.contains("--hold"),
        "{e}"
    );
    assert!(calls.iter().all(|c| c.method == Method::GET), "{calls:?}");
    // --remove-policy: a plain tag; other annotations stay.
    let (r, _, calls) = run(
        &[
            "tag",
            "docker.io/python:3.6",
            "python:3.5",
            "--remove-policy",
        ],
        vec![python_policy(), python_policy(), json!("echo")],
    )
    .await;
    r.unwrap();
    let tag = spec_tag(&calls[2].body, "3.5");
    assert_eq!(tag["from"]["name"], json!("docker.io/python:3.6"));
    assert_eq!(tag["annotations"], json!({"description": "Python 3.5"}));
    // --hold at an image of the history: the policy and seed stay.
    let (r, _, calls) = run(
        &["tag", &format!("python@{D34}"), "python:3.5", "--hold"],
        vec![python_policy(), python_policy(), json!("echo")],
    )
    .await;
    r.unwrap();
    let tag = spec_tag(&calls[2].body, "3.5");
    assert_eq!(tag["from"]["name"], json!("centos/python-35-centos7:3.5.1"));
    assert_eq!(
        tag["annotations"]["policy.imagestream-operator.io/hold"],
        json!(D34)
    );
    // --hold needs an image by digest.
    let (r, _, _) = run(
        &["tag", "docker.io/python:3.6", "python:3.5", "--hold"],
        vec![python_policy(), python_policy()],
    )
    .await;
    assert!(r.unwrap_err().contains("by digest"));
}

#[test]
fn describe_shows_a_policy_tags_rule_and_choice() {
    let s = stream(python_policy());
    let text = format::describe_stream(&s, now());
    assert!(text.contains("  Policy: semver=~3.5\n"), "{text}");
    assert!(
        text.contains(
            "    selected: 3.5.2 (Moved): 3.5.2 is the best of 2 of 3 tags matching ~3.5\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("    listed: 3 tags in 1 pages (complete); matched 2, outOfRange 1\n"),
        "{text}"
    );
    assert!(
        text.contains("    e.g. 3.6.0 rejected: OutOfRange\n"),
        "{text}"
    );
    let istag = format::describe_istag(&s, "3.5", now()).unwrap_or_default();
    assert!(istag.contains("  Policy: semver=~3.5\n"), "{istag}");
}

#[tokio::test]
async fn image_lookup_toggles_the_stream_policy() {
    let (r, _, calls) = run(
        &["set", "image-lookup", "python"],
        vec![python(), json!("echo")],
    )
    .await;
    r.unwrap();
    assert_eq!(
        calls[1].body["spec"]["lookupPolicy"],
        json!({"local": true})
    );
}

#[test]
fn describe_isimage_finds_history_images_by_prefix() {
    let s: ImageStream = serde_json::from_value(python()).unwrap();
    let text = format::describe_isimage(&s, "28178e2352d3", now()).unwrap();
    assert!(
        text.starts_with(&format!("Image Name:\t{D34}\nDocker Image:\tcentos/python-35-centos7@{D34}\nName:\t\t{D34}\nCreated:\t2 days ago\n")),
        "{text}"
    );
    assert!(format::describe_isimage(&s, "ffff", now())
        .unwrap_err()
        .contains("no image ffff"));
}

#[tokio::test]
async fn set_triggers_writes_the_annotation_the_controller_accepts() {
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "example", "namespace": "demo"},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x"}]}}}
    });
    let (r, out, calls) = run(
        &[
            "set",
            "triggers",
            "deploy/example",
            "--from-image=example:latest",
            "-c",
            "web",
            "--manual",
        ],
        vec![deployment.clone(), deployment],
    )
    .await;
    r.unwrap();
    assert_eq!(out, "deployment/example triggers updated\n");
    assert_eq!(calls[1].method, Method::PATCH);
    assert_eq!(
        calls[1].uri,
        "/apis/apps/v1/namespaces/demo/deployments/example?&fieldManager=kubectl-imagestream"
    );
    assert_eq!(
        calls[1].body,
        json!({"metadata": {"annotations": {TRIGGERS: r#"[{"fieldPath":"spec.template.spec.containers[?(@.name==\"web\")].image","from":{"kind":"ImageStreamTag","name":"example:latest"},"paused":true}]"#}}})
    );
}

/// A registry's message in a condition carried ESC and OSC sequences to the user's terminal;
/// the plugin's output now has no control characters but its newlines and tabs.
#[tokio::test]
async fn describe_never_prints_escape_sequences() {
    let mut s = python();
    s["status"]["tags"][0]["conditions"] = json!([{
        "type": "ImportSuccess", "status": "False", "reason": "NotFound", "generation": 4,
        "message": "manifest unknown\u{1b}]0;owned\u{7}\u{1b}[2J\rforged"}]);
    let (r, out, _) = run(&["describe", "is", "python"], vec![s]).await;
    r.unwrap();
    assert!(out.contains("manifest unknown]0;owned[2J forged"), "{out}");
    assert!(
        !out.chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'),
        "{out:?}"
    );
}

/// The first-hour items: what kubectl habits expect of the plugin, one assertion each.
#[tokio::test]
async fn kubectl_habits_work_and_errors_say_what_is_wrong() {
    // `describe is/python`, `get is -o wide`, `--timeout 1m` parse.
    let (r, out, _) = run(&["describe", "is/python"], vec![python()]).await;
    r.unwrap();
    assert!(out.starts_with("Name:"), "{out}");
    let (r, out, _) = run(&["get", "is", "-o", "wide"], vec![json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamList", "metadata": {}, "items": [python()]})]).await;
    r.unwrap();
    assert!(out.starts_with("NAME"), "{out}");
    assert!(Cli::try_parse_from([
        "kubectl-imagestream",
        "import-image",
        "python:3.5",
        "--timeout",
        "1m"
    ])
    .is_ok());

    // `deployment.apps/web`, and a container the Deployment does not have.
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo"},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x"}]}}}
    });
    let (r, _, calls) = run(
        &[
            "set",
            "triggers",
            "deployment.apps/web",
            "--from-image=python:3.5",
            "-c",
            "nosuchcontainer",
        ],
        vec![deployment],
    )
    .await;
    let e = r.unwrap_err();
    assert!(
        e.contains("no container \"nosuchcontainer\"") && e.contains("web"),
        "{e}"
    );
    assert_eq!(calls.len(), 1, "nothing written");

    // A missing Deployment: the API server's sentence, not a dump of its structure.
    let (r, _, _) = run(
        &["set", "triggers", "deploy/gone", "--from-image=python:3.5"],
        vec![Value::Null],
    )
    .await;
    let e = r.unwrap_err();
    assert!(
        !e.contains("ErrorResponse") && !e.contains("Status {"),
        "{e}"
    );

    // Things that do not exist are not "without an image yet".
    let (r, _, _) = run(&["describe", "istag", "python:nope"], vec![python()]).await;
    assert_eq!(r.unwrap_err(), "image stream tag python:nope not found");
    let (r, _, _) = run(&["tag", "nosuchstream:1", "python:copy"], vec![Value::Null]).await;
    assert_eq!(r.unwrap_err(), "image stream demo/nosuchstream not found");

    // `set image-lookup` with no names lists, as oc does.
    let (r, out, _) = run(&["set", "image-lookup"], vec![json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamList", "metadata": {}, "items": [python()]})]).await;
    r.unwrap();
    assert_eq!(out, "NAME     LOCAL\npython   false\n");
}

#[test]
fn describe_hides_the_applied_configuration_and_import_failure_is_not_imported() {
    let mut s = stream(python());
    s.metadata.annotations = Some(
        [(
            "kubectl.kubernetes.io/last-applied-configuration".to_string(),
            "{\"big\":1}".to_string(),
        )]
        .into(),
    );
    let text = format::describe_stream(&s, now());
    assert!(!text.contains("last-applied"), "{text}");
    assert!(format::describe_istag(&s, "3.5", now())
        .unwrap()
        .ends_with('\n'));

    let mut failed = stream(python());
    if let Some(st) = failed.status.as_mut() {
        st.tags[0].conditions = vec![TagEventCondition {
            type_: "ImportSuccess".into(),
            status: "False".into(),
            last_transition_time: None,
            reason: Some("NotFound".into()),
            message: Some("manifest unknown".into()),
            generation: 4,
        }];
    }
    let (text, bad) = format::import_result(&failed, "3.5", false, now());
    assert!(bad && text.starts_with("import failed"), "{text}");
}
