//! The HTTPS listeners every replica serves: the admission webhook (for the API server only: a
//! client certificate is required when the cluster sends one) and, on a port of its own, the
//! registry notification receiver (the one exposed to registries), both answered from the shared
//! stream cache so no answer waits for an API call. This file only composes.

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::FutureExt;
use kube::Client;

use crate::admission::listener::ListenerLimits;
use crate::admission::server::{self, Admission, AdmissionMetrics, Certificate, ServerTls};
use crate::admission::{Shared, Stored};
use crate::api::cache::StreamCache;
use crate::notify::{NotifyConfig, TargetIndex};

/// The two HTTPS listeners: the webhook, for the API server only, and the notification
/// receiver, the one to expose to registries. Both serve the same certificate.
pub struct Endpoint {
    /// The webhook's listener.
    pub addr: SocketAddr,
    /// The notification receiver's listener; unset, no notification is received.
    pub notify_addr: Option<SocketAddr>,
    pub cert: Certificate,
    /// A generated certificate shared through a Secret: kept renewed, served and trusted.
    pub shared: Option<(Shared, Stored)>,
    /// CAs the webhook's callers must present a client certificate from (the API server's).
    pub client_ca: Option<Arc<rustls::RootCertStore>>,
    pub notify: Option<NotifyConfig>,
    pub metrics: Arc<AdmissionMetrics>,
}

/// Serves on a stream cache of its own (tests, standalone use); the operator shares its one cache
/// through [`run_shared`].
pub async fn run(client: Client, endpoint: Endpoint) -> anyhow::Result<()> {
    let (cache, driver) = StreamCache::new(client.clone());
    tokio::select! {
        () = driver => Ok(()),
        r = run_shared(client, cache, endpoint) => r,
    }
}

pub async fn run_shared(
    client: Client,
    cache: StreamCache,
    endpoint: Endpoint,
) -> anyhow::Result<()> {
    let limits = ListenerLimits::default();
    let webhook_tls = server::tls_for(&endpoint.cert, endpoint.client_ca.clone()).await?;
    let webhook = server::router(Admission {
        streams: cache.store(),
        metrics: endpoint.metrics,
    });
    let mut listeners = vec![webhook_tls.clone()];
    let notifications = match (endpoint.notify_addr, endpoint.notify) {
        (Some(addr), Some(config)) => {
            let tls = server::tls_for(&endpoint.cert, None).await?;
            listeners.push(tls.clone());
            notifications(client.clone(), &cache, config, addr, tls, limits).boxed()
        }
        _ => futures::future::pending().boxed(),
    };
    if let Some((shared, stored)) = endpoint.shared {
        let keep = crate::admission::keep_certificate(client.clone(), shared, stored, listeners);
        tokio::spawn(keep);
    }
    tokio::select! {
        r = notifications => r,
        r = server::serve_tls(endpoint.addr, webhook_tls, webhook, limits) => r,
    }
}

/// The notification receiver on its own listener, with the index of spec tags it looks
/// notifications up in. Without a notification secret every notification is refused, so the
/// index is not kept.
async fn notifications(
    client: Client,
    cache: &StreamCache,
    config: NotifyConfig,
    addr: SocketAddr,
    tls: ServerTls,
    limits: ListenerLimits,
) -> anyhow::Result<()> {
    let index: Arc<Mutex<TargetIndex>> = Arc::default();
    let maintain = match config.token.is_some() || config.hmac_secret.is_some() {
        true => crate::notify::maintain_index(cache, index.clone()).boxed(),
        false => futures::future::pending().boxed(),
    };
    let requester = Arc::new(crate::notify::ApiRequester { client });
    let receiver = crate::notify::Receiver::new(config, index, requester);
    tokio::select! {
        () = maintain => Ok(()),
        r = server::serve_tls(addr, tls, crate::notify::router(receiver), limits) => r,
    }
}
