//! The controller's HTTP endpoint: `/healthz`, `/readyz` and `/metrics` on one small hyper
//! server, as controller-runtime serves them, so the usual probes and scrapers work unchanged.
//!
//! Probe semantics:
//! - `/healthz` answers 200 `ok` whenever the process can answer at all; a failing liveness
//!   probe should mean "restart me", and nothing short of a wedged process needs a restart.
//! - `/readyz` answers 200 while the process can do its job: it leads and its reconcilers'
//!   caches are synced, or it is a healthy standby waiting for the Lease (a standby is ready:
//!   it is exactly what a rollout or a failover needs). The body says which. It answers 503
//!   while starting, while shutting down, and when the API server does not answer (checked
//!   with `GET /version`, at most once every two seconds).
//!
//! Only GET and HEAD (other methods answer 405); unknown paths answer 404.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use kube::Client;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{Agent, AgentPhase};

/// What the process is doing, for `/readyz` and the leader gauge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Checking upstream's Lease, not yet campaigning.
    Starting,
    /// Campaigning for the Lease (named here): another controller holds it, or this process
    /// has not won it yet.
    Standby { lease: String },
    /// Holding the Lease (or running without election); `synced` once the caches are filled.
    Leading { synced: bool },
    /// Ctrl-C or lost leadership: finishing in-flight reconciles.
    Stopping,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
    /// What failed (the reconcile error's variant): `apply`, `read`, `status`, ...
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    kind: &'static str,
    result: &'static str,
}

/// The controller's Prometheus metrics and its role; shared by reconciles and the endpoint.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: Family<KindLabels, Histogram>,
    in_flight: Family<KindLabels, Gauge>,
    leader: Gauge,
    agents: Arc<AgentPhases>,
    role: Mutex<Role>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("role", &self.role())
            .finish()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric (all under `kubeoc_`).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kubeoc");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconcile",
            "Reconciles finished, by kind and result (success or error)",
            reconciles.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that returned an error (and were requeued), by kind and what failed",
            errors.clone(),
        );
        // 5 ms .. ~82 s: a reconcile ranges from a cache hit to a slow health check.
        let durations = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 15))
        });
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconcile took, by kind",
            Unit::Seconds,
            durations.clone(),
        );
        let in_flight = Family::<KindLabels, Gauge>::default();
        registry.register(
            "reconciles_in_flight",
            "Reconciles running right now, by kind",
            in_flight.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this process leads (holds the Lease, or runs with --leader-elect=false), else 0",
            leader.clone(),
        );
        registry.register(
            "build",
            "The kubeoc version of this process",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let agents = Arc::new(AgentPhases::default());
        registry.register_collector(Box::new(agents.clone()));
        Self {
            registry,
            reconciles,
            errors,
            durations,
            in_flight,
            leader,
            agents,
            role: Mutex::new(Role::Starting),
        }
    }

    /// Records what the process does now; the leader gauge follows.
    pub fn set_role(&self, role: Role) {
        self.leader
            .set(i64::from(matches!(role, Role::Leading { .. })));
        *self.role.lock().unwrap_or_else(PoisonError::into_inner) = role;
    }

    /// The leader's caches are filled: `/readyz` turns 200 (unless stopping meanwhile).
    pub fn mark_synced(&self) {
        let mut role = self.role.lock().unwrap_or_else(PoisonError::into_inner);
        if *role == (Role::Leading { synced: false }) {
            *role = Role::Leading { synced: true };
        }
    }

    /// What the process does now.
    pub fn role(&self) -> Role {
        self.role
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Counts Agents by phase from this store at every scrape (so the gauge is never stale).
    /// Set it once the store is synced: a half-filled cache would under-count.
    pub fn watch_agents(&self, store: Store<Agent>) {
        *self
            .agents
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(store);
    }

    /// Makes `kind`'s series exist at 0 before its first reconcile, so `rate()` and alerts on
    /// errors see a value from the start instead of a missing series.
    pub fn register_kind(&self, kind: &'static str) {
        for result in ["success", "error"] {
            let _ = self
                .reconciles
                .get_or_create(&ResultLabels { kind, result });
        }
        let _ = self.durations.get_or_create(&KindLabels { kind });
        let _ = self.in_flight.get_or_create(&KindLabels { kind });
    }

    /// Starts timing one reconcile of `kind`; finish it with [`ReconcileTimer::finish`].
    pub fn reconcile_started(&self, kind: &'static str) -> ReconcileTimer<'_> {
        self.in_flight.get_or_create(&KindLabels { kind }).inc();
        ReconcileTimer {
            metrics: self,
            kind,
            started: Instant::now(),
        }
    }

    /// The exposition in the Prometheus text format (0.0.4).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// One running reconcile. Dropped without [`ReconcileTimer::finish`] (the reconcile future was
/// cancelled), it only leaves the in-flight gauge: a cancelled reconcile neither succeeded nor
/// failed.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    kind: &'static str,
    started: Instant,
}

impl ReconcileTimer<'_> {
    /// Records the outcome (`None` for success, else what failed) and the duration.
    pub fn finish(self, error: Option<&'static str>) {
        let kind = self.kind;
        let result = if error.is_none() { "success" } else { "error" };
        self.metrics
            .reconciles
            .get_or_create(&ResultLabels { kind, result })
            .inc();
        if let Some(error) = error {
            self.metrics
                .errors
                .get_or_create(&ErrorLabels { kind, error })
                .inc();
        }
        self.metrics
            .durations
            .get_or_create(&KindLabels { kind })
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .in_flight
            .get_or_create(&KindLabels { kind: self.kind })
            .dec();
    }
}

/// `kubeoc_agents{phase}`, computed from the Agent controller's cache at scrape time.
#[derive(Default)]
struct AgentPhases {
    store: Mutex<Option<Store<Agent>>>,
}

impl std::fmt::Debug for AgentPhases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentPhases")
    }
}

/// Label value for Agents the controller has not written a phase to yet.
const NO_PHASE: &str = "Unknown";

fn phase_name(phase: AgentPhase) -> &'static str {
    match phase {
        AgentPhase::Ready => "Ready",
        AgentPhase::NotReady => "NotReady",
        AgentPhase::Suspended => "Suspended",
        AgentPhase::Degraded => "Degraded",
    }
}

/// Agents per phase, every phase present (a phase dropping to zero must show as 0, not vanish).
pub fn count_phases<'a>(
    agents: impl IntoIterator<Item = &'a Agent>,
) -> BTreeMap<&'static str, i64> {
    let mut counts: BTreeMap<&'static str, i64> = [
        AgentPhase::Ready,
        AgentPhase::NotReady,
        AgentPhase::Suspended,
        AgentPhase::Degraded,
    ]
    .into_iter()
    .map(|p| (phase_name(p), 0))
    .chain([(NO_PHASE, 0)])
    .collect();
    for agent in agents {
        let phase = agent
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .map_or(NO_PHASE, phase_name);
        *counts.entry(phase).or_default() += 1;
    }
    counts
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

impl Collector for AgentPhases {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A standby has no cache: it reports nothing rather than zeros it does not know.
        let Some(store) = self
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            return Ok(());
        };
        let agents = store.state();
        let counts = count_phases(agents.iter().map(|a| a.as_ref()));
        let mut family = encoder.encode_descriptor(
            "agents",
            "Agents watched by this controller, by status phase (Unknown: no status yet).",
            None,
            MetricType::Gauge,
        )?;
        for (phase, count) in counts {
            ConstGauge::new(count).encode(family.encode_family(&PhaseLabels { phase })?)?;
        }
        Ok(())
    }
}

/// The API server check behind `/readyz`, cached so probes cannot flood the API server.
struct ApiCheck {
    client: Client,
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

const API_CHECK_EVERY: Duration = Duration::from_secs(2);
const API_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

impl ApiCheck {
    async fn check(&self) -> Result<(), String> {
        // Held across the request: concurrent probes wait for one answer instead of each asking.
        let mut last = self.last.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < API_CHECK_EVERY
        {
            return result.clone();
        }
        let result =
            match tokio::time::timeout(API_CHECK_TIMEOUT, self.client.apiserver_version()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err(format!("no answer within {API_CHECK_TIMEOUT:?}")),
            };
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// `/readyz`'s answer for a role and (when the role needs it) the API server check.
pub fn readiness(role: &Role, api: Result<(), &str>) -> (StatusCode, String) {
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;
    match (role, api) {
        (Role::Starting, _) => (unavailable, "not ready: starting\n".into()),
        (Role::Stopping, _) => (unavailable, "not ready: shutting down\n".into()),
        (_, Err(err)) => (
            unavailable,
            format!("not ready: cannot reach the API server: {err}\n"),
        ),
        (Role::Leading { synced: false }, Ok(())) => (
            unavailable,
            "not ready: leader, waiting for the caches to sync\n".into(),
        ),
        (Role::Leading { synced: true }, Ok(())) => {
            (StatusCode::OK, "ok: leader, reconcilers running\n".into())
        }
        (Role::Standby { lease }, Ok(())) => (
            StatusCode::OK,
            format!("ok: standby, waiting for Lease {lease}\n"),
        ),
    }
}

/// Default of `--metrics-addr`, controller-runtime's.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// The value of `--metrics-addr`: where to listen, or nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<SocketAddr>);

impl std::str::FromStr for MetricsAddr {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        parse_addr(value).map(Self)
    }
}

/// Parses `--metrics-addr`: `0` disables the endpoint (controller-runtime's convention),
/// `:PORT` listens on every interface, anything else is `HOST:PORT` (port 0 picks a free one).
pub fn parse_addr(value: &str) -> Result<Option<SocketAddr>, String> {
    let value = value.trim();
    if value == "0" {
        return Ok(None);
    }
    let full = match value.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => value.to_string(),
    };
    full.parse().map(Some).map_err(|_| {
        format!("{value:?} is not HOST:PORT (e.g. 127.0.0.1:8080), :PORT, or 0 to disable")
    })
}

/// How long in-flight scrapes may take once the controller stops.
const DRAIN: Duration = Duration::from_secs(5);

/// A running endpoint; [`Server::shutdown`] stops it.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds `addr` and serves until [`Server::shutdown`]. The bind happens here, so a taken
    /// port fails startup instead of a background task.
    pub async fn start(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        client: Client,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot serve metrics and health probes on {addr}: {e}; \
                 choose another address with --metrics-addr (or --metrics-addr 0 to disable it)"
            )
        })?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "serving metrics and health probes");
        let (stop, stop_rx) = watch::channel(false);
        let state = Arc::new(State {
            metrics,
            api: ApiCheck {
                client,
                last: tokio::sync::Mutex::new(None),
            },
        });
        let task = tokio::spawn(serve(listener, state, stop_rx));
        Ok(Self { addr, stop, task })
    }

    /// The bound address (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish (for at most a few seconds).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct State {
    metrics: Arc<Metrics>,
    api: ApiCheck,
}

async fn serve(listener: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        // Typically out of file descriptors: back off instead of spinning.
                        tracing::warn!("metrics endpoint: accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let state = state.clone();
                let service = service_fn(move |request| handle(state.clone(), request));
                // A client that never finishes its headers must not pin a connection forever.
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!("metrics endpoint connection: {err}");
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("metrics endpoint: connections still open after {DRAIN:?}");
    }
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (method, path) = (request.method(), request.uri().path());
    let (status, content_type, body) = if method != Method::GET && method != Method::HEAD {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET and HEAD\n".to_string(),
        )
    } else {
        match path {
            "/healthz" => (StatusCode::OK, TEXT, "ok\n".to_string()),
            "/readyz" => {
                let role = state.metrics.role();
                // Only roles that could be ready are worth a request to the API server.
                let api = match role {
                    Role::Leading { .. } | Role::Standby { .. } => state.api.check().await,
                    Role::Starting | Role::Stopping => Ok(()),
                };
                let (status, body) =
                    readiness(&role, api.as_ref().map(|_| ()).map_err(String::as_str));
                (status, TEXT, body)
            }
            "/metrics" => match state.metrics.encode() {
                Ok(text) => (StatusCode::OK, METRICS, text),
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    TEXT,
                    "encoding the metrics failed\n".to_string(),
                ),
            },
            _ => (StatusCode::NOT_FOUND, TEXT, "not found\n".to_string()),
        }
    };
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    }
    Ok(response)
}

const TEXT: &str = "text/plain; charset=utf-8";
const METRICS: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    use super::*;
    use crate::api::{AgentSpec, AgentStatus};

    fn agent(name: &str, phase: Option<AgentPhase>) -> Agent {
        let mut agent = Agent::new(name, AgentSpec::default());
        agent.metadata.namespace = Some("ns".into());
        agent.status = phase.map(|phase| AgentStatus {
            phase: Some(phase),
            ..AgentStatus::default()
        });
        agent
    }

    /// The sample lines of `text` (no comments), for exact assertions.
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn metrics_addr_zero_disables_and_colon_port_listens_everywhere() {
        assert_eq!(parse_addr("0"), Ok(None));
        assert_eq!(
            parse_addr("127.0.0.1:0"),
            Ok(Some(SocketAddr::from(([127, 0, 0, 1], 0))))
        );
        assert_eq!(
            parse_addr(":9090"),
            Ok(Some(SocketAddr::from(([0, 0, 0, 0], 9090))))
        );
        assert_eq!(
            "[::1]:8080".parse::<MetricsAddr>(),
            Ok(MetricsAddr(Some(SocketAddr::from((
                std::net::Ipv6Addr::LOCALHOST,
                8080
            )))))
        );
        assert!(parse_addr("localhost").is_err());
        assert!(parse_addr("").is_err());
    }

    #[test]
    fn reconciles_are_counted_by_kind_and_result_and_timed() -> Result<(), std::fmt::Error> {
        let metrics = Metrics::new();
        metrics.register_kind("Agent");
        let fresh = metrics.encode()?;
        assert!(
            samples(&fresh).contains(&r#"kubeoc_reconcile_total{kind="Agent",result="error"} 0"#),
            "{fresh}"
        );
        metrics.reconcile_started("Agent").finish(None);
        metrics.reconcile_started("Agent").finish(None);
        metrics.reconcile_started("Agent").finish(Some("apply"));
        let running = metrics.reconcile_started("Agent");
        let text = metrics.encode()?;
        let lines = samples(&text);
        for expected in [
            r#"kubeoc_reconcile_total{kind="Agent",result="success"} 2"#,
            r#"kubeoc_reconcile_total{kind="Agent",result="error"} 1"#,
            r#"kubeoc_reconcile_errors_total{kind="Agent",error="apply"} 1"#,
            r#"kubeoc_reconcile_duration_seconds_count{kind="Agent"} 3"#,
            r#"kubeoc_reconcile_duration_seconds_bucket{kind="Agent",le="+Inf"} 3"#,
            r#"kubeoc_reconciles_in_flight{kind="Agent"} 1"#,
            r#"kubeoc_build_info{version="0.1.0"} 1"#,
        ] {
            assert!(lines.contains(&expected), "no {expected:?} in\n{text}");
        }
        assert!(text.contains("# TYPE kubeoc_reconcile_duration_seconds histogram"));
        assert!(text.contains("# TYPE kubeoc_reconcile_total counter"));
        // A cancelled reconcile leaves the in-flight gauge without counting as either result.
        drop(running);
        let text = metrics.encode()?;
        let lines = samples(&text);
        assert!(lines.contains(&r#"kubeoc_reconciles_in_flight{kind="Agent"} 0"#));
        assert!(lines.contains(&r#"kubeoc_reconcile_duration_seconds_count{kind="Agent"} 3"#));
        Ok(())
    }

    #[test]
    fn the_leader_gauge_follows_the_role() -> Result<(), std::fmt::Error> {
        let metrics = Metrics::new();
        let leader = |m: &Metrics| -> Result<bool, std::fmt::Error> {
            let text = m.encode()?;
            Ok(samples(&text).contains(&"kubeoc_leader 1"))
        };
        assert!(!leader(&metrics)?);
        metrics.set_role(Role::Standby {
            lease: "ns/kubeoc-controller".into(),
        });
        assert!(!leader(&metrics)?);
        metrics.set_role(Role::Leading { synced: false });
        assert!(leader(&metrics)?);
        metrics.mark_synced();
        assert_eq!(metrics.role(), Role::Leading { synced: true });
        metrics.set_role(Role::Stopping);
        metrics.mark_synced();
        assert_eq!(
            metrics.role(),
            Role::Stopping,
            "syncing late does not revive"
        );
        assert!(!leader(&metrics)?);
        Ok(())
    }

    #[test]
    fn agents_are_counted_by_phase_from_the_cache_at_scrape_time() -> Result<(), std::fmt::Error> {
        let metrics = Metrics::new();
        assert!(
            !metrics.encode()?.contains("kubeoc_agents"),
            "no cache, no claim"
        );
        let mut writer: Writer<Agent> = Writer::default();
        metrics.watch_agents(writer.as_reader());
        writer.apply_watcher_event(&Event::Init);
        for a in [
            agent("a", Some(AgentPhase::Ready)),
            agent("b", Some(AgentPhase::Ready)),
            agent("c", Some(AgentPhase::Degraded)),
            agent("d", None),
        ] {
            writer.apply_watcher_event(&Event::InitApply(a));
        }
        writer.apply_watcher_event(&Event::InitDone);
        let text = metrics.encode()?;
        let lines = samples(&text);
        for expected in [
            r#"kubeoc_agents{phase="Ready"} 2"#,
            r#"kubeoc_agents{phase="Degraded"} 1"#,
            r#"kubeoc_agents{phase="NotReady"} 0"#,
            r#"kubeoc_agents{phase="Suspended"} 0"#,
            r#"kubeoc_agents{phase="Unknown"} 1"#,
        ] {
            assert!(lines.contains(&expected), "no {expected:?} in\n{text}");
        }
        assert!(text.contains("# TYPE kubeoc_agents gauge"));
        // Computed per scrape: a deletion shows at the next one.
        writer.apply_watcher_event(&Event::Delete(agent("c", None)));
        let text = metrics.encode()?;
        assert!(samples(&text).contains(&r#"kubeoc_agents{phase="Degraded"} 0"#));
        Ok(())
    }

    #[test]
    fn count_phases_lists_every_phase() {
        let counts = count_phases(&[agent("a", Some(AgentPhase::Suspended))]);
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            [
                ("Degraded", 0),
                ("NotReady", 0),
                ("Ready", 0),
                ("Suspended", 1),
                ("Unknown", 0)
            ]
        );
    }

    #[test]
    fn readiness_is_ok_for_a_synced_leader_and_a_standby_only() {
        let standby = Role::Standby {
            lease: "ns/kubeoc-controller".into(),
        };
        let (code, body) = readiness(&Role::Leading { synced: true }, Ok(()));
        assert_eq!(
            (code, body.as_str()),
            (StatusCode::OK, "ok: leader, reconcilers running\n")
        );
        let (code, body) = readiness(&standby, Ok(()));
        assert_eq!(code, StatusCode::OK);
        assert!(
            body.contains("standby") && body.contains("ns/kubeoc-controller"),
            "{body}"
        );
        for (role, api, says) in [
            (Role::Starting, Ok(()), "starting"),
            (Role::Stopping, Ok(()), "shutting down"),
            (Role::Leading { synced: false }, Ok(()), "caches"),
            (
                Role::Leading { synced: true },
                Err("connection refused"),
                "connection refused",
            ),
            (standby, Err("timed out"), "cannot reach the API server"),
        ] {
            let (code, body) = readiness(&role, api);
            assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{role:?}");
            assert!(
                body.starts_with("not ready") && body.contains(says),
                "{role:?}: {body}"
            );
        }
    }
}
