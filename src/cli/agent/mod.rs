//! `kubectl kubeoc agent`: create, list, get, describe, delete, suspend, resume, logs and wait
//! for Agents, with kubectl's flags and messages.
//!
//! Reads of Agents for output (`get`, `list`, `-w`) go through dynamic objects so `-o yaml`
//! shows what the apiserver stores, fields this client does not know included; `describe`,
//! `wait` and `logs` read typed Agents because they interpret the spec and status.
//!
//! One file per command group: `create`, `list` (`list`, `get`), `describe`, `lifecycle`
//! (`delete`, `suspend`, `resume`, `wait`) and `logs`; the dispatch and what they share (error
//! messages, the Agent API, writing to stdout) are here.

mod attach;
mod create;
mod describe;
mod lifecycle;
mod logs;

use kube::Api;

use super::listing;
use super::noun::AGENT;
use super::print::{object_name, render_one, report_failures, write_stdout, write_stdout_bytes};
use crate::api::Agent;
use crate::cluster::{Cluster, ClusterArgs};

pub use crate::cli::listing::{GetArgs, ListArgs};
pub use attach::{Attached, explain, server_proxy};
pub use create::{
    CreateArgs, CreateOutput, CredentialFlag, DryRun, GitContextFlag, agent_from_flags,
    agents_from_text, parse_credential, parse_git_context,
};
pub use describe::{DescribeArgs, Described, Lookup, render_describe};
pub use lifecycle::{DeleteArgs, SuspendArgs, WaitArgs, WaitFor, condition_met, last_seen};
pub use logs::{LogsArgs, pick_server_pod};

pub use crate::cluster::FIELD_MANAGER;

/// How `-o name` and kubectl's messages spell the resource.
const RESOURCE: &str = "agent.kubeopencode.io";

/// `kubectl kubeoc agent ...`
#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Create an Agent from flags, or from a YAML/JSON file (-f).
    Create(CreateArgs),
    /// List Agents (columns as `kubectl get agents`).
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show Agents by name, or all of them.
    Get(GetArgs),
    /// Show an Agent's spec, status, conditions, child objects and recent events.
    Describe(DescribeArgs),
    /// Delete Agents; their Deployment, Service, PVCs, Secret and ConfigMap go with them.
    Delete(DeleteArgs),
    /// Scale an Agent's server to zero (spec.suspend=true); volumes and the Service stay.
    Suspend(SuspendArgs),
    /// Start a suspended Agent's server again (spec.suspend=false).
    Resume(SuspendArgs),
    /// Print the logs of an Agent's OpenCode server.
    Logs(LogsArgs),
    /// Wait until an Agent is ready, suspended or deleted.
    Wait(WaitArgs),
    /// Chat with an Agent's OpenCode server through the apiserver (no port-forward, no
    /// Ingress, no local OpenCode); `--prompt TEXT` sends one prompt and streams the answer.
    Attach(attach::AttachArgs),
}

/// Dispatches `agent` subcommands.
pub async fn run(cluster: &ClusterArgs, command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::Create(args) => create::create(cluster, args).await,
        AgentCommand::List(args) => listing::list(&AGENT, cluster, &[], args).await,
        AgentCommand::Get(args) => listing::list(&AGENT, cluster, &args.names, args.list).await,
        AgentCommand::Describe(args) => describe::describe(cluster, args).await,
        AgentCommand::Delete(args) => lifecycle::delete(cluster, args).await,
        AgentCommand::Suspend(args) => lifecycle::set_suspend(cluster, args, true).await,
        AgentCommand::Resume(args) => lifecycle::set_suspend(cluster, args, false).await,
        AgentCommand::Logs(args) => logs::logs(cluster, args).await,
        AgentCommand::Wait(args) => lifecycle::wait(cluster, args).await,
        AgentCommand::Attach(args) => attach::attach(cluster, args).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// The message for a missing Agent, with the command that lists the ones that exist.
fn not_found(name: &str, namespace: &str) -> anyhow::Error {
    AGENT.not_found(name, namespace)
}

/// An apiserver error on one Agent, as [`Noun::error`](crate::cli::noun::Noun::error) says it.
fn agent_error(err: kube::Error, doing: &str, name: &str, namespace: &str) -> anyhow::Error {
    AGENT.error(err, doing, name, namespace)
}

fn is_api_code(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == code)
}

fn agents(cluster: &Cluster, namespace: &str) -> Api<Agent> {
    Api::namespaced(cluster.client.clone(), namespace)
}

/// Gets an Agent, with kubectl-style errors.
async fn get_agent(cluster: &Cluster, namespace: &str, name: &str) -> anyhow::Result<Agent> {
    agents(cluster, namespace)
        .get(name)
        .await
        .map_err(|e| agent_error(e, "getting", name, namespace))
}

#[cfg(test)]
mod tests {
    //! The tests of the command line as a whole, and fixtures the other files' tests share.

    use clap::Parser as _;
    use serde_json::{Value, json};

    use super::*;
    use crate::cli::{Cli, Command};

    pub(super) fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut full = vec!["kubectl-kubeoc"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full)
    }

    pub(super) fn create_args(args: &[&str]) -> CreateArgs {
        match parse(args) {
            Ok(Cli {
                command: Command::Agent(AgentCommand::Create(create)),
                ..
            }) => create,
            Ok(other) => panic!("parsed as {other:?}"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn usage_errors_exit_2() {
        let bad: &[&[&str]] = &[
            &[
                "agent",
                "create",
                "x",
                "--image",
                "i",
                "--workspace-dir",
                "/w",
                "--service-account",
                "s",
                "--git-context",
                "https://github.com/org/repo.git",
            ],
            &["agent", "create", "x", "--image", "i"],
            &[
                "agent",
                "create",
                "x",
                "--image",
                "i",
                "--workspace-dir",
                "relative",
                "--service-account",
                "s",
            ],
            &["agent", "create", "-f", "a.yaml", "--image", "i"],
            &["agent", "create", "x", "-f", "a.yaml"],
            &["agent", "create", "x", "--template", "t", "--port", "0"],
            &[
                "agent",
                "create",
                "x",
                "--template",
                "t",
                "--credential",
                "A",
            ],
            &[
                "agent",
                "create",
                "x",
                "--template",
                "t",
                "--dry-run",
                "client",
            ],
            &["agent", "wait", "x", "--for=happy"],
            &["agent", "wait", "x"],
            &["agent", "logs", "x", "--since", "yesterday"],
            &["agent", "delete"],
            &["agent", "suspend"],
        ];
        for args in bad {
            match parse(args) {
                Ok(cli) => panic!("{args:?} parsed as {cli:?}"),
                Err(e) => assert_eq!(e.exit_code(), 2, "{args:?}: {e}"),
            }
        }
    }

    #[test]
    fn flags_that_parse() {
        let args = create_args(&["ag", "create", "x", "--template", "t", "--dry-run"]);
        assert_eq!(args.dry_run, DryRun::Client);
        let args = create_args(&[
            "agents",
            "create",
            "-f",
            "-",
            "--dry-run=server",
            "-o",
            "yaml",
        ]);
        assert_eq!(args.dry_run, DryRun::Server);
        assert_eq!(args.output, Some(CreateOutput::Yaml));
        for args in [
            &[
                "agent",
                "ls",
                "-A",
                "-o",
                "wide",
                "--no-headers",
                "-l",
                "a=b",
                "-w",
            ][..],
            &["agent", "get", "a", "b", "-o", "name"],
            &["agent", "describe", "a"],
            &[
                "agent",
                "delete",
                "a",
                "b",
                "--wait",
                "--ignore-not-found",
                "--timeout=1m",
            ],
            &["agent", "suspend", "a"],
            &["agent", "resume", "a"],
            &[
                "agent",
                "logs",
                "a",
                "-f",
                "--tail",
                "10",
                "--since",
                "5m",
                "--timestamps",
            ],
            &["agent", "wait", "a", "--for=suspended", "--timeout=90s"],
            &["agent", "wait", "a", "--for", "delete"],
        ] {
            if let Err(e) = parse(args) {
                panic!("{args:?}: {e}");
            }
        }
    }

    pub(super) fn from<T: serde::de::DeserializeOwned>(value: Value) -> T {
        serde_json::from_value(value).unwrap()
    }

    pub(super) fn ready_agent() -> Agent {
        from(json!({
            "apiVersion": "kubeopencode.io/v1alpha1",
            "kind": "Agent",
            "metadata": {
                "name": "team-agent", "namespace": "team-a", "generation": 2,
                "uid": "u-1", "creationTimestamp": "2026-03-01T11:00:00Z",
                "labels": {"team": "a", "tier": "dev"},
            },
            "spec": {
                "profile": "Team development agent",
                "executorImage": "ghcr.io/kubeopencode/kubeopencode-agent-devbox:latest",
                "workspaceDir": "/workspace",
                "serviceAccountName": "kubeopencode-agent",
                "persistence": {"sessions": {"size": "2Gi"}},
                "contexts": [
                    {"name": "codebase", "type": "Git", "mountPath": "code",
                     "git": {"repository": "https://bot:tok3n@github.com/org/repo.git", "ref": "main"}},
                    {"name": "rules", "type": "Text", "text": "be nice\nalways"},
                    {"type": "ConfigMap", "configMap": {"name": "docs", "key": "a.md"}, "mountPath": "/docs/a.md"},
                ],
                "credentials": [
                    {"name": "api-key", "secretRef": {"name": "ai-credentials", "key": "api-key"},
                     "env": "OPENCODE_API_KEY"},
                    {"name": "all-keys", "secretRef": {"name": "more-keys"}},
                    {"name": "ssh", "secretRef": {"name": "ssh", "key": "id"}, "mountPath": "/home/.ssh/id"},
                ],
            },
            "status": {
                "observedGeneration": 2, "phase": "Ready", "ready": true, "suspended": false,
                "url": "http://team-agent.team-a.svc.cluster.local:4096",
                "conditions": [
                    {"type": "ServerReady", "status": "True", "reason": "DeploymentAvailable",
                     "message": "1/1 server replicas available",
                     "lastTransitionTime": "2026-03-01T11:01:00Z"},
                    {"type": "ServerHealthy", "status": "True", "reason": "Healthy",
                     "message": "OpenCode 1.18.33 answers /global/health",
                     "lastTransitionTime": "2026-03-01T11:01:30Z"},
                    {"type": "Ready", "status": "True", "reason": "ServerHealthy",
                     "message": "the OpenCode server is available and healthy",
                     "lastTransitionTime": "2026-03-01T11:01:30Z"},
                ],
            },
        }))
    }

    #[test]
    fn apiserver_errors_name_the_object() {
        let status = |code: u16, reason: &str, details: Value| -> kube::Error {
            kube::Error::Api(Box::new(from(json!({
                "status": "Failure", "code": code, "reason": reason,
                "message": format!("{reason} happened"), "details": details,
            }))))
        };
        let err = agent_error(
            status(404, "NotFound", json!({"name": "x", "kind": "agents"})),
            "getting",
            "x",
            "y",
        );
        assert_eq!(
            crate::error::render(&err),
            "agent \"x\" not found in namespace \"y\" (list them with: kubectl kubeoc agent list -n y)"
        );
        let err = agent_error(status(404, "NotFound", json!({})), "getting", "x", "y");
        assert!(
            crate::error::render(&err).contains("kubectl kubeoc install"),
            "{err:#}"
        );
        let err = agent_error(
            status(404, "NotFound", json!({"name": "y", "kind": "namespaces"})),
            "creating",
            "x",
            "y",
        );
        assert_eq!(
            crate::error::render(&err),
            "creating agent \"x\": namespace \"y\" not found (list them with: kubectl get namespaces)"
        );
        let err = agent_error(status(403, "Forbidden", json!({})), "deleting", "x", "y");
        assert_eq!(
            crate::error::render(&err),
            "deleting agent \"x\" in namespace \"y\": from server (Forbidden): Forbidden happened"
        );
    }
}
