//! One duration syntax for everything the operator reads: Go's, as `metav1.Duration` is written
//! (`12h`, `1h30m`, `90s`, `1.5h`, `500ms`, `0`), which the kubelet's credential provider config
//! and its plugins' answers use, and which every duration flag takes too. A flag may also be a
//! plain number of seconds, as `--leader-election-duration 15` always was.

use std::time::Duration;

/// A Go duration.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (for example \"12h\", \"1h30m\", \"90s\")");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.starts_with('-') {
        return Err(format!("{text:?} must not be negative"));
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_end].parse().map_err(|_| bad())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        // Floats: an absurd value becomes infinite and is refused below, never a panic.
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// A duration flag: a Go duration, or a plain number of seconds.
pub fn parse_flag(text: &str) -> Result<Duration, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("{text:?} is too long"));
    }
    parse(text).map_err(|e| format!("{e}; or a number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let d = |s: &str| parse(s).unwrap().as_secs_f64();
        assert_eq!(d("12h"), 43200.0);
        assert_eq!(d("1h30m"), 5400.0);
        assert_eq!(d("1.5h"), 5400.0);
        assert_eq!(d("90s"), 90.0);
        assert_eq!(d("500ms"), 0.5);
        assert_eq!(d("0"), 0.0);
        assert_eq!(d("0s"), 0.0);
        for bad in ["", "12", "h", "1d", "-1h", "1h-2m", "abc", "1e400h"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_take_go_durations_and_plain_seconds() {
        let d = |s: &str| parse_flag(s).unwrap();
        assert_eq!(d("15m"), Duration::from_secs(900));
        assert_eq!(d("5s"), Duration::from_secs(5));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("15"), Duration::from_secs(15));
        assert_eq!(d("250ms"), Duration::from_millis(250));
        for bad in ["", "soon", "99999999999999999999999"] {
            assert!(parse_flag(bad).is_err(), "{bad:?}");
        }
    }
}
