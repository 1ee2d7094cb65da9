//! `kubectl kubeoc install` and `kubectl kubeoc uninstall`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::cli::progress::Spinner;
use crate::cluster::{ClusterArgs, install};

/// Output of `install --dry-run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ManifestFormat {
    Yaml,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Print what would be applied instead of applying it; the cluster is not contacted.
    #[arg(long)]
    pub dry_run: bool,
    /// Format of the --dry-run output.
    #[arg(
        short = 'o',
        long,
        value_enum,
        default_value = "yaml",
        requires = "dry_run"
    )]
    pub output: ManifestFormat,
    /// How long to wait for the CRDs to be Established.
    #[arg(long, default_value = "60s", value_parser = crate::duration::parse)]
    pub timeout: Duration,
}

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Also delete every Agent, Task and CronTask (they go with the CRDs).
    #[arg(long)]
    pub purge: bool,
}

pub async fn install(cluster: &ClusterArgs, args: InstallArgs) -> anyhow::Result<()> {
    let objects = install::objects()?;
    if args.dry_run {
        let mut out = std::io::stdout().lock();
        match args.output {
            ManifestFormat::Yaml => {
                for object in &objects {
                    writeln!(
                        out,
                        "---\n{}",
                        serde_saphyr::to_string(object)
                            .context("rendering YAML")?
                            .trim_end()
                    )?;
                }
            }
            ManifestFormat::Json => {
                let list =
                    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            }
        }
        return Ok(());
    }
    let client = cluster.connect().await?.client;
    let spinner = Spinner::start("applying CRDs, namespace, RBAC");
    let report = install::apply(&client).await;
    spinner.finish();
    for applied in report? {
        println!("{} {}", applied.object, applied.outcome);
    }
    let spinner = Spinner::start("waiting for the CRDs to be Established");
    let waited = install::wait_established(&client, args.timeout).await;
    spinner.finish();
    waited?;
    println!("kubeoc is installed. Next: kubectl kubeoc controller run");
    Ok(())
}

pub async fn uninstall(cluster: &ClusterArgs, args: UninstallArgs) -> anyhow::Result<()> {
    // Refuse before contacting the cluster: a script without --yes gets the same answer always.
    if !args.yes && !std::io::stdin().is_terminal() {
        bail!("refusing to uninstall without confirmation: stdin is not a terminal (pass --yes)");
    }
    let client = cluster.connect().await?.client;
    let agents = install::existing_agents(&client).await?;
    if !agents.is_empty() && !args.purge {
        bail!(
            "refusing to uninstall: {} Agent(s) exist ({}); deleting the CRDs would delete them. \
             Delete them first, or pass --purge to delete them with the CRDs",
            agents.len(),
            agents
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !args.yes {
        eprint!(
            "Delete the kubeoc CRDs{} and RBAC from this cluster? [y/N] ",
            if args.purge {
                ", every Agent, Task and CronTask"
            } else {
                ""
            }
        );
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("uninstall cancelled");
        }
    }
    for removed in install::remove(&client).await? {
        println!("{removed} deleted");
    }
    println!(
        "namespace/{} kept (namespaces are never deleted by uninstall)",
        install::SYSTEM_NAMESPACE
    );
    Ok(())
}
