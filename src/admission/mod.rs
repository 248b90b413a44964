//! The mutating admission webhook: image lookup for short names and image triggers resolved
//! when Jobs and bare Pods are created. `lookup.rs` decides (pure), `server.rs` serves HTTPS,
//! `certificate.rs` says when a generated certificate must be replaced (pure), `audit.rs` warns
//! about workloads stored without lookup; this file keeps the generated certificate shared,
//! renewed and trusted.

pub mod audit;
pub mod certificate;
pub mod listener;
pub mod lookup;
pub mod server;

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;

use certificate::{Pair, Verdict};
use server::ServerTls;

/// Name of the MutatingWebhookConfiguration the chart installs.
pub const WEBHOOK_CONFIGURATION: &str = "imagestream-operator";

/// Where the generated certificate is shared and whom it must be trusted by.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The operator's namespace, holding the Secret.
    pub namespace: String,
    pub secret: String,
    /// The webhook Service's names: the certificate's SANs.
    pub hosts: Vec<String>,
    /// The MutatingWebhookConfiguration whose caBundle trusts it.
    pub webhook: String,
}

/// The certificate a replica serves, as the Secret holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub pair: Pair,
    /// What the API server must trust: this certificate and, while it is still valid, the one
    /// it replaced (replicas that have not reloaded yet keep serving that one).
    pub ca_bundle: String,
    pub renew_at: SystemTime,
}

/// One serving certificate for every replica: the first replica generates it and stores it in a
/// Secret in its namespace; the others (and restarts) read it. A stored certificate for other
/// names, or past two thirds of its life, is replaced (an update with the resourceVersion read,
/// so replicas renewing at once end with everyone reading the winner's certificate).
pub async fn shared_certificate(client: &Client, shared: &Shared) -> anyhow::Result<Stored> {
    let (namespace, name) = (&shared.namespace, &shared.secret);
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for _ in 0..3 {
        let now = SystemTime::now();
        let Some(current) = api.get_opt(name).await? else {
            let fresh = certificate::generate(&shared.hosts, now)?;
            let secret = secret_of(shared, &fresh, &fresh.cert_pem, None)?;
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => tracing::info!(secret = %name, "webhook certificate generated"),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "cannot store the webhook certificate in {namespace}/{name}: {e}"
                    ))
                }
            }
            continue;
        };
        let stored = read_stored(&current);
        let why = match &stored {
            Some((pair, _)) => match certificate::assess(&pair.cert_pem, &shared.hosts, now) {
                Verdict::Serve { renew_at } => {
                    let (pair, ca_bundle) = (pair.clone(), stored_bundle(&stored));
                    return Ok(Stored {
                        pair,
                        ca_bundle,
                        renew_at,
                    });
                }
                Verdict::Replace(why) => why,
            },
            None => "the Secret has no tls.crt/tls.key".to_string(),
        };
        let fresh = certificate::generate(&shared.hosts, now)?;
        let mut bundle = fresh.cert_pem.clone();
        if let Some((old, _)) = stored.filter(|(p, _)| certificate::still_valid(&p.cert_pem, now)) {
            bundle.push_str(&old.cert_pem);
        }
        let version = current.metadata.resource_version.clone();
        let secret = secret_of(shared, &fresh, &bundle, version)?;
        match api.replace(name, &PostParams::default(), &secret).await {
            Ok(_) => tracing::info!(secret = %name, reason = %why, "webhook certificate renewed"),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "cannot renew the webhook certificate in {namespace}/{name} ({why}): {e}"
                ))
            }
        }
    }
    anyhow::bail!("could not read or store the webhook certificate secret {namespace}/{name}")
}

fn stored_bundle(stored: &Option<(Pair, String)>) -> String {
    stored.as_ref().map(|(_, b)| b.clone()).unwrap_or_default()
}

/// The pair and the CA bundle a Secret holds (a Secret from before the bundle: the certificate).
fn read_stored(secret: &Secret) -> Option<(Pair, String)> {
    let data = secret.data.as_ref()?;
    let text = |k: &str| {
        data.get(k)
            .map(|b| String::from_utf8_lossy(&b.0).to_string())
    };
    let pair = Pair {
        cert_pem: text("tls.crt")?,
        key_pem: text("tls.key")?,
    };
    let bundle = text("ca.crt").unwrap_or_else(|| pair.cert_pem.clone());
    Some((pair, bundle))
}

fn secret_of(
    shared: &Shared,
    pair: &Pair,
    bundle: &str,
    resource_version: Option<String>,
) -> anyhow::Result<Secret> {
    let mut secret: Secret = serde_json::from_value(json!({
        "metadata": {
            "name": shared.secret, "namespace": shared.namespace,
            "labels": {"app.kubernetes.io/name": "imagestream-operator"},
        },
        "type": "kubernetes.io/tls",
    }))?;
    secret.metadata.resource_version = resource_version;
    secret.data = Some(
        [
            ("tls.crt", &pair.cert_pem),
            ("tls.key", &pair.key_pem),
            ("ca.crt", &bundle.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
        .collect(),
    );
    Ok(secret)
}

/// Keeps the generated certificate served, renewed and trusted, for as long as the replica
/// runs: the Secret and the webhook configuration are watched (by name, so only these two
/// objects are read), the served certificate is swapped in place when the Secret changes, and
/// the caBundle is put back as soon as `helm upgrade` or anyone else rewrites it.
pub async fn keep_certificate(
    client: Client,
    shared: Shared,
    mut stored: Stored,
    tls: Vec<ServerTls>,
) {
    let by_name = |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
    let secrets = watcher(
        Api::<Secret>::namespaced(client.clone(), &shared.namespace),
        by_name(&shared.secret),
    )
    .backoff(crate::api::scope::watch_backoff())
    // A deleted Secret too: the next check stores a new certificate everyone then serves.
    .touched_objects()
    .map(|_| Change::Secret)
    .boxed();
    let hooks = watcher(
        Api::<MutatingWebhookConfiguration>::all(client.clone()),
        by_name(&shared.webhook),
    )
    .backoff(crate::api::scope::watch_backoff())
    .applied_objects()
    .map(|r| Change::Webhook(r.ok().map(Box::new)))
    .boxed();
    let mut changes = futures::stream::select(secrets, hooks);
    // A failed injection is tried again every few seconds, not only on the next change.
    let mut inject_due = false;
    loop {
        let wait = match inject_due {
            true => Duration::from_secs(5),
            // A clock that jumps is noticed within the day.
            false => stored
                .renew_at
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .min(Duration::from_secs(24 * 3600)),
        };
        let change = tokio::select! {
            c = changes.next() => c.unwrap_or(Change::Secret),
            () = tokio::time::sleep(wait), if inject_due => Change::Webhook(None),
            () = tokio::time::sleep(wait), if !inject_due => Change::Secret,
        };
        match change {
            Change::Secret => {
                let next = refreshed(&client, &shared, &stored, &tls).await;
                inject_due |= next.ca_bundle != stored.ca_bundle;
                stored = next;
            }
            Change::Webhook(Some(hook)) => inject_due |= !trusts(&hook, &stored.ca_bundle),
            Change::Webhook(None) => {}
        }
        if inject_due {
            match inject_ca_bundle(&client, &shared.webhook, &stored.ca_bundle).await {
                Ok(()) => inject_due = false,
                Err(e) => tracing::warn!(error = %e, "webhook CA injection failed; retrying"),
            }
        }
    }
}

enum Change {
    Secret,
    Webhook(Option<Box<MutatingWebhookConfiguration>>),
}

/// The Secret's certificate, renewed first when due, loaded into every listener; on failure
/// the current one stays (and is tried again a few seconds later).
async fn refreshed(client: &Client, shared: &Shared, stored: &Stored, tls: &[ServerTls]) -> Stored {
    let next = match shared_certificate(client, shared).await {
        Ok(next) => next,
        Err(e) => {
            tracing::warn!(error = %e, "webhook certificate check failed; keeping the current one");
            tokio::time::sleep(Duration::from_secs(5)).await;
            return stored.clone();
        }
    };
    if next.pair != stored.pair {
        for listener in tls {
            if let Err(e) = listener.load(&next.pair) {
                tracing::warn!(error = %e, "cannot serve the renewed certificate; keeping the current one");
                return stored.clone();
            }
        }
        tracing::info!("webhook certificate reloaded");
    }
    next
}

/// Whether every webhook of the configuration trusts `bundle` already.
fn trusts(hook: &MutatingWebhookConfiguration, bundle: &str) -> bool {
    hook.webhooks.iter().flatten().all(|w| {
        w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) == Some(bundle.as_bytes())
    })
}

/// Puts the generated certificate (self-signed, so it is its own CA) into every webhook of the
/// configuration, so the API server trusts this replica.
pub async fn inject_ca_bundle(client: &Client, name: &str, ca_pem: &str) -> anyhow::Result<()> {
    use base64::Engine;
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let current = api.get(name).await.map_err(|e| {
        anyhow::anyhow!("cannot read MutatingWebhookConfiguration {name} to inject the CA: {e}")
    })?;
    if trusts(&current, ca_pem) {
        return Ok(());
    }
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let webhooks = current.webhooks.as_deref().unwrap_or_default();
    let ops: Vec<serde_json::Value> = (0..webhooks.len())
        .map(|i| json!({"op": "replace", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle}))
        .collect();
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))?;
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(|e| anyhow::anyhow!("cannot inject the CA into {name}: {e}"))?;
    Ok(())
}
