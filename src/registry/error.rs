//! Import failures, classified into the reasons written to status conditions. Every message names
//! the reference and says what the user can do about it.

use std::time::Duration;

use crate::api::reason;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("{reference}: {detail}; check the repository and tag names, then request a re-import")]
    NotFound { reference: String, detail: String },
    #[error("you may not have access to the container image {reference:?}{}: add a kubernetes.io/dockerconfigjson secret for this registry to the namespace", if *had_credentials { " with the pull secrets in this namespace" } else { " and no pull secret in this namespace matches its registry" })]
    Unauthorized {
        reference: String,
        had_credentials: bool,
    },
    #[error("{reference}: {detail}")]
    Forbidden { reference: String, detail: String },
    #[error("{reference}: {detail}")]
    Invalid { reference: String, detail: String },
    #[error("{reference}: {detail}")]
    BadRequest { reference: String, detail: String },
    #[error("{reference}: the registry is rate limiting requests (HTTP 429){}; the import is retried automatically, or add a pull secret to get a higher quota", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        reference: String,
        retry_after: Option<Duration>,
    },
    #[error("{reference}: registry unreachable: {detail}; the import is retried automatically")]
    Unreachable { reference: String, detail: String },
    #[error("Internal error occurred: {reference}: {detail}")]
    Internal { reference: String, detail: String },
}

/// Whether a failure recorded with this condition reason is one a new or changed pull secret
/// could fix (a registry hides private repositories behind 401, 403 or 404).
pub fn credentials_may_help(reason: &str) -> bool {
    [reason::UNAUTHORIZED, reason::FORBIDDEN, reason::NOT_FOUND].contains(&reason)
}

impl RegistryError {
    /// The condition reason, as OpenShift spells it where OpenShift has one.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => reason::NOT_FOUND,
            Self::Unauthorized { .. } => reason::UNAUTHORIZED,
            Self::Forbidden { .. } => reason::FORBIDDEN,
            Self::Invalid { .. } => reason::INVALID,
            Self::BadRequest { .. } => reason::BAD_REQUEST,
            Self::RateLimited { .. } => reason::RATE_LIMITED,
            Self::Unreachable { .. } => reason::UNREACHABLE,
            Self::Internal { .. } => reason::INTERNAL_ERROR,
        }
    }

    /// Transient failures are retried with backoff; permanent ones wait for a schedule tick, a
    /// spec change, a re-import request or a pull-secret change.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Unreachable { .. } | Self::Internal { .. }
        )
    }

    /// Failures a new or changed pull secret could fix.
    pub fn credentials_may_help(&self) -> bool {
        credentials_may_help(self.reason())
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
