//! What the mutating webhook changes in one object, as a pure function (reference notes §5):
//! image lookup for short names (`lookupPolicy.local`, or `resolve-names: "*"`), and image
//! triggers resolved at creation for Jobs and bare Pods.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ImageStream, RESOLVE_NAMES, TRIGGERS};
use crate::triggers::annotation::{parse, Select};
use crate::triggers::workload::{self, find_container, pod_spec, Kind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

/// Looks a stream up by namespace and name (the controller's in-memory store in production).
pub type Streams<'a> = &'a dyn Fn(&str, &str) -> Option<Arc<ImageStream>>;

#[derive(Debug, Default, PartialEq)]
pub struct Mutation {
    /// RFC 6902 operations.
    pub patch: Vec<Value>,
    pub warnings: Vec<String>,
}

/// `/spec/template/spec` etc.: the JSON pointer of the kind's pod spec.
fn pointer(kind: Kind) -> String {
    format!(
        "/{}",
        kind.pod_spec_prefix()
            .trim_end_matches('.')
            .replace('.', "/")
    )
}

fn annotation<'a>(meta: &'a Value, key: &str) -> Option<&'a str> {
    meta.get("annotations")?.get(key)?.as_str()
}

/// `resolve-names: "*"` on the object or on its pod template.
fn resolve_all(kind: Kind, obj: &Value) -> bool {
    let template_meta = match kind {
        Kind::Pod => None,
        Kind::CronJob => obj.pointer("/spec/jobTemplate/spec/template/metadata"),
        _ => obj.pointer("/spec/template/metadata"),
    };
    [obj.get("metadata"), template_meta]
        .into_iter()
        .flatten()
        .any(|m| annotation(m, RESOLVE_NAMES) == Some("*"))
}

fn owned_by_controller(obj: &Value) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(|refs| Vec::<OwnerReference>::deserialize(refs).ok())
        .is_some_and(|refs| workload::owned_by_controller(&refs))
}

/// The cheap check that lets most admissions return without looking anything up.
pub fn may_need_work(kind: Kind, obj: &Value) -> bool {
    if resolve_all(kind, obj)
        || obj
            .get("metadata")
            .and_then(|m| annotation(m, TRIGGERS))
            .is_some()
    {
        return true;
    }
    let Some(spec) = pod_spec(kind, obj) else {
        return false;
    };
    ["containers", "initContainers"].iter().any(|list| {
        spec.get(list).and_then(Value::as_array).is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("image")
                    .and_then(Value::as_str)
                    .is_some_and(|i| !i.contains('/') && !i.contains('@'))
            })
        })
    })
}

/// What image lookup needs to decide one container: the object's kind, the operation, the old
/// object on update, the namespace, whether resolve-names asks for every image, and the streams.
struct Lookups<'a> {
    kind: Kind,
    op: Operation,
    old: Option<&'a Value>,
    namespace: &'a str,
    all: bool,
    annotation_changed: bool,
    streams: Streams<'a>,
}

impl Lookups<'_> {
    /// (init, index, new image) for every container whose image a stream resolves differently;
    /// on update, only containers whose image (or the resolve-names annotation) changed.
    fn rewrites(&self, spec: &Value) -> Vec<(bool, usize, String)> {
        let mut rewritten = Vec::new();
        for (init, list) in [(false, "containers"), (true, "initContainers")] {
            let containers = spec
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            for (i, c) in containers.enumerate() {
                let Some(image) = c.get("image").and_then(Value::as_str) else {
                    continue;
                };
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                if self.op == Operation::Update
                    && !self.annotation_changed
                    && self.unchanged(init, name, image)
                {
                    continue;
                }
                if let Some(new) = lookup(self.namespace, image, self.all, self.streams) {
                    if new != image {
                        rewritten.push((init, i, new));
                    }
                }
            }
        }
        rewritten
    }

    /// Whether the old object had this container with this image.
    fn unchanged(&self, init: bool, name: &str, image: &str) -> bool {
        let container = crate::triggers::annotation::ContainerRef {
            init,
            select: Select::Name(name.to_string()),
        };
        self.old
            .and_then(|o| find_container(self.kind, o, &container))
            .is_some_and(|(_, old_image)| old_image == image)
    }
}

pub fn mutate(
    kind: Kind,
    op: Operation,
    obj: &Value,
    old: Option<&Value>,
    streams: Streams,
) -> Mutation {
    let mut m = Mutation::default();
    if owned_by_controller(obj) || (op == Operation::Update && kind.template_immutable()) {
        return m;
    }
    let namespace = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let all = resolve_all(kind, obj);
    let annotation_changed = old.is_some_and(|o| resolve_all(kind, o) != all);
    let Some(spec) = pod_spec(kind, obj) else {
        return m;
    };
    let lookups = Lookups {
        kind,
        op,
        old,
        namespace,
        all,
        annotation_changed,
        streams,
    };
    let mut rewritten = lookups.rewrites(spec);
    if op == Operation::Create && matches!(kind, Kind::Job | Kind::Pod) {
        triggers_at_creation(
            kind,
            obj,
            namespace,
            streams,
            &mut rewritten,
            &mut m.warnings,
        );
    }
    let base = pointer(kind);
    for (init, i, image) in rewritten {
        let list = if init { "initContainers" } else { "containers" };
        m.patch.push(
            json!({"op": "replace", "path": format!("{base}/{list}/{i}/image"), "value": image}),
        );
    }
    m
}

/// What creating `obj` would rewrite by image lookup alone: (init, index, new image). The lookup
/// audit holds it against objects that were stored without passing the webhook.
pub fn lookups_at_creation(
    kind: Kind,
    obj: &Value,
    streams: Streams,
) -> Vec<(bool, usize, String)> {
    if owned_by_controller(obj) {
        return Vec::new();
    }
    let Some(spec) = pod_spec(kind, obj) else {
        return Vec::new();
    };
    let lookups = Lookups {
        kind,
        op: Operation::Create,
        old: None,
        namespace: obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(""),
        all: resolve_all(kind, obj),
        annotation_changed: false,
        streams,
    };
    lookups.rewrites(spec)
}

/// The pull spec a short name stands for, or None to leave it alone.
fn lookup(namespace: &str, image: &str, all: bool, streams: Streams) -> Option<String> {
    if image.contains('@') {
        return None;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if !all && last.len() != image.len() {
        return None;
    }
    let (name, tag) = match last.split_once(':') {
        Some((n, t)) => (n, t),
        None => (last, "latest"),
    };
    let stream = streams(namespace, name)?;
    if !all && !stream.spec.lookup_policy.as_ref().is_some_and(|p| p.local) {
        return None;
    }
    stream.pull_spec(tag).or_else(|| {
        let repo = stream.status.as_ref()?.docker_image_repository.clone();
        (!repo.is_empty()).then(|| format!("{repo}:{tag}"))
    })
}

fn triggers_at_creation(
    kind: Kind,
    obj: &Value,
    namespace: &str,
    streams: Streams,
    rewritten: &mut Vec<(bool, usize, String)>,
    warnings: &mut Vec<String>,
) {
    let Some(annotation) = obj.get("metadata").and_then(|m| annotation(m, TRIGGERS)) else {
        return;
    };
    let triggers = match parse(annotation, kind) {
        Ok(t) => t,
        Err(e) => {
            warnings.push(format!(
                "image.openshift.io/triggers ignored: {}",
                e.message
            ));
            return;
        }
    };
    let Some(spec) = pod_spec(kind, obj) else {
        return;
    };
    for (n, t) in triggers.iter().enumerate().filter(|(_, t)| !t.paused) {
        let source_ns = t.namespace.as_deref().unwrap_or(namespace);
        if source_ns != namespace {
            warnings.push(format!("trigger {n}: streams in other namespaces ({source_ns}) are not resolved at creation; the image is left as written"));
            continue;
        }
        let list = if t.container.init {
            "initContainers"
        } else {
            "containers"
        };
        let containers = spec
            .get(list)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let index = match &t.container.select {
            Select::Index(i) => (*i < containers.len()).then_some(*i),
            Select::Name(name) => containers
                .iter()
                .position(|c| c.get("name").and_then(Value::as_str) == Some(name)),
        };
        let Some(index) = index else {
            warnings.push(format!(
                "trigger {n}: the pod template has no such container; correct the fieldPath"
            ));
            continue;
        };
        match streams(namespace, &t.stream).and_then(|s| s.pull_spec(&t.tag)) {
            Some(image) => {
                rewritten.retain(|(init, i, _)| !(*init == t.container.init && *i == index));
                rewritten.push((t.container.init, index, image));
            }
            None => warnings.push(format!(
                "trigger {n}: {namespace}/{}:{} has no image yet; the {} is admitted with the image as written",
                t.stream,
                t.tag,
                kind.name()
            )),
        }
    }
}
