//! A token server for the registry's `auth.token` scheme: ES256 JWTs carrying an x5c header with
//! a self-signed certificate that the registry trusts as its root bundle.

use super::http::{read_head, respond, spawn_server, RequestHead};

pub const SERVICE: &str = "test-registry";
pub const ISSUER: &str = "test-issuer";
pub const TOKEN_USER: &str = "alice";
pub const TOKEN_PASSWORD: &str = "s3cret";

pub struct TokenServer {
    pub addr: String,
    pub cert_pem: String,
    /// Token requests answered (issued or refused).
    pub requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenServer {
    /// Grants everything to alice; anonymous callers may only pull `public/*`.
    pub fn start() -> Self {
        use base64::Engine;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["token-issuer".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let x5c = base64::engine::general_purpose::STANDARD.encode(cert.der());
        let signer = std::sync::Arc::new(
            ring::signature::EcdsaKeyPair::from_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &key.serialize_der(),
                &ring::rand::SystemRandom::new(),
            )
            .unwrap(),
        );
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = requests.clone();
        let addr = spawn_server(move |mut stream| {
            let signer = signer.clone();
            let x5c = x5c.clone();
            let counter = counter.clone();
            async move {
                let Some(head) = read_head(&mut stream).await else {
                    return;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                match issue(&head, &signer, &x5c) {
                    Ok(token) => {
                        let body =
                            serde_json::json!({"token": token, "expires_in": 300}).to_string();
                        respond(
                            &mut stream,
                            "200 OK",
                            &[("Content-Type", "application/json".into())],
                            body.as_bytes(),
                        )
                        .await
                    }
                    Err(status) => {
                        respond(&mut stream, status, &[], b"{\"details\":\"denied\"}").await
                    }
                }
            }
        });
        Self {
            addr,
            cert_pem: cert.pem(),
            requests,
        }
    }
}

fn issue(
    head: &RequestHead,
    signer: &ring::signature::EcdsaKeyPair,
    x5c: &str,
) -> Result<String, &'static str> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let user = match head.header("authorization") {
        None => None,
        Some(v) => {
            let decoded = v
                .strip_prefix("Basic ")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or("400 Bad Request")?;
            if decoded != format!("{TOKEN_USER}:{TOKEN_PASSWORD}") {
                return Err("401 Unauthorized");
            }
            Some(TOKEN_USER)
        }
    };
    let query = head.path.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut access = Vec::new();
    for (k, v) in query.split('&').filter_map(|p| p.split_once('=')) {
        if k != "scope" {
            continue;
        }
        let scope = v
            .replace("%3A", ":")
            .replace("%2F", "/")
            .replace("%2C", ",");
        let mut parts = scope.splitn(3, ':');
        let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|a| user.is_some() || (*a == "pull" && name.starts_with("public/")))
            .collect();
        access.push(serde_json::json!({"type": kind, "name": name, "actions": granted}));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": user.unwrap_or(""), "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let sig = signer
        .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
        .map_err(|_| "500 Internal Server Error")?;
    Ok(format!("{signing_input}.{}", b64.encode(sig.as_ref())))
}
