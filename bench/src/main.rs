//! `make bench`: kubeoc measured side by side with the floor on this machine's testbed, one
//! row per figure with its goal. Agents for the scale rows run on KWOK's fake nodes; the
//! figures come from the controller's own process (/proc), its /metrics and the apiserver's
//! audit log.

mod attach;
mod audit;
mod cli_row;
mod controller;
mod fleet;
mod frame;
mod live;
mod report;
mod scale;
mod tasks;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;

/// kubeoc's benchmarks on the testbed (`make cluster-up` first).
#[derive(Parser)]
struct Args {
    /// Agent counts, comma-separated; the first gets every row, the others memory and the
    /// idle controller's requests.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    n: Vec<usize>,
    /// Seconds the idle controller is watched at each N.
    #[arg(long, default_value_t = 300)]
    idle: u64,
    /// The kubectl-kubeoc binary under measurement.
    #[arg(long)]
    kubeoc: Option<PathBuf>,
    /// Where the JSON results go.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Runs of each command for the CLI row.
    #[arg(long, default_value_t = 5)]
    cli_runs: usize,
    /// Frames drawn for the TUI row.
    #[arg(long, default_value_t = 200)]
    frames: usize,
    /// Prompts for the attach row, and Tasks for the latency rows (with 10, the attach row's
    /// median moved by 30 ms between runs).
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Tasks of the throughput row.
    #[arg(long, default_value_t = 200)]
    burst: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.n.is_empty() || args.n.contains(&0) {
        bail!("--n takes Agent counts above zero, e.g. --n 1000,5000");
    }
    let root = kubeoc_testbed::repo_root();
    let kubeoc = args
        .kubeoc
        .unwrap_or_else(|| root.join("target/release/kubectl-kubeoc"));
    if !kubeoc.is_file() {
        bail!(
            "{} does not exist: build it with `cargo build --release --bin kubectl-kubeoc` (make bench does)",
            kubeoc.display()
        );
    }
    let out = args.out.unwrap_or_else(|| root.join("bench/results.json"));
    let work_dir = kubeoc_testbed::state_dir().join("bench");
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let client = kubeoc_testbed::admin_client()
        .await
        .context("the testbed is not up: run `make cluster-up`")?;
    let version = client.apiserver_version().await?.git_version;
    // The CRDs and RBAC, as a user installs them (idempotent).
    let kubeconfig = format!(
        "--kubeconfig={}",
        kubeoc_testbed::kubeconfig_path().display()
    );
    kubeoc_testbed::node::network::run(&kubeoc.to_string_lossy(), &[&kubeconfig, "install"])
        .await
        .context("installing kubeoc's CRDs and RBAC")?;
    let machine = report::Machine::read(version);

    let mut rows = vec![frame::run(args.frames)?];
    let largest = args.n.iter().copied().max().unwrap_or(1);
    let setup = scale::Setup {
        client: client.clone(),
        kubeconfig: kubeoc_testbed::kubeconfig_path(),
        kubeoc,
        work_dir: work_dir.clone(),
        audit_dir: kubeoc_testbed::state_dir().join("logs"),
        idle: Duration::from_secs(args.idle),
        cli_runs: args.cli_runs,
    };
    let fleet = fleet::Fleet::start(
        client.clone(),
        &setup.kubeconfig,
        2 * largest,
        &work_dir.join("kwok.log"),
    )
    .await?;
    let mut namespaces = Vec::new();
    let mut outcome = Ok(());
    for (i, n) in args.n.iter().copied().enumerate() {
        match scale::run(&setup, n, i == 0, &mut namespaces).await {
            Ok(more) => rows.extend(more),
            Err(e) => {
                outcome = Err(e.context(format!("the rows at N = {n}")));
                break;
            }
        }
        if let Err(e) = scale::delete_namespaces(&client, &mut namespaces).await {
            outcome = Err(e);
            break;
        }
    }
    let cleaned = scale::delete_namespaces(&client, &mut namespaces).await;
    fleet.stop().await?;
    let outcome = match outcome.and(cleaned) {
        Ok(()) => {
            let sizes = live::Sizes {
                samples: args.samples,
                burst: args.burst,
            };
            let live = live::run(&setup, &sizes, &mut rows, &mut namespaces).await;
            live.and(scale::delete_namespaces(&client, &mut namespaces).await)
        }
        failed => failed,
    };

    // What was measured is printed even when a later row failed.
    print!("{}", report::table(&rows));
    report::write_json(&out, &machine, &rows)?;
    println!("results: {}", out.display());
    outcome
}
