//! The Task reconciler. A Task on a live Agent (agentRef) goes Pending -> Queued -> Running ->
//! Completed | Failed:
//!
//! - **waiting**: the Agent's queue is admitted in one pass under a per-Agent lock
//!   ([`queue`]), first come, first served, behind upstream's gates (Agent suspended, server
//!   not ready, `maxConcurrentTasks`, quota window); every waiting Task gets its position.
//! - **running** ([`running`]): pod `<task>-pod` runs `opencode run --attach` against the
//!   Agent's server; when the pod ends, the outcome comes from the session on the server
//!   ([`outcome`]), never from the exit code. A vanished pod fails the Task (PodDeleted); the
//!   stop annotation and `timeout` abort the session on the server first.
//! - **finished** ([`finish`]): the next Tasks in the Agent's queue are admitted, the
//!   finalizer is dropped, and KubeOpenCodeConfig's cleanup (TTL, most retained) applies.
//!
//! A restarted controller picks Running Tasks up from their status: the pod name is
//! deterministic and created once, so no Task starts twice. A Task from an AgentTemplate
//! (templateRef) starts at once on a server of its own ([`ephemeral`]).

mod admission;
mod ephemeral;
pub use ephemeral::task_server;
mod finish;
mod outcome;
mod prompt;
mod queue;
mod running;
mod start_history;
mod status;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

pub use admission::{Decision, Gate, Queue, decide};
pub use outcome::{MAX_RESULT_BYTES, Outcome, judge, summary};
pub use queue::{Arrivals, QueueLocks};
pub use status::StatusMemo;

use super::conditions::Verdict;
use super::{Context, FIELD_MANAGER, pod, stores};
use crate::api::task::{STOP_ANNOTATION, Task, TaskPhase, TaskStatus};
use crate::api::{Agent, AgentSpec};
use crate::duration;
use crate::opencode::client::{ProxyError, ServerProxy};

/// Finalizer on a Task whose session may be live on the server: deleting the Task aborts it.
pub const FINALIZER: &str = "kubeopencode.io/abort-session";

/// Why a Task reconcile failed; the variant names the `error` label of
/// `kubeoc_reconcile_errors_total`.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("writing status of {object}: {source}")]
    Status {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("{action} {object}: {source}")]
    Write {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading {object}: {source}")]
    Read {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("asking the server of {object}: {source}")]
    Server {
        object: String,
        #[source]
        source: ProxyError,
    },
    /// The system has no randomness for a templateRef Task's server password.
    #[error("no randomness for the server password of {0}")]
    Randomness(String),
}

impl super::run::Failure for ReconcileError {
    fn label(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::Write { .. } => "write",
            Self::Read { .. } => "read",
            Self::Server { .. } => "server",
            Self::Randomness(_) => "password",
        }
    }
}

/// Sets the Task's finalizers to `finalizers`, only if it is unchanged since it was read
/// (the resourceVersion precondition keeps another writer's finalizer).
async fn patch_finalizers(ctx: &Context, task: &Task, finalizers: &[&str]) -> kube::Result<()> {
    let api: Api<Task> = Api::namespaced(ctx.client.clone(), &task.namespace().unwrap_or_default());
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": task.resource_version(),
    }});
    api.patch(
        &task.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}

fn object(task: &Task) -> String {
    format!(
        "Task {}/{}",
        task.namespace().unwrap_or_default(),
        task.name_any()
    )
}

/// Reconciles one Task.
pub async fn reconcile(task: Arc<Task>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if !ctx.stores.synced() {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let status = ctx.task_statuses.current(&task);
    if task.metadata.deletion_timestamp.is_some() {
        return finish::on_delete(&ctx, &task, &status).await;
    }
    match status.phase {
        Some(phase) if phase.is_finished() => finish::after(&ctx, &task, &status).await,
        Some(TaskPhase::Running) if runs_from_template(&task) => {
            ephemeral::step(&ctx, &task, status).await
        }
        Some(TaskPhase::Running) => running::step(&ctx, &task, status).await,
        _ => waiting(&ctx, &task, status).await,
    }
}

/// A Task that has not started: refused, stopped, or handed to its Agent's queue.
async fn waiting(ctx: &Context, task: &Task, status: TaskStatus) -> Result<Action, ReconcileError> {
    if stop_requested(task) {
        let stopped = finish::stopped(
            task,
            &status,
            "UserStopped",
            "stopped before it started (annotation kubeopencode.io/stop)",
        );
        return finish::write_final(ctx, task, stopped).await;
    }
    if let Some(message) = invalid(task) {
        let failed = finish::failed(task, &status, "InvalidSpec", &message);
        return finish::write_final(ctx, task, failed).await;
    }
    if runs_from_template(task) {
        return ephemeral::start(ctx, task, status).await;
    }
    let Some(agent_ref) = &task.spec.agent_ref else {
        let message = "set spec.agentRef (a live Agent) or spec.templateRef (an AgentTemplate)";
        let failed = finish::failed(task, &status, "InvalidSpec", message);
        return finish::write_final(ctx, task, failed).await;
    };
    let ns = task.namespace().unwrap_or_default();
    if stores::get(&ctx.stores.agents, &ns, &agent_ref.name).is_none() {
        let verdict = Verdict::new(
            "Queued",
            true,
            "AgentNotFound",
            format!(
                "Agent {:?} not found in namespace {ns:?}: create it, or fix spec.agentRef",
                agent_ref.name
            ),
        );
        let pending = TaskStatus {
            agent_ref: Some(agent_ref.clone()),
            ..pending(task, status, verdict)
        };
        status::write(ctx, task, pending).await?;
        // The Agent watch brings the Task back when the Agent appears.
        return Ok(Action::await_change());
    }
    let retry = queue::admit(ctx, &ns, &agent_ref.name).await?;
    Ok(retry.map_or_else(Action::await_change, Action::requeue))
}

/// Whether the Task runs on a server of its own from an AgentTemplate (templateRef without
/// agentRef; the CRD allows one of the two).
fn runs_from_template(task: &Task) -> bool {
    task.spec.agent_ref.is_none() && task.spec.template_ref.is_some()
}

/// What keeps a Task from ever running, in words for its condition.
fn invalid(task: &Task) -> Option<String> {
    if let Some(timeout) = &task.spec.timeout
        && let Err(e) = duration::parse(timeout)
    {
        return Some(format!("spec.timeout: {e}"));
    }
    if task.spec.agent_ref.is_some() {
        return prompt::unsupported(task.spec.contexts.as_deref().unwrap_or_default());
    }
    None
}

/// Whether the stop annotation is set.
fn stop_requested(task: &Task) -> bool {
    task.annotations()
        .get(STOP_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// `spec.timeout`, when set and valid.
fn timeout(task: &Task) -> Option<Duration> {
    task.spec
        .timeout
        .as_deref()
        .and_then(|t| duration::parse(t).ok())
        .filter(|t| !t.is_zero())
}

/// What a Running Task's clock says: stop it now, or look again by when.
enum Deadline {
    /// End it: the stop annotation (UserStopped) or its timeout (Timeout), with the message.
    Stop(&'static str, String),
    /// Keep running; with a timeout, requeue by this time (past it by a second).
    Until(Option<Duration>),
}

/// The stop annotation and `spec.timeout` of a Running Task, checked at `now`.
fn deadline(task: &Task, status: &TaskStatus, now: Timestamp) -> Deadline {
    if stop_requested(task) {
        return Deadline::Stop(
            "UserStopped",
            "stopped by annotation kubeopencode.io/stop".to_string(),
        );
    }
    let limit = timeout(task);
    let ran = running_for(status, now);
    match limit {
        Some(limit) if ran >= limit => Deadline::Stop(
            "Timeout",
            format!(
                "ran longer than spec.timeout ({})",
                task.spec.timeout.as_deref().unwrap_or_default()
            ),
        ),
        _ => Deadline::Until(limit.map(|l| l.saturating_sub(ran) + Duration::from_secs(1))),
    }
}

/// Requeues after `every`, or sooner when the timeout comes first.
fn requeue_within(until_timeout: Option<Duration>, every: Duration) -> Action {
    Action::requeue(until_timeout.map_or(every, |t| t.min(every)))
}

/// Creates `object`; one of that name already there is kept (a restart between create and
/// status: names are fixed, and owners are checked where it matters).
async fn create<K>(ctx: &Context, ns: &str, object: &K) -> Result<(), ReconcileError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&params, object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(source) => Err(ReconcileError::Write {
            action: "creating",
            object: format!("{} {ns}/{}", K::kind(&()), object.name_any()),
            source,
        }),
    }
}

/// Deletes the Task's pod `pod_name`; one already gone is fine.
async fn delete_pod(ctx: &Context, ns: &str, pod_name: &str) -> Result<(), ReconcileError> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    match pods.delete(pod_name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(ReconcileError::Write {
            action: "deleting",
            object: format!("Pod {ns}/{pod_name}"),
            source,
        }),
    }
}

/// Pending, waiting for what `verdict` (a True Queued condition) names.
fn pending(task: &Task, status: TaskStatus, verdict: Verdict) -> TaskStatus {
    let generation = task.metadata.generation.unwrap_or(0);
    TaskStatus {
        observed_generation: Some(generation),
        phase: Some(TaskPhase::Pending),
        queue_position: None,
        conditions: Some(status::with_conditions(
            status.conditions.as_deref().unwrap_or_default(),
            &[verdict],
            generation,
        )),
        ..status
    }
}

/// How long a Running Task has run.
fn running_for(status: &TaskStatus, now: Timestamp) -> Duration {
    status
        .start_time
        .as_ref()
        .and_then(|start| Duration::try_from(now.duration_since(start.0)).ok())
        .unwrap_or_default()
}

/// An Agent with its effective spec (after the template merge and the cluster's proxy).
struct Target {
    agent: Arc<Agent>,
    spec: AgentSpec,
}

fn target(ctx: &Context, ns: &str, name: &str) -> Option<Target> {
    let agent = stores::get(&ctx.stores.agents, ns, name)?;
    let template = agent
        .spec
        .template_ref
        .as_ref()
        .and_then(|r| stores::get(&ctx.stores.templates, ns, &r.name));
    let spec = pod::effective_spec(&agent.spec, template.as_ref().map(|t| &t.spec));
    Some(Target { agent, spec })
}

/// The Agent's server through the apiserver's service proxy, with the password from the
/// cached Secret; `None` when the Agent or its Secret is gone.
fn server(ctx: &Context, ns: &str, target: &Target) -> Option<ServerProxy> {
    let name = target.agent.name_any();
    let secret = stores::get(&ctx.stores.secrets, ns, &pod::auth_secret_name(&name))?;
    let password = secret
        .data
        .as_ref()?
        .get(pod::PASSWORD_KEY)
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())?;
    let workspace = pod::workspace_dir(&target.spec);
    Some(ServerProxy::new(
        ctx.client.clone(),
        ns,
        &pod::service_name(&name),
        &password,
        &workspace,
    ))
}
