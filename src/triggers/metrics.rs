//! The trigger controllers' series: fires, failures by reason, and how long a tag's change (or
//! the push notification behind it) took to reach the workload.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// A trigger failure's label: one of the `reason` constants, so the series stay few.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub reason: &'static str,
}

pub struct TriggerMetrics {
    pub fires: Counter,
    /// Failures by Event reason (InvalidTrigger, TriggerForbidden, TriggerFailed, …).
    pub failures: Family<FailureLabels, Counter>,
    /// From a tag's new image being recorded to the workload patch that rolls it out.
    pub tag_to_patch_latency: Histogram,
    /// From a push notification to the workload patch. The notification receiver exports it;
    /// `main` hands the same histogram to both.
    pub push_to_rollout: Histogram,
}

impl Default for TriggerMetrics {
    fn default() -> Self {
        Self {
            fires: Counter::default(),
            failures: Family::default(),
            tag_to_patch_latency: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            push_to_rollout: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
        }
    }
}

impl TriggerMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "trigger_fires",
            "Workload image fields set by triggers",
            self.fires.clone(),
        );
        registry.register(
            "trigger_failures",
            "Triggers that could not fire, by reason",
            self.failures.clone(),
        );
        registry.register_with_unit(
            "tag_to_patch_latency",
            "From a tag's new image being recorded to the workload patch",
            prometheus_client::registry::Unit::Seconds,
            self.tag_to_patch_latency.clone(),
        );
    }
}
