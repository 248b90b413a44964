//! Running it in production: metrics, health endpoints, Events, logging, RBAC, per-object
//! backoff and leader election.

pub mod backoff;
pub mod events;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod rbac;
pub mod server;

use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Readiness: every cache this replica needs has finished its first list.
#[derive(Debug, Default)]
pub struct Health {
    synced: AtomicUsize,
    expected: AtomicUsize,
    standby: std::sync::atomic::AtomicBool,
    /// Caches counted by name, so a watch that relists (InitDone again) counts once.
    named: Mutex<HashSet<&'static str>>,
    /// Why the API server is unreachable, while it is.
    outage: Mutex<Option<String>>,
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
        if self.named.lock().insert(name) {
            self.cache_synced();
        }
    }
    /// A follower waiting for the lease runs no caches and is ready to take over.
    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::SeqCst);
    }
    pub fn api_unreachable(&self, why: String) {
        *self.outage.lock() = Some(why);
    }
    pub fn api_reachable(&self) {
        *self.outage.lock() = None;
    }
    pub fn ready(&self) -> (bool, String) {
        if let Some(why) = &*self.outage.lock() {
            return (false, format!("API server unreachable: {why}"));
        }
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

/// Asks the API server for its version every `every`, so readiness reports an outage. The
/// watches would notice too, but a resumed watch says nothing until an object changes, so they
/// cannot say when the outage ended.
pub async fn probe_api_server(
    client: kube::Client,
    health: std::sync::Arc<Health>,
    every: Duration,
) {
    loop {
        match tokio::time::timeout(every, client.apiserver_version()).await {
            Ok(Ok(_)) => health.api_reachable(),
            Ok(Err(e)) => health.api_unreachable(e.to_string()),
            Err(_) => health.api_unreachable(format!("no answer within {every:?}")),
        }
        tokio::time::sleep(every).await;
    }
}

/// Resolves on SIGTERM (what the kubelet sends on a rollout, a drain or `helm uninstall`) or
/// SIGINT (Ctrl-C when run by hand): the same signals kube-runtime's Controller stops on.
pub async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this process");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_makes_even_a_standby_replica_unready_until_it_ends() {
        let health = Health::default();
        health.expect(1);
        health.cache_synced();
        health.set_standby(true);
        health.api_unreachable("connection refused".into());
        let (ready, why) = health.ready();
        assert!(!ready);
        assert_eq!(why, "API server unreachable: connection refused");
        health.api_reachable();
        assert!(health.ready().0);
    }
}
