//! Everything the operator knows about images comes from here: reference parsing, pull-secret
//! credentials, and the resolver that turns a pull spec into a digest.

pub mod credentials;
mod error;
pub mod oci;
pub mod reference;

use futures::future::BoxFuture;

pub use credentials::Keyring;
pub use error::RegistryError;
pub use reference::{ImageRef, InvalidReference};

use crate::api::ImportMode;

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
}

/// One platform entry of a manifest list, recorded for `PreserveOriginal` imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildManifest {
    pub digest: String,
    pub media_type: String,
    pub size: i64,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// A tag resolved to an immutable image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// `sha256:…` of the manifest the tag now points at.
    pub digest: String,
    /// The user's repository pinned to that digest.
    pub docker_image_reference: String,
    /// Non-empty only for `PreserveOriginal` imports of a manifest list.
    pub manifests: Vec<ChildManifest>,
}

/// Resolves pull specs to digests. The real implementation is [`oci::OciResolver`]; the trait
/// exists so the reconcile logic can be exercised without a network.
pub trait ImageResolver: Send + Sync {
    fn resolve(
        &self,
        request: ImportRequest,
    ) -> BoxFuture<'_, Result<ResolvedImage, RegistryError>>;
}
