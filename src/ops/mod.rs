//! Running it in production: metrics, health endpoints and leader election.

pub mod leader;
pub mod metrics;
pub mod rbac;
pub mod server;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Readiness: every cache this replica needs has finished its first list.
#[derive(Debug, Default)]
pub struct Health {
    synced: AtomicUsize,
    expected: AtomicUsize,
    standby: std::sync::atomic::AtomicBool,
    /// Caches counted by name, so a watch that relists (InitDone again) counts once.
    named: Mutex<HashSet<&'static str>>,
}

impl Health {
    pub fn expect(&self, caches: usize) {
        self.expected.store(caches, Ordering::SeqCst);
    }
    pub fn cache_synced(&self) {
        self.synced.fetch_add(1, Ordering::SeqCst);
    }
    /// Counts the cache `name` as synced the first time it reports.
    pub fn cache_synced_once(&self, name: &'static str) {
        if self
            .named
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name)
        {
            self.cache_synced();
        }
    }
    /// A follower waiting for the lease runs no caches and is ready to take over.
    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::SeqCst);
    }
    pub fn ready(&self) -> (bool, String) {
        if self.standby.load(Ordering::SeqCst) {
            return (true, "standby: waiting for the leader lease".into());
        }
        let (s, e) = (
            self.synced.load(Ordering::SeqCst),
            self.expected.load(Ordering::SeqCst),
        );
        (e > 0 && s >= e, format!("{s} of {e} caches synced"))
    }
}
