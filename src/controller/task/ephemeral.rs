//! A templateRef Task: an OpenCode server of its own in `<task>-pod`, built from the
//! AgentTemplate with the Task's contexts (see [`pod::ephemeral_server`]). Once the server is
//! Ready the controller creates the session (titled as an agentRef Task's) and sends the
//! prompt through the apiserver's pod proxy; the answer is read from the session when its
//! turn has ended, then the pod is deleted. The outcome comes from the server, as for
//! agentRef, and no client process can hang the Task.
//!
//! A restart at any point is safe: the session is found again by its title, and the prompt is
//! sent only to a session without a user message that the status does not record as prompted.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::outcome::{Outcome, judge, summary};
use super::running::{owned_by, pod_failure};
use super::{
    Deadline, ReconcileError, create, deadline, delete_pod, finish, object, pending,
    requeue_within, status,
};
use crate::api::task::{SessionInfo, Task, TaskPhase, TaskStatus};
use crate::cluster::pods::{container_statuses, pod_ready};
use crate::controller::agent::password::{new_password, secret_string};
use crate::controller::conditions::Verdict;
use crate::controller::{Context, pod, stores};
use crate::opencode::client::ServerProxy;

/// How often a running turn is looked at: the answer is read from the session, not waited
/// for on a stream, so a slow poll costs one pod-proxy request per Task.
const TURN_POLL: Duration = Duration::from_secs(2);
/// How often a Task whose AgentTemplate is missing looks again (templates do not wake Tasks).
const TEMPLATE_RETRY: Duration = Duration::from_secs(5);

/// A templateRef Task that has not started: its template found, its spec checked, then
/// Running (its pod is made by the next pass).
pub(super) async fn start(
    ctx: &Context,
    task: &Task,
    status: TaskStatus,
) -> Result<Action, ReconcileError> {
    let ns = task.namespace().unwrap_or_default();
    let generation = task.metadata.generation.unwrap_or(0);
    let template_name = task
        .spec
        .template_ref
        .as_ref()
        .map(|r| r.name.clone())
        .unwrap_or_default();
    let Some(spec) = server_spec(ctx, task, &ns, &template_name) else {
        let verdict = Verdict::new(
            "Queued",
            true,
            "TemplateNotFound",
            format!(
                "AgentTemplate {template_name:?} not found in namespace {ns:?}: create it, or fix spec.templateRef"
            ),
        );
        let pending = TaskStatus {
            template_ref: task.spec.template_ref.clone(),
            ..pending(task, status, verdict)
        };
        status::write(ctx, task, pending).await?;
        return Ok(Action::requeue(TEMPLATE_RETRY));
    };
    if let Err(invalid) = pod::validate(&spec) {
        let message = format!("AgentTemplate {template_name}: {}", invalid.message);
        let failed = finish::failed(task, &status, "InvalidSpec", &message);
        return finish::write_final(ctx, task, failed).await;
    }
    let running = TaskStatus {
        observed_generation: Some(generation),
        phase: Some(TaskPhase::Running),
        queue_position: None,
        template_ref: task.spec.template_ref.clone(),
        start_time: Some(Time(Timestamp::now())),
        session: Some(SessionInfo {
            title: Some(pod::task_session_title(task)),
            ..Default::default()
        }),
        conditions: Some(status::with_conditions(
            status.conditions.as_deref().unwrap_or_default(),
            &[Verdict::new(
                "Queued",
                false,
                "Admitted",
                format!("runs on a server of its own from AgentTemplate {template_name}"),
            )],
            generation,
        )),
        ..status
    };
    status::write(ctx, task, running).await?;
    // The status write's watch event brings the Task back, Running.
    Ok(Action::await_change())
}

/// The spec of the Task's server: the template's (merged as an Agent's would be), the
/// cluster's proxy, and the Task's contexts after the template's.
fn server_spec(
    ctx: &Context,
    task: &Task,
    ns: &str,
    template: &str,
) -> Option<crate::api::AgentSpec> {
    let template = stores::get(&ctx.stores.templates, ns, template)?;
    let merged = pod::effective_spec(&Default::default(), Some(&template.spec));
    let cluster = crate::controller::agent::cluster_config(ctx);
    Some(pod::with_cluster_proxy(
        pod::task_spec(&merged, task),
        &cluster,
    ))
}

/// A Running templateRef Task: its objects made once, the prompt sent once its server is
/// Ready, the outcome read when the turn ends; stop and timeout abort the turn.
pub(super) async fn step(
    ctx: &Context,
    task: &Task,
    status: TaskStatus,
) -> Result<Action, ReconcileError> {
    let ns = task.namespace().unwrap_or_default();
    let task_name = task.name_any();
    let pod_name = pod::task_pod_name(&task_name);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let until_timeout = match deadline(task, &status, Timestamp::now()) {
        Deadline::Stop(reason, message) => {
            return stop(ctx, task, status, reason, &message).await;
        }
        Deadline::Until(until) => until,
    };
    let poll = |every| requeue_within(until_timeout, every);

    if status.pod_name.is_none() {
        let template = status
            .template_ref
            .as_ref()
            .or(task.spec.template_ref.as_ref())
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let Some(spec) = server_spec(ctx, task, &ns, &template) else {
            let message =
                format!("AgentTemplate {template:?} was deleted before the Task's pod was made");
            let failed = finish::failed(task, &status, "TemplateNotFound", &message);
            return finish::write_final(ctx, task, failed).await;
        };
        create_server(ctx, task, &spec).await?;
        let next = TaskStatus {
            pod_name: Some(pod_name),
            ..status
        };
        status::write(ctx, task, next).await?;
        return Ok(poll(TURN_POLL));
    }
    let cached = stores::get(&ctx.stores.task_pods, &ns, &pod_name);
    let found = match cached {
        Some(pod) => Some((*pod).clone()),
        // The cache may not have seen a pod made moments ago: ask before failing.
        None => pods
            .get_opt(&pod_name)
            .await
            .map_err(|source| ReconcileError::Read {
                object: format!("Pod {ns}/{pod_name}"),
                source,
            })?,
    };
    let pod = match found {
        Some(pod) if owned_by(&pod, task) && pod.metadata.deletion_timestamp.is_none() => pod,
        _ => {
            let message = format!("pod {pod_name} was deleted while the Task ran");
            let failed = finish::failed(task, &status, "PodDeleted", &message);
            return finish::write_final(ctx, task, failed).await;
        }
    };
    if pod_phase(&pod) == "Failed" || server_exited(&pod) {
        let message = format!(
            "the server in pod {pod_name} stopped: {}",
            pod_failure(&pod)
        );
        let failed = finish::failed(task, &status, "PodFailed", &message);
        return end(ctx, task, failed, &pod_name).await;
    }
    if !pod_ready(&pod) {
        // The pod's changes wake the Task; the poll guards the timeout.
        return Ok(until_timeout.map_or_else(Action::await_change, Action::requeue));
    }
    let Some(proxy) = server(ctx, &pod, &ns).await? else {
        let message = format!(
            "Secret {} of the Task's server is gone",
            pod::task_auth_secret_name(&task_name)
        );
        let failed = finish::failed(task, &status, "PodFailed", &message);
        return end(ctx, task, failed, &pod_name).await;
    };
    let server_error = |source| ReconcileError::Server {
        object: object(task),
        source,
    };
    let title = pod::task_session_title(task);
    let Some(session_id) = status.session.as_ref().and_then(|s| s.id.clone()) else {
        // Not prompted yet, or prompted just before a restart: the title finds the session.
        let session = match proxy.session_titled(&title).await.map_err(server_error)? {
            Some(session) => session,
            None => proxy.create_session(&title).await.map_err(server_error)?,
        };
        let messages = proxy.messages(&session.id).await.map_err(server_error)?;
        if !messages.iter().any(|m| m.info.role == "user") {
            let prompt = task.spec.description.as_deref().unwrap_or_default();
            proxy
                .prompt_async(&session.id, prompt)
                .await
                .map_err(server_error)?;
        }
        let next = TaskStatus {
            session: Some(SessionInfo {
                id: Some(session.id),
                title: Some(title),
                summary: None,
            }),
            ..status
        };
        status::write(ctx, task, next).await?;
        return Ok(poll(TURN_POLL));
    };
    let messages = proxy.messages(&session_id).await.map_err(server_error)?;
    let with_session = TaskStatus {
        session: Some(SessionInfo {
            id: Some(session_id.clone()),
            title: Some(title),
            summary: Some(summary(&messages)),
        }),
        ..status
    };
    let done = match judge(&messages) {
        Outcome::Answered { result } => finish::completed(task, &with_session, result),
        Outcome::Failed { message } => finish::failed(task, &with_session, "ModelError", &message),
        Outcome::Aborted => finish::failed(
            task,
            &with_session,
            "Aborted",
            &format!("session {session_id} was aborted on the server"),
        ),
        Outcome::Unfinished => return Ok(poll(TURN_POLL)),
    };
    end(ctx, task, done, &pod_name).await
}

/// Writes the final status, then deletes the pod: its server has nothing more to do.
async fn end(
    ctx: &Context,
    task: &Task,
    final_status: TaskStatus,
    pod_name: &str,
) -> Result<Action, ReconcileError> {
    let action = finish::write_final(ctx, task, final_status).await?;
    delete_pod(ctx, &task.namespace().unwrap_or_default(), pod_name).await?;
    Ok(action)
}

/// Stops the Task: its turn aborted on its server (when it is up), the pod deleted,
/// Completed with Stopped.
async fn stop(
    ctx: &Context,
    task: &Task,
    status: TaskStatus,
    reason: &str,
    message: &str,
) -> Result<Action, ReconcileError> {
    let ns = task.namespace().unwrap_or_default();
    let pod_name = pod::task_pod_name(&task.name_any());
    if let Some(pod) = stores::get(&ctx.stores.task_pods, &ns, &pod_name)
        && owned_by(&pod, task)
        && pod_ready(&pod)
        && let Some(id) = status.session.as_ref().and_then(|s| s.id.clone())
    {
        match server(ctx, &pod, &ns).await {
            Ok(Some(proxy)) => {
                if let Err(e) = proxy.abort(&id).await {
                    tracing::warn!(task = %object(task), "could not abort the session: {e}");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(task = %object(task), "could not abort the session: {e}"),
        }
    }
    let stopped = finish::stopped(task, &status, reason, message);
    end(ctx, task, stopped, &pod_name).await
}

/// The server of a templateRef Task's pod through the apiserver's pod proxy: the front's port
/// and the server's working directory from the pod, the password from the Task's Secret.
/// `None` when the pod is not one of ours or the Secret holds no password.
pub async fn task_server(client: &kube::Client, pod: &Pod) -> kube::Result<Option<ServerProxy>> {
    let ns = pod.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = secrets.get_opt(&auth_secret_of(pod)).await?;
    Ok(server_with(client, pod, secret.as_ref()))
}

/// The name of the Secret that holds the password of the server in `pod`.
fn auth_secret_of(pod: &Pod) -> String {
    pod::task_auth_secret_name(pod.labels().get(pod::TASK_LABEL).map_or("", |t| t))
}

/// The server in `pod`, with the password from `secret`.
fn server_with(client: &kube::Client, pod: &Pod, secret: Option<&Secret>) -> Option<ServerProxy> {
    let (port, workspace) = pod::ephemeral_endpoint(pod)?;
    let password = secret
        .and_then(|s| secret_string(s, pod::PASSWORD_KEY))
        .filter(|p| !p.is_empty())?;
    Some(ServerProxy::pod(
        client.clone(),
        &pod.namespace().unwrap_or_default(),
        &pod.name_any(),
        port,
        &password,
        &workspace,
    ))
}

/// The server of a running turn, with the password from the cache (a turn is looked at every
/// [`TURN_POLL`]); the API is asked only when the cache has not seen the Secret yet.
async fn server(ctx: &Context, pod: &Pod, ns: &str) -> Result<Option<ServerProxy>, ReconcileError> {
    if let Some(secret) = stores::get(&ctx.stores.task_secrets, ns, &auth_secret_of(pod)) {
        return Ok(server_with(&ctx.client, pod, Some(&secret)));
    }
    task_server(&ctx.client, pod)
        .await
        .map_err(|source| ReconcileError::Read {
            object: format!("Secret {ns}/{}", auth_secret_of(pod)),
            source,
        })
}

/// Makes the Task's Secret, context ConfigMap and pod; what exists already (a restart between
/// create and status) is kept.
async fn create_server(
    ctx: &Context,
    task: &Task,
    spec: &crate::api::AgentSpec,
) -> Result<(), ReconcileError> {
    let ns = task.namespace().unwrap_or_default();
    let password =
        new_password().map_err(|e| ReconcileError::Randomness(format!("{}: {e}", object(task))))?;
    create(ctx, &ns, &pod::task_auth_secret(task, &password)).await?;
    let settings = ctx
        .settings
        .with_cluster_config(&crate::controller::agent::cluster_config(ctx));
    let server = pod::ephemeral_server(task, spec, &settings);
    if let Some(config_map) = &server.context_config_map {
        create::<ConfigMap>(ctx, &ns, config_map).await?;
    }
    create(ctx, &ns, &server.pod).await
}

fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Whether the server or the front ended (restartPolicy Never: they do not come back).
fn server_exited(pod: &Pod) -> bool {
    container_statuses(pod).any(|c| {
        (c.name == pod::SERVER_CONTAINER || c.name == pod::FRONT_CONTAINER)
            && c.state.as_ref().is_some_and(|s| s.terminated.is_some())
    })
}
