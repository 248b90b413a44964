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
    /// Stop listing once this many tags are known.
    pub max_tags: usize,
}

/// Resolves pull specs to digests. The real implementation is [`resolver::RegistryResolver`];
/// the trait exists so the reconcile logic can be exercised without a network.
pub trait ImageResolver: Send + Sync {
    fn resolve(
        &self,
        request: ImportRequest,
    ) -> BoxFuture<'_, Result<ResolvedImage, RegistryError>>;

    fn list_tags(&self, request: ListRequest) -> BoxFuture<'_, Result<Vec<String>, RegistryError>>;

    /// Requests per second this resolver allows itself towards `registry` (its budget), so the
    /// schedule can stretch when scheduled checks would not fit; `None` when unlimited.
    fn request_rate(&self, _registry: &str) -> Option<f64> {
        None
    }
}
