//! The rows at N Agents on fake nodes: converge (against applying the same children with
//! kubectl), the idle controller's writes, reads, CPU and memory, and its restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource};
use kubeoc::api::Agent;
use kubeoc::controller::pod::AGENT_LABEL;
use kubeoc_testbed::node::network;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::audit;
use crate::controller::Controller;
use crate::fleet::{NODE_LABEL, SERVER_PORT};
use crate::report::{Goal, Row};

/// What every scale run shares.
pub struct Setup {
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub kubeoc: PathBuf,
    pub work_dir: PathBuf,
    pub audit_dir: PathBuf,
    /// How long the idle controller is watched.
    pub idle: Duration,
    /// Runs of each command for the CLI row.
    pub cli_runs: usize,
}

/// A watch cache of one kind in one namespace, kept up to date in the background.
struct Mirror<K: Resource + Clone + 'static>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    store: Store<K>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> Mirror<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + std::hash::Hash + Eq + Clone + Send + Sync,
{
    fn start(client: &Client, ns: &str, labels: Option<&str>) -> Self {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        let (store, writer) = reflector::store();
        let config = match labels {
            Some(l) => watcher::Config::default().labels(l),
            None => watcher::Config::default(),
        };
        let stream = watcher(api, config)
            .default_backoff()
            .reflect(writer)
            .applied_objects();
        let task = tokio::spawn(async move {
            futures::pin_mut!(stream);
            while stream.next().await.is_some() {}
        });
        Mirror { store, task }
    }

    fn len(&self) -> usize {
        self.store.state().len()
    }
}

impl<K: Resource + Clone + 'static> Drop for Mirror<K>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The children of the Agents in one namespace.
struct Children {
    deployments: Mirror<Deployment>,
    services: Mirror<Service>,
    claims: Mirror<PersistentVolumeClaim>,
    secrets: Mirror<Secret>,
}

impl Children {
    fn start(client: &Client, ns: &str) -> Self {
        let l = Some(AGENT_LABEL);
        Children {
            deployments: Mirror::start(client, ns, l),
            services: Mirror::start(client, ns, l),
            claims: Mirror::start(client, ns, l),
            secrets: Mirror::start(client, ns, l),
        }
    }

    /// The fewest of any kind, and what each kind has.
    fn counts(&self) -> (usize, String) {
        let c = [
            self.deployments.len(),
            self.services.len(),
            self.claims.len(),
            self.secrets.len(),
        ];
        let least = c.iter().copied().min().unwrap_or(0);
        (
            least,
            format!(
                "{} Deployments, {} Services, {} PVCs, {} Secrets",
                c[0], c[1], c[2], c[3]
            ),
        )
    }
}

/// Polls `check` every 100 ms until it says done, for at most `timeout`; what it saw last on
/// failure.
async fn until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> (bool, String),
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let (done, seen) = check();
        if done {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("{what}: not within {timeout:?}; last seen: {seen}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The bench's Agents: on the fake nodes, on the health stand-in's port.
fn agents_manifest(n: usize) -> Value {
    let (label, value) = NODE_LABEL;
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
                "metadata": {"name": format!("agent-{i:05}")},
                "spec": {
                    "workspaceDir": "/workspace",
                    "serviceAccountName": "default",
                    "port": SERVER_PORT,
                    "podSpec": {"scheduling": {
                        "nodeSelector": {label: value},
                        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
                    }},
                },
            })
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

pub async fn fresh_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(name).await?.is_some() {
        let _ = namespaces.delete(name, &DeleteParams::default()).await;
        kubeoc_testbed::wait_until(
            &format!("namespace {name} gone"),
            Duration::from_secs(600),
            || async { Ok(namespaces.get_opt(name).await?.is_none().then_some(())) },
        )
        .await?;
    }
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    Ok(())
}

/// Deletes the namespaces and waits until they are gone, so the garbage collector's work is
/// not measured with the next rows.
pub async fn delete_namespaces(client: &Client, names: &mut Vec<String>) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in names.iter() {
        let _ = namespaces.delete(name, &DeleteParams::background()).await;
    }
    for name in names.drain(..) {
        eprintln!("bench: waiting for namespace {name} to be deleted");
        kubeoc_testbed::wait_until(
            &format!("namespace {name} gone"),
            Duration::from_secs(900),
            || async { Ok(namespaces.get_opt(&name).await?.is_none().then_some(())) },
        )
        .await?;
    }
    Ok(())
}

/// `kubectl apply -f FILE`, failing with its output.
pub async fn kubectl_apply(kubeconfig: &Path, ns: &str, file: &Path) -> anyhow::Result<()> {
    let kubeconfig = format!("--kubeconfig={}", kubeconfig.display());
    let file = file.to_string_lossy();
    network::run("kubectl", &[&kubeconfig, "-n", ns, "apply", "-f", &file]).await?;
    Ok(())
}

/// The children the controller made, as plain manifests for another namespace: what a person
/// applying them directly would write.
async fn exported_children(client: &Client, ns: &str) -> anyhow::Result<Value> {
    let mut items = Vec::new();
    exported::<Deployment>(client, ns, &mut items).await?;
    exported::<Service>(client, ns, &mut items).await?;
    exported::<PersistentVolumeClaim>(client, ns, &mut items).await?;
    exported::<Secret>(client, ns, &mut items).await?;
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

/// Kind `K`'s children in `ns` without what the cluster filled in (owner, uid, status, bound
/// addresses and volumes).
async fn exported<K>(client: &Client, ns: &str, items: &mut Vec<Value>) -> anyhow::Result<()>
where
    K: k8s_openapi::Resource
        + Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let params = ListParams::default().labels(AGENT_LABEL);
    for child in Api::<K>::namespaced(client.clone(), ns)
        .list(&params)
        .await?
    {
        let mut object = serde_json::to_value(child)?;
        let meta = object["metadata"].take();
        object["metadata"] = json!({"name": meta["name"], "labels": meta["labels"]});
        object["apiVersion"] = json!(K::API_VERSION);
        object["kind"] = json!(K::KIND);
        if let Some(o) = object.as_object_mut() {
            o.remove("status");
        }
        if let Some(spec) = object["spec"].as_object_mut() {
            for bound in ["clusterIP", "clusterIPs", "volumeName"] {
                spec.remove(bound);
            }
        }
        items.push(object);
    }
    Ok(())
}

fn statuses_written(agents: &Store<Agent>, n: usize) -> (usize, usize) {
    let all = agents.state();
    let written = all
        .iter()
        .filter(|a| a.status.as_ref().and_then(|s| s.observed_generation) == a.metadata.generation)
        .count();
    let ready = all
        .iter()
        .filter(|a| a.status.as_ref().and_then(|s| s.ready) == Some(true))
        .count();
    (written.min(n), ready)
}

fn per_minute(count: usize, window: Duration) -> f64 {
    count as f64 * 60.0 / window.as_secs_f64()
}

/// Converge, idle and restart at `n` Agents (with the floor and the restart when `full`).
pub async fn run(
    setup: &Setup,
    n: usize,
    full: bool,
    cleanup: &mut Vec<String>,
) -> anyhow::Result<Vec<Row>> {
    let client = &setup.client;
    let ns = format!("bench-agents-{n}");
    let floor_ns = format!("bench-floor-{n}");
    fresh_namespace(client, &ns).await?;
    cleanup.push(ns.clone());
    let log = setup.work_dir.join(format!("controller-{n}.log"));
    let mut controller = Controller::start(&setup.kubeoc, &setup.kubeconfig, &ns, &log)?;
    controller.wait_ready(Duration::from_secs(60)).await?;

    let manifest = setup.work_dir.join(format!("agents-{n}.json"));
    std::fs::write(&manifest, serde_json::to_vec(&agents_manifest(n))?)?;
    let agents = Mirror::<Agent>::start(client, &ns, None);
    let children = Children::start(client, &ns);
    eprintln!("bench: applying {n} Agents in namespace {ns}");
    let started = Instant::now();
    kubectl_apply(&setup.kubeconfig, &ns, &manifest).await?;
    let timeout = Duration::from_secs(120 + n as u64 / 5);
    until(&format!("{n} Agents converged"), timeout, || {
        let (least, seen) = children.counts();
        let (written, _) = statuses_written(&agents.store, n);
        (
            least >= n && written >= n,
            format!("{seen}, {written} statuses written"),
        )
    })
    .await?;
    let converge = started.elapsed();
    // All Ready is context, not the figure: a fake pod may stay unready (KWOK's node
    // lifecycle under load), which the controller then reports truthfully.
    let mut ready_count = 0;
    let mut changed = Instant::now();
    while started.elapsed() < timeout && changed.elapsed() < Duration::from_secs(30) {
        let (_, now_ready) = statuses_written(&agents.store, n);
        if now_ready != ready_count {
            ready_count = now_ready;
            changed = Instant::now();
        }
        if ready_count >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = started.elapsed();
    eprintln!(
        "bench: {n} Agents converged in {converge:.1?}; {ready_count} Ready after {ready:.1?}"
    );
    drop(children);
    drop(agents);

    // Idle: nothing changes; whatever the controller does now is its steady state.
    let settle = Instant::now() + Duration::from_secs(60);
    while controller.counter("kubeoc_reconciles_in_flight").await? > 0.0 && Instant::now() < settle
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("bench: watching the idle controller for {:?}", setup.idle);
    let cpu_before = controller.cpu_seconds()?;
    let from = Timestamp::now();
    tokio::time::sleep(setup.idle).await;
    let to = Timestamp::now();
    let cpu = controller.cpu_seconds()? - cpu_before;
    let rss = controller.peak_rss_mb()?;
    let rss_now = controller.rss_mb()?;
    let anon = controller.peak_anon_mb();
    // The audit log is written a moment after each request completes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = audit::controller_requests(&setup.audit_dir, &ns, from, to)?;
    let window = setup.idle;
    let minutes = window.as_secs_f64() / 60.0;

    let mut rows = Vec::new();
    let memory_goal = if n <= 1000 { 40.0 } else { 150.0 };
    rows.push(Row::new(
        "memory",
        n,
        "MB",
        Goal::AtMost(memory_goal),
        rss,
        format!("controller peak RSS (VmHWM) after converging and {minutes:.1} idle minutes; {rss_now:.1} MB resident at the end"),
    ));
    rows.push(Row::new(
        "memory (anon)",
        n,
        "MB",
        Goal::AtMost(memory_goal),
        anon,
        format!(
            "controller peak RssAnon (heap and stacks, without the binary's shared file pages), sampled every {:?}",
            crate::controller::ANON_SAMPLE_EVERY
        ),
    ));
    rows.push(Row::new(
        "steady writes",
        n,
        "/min",
        Goal::AtMost(0.0),
        per_minute(idle.writes, window),
        format!(
            "{} writes in {minutes:.1} min; {} Lease writes apart",
            idle.writes, idle.lease_writes
        ),
    ));
    let reads = per_minute(idle.reads + idle.proxied, window) / n as f64;
    rows.push(Row::new(
        "steady reads",
        n,
        "/Agent/min",
        Goal::AtMost(1.0),
        reads,
        format!(
            "out of cluster: {} GET/LIST, {} health checks through the service proxy, {} watches started in {minutes:.1} min",
            idle.reads, idle.proxied, idle.watches
        ),
    ));
    if !full {
        controller.stop().await?;
        return Ok(rows);
    }
    let cpu_per_5min = cpu * 300.0 / window.as_secs_f64();
    rows.push(Row::new(
        "cpu",
        n,
        "s/5min",
        Goal::Below(5.0),
        cpu_per_5min,
        format!("{cpu:.2} CPU s in {minutes:.1} idle min"),
    ));

    // Restart: a new process lists everything and reconciles each Agent once, writing nothing.
    controller.stop().await?;
    let from = Timestamp::now();
    let restarted = Instant::now();
    let controller = Controller::start(&setup.kubeoc, &setup.kubeconfig, &ns, &log)?;
    let mut reconciled = 0.0;
    let deadline = Instant::now() + Duration::from_secs(120 + n as u64 / 10);
    while reconciled < n as f64 {
        if Instant::now() > deadline {
            bail!(
                "the restarted controller reconciled {reconciled} of {n} Agents within the deadline"
            );
        }
        reconciled = controller
            .counter("kubeoc_reconcile_total{kind=\"Agent\"")
            .await
            .unwrap_or(0.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restart = restarted.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = audit::controller_requests(&setup.audit_dir, &ns, from, Timestamp::now())?;
    rows.push(Row::new(
        "restart",
        n,
        "s",
        Goal::Below(10.0),
        restart.as_secs_f64(),
        format!(
            "process start to {n} Agents reconciled; {} writes (goal 0), {} reads, {} Lease writes",
            after.writes, after.reads, after.lease_writes
        ),
    ));

    rows.push(crate::cli_row::run(
        &setup.kubeoc,
        &setup.kubeconfig,
        n,
        setup.cli_runs,
    )?);

    // The floor: the same children applied directly.
    let floor = exported_children(client, &ns).await?;
    controller.stop().await?;
    let floor_file = setup.work_dir.join(format!("floor-{n}.json"));
    std::fs::write(&floor_file, serde_json::to_vec(&floor)?)?;
    fresh_namespace(client, &floor_ns).await?;
    cleanup.push(floor_ns.clone());
    let children = Children::start(client, &floor_ns);
    eprintln!(
        "bench: applying the same {} children with kubectl in namespace {floor_ns}",
        4 * n
    );
    let started = Instant::now();
    kubectl_apply(&setup.kubeconfig, &floor_ns, &floor_file).await?;
    until(
        &format!("{n} Agents' children applied directly"),
        timeout,
        || {
            let (least, seen) = children.counts();
            (least >= n, seen)
        },
    )
    .await?;
    let direct = started.elapsed();
    rows.insert(
        0,
        Row::new(
            "converge",
            n,
            "x floor",
            Goal::AtMost(1.3),
            converge.as_secs_f64() / direct.as_secs_f64(),
            format!(
                "kubectl apply of {n} Agents to children and statuses {:.1}s ({ready_count} Ready at {:.1}s); the children applied with kubectl {:.1}s",
                converge.as_secs_f64(),
                ready.as_secs_f64(),
                direct.as_secs_f64()
            ),
        ),
    );
    Ok(rows)
}
