//! The OCI and Docker wire formats the resolver reads: manifests, manifest lists and indexes,
//! and image config blobs, with the Accept list and size limits that go with them.
//!
//! Why not oci-client's (oci-spec's) types: they are strict where registries are not. oci-spec's
//! `ImageConfiguration` requires `architecture`, `os` and `rootfs`, and its manifest types require
//! `schemaVersion` and the descriptors' `mediaType`; real registries serve Docker schema 2 lists
//! without a top-level `mediaType`, configs without `rootfs`, and descriptors without media
//! types. An import must read those (OpenShift does), and take only what status records.

use std::collections::HashMap;

use serde::Deserialize;

use super::http::HttpError;
use crate::api::{ImageDetails, ImageLayer, ImageManifestEntry};

/// Docker schema 2 manifest and list, OCI manifest and index: the full Accept list, so a
/// registry never downgrades to schema 1 or hides a list behind a single-platform answer.
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// The largest manifest read: real ones are kilobytes; a larger answer is refused unread.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// The largest image config blob read, for the same reason.
pub(super) const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;
/// A manifest as the resolver needs it: an image (its config and layers) or a list.
#[derive(Debug)]
pub(super) enum Parsed {
    Image {
        media_type: String,
        config: Option<String>,
        layers: Vec<ImageLayer>,
    },
    List {
        media_type: String,
        children: Vec<ImageManifestEntry>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    manifests: Option<Vec<RawChild>>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    digest: String,
    #[serde(default)]
    size: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawChild {
    digest: String,
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

#[derive(Deserialize, Default)]
struct RawPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

/// Reads a manifest or list leniently: a missing `mediaType` is taken from `Content-Type`, missing
/// optional fields are empty, and only sha256 digests are kept.
pub(super) fn parse_manifest(body: &[u8], content_type: &str) -> Result<Parsed, HttpError> {
    let raw: RawManifest = serde_json::from_slice(body).map_err(|e| {
        HttpError::Malformed(format!("the registry sent an unreadable manifest: {e}"))
    })?;
    let media_type = raw
        .media_type
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| content_type.to_string());
    let is_list =
        raw.manifests.is_some() || media_type.contains("list") || media_type.contains("index");
    if is_list {
        let children: Vec<ImageManifestEntry> = raw
            .manifests
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.digest.starts_with("sha256:"))
            .map(|c| {
                let p = c.platform.unwrap_or_default();
                ImageManifestEntry {
                    digest: c.digest,
                    media_type: c.media_type,
                    size: c.size,
                    os: p.os,
                    architecture: p.architecture,
                    variant: p.variant,
                }
            })
            .collect();
        if children.is_empty() {
            return Err(HttpError::Malformed("manifest list has no entries".into()));
        }
        return Ok(Parsed::List {
            media_type,
            children,
        });
    }
    let layers = raw
        .layers
        .unwrap_or_default()
        .into_iter()
        .map(|l| ImageLayer {
            digest: l.digest,
            size: l.size,
        })
        .collect();
    Ok(Parsed::Image {
        media_type,
        config: raw
            .config
            .map(|c| c.digest)
            .filter(|d| d.starts_with("sha256:")),
        layers,
    })
}

#[derive(Deserialize, Default)]
struct RawConfigFile {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    config: Option<RawRunConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawRunConfig {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    exposed_ports: Option<HashMap<String, serde_json::Value>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

/// Copies what `describe istag` shows from an image config blob into the image's details.
pub(super) fn apply_config(details: &mut ImageDetails, blob: &[u8]) -> Result<(), HttpError> {
    let raw: RawConfigFile = serde_json::from_slice(blob).map_err(|e| {
        HttpError::Malformed(format!("the registry sent an unreadable image config: {e}"))
    })?;
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    details.architecture = nonempty(raw.architecture);
    details.os = nonempty(raw.os);
    details.variant = nonempty(raw.variant);
    details.created = nonempty(raw.created);
    details.author = nonempty(raw.author);
    let run = raw.config.unwrap_or_default();
    details.user = nonempty(run.user);
    details.working_dir = nonempty(run.working_dir);
    details.entrypoint = run.entrypoint.filter(|v| !v.is_empty());
    details.cmd = run.cmd.filter(|v| !v.is_empty());
    details.env = run.env.filter(|v| !v.is_empty());
    details.labels = run.labels.filter(|v| !v.is_empty());
    details.exposed_ports = run
        .exposed_ports
        .map(|p| {
            let mut ports: Vec<String> = p.into_keys().collect();
            ports.sort();
            ports
        })
        .filter(|v| !v.is_empty());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Manifests, indexes and config blobs are read from the network: any bytes, and JSON
    /// with the right field names holding the wrong things, never panic; 2 × 3,000 cases.
    mod never_panics {
        use super::*;
        use proptest::prelude::*;

        fn field() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("schemaVersion".to_string()),
                Just("mediaType".to_string()),
                Just("manifests".to_string()),
                Just("config".to_string()),
                Just("layers".to_string()),
                Just("platform".to_string()),
                Just("digest".to_string()),
                Just("size".to_string()),
                Just("architecture".to_string()),
                Just("os".to_string()),
                Just("Labels".to_string()),
                Just("Env".to_string()),
                Just("created".to_string()),
            ]
        }

        fn value() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                "[a-z0-9:./+-]{0,20}".prop_map(serde_json::Value::from),
            ];
            leaf.prop_recursive(3, 40, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4)
                        .prop_map(serde_json::Value::from),
                    proptest::collection::btree_map(field(), inner, 0..6)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]
            #[test]
            fn manifests_and_indexes(doc in value(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                for ct in ["", "application/vnd.oci.image.index.v1+json",
                           "application/vnd.docker.distribution.manifest.v2+json"] {
                    let _ = parse_manifest(doc.to_string().as_bytes(), ct);
                    let _ = parse_manifest(&bytes, ct);
                }
            }

            #[test]
            fn config_blobs(doc in value(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let mut details = ImageDetails::default();
                let _ = apply_config(&mut details, doc.to_string().as_bytes());
                let _ = apply_config(&mut details, &bytes);
            }
        }
    }

    #[test]
    fn manifests_parse_tolerantly_and_reject_garbage() {
        let list = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"sha256:aa","mediaType":"m","size":3,"platform":{"os":"linux","architecture":"arm","variant":"v7"}}]}"#;
        match parse_manifest(list, "").unwrap() {
            Parsed::List { children, .. } => assert_eq!(children[0].variant.as_deref(), Some("v7")),
            other => panic!("{other:?}"),
        }
        assert!(parse_manifest(b"<html>", "").is_err());
        assert!(parse_manifest(br#"{"manifests":[]}"#, "").is_err());
        let image = br#"{"schemaVersion":2,"config":{"digest":"sha256:cc","size":1},"layers":[{"digest":"sha256:l1","size":10},{"digest":"sha256:l2","size":5}]}"#;
        match parse_manifest(image, "application/vnd.oci.image.manifest.v1+json").unwrap() {
            Parsed::Image {
                config,
                layers,
                media_type,
            } => {
                assert_eq!(config.as_deref(), Some("sha256:cc"));
                assert_eq!(layers.len(), 2);
                assert_eq!(media_type, "application/vnd.oci.image.manifest.v1+json");
            }
            other => panic!("{other:?}"),
        }
    }
}
