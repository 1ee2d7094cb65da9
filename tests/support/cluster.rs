//! The testbed cluster: kubeoc installed, a fresh namespace per test, manifests applied, and
//! the bridge address that pods reach the host on.

use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use kubeoc::cluster::install;
use kubeoc_testbed::{TestNamespace, kubeconfig_path};
use serde_json::Value;

use super::kubectl;

pub use kubeoc_testbed::agents::{BRIDGE_HOST, MODEL_ADDR};

/// Deletes the cluster's KubeOpenCodeConfig when dropped, so a failing test leaves no
/// cluster-wide setting behind for the tests that follow. The config is cluster-scoped: a
/// test binary that touches it holds that one test (test binaries run one after another).
pub struct ClusterConfigGuard;

impl Drop for ClusterConfigGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig_path())
            .args([
                "delete",
                "kubeopencodeconfig",
                "cluster",
                "--ignore-not-found",
            ])
            .stdout(std::process::Stdio::null())
            .status();
    }
}

/// The testbed's kubeconfig path, for `--kubeconfig`.
pub fn kubeconfig() -> anyhow::Result<String> {
    kubeconfig_path()
        .to_str()
        .map(str::to_owned)
        .context("the kubeconfig path is not UTF-8")
}

/// kubeoc installed (idempotent server-side apply) with its CRDs Established.
pub async fn install_kubeoc(client: &Client) -> anyhow::Result<()> {
    install::apply(client).await.context("installing kubeoc")?;
    install::wait_established(client, Duration::from_secs(60))
        .await
        .context("waiting for the CRDs to be Established")?;
    Ok(())
}

/// kubeoc installed and a fresh, empty namespace `<prefix>-xxxxx`.
pub async fn installed_namespace(client: &Client, prefix: &str) -> anyhow::Result<TestNamespace> {
    install_kubeoc(client).await?;
    TestNamespace::create(client, prefix).await
}

/// kubeoc installed, a fresh namespace `<prefix>-xxxxx`, and the `kubeopencode-agent`
/// ServiceAccount in it.
pub async fn prepare_namespace(client: &Client, prefix: &str) -> anyhow::Result<TestNamespace> {
    let ns = installed_namespace(client, prefix).await?;
    kubectl(
        &[
            "-n",
            &ns.name,
            "create",
            "serviceaccount",
            install::AGENT_SERVICE_ACCOUNT,
        ],
        None,
    )
    .await?;
    Ok(ns)
}

/// `kubectl apply -n NAMESPACE -f -` of one manifest.
pub async fn apply(namespace: &str, manifest: &Value) -> anyhow::Result<()> {
    kubectl(
        &["-n", namespace, "apply", "-f", "-"],
        Some(&serde_json::to_string(manifest)?),
    )
    .await?;
    Ok(())
}

/// `kubectl create secret generic NAME --from-literal=KEY=VALUE...` in `namespace`.
pub async fn create_secret(
    namespace: &str,
    name: &str,
    literals: &[(&str, &str)],
) -> anyhow::Result<()> {
    let literals: Vec<String> = literals
        .iter()
        .map(|(key, value)| format!("--from-literal={key}={value}"))
        .collect();
    let mut args = vec!["-n", namespace, "create", "secret", "generic", name];
    args.extend(literals.iter().map(String::as_str));
    kubectl(&args, None).await?;
    Ok(())
}

/// A free TCP port on the testbed bridge address.
pub fn free_bridge_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((BRIDGE_HOST, 0))?;
    Ok(listener.local_addr()?.port())
}
