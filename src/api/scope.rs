//! Which namespaces the operator manages (`--watch-namespaces`), and the watch of one kind over
//! them. Cluster-wide is one watch; a list of namespaces is one watch per namespace, merged into
//! what a single reflector store can follow.
//!
//! The merge is not `select_all`: each namespace's watch relists on its own (`Init`,
//! `InitApply`…, `InitDone`), and kube's store replaces *everything* it holds with the buffer on
//! `InitDone`, so namespace B's relist would wipe namespace A. Instead the merged stream has one
//! `Init`…`InitDone` of its own, once every namespace has listed.
//!
//! Every watch, merged or single, turns each relist after its first list into upserts followed
//! by a `Delete` for each stored object the relist no longer contains. kube's store swaps a
//! relist in silently, so without this an object deleted while the watch was away (a relist
//! after `410 Gone`) would never reach anyone as a deletion, and every index and per-object
//! memory fed by the watch would keep it for as long as the process lives.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use kube::runtime::reflector::Store;
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// How every watch of the operator reconnects: kube's default shape (0.8 s doubling, jittered,
/// reset after 2 min quiet) but capped at 5 s instead of 30 s. After an API server outage the
/// first reconnect usually meets `410 Gone` and must relist; with a 30 s cap, the two steps
/// left a push unimported for over a minute after the API server was back. A reconnect every
/// 5 s per watch during an outage costs the API server nothing.
pub fn watch_backoff() -> ResetTimerBackoff<ExponentialBackoff> {
    let builder = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(800))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(builder.into(), Duration::from_secs(120))
}

/// The namespaces the operator manages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    #[default]
    Cluster,
    /// Only these (sorted, unique, never empty).
    Namespaces(Arc<[String]>),
}

impl Scope {
    /// From `--watch-namespaces`: empty means the whole cluster.
    pub fn from_list(list: &[String]) -> Self {
        let mut names: Vec<String> = list
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        names.dedup();
        match names.is_empty() {
            true => Scope::Cluster,
            false => Scope::Namespaces(names.into()),
        }
    }

    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Scope::Cluster => true,
            Scope::Namespaces(names) => names.iter().any(|n| n == namespace),
        }
    }

    /// One namespace the operator may list in (for a permission check at start-up); None for
    /// the whole cluster.
    pub fn first(&self) -> Option<&str> {
        match self {
            Scope::Cluster => None,
            Scope::Namespaces(names) => names.first().map(String::as_str),
        }
    }

    /// The watch of `K` over this scope, each namespace's reconnecting with [`watch_backoff`]
    /// on its own (a backoff on the merged stream would hold every namespace's events while one
    /// reconnects). `api(None)` is the cluster-wide API, `api(Some(ns))` one namespace's;
    /// `store` is the reader of the store these events will fill, from which the merge learns
    /// what a namespace's relist dropped.
    pub fn watch<K>(
        &self,
        api: impl Fn(Option<&str>) -> Api<K>,
        config: watcher::Config,
        store: Store<K>,
    ) -> BoxStream<'static, watcher::Result<watcher::Event<K>>>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        let names: Vec<Option<String>> = match self {
            Scope::Cluster => vec![None],
            Scope::Namespaces(names) => names.iter().cloned().map(Some).collect(),
        };
        let watches: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                watched(api(ns.as_deref()), config.clone())
                    .map(move |e| (i, e))
                    .boxed()
            })
            .collect();
        let mut merge = Merge::new(names, store);
        futures::stream::select_all(watches)
            .flat_map(move |(i, event)| futures::stream::iter(merge.next(i, event)))
            .boxed()
    }
}

/// The `api` argument of [`Scope::watch`] for a namespaced kind with a static type.
pub fn api_of<K>(client: Client) -> impl Fn(Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    move |ns| match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn watched<K>(
    api: Api<K>,
    config: watcher::Config,
) -> BoxStream<'static, watcher::Result<watcher::Event<K>>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, config).backoff(watch_backoff()).boxed()
}

/// Turns the events of a single watch (of `namespace`, or of every namespace) into what
/// [`Scope::watch`] yields: the first list as it is, later relists as upserts and deletions.
/// Public so that tests can drive a cache with events of their own.
pub fn relisting<K>(
    events: impl futures::Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
    namespace: Option<String>,
    store: Store<K>,
) -> BoxStream<'static, watcher::Result<watcher::Event<K>>>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let mut merge = Merge::new(vec![namespace], store);
    events
        .flat_map(move |event| futures::stream::iter(merge.next(0, event)))
        .boxed()
}

/// The merge's state; see the module comment.
struct Merge<K>
where
    K: Resource + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    /// Per watch, the namespace it covers (None: every namespace).
    namespaces: Vec<Option<String>>,
    store: Store<K>,
    /// Until every watch has listed once: per watch, what it has listed (by name) and whether
    /// that list is complete. None afterwards. A single watch's first list passes through as is.
    first: Option<Vec<(HashMap<String, K>, bool)>>,
    /// Per watch, during a later relist: the objects it has listed so far.
    relisting: Vec<Option<HashSet<Listed>>>,
}

type Out<K> = Vec<watcher::Result<watcher::Event<K>>>;

/// An object a relist contained: (namespace, name).
type Listed = (Option<String>, String);

impl<K> Merge<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn new(namespaces: Vec<Option<String>>, store: Store<K>) -> Self {
        let n = namespaces.len();
        Self {
            namespaces,
            store,
            first: Some((0..n).map(|_| (HashMap::new(), false)).collect()),
            relisting: (0..n).map(|_| None).collect(),
        }
    }

    fn next(&mut self, ns: usize, event: watcher::Result<watcher::Event<K>>) -> Out<K> {
        let event = match event {
            Ok(e) => e,
            Err(e) => return vec![Err(e)],
        };
        let Some(first) = self.first.as_mut() else {
            return self.later(ns, event);
        };
        if self.namespaces.len() == 1 {
            // Nothing to merge: the reflector buffers the first list itself.
            if matches!(event, watcher::Event::InitDone) {
                self.first = None;
            }
            return vec![Ok(event)];
        }
        let Some((objects, listed)) = first.get_mut(ns) else {
            return Vec::new();
        };
        match event {
            // A namespace that lists again before the others are done starts over.
            watcher::Event::Init => {
                objects.clear();
                *listed = false;
            }
            watcher::Event::InitApply(o) | watcher::Event::Apply(o) => {
                objects.insert(o.name_any(), o);
            }
            watcher::Event::Delete(o) => {
                objects.remove(&o.name_any());
            }
            watcher::Event::InitDone => *listed = true,
        }
        match first.iter().all(|(_, listed)| *listed) {
            true => self.finish_first(),
            false => Vec::new(),
        }
    }

    /// Every namespace has listed: the merged stream's one initial list.
    fn finish_first(&mut self) -> Out<K> {
        let lists = self.first.take().unwrap_or_default();
        let mut out = vec![Ok(watcher::Event::Init)];
        for (objects, _) in lists {
            out.extend(
                objects
                    .into_values()
                    .map(|o| Ok(watcher::Event::InitApply(o))),
            );
        }
        out.push(Ok(watcher::Event::InitDone));
        out
    }

    fn later(&mut self, ns: usize, event: watcher::Event<K>) -> Out<K> {
        let Some(seen) = self.relisting.get_mut(ns) else {
            return Vec::new();
        };
        match event {
            watcher::Event::Init => {
                *seen = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(o) => {
                if let Some(seen) = seen.as_mut() {
                    seen.insert((o.namespace(), o.name_any()));
                }
                vec![Ok(watcher::Event::Apply(o))]
            }
            watcher::Event::InitDone => match seen.take() {
                Some(seen) => self.vanished(ns, &seen),
                None => Vec::new(),
            },
            other => vec![Ok(other)],
        }
    }

    /// A `Delete` for each stored object of watch `ns`'s namespace its relist did not contain.
    fn vanished(&self, ns: usize, seen: &HashSet<Listed>) -> Out<K> {
        let Some(namespace) = self.namespaces.get(ns) else {
            return Vec::new();
        };
        self.store
            .state()
            .into_iter()
            .filter(|o| namespace.is_none() || o.namespace() == *namespace)
            .filter(|o| !seen.contains(&(o.namespace(), o.name_any())))
            .map(|o| Ok(watcher::Event::Delete((*o).clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector::store::Writer;

    fn cm(ns: &str, name: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.namespace = Some(ns.into());
        c.metadata.name = Some(name.into());
        c
    }

    /// Feeds `(namespace index, event)`s through the merge into a real store, as the reflector
    /// would, and returns what came out.
    fn run(
        merge: &mut Merge<ConfigMap>,
        writer: &mut Writer<ConfigMap>,
        events: Vec<(usize, watcher::Event<ConfigMap>)>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for (ns, e) in events {
            for e in merge.next(ns, Ok(e)) {
                let e = e.unwrap();
                writer.apply_watcher_event(&e);
                out.push(match &e {
                    watcher::Event::Init => "Init".to_string(),
                    watcher::Event::InitDone => "InitDone".to_string(),
                    watcher::Event::InitApply(o) => format!("InitApply {}", o.name_any()),
                    watcher::Event::Apply(o) => format!("Apply {}", o.name_any()),
                    watcher::Event::Delete(o) => format!("Delete {}", o.name_any()),
                });
            }
        }
        out
    }

    fn names(store: &Store<ConfigMap>) -> Vec<String> {
        let mut n: Vec<String> = store
            .state()
            .iter()
            .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
            .collect();
        n.sort();
        n
    }

    use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};

    /// A merge of namespaces `a` and `b` over a real store: its writer and its reader.
    fn merge_of_a_and_b() -> (Merge<ConfigMap>, Writer<ConfigMap>, Store<ConfigMap>) {
        let writer = Writer::<ConfigMap>::default();
        let store = writer.as_reader();
        let merge = Merge::new(
            vec![Some("a".to_string()), Some("b".to_string())],
            store.clone(),
        );
        (merge, writer, store)
    }

    #[test]
    fn one_initial_list_once_every_namespace_has_listed() {
        let (mut merge, mut writer, store) = merge_of_a_and_b();
        let out = run(
            &mut merge,
            &mut writer,
            vec![
                (0, Init),
                (0, InitApply(cm("a", "x"))),
                (0, InitDone),
                // a changes while b is still listing: held until the list is whole.
                (0, Apply(cm("a", "w"))),
                (0, Delete(cm("a", "x"))),
                (1, Init),
                (1, InitApply(cm("b", "y"))),
            ],
        );
        assert!(out.is_empty(), "{out:?}");
        assert!(names(&store).is_empty());
        let out = run(&mut merge, &mut writer, vec![(1, InitDone)]);
        assert_eq!(out.first().map(String::as_str), Some("Init"));
        assert_eq!(out.last().map(String::as_str), Some("InitDone"));
        assert_eq!(out.len(), 4);
        assert_eq!(names(&store), ["a/w", "b/y"]);
    }

    #[test]
    fn a_later_relist_of_one_namespace_keeps_the_others_and_deletes_what_vanished() {
        let (mut merge, mut writer, store) = merge_of_a_and_b();
        run(
            &mut merge,
            &mut writer,
            vec![
                (0, Init),
                (0, InitApply(cm("a", "x"))),
                (0, InitApply(cm("a", "gone"))),
                (0, InitDone),
                (1, Init),
                (1, InitApply(cm("b", "y"))),
                (1, InitDone),
            ],
        );
        let out = run(
            &mut merge,
            &mut writer,
            vec![
                (0, Init),
                (0, InitApply(cm("a", "x"))),
                (0, InitApply(cm("a", "new"))),
                (0, InitDone),
            ],
        );
        assert_eq!(out, ["Apply x", "Apply new", "Delete gone"]);
        assert_eq!(names(&store), ["a/new", "a/x", "b/y"]);
        // Plain changes pass through.
        let out = run(
            &mut merge,
            &mut writer,
            vec![(1, Delete(cm("b", "y"))), (1, Apply(cm("b", "z")))],
        );
        assert_eq!(out, ["Delete y", "Apply z"]);
        assert_eq!(names(&store), ["a/new", "a/x", "b/z"]);
    }

    #[test]
    fn a_namespace_that_relists_during_the_first_list_starts_over() {
        let (mut merge, mut writer, store) = merge_of_a_and_b();
        run(
            &mut merge,
            &mut writer,
            vec![
                (0, Init),
                (0, InitApply(cm("a", "stale"))),
                (0, InitDone),
                (0, Init),
                (0, InitApply(cm("a", "x"))),
                (1, Init),
                (1, InitDone),
            ],
        );
        assert!(names(&store).is_empty(), "a is listing again");
        run(&mut merge, &mut writer, vec![(0, InitDone)]);
        assert_eq!(names(&store), ["a/x"]);
    }

    #[test]
    fn a_single_watch_passes_its_first_list_and_turns_a_relist_into_deletions() {
        let mut writer = Writer::<ConfigMap>::default();
        let store = writer.as_reader();
        let mut merge = Merge::new(vec![None], store.clone());
        let out = run(
            &mut merge,
            &mut writer,
            vec![
                (0, Init),
                (0, InitApply(cm("a", "x"))),
                (0, InitApply(cm("b", "gone"))),
                (0, InitDone),
            ],
        );
        assert_eq!(out, ["Init", "InitApply x", "InitApply gone", "InitDone"]);
        // The watch was away long enough to meet 410 Gone: b/gone was deleted meanwhile.
        let out = run(
            &mut merge,
            &mut writer,
            vec![
                (0, Init),
                (0, InitApply(cm("a", "x"))),
                (0, InitApply(cm("b", "x"))),
                (0, InitDone),
            ],
        );
        assert_eq!(out, ["Apply x", "Apply x", "Delete gone"]);
        assert_eq!(names(&store), ["a/x", "b/x"]);
    }

    #[test]
    fn scope_from_a_flag() {
        assert_eq!(Scope::from_list(&[]), Scope::Cluster);
        assert_eq!(Scope::from_list(&[" ".into()]), Scope::Cluster);
        let s = Scope::from_list(&["b".into(), "a".into(), "b".into()]);
        assert_eq!(
            s,
            Scope::Namespaces(vec!["a".to_string(), "b".to_string()].into())
        );
        assert!(s.contains("a") && !s.contains("c"));
        assert_eq!(s.first(), Some("a"));
        assert!(Scope::Cluster.contains("anything"));
    }
}
