//! The wire-level vocabulary every registry request shares: where it goes, what can go wrong,
//! and reading answers safely (bounded bodies, `Retry-After`, distribution error envelopes).

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;

use super::credentials::Credential;
use super::policy::AddressRefused;
use crate::api::untrusted;

/// Error bodies are read only this far: enough for a distribution error envelope.
pub(super) const MAX_ERROR_BODY: usize = 64 * 1024;
/// Distribution error codes kept from one envelope, and the length of each: real ones are a
/// handful of short upper-case words.
const MAX_ERROR_CODES: usize = 8;
const MAX_ERROR_CODE: usize = 64;
/// Where a request goes: one repository on one registry, with one transport and credential.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `host[:port]` as contacted (`docker.io` already mapped to `registry-1.docker.io`).
    pub registry: String,
    pub repository: String,
    pub plain_http: bool,
    pub skip_verify: bool,
    pub credential: Option<Credential>,
    /// The namespace the request is made for: its share of the operator's limits.
    pub tenant: String,
}

impl Endpoint {
    pub(super) fn url(&self, path: &str) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}/v2/{}/{path}", self.registry, self.repository)
    }
}

/// What went wrong on the wire; the resolver turns it into a [`super::RegistryError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("HTTP {code}{}: {message}", if codes.is_empty() { String::new() } else { format!(" ({})", codes.join(", ")) })]
    Status {
        code: u16,
        /// Distribution error codes from the body (`MANIFEST_UNKNOWN`, `DENIED`, …).
        codes: Vec<String>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The registry is paused after a 429; no request was sent.
    #[error("the registry asked to be left alone for {}s more (HTTP 429); no request sent", retry_after.as_secs())]
    Paused { retry_after: Duration },
    #[error("{detail}")]
    Transport {
        detail: String,
        connect: bool,
        timeout: bool,
        plain_http: bool,
    },
    #[error("the response is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the content's digest is {actual}, not {expected}")]
    Integrity { expected: String, actual: String },
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("refused: {0}")]
    Refused(String),
}

impl HttpError {
    /// A failure of the connection itself, after which an insecure import tries plain HTTP.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Self::Transport { connect: true, .. }
                | Self::Transport {
                    plain_http: true,
                    ..
                }
        )
    }
}

/// `Retry-After` in delta-seconds or as an HTTP date, at most [`untrusted::MAX_DELAY`]: a
/// registry that asks for centuries is asked again in an hour, and nothing downstream meets a
/// duration that overflows the clock.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let secs = match value.parse::<u64>() {
        Ok(secs) => secs,
        // Longer than any u64 ("99999999999999999999999") is still a number of seconds.
        Err(_) if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => u64::MAX,
        Err(_) => {
            let when = httpdate(value)?;
            let secs = when
                .as_second()
                .saturating_sub(jiff::Timestamp::now().as_second());
            u64::try_from(secs).unwrap_or(0)
        }
    };
    Some(untrusted::bounded(Duration::from_secs(secs)))
}

fn httpdate(value: &str) -> Option<jiff::Timestamp> {
    jiff::fmt::rfc2822::parse(value).ok().map(|z| z.timestamp())
}

pub(super) fn error_envelope(body: &[u8]) -> (Vec<String>, String) {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(default)]
        errors: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(e) if !e.errors.is_empty() => {
            let message = e
                .errors
                .iter()
                .map(|x| x.message.as_str())
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            let codes = e
                .errors
                .iter()
                .take(MAX_ERROR_CODES)
                .map(|x| untrusted::clean(&x.code, MAX_ERROR_CODE))
                .collect();
            (codes, untrusted::clean(&message, untrusted::MAX_TEXT))
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            (Vec::new(), untrusted::clean(text.trim(), 200))
        }
    }
}

pub(super) fn transport_error(e: reqwest::Error) -> HttpError {
    if let Some(refused) = refused_address(&e) {
        return HttpError::Refused(refused);
    }
    // The chain can carry a registry's words (a bad header, a TLS alert's text).
    let detail = untrusted::clean(&error_chain(&e), untrusted::MAX_TEXT);
    let lower = detail.to_ascii_lowercase();
    HttpError::Transport {
        connect: e.is_connect(),
        timeout: e.is_timeout(),
        // rustls reading a plain-HTTP answer as a TLS record.
        plain_http: lower.contains("invalidcontenttype")
            || lower.contains("corrupt message")
            || lower.contains("invalid content type")
            || lower.contains("wrong version number"),
        detail,
    }
}

/// The policy's refusal, when the resolver refused every address of the host.
fn refused_address(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<AddressRefused>() {
            return Some(refused.to_string());
        }
        source = s.source();
    }
    None
}

pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    /// Error bodies from any registry (or anything pretending to be one) never panic the
    /// parser; 3,000 cases.
    mod never_panics {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]
            #[test]
            fn error_bodies(body in proptest::collection::vec(any::<u8>(), 0..300), json in "[\\[\\]{}:,\" 0-9a-zA-Z._/-]{0,200}") {
                let _ = error_envelope(&body);
                let _ = error_envelope(format!("{{\"errors\":[{json}]}}").as_bytes());
            }

            /// Any `Retry-After` — u64::MAX, longer numbers, dates far away, garbage — is at
            /// most an hour, and the deadline built from it never overflows.
            #[test]
            fn retry_after_is_bounded(secs in any::<u64>(), garbage in "[0-9A-Za-z ,:-]{0,40}", year in 1i16..9999) {
                let date = format!("Wed, 21 Oct {year:04} 07:28:00 GMT");
                for value in [secs.to_string(), format!("{secs}{secs}"), garbage, date] {
                    let mut h = HeaderMap::new();
                    if let Ok(v) = HeaderValue::from_str(&value) {
                        h.insert(RETRY_AFTER, v);
                    }
                    if let Some(d) = retry_after(&h) {
                        prop_assert!(d <= untrusted::MAX_DELAY, "{value}: {d:?}");
                        let _ = untrusted::later(std::time::Instant::now(), d);
                    }
                }
            }
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("18446744073709551615"),
        );
        assert_eq!(retry_after(&h), Some(untrusted::MAX_DELAY));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("184467440737095516150000"),
        );
        assert_eq!(retry_after(&h), Some(untrusted::MAX_DELAY));
    }

    #[test]
    fn error_envelopes_yield_codes_and_messages() {
        let (codes, msg) = error_envelope(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        );
        assert_eq!(codes, vec!["MANIFEST_UNKNOWN"]);
        assert_eq!(msg, "manifest unknown");
        let (codes, msg) = error_envelope(b"<html>oops</html>");
        assert!(codes.is_empty());
        assert_eq!(msg, "<html>oops</html>");
    }
}
