//! The end of a Task: its final status, the next Tasks of its Agent admitted, the finalizer
//! dropped, and KubeOpenCodeConfig's cleanup (delete finished Tasks after a TTL, keep at most
//! so many per namespace, oldest deleted first).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::{FINALIZER, ReconcileError, object, patch_finalizers, queue, running, status, target};
use crate::api::task::{Task, TaskPhase, TaskStatus};
use crate::controller::Context;
use crate::controller::conditions::Verdict;

fn ended(task: &Task, current: &TaskStatus, phase: TaskPhase, verdicts: &[Verdict]) -> TaskStatus {
    let generation = task.metadata.generation.unwrap_or(0);
    let mut verdicts = verdicts.to_vec();
    if current
        .phase
        .is_none_or(|p| !matches!(p, TaskPhase::Running))
    {
        // It never started: it no longer waits either.
        verdicts.push(Verdict::new(
            "Queued",
            false,
            "Finished",
            "the Task finished",
        ));
    }
    TaskStatus {
        observed_generation: Some(generation),
        phase: Some(phase),
        queue_position: None,
        completion_time: Some(Time(Timestamp::now())),
        conditions: Some(status::with_conditions(
            current.conditions.as_deref().unwrap_or_default(),
            &verdicts,
            generation,
        )),
        agent_ref: current.agent_ref.clone().or(task.spec.agent_ref.clone()),
        ..current.clone()
    }
}

/// Completed with the answer in `status.result`.
pub(super) fn completed(task: &Task, current: &TaskStatus, result: String) -> TaskStatus {
    TaskStatus {
        result: Some(result),
        ..ended(
            task,
            current,
            TaskPhase::Completed,
            &[Verdict::new(
                "Complete",
                true,
                "Succeeded",
                "the agent answered",
            )],
        )
    }
}

/// Failed with `reason` (ModelError, PodDeleted, PodFailed, AgentNotFound, InvalidSpec...).
pub(super) fn failed(task: &Task, current: &TaskStatus, reason: &str, message: &str) -> TaskStatus {
    ended(
        task,
        current,
        TaskPhase::Failed,
        &[Verdict::new("Failed", true, reason, message)],
    )
}

/// Completed with condition Stopped (UserStopped or Timeout), as upstream.
pub(super) fn stopped(
    task: &Task,
    current: &TaskStatus,
    reason: &str,
    message: &str,
) -> TaskStatus {
    ended(
        task,
        current,
        TaskPhase::Completed,
        &[
            Verdict::new("Stopped", true, reason, message),
            Verdict::new("Complete", true, reason, message),
        ],
    )
}

/// Writes a final status, lets the Agent's next Tasks in, applies the count cleanup, and drops
/// the finalizer.
pub(super) async fn write_final(
    ctx: &Context,
    task: &Task,
    final_status: TaskStatus,
) -> Result<Action, ReconcileError> {
    status::write(ctx, task, final_status.clone()).await?;
    let ns = task.namespace().unwrap_or_default();
    if let Some(agent) = &final_status.agent_ref {
        queue::admit(ctx, &ns, &agent.name).await?;
    }
    prune(ctx, &ns).await?;
    after(ctx, task, &final_status).await
}

/// A finished Task: no finalizer, deleted when its TTL is over.
pub(super) async fn after(
    ctx: &Context,
    task: &Task,
    status: &TaskStatus,
) -> Result<Action, ReconcileError> {
    remove_finalizer(ctx, task).await?;
    let cleanup = super::super::agent::cluster_config(ctx)
        .cleanup
        .unwrap_or_default();
    let Some(ttl) = cleanup
        .ttl_seconds_after_finished
        .and_then(|s| u64::try_from(s).ok())
    else {
        return Ok(Action::await_change());
    };
    let finished = status
        .completion_time
        .as_ref()
        .map_or_else(Timestamp::now, |t| t.0);
    let age = Duration::try_from(Timestamp::now().duration_since(finished)).unwrap_or_default();
    let ttl = Duration::from_secs(ttl);
    if age < ttl {
        return Ok(Action::requeue(ttl - age + Duration::from_secs(1)));
    }
    delete(ctx, task).await?;
    Ok(Action::await_change())
}

/// A Task being deleted: a live session is aborted on the server, then the finalizer goes.
pub(super) async fn on_delete(
    ctx: &Context,
    task: &Task,
    status: &TaskStatus,
) -> Result<Action, ReconcileError> {
    if task.finalizers().iter().any(|f| f == FINALIZER) {
        if status.phase == Some(TaskPhase::Running) {
            let ns = task.namespace().unwrap_or_default();
            let agent = status
                .agent_ref
                .as_ref()
                .map(|r| r.name.clone())
                .unwrap_or_default();
            if let Some(target) = target(ctx, &ns, &agent) {
                running::abort_session(ctx, &target, status).await;
            }
        }
        remove_finalizer(ctx, task).await?;
    }
    ctx.task_statuses.forget(task);
    if let Some(agent) = &status.agent_ref
        && status.phase == Some(TaskPhase::Running)
    {
        // Its place in the Agent's capacity is free now.
        queue::admit(ctx, &task.namespace().unwrap_or_default(), &agent.name).await?;
    }
    Ok(Action::await_change())
}

async fn remove_finalizer(ctx: &Context, task: &Task) -> Result<(), ReconcileError> {
    if !task.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let rest: Vec<&str> = task
        .finalizers()
        .iter()
        .map(String::as_str)
        .filter(|f| *f != FINALIZER)
        .collect();
    match patch_finalizers(ctx, task, &rest).await {
        Ok(()) => Ok(()),
        // Gone, or changed since the cache saw it: the change's watch event brings it back.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(source) => Err(ReconcileError::Write {
            action: "removing the finalizer from",
            object: object(task),
            source,
        }),
    }
}

async fn delete(ctx: &Context, task: &Task) -> Result<(), ReconcileError> {
    let api: Api<Task> = Api::namespaced(ctx.client.clone(), &task.namespace().unwrap_or_default());
    match api
        .delete(&task.name_any(), &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(ReconcileError::Write {
            action: "deleting",
            object: object(task),
            source,
        }),
    }
}

/// KubeOpenCodeConfig `cleanup.maxRetainedTasks`: the oldest finished Tasks of the namespace
/// beyond the limit are deleted.
async fn prune(ctx: &Context, ns: &str) -> Result<(), ReconcileError> {
    let cleanup = super::super::agent::cluster_config(ctx)
        .cleanup
        .unwrap_or_default();
    let Some(max) = cleanup
        .max_retained_tasks
        .and_then(|m| usize::try_from(m).ok())
    else {
        return Ok(());
    };
    let mut finished: Vec<(Option<Timestamp>, Arc<Task>)> = ctx
        .stores
        .tasks
        .state()
        .into_iter()
        .filter(|t| t.namespace().as_deref() == Some(ns) && t.metadata.deletion_timestamp.is_none())
        .filter_map(|t| {
            let status = ctx.task_statuses.current(&t);
            status
                .phase
                .filter(|p| p.is_finished())
                .map(|_| (status.completion_time.map(|c| c.0), t))
        })
        .collect();
    if finished.len() <= max {
        return Ok(());
    }
    finished.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| a.1.name_any().cmp(&b.1.name_any()))
    });
    let excess = finished.len() - max;
    for (_, task) in finished.into_iter().take(excess) {
        delete(ctx, &task).await?;
    }
    Ok(())
}
