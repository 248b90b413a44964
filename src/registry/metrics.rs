//! Counters and histograms for every registry request. The operations module registers them on
//! the `/metrics` endpoint; the benchmark reads the request total directly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub registry: String,
    pub method: String,
    /// HTTP status code; `error` when no response arrived; `https_fallback` when an insecure
    /// registry's HTTPS attempt could not connect and plain HTTP is tried next (by design).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    pub registry: String,
}

type LatencyFamily = Family<RegistryLabels, Histogram, fn() -> Histogram>;

pub struct RegistryMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub rate_limited: Family<RegistryLabels, Counter>,
    pub response_bytes: Family<RegistryLabels, Counter>,
    pub latency: LatencyFamily,
    total: AtomicU64,
}

impl Default for RegistryMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            rate_limited: Family::default(),
            response_bytes: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            total: AtomicU64::new(0),
        }
    }
}

impl RegistryMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "registry_requests",
            "HTTP requests sent to registries and token servers, by outcome",
            self.requests.clone(),
        );
        registry.register(
            "registry_rate_limited",
            "HTTP 429 answers from registries",
            self.rate_limited.clone(),
        );
        registry.register_with_unit(
            "registry_response",
            "Response body bytes read from registries",
            Unit::Bytes,
            self.response_bytes.clone(),
        );
        registry.register_with_unit(
            "registry_request_duration",
            "Registry request latency until the response headers arrive",
            Unit::Seconds,
            self.latency.clone(),
        );
    }

    pub fn record(&self, registry: &str, method: &str, outcome: &str, elapsed: Duration) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.requests
            .get_or_create(&RequestLabels {
                registry: registry.to_string(),
                method: method.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        let labels = RegistryLabels {
            registry: registry.to_string(),
        };
        self.latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if outcome == "429" {
            self.rate_limited.get_or_create(&labels).inc();
        }
    }

    pub fn record_bytes(&self, registry: &str, bytes: usize) {
        self.response_bytes
            .get_or_create(&RegistryLabels {
                registry: registry.to_string(),
            })
            .inc_by(bytes as u64);
    }

    /// Every request sent so far, token requests included.
    pub fn total_requests(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}
