//! Import failures, classified into the reasons written to status conditions. Every message names
//! the reference and says what the user can do about it.

use std::time::Duration;

use super::http::HttpError;
use super::ImageRef;
use crate::api::reason;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("{reference}: {detail}; check the repository and tag names, then request a re-import")]
    NotFound { reference: String, detail: String },
    #[error("you may not have access to the container image {reference:?}{}", if *had_credentials { " with the credentials that match it (this namespace's pull secrets, credential providers): check them, or add a kubernetes.io/dockerconfigjson secret that grants access" } else { " and no pull secret in this namespace matches its registry: add a kubernetes.io/dockerconfigjson secret for this registry to the namespace" })]
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
    #[error("{reference}: the credential provider {provider:?} failed: {detail}; check the provider's configuration and the cloud identity it uses (the import is retried automatically)")]
    CredentialProvider {
        reference: String,
        provider: String,
        detail: String,
    },
    /// A tag policy has nothing (new) to import: invalid keys, no tag matches, an incomplete
    /// listing; `reason` is one of the policy reasons, and `detail` says what to do.
    #[error("{reference}: {detail}")]
    Policy {
        reference: String,
        reason: &'static str,
        detail: String,
    },
}

/// A TLS failure a CA bundle would fix, as rustls words it.
fn untrusted_certificate(detail: &str) -> bool {
    [
        "UnknownIssuer",
        "unknown issuer",
        "self-signed",
        "SelfSigned",
    ]
    .iter()
    .any(|m| detail.contains(m))
}

/// Whether a failure recorded with this condition reason is retried with backoff (the registry
/// or its network may recover by itself) rather than waiting for a change.
fn transient_reason(reason: &str) -> bool {
    [
        reason::RATE_LIMITED,
        reason::UNREACHABLE,
        reason::INTERNAL_ERROR,
        reason::CREDENTIAL_PROVIDER_FAILED,
    ]
    .contains(&reason)
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
            Self::CredentialProvider { .. } => reason::CREDENTIAL_PROVIDER_FAILED,
            Self::Policy { reason, .. } => reason,
        }
    }

    /// Transient failures are retried with backoff; permanent ones wait for a schedule tick, a
    /// spec change, a re-import request or a pull-secret change.
    pub fn is_transient(&self) -> bool {
        transient_reason(self.reason())
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

// How wire failures become these reasons.

/// The registry itself named this digest (a HEAD, or a list's entry), so a 404 for it is the
/// registry's inconsistency (replication lag, a half-deleted image), not a wrong name: say so,
/// and let the import be retried instead of telling the user to check the tag.
pub(super) fn vanished(e: HttpError, digest: &str) -> HttpError {
    match e {
        HttpError::Status { code: 404, .. } => HttpError::Malformed(format!(
            "the registry named {digest} but answered HTTP 404 for it (still replicating, or \
             inconsistent); the import is retried automatically"
        )),
        e => e,
    }
}

/// Map wire failures to the reasons the controller writes, naming the reference and the cause.
pub(super) fn classify(image: &ImageRef, e: HttpError, had_credentials: bool) -> RegistryError {
    let reference = image.to_string();
    match e {
        HttpError::Refused(detail) => RegistryError::Forbidden { reference, detail },
        HttpError::Paused { retry_after } => RegistryError::RateLimited {
            reference,
            retry_after: Some(retry_after),
        },
        HttpError::Status {
            code,
            codes,
            message,
            retry_after,
        } => classify_status(reference, code, &codes, message, retry_after, had_credentials),
        HttpError::Transport {
            detail, timeout, ..
        } => RegistryError::Unreachable {
            reference,
            detail: if timeout {
                format!("the request timed out: {detail}")
            } else if untrusted_certificate(&detail) {
                format!("{detail}; the registry's certificate is not signed by a CA the operator trusts: if a private CA signed it, give the operator that CA (--registry-ca-bundle, chart value controller.registryCABundle), or list the registry in --insecure-registries (controller.insecureRegistries) to skip verification")
            } else {
                detail
            },
        },
        HttpError::TooLarge { limit } => RegistryError::Invalid {
            reference,
            detail: format!(
                "the registry sent a response larger than the {} MiB limit; refusing to read it",
                limit / (1024 * 1024)
            ),
        },
        HttpError::Integrity { expected, actual } => RegistryError::Internal {
            reference,
            detail: format!(
                "content integrity error: asked for {expected}, the registry sent content hashing to {actual}"
            ),
        },
        HttpError::Malformed(detail) => RegistryError::Internal { reference, detail },
    }
}

fn classify_status(
    reference: String,
    code: u16,
    codes: &[String],
    message: String,
    retry_after: Option<std::time::Duration>,
    had_credentials: bool,
) -> RegistryError {
    let has = |c: &str| codes.iter().any(|x| x.eq_ignore_ascii_case(c));
    let suffix = if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    };
    if code == 429 || has("TOOMANYREQUESTS") {
        return RegistryError::RateLimited {
            reference,
            retry_after,
        };
    }
    if code == 401 || has("UNAUTHORIZED") {
        return RegistryError::Unauthorized {
            reference,
            had_credentials,
        };
    }
    if code == 404 || has("MANIFEST_UNKNOWN") || has("NAME_UNKNOWN") || has("BLOB_UNKNOWN") {
        let what = if has("NAME_UNKNOWN") {
            "repository not found"
        } else {
            "manifest unknown"
        };
        return RegistryError::NotFound {
            reference,
            detail: what.into(),
        };
    }
    if code == 403 || has("DENIED") {
        return RegistryError::Forbidden {
            reference,
            detail: format!("access denied by the registry (HTTP {code}){suffix}"),
        };
    }
    if (500..600).contains(&code) {
        return RegistryError::Unreachable {
            reference,
            detail: format!("the registry answered HTTP {code}{suffix}"),
        };
    }
    RegistryError::Internal {
        reference,
        detail: format!("unexpected HTTP {code} from the registry{suffix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_ca_names_the_ca_bundle_and_the_insecure_list() {
        let image = ImageRef::parse("reg.example:5000/team/app:1").expect("reference");
        let e = HttpError::Transport {
            detail: "invalid peer certificate: UnknownIssuer".into(),
            connect: true,
            timeout: false,
            plain_http: false,
        };
        let said = classify(&image, e, false).to_string();
        assert!(said.contains("--registry-ca-bundle"), "{said}");
        assert!(said.contains("--insecure-registries"), "{said}");
    }

    #[test]
    fn statuses_map_to_openshift_reasons() {
        let r = |code: u16, codes: &[&str]| {
            classify_status(
                "r".into(),
                code,
                &codes.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                String::new(),
                None,
                false,
            )
            .reason()
        };
        assert_eq!(r(404, &[]), "NotFound");
        assert_eq!(r(400, &["NAME_UNKNOWN"]), "NotFound");
        assert_eq!(r(401, &[]), "Unauthorized");
        assert_eq!(r(403, &[]), "Forbidden");
        assert_eq!(r(429, &[]), "RateLimited");
        assert_eq!(r(200, &["TOOMANYREQUESTS"]), "RateLimited");
        assert_eq!(r(503, &[]), "Unreachable");
        assert_eq!(r(418, &[]), "InternalError");
    }
}
