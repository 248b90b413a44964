//! Which tags a whole-repository import takes: OpenShift's `PrioritizeTags` order (`latest`,
//! then minor versions such as `5.1` / `v5.1-rc1` newest first, then full semantic versions
//! newest first, then the rest lexicographically), cut at the bulk-import limit.

use std::cmp::Ordering;

use semver::Version;

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy, Debug)]
enum Priority {
    Latest,
    Minor,
    Full,
    Other,
}

struct Ranked<'a> {
    tag: &'a str,
    priority: Priority,
    version: Option<Version>,
    prefix: &'a str,
}

fn rank(tag: &str) -> Ranked<'_> {
    let (prefix, short) = match tag.strip_prefix('v') {
        Some(rest) => ("v", rest),
        None => ("", tag),
    };
    let ranked = |priority, version| Ranked {
        tag,
        priority,
        version,
        prefix,
    };
    if tag == "latest" {
        return ranked(Priority::Latest, None);
    }
    if let Ok(v) = Version::parse(short) {
        return ranked(Priority::Full, Some(v));
    }
    // `5.1` and `5.1-rc1` are minor versions: read as `5.1.0` and `5.1.0-rc1`.
    let (core, pre) = match short.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (short, None),
    };
    let is_minor = core.split('.').count() == 2
        && core
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if is_minor {
        let padded = match pre {
            Some(p) => format!("{core}.0-{p}"),
            None => format!("{core}.0"),
        };
        if let Ok(v) = Version::parse(&padded) {
            return ranked(Priority::Minor, Some(v));
        }
    }
    ranked(Priority::Other, None)
}

fn compare(a: &Ranked, b: &Ranked) -> Ordering {
    a.priority.cmp(&b.priority).then_with(|| {
        if a.priority == Priority::Other {
            return a.tag.cmp(b.tag);
        }
        b.version
            .cmp(&a.version)
            .then_with(|| a.prefix.cmp(b.prefix))
            .then_with(|| a.tag.cmp(b.tag))
    })
}

/// Tags in import priority order; an empty tag name means `latest`, as in OpenShift.
pub fn prioritize(tags: &[String]) -> Vec<String> {
    let normalized: Vec<String> = tags
        .iter()
        .map(|t| {
            if t.is_empty() {
                "latest".to_string()
            } else {
                t.clone()
            }
        })
        .collect();
    let mut ranked: Vec<Ranked> = normalized.iter().map(|t| rank(t)).collect();
    ranked.sort_by(compare);
    let mut out: Vec<String> = ranked.into_iter().map(|r| r.tag.to_string()).collect();
    out.dedup();
    out
}

/// The tags to import and the ones left over, for `status.repository.additionalTags`.
/// A limit of 0 means no limit.
pub fn select(tags: &[String], limit: usize) -> (Vec<String>, Vec<String>) {
    let mut ordered = prioritize(tags);
    if limit == 0 || ordered.len() <= limit {
        return (ordered, Vec::new());
    }
    let rest = ordered.split_off(limit);
    (ordered, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prioritize_tags_follows_openshift() {
        let tags = strings(&[
            "other", "v5.1", "5.2", "5.1.3", "latest", "v5.1.3", "5.1-rc1", "abc", "5.10.0", "6",
        ]);
        assert_eq!(
            prioritize(&tags),
            strings(&[
                "latest", "5.2", "v5.1", "5.1-rc1", "5.10.0", "5.1.3", "v5.1.3", "6", "abc",
                "other"
            ])
        );
    }

    #[test]
    fn select_caps_and_reports_the_rest() {
        let tags: Vec<String> = (0..60).map(|i| format!("1.{i}")).collect();
        let (take, rest) = select(&tags, 50);
        assert_eq!(take.len(), 50);
        assert_eq!(take[0], "1.59");
        assert_eq!(rest.len(), 10);
        assert_eq!(rest.last().map(String::as_str), Some("1.0"));
        assert_eq!(select(&tags, 0).0.len(), 60);
        assert_eq!(prioritize(&strings(&["", "latest"])), strings(&["latest"]));
    }
}
