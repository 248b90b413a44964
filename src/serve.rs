//! The one HTTPS endpoint every replica serves: the admission webhook and, when configured, the
//! registry notification receiver, over the webhook's TLS, answered from the shared stream cache
//! so no answer waits for an API call. This file only composes; each part lives in its folder.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use kube::Client;

use crate::admission::server::{self, Admission, AdmissionMetrics, Certificate};
use crate::api::cache::StreamCache;
use crate::notify::{NotifyConfig, TargetIndex};

/// What the endpoint serves besides admission.
pub struct Endpoint {
    pub addr: SocketAddr,
    pub cert: Certificate,
    /// The MutatingWebhookConfiguration to keep the generated certificate in, if any.
    pub inject: Option<String>,
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
    if let (Certificate::Generated { cert_pem, .. }, Some(name)) =
        (&endpoint.cert, &endpoint.inject)
    {
        let inject = crate::admission::keep_ca_bundle_injected(
            client.clone(),
            name.clone(),
            cert_pem.clone(),
        );
        tokio::spawn(inject);
    }
    let index: Arc<Mutex<TargetIndex>> = Arc::default();
    // The notification index holds every spec tag's repository; without a notification secret
    // every notification is refused, so it is not kept.
    let accepts_notifications = endpoint
        .notify
        .as_ref()
        .is_some_and(|c| c.token.is_some() || c.hmac_secret.is_some());
    let maintain = match accepts_notifications {
        true => crate::notify::maintain_index(&cache, index.clone()).boxed(),
        false => futures::future::pending().boxed(),
    };
    let mut app = server::router(Admission {
        streams: cache.store(),
        metrics: endpoint.metrics,
    });
    if let Some(config) = endpoint.notify {
        let requester = Arc::new(crate::notify::ApiRequester { client });
        let receiver = crate::notify::Receiver::new(config, index, requester);
        app = app.merge(crate::notify::router(receiver));
    }
    tokio::select! {
        () = maintain => Ok(()),
        r = server::serve_router(endpoint.addr, endpoint.cert, app) => r,
    }
}
