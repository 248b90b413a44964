//! imagestream-operator: OpenShift-style image streams for any Kubernetes cluster.
//!
//! The module map (see ARCHITECTURE.md): `api` (types), `registry` (talks to registries),
//! `import` (tag resolution and the reconcile loop), `schedule` (when scheduled tags are due), `triggers` (workload image triggers),
//! `crdgen` (CRD YAML from the types).

pub mod admission;
pub mod api;
pub mod cli;
pub mod crdgen;
pub mod import;
pub mod notify;
pub mod ops;
pub mod registry;
pub mod schedule;
pub mod triggers;
