use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// An image stream: named tags, each pinned to a registry digest, with history.
// Clippy reads the repeated `type_ =` keys of separate printcolumns as one duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "image.openshift.io",
    version = "v1",
    kind = "ImageStream",
    plural = "imagestreams",
    shortname = "is",
    category = "all",
    namespaced,
    status = "ImageStreamStatus",
    derive = "PartialEq",
    doc = "An ImageStream: a set of tags, each resolved to an image digest and kept with its history",
    printcolumn(
        name = "Image Repository",
        type_ = "string",
        json_path = ".status.dockerImageRepository"
    ),
    printcolumn(name = "Tags", type_ = "string", json_path = ".status.tagSummary"),
    printcolumn(
        name = "Updated",
        type_ = "date",
        json_path = ".metadata.annotations.openshift\\.io/image\\.dockerRepositoryCheck"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.dockerImageRepository) || !(self.dockerImageRepository.contains('@') || self.dockerImageRepository.matches(':[^/]*$'))"
).message("spec.dockerImageRepository must be a repository without a tag or digest, e.g. quay.io/org/app; put tags in spec.tags"))]
pub struct ImageStreamSpec {
    /// When true, pods and workloads in this namespace may use this stream's short name as image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_policy: Option<ImageLookupPolicy>,
    /// Deprecated in OpenShift: import every tag of this upstream repository (at most 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 1024))]
    pub docker_image_repository: Option<String>,
    /// The tags this stream tracks, keyed by name; at most 1,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"], "maxItems" = 1000))]
    pub tags: Option<Vec<TagReference>>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageLookupPolicy {
    #[serde(default)]
    pub local: bool,
}

/// One spec tag: where its image comes from and how it is imported and referenced.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.importPolicy) || !has(self.importPolicy.scheduled) || !self.importPolicy.scheduled || !has(self.from) || self.from.kind == 'DockerImage'"
).message("only tags pointing to Docker repositories may be scheduled for background import: remove importPolicy.scheduled or use from.kind DockerImage"))]
#[x_kube(validation = kube::core::Rule::new(
    "self.name.matches('^[A-Za-z0-9_][A-Za-z0-9_.-]*$')"
).message("a tag name is what a registry accepts as a tag: letters, digits, '_', '.' and '-', not starting with '.' or '-' (e.g. latest, 3.12, v1.2.3-alpine)"))]
pub struct TagReference {
    /// The tag's name: what a registry accepts as a tag (at most 128 characters).
    #[schemars(extend("maxLength" = 128))]
    pub name: String,
    /// Free-form annotations (description, tags, supports, sampleRepo, prefer-arch, ...), and a
    /// tag policy's `policy.imagestream-operator.io/*` keys (checked here for the obvious
    /// mistakes; the controller reports the rest as `PolicyInvalid`). At most 64, of at most
    /// 2048 characters each: the bound the API server's CEL cost budget needs for the checks.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 2048}))]
    #[x_kube(validation = kube::core::Rule::new(
        "['semver', 'numerical', 'alphabetical'].filter(k, ('policy.imagestream-operator.io/' + k) in self).size() <= 1"
    ).message("a tag policy has one kind: set only one of policy.imagestream-operator.io/semver, numerical or alphabetical"))]
    #[x_kube(validation = kube::core::Rule::new(
        "['numerical', 'alphabetical'].all(k, !(('policy.imagestream-operator.io/' + k) in self) || self['policy.imagestream-operator.io/' + k] in ['highest', 'lowest'])"
    ).message("policy.imagestream-operator.io/numerical and alphabetical take highest or lowest"))]
    #[x_kube(validation = kube::core::Rule::new(
        "(!('policy.imagestream-operator.io/prerelease' in self) || self['policy.imagestream-operator.io/prerelease'] in ['exclude', 'include']) && (!('policy.imagestream-operator.io/parse' in self) || self['policy.imagestream-operator.io/parse'] in ['loose', 'strict']) && (!('policy.imagestream-operator.io/allow-downgrade' in self) || self['policy.imagestream-operator.io/allow-downgrade'] in ['true', 'false'])"
    ).message("policy.imagestream-operator.io/prerelease takes exclude or include, parse takes loose or strict, allow-downgrade takes true or false"))]
    #[x_kube(validation = kube::core::Rule::new(
        "!('policy.imagestream-operator.io/hold' in self) || self['policy.imagestream-operator.io/hold'].matches('^(true|false|sha256:[a-f0-9]{64})$')"
    ).message("policy.imagestream-operator.io/hold takes true, false or sha256:<64 hex digits> (an image of the tag's history)"))]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<TagSource>,
    /// A reference tag records `from.name` verbatim and is never imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<bool>,
    /// Re-import request: a value above the tag's observed generation (or 0) asks for an import.
    #[serde(default)]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {"importMode": "Legacy"}))]
    pub import_policy: Option<TagImportPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {"type": "Source"}))]
    pub reference_policy: Option<TagReferencePolicy>,
}

/// OpenShift's `from`: a core ObjectReference restricted to the three image source kinds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(DOCKER_REFERENCE_RULE).message(
    "from.name of a DockerImage tag must be an image reference as docker pull takes it: [registry[:port]/]repository[:tag][@sha256:digest], the repository in lower case, no spaces (e.g. quay.io/org/app:1.2 or nginx:1.27)"
))]
pub struct TagSource {
    #[schemars(extend("maxLength" = 32))]
    pub kind: SourceKind,
    /// A pull spec for DockerImage (a name without a registry means Docker Hub, as for
    /// `docker pull` and in OpenShift: `nginx` is docker.io/library/nginx), `stream:tag` for
    /// ImageStreamTag, `stream@digest` for ImageStreamImage.
    #[schemars(extend("maxLength" = 512))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Accepted for ObjectReference compatibility; must be empty, as in OpenShift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = [""]))]
    pub api_version: Option<String>,
}

/// The Docker reference grammar, as tight as the API server's CEL cost budget allows for 1,000
/// tags: an optional registry host with port, lower-case path components, an optional tag and
/// an optional digest. OpenShift refuses what it cannot parse; so does the schema, at apply time.
const DOCKER_REFERENCE_RULE: &str = concat!(
    "self.kind != 'DockerImage' || self.name.matches('^",
    r"([a-zA-Z0-9.-]+(:[0-9]+)?/)?", // registry host[:port]/
    r"[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*", // repository
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?(@[a-z0-9]+:[0-9a-f]{32,})?", // :tag, @digest
    "$')"
);

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    DockerImage,
    ImageStreamTag,
    ImageStreamImage,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TagImportPolicy {
    /// Allow TLS without verification, and plain HTTP when HTTPS fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Re-import periodically (cluster-wide interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Legacy"))]
    pub import_mode: Option<ImportMode>,
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash,
)]
pub enum ImportMode {
    /// A manifest list is narrowed to one platform and the tag points at that image.
    #[default]
    Legacy,
    /// The tag points at the manifest list itself.
    PreserveOriginal,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct TagReferencePolicy {
    #[serde(rename = "type")]
    #[schemars(extend("default" = "Source"))]
    pub type_: ReferencePolicyType,
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum ReferencePolicyType {
    /// Consumers pull from the upstream registry by digest.
    #[default]
    Source,
    /// Consumers pull through `status.dockerImageRepository` (a pull-through registry).
    Local,
}

/// Observed state: per tag, the history of images it pointed to, newest first.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamStatus {
    #[serde(default)]
    pub docker_image_repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_docker_image_repository: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["tag"]))]
    pub tags: Vec<NamedTagEventList>,
    /// Extension: what the registry says about each image a tag currently points at. OpenShift
    /// keeps this in cluster-scoped Image objects that namespace users cannot read; here it sits
    /// next to the tags, one entry per distinct current digest, so `describe istag` works for
    /// anyone who can read the stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["image"]))]
    pub images: Vec<ImageDetails>,
    /// Extension: the outcome of the last `spec.dockerImageRepository` (whole repository) import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryImportStatus>,
    /// Extension: conditions of the stream as a whole (`StatusTrimmed` when the status had to
    /// shrink to fit the object size budget).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<TagEventCondition>,
    /// Extension: the names of the tags that point at an image, comma-separated and shortened
    /// to "… + N more" past 120 characters, for `kubectl get is` (a printer column's JSONPath
    /// shows only the first element of a list, so `.status.tags[*].tag` showed one tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_summary: Option<String>,
}

/// Longest `tagSummary` before the rest is counted instead of listed.
const TAG_SUMMARY_CHARS: usize = 120;

impl ImageStreamStatus {
    /// What `tagSummary` says for these tags: `oc get is`'s TAGS column, every name that fits.
    pub fn summarize_tags(&self) -> Option<String> {
        let names: Vec<&str> = self
            .tags
            .iter()
            .filter(|t| !t.items.is_empty())
            .map(|t| t.tag.as_str())
            .collect();
        let mut summary = String::new();
        for (shown, name) in names.iter().enumerate() {
            let more = names.len().saturating_sub(shown);
            if summary.len().saturating_add(name.len()) > TAG_SUMMARY_CHARS && shown > 0 {
                summary.push_str(&format!(" + {more} more..."));
                break;
            }
            if shown > 0 {
                summary.push(',');
            }
            summary.push_str(name);
        }
        Some(summary).filter(|s| !s.is_empty())
    }
}

/// Image metadata read once per digest from the manifest and config blob.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageDetails {
    /// The manifest digest (`sha256:…`), the same value as a tag event's `image`.
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// As written in the image config (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Layer digests and compressed sizes, base layer first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<ImageLayer>,
    /// Sum of the compressed layer sizes, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// For a manifest list imported with `PreserveOriginal`: every platform entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<ImageManifestEntry>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImageLayer {
    pub digest: String,
    pub size: i64,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifestEntry {
    pub digest: String,
    #[serde(default)]
    pub media_type: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryImportStatus {
    /// The repository this outcome is for (`spec.dockerImageRepository` at the time).
    pub from: String,
    /// `Success` or `Failure`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Tags present in the repository beyond the bulk-import limit, in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_tags: Vec<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamedTagEventList {
    pub tag: String,
    /// History, newest first; items[0] is the current image.
    #[serde(default, deserialize_with = "null_as_default")]
    pub items: Vec<TagEvent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<TagEventCondition>,
    /// Extension: fingerprint of the spec tag's import-relevant fields at the last import
    /// attempt. A different fingerprint is this operator's equivalent of OpenShift bumping the
    /// tag generation when `from`, `reference` or `importMode` change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_spec: Option<String>,
    /// Extension: the manifest list items[0] was chosen from (Legacy import of a multi-platform
    /// tag). The registry answers a HEAD with the list's digest, so this is what lets an
    /// unchanged list be recognised with that one HEAD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_list_digest: Option<String>,
    /// Extension: for a tag with a policy (`policy.imagestream-operator.io/*` annotations), what
    /// the last evaluation chose and why. Bounded: five candidates, one sample per reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<TagPolicyStatus>,
}

/// The outcome of a tag policy's last evaluation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TagPolicyStatus {
    /// The registry tag the stream tag follows, and the image it pointed at when chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected: Option<PolicySelection>,
    /// `Seed`, `Moved`, `Current`, `Held`, `SelectedTagMissing`, `NoTagMatchesPolicy`,
    /// `ListingIncomplete` or `PolicyInvalid`.
    pub reason: String,
    pub message: String,
    /// A hash of the keys that decide which tags qualify, when the selection was made: a
    /// selection made under another rule may give way to a lower tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<PolicyListing>,
    /// Listed tags per verdict: `matched`, and one count per rejection reason that occurred.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, i64>,
    /// The best candidates, best first, with when each was first seen (for `min-age`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<PolicyCandidate>,
    /// A rejected tag per reason, so "why not that one?" has an answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<PolicySample>,
    /// What the policy would pick, and what holds it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PolicyPending>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicySelection {
    pub tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyListing {
    pub tags: i64,
    pub pages: i64,
    pub complete: bool,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCandidate {
    pub tag: String,
    /// RFC 3339.
    pub first_seen: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicySample {
    pub tag: String,
    pub reason: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPending {
    pub tag: String,
    /// `MinAge` or `Held`.
    pub blocked_by: String,
    /// RFC 3339, for `MinAge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible_at: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TagEvent {
    pub created: Time,
    pub docker_image_reference: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub generation: i64,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TagEventCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub generation: i64,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl TagReference {
    pub fn is_reference(&self) -> bool {
        self.reference.unwrap_or(false)
    }
    pub fn import_mode(&self) -> ImportMode {
        self.import_policy
            .as_ref()
            .and_then(|p| p.import_mode)
            .unwrap_or_default()
    }
    pub fn scheduled(&self) -> bool {
        self.import_policy
            .as_ref()
            .and_then(|p| p.scheduled)
            .unwrap_or(false)
    }
    pub fn insecure(&self) -> bool {
        self.import_policy
            .as_ref()
            .and_then(|p| p.insecure)
            .unwrap_or(false)
    }
    pub fn reference_policy(&self) -> ReferencePolicyType {
        self.reference_policy
            .as_ref()
            .map(|p| p.type_)
            .unwrap_or_default()
    }
    /// OpenShift's `tagImportable`: only non-reference DockerImage tags talk to registries.
    pub fn importable(&self) -> bool {
        matches!(&self.from, Some(f) if f.kind == SourceKind::DockerImage) && !self.is_reference()
    }
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

impl ImageStream {
    /// What a re-import request writes into a spec tag's `generation`: the generation this very
    /// write gives the stream (its spec changes, so the API server adds one). The controller then
    /// sees a request above the tag's observed generation (`import::spec::requested_generation`).
    pub fn reimport_generation(&self) -> i64 {
        self.metadata.generation.unwrap_or(0) + 1
    }

    pub fn spec_tags(&self) -> &[TagReference] {
        self.spec.tags.as_deref().unwrap_or_default()
    }
    pub fn spec_tag(&self, name: &str) -> Option<&TagReference> {
        self.spec_tags().iter().find(|t| t.name == name)
    }
    pub fn status_tag(&self, name: &str) -> Option<&NamedTagEventList> {
        self.status.as_ref()?.tags.iter().find(|t| t.tag == name)
    }
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }
    /// What consumers (triggers, image lookup) pull for a tag: items[0] with the tag's reference
    /// policy applied (OpenShift's `ResolveLatestTaggedImage`). None until the tag has an image.
    pub fn pull_spec(&self, tag: &str) -> Option<String> {
        let status = self.status.as_ref()?;
        let current = self.status_tag(tag)?.items.first()?;
        let local = self
            .spec_tag(tag)
            .is_some_and(|t| t.reference_policy() == ReferencePolicyType::Local);
        if local && !status.docker_image_repository.is_empty() && !current.image.is_empty() {
            return Some(format!(
                "{}@{}",
                status.docker_image_repository, current.image
            ));
        }
        Some(current.docker_image_reference.clone()).filter(|r| !r.is_empty())
    }

    pub fn insecure_repository(&self) -> bool {
        self.annotation(crate::api::INSECURE_REPOSITORY) == Some("true")
    }
}

impl NamedTagEventList {
    /// OpenShift's observed generation: the newer of items[0] and the first ImportSuccess condition.
    pub fn observed_generation(&self) -> i64 {
        let item = self.items.first().map(|i| i.generation).unwrap_or(0);
        let cond = self
            .conditions
            .iter()
            .find(|c| c.type_ == crate::api::IMPORT_SUCCESS)
            .map(|c| c.generation)
            .unwrap_or(0);
        item.max(cond)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_summary_lists_imported_tags_until_it_is_long_then_counts() {
        let mut s = ImageStream::test("web")
            .imported("3.6", "r/web@sha256:a")
            .imported("latest", "r/web@sha256:a");
        let status = s.status.clone().unwrap_or_default();
        assert_eq!(status.summarize_tags().as_deref(), Some("3.6,latest"));
        let names: Vec<String> = (0..40).map(|i| format!("v1.{i:02}")).collect();
        for name in &names {
            s = s.imported(name, "r/web@sha256:b");
        }
        let summary = s
            .status
            .unwrap_or_default()
            .summarize_tags()
            .unwrap_or_default();
        assert!(summary.starts_with("3.6,latest,v1.00,"), "{summary}");
        assert!(summary.ends_with(" more..."), "{summary}");
        assert!(summary.len() < 140, "{summary}");
        assert_eq!(ImageStreamStatus::default().summarize_tags(), None);
    }
}
