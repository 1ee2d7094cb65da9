//! `agent delete`, `agent suspend`, `agent resume` and `agent wait`.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{anyhow, bail};
use futures::StreamExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt as _;
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::watcher;
use kube::runtime::{WatchStreamExt as _, watcher::Event as WatchEvent};
use serde_json::json;

use super::describe::{one_line, or_none, phase_name};
use super::{
    FIELD_MANAGER, RESOURCE, agent_error, agents, is_api_code, not_found, report_failures,
    write_stdout,
};
use crate::api::Agent;
use crate::cli::progress::Spinner;
use crate::cluster::{Cluster, ClusterArgs};

// ---------------------------------------------------------------------------------------------
// delete, suspend, resume

/// `agent delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// Agents to delete.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Wait until each Agent and its children are gone (foreground deletion), as kubectl
    /// delete does; --wait=false returns once the deletion is accepted.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    pub wait: bool,
    /// How long to wait.
    #[arg(long, default_value = "5m", value_parser = crate::duration::parse)]
    pub timeout: Duration,
    /// A missing Agent is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

pub(super) async fn delete(cluster_args: &ClusterArgs, args: DeleteArgs) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let api = agents(&cluster, &ns);
    // Foreground: the Agent stays until the garbage collector removed its children, so
    // "gone" means everything is gone.
    let params = if args.wait {
        DeleteParams::foreground()
    } else {
        DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        }
    };
    let mut deleted = Vec::new();
    let mut failures = Vec::new();
    for name in &args.names {
        match api.delete(name, &params).await {
            Ok(_) => {
                write_stdout(&format!("{RESOURCE} {name:?} deleted\n"))?;
                deleted.push(name.clone());
            }
            Err(err) if args.ignore_not_found && is_api_code(&err, 404) => {}
            Err(err) => failures.push(agent_error(err, "deleting", name, &ns)),
        }
    }
    if args.wait {
        for name in &deleted {
            let spinner = Spinner::start(format!(
                "waiting for agent {name} and its children to be deleted"
            ));
            let waited = wait_for(&cluster, &ns, name, WaitFor::Delete, args.timeout).await;
            spinner.finish();
            if let Err(err) = waited {
                failures.push(err);
            }
        }
    }
    report_failures(failures)
}

/// `agent suspend` / `agent resume`.
#[derive(Debug, Clone, clap::Args)]
pub struct SuspendArgs {
    /// The Agents.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// A JSON merge patch of spec.suspend, not server-side apply: the controller sets
/// spec.suspend for standby too, and an apply would take the field's ownership from it.
pub(super) async fn set_suspend(
    cluster_args: &ClusterArgs,
    args: SuspendArgs,
    suspend: bool,
) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let api = agents(&cluster, &ns);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let patch = Patch::Merge(json!({"spec": {"suspend": suspend}}));
    let (doing, done) = if suspend {
        ("suspending", "suspended")
    } else {
        ("resuming", "resumed")
    };
    let mut failures = Vec::new();
    for name in &args.names {
        match api.patch(name, &params, &patch).await {
            Ok(_) => write_stdout(&format!("{RESOURCE}/{name} {done}\n"))?,
            Err(err) => failures.push(agent_error(err, doing, name, &ns)),
        }
    }
    report_failures(failures)
}

// ---------------------------------------------------------------------------------------------
// wait

/// What `agent wait --for` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitFor {
    /// status.ready is true for the current generation.
    Ready,
    /// status.suspended is true for the current generation.
    Suspended,
    /// The Agent is gone.
    Delete,
}

impl WaitFor {
    fn describe(self) -> &'static str {
        match self {
            WaitFor::Ready => "be ready",
            WaitFor::Suspended => "be suspended",
            WaitFor::Delete => "be deleted",
        }
    }
}

/// `agent wait`.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// The Agent.
    pub name: String,
    /// The state to wait for.
    #[arg(long = "for", value_enum, value_name = "ready|suspended|delete")]
    pub for_: WaitFor,
    /// Give up after this long, e.g. 90s or 5m.
    #[arg(long, default_value = "5m", value_parser = crate::duration::parse)]
    pub timeout: Duration,
}

/// Whether `agent` is in the awaited state. Both checks need the status to describe the
/// current spec: right after an edit the old status would otherwise answer.
pub fn condition_met(agent: &Agent, for_: WaitFor) -> bool {
    let Some(status) = &agent.status else {
        return false;
    };
    let current = status.observed_generation.is_some()
        && status.observed_generation == agent.metadata.generation;
    match for_ {
        WaitFor::Ready => current && status.ready == Some(true),
        WaitFor::Suspended => current && status.suspended == Some(true),
        WaitFor::Delete => false,
    }
}

/// What the agent looked like, for a timeout message: the Ready condition and any sign that
/// the status is stale.
pub fn last_seen(agent: &Agent, for_: WaitFor) -> String {
    if for_ == WaitFor::Delete {
        let mut s = "the agent still exists".to_owned();
        if agent.metadata.deletion_timestamp.is_some() {
            s.push_str(" (being deleted");
            let finalizers = agent.finalizers();
            if !finalizers.is_empty() {
                let _ = write!(s, "; finalizers: {}", finalizers.join(", "));
            }
            s.push(')');
        }
        return s;
    }
    let Some(status) = &agent.status else {
        return "no status yet (is the controller running? kubectl kubeoc controller run)".into();
    };
    let condition = |type_: &str| -> Option<&Condition> {
        status
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == type_)
    };
    let mut s = match condition("Ready") {
        Some(c) => format!(
            "Ready={} ({}): {}",
            c.status,
            c.reason,
            one_line(&c.message)
        ),
        None => "no Ready condition".to_owned(),
    };
    if for_ == WaitFor::Suspended {
        let _ = write!(
            s,
            "; phase {}",
            or_none(status.phase.map(phase_name).as_deref())
        );
    }
    if for_ == WaitFor::Ready && status.suspended == Some(true) {
        let _ = write!(
            s,
            "; the agent is suspended (resume it with: kubectl kubeoc agent resume {} -n {})",
            agent.name_any(),
            agent.namespace().unwrap_or_default()
        );
    }
    if status.observed_generation != agent.metadata.generation {
        let _ = write!(
            s,
            "; the status describes generation {}, the spec is at {}",
            status
                .observed_generation
                .map_or("<none>".into(), |g| g.to_string()),
            agent
                .metadata
                .generation
                .map_or("<none>".into(), |g| g.to_string())
        );
    }
    s
}

pub(super) async fn wait(cluster_args: &ClusterArgs, args: WaitArgs) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let spinner = Spinner::start(format!(
        "waiting for agent {} to {}",
        args.name,
        args.for_.describe()
    ));
    let result = wait_for(&cluster, &ns, &args.name, args.for_, args.timeout).await;
    spinner.finish();
    result?;
    write_stdout(&format!("{RESOURCE}/{} condition met\n", args.name))
}

/// Watches one Agent until `for_` holds or `timeout` passes; the timeout error names what was
/// last seen.
pub(super) async fn wait_for(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    for_: WaitFor,
    timeout: Duration,
) -> anyhow::Result<()> {
    let api = agents(cluster, ns);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    let mut last: Option<Agent> = None;
    let mut last_error: Option<String> = None;
    let mut listing: Option<bool> = None;
    let watched = async {
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(err) => {
                    // A watch that can never work (no permission, no CRD) fails now; anything
                    // else is retried with backoff until the deadline.
                    if let watcher::Error::InitialListFailed(e)
                    | watcher::Error::WatchStartFailed(e) = err
                    {
                        if matches!(&e, kube::Error::Api(s) if matches!(s.code, 401 | 403 | 404)) {
                            return Err(agent_error(e, "watching", name, ns));
                        }
                        last_error = Some(e.to_string());
                        continue;
                    }
                    last_error = Some(err.to_string());
                    continue;
                }
            };
            match event {
                WatchEvent::Init => listing = Some(false),
                WatchEvent::InitApply(agent) | WatchEvent::Apply(agent) => {
                    if listing.is_some() {
                        listing = Some(true);
                    }
                    if condition_met(&agent, for_) {
                        return Ok(());
                    }
                    last = Some(agent);
                }
                WatchEvent::InitDone => {
                    if listing.take() == Some(false) {
                        // The list came back empty: the Agent does not exist.
                        if for_ == WaitFor::Delete {
                            return Ok(());
                        }
                        return Err(not_found(name, ns));
                    }
                }
                WatchEvent::Delete(_) => {
                    if for_ == WaitFor::Delete {
                        return Ok(());
                    }
                    bail!(
                        "agent {name:?} in namespace {ns:?} was deleted while waiting for it to {}",
                        for_.describe()
                    );
                }
            }
        }
        bail!("the watch on agent {name:?} in namespace {ns:?} ended unexpectedly")
    };
    match tokio::time::timeout(timeout, watched).await {
        Ok(result) => result,
        Err(_) => {
            let seen = match (&last, &last_error) {
                (Some(agent), _) => last_seen(agent, for_),
                (None, Some(err)) => format!("watch error: {err}"),
                (None, None) => "nothing (no answer from the apiserver)".to_owned(),
            };
            Err(anyhow!(
                "timed out waiting for agent {name:?} in namespace {ns:?} to {}; last seen: {seen}",
                for_.describe()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::agent::tests::ready_agent;

    #[test]
    fn delete_waits_by_default_as_kubectl_delete_does() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cmd {
            #[command(flatten)]
            delete: DeleteArgs,
        }
        let parse = |args: &[&str]| {
            Cmd::try_parse_from(std::iter::once("delete").chain(args.iter().copied()))
                .map(|c| c.delete.wait)
        };
        assert_eq!(parse(&["a"]).ok(), Some(true));
        assert_eq!(parse(&["a", "--wait"]).ok(), Some(true));
        assert_eq!(parse(&["a", "--wait=false"]).ok(), Some(false));
        assert_eq!(parse(&["a", "--wait=true"]).ok(), Some(true));
    }

    #[test]
    fn wait_conditions_need_the_current_generation() {
        let mut agent = ready_agent();
        assert!(condition_met(&agent, WaitFor::Ready));
        assert!(!condition_met(&agent, WaitFor::Suspended));
        assert!(!condition_met(&agent, WaitFor::Delete));
        agent.metadata.generation = Some(3);
        assert!(!condition_met(&agent, WaitFor::Ready));
        assert_eq!(
            last_seen(&agent, WaitFor::Ready),
            "Ready=True (ServerHealthy): the OpenCode server is available and healthy; the status describes generation 2, the spec is at 3"
        );
        let mut status = agent.status.take().unwrap();
        assert!(last_seen(&agent, WaitFor::Ready).contains("no status yet"));
        status.observed_generation = Some(3);
        status.suspended = Some(true);
        status.ready = Some(false);
        status.phase = Some(crate::api::agent::AgentPhase::Suspended);
        if let Some(ready) = status
            .conditions
            .as_mut()
            .and_then(|c| c.iter_mut().find(|c| c.type_ == "Ready"))
        {
            ready.status = "False".into();
            ready.reason = "Suspended".into();
            ready.message = "spec.suspend is true: the server is scaled to zero".into();
        }
        agent.status = Some(status);
        assert!(condition_met(&agent, WaitFor::Suspended));
        assert!(!condition_met(&agent, WaitFor::Ready));
        assert_eq!(
            last_seen(&agent, WaitFor::Ready),
            "Ready=False (Suspended): spec.suspend is true: the server is scaled to zero; the agent is suspended (resume it with: kubectl kubeoc agent resume team-agent -n team-a)"
        );
        assert!(last_seen(&agent, WaitFor::Suspended).ends_with("; phase Suspended"));
        assert_eq!(last_seen(&agent, WaitFor::Delete), "the agent still exists");
    }
}
