//! Every condition and Event reason the operator writes, and the field managers it writes with:
//! what users filter on (`kubectl get events --field-selector reason=…`, GitOps ignore rules), so
//! each is spelled once. Where OpenShift has a reason, it is OpenShift's spelling.

/// Condition and Event reasons.
pub mod reason {
    /// A tag's import succeeded (Event).
    pub const IMPORTED: &str = "Imported";
    /// At least one tag's import failed (Event; the tags' conditions name the cause).
    pub const IMPORT_FAILED: &str = "ImportFailed";

    // Why one tag's import failed (condition reasons, as OpenShift spells them).
    pub const NOT_FOUND: &str = "NotFound";
    pub const UNAUTHORIZED: &str = "Unauthorized";
    pub const FORBIDDEN: &str = "Forbidden";
    pub const INVALID: &str = "Invalid";
    pub const BAD_REQUEST: &str = "BadRequest";
    pub const RATE_LIMITED: &str = "RateLimited";
    pub const UNREACHABLE: &str = "Unreachable";
    pub const INTERNAL_ERROR: &str = "InternalError";
    /// A kubelet credential provider plugin matching the image failed (not OpenShift's).
    pub const CREDENTIAL_PROVIDER_FAILED: &str = "CredentialProviderFailed";
    // Why a tag policy has no (new) image to offer (condition reasons; not OpenShift's).
    pub const POLICY_INVALID: &str = "PolicyInvalid";
    pub const NO_TAG_MATCHES_POLICY: &str = "NoTagMatchesPolicy";
    pub const LISTING_INCOMPLETE: &str = "ListingIncomplete";
    pub const SELECTED_TAG_MISSING: &str = "SelectedTagMissing";

    /// The status was written without some image metadata or history to stay within its budget
    /// (also the stream condition's type).
    pub const STATUS_TRIMMED: &str = "StatusTrimmed";
    /// The status cannot be stored even trimmed.
    pub const STATUS_TOO_LARGE: &str = "StatusTooLarge";

    /// A workload's trigger set its image (Event on the workload).
    pub const IMAGE_TRIGGERED: &str = "ImageTriggered";
    pub const INVALID_TRIGGER: &str = "InvalidTrigger";
    pub const TRIGGER_SKIPPED: &str = "TriggerSkipped";
    pub const TRIGGER_FORBIDDEN: &str = "TriggerForbidden";
    pub const TRIGGER_FAILED: &str = "TriggerFailed";

    /// A workload in a lookup-enabled namespace still carries a short name a stream resolves:
    /// it was stored without passing the webhook (Warning Event on the workload).
    pub const SHORT_NAME_NOT_RESOLVED: &str = "ShortNameNotResolved";
    /// An `ImageStreamImage` prefix matches more than one image (condition reason, as
    /// OpenShift spells it).
    pub const CONFLICT: &str = "Conflict";
}

/// What the operator was doing when it published an Event (its `action`).
pub mod action {
    pub const IMPORT: &str = "Import";
    pub const TRIGGER: &str = "Trigger";
    pub const LOOKUP: &str = "Lookup";
}

/// Field managers, one per writer, so `managedFields` say who set what.
pub mod field_manager {
    /// The import controller: stream status and the repository-check annotation.
    pub const IMPORT: &str = "imagestream-operator";
    /// The image fields that triggers set on workloads.
    pub const TRIGGERS: &str = "imagestream-operator-triggers";
    /// The re-import requests written for push notifications.
    pub const NOTIFY: &str = "imagestream-operator-notify";
    /// The lookup audit's Events (their reporting controller; it writes nothing else).
    pub const LOOKUP: &str = "imagestream-operator-lookup";
    /// The leader-election Lease.
    pub const LEADER: &str = "imagestream-operator-leader";
    /// The kubectl plugin.
    pub const CLI: &str = "kubectl-imagestream";
}
