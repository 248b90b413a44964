//! Image triggers: workloads annotated with `image.openshift.io/triggers` get the named
//! container's image set to the tag's pull spec whenever the tag moves.
//!
//! `annotation.rs` parses the annotation, `workload.rs` knows where each kind keeps its pod spec
//! and decides what changes, `index.rs` maps tags to the workloads that follow them, and
//! `controller.rs` watches, patches and reports.

pub mod annotation;
pub mod controller;
pub mod index;
pub mod workload;
