use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use imagestream_operator::admission::server::Certificate;
use imagestream_operator::admission::{shared_certificate, Shared};
use imagestream_operator::api::cache::StreamCache;
use imagestream_operator::api::scope::Scope;
use imagestream_operator::import::controller::{self, Settings};
use imagestream_operator::ops::leader::{run_as_leader, LeaderConfig};
use imagestream_operator::ops::logging::LogFormat;
use imagestream_operator::ops::{server, Health};
use imagestream_operator::registry::budget::Budget;
use imagestream_operator::registry::plugins::{KubeServiceAccounts, Providers, ServiceAccounts};
use imagestream_operator::registry::policy::RegistryPolicy;
use imagestream_operator::registry::resolver::{RegistryResolver, ResolverConfig};
use imagestream_operator::schedule::Scheduler;
use imagestream_operator::triggers::controller::TriggerSettings;

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

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// How often tags with importPolicy.scheduled are re-checked (e.g. 15m, 30s, 5s).
    #[arg(long, env = "SCHEDULED_IMPORT_INTERVAL", default_value = "15m", value_parser = parse_duration)]
    scheduled_import_interval: Duration,
    /// Cluster-wide budget of scheduled stream checks per minute (burst: twice this); 0 = unlimited.
    #[arg(long, env = "MAX_SCHEDULED_IMPORTS_PER_MINUTE", default_value_t = 60)]
    max_scheduled_imports_per_minute: u32,
    /// History items kept per tag; 0 keeps everything.
    #[arg(long, env = "MAX_HISTORY", default_value_t = 10)]
    max_history: usize,
    /// Host of a pull-through registry: status.dockerImageRepository becomes <host>/<ns>/<name>.
    #[arg(long, env = "LOCAL_REGISTRY")]
    local_registry: Option<String>,
    /// Registries that may be used without TLS verification or over plain HTTP (comma-separated).
    #[arg(long, env = "INSECURE_REGISTRIES", value_delimiter = ',')]
    insecure_registries: Vec<String>,
    /// Only these registries may be imported from (host, host:port or *.domain; comma-separated).
    #[arg(long, env = "ALLOWED_REGISTRIES", value_delimiter = ',')]
    allowed_registries: Vec<String>,
    /// Registries never contacted, on top of link-local and cloud metadata addresses.
    #[arg(long, env = "BLOCKED_REGISTRIES", value_delimiter = ',')]
    blocked_registries: Vec<String>,
    /// Let spec tags copy from image streams in other namespaces (the writer's access is not checked).
    #[arg(long, env = "ALLOW_CROSS_NAMESPACE_SOURCES")]
    allow_cross_namespace_sources: bool,
    /// Platform picked from a manifest list in Legacy mode when a tag states no preference.
    #[arg(long, env = "DEFAULT_PLATFORM", default_value = "linux/amd64")]
    default_platform: String,
    /// PEM file of CA certificates trusted for registries, in addition to the system roots.
    #[arg(long, env = "REGISTRY_CA_BUNDLE")]
    registry_ca_bundle: Option<std::path::PathBuf>,
    /// Per-registry request budget HOST=RATE[:BURST[:CONCURRENCY]] (requests/s; repeat or
    /// comma-separate). Default 20/s, burst 40, 16 at once; Docker Hub 2/s, burst 10, 4 at once.
    #[arg(long, env = "REGISTRY_BUDGETS", value_delimiter = ',')]
    registry_budget: Vec<String>,
    /// The kubelet's CredentialProviderConfig (a file, or a directory of them): images matching
    /// a provider import with the credentials its plugin gives, no pull secret needed.
    #[arg(
        long,
        env = "IMAGE_CREDENTIAL_PROVIDER_CONFIG",
        requires = "image_credential_provider_bin_dir"
    )]
    image_credential_provider_config: Option<std::path::PathBuf>,
    /// The directory holding the providers' executables (the kubelet's flag of the same name).
    #[arg(
        long,
        env = "IMAGE_CREDENTIAL_PROVIDER_BIN_DIR",
        requires = "image_credential_provider_config"
    )]
    image_credential_provider_bin_dir: Option<std::path::PathBuf>,
    /// How long one registry request may take, body included, and how long a request waits for
    /// room in the operator's response buffer (a trickling body cannot hold a worker longer).
    #[arg(long, env = "REGISTRY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    registry_timeout: Duration,
    /// How long one credential provider run may take before it is stopped (the kubelet's: 1m).
    #[arg(long, env = "IMAGE_CREDENTIAL_PROVIDER_TIMEOUT", default_value = "1m", value_parser = parse_duration)]
    image_credential_provider_timeout: Duration,
    /// Tags imported from a whole repository (spec.dockerImageRepository); 0 = unlimited.
    #[arg(
        long,
        env = "MAX_IMAGES_BULK_IMPORTED_PER_REPOSITORY",
        default_value_t = 50
    )]
    max_images_bulk_imported_per_repository: usize,
    /// Address of the plain-HTTP /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Run only while holding a coordination.k8s.io Lease, so several replicas can run.
    #[arg(long, env = "LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the lease (default: POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    /// Name of the lease.
    #[arg(
        long,
        env = "LEADER_ELECTION_LEASE",
        default_value = "imagestream-operator"
    )]
    leader_election_lease: String,
    /// Seconds a leader's lease lasts without renewal: how fast a follower takes over.
    #[arg(long, env = "LEADER_ELECTION_DURATION", default_value_t = 15)]
    leader_election_duration: u64,
    /// Address of the HTTPS admission webhook (image lookup, triggers at creation), for the API
    /// server only; unset = off (and no notification listener either).
    #[arg(long, env = "ADMISSION_ADDR")]
    admission_addr: Option<std::net::SocketAddr>,
    /// PEM bundle of the CAs whose client certificates the webhook accepts: the API server's,
    /// as its AdmissionConfiguration kubeConfigFile presents it. Set, every other caller is
    /// refused during the TLS handshake.
    #[arg(long, env = "ADMISSION_CLIENT_CA_FILE")]
    admission_client_ca_file: Option<std::path::PathBuf>,
    /// Address of the HTTPS notification receiver (/notify/<source>): the port to expose to
    /// registries. Unset, notifications are not received.
    #[arg(long, env = "NOTIFICATION_ADDR", requires = "admission_addr")]
    notification_addr: Option<std::net::SocketAddr>,
    /// PEM certificate for the admission endpoint (reloaded when it changes); without it a
    /// self-signed one is generated and injected into the webhook configuration.
    #[arg(long, env = "ADMISSION_CERT_FILE", requires = "admission_key_file")]
    admission_cert_file: Option<std::path::PathBuf>,
    #[arg(long, env = "ADMISSION_KEY_FILE", requires = "admission_cert_file")]
    admission_key_file: Option<std::path::PathBuf>,
    /// DNS names of the webhook Service, for a generated certificate (comma-separated).
    #[arg(long, env = "ADMISSION_HOSTS", value_delimiter = ',')]
    admission_hosts: Vec<String>,
    /// Secret (in POD_NAMESPACE) that holds the generated certificate shared by all replicas.
    #[arg(
        long,
        env = "ADMISSION_CERTIFICATE_SECRET",
        default_value = "imagestream-operator-webhook-tls"
    )]
    admission_certificate_secret: String,
    /// MutatingWebhookConfiguration that gets the generated certificate as its caBundle.
    #[arg(
        long,
        env = "ADMISSION_WEBHOOK_CONFIGURATION",
        default_value = "imagestream-operator"
    )]
    admission_webhook_configuration: String,
    /// File holding the shared token registry notifications must present (Authorization: Bearer,
    /// or ?token= for Quay and Docker Hub); without it every notification is refused.
    #[arg(long, env = "NOTIFICATION_TOKEN_FILE")]
    notification_token_file: Option<std::path::PathBuf>,
    /// File holding the GitHub webhook secret (X-Hub-Signature-256) for GHCR notifications.
    #[arg(long, env = "NOTIFICATION_HMAC_SECRET_FILE")]
    notification_hmac_secret_file: Option<std::path::PathBuf>,
    /// NOTIFIED_HOST=HOST_IN_STREAMS pairs: a registry's host in its notifications (e.g. its
    /// internal address) mapped to the host image streams use (comma-separated).
    #[arg(long, env = "NOTIFICATION_REGISTRY_ALIASES", value_delimiter = ',')]
    notification_registry_alias: Vec<String>,
    /// Skip scheduled checks of streams whose registry sent a verified push notification within
    /// the last four scheduled intervals (polling resumes when notifications stop).
    #[arg(long, env = "STRETCH_SCHEDULE_WHEN_NOTIFIED")]
    stretch_schedule_when_notified: bool,
    /// How often the leader lists the webhook's kinds in namespaces with a lookup-enabled stream
    /// for workloads stored without lookup (Warning ShortNameNotResolved on each); 0 = never.
    /// The first pass runs a minute after the leader starts. Only with the webhook.
    #[arg(long, env = "LOOKUP_AUDIT_INTERVAL", value_parser = parse_duration, default_value = "1h")]
    lookup_audit_interval: Duration,
    /// Do not run the image trigger controller (workloads annotated with image.openshift.io/triggers).
    #[arg(long, env = "DISABLE_TRIGGERS")]
    disable_triggers: bool,
    /// Manage only these namespaces (comma-separated): streams, pull secrets and workloads are
    /// watched there alone, so the identity needs no cluster-wide grant for them. Empty: all.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',')]
    watch_namespaces: Vec<String>,
    /// Namespaces whose workloads triggers never patch, whatever their annotations say.
    #[arg(
        long,
        env = "TRIGGER_EXCLUDED_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system"
    )]
    trigger_excluded_namespaces: Vec<String>,
    /// Streams reconciled at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
    /// Log format. The level comes from RUST_LOG (default info).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 15m, 30s or 1h"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" | "" => n,
        "m" => n
            .checked_mul(60)
            .ok_or_else(|| format!("{s:?} is too long"))?,
        "h" => n
            .checked_mul(3600)
            .ok_or_else(|| format!("{s:?} is too long"))?,
        _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

fn notify_config(args: &RunArgs) -> anyhow::Result<imagestream_operator::notify::NotifyConfig> {
    let read = |p: &Option<std::path::PathBuf>| -> anyhow::Result<Option<String>> {
        match p {
            None => Ok(None),
            // A Secret mounted without the optional key: that source stays refused.
            Some(path) if !path.exists() => Ok(None),
            Some(path) => std::fs::read_to_string(path)
                .map(|s| Some(s.trim().to_string()).filter(|s| !s.is_empty()))
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display())),
        }
    };
    let mut aliases = std::collections::HashMap::new();
    for pair in &args.notification_registry_alias {
        let (from, to) = pair.split_once('=').ok_or_else(|| {
            anyhow::anyhow!(
                "--notification-registry-alias {pair:?}: expected NOTIFIED_HOST=HOST_IN_STREAMS"
            )
        })?;
        aliases.insert(from.to_string(), to.to_string());
    }
    Ok(imagestream_operator::notify::NotifyConfig {
        token: read(&args.notification_token_file)?,
        hmac_secret: read(&args.notification_hmac_secret_file)?,
        registry_aliases: aliases,
        ..Default::default()
    })
}

/// Every part's series, created once: each part records through its own context, and `/metrics`
/// encodes the registry they are all registered in.
#[derive(Default)]
struct Metrics {
    registry: Arc<imagestream_operator::registry::metrics::RegistryMetrics>,
    import: imagestream_operator::import::metrics::ImportMetrics,
    schedule: imagestream_operator::schedule::EffectiveIntervals,
    triggers: Arc<imagestream_operator::triggers::controller::TriggerMetrics>,
    admission: Arc<imagestream_operator::admission::server::AdmissionMetrics>,
    notify: imagestream_operator::notify::NotifyMetrics,
    leader: imagestream_operator::ops::metrics::LeaderMetrics,
}

impl Metrics {
    fn new() -> Self {
        let mut m = Self::default();
        // A push's wait ends in the import controller and in the triggers; the receiver exports
        // both histograms.
        m.import.push_to_import = m.notify.push_to_import.clone();
        m.triggers = Arc::new(imagestream_operator::triggers::controller::TriggerMetrics {
            push_to_rollout: m.notify.push_to_rollout.clone(),
            ..Default::default()
        });
        m
    }

    fn exposition(&self) -> prometheus_client::registry::Registry {
        let mut r = imagestream_operator::ops::metrics::registry();
        self.import.register(&mut r);
        r.register_with_unit(
            "schedule_effective_interval",
            "Interval at which scheduled tags on a registry are actually re-checked (longer than configured when the registry's budget or the per-minute budget cannot keep up)",
            prometheus_client::registry::Unit::Seconds,
            self.schedule.clone(),
        );
        self.registry.register(&mut r);
        self.triggers.register(&mut r);
        self.admission.register(&mut r);
        self.notify.register(&mut r);
        self.leader.register(&mut r);
        r
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    imagestream_operator::ops::logging::init(args.log_format);
    let metrics = Metrics::new();
    // Flags are checked before anything starts, whether or not the endpoint serves them.
    let mut notify = notify_config(&args)?;
    notify.metrics = metrics.notify.clone();
    policy(&args).validate().map_err(anyhow::Error::msg)?;
    let client = kube::Client::try_default().await?;
    let resolver =
        RegistryResolver::with_metrics(resolver_config(&args, &client)?, metrics.registry.clone())
            .map_err(anyhow::Error::msg)?;
    let resolver: Arc<dyn imagestream_operator::registry::ImageResolver> = Arc::new(resolver);
    let health = health(&args, &client);
    let server = server::serve(
        args.metrics_addr,
        health.clone(),
        Arc::new(metrics.exposition()),
    );
    // One ImageStream watch for the process: the webhook (every replica) and, on the leader,
    // the import and trigger controllers read the same store.
    let (cache, cache_driver) =
        StreamCache::scoped(client.clone(), &Scope::from_list(&args.watch_namespaces));
    {
        let (cache, health) = (cache.clone(), health.clone());
        tokio::spawn(async move {
            cache.synced().await;
            health.cache_synced_once("streams");
        });
    }
    let work = {
        let (client, cache) = (client.clone(), cache.clone());
        let settings = import_settings(&args, &metrics);
        let scheduler = scheduler(&args, &metrics);
        let triggers = trigger_settings(&args, &metrics, &health);
        let audit = (args.admission_addr.is_some() && !args.lookup_audit_interval.is_zero())
            .then_some(args.lookup_audit_interval);
        move || {
            controllers(
                client, cache, resolver, scheduler, settings, triggers, audit,
            )
        }
    };
    let controllers = async {
        if !args.leader_election {
            return work().await;
        }
        run_as_leader(
            client.clone(),
            leader_config(&args, &metrics),
            health.clone(),
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
    let triggers = if args.disable_triggers {
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
    resolver: Arc<dyn imagestream_operator::registry::ImageResolver>,
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

/// The registry side: platform defaults, allow/block/insecure lists, budgets, extra CAs.
fn policy(args: &RunArgs) -> RegistryPolicy {
    RegistryPolicy {
        insecure: args.insecure_registries.clone(),
        allowed: args.allowed_registries.clone(),
        blocked: args.blocked_registries.clone(),
    }
}

fn resolver_config(args: &RunArgs, client: &kube::Client) -> anyhow::Result<ResolverConfig> {
    let (default_os, default_arch) = args
        .default_platform
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("--default-platform must be os/arch, e.g. linux/amd64"))?;
    let mut config = ResolverConfig::with_policy(policy(args));
    config.transport.timeout = args.registry_timeout;
    config.default_os = default_os.into();
    config.default_arch = default_arch.into();
    // An empty value (e.g. REGISTRY_BUDGETS="" from a template) means no override.
    for flag in args.registry_budget.iter().filter(|f| !f.trim().is_empty()) {
        let (host, budget) = Budget::parse_flag(flag).map_err(anyhow::Error::msg)?;
        config.transport.budgets.insert(host, budget);
    }
    if let Some(path) = &args.registry_ca_bundle {
        let pem = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("reading --registry-ca-bundle {}: {e}", path.display()))?;
        config.transport.extra_roots = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow::anyhow!("--registry-ca-bundle {}: {e}", path.display()))?;
    }
    config.providers = credential_providers(args, client)?;
    Ok(config)
}

/// The kubelet's credential providers, checked at start as the kubelet checks them: a bad
/// config or a missing executable stops the operator with the file and field named.
fn credential_providers(
    args: &RunArgs,
    client: &kube::Client,
) -> anyhow::Result<Option<Arc<Providers>>> {
    let (Some(config), Some(bin_dir)) = (
        &args.image_credential_provider_config,
        &args.image_credential_provider_bin_dir,
    ) else {
        return Ok(None);
    };
    let accounts: Arc<dyn ServiceAccounts> = Arc::new(KubeServiceAccounts::new(client.clone()));
    let providers = Providers::load(
        config,
        bin_dir,
        args.image_credential_provider_timeout,
        Some(accounts),
    )
    .map_err(|e| anyhow::anyhow!("--image-credential-provider-config: {e}"))?;
    tracing::info!(providers = ?providers.names(), token_mode = providers.uses_service_account_tokens(), "credential providers loaded");
    Ok(Some(Arc::new(providers)))
}

fn import_settings(args: &RunArgs, metrics: &Metrics) -> Settings {
    Settings {
        local_registry: args.local_registry.clone(),
        max_history: args.max_history,
        allow_cross_namespace: args.allow_cross_namespace_sources,
        concurrency: args.concurrency,
        max_bulk_import: args.max_images_bulk_imported_per_repository,
        stretch_schedule_when_notified: args.stretch_schedule_when_notified,
        metrics: metrics.import.clone(),
        scope: Scope::from_list(&args.watch_namespaces),
        ..Default::default()
    }
}

/// The trigger controller's settings, or None when `--disable-triggers` is set.
fn trigger_settings(
    args: &RunArgs,
    metrics: &Metrics,
    health: &Arc<Health>,
) -> Option<TriggerSettings> {
    (!args.disable_triggers).then(|| TriggerSettings {
        concurrency: args.concurrency,
        health: Some(health.clone()),
        metrics: metrics.triggers.clone(),
        scope: Scope::from_list(&args.watch_namespaces),
        excluded: args
            .trigger_excluded_namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect(),
    })
}

fn scheduler(args: &RunArgs, metrics: &Metrics) -> Scheduler {
    let mut scheduler = Scheduler::new(
        args.scheduled_import_interval,
        args.max_scheduled_imports_per_minute,
    );
    scheduler.effective = metrics.schedule.clone();
    scheduler
}

fn leader_config(args: &RunArgs, metrics: &Metrics) -> LeaderConfig {
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("imagestream-operator-{}", std::process::id()));
    LeaderConfig {
        namespace: args.leader_election_namespace.clone(),
        lease_name: args.leader_election_lease.clone(),
        identity,
        duration: args.leader_election_duration.max(2),
        grace: (args.leader_election_duration / 3).max(1),
        metrics: metrics.leader.clone(),
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
    let Some(addr) = args.admission_addr else {
        return Ok(None);
    };
    let client_ca = match &args.admission_client_ca_file {
        None => None,
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("reading --admission-client-ca-file {}: {e}", path.display())
            })?;
            Some(imagestream_operator::admission::server::client_roots(&pem)?)
        }
    };
    let (cert, shared) = match (&args.admission_cert_file, &args.admission_key_file) {
        (Some(cert), Some(key)) => {
            let files = Certificate::Files {
                cert: cert.clone(),
                key: key.clone(),
            };
            (files, None)
        }
        _ => {
            let shared = Shared {
                namespace: args.leader_election_namespace.clone(),
                secret: args.admission_certificate_secret.clone(),
                hosts: match args.admission_hosts.is_empty() {
                    true => vec![format!(
                        "imagestream-operator-webhook.{}.svc",
                        args.leader_election_namespace
                    )],
                    false => args.admission_hosts.clone(),
                },
                webhook: args.admission_webhook_configuration.clone(),
            };
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
        notify_addr: args.notification_addr,
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
            .get_or_create(&imagestream_operator::triggers::controller::FailureLabels {
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

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("soon").is_err());
    }
}
