//! The committed CRD is exactly what the types generate, and every seed example validates
//! against it: structure (types, unknown fields, enums, required, list-map keys) the way the API
//! server's structural schema checks it, and the CEL rules with kube's client-side evaluator.

use std::path::Path;

use imagestream_operator::crdgen::{imagestream_crd, imagestream_crd_yaml, IMAGESTREAM_CRD_FILE};
use serde_json::{json, Value};

fn schema() -> Value {
    imagestream_crd().unwrap()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn committed_crd_matches_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crds")
        .join(IMAGESTREAM_CRD_FILE);
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        committed == imagestream_crd_yaml().unwrap(),
        "{} is stale: run `cargo run -- crds > crds/{IMAGESTREAM_CRD_FILE}`",
        path.display()
    );
}

/// The API server refuses streams with more spec tags than the controller imports.
#[test]
fn spec_tags_are_capped_at_what_the_controller_imports() {
    let max = &schema()["properties"]["spec"]["properties"]["tags"]["maxItems"];
    assert_eq!(
        max.as_u64(),
        Some(imagestream_operator::api::MAX_SPEC_TAGS as u64)
    );
}

/// Structural validation as the API server does it for a CRD: `metadata` is the API server's,
/// not the schema's, so it is skipped.
fn structural(value: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema["nullable"] != json!(true) {
            errors.push(format!("{path}: null is not allowed"));
        }
        return;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            errors.push(format!("{path}: {value} is not one of {allowed:?}"));
        }
    }
    let ty = schema["type"].as_str().unwrap_or("");
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !ok {
        errors.push(format!("{path}: expected {ty}, got {value}"));
        return;
    }
    if let Some(obj) = value.as_object() {
        for req in schema["required"].as_array().into_iter().flatten() {
            if !obj.contains_key(req.as_str().unwrap()) {
                errors.push(format!("{path}.{}: Required value", req.as_str().unwrap()));
            }
        }
        for (k, v) in obj {
            if path.is_empty() && (k == "metadata" || k == "apiVersion" || k == "kind") {
                continue;
            }
            let sub = if let Some(p) = schema["properties"].get(k) {
                p
            } else if schema["additionalProperties"].is_object() {
                &schema["additionalProperties"]
            } else {
                errors.push(format!("{path}.{k}: unknown field"));
                continue;
            };
            structural(v, sub, &format!("{path}.{k}"), errors);
        }
    }
    if let Some(items) = value.as_array() {
        let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            structural(item, &schema["items"], &format!("{path}[{i}]"), errors);
            if !keys.is_empty() {
                let key: Vec<String> = keys.iter().map(|k| item[k].to_string()).collect();
                if !seen.insert(key.clone()) {
                    errors.push(format!("{path}[{i}]: Duplicate value: {key:?}"));
                }
            }
        }
    }
}

fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn validate(object: &Value) -> Vec<String> {
    let schema = schema();
    let mut errors = Vec::new();
    structural(object, &schema, "", &mut errors);
    // The API server evaluates no rule on a null value (seen on v1.28: a tag with
    // `annotations: null` is stored, while the client-side evaluator reports "No such
    // overload"), so nulls are left out of what CEL sees here.
    let mut without_nulls = object.clone();
    drop_nulls(&mut without_nulls);
    if let Err(e) = kube::core::cel::Validator::new().validate(&schema, &without_nulls, None) {
        errors.push(format!("CEL: {e}"));
    }
    errors
}

fn fixtures() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seeds");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_saphyr::from_str(&text).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_seed_example_validates_and_deserializes() {
    let all = fixtures();
    assert_eq!(
        all.len(),
        7,
        "one fixture per ImageStream example in the seeds"
    );
    for (name, object) in all {
        assert_eq!(object["apiVersion"], "image.openshift.io/v1", "{name}");
        let errors = validate(&object);
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        // What the API server stores (spec defaulted to {}) is readable by the controller.
        let mut stored = object.clone();
        stored
            .as_object_mut()
            .unwrap()
            .entry("spec")
            .or_insert(json!({}));
        let typed: Result<imagestream_operator::api::ImageStream, _> =
            serde_json::from_value(stored);
        assert!(typed.is_ok(), "{name}: {:?}", typed.err());
    }
}

#[test]
fn the_malformed_seeds_validate_in_their_intended_form() {
    let intended = json!({
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
        "metadata": {"name": "ruby", "annotations": {"openshift.io/image.insecureRepository": "true"}},
        "spec": {
            "dockerImageRepository": "my.repo.com:5000/myimage",
            "tags": [{"from": {"kind": "DockerImage", "name": "my.repo.com:5000/myimage"}, "name": "mytag",
                      "importPolicy": {"insecure": true}, "referencePolicy": {"type": "Local"}}]
        }
    });
    assert_eq!(validate(&intended), Vec::<String>::new());
}

fn with_tags(tags: Value) -> Value {
    json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": "x"}, "spec": {"tags": tags}})
}

#[test]
fn bad_input_is_rejected_with_a_clear_message() {
    let cases = [
        (
            with_tags(json!([{"name": "a", "from": {"kind": "DockerImageX", "name": "x"}}])),
            "is not one of",
        ),
        (
            with_tags(
                json!([{"name": "a", "from": {"kind": "ImageStreamTag", "name": "x:1"}, "importPolicy": {"scheduled": true}}]),
            ),
            "only tags pointing to Docker repositories may be scheduled",
        ),
        (
            with_tags(json!([{"name": "a"}, {"name": "a"}])),
            "Duplicate value",
        ),
        (
            with_tags(json!([{"name": "a", "referencePolicy": {"type": "Remote"}}])),
            "is not one of",
        ),
        (
            with_tags(json!([{"name": "a", "importPolicy": {"importMode": "All"}}])),
            "is not one of",
        ),
        (
            with_tags(json!([{"name": "a", "from": {"kind": "DockerImage"}}])),
            "Required value",
        ),
        (
            json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": "x"}, "spec": {"dockerImageRepository": "quay.io/org/app:1"}}),
            "without a tag or digest",
        ),
        (
            json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": "x"}, "spec": {"dockerImageRepository": "quay.io/org/app@sha256:abc"}}),
            "without a tag or digest",
        ),
        (
            with_tags(json!([{"name": "bad:tag"}])),
            "a tag name is what a registry accepts",
        ),
        (
            with_tags(json!([{"name": ".hidden"}])),
            "a tag name is what a registry accepts",
        ),
        (
            with_tags(
                json!([{"name": "a", "from": {"kind": "DockerImage", "name": "quay.io/org/App:1"}}]),
            ),
            "the repository in lower case",
        ),
        (
            with_tags(
                json!([{"name": "a", "from": {"kind": "DockerImage", "name": "nginx :1.27"}}]),
            ),
            "no spaces",
        ),
        (
            with_tags(json!([{"name": "a", "from": {"kind": "DockerImage", "name": " nginx"}}])),
            "no spaces",
        ),
    ];
    for (object, expected) in cases {
        let errors = validate(&object).join("\n");
        assert!(
            errors.contains(expected),
            "expected {expected:?} for {object}, got: {errors}"
        );
    }
    let fine = with_tags(
        json!([{"name": "a", "from": {"kind": "DockerImage", "name": "localhost:5000/app:1"}, "importPolicy": {"scheduled": true}}]),
    );
    assert_eq!(validate(&fine), Vec::<String>::new());
    let digest = format!("sha256:{}", "0a".repeat(32));
    for name in [
        "nginx".to_string(),
        "nginx:1.27-alpine".into(),
        "docker.io/library/python:3.12-slim".into(),
        "127.0.0.1:5000/big/app:t0".into(),
        "Registry.Example.com/team/app_x__y-z:V1.0".into(),
        format!("quay.io/org/app@{digest}"),
        format!("quay.io/org/app:1@{digest}"),
    ] {
        let tag =
            with_tags(json!([{"name": "v1.2_3-x", "from": {"kind": "DockerImage", "name": name}}]));
        assert_eq!(validate(&tag), Vec::<String>::new(), "{name}");
    }
    // Tag policy keys: one kind, and the fixed choices spelled as documented.
    let policy = |keys: Value| {
        with_tags(
            json!([{"name": "stable", "from": {"kind": "DockerImage", "name": "nginx:1.25.3"},
            "annotations": keys}]),
        )
    };
    let p = "policy.imagestream-operator.io/";
    for (keys, expected) in [
        (
            json!({format!("{p}semver"): "~1", format!("{p}numerical"): "highest"}),
            "only one of",
        ),
        (
            json!({format!("{p}numerical"): "desc"}),
            "take highest or lowest",
        ),
        (
            json!({format!("{p}alphabetical"): "asc"}),
            "take highest or lowest",
        ),
        (
            json!({format!("{p}semver"): "*", format!("{p}prerelease"): "yes"}),
            "exclude or include",
        ),
        (
            json!({format!("{p}semver"): "*", format!("{p}allow-downgrade"): "yes"}),
            "true or false",
        ),
        (
            json!({format!("{p}semver"): "*", format!("{p}hold"): "sha256:abc"}),
            "64 hex digits",
        ),
    ] {
        let errors = validate(&policy(keys.clone())).join("\n");
        assert!(
            errors.contains(expected),
            "expected {expected:?} for {keys}, got: {errors}"
        );
    }
    let held = json!({format!("{p}semver"): "~1.25", format!("{p}hold"): format!("sha256:{}", "0a".repeat(32)),
        format!("{p}prerelease"): "include", "description": "anything"});
    assert_eq!(validate(&policy(held)), Vec::<String>::new());
    // Other kinds name streams, not registries.
    let alias =
        with_tags(json!([{"name": "a", "from": {"kind": "ImageStreamTag", "name": "Other:1"}}]));
    assert_eq!(validate(&alias), Vec::<String>::new());
}

#[test]
fn openshift_defaults_are_in_the_schema() {
    let tag = &schema()["properties"]["spec"]["properties"]["tags"]["items"]["properties"];
    assert_eq!(tag["referencePolicy"]["default"], json!({"type": "Source"}));
    assert_eq!(
        tag["importPolicy"]["default"],
        json!({"importMode": "Legacy"})
    );
    assert_eq!(
        tag["importPolicy"]["properties"]["importMode"]["default"],
        "Legacy"
    );
    assert_eq!(schema()["properties"]["spec"]["default"], json!({}));
}
