//! One tag listing per repository and credential per interval, shared by every policy tag that
//! follows the repository. The first evaluation lists (its pages stream through its own
//! selector, and are kept if the whole listing fits the budget); evaluations of the same key
//! wait for it instead of listing again, then read the kept copy. A listing too large to keep is
//! not kept: each evaluation then streams its own, and memory stays bounded either way.
//!
//! The key carries the credential the registry would see — the namespace's pull secret that
//! matches, and the namespace itself when credential providers are configured (their tokens can
//! be per namespace) — so no tenant reads a listing another tenant's credential made.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::registry::{ImageRef, Keyring, Listed};

/// Bytes of tag names kept across all listings (names, plus a per-tag overhead).
pub const DEFAULT_BUDGET: usize = 16 * 1024 * 1024;
const PER_TAG_OVERHEAD: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    repository: String,
    insecure: bool,
    credential: String,
}

impl Key {
    pub fn new(
        repository: &ImageRef,
        insecure: bool,
        keyring: &Keyring,
        per_namespace: bool,
    ) -> Key {
        let secret = keyring
            .lookup(repository)
            .map(|c| c.fingerprint())
            .unwrap_or_default();
        let namespace = match (per_namespace, keyring.identity()) {
            (true, Some(identity)) => identity.namespace.as_str(),
            _ => "",
        };
        Key {
            repository: format!("{}/{}", repository.registry(), repository.repository()),
            insecure,
            credential: format!("{secret}\0{namespace}"),
        }
    }
}

/// A complete listing kept for reuse.
struct Kept {
    tags: Arc<Vec<String>>,
    listed: Listed,
    at: Instant,
}

/// What an evaluation does about a key: read the kept listing, or list (holding the turn).
pub enum Turn {
    Kept(Arc<Vec<String>>, Listed),
    List(tokio::sync::OwnedMutexGuard<()>),
}

struct Entry {
    kept: Option<Kept>,
    /// Held while one evaluation lists this key; others wait on it.
    turn: Arc<tokio::sync::Mutex<()>>,
}

pub struct Listings {
    entries: Mutex<HashMap<Key, Entry>>,
    budget: usize,
    ttl: Duration,
}

impl Listings {
    pub fn new(budget: usize, ttl: Duration) -> Listings {
        Listings {
            entries: Mutex::default(),
            budget,
            ttl,
        }
    }

    /// Waits for any listing of `key` in flight, then returns the kept copy if it is fresh and
    /// `reuse` allows it, or the turn to list (held until dropped, after [`Listings::keep`]).
    pub async fn get_or_turn(&self, key: &Key, reuse: bool) -> Turn {
        let turn = {
            let mut entries = self.entries.lock();
            let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
                kept: None,
                turn: Arc::default(),
            });
            entry.turn.clone()
        };
        let guard = turn.lock_owned().await;
        let entries = self.entries.lock();
        match entries.get(key).and_then(|e| e.kept.as_ref()) {
            Some(kept) if reuse && kept.at.elapsed() < self.ttl => {
                Turn::Kept(kept.tags.clone(), kept.listed)
            }
            _ => Turn::List(guard),
        }
    }

    /// The budget a listing may use to be kept.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Keeps a complete listing when it fits the budget (evicting the oldest others).
    pub fn keep(&self, key: &Key, tags: Vec<String>, listed: Listed) {
        self.sweep();
        let weight = weight(&tags);
        if !listed.complete || weight > self.budget {
            return;
        }
        let mut entries = self.entries.lock();
        let mut used: usize = entries
            .values()
            .filter_map(|e| e.kept.as_ref())
            .map(weight_of)
            .sum();
        while used.saturating_add(weight) > self.budget {
            let oldest = entries
                .iter()
                .filter_map(|(k, e)| Some((k.clone(), e.kept.as_ref()?.at)))
                .min_by_key(|(_, at)| *at);
            let Some((old, _)) = oldest else { break };
            if let Some(e) = entries.get_mut(&old) {
                used = used.saturating_sub(e.kept.as_ref().map_or(0, weight_of));
                e.kept = None;
            }
        }
        let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
            kept: None,
            turn: Arc::default(),
        });
        entry.kept = Some(Kept {
            tags: Arc::new(tags),
            listed,
            at: Instant::now(),
        });
    }

    /// Forgets expired listings and keys nobody is listing, so the map follows what is in use.
    pub fn sweep(&self) {
        let ttl = self.ttl;
        self.entries.lock().retain(|_, e| {
            if e.kept.as_ref().is_some_and(|k| k.at.elapsed() >= ttl) {
                e.kept = None;
            }
            e.kept.is_some() || Arc::strong_count(&e.turn) > 1
        });
    }

    /// Bytes kept now (for the benchmark and tests).
    pub fn kept_bytes(&self) -> usize {
        self.entries
            .lock()
            .values()
            .filter_map(|e| e.kept.as_ref())
            .map(weight_of)
            .sum()
    }
}

fn weight(tags: &[String]) -> usize {
    tags.iter()
        .map(|t| tag_weight(t))
        .fold(0, usize::saturating_add)
}

/// What one kept tag costs.
pub fn tag_weight(tag: &str) -> usize {
    tag.len().saturating_add(PER_TAG_OVERHEAD)
}

fn weight_of(kept: &Kept) -> usize {
    weight(&kept.tags)
}
