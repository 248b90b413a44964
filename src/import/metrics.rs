//! The import controller's series, reached through its context.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::registry::{RegistryError, ResolvedImage};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImportLabels {
    /// `success` or `failure`.
    pub outcome: String,
    /// The condition reason for failures, empty for successes.
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct ImportMetrics {
    pub imports: Family<ImportLabels, Counter>,
    pub duration: Histogram,
    pub reconcile_errors: Counter,
    /// From a push notification to the import it asked for. The notification receiver exports
    /// it; `main` hands the same histogram to both.
    pub push_to_import: Histogram,
}

impl Default for ImportMetrics {
    fn default() -> Self {
        Self {
            imports: Family::default(),
            duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            reconcile_errors: Counter::default(),
            push_to_import: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
        }
    }
}

impl ImportMetrics {
    pub fn record(&self, result: &Result<ResolvedImage, RegistryError>, seconds: f64) {
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
        self.duration.observe(seconds);
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "imports",
            "Tag imports by outcome and failure reason",
            self.imports.clone(),
        );
        registry.register_with_unit(
            "import_duration",
            "Time to resolve one tag at its registry",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed on an API error and were retried",
            self.reconcile_errors.clone(),
        );
    }
}
