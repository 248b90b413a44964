//! Image references. Parsing and normalisation are oci-spec's (the same rules container runtimes
//! apply: implicit `docker.io` and `library/`, `index.docker.io` folded, default tag `latest`);
//! on top we keep the string the user wrote, because OpenShift records pull specs in the user's
//! form (`centos/python-35-centos7@sha256:…`, not `docker.io/centos/…`).

use std::fmt;

use oci_client::Reference;

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
        let normalized = Reference::try_from(input).map_err(|e| invalid(e.to_string()))?;
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
