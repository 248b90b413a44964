//! Which tags need a registry round trip now, and why. Pure: the controller supplies what it
//! remembers (schedule, retries, credential changes) as hints.

use std::collections::{BTreeMap, BTreeSet};

use super::spec::{fingerprint, requested_generation};
use crate::api::{ImageStream, TagReference, DOCKER_REPOSITORY_CHECK};
use crate::registry::{credentials_may_help, ImageRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// New tag, or `from`/`reference`/`importMode` changed since the last attempt.
    SpecChanged,
    /// A re-import request (spec tag generation) not yet answered.
    Requested,
    /// `openshift.io/image.dockerRepositoryCheck` is absent: re-check every importable tag.
    RepositoryCheck,
    /// A scheduled tag's periodic check.
    Scheduled,
    /// Backoff expired after a transient failure.
    Retry,
    /// A pull secret in the namespace changed and this tag's last failure may be fixed by it.
    CredentialsChanged,
}

impl Cause {
    /// Background checks never bump a tag's generation when they find the same image, so an
    /// unchanged periodic check writes nothing.
    pub fn is_background(self) -> bool {
        !matches!(self, Cause::SpecChanged | Cause::Requested)
    }
}

/// A reconcile as the memory sees it (every reconciled stream keeps its credential fingerprint,
/// so a stream without one has not been reconciled by this process yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sight {
    /// The first reconcile of the stream in this process (after a start or a takeover): the
    /// retries of the process before it are gone.
    First,
    #[default]
    Unchanged,
    CredentialsChanged,
}

#[derive(Debug, Default, Clone)]
pub struct Hints {
    pub scheduled_due: bool,
    pub retry: BTreeSet<String>,
    pub sight: Sight,
}

/// Importable tags that still take part in scheduled checks: a digest-pinned tag drops out after
/// its first successful import (OpenShift keeps retrying it only while it has never succeeded).
pub fn is_scheduled(stream: &ImageStream, tag: &TagReference) -> bool {
    if !(tag.importable() && tag.scheduled()) {
        return false;
    }
    let Some(from) = &tag.from else { return false };
    match ImageRef::parse(&from.name) {
        Ok(r) if r.is_digest_pinned() => {
            let imported = stream.status_tag(&tag.name).is_some_and(|s| {
                !s.items.is_empty()
                    && s.conditions.is_empty()
                    && s.observed_spec.as_deref() == Some(&fingerprint(stream, tag))
            });
            !imported
        }
        Ok(_) => true,
        Err(_) => false,
    }
}

pub fn has_scheduled_tags(stream: &ImageStream) -> bool {
    stream.spec_tags().iter().any(|t| is_scheduled(stream, t))
}

/// The importable tags to send to the registry in this reconcile, with the first reason found.
pub fn imports_needed(stream: &ImageStream, hints: &Hints) -> BTreeMap<String, Cause> {
    let generation = stream.metadata.generation.unwrap_or(1);
    let check_missing = stream
        .annotation(DOCKER_REPOSITORY_CHECK)
        .is_none_or(str::is_empty);
    let mut out = BTreeMap::new();
    for tag in stream.spec_tags().iter().filter(|t| t.importable()) {
        let status = stream.status_tag(&tag.name);
        let observed = status.map_or(0, |s| s.observed_generation());
        let failed_because = |why: fn(&str) -> bool| {
            status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.reason.as_deref().is_some_and(why))
            })
        };
        let cause = if status.and_then(|s| s.observed_spec.as_deref())
            != Some(&fingerprint(stream, tag))
        {
            Some(Cause::SpecChanged)
        } else if requested_generation(tag, generation).is_some_and(|g| g > observed) {
            Some(Cause::Requested)
        } else if check_missing {
            Some(Cause::RepositoryCheck)
        } else if hints.retry.contains(&tag.name) {
            Some(Cause::Retry)
        } else if hints.sight == Sight::First && failed_because(|_| true) {
            // Retries lived in the process before this one, and a new process is how an
            // operator-side fix arrives (a CA bundle, an allowed or insecure registry, a
            // credential provider): every failed tag is tried once more, then follows the
            // usual rules.
            Some(Cause::Retry)
        } else if hints.sight == Sight::CredentialsChanged && failed_because(credentials_may_help) {
            Some(Cause::CredentialsChanged)
        } else if hints.scheduled_due && is_scheduled(stream, tag) {
            Some(Cause::Scheduled)
        } else {
            None
        };
        if let Some(cause) = cause {
            out.insert(tag.name.clone(), cause);
        }
    }
    out
}
