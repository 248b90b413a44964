//! Bounds for what outside parties hand the operator: text from registries, streams and
//! notifications before it reaches a log, a condition, an Event or a terminal, and durations
//! from registries before they meet the clock. Every part uses these, so they live at the
//! ground floor.

use std::time::{Duration, Instant};

/// The most text from outside one message carries: enough for any registry's error, short
/// enough that a status or an Event cannot be filled by one answer.
pub const MAX_TEXT: usize = 1024;

/// The longest any outside party may make the operator wait or remember something for
/// (`Retry-After`, token lifetimes, plugin cache durations): longer answers are read as this.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

/// `text` with every control character removed (newlines too: this is one line of a message),
/// Unicode's direction overrides with them, and cut to `max` bytes on a character boundary with
/// `…` marking the cut.
pub fn clean(text: &str, max: usize) -> String {
    clean_with(text, max, false)
}

/// Like [`clean`], but newlines and tabs stay: for multi-line output such as the CLI's
/// `describe`.
pub fn clean_lines(text: &str, max: usize) -> String {
    clean_with(text, max, true)
}

fn clean_with(text: &str, max: usize, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let c = match c {
            '\n' | '\t' if keep_newlines => c,
            '\t' | '\n' | '\r' => ' ',
            c if is_hidden(c) => continue,
            c => c,
        };
        if out.len().saturating_add(c.len_utf8()) > max {
            // Room for the ellipsis: drop characters until it fits.
            while out.len().saturating_add('…'.len_utf8()) > max && out.pop().is_some() {}
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

/// Characters that change how a terminal or a log viewer shows what follows them.
fn is_hidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `d` clamped to [`MAX_DELAY`].
pub fn bounded(d: Duration) -> Duration {
    d.min(MAX_DELAY)
}

/// `now + d`, with `d` clamped to [`MAX_DELAY`], never overflowing the clock: whatever a
/// registry sends, a deadline is at most an hour away.
pub fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(bounded(d)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn control_characters_and_overrides_are_removed() {
        let forged =
            "denied\n2026-01-01T00:00:00Z  INFO forged\x1b]0;title\x07\x1b[31mred\u{202E}x";
        assert_eq!(
            clean(forged, MAX_TEXT),
            "denied 2026-01-01T00:00:00Z  INFO forged]0;title[31mredx"
        );
        assert_eq!(clean_lines("a\nb\x1b[2J", 100), "a\nb[2J");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let cut = clean(&"é".repeat(2000), 11);
        assert!(cut.len() <= 11, "{cut}");
        assert!(cut.ends_with('…'));
        assert_eq!(clean("short", 11), "short");
    }

    #[test]
    fn absurd_delays_are_an_hour() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::MAX), now + MAX_DELAY);
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn cleaned_text_is_bounded_and_printable(text in any::<String>(), max in 3usize..2000) {
            let out = clean(&text, max);
            prop_assert!(out.len() <= max);
            prop_assert!(!out.chars().any(is_hidden));
        }

        #[test]
        fn deadlines_never_overflow(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let now = Instant::now();
            let at = later(now, Duration::new(secs, nanos));
            prop_assert!(at >= now && at <= now + MAX_DELAY);
        }
    }
}
