//! Image triggers: workloads annotated with `image.openshift.io/triggers` get the named
//! container's image set to the tag's pull spec whenever the tag moves.
//!
//! `kind.rs` names the workload kinds and where each keeps its pod spec, `annotation.rs` parses
//! the annotation, `workload.rs` decides which images change and the minimal patch, `index.rs`
//! maps tags to the workloads that follow them, `watch.rs` decides what the metadata watches
//! keep, `access.rs` caches SubjectAccessReviews, `metrics.rs` holds the series, and
//! `controller.rs` evaluates, patches and reports.

pub mod access;
pub mod annotation;
pub mod controller;
pub mod index;
pub mod kind;
pub mod metrics;
pub mod watch;
pub mod workload;
