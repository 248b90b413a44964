//! Every Kubernetes API permission the operator's code uses, with the reason. The chart's
//! ClusterRole and Role, and `config/rbac`, must grant exactly these (tests/chart.rs checks).
//!
//! [`PERMISSIONS`] (and [`TOKEN_MODE_PERMISSIONS`]) are on namespaced objects: the ClusterRole
//! grants them cluster-wide by default; with `--watch-namespaces` the chart grants them by a Role
//! in each listed namespace instead, and the ClusterRole keeps only [`CLUSTER_PERMISSIONS`].

/// (API group, resource, verb, resourceNames, why). A rule with a name is granted for that
/// object only (`{release}` is the Helm release's name); an empty name means every object.
pub type Permission = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// Namespaced objects of the namespaces the operator manages.
pub const PERMISSIONS: &[Permission] = &[
    ("image.openshift.io", "imagestreams", "list", "", "import controller, trigger controller and dependents watch streams (and the CRD check lists one)"),
    ("image.openshift.io", "imagestreams", "watch", "", "same watches"),
    ("image.openshift.io", "imagestreams", "get", "", "the notification receiver reads a stream before writing its re-import request"),
    ("image.openshift.io", "imagestreams", "update", "", "the notification receiver writes the re-import request with the resourceVersion as precondition"),
    ("image.openshift.io", "imagestreams", "patch", "", "import controller sets the dockerRepositoryCheck annotation"),
    ("image.openshift.io", "imagestreams/status", "patch", "", "import controller writes status by server-side apply"),
    ("", "secrets", "list", "", "pull secrets of each stream's namespace (type-filtered reflectors); read only: credentials are needed to import private images"),
    ("", "secrets", "watch", "", "a changed pull secret retries failed imports"),
    ("events.k8s.io", "events", "create", "", "Imported/ImportFailed and trigger Events"),
    ("events.k8s.io", "events", "patch", "", "the event recorder updates the count of repeated events"),
    ("apps", "deployments", "get", "", "the trigger controller watches workloads as metadata and reads only annotated ones in full"),
    ("apps", "deployments", "list", "", "trigger controller watches annotated workloads; the lookup audit lists every kind in lookup-enabled namespaces"),
    ("apps", "deployments", "watch", "", "same"),
    ("apps", "deployments", "patch", "", "triggers set container images"),
    ("apps", "statefulsets", "get", "", "same"),
    ("apps", "statefulsets", "list", "", "same as deployments"),
    ("apps", "statefulsets", "watch", "", "same"),
    ("apps", "statefulsets", "patch", "", "same"),
    ("apps", "daemonsets", "get", "", "same"),
    ("apps", "daemonsets", "list", "", "same"),
    ("apps", "daemonsets", "watch", "", "same"),
    ("apps", "daemonsets", "patch", "", "same"),
    ("apps", "replicasets", "get", "", "same"),
    ("apps", "replicasets", "list", "", "same"),
    ("apps", "replicasets", "watch", "", "same"),
    ("apps", "replicasets", "patch", "", "same"),
    ("", "replicationcontrollers", "get", "", "same"),
    ("", "replicationcontrollers", "list", "", "same"),
    ("", "replicationcontrollers", "watch", "", "same"),
    ("", "replicationcontrollers", "patch", "", "same"),
    ("", "pods", "get", "", "same"),
    ("", "pods", "list", "", "bare pods with triggers"),
    ("", "pods", "watch", "", "same"),
    ("", "pods", "patch", "", "same"),
    ("batch", "cronjobs", "get", "", "same"),
    ("batch", "cronjobs", "list", "", "same as deployments"),
    ("batch", "cronjobs", "watch", "", "same"),
    ("batch", "cronjobs", "patch", "", "same"),
    ("batch", "jobs", "get", "", "same"),
    ("batch", "jobs", "list", "", "annotated Jobs get an Event explaining they are not patched"),
    ("batch", "jobs", "watch", "", "same"),
];

/// Cluster-scoped objects: always in the ClusterRole, also in namespaced mode.
pub const CLUSTER_PERMISSIONS: &[Permission] = &[
    ("authorization.k8s.io", "subjectaccessreviews", "create", "", "cross-namespace trigger sources are checked for the workload's service account"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "get", "{release}", "read the webhook configuration to inject the generated CA (resourceNames: the release's own)"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "list", "{release}", "watched by name, so a rewritten caBundle is restored at once (same resourceNames)"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "watch", "{release}", "same"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "patch", "{release}", "inject the generated CA into caBundle (same resourceNames)"),
];

/// Only with credential providers in service-account-token mode (`tokenAttributes`): the chart
/// grants these when its config uses that mode, or `credentialProviders.serviceAccountTokens`.
/// Minting a token is powerful; the operator mints only for the provider's audience, only for
/// the ServiceAccount a stream names in the stream's own namespace.
pub const TOKEN_MODE_PERMISSIONS: &[Permission] = &[
    ("", "serviceaccounts", "get", "", "the ServiceAccount's UID and annotations, passed to the provider and part of its cache key"),
    ("", "serviceaccounts/token", "create", "", "a short-lived token of the stream's ServiceAccount for the provider's audience"),
];

/// Namespaced permissions in the operator's own namespace (leader election, webhook certificate).
pub const NAMESPACED_PERMISSIONS: &[Permission] = &[
    (
        "coordination.k8s.io",
        "leases",
        "get",
        "",
        "read the leader lease",
    ),
    (
        "coordination.k8s.io",
        "leases",
        "list",
        "",
        "a standby watches the lease by name, to take it the moment a leader releases it",
    ),
    ("coordination.k8s.io", "leases", "watch", "", "same"),
    (
        "coordination.k8s.io",
        "leases",
        "create",
        "",
        "create it the first time",
    ),
    (
        "coordination.k8s.io",
        "leases",
        "patch",
        "",
        "acquire, renew and release it",
    ),
    (
        "",
        "secrets",
        "get",
        "{release}-webhook-tls",
        "read the shared webhook serving certificate (resourceNames: that Secret only)",
    ),
    (
        "",
        "secrets",
        "list",
        "{release}-webhook-tls",
        "watch it by name, so every replica serves a renewed one at once",
    ),
    ("", "secrets", "watch", "{release}-webhook-tls", "same"),
    (
        "",
        "secrets",
        "update",
        "{release}-webhook-tls",
        "renew it at two thirds of its life, or when its names are stale",
    ),
    (
        "",
        "secrets",
        "create",
        "",
        "store it the first time (create cannot be narrowed to a name)",
    ),
];
