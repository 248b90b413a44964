//! The fan-out index: `namespace/stream:tag` → the annotated workloads that reference it. Only
//! keys of annotated workloads are stored, so memory follows the number of triggers, not the
//! number of workloads in the cluster.

use std::collections::{BTreeSet, HashMap};

use super::kind::Kind;
use crate::api::index::Index;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl WorkloadKey {
    /// The key of a workload of `kind` with this metadata.
    pub fn of(
        kind: Kind,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) -> Self {
        Self {
            kind,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} {}", self.kind.name(), self.name, self.namespace)
    }
}

/// What the index keeps of an annotated workload: its key and the `namespace/stream:tag`s it
/// follows.
#[derive(Debug, Clone)]
pub struct Followed {
    pub key: WorkloadKey,
    pub tags: Vec<String>,
}

#[derive(Default)]
pub struct TriggerIndex {
    by_tag: HashMap<String, BTreeSet<WorkloadKey>>,
    workloads: HashMap<WorkloadKey, Vec<String>>,
}

impl Index<Followed> for TriggerIndex {
    /// Records an annotated workload and the tags it follows (replacing what it followed before).
    fn apply(&mut self, w: &Followed) {
        self.remove(&w.key);
        for t in &w.tags {
            self.by_tag
                .entry(t.clone())
                .or_default()
                .insert(w.key.clone());
        }
        self.workloads.insert(w.key.clone(), w.tags.clone());
    }

    /// Forgets the workload, whatever it followed.
    fn delete(&mut self, w: &Followed) {
        self.remove(&w.key);
    }
}

impl TriggerIndex {
    pub fn remove(&mut self, key: &WorkloadKey) {
        if let Some(tags) = self.workloads.remove(key) {
            for t in tags {
                if let Some(set) = self.by_tag.get_mut(&t) {
                    set.remove(key);
                    if set.is_empty() {
                        self.by_tag.remove(&t);
                    }
                }
            }
        }
    }

    pub fn dependents(&self, tag_key: &str) -> Vec<WorkloadKey> {
        self.by_tag
            .get(tag_key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.workloads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workloads.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> WorkloadKey {
        WorkloadKey {
            kind: Kind::Deployment,
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn an_apply_replaces_and_a_delete_cleans_up() {
        let follows = |name: &str, tags: &[&str]| Followed {
            key: key(name),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        };
        let mut idx = TriggerIndex::default();
        idx.apply(&follows("a", &["ns/s:1", "ns/s:2"]));
        idx.apply(&follows("b", &["ns/s:1"]));
        assert_eq!(idx.dependents("ns/s:1"), vec![key("a"), key("b")]);
        idx.apply(&follows("a", &["ns/s:2"]));
        assert_eq!(idx.dependents("ns/s:1"), vec![key("b")]);
        idx.delete(&follows("a", &[]));
        idx.remove(&key("b"));
        assert!(idx.is_empty());
        assert!(idx.by_tag.is_empty());
    }
}
