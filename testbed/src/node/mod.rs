//! The node agent (being written).

/// Flags of `kubeoc-testbed node`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {}

pub async fn run(_args: NodeArgs) -> anyhow::Result<()> {
    anyhow::bail!("the node agent is not written yet")
}
