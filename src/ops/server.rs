//! `/metrics`, `/healthz` and `/readyz` on one plain-HTTP port (metrics carry no secrets; the
//! HTTPS endpoints of the webhook issues get their own listener).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

use super::Health;

pub fn router(health: Arc<Health>, metrics: Arc<Registry>) -> Router {
    let ready = health.clone();
    Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    super::metrics::encode(&metrics),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    let (ok, why) = ready.ready();
                    let code = if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (code, why).into_response()
                }
            }),
        )
}

/// Binds the metrics and health address: first thing at start-up, so a port in use is the one
/// error printed, before any watch has started.
pub async fn listen(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr} for /metrics, /healthz and /readyz: {e}; choose another address with --metrics-addr (e.g. 127.0.0.1:0 for any free port)"
        )
    })
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    metrics: Arc<Registry>,
) -> anyhow::Result<()> {
    axum::serve(listener, router(health, metrics)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoints_answer() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let health = Arc::new(Health::default());
        health.expect(2);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut registry = crate::ops::metrics::registry();
        crate::ops::metrics::LeaderMetrics::default().register(&mut registry);
        let app = router(health.clone(), Arc::new(registry));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        let get = |path: &str| client.get(format!("http://{addr}{path}")).send();
        assert_eq!(get("/healthz").await.unwrap().status(), 200);
        assert_eq!(get("/readyz").await.unwrap().status(), 503);
        health.cache_synced();
        health.cache_synced();
        assert_eq!(get("/readyz").await.unwrap().status(), 200);
        let metrics = get("/metrics").await.unwrap().text().await.unwrap();
        assert!(metrics.contains("imagestream_leader"), "{metrics}");
    }
}
