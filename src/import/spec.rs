//! How a spec tag is read: where its image comes from, whether it changed since the last import
//! attempt, and whether the user asked for a re-import.

use sha2::{Digest, Sha256};

use crate::api::{ImageStream, NamedTagEventList, SourceKind, TagReference};
use crate::registry::credentials::hex;

/// Where a spec tag's image comes from, with names already split and namespaces defaulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An upstream pull spec, imported from its registry (or recorded verbatim if `reference`).
    Docker(String),
    /// A tracking tag of the same stream: follows `tag` whenever it moves.
    Alias(String),
    /// A tag of another stream: copied once.
    StreamTag {
        namespace: String,
        stream: String,
        tag: String,
    },
    /// An image found by digest (or unique prefix) in a stream's history: copied once.
    StreamImage {
        namespace: String,
        stream: String,
        id: String,
    },
    /// A `from` that cannot be used; the message says why.
    Invalid(String),
}

pub fn source_of(stream: &ImageStream, tag: &TagReference) -> Option<Source> {
    let from = tag.from.as_ref()?;
    let own_ns = stream.metadata.namespace.clone().unwrap_or_default();
    let own_name = stream.metadata.name.clone().unwrap_or_default();
    let namespace = from
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| own_ns.clone());
    Some(match from.kind {
        SourceKind::DockerImage => Source::Docker(from.name.clone()),
        SourceKind::ImageStreamTag => {
            let (stream_name, source_tag) = match from.name.split(':').collect::<Vec<_>>()[..] {
                [t] => (own_name.clone(), t.to_string()),
                [s, t] if !s.is_empty() && !t.is_empty() => (s.to_string(), t.to_string()),
                _ => {
                    return Some(Source::Invalid(format!(
                        "from.name {:?} must be <tag> or <stream>:<tag>",
                        from.name
                    )))
                }
            };
            if namespace == own_ns && stream_name == own_name {
                Source::Alias(source_tag)
            } else {
                Source::StreamTag {
                    namespace,
                    stream: stream_name,
                    tag: source_tag,
                }
            }
        }
        SourceKind::ImageStreamImage => match from.name.split_once('@') {
            Some((s, id)) if !s.is_empty() && !id.is_empty() => Source::StreamImage {
                namespace,
                stream: s.to_string(),
                id: id.to_string(),
            },
            None if !from.name.is_empty() => Source::StreamImage {
                namespace,
                stream: own_name,
                id: from.name.clone(),
            },
            _ => Source::Invalid(format!(
                "from.name {:?} must be <id> or <stream>@<id>",
                from.name
            )),
        },
    })
}

/// Fingerprint of the fields whose change makes OpenShift bump a tag's generation
/// (`tagRefChanged`): from name, effective namespace, kind, `reference` and import mode; and,
/// beyond OpenShift, whether the import may use plain HTTP (`importPolicy.insecure` or the
/// stream's insecure-repository annotation), and the tag's policy keys. That is the remedy the "HTTP only" failure names, and
/// the failure is not retried by itself, so setting it must count as a change. It is hashed only
/// when set, so the fingerprint of every secure tag stays what it was before it was added.
pub fn fingerprint(stream: &ImageStream, tag: &TagReference) -> String {
    let mut h = Sha256::new();
    if let Some(from) = &tag.from {
        let ns = from
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .or(stream.metadata.namespace.as_deref())
            .unwrap_or("");
        h.update(format!("{:?}\0{}\0{}\0", from.kind, from.name, ns));
    }
    h.update(format!("{}\0{:?}", tag.is_reference(), tag.import_mode()));
    if tag.insecure() || stream.insecure_repository() {
        h.update("\0insecure");
    }
    // Annotations do not bump a tag's generation in OpenShift; a policy key's edit must still
    // re-evaluate at once. Hashed only when present, like `insecure`.
    for (key, value) in crate::policy::keys::keys_of(tag.annotations.as_ref()) {
        h.update(format!("\0{key}={value}"));
    }
    hex(&h.finalize()[..8])
}

/// The generation a re-import request asks for, if any. OpenShift clients write `generation: 0`;
/// our CLI writes the generation the stream will have after its write. Values above the stream's
/// generation (stale numbers copied from another cluster) are clamped so they cannot loop.
pub fn requested_generation(tag: &TagReference, stream_generation: i64) -> Option<i64> {
    match tag.generation? {
        0 => Some(stream_generation),
        g => Some(g.min(stream_generation)),
    }
}

/// Whether the spec tag asks for an import that status has not yet answered.
pub fn import_pending(
    stream: &ImageStream,
    tag: &TagReference,
    status: Option<&NamedTagEventList>,
) -> bool {
    let generation = stream.metadata.generation.unwrap_or(1);
    let observed = status.map_or(0, NamedTagEventList::observed_generation);
    let changed =
        status.and_then(|s| s.observed_spec.as_deref()) != Some(&fingerprint(stream, tag));
    let requested = requested_generation(tag, generation).is_some_and(|g| g > observed);
    changed || requested
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TagSource;

    fn tag(kind: SourceKind, name: &str, ns: Option<&str>) -> TagReference {
        TagReference {
            name: "t".into(),
            from: Some(TagSource {
                kind,
                name: name.into(),
                namespace: ns.map(Into::into),
                api_version: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sources_are_split_and_defaulted() {
        let s = ImageStream::test("python")
            .in_namespace("ns")
            .at_generation(4);
        let src = |k, n, ns| source_of(&s, &tag(k, n, ns)).unwrap();
        assert_eq!(
            src(SourceKind::ImageStreamTag, "3.5", None),
            Source::Alias("3.5".into())
        );
        assert_eq!(
            src(SourceKind::ImageStreamTag, "python:3.5", Some("ns")),
            Source::Alias("3.5".into())
        );
        assert_eq!(
            src(SourceKind::ImageStreamTag, "python:3.5", Some("other")),
            Source::StreamTag {
                namespace: "other".into(),
                stream: "python".into(),
                tag: "3.5".into()
            }
        );
        assert_eq!(
            src(SourceKind::ImageStreamImage, "ruby@sha256:ab", None),
            Source::StreamImage {
                namespace: "ns".into(),
                stream: "ruby".into(),
                id: "sha256:ab".into()
            }
        );
        assert!(matches!(
            src(SourceKind::ImageStreamTag, "a:b:c", None),
            Source::Invalid(_)
        ));
        assert_eq!(
            src(SourceKind::DockerImage, "quay.io/x:1", None),
            Source::Docker("quay.io/x:1".into())
        );
    }

    #[test]
    fn fingerprint_follows_tag_ref_changed() {
        let s = ImageStream::test("python")
            .in_namespace("ns")
            .at_generation(4);
        let base = tag(SourceKind::DockerImage, "quay.io/x:1", None);
        let f = fingerprint(&s, &base);
        let mut t = base.clone();
        t.import_policy = Some(crate::api::TagImportPolicy {
            scheduled: Some(true),
            insecure: Some(false),
            import_mode: None,
        });
        t.annotations = Some([("a".to_string(), "b".to_string())].into());
        t.reference_policy = Some(crate::api::TagReferencePolicy {
            type_: crate::api::ReferencePolicyType::Local,
        });
        assert_eq!(
            fingerprint(&s, &t),
            f,
            "scheduled, insecure: false, referencePolicy, annotations do not count"
        );
        // The remedy an "HTTP only" failure names re-imports at once, on the tag or the stream.
        let insecure = fingerprint(&s, &base.clone().insecure_import());
        assert_ne!(insecure, f);
        let annotated = s.clone().annotated(crate::api::INSECURE_REPOSITORY, "true");
        assert_eq!(fingerprint(&annotated, &base), insecure);
        assert_eq!(
            fingerprint(&s, &tag(SourceKind::DockerImage, "quay.io/x:1", Some("ns"))),
            f,
            "empty ns = own ns"
        );
        for changed in [
            tag(SourceKind::DockerImage, "quay.io/x:2", None),
            tag(SourceKind::DockerImage, "quay.io/x:1", Some("other")),
            TagReference {
                reference: Some(true),
                ..base.clone()
            },
            TagReference {
                import_policy: Some(crate::api::TagImportPolicy {
                    import_mode: Some(crate::api::ImportMode::PreserveOriginal),
                    ..Default::default()
                }),
                ..base.clone()
            },
        ] {
            assert_ne!(fingerprint(&s, &changed), f, "{changed:?}");
        }
    }

    #[test]
    fn re_import_requests() {
        let t = |g| TagReference {
            generation: g,
            ..Default::default()
        };
        assert_eq!(requested_generation(&t(None), 4), None);
        assert_eq!(requested_generation(&t(Some(0)), 4), Some(4));
        assert_eq!(requested_generation(&t(Some(3)), 4), Some(3));
        assert_eq!(
            requested_generation(&t(Some(9)), 4),
            Some(4),
            "stale values are clamped"
        );
    }
}
