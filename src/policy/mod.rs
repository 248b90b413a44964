//! Tag policies: a spec tag that follows the newest registry tag matching a rule, read from
//! the tag's own annotations (`keys.rs`), ordered as Masterminds/semver orders versions
//! (`version.rs`, `range.rs`), and chosen by a pure selector fed the registry's listing page by
//! page (`select.rs`). No I/O here: the import controller lists, feeds and acts.

pub mod keys;
pub mod range;
pub mod select;
pub mod version;

#[cfg(test)]
mod scenarios;

pub use keys::{read, Hold, Policy, PREFIX};
pub use select::{select, Current, Decision, Reason, Rejection, Selector};
