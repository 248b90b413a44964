//! Versions as tag policies read them: Masterminds' loose parse (what Argo CD Image Updater and
//! Keel accept: `v1`, `1.2`, `2022.04.1`) or Flux's strict one (exactly three parts, no leading
//! zeros), and Masterminds' order (numeric parts, then prerelease identifiers: numbers below
//! words, fewer below more, words in byte order). Build metadata never orders.

use std::cmp::Ordering;

/// A parsed version. `parts` is how many numeric components the text spelled (`1.11` has 2,
/// `1.11.0` has 3), which Renovate's flavour rule and the tie-break both read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: String,
    pub parts: u8,
    pub v_prefix: bool,
}

/// How a version is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Parse {
    /// Masterminds `NewVersion`: 1–3 numeric parts, leading zeros allowed, optional `v`.
    #[default]
    Loose,
    /// Flux `ParseVersion`: one optional `v`, then exactly `MAJOR.MINOR.PATCH` without leading zeros.
    Strict,
}

impl Version {
    /// Reads `text`, or `None` when it is not a version under `mode`.
    pub fn parse(text: &str, mode: Parse) -> Option<Version> {
        let (v_prefix, rest) = match text.strip_prefix('v') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (rest, metadata) = split_once_opt(rest, '+');
        if let Some(metadata) = metadata {
            if !identifiers_ok(metadata, false) {
                return None;
            }
        }
        let (core, pre) = split_once_opt(rest, '-');
        if pre.is_some_and(|pre| !identifiers_ok(pre, true)) {
            return None;
        }
        let pre = pre.unwrap_or("");
        let numbers: Vec<&str> = core.split('.').collect();
        let strict = mode == Parse::Strict;
        if numbers.len() > 3 || (strict && numbers.len() != 3) {
            return None;
        }
        let mut values = [0u64; 3];
        for (slot, number) in values.iter_mut().zip(&numbers) {
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            if strict && number.len() > 1 && number.starts_with('0') {
                return None;
            }
            *slot = number.parse().ok()?;
        }
        Some(Version {
            major: values[0],
            minor: values[1],
            patch: values[2],
            pre: pre.to_owned(),
            parts: u8::try_from(numbers.len()).ok()?,
            v_prefix,
        })
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    /// Masterminds' `Compare`: the numbers, then a release above any of its prereleases.
    pub fn precedence(&self, other: &Version) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_prerelease(&self.pre, &other.pre),
            })
    }
}

fn split_once_opt(text: &str, at: char) -> (&str, Option<&str>) {
    match text.split_once(at) {
        Some((head, tail)) => (head, Some(tail)),
        None => (text, None),
    }
}

/// Dot-separated identifiers of `[0-9A-Za-z-]`; in a prerelease a numeric one has no leading
/// zero (Masterminds refuses `beta.01`).
fn identifiers_ok(text: &str, prerelease: bool) -> bool {
    text.split('.').all(|id| {
        let numeric = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !(prerelease && numeric && id.len() > 1 && id.starts_with('0'))
    })
}

fn compare_prerelease(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match compare_identifier(x, y) {
                Ordering::Equal => continue,
                unequal => return unequal,
            },
        }
    }
}

fn compare_identifier(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.as_bytes().cmp(b.as_bytes()),
    }
}

/// An exact non-negative decimal (`^[0-9]+(\.[0-9]+)?$`), compared without floats: 17-digit
/// timestamps that a float64 cannot tell apart stay apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decimal {
    integer: String,
    fraction: String,
}

impl Decimal {
    pub fn parse(text: &str) -> Option<Decimal> {
        let (integer, fraction) = split_once_opt(text, '.');
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(integer) || fraction.is_some_and(|f| !digits(f)) {
            return None;
        }
        let integer = integer.trim_start_matches('0');
        let fraction = fraction.unwrap_or("").trim_end_matches('0');
        Some(Decimal {
            integer: integer.to_owned(),
            fraction: fraction.to_owned(),
        })
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        self.integer
            .len()
            .cmp(&other.integer.len())
            .then_with(|| self.integer.cmp(&other.integer))
            .then_with(|| self.fraction.cmp(&other.fraction))
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loose(text: &str) -> Version {
        Version::parse(text, Parse::Loose).unwrap_or_else(|| panic!("{text} should parse"))
    }

    #[test]
    fn loose_accepts_what_masterminds_coerces_and_strict_what_flux_accepts() {
        for ok in [
            "1",
            "v1",
            "1.2",
            "2022.04.1",
            "1.2.3-rc.1+build.5",
            "v1.2.3-0abc",
            "01.2.3",
        ] {
            assert!(Version::parse(ok, Parse::Loose).is_some(), "{ok}");
        }
        for bad in [
            "",
            "v",
            "1.2.3.4",
            "1..2",
            "b1.2.3",
            "1.2.3-beta.01",
            "1.2.3-",
            "latest",
            "1.2.3+",
        ] {
            assert!(Version::parse(bad, Parse::Loose).is_none(), "{bad}");
        }
        for ok in ["1.2.3", "v1.2.3", "1.2.3-rc.1"] {
            assert!(Version::parse(ok, Parse::Strict).is_some(), "{ok}");
        }
        for bad in ["v1.0", "v1", "1.2.3.4", "v1.2-beta.5", "2022.04.1"] {
            assert!(Version::parse(bad, Parse::Strict).is_none(), "{bad}");
        }
        assert_eq!(loose("1.11").parts, 2);
        assert_eq!(loose("v1.11.0").parts, 3);
    }

    #[test]
    fn precedence_is_masterminds() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.9.0",
            "1.10.0",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                loose(pair[0]).precedence(&loose(pair[1])),
                Ordering::Less,
                "{pair:?}"
            );
        }
        assert_eq!(loose("1.11").precedence(&loose("1.11.0")), Ordering::Equal);
        assert_eq!(
            loose("1.2.3+a").precedence(&loose("v1.2.3+b")),
            Ordering::Equal
        );
        // Case matters in byte order, as Masterminds documents.
        assert_eq!(
            loose("1.0.0-BETA").precedence(&loose("1.0.0-alpha")),
            Ordering::Less
        );
    }

    #[test]
    fn decimals_compare_exactly() {
        let d = |s: &str| Decimal::parse(s).unwrap_or_else(|| panic!("{s}"));
        assert!(d("20260528153652124") > d("20260528153652123"));
        assert!(d("10") > d("9"));
        assert!(d("007") == d("7"));
        assert!(d("1.5") > d("1.25"));
        assert!(d("1.50") == d("1.5"));
        for bad in ["", "1e3", "-1", "1.", ".5", "1.2.3", "0x10"] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }
}
