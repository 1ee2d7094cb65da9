//! `kubectl kubeoc task`: submit Tasks (and wait for them, or follow the agent's answer live),
//! list, get, describe, read their session (`logs`), stop and delete them, with kubectl's
//! flags and messages.
//!
//! One file per command group: `submit` (submit, waiting, the exit status), `follow` (a Task's
//! session streamed through the service proxy: `submit --follow`, `logs -f`), `describe` and
//! `lifecycle` (stop, delete, logs); the dispatch and what they share are here.

mod describe;
mod follow;
mod lifecycle;
mod submit;

use kube::Api;

use super::listing::{self, GetArgs, ListArgs};
use super::noun::TASK;
use crate::api::task::{Task, TaskPhase, TaskStatus};
use crate::cluster::{Cluster, ClusterArgs};

pub use describe::{DescribeArgs, render_describe};
pub use lifecycle::{DeleteArgs, LogsArgs, StopArgs};
pub use submit::{SubmitArgs, Verdict, verdict};

/// How `-o name` and kubectl's messages spell the resource.
const RESOURCE: &str = "task.kubeopencode.io";

/// `kubectl kubeoc task ...`
#[derive(Debug, clap::Subcommand)]
pub enum TaskCommand {
    /// Submit a Task: a prompt for a live Agent (--agent) or a pod of its own (--template);
    /// --wait waits for the outcome, --follow streams the agent's answer as it is written.
    Submit(SubmitArgs),
    /// List Tasks (columns as `kubectl get tasks`; -o wide adds the queue position, tokens).
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show Tasks by name, or all of them.
    Get(GetArgs),
    /// Show a Task's spec, phase, queue position, session, answer, conditions and events.
    Describe(DescribeArgs),
    /// Print the Task's session on its Agent (the answer and tool calls); -f follows it.
    Logs(LogsArgs),
    /// Stop running or waiting Tasks (the annotation kubeopencode.io/stop): the session is
    /// aborted on the server and the Task ends Completed with condition Stopped.
    Stop(StopArgs),
    /// Delete Tasks; a running Task's session is aborted on the server first.
    Delete(DeleteArgs),
}

/// Dispatches `task` subcommands.
pub async fn run(cluster: &ClusterArgs, command: TaskCommand) -> anyhow::Result<()> {
    match command {
        TaskCommand::Submit(args) => submit::submit(cluster, args).await,
        TaskCommand::List(args) => listing::list(&TASK, cluster, &[], args).await,
        TaskCommand::Get(args) => listing::list(&TASK, cluster, &args.names, args.list).await,
        TaskCommand::Describe(args) => describe::describe(cluster, args).await,
        TaskCommand::Logs(args) => lifecycle::logs(cluster, args).await,
        TaskCommand::Stop(args) => lifecycle::stop(cluster, args).await,
        TaskCommand::Delete(args) => lifecycle::delete(cluster, args).await,
    }
}

fn tasks(cluster: &Cluster, namespace: &str) -> Api<Task> {
    Api::namespaced(cluster.client.clone(), namespace)
}

/// Gets a Task, with kubectl-style errors.
async fn get_task(cluster: &Cluster, namespace: &str, name: &str) -> anyhow::Result<Task> {
    tasks(cluster, namespace)
        .get(name)
        .await
        .map_err(|e| TASK.error(e, "getting", name, namespace))
}

/// The Task's phase, `Pending` before a controller gave it one.
fn phase(status: Option<&TaskStatus>) -> TaskPhase {
    status.and_then(|s| s.phase).unwrap_or(TaskPhase::Pending)
}

fn phase_name(phase: TaskPhase) -> &'static str {
    match phase {
        TaskPhase::Pending => "Pending",
        TaskPhase::Queued => "Queued",
        TaskPhase::Running => "Running",
        TaskPhase::Completed => "Completed",
        TaskPhase::Failed => "Failed",
    }
}
