//! `kubeoc-testbed node`: a node agent that runs the pods bound to it as local processes, each
//! pod in its own network namespace behind the testbed bridge, each container in its own mount
//! namespace and cgroup. Enough of a kubelet for kubeoc's tests: env, volumes, probes, restarts,
//! logs, graceful deletion, Service names.

pub mod env;
pub mod images;
pub mod ipam;
pub mod logs;
pub mod network;
pub mod pod;
pub mod probe;
pub mod process;
pub mod registration;
pub mod services;
pub mod storage;
pub mod volumes;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::watch;

use images::ImageMap;
use ipam::Ipam;
use logs::LogRegistry;
use network::HostNetwork;
use services::ServiceTable;

/// Flags of `kubeoc-testbed node`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Kubeconfig with rights over pods, nodes, leases and volumes.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    #[arg(long, default_value = "testbed-node-0")]
    pub node_name: String,
    /// The node's address: the bridge address, where the kubelet endpoint listens.
    #[arg(long, default_value = "10.244.0.1")]
    pub node_ip: Ipv4Addr,
    #[arg(long, default_value = "kubeoc0")]
    pub bridge: String,
    #[arg(long, default_value = "10.244.0.0/16")]
    pub pod_cidr: String,
    #[arg(long, default_value = "10.96.0.0/16")]
    pub service_cidr: String,
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Where pod directories and host-path volumes live (`.testbed`).
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Serving certificate, key and CA (client certificates) of the kubelet endpoint.
    #[arg(long)]
    pub tls_cert: PathBuf,
    #[arg(long)]
    pub tls_key: PathBuf,
    #[arg(long)]
    pub client_ca: PathBuf,
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// The pinned OpenCode binary, carried by upstream's agent image.
    #[arg(long)]
    pub opencode_bin: Option<PathBuf>,
    /// Kubernetes version reported in the Node's nodeInfo.
    #[arg(long, default_value = "v0.0.0")]
    pub kube_version: String,
}

/// A pod's network sandbox, as the Service sync needs it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub netns: String,
    pub hosts_file: PathBuf,
    pub namespace: String,
    pub pod_name: String,
    pub ip: Ipv4Addr,
}

/// What every pod worker shares.
pub struct NodeContext {
    pub client: kube::Client,
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    pub pods_dir: PathBuf,
    pub cgroup_root: PathBuf,
    pub network: HostNetwork,
    pub ipam: Mutex<Ipam>,
    pub images: ImageMap,
    pub logs: LogRegistry,
    pub services: watch::Receiver<Arc<ServiceTable>>,
    pub sandboxes: Mutex<HashMap<String, Sandbox>>,
    pub cluster_domain: String,
    pub service_cidr: String,
    /// Last iptables rules applied per network namespace, to skip no-op reloads. Held across
    /// an apply, so applies run one at a time.
    applied_rules: tokio::sync::Mutex<HashMap<String, String>>,
}

/// Writes the pod's hosts file and loads its service rules (when they changed) from the newest
/// Service table.
pub async fn apply_services(ctx: &NodeContext, sandbox: &Sandbox) -> anyhow::Result<()> {
    let mut applied = ctx.applied_rules.lock().await;
    // Read under the lock: the last apply to a sandbox uses the newest table, so a pod set up
    // while the table changes cannot keep the older one (a new pod once kept a table without
    // its Service's endpoint: every connection was refused).
    let table = ctx.services.borrow().clone();
    let hosts = services::hosts_file(
        &table,
        &sandbox.namespace,
        &sandbox.pod_name,
        sandbox.ip,
        &ctx.cluster_domain,
    );
    services::write_in_place(&sandbox.hosts_file, &hosts)
        .with_context(|| format!("writing {}", sandbox.hosts_file.display()))?;
    let rules = services::iptables_rules(&table, &ctx.service_cidr);
    if applied.get(&sandbox.netns) != Some(&rules) {
        network::run_in_netns(&sandbox.netns, "iptables-restore", &[], Some(&rules))
            .await
            .context("loading service rules (is iptables installed?)")?;
        applied.insert(sandbox.netns.clone(), rules);
    }
    Ok(())
}

/// Forgets the rules applied in a network namespace that is gone.
pub async fn forget_services(ctx: &NodeContext, netns: &str) {
    ctx.applied_rules.lock().await.remove(netns);
}

/// The cgroup v2 directory all pods live under.
fn cgroup_root() -> anyhow::Result<PathBuf> {
    for candidate in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let base = PathBuf::from(candidate);
        if base.join("cgroup.procs").exists() && base.join("cgroup.subtree_control").exists() {
            let root = base.join("kubeoc-testbed");
            std::fs::create_dir_all(&root)
                .with_context(|| format!("creating cgroup {}", root.display()))?;
            return Ok(root);
        }
    }
    anyhow::bail!(
        "no cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified: the node agent needs one to track pod processes"
    )
}

/// Keeps the Service table current from Services and EndpointSlices, and re-applies it to every
/// sandbox when it changes.
async fn sync_services(ctx: Arc<NodeContext>, table_tx: watch::Sender<Arc<ServiceTable>>) {
    let (svc_store, svc_writer) = reflector::store::<Service>();
    let (eps_store, eps_writer) = reflector::store::<EndpointSlice>();
    let svc_stream = reflector(
        svc_writer,
        watcher(
            Api::<Service>::all(ctx.client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|_| ());
    let eps_stream = reflector(
        eps_writer,
        watcher(
            Api::<EndpointSlice>::all(ctx.client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|_| ());
    let mut changes = futures::stream::select(svc_stream, eps_stream).boxed();
    while changes.next().await.is_some() {
        // Coalesce bursts of events into one rebuild.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while let Some(Some(())) = futures::FutureExt::now_or_never(changes.next()) {}
        let services: Vec<Service> = svc_store.state().iter().map(|s| (**s).clone()).collect();
        let slices: Vec<EndpointSlice> = eps_store.state().iter().map(|s| (**s).clone()).collect();
        let table = Arc::new(services::build_table(&services, &slices));
        if **table_tx.borrow() == *table {
            continue;
        }
        // Sent before the sandboxes are listed: a sandbox missing from the list is set up after
        // this and reads the new table itself.
        let _ = table_tx.send(table);
        let sandboxes: Vec<Sandbox> = ctx
            .sandboxes
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        for sandbox in sandboxes {
            if let Err(err) = apply_services(&ctx, &sandbox).await {
                tracing::warn!(
                    "services for {}/{}: {err:#}",
                    sandbox.namespace,
                    sandbox.pod_name
                );
            }
        }
    }
}

/// Removes what an earlier run of the node agent left: processes, cgroups, namespaces.
async fn clean_leftovers(network: &HostNetwork, cgroups: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(cgroups) {
        for entry in entries.flatten() {
            process::kill_cgroup(&entry.path()).await;
        }
    }
    for ns in network.list_pod_namespaces().await {
        let _ = network::run("ip", &["netns", "del", &ns]).await;
    }
}

pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;

    let ipam = Ipam::new(&args.pod_cidr, &[args.node_ip]).map_err(anyhow::Error::msg)?;
    let network = HostNetwork {
        bridge: args.bridge.clone(),
        prefix: ipam.prefix(),
        service_cidr: args.service_cidr.clone(),
    };
    // Nothing dials a pod before the routes are known to stay on this machine.
    network
        .verify_routes(Ipv4Addr::new(10, 244, 0, 2), Ipv4Addr::new(10, 96, 0, 10))
        .await?;
    let cgroups = cgroup_root()?;
    clean_leftovers(&network, &cgroups).await;

    let identity = registration::NodeIdentity {
        name: args.node_name.clone(),
        ip: args.node_ip,
        kubelet_port: args.kubelet_port,
        kube_version: args.kube_version.clone(),
    };
    registration::register(&client, &identity).await?;
    tokio::spawn(registration::heartbeat(client.clone(), identity));
    storage::ensure_storage_class(&client).await?;
    tokio::spawn(storage::run(client.clone(), args.state_dir.join("volumes")));

    let log_registry: LogRegistry = Arc::default();
    let tls = logs::tls_config(&args.tls_cert, &args.tls_key, &args.client_ca)?;
    let kubelet_addr = SocketAddr::from((args.node_ip, args.kubelet_port));
    let log_server = tokio::spawn(logs::serve(kubelet_addr, tls, log_registry.clone()));

    let (table_tx, table_rx) = watch::channel(Arc::new(ServiceTable::default()));
    let pods_dir = args.state_dir.join("pods");
    std::fs::create_dir_all(&pods_dir)?;
    let ctx = Arc::new(NodeContext {
        client: client.clone(),
        node_name: args.node_name.clone(),
        node_ip: args.node_ip,
        pods_dir,
        cgroup_root: cgroups,
        network,
        ipam: Mutex::new(ipam),
        images: ImageMap {
            opencode_bin: args.opencode_bin.clone().filter(|p| p.exists()),
            kubeoc_bins: ["release", "debug"]
                .iter()
                .map(|profile| {
                    crate::repo_root()
                        .join("target")
                        .join(profile)
                        .join("kubectl-kubeoc")
                })
                .collect(),
        },
        logs: log_registry,
        services: table_rx,
        sandboxes: Mutex::default(),
        cluster_domain: args.cluster_domain.clone(),
        service_cidr: args.service_cidr.clone(),
        applied_rules: tokio::sync::Mutex::default(),
    });
    tokio::spawn(sync_services(ctx.clone(), table_tx));
    tracing::info!(node = %args.node_name, "node agent ready");

    let pods: Api<Pod> = Api::all(client.clone());
    let selector = watcher::Config::default().fields(&format!("spec.nodeName={}", args.node_name));
    let mut events = watcher(pods, selector).default_backoff().boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { break };
                match event {
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => dispatch(&ctx, &mut workers, pod),
                    Ok(watcher::Event::Delete(pod)) => {
                        if let Some(tx) = pod.uid().and_then(|uid| workers.remove(&uid)) {
                            let _ = tx.send(None);
                        }
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!("watching pods: {err}"),
                }
                workers.retain(|_, tx| !tx.is_closed());
            }
            result = tokio::signal::ctrl_c() => {
                result?;
                tracing::info!("interrupted: stopping all pods");
                break;
            }
        }
    }
    log_server.abort();
    process::kill_cgroup(&ctx.cgroup_root).await;
    for uid in workers.keys() {
        ctx.network.delete_pod_network(uid).await;
    }
    Ok(())
}

fn dispatch(
    ctx: &Arc<NodeContext>,
    workers: &mut HashMap<String, watch::Sender<Option<Pod>>>,
    pod: Pod,
) {
    let Some(uid) = pod.uid() else { return };
    if let Some(tx) = workers.get(&uid) {
        let _ = tx.send(Some(pod));
        return;
    }
    let terminal = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    if terminal && pod.metadata.deletion_timestamp.is_none() {
        // Finished before this node agent started: nothing to run again.
        return;
    }
    let (tx, rx) = watch::channel(Some(pod));
    tokio::spawn(pod::run(ctx.clone(), rx));
    workers.insert(uid, tx);
}
