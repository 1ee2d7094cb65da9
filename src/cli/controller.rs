//! `kubectl kubeoc controller run`.

use crate::cluster::{ClusterArgs, install};
use crate::controller::metrics;
use crate::controller::run::{RunOptions, run};

#[derive(Debug, clap::Subcommand)]
pub enum ControllerCommand {
    /// Run the reconcilers in this process until Ctrl-C (in-cluster config is used when no
    /// kubeconfig exists). Watches every namespace unless -n is given.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Elect a leader through a Lease so only one controller reconciles at a time.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease.
    #[arg(long, default_value = install::SYSTEM_NAMESPACE)]
    pub lease_namespace: String,
    /// Run even while upstream's KubeOpenCode controller holds its Lease.
    #[arg(long)]
    pub ignore_upstream_lease: bool,
    /// Serve /metrics (Prometheus), /healthz and /readyz on HOST:PORT (:PORT for every
    /// interface, port 0 for a free port, logged at startup); 0 disables the endpoint.
    /// /healthz answers 200 while the process runs; /readyz answers 200 while it can do its
    /// job (leading with synced reconcilers, or a standby waiting for the Lease) and 503
    /// otherwise (starting, shutting down, or the API server unreachable).
    #[arg(long, default_value = metrics::DEFAULT_ADDR, value_name = "ADDR")]
    pub metrics_addr: metrics::MetricsAddr,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

pub async fn run_command(cluster: &ClusterArgs, command: ControllerCommand) -> anyhow::Result<()> {
    let ControllerCommand::Run(args) = command;
    // An empty RUST_LOG counts as unset: it would otherwise silence everything. (Targets match
    // by prefix: "kube=warn" would also quiet "kubeoc".)
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let filter = tracing_subscriber::EnvFilter::new(
        directives
            .as_deref()
            .unwrap_or("info,kube_client=warn,kube_runtime=warn"),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        builder.json().init();
    } else {
        builder
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
            .init();
    }
    let connected = cluster.connect_as("kubeoc-controller").await?;
    let namespace = cluster
        .namespace
        .clone()
        .filter(|_| !cluster.all_namespaces);
    run(
        connected.client,
        RunOptions {
            namespace,
            leader_elect: args.leader_elect,
            lease_namespace: args.lease_namespace,
            ignore_upstream_lease: args.ignore_upstream_lease,
            metrics_addr: args.metrics_addr.0,
            in_cluster: connected.in_cluster,
        },
    )
    .await
}
