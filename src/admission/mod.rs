//! The mutating admission webhook: image lookup for short names and image triggers resolved
//! when Jobs and bare Pods are created. `lookup.rs` decides (pure), `server.rs` serves HTTPS.

pub mod listener;
pub mod lookup;
pub mod server;

use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;

use server::Certificate;

/// Name of the MutatingWebhookConfiguration the chart installs.
pub const WEBHOOK_CONFIGURATION: &str = "imagestream-operator";

/// Keeps the generated certificate in the webhook configuration `name`: `helm upgrade` rewrites
/// the configuration without the caBundle, so it is checked again every minute.
pub async fn keep_ca_bundle_injected(client: Client, name: String, ca_pem: String) {
    loop {
        if let Err(e) = inject_ca_bundle(&client, &name, &ca_pem).await {
            tracing::warn!(error = %e, "webhook CA injection failed; retrying");
        }
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
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
