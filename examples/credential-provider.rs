//! A minimal kubelet credential provider plugin (`credentialprovider.kubelet.k8s.io/v1`), for
//! the tests of `--image-credential-provider-config` and as a template: it reads a
//! `CredentialProviderRequest` on stdin and prints a `CredentialProviderResponse`.
//!
//! Its behaviour comes from the environment, which the provider config's `env` sets:
//! - `TEST_PROVIDER_MODE`: `ok` (default), `hang`, `crash`, `garbage`, `wrong-version`;
//! - `TEST_PROVIDER_USER` / `TEST_PROVIDER_PASSWORD`: the credential it answers with;
//! - `TEST_PROVIDER_KEY_TYPE` (`Registry` by default) and `TEST_PROVIDER_DURATION`;
//! - `TEST_PROVIDER_LOG`: a file it appends one JSON line to per run (image, and in token mode
//!   the token's namespace, ServiceAccount and audiences, read from its claims);
//! - `TEST_PROVIDER_AUDIENCE`: in token mode, refuse a token not minted for this audience.

use std::io::{Read, Write};

use base64::Engine;
use serde_json::{json, Value};

fn main() {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    let request: Value = serde_json::from_str(&input).unwrap_or(Value::Null);
    let image = request["image"].as_str().unwrap_or_default().to_string();
    let claims = request["serviceAccountToken"].as_str().map(claims_of);
    log(&env("TEST_PROVIDER_LOG"), &image, claims.as_ref());
    match env("TEST_PROVIDER_MODE").as_str() {
        "hang" => std::thread::sleep(std::time::Duration::from_secs(3600)),
        "crash" => {
            eprintln!("provider exploded: no cloud credentials found\nsee the provider's log");
            std::process::exit(3);
        }
        "garbage" => {
            println!("this is not JSON {{");
            return;
        }
        _ => {}
    }
    if let (Some(claims), Ok(audience)) = (&claims, std::env::var("TEST_PROVIDER_AUDIENCE")) {
        if !audiences(claims).contains(&audience) {
            eprintln!("the token is not for audience {audience}");
            std::process::exit(2);
        }
    }
    let version = if env("TEST_PROVIDER_MODE") == "wrong-version" {
        "credentialprovider.kubelet.k8s.io/v1alpha1"
    } else {
        "credentialprovider.kubelet.k8s.io/v1"
    };
    let key_type = std::env::var("TEST_PROVIDER_KEY_TYPE").unwrap_or("Registry".into());
    let registry = image.split('/').next().unwrap_or_default();
    let mut response = json!({
        "apiVersion": version,
        "kind": "CredentialProviderResponse",
        "cacheKeyType": key_type,
        "auth": {registry: {"username": env("TEST_PROVIDER_USER"), "password": env("TEST_PROVIDER_PASSWORD")}},
    });
    if let Ok(duration) = std::env::var("TEST_PROVIDER_DURATION") {
        response["cacheDuration"] = duration.into();
    }
    println!("{response}");
}

/// The claims of a JWT, unverified: the test only needs to see whose token it was given.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

fn audiences(claims: &Value) -> Vec<String> {
    match &claims["aud"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn log(path: &str, image: &str, claims: Option<&Value>) {
    if path.is_empty() {
        return;
    }
    let k8s = claims.map(|c| &c["kubernetes.io"]);
    let line = json!({
        "image": image,
        "namespace": k8s.and_then(|k| k["namespace"].as_str()),
        "serviceAccount": k8s.and_then(|k| k["serviceaccount"]["name"].as_str()),
        "audiences": claims.map(audiences),
    });
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        // One write per line: concurrent runs append to the same file.
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}
