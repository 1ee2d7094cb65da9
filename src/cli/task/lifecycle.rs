//! `task stop`, `task delete` and `task logs`.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::bail;
use kube::ResourceExt as _;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;

use super::follow::{SessionStream, agent_server, print, task_server};
use super::{RESOURCE, get_task, phase, tasks};
use crate::api::task::{STOP_ANNOTATION, Task, TaskPhase};
use crate::cli::noun::TASK;
use crate::cli::print::{report_failures, write_stdout};
use crate::cluster::{ClusterArgs, FIELD_MANAGER};
use crate::controller::pod;
use crate::opencode::client::{ProxyError, ServerProxy};
use crate::opencode::transcript::Transcript;
use crate::opencode::turn::{Outcome, TurnFollower};

/// `task stop`.
#[derive(Debug, Clone, clap::Args)]
pub struct StopArgs {
    /// The Tasks.
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub(super) async fn stop(cluster_args: &ClusterArgs, args: StopArgs) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let api = tasks(&cluster, &ns);
    let patch = json!({"metadata": {"annotations": {STOP_ANNOTATION: "true"}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let mut failures = Vec::new();
    for name in &args.names {
        match api.patch(name, &params, &Patch::Merge(&patch)).await {
            Ok(task) if phase(task.status.as_ref()).is_finished() => {
                write_stdout(&format!("{RESOURCE}/{name} has already finished\n"))?;
            }
            Ok(_) => write_stdout(&format!("{RESOURCE}/{name} stopping\n"))?,
            Err(err) => failures.push(TASK.error(err, "stopping", name, &ns)),
        }
    }
    report_failures(failures)
}

/// `task delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// The Tasks.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Wait until each Task is gone (a running one aborts its session first), as kubectl
    /// delete does; --wait=false returns once the deletion is accepted.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    pub wait: bool,
    /// How long to wait.
    #[arg(long, default_value = "2m", value_parser = crate::duration::parse)]
    pub timeout: Duration,
    /// A missing Task is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

pub(super) async fn delete(cluster_args: &ClusterArgs, args: DeleteArgs) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let api = tasks(&cluster, &ns);
    let mut failures = Vec::new();
    for name in &args.names {
        let uid = match api.delete(name, &DeleteParams::background()).await {
            Ok(either) => either.left().and_then(|t| t.uid()),
            Err(kube::Error::Api(s)) if s.code == 404 && args.ignore_not_found => continue,
            Err(err) => {
                failures.push(TASK.error(err, "deleting", name, &ns));
                continue;
            }
        };
        write_stdout(&format!("{RESOURCE} {name:?} deleted\n"))?;
        if args.wait
            && let Some(uid) = uid
        {
            let gone = await_condition(api.clone(), name, conditions::is_deleted(&uid));
            match tokio::time::timeout(args.timeout, gone).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => failures.push(anyhow::anyhow!("waiting for task {name:?} to be deleted: {e}")),
                Err(_) => failures.push(anyhow::anyhow!(
                    "task {name:?} in namespace {ns:?} is still there after {}: is the controller running? (its finalizer aborts the session first)",
                    crate::cli::output::human_duration(k8s_openapi::jiff::SignedDuration::try_from(args.timeout).unwrap_or_default())
                )),
            }
        }
    }
    report_failures(failures)
}

/// `task logs`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// The Task.
    pub name: String,
    /// Keep printing the answer as the agent writes it, until the Task finishes.
    #[arg(short = 'f', long)]
    pub follow: bool,
}

pub(super) async fn logs(cluster_args: &ClusterArgs, args: LogsArgs) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let name = args.name;
    let task = get_task(&cluster, &ns, &name).await?;
    let status = task.status.clone().unwrap_or_default();
    let title = status
        .session
        .as_ref()
        .and_then(|s| s.title.clone())
        .unwrap_or_else(|| pod::task_session_title(&task));
    let current = phase(task.status.as_ref());
    if args.follow && !current.is_finished() {
        let Some((proxy, what)) = task_server(&cluster.client, &task).await? else {
            // It finished before its server was up.
            return print_result(&get_task(&cluster, &ns, &name).await?);
        };
        let mut stream = SessionStream::open(proxy, &ns, &what).await?;
        stream.follow(title);
        let finished = super::submit::watch_until_finished(&tasks(&cluster, &ns), &name, &ns).await;
        stream.finish().await;
        return finished.map(|_| ());
    }
    if matches!(current, TaskPhase::Pending | TaskPhase::Queued) {
        bail!(
            "task {name:?} has not started yet ({:?}); follow it with: kubectl kubeoc task logs {name} -n {ns} -f",
            current
        );
    }
    let Some(agent) = status.agent_ref.as_ref().or(task.spec.agent_ref.as_ref()) else {
        if current.is_finished() {
            // Its server went with its pod; the answer stays in its status.
            return print_result(&task);
        }
        let Some((proxy, _)) = task_server(&cluster.client, &task).await? else {
            return print_result(&get_task(&cluster, &ns, &name).await?);
        };
        return print_transcript(&proxy, &title, &name, |e| {
            anyhow::anyhow!("task {name:?}'s server: {e}")
        })
        .await;
    };
    let proxy = agent_server(&cluster.client, &ns, &agent.name).await?;
    let explain = |e| crate::cli::agent::explain(e, &agent.name, &ns);
    print_transcript(&proxy, &title, &name, explain).await
}

/// Prints the transcript of the Task's session titled `title`.
async fn print_transcript(
    proxy: &ServerProxy,
    title: &str,
    name: &str,
    explain: impl Fn(ProxyError) -> anyhow::Error,
) -> anyhow::Result<()> {
    let Some(session) = proxy.session_titled(title).await.map_err(&explain)? else {
        bail!("the server has no session of task {name:?} (titled {title:?})");
    };
    let messages = proxy.messages(&session.id).await.map_err(&explain)?;
    let transcript = Transcript::from_messages(&session.id, messages);
    let mut follower = TurnFollower::new(&Transcript::new(&session.id));
    print(follower.on_resync(&transcript), &AtomicBool::new(false));
    if let Some(Outcome::Failed(error)) = follower.outcome() {
        eprintln!("[kubeoc] the turn failed: {}", error.message());
    }
    Ok(())
}

/// A finished templateRef Task's answer: its server went with its pod, its status keeps the
/// answer's first 4 KiB.
fn print_result(task: &Task) -> anyhow::Result<()> {
    let status = task.status.clone().unwrap_or_default();
    let name = task.name_any();
    match status.result.as_deref() {
        Some(result) => {
            eprintln!(
                "[kubeoc] task {name} ran on a server of its own, gone with its pod: its answer from status.result (the first 4 KiB)"
            );
            write_stdout(&format!("{}\n", result.trim_end()))
        }
        None => {
            let why = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Failed" || c.type_ == "Stopped")
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_else(|| "no answer was recorded".to_string());
            bail!("task {name:?} has no answer: {why}")
        }
    }
}
