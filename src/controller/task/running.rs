//! A Running Task: its pod made once, watched until it ends, then the outcome read from the
//! session on the server. The stop annotation and the timeout abort the session first; a pod
//! that vanished fails the Task.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::outcome::{Outcome, judge, summary};
use super::prompt::{PromptInputs, Resolved, compose};
use super::{
    Deadline, FINALIZER, ReconcileError, Target, create, deadline, delete_pod, finish, object,
    patch_finalizers, requeue_within, server, status, target,
};
use crate::api::context::ContextType;
use crate::api::task::{SessionInfo, Task, TaskStatus};
use crate::cluster::pods::container_statuses;
use crate::controller::{Context, pod, stores};
use crate::opencode::client::ServerProxy;

/// How often an ended pod's session is read again while the server still writes its answer.
const UNFINISHED_RETRY: Duration = Duration::from_secs(3);
/// How long a Task's client may run before the session is asked whether the turn is over.
const LINGER: Duration = Duration::from_secs(30);
/// How often a lingering client's session is asked again.
const LINGER_POLL: Duration = Duration::from_secs(15);

pub(super) async fn step(
    ctx: &Context,
    task: &Task,
    status: TaskStatus,
) -> Result<Action, ReconcileError> {
    let ns = task.namespace().unwrap_or_default();
    let agent_name = status
        .agent_ref
        .as_ref()
        .or(task.spec.agent_ref.as_ref())
        .map(|r| r.name.clone())
        .unwrap_or_default();
    let Some(target) = target(ctx, &ns, &agent_name) else {
        let failed = finish::failed(
            task,
            &status,
            "AgentNotFound",
            &format!("Agent {agent_name:?} was deleted while the Task ran"),
        );
        return finish::write_final(ctx, task, failed).await;
    };
    let until_timeout = match deadline(task, &status, Timestamp::now()) {
        Deadline::Stop(reason, message) => {
            return stop(ctx, task, &target, status, reason, &message).await;
        }
        Deadline::Until(until) => until,
    };
    let wait = || until_timeout.map_or_else(Action::await_change, Action::requeue);

    let pod_name = pod::task_pod_name(&task.name_any());
    let cached = stores::get(&ctx.stores.task_pods, &ns, &pod_name).filter(|p| owned_by(p, task));
    // Before the pod: from now on the session may be live on the server.
    add_finalizer(ctx, task).await?;
    if status.pod_name.is_none() {
        if cached.is_none() {
            create_pod(ctx, task, &target).await?;
        }
        let next = TaskStatus {
            pod_name: Some(pod_name),
            ..status
        };
        status::write(ctx, task, next).await?;
        return Ok(wait());
    }
    let pod = match cached {
        // Being deleted (not by us: a stop ends the Task first): its client is going, and the
        // grace period may be long.
        Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
            return pod_deleted(ctx, task, &target, &status, &pod_name).await;
        }
        Some(pod) => pod,
        None => {
            // The cache may not have seen a pod made moments ago: ask before failing.
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            match pods.get_opt(&pod_name).await {
                Ok(Some(pod))
                    if owned_by(&pod, task) && pod.metadata.deletion_timestamp.is_none() =>
                {
                    std::sync::Arc::new(pod)
                }
                Ok(_) => return pod_deleted(ctx, task, &target, &status, &pod_name).await,
                Err(source) => {
                    return Err(ReconcileError::Read {
                        object: format!("Pod {ns}/{pod_name}"),
                        source,
                    });
                }
            }
        }
    };
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default();
    // A client still running long after it started may be stuck after the answer (seen with
    // 1.18.33): past LINGER the session itself says whether the turn is over.
    let lingering = !matches!(phase, "Succeeded" | "Failed");
    let ran = super::running_for(&status, Timestamp::now());
    let poll = |every| requeue_within(until_timeout, every);
    if lingering && ran < LINGER {
        return Ok(poll(LINGER - ran));
    }
    let Some(proxy) = server(ctx, &ns, &target) else {
        let failed = finish::failed(
            task,
            &status,
            "AgentNotFound",
            &format!("the password Secret of Agent {agent_name} is gone"),
        );
        return finish::write_final(ctx, task, failed).await;
    };
    let title = pod::task_session_title(task);
    let server_error = |source| ReconcileError::Server {
        object: object(task),
        source,
    };
    let found = proxy.session_titled(&title).await.map_err(server_error)?;
    if lingering {
        let busy = match &found {
            Some(session) => proxy
                .session_statuses()
                .await
                .map_err(server_error)?
                .get(&session.id)
                .is_some_and(|s| s.is_busy()),
            None => true,
        };
        if busy {
            return Ok(poll(LINGER_POLL));
        }
    }
    let Some(session) = found else {
        let message = if phase == "Failed" {
            format!(
                "pod {pod_name} failed before the server had a session: {}",
                pod_failure(&pod)
            )
        } else {
            format!("pod {pod_name} ended, but the server has no session titled {title:?}")
        };
        let failed = finish::failed(task, &status, "PodFailed", &message);
        return finish::write_final(ctx, task, failed).await;
    };
    let messages = proxy.messages(&session.id).await.map_err(server_error)?;
    let session_info = SessionInfo {
        id: Some(session.id.clone()),
        title: Some(title),
        summary: Some(summary(&messages)),
    };
    let with_session = TaskStatus {
        session: Some(session_info),
        ..status
    };
    let done = match judge(&messages) {
        Outcome::Answered { result } => finish::completed(task, &with_session, result),
        Outcome::Failed { message } => finish::failed(task, &with_session, "ModelError", &message),
        Outcome::Aborted => finish::failed(
            task,
            &with_session,
            "Aborted",
            &format!("session {} was aborted on the server", session.id),
        ),
        Outcome::Unfinished if phase == "Failed" => finish::failed(
            task,
            &with_session,
            "PodFailed",
            &format!("pod {pod_name} failed mid-answer: {}", pod_failure(&pod)),
        ),
        Outcome::Unfinished if lingering => return Ok(poll(LINGER_POLL)),
        // The client left before the server wrote the end of the answer.
        Outcome::Unfinished => return Ok(Action::requeue(UNFINISHED_RETRY)),
    };
    let action = finish::write_final(ctx, task, done).await?;
    if lingering {
        tracing::info!(task = %object(task), "the turn is over but pod {pod_name}'s client still runs: deleting it");
        delete_pod(ctx, &ns, &pod_name).await?;
    }
    Ok(action)
}

/// The Task's pod went while it ran: its session is aborted and the Task fails.
async fn pod_deleted(
    ctx: &Context,
    task: &Task,
    target: &Target,
    status: &TaskStatus,
    pod_name: &str,
) -> Result<Action, ReconcileError> {
    abort_session(ctx, target, status).await;
    let failed = finish::failed(
        task,
        status,
        "PodDeleted",
        &format!("pod {pod_name} was deleted while the Task ran; its session was aborted"),
    );
    finish::write_final(ctx, task, failed).await
}

/// Whether `pod` is this Task's (not one of an earlier Task of the same name).
pub(super) fn owned_by(pod: &Pod, task: &Task) -> bool {
    pod.owner_references()
        .iter()
        .any(|o| Some(&o.uid) == task.metadata.uid.as_ref())
}

/// What the pod's container said when it failed.
pub(super) fn pod_failure(pod: &Pod) -> String {
    let terminated = container_statuses(pod).find_map(|c| {
        c.state
            .as_ref()?
            .terminated
            .as_ref()
            .filter(|t| t.exit_code != 0)
            .map(|t| (c.name.clone(), t.clone()))
    });
    match terminated {
        Some((name, t)) => {
            let mut text = format!("container {name} exited with code {}", t.exit_code);
            if let Some(message) = t.message.filter(|m| !m.is_empty()) {
                text.push_str(&format!(": {}", message.trim()));
            }
            text
        }
        None => pod
            .status
            .as_ref()
            .and_then(|s| s.message.clone())
            .unwrap_or_else(|| "no container reported why".to_string()),
    }
}

/// The prompt with the Task's contexts, reading the ConfigMaps they name.
async fn task_prompt(
    ctx: &Context,
    task: &Task,
    target: &Target,
) -> Result<String, ReconcileError> {
    let ns = task.namespace().unwrap_or_default();
    let contexts = task.spec.contexts.clone().unwrap_or_default();
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let mut resolved = Vec::with_capacity(contexts.len());
    for item in &contexts {
        let entry = match (item.type_, &item.config_map) {
            (ContextType::ConfigMap, Some(source)) => {
                let found = config_maps
                    .get_opt(&source.name)
                    .await
                    .map_err(|source_err| ReconcileError::Read {
                        object: format!("ConfigMap {ns}/{}", source.name),
                        source: source_err,
                    })?;
                let data: Option<BTreeMap<String, String>> = found.map(|cm| {
                    let data = cm.data.unwrap_or_default();
                    match &source.key {
                        Some(key) => data.into_iter().filter(|(k, _)| k == key).collect(),
                        None => data,
                    }
                });
                Resolved::ConfigMap(data.filter(|d| !d.is_empty()))
            }
            _ => Resolved::Inline,
        };
        resolved.push(entry);
    }
    let workspace = pod::workspace_dir(&target.spec);
    Ok(compose(&PromptInputs {
        description: task.spec.description.as_deref().unwrap_or_default(),
        contexts: &contexts,
        resolved: &resolved,
        agent: &target.agent.name_any(),
        namespace: &ns,
        workspace: &workspace,
    }))
}

/// Creates `<task>-pod`; one that exists already (a restart between create and status) is
/// kept.
async fn create_pod(ctx: &Context, task: &Task, target: &Target) -> Result<(), ReconcileError> {
    let ns = task.namespace().unwrap_or_default();
    let prompt = task_prompt(ctx, task, target).await?;
    let agent_name = target.agent.name_any();
    let attach = pod::AttachTarget {
        agent: &agent_name,
        spec: &target.spec,
    };
    let settings = ctx
        .settings
        .with_cluster_config(&super::super::agent::cluster_config(ctx));
    let task_pod = pod::attach_pod(task, &attach, &prompt, &settings);
    create(ctx, &ns, &task_pod).await
}

/// Adds [`FINALIZER`] (deleting the Task then aborts its session first).
async fn add_finalizer(ctx: &Context, task: &Task) -> Result<(), ReconcileError> {
    if task.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let mut finalizers: Vec<&str> = task.finalizers().iter().map(String::as_str).collect();
    finalizers.push(FINALIZER);
    patch_finalizers(ctx, task, &finalizers)
        .await
        .map_err(|source| ReconcileError::Write {
            action: "adding the finalizer to",
            object: object(task),
            source,
        })
}

/// Aborts the Task's session on the server, if it has one; a server that does not answer is
/// logged (the Task ends regardless).
pub(super) async fn abort_session(ctx: &Context, target: &Target, status: &TaskStatus) {
    let ns = target.agent.namespace().unwrap_or_default();
    let Some(proxy) = server(ctx, &ns, target) else {
        return;
    };
    let Some(title) = status.session.as_ref().and_then(|s| s.title.clone()) else {
        return;
    };
    if let Err(e) = abort_titled(&proxy, &title).await {
        tracing::warn!(agent = %format!("{ns}/{}", target.agent.name_any()), session = %title, "could not abort the session: {e}");
    }
}

async fn abort_titled(
    proxy: &ServerProxy,
    title: &str,
) -> Result<(), crate::opencode::client::ProxyError> {
    if let Some(session) = proxy.session_titled(title).await? {
        proxy.abort(&session.id).await?;
    }
    Ok(())
}

/// Stops a Running Task: aborts the session, deletes the pod, Completed with Stopped.
async fn stop(
    ctx: &Context,
    task: &Task,
    target: &Target,
    status: TaskStatus,
    reason: &str,
    message: &str,
) -> Result<Action, ReconcileError> {
    abort_session(ctx, target, &status).await;
    let ns = task.namespace().unwrap_or_default();
    delete_pod(ctx, &ns, &pod::task_pod_name(&task.name_any())).await?;
    let stopped = finish::stopped(task, &status, reason, message);
    finish::write_final(ctx, task, stopped).await
}
