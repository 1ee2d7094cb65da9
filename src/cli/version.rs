//! `kubectl kubeoc version`.

use anyhow::Context as _;

use crate::cluster::ClusterArgs;

/// The client's version, from Cargo.toml.
pub const CLIENT_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// Print the client version only; do not contact the server.
    #[arg(long)]
    pub client: bool,
}

pub async fn run(cluster: &ClusterArgs, args: VersionArgs) -> anyhow::Result<()> {
    println!("Client Version: {CLIENT_VERSION}");
    if args.client {
        return Ok(());
    }
    let client = cluster.connect().await?.client;
    let info = client
        .apiserver_version()
        .await
        .context("cannot read the server version (is the cluster reachable? check --kubeconfig and --context)")?;
    println!("Server Version: {}", info.git_version);
    Ok(())
}
