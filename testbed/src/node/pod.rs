//! One worker per pod bound to the node: sandbox (network namespace, hosts file, service rules),
//! volumes, init containers in order, then containers with probes and restarts, status posted
//! to the apiserver, and graceful termination on deletion.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodStatus, Probe, Secret,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, ResourceExt};
use tokio::sync::{Notify, watch};

use super::NodeContext;
use super::env::{self, Objects, PodFacts};
use super::images::container_argv;
use super::logs;
use super::probe::{self, ProbeAction, ProbeTiming, ProbeTracker};
use super::process::{self, LaunchSpec, Mount};
use super::services;
use super::volumes::{Ownership, VolumeBuilder};

const RETRY: Duration = Duration::from_secs(2);
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A stop request: the grace period the containers get before SIGKILL.
type StopSignal = watch::Receiver<Option<Duration>>;

#[derive(Debug, Clone)]
struct ContainerRecord {
    name: String,
    image: String,
    state: ContainerState,
    last_state: Option<ContainerState>,
    restart_count: i32,
    ready: bool,
    started: bool,
}

impl ContainerRecord {
    fn new(c: &Container) -> Self {
        Self {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            state: waiting("ContainerCreating", None),
            last_state: None,
            restart_count: 0,
            ready: false,
            started: false,
        }
    }

    fn is_terminated(&self) -> bool {
        self.state.terminated.is_some()
    }
}

#[derive(Debug, Default)]
struct PodState {
    pod_ip: Option<Ipv4Addr>,
    start_time: Option<Timestamp>,
    sandbox_ready: bool,
    initialized: bool,
    init: Vec<ContainerRecord>,
    main: Vec<ContainerRecord>,
    /// Set when an init container failed for good (restartPolicy Never).
    failed: Option<String>,
    transitions: HashMap<&'static str, (bool, Timestamp)>,
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..ContainerState::default()
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Which container a runner drives.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Init(usize),
    Main(usize),
}

/// The pod's worker. Cloned into the container runners.
#[derive(Clone)]
struct Worker {
    ctx: Arc<NodeContext>,
    uid: String,
    namespace: String,
    name: String,
    dir: PathBuf,
    pod: watch::Receiver<Option<Pod>>,
    state: Arc<Mutex<PodState>>,
    dirty: Arc<Notify>,
}

impl Worker {
    fn latest(&self) -> Option<Pod> {
        self.pod.borrow().clone()
    }

    fn update(&self, f: impl FnOnce(&mut PodState)) {
        if let Ok(mut state) = self.state.lock() {
            f(&mut state);
        }
        self.dirty.notify_one();
    }

    fn record(&self, slot: Slot, f: impl FnOnce(&mut ContainerRecord)) {
        self.update(|s| {
            let rec = match slot {
                Slot::Init(i) => s.init.get_mut(i),
                Slot::Main(i) => s.main.get_mut(i),
            };
            if let Some(rec) = rec {
                f(rec);
            }
        });
    }

    fn facts(&self, pod: &Pod) -> PodFacts {
        let ip = self
            .state
            .lock()
            .ok()
            .and_then(|s| s.pod_ip)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        PodFacts {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            uid: self.uid.clone(),
            node_name: self.ctx.node_name.clone(),
            service_account: pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_default(),
            pod_ip: ip,
            host_ip: self.ctx.node_ip.to_string(),
            labels: pod.labels().clone(),
            annotations: pod.annotations().clone(),
        }
    }

    fn cgroup(&self, container: &str) -> PathBuf {
        self.ctx.cgroup_root.join(&self.uid).join(container)
    }

    fn etc_dir(&self) -> PathBuf {
        self.dir.join("etc")
    }
}

/// Runs a pod from binding to deletion. `pod` carries the latest object; `None` means it is
/// gone from the API (force-deleted).
pub async fn run(ctx: Arc<NodeContext>, pod: watch::Receiver<Option<Pod>>) {
    let Some(initial) = pod.borrow().clone() else {
        return;
    };
    let (Some(uid), Some(namespace)) = (initial.uid(), initial.namespace()) else {
        return;
    };
    let spec = initial.spec.clone().unwrap_or_default();
    let state = PodState {
        init: spec
            .init_containers
            .iter()
            .flatten()
            .map(ContainerRecord::new)
            .collect(),
        main: spec.containers.iter().map(ContainerRecord::new).collect(),
        ..PodState::default()
    };
    let worker = Worker {
        dir: ctx.pods_dir.join(&uid),
        ctx,
        uid,
        namespace,
        name: initial.name_any(),
        pod,
        state: Arc::new(Mutex::new(state)),
        dirty: Arc::new(Notify::new()),
    };
    tracing::info!(pod = %format!("{}/{}", worker.namespace, worker.name), "starting pod");
    let (stop_tx, stop_rx) = watch::channel(None);
    let status_writer = tokio::spawn(write_status_loop(worker.clone()));
    let lifecycle = tokio::spawn(lifecycle(worker.clone(), stop_rx));

    // Wait for deletion: a deletionTimestamp (graceful) or the object vanishing (forced).
    let mut pod_rx = worker.pod.clone();
    let grace = loop {
        let current = pod_rx.borrow_and_update().clone();
        match current {
            None => break Duration::ZERO,
            Some(p) if p.metadata.deletion_timestamp.is_some() => {
                let secs = p
                    .metadata
                    .deletion_grace_period_seconds
                    .unwrap_or(30)
                    .max(0);
                break Duration::from_secs(secs as u64);
            }
            Some(_) => {}
        }
        if pod_rx.changed().await.is_err() {
            break Duration::ZERO;
        }
    };
    tracing::info!(pod = %format!("{}/{}", worker.namespace, worker.name), ?grace, "stopping pod");
    let _ = stop_tx.send(Some(grace));
    let _ = lifecycle.await;
    worker.dirty.notify_one();
    teardown(&worker).await;
    status_writer.abort();

    if worker.latest().is_some() {
        let pods: Api<Pod> = Api::namespaced(worker.ctx.client.clone(), &worker.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(worker.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        // A pod left Terminating blocks its owners' foreground deletion and its PVCs'
        // protection finalizer, so a transient apiserver error is retried.
        for attempt in 1..=10u32 {
            match pods.delete(&worker.name, &params).await {
                Ok(_) => break,
                // Gone, or a new pod of the same name (the UID precondition failed).
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => break,
                Err(err) => {
                    tracing::warn!(
                        "final delete of pod {}/{} (attempt {attempt}): {err}",
                        worker.namespace,
                        worker.name
                    );
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                }
            }
        }
    }
    tracing::info!(pod = %format!("{}/{}", worker.namespace, worker.name), "pod removed");
}

/// Sandbox, volumes, init containers, containers; returns when all containers have stopped.
async fn lifecycle(worker: Worker, mut stop: StopSignal) {
    let Some(volumes) = prepare(&worker, &mut stop).await else {
        return;
    };
    let Some(pod) = worker.latest() else { return };
    let spec = pod.spec.clone().unwrap_or_default();
    for (i, container) in spec.init_containers.iter().flatten().enumerate() {
        let exit = run_container(&worker, Slot::Init(i), container, &volumes, stop.clone()).await;
        if stop.borrow().is_some() {
            return;
        }
        if exit != Some(0) {
            // Only a Never policy gets here with a failure: the pod has failed.
            worker
                .update(|s| s.failed = Some(format!("init container {:?} failed", container.name)));
            wait_for_stop(&mut stop).await;
            return;
        }
    }
    worker.update(|s| s.initialized = true);
    let runners: Vec<_> = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (worker, c, volumes, stop) =
                (worker.clone(), c.clone(), volumes.clone(), stop.clone());
            tokio::spawn(
                async move { run_container(&worker, Slot::Main(i), &c, &volumes, stop).await },
            )
        })
        .collect();
    for runner in runners {
        let _ = runner.await;
    }
}

async fn wait_for_stop(stop: &mut StopSignal) {
    while stop.borrow().is_none() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Sleeps unless a stop arrives first; returns true when stopping.
async fn sleep_or_stop(stop: &mut StopSignal, duration: Duration) -> bool {
    if stop.borrow().is_some() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => stop.borrow().is_some(),
        _ = wait_for_stop(stop) => true,
    }
}

fn set_all_waiting(worker: &Worker, reason: &str, message: &str) {
    worker.update(|s| {
        for rec in s.init.iter_mut().chain(s.main.iter_mut()) {
            if rec.state.waiting.is_some() {
                rec.state = waiting(reason, Some(message.to_string()));
            }
        }
    });
}

/// Network namespace, hosts file, service rules and volumes; retried until they work or the
/// pod is deleted.
async fn prepare(worker: &Worker, stop: &mut StopSignal) -> Option<HashMap<String, PathBuf>> {
    worker.update(|s| s.start_time = Some(Timestamp::now()));
    loop {
        match create_sandbox(worker).await {
            Ok(()) => break,
            Err(err) => {
                tracing::warn!("sandbox of {}/{}: {err:#}", worker.namespace, worker.name);
                set_all_waiting(worker, "ContainerCreating", &format!("{err:#}"));
                if sleep_or_stop(stop, RETRY).await {
                    return None;
                }
            }
        }
    }
    worker.update(|s| s.sandbox_ready = true);
    loop {
        let pod = worker.latest()?;
        let facts = worker.facts(&pod);
        let psc = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone())
            .unwrap_or_default();
        let owner = Ownership {
            uid: psc.run_as_user.map(|u| u as u32),
            fs_group: psc.fs_group.map(|g| g as u32),
        };
        let builder = VolumeBuilder {
            client: &worker.ctx.client,
            pod: &pod,
            facts: &facts,
            pod_dir: &worker.dir,
            owner,
        };
        match builder.build().await {
            Ok(volumes) => return Some(volumes),
            Err(err) => {
                set_all_waiting(worker, "ContainerCreating", &format!("{err:#}"));
                if sleep_or_stop(stop, RETRY).await {
                    return None;
                }
            }
        }
    }
}

async fn create_sandbox(worker: &Worker) -> anyhow::Result<()> {
    let ctx = &worker.ctx;
    let existing = worker.state.lock().ok().and_then(|s| s.pod_ip);
    let ip = match existing {
        Some(ip) => ip,
        None => {
            let preferred = worker
                .latest()
                .and_then(|p| p.status?.pod_ip)
                .and_then(|ip| ip.parse().ok());
            let ip = ctx
                .ipam
                .lock()
                .ok()
                .and_then(|mut ipam| ipam.allocate(preferred));
            let ip = ip.context("the pod CIDR has no free address")?;
            worker.update(|s| s.pod_ip = Some(ip));
            ip
        }
    };
    let netns = ctx.network.create_pod_network(&worker.uid, ip).await?;
    let etc = worker.etc_dir();
    std::fs::create_dir_all(&etc)?;
    services::write_in_place(
        &etc.join("resolv.conf"),
        "# No DNS server in the testbed: Service names resolve through /etc/hosts.\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )?;
    let sandbox = super::Sandbox {
        netns,
        hosts_file: etc.join("hosts"),
        namespace: worker.namespace.clone(),
        pod_name: worker.name.clone(),
        ip,
    };
    // Listed before its first apply, so a table change from now on reaches it.
    if let Ok(mut sandboxes) = ctx.sandboxes.lock() {
        sandboxes.insert(worker.uid.clone(), sandbox.clone());
    }
    super::apply_services(ctx, &sandbox).await?;
    if let Ok(mut registry) = ctx.logs.lock() {
        registry.insert(
            (worker.namespace.clone(), worker.name.clone()),
            worker.dir.clone(),
        );
    }
    Ok(())
}

async fn teardown(worker: &Worker) {
    let ctx = &worker.ctx;
    process::kill_cgroup(&ctx.cgroup_root.join(&worker.uid)).await;
    let sandbox = ctx
        .sandboxes
        .lock()
        .ok()
        .and_then(|mut sandboxes| sandboxes.remove(&worker.uid));
    if let Some(sandbox) = sandbox {
        super::forget_services(ctx, &sandbox.netns).await;
    }
    ctx.network.delete_pod_network(&worker.uid).await;
    if let Some(ip) = worker.state.lock().ok().and_then(|s| s.pod_ip)
        && let Ok(mut ipam) = ctx.ipam.lock()
    {
        ipam.release(ip);
    }
    if let Ok(mut registry) = ctx.logs.lock() {
        registry.remove(&(worker.namespace.clone(), worker.name.clone()));
    }
    let _ = std::fs::remove_dir_all(&worker.dir);
}

/// Fetches the Secrets and ConfigMaps the container's env refers to.
async fn env_objects(worker: &Worker, container: &Container) -> anyhow::Result<Objects> {
    let (secret_names, config_map_names) = env::referenced_objects(container);
    let mut objects = Objects::default();
    let secrets: Api<Secret> = Api::namespaced(worker.ctx.client.clone(), &worker.namespace);
    for name in secret_names {
        let data = secrets.get_opt(&name).await?.map(|s| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()
        });
        objects.secrets.insert(name, data);
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(worker.ctx.client.clone(), &worker.namespace);
    for name in config_map_names {
        let data = config_maps
            .get_opt(&name)
            .await?
            .map(|c| c.data.unwrap_or_default());
        objects.config_maps.insert(name, data);
    }
    Ok(objects)
}

/// Why a container cannot be started yet: the waiting reason and message.
struct NotStarted(&'static str, String);

async fn launch_spec(
    worker: &Worker,
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
) -> Result<LaunchSpec, NotStarted> {
    let config_error = |msg: String| NotStarted("CreateContainerConfigError", msg);
    let pod = worker
        .latest()
        .ok_or_else(|| config_error("pod is gone".into()))?;
    let image = container.image.clone().unwrap_or_default();
    let image_spec = worker
        .ctx
        .images
        .lookup(&image)
        .map_err(|e| NotStarted("ErrImagePull", e))?;
    let objects = env_objects(worker, container)
        .await
        .map_err(|e| config_error(format!("{e:#}")))?;
    // As with a real runtime: the image's env, then the kubelet's Service variables, then the
    // container's own env, later entries winning.
    let service_links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let table = worker.ctx.services.borrow().clone();
    let mut base_env = image_spec.env.clone();
    base_env.extend(services::service_env(&table, &namespace, service_links));
    let mut environment =
        env::resolve(container, &worker.facts(&pod), &objects, &base_env).map_err(config_error)?;

    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let csc = container.security_context.clone().unwrap_or_default();
    let uid = csc.run_as_user.or(psc.run_as_user).map(|u| u as u32);
    let gid = csc.run_as_group.or(psc.run_as_group).map(|g| g as u32);
    if csc.run_as_non_root.or(psc.run_as_non_root) == Some(true) && uid.unwrap_or(0) == 0 {
        return Err(config_error(format!(
            "container has runAsNonRoot and image will run as root (pod: \"{}_{}({})\", container: {})",
            worker.name, worker.namespace, worker.uid, container.name
        )));
    }
    let mut groups: Vec<u32> = psc
        .supplemental_groups
        .iter()
        .flatten()
        .map(|g| *g as u32)
        .collect();
    groups.extend(psc.fs_group.map(|g| g as u32));

    if !environment.iter().any(|(k, _)| k == "PATH") {
        environment.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    if !environment.iter().any(|(k, _)| k == "HOME") {
        let home = if uid.unwrap_or(0) == 0 { "/root" } else { "/" };
        environment.push(("HOME".into(), home.into()));
    }
    environment.push(("HOSTNAME".into(), worker.name.clone()));
    let vars: HashMap<String, String> = environment.iter().cloned().collect();
    let expand_all = |items: &Option<Vec<String>>| -> Vec<String> {
        items
            .iter()
            .flatten()
            .map(|s| env::expand(s, &vars))
            .collect()
    };
    let argv = container_argv(
        &image,
        &image_spec,
        &expand_all(&container.command),
        &expand_all(&container.args),
    )
    .map_err(config_error)?;

    let mut mounts = Vec::new();
    for vm in container.volume_mounts.iter().flatten() {
        let source = volumes.get(&vm.name).ok_or_else(|| {
            config_error(format!(
                "volumeMount {:?} refers to no volume of the pod",
                vm.name
            ))
        })?;
        let source = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let path = source.join(sub);
                if !path.exists() {
                    std::fs::create_dir_all(&path)
                        .map_err(|e| config_error(format!("subPath {sub:?}: {e}")))?;
                }
                path
            }
            None => source.clone(),
        };
        mounts.push(Mount {
            source,
            target: PathBuf::from(&vm.mount_path),
            read_only: vm.read_only.unwrap_or(false),
        });
    }
    for (target, source) in &image_spec.files {
        mounts.push(Mount {
            source: source.clone(),
            target: PathBuf::from(target),
            read_only: true,
        });
    }
    for file in ["hosts", "resolv.conf"] {
        let target = PathBuf::from("/etc").join(file);
        if !mounts.iter().any(|m| m.target == target) {
            mounts.push(Mount {
                source: worker.etc_dir().join(file),
                target,
                read_only: true,
            });
        }
    }
    // Parents before children, so nested mountPaths land inside their parent's volume.
    mounts.sort_by_key(|m| m.target.components().count());

    let netns = super::network::netns_path(&super::network::netns_name(&worker.uid));
    Ok(LaunchSpec {
        argv,
        env: environment,
        working_dir: Some(container.working_dir.clone().unwrap_or_else(|| "/".into())),
        uid,
        gid,
        supplementary_groups: groups,
        netns,
        hostname: worker.name.clone(),
        cgroup: worker.cgroup(&container.name),
        mounts,
    })
}

fn restart_wanted(slot: Slot, policy: &str, exit_code: i32) -> bool {
    match (slot, policy) {
        (_, "Never") => false,
        (Slot::Init(_), _) | (Slot::Main(_), "OnFailure") => exit_code != 0,
        (Slot::Main(_), _) => true,
    }
}

/// Runs one container until it is done for good (per restartPolicy) or the pod stops; returns
/// the last exit code.
async fn run_container(
    worker: &Worker,
    slot: Slot,
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
    mut stop: StopSignal,
) -> Option<i32> {
    let policy = worker
        .latest()
        .and_then(|p| p.spec?.restart_policy)
        .unwrap_or_else(|| "Always".into());
    let mut backoff = BACKOFF_START;
    let mut attempt = 0;
    loop {
        let spec = match launch_spec(worker, container, volumes).await {
            Ok(spec) => spec,
            Err(NotStarted(reason, message)) => {
                worker.record(slot, |r| r.state = waiting(reason, Some(message)));
                if sleep_or_stop(&mut stop, RETRY).await {
                    return None;
                }
                continue;
            }
        };
        let exit_code = run_once(worker, slot, container, &spec, attempt, &mut stop).await?;
        if stop.borrow().is_some() || !restart_wanted(slot, &policy, exit_code) {
            return Some(exit_code);
        }
        let message = format!(
            "back-off {}s restarting failed container={} pod={}",
            backoff.as_secs(),
            container.name,
            worker.name
        );
        worker.record(slot, |r| {
            r.last_state = Some(r.state.clone());
            r.state = waiting("CrashLoopBackOff", Some(message));
        });
        if sleep_or_stop(&mut stop, backoff).await {
            return Some(exit_code);
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        attempt += 1;
        worker.record(slot, |r| r.restart_count = attempt);
    }
}

/// One run of a container: start, probe, wait for exit or stop. `None` if it never started.
async fn run_once(
    worker: &Worker,
    slot: Slot,
    container: &Container,
    spec: &LaunchSpec,
    attempt: i32,
    stop: &mut StopSignal,
) -> Option<i32> {
    let log_path = logs::log_file(&worker.dir, &container.name, attempt);
    let log = match logs::open_log(&log_path) {
        Ok(log) => log,
        Err(err) => {
            worker.record(slot, |r| {
                r.state = waiting("RunContainerError", Some(format!("{err:#}")))
            });
            return None;
        }
    };
    let mut child = match process::spawn(spec) {
        Ok(child) => child,
        Err(err) => {
            let message = format!("{err:#}");
            worker.record(slot, |r| {
                r.state = ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 128,
                        reason: Some("StartError".into()),
                        message: Some(message),
                        finished_at: Some(now()),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }
            });
            logs::finish_log(&log_path);
            return Some(128);
        }
    };
    let started_at = now();
    let has_readiness = container.readiness_probe.is_some();
    let has_startup = container.startup_probe.is_some();
    worker.record(slot, |r| {
        r.state = ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(started_at.clone()),
            }),
            ..ContainerState::default()
        };
        r.started = !has_startup;
        r.ready = matches!(slot, Slot::Main(_)) && !has_readiness && !has_startup;
    });
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(logs::pump(out, "stdout", log.clone())));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(logs::pump(err, "stderr", log.clone())));
    }
    let (kill_tx, mut kill_rx) = tokio::sync::mpsc::channel::<String>(1);
    let probes = matches!(slot, Slot::Main(_)).then(|| {
        tokio::spawn(probe_container(
            worker.clone(),
            slot,
            container.clone(),
            spec.clone(),
            kill_tx,
        ))
    });

    let cgroup = spec.cgroup.clone();
    let mut killed_reason = None;
    let status = tokio::select! {
        status = child.wait() => status.ok(),
        _ = wait_for_stop(stop) => {
            let grace = (*stop.borrow()).unwrap_or_default();
            terminate(&mut child, &cgroup, grace).await
        }
        Some(reason) = kill_rx.recv() => {
            killed_reason = Some(reason);
            let grace = Duration::from_secs(container_grace(worker));
            terminate(&mut child, &cgroup, grace).await
        }
    };
    if let Some(probes) = probes {
        probes.abort();
    }
    // Whatever the main process left behind dies with it, as in a container.
    process::kill_cgroup(&cgroup).await;
    for pump in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
    }
    logs::finish_log(&log_path);
    let exit_code = status.map_or(137, |s| {
        use std::os::unix::process::ExitStatusExt;
        s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9))
    });
    let reason = if exit_code == 0 { "Completed" } else { "Error" };
    worker.record(slot, |r| {
        r.ready = false;
        r.state = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code,
                reason: Some(reason.into()),
                message: killed_reason.clone(),
                started_at: Some(started_at),
                finished_at: Some(now()),
                container_id: Some(format!(
                    "testbed://{}/{}/{attempt}",
                    worker.uid, container.name
                )),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        };
    });
    Some(exit_code)
}

fn container_grace(worker: &Worker) -> u64 {
    worker
        .latest()
        .and_then(|p| p.spec?.termination_grace_period_seconds)
        .unwrap_or(30)
        .max(0) as u64
}

/// SIGTERM to every process of the container, SIGKILL after the grace period.
async fn terminate(
    child: &mut tokio::process::Child,
    cgroup: &Path,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    process::signal_cgroup(cgroup, libc::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            process::kill_cgroup(cgroup).await;
            child.wait().await.ok()
        }
    }
}

async fn check(
    worker: &Worker,
    spec: &LaunchSpec,
    action: &ProbeAction,
    timeout: Duration,
) -> bool {
    let Some(ip) = worker.state.lock().ok().and_then(|s| s.pod_ip) else {
        return false;
    };
    match action {
        ProbeAction::Tcp { port } => probe::tcp(ip, *port, timeout).await,
        ProbeAction::Http { port, path } => probe::http_get(ip, *port, path, timeout).await,
        ProbeAction::Exec { command } => {
            let mut exec = spec.clone();
            exec.argv = command.clone();
            match process::spawn(&exec) {
                Ok(mut child) => matches!(
                    tokio::time::timeout(timeout, child.wait()).await,
                    Ok(Ok(status)) if status.success()
                ),
                Err(_) => false,
            }
        }
    }
}

/// Startup, then readiness and liveness probes of one container run.
async fn probe_container(
    worker: Worker,
    slot: Slot,
    container: Container,
    spec: LaunchSpec,
    kill: tokio::sync::mpsc::Sender<String>,
) {
    let prepared = |probe: &Option<Probe>| -> Option<(ProbeAction, ProbeTiming)> {
        let probe = probe.as_ref()?;
        match probe::action(probe, &container) {
            Ok(action) => Some((action, ProbeTiming::from(probe))),
            Err(err) => {
                tracing::warn!("container {}: {err}", container.name);
                None
            }
        }
    };
    if let Some((action, timing)) = prepared(&container.startup_probe) {
        tokio::time::sleep(timing.initial_delay).await;
        let mut tracker = ProbeTracker::default();
        loop {
            let ok = check(&worker, &spec, &action, timing.timeout).await;
            match tracker.record(ok, &timing) {
                Some(true) => break,
                Some(false) => {
                    let _ = kill
                        .send("Container failed startup probe, will be restarted".into())
                        .await;
                    return;
                }
                None => tokio::time::sleep(timing.period).await,
            }
        }
        worker.record(slot, |r| {
            r.started = true;
            r.ready = container.readiness_probe.is_none();
        });
    }
    let readiness = prepared(&container.readiness_probe).map(|(action, timing)| {
        let (worker, spec) = (worker.clone(), spec.clone());
        async move {
            tokio::time::sleep(timing.initial_delay).await;
            let mut tracker = ProbeTracker::default();
            loop {
                let ok = check(&worker, &spec, &action, timing.timeout).await;
                if let Some(ready) = tracker.record(ok, &timing) {
                    worker.record(slot, |r| r.ready = ready);
                }
                tokio::time::sleep(timing.period).await;
            }
        }
    });
    let liveness = prepared(&container.liveness_probe).map(|(action, timing)| {
        let (worker, spec) = (worker.clone(), spec.clone());
        async move {
            tokio::time::sleep(timing.initial_delay).await;
            let mut tracker = ProbeTracker::default();
            loop {
                let ok = check(&worker, &spec, &action, timing.timeout).await;
                if tracker.record(ok, &timing) == Some(false) {
                    let _ = kill
                        .send("Container failed liveness probe, will be restarted".into())
                        .await;
                    return;
                }
                tokio::time::sleep(timing.period).await;
            }
        }
    });
    let readiness = async move {
        if let Some(r) = readiness {
            r.await
        }
    };
    let liveness = async move {
        if let Some(l) = liveness {
            l.await
        }
    };
    tokio::join!(readiness, liveness);
}

fn container_status(rec: &ContainerRecord) -> ContainerStatus {
    ContainerStatus {
        name: rec.name.clone(),
        image: rec.image.clone(),
        image_id: format!("testbed://{}", rec.image),
        container_id: rec
            .state
            .running
            .as_ref()
            .map(|_| format!("testbed://{}/{}", rec.name, rec.restart_count)),
        state: Some(rec.state.clone()),
        last_state: rec.last_state.clone(),
        ready: rec.ready,
        restart_count: rec.restart_count,
        started: Some(rec.started),
        ..ContainerStatus::default()
    }
}

fn phase(state: &PodState) -> &'static str {
    if state.failed.is_some() {
        return "Failed";
    }
    if !state.initialized {
        return "Pending";
    }
    if state.main.iter().all(ContainerRecord::is_terminated) {
        let all_ok = state.main.iter().all(|r| {
            r.state
                .terminated
                .as_ref()
                .is_some_and(|t| t.exit_code == 0)
        });
        return if all_ok { "Succeeded" } else { "Failed" };
    }
    let ever_ran = state
        .main
        .iter()
        .any(|r| r.state.running.is_some() || r.last_state.is_some() || r.is_terminated());
    if ever_ran { "Running" } else { "Pending" }
}

fn status_of(state: &mut PodState, pod: &Pod, host_ip: &str) -> PodStatus {
    let all_ready = !state.main.is_empty() && state.main.iter().all(|r| r.ready);
    let flags: [(&'static str, bool); 4] = [
        ("PodReadyToStartContainers", state.sandbox_ready),
        ("Initialized", state.initialized),
        ("ContainersReady", all_ready),
        ("Ready", all_ready),
    ];
    let mut conditions: Vec<PodCondition> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ == "PodScheduled")
        .collect();
    for (type_, value) in flags {
        let entry = state
            .transitions
            .entry(type_)
            .or_insert((value, Timestamp::now()));
        if entry.0 != value {
            *entry = (value, Timestamp::now());
        }
        conditions.push(PodCondition {
            type_: type_.into(),
            status: if value { "True" } else { "False" }.into(),
            last_transition_time: Some(Time(entry.1)),
            ..PodCondition::default()
        });
    }
    let ip = state.pod_ip.map(|ip| ip.to_string());
    PodStatus {
        phase: Some(phase(state).into()),
        message: state.failed.clone(),
        host_ip: Some(host_ip.into()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: host_ip.into(),
        }]),
        pod_ip: ip.clone(),
        pod_ips: ip.map(|ip| vec![k8s_openapi::api::core::v1::PodIP { ip }]),
        start_time: state.start_time.map(Time),
        conditions: Some(conditions),
        init_container_statuses: (!state.init.is_empty())
            .then(|| state.init.iter().map(container_status).collect()),
        container_statuses: Some(state.main.iter().map(container_status).collect()),
        ..PodStatus::default()
    }
}

/// Posts the pod's status whenever it changes, at most every 100 ms.
async fn write_status_loop(worker: Worker) {
    let pods: Api<Pod> = Api::namespaced(worker.ctx.client.clone(), &worker.namespace);
    let mut last_written = serde_json::Value::Null;
    loop {
        worker.dirty.notified().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(pod) = worker.latest() else { return };
        let status = match worker.state.lock() {
            Ok(mut state) => status_of(&mut state, &pod, &worker.ctx.node_ip.to_string()),
            Err(_) => return,
        };
        let Ok(value) = serde_json::to_value(&status) else {
            continue;
        };
        if value == last_written {
            continue;
        }
        let patch = serde_json::json!({"status": value});
        match pods
            .patch_status(
                &worker.name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(_) => last_written = value,
            Err(kube::Error::Api(e)) if e.code == 404 => return,
            Err(err) => {
                tracing::warn!("status of pod {}/{}: {err}", worker.namespace, worker.name);
                worker.dirty.notify_one();
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminated(code: i32) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn record(state: ContainerState) -> ContainerRecord {
        ContainerRecord {
            name: "c".into(),
            image: "i".into(),
            state,
            last_state: None,
            restart_count: 0,
            ready: false,
            started: false,
        }
    }

    #[test]
    fn restart_policy_decides_restarts() {
        assert!(restart_wanted(Slot::Main(0), "Always", 0));
        assert!(!restart_wanted(Slot::Main(0), "OnFailure", 0));
        assert!(restart_wanted(Slot::Main(0), "OnFailure", 1));
        assert!(!restart_wanted(Slot::Main(0), "Never", 1));
        assert!(restart_wanted(Slot::Init(0), "Always", 1));
        assert!(!restart_wanted(Slot::Init(0), "Always", 0));
        assert!(!restart_wanted(Slot::Init(0), "Never", 1));
    }

    #[test]
    fn phase_follows_containers() {
        let mut state = PodState {
            main: vec![record(waiting("ContainerCreating", None))],
            ..Default::default()
        };
        assert_eq!(phase(&state), "Pending");
        state.initialized = true;
        assert_eq!(phase(&state), "Pending");
        state.main[0].state = ContainerState {
            running: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(phase(&state), "Running");
        state.main[0].state = terminated(0);
        assert_eq!(phase(&state), "Succeeded");
        state.main[0].state = terminated(2);
        assert_eq!(phase(&state), "Failed");
        state.failed = Some("init failed".into());
        assert_eq!(phase(&state), "Failed");
    }
}
