//! One way to build an `ImageStream` in tests, read left to right as the YAML would be:
//! `ImageStream::test("web").tag("v1", "reg/app:v1").scheduled().checked()`.
//!
//! Compiled for this crate's tests and, through the `test-fixtures` feature the crate enables on
//! itself as a dev-dependency, for `tests/` and `benches/`; never into the operator.

use std::collections::BTreeMap;

use super::{
    ImageLookupPolicy, ImageStream, ImageStreamSpec, ImageStreamStatus, NamedTagEventList,
    SourceKind, TagEvent, TagImportPolicy, TagReference, TagSource, DOCKER_REPOSITORY_CHECK,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

impl ImageStream {
    /// A stream in namespace `demo`, generation 1, with a UID derived from its name, no tags
    /// and no status: what the API server hands over right after a `kubectl apply`.
    pub fn test(name: &str) -> Self {
        let mut s = ImageStream::new(name, ImageStreamSpec::default());
        s.metadata.namespace = Some("demo".into());
        s.metadata.generation = Some(1);
        s.metadata.uid = Some(format!("uid-{name}"));
        s
    }

    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.metadata.namespace = Some(namespace.into());
        self
    }

    pub fn with_uid(mut self, uid: &str) -> Self {
        self.metadata.uid = Some(uid.into());
        self
    }

    pub fn at_generation(mut self, generation: i64) -> Self {
        self.metadata.generation = Some(generation);
        self
    }

    pub fn at_version(mut self, version: &str) -> Self {
        self.metadata.resource_version = Some(version.into());
        self
    }

    /// The repository-check annotation an earlier import left.
    pub fn checked(self) -> Self {
        self.annotated(DOCKER_REPOSITORY_CHECK, "2026-01-01T00:00:00Z")
    }

    pub fn annotated(mut self, key: &str, value: &str) -> Self {
        self.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    /// `spec.lookupPolicy.local: true`.
    pub fn local_lookup(mut self) -> Self {
        self.spec.lookup_policy = Some(ImageLookupPolicy { local: true });
        self
    }

    /// A tag importing `from`, an external image reference (`kind: DockerImage`).
    pub fn tag(self, name: &str, from: &str) -> Self {
        self.with_tag(TagReference::test(name, SourceKind::DockerImage, from))
    }

    /// A tag following another stream's tag (`kind: ImageStreamTag`, `stream:tag`).
    pub fn tracking(self, name: &str, from: &str) -> Self {
        self.with_tag(TagReference::test(name, SourceKind::ImageStreamTag, from))
    }

    /// A tag pinned to one image of another stream (`kind: ImageStreamImage`, `stream@digest`).
    pub fn pinned(self, name: &str, from: &str) -> Self {
        self.with_tag(TagReference::test(name, SourceKind::ImageStreamImage, from))
    }

    pub fn with_tag(mut self, tag: TagReference) -> Self {
        self.spec.tags.get_or_insert_with(Vec::new).push(tag);
        self
    }

    /// Changes the tag added last.
    pub fn last_tag(mut self, change: impl FnOnce(&mut TagReference)) -> Self {
        if let Some(tag) = self.spec.tags.as_mut().and_then(|t| t.last_mut()) {
            change(tag);
        }
        self
    }

    /// The tag added last is re-imported on schedule.
    pub fn scheduled(self) -> Self {
        self.last_tag(|t| {
            t.import_policy
                .get_or_insert_with(TagImportPolicy::default)
                .scheduled = Some(true);
        })
    }

    /// The tag added last names its source in another namespace.
    pub fn from_namespace(self, namespace: &str) -> Self {
        self.last_tag(|t| {
            if let Some(from) = t.from.as_mut() {
                from.namespace = Some(namespace.into());
            }
        })
    }

    pub fn with_status(mut self, status: ImageStreamStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// `status.dockerImageRepository`: where the integrated registry serves the stream.
    pub fn with_repository(mut self, repository: &str) -> Self {
        self.status
            .get_or_insert_with(ImageStreamStatus::default)
            .docker_image_repository = repository.into();
        self
    }

    /// Status history for `tag`: `reference` (a digest pull spec) is its current image.
    pub fn imported(mut self, tag: &str, reference: &str) -> Self {
        let image = reference
            .rsplit_once('@')
            .map_or(reference, |(_, digest)| digest);
        let event = TagEvent {
            created: Time(jiff::Timestamp::UNIX_EPOCH),
            docker_image_reference: reference.into(),
            image: image.into(),
            generation: self.metadata.generation.unwrap_or(1),
        };
        let status = self.status.get_or_insert_with(ImageStreamStatus::default);
        match status.tags.iter_mut().find(|t| t.tag == tag) {
            Some(list) => list.items.insert(0, event),
            None => status.tags.push(NamedTagEventList {
                tag: tag.into(),
                items: vec![event],
                ..Default::default()
            }),
        }
        self
    }
}

impl TagReference {
    /// `importPolicy.insecure: true`.
    pub fn insecure_import(mut self) -> Self {
        self.import_policy
            .get_or_insert_with(TagImportPolicy::default)
            .insecure = Some(true);
        self
    }

    pub fn test(name: &str, kind: SourceKind, from: &str) -> Self {
        TagReference {
            name: name.into(),
            from: Some(TagSource {
                kind,
                name: from.into(),
                namespace: None,
                api_version: None,
            }),
            ..Default::default()
        }
    }
}
