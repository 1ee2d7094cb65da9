//! Values completed from the cluster and the kubeconfig: the names of Agents, Tasks, CronTasks
//! and AgentTemplates, namespaces and contexts. They are attached to the clap command in one
//! walk ([`attach`]), so a new verb that takes a `name` or an `--agent` gets them without
//! anything added here.
//!
//! A completion runs while a person waits at the prompt: every cluster call shares one
//! [`BUDGET`], and a cluster that fails or does not answer in time gives no candidates and
//! prints nothing (stderr would land on the prompt line).

use std::sync::OnceLock;
use std::time::Duration;

use clap::{Command, CommandFactory as _, FromArgMatches as _};
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::api::{Agent, AgentTemplate, CronTask, Task};
use crate::cli::Cli;
use crate::cluster::ClusterArgs;

/// The most a completion waits for the cluster, connecting included.
pub const BUDGET: Duration = Duration::from_secs(2);

/// What kind of name a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Agent,
    Task,
    CronTask,
    AgentTemplate,
    Namespace,
}

/// The kubeconfig, context and namespace the words being completed ask for (`-n team`
/// earlier on the line lists that namespace's Agents). Set once per completion process.
static SCOPE: OnceLock<ClusterArgs> = OnceLock::new();

/// The command line with cluster-backed value completion on every argument that names an
/// object.
pub fn command() -> Command {
    attach(Cli::command())
}

/// Records the scope from the words before the one being completed.
pub fn set_scope(words_before: &[std::ffi::OsString]) {
    let _ = SCOPE.set(scope_of(words_before));
}

/// Reads the cluster flags out of an incomplete command line; anything clap cannot make
/// sense of leaves the defaults (the kubeconfig's current context and namespace).
fn scope_of(words_before: &[std::ffi::OsString]) -> ClusterArgs {
    Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(words_before)
        .ok()
        .and_then(|matches| ClusterArgs::from_arg_matches(&matches).ok())
        .unwrap_or_default()
}

fn attach(cli: Command) -> Command {
    let cli = cli
        .mut_arg("namespace", |arg| arg.add(candidates(Kind::Namespace)))
        .mut_arg("context", |arg| {
            arg.add(ArgValueCandidates::new(kubeconfig_contexts))
        });
    let nouns = [
        ("agent", Kind::Agent),
        ("task", Kind::Task),
        ("crontask", Kind::CronTask),
    ];
    nouns.into_iter().fold(cli, |cli, (noun, kind)| {
        cli.mut_subcommand(noun, |noun| {
            let verbs: Vec<String> = noun
                .get_subcommands()
                .map(|verb| verb.get_name().to_string())
                .collect();
            verbs.into_iter().fold(noun, |noun, verb| {
                // `create NAME` names an object that does not exist yet.
                let names_existing = verb != "create";
                noun.mut_subcommand(verb, |verb| object_args(verb, kind, names_existing))
            })
        })
    })
}

/// A verb's own arguments: its positional NAME(s) are objects of its noun; `--agent` and
/// `--template` name Agents and AgentTemplates wherever they appear.
fn object_args(verb: Command, noun: Kind, names_existing: bool) -> Command {
    let ids: Vec<(String, Kind)> = verb
        .get_arguments()
        .filter_map(|arg| {
            let id = arg.get_id().as_str();
            let kind = match id {
                "name" | "names" if arg.is_positional() && names_existing => noun,
                "agent" if !arg.is_positional() => Kind::Agent,
                "template" if !arg.is_positional() => Kind::AgentTemplate,
                _ => return None,
            };
            Some((id.to_string(), kind))
        })
        .collect();
    ids.into_iter().fold(verb, |verb, (id, kind)| {
        verb.mut_arg(id, |arg| arg.add(candidates(kind)))
    })
}

fn candidates(kind: Kind) -> ArgValueCandidates {
    ArgValueCandidates::new(move || names_from_cluster(kind))
}

/// The names of `kind` in the scope's namespace, or none when the cluster does not answer
/// within [`BUDGET`].
fn names_from_cluster(kind: Kind) -> Vec<CompletionCandidate> {
    let scope = SCOPE.get().cloned().unwrap_or_default();
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let names = runtime.block_on(async move {
        tokio::time::timeout(BUDGET, list_names(&scope, kind))
            .await
            .ok()
            .and_then(Result::ok)
    });
    names
        .unwrap_or_default()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

async fn list_names(scope: &ClusterArgs, kind: Kind) -> anyhow::Result<Vec<String>> {
    let cluster = scope.connect().await?;
    let client = cluster.client;
    let ns = cluster.namespace.as_str();
    match kind {
        Kind::Agent => names::<Agent>(Api::namespaced(client, ns)).await,
        Kind::Task => names::<Task>(Api::namespaced(client, ns)).await,
        Kind::CronTask => names::<CronTask>(Api::namespaced(client, ns)).await,
        Kind::AgentTemplate => names::<AgentTemplate>(Api::namespaced(client, ns)).await,
        Kind::Namespace => names::<Namespace>(Api::all(client)).await,
    }
}

async fn names<K>(api: Api<K>) -> anyhow::Result<Vec<String>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let list = api.list_metadata(&ListParams::default()).await?;
    let mut names: Vec<String> = list
        .items
        .into_iter()
        .filter_map(|object| object.metadata.name)
        .collect();
    names.sort();
    Ok(names)
}

/// The contexts of the kubeconfig in scope (`--kubeconfig`, else `$KUBECONFIG`, else
/// `~/.kube/config`), the current one first.
fn kubeconfig_contexts() -> Vec<CompletionCandidate> {
    let scope = SCOPE.get().cloned().unwrap_or_default();
    let config = match &scope.kubeconfig {
        Some(path) => kube::config::Kubeconfig::read_from(path),
        None => kube::config::Kubeconfig::read(),
    };
    let Ok(config) = config else {
        return Vec::new();
    };
    let current = config.current_context.clone();
    let mut names: Vec<(bool, String)> = config
        .contexts
        .into_iter()
        .map(|context| (Some(&context.name) != current.as_ref(), context.name))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|(other, name)| {
            CompletionCandidate::new(name).help((!other).then(|| "current context".into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<std::ffi::OsString> {
        line.split_whitespace().map(Into::into).collect()
    }

    #[test]
    fn the_scope_reads_cluster_flags_anywhere_on_an_incomplete_line() {
        let scope = scope_of(&words(
            "kubectl-kubeoc --context dev agent describe -n team",
        ));
        assert_eq!(scope.namespace.as_deref(), Some("team"));
        assert_eq!(scope.context.as_deref(), Some("dev"));
        let scope = scope_of(&words("kubectl-kubeoc agent"));
        assert_eq!(scope.namespace, None);
    }

    #[test]
    fn every_verb_that_names_an_existing_object_completes_it() {
        let mut cli = command();
        cli.build();
        let completes = |path: &[&str], id: &str| {
            let mut cmd = &cli;
            for name in path {
                cmd = cmd
                    .find_subcommand(name)
                    .unwrap_or_else(|| panic!("no subcommand {name}"));
            }
            cmd.get_arguments()
                .find(|arg| arg.get_id() == id)
                .unwrap_or_else(|| panic!("{path:?} has no {id}"))
                .get::<ArgValueCandidates>()
                .is_some()
        };
        for verb in [
            "describe", "get", "delete", "suspend", "resume", "logs", "attach",
        ] {
            let id = if ["delete", "suspend", "resume", "get"].contains(&verb) {
                "names"
            } else {
                "name"
            };
            assert!(completes(&["agent", verb], id), "agent {verb}");
        }
        assert!(completes(&["task", "describe"], "name"));
        assert!(completes(&["task", "submit"], "agent"));
        assert!(completes(&["task", "submit"], "template"));
        assert!(completes(&["crontask", "describe"], "name"));
        assert!(completes(&["agent", "describe"], "namespace"));
        assert!(completes(&["agent", "describe"], "context"));
        assert!(!completes(&["agent", "create"], "name"));
    }
}
