//! The test credential provider plugin (`examples/credential-provider.rs`, built by cargo with
//! the tests) in a bin dir of its own, and a kubelet `CredentialProviderConfig` for it.

use std::path::{Path, PathBuf};

/// The plugin's executable. `cargo test` builds the examples with the tests; when only some
/// targets were built (`cargo test --test e2e`) and the example is missing or older than its
/// source, it is built here into a target dir of its own: the outer cargo holds the lock of
/// the usual one while tests run.
pub fn plugin_binary() -> PathBuf {
    let debug = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .expect("the test binary lives in target/<profile>/deps");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/credential-provider.rs");
    let fresh = |bin: &Path| {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        matches!((modified(bin), modified(&source)), (Some(b), Some(s)) if b >= s)
    };
    let bin = debug.join("examples").join("credential-provider");
    if fresh(&bin) {
        return bin;
    }
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_build = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let own = debug.join("test-plugin");
    let bin = own.join("debug/examples/credential-provider");
    if !fresh(&bin) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = std::process::Command::new(cargo)
            .args(["build", "--locked", "--example", "credential-provider"])
            .env("CARGO_TARGET_DIR", &own)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(built.success(), "building examples/credential-provider");
    }
    bin
}

/// A bin dir holding the plugin under `name`, and a config file with one provider of that
/// name matching `patterns`, with `env` for the plugin and optional `tokenAttributes` (YAML).
pub struct ProviderSetup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub bin_dir: PathBuf,
    pub log: PathBuf,
}

impl ProviderSetup {
    pub fn new(name: &str, patterns: &[&str], env: &[(&str, &str)], token: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin_dir = dir.path().join("bin");
        std::fs::create_dir(&bin_dir).unwrap();
        std::os::unix::fs::symlink(plugin_binary(), bin_dir.join(name)).unwrap();
        let log = dir.path().join("calls.log");
        let mut env_yaml = format!(
            "      - name: TEST_PROVIDER_LOG\n        value: {:?}\n",
            log.display().to_string()
        );
        for (k, v) in env {
            env_yaml.push_str(&format!("      - name: {k}\n        value: {v:?}\n"));
        }
        let token = token
            .map(|t| format!("    tokenAttributes:\n{t}"))
            .unwrap_or_default();
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: {name}\n    matchImages: {patterns:?}\n    defaultCacheDuration: 1h\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    env:\n{env_yaml}{token}"
            ),
        )
        .unwrap();
        Self {
            dir,
            config,
            bin_dir,
            log,
        }
    }

    /// One JSON value per plugin run.
    pub fn calls(&self) -> Vec<serde_json::Value> {
        read_calls(&self.log)
    }
}

pub fn read_calls(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
