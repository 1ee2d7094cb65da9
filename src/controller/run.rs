//! `controller run`: the reconcilers in one process, behind leader election, stopping cleanly
//! on Ctrl-C or SIGTERM (in-flight reconciles finish, the Lease is released). A leader that
//! loses its Lease (or cannot renew it in time) stops at once: in-flight reconciles are
//! dropped, not finished, since another controller may already be writing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::cached::ServerPod;
use anyhow::{Context as _, bail};
use futures::StreamExt;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;

use super::backoff::{Backoff, key_of};
use super::leader::{LeaderElector, UPSTREAM_LEASE_NAME};
use super::metrics::{Metrics, Role};
use super::stores::{self, Subscriptions};
use super::{Context, ServerRoute, agent, cron_task, metrics, pod, task};
use crate::api::config::CONFIG_NAME;
use crate::api::{Agent, AgentTemplate, KubeOpenCodeConfig, Task};

/// Reconciles of one kind in flight at once. Unbounded, every Agent of a large apply starts a
/// reconcile that holds its built children and requests in memory while the apiserver, the
/// real limit, serves a few dozen at a time. (controller-runtime's default is 1.)
const RECONCILE_CONCURRENCY: u16 = 32;

/// Options of `controller run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Watch one namespace; `None` watches all.
    pub namespace: Option<String>,
    pub leader_elect: bool,
    /// Namespace of the Lease (and of upstream's, which we refuse to run beside).
    pub lease_namespace: String,
    pub ignore_upstream_lease: bool,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; `None` serves nothing.
    pub metrics_addr: Option<SocketAddr>,
    /// The controller runs in the cluster: it checks the servers at their Services rather
    /// than through the apiserver's proxy.
    pub in_cluster: bool,
}

fn reconcile_config() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY)
}

fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{host}-{}", std::process::id())
}

/// Waits for Ctrl-C, or SIGTERM (what the kubelet sends a pod that is being deleted: in-cluster
/// the Lease must be released too, or every rollout waits out its duration). `None` when
/// signals cannot be watched.
async fn stop_signal() -> Option<&'static str> {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok()?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.ok().map(|()| "interrupted"),
        received = terminate.recv() => received.map(|()| "terminated"),
    }
}

/// Runs until Ctrl-C or SIGTERM (or lost leadership, which is an error: the process should
/// restart).
pub async fn run(client: Client, options: RunOptions) -> anyhow::Result<()> {
    // Recorded even without an endpoint: it costs a few atomics and keeps one code path.
    let metrics = Arc::new(Metrics::new());
    metrics.register_kind("Agent");
    metrics.register_kind("Task");
    metrics.register_kind("CronTask");
    // Serve before anything else: probes must answer while we wait for the Lease, and keep
    // serving (readyz 503) while in-flight reconciles drain.
    let server = match options.metrics_addr {
        Some(addr) => Some(metrics::Server::start(addr, metrics.clone(), client.clone()).await?),
        None => None,
    };
    let result = run_controllers(client, options, metrics.clone()).await;
    metrics.set_role(Role::Stopping);
    if let Some(server) = server {
        server.shutdown().await;
    }
    result
}

/// A reconciler's error, labelled for the failure metrics.
pub trait Failure: std::error::Error + Send + Sync + 'static {
    /// The metric label of this error.
    fn label(&self) -> &'static str;
}

/// Times and counts one reconcile of `key`, and forgets its failures when it works.
async fn timed<E: Failure>(
    kind: &'static str,
    key: String,
    ctx: Arc<Context>,
    reconcile: impl Future<Output = Result<Action, E>>,
) -> Result<Action, E> {
    let timer = ctx.metrics.reconcile_started(kind);
    let result = reconcile.await;
    match &result {
        Ok(_) => {
            ctx.error_backoff.reset(&key);
            timer.finish(None);
        }
        Err(err) => timer.finish(Some(err.label())),
    }
    result
}

/// Retries a failed reconcile with per-object exponential backoff.
fn retry_later<K: Resource<DynamicType = ()>, E: Failure>(
    object: Arc<K>,
    error: &E,
    ctx: Arc<Context>,
) -> Action {
    let key = key_of(&*object);
    let delay = ctx.error_backoff.next(&key);
    tracing::warn!(object = %key, retry_in = ?delay, "reconcile failed: {error}");
    Action::requeue(delay)
}

/// Logs one reconcile's outcome at debug level (failures are logged by [`retry_later`]).
async fn log_outcome<K: Resource<DynamicType = ()>, E: std::error::Error, W: std::error::Error>(
    result: Result<(ObjectRef<K>, Action), kube::runtime::controller::Error<E, W>>,
) {
    match result {
        Ok((object, _)) => tracing::debug!(object = %object, "reconciled"),
        Err(err) => tracing::debug!("reconcile error: {err}"),
    }
}

async fn run_controllers(
    client: Client,
    options: RunOptions,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let on_stop = metrics.clone();
    tokio::spawn(async move {
        if let Some(signal) = stop_signal().await {
            tracing::info!("{signal}: finishing in-flight reconciles");
            on_stop.set_role(Role::Stopping);
            let _ = stop_tx.send(true);
        }
    });

    let identity = identity();
    let elector = LeaderElector::new(client.clone(), &options.lease_namespace, identity.clone());
    let (leading_tx, mut leading_rx) = watch::channel(!options.leader_elect);
    let election = if options.leader_elect {
        if !options.ignore_upstream_lease
            && let Some(holder) = elector
                .check_upstream()
                .await
                .context("reading upstream's leader Lease")?
        {
            bail!(
                "upstream's KubeOpenCode controller holds Lease {}/{UPSTREAM_LEASE_NAME} (holder {holder:?}); \
                 two controllers would fight over the same Agents. Stop it, or pass --ignore-upstream-lease",
                options.lease_namespace
            );
        }
        let elector = Arc::new(elector);
        let task = {
            let (elector, stop) = (elector.clone(), stop_rx.clone());
            tokio::spawn(async move { elector.run(leading_tx, stop).await })
        };
        let lease = format!("{}/{}", options.lease_namespace, super::leader::LEASE_NAME);
        tracing::info!(identity = %elector.identity(), lease = %lease, "waiting for leadership");
        metrics.set_role(Role::Standby { lease });
        let mut stop = stop_rx.clone();
        while !*leading_rx.borrow_and_update() {
            tokio::select! {
                changed = leading_rx.changed() => {
                    // The elector also ends on Ctrl-C, and may close its channel before this
                    // loop sees the stop: that is a clean stop, not a failure.
                    if changed.is_err() && *stop_rx.borrow() {
                        return Ok(());
                    }
                    changed.context("leader election stopped")?;
                }
                _ = stop.changed() => return Ok(()),
            }
        }
        Some((elector, task))
    } else {
        None
    };
    tracing::info!("leading: starting the reconcilers");
    metrics.set_role(Role::Leading { synced: false });

    // A controller that may not read the cluster's KubeOpenCodeConfig (a namespaced install)
    // uses the built-in settings, and says so once.
    let watch_config = match Api::<KubeOpenCodeConfig>::all(client.clone())
        .get_opt(CONFIG_NAME)
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 403 => {
            tracing::warn!(
                "may not read KubeOpenCodeConfig {CONFIG_NAME:?} (cluster-scoped): using built-in cluster settings; grant get, list and watch on kubeopencodeconfigs to use it"
            );
            false
        }
        _ => true,
    };
    let ns = options.namespace.clone();
    let (stores, subscriptions, watches) = stores::start(&client, ns.as_deref(), watch_config);
    // Extra Task reconciles the queue asks for (positions it held back).
    let (task_wake, task_wakeups) = futures::channel::mpsc::unbounded();
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings: pod::BuildSettings::default(),
        reporter: Reporter {
            controller: super::FIELD_MANAGER.into(),
            instance: Some(identity),
        },
        metrics: metrics.clone(),
        git_checks: Default::default(),
        stores: stores.clone(),
        error_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
        health_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        health_interval: Duration::from_secs(60),
        applied_inputs: Default::default(),
        server_route: if options.in_cluster {
            ServerRoute::Service(crate::opencode::client::direct_client())
        } else {
            ServerRoute::ApiserverProxy
        },
        task_statuses: Default::default(),
        task_queues: task::QueueLocks::new(task_wake),
        task_arrivals: Default::default(),
        cron_written: Default::default(),
    });
    let synced = {
        let (metrics, stores) = (metrics.clone(), stores.clone());
        tokio::spawn(async move {
            if stores.wait_synced().await {
                metrics.watch_agents(stores.agents.clone());
                metrics.mark_synced();
                tracing::info!("watch caches synced");
            }
        })
    };
    // Ctrl-C and SIGTERM drain: in-flight reconciles finish.
    let drain = || {
        let mut stop = stop_rx.clone();
        let metrics = metrics.clone();
        async move {
            let _ = stop.changed().await;
            metrics.set_role(Role::Stopping);
        }
    };
    // An AgentTemplate edit reaches every Agent built from it now, not at the next resync.
    let agents = stores.agents.clone();
    let agents_of_template = move |template: Arc<AgentTemplate>| {
        let (namespace, name) = (template.namespace(), template.name_any());
        agents
            .state()
            .into_iter()
            .filter(|agent| {
                agent.namespace() == namespace
                    && agent
                        .spec
                        .template_ref
                        .as_ref()
                        .is_some_and(|r| r.name == name)
            })
            .map(|agent| ObjectRef::from_obj(&*agent))
            .collect::<Vec<_>>()
    };
    // A KubeOpenCodeConfig change (cluster domain, system image, proxy) concerns every Agent.
    let all_agents = stores.agents.clone();
    let every_agent = move |_: Arc<KubeOpenCodeConfig>| {
        all_agents
            .state()
            .into_iter()
            .map(|agent| ObjectRef::from_obj(&*agent))
            .collect::<Vec<_>>()
    };
    let agent_of_task = |task: Arc<Task>| {
        let namespace = task.namespace().unwrap_or_default();
        task.spec
            .agent_ref
            .as_ref()
            .map(|agent| ObjectRef::<Agent>::new(&agent.name).within(&namespace))
    };
    // A server pod's trouble (or its recovery) concerns its Agent: no polling while it starts.
    let agent_of_pod = |server_pod: Arc<ServerPod>| {
        let namespace = server_pod.namespace().unwrap_or_default();
        server_pod
            .labels()
            .get(pod::AGENT_LABEL)
            .map(|agent| ObjectRef::<Agent>::new(agent).within(&namespace))
    };
    let Subscriptions {
        agents: agent_changes,
        templates,
        configs,
        deployments,
        services,
        claims,
        secrets,
        config_maps,
        pods,
        task_pods,
        tasks,
        cron_tasks,
    } = subscriptions;
    // A child Task's change (it finished, it went) concerns its CronTask's next run.
    let cron_controller = Controller::for_shared_stream(cron_tasks, stores.cron_tasks.clone())
        .with_config(reconcile_config())
        .watches_shared_stream(tasks.clone(), |task: Arc<Task>| {
            cron_task::cron_of_task(&task)
        })
        .graceful_shutdown_on(drain())
        .run(
            |cron, ctx| {
                timed(
                    "CronTask",
                    key_of(&*cron),
                    ctx.clone(),
                    cron_task::reconcile(cron, ctx),
                )
            },
            retry_later,
            ctx.clone(),
        )
        .for_each(log_outcome);
    // An Agent's change (Ready, resumed, a new limit) concerns the Tasks waiting for it or
    // running on it.
    let all_tasks = stores.tasks.clone();
    let tasks_of_agent = move |agent: Arc<Agent>| {
        let (namespace, name) = (agent.namespace(), agent.name_any());
        all_tasks
            .state()
            .into_iter()
            .filter(|t| {
                t.namespace() == namespace
                    && t.spec.agent_ref.as_ref().is_some_and(|r| r.name == name)
                    && !t
                        .status
                        .as_ref()
                        .and_then(|s| s.phase)
                        .is_some_and(|p| p.is_finished())
            })
            .map(|t| ObjectRef::from_obj(&*t))
            .collect::<Vec<_>>()
    };
    // The watch's order is the queue's order within one second of creationTimestamp.
    let arrivals = {
        let (ctx, mut changes) = (ctx.clone(), tasks.clone());
        tokio::spawn(async move {
            while let Some(task) = changes.next().await {
                ctx.task_arrivals.note(&task);
            }
        })
    };
    let mut task_controller = Controller::for_shared_stream(tasks.clone(), stores.tasks.clone())
        .with_config(reconcile_config())
        .owns_shared_stream(task_pods)
        .reconcile_on(task_wakeups)
        .watches_shared_stream(agent_changes.clone(), tasks_of_agent);
    // The cleanup settings (TTL, count) apply to the Tasks that finished before they changed.
    if let Some(configs) = configs.clone() {
        let finished_tasks = stores.tasks.clone();
        task_controller =
            task_controller.watches_shared_stream(configs, move |_: Arc<KubeOpenCodeConfig>| {
                finished_tasks
                    .state()
                    .into_iter()
                    .filter(|t| {
                        t.status
                            .as_ref()
                            .and_then(|s| s.phase)
                            .is_some_and(|p| p.is_finished())
                    })
                    .map(|t| ObjectRef::from_obj(&*t))
                    .collect::<Vec<_>>()
            });
    }
    let task_controller = task_controller
        .graceful_shutdown_on(drain())
        .run(
            |task, ctx| {
                timed(
                    "Task",
                    key_of(&*task),
                    ctx.clone(),
                    task::reconcile(task, ctx),
                )
            },
            retry_later,
            ctx.clone(),
        )
        .for_each(log_outcome);
    let mut controller = Controller::for_shared_stream(agent_changes, stores.agents.clone())
        .with_config(reconcile_config())
        .owns_shared_stream(deployments)
        .owns_shared_stream(services)
        .owns_shared_stream(claims)
        .owns_shared_stream(secrets)
        .owns_shared_stream(config_maps)
        .watches_shared_stream(templates, agents_of_template)
        // A Task arriving, finishing or going concerns its Agent's idle clock, and a new one
        // resumes an Agent that standby suspended.
        .watches_shared_stream(tasks, agent_of_task)
        .watches_shared_stream(pods, agent_of_pod);
    if let Some(configs) = configs {
        controller = controller.watches_shared_stream(configs, every_agent);
    }
    let agent_controller = controller
        .graceful_shutdown_on(drain())
        .run(
            |agent, ctx| {
                timed(
                    "Agent",
                    key_of(&*agent),
                    ctx.clone(),
                    agent::reconcile(agent, ctx),
                )
            },
            retry_later,
            ctx,
        )
        .for_each(log_outcome);
    let reconciling = async move {
        futures::join!(agent_controller, task_controller, cron_controller);
    };
    // Losing the Lease stops reconciling at once: dropping the controller cancels in-flight
    // reconciles, whose writes could otherwise land after another leader's.
    let mut leading = leading_rx.clone();
    let lost_leadership = async move {
        while *leading.borrow_and_update() {
            if leading.changed().await.is_err() {
                // The elector ended (a stop): not a loss.
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = reconciling => {}
        () = lost_leadership => {
            metrics.set_role(Role::Stopping);
            tracing::error!("lost the leader Lease: stopped reconciling");
        }
    }
    drop(watches);
    arrivals.abort();

    synced.abort();
    let lost = options.leader_elect && !*leading_rx.borrow() && !*stop_rx.borrow();
    if let Some((elector, task)) = election {
        task.abort();
        elector.release().await;
    }
    if lost {
        bail!("lost the leader Lease to another controller; stopped reconciling");
    }
    tracing::info!("stopped");
    Ok(())
}
