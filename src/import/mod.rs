//! Import and reconcile: the status size budget (`budget`), which tags to import (`plan`), how a spec tag is read (`spec`), the
//! history rules (`history`), a policy tag's evaluation (`policy`), the pure status computation (`resolve`) and the kube-runtime
//! wiring that performs the registry calls and writes (`controller`).

pub mod budget;
pub mod controller;
pub mod history;
pub mod index;
pub mod listings;
pub mod memory;
pub mod metrics;
pub mod plan;
pub mod policy;
pub mod report;
pub mod requests;
pub mod resolve;
pub mod secrets;
pub mod spec;
pub mod write;

#[cfg(test)]
mod tests;
