//! A test's own namespace with a controller watching it ([`Bed`]).

use std::time::Duration;

use kube::{Api, Client};
use kubeoc::api::Agent;
use kubeoc_testbed::{TestNamespace, admin_client};
use serde_json::Value;

use super::{Controller, agent_manifest, apply, prepare_namespace, ready_agent};

/// How long an Agent may take to become Ready.
pub const READY: Duration = Duration::from_secs(180);

/// A namespace of its own (kubeoc installed, the agents' ServiceAccount in it) with a
/// `controller run` for it; both go when dropped.
pub struct Bed {
    pub client: Client,
    /// The namespace's name.
    pub n: String,
    pub controller: Option<Controller>,
    _ns: TestNamespace,
}

impl Bed {
    pub async fn start(prefix: &str) -> anyhow::Result<Self> {
        let client = admin_client().await?;
        let ns = prepare_namespace(&client, prefix).await?;
        let n = ns.name.clone();
        let controller = Controller::start_with(&n, &["--leader-elect=false"])?;
        Ok(Self {
            client,
            n,
            controller: Some(controller),
            _ns: ns,
        })
    }

    /// Kills the controller (SIGKILL: no draining) and starts a new one.
    pub fn restart_controller(&mut self) -> anyhow::Result<()> {
        self.controller = None;
        self.controller = Some(Controller::start_with(&self.n, &["--leader-elect=false"])?);
        Ok(())
    }

    /// Applies `manifest` and waits until the Agent it names is Ready.
    pub async fn ready(&self, manifest: &Value) -> anyhow::Result<Agent> {
        apply(&self.n, manifest).await?;
        let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
        ready_agent(&Api::namespaced(self.client.clone(), &self.n), name, READY).await
    }

    /// Applies [`agent_manifest`] `name` with `extra_spec` and waits until it is Ready.
    pub async fn ready_agent(&self, name: &str, extra_spec: Value) -> anyhow::Result<Agent> {
        self.ready(&agent_manifest(name, extra_spec)).await
    }
}

impl Drop for Bed {
    /// The namespace goes while its controller still runs: a running Task's finalizer (which
    /// aborts its session) needs the controller, or the namespace would never finish deleting.
    fn drop(&mut self) {
        if self.controller.is_none() || std::env::var_os("KUBEOC_KEEP_FAILED_NAMESPACES").is_some()
        {
            return;
        }
        let kubectl = |args: &[&str]| {
            let _ = std::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(kubeoc_testbed::kubeconfig_path())
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        kubectl(&["delete", "namespace", &self.n, "--wait=false"]);
        kubectl(&[
            "-n",
            &self.n,
            "wait",
            "--for=delete",
            "tasks",
            "--all",
            "--timeout=30s",
        ]);
    }
}
