//! Tag resolution: (stream, registry results, other streams, now) -> new status. Pure, so every
//! OpenShift rule is unit-tested without a cluster or a registry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::history::{add_tag_event, cap_history, failure_condition, set_failure};
use super::plan::Cause;
use super::spec::{fingerprint, source_of, Source};
use crate::api::{
    reason, ImageDetails, ImageStream, ImageStreamStatus, NamedTagEventList,
    RepositoryImportStatus, SourceKind, TagEvent, TagPolicyStatus, TagReference, TagSource,
};
use crate::registry::{RegistryError, ResolvedImage};

/// The registry's answer for one tag, and why it was asked.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub cause: Cause,
    pub result: Result<ResolvedImage, RegistryError>,
    /// For a policy tag: what its evaluation chose and why (`result` is the chosen tag's import).
    pub policy: Option<TagPolicyStatus>,
}

/// The listing step of a whole-repository import; the per-tag results are in `outcomes`.
#[derive(Debug, Clone)]
pub struct RepositoryOutcome {
    pub from: String,
    /// Tags beyond the bulk-import limit, or why the repository could not be listed.
    pub listed: Result<Vec<String>, RegistryError>,
}

/// Looks up another stream by namespace and name (the controller's cache in production).
pub type StreamLookup<'a> = &'a dyn Fn(&str, &str) -> Option<Arc<ImageStream>>;

pub struct Input<'a> {
    pub stream: &'a ImageStream,
    pub outcomes: &'a BTreeMap<String, Outcome>,
    pub streams: StreamLookup<'a>,
    pub now: Time,
    /// Host of a pull-through registry; makes `status.dockerImageRepository` `<host>/<ns>/<name>`.
    pub local_registry: Option<&'a str>,
    /// History items kept per tag; 0 keeps everything.
    pub max_history: usize,
    /// Whether `from.namespace` may name another namespace (the writer's access is not verified).
    pub allow_cross_namespace: bool,
    /// Present when this reconcile imported `spec.dockerImageRepository`.
    pub repository: Option<&'a RepositoryOutcome>,
}

/// What changed for one tag, for Events and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagChange {
    Imported {
        tag: String,
        reference: String,
    },
    Failed {
        tag: String,
        reason: String,
        message: String,
    },
}

pub struct Resolution {
    pub status: ImageStreamStatus,
    pub changes: Vec<TagChange>,
}

pub fn resolve(input: &Input) -> Resolution {
    let stream = input.stream;
    let old = stream.status.clone().unwrap_or_default();
    let mut tags: BTreeMap<String, NamedTagEventList> = old
        .tags
        .iter()
        .map(|t| (t.tag.clone(), t.clone()))
        .collect();
    let generation = stream.metadata.generation.unwrap_or(1);

    let mut aliases = Vec::new();
    for spec_tag in stream.spec_tags() {
        let Some(source) = source_of(stream, spec_tag) else {
            continue;
        };
        let entry = tags
            .entry(spec_tag.name.clone())
            .or_insert_with(|| NamedTagEventList {
                tag: spec_tag.name.clone(),
                ..Default::default()
            });
        let ctx = TagCtx {
            input,
            spec_tag,
            generation,
        };
        match source {
            Source::Alias(target) => aliases.push((spec_tag.name.clone(), target)),
            Source::Docker(name) if spec_tag.is_reference() => ctx.reference(entry, name),
            Source::Docker(_) => ctx.imported(entry),
            Source::StreamTag {
                namespace,
                stream: s,
                tag,
            } => ctx.copy_tag(entry, &namespace, &s, &tag),
            Source::StreamImage {
                namespace,
                stream: s,
                id,
            } => ctx.copy_image(entry, &namespace, &s, &id, &old),
            Source::Invalid(message) => ctx.fail(entry, reason::INVALID, message),
        }
    }
    repository_tags(input, &mut tags, generation);
    follow_aliases(&mut tags, &aliases, generation, &input.now);

    let mut status = ImageStreamStatus {
        docker_image_repository: docker_image_repository(stream, input.local_registry),
        public_docker_image_repository: old.public_docker_image_repository.clone(),
        tags: tags
            .into_values()
            .filter(|t| !t.items.is_empty() || !t.conditions.is_empty())
            .collect(),
        images: Vec::new(),
        repository: repository_status(input, &old),
        // The size budget, applied after this, owns `StatusTrimmed`; others are kept.
        conditions: old.conditions.clone(),
        tag_summary: None,
    };
    for tag in &mut status.tags {
        cap_history(tag, input.max_history);
    }
    status.images = current_images(&status, input.outcomes, &old);
    status.tag_summary = status.summarize_tags();
    let changes = diff(&old, &status);
    Resolution { status, changes }
}

struct TagCtx<'a> {
    input: &'a Input<'a>,
    spec_tag: &'a TagReference,
    generation: i64,
}

impl TagCtx<'_> {
    fn fingerprint(&self) -> String {
        fingerprint(self.input.stream, self.spec_tag)
    }

    fn unchanged(&self, entry: &NamedTagEventList) -> bool {
        entry.observed_spec.as_deref() == Some(&self.fingerprint())
            && super::spec::requested_generation(self.spec_tag, self.generation)
                .is_none_or(|g| g <= entry.observed_generation())
    }

    fn event(&self, reference: String, image: String) -> TagEvent {
        TagEvent {
            created: self.input.now.clone(),
            docker_image_reference: reference,
            image,
            generation: self.generation,
        }
    }

    fn fail(&self, entry: &mut NamedTagEventList, reason: &str, message: String) {
        set_failure(
            entry,
            failure_condition(reason, message, self.generation, &self.input.now),
        );
    }

    /// `reference: true`: recorded verbatim when the spec tag is written, never imported.
    fn reference(&self, entry: &mut NamedTagEventList, name: String) {
        if self.unchanged(entry) && !entry.items.is_empty() {
            return;
        }
        add_tag_event(entry, self.event(name, String::new()));
        entry.observed_spec = Some(self.fingerprint());
    }

    fn imported(&self, entry: &mut NamedTagEventList) {
        let Some(outcome) = self.input.outcomes.get(&self.spec_tag.name) else {
            return;
        };
        entry.observed_spec = Some(self.fingerprint());
        entry.policy = outcome.policy.clone().map(|mut policy| {
            // The selection's image, as imported (a held tag's stays what it was).
            if let (Some(selected), Ok(image)) = (policy.selected.as_mut(), &outcome.result) {
                selected.digest = Some(image.digest.clone());
            }
            policy
        });
        match &outcome.result {
            Ok(image) => {
                let mut event =
                    self.event(image.docker_image_reference.clone(), image.digest.clone());
                let same = entry.items.first().is_some_and(|i| {
                    i.docker_image_reference == event.docker_image_reference
                        && i.image == event.image
                });
                if same && outcome.cause.is_background() {
                    event.generation = entry.items[0].generation;
                }
                add_tag_event(entry, event);
                entry.manifest_list_digest = image.manifest_list.clone();
                entry.conditions.clear();
            }
            Err(e) => self.fail(entry, e.reason(), e.to_string()),
        }
    }

    fn cross_namespace_denied(&self, entry: &mut NamedTagEventList, namespace: &str) -> bool {
        let own = self
            .input
            .stream
            .metadata
            .namespace
            .as_deref()
            .unwrap_or("");
        if namespace == own || self.input.allow_cross_namespace {
            return false;
        }
        self.fail(
            entry,
            reason::FORBIDDEN,
            format!(
                "tags from image streams in namespace {namespace:?} are not allowed: the operator runs without --allow-cross-namespace-sources; copy the image with a DockerImage source instead"
            ),
        );
        true
    }

    /// A tag of another stream: copied once, when the spec tag is (re)written. Until the source
    /// tag has an image nothing is recorded, and the copy happens as soon as it gets one.
    fn copy_tag(&self, entry: &mut NamedTagEventList, namespace: &str, stream: &str, tag: &str) {
        if self.unchanged(entry) || self.cross_namespace_denied(entry, namespace) {
            return;
        }
        let Some(source) = (self.input.streams)(namespace, stream) else {
            let message = format!(
                "image stream {namespace}/{stream} not found: create it or correct spec.tags[{}].from.name",
                self.spec_tag.name
            );
            return self.fail(entry, reason::NOT_FOUND, message);
        };
        let Some(current) = source.status_tag(tag).and_then(|t| t.items.first()) else {
            return;
        };
        let mut event = current.clone();
        event.generation = self.generation;
        add_tag_event(entry, event);
        entry.observed_spec = Some(self.fingerprint());
    }

    /// An image by digest or unique prefix, searched across the whole history of a stream.
    fn copy_image(
        &self,
        entry: &mut NamedTagEventList,
        namespace: &str,
        stream: &str,
        id: &str,
        own: &ImageStreamStatus,
    ) {
        if self.unchanged(entry) || self.cross_namespace_denied(entry, namespace) {
            return;
        }
        let own_stream = self.input.stream.metadata.name.as_deref() == Some(stream)
            && self.input.stream.metadata.namespace.as_deref() == Some(namespace);
        let fetched = if own_stream {
            None
        } else {
            (self.input.streams)(namespace, stream)
        };
        let history = match (&fetched, own_stream) {
            (_, true) => own,
            (Some(s), false) => match &s.status {
                Some(status) => status,
                None => &ImageStreamStatus::default(),
            },
            (None, false) => {
                let message = format!(
                    "image stream {namespace}/{stream} not found: create it or correct spec.tags[{}].from.name",
                    self.spec_tag.name
                );
                return self.fail(entry, reason::NOT_FOUND, message);
            }
        };
        let matches = find_images(history, id);
        match matches.len() {
            0 => self.fail(
                entry,
                reason::NOT_FOUND,
                format!("no image matching {id:?} in the history of image stream {namespace}/{stream}: use a digest from `kubectl imagestream describe is {stream}`"),
            ),
            1 => {
                let found = matches[0];
                add_tag_event(entry, self.event(found.docker_image_reference.clone(), found.image.clone()));
                entry.observed_spec = Some(self.fingerprint());
            }
            n => self.fail(
                entry,
                reason::CONFLICT,
                format!("multiple images ({n}) match the prefix {id:?} in image stream {namespace}/{stream}: use a longer prefix or the full digest"),
            ),
        }
    }
}

/// Tags a whole-repository import found that have no spec tag: recorded like imported tags of
/// a `DockerImage` source `<repository>:<tag>`, without writing spec (the stream's owner keeps it).
fn repository_tags(input: &Input, tags: &mut BTreeMap<String, NamedTagEventList>, generation: i64) {
    let Some(repo) = input.repository else {
        return;
    };
    for name in input.outcomes.keys() {
        if input.stream.spec_tag(name).is_some() {
            continue;
        }
        let synthetic = TagReference {
            name: name.clone(),
            from: Some(TagSource {
                kind: SourceKind::DockerImage,
                name: format!("{}:{name}", repo.from),
                namespace: None,
                api_version: None,
            }),
            ..Default::default()
        };
        let entry = tags
            .entry(name.clone())
            .or_insert_with(|| NamedTagEventList {
                tag: name.clone(),
                ..Default::default()
            });
        TagCtx {
            input,
            spec_tag: &synthetic,
            generation,
        }
        .imported(entry);
    }
}

fn repository_status(input: &Input, old: &ImageStreamStatus) -> Option<RepositoryImportStatus> {
    let Some(repo) = input.repository else {
        // Kept while the stream still names a repository; dropped once it no longer does.
        return old.repository.clone().filter(|_| {
            input
                .stream
                .spec
                .docker_image_repository
                .as_deref()
                .is_some_and(|r| !r.is_empty())
        });
    };
    let additional_tags = match &repo.listed {
        Ok(rest) => rest.clone(),
        Err(e) => {
            return Some(RepositoryImportStatus {
                from: repo.from.clone(),
                status: "Failure".into(),
                reason: Some(e.reason().into()),
                message: Some(e.to_string()),
                additional_tags: Vec::new(),
            })
        }
    };
    let failed = input
        .outcomes
        .iter()
        .filter(|(tag, _)| input.stream.spec_tag(tag).is_none())
        .filter(|(_, o)| o.result.is_err())
        .count();
    let (status, reason, message) = match failed {
        0 => ("Success", None, None),
        1 => (
            "Failure",
            Some(reason::IMPORT_FAILED),
            Some("one of the images from this repository failed to import".to_string()),
        ),
        n => (
            "Failure",
            Some(reason::IMPORT_FAILED),
            Some(format!(
                "{n} of the images from this repository failed to import"
            )),
        ),
    };
    Some(RepositoryImportStatus {
        from: repo.from.clone(),
        status: status.into(),
        reason: reason.map(str::to_string),
        message,
        additional_tags,
    })
}

/// One metadata entry per digest some tag currently points at: fresh from this reconcile's
/// registry answers, else carried over. History items keep no metadata, which keeps status small.
fn current_images(
    status: &ImageStreamStatus,
    outcomes: &BTreeMap<String, Outcome>,
    old: &ImageStreamStatus,
) -> Vec<ImageDetails> {
    let fresh: BTreeMap<&str, &ImageDetails> = outcomes
        .values()
        .filter_map(|o| o.result.as_ref().ok()?.details.as_ref())
        .map(|d| (d.image.as_str(), d))
        .collect();
    let current: BTreeSet<&str> = status
        .tags
        .iter()
        .filter_map(|t| t.items.first())
        .map(|i| i.image.as_str())
        .filter(|i| !i.is_empty())
        .collect();
    current
        .into_iter()
        .filter_map(|digest| {
            fresh
                .get(digest)
                .map(|d| (*d).clone())
                .or_else(|| old.images.iter().find(|d| d.image == digest).cloned())
        })
        .collect()
}

/// Distinct images whose digest equals `id` or starts with it (with or without `sha256:`).
fn find_images<'a>(status: &'a ImageStreamStatus, id: &str) -> Vec<&'a TagEvent> {
    let mut seen = BTreeSet::new();
    status
        .tags
        .iter()
        .flat_map(|t| &t.items)
        .filter(|i| !i.image.is_empty())
        .filter(|i| {
            i.image.starts_with(id)
                || i.image
                    .split_once(':')
                    .is_some_and(|(_, hex)| hex.starts_with(id))
        })
        .filter(|i| seen.insert(i.image.clone()))
        .collect()
}

/// Tracking tags take their source's items[0] verbatim. Level-driven (compare, then copy), so a
/// restart or a missed event cannot leave an alias behind; chains are followed in order and
/// cycles are reported instead of looped.
fn follow_aliases(
    tags: &mut BTreeMap<String, NamedTagEventList>,
    aliases: &[(String, String)],
    generation: i64,
    now: &Time,
) {
    let targets: BTreeMap<&str, &str> = aliases
        .iter()
        .map(|(a, t)| (a.as_str(), t.as_str()))
        .collect();
    for (alias, _) in aliases {
        let mut chain = vec![alias.as_str()];
        let mut cursor = alias.as_str();
        while let Some(next) = targets.get(cursor) {
            if chain.contains(next) {
                chain.push(next);
                let message = format!(
                    "tag {alias} follows a cycle of tracking tags ({}): point one of them at an image",
                    chain.join(" -> ")
                );
                if let Some(entry) = tags.get_mut(alias) {
                    set_failure(
                        entry,
                        failure_condition(reason::INVALID, message, generation, now),
                    );
                }
                break;
            }
            chain.push(next);
            cursor = next;
        }
    }
    // Resolve from the end of each chain so a chain of any length settles in one pass.
    let mut order: Vec<(&str, usize)> = aliases
        .iter()
        .map(|(a, _)| (a.as_str(), chain_depth(a, &targets)))
        .collect();
    order.sort_by_key(|(_, depth)| *depth);
    for (alias, depth) in order {
        if depth == usize::MAX {
            continue;
        }
        let Some(target) = targets.get(alias) else {
            continue;
        };
        let Some(current) = tags.get(*target).and_then(|t| t.items.first()).cloned() else {
            continue;
        };
        if let Some(entry) = tags.get_mut(alias) {
            add_tag_event(entry, current);
        }
    }
}

fn chain_depth(alias: &str, targets: &BTreeMap<&str, &str>) -> usize {
    let mut depth = 0;
    let mut cursor = alias;
    while let Some(next) = targets.get(cursor) {
        depth += 1;
        if depth > targets.len() {
            return usize::MAX;
        }
        cursor = next;
    }
    depth
}

fn docker_image_repository(stream: &ImageStream, local_registry: Option<&str>) -> String {
    match local_registry.filter(|h| !h.is_empty()) {
        Some(host) => format!(
            "{}/{}/{}",
            host.trim_end_matches('/'),
            stream.metadata.namespace.as_deref().unwrap_or(""),
            stream.metadata.name.as_deref().unwrap_or("")
        ),
        None => stream
            .spec
            .docker_image_repository
            .clone()
            .unwrap_or_default(),
    }
}

fn diff(old: &ImageStreamStatus, new: &ImageStreamStatus) -> Vec<TagChange> {
    let mut changes = Vec::new();
    for tag in &new.tags {
        let before = old.tags.iter().find(|t| t.tag == tag.tag);
        let head = |t: Option<&NamedTagEventList>| {
            t.and_then(|t| t.items.first())
                .map(|i| (i.docker_image_reference.clone(), i.image.clone()))
        };
        if head(Some(tag)) != head(before) {
            if let Some(item) = tag.items.first() {
                changes.push(TagChange::Imported {
                    tag: tag.tag.clone(),
                    reference: item.docker_image_reference.clone(),
                });
            }
        }
        let cond = tag.conditions.first();
        if cond.is_some() && before.map(|b| b.conditions.first()) != Some(cond) {
            let c = &tag.conditions[0];
            changes.push(TagChange::Failed {
                tag: tag.tag.clone(),
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
            });
        }
    }
    changes
}
