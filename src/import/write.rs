//! The two writes of a reconcile: the status (a subresource, by server-side apply) and the
//! repository-check annotation, in the order that costs the API server least, with the version
//! between them remembered (see [`Memory::with_pending_write`]); and what a status that cannot
//! be stored is told apart by.

use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::budget::Fit;
use super::memory::{Follows, Memory};
use crate::api::{field_manager, ImageStream, ImageStreamStatus, DOCKER_REPOSITORY_CHECK};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("could not serialize status: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("object has no {0}")]
    MissingField(&'static str),
}

/// What became of a computed status.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    /// Written (or nothing to write), and the annotation set if asked.
    Written,
    /// The API server refused it for its size; why, in its words.
    Refused(String),
}

/// One reconcile's writes: the status if `changed`, the repository-check annotation if `mark`.
pub struct Writes<'a> {
    pub api: &'a Api<ImageStream>,
    pub memory: &'a Memory,
    pub stream: &'a ImageStream,
    pub status: &'a ImageStreamStatus,
    pub changed: bool,
    pub mark: bool,
}

impl Writes<'_> {
    pub async fn run(self) -> Result<Stored, Error> {
        let Writes {
            api,
            memory,
            stream,
            status,
            changed,
            mark,
        } = self;
        let name = stream.name_any();
        // A stream we have never written a status to is small: the annotation patch costs the
        // API server about half of what it costs once the status is there, and if the status
        // write then fails nothing is lost, since every tag still reads as never imported.
        let mark_first = mark && changed && stream.status.is_none();
        if mark_first {
            let rv = mark_repository_checked(api, &name).await?;
            memory.expect_write(stream, rv, Follows::Status(Box::new(status.clone())));
        }
        let written = match changed {
            false => None,
            true => {
                let outcome = store_status(api, memory, stream, status).await;
                if mark_first && !matches!(outcome, Ok(StatusWrite::Stored { .. })) {
                    // The status that was to follow the annotation never came.
                    memory.forget_pending(stream);
                }
                match outcome? {
                    StatusWrite::Stored { version } => Some(version),
                    StatusWrite::Refused { why } => return Ok(Stored::Refused(why)),
                }
            }
        };
        if mark && !mark_first {
            if let Some(rv) = written {
                memory.expect_write(stream, rv, Follows::Annotation);
            }
            mark_repository_checked(api, &name).await?;
        }
        Ok(Stored::Written)
    }
}

/// Why a changed status cannot be stored without trying: over the budget even trimmed, or
/// refused by the API server before unchanged.
pub fn unstorable(
    memory: &Memory,
    stream: &ImageStream,
    status: &ImageStreamStatus,
    fit: &Fit,
) -> Option<String> {
    if let Fit::TooLarge { bytes } = fit {
        let kib = bytes / 1024;
        return Some(format!(
            "{kib} KiB even with every tag's newest image alone"
        ));
    }
    memory
        .was_refused(stream, status)
        .then(|| "the API server refused it before".into())
}

/// What became of one status write that did not fail outright.
enum StatusWrite {
    Stored { version: String },
    Refused { why: String },
}

/// Writes a changed status: stored at a resourceVersion, or refused by the API server for its
/// size (any other failure is an error).
async fn store_status(
    api: &Api<ImageStream>,
    memory: &Memory,
    stream: &ImageStream,
    status: &ImageStreamStatus,
) -> Result<StatusWrite, Error> {
    match write_status(api, &stream.name_any(), status).await {
        Err(Error::Kube(e)) if rejected_for_size(&e) => Ok(StatusWrite::Refused {
            why: format!("the API server refused it: {e}"),
        }),
        written => {
            let version = written?;
            memory.remember_written(stream, status);
            Ok(StatusWrite::Stored { version })
        }
    }
}

/// 413, or etcd's `ResourceExhausted` / "too large" surfacing as a 500 or 422.
fn rejected_for_size(e: &kube::Error) -> bool {
    let kube::Error::Api(status) = e else {
        return false;
    };
    let message = status.message.to_ascii_lowercase();
    status.code == 413
        || (matches!(status.code, 422 | 500)
            && ["too large", "resourceexhausted", "too long", "exceeds"]
                .iter()
                .any(|m| message.contains(m)))
}

/// Server-side apply of the whole status; returns the resourceVersion it produced.
async fn write_status(
    api: &Api<ImageStream>,
    name: &str,
    status: &ImageStreamStatus,
) -> Result<String, Error> {
    let patch = json!({
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "status": status,
    });
    let written = api
        .patch_status(
            name,
            &PatchParams::apply(field_manager::IMPORT).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(written.resource_version().unwrap_or_default())
}

/// Returns the resourceVersion the patch produced.
async fn mark_repository_checked(api: &Api<ImageStream>, name: &str) -> Result<String, Error> {
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let patch = json!({ "metadata": { "annotations": { DOCKER_REPOSITORY_CHECK: now } } });
    let written = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(written.resource_version().unwrap_or_default())
}
