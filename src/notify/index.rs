//! `registry/repository:tag` → the spec tags importing it: the notification receiver's one
//! lookup, kept equal to the stream cache. Pure: no cluster, no HTTP.

use std::collections::{BTreeSet, HashMap};

use kube::ResourceExt;

use crate::api::index::Index;
use crate::api::{ImageStream, SourceKind};
use crate::registry::ImageRef;

/// One spec tag to re-import.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub namespace: String,
    pub stream: String,
    pub tag: String,
}

/// `registry/repository:tag` as the index keys it.
pub fn key(r: &ImageRef) -> String {
    format!(
        "{}/{}:{}",
        r.registry(),
        r.repository(),
        r.tag().unwrap_or("latest")
    )
}

/// `registry/repository:tag` → the spec tags importing it (DockerImage, not `reference`, not
/// pinned by digest), kept up to date from the stream watch; a notification costs one lookup.
#[derive(Default)]
pub struct TargetIndex {
    by_key: HashMap<String, BTreeSet<Target>>,
    by_stream: HashMap<(String, String), Vec<String>>,
}

impl Index<ImageStream> for TargetIndex {
    /// Records (or re-records) the importable, tag-following spec tags of one stream.
    fn apply(&mut self, s: &ImageStream) {
        let id = (s.namespace().unwrap_or_default(), s.name_any());
        self.remove(&id.0, &id.1);
        let mut keys = Vec::new();
        for t in s.spec_tags().iter().filter(|t| t.importable()) {
            let Some(from) = t
                .from
                .as_ref()
                .filter(|f| f.kind == SourceKind::DockerImage)
            else {
                continue;
            };
            let Ok(r) = ImageRef::parse(&from.name) else {
                continue;
            };
            if r.is_digest_pinned() {
                continue;
            }
            let k = key(&r);
            self.by_key.entry(k.clone()).or_default().insert(Target {
                namespace: id.0.clone(),
                stream: id.1.clone(),
                tag: t.name.clone(),
            });
            keys.push(k);
        }
        self.by_stream.insert(id, keys);
    }

    fn delete(&mut self, s: &ImageStream) {
        self.remove(&s.namespace().unwrap_or_default(), &s.name_any());
    }
}

impl TargetIndex {
    fn remove(&mut self, namespace: &str, name: &str) {
        let id = (namespace.to_string(), name.to_string());
        for k in self.by_stream.remove(&id).unwrap_or_default() {
            if let Some(set) = self.by_key.get_mut(&k) {
                set.retain(|t| !(t.namespace == id.0 && t.stream == id.1));
                if set.is_empty() {
                    self.by_key.remove(&k);
                }
            }
        }
    }

    pub fn targets(&self, wanted: &BTreeSet<String>) -> Vec<Target> {
        let mut out: Vec<Target> = wanted
            .iter()
            .filter_map(|k| self.by_key.get(k))
            .flatten()
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    fn target(stream: &str, tag: &str) -> Target {
        Target {
            namespace: "demo".into(),
            stream: stream.into(),
            tag: tag.into(),
        }
    }

    #[test]
    fn only_tags_that_follow_a_tag_are_indexed() {
        let mut index = TargetIndex::default();
        index.apply(
            &ImageStream::test("web")
                .tag("latest", "quay.io/team/web")
                .tag("pinned", "quay.io/team/web@sha256:0a1b")
                .tag("ref", "quay.io/team/web:ref")
                .last_tag(|t| t.reference = Some(true))
                .tracking("alias", "web:latest"),
        );
        assert_eq!(
            index.targets(&wanted(&["quay.io/team/web:latest"])),
            [target("web", "latest")]
        );
        assert!(index.targets(&wanted(&["quay.io/team/web:ref"])).is_empty());
    }

    #[test]
    fn an_update_replaces_and_a_removal_forgets() {
        let mut index = TargetIndex::default();
        let one = |image: &str| ImageStream::test("web").tag("t", image);
        index.apply(&one("quay.io/team/web:1"));
        index.apply(&one("quay.io/team/web:2"));
        assert!(index.targets(&wanted(&["quay.io/team/web:1"])).is_empty());
        assert_eq!(
            index.targets(&wanted(&["quay.io/team/web:2"])),
            [target("web", "t")]
        );
        index.remove("demo", "web");
        assert!(index.targets(&wanted(&["quay.io/team/web:2"])).is_empty());
        assert!(index.by_key.is_empty() && index.by_stream.is_empty());
    }

    #[test]
    fn a_reset_keeps_only_the_streams_given() {
        let mut index = TargetIndex::default();
        index.apply(&ImageStream::test("old").tag("t", "quay.io/team/old"));
        let fresh = [ImageStream::test("new").tag("t", "quay.io/team/new")];
        index.reset(fresh.iter());
        assert!(index
            .targets(&wanted(&["quay.io/team/old:latest"]))
            .is_empty());
        assert_eq!(
            index.targets(&wanted(&["quay.io/team/new:latest"])),
            [target("new", "t")]
        );
    }
}
