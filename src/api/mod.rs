//! The `image.openshift.io/v1` ImageStream API, field for field as OpenShift serves it, so that
//! manifests written for OpenShift apply unchanged. Semantics live in `import/`; this module only
//! describes shapes, defaults and static validation (which the CRD schema enforces at apply time).

pub mod cache;
mod consts;
pub mod duration;
#[cfg(any(test, feature = "test-fixtures"))]
mod fixture;
pub mod index;
mod notified;
mod reasons;
pub mod scope;
mod stream;
pub mod untrusted;
pub mod update;

pub use consts::*;
pub use notified::{Notified, MAX_NOTIFIED_AGE, NOTIFIED};
pub use reasons::{action, field_manager, reason};
pub use stream::*;
