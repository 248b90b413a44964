//! Annotation keys, condition types and defaults shared by every part of the operator.

/// RFC3339 time of the last import that changed the stream; removing it forces a full re-import.
pub const DOCKER_REPOSITORY_CHECK: &str = "openshift.io/image.dockerRepositoryCheck";
/// Stream-wide permission to use TLS without verification, or plain HTTP.
pub const INSECURE_REPOSITORY: &str = "openshift.io/image.insecureRepository";
/// A pull secret carrying this annotation set to "true" is never used for imports.
pub const EXCLUDE_SECRET: &str = "openshift.io/image.excludeSecret";
/// Spec-tag annotations choosing the platform when a Legacy import meets a manifest list.
pub const PREFER_ARCH: &str = "importer.image.openshift.io/prefer-arch";
pub const PREFER_OS: &str = "importer.image.openshift.io/prefer-os";
/// Stream annotation naming the ServiceAccount (of the stream's namespace) whose token a
/// credential provider in service-account-token mode is given; `default` when absent.
pub const CREDENTIAL_SERVICE_ACCOUNT: &str =
    "imagestream-operator.io/credential-provider-service-account";
pub const DEFAULT_CREDENTIAL_SERVICE_ACCOUNT: &str = "default";
/// ServiceAccount annotation (`"true"`) that lets streams of its namespace name it in
/// [`CREDENTIAL_SERVICE_ACCOUNT`]: anyone who may edit a stream could otherwise have the
/// operator mint a token for any ServiceAccount of the namespace. `default` needs none.
pub const ALLOW_CREDENTIAL_PROVIDER: &str = "imagestream-operator.io/allow-credential-provider";
/// Workload annotation holding the JSON list of image triggers.
pub const TRIGGERS: &str = "image.openshift.io/triggers";
/// Workload annotation asking for short names to be resolved against image streams.
pub const RESOLVE_NAMES: &str = "alpha.image.policy.openshift.io/resolve-names";

/// The only condition type OpenShift writes on a status tag; only ever with status "False".
pub const IMPORT_SUCCESS: &str = "ImportSuccess";

pub const DEFAULT_TAG: &str = "latest";

/// Spec tags per stream: the CRD's `maxItems`, and what the import controller imports of a
/// stream stored before that limit (the rest get a condition). One tenant's stream must not
/// turn into an unbounded number of registry requests per reconcile.
pub const MAX_SPEC_TAGS: usize = 1000;
