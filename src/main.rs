//! `imagestream-operator`: the flags (`args.rs`), then wiring only: one stream cache for the
//! process, the controllers on the leader, the HTTPS listeners and `/metrics` on every replica.

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use imagestream_operator::admission::server::Certificate;
use imagestream_operator::admission::shared_certificate;
use imagestream_operator::api::cache::StreamCache;
use imagestream_operator::import::controller::{self, Settings};
use imagestream_operator::ops::leader::run_as_leader;
use imagestream_operator::ops::{server, Health};
use imagestream_operator::registry::resolver::RegistryResolver;
use imagestream_operator::registry::ImageResolver;
use imagestream_operator::schedule::Scheduler;
use imagestream_operator::triggers::controller::TriggerSettings;

mod args;
use args::RunArgs;

#[derive(Parser)]
#[command(
    name = "imagestream-operator",
    version,
    about = "OpenShift-style image streams for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster of the in-cluster config or the current KUBECONFIG context.
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinition YAML generated from the API types.
    Crds,
}

/// Every part's series, created once: each part records through its own context, and `/metrics`
/// encodes the registry they are all registered in.
#[derive(Default)]
pub struct Metrics {
    registry: Arc<imagestream_operator::registry::metrics::RegistryMetrics>,
    pub import: imagestream_operator::import::metrics::ImportMetrics,
    pub schedule: imagestream_operator::schedule::EffectiveIntervals,
    pub triggers: Arc<imagestream_operator::triggers::metrics::TriggerMetrics>,
    admission: Arc<imagestream_operator::admission::server::AdmissionMetrics>,
    notify: imagestream_operator::notify::NotifyMetrics,
    pub leader: imagestream_operator::ops::metrics::LeaderMetrics,
}

impl Metrics {
    fn new() -> Self {
        let mut m = Self::default();
        // A push's wait ends in the import controller and in the triggers; the receiver exports
        // both histograms.
        m.import.push_to_import = m.notify.push_to_import.clone();
        m.triggers = Arc::new(imagestream_operator::triggers::metrics::TriggerMetrics {
            push_to_rollout: m.notify.push_to_rollout.clone(),
            ..Default::default()
        });
        m
    }

    fn exposition(&self) -> prometheus_client::registry::Registry {
        let mut r = imagestream_operator::ops::metrics::registry();
        self.import.register(&mut r);
        imagestream_operator::schedule::register(&self.schedule, &mut r);
        self.registry.register(&mut r);
        self.triggers.register(&mut r);
        self.admission.register(&mut r);
        self.notify.register(&mut r);
        self.leader.register(&mut r);
        r
    }
}

async fn run(mut args: RunArgs) -> anyhow::Result<()> {
    imagestream_operator::ops::logging::init(args.log_format);
    let listener = server::listen(args.metrics_addr()).await?;
    let metrics = Metrics::new();
    // Flags are checked before anything starts, whether or not the endpoint serves them.
    let mut notify = args.notification.config()?;
    notify.metrics = metrics.notify.clone();
    args.registry
        .policy()
        .validate()
        .map_err(anyhow::Error::msg)?;
    let client = kube::Client::try_default().await?;
    if args.namespace.is_empty() {
        args.namespace = client.default_namespace().to_string();
    }
    args.log_start(listener.local_addr().ok());
    let config = args
        .registry
        .resolver_config(args.providers.load(&client)?)?;
    let resolver = RegistryResolver::with_metrics(config, metrics.registry.clone())
        .map_err(anyhow::Error::msg)?;
    let resolver: Arc<dyn ImageResolver> = Arc::new(resolver);
    let health = health(&args, &client);
    let server = server::serve(listener, health.clone(), Arc::new(metrics.exposition()));
    // One ImageStream watch for the process: the webhook (every replica) and, on the leader,
    // the import and trigger controllers read the same store.
    let (cache, cache_driver) = StreamCache::scoped(client.clone(), &args.scope());
    {
        let (cache, health) = (cache.clone(), health.clone());
        tokio::spawn(async move {
            cache.synced().await;
            health.cache_synced_once("streams");
        });
    }
    let work = {
        let (client, cache) = (client.clone(), cache.clone());
        let settings = args.import_settings(&metrics);
        let scheduler = args.schedule.scheduler(&metrics);
        let triggers = args.triggers.settings(&args, &metrics, &health);
        let audit = args.admission.audit();
        move || {
            controllers(
                client, cache, resolver, scheduler, settings, triggers, audit,
            )
        }
    };
    let controllers = async {
        if !args.leader.leader_election {
            return work().await;
        }
        run_as_leader(
            client.clone(),
            args.leader.config(&args.namespace, &metrics),
            health.clone(),
            imagestream_operator::ops::terminated(),
            work,
        )
        .await
    };
    // The webhook runs on every replica, leader or not: the Service may route to any of them.
    let admission = async {
        let Some(endpoint) = admission_endpoint(&args, &client, &metrics, notify).await? else {
            return std::future::pending().await;
        };
        imagestream_operator::serve::run_shared(client.clone(), cache.clone(), endpoint).await
    };
    tokio::select! {
        r = controllers => r,
        r = server => r,
        r = admission => r,
        () = cache_driver => Ok(()),
    }
}

/// Readiness: the caches this replica waits for (the shared stream cache and, when triggers
/// run, one workload watch per kind), and the API server probe that reports an outage.
fn health(args: &RunArgs, client: &kube::Client) -> Arc<Health> {
    let health = Arc::new(Health::default());
    let workload_watches = imagestream_operator::triggers::kind::Kind::ALL.len();
    let triggers = if args.triggers.disable_triggers {
        0
    } else {
        workload_watches
    };
    health.expect(1 + triggers);
    tokio::spawn(imagestream_operator::ops::probe_api_server(
        client.clone(),
        health.clone(),
        Duration::from_secs(5),
    ));
    health
}

/// What the leader runs: the import controller and, unless disabled, the trigger controller and
/// the lookup audit, all on the process's one stream cache. The import controller stops on
/// SIGTERM; the others stop with it.
async fn controllers(
    client: kube::Client,
    cache: StreamCache,
    resolver: Arc<dyn ImageResolver>,
    scheduler: Scheduler,
    settings: Settings,
    triggers: Option<TriggerSettings>,
    audit: Option<Duration>,
) -> anyhow::Result<()> {
    let imports =
        controller::run_shared(client.clone(), cache.clone(), resolver, scheduler, settings);
    let audit = async {
        let Some(interval) = audit else {
            return std::future::pending().await;
        };
        cache.synced().await;
        let delay = Duration::from_secs(60);
        imagestream_operator::admission::audit::run(client.clone(), cache.store(), delay, interval)
            .await;
        Ok(())
    };
    let triggers = async {
        let Some(triggers) = triggers else {
            return std::future::pending().await;
        };
        imagestream_operator::triggers::controller::run_shared(
            client.clone(),
            cache.clone(),
            triggers,
        )
        .await
    };
    tokio::select! {
        r = imports => r,
        r = triggers => r,
        r = audit => r,
    }
}

/// The HTTPS listeners, if `--admission-addr` is set: the webhook and, with
/// `--notification-addr`, the notification receiver, with the given certificate files or the
/// certificate shared by all replicas through a Secret (then kept renewed and trusted).
async fn admission_endpoint(
    args: &RunArgs,
    client: &kube::Client,
    metrics: &Metrics,
    notify: imagestream_operator::notify::NotifyConfig,
) -> anyhow::Result<Option<imagestream_operator::serve::Endpoint>> {
    let Some(addr) = args.admission.admission_addr else {
        return Ok(None);
    };
    let client_ca = args.admission.client_ca()?;
    let files = (
        &args.admission.admission_cert_file,
        &args.admission.admission_key_file,
    );
    let (cert, shared) = match files {
        (Some(cert), Some(key)) => {
            let files = Certificate::Files {
                cert: cert.clone(),
                key: key.clone(),
            };
            (files, None)
        }
        _ => {
            let shared = args.admission.shared(&args.namespace);
            let stored = shared_certificate(client, &shared).await?;
            let cert = Certificate::Generated {
                cert_pem: stored.pair.cert_pem.clone(),
                key_pem: stored.pair.key_pem.clone(),
            };
            (cert, Some((shared, stored)))
        }
    };
    Ok(Some(imagestream_operator::serve::Endpoint {
        addr,
        notify_addr: args.notification.notification_addr,
        cert,
        shared,
        client_ca,
        notify: Some(notify),
        metrics: metrics.admission.clone(),
    }))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => print!("{}", imagestream_operator::crdgen::imagestream_crd_yaml()?),
        Command::Run(args) => {
            rustls::crypto::ring::default_provider()
                .install_default()
                .map_err(|_| anyhow::anyhow!("could not install the TLS crypto provider"))?;
            tokio::runtime::Runtime::new()?.block_on(run(*args))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every part's series reaches `/metrics`, under Prometheus' naming rules, and the push
    /// latencies recorded by the controllers are the ones the receiver exports.
    #[test]
    fn every_series_is_exported() {
        let m = Metrics::new();
        m.import.reconcile_errors.inc();
        m.registry.record(
            "quay.io",
            "HEAD",
            "429",
            std::time::Duration::from_millis(5),
        );
        m.registry.record_bytes("quay.io", 10);
        let missing = imagestream_operator::registry::RegistryError::NotFound {
            reference: "r".into(),
            detail: "d".into(),
        };
        m.import.record(&Err(missing), 0.1);
        m.triggers
            .failures
            .get_or_create(&imagestream_operator::triggers::metrics::FailureLabels {
                reason: imagestream_operator::api::reason::INVALID_TRIGGER,
            })
            .inc();
        m.import.push_to_import.observe(1.0);
        let registry = "quay.io".to_string();
        m.schedule
            .get_or_create(&imagestream_operator::schedule::RegistryLabels { registry })
            .set(60.0);
        let (kind, outcome) = ("Pod".to_string(), "unchanged".to_string());
        m.admission
            .admissions
            .get_or_create(&imagestream_operator::admission::server::AdmissionLabels {
                kind,
                outcome,
            })
            .inc();
        let (source, outcome) = ("harbor".to_string(), "accepted".to_string());
        m.notify
            .notifications
            .get_or_create(&imagestream_operator::notify::NotifyLabels { source, outcome })
            .inc();
        m.triggers.push_to_rollout.observe(2.0);
        let text = imagestream_operator::ops::metrics::encode(&m.exposition());
        for series in [
            "imagestream_imports_total",
            "imagestream_import_duration_seconds",
            "imagestream_reconcile_errors_total",
            "imagestream_leader",
            "imagestream_tag_to_patch_latency_seconds",
            "imagestream_schedule_effective_interval_seconds",
            "imagestream_registry_requests_total",
            "imagestream_registry_rate_limited_total",
            "imagestream_registry_response_bytes_total",
            "imagestream_registry_request_duration_seconds",
            "imagestream_trigger_fires_total",
            "imagestream_trigger_failures_total",
            "imagestream_admissions_total",
            "imagestream_notifications_total",
            "imagestream_push_to_import_seconds_count 1",
            "imagestream_push_to_rollout_seconds_count 1",
        ] {
            assert!(
                text.contains(&format!("# TYPE {series}"))
                    || text.contains(&format!("{series}{{"))
                    || text.contains(&format!("{series} "))
                    || text.contains(&format!("{series}\n")),
                "{series} missing:\n{text}"
            );
        }
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
