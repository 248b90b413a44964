//! imagestream-operator: OpenShift-style image streams for any Kubernetes cluster.
//!
//! The module map (see ARCHITECTURE.md): `api` (types, and the one shared ImageStream cache),
//! `registry` (talks to registries), `import` (tag resolution and the reconcile loop), `schedule`
//! (when scheduled tags are due, and how the schedule bends), `triggers` (workload image
//! triggers), `admission` (the mutating webhook: image lookup, triggers at creation), `notify`
//! (registry push notifications), `cli` (the kubectl plugin), `ops` (metrics, health, leader
//! election, RBAC list), `crdgen` (CRD YAML from the types).

pub mod admission;
pub mod api;
pub mod cli;
pub mod crdgen;
pub mod import;
pub mod notify;
pub mod ops;
pub mod registry;
pub mod schedule;
pub mod serve;
pub mod triggers;
