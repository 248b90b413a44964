//! The mutating admission webhook: image lookup for short names and image triggers resolved
//! when Jobs and bare Pods are created. `lookup.rs` decides (pure), `server.rs` serves HTTPS.

pub mod lookup;
pub mod server;

use std::net::SocketAddr;

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;

use crate::api::ImageStream;
use server::{Admission, Certificate};

/// Name of the MutatingWebhookConfiguration the chart installs.
pub const WEBHOOK_CONFIGURATION: &str = "imagestream-operator";

/// Runs on every replica (the Service may send a request to any of them), with its own stream
/// cache so answers never wait for an API call.
pub async fn run(
    client: Client,
    addr: SocketAddr,
    cert: Certificate,
    inject: Option<String>,
) -> anyhow::Result<()> {
    if let (Certificate::Generated { cert_pem, .. }, Some(name)) = (&cert, &inject) {
        inject_ca_bundle(&client, name, cert_pem).await?;
    }
    let (store, writer) = reflector::store();
    let cache = reflector(
        writer,
        watcher(Api::<ImageStream>::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects()
    .for_each(|_| futures::future::ready(()));
    tokio::select! {
        () = cache => Ok(()),
        r = server::serve(addr, cert, Admission { streams: store }) => r,
    }
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
    let ops: Vec<serde_json::Value> = (0..current.webhooks.as_ref().map_or(0, Vec::len))
        .map(|i| json!({"op": "replace", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle}))
        .collect();
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))?;
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(|e| anyhow::anyhow!("cannot inject the CA into {name}: {e}"))?;
    Ok(())
}
