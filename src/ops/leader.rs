//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager; kube has none of its
//! own). Only the leader runs the controllers; a replica that loses the lease drops them at once
//! and returns an error so the process exits and restarts as a follower with fresh caches.

use std::future::Future;
use std::sync::Arc;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tracing::{info, warn};

use super::Health;

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub lease_name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// Seconds a lease stays valid without renewal: the takeover time after a leader dies.
    pub duration: u64,
    /// Seconds before expiry at which the holder renews.
    pub grace: u64,
    pub metrics: super::metrics::LeaderMetrics,
}

/// Waits for the lease, then runs `work` for as long as the lease is held.
pub async fn run_as_leader<F, Fut>(
    client: Client,
    config: LeaderConfig,
    health: Arc<Health>,
    work: F,
) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let metrics = config.metrics.clone();
    let manager = LeaseManagerBuilder::new(client, &config.lease_name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(config.duration)
        .with_grace(config.grace)
        .with_field_manager(crate::api::field_manager::LEADER)
        .build()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot use lease {}/{}: {e}",
                config.namespace,
                config.lease_name
            )
        })?;
    let (mut leading, lease_task) = manager.watch().await;
    health.set_standby(true);
    info!(identity = %config.identity, lease = %config.lease_name, "waiting for the leader lease");
    while !*leading.borrow_and_update() {
        if leading.changed().await.is_err() {
            return Err(anyhow::anyhow!(
                "the lease manager stopped: {:?}",
                lease_task.await
            ));
        }
    }
    health.set_standby(false);
    metrics.leader.set(1);
    info!(identity = %config.identity, "acquired the leader lease");
    let lost = async {
        loop {
            if leading.changed().await.is_err() || !*leading.borrow() {
                return;
            }
        }
    };
    let result = tokio::select! {
        r = work() => r,
        () = lost => Err(anyhow::anyhow!("lost the leader lease; stopped all writes and exiting so another replica leads")),
    };
    metrics.leader.set(0);
    if let Err(e) = &result {
        warn!(error = %e, "leadership ended");
    }
    result
}
