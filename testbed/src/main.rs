//! `kubeoc-testbed`: the parts of the local cluster that are ours: the node agent that runs
//! pods as local processes, and the OpenAI-compatible stub model.

use clap::{Parser, Subcommand};
use kubeoc_testbed::{model, node};

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

// Parsed once at startup: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node agent: register testbed-node-0 and run its pods as processes.
    Node(node::NodeArgs),
    /// Serve the OpenAI-compatible stub model that OpenCode talks to in tests.
    Model(model::ModelArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            // An empty RUST_LOG counts as unset: it would otherwise silence everything.
            std::env::var("RUST_LOG")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .as_deref()
                .unwrap_or("info"),
        ))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Node(args) => node::run(args).await,
        Command::Model(args) => model::run(args).await,
    }
}
