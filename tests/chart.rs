//! The Helm chart and the kustomize config, validated without helm.
//!
//! No helm binary or Go toolchain can be installed here, so the chart's templates stay within a
//! small subset of Go templates that this file renders: `{{ .Values.x }}`, `.Release.Name`,
//! `.Release.Namespace`, `.Chart.AppVersion`, `{{ if }}`/`{{ else }}`/`{{ end }}`, `{{ range }}`
//! over a list with `{{ . }}`, the `quote`, `default`, `join`, `toYaml` and `nindent` functions,
//! and `{{-`/`-}}` whitespace trimming. Each has one simple meaning in Go's text/template and
//! sprig (identical here), and the renderer fails on anything else, so a template that strays
//! outside the subset fails this test instead of being rendered differently from helm.
//!
//! Every rendered object is deserialised into its k8s-openapi type and serialised back; any
//! field lost on the way is an unknown field, and the test fails.

use std::collections::BTreeSet;
use std::path::Path;

use imagestream_operator::ops::rbac::{NAMESPACED_PERMISSIONS, PERMISSIONS};
use serde_json::{json, Value};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/imagestream-operator");

// ---------------------------------------------------------------------------------------------
// The template subset.

#[derive(Debug)]
enum Node {
    Text(String),
    Expr(String),
    If(String, Vec<Node>, Vec<Node>),
    Range(String, Vec<Node>),
}

fn lex(src: &str) -> Vec<(bool, String)> {
    // (is_action, text) with trim markers applied to the neighbouring text.
    let mut out: Vec<(bool, String)> = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = rest[..start].to_string();
        if trim_next {
            text = text.trim_start().to_string();
        }
        let end = rest[start..].find("}}").expect("unclosed action") + start;
        let mut action = &rest[start + 2..end];
        if let Some(a) = action.strip_prefix('-') {
            text = text.trim_end().to_string();
            action = a;
        }
        trim_next = false;
        if let Some(a) = action.strip_suffix('-') {
            trim_next = true;
            action = a;
        }
        out.push((false, text));
        out.push((true, action.trim().to_string()));
        rest = &rest[end + 2..];
    }
    let mut text = rest.to_string();
    if trim_next {
        text = text.trim_start().to_string();
    }
    out.push((false, text));
    out
}

fn parse(
    tokens: &mut std::iter::Peekable<std::vec::IntoIter<(bool, String)>>,
) -> (Vec<Node>, Option<String>) {
    let mut nodes = Vec::new();
    while let Some((action, text)) = tokens.next() {
        if !action {
            nodes.push(Node::Text(text));
            continue;
        }
        if let Some(cond) = text.strip_prefix("if ") {
            let (then, stop) = parse(tokens);
            let otherwise = if stop.as_deref() == Some("else") {
                parse(tokens).0
            } else {
                Vec::new()
            };
            nodes.push(Node::If(cond.to_string(), then, otherwise));
        } else if let Some(list) = text.strip_prefix("range ") {
            let (body, _) = parse(tokens);
            nodes.push(Node::Range(list.to_string(), body));
        } else if text == "end" || text == "else" {
            return (nodes, Some(text));
        } else {
            nodes.push(Node::Expr(text));
        }
    }
    (nodes, None)
}

struct Ctx<'a> {
    root: &'a Value,
    dot: Option<&'a Value>,
}

fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn lookup(ctx: &Ctx, word: &str) -> Value {
    if word == "." {
        return ctx.dot.cloned().unwrap_or(Value::Null);
    }
    if let Some(s) = word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        return Value::String(s.to_string());
    }
    if let Ok(n) = word.parse::<i64>() {
        return json!(n);
    }
    let path = word
        .strip_prefix('.')
        .unwrap_or_else(|| panic!("unsupported template word {word:?}"));
    path.split('.').fold(ctx.root.clone(), |v, k| {
        v.get(k).cloned().unwrap_or(Value::Null)
    })
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn eval(ctx: &Ctx, expr: &str) -> Value {
    let mut value = Value::Null;
    for (i, stage) in expr.split('|').enumerate() {
        let w = words(stage.trim());
        let args: Vec<Value> = w.iter().skip(1).map(|a| lookup(ctx, a)).collect();
        value = match (w[0].as_str(), i) {
            ("quote", _) => Value::String(format!("{:?}", text_of(&value))),
            ("default", _) => {
                if truthy(&value) {
                    value
                } else {
                    args[0].clone()
                }
            }
            ("nindent", _) => {
                let n = args[0].as_u64().unwrap() as usize;
                let pad = " ".repeat(n);
                Value::String(format!(
                    "\n{}",
                    text_of(&value)
                        .lines()
                        .map(|l| format!("{pad}{l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ))
            }
            ("toYaml", 0) => Value::String(
                serde_saphyr::to_string(&args[0])
                    .unwrap()
                    .trim_end()
                    .to_string(),
            ),
            ("join", 0) => Value::String(
                args[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(text_of)
                    .collect::<Vec<_>>()
                    .join(&text_of(&args[0])),
            ),
            (word, 0) if w.len() == 1 => lookup(ctx, word),
            (other, _) => panic!("template function {other:?} is outside the supported subset"),
        };
    }
    value
}

fn render_nodes(ctx: &Ctx, nodes: &[Node], out: &mut String) {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Expr(e) => out.push_str(&text_of(&eval(ctx, e))),
            Node::If(c, then, otherwise) => render_nodes(
                ctx,
                if truthy(&eval(ctx, c)) {
                    then
                } else {
                    otherwise
                },
                out,
            ),
            Node::Range(list, body) => {
                for item in eval(ctx, list).as_array().cloned().unwrap_or_default() {
                    render_nodes(
                        &Ctx {
                            root: ctx.root,
                            dot: Some(&item),
                        },
                        body,
                        out,
                    );
                }
            }
        }
    }
}

fn render(template: &str, root: &Value) -> String {
    let mut tokens = lex(template).into_iter().peekable();
    let (nodes, stop) = parse(&mut tokens);
    assert!(stop.is_none(), "unbalanced {{{{ end }}}}");
    let mut out = String::new();
    render_nodes(&Ctx { root, dot: None }, &nodes, &mut out);
    out
}

fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// Renders every template (as helm would with `--set`-style overrides) into objects.
fn render_chart(overrides: Value) -> (Vec<Value>, String) {
    let mut values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(format!("{CHART}/values.yaml")).unwrap())
            .unwrap();
    merge(&mut values, &overrides);
    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(format!("{CHART}/Chart.yaml")).unwrap())
            .unwrap();
    let root = json!({
        "Values": values,
        "Release": {"Name": "iso", "Namespace": "imagestream-system"},
        "Chart": {"AppVersion": chart["appVersion"], "Version": chart["version"], "Name": chart["name"]},
    });
    let mut objects = Vec::new();
    let mut notes = String::new();
    let mut entries: Vec<_> = std::fs::read_dir(format!("{CHART}/templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let text = render(&std::fs::read_to_string(&path).unwrap(), &root);
        if path.extension().is_some_and(|e| e == "txt") {
            notes = text;
            continue;
        }
        objects.extend(documents(&text, &path));
    }
    (objects, notes)
}

fn documents(text: &str, origin: &Path) -> Vec<Value> {
    text.split("\n---")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|d| {
            serde_saphyr::from_str::<Value>(d)
                .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}\n{d}", origin.display()))
        })
        .collect()
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
        "Namespace" => round_trip::<core::v1::Namespace>(obj),
        "ClusterRole" => round_trip::<rbac::v1::ClusterRole>(obj),
        "ClusterRoleBinding" => round_trip::<rbac::v1::ClusterRoleBinding>(obj),
        "Role" => round_trip::<rbac::v1::Role>(obj),
        "RoleBinding" => round_trip::<rbac::v1::RoleBinding>(obj),
        "PodDisruptionBudget" => round_trip::<policy::v1::PodDisruptionBudget>(obj),
        "CustomResourceDefinition" => round_trip::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(obj),
        "MutatingWebhookConfiguration" => round_trip::<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration>(obj),
        "ServiceMonitor" => {
            serde_json::from_value::<ServiceMonitor>(obj.clone()).unwrap();
        }
        other => panic!("unexpected kind {other:?}"),
    }
}

/// A webhook that is down must never block workloads.
fn assert_safe_webhook(objects: &[Value]) {
    let hook = objects
        .iter()
        .find(|o| o["kind"] == "MutatingWebhookConfiguration")
        .expect("webhook configuration");
    let w = &hook["webhooks"][0];
    assert_eq!(w["failurePolicy"], "Ignore");
    assert_eq!(w["reinvocationPolicy"], "IfNeeded");
    assert!(w["timeoutSeconds"].as_i64().unwrap() <= 10);
    assert_eq!(w["sideEffects"], "None");
    let excluded = &w["namespaceSelector"]["matchExpressions"][0];
    assert_eq!(excluded["operator"], "NotIn");
    assert_eq!(
        excluded["values"],
        json!(["imagestream-system", "kube-system"])
    );
    assert_eq!(w["clientConfig"]["service"]["path"], "/mutate");
}

/// The Pod Security Standard "restricted" profile's checks that apply to this pod.
fn assert_restricted(deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    for c in pod["containers"].as_array().unwrap() {
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

/// (API group, resource, verb) triples.
type Rules = BTreeSet<(String, String, String)>;

fn granted(objects: &[Value]) -> (Rules, Rules) {
    let rules = |kind: &str| -> Rules {
        objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .flat_map(|o| o["rules"].as_array().cloned().unwrap_or_default())
            .flat_map(|r| {
                let mut out = Vec::new();
                for g in r["apiGroups"].as_array().unwrap() {
                    for res in r["resources"].as_array().unwrap() {
                        for v in r["verbs"].as_array().unwrap() {
                            out.push((text_of(g), text_of(res), text_of(v)));
                        }
                    }
                }
                out
            })
            .collect()
    };
    (rules("ClusterRole"), rules("Role"))
}

fn required(list: &[(&str, &str, &str, &str)]) -> Rules {
    list.iter()
        .map(|(g, r, v, _)| (g.to_string(), r.to_string(), v.to_string()))
        .collect()
}

#[test]
fn chart_renders_valid_objects_with_default_values() {
    let (objects, notes) = render_chart(json!({}));
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
    assert!(notes.contains("kubectl get is ruby"));
    assert_safe_webhook(&objects);
}

#[test]
fn chart_renders_valid_objects_with_every_option_set() {
    let (objects, _) = render_chart(json!({
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
        "admission": {"certificateSecret": "webhook-cert-tls", "caInjectFrom": "imagestream-system/webhook-cert", "objectSelector": {"matchLabels": {"imagestream.io/lookup": "true"}}, "namespaceSelectorExpressions": [{"key": "team", "operator": "Exists"}]},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
    }));
    for o in &objects {
        validate(o);
    }
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
        d["spec"]["template"]["spec"]["volumes"][3]["secret"]["secretName"],
        "registry-hooks"
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
}

/// Every env var the chart sets is a flag of `imagestream-operator run`.
#[test]
fn chart_env_vars_are_operator_flags() {
    let (objects, _) = render_chart(
        json!({"controller": {"localRegistry": "r", "insecureRegistries": ["a"], "allowedRegistries": ["b"], "blockedRegistries": ["c"], "registryBudgets": ["d=1"], "registryCABundle": {"configMap": "x"}, "allowCrossNamespaceSources": true, "disableTriggers": true}}),
    );
    let d = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let main =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/main.rs")).unwrap();
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
    let (objects, _) = render_chart(json!({}));
    let (cluster, namespaced) = granted(&objects);
    assert_eq!(cluster, required(PERMISSIONS));
    assert_eq!(namespaced, required(NAMESPACED_PERMISSIONS));
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
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let output = match std::process::Command::new(&kubectl)
        .args([
            "kustomize",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/default"),
        ])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            assert!(
                std::env::var("CI").is_err(),
                "kubectl is required in CI: {e}"
            );
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIP kustomize: {kubectl} not found ({e})"
            );
            return;
        }
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let built = documents(
        &String::from_utf8(output.stdout).unwrap(),
        Path::new("config/default"),
    );
    for o in &built {
        validate(o);
    }
    let (cluster, namespaced) = granted(&built);
    assert_eq!(cluster, required(PERMISSIONS));
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
}

/// `values.schema.json` accepts the defaults and the non-default set above, and rejects typos
/// and wrong types, as helm would before rendering.
#[test]
fn values_schema_accepts_good_values_and_rejects_bad_ones() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{CHART}/values.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let defaults: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(format!("{CHART}/values.yaml")).unwrap())
            .unwrap();
    assert!(
        validator.is_valid(&defaults),
        "{:?}",
        validator
            .iter_errors(&defaults)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    );
    let with = |over: Value| {
        let mut v = defaults.clone();
        merge(&mut v, &over);
        v
    };
    assert!(validator.is_valid(&with(json!({"controller": {"registryBudgets": ["docker.io=1:5:2"], "insecureRegistries": ["r:5000"]}}))));
    for bad in [
        json!({"replicas": 0}),
        json!({"controller": {"logFormat": "xml"}}),
        json!({"controller": {"scheduledImportInterval": "soon"}}),
        json!({"controller": {"registryBudgets": ["docker.io"]}}),
        json!({"controller": {"maxHistry": 3}}),
        json!({"image": {"pullPolicy": "Sometimes"}}),
    ] {
        assert!(!validator.is_valid(&with(bad.clone())), "accepted {bad}");
    }
}
