//! What the metadata watch of each workload kind keeps: annotated workloads no controller owns,
//! slimmed to what an evaluation needs; everything else becomes a deletion before any store, so
//! unannotated workloads cost (almost) nothing however many the cluster has. And which changes
//! of a kept workload are worth evaluating.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{DynamicObject, PartialObjectMeta};
use kube::runtime::watcher;

use crate::api::TRIGGERS;

/// A workload as its metadata watch sees it.
pub type Meta = PartialObjectMeta<DynamicObject>;

/// Keeps what `keep` says is an annotated, unowned workload (`keep` also indexes it, or forgets
/// it), slimmed; anything else becomes a deletion, so it leaves (or never enters) the store.
/// `gone` is told of every deletion the watch reports.
pub fn admit(
    event: watcher::Event<Meta>,
    keep: impl Fn(&ObjectMeta) -> bool,
    gone: impl Fn(&ObjectMeta),
) -> watcher::Event<Meta> {
    let kept = |mut m: Meta, applied: fn(Meta) -> watcher::Event<Meta>| {
        if !keep(&m.metadata) {
            return watcher::Event::Delete(slim(m));
        }
        m.metadata.managed_fields = None;
        m.metadata.labels = None;
        if let Some(a) = m.metadata.annotations.as_mut() {
            a.retain(|k, _| k == TRIGGERS);
        }
        applied(m)
    };
    match event {
        watcher::Event::Apply(m) => kept(m, watcher::Event::Apply),
        watcher::Event::InitApply(m) => kept(m, watcher::Event::InitApply),
        watcher::Event::Delete(m) => {
            gone(&m.metadata);
            watcher::Event::Delete(m)
        }
        other => other,
    }
}

/// What a metadata change must differ in to be worth evaluating.
pub fn evaluation_inputs(meta: &Meta) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match meta.metadata.generation {
        Some(g) => g.hash(&mut h),
        // Pods have no generation: any change may be to an image.
        None => meta.metadata.resource_version.hash(&mut h),
    }
    meta.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TRIGGERS))
        .hash(&mut h);
    Some(h.finish())
}

/// An object's identity only (what a deletion from the store needs).
fn slim(m: Meta) -> Meta {
    let mut metadata = ObjectMeta::default();
    metadata.name = m.metadata.name;
    metadata.namespace = m.metadata.namespace;
    PartialObjectMeta {
        types: m.types,
        metadata,
        _phantom: Default::default(),
    }
}
