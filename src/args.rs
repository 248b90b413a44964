//! The flags of `imagestream-operator run`, one group per part (flattened into [`RunArgs`], so
//! the command line stays one flat list), each value typed where it is parsed, and beside each
//! group what that part is built from it. Flag names and environment variables are the chart's
//! interface: renaming one is a breaking change.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use imagestream_operator::api::duration;
use imagestream_operator::api::scope::Scope;
use imagestream_operator::import::controller::Settings;
use imagestream_operator::notify::NotifyConfig;
use imagestream_operator::ops::logging::LogFormat;
use imagestream_operator::registry::budget::Budget;
use imagestream_operator::registry::credentials::accounts::{KubeServiceAccounts, ServiceAccounts};
use imagestream_operator::registry::credentials::plugins::Providers;
use imagestream_operator::registry::policy::RegistryPolicy;
use imagestream_operator::registry::resolver::ResolverConfig;
use imagestream_operator::schedule::Scheduler;

use crate::Metrics;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Manage only these namespaces (comma-separated): streams, pull secrets and workloads are
    /// watched there alone, so the identity needs no cluster-wide grant for them. Empty: all.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
    /// The operator's own namespace: its Lease and its webhook certificate Secret live there.
    /// Default: the namespace of the kube context (in a pod, the pod's own namespace).
    #[arg(
        long = "operator-namespace",
        alias = "leader-election-namespace",
        env = "POD_NAMESPACE",
        default_value = ""
    )]
    pub namespace: String,
    /// Streams reconciled at once (and workloads evaluated at once per kind).
    #[arg(long, env = "CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
    /// Address of the plain-HTTP /metrics, /healthz and /readyz endpoints. Default: 0.0.0.0:8080
    /// in a pod (for the kubelet's probes), 127.0.0.1:8080 elsewhere (a laptop's port 8080 stays
    /// private); port 0 picks a free one.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Log format. The level comes from RUST_LOG (default info).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    #[command(flatten)]
    pub import: ImportArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub providers: ProviderArgs,
    #[command(flatten)]
    pub leader: LeaderArgs,
    #[command(flatten)]
    pub admission: AdmissionArgs,
    #[command(flatten)]
    pub notification: NotificationArgs,
    #[command(flatten)]
    pub triggers: TriggerArgs,
}

impl RunArgs {
    /// `--metrics-addr`, or its default for where the process runs.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        self.metrics_addr.unwrap_or_else(|| match in_pod {
            true => ([0, 0, 0, 0], 8080).into(),
            false => ([127, 0, 0, 1], 8080).into(),
        })
    }

    /// One line saying what this process is about to do, for whoever reads the first log line.
    pub fn log_start(&self, metrics: Option<std::net::SocketAddr>) {
        let on_off = |on: bool| if on { "on" } else { "off" };
        let namespaces = match self.watch_namespaces.is_empty() {
            true => "all".to_string(),
            false => self.watch_namespaces.join(","),
        };
        let webhook = self.admission.admission_addr;
        let n = &self.notification;
        let secret =
            n.notification_token_file.is_some() || n.notification_hmac_secret_file.is_some();
        let notifications = match (webhook, n.notification_addr) {
            (Some(_), Some(a)) if secret => a.to_string(),
            (Some(_), Some(_)) => "refused (no token or secret file)".to_string(),
            _ => "off".to_string(),
        };
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            namespaces,
            operator_namespace = %self.namespace,
            scheduled_import_interval = ?self.schedule.scheduled_import_interval,
            leader_election = on_off(self.leader.leader_election),
            triggers = on_off(!self.triggers.disable_triggers),
            webhook = webhook.map_or("off".to_string(), |a| a.to_string()),
            notifications,
            metrics = metrics.map_or("?".to_string(), |a| a.to_string()),
            "imagestream-operator starting"
        );
    }

    pub fn scope(&self) -> Scope {
        Scope::from_list(&self.watch_namespaces)
    }

    pub fn import_settings(&self, metrics: &Metrics) -> Settings {
        let import = &self.import;
        Settings {
            local_registry: import.local_registry.clone(),
            max_history: import.max_history,
            allow_cross_namespace: import.allow_cross_namespace_sources,
            concurrency: self.concurrency,
            max_bulk_import: import.max_images_bulk_imported_per_repository,
            stretch_schedule_when_notified: self.schedule.stretch_schedule_when_notified,
            metrics: metrics.import.clone(),
            scope: self.scope(),
            max_listed_tags: import.policy_max_listed_tags,
            ..Default::default()
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ScheduleArgs {
    /// How often tags with importPolicy.scheduled are re-checked (e.g. 15m, 30s, 5s).
    #[arg(long, env = "SCHEDULED_IMPORT_INTERVAL", default_value = "15m", value_parser = duration::parse_flag)]
    pub scheduled_import_interval: Duration,
    /// Cluster-wide budget of scheduled stream checks per minute (burst: twice this); 0 = unlimited.
    #[arg(long, env = "MAX_SCHEDULED_IMPORTS_PER_MINUTE", default_value_t = 60)]
    pub max_scheduled_imports_per_minute: u32,
    /// Skip scheduled checks of streams whose registry sent a verified push notification within
    /// the last four scheduled intervals (polling resumes when notifications stop).
    #[arg(long, env = "STRETCH_SCHEDULE_WHEN_NOTIFIED")]
    pub stretch_schedule_when_notified: bool,
}

impl ScheduleArgs {
    pub fn scheduler(&self, metrics: &Metrics) -> Scheduler {
        let mut scheduler = Scheduler::new(
            self.scheduled_import_interval,
            self.max_scheduled_imports_per_minute,
        );
        scheduler.effective = metrics.schedule.clone();
        scheduler
    }
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// History items kept per tag; 0 keeps everything.
    #[arg(long, env = "MAX_HISTORY", default_value_t = 10)]
    pub max_history: usize,
    /// Host of a pull-through registry: status.dockerImageRepository becomes <host>/<ns>/<name>.
    #[arg(long, env = "LOCAL_REGISTRY")]
    pub local_registry: Option<String>,
    /// Let spec tags copy from image streams in other namespaces (the writer's access is not checked).
    #[arg(long, env = "ALLOW_CROSS_NAMESPACE_SOURCES")]
    pub allow_cross_namespace_sources: bool,
    /// Tags imported from a whole repository (spec.dockerImageRepository); 0 = unlimited.
    #[arg(
        long,
        env = "MAX_IMAGES_BULK_IMPORTED_PER_REPOSITORY",
        default_value_t = 50
    )]
    pub max_images_bulk_imported_per_repository: usize,
    /// Tags one tag-policy listing reads at most; a repository with more leaves its policy
    /// tags where they are (ListingIncomplete) instead of deciding on part of the list.
    #[arg(long, env = "POLICY_MAX_LISTED_TAGS", default_value_t = imagestream_operator::import::policy::DEFAULT_MAX_LISTED_TAGS)]
    pub policy_max_listed_tags: usize,
}

/// `os/arch`, as `--default-platform` takes it.
#[derive(Debug, Clone)]
pub struct Platform {
    pub os: String,
    pub arch: String,
}

impl std::str::FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (os, arch) = s
            .split_once('/')
            .filter(|(os, arch)| !os.is_empty() && !arch.is_empty())
            .ok_or_else(|| format!("{s:?}: expected os/arch, e.g. linux/amd64"))?;
        Ok(Self {
            os: os.into(),
            arch: arch.into(),
        })
    }
}

/// One `--registry-budget` value; empty (e.g. `REGISTRY_BUDGETS=""` from a template) is none.
#[derive(Debug, Clone)]
pub struct BudgetFlag(Option<(String, Budget)>);

impl std::str::FromStr for BudgetFlag {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" => Ok(Self(None)),
            flag => Budget::parse_flag(flag).map(Some).map(Self),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct RegistryArgs {
    /// Registries that may be used without TLS verification or over plain HTTP (comma-separated).
    #[arg(long, env = "INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,
    /// Only these registries may be imported from (host, host:port or *.domain; comma-separated).
    #[arg(long, env = "ALLOWED_REGISTRIES", value_delimiter = ',')]
    pub allowed_registries: Vec<String>,
    /// Registries never contacted, on top of link-local and cloud metadata addresses.
    #[arg(long, env = "BLOCKED_REGISTRIES", value_delimiter = ',')]
    pub blocked_registries: Vec<String>,
    /// Platform picked from a manifest list in Legacy mode when a tag states no preference.
    #[arg(long, env = "DEFAULT_PLATFORM", default_value = "linux/amd64")]
    pub default_platform: Platform,
    /// PEM file of CA certificates trusted for registries, in addition to the system roots.
    #[arg(long, env = "REGISTRY_CA_BUNDLE")]
    pub registry_ca_bundle: Option<PathBuf>,
    /// Per-registry request budget HOST=RATE[:BURST[:CONCURRENCY]] (requests/s; repeat or
    /// comma-separate). Default 20/s, burst 40, 16 at once; Docker Hub 2/s, burst 10, 4 at once.
    #[arg(long, env = "REGISTRY_BUDGETS", value_delimiter = ',')]
    pub registry_budget: Vec<BudgetFlag>,
    /// How long one registry request may take, body included, and how long a request waits for
    /// room in the operator's response buffer (a trickling body cannot hold a worker longer).
    #[arg(long, env = "REGISTRY_TIMEOUT", default_value = "30s", value_parser = duration::parse_flag)]
    pub registry_timeout: Duration,
}

impl RegistryArgs {
    /// The allow/block/insecure lists.
    pub fn policy(&self) -> RegistryPolicy {
        RegistryPolicy {
            insecure: self.insecure_registries.clone(),
            allowed: self.allowed_registries.clone(),
            blocked: self.blocked_registries.clone(),
        }
    }

    pub fn resolver_config(
        &self,
        providers: Option<Arc<Providers>>,
    ) -> anyhow::Result<ResolverConfig> {
        let mut config = ResolverConfig::with_policy(self.policy());
        config.transport.timeout = self.registry_timeout;
        config.default_os = self.default_platform.os.clone();
        config.default_arch = self.default_platform.arch.clone();
        for (host, budget) in self.registry_budget.iter().filter_map(|b| b.0.clone()) {
            config.transport.budgets.insert(host, budget);
        }
        if let Some(path) = &self.registry_ca_bundle {
            let pem = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("reading --registry-ca-bundle {}: {e}", path.display())
            })?;
            config.transport.extra_roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("--registry-ca-bundle {}: {e}", path.display()))?;
        }
        config.providers = providers;
        Ok(config)
    }
}

#[derive(clap::Args, Debug)]
pub struct ProviderArgs {
    /// The kubelet's CredentialProviderConfig (a file, or a directory of them): images matching
    /// a provider import with the credentials its plugin gives, no pull secret needed.
    #[arg(
        long,
        env = "IMAGE_CREDENTIAL_PROVIDER_CONFIG",
        requires = "image_credential_provider_bin_dir"
    )]
    pub image_credential_provider_config: Option<PathBuf>,
    /// The directory holding the providers' executables (the kubelet's flag of the same name).
    #[arg(
        long,
        env = "IMAGE_CREDENTIAL_PROVIDER_BIN_DIR",
        requires = "image_credential_provider_config"
    )]
    pub image_credential_provider_bin_dir: Option<PathBuf>,
    /// How long one credential provider run may take before it is stopped (the kubelet's: 1m).
    #[arg(long, env = "IMAGE_CREDENTIAL_PROVIDER_TIMEOUT", default_value = "1m", value_parser = duration::parse_flag)]
    pub image_credential_provider_timeout: Duration,
}

impl ProviderArgs {
    /// The kubelet's credential providers, checked at start as the kubelet checks them: a bad
    /// config or a missing executable stops the operator with the file and field named.
    pub fn load(&self, client: &kube::Client) -> anyhow::Result<Option<Arc<Providers>>> {
        let (Some(config), Some(bin_dir)) = (
            &self.image_credential_provider_config,
            &self.image_credential_provider_bin_dir,
        ) else {
            return Ok(None);
        };
        let accounts: Arc<dyn ServiceAccounts> = Arc::new(KubeServiceAccounts::new(client.clone()));
        let providers = Providers::load(
            config,
            bin_dir,
            self.image_credential_provider_timeout,
            Some(accounts),
        )
        .map_err(|e| anyhow::anyhow!("--image-credential-provider-config: {e}"))?;
        tracing::info!(providers = ?providers.names(), token_mode = providers.uses_service_account_tokens(), "credential providers loaded");
        Ok(Some(Arc::new(providers)))
    }
}

#[derive(clap::Args, Debug)]
pub struct LeaderArgs {
    /// Run only while holding a coordination.k8s.io Lease, so several replicas can run.
    #[arg(long, env = "LEADER_ELECTION")]
    pub leader_election: bool,
    /// Name of the lease (in --operator-namespace).
    #[arg(
        long,
        env = "LEADER_ELECTION_LEASE",
        default_value = "imagestream-operator"
    )]
    pub leader_election_lease: String,
    /// How long a leader's lease lasts without renewal: how fast a follower takes over (a
    /// duration such as 15s, or a number of seconds).
    #[arg(long, env = "LEADER_ELECTION_DURATION", default_value = "15s", value_parser = duration::parse_flag)]
    pub leader_election_duration: Duration,
}

impl LeaderArgs {
    pub fn config(
        &self,
        namespace: &str,
        metrics: &Metrics,
    ) -> imagestream_operator::ops::leader::LeaderConfig {
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("imagestream-operator-{}", std::process::id()));
        let seconds = self.leader_election_duration.as_secs();
        imagestream_operator::ops::leader::LeaderConfig {
            namespace: namespace.to_string(),
            lease_name: self.leader_election_lease.clone(),
            identity,
            duration: seconds.max(2),
            grace: (seconds / 3).max(1),
            metrics: metrics.leader.clone(),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct AdmissionArgs {
    /// Address of the HTTPS admission webhook (image lookup, triggers at creation), for the API
    /// server only; unset = off (and no notification listener either).
    #[arg(long, env = "ADMISSION_ADDR")]
    pub admission_addr: Option<std::net::SocketAddr>,
    /// PEM bundle of the CAs whose client certificates the webhook accepts: the API server's,
    /// as its AdmissionConfiguration kubeConfigFile presents it. Set, every other caller is
    /// refused during the TLS handshake.
    #[arg(long, env = "ADMISSION_CLIENT_CA_FILE")]
    pub admission_client_ca_file: Option<PathBuf>,
    /// PEM certificate for the admission endpoint (reloaded when it changes); without it a
    /// self-signed one is generated and injected into the webhook configuration.
    #[arg(long, env = "ADMISSION_CERT_FILE", requires = "admission_key_file")]
    pub admission_cert_file: Option<PathBuf>,
    #[arg(long, env = "ADMISSION_KEY_FILE", requires = "admission_cert_file")]
    pub admission_key_file: Option<PathBuf>,
    /// DNS names of the webhook Service, for a generated certificate (comma-separated).
    #[arg(long, env = "ADMISSION_HOSTS", value_delimiter = ',')]
    pub admission_hosts: Vec<String>,
    /// Secret (in --operator-namespace) that holds the generated certificate shared by all
    /// replicas.
    #[arg(
        long,
        env = "ADMISSION_CERTIFICATE_SECRET",
        default_value = "imagestream-operator-webhook-tls"
    )]
    pub admission_certificate_secret: String,
    /// MutatingWebhookConfiguration that gets the generated certificate as its caBundle.
    #[arg(
        long,
        env = "ADMISSION_WEBHOOK_CONFIGURATION",
        default_value = "imagestream-operator"
    )]
    pub admission_webhook_configuration: String,
    /// How often the leader lists the webhook's kinds in namespaces with a lookup-enabled stream
    /// for workloads stored without lookup (Warning ShortNameNotResolved on each); 0 = never.
    /// The first pass runs a minute after the leader starts. Only with the webhook.
    #[arg(long, env = "LOOKUP_AUDIT_INTERVAL", value_parser = duration::parse_flag, default_value = "1h")]
    pub lookup_audit_interval: Duration,
}

impl AdmissionArgs {
    /// The lookup audit's interval, when the webhook runs and the audit is not switched off.
    pub fn audit(&self) -> Option<Duration> {
        (self.admission_addr.is_some() && !self.lookup_audit_interval.is_zero())
            .then_some(self.lookup_audit_interval)
    }

    /// The generated certificate's Secret and names, in the operator's namespace.
    pub fn shared(&self, namespace: &str) -> imagestream_operator::admission::Shared {
        let hosts = match self.admission_hosts.is_empty() {
            true => vec![format!("imagestream-operator-webhook.{namespace}.svc")],
            false => self.admission_hosts.clone(),
        };
        imagestream_operator::admission::Shared {
            namespace: namespace.to_string(),
            secret: self.admission_certificate_secret.clone(),
            hosts,
            webhook: self.admission_webhook_configuration.clone(),
        }
    }

    /// The client CAs the webhook demands a certificate from, if any.
    pub fn client_ca(&self) -> anyhow::Result<Option<Arc<rustls::RootCertStore>>> {
        let Some(path) = &self.admission_client_ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|e| {
            anyhow::anyhow!("reading --admission-client-ca-file {}: {e}", path.display())
        })?;
        Ok(Some(imagestream_operator::admission::server::client_roots(
            &pem,
        )?))
    }
}

/// `NOTIFIED_HOST=HOST_IN_STREAMS`, as `--notification-registry-alias` takes it.
#[derive(Debug, Clone)]
pub struct AliasPair(String, String);

impl std::str::FromStr for AliasPair {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (from, to) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected NOTIFIED_HOST=HOST_IN_STREAMS"))?;
        Ok(Self(from.into(), to.into()))
    }
}

#[derive(clap::Args, Debug)]
pub struct NotificationArgs {
    /// Address of the HTTPS notification receiver (/notify/<source>): the port to expose to
    /// registries. Unset, notifications are not received.
    #[arg(long, env = "NOTIFICATION_ADDR", requires = "admission_addr")]
    pub notification_addr: Option<std::net::SocketAddr>,
    /// File holding the shared token registry notifications must present (Authorization: Bearer,
    /// or ?token= for Quay and Docker Hub); without it every notification is refused.
    #[arg(long, env = "NOTIFICATION_TOKEN_FILE")]
    pub notification_token_file: Option<PathBuf>,
    /// File holding the GitHub webhook secret (X-Hub-Signature-256) for GHCR notifications.
    #[arg(long, env = "NOTIFICATION_HMAC_SECRET_FILE")]
    pub notification_hmac_secret_file: Option<PathBuf>,
    /// NOTIFIED_HOST=HOST_IN_STREAMS pairs: a registry's host in its notifications (e.g. its
    /// internal address) mapped to the host image streams use (comma-separated).
    #[arg(long, env = "NOTIFICATION_REGISTRY_ALIASES", value_delimiter = ',')]
    pub notification_registry_alias: Vec<AliasPair>,
}

impl NotificationArgs {
    pub fn config(&self) -> anyhow::Result<NotifyConfig> {
        let read = |p: &Option<PathBuf>| -> anyhow::Result<Option<String>> {
            match p {
                None => Ok(None),
                // A Secret mounted without the optional key: that source stays refused.
                Some(path) if !path.exists() => Ok(None),
                Some(path) => std::fs::read_to_string(path)
                    .map(|s| Some(s.trim().to_string()).filter(|s| !s.is_empty()))
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display())),
            }
        };
        Ok(NotifyConfig {
            token: read(&self.notification_token_file)?,
            hmac_secret: read(&self.notification_hmac_secret_file)?,
            registry_aliases: self
                .notification_registry_alias
                .iter()
                .map(|AliasPair(from, to)| (from.clone(), to.clone()))
                .collect(),
            ..Default::default()
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct TriggerArgs {
    /// Do not run the image trigger controller (workloads annotated with image.openshift.io/triggers).
    #[arg(long, env = "DISABLE_TRIGGERS")]
    pub disable_triggers: bool,
    /// Namespaces whose workloads triggers never patch, whatever their annotations say.
    #[arg(
        long,
        env = "TRIGGER_EXCLUDED_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system"
    )]
    pub trigger_excluded_namespaces: Vec<String>,
}

impl TriggerArgs {
    /// The trigger controller's settings, or None when `--disable-triggers` is set.
    pub fn settings(
        &self,
        run: &RunArgs,
        metrics: &Metrics,
        health: &Arc<imagestream_operator::ops::Health>,
    ) -> Option<imagestream_operator::triggers::controller::TriggerSettings> {
        (!self.disable_triggers).then(|| {
            imagestream_operator::triggers::controller::TriggerSettings {
                concurrency: run.concurrency,
                health: Some(health.clone()),
                metrics: metrics.triggers.clone(),
                scope: run.scope(),
                excluded: self
                    .trigger_excluded_namespaces
                    .iter()
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect(),
            }
        })
    }
}
