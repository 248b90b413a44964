//! The ServiceAccounts a token-mode credential provider speaks as (`tokenAttributes`): reading
//! one, and requesting a short-lived token of it. A trait, so the plugin runner is tested
//! without an API server; [`KubeServiceAccounts`] is the real one.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

/// A ServiceAccount as token mode needs it.
#[derive(Debug, Clone, Default)]
pub struct Account {
    pub uid: String,
    pub annotations: BTreeMap<String, String>,
}

/// The API calls token mode makes; [`KubeServiceAccounts`] is the real one.
pub trait ServiceAccounts: Send + Sync {
    fn account<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Account>, String>>;

    /// A token for `audience`, and how long it is valid.
    fn token<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        audience: &'a str,
        seconds: i64,
    ) -> BoxFuture<'a, Result<(String, Duration), String>>;
}

/// Token mode against the API server: read the ServiceAccount, request a token.
pub struct KubeServiceAccounts {
    client: kube::Client,
}

impl KubeServiceAccounts {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

impl ServiceAccounts for KubeServiceAccounts {
    fn account<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Account>, String>> {
        use k8s_openapi::api::core::v1::ServiceAccount;
        async move {
            let api: kube::Api<ServiceAccount> =
                kube::Api::namespaced(self.client.clone(), namespace);
            let found = api
                .get_opt(name)
                .await
                .map_err(|e| format!("cannot read the ServiceAccount {namespace}/{name}: {e}"))?;
            Ok(found.map(|sa| Account {
                uid: sa.metadata.uid.unwrap_or_default(),
                annotations: sa.metadata.annotations.unwrap_or_default(),
            }))
        }
        .boxed()
    }

    fn token<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        audience: &'a str,
        seconds: i64,
    ) -> BoxFuture<'a, Result<(String, Duration), String>> {
        use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
        use k8s_openapi::api::core::v1::ServiceAccount;
        async move {
            let api: kube::Api<ServiceAccount> = kube::Api::namespaced(self.client.clone(), namespace);
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![audience.to_string()],
                    expiration_seconds: Some(seconds),
                    bound_object_ref: None,
                },
                ..Default::default()
            };
            let answered = api
                .create_token_request(name, &Default::default(), &request)
                .await
                .map_err(|e| match &e {
                    kube::Error::Api(s) if s.code == 403 => format!(
                        "the operator may not request tokens for the ServiceAccount {namespace}/{name}: \
                         grant it create on serviceaccounts/token (the chart does with \
                         credentialProviders.serviceAccountTokens: true)"
                    ),
                    _ => format!("cannot request a token for the ServiceAccount {namespace}/{name}: {e}"),
                })?;
            let status = answered.status.ok_or("the token request was answered without a token")?;
            let valid = jiff::Timestamp::now()
                .duration_until(status.expiration_timestamp.0)
                .try_into()
                .unwrap_or(Duration::from_secs(seconds.unsigned_abs()));
            Ok((status.token, valid))
        }
        .boxed()
    }
}
