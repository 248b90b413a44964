//! The import controller's indexes over the stream cache: which streams copy from or alias which
//! (so a change reaches the streams that react to it by a lookup, not a scan of every stream's
//! spec on every event, which is quadratic during a first import), and which streams each
//! namespace holds (so a pull secret's change reaches its namespace's streams without a scan of
//! the whole store).

use std::collections::{HashMap, HashSet};

use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use super::spec::{source_of, Source};
use crate::api::index::Index;
use crate::api::ImageStream;

type Stream = ObjectRef<ImageStream>;

#[derive(Default)]
pub struct SourceIndex {
    /// (namespace, stream) → the streams whose spec tags name it.
    dependents: HashMap<(String, String), HashSet<Stream>>,
    /// A stream → the sources it names, to undo its entries when it changes.
    sources: HashMap<Stream, Vec<(String, String)>>,
}

impl Index<ImageStream> for SourceIndex {
    fn apply(&mut self, stream: &ImageStream) {
        self.delete(stream);
        let mut named: Vec<(String, String)> = stream
            .spec_tags()
            .iter()
            .filter_map(|t| match source_of(stream, t) {
                Some(Source::StreamTag {
                    namespace, stream, ..
                })
                | Some(Source::StreamImage {
                    namespace, stream, ..
                }) => Some((namespace, stream)),
                _ => None,
            })
            .collect();
        named.sort();
        named.dedup();
        let me = ObjectRef::from_obj(stream);
        for source in &named {
            self.dependents
                .entry(source.clone())
                .or_default()
                .insert(me.clone());
        }
        if !named.is_empty() {
            self.sources.insert(me, named);
        }
    }

    fn delete(&mut self, stream: &ImageStream) {
        let me = ObjectRef::from_obj(stream);
        for source in self.sources.remove(&me).unwrap_or_default() {
            if let Some(set) = self.dependents.get_mut(&source) {
                set.remove(&me);
                if set.is_empty() {
                    self.dependents.remove(&source);
                }
            }
        }
    }
}

impl SourceIndex {
    /// The streams that copy from or alias `namespace/name`.
    pub fn of(&self, namespace: &str, name: &str) -> Vec<Stream> {
        self.dependents
            .get(&(namespace.to_string(), name.to_string()))
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.dependents.is_empty()
    }
}

/// Namespace → its streams.
#[derive(Default)]
pub struct StreamsByNamespace(HashMap<String, HashSet<Stream>>);

impl Index<ImageStream> for StreamsByNamespace {
    fn apply(&mut self, stream: &ImageStream) {
        let ns = stream.namespace().unwrap_or_default();
        self.0
            .entry(ns)
            .or_default()
            .insert(ObjectRef::from_obj(stream));
    }

    fn delete(&mut self, stream: &ImageStream) {
        let ns = stream.namespace().unwrap_or_default();
        if let Some(set) = self.0.get_mut(&ns) {
            set.remove(&ObjectRef::from_obj(stream));
            if set.is_empty() {
                self.0.remove(&ns);
            }
        }
    }
}

impl StreamsByNamespace {
    pub fn of(&self, namespace: &str) -> Vec<Stream> {
        self.0
            .get(namespace)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependents_follow_spec_changes_and_deletions() {
        let mut index = SourceIndex::default();
        let copy = ImageStream::test("copy")
            .in_namespace("a")
            .tracking("t0", "base:1")
            .tag("t1", "x:1");
        let alias = ImageStream::test("base")
            .in_namespace("a")
            .tag("t0", "x:1")
            .tracking("t1", "base:t0");
        index.apply(&copy);
        index.apply(&alias);
        let of_base: Vec<String> = index
            .of("a", "base")
            .iter()
            .map(|r| r.name.clone())
            .collect();
        // A tracking tag of the same stream is not a dependency on the stream.
        assert_eq!(of_base, ["copy"]);
        assert!(index.of("a", "copy").is_empty());
        // The copy stops naming base: it no longer reacts to it.
        index.apply(&ImageStream::test("copy").in_namespace("a").tag("t0", "x:1"));
        assert!(index.of("a", "base").is_empty());
        let other = ImageStream::test("other")
            .in_namespace("a")
            .pinned("t0", "base@sha256:abc");
        index.apply(&other);
        assert_eq!(index.of("a", "base").len(), 1);
        index.delete(&other);
        index.delete(&alias);
        index.delete(&copy);
        assert!(index.is_empty());
    }

    #[test]
    fn namespaces_hold_their_streams_until_deleted() {
        let mut index = StreamsByNamespace::default();
        let (a, b) = (
            ImageStream::test("s").in_namespace("a"),
            ImageStream::test("s").in_namespace("b"),
        );
        index.apply(&a);
        index.apply(&a);
        index.apply(&b);
        assert_eq!(index.of("a").len(), 1);
        index.reset([&b]);
        assert!(index.of("a").is_empty());
        index.delete(&b);
        assert!(index.is_empty());
    }
}
