//! What each mutating command writes, as pure functions of the objects read (the `oc tag`,
//! `oc import-image`, `oc set` mappings of the reference notes §2.13).

use serde_json::Value;

use crate::api::{
    ImageStream, ReferencePolicyType, SourceKind, TagImportPolicy, TagReference,
    TagReferencePolicy, TagSource,
};
use crate::import::spec::source_of;
use crate::triggers::annotation::{canonical_field_path, parse, ContainerRef, Select};
use crate::triggers::workload::Kind;

/// A SOURCE argument of `tag`, after kind inference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Docker(String),
    StreamTag {
        namespace: Option<String>,
        stream: String,
        tag: String,
    },
    StreamImage {
        namespace: Option<String>,
        stream: String,
        digest: String,
    },
}

/// oc's inference: a registry host means DockerImage; else `@id` means ImageStreamImage; else
/// `:tag` means ImageStreamTag; else DockerImage. `forced` is `--source`.
pub fn parse_source(arg: &str, forced: Option<&str>) -> Result<Source, String> {
    let (path, id) = match arg.split_once('@') {
        Some((p, d)) => (p, Some(d)),
        None => (arg, None),
    };
    let first = path.split('/').next().unwrap_or("");
    let has_registry =
        path.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let split_ns = |p: &str| -> (Option<String>, String) {
        match p.rsplit_once('/') {
            Some((ns, s)) => (Some(ns.to_string()), s.to_string()),
            None => (None, p.to_string()),
        }
    };
    let kind = match forced {
        Some("docker" | "DockerImage") => "docker",
        Some("istag" | "ImageStreamTag") => "istag",
        Some("isimage" | "ImageStreamImage") => "isimage",
        Some(other) => {
            return Err(format!(
                "--source must be docker, istag or isimage, not {other:?}"
            ))
        }
        None if has_registry => "docker",
        None if id.is_some() => "isimage",
        None if path.rsplit('/').next().unwrap_or("").contains(':') => "istag",
        None => "docker",
    };
    match kind {
        "docker" => Ok(Source::Docker(arg.to_string())),
        "isimage" => {
            let digest = id.ok_or_else(|| format!("{arg:?} is not STREAM@DIGEST"))?;
            let (namespace, stream) = split_ns(path);
            Ok(Source::StreamImage {
                namespace,
                stream,
                digest: digest.to_string(),
            })
        }
        _ => {
            let (ns_stream, tag) = path
                .rsplit_once(':')
                .ok_or_else(|| format!("{arg:?} is not STREAM:TAG"))?;
            let (namespace, stream) = split_ns(ns_stream);
            Ok(Source::StreamTag {
                namespace,
                stream,
                tag: tag.to_string(),
            })
        }
    }
}

/// `STREAM:TAG` (optionally `NS/STREAM:TAG`) for destinations.
pub fn parse_dest(arg: &str) -> Result<(Option<String>, String, String), String> {
    let (ns_stream, tag) = arg
        .rsplit_once(':')
        .filter(|(s, t)| !s.is_empty() && !t.is_empty())
        .ok_or_else(|| format!("{arg:?} must be STREAM:TAG"))?;
    Ok(match ns_stream.split_once('/') {
        Some((ns, s)) => (Some(ns.to_string()), s.to_string(), tag.to_string()),
        None => (None, ns_stream.to_string(), tag.to_string()),
    })
}

#[derive(Debug, Clone, Default)]
pub struct TagOptions {
    pub alias: bool,
    pub scheduled: bool,
    pub reference: bool,
    pub insecure: bool,
    pub reference_policy: Option<ReferencePolicyType>,
    pub import_mode: Option<crate::api::ImportMode>,
    /// Tagging onto a policy tag: drop its policy keys (it becomes a plain tag).
    pub remove_policy: bool,
    /// Tagging onto a policy tag: keep the policy and hold the tag at the image given.
    pub hold: bool,
}

const HOLD: &str = "policy.imagestream-operator.io/hold";

/// Whether tagging `from` onto `tag` may go ahead: a policy tag is re-pointed only when the
/// user says what becomes of its policy (`oc tag` would silently drop it).
pub fn check_policy_tag(
    stream: &ImageStream,
    tag: &str,
    from: &TagSource,
    opts: &TagOptions,
) -> Result<(), String> {
    let Some(spec) = stream.spec_tag(tag) else {
        return Ok(());
    };
    if crate::policy::keys::keys_of(spec.annotations.as_ref()).is_empty() {
        return Ok(());
    }
    let name = stream.metadata.name.as_deref().unwrap_or_default();
    match (opts.remove_policy, opts.hold) {
        (true, true) => Err("--remove-policy and --hold exclude each other".into()),
        (true, false) => Ok(()),
        (false, true) if pinned_digest(from).is_some() => Ok(()),
        (false, true) => Err(format!(
            "--hold holds {name}:{tag} at an image given by digest (STREAM@sha256:…, REPOSITORY@sha256:…, or another tag of a stream, whose current image is used); {} names none",
            from.name
        )),
        (false, false) => Err(format!(
            "{name}:{tag} follows a tag policy (its policy.imagestream-operator.io/ annotations); add --remove-policy to make it a plain tag following {}, or --hold to keep the policy and hold the tag at this image (`kubectl imagestream rollback {name}:{tag}` holds it at an earlier one)",
            from.name
        )),
    }
}

fn pinned_digest(from: &TagSource) -> Option<&str> {
    from.name
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| d.starts_with("sha256:"))
}

/// Sets (or clears) the policy's hold key of a spec tag.
fn set_hold(tag: &mut TagReference, value: Option<&str>) {
    let annotations = tag.annotations.get_or_insert_with(Default::default);
    match value {
        Some(v) => annotations.insert(HOLD.to_string(), v.to_string()),
        None => annotations.remove(HOLD),
    };
}

/// The `from` a destination tag gets. A permanent tag of another tag is pinned to that tag's
/// current image (as `oc tag` does); an alias keeps tracking it.
pub fn tag_source(
    source: &Source,
    opts: &TagOptions,
    dest_namespace: &str,
    dest_stream: &str,
    source_stream: Option<&ImageStream>,
) -> Result<TagSource, String> {
    let ns_field = |ns: &Option<String>| ns.clone().filter(|n| n != dest_namespace);
    let from = |kind, name: String, namespace| TagSource {
        kind,
        name,
        namespace,
        api_version: None,
    };
    match source {
        Source::Docker(name) => {
            if opts.alias {
                return Err("--alias requires an image stream tag as the source".into());
            }
            Ok(from(SourceKind::DockerImage, name.clone(), None))
        }
        Source::StreamTag {
            namespace,
            stream,
            tag,
        } if opts.alias => {
            if stream != dest_stream || ns_field(namespace).is_some() {
                return Err("cannot set alias across different Image Streams".into());
            }
            if opts.scheduled || opts.insecure {
                return Err("--alias cannot be combined with --scheduled or --insecure".into());
            }
            Ok(from(
                SourceKind::ImageStreamTag,
                format!("{stream}:{tag}"),
                None,
            ))
        }
        Source::StreamTag {
            namespace,
            stream,
            tag,
        } => {
            let ns = namespace.as_deref().unwrap_or(dest_namespace);
            let item = source_stream
                .and_then(|s| s.status_tag(tag))
                .and_then(|t| t.items.first())
                .ok_or_else(|| match source_stream {
                    None => format!("image stream {ns}/{stream} not found"),
                    Some(s) if s.spec_tag(tag).is_none() && s.status_tag(tag).is_none() => {
                        format!("image stream tag {ns}/{stream}:{tag} not found")
                    }
                    Some(_) => format!("{ns}/{stream}:{tag} has no image yet; wait for its import or use --alias to track it"),
                })?;
            if item.image.is_empty() {
                return Ok(from(
                    SourceKind::DockerImage,
                    item.docker_image_reference.clone(),
                    None,
                ));
            }
            Ok(from(
                SourceKind::ImageStreamImage,
                format!("{stream}@{}", item.image),
                ns_field(namespace),
            ))
        }
        Source::StreamImage {
            namespace,
            stream,
            digest,
        } => Ok(from(
            SourceKind::ImageStreamImage,
            format!("{stream}@{digest}"),
            ns_field(namespace),
        )),
    }
}

/// Upserts the spec tag. Docker sources get a re-import request (generation = the stream's next
/// generation), so the controller imports at once.
pub fn set_tag(stream: &mut ImageStream, name: &str, from: TagSource, opts: &TagOptions) {
    let next_generation = stream.reimport_generation();
    let docker = from.kind == SourceKind::DockerImage;
    let tags = stream.spec.tags.get_or_insert_with(Vec::new);
    let existing = tags.iter().position(|t| t.name == name);
    let mut tag = existing
        .map(|i| tags[i].clone())
        .unwrap_or_else(|| TagReference {
            name: name.to_string(),
            ..Default::default()
        });
    if opts.hold {
        // The policy stays, with its seed; the tag holds the image given.
        set_hold(&mut tag, pinned_digest(&from));
        tag.generation = Some(next_generation);
        match existing {
            Some(i) => tags[i] = tag,
            None => tags.push(tag),
        }
        return;
    }
    if opts.remove_policy {
        if let Some(a) = tag.annotations.as_mut() {
            a.retain(|k, _| !k.starts_with(crate::policy::PREFIX));
        }
    }
    tag.from = Some(from);
    tag.reference = opts.reference.then_some(true);
    tag.generation = docker.then_some(next_generation);
    tag.import_policy = (docker && (opts.scheduled || opts.insecure || opts.import_mode.is_some()))
        .then(|| TagImportPolicy {
            scheduled: opts.scheduled.then_some(true),
            insecure: opts.insecure.then_some(true),
            import_mode: opts.import_mode,
        });
    if let Some(p) = opts.reference_policy {
        tag.reference_policy = Some(TagReferencePolicy { type_: p });
    }
    match existing {
        Some(i) => tags[i] = tag,
        None => tags.push(tag),
    }
}

/// The confirmation line `oc tag` prints.
pub fn tag_message(dest: &str, from: &TagSource, opts: &TagOptions) -> String {
    if opts.alias {
        return format!("Tag {dest} set up to track {}.", from.name);
    }
    if opts.scheduled {
        return format!("Tag {dest} set to import {} periodically.", from.name);
    }
    let name = match &from.namespace {
        Some(ns) => format!("{ns}/{}", from.name),
        None => from.name.clone(),
    };
    format!("Tag {dest} set to {name}.")
}

/// Removes the spec tag; the caller also removes the status history. False when absent.
pub fn delete_tag(stream: &mut ImageStream, name: &str) -> bool {
    let spec_had = stream
        .spec
        .tags
        .as_mut()
        .map(|tags| {
            let before = tags.len();
            tags.retain(|t| t.name != name);
            before != tags.len()
        })
        .unwrap_or(false);
    let status_had = stream.status_tag(name).is_some();
    if let Some(status) = stream.status.as_mut() {
        status.tags.retain(|t| t.tag != name);
    }
    spec_had || status_had
}

/// `rollback STREAM:TAG [--to=N|DIGEST]`: pin the tag to an earlier history item (default the
/// previous one), as `oc tag STREAM@sha256:old STREAM:TAG` would. Returns (old, new) references.
/// What a rollback did: the image it left, the image it went back to, and whether the tag's
/// policy now holds it there (a policy tag keeps its seed and rule).
pub struct RolledBack {
    pub from: String,
    pub to: String,
    pub held: bool,
}

pub fn rollback(
    stream: &mut ImageStream,
    tag: &str,
    to: Option<&str>,
) -> Result<RolledBack, String> {
    let name = stream.metadata.name.clone().unwrap_or_default();
    let items = stream
        .status_tag(tag)
        .map(|t| t.items.clone())
        .unwrap_or_default();
    let current = items
        .first()
        .ok_or_else(|| format!("{name}:{tag} has no history to roll back to"))?
        .clone();
    let target = match to {
        None => items.get(1),
        Some(n) if n.parse::<usize>().is_ok() => n.parse::<usize>().ok().and_then(|i| items.get(i)),
        Some(d) => items.iter().find(|i| i.image == d || (!i.image.is_empty() && i.image.trim_start_matches("sha256:").starts_with(d.trim_start_matches("sha256:")))),
    }
    .ok_or_else(|| {
        format!(
            "{name}:{tag} has no history item {}; `kubectl imagestream describe is {name}` lists them (0 is current)",
            to.unwrap_or("1")
        )
    })?
    .clone();
    if target.image.is_empty() {
        return Err(format!(
            "history item {} of {name}:{tag} has no digest to pin",
            target.docker_image_reference
        ));
    }
    let from = TagSource {
        kind: SourceKind::ImageStreamImage,
        name: format!("{name}@{}", target.image),
        namespace: None,
        api_version: None,
    };
    if stream
        .spec_tag(tag)
        .is_some_and(|t| !crate::policy::keys::keys_of(t.annotations.as_ref()).is_empty())
    {
        // A policy tag keeps its seed and rule, and holds at the earlier image until the hold
        // key is removed: rewriting `from` would lose both.
        let opts = TagOptions {
            hold: true,
            ..Default::default()
        };
        set_tag(stream, tag, from, &opts);
        return Ok(RolledBack {
            from: current.docker_image_reference,
            to: target.docker_image_reference,
            held: true,
        });
    }
    let policy = stream
        .spec_tag(tag)
        .and_then(|t| t.reference_policy.clone());
    set_tag(
        stream,
        tag,
        from,
        &TagOptions {
            reference_policy: policy.map(|p| p.type_),
            ..Default::default()
        },
    );
    Ok(RolledBack {
        from: current.docker_image_reference,
        to: target.docker_image_reference,
        held: false,
    })
}

/// `import-image NAME[:TAG]`: ask for an immediate import of one tag (or, with `all`, of every
/// DockerImage tag and the repository). Returns the tags asked for.
pub fn request_import(
    stream: &mut ImageStream,
    tag: Option<&str>,
    all: bool,
) -> Result<Vec<String>, String> {
    let name = stream.metadata.name.clone().unwrap_or_default();
    let next = stream.reimport_generation();
    if all {
        if let Some(a) = stream.metadata.annotations.as_mut() {
            // OpenShift's full re-import: no check annotation means every tag and the repository.
            a.remove(crate::api::DOCKER_REPOSITORY_CHECK);
        }
    }
    let mut asked = Vec::new();
    for t in stream.spec.tags.iter_mut().flatten() {
        if all && t.importable() || Some(t.name.as_str()) == tag {
            if !t.importable() {
                return Err(format!(
                    "tag {name}:{} does not come from a registry (from {:?}) and cannot be re-imported",
                    t.name,
                    t.from.as_ref().map(|f| f.name.as_str()).unwrap_or("")
                ));
            }
            t.generation = Some(next);
            asked.push(t.name.clone());
        }
    }
    if asked.is_empty() && !(all && stream.spec.docker_image_repository.is_some()) {
        return Err(match tag {
            Some(t) => format!(
                "image stream {name} has no tag {t}; pass --from=PULLSPEC --confirm to create it"
            ),
            None => {
                format!("image stream {name} has no tags to import; pass --from=PULLSPEC --confirm")
            }
        });
    }
    Ok(asked)
}

/// Follows same-stream aliases to the tag that actually imports (`oc import-image` does this).
pub fn import_target(stream: &ImageStream, tag: &str) -> String {
    let mut current = tag.to_string();
    // Bounded: an alias cycle is reported by the controller, not followed forever here.
    for _ in 0..16 {
        match stream.spec_tag(&current).and_then(|t| source_of(stream, t)) {
            Some(crate::import::spec::Source::Alias(next)) => current = next,
            _ => break,
        }
    }
    current
}

/// `set triggers KIND/NAME --from-image=STREAM:TAG -c CONTAINER [--manual]`: the new annotation
/// value, replacing any trigger for the same container.
pub fn add_trigger(
    current: Option<&str>,
    kind: Kind,
    from: &str,
    namespace: Option<&str>,
    container: &str,
    paused: bool,
) -> Result<String, String> {
    let mut list = existing_triggers(current)?;
    let path = canonical_field_path(kind, container, false);
    list.retain(|t| !targets(t, kind, container));
    let mut from_obj = serde_json::json!({"kind": "ImageStreamTag", "name": from});
    if let Some(ns) = namespace {
        from_obj["namespace"] = Value::String(ns.to_string());
    }
    list.push(serde_json::json!({"from": from_obj, "fieldPath": path, "paused": paused}));
    let value = Value::Array(list).to_string();
    parse(&value, kind).map_err(|e| e.message)?;
    Ok(value)
}

/// The annotation without the container's trigger (or without any, for `--remove-all`); None
/// when nothing is left.
pub fn remove_trigger(
    current: Option<&str>,
    kind: Kind,
    container: Option<&str>,
) -> Result<Option<String>, String> {
    let mut list = existing_triggers(current)?;
    match container {
        Some(c) => list.retain(|t| !targets(t, kind, c)),
        None => list.clear(),
    }
    Ok((!list.is_empty()).then(|| Value::Array(list).to_string()))
}

fn existing_triggers(current: Option<&str>) -> Result<Vec<Value>, String> {
    match current {
        None => Ok(Vec::new()),
        Some(s) => serde_json::from_str(s).map_err(|e| format!("the existing image.openshift.io/triggers annotation is not a JSON list ({e}); fix or remove it first")),
    }
}

fn targets(trigger: &Value, kind: Kind, container: &str) -> bool {
    let path = trigger
        .get("fieldPath")
        .and_then(Value::as_str)
        .unwrap_or("");
    crate::triggers::annotation::parse_field_path(path, kind)
        == Some(ContainerRef {
            init: false,
            select: Select::Name(container.to_string()),
        })
}

pub fn workload_ref(arg: &str) -> Result<(Kind, String), String> {
    let (k, n) = arg
        .split_once('/')
        .ok_or_else(|| format!("{arg:?} must be KIND/NAME, e.g. deployment/web"))?;
    // kubectl's fully qualified spelling: deployment.apps/web, cronjobs.batch/nightly.
    let k = k.split_once('.').map_or(k, |(kind, _group)| kind);
    let kind = Kind::parse(k)
        .ok_or_else(|| format!("{k:?} is not a workload kind with a pod template"))?;
    Ok((kind, n.to_string()))
}

/// `-c a,b`: every name must be a container (or init container) of the pod template, or the
/// trigger would never fire and nothing would say why.
pub fn check_containers(
    kind: Kind,
    obj: &Value,
    workload: &str,
    names: &str,
) -> Result<(), String> {
    let present = crate::triggers::workload::container_names(kind, obj);
    for name in names.split(',').map(str::trim) {
        if !present.iter().any(|p| p == name) {
            return Err(format!(
                "{workload} has no container {name:?}; its containers: {}",
                present.join(", ")
            ));
        }
    }
    Ok(())
}

pub fn first_container(kind: Kind, obj: &Value) -> Option<String> {
    crate::triggers::workload::find_container(
        kind,
        obj,
        &crate::triggers::annotation::ContainerRef {
            init: false,
            select: crate::triggers::annotation::Select::Index(0),
        },
    )
    .map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_kinds_are_inferred_as_oc_does() {
        assert_eq!(
            parse_source("docker.io/python:3.6.0", None),
            Ok(Source::Docker("docker.io/python:3.6.0".into()))
        );
        assert_eq!(
            parse_source("centos/python-35-centos7", None),
            Ok(Source::Docker("centos/python-35-centos7".into()))
        );
        assert_eq!(
            parse_source("python:3.5", None),
            Ok(Source::StreamTag {
                namespace: None,
                stream: "python".into(),
                tag: "3.5".into()
            })
        );
        assert_eq!(
            parse_source("shared/python:3.5", None),
            Ok(Source::StreamTag {
                namespace: Some("shared".into()),
                stream: "python".into(),
                tag: "3.5".into()
            })
        );
        assert_eq!(
            parse_source("python@sha256:abc", None),
            Ok(Source::StreamImage {
                namespace: None,
                stream: "python".into(),
                digest: "sha256:abc".into()
            })
        );
        assert_eq!(
            parse_source("python:3.5", Some("docker")),
            Ok(Source::Docker("python:3.5".into()))
        );
        assert!(parse_source("x", Some("nope")).is_err());
        assert_eq!(
            parse_dest("python:latest"),
            Ok((None, "python".into(), "latest".into()))
        );
        assert!(parse_dest("python").is_err());
    }

    #[test]
    fn import_follows_same_stream_aliases_only() {
        let s = ImageStream::test("python")
            .tracking("latest", "python:3.6")
            .tracking("3.6", "3.6.1")
            .tag("3.6.1", "python:3.6.1")
            .tracking("other", "ruby:latest");
        assert_eq!(import_target(&s, "latest"), "3.6.1");
        assert_eq!(
            import_target(&s, "other"),
            "other",
            "another stream's tag is not followed"
        );
    }

    #[test]
    fn triggers_are_added_replaced_and_removed() {
        let a = add_trigger(None, Kind::Deployment, "example:latest", None, "web", false).unwrap();
        assert_eq!(
            a,
            r#"[{"fieldPath":"spec.template.spec.containers[?(@.name==\"web\")].image","from":{"kind":"ImageStreamTag","name":"example:latest"},"paused":false}]"#
        );
        let b = add_trigger(Some(&a), Kind::Deployment, "example:v2", None, "web", true).unwrap();
        assert_eq!(parse(&b, Kind::Deployment).unwrap().len(), 1);
        assert!(parse(&b, Kind::Deployment).unwrap()[0].paused);
        assert_eq!(
            remove_trigger(Some(&b), Kind::Deployment, Some("web")),
            Ok(None)
        );
        assert!(add_trigger(Some("nope"), Kind::Deployment, "a:b", None, "web", false).is_err());
        assert!(add_trigger(None, Kind::Deployment, "nocolon", None, "web", false).is_err());
    }
}
