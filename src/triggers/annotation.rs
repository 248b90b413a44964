//! The `image.openshift.io/triggers` annotation: a JSON list of
//! `{"from": {"kind": "ImageStreamTag", "name": "stream:tag", "namespace": "…"}, "fieldPath": "…", "paused": …}`.
//!
//! OpenShift accepts only `paused` as a JSON bool and `[?(@.name=="x")]` selectors, while its
//! own documentation writes `"paused": "false"` and `[?(@.name='x')]` (one `=`, single quotes);
//! all of these spellings are accepted here. The fieldPath grammar is a handful of forms, so a small parser states it
//! exactly; a general JSONPath crate would accept paths that cannot be patched.

use serde_json::Value;

use super::kind::Kind;

/// Which container a trigger sets the image of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    pub init: bool,
    pub select: Select,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Select {
    Name(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// Namespace of the stream; None means the workload's own.
    pub namespace: Option<String>,
    pub stream: String,
    pub tag: String,
    pub container: ContainerRef,
    pub paused: bool,
}

impl Trigger {
    /// `namespace/stream:tag`, the key of the fan-out index.
    pub fn tag_key(&self, workload_namespace: &str) -> String {
        format!(
            "{}/{}:{}",
            self.namespace.as_deref().unwrap_or(workload_namespace),
            self.stream,
            self.tag
        )
    }
}

/// Why the annotation cannot be used; the message names the trigger and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidTrigger {
    pub message: String,
}

fn invalid(index: usize, problem: String) -> InvalidTrigger {
    InvalidTrigger {
        message: format!("trigger {index}: {problem}"),
    }
}

/// Parses the whole annotation for a workload of `kind`. One bad trigger rejects the annotation,
/// so a typo never leaves half the containers updating.
pub fn parse(annotation: &str, kind: Kind) -> Result<Vec<Trigger>, InvalidTrigger> {
    let list: Vec<Value> = serde_json::from_str(annotation).map_err(|e| InvalidTrigger {
        message: format!(
            "image.openshift.io/triggers is not a JSON list of triggers ({e}); expected [{{\"from\":{{\"kind\":\"ImageStreamTag\",\"name\":\"STREAM:TAG\"}},\"fieldPath\":\"{}containers[?(@.name==\\\"NAME\\\")].image\"}}]",
            kind.pod_spec_prefix()
        ),
    })?;
    list.iter()
        .enumerate()
        .map(|(i, v)| parse_one(i, v, kind))
        .collect()
}

fn parse_one(i: usize, v: &Value, kind: Kind) -> Result<Trigger, InvalidTrigger> {
    let from = v.get("from").filter(|f| f.is_object()).ok_or_else(|| {
        invalid(
            i,
            "from is missing; set from.kind ImageStreamTag and from.name STREAM:TAG".into(),
        )
    })?;
    let kind_field = from.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind_field != "ImageStreamTag" {
        return Err(invalid(
            i,
            format!("from.kind {kind_field:?} is not supported; only ImageStreamTag is"),
        ));
    }
    let name = from.get("name").and_then(Value::as_str).unwrap_or("");
    let (stream, tag) = name
        .split_once(':')
        .filter(|(s, t)| !s.is_empty() && !t.is_empty() && !t.contains(':'))
        .ok_or_else(|| {
            invalid(
                i,
                format!("from.name {name:?} must be STREAM:TAG, e.g. example:latest"),
            )
        })?;
    let namespace = match from.get("namespace") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(invalid(
                i,
                format!("from.namespace must be a string, got {other}"),
            ))
        }
    };
    let field_path = v.get("fieldPath").and_then(Value::as_str).unwrap_or("");
    let container = parse_field_path(field_path, kind).ok_or_else(|| {
        invalid(
            i,
            format!(
                "fieldPath {field_path:?} does not point at a container image of a {}; expected {}containers[?(@.name==\"NAME\")].image, an index such as containers[0], or initContainers",
                kind.name(),
                kind.pod_spec_prefix()
            ),
        )
    })?;
    let paused = match v.get("paused") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(other) => {
            return Err(invalid(
                i,
                format!("paused must be true or false, got {other}"),
            ))
        }
    };
    Ok(Trigger {
        namespace,
        stream: stream.to_string(),
        tag: tag.to_string(),
        container,
        paused,
    })
}

/// `<pod spec prefix>(containers|initContainers)[SELECTOR].image`, SELECTOR an index or
/// `?(@.name=="x")` / `?(@.name='x')`.
pub fn parse_field_path(path: &str, kind: Kind) -> Option<ContainerRef> {
    let rest = path.trim().strip_prefix(kind.pod_spec_prefix())?;
    let (init, rest) = if let Some(r) = rest.strip_prefix("initContainers[") {
        (true, r)
    } else {
        (false, rest.strip_prefix("containers[")?)
    };
    let selector = rest.strip_suffix("].image")?;
    let select = if let Ok(n) = selector.parse::<usize>() {
        Select::Index(n)
    } else {
        let inner = selector.strip_prefix("?(")?.strip_suffix(')')?.trim();
        let op = inner.strip_prefix("@.name")?.trim_start();
        // The seed documentation writes `@.name='web'`; JSONPath proper writes `==`.
        let value = op
            .strip_prefix("==")
            .or_else(|| op.strip_prefix('='))?
            .trim();
        let name = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))?;
        if name.is_empty() || name.contains(['"', '\'']) {
            return None;
        }
        Select::Name(name.to_string())
    };
    Some(ContainerRef { init, select })
}

/// A fieldPath in the canonical form OpenShift itself accepts, for `set triggers`.
pub fn canonical_field_path(kind: Kind, container: &str, init: bool) -> String {
    let list = if init { "initContainers" } else { "containers" };
    format!(
        "{}{list}[?(@.name==\"{container}\")].image",
        kind.pod_spec_prefix()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str, kind: Kind) -> Result<Trigger, String> {
        parse(json, kind)
            .map(|mut v| v.remove(0))
            .map_err(|e| e.message)
    }

    #[test]
    fn seed_form_with_single_quotes_and_string_paused() {
        let t = one(
            r#"[{"from":{"kind":"ImageStreamTag","name":"example:latest","namespace":"myapp"},"fieldPath":"spec.template.spec.containers[?(@.name='web')].image","paused":"false"}]"#,
            Kind::Deployment,
        )
        .unwrap();
        assert_eq!(
            t,
            Trigger {
                namespace: Some("myapp".into()),
                stream: "example".into(),
                tag: "latest".into(),
                container: ContainerRef {
                    init: false,
                    select: Select::Name("web".into())
                },
                paused: false,
            }
        );
        assert_eq!(t.tag_key("other"), "myapp/example:latest");
    }

    #[test]
    fn openshift_form_index_init_containers_and_kinds() {
        let t = one(r#"[{"from":{"kind":"ImageStreamTag","name":"a:b"},"fieldPath":"spec.template.spec.containers[?(@.name==\"web\")].image","paused":true}]"#, Kind::StatefulSet).unwrap();
        assert!(t.paused);
        assert_eq!(t.tag_key("ns"), "ns/a:b");
        let t = one(r#"[{"from":{"kind":"ImageStreamTag","name":"a:b"},"fieldPath":"spec.template.spec.initContainers[1].image"}]"#, Kind::DaemonSet).unwrap();
        assert_eq!(
            t.container,
            ContainerRef {
                init: true,
                select: Select::Index(1)
            }
        );
        let t = one(r#"[{"from":{"kind":"ImageStreamTag","name":"a:b"},"fieldPath":"spec.jobTemplate.spec.template.spec.containers[0].image"}]"#, Kind::CronJob).unwrap();
        assert_eq!(t.container.select, Select::Index(0));
        let t = one(r#"[{"from":{"kind":"ImageStreamTag","name":"a:b"},"fieldPath":"spec.containers[?(@.name == \"x\")].image"}]"#, Kind::Pod).unwrap();
        assert_eq!(t.container.select, Select::Name("x".into()));
        assert_eq!(parse("[]", Kind::Deployment), Ok(vec![]));
    }

    #[test]
    fn rejections_name_the_trigger_and_the_problem() {
        let cases = [
            (r#"{"from":1}"#, Kind::Deployment, "image.openshift.io/triggers is not a JSON list of triggers"),
            (r#"[{"fieldPath":"x"}]"#, Kind::Deployment, "trigger 0: from is missing"),
            (r#"[{"from":{"kind":"DockerImage","name":"a:b"},"fieldPath":"spec.template.spec.containers[0].image"}]"#, Kind::Deployment, "trigger 0: from.kind \"DockerImage\" is not supported; only ImageStreamTag is"),
            (r#"[{"from":{"kind":"ImageStreamTag","name":"example"},"fieldPath":"spec.template.spec.containers[0].image"}]"#, Kind::Deployment, "trigger 0: from.name \"example\" must be STREAM:TAG, e.g. example:latest"),
            (r#"[{"from":{"kind":"ImageStreamTag","name":"a:b"},"fieldPath":"spec.containers[0].image"}]"#, Kind::Deployment, "trigger 0: fieldPath \"spec.containers[0].image\" does not point at a container image of a Deployment"),
            (r#"[{"from":{"kind":"ImageStreamTag","name":"a:b"},"fieldPath":"spec.template.spec.containers[0].name"}]"#, Kind::Deployment, "does not point at a container image"),
            (r#"[{"from":{"kind":"ImageStreamTag","name":"a:b"},"fieldPath":"spec.template.spec.containers[0].image"}]"#, Kind::CronJob, "of a CronJob; expected spec.jobTemplate.spec.template.spec.containers"),
            (r#"[{"from":{"kind":"ImageStreamTag","name":"a:b"},"fieldPath":"spec.template.spec.containers[0].image","paused":"yes"}]"#, Kind::Deployment, "trigger 0: paused must be true or false, got \"yes\""),
            (r#"[{"from":{"kind":"ImageStreamTag","name":"a:b"},"fieldPath":"spec.template.spec.containers[0].image"},{"from":{"kind":"ImageStreamTag","name":":b"},"fieldPath":"spec.template.spec.containers[0].image"}]"#, Kind::Deployment, "trigger 1: from.name \":b\""),
        ];
        for (json, kind, want) in cases {
            let err = parse(json, kind).unwrap_err().message;
            assert!(err.contains(want), "{json}\n got: {err}\nwant: {want}");
        }
    }

    #[test]
    fn field_path_selectors() {
        let k = Kind::Deployment;
        for bad in [
            "spec.template.spec.containers[?(@.name=='')].image",
            "spec.template.spec.containers[?(@.name==web)].image",
            "spec.template.spec.containers[?(@.name!='web')].image",
            "spec.template.spec.containers[-1].image",
            "spec.template.spec.containers[?(@.image=='x')].image",
            "spec.template.spec.volumes[0].image",
        ] {
            assert_eq!(parse_field_path(bad, k), None, "{bad}");
        }
        assert_eq!(
            parse_field_path(&canonical_field_path(k, "web", true), k),
            Some(ContainerRef {
                init: true,
                select: Select::Name("web".into())
            })
        );
    }

    // 2 × 3,000 cases.
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        #[test]
        fn parsing_never_panics(s in ".{0,200}") {
            let _ = parse(&s, Kind::Deployment);
            let _ = parse_field_path(&s, Kind::CronJob);
        }

        #[test]
        fn parsing_structured_garbage_never_panics(name in ".{0,20}", path in ".{0,60}", paused in ".{0,6}") {
            let json = serde_json::json!([{"from": {"kind": "ImageStreamTag", "name": name}, "fieldPath": path, "paused": paused}]).to_string();
            let _ = parse(&json, Kind::Pod);
        }
    }
}
