//! `kubectl kubeoc install` and `kubectl kubeoc uninstall`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::cli::progress::Spinner;
use crate::cluster::controller_install::{self, ControllerInstall};
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
    /// How long to wait for the CRDs to be Established, and with --controller for a
    /// controller replica to be Ready.
    #[arg(long, default_value = "120s", value_parser = crate::duration::parse)]
    pub timeout: Duration,
    /// Also run the controller in the cluster: a Deployment of kubeoc's image (two replicas
    /// electing a leader, probes on /readyz and /healthz, the restricted Pod Security
    /// level), its ServiceAccount bound to the kubeoc-controller ClusterRole, and a metrics
    /// Service.
    #[arg(long)]
    pub controller: bool,
    /// The controller's image: kubeoc's own, the same binary.
    #[arg(long, value_name = "IMAGE", default_value = controller_install::DEFAULT_IMAGE,
          requires = "controller")]
    pub image: String,
    /// Namespace of the controller's Deployment, ServiceAccount, Service and Lease.
    #[arg(long, value_name = "NAMESPACE", default_value = install::SYSTEM_NAMESPACE,
          requires = "controller")]
    pub controller_namespace: String,
    /// Reconcile only this namespace (RoleBindings there instead of a ClusterRoleBinding);
    /// default: every namespace.
    #[arg(long, value_name = "NAMESPACE", requires = "controller")]
    pub watch_namespace: Option<String>,
    /// Controller replicas: one leads, the others wait for the Lease.
    #[arg(long, default_value_t = controller_install::DEFAULT_REPLICAS,
          value_parser = clap::value_parser!(i32).range(1..), requires = "controller")]
    pub replicas: i32,
}

impl InstallArgs {
    fn controller_install(&self) -> Option<ControllerInstall> {
        self.controller.then(|| ControllerInstall {
            namespace: self.controller_namespace.clone(),
            watch_namespace: self.watch_namespace.clone(),
            image: self.image.clone(),
            replicas: self.replicas,
        })
    }
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
    let mut objects = install::objects()?;
    let controller = args.controller_install();
    if let Some(controller) = &controller {
        objects.extend(controller_install::objects(controller));
    }
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
    let Some(controller) = controller else {
        println!(
            "kubeoc is installed. Next: kubectl kubeoc controller run (or install --controller to run it in the cluster)"
        );
        return Ok(());
    };
    let spinner = Spinner::start("applying the controller");
    let report = install::apply_objects(&client, controller_install::objects(&controller)).await;
    spinner.finish();
    for applied in report? {
        println!("{} {}", applied.object, applied.outcome);
    }
    let spinner = Spinner::start("waiting for a controller replica to be Ready");
    let ready = controller_install::wait_ready(&client, &controller.namespace, args.timeout).await;
    spinner.finish();
    ready?;
    println!(
        "kubeoc is installed and its controller runs in namespace {ns} \
         (kubectl -n {ns} get deployment {name}; kubectl -n {ns} logs deployment/{name})",
        ns = controller.namespace,
        name = controller_install::CONTROLLER_NAME,
    );
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
