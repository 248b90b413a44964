//! The chart on a real node (`../shared/k8s/node`: kubelet, containerd, a CNI bridge and a
//! registry in a network namespace of their own): `tests/node/e2e.sh` builds the image from this
//! build's binary without Docker, installs the chart under the restricted Pod Security level,
//! imports a stream, rolls out a triggered Deployment, lets the webhook rewrite a short name,
//! deletes the leader and a standby, upgrades and uninstalls, and prints what each step took.
//!
//! It runs when `ISNODE_KUBECONFIG` names the node's kubeconfig (`.ci/run` starts the node and
//! sets it, with the `ISNODE_*` variables node-up.sh prints); otherwise it says why it skips. In
//! CI beside a node directory a missing node is a failure, not a skip.

use std::process::Command;

#[test]
fn the_chart_installs_fails_over_upgrades_and_uninstalls_on_a_real_node() {
    let Ok(kubeconfig) = std::env::var("ISNODE_KUBECONFIG") else {
        let node = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/k8s/node/node-up.sh");
        let expected = std::env::var("CI").is_ok_and(|v| v == "true")
            && std::path::Path::new(node).exists()
            && std::env::var("ISNODE_SKIP").is_err();
        assert!(
            !expected,
            "CI has ../shared/k8s/node but did not start it (ISNODE_KUBECONFIG unset)"
        );
        println!("SKIP real-node e2e: ISNODE_KUBECONFIG is not set (start ../shared/k8s/node/node-up.sh; see tests/node/e2e.sh)");
        return;
    };
    let status = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/e2e.sh"))
        .env("KUBECONFIG", kubeconfig)
        .env(
            "ISNODE_OPERATOR_BIN",
            env!("CARGO_BIN_EXE_imagestream-operator"),
        )
        .status()
        .expect("run tests/node/e2e.sh");
    assert!(status.success(), "tests/node/e2e.sh failed: {status}");
}
