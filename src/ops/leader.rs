//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager; kube has none of its
//! own). Only the leader runs the controllers; a replica that loses the lease drops them at once
//! and returns an error so the process exits and restarts as a follower with fresh caches.
//!
//! On shutdown (SIGTERM from a rollout, a drain or `helm uninstall`) a standby exits at once, and
//! a leader, once its controllers have stopped, releases the lease, so a standby does not wait
//! for a lease nobody renews any more to expire.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
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

/// How long a leader that is shutting down waits for its lease release to be written.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Waits for the lease, then runs `work` for as long as the lease is held. `shutdown` ends the
/// wait of a standby; `work` is expected to stop on the same signal by itself (the controllers
/// drain their reconciles first), after which the lease is released.
pub async fn run_as_leader<F, Fut>(
    client: Client,
    config: LeaderConfig,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
    work: F,
) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let metrics = config.metrics.clone();
    health.set_standby(true);
    info!(identity = %config.identity, lease = %config.lease_name, "waiting for the leader lease");
    tokio::pin!(shutdown);
    let (mut leading, lease_task) = loop {
        let (mut leading, lease_task) = manager(&client, &config).await?.watch().await;
        tokio::select! {
            acquired = acquired(&mut leading) => match acquired {
                Ok(()) => break (leading, lease_task),
                Err(()) => {
                    return Err(anyhow::anyhow!(
                        "the lease manager stopped: {:?}",
                        lease_task.await
                    ))
                }
            },
            () = released(&client, &config) => {
                // The manager sleeps until the old holder's lease would expire; a new one
                // reads the lease afresh and takes it now.
                stop(leading, lease_task).await;
            }
            () = &mut shutdown => {
                info!(identity = %config.identity, "shutting down while on standby");
                return Ok(());
            }
        }
    };
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
    stop(leading, lease_task).await;
    result
}

async fn manager(client: &Client, config: &LeaderConfig) -> anyhow::Result<LeaseManager> {
    LeaseManagerBuilder::new(client.clone(), &config.lease_name)
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
        })
}

/// Until the manager says this replica holds the lease; `Err` if the manager ended.
async fn acquired(leading: &mut watch::Receiver<bool>) -> Result<(), ()> {
    while !*leading.borrow_and_update() {
        leading.changed().await.map_err(|_| ())?;
    }
    Ok(())
}

/// Until a holder of the lease gives it up (its holder identity emptied), watched by name.
async fn released(client: &Client, config: &LeaderConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let by_name =
        watcher::Config::default().fields(&format!("metadata.name={}", config.lease_name));
    let mut leases = watcher(api, by_name)
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut held = false;
    while let Some(lease) = leases.next().await {
        let Ok(lease) = lease else { continue };
        let holder = lease.spec.and_then(|s| s.holder_identity);
        match holder.is_some_and(|h| !h.is_empty()) {
            true => held = true,
            false if held => return,
            false => {}
        }
    }
    std::future::pending().await
}

/// Closes the manager's channel, which makes it release the lease if this replica holds it, and
/// waits (briefly) for that write.
async fn stop(
    leading: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
) {
    drop(leading);
    match tokio::time::timeout(RELEASE_TIMEOUT, task).await {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(e))) => {
            warn!(error = %e, "could not release the leader lease; it expires by itself")
        }
        Ok(Err(e)) => warn!(error = %e, "the lease manager failed; the lease expires by itself"),
        Err(_) => warn!("releasing the leader lease took too long; it expires by itself"),
    }
}
