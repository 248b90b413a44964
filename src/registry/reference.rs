//! Image references: Docker's distribution grammar and normalisation, as container runtimes
//! apply them (implicit `docker.io` and `library/`, `index.docker.io` folded, default tag
//! `latest`), into oci-client's `Reference`. On top we keep the string the user wrote, because
//! OpenShift records pull specs in the user's form (`centos/python-35-centos7@sha256:…`, not
//! `docker.io/centos/…`).
//!
//! The grammar is matched here rather than by `Reference::try_from`: oci-spec's pattern spells
//! the tag with Unicode `\w{0,127}`, which compiles to about 7 MiB of automaton, a tenth of the
//! operator's memory at 10,000 tags. Distribution (Go) means ASCII there, as this does.

use std::fmt;
use std::sync::LazyLock;

use oci_client::Reference;
use regex::Regex;

/// `name[:tag][@digest]` in distribution's grammar; captures name, tag, digest.
static GRAMMAR: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let path_component = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
    let domain_component = "[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?";
    let domain = format!(r"{domain_component}(?:\.{domain_component})*(?::[0-9]+)?");
    let name = format!("(?:{domain}/)?{path_component}(?:/{path_component})*");
    let tag = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
    let digest = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
    Regex::new(&format!("^({name})(?::({tag}))?(?:@({digest}))?$")).ok()
});

const NAME_MAX: usize = 255;

/// Parses and normalises like `Reference::try_from`, with the same messages.
fn parse_reference(input: &str) -> Result<Reference, String> {
    if input.is_empty() {
        return Err("repository name must have at least one component".into());
    }
    let captures = GRAMMAR
        .as_ref()
        .and_then(|g| g.captures(input))
        .ok_or("invalid reference format")?;
    let name = captures.get(1).map_or("", |m| m.as_str());
    let tag = captures.get(2).map(|m| m.as_str().to_string());
    let digest = captures.get(3).map(|m| m.as_str().to_string());
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_MAX {
        return Err(format!(
            "repository name must not be more than {NAME_MAX} characters"
        ));
    }
    if let Some(d) = &digest {
        let (algorithm, hex) = d.split_once(':').ok_or("invalid checksum digest format")?;
        let want = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err("unsupported digest algorithm".into()),
        };
        if hex.len() != want {
            return Err("invalid checksum digest length".into());
        }
    }
    Ok(match (tag, digest) {
        (Some(t), Some(d)) => Reference::with_tag_and_digest(registry, repository, t, d),
        (None, Some(d)) => Reference::with_digest(registry, repository, d),
        (t, None) => Reference::with_tag(registry, repository, t.unwrap_or("latest".into())),
    })
}

/// Docker Hub is implied unless the first path component looks like a host (has a dot or a
/// port, or is `localhost`); its official images live under `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (domain, rest) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
        _ => ("docker.io", name),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    let repository = if domain == "docker.io" && !rest.contains('/') {
        format!("library/{rest}")
    } else {
        rest.to_string()
    };
    (domain.to_string(), repository)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {cause}")]
pub struct InvalidReference {
    pub input: String,
    pub cause: String,
}

/// A validated image reference: the user's spelling plus the normalised form used on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    original: String,
    normalized: Reference,
}

impl ImageRef {
    pub fn parse(input: &str) -> Result<Self, InvalidReference> {
        let invalid = |cause: String| InvalidReference {
            input: input.to_string(),
            cause,
        };
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(invalid("the reference is empty".into()));
        }
        if trimmed != input || input.chars().any(char::is_whitespace) {
            return Err(invalid("the reference contains whitespace".into()));
        }
        if input.contains("://") {
            return Err(invalid(
                "a reference has no URL scheme; write host[:port]/repository[:tag]".into(),
            ));
        }
        let normalized = parse_reference(input).map_err(invalid)?;
        Ok(Self {
            original: input.to_string(),
            normalized,
        })
    }

    /// The reference exactly as written.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    pub fn normalized(&self) -> &Reference {
        &self.normalized
    }

    /// Registry host as it appears on the wire (`docker.io` for Docker Hub, with port if any).
    pub fn registry(&self) -> &str {
        self.normalized.registry()
    }

    /// Repository path on the registry, with Docker Hub's implicit `library/`.
    pub fn repository(&self) -> &str {
        self.normalized.repository()
    }

    pub fn tag(&self) -> Option<&str> {
        self.normalized.tag()
    }

    pub fn digest(&self) -> Option<&str> {
        self.normalized.digest()
    }

    /// Whether the user wrote a digest (`repo@sha256:…`); such a reference never moves.
    pub fn is_digest_pinned(&self) -> bool {
        self.original.contains('@')
    }

    /// The repository part as the user wrote it, without tag or digest.
    pub fn repository_as_written(&self) -> &str {
        let without_digest = self
            .original
            .split_once('@')
            .map_or(self.original.as_str(), |(r, _)| r);
        match without_digest.rfind(':') {
            Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
            _ => without_digest,
        }
    }

    /// OpenShift's "most specific" pull spec: the user's repository pinned to `digest`.
    pub fn pinned(&self, digest: &str) -> String {
        format!("{}@{}", self.repository_as_written(), digest)
    }

    /// The normalised reference of `digest` in the same repository, for registry calls.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.registry().to_string(),
            self.repository().to_string(),
            digest.to_string(),
        )
    }

    /// Registry host without port, for allow/deny decisions.
    pub fn host(&self) -> &str {
        host_of(self.registry())
    }
}

/// The host part of `host[:port]`, handling bracketed IPv6 literals.
pub fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Same answer as oci-spec's parser (whose pattern this replaces), for ASCII input.
    fn same_as_oci_spec(input: &str) {
        let ours = parse_reference(input).map(|r| r.whole());
        let theirs = Reference::try_from(input)
            .map(|r| r.whole())
            .map_err(|e| e.to_string());
        assert_eq!(ours, theirs, "{input:?}");
    }

    #[test]
    fn agrees_with_oci_spec() {
        let hex = "a".repeat(64);
        for input in [
            "busybox",
            "test.com:tag",
            "test.com:5000",
            "test.com/repo:tag",
            "test:5000/repo",
            "test:5000/repo:tag",
            "localhost/app",
            "localhost:5000/a/b/c:1.0-rc_1",
            "index.docker.io/busybox",
            "docker.io/library/busybox:1",
            "quay.io/org/app__x--y.z:v_1.2",
            &format!("app@sha256:{hex}"),
            &format!("app:1@sha256:{hex}"),
            &format!("app@sha512:{hex}"),
            &format!("app@md5:{hex}"),
            "app@sha256:abc",
            "Upper/app",
            "app:",
            "app:-x",
            &format!("app:{}", "t".repeat(128)),
            &format!("app:{}", "t".repeat(129)),
            &format!("a/{}", "b".repeat(260)),
            "-app",
            "app-",
            "a..b",
            "host:port/app",
            "[::1]:5000/app",
            "",
        ] {
            same_as_oci_spec(input);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Reference-shaped ASCII strings: never a panic, always oci-spec's answer.
        #[test]
        fn agrees_with_oci_spec_on_generated_input(
            input in "[a-zA-Z0-9._:/@-]{0,40}(sha256:[0-9a-f]{64})?"
        ) {
            same_as_oci_spec(&input);
        }
    }

    #[test]
    fn docker_hub_defaults_are_applied_on_the_wire_only() {
        let r = ImageRef::parse("python:3.5").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/python");
        assert_eq!(r.tag(), Some("3.5"));
        assert_eq!(r.repository_as_written(), "python");
        assert_eq!(r.pinned("sha256:abc"), "python@sha256:abc");
    }

    #[test]
    fn implicit_latest_and_namespaced_hub_images() {
        let r = ImageRef::parse("centos/python-35-centos7").unwrap();
        assert_eq!(r.repository(), "centos/python-35-centos7");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(
            r.pinned("sha256:1"),
            "centos/python-35-centos7@sha256:1",
            "pull specs keep the user's spelling, as OpenShift records them"
        );
    }

    #[test]
    fn index_docker_io_is_docker_hub() {
        let r = ImageRef::parse("index.docker.io/library/busybox:1").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/busybox");
    }

    #[test]
    fn ports_tags_and_digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("my.repo.com:5000/team/app:v1@{d}")).unwrap();
        assert_eq!(r.registry(), "my.repo.com:5000");
        assert_eq!(r.host(), "my.repo.com");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(r.repository_as_written(), "my.repo.com:5000/team/app");
        assert!(r.is_digest_pinned());
        let r = ImageRef::parse("localhost:5000/app").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository_as_written(), "localhost:5000/app");
    }

    #[test]
    fn invalid_references_say_why() {
        for bad in [
            "",
            "Upper/Case",
            "a b",
            "https://quay.io/x",
            "repo@sha256:short",
            "repo:tag:tag",
        ] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid image reference"),
                "{err}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn parser_never_panics(s in "\\PC{0,80}") {
            let _ = ImageRef::parse(&s).map(|r| (r.pinned("sha256:x"), r.host().to_string()));
        }

        #[test]
        fn round_trip_of_valid_references(
            host in "(quay\\.io|localhost:5000|r\\.example\\.com)",
            repo in "[a-z][a-z0-9]{0,8}(/[a-z][a-z0-9]{0,8}){0,2}",
            tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}",
        ) {
            let s = format!("{host}/{repo}:{tag}");
            let r = ImageRef::parse(&s).unwrap();
            proptest::prop_assert_eq!(r.repository_as_written(), format!("{host}/{repo}"));
            proptest::prop_assert_eq!(r.tag(), Some(tag.as_str()));
            proptest::prop_assert_eq!(r.repository(), repo.as_str());
        }
    }
}
