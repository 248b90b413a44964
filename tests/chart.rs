//! The Helm chart and the kustomize config, checked with the real helm and kubectl (`.ci/tools.sh`
//! puts both on PATH): `helm lint --strict`, `helm template` with the default values and with
//! every option set, the values schema as helm enforces it, and — when a cluster is configured
//! (`IMAGESTREAM_E2E=1` and `KUBECONFIG`) — the rendered objects accepted by the API server's own
//! validation (`kubectl apply --dry-run=server`). Without helm the tests skip with a printed
//! reason, and fail under `CI=true`.
//!
//! Every rendered object is also deserialised into its k8s-openapi type and serialised back; any
//! field lost on the way is an unknown field, and the test fails (this part needs no cluster).

mod common;
#[path = "common/helm.rs"]
mod helm;

use std::collections::BTreeSet;

use imagestream_operator::ops::rbac::{
    Permission, CLUSTER_PERMISSIONS, NAMESPACED_PERMISSIONS, PERMISSIONS, TOKEN_MODE_PERMISSIONS,
};
use serde_json::{json, Value};

use helm::CHART;

const RELEASE: &str = "iso";
const NAMESPACE: &str = "imagestream-system";

fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders the chart with `values` on top of its defaults, as `helm template -f` does.
fn render_chart(values: Value) -> Option<Vec<Value>> {
    let helm = helm::tool("helm")?;
    Some(helm::render(&helm, RELEASE, NAMESPACE, &values, false))
}

/// Whether a real cluster is configured for the server-side dry runs.
fn cluster() -> bool {
    std::env::var("IMAGESTREAM_E2E").as_deref() == Ok("1")
        && std::env::var("KUBECONFIG").is_ok_and(|k| !k.is_empty())
}

/// `kubectl apply --dry-run=server` of the chart rendered into a fresh namespace: the API server
/// validates every object against its own schemas (and the CRD's structural schema).
fn accepted_by_the_api_server(values: Value, label: &str) {
    if !cluster() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIP server dry run ({label}): set IMAGESTREAM_E2E=1 and KUBECONFIG"
        );
        return;
    }
    let (Some(helm), Some(kubectl)) = (helm::tool("helm"), helm::tool("kubectl")) else {
        return;
    };
    let ns = format!("chart-{label}-{}", std::process::id());
    helm::run(&kubectl, &["create", "namespace", &ns], None).unwrap();
    let objects: Vec<Value> = helm::render(&helm, RELEASE, &ns, &values, true)
        .into_iter()
        // prometheus-operator's CRD is not on the test server; the typed check above covers it.
        .filter(|o| o["kind"] != "ServiceMonitor")
        .collect();
    let result = helm::run(
        &kubectl,
        &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
        Some(&helm::to_stream(&objects)),
    );
    let _ = helm::run(
        &kubectl,
        &["delete", "namespace", &ns, "--wait=false"],
        None,
    );
    let out = result.unwrap_or_else(|e| panic!("the API server refused the chart ({label}): {e}"));
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("(server dry run)"))
            .count(),
        objects.len(),
        "every object accepted:\n{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Strict validation against k8s-openapi.

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(obj: &Value) {
    let typed: T =
        serde_json::from_value(obj.clone()).unwrap_or_else(|e| panic!("{}: {e}", obj["kind"]));
    let back = serde_json::to_value(&typed).unwrap();
    let diff = assert_json_diff::assert_json_matches_no_panic(
        obj,
        &back,
        assert_json_diff::Config::new(assert_json_diff::CompareMode::Strict),
    );
    if let Err(d) = diff {
        panic!(
            "{} {} has fields its type does not know:\n{d}",
            obj["kind"], obj["metadata"]["name"]
        );
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct ServiceMonitor {
    api_version: String,
    kind: String,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: ServiceMonitorSpec,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct ServiceMonitorSpec {
    selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    endpoints: Vec<ServiceMonitorEndpoint>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ServiceMonitorEndpoint {
    port: String,
    interval: String,
}

fn validate(obj: &Value) {
    use k8s_openapi::api::{apps, core, policy, rbac};
    match obj["kind"].as_str().unwrap_or("") {
        "Deployment" => round_trip::<apps::v1::Deployment>(obj),
        "ServiceAccount" => round_trip::<core::v1::ServiceAccount>(obj),
        "Service" => round_trip::<core::v1::Service>(obj),
        "ConfigMap" => round_trip::<core::v1::ConfigMap>(obj),
        "Namespace" => round_trip::<core::v1::Namespace>(obj),
        "ClusterRole" => round_trip::<rbac::v1::ClusterRole>(obj),
        "ClusterRoleBinding" => round_trip::<rbac::v1::ClusterRoleBinding>(obj),
        "Role" => round_trip::<rbac::v1::Role>(obj),
        "RoleBinding" => round_trip::<rbac::v1::RoleBinding>(obj),
        "PodDisruptionBudget" => round_trip::<policy::v1::PodDisruptionBudget>(obj),
        "NetworkPolicy" => round_trip::<k8s_openapi::api::networking::v1::NetworkPolicy>(obj),
        "CustomResourceDefinition" => round_trip::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(obj),
        "MutatingWebhookConfiguration" => round_trip::<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration>(obj),
        "ServiceMonitor" => {
            serde_json::from_value::<ServiceMonitor>(obj.clone()).unwrap();
        }
        other => panic!("unexpected kind {other:?}"),
    }
}

/// A webhook that is down blocks workloads only in namespaces that asked for it.
fn assert_safe_webhook(objects: &[Value]) {
    let hook = objects
        .iter()
        .find(|o| o["kind"] == "MutatingWebhookConfiguration")
        .expect("webhook configuration");
    let hooks = hook["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 2);
    // Ignore everywhere but in namespaces that ask for Fail; each namespace gets one entry.
    for (w, policy, operator) in [(&hooks[0], "Ignore", "NotIn"), (&hooks[1], "Fail", "In")] {
        assert_eq!(w["failurePolicy"], policy);
        assert_eq!(w["reinvocationPolicy"], "IfNeeded");
        assert!(w["timeoutSeconds"].as_i64().unwrap() <= 10);
        assert_eq!(w["sideEffects"], "None");
        let terms = w["namespaceSelector"]["matchExpressions"]
            .as_array()
            .unwrap();
        assert_eq!(terms[0]["operator"], "NotIn");
        assert_eq!(
            terms[0]["values"],
            json!(["imagestream-system", "kube-system"])
        );
        let opt_in = terms.last().unwrap();
        assert_eq!(
            opt_in["key"],
            "imagestream-operator.io/lookup-failure-policy"
        );
        assert_eq!(opt_in["operator"], operator);
        assert_eq!(opt_in["values"], json!(["Fail"]));
        assert_eq!(w["clientConfig"]["service"]["path"], "/mutate");
        assert_eq!(w["rules"], hooks[0]["rules"]);
    }
}

/// The Pod Security Standard "restricted" profile's checks that apply to this pod.
fn assert_restricted(deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let init = pod["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for c in pod["containers"].as_array().unwrap().iter().chain(&init) {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert!(sc["capabilities"].get("add").is_none());
    }
    assert!(
        pod.get("hostNetwork").is_none()
            && pod.get("hostPID").is_none()
            && pod.get("volumes").is_none_or(|v| v
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v.get("hostPath").is_none()))
    );
}

/// (API group, resource, verb, resourceName or "") as granted, with the release's name written
/// `{release}` as in `ops/rbac.rs`.
type Rules = BTreeSet<(String, String, String, String)>;

/// The operator's own rules: its ClusterRole(s) and Role(s), not the roles aggregated into the
/// cluster's default roles for namespace users.
fn granted(objects: &[Value]) -> (Rules, Rules) {
    let rules = |kind: &str| -> Rules {
        objects
            .iter()
            .filter(|o| o["kind"] == kind && !helm::aggregated(o))
            .flat_map(|o| {
                // config/ is the chart rendered as release imagestream-operator.
                let release = o["metadata"]["labels"]["app.kubernetes.io/instance"]
                    .as_str()
                    .unwrap_or("imagestream-operator")
                    .to_string();
                let rules = o["rules"].as_array().cloned().unwrap_or_default();
                rules.into_iter().flat_map(move |r| expand(&r, &release))
            })
            .collect()
    };
    (rules("ClusterRole"), rules("Role"))
}

fn expand(rule: &Value, release: &str) -> Vec<(String, String, String, String)> {
    let list = |key: &str| rule[key].as_array().cloned().unwrap_or_default();
    let names = match list("resourceNames") {
        n if n.is_empty() => vec![String::new()],
        n => n
            .iter()
            .map(|n| text_of(n).replacen(release, "{release}", 1))
            .collect(),
    };
    let mut out = Vec::new();
    for g in list("apiGroups") {
        for res in list("resources") {
            for v in list("verbs") {
                for n in &names {
                    out.push((text_of(&g), text_of(&res), text_of(&v), n.clone()));
                }
            }
        }
    }
    out
}

/// The ClusterRole of the default, cluster-wide install: `PERMISSIONS` (plus `extra`) on every
/// namespace and the cluster-scoped ones.
fn cluster_wide(extra: &[Permission]) -> Rules {
    let mut all = PERMISSIONS.to_vec();
    all.extend_from_slice(CLUSTER_PERMISSIONS);
    all.extend_from_slice(extra);
    required(&all)
}

fn required(list: &[Permission]) -> Rules {
    list.iter()
        .map(|(g, r, v, n, _)| (g.to_string(), r.to_string(), v.to_string(), n.to_string()))
        .collect()
}

#[test]
fn chart_renders_valid_objects_with_default_values() {
    let Some(objects) = render_chart(json!({})) else {
        return;
    };
    for o in &objects {
        validate(o);
    }
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "MutatingWebhookConfiguration",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ])
    );
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_restricted(deployment);
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(env
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "LEADER_ELECTION" && e["value"] == "true"));
    assert_safe_webhook(&objects);
    accepted_by_the_api_server(json!({}), "defaults");
}

#[test]
fn helm_lint_strict_passes_and_notes_render() {
    let Some(helm) = helm::tool("helm") else {
        return;
    };
    let lint =
        helm::run(&helm, &["lint", "--strict", CHART], None).unwrap_or_else(|e| panic!("{e}"));
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    // NOTES.txt is rendered by install, not template; a client-side dry run needs no cluster.
    let notes = helm::run(
        &helm,
        &[
            "install",
            RELEASE,
            CHART,
            "-n",
            NAMESPACE,
            "--dry-run=client",
            "--kubeconfig",
            "/dev/null",
        ],
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(notes.contains("kubectl get is ruby"), "{notes}");
    assert!(notes.contains("svc/iso-metrics 8080 "), "{notes}");
}

#[test]
fn chart_renders_valid_objects_with_every_option_set() {
    let Some(objects) = render_chart(every_option()) else {
        return;
    };
    for o in &objects {
        validate(o);
    }
    check_every_option(&objects);
    accepted_by_the_api_server(every_option(), "options");
}

/// A value for every option of values.yaml that is not the default.
fn every_option() -> Value {
    json!({
        "replicas": 1,
        "leaderElection": {"enabled": false},
        "podDisruptionBudget": {"enabled": false},
        "imagePullSecrets": ["regcred"],
        "controller": {
            "localRegistry": "registry.local:5000",
            "insecureRegistries": ["registry.local:5000", "10.0.0.0/8"],
            "allowedRegistries": ["*.corp.io"],
            "blockedRegistries": ["evil.io"],
            "registryBudgets": ["docker.io=1:5:2"],
            "registryCABundle": {"configMap": "corp-ca", "key": "bundle.pem"},
            "allowCrossNamespaceSources": true,
            "disableTriggers": true,
            "logFormat": "text",
        },
        "metrics": {"serviceMonitor": {"enabled": true}},
        "notifications": {"secretName": "registry-hooks", "registryAliases": ["10.0.0.5:5000=registry.example.com"], "stretchSchedule": true},
        "admission": {"certificateSecret": "webhook-cert-tls", "caInjectFrom": "imagestream-system/webhook-cert", "objectSelector": {"matchLabels": {"imagestream.io/lookup": "true"}}, "namespaceSelectorExpressions": [{"key": "team", "operator": "Exists"}], "clientCA": {"configMap": "apiserver-client-ca", "key": "ca.pem"}, "networkPolicy": {"controlPlaneCIDRs": ["10.0.0.0/24", "fd00::/64"]}},
        "rbac": {"aggregateToDefaultRoles": false},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
        "credentialProviders": {
            "enabled": true,
            "config": token_mode_config(),
            "pluginImage": {"repository": "registry.corp.io/credential-providers", "tag": "1.31"},
            "pluginDir": "/plugins",
            "timeout": "30s",
        },
    })
}

/// A kubelet CredentialProviderConfig with one provider in service-account-token mode.
fn token_mode_config() -> Value {
    json!({
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [{
            "name": "acr-credential-provider",
            "matchImages": ["*.azurecr.io"],
            "defaultCacheDuration": "10m",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "tokenAttributes": {"serviceAccountTokenAudience": "api://AzureADTokenExchange", "requireServiceAccount": true, "cacheType": "ServiceAccount"},
        }],
    })
}

fn check_every_option(objects: &[Value]) {
    assert!(objects.iter().any(|o| o["kind"] == "ServiceMonitor"));
    assert!(!objects.iter().any(|o| o["kind"] == "PodDisruptionBudget"));
    let hook = objects
        .iter()
        .find(|o| o["kind"] == "MutatingWebhookConfiguration")
        .unwrap();
    assert_eq!(
        hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "imagestream-system/webhook-cert"
    );
    assert_eq!(
        hook["webhooks"][0]["objectSelector"]["matchLabels"]["imagestream.io/lookup"],
        "true"
    );
    assert_eq!(
        hook["webhooks"][0]["namespaceSelector"]["matchExpressions"][1]["key"],
        "team"
    );
    let d = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let env: Vec<(String, String)> = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (text_of(&e["name"]), text_of(&e["value"])))
        .collect();
    for want in [
        ("INSECURE_REGISTRIES", "registry.local:5000,10.0.0.0/8"),
        ("ALLOWED_REGISTRIES", "*.corp.io"),
        ("REGISTRY_BUDGETS", "docker.io=1:5:2"),
        (
            "REGISTRY_CA_BUNDLE",
            "/etc/imagestream-operator/ca/bundle.pem",
        ),
        ("DISABLE_TRIGGERS", "true"),
        ("LEADER_ELECTION", "false"),
    ] {
        assert!(
            env.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {env:?}"
        );
    }
    assert_eq!(
        d["spec"]["template"]["spec"]["volumes"][1]["configMap"]["name"],
        "corp-ca"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["volumes"][2]["secret"]["secretName"],
        "webhook-cert-tls"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["volumes"][3]["configMap"]["name"],
        "apiserver-client-ca"
    );
    assert!(env.contains(&(
        "ADMISSION_CLIENT_CA_FILE".to_string(),
        "/etc/imagestream-operator/client-ca/ca.pem".to_string()
    )));
    assert_eq!(
        d["spec"]["template"]["spec"]["volumes"][4]["secret"]["secretName"],
        "registry-hooks"
    );
    assert!(env.contains(&("NOTIFICATION_ADDR".to_string(), "0.0.0.0:8444".to_string())));
    let policy = objects
        .iter()
        .find(|o| o["kind"] == "NetworkPolicy")
        .unwrap();
    let ingress = policy["spec"]["ingress"].as_array().unwrap();
    assert_eq!(
        ingress[0]["from"],
        json!([{"ipBlock": {"cidr": "10.0.0.0/24"}}, {"ipBlock": {"cidr": "fd00::/64"}}])
    );
    assert_eq!(
        ingress[0]["ports"],
        json!([{"port": "webhook", "protocol": "TCP"}])
    );
    assert!(ingress[1].get("from").is_none());
    assert_eq!(
        ingress[1]["ports"],
        json!([{"port": "metrics", "protocol": "TCP"}, {"port": "notify", "protocol": "TCP"}])
    );
    assert!(env.contains(&(
        "NOTIFICATION_REGISTRY_ALIASES".to_string(),
        "10.0.0.5:5000=registry.example.com".to_string()
    )));
    assert!(env.contains(&(
        "ADMISSION_CERT_FILE".to_string(),
        "/etc/imagestream-operator/webhook/tls.crt".to_string()
    )));
    assert_eq!(
        d["spec"]["template"]["spec"]["tolerations"][0]["key"],
        "infra"
    );
    check_credential_providers(objects, d, &env);
}

/// The config reaches the operator as the kubelet's file, parsed by the operator's own parser;
/// the plugins are copied from the user's image; token mode grants what it needs.
fn check_credential_providers(objects: &[Value], d: &Value, env: &[(String, String)]) {
    let map = objects
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap"
                && text_of(&o["metadata"]["name"]).ends_with("-credential-providers")
        })
        .expect("the config's ConfigMap");
    let file = text_of(&map["data"]["config.yaml"]);
    let parsed = imagestream_operator::registry::credentials::config::parse(&file).unwrap();
    assert_eq!(parsed[0].name, "acr-credential-provider");
    for want in [
        (
            "IMAGE_CREDENTIAL_PROVIDER_CONFIG",
            "/etc/imagestream-operator/credential-providers/config.yaml",
        ),
        (
            "IMAGE_CREDENTIAL_PROVIDER_BIN_DIR",
            "/var/lib/imagestream-operator/credential-providers",
        ),
        ("IMAGE_CREDENTIAL_PROVIDER_TIMEOUT", "30s"),
    ] {
        assert!(
            env.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {env:?}"
        );
    }
    let init = &d["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["image"], "registry.corp.io/credential-providers:1.31");
    assert_eq!(
        init["command"],
        json!([
            "cp",
            "-R",
            "/plugins/.",
            "/var/lib/imagestream-operator/credential-providers/"
        ])
    );
    assert_restricted(d);
    let (cluster, _) = granted(objects);
    assert_eq!(cluster, cluster_wide(TOKEN_MODE_PERMISSIONS));
}

/// Every env var the chart sets is a flag of `imagestream-operator run`.
#[test]
fn chart_env_vars_are_operator_flags() {
    let Some(objects) = render_chart(
        json!({"controller": {"localRegistry": "r", "insecureRegistries": ["a"], "allowedRegistries": ["b"], "blockedRegistries": ["c"], "registryBudgets": ["d=1"], "registryCABundle": {"configMap": "x"}, "allowCrossNamespaceSources": true, "disableTriggers": true}}),
    ) else {
        return;
    };
    let d = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let main =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/args.rs")).unwrap();
    for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
    {
        let name = text_of(&e["name"]);
        if name == "POD_NAME" || name == "RUST_LOG" {
            continue;
        }
        assert!(
            main.contains(&format!("env = \"{name}\"")),
            "{name} is not a flag's env var"
        );
    }
}

#[test]
fn rbac_grants_exactly_what_the_code_uses() {
    let Some(objects) = render_chart(json!({})) else {
        return;
    };
    let (cluster, namespaced) = granted(&objects);
    assert_eq!(cluster, cluster_wide(&[]));
    assert_eq!(namespaced, required(NAMESPACED_PERMISSIONS));
    // Namespace users' roles: view reads, edit/admin write everything but status.
    let roles: Vec<&Value> = objects.iter().filter(|o| helm::aggregated(o)).collect();
    assert_eq!(roles.len(), 2);
    for role in &roles {
        for rule in role["rules"].as_array().unwrap() {
            let writes = rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v != "get" && v != "list" && v != "watch");
            let status = rule["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| text_of(r).contains('/'));
            assert!(!(writes && status), "{rule}");
        }
    }
    let without = render_chart(json!({"rbac": {"aggregateToDefaultRoles": false}})).unwrap();
    assert!(!without.iter().any(helm::aggregated));
    // Providers without token mode need no more; with an existing ConfigMap, token mode is
    // stated with `serviceAccountTokens`.
    let providers = |extra: Value| {
        let mut v =
            json!({"credentialProviders": {"enabled": true, "pluginImage": {"repository": "p"}}});
        v["credentialProviders"]
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        granted(&render_chart(v).unwrap()).0
    };
    assert_eq!(
        providers(json!({"existingConfigMap": "mine"})),
        cluster_wide(&[])
    );
    assert_eq!(
        providers(json!({"existingConfigMap": "mine", "serviceAccountTokens": true})),
        cluster_wide(TOKEN_MODE_PERMISSIONS)
    );
}

/// Namespaced mode: the ClusterRole keeps only cluster-scoped objects; each listed namespace gets
/// a Role with the namespaced rules (token mode included), and nothing else is granted anywhere.
#[test]
fn namespaced_mode_grants_namespaced_objects_only_in_the_listed_namespaces() {
    let values = json!({
        "controller": {"watchNamespaces": ["team-a", "team-b"]},
        "credentialProviders": {"enabled": true, "pluginImage": {"repository": "p"}, "existingConfigMap": "mine", "serviceAccountTokens": true},
    });
    let Some(objects) = render_chart(values) else {
        return;
    };
    for o in &objects {
        validate(o);
    }
    let (cluster, _) = granted(&objects);
    assert_eq!(cluster, required(CLUSTER_PERMISSIONS));
    let mut namespaced = PERMISSIONS.to_vec();
    namespaced.extend_from_slice(TOKEN_MODE_PERMISSIONS);
    let in_namespace = |ns: &str| {
        let here: Vec<Value> = objects
            .iter()
            .filter(|o| o["metadata"]["namespace"] == ns)
            .cloned()
            .collect();
        granted(&here).1
    };
    for ns in ["team-a", "team-b"] {
        assert_eq!(in_namespace(ns), required(&namespaced), "{ns}");
        let binding = objects
            .iter()
            .find(|o| o["kind"] == "RoleBinding" && o["metadata"]["namespace"] == ns)
            .unwrap();
        assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
        assert_eq!(binding["roleRef"]["name"], RELEASE);
    }
    assert_eq!(in_namespace(NAMESPACE), required(NAMESPACED_PERMISSIONS));
    let d = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let env = &d["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(env
        .as_array()
        .unwrap()
        .contains(&json!({"name": "WATCH_NAMESPACES", "value": "team-a,team-b"})));
    let hook = objects
        .iter()
        .find(|o| o["kind"] == "MutatingWebhookConfiguration")
        .unwrap();
    for w in hook["webhooks"].as_array().unwrap() {
        assert!(w["namespaceSelector"]["matchExpressions"]
            .as_array()
            .unwrap()
            .contains(&json!({"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]})));
    }
}

#[test]
fn chart_and_kustomize_ship_the_generated_crd_byte_for_byte() {
    let generated = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/imagestreams.image.openshift.io.yaml"
    ))
    .unwrap();
    for copy in [
        "charts/imagestream-operator/crds/imagestreams.image.openshift.io.yaml",
        "config/crd/imagestreams.image.openshift.io.yaml",
    ] {
        let bytes = std::fs::read(format!("{}/{copy}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(
            bytes == generated,
            "{copy} differs from crds/; copy it again"
        );
    }
}

/// `kubectl kustomize config/default` builds the same objects as the chart with default values
/// (release `imagestream-operator` in `imagestream-system`), each valid.
#[test]
fn kustomize_config_matches_the_chart() {
    let Some(kubectl) = helm::tool("kubectl") else {
        return;
    };
    let text = helm::run(
        &kubectl,
        &[
            "kustomize",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/default"),
        ],
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let built = helm::documents(&text);
    for o in &built {
        validate(o);
    }
    let (cluster, namespaced) = granted(&built);
    assert_eq!(cluster, cluster_wide(&[]));
    assert_eq!(namespaced, required(NAMESPACED_PERMISSIONS));
    let key = |o: &Value| {
        format!(
            "{}/{}",
            o["kind"].as_str().unwrap_or(""),
            o["metadata"]["name"].as_str().unwrap_or("")
        )
    };
    let kinds: BTreeSet<String> = built.iter().map(|o| text_of(&o["kind"])).collect();
    for k in [
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "MutatingWebhookConfiguration",
    ] {
        assert!(
            kinds.contains(k),
            "{k} missing from config/default: {:?}",
            built.iter().map(key).collect::<Vec<_>>()
        );
    }
    let deployment = built.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_restricted(deployment);
    assert_safe_webhook(&built);
    assert_eq!(deployment["metadata"]["namespace"], "imagestream-system");
    let chart = helm::render(
        &helm::tool("helm").unwrap(),
        "imagestream-operator",
        "imagestream-system",
        &json!({}),
        false,
    );
    let hooks = |objects: &[Value]| {
        objects
            .iter()
            .find(|o| o["kind"] == "MutatingWebhookConfiguration")
            .map(|o| o["webhooks"].clone())
    };
    assert_eq!(
        hooks(&built),
        hooks(&chart),
        "config/webhook differs from the chart"
    );
}

/// `values.schema.json` accepts the defaults and the non-default set above, and rejects typos
/// and wrong types: helm itself refuses to render then.
#[test]
fn values_schema_accepts_good_values_and_rejects_bad_ones() {
    let Some(helm) = helm::tool("helm") else {
        return;
    };
    let renders = |values: &Value| helm::template(&helm, RELEASE, NAMESPACE, values, &[]);
    for good in [
        json!({}),
        json!({"controller": {"registryBudgets": ["docker.io=1:5:2"], "insecureRegistries": ["r:5000"]}}),
    ] {
        renders(&good).unwrap_or_else(|e| panic!("refused {good}: {e}"));
    }
    for bad in [
        json!({"replicas": 0}),
        json!({"controller": {"logFormat": "xml"}}),
        json!({"controller": {"scheduledImportInterval": "soon"}}),
        json!({"controller": {"registryBudgets": ["docker.io"]}}),
        json!({"controller": {"maxHistry": 3}}),
        json!({"image": {"pullPolicy": "Sometimes"}}),
        json!({"controller": {"concurrency": 70000}}),
    ] {
        let refused = renders(&bad).expect_err(&format!("accepted {bad}"));
        assert!(refused.contains("schema"), "{bad}: {refused}");
    }
}

/// Helm reads numbers from values files as floats and prints large ones as `1e+06`, which the
/// operator's flags refuse: every number the chart renders is an integer.
#[test]
fn large_numbers_render_as_integers() {
    let Some(objects) = render_chart(json!({
        "replicas": 1000000,
        "leaderElection": {"leaseDurationSeconds": 1000000},
        "controller": {"maxHistory": 1000000, "maxScheduledImportsPerMinute": 12000000,
                       "maxImagesBulkImportedPerRepository": 1000000, "concurrency": 65535},
        "admission": {"timeoutSeconds": 10},
    })) else {
        return;
    };
    let d = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(d["spec"]["replicas"], 1000000);
    let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .map(|e| text_of(&e["value"]))
            .unwrap_or_default()
    };
    for (name, want) in [
        ("MAX_HISTORY", "1000000"),
        ("MAX_SCHEDULED_IMPORTS_PER_MINUTE", "12000000"),
        ("MAX_IMAGES_BULK_IMPORTED_PER_REPOSITORY", "1000000"),
        ("CONCURRENCY", "65535"),
        ("LEADER_ELECTION_DURATION", "1000000"),
    ] {
        assert_eq!(value(name), want, "{name}");
    }
    let text = helm::to_stream(&objects);
    assert!(!text.contains("e+0"), "a number in exponent form:\n{text}");
}
