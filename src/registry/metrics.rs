//! Counters and histograms for every registry request. The operations module registers them on
//! the `/metrics` endpoint; the benchmark reads the request total directly.

use parking_lot::Mutex;
use std::collections::HashSet;
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
    /// The registries that have a label of their own; the rest share `other`.
    labelled: Mutex<HashSet<String>>,
}

/// Registries with series of their own: a tenant can name any number of hosts, and each would
/// add series to every scrape for the life of the process.
pub const MAX_REGISTRY_LABELS: usize = 100;
/// The label of every registry past the first [`MAX_REGISTRY_LABELS`].
pub const OTHER_REGISTRIES: &str = "other";

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
            labelled: Mutex::default(),
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

    /// The label `registry` is counted under: its own while there is room, else `other`.
    pub fn label(&self, registry: &str) -> String {
        let mut labelled = self.labelled.lock();
        if labelled.contains(registry) {
            return registry.to_string();
        }
        if labelled.len() < MAX_REGISTRY_LABELS {
            labelled.insert(registry.to_string());
            return registry.to_string();
        }
        OTHER_REGISTRIES.to_string()
    }

    pub fn record(&self, registry: &str, method: &str, outcome: &str, elapsed: Duration) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let registry = &self.label(registry);
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
                registry: self.label(registry),
            })
            .inc_by(bytes as u64);
    }

    /// Every request sent so far, token requests included.
    pub fn total_requests(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_past_the_label_budget_share_one_series() {
        let m = RegistryMetrics::default();
        for i in 0..MAX_REGISTRY_LABELS + 50 {
            m.record(&format!("r{i}.example:5000"), "GET", "200", Duration::ZERO);
            m.record_bytes(&format!("r{i}.example:5000"), 1);
        }
        m.record("r0.example:5000", "GET", "200", Duration::ZERO);
        let mut text = String::new();
        let mut registry = Registry::default();
        m.register(&mut registry);
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let series: HashSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("registry_requests_total{"))
            .filter_map(|l| l.split("registry=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(series.len(), MAX_REGISTRY_LABELS + 1, "{series:?}");
        assert!(series.contains(OTHER_REGISTRIES) && series.contains("r0.example:5000"));
        assert_eq!(m.total_requests(), (MAX_REGISTRY_LABELS + 51) as u64);
    }
}
