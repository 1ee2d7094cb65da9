//! The controller's HTTP endpoint: `/healthz`, `/readyz` and `/metrics` on one small hyper
//! server, as controller-runtime serves them, so the usual probes and scrapers work unchanged.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

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
    pub async fn start(addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot serve metrics and health probes on {addr}: {e}; \
                 choose another address with --metrics-addr (or --metrics-addr 0 to disable it)"
            )
        })?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "serving metrics and health probes");
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, stop_rx));
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

async fn serve(listener: TcpListener, mut stop: watch::Receiver<bool>) {
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
                let connection = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(handle));
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

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = route(request.method(), request.uri().path());
    let body = if request.method() == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    Ok(response)
}

const TEXT: &str = "text/plain; charset=utf-8";

fn route(method: &Method, path: &str) -> (StatusCode, &'static str, String) {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET and HEAD\n".into(),
        );
    }
    match path {
        "/healthz" => (StatusCode::OK, TEXT, "ok\n".into()),
        _ => (StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(parse_addr("localhost").is_err());
        assert!(parse_addr("").is_err());
    }
}
