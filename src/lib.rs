//! imagestream-operator: OpenShift-style image streams for any Kubernetes cluster.
//!
//! The module map, ground floor first (ARCHITECTURE.md has the table, and what each may import):
//! `api` (types, reasons, the one shared ImageStream cache), `schedule` (when scheduled tags are
//! due, and how the schedule bends), `ops` (metrics, health, Events, leader election, RBAC list),
//! `registry` (talks to registries), `import` (tag resolution and the reconcile loop), `triggers`
//! (workload image triggers), `notify` (registry push notifications), `admission` (the mutating
//! webhook: image lookup, triggers at creation), `serve` (the one HTTPS endpoint composing the
//! last two), `cli` (the kubectl plugin), `crdgen` (CRD YAML from the types).

pub mod admission;
pub mod api;
pub mod cli;
pub mod crdgen;
pub mod import;
pub mod notify;
pub mod ops;
pub mod policy;
pub mod registry;
pub mod schedule;
pub mod serve;
pub mod triggers;
