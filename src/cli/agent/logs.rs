//! `agent logs`.

use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::AsyncReadExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::{Api, ResourceExt as _};

use super::{get_agent, write_stdout_bytes};
use crate::api::Agent;
use crate::cluster::ClusterArgs;
use crate::controller::pod;

/// `agent logs`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// The Agent.
    pub name: String,
    /// Stream new lines until the server pod ends or Ctrl-C.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Lines from the end to show; -1: all.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_name = "N")]
    pub tail: i64,
    /// Only lines newer than this, e.g. 10m or 1h.
    #[arg(long, value_parser = crate::duration::parse, value_name = "DURATION")]
    pub since: Option<Duration>,
    /// Prefix every line with its RFC 3339 timestamp.
    #[arg(long)]
    pub timestamps: bool,
}

/// The pod whose logs to show: the newest running one, else the newest that ran (its logs
/// are still there), else an error that says why there is none.
pub fn pick_server_pod(agent: &Agent, pods: &[Pod]) -> anyhow::Result<String> {
    let name = agent.name_any();
    let ns = agent.namespace().unwrap_or_default();
    // The server container's own state, not the pod's phase: a pod whose front runs while
    // the server waits (a missing Secret) is Running without a server log.
    let phase = |p: &Pod| {
        let server = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.iter().find(|c| c.name == pod::SERVER_CONTAINER));
        let state = server.and_then(|c| c.state.as_ref());
        let ran_before = server.is_some_and(|c| {
            c.last_state
                .as_ref()
                .is_some_and(|s| s.terminated.is_some())
        });
        if state.is_some_and(|s| s.running.is_some()) {
            "Running".to_string()
        } else if state.is_some_and(|s| s.terminated.is_some()) || ran_before {
            "Failed".to_string()
        } else {
            "Pending".to_string()
        }
    };
    let newest = |pred: &dyn Fn(&Pod) -> bool| {
        pods.iter()
            .filter(|p| pred(p))
            .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .map(|p| p.name_any())
    };
    if let Some(pod) = newest(&|p| phase(p) == "Running" && p.metadata.deletion_timestamp.is_none())
        .or_else(|| newest(&|p| phase(p) == "Running"))
        .or_else(|| newest(&|p| matches!(phase(p).as_str(), "Succeeded" | "Failed")))
    {
        return Ok(pod);
    }
    let suspended = agent.spec.suspend == Some(true)
        || agent.status.as_ref().and_then(|s| s.suspended) == Some(true);
    if suspended {
        bail!(
            "agent {name:?} in namespace {ns:?} is suspended: its server is scaled to zero and has no pod to show logs of (resume it with: kubectl kubeoc agent resume {name} -n {ns})"
        );
    }
    if let Some(pending) = newest(&|_| true) {
        bail!(
            "the server pod {pending:?} of agent {name:?} in namespace {ns:?} has not started yet (see why with: kubectl kubeoc agent describe {name} -n {ns})"
        );
    }
    bail!(
        "agent {name:?} in namespace {ns:?} has no server pod (see why with: kubectl kubeoc agent describe {name} -n {ns})"
    )
}

pub(super) async fn logs(cluster_args: &ClusterArgs, args: LogsArgs) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let agent = get_agent(&cluster, &ns, &args.name).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    let selector = format!("{}={}", pod::AGENT_LABEL, args.name);
    let listed = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| {
            crate::Error::kube(
                format!(
                    "listing the server pods of agent {:?} in namespace {ns:?}",
                    args.name
                ),
                e,
            )
        })?;
    let pod = pick_server_pod(&agent, &listed.items)?;
    let params = LogParams {
        container: Some(pod::SERVER_CONTAINER.into()),
        follow: args.follow,
        tail_lines: (args.tail >= 0).then_some(args.tail),
        since_seconds: args
            .since
            .map(|d| i64::try_from(d.as_secs().max(1)).unwrap_or(i64::MAX)),
        timestamps: args.timestamps,
        ..LogParams::default()
    };
    let doing = || {
        format!(
            "reading the logs of pod {pod:?} (agent {:?}) in namespace {ns:?}",
            args.name
        )
    };
    let mut stream = pods
        .log_stream(&pod, &params)
        .await
        .map_err(|e| crate::Error::kube(doing(), e))?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await.with_context(doing)?;
        if n == 0 {
            return Ok(());
        }
        if !write_stdout_bytes(&buf[..n])? {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cli::agent::tests::{from, ready_agent};

    /// A server pod whose server container is in `phase` terms: Running, Failed (it ran),
    /// or Pending (never started); the front always runs.
    fn pod(name: &str, phase: &str, created: &str) -> Pod {
        let server_state = match phase {
            "Running" => json!({"running": {}}),
            "Failed" | "Succeeded" => json!({"terminated": {"exitCode": 1}}),
            _ => json!({"waiting": {"reason": "CreateContainerConfigError"}}),
        };
        from(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "status": {"phase": if phase == "Pending" { "Running" } else { phase },
                       "containerStatuses": [
                {"name": "opencode-server", "ready": false, "restartCount": 0, "image": "i",
                 "imageID": "", "state": server_state},
                {"name": "kubeoc-front", "ready": true, "restartCount": 0, "image": "i",
                 "imageID": "", "state": {"running": {}}}]},
        }))
    }

    #[test]
    fn logs_come_from_the_newest_running_pod() {
        let agent = ready_agent();
        let pods = [
            pod("old", "Running", "2026-03-01T10:00:00Z"),
            pod("new", "Running", "2026-03-01T11:00:00Z"),
            pod("starting", "Pending", "2026-03-01T11:30:00Z"),
        ];
        assert_eq!(pick_server_pod(&agent, &pods).unwrap(), "new");
        let pods = [pod("done", "Failed", "2026-03-01T10:00:00Z")];
        assert_eq!(pick_server_pod(&agent, &pods).unwrap(), "done");

        let pending = [pod("starting", "Pending", "2026-03-01T11:30:00Z")];
        let err = pick_server_pod(&agent, &pending).unwrap_err().to_string();
        assert!(
            err.contains("has not started yet")
                && err.contains("kubectl kubeoc agent describe team-agent -n team-a"),
            "{err}"
        );
        let err = pick_server_pod(&agent, &[]).unwrap_err().to_string();
        assert!(
            err.contains("has no server pod") && err.contains("agent describe"),
            "{err}"
        );
        let mut suspended = ready_agent();
        suspended.spec.suspend = Some(true);
        let err = pick_server_pod(&suspended, &[]).unwrap_err().to_string();
        assert!(
            err.contains("is suspended")
                && err.contains("kubectl kubeoc agent resume team-agent -n team-a"),
            "{err}"
        );
    }
}
