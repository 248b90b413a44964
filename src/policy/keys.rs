//! The policy keys of a spec tag's `annotations`, read into a [`Policy`] or refused with a
//! message naming the key and what to write. Annotations are the one place OpenShift keeps
//! unknown per-tag data, so the same YAML applies there (which imports the seed and ignores the
//! keys). The CRD refuses the obvious mistakes at apply time; this is the check that always
//! runs, because the webhook may be down.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::{Regex, RegexBuilder};
use sha2::{Digest, Sha256};

use super::range::Range;
use super::version::Parse;

pub const PREFIX: &str = "policy.imagestream-operator.io/";

/// Every key, in the order `describe` and errors list them.
pub const KEYS: [&str; 13] = [
    "semver",
    "numerical",
    "alphabetical",
    "pattern",
    "extract",
    "exclude",
    "prerelease",
    "flavor",
    "parse",
    "allow-downgrade",
    "hold",
    "min-age",
    "platforms",
];

/// Longest regex source accepted, and the compiled size cap (tenants write these).
const MAX_REGEX_LEN: usize = 1024;
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Highest,
    Lowest,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Semver(Range),
    Numerical(Order),
    Alphabetical(Order),
}

#[derive(Clone, Debug)]
pub enum Flavor {
    /// The seed's suffix and number of version parts must match (Renovate's rule).
    Auto,
    Any,
    /// The key must end in `-<literal>`, or in `-<anything the glob matches>`.
    Exactly(String),
    Glob(Regex),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    Off,
    /// Keep the current image.
    Freeze,
    /// Pin the tag to this history item's image (`rollback` writes it).
    Digest(String),
}

/// One tag's policy, validated.
#[derive(Clone, Debug)]
pub struct Policy {
    pub kind: Kind,
    /// The range or order as written, for messages.
    pub rule: String,
    pub pattern: Option<Regex>,
    pub extract: Option<String>,
    pub exclude: Option<Regex>,
    pub include_prerelease: bool,
    pub flavor: Flavor,
    pub parse: Parse,
    pub allow_downgrade: bool,
    pub hold: Hold,
    pub min_age: Option<Duration>,
    pub platforms: Vec<String>,
    /// A hash of the keys that decide which tags are eligible and how they rank. A selection
    /// made under another one may be left for a lower tag: the user changed the rule.
    pub rule_fingerprint: String,
}

/// The policy keys of `annotations`: `None` when there are none.
pub fn keys_of(annotations: Option<&BTreeMap<String, String>>) -> BTreeMap<&str, &str> {
    annotations
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?, v.as_str())))
        .collect()
}

/// Reads the policy of a tag whose annotations hold policy keys; `None` when they hold none.
pub fn read(annotations: Option<&BTreeMap<String, String>>) -> Option<Result<Policy, String>> {
    let keys = keys_of(annotations);
    (!keys.is_empty()).then(|| policy(&keys))
}

fn policy(keys: &BTreeMap<&str, &str>) -> Result<Policy, String> {
    if let Some(unknown) = keys.keys().find(|k| !KEYS.contains(k)) {
        return Err(format!(
            "unknown key {PREFIX}{unknown}; the keys are {}",
            KEYS.join(", ")
        ));
    }
    let get = |k: &str| keys.get(k).copied();
    let kinds: Vec<&str> = ["semver", "numerical", "alphabetical"]
        .into_iter()
        .filter(|k| keys.contains_key(k))
        .collect();
    let (kind, rule) = match kinds.as_slice() {
        ["semver"] => {
            let text = get("semver").unwrap_or_default();
            let range = Range::parse(text).map_err(|e| {
                format!("{PREFIX}semver: {e}; write a range such as ~1.25, ^2 or >=1.2 <2")
            })?;
            (Kind::Semver(range), text.to_owned())
        }
        [k @ ("numerical" | "alphabetical")] => {
            let order = match get(k) {
                Some("highest") => Order::Highest,
                Some("lowest") => Order::Lowest,
                other => {
                    return Err(format!(
                        "{PREFIX}{k}: {:?} is neither highest nor lowest",
                        other.unwrap_or_default()
                    ))
                }
            };
            let kind = if *k == "numerical" {
                Kind::Numerical(order)
            } else {
                Kind::Alphabetical(order)
            };
            (kind, format!("{k} {}", get(k).unwrap_or_default()))
        }
        [] => {
            return Err(format!(
                "set one of {PREFIX}semver, {PREFIX}numerical or {PREFIX}alphabetical"
            ))
        }
        _ => {
            return Err(format!(
                "set only one of {}",
                kinds
                    .iter()
                    .map(|k| format!("{PREFIX}{k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    };
    let pattern = get("pattern")
        .map(|p| regex("pattern", &format!("^(?:{p})$"), p))
        .transpose()?;
    let exclude = get("exclude").map(|p| regex("exclude", p, p)).transpose()?;
    let extract = get("extract").map(str::to_owned);
    if extract.is_some() && pattern.is_none() {
        return Err(format!(
            "{PREFIX}extract needs {PREFIX}pattern, whose groups it names"
        ));
    }
    Ok(Policy {
        kind,
        rule,
        pattern,
        extract,
        exclude,
        include_prerelease: choice(get("prerelease"), "prerelease", "exclude", "include")?,
        flavor: flavor(get("flavor"))?,
        parse: if choice(get("parse"), "parse", "loose", "strict")? {
            Parse::Strict
        } else {
            Parse::Loose
        },
        allow_downgrade: choice(get("allow-downgrade"), "allow-downgrade", "false", "true")?,
        hold: hold(get("hold"))?,
        min_age: get("min-age")
            .map(|d| crate::api::duration::parse(d).map_err(|e| format!("{PREFIX}min-age: {e}")))
            .transpose()?,
        platforms: platforms(get("platforms"))?,
        rule_fingerprint: rule_fingerprint(keys),
    })
}

/// `Ok(false)` for the default (or absent), `Ok(true)` for the other value.
fn choice(value: Option<&str>, key: &str, default: &str, other: &str) -> Result<bool, String> {
    match value {
        None => Ok(false),
        Some(v) if v == default => Ok(false),
        Some(v) if v == other => Ok(true),
        Some(v) => Err(format!(
            "{PREFIX}{key}: {v:?} is neither {default} nor {other}"
        )),
    }
}

fn regex(key: &str, source: &str, written: &str) -> Result<Regex, String> {
    if written.len() > MAX_REGEX_LEN {
        return Err(format!(
            "{PREFIX}{key}: longer than {MAX_REGEX_LEN} characters"
        ));
    }
    RegexBuilder::new(source)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            format!(
                "{PREFIX}{key}: not a regular expression (RE2 syntax): {}",
                last_line(&e.to_string())
            )
        })
}

fn last_line(text: &str) -> String {
    text.lines().last().unwrap_or_default().trim().to_owned()
}

fn flavor(value: Option<&str>) -> Result<Flavor, String> {
    Ok(match value {
        None | Some("auto") => Flavor::Auto,
        Some("any") => Flavor::Any,
        Some(glob) if glob.contains(['*', '?']) => {
            let source: String = glob
                .chars()
                .map(|c| match c {
                    '*' => ".*".to_owned(),
                    '?' => ".".to_owned(),
                    c => regex::escape(&c.to_string()),
                })
                .collect();
            Flavor::Glob(regex("flavor", &format!("^(?:{source})$"), glob)?)
        }
        Some(literal) if literal.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) && !literal.is_empty() => {
            Flavor::Exactly(literal.to_owned())
        }
        Some(other) => {
            return Err(format!(
                "{PREFIX}flavor: {other:?} is not auto, any, a suffix such as alpine, or a glob such as alpine*"
            ))
        }
    })
}

fn hold(value: Option<&str>) -> Result<Hold, String> {
    match value {
        None | Some("false") => Ok(Hold::Off),
        Some("true") => Ok(Hold::Freeze),
        Some(digest)
            if digest.strip_prefix("sha256:").is_some_and(|hex| {
                hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            }) =>
        {
            Ok(Hold::Digest(digest.to_owned()))
        }
        Some(other) => Err(format!(
            "{PREFIX}hold: {other:?} is not true, false or sha256:<64 hex digits>"
        )),
    }
}

fn platforms(value: Option<&str>) -> Result<Vec<String>, String> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .map(|p| {
            let parts: Vec<&str> = p.split('/').collect();
            let ok = (2..=3).contains(&parts.len())
                && parts.iter().all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            if ok {
                Ok(p.to_owned())
            } else {
                Err(format!("{PREFIX}platforms: {p:?} is not os/arch[/variant] (e.g. linux/amd64,linux/arm64)"))
            }
        })
        .collect()
}

fn rule_fingerprint(keys: &BTreeMap<&str, &str>) -> String {
    let mut hash = Sha256::new();
    for (k, v) in keys {
        if matches!(*k, "allow-downgrade" | "hold" | "min-age" | "platforms") {
            continue;
        }
        hash.update(k.as_bytes());
        hash.update([0]);
        hash.update(v.as_bytes());
        hash.update([0]);
    }
    hash.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect()
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        match read(Some(&annotations(pairs))) {
            Some(Err(e)) => e,
            other => panic!("{pairs:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn no_keys_no_policy_and_other_annotations_are_ignored() {
        let mut other = BTreeMap::new();
        other.insert("description".to_owned(), "x".to_owned());
        assert!(read(Some(&other)).is_none());
        assert!(read(None).is_none());
    }

    #[test]
    fn refusals_name_the_key_and_what_to_write() {
        assert!(error(&[("semvar", "~1")])
            .contains("unknown key policy.imagestream-operator.io/semvar"));
        assert!(error(&[("pattern", "x")]).contains("set one of"));
        assert!(error(&[("semver", "~1"), ("numerical", "highest")]).contains("set only one of"));
        assert!(error(&[("semver", ">= bar")]).contains("~1.25"));
        assert!(error(&[("numerical", "desc")]).contains("neither highest nor lowest"));
        assert!(error(&[("semver", "*"), ("pattern", "(")]).contains("not a regular expression"));
        assert!(error(&[("semver", "*"), ("extract", "$1")]).contains("needs"));
        assert!(error(&[("semver", "*"), ("hold", "sha256:abc")]).contains("64 hex"));
        assert!(error(&[("semver", "*"), ("min-age", "a day")]).contains("min-age"));
        assert!(error(&[("semver", "*"), ("platforms", "linux")]).contains("os/arch"));
        assert!(error(&[("semver", "*"), ("prerelease", "yes")]).contains("exclude nor include"));
        assert!(error(&[("semver", "*"), ("pattern", &"a".repeat(2000))]).contains("longer than"));
    }

    #[test]
    fn rule_fingerprint_ignores_gates_and_hold() {
        let fp = |pairs: &[(&str, &str)]| match read(Some(&annotations(pairs))) {
            Some(Ok(p)) => p.rule_fingerprint,
            other => panic!("{other:?}"),
        };
        let base = fp(&[("semver", "~1.25")]);
        assert_eq!(
            base,
            fp(&[("semver", "~1.25"), ("hold", "true"), ("min-age", "24h")])
        );
        assert_ne!(base, fp(&[("semver", "~1.26")]));
        assert_ne!(base, fp(&[("semver", "~1.25"), ("flavor", "any")]));
    }
}
