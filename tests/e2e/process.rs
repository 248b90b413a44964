//! The operator binary as a separate process, configured through its environment like the
//! chart configures it, for drills that kill it or cut it off from the API server.

use std::path::PathBuf;

use super::common;

pub struct Operator {
    child: std::process::Child,
    /// host:port of its /metrics, /healthz and /readyz.
    pub metrics: String,
    pub log: PathBuf,
}

impl Operator {
    /// Starts `imagestream-operator run` with the KUBECONFIG of this test and `env` on top;
    /// admission off, logs (JSON) in a temp file named after `name`.
    pub fn spawn(name: &str, env: &[(&str, String)]) -> Self {
        use std::os::unix::process::CommandExt;
        let metrics = format!("127.0.0.1:{}", common::free_port());
        let log =
            std::env::temp_dir().join(format!("imagestream-e2e-{name}-{}.log", std::process::id()));
        let out = std::fs::File::create(&log).expect("operator log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_imagestream-operator"))
            .arg("run")
            .env("MAX_SCHEDULED_IMPORTS_PER_MINUTE", "0")
            .env("METRICS_ADDR", &metrics)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("the operator binary starts");
        Self {
            child,
            metrics,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no lease release, no cleanup.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill9();
    }
}
