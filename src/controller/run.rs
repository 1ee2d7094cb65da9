//! `controller run`: the reconcilers in one process, behind leader election, stopping cleanly
//! on Ctrl-C (in-flight reconciles finish, the Lease is released).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use super::leader::{LeaderElector, UPSTREAM_LEASE_NAME};
use super::metrics::{Metrics, Role};
use super::server_pod::{BuildSettings, CHILD_SELECTOR};
use super::{agent, metrics, server_pod};
use crate::api::config::CONFIG_NAME;
use crate::api::{Agent, AgentTemplate, KubeOpenCodeConfig, Task};

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub settings: BuildSettings,
    /// Publishes Events (on transitions only) as `kubeoc-controller`.
    pub recorder: Recorder,
    /// Reconcile counts and durations, served on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// When each Rollout Git context (`<ns>/<agent>/<context>`) last asked its remote.
    pub git_checks: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

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
}

fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{host}-{}", std::process::id())
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
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

/// Times and counts [`agent::reconcile`] without touching it.
async fn reconcile_agent(
    agent: Arc<Agent>,
    ctx: Arc<Context>,
) -> Result<kube::runtime::controller::Action, agent::ReconcileError> {
    let timer = ctx.metrics.reconcile_started("Agent");
    let result = agent::reconcile(agent, ctx.clone()).await;
    timer.finish(result.is_ok());
    result
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

    let ctx = Arc::new(Context {
        client: client.clone(),
        settings: server_pod::BuildSettings::default(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: super::agent::FIELD_MANAGER.into(),
                instance: Some(identity),
            },
        ),
        metrics: metrics.clone(),
        git_checks: Default::default(),
    });
    let ns = options.namespace.clone();
    let shutdown = {
        let (mut stop, mut leading) = (stop_rx.clone(), leading_rx.clone());
        let metrics = metrics.clone();
        async move {
            tokio::select! {
                _ = stop.changed() => {}
                _ = async { while leading.changed().await.is_ok() && *leading.borrow() {} } => {}
            }
            metrics.set_role(Role::Stopping);
        }
    };
    let controller = Controller::new(api::<Agent>(&client, &ns), watcher::Config::default());
    let store = controller.store();
    let agents = store.clone();
    let all_agents = store.clone();
    let synced = {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            // Re-polled on a timer: the store's readiness is a oneshot channel that wakes only
            // its latest poller, and the controller's own wait takes that place, so a single
            // await here would never wake. A fresh poll sees the value the controller memoized.
            loop {
                match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready())
                    .await
                {
                    Ok(Ok(())) => break,
                    // The controller (the store's writer) is gone: nothing to report any more.
                    Ok(Err(_)) => return,
                    Err(_) => continue,
                }
            }
            metrics.watch_agents(store);
            metrics.mark_synced();
        })
    };
    // Only our children: a cluster's Secrets and ConfigMaps would otherwise all sit in memory.
    let children = || watcher::Config::default().labels(CHILD_SELECTOR);
    // An AgentTemplate edit reaches every Agent built from it now, not at the next resync.
    let agents_of_template = move |template: AgentTemplate| {
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
    let every_agent = move |_: KubeOpenCodeConfig| {
        all_agents
            .state()
            .into_iter()
            .map(|agent| ObjectRef::from_obj(&*agent))
            .collect::<Vec<_>>()
    };
    let agent_of_task = |task: Task| {
        let namespace = task.namespace().unwrap_or_default();
        task.spec
            .agent_ref
            .map(|agent| ObjectRef::<Agent>::new(&agent.name).within(&namespace))
    };
    controller
        .watches(
            Api::<KubeOpenCodeConfig>::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={CONFIG_NAME}")),
            every_agent,
        )
        .owns(api::<Deployment>(&client, &ns), children())
        .owns(api::<Service>(&client, &ns), children())
        .owns(api::<PersistentVolumeClaim>(&client, &ns), children())
        .owns(api::<Secret>(&client, &ns), children())
        .owns(api::<ConfigMap>(&client, &ns), children())
        .watches(
            api::<AgentTemplate>(&client, &ns),
            watcher::Config::default(),
            agents_of_template,
        )
        // A Task arriving, finishing or going concerns its Agent's idle clock, and a new one
        // resumes an Agent that standby suspended.
        .watches(
            api::<Task>(&client, &ns),
            watcher::Config::default(),
            agent_of_task,
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile_agent, agent::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(agent = %format!("{}/{}", object.namespace.as_deref().unwrap_or(""), object.name), "reconciled"),
                Err(err) => tracing::debug!("reconcile error: {err}"),
            }
        })
        .await;

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
