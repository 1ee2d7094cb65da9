//! `kubeoc-testbed`: the parts of the local cluster that are ours (node agent, stub model).

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kubeoc-testbed",
    version,
    about = "kubeoc's local Kubernetes testbed"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the Kubernetes version pinned in testbed/controlplane/go.mod.
    KubeVersion,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::KubeVersion => println!("{}", kubeoc_testbed::pinned_kube_version()?),
    }
    Ok(())
}
