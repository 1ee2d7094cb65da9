//! The `kubectl kubeoc` command line: one file per noun, dispatch here.

pub mod agent;
pub mod completion;
mod controller;
pub mod crontask;
pub mod describe;
mod front;
mod install;
pub mod jsonpath;
pub mod listing;
pub mod noun;
pub mod output;
pub mod print;
mod progress;
#[cfg(test)]
mod reference;
mod server_table;
pub mod task;
mod version;

use clap::{Parser, Subcommand};

use crate::cluster::ClusterArgs;

/// Live AI coding agents on Kubernetes: manage Agents, Tasks and CronTasks of
/// kubeopencode.io/v1alpha1 and talk to an Agent's OpenCode server from your terminal.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-kubeoc",
    bin_name = "kubectl kubeoc",
    version,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, inspect, suspend, resume and delete Agents.
    #[command(subcommand, visible_aliases = ["agents", "ag"])]
    Agent(agent::AgentCommand),
    /// Submit Tasks (prompts for an Agent), follow them, read their answers, stop them.
    #[command(subcommand, visible_aliases = ["tasks", "tk"])]
    Task(task::TaskCommand),
    /// List, inspect, trigger, suspend, resume and delete CronTasks (Tasks on a schedule).
    #[command(subcommand, visible_aliases = ["crontasks", "ct"])]
    Crontask(crontask::CronTaskCommand),
    /// Run the reconcile loop in this process.
    #[command(subcommand)]
    Controller(controller::ControllerCommand),
    /// Install the CRDs, the kubeopencode-system namespace and RBAC (server-side apply);
    /// --controller also runs the controller in the cluster.
    Install(install::InstallArgs),
    /// Remove what install created; namespaces are kept.
    Uninstall(install::UninstallArgs),
    /// Print the client and server version information.
    Version(version::VersionArgs),
    /// Shell completion: print a script for bash, zsh, fish or PowerShell, or install
    /// kubectl's plugin completion (`kubectl kubeoc <TAB>`).
    #[command(subcommand)]
    Completion(completion::CompletionCommand),
    /// The authenticating front of an Agent's server pod (run by the controller's pods).
    #[command(hide = true)]
    Front(front::FrontArgs),
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Agent(command) => agent::run(&self.cluster, command).await,
            Command::Task(command) => task::run(&self.cluster, command).await,
            Command::Crontask(command) => crontask::run(&self.cluster, command).await,
            Command::Controller(command) => controller::run_command(&self.cluster, command).await,
            Command::Install(args) => install::install(&self.cluster, args).await,
            Command::Uninstall(args) => install::uninstall(&self.cluster, args).await,
            Command::Version(args) => version::run(&self.cluster, args).await,
            Command::Completion(command) => completion::run(command),
            Command::Front(args) => front::run(args).await,
        }
    }
}
