//! The fan-out index: `namespace/stream:tag` → the annotated workloads that reference it. Only
//! keys of annotated workloads are stored, so memory follows the number of triggers, not the
//! number of workloads in the cluster.

use std::collections::{BTreeSet, HashMap};

use super::kind::Kind;

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

#[derive(Default)]
pub struct TriggerIndex {
    by_tag: HashMap<String, BTreeSet<WorkloadKey>>,
    workloads: HashMap<WorkloadKey, Vec<String>>,
}

impl TriggerIndex {
    /// Records an annotated workload and the tags it follows (replacing what it followed before).
    pub fn upsert(&mut self, key: WorkloadKey, tags: Vec<String>) {
        self.remove(&key);
        for t in &tags {
            self.by_tag
                .entry(t.clone())
                .or_default()
                .insert(key.clone());
        }
        self.workloads.insert(key, tags);
    }

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
    fn upsert_replaces_and_remove_cleans_up() {
        let mut idx = TriggerIndex::default();
        idx.upsert(key("a"), vec!["ns/s:1".into(), "ns/s:2".into()]);
        idx.upsert(key("b"), vec!["ns/s:1".into()]);
        assert_eq!(idx.dependents("ns/s:1"), vec![key("a"), key("b")]);
        idx.upsert(key("a"), vec!["ns/s:2".into()]);
        assert_eq!(idx.dependents("ns/s:1"), vec![key("b")]);
        idx.remove(&key("a"));
        idx.remove(&key("b"));
        assert!(idx.is_empty());
        assert!(idx.by_tag.is_empty());
    }
}
