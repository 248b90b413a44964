//! What each tag's registry call asks for, pure: the request of a spec tag or of a tag a
//! repository listing found, the image a background check may stop at, when a repository
//! import is due, and what a stream demands of the schedule. Testable without a `Context`.

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::plan::{is_scheduled, Cause};
use crate::api::{
    ImageStream, TagReference, CREDENTIAL_SERVICE_ACCOUNT, DEFAULT_CREDENTIAL_SERVICE_ACCOUNT,
    DOCKER_REPOSITORY_CHECK, MAX_SPEC_TAGS, PREFER_ARCH, PREFER_OS,
};
use crate::registry::credentials::Identity;
use crate::registry::{ImageRef, ImportRequest, Keyring, KnownImage, RegistryError};

/// The ServiceAccount a token-mode credential provider is given a token of: the stream names
/// one of its own namespace, or gets `default`.
pub fn identity_of(stream: &ImageStream, namespace: &str) -> Identity {
    let named = stream
        .annotations()
        .get(CREDENTIAL_SERVICE_ACCOUNT)
        .filter(|n| !n.is_empty());
    Identity {
        namespace: namespace.to_string(),
        service_account: named
            .map_or(DEFAULT_CREDENTIAL_SERVICE_ACCOUNT, |n| n.as_str())
            .to_string(),
    }
}

/// Only the first [`MAX_SPEC_TAGS`] spec tags are imported; a stream stored before the CRD
/// had that limit gets a condition on the others instead of a request each.
pub fn within_tag_limit(stream: &ImageStream, tag: &TagReference) -> Result<(), RegistryError> {
    let tags = stream.spec_tags();
    if tags.len() <= MAX_SPEC_TAGS || tags[..MAX_SPEC_TAGS].iter().any(|t| t.name == tag.name) {
        return Ok(());
    }
    Err(RegistryError::Invalid {
        reference: tag
            .from
            .as_ref()
            .map(|f| f.name.clone())
            .unwrap_or_default(),
        detail: format!(
            "the stream has {} spec tags and at most {MAX_SPEC_TAGS} are imported; move tags \
             past the first {MAX_SPEC_TAGS} into another ImageStream",
            tags.len()
        ),
    })
}

pub fn request_for(
    stream: &ImageStream,
    tag: &TagReference,
    keyring: &Keyring,
) -> Result<ImportRequest, RegistryError> {
    let from = tag.from.as_ref().map(|f| f.name.as_str()).unwrap_or("");
    let reference = ImageRef::parse(from).map_err(|e| RegistryError::Invalid {
        reference: from.to_string(),
        detail: format!("{}; correct spec.tags[{}].from.name", e.cause, tag.name),
    })?;
    Ok(ImportRequest {
        reference,
        insecure: tag.insecure() || stream.insecure_repository(),
        import_mode: tag.import_mode(),
        prefer_arch: tag.annotation(PREFER_ARCH).map(str::to_string),
        prefer_os: tag.annotation(PREFER_OS).map(str::to_string),
        keyring: keyring.clone(),
        known: None,
    })
}

/// Tags listed from one repository at most, so a hostile registry cannot exhaust memory.
pub const MAX_LISTED_TAGS: usize = 10_000;

/// The import of one tag a repository listing found (no spec tag names it).
pub fn listed_tag_request(
    from: &str,
    tag: &str,
    insecure: bool,
    keyring: &Keyring,
) -> Result<ImportRequest, RegistryError> {
    let reference = format!("{from}:{tag}");
    ImageRef::parse(&reference)
        .map(|r| ImportRequest {
            reference: r,
            insecure,
            import_mode: Default::default(),
            prefer_arch: None,
            prefer_os: None,
            keyring: keyring.clone(),
            known: None,
        })
        .map_err(|e| RegistryError::Invalid {
            reference,
            detail: e.cause,
        })
}

/// The tag's current image, when its status also holds the image's metadata (an unchanged
/// answer carries none, and the status keeps what it has).
pub fn known_image(stream: &ImageStream, tag: &str) -> Option<KnownImage> {
    let status = stream.status.as_ref()?;
    let entry = status.tags.iter().find(|t| t.tag == tag)?;
    let item = entry.items.first().filter(|i| !i.image.is_empty())?;
    status
        .images
        .iter()
        .any(|d| d.image == item.image)
        .then(|| KnownImage {
            manifest: entry
                .manifest_list_digest
                .clone()
                .unwrap_or_else(|| item.image.clone()),
            image: item.image.clone(),
            docker_image_reference: item.docker_image_reference.clone(),
        })
}

pub fn repository_import_due(stream: &ImageStream) -> Option<String> {
    let from = stream
        .spec
        .docker_image_repository
        .clone()
        .filter(|r| !r.is_empty())?;
    let check_missing = stream
        .annotation(DOCKER_REPOSITORY_CHECK)
        .is_none_or(str::is_empty);
    let last = stream
        .status
        .as_ref()
        .and_then(|s| s.repository.as_ref())
        .map(|r| r.from.as_str());
    (check_missing || last != Some(from.as_str())).then_some(from)
}

/// Scheduled references per registry, for the schedule's budget.
pub fn scheduled_demand(stream: &ImageStream) -> Vec<(String, usize)> {
    let mut demand: BTreeMap<String, usize> = BTreeMap::new();
    for tag in stream.spec_tags() {
        if !is_scheduled(stream, tag) {
            continue;
        }
        let from = tag.from.as_ref().map(|f| f.name.as_str()).unwrap_or("");
        if let Ok(image) = ImageRef::parse(from) {
            *demand.entry(image.registry().to_string()).or_insert(0) += 1;
        }
    }
    demand.into_iter().collect()
}

/// Only an import that covered every scheduled tag restarts the stream's interval: a retry of
/// one failing tag (every 10 s while a registry misbehaves) must not keep postponing its
/// siblings' scheduled checks.
pub fn checked_every_scheduled_tag(stream: &ImageStream, plan: &BTreeMap<String, Cause>) -> bool {
    !plan.is_empty()
        && stream
            .spec_tags()
            .iter()
            .filter(|t| is_scheduled(stream, t))
            .all(|t| plan.contains_key(&t.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_import_of_every_scheduled_tag_restarts_the_interval() {
        let stream = ImageStream::test("s")
            .tag("a", "r/x:a")
            .scheduled()
            .tag("b", "r/x:b")
            .scheduled()
            .tag("c", "r/x:c");
        let plan = |tags: &[&str]| -> BTreeMap<String, Cause> {
            tags.iter().map(|t| (t.to_string(), Cause::Retry)).collect()
        };
        assert!(checked_every_scheduled_tag(&stream, &plan(&["a", "b"])));
        assert!(checked_every_scheduled_tag(
            &stream,
            &plan(&["a", "b", "c"])
        ));
        // A retry of one failing tag leaves its sibling's schedule alone.
        assert!(!checked_every_scheduled_tag(&stream, &plan(&["a"])));
        assert!(!checked_every_scheduled_tag(&stream, &plan(&["c"])));
        assert!(!checked_every_scheduled_tag(&stream, &plan(&[])));
    }
}
