//! Test harness, by concern (like Flux's `internal/test/{registry,tlsserver}`): `api.rs` (the
//! mocked API server of every API-interaction test), `registry.rs` (a
//! real `docker-registry` on 127.0.0.1 and image pushes), `http.rs` (a minimal HTTP/1.1 reader
//! and server for the fakes), `tokens.rs` (a token server for the registry's bearer-token
//! scheme), `faults.rs` (a fault-injecting proxy in front of a registry), `provider.rs` (the test
//! credential provider plugin and its config). Everything is
//! re-exported here, so tests say `common::Registry`, `common::FaultProxy`, ….

#![allow(dead_code, unused_imports)]

pub mod api;
pub mod faults;
pub mod http;
pub mod provider;
pub mod registry;
pub mod tokens;

pub use faults::*;
pub use http::*;
pub use provider::*;
pub use registry::*;
pub use tokens::*;
