//! The Agent reconciler: reads the Agent (and its AgentTemplate), builds the server's objects
//! with the pure builders in `server_pod`, applies them, and reports status: `ServerReady` from
//! the Deployment, `ServerHealthy` from a real health check through the apiserver service
//! proxy. Status is written only when it changed, so an idle cluster sees no writes; Events
//! are published only when the Ready condition (or the list of unsupported fields) changes.
//! With `spec.standby`, an Agent idle for `idleTimeout` gets `spec.suspend: true`, and a Task
//! arriving for it while the standby clock (not a person) holds it suspended sets it back.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;

use super::Context;
use super::{git_remote, server_pod};
use crate::api::agent::GitSyncStatus;
use crate::api::config::CONFIG_NAME;
use crate::api::task::Task;
use crate::api::{
    Agent, AgentPhase, AgentStatus, AgentTemplate, KubeOpenCodeConfig, KubeOpenCodeConfigSpec,
};
use crate::duration;
use crate::opencode::client::{ProxyError, ServerProxy};

/// Field manager of everything the reconciler writes.
pub const FIELD_MANAGER: &str = "kubeoc-controller";

/// Errors that make a reconcile retry.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Other(String),
}

fn kube_err(context: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
    let context = context.into();
    move |source| ReconcileError::Kube { context, source }
}

/// One condition as we compute it, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    type_: &'static str,
    ok: bool,
    reason: String,
    message: String,
}

impl Verdict {
    fn new(type_: &'static str, ok: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            ok,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Conditions with `lastTransitionTime` kept from `existing` when the status did not flip, so
/// an unchanged state renders byte-for-byte the same status (and is not written).
fn conditions(existing: &[Condition], verdicts: &[Verdict], generation: i64) -> Vec<Condition> {
    verdicts
        .iter()
        .map(|v| {
            let status = if v.ok { "True" } else { "False" }.to_string();
            let previous = existing.iter().find(|c| c.type_ == v.type_);
            let since = match previous {
                Some(c) if c.status == status => c.last_transition_time.clone(),
                _ => Time(Timestamp::now()),
            };
            Condition {
                type_: v.type_.to_string(),
                status,
                reason: v.reason.clone(),
                message: v.message.clone(),
                observed_generation: Some(generation),
                last_transition_time: since,
            }
        })
        .collect()
}

/// The generated server password: 32 random bytes, URL-safe base64.
fn new_password() -> Result<String, ReconcileError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        ReconcileError::Other(format!("no randomness for the server password: {e}"))
    })?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A Secret's value under `key`, as text.
fn secret_string(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

/// Reads the server password, creating `<agent>-server-auth` once. Never logged.
async fn ensure_password(ctx: &Context, agent: &Agent, ns: &str) -> Result<String, ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let name = server_pod::auth_secret_name(&agent.name_any());
    for _ in 0..2 {
        let existing = secrets
            .get_opt(&name)
            .await
            .map_err(kube_err(format!("reading Secret {ns}/{name}")))?;
        let stored = existing
            .and_then(|s| secret_string(&s, server_pod::PASSWORD_KEY))
            .filter(|p| !p.is_empty());
        if let Some(password) = stored {
            return Ok(password);
        }
        let password = new_password()?;
        let secret = server_pod::auth_secret(agent, &password);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match secrets.create(&params, &secret).await {
            Ok(_) => return Ok(password),
            // Another reconcile created it first: read theirs.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(kube_err(format!("creating Secret {ns}/{name}"))(e)),
        }
    }
    Err(ReconcileError::Other(format!(
        "Secret {ns}/{name} exists without a {:?} key; delete it to have a new password generated",
        server_pod::PASSWORD_KEY
    )))
}

async fn apply<K>(ctx: &Context, ns: &str, object: &K) -> Result<K, ReconcileError>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let name = object.meta().name.clone().unwrap_or_default();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    // A no-op apply is still a write request: skip it when the live object already has every
    // field we would set, so a steady cluster sees no writes from us.
    let live = api
        .get_opt(&name)
        .await
        .map_err(kube_err(format!("reading {kind} {ns}/{name}")))?;
    if let Some(live) = live {
        let (desired, current) = (serde_json::to_value(object), serde_json::to_value(&live));
        if let (Ok(desired), Ok(current)) = (desired, current)
            && contains(&current, &desired)
        {
            return Ok(live);
        }
    }
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(kube_err(format!("applying {kind} {ns}/{name}")))
}

/// Whether `live` has every field of `desired` with the same value (server defaults and fields
/// of other managers may add more). Lists must match element by element.
fn contains(live: &serde_json::Value, desired: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| l.get(k).is_some_and(|lv| contains(lv, dv))),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| contains(lv, dv))
        }
        (l, d) => l == d,
    }
}

/// The first thing keeping a server pod from running, in words that stay the same while the
/// problem does (no restart counts or times, so the status is not rewritten on every pass).
fn pod_problem(pod: &Pod) -> Option<String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let status = pod.status.as_ref()?;
    let first_line = |text: &str| -> String {
        let line = text.lines().next().unwrap_or_default();
        line.chars().take(200).collect()
    };
    for init in status.init_container_statuses.iter().flatten() {
        let state = init.state.as_ref();
        let failed = state
            .and_then(|s| s.terminated.as_ref())
            .filter(|t| t.exit_code != 0)
            .or_else(|| {
                // Restarting after a failure: the failure is in lastState.
                state
                    .and_then(|s| s.waiting.as_ref())
                    .filter(|w| w.reason.as_deref() == Some("CrashLoopBackOff"))
                    .and(init.last_state.as_ref().and_then(|s| s.terminated.as_ref()))
            });
        if let Some(terminated) = failed {
            return Some(format!(
                "init container {:?} failed with exit code {} (see: kubectl logs -n {namespace} {pod_name} -c {})",
                init.name, terminated.exit_code, init.name
            ));
        }
        if let Some(waiting) = state.and_then(|s| s.waiting.as_ref())
            && let Some(reason) = waiting
                .reason
                .as_deref()
                .filter(|r| *r != "PodInitializing")
        {
            let detail = waiting
                .message
                .as_deref()
                .map(first_line)
                .unwrap_or_default();
            return Some(
                format!("init container {:?}: {reason} {detail}", init.name)
                    .trim_end()
                    .to_string(),
            );
        }
    }
    for container in status.container_statuses.iter().flatten() {
        let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let Some(reason) = waiting
            .reason
            .as_deref()
            .filter(|r| *r != "ContainerCreating")
        else {
            continue;
        };
        let detail = waiting
            .message
            .as_deref()
            .map(first_line)
            .unwrap_or_default();
        let hint = if reason == "CrashLoopBackOff" {
            format!(
                " (see: kubectl logs -n {namespace} {pod_name} -c {} --previous)",
                container.name
            )
        } else {
            String::new()
        };
        return Some(
            format!("container {:?}: {reason} {detail}", container.name)
                .trim_end()
                .to_string()
                + &hint,
        );
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| {
            format!(
                "pod {pod_name} cannot be scheduled: {}",
                first_line(c.message.as_deref().unwrap_or("no reason given"))
            )
        })
}

fn deployment_available(deployment: &Deployment) -> (bool, String) {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let Some(status) = &deployment.status else {
        return (false, "the Deployment has no status yet".into());
    };
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    if status.observed_generation.unwrap_or(0) < generation {
        return (
            false,
            "the Deployment controller has not seen the latest spec yet".into(),
        );
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated >= wanted && available >= wanted {
        (
            true,
            format!("{available}/{wanted} server replicas available"),
        )
    } else {
        (
            false,
            format!("{available}/{wanted} server replicas available, {updated} up to date"),
        )
    }
}

/// Reports an Agent that cannot run (`Ready=False` with `reason`), keeping the rest of its
/// status.
async fn report_not_ready(
    ctx: &Context,
    agent: &Agent,
    reason: &str,
    message: String,
) -> Result<(), ReconcileError> {
    let existing = agent.status.clone().unwrap_or_default();
    let generation = agent.metadata.generation.unwrap_or(0);
    let verdict = Verdict::new("Ready", false, reason, message);
    let existing_conditions = existing.conditions.clone().unwrap_or_default();
    let status = AgentStatus {
        observed_generation: Some(generation),
        phase: Some(AgentPhase::NotReady),
        ready: Some(false),
        conditions: Some(conditions(&existing_conditions, &[verdict], generation)),
        ..existing
    };
    write_status(ctx, agent, status).await
}

/// The cluster's KubeOpenCodeConfig (`cluster`), or defaults when there is none or this
/// controller may not read it (a namespaced install); the latter is said once.
async fn cluster_config(ctx: &Context) -> Result<KubeOpenCodeConfigSpec, ReconcileError> {
    static FORBIDDEN_SAID: std::sync::Once = std::sync::Once::new();
    let api: Api<KubeOpenCodeConfig> = Api::all(ctx.client.clone());
    match api.get_opt(CONFIG_NAME).await {
        Ok(config) => Ok(config.map(|c| c.spec).unwrap_or_default()),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            FORBIDDEN_SAID.call_once(|| {
                tracing::warn!(
                    "may not read KubeOpenCodeConfig {CONFIG_NAME:?} (cluster-scoped): using built-in cluster settings; grant get on kubeopencodeconfigs to use it"
                );
            });
            Ok(KubeOpenCodeConfigSpec::default())
        }
        Err(e) => Err(kube_err(format!(
            "reading KubeOpenCodeConfig {CONFIG_NAME}"
        ))(e)),
    }
}

/// Reconciles one Agent.
pub async fn reconcile(agent: Arc<Agent>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let ns = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    let generation = agent.metadata.generation.unwrap_or(0);
    let existing = agent.status.clone().unwrap_or_default();
    if agent.metadata.deletion_timestamp.is_some() {
        // The garbage collector is removing the children (foreground deletion keeps the Agent
        // until they are gone); applying them again would undo its work and could keep the
        // deletion from ever finishing.
        return Ok(Action::await_change());
    }

    let template = match &agent.spec.template_ref {
        Some(r) => {
            let api: Api<AgentTemplate> = Api::namespaced(ctx.client.clone(), &ns);
            let found = api
                .get_opt(&r.name)
                .await
                .map_err(kube_err(format!("reading AgentTemplate {ns}/{}", r.name)))?;
            if found.is_none() {
                let message = format!("AgentTemplate {:?} not found in namespace {ns:?}", r.name);
                report_not_ready(&ctx, &agent, "TemplateNotFound", message).await?;
                return Ok(Action::requeue(Duration::from_secs(30)));
            }
            found
        }
        None => None,
    };
    let cluster = cluster_config(&ctx).await?;
    let settings = ctx.settings.with_cluster_config(&cluster);
    let spec = server_pod::with_cluster_proxy(
        server_pod::effective_spec(&agent.spec, template.as_ref().map(|t| &t.spec)),
        &cluster,
    );
    let idle_timeout = match spec
        .standby
        .as_ref()
        .map(|s| duration::parse(&s.idle_timeout))
    {
        Some(Ok(timeout)) => Some(timeout),
        Some(Err(e)) => {
            let message = format!("spec.standby.idleTimeout: {e}");
            report_not_ready(&ctx, &agent, "InvalidSpec", message).await?;
            return Ok(Action::await_change());
        }
        None => None,
    };
    if let Err(invalid) = server_pod::validate(&spec) {
        report_not_ready(&ctx, &agent, "InvalidSpec", invalid.message.clone()).await?;
        return Ok(Action::await_change());
    }
    // Standby: a Task arriving for an Agent the idle clock suspended starts it again.
    if spec.standby.is_some() && suspended_by_standby(&agent) {
        let waiting = unfinished_tasks(&ctx, &ns, &name).await?;
        if let Some(task) = waiting.first() {
            resume_for_task(&ctx, &agent, &task.name_any()).await?;
            // The patch brings the Agent back through the watch with spec.suspend false.
            return Ok(Action::await_change());
        }
    }

    let password = ensure_password(&ctx, &agent, &ns).await?;
    let (git_sync_statuses, git_requeue) =
        rollout_commits(&ctx, &agent, &spec, &existing, &settings).await?;
    let mut settings = settings;
    settings.git_commits = git_sync_statuses
        .iter()
        .flatten()
        .filter_map(|s| Some((s.name.clone(), s.commit_hash.clone()?)))
        .collect();
    let objects = server_pod::build(&agent, &spec, &settings);
    if let Some(cm) = &objects.context_config_map {
        apply::<ConfigMap>(&ctx, &ns, cm).await?;
    }
    apply::<PersistentVolumeClaim>(&ctx, &ns, &objects.sessions_pvc).await?;
    if let Some(pvc) = &objects.workspace_pvc {
        apply::<PersistentVolumeClaim>(&ctx, &ns, pvc).await?;
    }
    let service = apply::<Service>(&ctx, &ns, &objects.service).await?;
    let deployment = apply::<Deployment>(&ctx, &ns, &objects.deployment).await?;

    let suspended = spec.suspend.unwrap_or(false);
    let (available, available_message) = deployment_available(&deployment);
    let server_ready = if suspended {
        Verdict::new(
            "ServerReady",
            false,
            "Suspended",
            "spec.suspend is true: the server is scaled to zero",
        )
    } else if available {
        Verdict::new(
            "ServerReady",
            true,
            "DeploymentAvailable",
            available_message,
        )
    } else {
        // Say why when a pod says so (a failed init container, a missing Secret, a crash).
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let selector = format!("{}={name}", server_pod::AGENT_LABEL);
        let problem = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(kube_err(format!(
                "listing the server pods of Agent {ns}/{name}"
            )))?
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .find_map(pod_problem);
        let message = match problem {
            Some(problem) => format!("{available_message}: {problem}"),
            None => available_message,
        };
        Verdict::new("ServerReady", false, "DeploymentUnavailable", message)
    };
    let workspace = spec.workspace_dir.clone().unwrap_or_default();
    let proxy = ServerProxy::new(
        ctx.client.clone(),
        &ns,
        &service.name_any(),
        &password,
        &workspace,
    );
    let server_healthy = if !server_ready.ok {
        Verdict::new(
            "ServerHealthy",
            false,
            "NotChecked",
            "the server is not ready",
        )
    } else {
        match proxy.health().await {
            Ok(h) if h.healthy => Verdict::new(
                "ServerHealthy",
                true,
                "Healthy",
                format!("OpenCode {} answers /global/health", h.version),
            ),
            Ok(h) => Verdict::new(
                "ServerHealthy",
                false,
                "Unhealthy",
                format!("OpenCode {} reports unhealthy", h.version),
            ),
            Err(ProxyError::Unauthorized) => Verdict::new(
                "ServerHealthy",
                false,
                "Unauthorized",
                format!("the server refused the password from Secret {name}-server-auth"),
            ),
            Err(e) => Verdict::new(
                "ServerHealthy",
                false,
                "Unreachable",
                format!("health check through the service proxy failed: {e}"),
            ),
        }
    };
    let ready = server_ready.ok && server_healthy.ok;
    let (ready_reason, ready_message) = if ready {
        (
            "ServerHealthy",
            "the OpenCode server is available and healthy".to_string(),
        )
    } else if suspended {
        ("Suspended", server_ready.message.clone())
    } else if server_ready.ok {
        ("ServerUnhealthy", server_healthy.message.clone())
    } else {
        ("ServerNotReady", server_ready.message.clone())
    };
    let mut verdicts = vec![
        server_ready.clone(),
        server_healthy,
        Verdict::new("Ready", ready, ready_reason, ready_message),
    ];
    let unsupported = server_pod::unsupported(&spec);
    if !unsupported.is_empty() {
        verdicts.push(Verdict::new(
            "Unsupported",
            true,
            "FieldsIgnored",
            format!("kubeoc does not support yet: {}", unsupported.join("; ")),
        ));
    }
    let phase = if suspended {
        AgentPhase::Suspended
    } else if ready {
        AgentPhase::Ready
    } else if server_ready.ok {
        AgentPhase::Degraded
    } else {
        AgentPhase::NotReady
    };
    let port = server_pod::server_port(&spec);
    let existing_conditions = existing.conditions.clone().unwrap_or_default();

    // Standby: only a Ready server can be idle; suspended or starting servers start afresh.
    let mut idle_since = None;
    let mut standby_requeue = None;
    if let Some(timeout) = idle_timeout
        && ready
    {
        let now = Timestamp::now();
        let previous = existing.idle_since.as_ref().map(|t| t.0);
        match activity(&ctx, &ns, &name, &proxy).await {
            Ok(activity) => {
                idle_since = next_idle_since(previous, &activity, now);
                if let Some(since) = idle_since {
                    // A mark rounded up may lie up to a second ahead: not idle yet, then.
                    let idle_for =
                        Duration::try_from(now.duration_since(since)).unwrap_or_default();
                    if idle_for >= timeout {
                        let configured = spec.standby.as_ref().map(|s| s.idle_timeout.as_str());
                        suspend_for_standby(&ctx, &agent, since, configured.unwrap_or_default())
                            .await?;
                        idle_since = None;
                    } else {
                        standby_requeue = Some(timeout - idle_for + Duration::from_secs(1));
                    }
                }
            }
            Err(e) => {
                // Unknown activity never suspends: keep the clock where it was, look again soon.
                tracing::warn!(agent = %format!("{ns}/{name}"), "standby: could not read the server's activity: {e}");
                idle_since = previous;
                standby_requeue = Some(Duration::from_secs(10));
            }
        }
    }

    let status = AgentStatus {
        observed_generation: Some(generation),
        phase: Some(phase),
        ready: Some(ready),
        suspended: Some(suspended),
        deployment_name: deployment.metadata.name.clone(),
        service_name: service.metadata.name.clone(),
        url: Some(server_pod::service_url(
            &name,
            &ns,
            port,
            &settings.cluster_domain,
        )),
        conditions: Some(conditions(&existing_conditions, &verdicts, generation)),
        idle_since: idle_since.map(Time),
        git_sync_statuses,
        ..existing.clone()
    };
    write_status(&ctx, &agent, status).await?;
    let periodic = Duration::from_secs(60);
    Ok(if ready || suspended {
        let next = [standby_requeue, git_requeue].into_iter().flatten().min();
        Action::requeue(next.map_or(periodic, |d| d.min(periodic)))
    } else {
        Action::requeue(Duration::from_secs(3))
    })
}

/// Git contexts with sync policy Rollout: asks each remote (at most once per sync interval)
/// which commit its ref points to. Returns status.gitSyncStatuses, whose commits go into the
/// pod template (a new commit rolls the server), and when to ask again. A remote that cannot
/// be asked keeps the last commit and says so in the log; it never blocks the reconcile.
/// `lastSynced` moves only with the commit, so an unchanged remote costs no status write.
async fn rollout_commits(
    ctx: &Context,
    agent: &Agent,
    spec: &crate::api::AgentSpec,
    existing: &AgentStatus,
    settings: &server_pod::BuildSettings,
) -> Result<(Option<Vec<GitSyncStatus>>, Option<Duration>), ReconcileError> {
    let contexts = server_pod::rollout_contexts(spec);
    if contexts.is_empty() {
        return Ok((None, None));
    }
    let ns = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    let mut statuses = Vec::new();
    let mut next: Option<Duration> = None;
    for context in contexts {
        let previous = existing
            .git_sync_statuses
            .iter()
            .flatten()
            .find(|s| s.name == context.name)
            .cloned();
        let mut status = previous.unwrap_or_else(|| GitSyncStatus {
            name: context.name.clone(),
            ..GitSyncStatus::default()
        });
        let key = format!("{ns}/{name}/{}", context.name);
        let last_check = ctx
            .git_checks
            .lock()
            .ok()
            .and_then(|checks| checks.get(&key).copied());
        let due = last_check.is_none_or(|at| at.elapsed() >= context.interval);
        if due {
            let query = git_query(ctx, &ns, spec, &context, settings).await?;
            match git_remote::remote_commit(&query).await {
                Ok(commit) if status.commit_hash.as_deref() != Some(commit.as_str()) => {
                    tracing::info!(agent = %format!("{ns}/{name}"), context = %context.name, %commit, "git remote moved: rolling the server");
                    status.commit_hash = Some(commit);
                    status.last_synced = Some(Time(whole_second(Timestamp::now())));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    agent = %format!("{ns}/{name}"),
                    context = %context.name,
                    "sync policy Rollout: asking {} for {:?}: {e}",
                    crate::redact::redact_url(&context.git.repository),
                    query.git_ref
                ),
            }
            if let Ok(mut checks) = ctx.git_checks.lock() {
                checks.insert(key, std::time::Instant::now());
            }
        }
        let wait = match last_check {
            Some(at) if !due => context.interval.saturating_sub(at.elapsed()),
            _ => context.interval,
        };
        next = Some(next.map_or(wait, |n| n.min(wait)));
        statuses.push(status);
    }
    Ok((Some(statuses), next))
}

/// What `git ls-remote` needs for a context: its ref, the Secret's credentials, the Agent's
/// CA bundle and proxy.
async fn git_query(
    ctx: &Context,
    ns: &str,
    spec: &crate::api::AgentSpec,
    context: &server_pod::RolloutContext,
    settings: &server_pod::BuildSettings,
) -> Result<git_remote::RemoteQuery, ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut credentials = git_remote::GitCredentials::default();
    if let Some(reference) = &context.git.secret_ref {
        let secret = secrets
            .get_opt(&reference.name)
            .await
            .map_err(kube_err(format!("reading Secret {ns}/{}", reference.name)))?;
        if let Some(secret) = secret {
            credentials = git_remote::GitCredentials {
                username: secret_string(&secret, "username"),
                password: secret_string(&secret, "password"),
                ssh_key: secret_string(&secret, "ssh-privatekey"),
                known_hosts: secret_string(&secret, "ssh-known-hosts"),
            };
        }
    }
    let ca_pem = match spec
        .ca_bundle
        .as_ref()
        .and_then(server_pod::ca_bundle_source)
    {
        Some(server_pod::CaBundleSource::ConfigMap { name, key }) => {
            let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
            let map = maps
                .get_opt(name)
                .await
                .map_err(kube_err(format!("reading ConfigMap {ns}/{name}")))?;
            map.and_then(|m| m.data?.get(&key).cloned())
        }
        Some(server_pod::CaBundleSource::Secret { name, key }) => {
            let secret = secrets
                .get_opt(name)
                .await
                .map_err(kube_err(format!("reading Secret {ns}/{name}")))?;
            secret.and_then(|s| secret_string(&s, &key))
        }
        None => None,
    };
    Ok(git_remote::RemoteQuery {
        repository: context.git.repository.clone(),
        git_ref: server_pod::ref_or_head(&context.git.ref_),
        credentials,
        ca_pem,
        proxy_env: spec
            .proxy
            .as_ref()
            .map(|p| server_pod::proxy_variables(p, &settings.cluster_domain))
            .unwrap_or_default(),
    })
}

/// What keeps an Agent from being idle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Activity {
    /// Tasks of the Agent that have not finished, or sessions answering right now.
    busy: bool,
    /// The newest change to any session on the server (an attached user typing counts).
    last: Option<Timestamp>,
}

/// The Agent's Tasks that have not finished (waiting, queued or running), oldest first.
async fn unfinished_tasks(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Vec<Task>, ReconcileError> {
    let tasks: Api<Task> = Api::namespaced(ctx.client.clone(), ns);
    let mut unfinished: Vec<Task> = tasks
        .list(&ListParams::default())
        .await
        .map_err(kube_err(format!("listing Tasks in namespace {ns}")))?
        .items
        .into_iter()
        .filter(|t| t.spec.agent_ref.as_ref().is_some_and(|r| r.name == name))
        .filter(|t| {
            !t.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_finished())
        })
        .collect();
    unfinished.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
    });
    Ok(unfinished)
}

/// Whether spec.suspend was set by the standby clock: this controller alone owns the field
/// (per managedFields). A suspend by a person (`kubectl kubeoc agent suspend`, `kubectl
/// apply`, `kubectl patch`) is theirs to lift, so a Task does not resume it.
fn suspended_by_standby(agent: &Agent) -> bool {
    let owners: Vec<&str> = agent
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| entry.subresource.as_deref().unwrap_or_default().is_empty())
        .filter(|entry| {
            entry
                .fields_v1
                .as_ref()
                .is_some_and(|fields| fields.0["f:spec"].get("f:suspend").is_some())
        })
        .filter_map(|entry| entry.manager.as_deref())
        .collect();
    agent.spec.suspend == Some(true) && owners == [FIELD_MANAGER]
}

/// Lifts a standby suspension because `task` waits for the server.
async fn resume_for_task(ctx: &Context, agent: &Agent, task: &str) -> Result<(), ReconcileError> {
    let event = Event {
        type_: EventType::Normal,
        reason: "StandbyResumed".into(),
        note: Some(format!(
            "Task {task} is waiting for this Agent, which standby had suspended: set spec.suspend to false"
        )),
        action: "Resume".into(),
        secondary: None,
    };
    set_suspend(ctx, agent, false, event).await
}

/// Reads the Agent's unfinished Tasks and its server's sessions.
async fn activity(
    ctx: &Context,
    ns: &str,
    name: &str,
    proxy: &ServerProxy,
) -> Result<Activity, ReconcileError> {
    let unfinished = unfinished_tasks(ctx, ns, name).await?.len();
    let proxy_err = |e: ProxyError| ReconcileError::Other(e.to_string());
    let busy_sessions = proxy
        .session_statuses()
        .await
        .map_err(proxy_err)?
        .values()
        .filter(|s| s.is_busy())
        .count();
    let last = proxy
        .sessions()
        .await
        .map_err(proxy_err)?
        .iter()
        .map(|s| s.time.updated)
        .max()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map(whole_second);
    Ok(Activity {
        busy: unfinished > 0 || busy_sessions > 0,
        last,
    })
}

/// When the Agent has been idle since: unset while busy; moved forward by session activity
/// newer than the previous mark; `now` when it just became idle (so a resumed Agent gets a
/// full idleTimeout, whatever happened before it was suspended).
/// `t` rounded up to a whole second: status times carry seconds only, and a mark must be
/// stored exactly as computed (a sub-second mark compares newer than its stored copy, and a
/// truncated one would hide the activity that moved it).
fn whole_second(t: Timestamp) -> Timestamp {
    let rounded_up = t.as_second() + i64::from(t.subsec_nanosecond() > 0);
    Timestamp::from_second(rounded_up).unwrap_or(t)
}

fn next_idle_since(
    previous: Option<Timestamp>,
    activity: &Activity,
    now: Timestamp,
) -> Option<Timestamp> {
    if activity.busy {
        return None;
    }
    let now = whole_second(now);
    match (previous, activity.last) {
        (Some(since), Some(last)) if last > since => Some(last.min(now)),
        (Some(since), _) => Some(since),
        (None, _) => Some(now),
    }
}

/// Sets `spec.suspend: true` with a merge patch (a user's `kubectl apply` keeps owning the
/// field, so resuming stays a plain edit), and says why in an Event.
async fn suspend_for_standby(
    ctx: &Context,
    agent: &Agent,
    since: Timestamp,
    idle_timeout: &str,
) -> Result<(), ReconcileError> {
    let event = Event {
        type_: EventType::Normal,
        reason: "StandbySuspended".into(),
        note: Some(format!(
            "no Tasks and no session activity since {since} (standby.idleTimeout {idle_timeout}): set spec.suspend to true; a new Task or `kubectl kubeoc agent resume` starts the server again"
        )),
        action: "Suspend".into(),
        secondary: None,
    };
    set_suspend(ctx, agent, true, event).await
}

/// Sets spec.suspend with a merge patch under this controller's field manager (which is how
/// [`suspended_by_standby`] recognises it later), then publishes `event`.
async fn set_suspend(
    ctx: &Context,
    agent: &Agent,
    suspend: bool,
    event: Event,
) -> Result<(), ReconcileError> {
    let ns = agent.namespace().unwrap_or_default();
    let api: Api<Agent> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({"spec": {"suspend": suspend}});
    api.patch(
        &agent.name_any(),
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        },
        &Patch::Merge(&patch),
    )
    .await
    .map_err(kube_err(format!(
        "setting spec.suspend to {suspend} on Agent {ns}/{}",
        agent.name_any()
    )))?;
    publish(ctx, agent, vec![event]).await;
    Ok(())
}

/// The most an Event note may hold (events.k8s.io/v1 rejects longer ones).
const NOTE_LIMIT: usize = 1024;

fn note(text: &str) -> String {
    if text.len() <= NOTE_LIMIT {
        return text.to_string();
    }
    let mut end = NOTE_LIMIT - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The Events a status change deserves: Ready flipping (or changing its reason), and a new
/// list of unsupported fields. Losing readiness, and specs that cannot run, are warnings.
fn transition_events(old: &[Condition], new: &[Condition]) -> Vec<Event> {
    let find = |list: &'_ [Condition], type_: &str| list.iter().find(|c| c.type_ == type_).cloned();
    let mut events = Vec::new();
    if let Some(ready) = find(new, "Ready") {
        let before = find(old, "Ready");
        let changed = before
            .as_ref()
            .is_none_or(|b| b.status != ready.status || b.reason != ready.reason);
        if changed && ready.status == "True" {
            let detail = find(new, "ServerHealthy")
                .filter(|c| c.status == "True")
                .map_or(ready.message.clone(), |c| c.message);
            events.push(Event {
                type_: EventType::Normal,
                reason: "Ready".into(),
                note: Some(note(&detail)),
                action: "Reconcile".into(),
                secondary: None,
            });
        } else if changed {
            let was_ready = before.is_some_and(|b| b.status == "True");
            let broken = matches!(ready.reason.as_str(), "InvalidSpec" | "TemplateNotFound");
            let warning = broken || (was_ready && ready.reason != "Suspended");
            events.push(Event {
                type_: if warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: ready.reason.clone(),
                note: Some(note(&ready.message)),
                action: "Reconcile".into(),
                secondary: None,
            });
        }
    }
    if let Some(unsupported) = find(new, "Unsupported")
        && find(old, "Unsupported").is_none_or(|c| c.message != unsupported.message)
    {
        events.push(Event {
            type_: EventType::Warning,
            reason: "UnsupportedFields".into(),
            note: Some(note(&unsupported.message)),
            action: "Reconcile".into(),
            secondary: None,
        });
    }
    events
}

/// Publishes Events about the Agent; a failure is logged, never fails the reconcile.
async fn publish(ctx: &Context, agent: &Agent, events: Vec<Event>) {
    let reference = agent.object_ref(&());
    for event in events {
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(
                agent = %format!("{}/{}", agent.namespace().unwrap_or_default(), agent.name_any()),
                reason = %event.reason,
                "could not publish an Event: {e}"
            );
        }
    }
}

/// Server-side applies `.status` when it differs from what the Agent already has.
async fn write_status(
    ctx: &Context,
    agent: &Agent,
    status: AgentStatus,
) -> Result<(), ReconcileError> {
    if agent.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let ns = agent.namespace().unwrap_or_default();
    let api: Api<Agent> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({"apiVersion": crate::api::API_VERSION, "kind": "Agent", "status": status});
    api.patch_status(
        &agent.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(kube_err(format!(
        "writing status of Agent {ns}/{}",
        agent.name_any()
    )))?;
    let old = agent
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let events = transition_events(&old, status.conditions.as_deref().unwrap_or_default());
    publish(ctx, agent, events).await;
    Ok(())
}

/// Retry failed reconciles after a short delay.
pub fn error_policy(agent: Arc<Agent>, error: &ReconcileError, _ctx: Arc<Context>) -> Action {
    let key = format!(
        "{}/{}",
        agent.namespace().unwrap_or_default(),
        agent.name_any()
    );
    tracing::warn!(agent = %key, "reconcile failed: {error}");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_suspend_the_controller_alone_owns_counts_as_standby() {
        let agent = |suspend: bool, owners: &[(&str, Option<&str>)]| {
            let mut agent = Agent::new("a", crate::api::AgentSpec::default());
            agent.spec.suspend = Some(suspend);
            agent.metadata.managed_fields = Some(
                owners
                    .iter()
                    .map(|(manager, subresource)| {
                        let fields = match subresource {
                            Some(_) => json!({"f:status": {"f:suspended": {}}}),
                            None => json!({"f:spec": {"f:suspend": {}, "f:workspaceDir": {}}}),
                        };
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                            manager: Some(manager.to_string()),
                            operation: Some("Update".into()),
                            subresource: subresource.map(str::to_string),
                            fields_v1: Some(
                                k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(fields),
                            ),
                            ..Default::default()
                        }
                    })
                    .collect(),
            );
            agent
        };
        let ours = (FIELD_MANAGER, None);
        let status = (FIELD_MANAGER, Some("status"));
        assert!(suspended_by_standby(&agent(true, &[ours, status])));
        assert!(
            !suspended_by_standby(&agent(false, &[ours])),
            "not suspended"
        );
        // A person's suspend: `agent suspend` (kubeoc), kubectl apply/patch, or shared with us.
        assert!(!suspended_by_standby(&agent(
            true,
            &[("kubeoc", None), status]
        )));
        assert!(!suspended_by_standby(&agent(
            true,
            &[("kubectl-client-side-apply", None)]
        )));
        assert!(!suspended_by_standby(&agent(
            true,
            &[ours, ("kubectl", None)]
        )));
        // Status entries of ours alone do not own spec.suspend.
        assert!(!suspended_by_standby(&agent(true, &[status])));
    }

    #[test]
    fn conditions_keep_transition_times_until_status_flips() {
        let first = conditions(
            &[],
            &[Verdict::new(
                "ServerReady",
                false,
                "DeploymentUnavailable",
                "0/1",
            )],
            1,
        );
        let again = conditions(
            &first,
            &[Verdict::new(
                "ServerReady",
                false,
                "DeploymentUnavailable",
                "0/1",
            )],
            1,
        );
        assert_eq!(
            first, again,
            "an unchanged verdict renders the same condition"
        );
        let flipped = conditions(
            &first,
            &[Verdict::new(
                "ServerReady",
                true,
                "DeploymentAvailable",
                "1/1",
            )],
            1,
        );
        assert_eq!(flipped[0].status, "True");
        assert!(flipped[0].last_transition_time.0 >= first[0].last_transition_time.0);
    }

    #[test]
    fn contains_accepts_server_defaults_and_rejects_changes() {
        let desired = json!({"spec": {"replicas": 1, "ports": [{"name": "http", "port": 4096}]}});
        let live = json!({"spec": {"replicas": 1, "revisionHistoryLimit": 10,
            "ports": [{"name": "http", "port": 4096, "protocol": "TCP"}]}, "status": {}});
        assert!(contains(&live, &desired));
        let changed = json!({"spec": {"replicas": 0, "ports": [{"name": "http", "port": 4096}]}});
        assert!(!contains(&live, &changed));
        let extra_port = json!({"spec": {"replicas": 1, "ports": [{"name": "http", "port": 4096}, {"name": "x", "port": 1}]}});
        assert!(!contains(&live, &extra_port));
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("valid time")
    }

    #[test]
    fn idle_clock_starts_when_idle_and_moves_with_session_activity() {
        let quiet = Activity::default();
        assert_eq!(next_idle_since(None, &quiet, at(10)), Some(at(10)));
        assert_eq!(next_idle_since(Some(at(10)), &quiet, at(70)), Some(at(10)));
        let typed = Activity {
            busy: false,
            last: Some(at(40)),
        };
        assert_eq!(next_idle_since(Some(at(10)), &typed, at(70)), Some(at(40)));
        // Activity from before the clock started (e.g. before a suspend) does not rewind it.
        assert_eq!(next_idle_since(Some(at(50)), &typed, at(70)), Some(at(50)));
        // A resumed Agent gets a full timeout even though its last session is old.
        assert_eq!(next_idle_since(None, &typed, at(70)), Some(at(70)));
        // Clock skew between server and controller never puts the mark in the future.
        let future = Activity {
            busy: false,
            last: Some(at(99)),
        };
        assert_eq!(next_idle_since(Some(at(10)), &future, at(70)), Some(at(70)));
        // Sub-second times become the next whole second, as they will be stored.
        let later = at(10)
            .checked_add(k8s_openapi::jiff::SignedDuration::from_millis(300))
            .expect("time");
        assert_eq!(whole_second(later), at(11));
        assert_eq!(whole_second(at(10)), at(10));
        assert_eq!(next_idle_since(None, &quiet, later), Some(at(11)));
        let busy = Activity {
            busy: true,
            last: None,
        };
        assert_eq!(next_idle_since(Some(at(10)), &busy, at(70)), None);
    }

    fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(1),
            last_transition_time: Time(at(0)),
        }
    }

    #[test]
    fn events_follow_ready_transitions_only() {
        let starting = vec![condition(
            "Ready",
            "False",
            "ServerNotReady",
            "0/1 available",
        )];
        let first = transition_events(&[], &starting);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].reason, "ServerNotReady");
        assert_eq!(
            first[0].type_,
            EventType::Normal,
            "starting up is not a warning"
        );
        assert!(transition_events(&starting, &starting).is_empty());

        let ready = vec![
            condition(
                "ServerHealthy",
                "True",
                "Healthy",
                "OpenCode 1.18.33 answers /global/health",
            ),
            condition("Ready", "True", "ServerHealthy", "available and healthy"),
        ];
        let became_ready = transition_events(&starting, &ready);
        assert_eq!(became_ready.len(), 1);
        assert_eq!(became_ready[0].reason, "Ready");
        assert_eq!(
            became_ready[0].note.as_deref(),
            Some("OpenCode 1.18.33 answers /global/health")
        );
        assert!(transition_events(&ready, &ready).is_empty());

        let lost = vec![condition("Ready", "False", "ServerUnhealthy", "refused")];
        assert_eq!(
            transition_events(&ready, &lost)[0].type_,
            EventType::Warning
        );
        let suspended = vec![condition("Ready", "False", "Suspended", "scaled to zero")];
        assert_eq!(
            transition_events(&ready, &suspended)[0].type_,
            EventType::Normal
        );
        let invalid = vec![condition("Ready", "False", "InvalidSpec", "workspaceDir")];
        assert_eq!(
            transition_events(&[], &invalid)[0].type_,
            EventType::Warning
        );
    }

    #[test]
    fn unsupported_fields_are_announced_once_per_change() {
        let with = vec![condition("Unsupported", "True", "FieldsIgnored", "share")];
        let events = transition_events(&[], &with);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "UnsupportedFields");
        assert!(transition_events(&with, &with).is_empty());
    }

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let long = "é".repeat(NOTE_LIMIT);
        let cut = note(&long);
        assert!(cut.len() <= NOTE_LIMIT);
        assert!(cut.ends_with("..."));
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "a-server-1", "namespace": "ns"}, "status": status}),
        )
        .expect("a pod")
    }

    #[test]
    fn pod_problems_name_the_container_and_what_to_do() {
        let failed_init = pod(json!({"initContainerStatuses": [
            {"name": "opencode-init", "ready": true, "restartCount": 0, "image": "i", "imageID": "",
             "state": {"terminated": {"exitCode": 0}}},
            {"name": "plugin-init", "ready": false, "restartCount": 3, "image": "i", "imageID": "",
             "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
             "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}));
        assert_eq!(
            pod_problem(&failed_init).as_deref(),
            Some(
                "init container \"plugin-init\" failed with exit code 1 (see: kubectl logs -n ns a-server-1 -c plugin-init)"
            )
        );
        let missing_secret = pod(json!({"containerStatuses": [
            {"name": "opencode-server", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
             "state": {"waiting": {"reason": "CreateContainerConfigError",
                                   "message": "secret \"ai-credentials\" not found"}}}]}));
        assert_eq!(
            pod_problem(&missing_secret).as_deref(),
            Some(
                "container \"opencode-server\": CreateContainerConfigError secret \"ai-credentials\" not found"
            )
        );
        let starting = pod(json!({"containerStatuses": [
            {"name": "opencode-server", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
             "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert_eq!(pod_problem(&starting), None);
        let unschedulable = pod(
            json!({"conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient memory."}]}),
        );
        assert!(pod_problem(&unschedulable).is_some_and(|p| p.contains("Insufficient memory")));
    }

    #[test]
    fn passwords_are_long_and_distinct() {
        let a = new_password().expect("random");
        let b = new_password().expect("random");
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }
}
