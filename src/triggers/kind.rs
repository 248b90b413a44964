//! The workload kinds triggers apply to and where each keeps its pod spec. Its own file so the
//! annotation grammar and the workload logic both depend on it, and not on each other.

use kube::core::ApiResource;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    ReplicationController,
    CronJob,
    Job,
    Pod,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::ReplicaSet,
        Kind::ReplicationController,
        Kind::CronJob,
        Kind::Job,
        Kind::Pod,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::ReplicationController => "ReplicationController",
            Kind::CronJob => "CronJob",
            Kind::Job => "Job",
            Kind::Pod => "Pod",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        let lower = s.to_ascii_lowercase();
        Kind::ALL.into_iter().find(|k| {
            let n = k.name().to_ascii_lowercase();
            lower == n || lower == format!("{n}s") || (lower == "deploy" && *k == Kind::Deployment)
        })
    }

    pub fn api_resource(self) -> ApiResource {
        use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
        match self {
            Kind::Deployment => ApiResource::erase::<apps::Deployment>(&()),
            Kind::StatefulSet => ApiResource::erase::<apps::StatefulSet>(&()),
            Kind::DaemonSet => ApiResource::erase::<apps::DaemonSet>(&()),
            Kind::ReplicaSet => ApiResource::erase::<apps::ReplicaSet>(&()),
            Kind::ReplicationController => ApiResource::erase::<core::ReplicationController>(&()),
            Kind::CronJob => ApiResource::erase::<batch::CronJob>(&()),
            Kind::Job => ApiResource::erase::<batch::Job>(&()),
            Kind::Pod => ApiResource::erase::<core::Pod>(&()),
        }
    }

    pub(crate) fn pod_spec_keys(self) -> &'static [&'static str] {
        match self {
            Kind::Pod => &["spec"],
            Kind::CronJob => &["spec", "jobTemplate", "spec", "template", "spec"],
            _ => &["spec", "template", "spec"],
        }
    }

    /// The fieldPath prefix up to the pod spec, e.g. `spec.template.spec.`.
    pub fn pod_spec_prefix(self) -> &'static str {
        match self {
            Kind::Pod => "spec.",
            Kind::CronJob => "spec.jobTemplate.spec.template.spec.",
            _ => "spec.template.spec.",
        }
    }

    /// Jobs cannot change their pod template after creation.
    pub fn template_immutable(self) -> bool {
        self == Kind::Job
    }
}
