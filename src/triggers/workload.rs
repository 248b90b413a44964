//! The workload kinds triggers apply to, where each keeps its pod spec, and the pure decision
//! "which container images change" with the minimal patch that makes the change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::DynamicObject;
use serde_json::{json, Value};

use super::annotation::{ContainerRef, Select, Trigger};
pub use super::kind::Kind;

/// One container whose image a trigger changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUpdate {
    /// Index of the trigger asking for it.
    pub trigger: usize,
    pub container: String,
    pub init: bool,
    pub old: String,
    pub new: String,
}

/// A trigger that could not be applied this time, and why (for an Event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The container the fieldPath names does not exist in the pod template.
    NoSuchContainer { trigger: usize, container: String },
}

pub fn pod_spec(kind: Kind, obj: &Value) -> Option<&Value> {
    kind.pod_spec_keys().iter().try_fold(obj, |v, k| v.get(*k))
}

/// The names of the pod template's containers, then its init containers.
pub fn container_names(kind: Kind, obj: &Value) -> Vec<String> {
    let Some(spec) = pod_spec(kind, obj) else {
        return Vec::new();
    };
    ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.get(*k)?.as_array())
        .flatten()
        .filter_map(|c| c.get("name")?.as_str().map(str::to_string))
        .collect()
}

/// (name, image) of the container a reference selects.
pub fn find_container(kind: Kind, obj: &Value, c: &ContainerRef) -> Option<(String, String)> {
    let list = pod_spec(kind, obj)?
        .get(if c.init {
            "initContainers"
        } else {
            "containers"
        })?
        .as_array()?;
    let found = match &c.select {
        Select::Index(i) => list.get(*i)?,
        Select::Name(n) => list
            .iter()
            .find(|x| x.get("name").and_then(Value::as_str) == Some(n))?,
    };
    let name = found.get("name").and_then(Value::as_str)?.to_string();
    let image = found
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Some((name, image))
}

/// The image changes the active triggers ask for: only where the resolved pull spec differs from
/// the container's image. `resolved(i)` is trigger i's pull spec, None when its tag has no image
/// yet or the trigger may not be used (those are skipped quietly here).
pub fn plan(
    kind: Kind,
    obj: &Value,
    triggers: &[Trigger],
    resolved: &dyn Fn(usize) -> Option<String>,
) -> (Vec<ImageUpdate>, Vec<Skip>) {
    let mut updates: Vec<ImageUpdate> = Vec::new();
    let mut skips = Vec::new();
    for (i, t) in triggers.iter().enumerate() {
        if t.paused {
            continue;
        }
        let Some(want) = resolved(i) else { continue };
        let Some((name, image)) = find_container(kind, obj, &t.container) else {
            let container = match &t.container.select {
                Select::Name(n) => n.clone(),
                Select::Index(n) => format!("#{n}"),
            };
            skips.push(Skip::NoSuchContainer {
                trigger: i,
                container,
            });
            continue;
        };
        let duplicate = updates
            .iter()
            .any(|u| u.container == name && u.init == t.container.init);
        if image != want && !duplicate {
            updates.push(ImageUpdate {
                trigger: i,
                container: name,
                init: t.container.init,
                old: image,
                new: want,
            });
        }
    }
    (updates, skips)
}

/// A strategic-merge patch that sets only the changed images (containers merge by name, so no
/// other field or container is touched) and carries the resourceVersion the decision was made
/// on, so a concurrent edit makes it fail with a conflict instead of overwriting blindly.
pub fn patch_body(kind: Kind, obj: &DynamicObject, updates: &[ImageUpdate]) -> Value {
    let list = |init: bool| -> Vec<Value> {
        updates
            .iter()
            .filter(|u| u.init == init)
            .map(|u| json!({"name": u.container, "image": u.new}))
            .collect()
    };
    let mut spec = serde_json::Map::new();
    let containers = list(false);
    if !containers.is_empty() {
        spec.insert("containers".into(), Value::Array(containers));
    }
    let init = list(true);
    if !init.is_empty() {
        spec.insert("initContainers".into(), Value::Array(init));
    }
    let mut body = Value::Object(spec);
    for key in kind.pod_spec_keys().iter().rev() {
        body = json!({ *key: body });
    }
    if let Value::Object(map) = &mut body {
        map.insert(
            "metadata".into(),
            json!({"resourceVersion": obj.metadata.resource_version}),
        );
    }
    body
}

/// Only top-level objects are ever evaluated or patched. An object with a controller owner (a
/// Deployment's ReplicaSet, a ReplicaSet's or Job's Pod, a CronJob's Job) gets its pod template
/// from that owner, which also copies the owner's annotations onto it: writing into the copy would
/// fight the owner's rollout, and reporting on it would repeat the owner's Events. The trigger
/// controller and the admission webhook share this one rule.
pub fn owned_by_controller(owners: &[OwnerReference]) -> bool {
    owners.iter().any(|r| r.controller == Some(true))
}

/// The service account the workload's pods run as, for cross-namespace access checks.
pub fn service_account(kind: Kind, obj: &Value) -> String {
    pod_spec(kind, obj)
        .and_then(|s| {
            s.get("serviceAccountName")
                .or_else(|| s.get("serviceAccount"))
        })
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::annotation::parse;

    fn deployment() -> Value {
        json!({"spec": {"template": {"spec": {
            "containers": [{"name": "web", "image": "old"}, {"name": "side", "image": "s"}],
            "initContainers": [{"name": "init", "image": "i"}],
            "serviceAccountName": "builder"
        }}}})
    }

    fn triggers(json: &str, kind: Kind) -> Vec<Trigger> {
        parse(json, kind).unwrap()
    }

    #[test]
    fn field_paths_resolve_per_kind() {
        let t = |path: &str| ContainerRef {
            init: path.contains("init"),
            select: if path.contains('0') {
                Select::Index(0)
            } else {
                Select::Name("web".into())
            },
        };
        let d = deployment();
        assert_eq!(
            find_container(Kind::Deployment, &d, &t("web")),
            Some(("web".into(), "old".into()))
        );
        assert_eq!(
            find_container(Kind::Deployment, &d, &t("init0")),
            Some(("init".into(), "i".into()))
        );
        let cron = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "c"}]}}}}}});
        assert_eq!(
            find_container(Kind::CronJob, &cron, &t("web")),
            Some(("web".into(), "c".into()))
        );
        assert_eq!(find_container(Kind::Deployment, &cron, &t("web")), None);
        let pod = json!({"spec": {"containers": [{"name": "web", "image": "p"}]}});
        assert_eq!(
            find_container(Kind::Pod, &pod, &t("0")),
            Some(("web".into(), "p".into()))
        );
        assert_eq!(service_account(Kind::Deployment, &d), "builder");
        assert_eq!(service_account(Kind::Pod, &pod), "default");
    }

    #[test]
    fn patches_only_when_the_image_differs() {
        let d = deployment();
        let ts = triggers(
            r#"[{"from":{"kind":"ImageStreamTag","name":"a:b"},"fieldPath":"spec.template.spec.containers[?(@.name=='web')].image"},
                {"from":{"kind":"ImageStreamTag","name":"c:d"},"fieldPath":"spec.template.spec.containers[?(@.name=='side')].image","paused":true},
                {"from":{"kind":"ImageStreamTag","name":"e:f"},"fieldPath":"spec.template.spec.containers[?(@.name=='gone')].image"}]"#,
            Kind::Deployment,
        );
        let (u, skips) = plan(Kind::Deployment, &d, &ts, &|i| Some(format!("img{i}")));
        assert_eq!(
            u,
            vec![ImageUpdate {
                trigger: 0,
                container: "web".into(),
                init: false,
                old: "old".into(),
                new: "img0".into()
            }]
        );
        assert_eq!(
            skips,
            vec![Skip::NoSuchContainer {
                trigger: 2,
                container: "gone".into()
            }]
        );
        let (u, _) = plan(Kind::Deployment, &d, &ts, &|i| {
            (i == 0).then(|| "old".to_string())
        });
        assert!(u.is_empty(), "same image: nothing to do");
        let (u, _) = plan(Kind::Deployment, &d, &ts, &|_| None);
        assert!(u.is_empty(), "no image yet: skipped quietly");
    }

    #[test]
    fn patch_touches_only_image_fields() {
        let mut obj = DynamicObject::new("web", &Kind::CronJob.api_resource());
        obj.metadata.resource_version = Some("7".into());
        let body = patch_body(
            Kind::CronJob,
            &obj,
            &[ImageUpdate {
                trigger: 0,
                container: "web".into(),
                init: false,
                old: "a".into(),
                new: "b".into(),
            }],
        );
        assert_eq!(
            body,
            json!({"metadata": {"resourceVersion": "7"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "b"}]}}}}}})
        );
    }
}
