//! Registry push notifications, parsed into "this repository:tag was pushed" facts. The payload
//! is only a hint: the import that follows asks the registry itself (HEAD), so a forged or stale
//! payload costs at most one extra check.
//!
//! Shapes (the unit tests carry a sample of each):
//! - `distribution`: the CNCF distribution notification envelope
//!   (`application/vnd.docker.distribution.events.v1+json`), as sent by docker-registry, GitLab's
//!   container registry and Harbor's distribution layer (distribution `notifications/event.go`).
//! - `harbor`: Harbor webhook `PUSH_ARTIFACT` (Harbor docs, "Webhook Notifications", JSON payload).
//! - `quay`: Quay repository push notification (Quay docs, "Repository Push" webhook).
//! - `dockerhub`: Docker Hub repository webhook (Docker docs, "Docker Hub webhooks" example).
//! - `ghcr`: GitHub `package` webhook, action `published`, container package (GitHub docs,
//!   "Webhook events and payloads", package).

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Distribution,
    Harbor,
    Quay,
    DockerHub,
    Ghcr,
}

impl Source {
    pub fn parse(s: &str) -> Option<Source> {
        Some(match s {
            "distribution" => Source::Distribution,
            "harbor" => Source::Harbor,
            "quay" => Source::Quay,
            "dockerhub" => Source::DockerHub,
            "ghcr" => Source::Ghcr,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Source::Distribution => "distribution",
            Source::Harbor => "harbor",
            Source::Quay => "quay",
            Source::DockerHub => "dockerhub",
            Source::Ghcr => "ghcr",
        }
    }
    /// Content types accepted for this source.
    pub fn accepts(self, content_type: &str) -> bool {
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match self {
            Source::Distribution => {
                ct == "application/vnd.docker.distribution.events.v1+json"
                    || ct == "application/json"
            }
            _ => ct == "application/json",
        }
    }
}

/// One pushed tag: `registry` is the host the payload names (None: the source's own registry
/// is implied and filled in by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub registry: Option<String>,
    pub repository: String,
    pub tag: String,
    /// The pushed manifest's digest, when the payload names it: two pushes of the same digest
    /// are one event, two different digests are two.
    pub digest: Option<String>,
}

pub fn parse(source: Source, body: &[u8]) -> Result<Vec<Push>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let pushes = match source {
        Source::Distribution => distribution(&v),
        Source::Harbor => harbor(&v),
        Source::Quay => quay(&v),
        Source::DockerHub => dockerhub(&v),
        Source::Ghcr => ghcr(&v),
    }?;
    Ok(pushes
        .into_iter()
        .filter(|p| !p.repository.is_empty() && !p.tag.is_empty())
        .collect())
}

fn s<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn distribution(v: &Value) -> Result<Vec<Push>, String> {
    let events = v
        .get("events")
        .and_then(Value::as_array)
        .ok_or("no events list")?;
    Ok(events
        .iter()
        .filter(|e| s(e, "/action") == Some("push"))
        .filter_map(|e| {
            let tag = s(e, "/target/tag")?;
            let repository = s(e, "/target/repository")?;
            // target.url is http(s)://HOST/v2/…; request.host is what the client used.
            let registry = s(e, "/target/url")
                .and_then(|u| u.split("://").nth(1))
                .and_then(|rest| rest.split('/').next())
                .or_else(|| s(e, "/request/host"))
                .map(str::to_string);
            Some(Push {
                registry,
                repository: repository.to_string(),
                tag: tag.to_string(),
                digest: s(e, "/target/digest").map(str::to_string),
            })
        })
        .collect())
}

fn harbor(v: &Value) -> Result<Vec<Push>, String> {
    if s(v, "/type") != Some("PUSH_ARTIFACT") {
        return Ok(Vec::new());
    }
    let resources = v
        .pointer("/event_data/resources")
        .and_then(Value::as_array)
        .ok_or("no event_data.resources")?;
    Ok(resources
        .iter()
        .filter_map(|r| {
            // resource_url: harbor.example.com/library/nginx:latest
            let url = s(r, "/resource_url")?;
            let (registry, rest) = url.split_once('/')?;
            let tag = s(r, "/tag")?;
            let repository = rest.rsplit_once(':').map_or(rest, |(repo, _)| repo);
            let repository = repository.split('@').next().unwrap_or(repository);
            Some(Push {
                registry: Some(registry.to_string()),
                repository: repository.to_string(),
                tag: tag.to_string(),
                digest: s(r, "/digest").map(str::to_string),
            })
        })
        .collect())
}

fn quay(v: &Value) -> Result<Vec<Push>, String> {
    let docker_url = s(v, "/docker_url").ok_or("no docker_url")?;
    let (registry, repository) = docker_url
        .split_once('/')
        .ok_or("docker_url has no repository")?;
    let tags = v
        .get("updated_tags")
        .and_then(Value::as_array)
        .ok_or("no updated_tags")?;
    Ok(tags
        .iter()
        .filter_map(Value::as_str)
        .map(|t| Push {
            registry: Some(registry.to_string()),
            repository: repository.to_string(),
            tag: t.to_string(),
            digest: None,
        })
        .collect())
}

fn dockerhub(v: &Value) -> Result<Vec<Push>, String> {
    let repository = s(v, "/repository/repo_name").ok_or("no repository.repo_name")?;
    let tag = s(v, "/push_data/tag").ok_or("no push_data.tag")?;
    Ok(vec![Push {
        registry: Some("docker.io".into()),
        repository: repository.to_string(),
        tag: tag.to_string(),
        digest: None,
    }])
}

fn ghcr(v: &Value) -> Result<Vec<Push>, String> {
    if !matches!(s(v, "/action"), Some("published" | "updated")) {
        return Ok(Vec::new());
    }
    if s(v, "/package/package_type")
        .map(str::to_ascii_lowercase)
        .as_deref()
        != Some("container")
    {
        return Ok(Vec::new());
    }
    let owner = s(v, "/package/owner/login").ok_or("no package.owner.login")?;
    let name = s(v, "/package/name").ok_or("no package.name")?;
    let tag =
        s(v, "/package/package_version/container_metadata/tag/name").ok_or("no container tag")?;
    Ok(vec![Push {
        registry: Some("ghcr.io".into()),
        repository: format!("{}/{name}", owner.to_ascii_lowercase()),
        tag: tag.to_string(),
        digest: s(v, "/package/package_version/container_metadata/tag/digest").map(str::to_string),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// distribution `notifications/event.go` envelope, as docker-registry 2.8 sends it.
    const DISTRIBUTION: &str = r#"{"events":[{"id":"320678d8-ca14-430f-8bb6-4ca139cd83f7","timestamp":"2016-03-09T14:44:26.402973972-08:00","action":"push","target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":708,"digest":"sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf","length":708,"repository":"hello-world","url":"http://192.168.100.227:5000/v2/hello-world/manifests/sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf","tag":"latest"},"request":{"id":"6df24a34-0959-4923-81ca-14f09767db19","addr":"192.168.64.11:42961","host":"192.168.100.227:5000","method":"PUT","useragent":"curl/7.38.0"},"actor":{},"source":{"addr":"xtal.local:5000","instanceID":"a53db899-3b4b-4a62-a067-8dd013beaca4"}},{"action":"pull","target":{"repository":"hello-world","tag":"latest"}}]}"#;
    /// Harbor "Webhook Notifications" PUSH_ARTIFACT example.
    const HARBOR: &str = r#"{"type":"PUSH_ARTIFACT","occur_at":1586922308,"operator":"admin","event_data":{"resources":[{"digest":"sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8","tag":"latest","resource_url":"hub.harbor.com/test-webhook/debian:latest"}],"repository":{"date_created":1586922308,"name":"debian","namespace":"test-webhook","repo_full_name":"test-webhook/debian","repo_type":"private"}}}"#;
    /// Quay "Repository Push" notification example.
    const QUAY: &str = r#"{"name":"repository","repository":"mynamespace/repository","namespace":"mynamespace","docker_url":"quay.io/mynamespace/repository","homepage":"https://quay.io/repository/mynamespace/repository","updated_tags":["latest","v1"]}"#;
    /// Docker Hub webhook example.
    const DOCKERHUB: &str = r#"{"callback_url":"https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/","push_data":{"pushed_at":1417566161,"pusher":"trustedbuilder","tag":"latest"},"repository":{"comment_count":0,"date_created":1417494799,"description":"","is_official":false,"is_private":true,"is_trusted":true,"name":"testhook","namespace":"svendowideit","owner":"svendowideit","repo_name":"svendowideit/testhook","repo_url":"https://registry.hub.docker.com/u/svendowideit/testhook/","star_count":0,"status":"Active"}}"#;
    /// GitHub `package` webhook, action published, container package (abridged).
    const GHCR: &str = r#"{"action":"published","package":{"id":1,"name":"app","namespace":"Octo-Org","package_type":"CONTAINER","owner":{"login":"Octo-Org"},"package_version":{"id":2,"version":"sha256:3c5f","container_metadata":{"tag":{"name":"v1.2.0","digest":"sha256:3c5f"}},"package_url":"ghcr.io/octo-org/app:v1.2.0"}},"repository":{"full_name":"Octo-Org/app"},"sender":{"login":"octocat"}}"#;

    fn push(registry: &str, repository: &str, tag: &str) -> Push {
        Push {
            registry: Some(registry.into()),
            repository: repository.into(),
            tag: tag.into(),
            digest: None,
        }
    }

    fn digest(p: Vec<Push>) -> Vec<Push> {
        p.into_iter().map(|p| Push { digest: None, ..p }).collect()
    }

    #[test]
    fn every_source_sample_parses() {
        assert_eq!(
            digest(parse(Source::Distribution, DISTRIBUTION.as_bytes()).unwrap()),
            vec![push("192.168.100.227:5000", "hello-world", "latest")]
        );
        assert_eq!(
            digest(parse(Source::Harbor, HARBOR.as_bytes()).unwrap()),
            vec![push("hub.harbor.com", "test-webhook/debian", "latest")]
        );
        assert_eq!(
            parse(Source::Quay, QUAY.as_bytes()).unwrap(),
            vec![
                push("quay.io", "mynamespace/repository", "latest"),
                push("quay.io", "mynamespace/repository", "v1")
            ]
        );
        assert_eq!(
            parse(Source::DockerHub, DOCKERHUB.as_bytes()).unwrap(),
            vec![push("docker.io", "svendowideit/testhook", "latest")]
        );
        assert_eq!(
            digest(parse(Source::Ghcr, GHCR.as_bytes()).unwrap()),
            vec![push("ghcr.io", "octo-org/app", "v1.2.0")]
        );
    }

    #[test]
    fn pulls_deletes_and_digest_pushes_are_not_pushes() {
        let digest_only =
            r#"{"events":[{"action":"push","target":{"repository":"a","digest":"sha256:1"}}]}"#;
        assert_eq!(
            parse(Source::Distribution, digest_only.as_bytes()).unwrap(),
            vec![]
        );
        let delete = r#"{"type":"DELETE_ARTIFACT","event_data":{"resources":[]}}"#;
        assert_eq!(parse(Source::Harbor, delete.as_bytes()).unwrap(), vec![]);
        assert!(parse(Source::Quay, b"{}").is_err());
        assert!(parse(Source::DockerHub, b"[1,2]").is_err());
        assert!(parse(Source::Distribution, b"<xml/>").is_err());
    }

    #[test]
    fn content_types_per_source() {
        assert!(Source::Distribution.accepts("application/vnd.docker.distribution.events.v1+json"));
        assert!(Source::Harbor.accepts("application/json; charset=utf-8"));
        assert!(!Source::Quay.accepts("text/plain"));
        assert!(!Source::Distribution.accepts("application/x-www-form-urlencoded"));
    }

    const SOURCES: [Source; 5] = [
        Source::Distribution,
        Source::Harbor,
        Source::Quay,
        Source::DockerHub,
        Source::Ghcr,
    ];

    // Every source's parser over raw bytes and over JSON shaped like each source's payload
    // with hostile values; 2 × 3,000 cases, each run through all five parsers.
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        #[test]
        fn garbage_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            for s in SOURCES {
                let _ = parse(s, &body);
            }
        }

        #[test]
        fn shaped_payloads_never_panic(v in "[a-zA-Z0-9:/@._ -]{0,60}", n in proptest::num::i64::ANY, nest in "[\\[\\]{}\",:0-9a-z]{0,40}") {
            let bodies = [
                format!(r#"{{"events":[{{"action":"push","target":{{"repository":"{v}","tag":{nest},"digest":"{v}"}},"request":{{"host":"{v}"}}}}]}}"#),
                format!(r#"{{"type":"PUSH_ARTIFACT","event_data":{{"resources":[{{"tag":"{v}","resource_url":"{v}","digest":{n}}}],"repository":{{"repo_full_name":{nest}}}}}}}"#),
                format!(r#"{{"repository":"{v}","docker_url":"{v}","updated_tags":[{nest}],"homepage":{n}}}"#),
                format!(r#"{{"push_data":{{"tag":"{v}"}},"repository":{{"repo_name":"{v}","namespace":{nest}}}}}"#),
                format!(r#"{{"action":"published","package":{{"package_type":"container","name":"{v}","namespace":{nest},"package_version":{{"container_metadata":{{"tag":{{"name":"{v}","digest":{n}}}}}}}}}}}"#),
            ];
            for body in &bodies {
                for s in SOURCES {
                    let _ = parse(s, body.as_bytes());
                }
            }
        }
    }
}
