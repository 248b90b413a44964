//! The `/metrics` exposition, under the `imagestream_` prefix. Each part of the operator owns its
//! series and reaches them through its own context; `main` registers them all here once, so this
//! module depends on no controller.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The registry every part registers its series into.
pub fn registry() -> Registry {
    Registry::with_prefix("imagestream")
}

/// The text exposition of every registered series.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

/// Whether this replica leads.
#[derive(Clone, Debug, Default)]
pub struct LeaderMetrics {
    pub leader: Gauge,
}

impl LeaderMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            self.leader.clone(),
        );
    }
}
