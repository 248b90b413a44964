//! Whether a workload's ServiceAccount may read a stream in another namespace (a
//! SubjectAccessReview), with the answers cached no longer than the API server's own webhook
//! authorizer caches them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use kube::Client;
use parking_lot::Mutex;

/// How long a SubjectAccessReview answer is trusted: no longer than the API server's own webhook
/// authorizer caches answers (5 min allowed, 30 s denied). Denied workloads are evaluated again
/// when their denial expires, so a RoleBinding granted after a `TriggerForbidden` takes effect
/// within 30 s with nothing else touched (25 s plus one evaluation).
const ALLOWED_TTL: Duration = Duration::from_secs(300);
pub const DENIED_TTL: Duration = Duration::from_secs(25);

/// (workload namespace, service account, source namespace, stream).
type AccessKey = (String, String, String, String);

#[derive(Default)]
pub struct AccessReviews {
    answers: Mutex<HashMap<AccessKey, (bool, Instant)>>,
}

impl AccessReviews {
    /// Whether ServiceAccount `sa` of `workload_namespace` may get stream `namespace/stream`.
    pub async fn may_read(
        &self,
        client: &Client,
        workload_namespace: &str,
        sa: &str,
        namespace: &str,
        stream: &str,
    ) -> Result<bool, kube::Error> {
        let id = (
            workload_namespace.to_string(),
            sa.to_string(),
            namespace.to_string(),
            stream.to_string(),
        );
        if let Some((allowed, at)) = self.answers.lock().get(&id) {
            let ttl = match allowed {
                true => ALLOWED_TTL,
                false => DENIED_TTL,
            };
            if at.elapsed() < ttl {
                return Ok(*allowed);
            }
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(format!("system:serviceaccount:{workload_namespace}:{sa}")),
                groups: Some(vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{workload_namespace}"),
                ]),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(namespace.into()),
                    verb: Some("get".into()),
                    group: Some("image.openshift.io".into()),
                    resource: Some("imagestreams".into()),
                    name: Some(stream.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(client.clone());
        let answer = api.create(&PostParams::default(), &review).await?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        self.answers.lock().insert(id, (allowed, Instant::now()));
        Ok(allowed)
    }
}
