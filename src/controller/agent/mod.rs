//! The Agent reconciler, in short steps: load (from the watch caches) -> validate -> build
//! (the pure builders in `pod`) -> apply (only what changed) -> status.
//!
//! Status reports `ServerReady` from the Deployment (and, while it is not ready, what keeps
//! the pod from running), `ServerHealthy` from a real health check through the apiserver
//! service proxy, and a child the apiserver refused. It is written only when it changed, so an
//! idle cluster sees no writes; Events are published only on transitions. With
//! `spec.standby`, an Agent idle for `idleTimeout` gets `spec.suspend: true`, and a Task
//! arriving for it while the standby clock (not a person) holds it suspended sets it back.
//!
//! Nothing polls a server that is starting: the Deployment and pod watches wake the
//! reconcile. Failures back off per Agent (1 s doubling to 5 min), and so do health checks of
//! a server that answers badly.

mod apply;
pub(crate) mod password;
mod rollout;
mod standby;
mod status;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

pub use apply::{APPLIED_DIGEST_ANNOTATION, AppliedInputs};
pub use standby::{keep_suspend_ownership, suspended_by_standby};
use status::Verdict;
pub use status::apply_status;

use super::cached::{FromApplied, ServerDeployment};
use super::{Context, ServerRoute, pod, stores};
use crate::api::config::CONFIG_NAME;
use crate::api::{Agent, AgentPhase, AgentStatus, AgentTemplate, KubeOpenCodeConfigSpec};
use crate::duration;
use crate::opencode::client::{ProxyError, ServerProxy};

/// Why a reconcile failed; the variant names the `error` label of
/// `kubeoc_reconcile_errors_total`.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The apiserver refused one of the Agent's children (also reported in the status).
    #[error("{message}")]
    Apply {
        message: String,
        #[source]
        source: kube::Error,
    },
    /// Reading an object the reconcile needs (outside the caches).
    #[error("reading {object}: {source}")]
    Read {
        object: String,
        #[source]
        source: kube::Error,
    },
    /// Creating the server password Secret.
    #[error("creating {object}: {source}")]
    Password {
        object: String,
        #[source]
        source: kube::Error,
    },
    /// The password Secret exists but holds no password.
    #[error("{0} has no usable password; delete it to have a new one generated")]
    BadPassword(String),
    /// The system has no randomness for a new password.
    #[error("no randomness for the server password: {0}")]
    Randomness(String),
    /// An object we just made is not in the cache yet; its watch event brings us back.
    #[error("{0} is not in the watch cache yet")]
    NotCachedYet(String),
    /// Writing the Agent's status.
    #[error("writing status of {object}: {source}")]
    Status {
        object: String,
        #[source]
        source: kube::Error,
    },
    /// Setting spec.suspend (standby).
    #[error("setting spec.suspend to {suspend} on {object}: {source}")]
    Suspend {
        object: String,
        suspend: bool,
        #[source]
        source: kube::Error,
    },
    /// Asking the OpenCode server (standby's activity check).
    #[error("asking {object}: {source}")]
    Server {
        object: String,
        #[source]
        source: ProxyError,
    },
}

impl super::run::Failure for ReconcileError {
    fn label(&self) -> &'static str {
        match self {
            Self::Apply { .. } => "apply",
            Self::Read { .. } => "read",
            Self::Password { .. } | Self::BadPassword(_) | Self::Randomness(_) => "password",
            Self::NotCachedYet(_) => "cache",
            Self::Status { .. } => "status",
            Self::Suspend { .. } => "suspend",
            Self::Server { .. } => "server",
        }
    }
}

fn read_err(object: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
    let object = object.into();
    move |source| ReconcileError::Read { object, source }
}

/// The cluster's KubeOpenCodeConfig (`cluster`) from its cache, or defaults when there is
/// none (or this controller may not watch it: then there is no cache).
pub(crate) fn cluster_config(ctx: &Context) -> KubeOpenCodeConfigSpec {
    ctx.stores
        .configs
        .as_ref()
        .and_then(|store| store.get(&ObjectRef::new(CONFIG_NAME)))
        .map(|config| config.spec.clone())
        .unwrap_or_default()
}

/// A child the apiserver refused: what to put in the status, and the error to retry with.
struct Rejection {
    message: String,
    source: kube::Error,
}

/// Applies one child; a refusal is collected, not returned, so the other children still
/// get their changes.
async fn apply_child<K, C>(
    ctx: &Context,
    store: &kube::runtime::reflector::Store<C>,
    ns: &str,
    object: &K,
    rejections: &mut Vec<Rejection>,
) -> Option<Arc<C>>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
    C: kube::Resource + kube::runtime::reflector::Lookup + FromApplied<K> + Clone + 'static,
    <C as kube::runtime::reflector::Lookup>::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    match apply::apply(ctx, store, ns, object).await {
        Ok(applied) => Some(applied),
        Err(source) => {
            let kind = <K as kube::Resource>::kind(&Default::default()).to_string();
            let name = object.meta().name.clone().unwrap_or_default();
            let message = status::explain_rejection(&format!("{kind} {ns}/{name}"), &source);
            rejections.push(Rejection { message, source });
            // What the cluster has, for the status of the rest.
            stores::get(store, ns, &name)
        }
    }
}

/// Applies every child, whatever happened to the others; returns the Deployment as the
/// cluster has it and what the apiserver refused.
async fn apply_children(
    ctx: &Context,
    ns: &str,
    objects: &pod::ServerObjects,
) -> (Option<Arc<ServerDeployment>>, Vec<Rejection>) {
    let stores = &ctx.stores;
    let mut rejections = Vec::new();
    if let Some(cm) = &objects.context_config_map {
        apply_child(ctx, &stores.config_maps, ns, cm, &mut rejections).await;
    }
    apply_child(
        ctx,
        &stores.claims,
        ns,
        &objects.sessions_pvc,
        &mut rejections,
    )
    .await;
    if let Some(pvc) = &objects.workspace_pvc {
        apply_child(ctx, &stores.claims, ns, pvc, &mut rejections).await;
    }
    apply_child(ctx, &stores.services, ns, &objects.service, &mut rejections).await;
    let deployment = apply_child(
        ctx,
        &stores.deployments,
        ns,
        &objects.deployment,
        &mut rejections,
    )
    .await;
    (deployment, rejections)
}

/// The resourceVersion of the cached object `name`, if cached.
fn cached_version<K>(
    store: &kube::runtime::reflector::Store<K>,
    ns: &str,
    name: &str,
) -> Option<String>
where
    K: kube::Resource + kube::runtime::reflector::Lookup + Clone + 'static,
    <K as kube::runtime::reflector::Lookup>::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    stores::get(store, ns, name).and_then(|o| kube::Resource::meta(&*o).resource_version.clone())
}

/// The resourceVersions of everything an Agent's children are built from or compared with:
/// the Agent, its template, the cluster's config and the children themselves (the password
/// Secret among them), as the watch caches hold them.
fn inputs_version(
    ctx: &Context,
    agent: &Agent,
    template: Option<&AgentTemplate>,
    ns: &str,
    name: &str,
) -> u64 {
    let stores = &ctx.stores;
    let versions = [
        agent.resource_version(),
        template.and_then(|t| t.resource_version()),
        stores
            .configs
            .as_ref()
            .and_then(|s| s.get(&ObjectRef::new(CONFIG_NAME)))
            .and_then(|c| c.resource_version()),
        cached_version(&stores.deployments, ns, &pod::deployment_name(name)),
        cached_version(&stores.services, ns, &pod::service_name(name)),
        cached_version(&stores.claims, ns, &pod::sessions_pvc_name(name)),
        cached_version(&stores.claims, ns, &pod::workspace_pvc_name(name)),
        cached_version(&stores.config_maps, ns, &pod::context_config_map_name(name)),
        cached_version(&stores.secrets, ns, &pod::auth_secret_name(name)),
    ];
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&versions, &mut hasher);
    std::hash::Hasher::finish(&hasher)
}

/// Reconciles one Agent.
pub async fn reconcile(agent: Arc<Agent>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if !ctx.stores.synced() {
        // A child merely not listed yet must not look missing.
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let ns = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    let generation = agent.metadata.generation.unwrap_or(0);
    let existing = agent.status.clone().unwrap_or_default();
    if agent.metadata.deletion_timestamp.is_some() {
        ctx.applied_inputs.forget(&ns, &name);
        // The garbage collector is removing the children (foreground deletion keeps the Agent
        // until they are gone); applying them again would undo its work and could keep the
        // deletion from ever finishing.
        return Ok(Action::await_change());
    }

    // Load.
    let template = match &agent.spec.template_ref {
        Some(r) => match stores::get(&ctx.stores.templates, &ns, &r.name) {
            Some(template) => Some(template),
            None => {
                let message = format!("AgentTemplate {:?} not found in namespace {ns:?}", r.name);
                status::report_not_ready(&ctx, &agent, "TemplateNotFound", message).await?;
                // The template watch brings us back when it appears.
                return Ok(Action::await_change());
            }
        },
        None => None,
    };
    let cluster = cluster_config(&ctx);
    let settings = ctx.settings.with_cluster_config(&cluster);
    let spec = pod::with_cluster_proxy(
        pod::effective_spec(&agent.spec, template.as_ref().map(|t| &t.spec)),
        &cluster,
    );

    // Validate.
    let idle_timeout = match spec
        .standby
        .as_ref()
        .map(|s| duration::parse(&s.idle_timeout))
    {
        Some(Ok(timeout)) => Some(timeout),
        Some(Err(e)) => {
            let message = format!("spec.standby.idleTimeout: {e}");
            status::report_not_ready(&ctx, &agent, "InvalidSpec", message).await?;
            return Ok(Action::await_change());
        }
        None => None,
    };
    if let Err(invalid) = pod::validate(&spec) {
        status::report_not_ready(&ctx, &agent, "InvalidSpec", invalid.message.clone()).await?;
        return Ok(Action::await_change());
    }
    // Standby: a Task arriving for an Agent the idle clock suspended starts it again.
    if spec.standby.is_some() && standby::suspended_by_standby(&agent) {
        let waiting = standby::unfinished_tasks(&ctx, &ns, &name);
        if let Some(task) = waiting.first() {
            standby::resume_for_task(&ctx, &agent, &task.name_any()).await?;
            // The patch brings the Agent back through the watch with spec.suspend false.
            return Ok(Action::await_change());
        }
    }

    // Build.
    let password = password::ensure_password(&ctx, &agent, &ns).await?;
    let (git_sync_statuses, git_requeue) =
        rollout::rollout_commits(&ctx, &agent, &spec, &existing, &settings).await?;
    let mut settings = settings;
    settings.git_commits = git_sync_statuses
        .iter()
        .flatten()
        .filter_map(|s| Some((s.name.clone(), s.commit_hash.clone()?)))
        .collect();
    settings.password_digest = Some(password::digest(&password));
    let stores = &ctx.stores;
    // A periodic pass (the health check) over unchanged inputs builds nothing: Git contexts
    // that roll out on new commits change without any object changing, so they always build.
    let inputs = git_sync_statuses
        .is_none()
        .then(|| inputs_version(&ctx, &agent, template.as_deref(), &ns, &name));
    let unchanged = inputs.is_some() && ctx.applied_inputs.get(&ns, &name) == inputs;
    let (deployment, rejections) = if unchanged {
        let deployment = stores::get(&stores.deployments, &ns, &pod::deployment_name(&name));
        (deployment, Vec::new())
    } else {
        let objects = pod::build(&agent, &spec, &settings);
        let applied = apply_children(&ctx, &ns, &objects).await;
        if applied.1.is_empty()
            && let Some(inputs) = inputs
        {
            ctx.applied_inputs.set(&ns, &name, inputs);
        }
        applied
    };

    // Status.
    let suspended = spec.suspend.unwrap_or(false);
    let (available, available_message) = match &deployment {
        Some(d) => status::deployment_available(d),
        None => (false, "the Deployment does not exist".to_string()),
    };
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
        let problem = server_problem(&ctx, &ns, &name, deployment.as_deref()).await;
        let message = match problem {
            Some(problem) => format!("{available_message}: {problem}"),
            None => available_message,
        };
        Verdict::new("ServerReady", false, "DeploymentUnavailable", message)
    };
    let workspace = spec.workspace_dir.clone().unwrap_or_default();
    let service_name = pod::service_name(&name);
    let port = pod::server_port(&spec);
    let url = pod::service_url(&name, &ns, port, &settings.cluster_domain);
    let proxy = match &ctx.server_route {
        ServerRoute::ApiserverProxy => ServerProxy::new(
            ctx.client.clone(),
            &ns,
            &service_name,
            &password,
            &workspace,
        ),
        ServerRoute::Service(direct) => {
            ServerProxy::direct(direct.clone(), &url, &password, &workspace)
        }
    };
    let server_healthy = if !server_ready.ok {
        Verdict::new(
            "ServerHealthy",
            false,
            "NotChecked",
            "the server is not ready",
        )
    } else {
        let via = match &ctx.server_route {
            ServerRoute::ApiserverProxy => "through the service proxy".to_string(),
            ServerRoute::Service(_) => format!("at {url}"),
        };
        health_verdict(&proxy, &via, &name).await
    };
    let ready = server_ready.ok && server_healthy.ok && rejections.is_empty();
    let (ready_reason, ready_message) = if let Some(rejection) = rejections.first() {
        ("ChildRejected", rejection.message.clone())
    } else if ready {
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
    let health_ok = server_healthy.ok;
    let mut verdicts = vec![
        server_ready.clone(),
        server_healthy,
        Verdict::new("Ready", ready, ready_reason, ready_message),
    ];
    let unsupported = pod::unsupported(&spec);
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
    let existing_conditions = existing.conditions.clone().unwrap_or_default();

    // Standby: only a Ready server can be idle; suspended or starting servers start afresh.
    let mut idle_since = None;
    let mut standby_requeue = None;
    if let Some(timeout) = idle_timeout
        && ready
    {
        let now = Timestamp::now();
        let previous = existing.idle_since.as_ref().map(|t| t.0);
        match standby::activity(&ctx, &agent, &proxy, now).await {
            Ok(activity) => {
                idle_since = standby::next_idle_since(previous, &activity, now);
                if let Some(since) = idle_since {
                    // A mark rounded up may lie up to a second ahead: not idle yet, then.
                    let idle_for =
                        Duration::try_from(now.duration_since(since)).unwrap_or_default();
                    if idle_for >= timeout {
                        let configured = spec.standby.as_ref().map(|s| s.idle_timeout.as_str());
                        standby::suspend_for_standby(
                            &ctx,
                            &agent,
                            since,
                            configured.unwrap_or_default(),
                        )
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
        deployment_name: Some(pod::deployment_name(&name)),
        service_name: Some(service_name),
        url: Some(url),
        conditions: Some(status::conditions(
            &existing_conditions,
            &verdicts,
            generation,
        )),
        idle_since: idle_since.map(Time),
        git_sync_statuses,
        ..existing.clone()
    };
    status::write_status(&ctx, &agent, status).await?;

    if let Some(rejection) = rejections.into_iter().next() {
        // The status says it; the error makes the controller retry with backoff.
        return Err(ReconcileError::Apply {
            message: rejection.message,
            source: rejection.source,
        });
    }
    let health_key = format!("health/{}", super::backoff::key_of(&*agent));
    if server_ready.ok && !health_ok {
        // Available but not answering well: no watch event will say when that changes.
        return Ok(Action::requeue(ctx.health_backoff.next(&health_key)));
    }
    ctx.health_backoff.reset(&health_key);
    if ready || suspended {
        let next = [standby_requeue, git_requeue].into_iter().flatten().min();
        let periodic = ctx.health_interval;
        Ok(Action::requeue(next.map_or(periodic, |d| d.min(periodic))))
    } else {
        // Starting or stuck: the Deployment and pod watches bring us back when that changes.
        // The Rollout check keeps its own clock.
        Ok(git_requeue.map_or_else(Action::await_change, Action::requeue))
    }
}

/// `ServerHealthy` from a real `GET /global/health` (through the service proxy, or at the
/// Service in-cluster).
async fn health_verdict(proxy: &ServerProxy, via: &str, agent: &str) -> Verdict {
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
            format!(
                "the server refused the password from Secret {}",
                pod::auth_secret_name(agent)
            ),
        ),
        Err(e) => Verdict::new(
            "ServerHealthy",
            false,
            "Unreachable",
            format!("health check {via} failed: {e}"),
        ),
    }
}

/// What keeps the server from running: a pod the ReplicaSet may not create, a pod's own
/// trouble (a failed init container, a missing Secret, a crash loop), or a volume whose
/// Secret or ConfigMap does not exist.
async fn server_problem(
    ctx: &Context,
    ns: &str,
    name: &str,
    deployment: Option<&ServerDeployment>,
) -> Option<String> {
    if let Some(failure) = deployment.and_then(|d| status::replica_failure(d, ns)) {
        return Some(failure);
    }
    let pods: Vec<_> = ctx
        .stores
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
        .filter(|p| {
            p.labels().get(pod::AGENT_LABEL).map(String::as_str) == Some(name)
                && p.metadata.deletion_timestamp.is_none()
        })
        .collect();
    // A missing volume source first: the containers' waiting states then only say they are
    // being created.
    for server_pod in &pods {
        if let Some(missing) = status::missing_volume_source(ctx, server_pod).await {
            return Some(missing);
        }
    }
    pods.iter().find_map(|p| status::pod_problem(p))
}
