//! How a client changes a stream's spec or metadata (the CLI, the notification receiver): read,
//! change, replace with the read resourceVersion as precondition, and on a conflict start over
//! from a fresh read, so a concurrent writer's change is never overwritten.

use kube::api::{Api, PostParams};

use super::ImageStream;

#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    #[error("image stream {0} not found")]
    NotFound(String),
    #[error("image stream {0} kept changing while we wrote it; try again")]
    KeptChanging(String),
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// The change itself refused (the caller's own error).
    #[error("{0}")]
    Change(E),
}

/// Read-modify-write of stream `name`, at most `attempts` times. `change` may be called once per
/// attempt, each time on a fresh copy.
pub async fn update<T, E>(
    api: &Api<ImageStream>,
    name: &str,
    params: &PostParams,
    attempts: usize,
    mut change: impl FnMut(&mut ImageStream) -> Result<T, E>,
) -> Result<(ImageStream, T), UpdateError<E>> {
    for _ in 0..attempts {
        let mut stream = api
            .get_opt(name)
            .await?
            .ok_or_else(|| UpdateError::NotFound(name.to_string()))?;
        let result = change(&mut stream).map_err(UpdateError::Change)?;
        match api.replace(name, params, &stream).await {
            Ok(written) => return Ok((written, result)),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(UpdateError::KeptChanging(name.to_string()))
}
