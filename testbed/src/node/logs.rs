//! Container logs: the node writes each container run to its own file (one line per output
//! line, with a timestamp, CRI-style), and serves them at the kubelet's
//! `/containerLogs/{ns}/{pod}/{container}` endpoint on the node IP over TLS, so
//! `kubectl logs [-f]` works through the apiserver.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::jiff::Timestamp;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Where a running pod keeps its logs, by `(namespace, name)`.
pub type LogRegistry = Arc<Mutex<HashMap<(String, String), PathBuf>>>;

/// The directory of a container's log files inside a pod directory.
pub fn container_log_dir(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join("logs").join(container)
}

/// The log file of one run (`attempt` = restart count) of a container.
pub fn log_file(pod_dir: &Path, container: &str, attempt: i32) -> PathBuf {
    container_log_dir(pod_dir, container).join(format!("{attempt}.log"))
}

fn done_marker(log: &Path) -> PathBuf {
    log.with_extension("done")
}

/// Copies one output stream of a container into its log file, line by line, with timestamps.
pub async fn pump(
    stream: impl AsyncRead + Unpin,
    name: &'static str,
    file: Arc<Mutex<std::fs::File>>,
) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                let mut record = format!("{} {name} F ", Timestamp::now()).into_bytes();
                record.extend_from_slice(&line);
                record.push(b'\n');
                if let Ok(mut f) = file.lock() {
                    let _ = f.write_all(&record);
                }
            }
        }
    }
}

/// Opens (creates) a run's log file for the pumps.
pub fn open_log(path: &Path) -> anyhow::Result<Arc<Mutex<std::fs::File>>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log {}", path.display()))?;
    Ok(Arc::new(Mutex::new(file)))
}

/// Marks a run's log as complete: followers stop after draining it.
pub fn finish_log(path: &Path) {
    let _ = std::fs::write(done_marker(path), b"");
}

/// The newest (or, with `previous`, the one before) run's log file of a container.
fn pick_log(dir: &Path, previous: bool) -> Option<PathBuf> {
    let mut attempts: Vec<i32> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    attempts.sort_unstable();
    let attempt = if previous {
        attempts.iter().rev().nth(1)
    } else {
        attempts.last()
    }?;
    Some(dir.join(format!("{attempt}.log")))
}

/// One stored record rendered for the client.
fn render_record(record: &str, timestamps: bool) -> Option<String> {
    let (ts, rest) = record.split_once(' ')?;
    let (_stream, rest) = rest.split_once(' ')?;
    let (_tag, content) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(if timestamps {
        format!("{ts} {content}\n")
    } else {
        format!("{content}\n")
    })
}

/// Renders stored records written at or after `since`, keeping the last `tail` of those
/// (the kubelet's order: since first, then tail).
pub fn render(
    records: &str,
    timestamps: bool,
    tail: Option<usize>,
    since: Option<Timestamp>,
) -> String {
    let lines: Vec<&str> = records
        .lines()
        .filter(|l| {
            since.is_none_or(|since| {
                l.split_once(' ')
                    .and_then(|(ts, _)| ts.parse::<Timestamp>().ok())
                    .is_none_or(|ts| ts >= since)
            })
        })
        .collect();
    let start = tail.map_or(0, |t| lines.len().saturating_sub(t));
    lines[start..]
        .iter()
        .filter_map(|l| render_record(l, timestamps))
        .collect()
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    follow: Option<String>,
    previous: Option<String>,
    timestamps: Option<String>,
    tail_lines: Option<usize>,
    since_seconds: Option<i64>,
    since_time: Option<String>,
}

impl LogQuery {
    /// The earliest record to show: sinceTime (RFC 3339) or now minus sinceSeconds.
    fn since(&self) -> Option<Timestamp> {
        if let Some(time) = self.since_time.as_deref().and_then(|t| t.parse().ok()) {
            return Some(time);
        }
        let seconds = self.since_seconds?;
        Timestamp::now()
            .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(seconds))
            .ok()
    }
}

fn flag(value: &Option<String>) -> bool {
    matches!(value.as_deref(), Some("true" | "1"))
}

async fn container_logs(
    State(registry): State<LogRegistry>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    let pod_dir = registry
        .lock()
        .ok()
        .and_then(|r| r.get(&(namespace.clone(), pod.clone())).cloned());
    let Some(pod_dir) = pod_dir else {
        return (
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} is not running on this node\n"),
        )
            .into_response();
    };
    let Some(path) = pick_log(
        &container_log_dir(&pod_dir, &container),
        flag(&query.previous),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            format!("container {container:?} in pod {pod:?} has no logs (not started yet, or no previous run)\n"),
        )
            .into_response();
    };
    let timestamps = flag(&query.timestamps);
    let existing = tokio::fs::read_to_string(&path).await.unwrap_or_default();
    let first = Bytes::from(render(
        &existing,
        timestamps,
        query.tail_lines,
        query.since(),
    ));
    if !flag(&query.follow) {
        return first.into_response();
    }
    // Follow: poll the file for new records until the run's log is marked done.
    let state = (
        path,
        existing.len(),
        registry,
        (namespace, pod),
        timestamps,
        false,
    );
    let rest = futures::stream::unfold(
        state,
        |(path, offset, registry, key, timestamps, finished)| async move {
            if finished {
                return None;
            }
            loop {
                let done = done_marker(&path).exists()
                    || registry
                        .lock()
                        .map(|r| !r.contains_key(&key))
                        .unwrap_or(true);
                let content = tokio::fs::read(&path).await.unwrap_or_default();
                if content.len() > offset {
                    // Only whole records: a line is complete once its newline is written.
                    let end = content[offset..]
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .map(|p| offset + p + 1);
                    if let Some(end) = end {
                        let chunk = render(
                            &String::from_utf8_lossy(&content[offset..end]),
                            timestamps,
                            None,
                            None,
                        );
                        return Some((
                            Ok::<_, std::io::Error>(Bytes::from(chunk)),
                            (path, end, registry, key, timestamps, false),
                        ));
                    }
                }
                if done {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        },
    );
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(rest);
    Response::new(Body::from_stream(body))
}

/// TLS settings: the node's serving certificate; clients (the apiserver) must present a
/// certificate signed by the testbed CA.
pub fn tls_config(cert: &Path, key: &Path, ca: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<_, _>>()?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca_cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(ca_cert?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .context("building the client certificate verifier")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves the kubelet log endpoint until the process ends.
pub async fn serve(
    addr: SocketAddr,
    tls: rustls::ServerConfig,
    registry: LogRegistry,
) -> anyhow::Result<()> {
    let router = Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(registry);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the kubelet endpoint on {addr}"))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_records_with_and_without_timestamps_and_tails() {
        let records = "2026-01-01T00:00:00Z stdout F one\n2026-01-01T00:00:01Z stderr F two words\n2026-01-01T00:00:02Z stdout F \n";
        assert_eq!(render(records, false, None, None), "one\ntwo words\n\n");
        let since: Timestamp = "2026-01-01T00:00:01Z".parse().expect("time");
        assert_eq!(render(records, false, None, Some(since)), "two words\n\n");
        assert_eq!(render(records, false, Some(1), Some(since)), "\n");
        assert_eq!(
            render(records, true, Some(2), None),
            "2026-01-01T00:00:01Z two words\n2026-01-01T00:00:02Z \n"
        );
    }

    #[test]
    fn picks_the_newest_or_previous_run() {
        let dir = std::env::temp_dir().join(format!("kubeoc-logs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for n in [0, 1, 10] {
            std::fs::write(dir.join(format!("{n}.log")), b"").expect("file");
        }
        assert_eq!(pick_log(&dir, false), Some(dir.join("10.log")));
        assert_eq!(pick_log(&dir, true), Some(dir.join("1.log")));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
