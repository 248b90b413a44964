//! The mutating admission webhook: image lookup for short names and image triggers resolved
//! when Jobs and bare Pods are created. `lookup.rs` decides (pure), `server.rs` serves HTTPS.

pub mod lookup;
pub mod server;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{FutureExt, StreamExt};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::cache::{StreamCache, StreamEvent};
use crate::notify::TargetIndex;
use server::{Admission, Certificate};

/// Name of the MutatingWebhookConfiguration the chart installs.
pub const WEBHOOK_CONFIGURATION: &str = "imagestream-operator";

/// Runs on every replica (the Service may send a request to any of them) on a stream cache of its
/// own (tests, standalone use); the operator shares its one cache through [`run_shared`].
pub async fn run(
    client: Client,
    addr: SocketAddr,
    cert: Certificate,
    inject: Option<String>,
    notify: Option<crate::notify::NotifyConfig>,
) -> anyhow::Result<()> {
    let (cache, driver) = StreamCache::new(client.clone());
    tokio::select! {
        () = driver => Ok(()),
        r = run_shared(client, cache, addr, cert, inject, notify, Arc::default()) => r,
    }
}

/// Serves the webhook (and the notification receiver) from the shared stream cache, so answers
/// never wait for an API call.
pub async fn run_shared(
    client: Client,
    cache: StreamCache,
    addr: SocketAddr,
    cert: Certificate,
    inject: Option<String>,
    notify: Option<crate::notify::NotifyConfig>,
    metrics: Arc<server::AdmissionMetrics>,
) -> anyhow::Result<()> {
    if let (Certificate::Generated { cert_pem, .. }, Some(name)) = (&cert, &inject) {
        let (client, name, ca) = (client.clone(), name.clone(), cert_pem.clone());
        // Kept injected: `helm upgrade` rewrites the configuration without the caBundle.
        tokio::spawn(async move {
            loop {
                if let Err(e) = inject_ca_bundle(&client, &name, &ca).await {
                    tracing::warn!(error = %e, "webhook CA injection failed; retrying");
                }
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            }
        });
    }
    let index: Arc<Mutex<TargetIndex>> = Arc::default();
    // The notification index holds every spec tag's repository; without a notification secret
    // every notification is refused, so it is not kept.
    let accepts_notifications = notify
        .as_ref()
        .is_some_and(|c| c.token.is_some() || c.hmac_secret.is_some());
    let maintain = match accepts_notifications {
        true => maintain_index(&cache, index.clone()).boxed(),
        false => futures::future::pending().boxed(),
    };
    let mut app = server::router(Admission {
        streams: cache.store(),
        metrics,
    });
    if let Some(config) = notify {
        let requester = Arc::new(crate::notify::ApiRequester { client });
        let receiver = crate::notify::Receiver::new(config, index, requester);
        app = app.merge(crate::notify::router(receiver));
    }
    tokio::select! {
        () = maintain => Ok(()),
        r = server::serve_router(addr, cert, app) => r,
    }
}

/// Keeps the notification index equal to the stream cache.
async fn maintain_index(cache: &StreamCache, index: Arc<Mutex<TargetIndex>>) {
    let changes = cache.subscribe();
    {
        let mut index = index.lock().unwrap_or_else(|p| p.into_inner());
        for s in cache.store().state() {
            index.update(&s);
        }
    }
    changes
        .for_each(move |event| {
            let mut index = index.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                StreamEvent::Applied(s) => index.update(&s),
                StreamEvent::Deleted(s) => {
                    index.remove(&s.namespace().unwrap_or_default(), &s.name_any())
                }
            }
            futures::future::ready(())
        })
        .await
}

/// Puts the generated certificate (self-signed, so it is its own CA) into every webhook of the
/// configuration, so the API server trusts this replica.
pub async fn inject_ca_bundle(client: &Client, name: &str, ca_pem: &str) -> anyhow::Result<()> {
    use base64::Engine;
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let current = api.get(name).await.map_err(|e| {
        anyhow::anyhow!("cannot read MutatingWebhookConfiguration {name} to inject the CA: {e}")
    })?;
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let webhooks = current.webhooks.as_deref().unwrap_or_default();
    if webhooks.iter().all(|w| {
        w.client_config
            .ca_bundle
            .as_ref()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(&b.0))
            == Some(bundle.clone())
    }) {
        return Ok(());
    }
    let ops: Vec<serde_json::Value> = (0..webhooks.len())
        .map(|i| json!({"op": "replace", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle}))
        .collect();
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))?;
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(|e| anyhow::anyhow!("cannot inject the CA into {name}: {e}"))?;
    Ok(())
}

/// One serving certificate for every replica: the first replica generates it and stores it in a
/// Secret in its namespace; the others (and restarts) read it. Creation is atomic, so a race
/// ends with everyone reading the winner's certificate.
pub async fn shared_certificate(
    client: &Client,
    namespace: &str,
    secret: &str,
    hosts: &[String],
) -> anyhow::Result<Certificate> {
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::ByteString;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for _ in 0..3 {
        if let Some(s) = api.get_opt(secret).await? {
            let data = s.data.unwrap_or_default();
            let text = |k: &str| {
                data.get(k)
                    .map(|b| String::from_utf8_lossy(&b.0).to_string())
            };
            if let (Some(cert_pem), Some(key_pem)) = (text("tls.crt"), text("tls.key")) {
                return Ok(Certificate::Generated { cert_pem, key_pem });
            }
            anyhow::bail!("secret {namespace}/{secret} has no tls.crt/tls.key; delete it to have a new certificate generated");
        }
        let Certificate::Generated { cert_pem, key_pem } = server::generate(hosts)? else {
            unreachable!("generate returns a generated certificate")
        };
        let new: Secret = serde_json::from_value(json!({
            "metadata": {"name": secret, "namespace": namespace, "labels": {"app.kubernetes.io/name": "imagestream-operator"}},
            "type": "kubernetes.io/tls",
            "data": {},
        }))?;
        let mut new = new;
        new.data = Some(
            [
                ("tls.crt".to_string(), ByteString(cert_pem.into_bytes())),
                ("tls.key".to_string(), ByteString(key_pem.into_bytes())),
            ]
            .into(),
        );
        match api.create(&Default::default(), &new).await {
            Ok(_) => continue,
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "cannot store the webhook certificate in {namespace}/{secret}: {e}"
                ))
            }
        }
    }
    anyhow::bail!("could not read or create the webhook certificate secret {namespace}/{secret}")
}
