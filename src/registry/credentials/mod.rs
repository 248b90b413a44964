//! Where registry credentials come from, in the kubelet's order: the namespace's pull secrets
//! (`keyring.rs`), then the administrator's credential provider plugins (`config.rs` reads the
//! kubelet's `CredentialProviderConfig`, pure; `plugins.rs` runs them, `accounts.rs` reads the
//! ServiceAccounts and mints the tokens of token mode), then anonymous. These
//! are the registry files that touch the Kubernetes API's types (Secret, ServiceAccount,
//! TokenRequest); the wire files need only `Credential`, `Keyring` and `Providers`.
//!
//! Two matchers decide which credential fits an image, as two parts of the kubelet do, and they
//! differ on purpose:
//!
//! | | pull-secret keys (`keyring.rs`) | `matchImages` (`config.rs`) |
//! | --- | --- | --- |
//! | host labels | same count; `*` within a label (prefix*suffix) | same count; `*`, `?`, `[…]` per label |
//! | port | identical (none = none) | identical (none = none) |
//! | path | whole segments: `org` matches `org/app`, not `orgz` | string prefix: `pong` matches `pongz` |
//! | Docker Hub | `index.docker.io` and friends are `docker.io` | as written |
//! | several match | the longest key wins (reverse order of keys) | every matching provider, in config order |
//!
//! The keyring follows the kubelet's `credentialprovider.URLsMatch` for secrets and OpenShift's
//! Docker Hub aliases; `matchImages` follows the kubelet's `URLsMatchStr` for providers.

pub mod accounts;
pub mod config;
pub mod keyring;
pub mod plugins;

pub use keyring::*;
