//! The pull secrets of each namespace, parsed once per resourceVersion: a reconcile's keyring is
//! one lookup (not a filter and parse of every pull secret in the cluster), and a malformed
//! secret is logged once per version, not on every check of every stream beside it.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::watcher;
use kube::ResourceExt;
use parking_lot::Mutex;
use tracing::warn;

use crate::api::untrusted;
use crate::registry::Keyring;

#[derive(Default)]
struct Namespace {
    /// Secret name → (resourceVersion, its own keyring).
    secrets: BTreeMap<String, (String, Keyring)>,
    /// All of them merged.
    keyring: Keyring,
}

impl Namespace {
    fn rebuild(&mut self) {
        self.keyring = Keyring::merged(self.secrets.values().map(|(_, k)| k));
    }
}

#[derive(Default)]
pub struct PullSecrets {
    namespaces: Mutex<HashMap<String, Namespace>>,
}

impl PullSecrets {
    /// Keeps the index equal to the secret watches. `Init` comes only before a watch's first
    /// list (later relists reach us as upserts and deletions), and two watches (one per secret
    /// type) feed this index: clearing on `Init` would let the second wipe the first's list.
    pub fn observe(&self, event: &watcher::Event<Secret>) {
        match event {
            watcher::Event::Apply(s) | watcher::Event::InitApply(s) => self.apply(s),
            watcher::Event::Delete(s) => self.delete(s),
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    pub fn apply(&self, secret: &Secret) {
        let namespace = secret.namespace().unwrap_or_default();
        let name = secret.name_any();
        let rv = secret.resource_version().unwrap_or_default();
        let mut namespaces = self.namespaces.lock();
        let ns = namespaces.entry(namespace).or_default();
        if ns.secrets.get(&name).is_some_and(|(seen, _)| *seen == rv) {
            return;
        }
        let (keyring, skipped) = Keyring::from_secrets([secret]);
        for s in skipped {
            let reason = untrusted::clean(&s.reason, 256);
            warn!(secret = %s.secret, %reason, "pull secret skipped");
        }
        ns.secrets.insert(name, (rv, keyring));
        ns.rebuild();
    }

    pub fn delete(&self, secret: &Secret) {
        let namespace = secret.namespace().unwrap_or_default();
        let mut namespaces = self.namespaces.lock();
        let Some(ns) = namespaces.get_mut(&namespace) else {
            return;
        };
        ns.secrets.remove(&secret.name_any());
        match ns.secrets.is_empty() {
            true => {
                namespaces.remove(&namespace);
            }
            false => ns.rebuild(),
        }
    }

    /// The credentials of every pull secret in `namespace`.
    pub fn keyring(&self, namespace: &str) -> Keyring {
        self.namespaces
            .lock()
            .get(namespace)
            .map(|ns| ns.keyring.clone())
            .unwrap_or_default()
    }

    /// Namespaces with at least one pull secret.
    pub fn namespaces(&self) -> usize {
        self.namespaces.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(ns: &str, name: &str, rv: &str, registry: &str) -> Secret {
        let config = serde_json::json!({"auths": {registry: {"username": "u", "password": "p"}}});
        let mut s = Secret::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s.metadata.resource_version = Some(rv.into());
        s.type_ = Some(crate::registry::credentials::DOCKER_CONFIG_JSON.into());
        s.data = Some(
            [(
                ".dockerconfigjson".to_string(),
                ByteString(config.to_string().into_bytes()),
            )]
            .into(),
        );
        s
    }

    #[test]
    fn each_namespace_sees_only_its_own_secrets_and_a_deletion_empties_it() {
        let index = PullSecrets::default();
        index.apply(&secret("a", "one", "1", "reg.a"));
        index.apply(&secret("a", "two", "1", "reg.b"));
        index.apply(&secret("b", "one", "1", "reg.c"));
        assert_ne!(
            index.keyring("a").fingerprint(),
            index.keyring("b").fingerprint()
        );
        assert!(index.keyring("c").is_empty());
        let before = index.keyring("a").fingerprint();
        index.apply(&secret("a", "two", "2", "reg.d"));
        assert_ne!(index.keyring("a").fingerprint(), before);
        index.delete(&secret("a", "one", "1", "reg.a"));
        index.delete(&secret("a", "two", "2", "reg.d"));
        index.delete(&secret("b", "one", "1", "reg.c"));
        assert_eq!(index.namespaces(), 0);
    }

    #[test]
    fn the_second_watchs_first_list_keeps_what_the_first_listed() {
        use watcher::Event::{Init, InitApply, InitDone};
        let index = PullSecrets::default();
        for e in [Init, InitApply(secret("a", "json", "1", "reg.a")), InitDone] {
            index.observe(&e);
        }
        // The dockercfg watch lists after the dockerconfigjson one.
        for e in [Init, InitDone] {
            index.observe(&e);
        }
        assert!(!index.keyring("a").is_empty());
    }
}
