//! The OpenAI-compatible stub model (being written).

/// Flags of `kubeoc-testbed model`.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {}

pub async fn run(_args: ModelArgs) -> anyhow::Result<()> {
    anyhow::bail!("the stub model is not written yet")
}
