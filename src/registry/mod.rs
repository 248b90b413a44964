//! Everything the operator knows about images comes from here: reference parsing, pull-secret
//! credentials and the kubelet's credential provider plugins, the registry policy, the HTTP transport with its budgets, and the resolver that
//! turns a pull spec into a digest and image metadata.

mod auth;
pub mod budget;
pub mod credentials;
mod error;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod oci;
pub mod policy;
pub mod reference;
pub mod resolver;
pub mod tags;
pub mod transport;

use futures::future::BoxFuture;

pub use credentials::Keyring;
pub use error::{credentials_may_help, RegistryError};
pub use reference::{ImageRef, InvalidReference};

use crate::api::{ImageDetails, ImportMode};

/// What the import controller asks of a registry for one tag.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub reference: ImageRef,
    /// TLS without verification, and plain HTTP when HTTPS fails, are allowed.
    pub insecure: bool,
    pub import_mode: ImportMode,
    pub prefer_arch: Option<String>,
    pub prefer_os: Option<String>,
    /// Credentials from the stream's own namespace.
    pub keyring: Keyring,
    /// What the tag imported last time, for a background check: when the registry's HEAD
    /// answers with the same manifest digest, the check is done (no GET, no cache needed).
    pub known: Option<KnownImage>,
}

/// A tag's current image as its status records it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KnownImage {
    /// The digest the reference answered with: the image's own, or the manifest list's when
    /// one platform was imported from a list.
    pub manifest: String,
    pub image: String,
    pub docker_image_reference: String,
}

/// A tag resolved to an immutable image.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedImage {
    /// `sha256:…` of the manifest the tag now points at.
    pub digest: String,
    /// The user's repository pinned to that digest.
    pub docker_image_reference: String,
    /// Metadata for `status.images`; for a `PreserveOriginal` list, its platform entries.
    /// `None` when the registry confirmed the known image unchanged (status keeps its metadata).
    pub details: Option<ImageDetails>,
    /// The manifest list the image was chosen from (Legacy mode), when there was one.
    pub manifest_list: Option<String>,
}

/// A whole-repository listing request (`spec.dockerImageRepository`, `import-image --all`).
#[derive(Debug, Clone)]
pub struct ListRequest {
    pub repository: ImageRef,
    pub insecure: bool,
    pub keyring: Keyring,
    /// More tags than this make the listing incomplete.
    pub max_tags: usize,
    /// Tags asked for per page (`n`); registries may send fewer, and some ignore it.
    pub page_size: usize,
}

/// `n` of a listing: ECR's maximum, honoured by GHCR and distribution 3; Docker Hub and
/// distribution 2.x send everything at once whatever it says.
pub const TAG_PAGE_SIZE: usize = 1000;

/// One page of a tag listing as it arrives. `attempt` changes when the listing starts over
/// (with the next credential, or over plain HTTP), and a consumer then drops what the earlier
/// attempt gave it.
#[derive(Debug)]
pub struct TagPage {
    pub attempt: u32,
    pub tags: Vec<String>,
}

/// Where a listing's pages go, as they arrive.
pub type TagSink<'s> = dyn Fn(TagPage) + Send + Sync + 's;

/// How a listing ended. `complete` is false when it stopped at `max_tags`: a decision that
/// needs every tag must not be taken on it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub tags: usize,
    pub pages: u32,
    pub complete: bool,
}

/// A whole listing in memory, for the bulk repository import (which caps what it imports at
/// `--max-bulk-import` anyway): the tags, and whether that was all of them.
pub async fn collect_tags(
    resolver: &dyn ImageResolver,
    request: ListRequest,
) -> Result<(Vec<String>, bool), RegistryError> {
    let collected = parking_lot::Mutex::new((0u32, Vec::new()));
    let sink = |page: TagPage| {
        let mut collected = collected.lock();
        if collected.0 != page.attempt {
            *collected = (page.attempt, Vec::new());
        }
        collected.1.extend(page.tags);
    };
    let listed = resolver.list_tags(request, &sink).await?;
    Ok((collected.into_inner().1, listed.complete))
}

/// Resolves pull specs to digests. The real implementation is [`resolver::RegistryResolver`];
/// the trait exists so the reconcile logic can be exercised without a network.
pub trait ImageResolver: Send + Sync {
    fn resolve(
        &self,
        request: ImportRequest,
    ) -> BoxFuture<'_, Result<ResolvedImage, RegistryError>>;

    /// Lists a repository's tags into `sink`, page by page.
    fn list_tags<'a>(
        &'a self,
        request: ListRequest,
        sink: &'a TagSink<'a>,
    ) -> BoxFuture<'a, Result<Listed, RegistryError>>;

    /// Whether the credentials this resolver may use can differ per namespace beyond the
    /// namespace's pull secrets (credential providers minting per-namespace tokens), so that
    /// what one namespace listed is never handed to another.
    fn credentials_per_namespace(&self) -> bool {
        true
    }

    /// Requests per second this resolver allows itself towards `registry` (its budget), so the
    /// schedule can stretch when scheduled checks would not fit; `None` when unlimited.
    fn request_rate(&self, _registry: &str) -> Option<f64> {
        None
    }
}
