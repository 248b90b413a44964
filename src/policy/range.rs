//! Masterminds/semver v3 ranges, the grammar Flux, Argo CD Image Updater and Helm users write:
//! `~1.25`, `^2`, `>=1.2 <2` (space or comma for AND), `1.2 - 1.4.5`, `1.x || >=3.1`, `*`.
//! The `semver` crate implements Cargo's grammar and prerelease rule instead, which differ
//! (no `||`, no hyphen ranges, prereleases only for the same `major.minor.patch`).
//!
//! The prerelease rule is Masterminds': a prerelease satisfies an AND group only when the
//! policy includes prereleases or some comparator of that group carries one (`>=1.0.0-0`), and
//! then any prerelease in range qualifies, not only the comparator's own `major.minor.patch`.
//! `tests/fixtures/masterminds-constraints.tsv` holds Masterminds' own check table.

use std::sync::LazyLock;

use regex::Regex;

use super::version::{Parse, Version};

/// Longer ranges are refused: nobody writes one, and the regexes stay cheap.
pub const MAX_RANGE_LEN: usize = 256;

const OPS: &str = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^";
// A version in a range: `x`, `X` or `*` may stand for a number (Masterminds also lets `|`
// through inside its class; such a "number" then fails to parse, as it does there).
const CV: &str = r"v?([0-9|xX*]+)(\.[0-9|xX*]+)?(\.[0-9|xX*]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?";

static ONE: LazyLock<Regex> = LazyLock::new(|| compiled(&format!(r"^\s*({OPS})\s*({CV})\s*$")));
static HYPHEN: LazyLock<Regex> = LazyLock::new(|| compiled(&format!(r"\s*({CV})\s+-\s+({CV})\s*")));
static FIND: LazyLock<Regex> = LazyLock::new(|| compiled(&format!(r"({OPS})\s*({CV})")));
static GROUP: LazyLock<Regex> = LazyLock::new(|| {
    compiled(&format!(
        r"^(\s*({OPS})\s*({CV})\s*)((?:\s+|,\s*)({OPS})\s*({CV})\s*)*$"
    ))
});

fn compiled(pattern: &str) -> Regex {
    // The patterns are constants, checked by every test that parses a range.
    Regex::new(pattern).unwrap_or_else(|e| unreachable!("constant range regex: {e}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    TildeOrEqual,
    NotEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    Tilde,
    Caret,
}

#[derive(Clone, Debug)]
struct Comparator {
    op: Op,
    version: Version,
    /// Masterminds' three flags: some part was a wildcard or missing (`*`, `1`, `1.2`); the
    /// minor was (`1`, `1.x`); the patch was (`1.2`, `1.2.x`). A wildcard major sets only the first.
    dirty: bool,
    minor_dirty: bool,
    patch_dirty: bool,
}

/// A parsed range: OR of AND groups.
#[derive(Clone, Debug)]
pub struct Range {
    groups: Vec<(Vec<Comparator>, bool)>,
}

impl Range {
    pub fn parse(text: &str) -> Result<Range, String> {
        if text.len() > MAX_RANGE_LEN {
            return Err(format!("longer than {MAX_RANGE_LEN} characters"));
        }
        let rewritten = HYPHEN.replace_all(text, |c: &regex::Captures| {
            format!(">= {}, <= {} ", &c[1], &c[11])
        });
        let mut groups = Vec::new();
        for group in rewritten.split("||") {
            if !GROUP.is_match(group) {
                return Err(format!("{:?} is not a range", group.trim()));
            }
            let comparators = FIND
                .find_iter(group)
                .map(|m| comparator(m.as_str()))
                .collect::<Result<Vec<_>, _>>()?;
            let has_pre = comparators.iter().any(|c| c.version.is_prerelease());
            groups.push((comparators, has_pre));
        }
        Ok(Range { groups })
    }

    /// Whether `v` satisfies the range; `include_pre` is the policy's `prerelease: include`.
    pub fn matches(&self, v: &Version, include_pre: bool) -> bool {
        self.groups.iter().any(|(comparators, has_pre)| {
            let pre_ok = include_pre || *has_pre || !v.is_prerelease();
            pre_ok && comparators.iter().all(|c| c.matches(v))
        })
    }

    /// Whether the range itself lets prereleases in (some group has a prerelease comparator).
    pub fn admits_prereleases(&self) -> bool {
        self.groups.iter().any(|(_, has_pre)| *has_pre)
    }
}

fn is_wild(part: &str) -> bool {
    matches!(part, "x" | "X" | "*")
}

fn comparator(text: &str) -> Result<Comparator, String> {
    let bad = || format!("{:?} is not a comparator", text.trim());
    let c = ONE.captures(text).ok_or_else(bad)?;
    let op = match &c[1] {
        "" | "=" => Op::TildeOrEqual,
        "!=" => Op::NotEqual,
        ">" => Op::Greater,
        "<" => Op::Less,
        ">=" | "=>" => Op::GreaterEqual,
        "<=" | "=<" => Op::LessEqual,
        "~" | "~>" => Op::Tilde,
        _ => Op::Caret,
    };
    let group = |i: usize| c.get(i).map_or("", |m| m.as_str());
    let (major, minor, patch, pre) = (group(3), group(4), group(5), group(6));
    let minor_digits = minor.trim_start_matches('.');
    let patch_digits = patch.trim_start_matches('.');
    let (text, minor_dirty, patch_dirty) = if is_wild(major) {
        (format!("0.0.0{pre}"), false, false)
    } else if minor.is_empty() || is_wild(minor_digits) {
        (format!("{major}.0.0{pre}"), true, false)
    } else if patch.is_empty() || is_wild(patch_digits) {
        (format!("{major}{minor}.0{pre}"), false, true)
    } else {
        (format!("{major}{minor}{patch}{pre}"), false, false)
    };
    let dirty = is_wild(major) || minor_dirty || patch_dirty;
    let version = Version::parse(&text, Parse::Loose).ok_or_else(bad)?;
    Ok(Comparator {
        op,
        version,
        dirty,
        minor_dirty,
        patch_dirty,
    })
}

impl Comparator {
    fn matches(&self, v: &Version) -> bool {
        use std::cmp::Ordering::*;
        let c = &self.version;
        let cmp = v.precedence(c);
        match self.op {
            Op::TildeOrEqual if self.dirty => self.tilde(v),
            Op::TildeOrEqual => cmp == Equal,
            Op::NotEqual => self.not_equal(v),
            Op::Greater => self.greater(v),
            Op::Less => cmp == Less,
            Op::GreaterEqual => cmp != Less,
            Op::LessEqual if !self.dirty => cmp != Greater,
            // `<=1.1` admits 1.1.x; `<=1` admits 1.x.
            Op::LessEqual => {
                v.major < c.major
                    || (v.major == c.major && (self.minor_dirty || v.minor <= c.minor))
            }
            Op::Tilde => self.tilde(v),
            Op::Caret => self.caret(v),
        }
    }

    fn not_equal(&self, v: &Version) -> bool {
        let c = &self.version;
        if self.dirty {
            if c.major != v.major {
                return true;
            }
            if self.minor_dirty {
                return false;
            }
            if c.minor != v.minor {
                return true;
            }
            if self.patch_dirty {
                // Same major.minor under `!=1.2`: different only by prerelease.
                return v.pre != c.pre;
            }
            if c.patch != v.patch {
                return true;
            }
        }
        v.precedence(c) != std::cmp::Ordering::Equal
    }

    fn greater(&self, v: &Version) -> bool {
        let c = &self.version;
        if !self.dirty || v.major == c.major && !self.minor_dirty && !self.patch_dirty {
            return v.precedence(c) == std::cmp::Ordering::Greater;
        }
        if v.major != c.major {
            return v.major > c.major;
        }
        // `>11` needs 12; `>11.1` needs 11.2.
        !self.minor_dirty && v.minor > c.minor
    }

    fn tilde(&self, v: &Version) -> bool {
        let c = &self.version;
        if v.precedence(c) == std::cmp::Ordering::Less {
            return false;
        }
        let any =
            c.major == 0 && c.minor == 0 && c.patch == 0 && !self.minor_dirty && !self.patch_dirty;
        any || (v.major == c.major && (self.minor_dirty || v.minor == c.minor))
    }

    fn caret(&self, v: &Version) -> bool {
        let c = &self.version;
        if v.precedence(c) == std::cmp::Ordering::Less {
            return false;
        }
        if c.major > 0 || self.minor_dirty {
            return v.major == c.major;
        }
        if v.major > 0 {
            return false;
        }
        if c.minor > 0 || self.patch_dirty {
            return v.minor == c.minor;
        }
        v.minor == 0 && v.patch == c.patch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text, Parse::Loose).unwrap_or_else(|| panic!("{text} should parse"))
    }

    /// Masterminds' `TestConstraintsCheck` and `TestConstraintsCheckIncludePrerelease` rows, as
    /// data: `range<TAB>version<TAB>true|false[<TAB>include]`.
    #[test]
    fn masterminds_check_table() {
        let table = include_str!("../../tests/fixtures/masterminds-constraints.tsv");
        let mut rows = 0;
        for line in table
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let cols: Vec<&str> = line.split('\t').collect();
            let [range, version, want, rest @ ..] = cols.as_slice() else {
                panic!("bad row {line:?}");
            };
            let include = rest.first() == Some(&"include");
            let parsed = Range::parse(range).unwrap_or_else(|e| panic!("{range:?}: {e}"));
            let got = parsed.matches(&v(version), include);
            assert_eq!(
                got.to_string(),
                *want,
                "range {range:?} version {version:?} include {include}"
            );
            rows += 1;
        }
        assert!(rows > 200, "only {rows} rows");
    }

    #[test]
    fn masterminds_parse_table() {
        for ok in [
            ">= 1.1",
            ">40.50.60, < 50.70",
            "2.0",
            "v2.3.5-20161202202307-sha.e8fc5e5",
            "v1.2.3-0abc",
            ">= 1.2.3 < 2.0 || => 3.0 < 4",
            ">= 1.2.3, < 2.0 || => 3.0, < 4",
            "3 - 4 || => 3.0, < 4",
            "12.3.34 ~1.2.3",
            "1.0.0 - 2.0.0, <=2.0.0",
            "*",
        ] {
            assert!(Range::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "v1.2.3-beta.01",
            ">= bar",
            "BAR >= 1.2.3",
            "12.3.4.1234",
            "12.23.4.1234",
            "12.3.34~ 1.2.3",
            "1|2",
            "",
        ] {
            assert!(Range::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Range::parse(&"1".repeat(MAX_RANGE_LEN + 1)).is_err());
    }

    #[test]
    fn group_counts_follow_the_rewrite() {
        let r = Range::parse("1.0.0 - 2.0.0, <=2.0.0").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.groups.len(), 1);
        assert_eq!(r.groups[0].0.len(), 3);
        let r = Range::parse(">= 1.2.3 < 2.0 || => 3.0 < 4").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.groups.len(), 2);
    }
}
