//! Every Prometheus series the operator exports, under the `imagestream_` prefix. One process-wide
//! set: the controllers record into it and `/metrics` encodes it.

use std::sync::{Arc, LazyLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::registry::metrics::RegistryMetrics;
use crate::triggers::controller::TriggerMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImportLabels {
    /// `success` or `failure`.
    pub outcome: String,
    /// The condition reason for failures, empty for successes.
    pub reason: String,
}

pub struct OperatorMetrics {
    pub imports: Family<ImportLabels, Counter>,
    pub import_duration: Histogram,
    pub reconcile_errors: Counter,
    pub leader: Gauge,
    /// From a tag's new image being recorded to the workload patch that rolls it out.
    pub tag_to_patch_latency: Histogram,
    /// The scheduler's effective interval per registry (it records into this family).
    pub schedule_effective_interval: crate::schedule::EffectiveIntervals,
    pub registry: Arc<RegistryMetrics>,
    pub triggers: Arc<TriggerMetrics>,
    pub admission: crate::admission::server::AdmissionMetrics,
    pub notify: crate::notify::NotifyMetrics,
}

impl OperatorMetrics {
    fn new() -> Self {
        Self {
            imports: Family::default(),
            import_duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            reconcile_errors: Counter::default(),
            leader: Gauge::default(),
            tag_to_patch_latency: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            schedule_effective_interval: Default::default(),
            registry: Arc::default(),
            triggers: Arc::default(),
            admission: Default::default(),
            notify: Default::default(),
        }
    }

    pub fn record_import(
        &self,
        result: &Result<crate::registry::ResolvedImage, crate::registry::RegistryError>,
        seconds: f64,
    ) {
        let labels = match result {
            Ok(_) => ImportLabels {
                outcome: "success".into(),
                reason: String::new(),
            },
            Err(e) => ImportLabels {
                outcome: "failure".into(),
                reason: e.reason().into(),
            },
        };
        self.imports.get_or_create(&labels).inc();
        self.import_duration.observe(seconds);
    }

    /// The text exposition of every series.
    pub fn encode(&self) -> String {
        let mut registry = Registry::with_prefix("imagestream");
        registry.register(
            "imports",
            "Tag imports by outcome and failure reason",
            self.imports.clone(),
        );
        registry.register_with_unit(
            "import_duration",
            "Time to resolve one tag at its registry",
            Unit::Seconds,
            self.import_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed on an API error and were retried",
            self.reconcile_errors.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            self.leader.clone(),
        );
        registry.register_with_unit(
            "tag_to_patch_latency",
            "From a tag's new image being recorded to the workload patch",
            Unit::Seconds,
            self.tag_to_patch_latency.clone(),
        );
        registry.register_with_unit(
            "schedule_effective_interval",
            "Interval at which scheduled tags on a registry are actually re-checked (longer than configured when the registry's budget or the per-minute budget cannot keep up)",
            Unit::Seconds,
            self.schedule_effective_interval.clone(),
        );
        self.registry.register(&mut registry);
        self.triggers.register(&mut registry);
        self.admission.register(&mut registry);
        self.notify.register(&mut registry);
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

static METRICS: LazyLock<OperatorMetrics> = LazyLock::new(OperatorMetrics::new);

pub fn global() -> &'static OperatorMetrics {
    &METRICS
}

#[cfg(test)]
mod tests {
    #[test]
    fn series_follow_prometheus_naming() {
        let m = super::global();
        m.reconcile_errors.inc();
        // Label families print nothing until they have a series.
        m.registry.record(
            "quay.io",
            "HEAD",
            "429",
            std::time::Duration::from_millis(5),
        );
        m.registry.record_bytes("quay.io", 10);
        let missing = crate::registry::RegistryError::NotFound {
            reference: "r".into(),
            detail: "d".into(),
        };
        m.record_import(&Err(missing), 0.1);
        m.triggers
            .failures
            .get_or_create(&vec![("reason".into(), "InvalidTrigger".into())])
            .inc();
        let text = m.encode();
        for series in [
            "imagestream_imports_total",
            "imagestream_import_duration_seconds",
            "imagestream_reconcile_errors_total",
            "imagestream_leader",
            "imagestream_tag_to_patch_latency_seconds",
            "imagestream_registry_requests_total",
            "imagestream_registry_rate_limited_total",
            "imagestream_registry_response_bytes_total",
            "imagestream_registry_request_duration_seconds",
            "imagestream_trigger_fires_total",
            "imagestream_trigger_failures_total",
        ] {
            assert!(
                text.contains(&format!("# TYPE {series}"))
                    || text.contains(&format!("{series}{{"))
                    || text.contains(&format!("{series} ")),
                "{series} missing:\n{text}"
            );
        }
    }
}
