//! Probes: what to check (from the pod spec), the threshold state machine (pure), and the
//! network checks. Exec probes run through the pod worker, which owns the process launcher.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Timing and thresholds of a probe, with the API's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeTiming {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl From<&Probe> for ProbeTiming {
    fn from(p: &Probe) -> Self {
        let secs = |v: Option<i32>, default: u64| {
            Duration::from_secs(v.map_or(default, |s| s.max(0) as u64))
        };
        Self {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.map_or(1, |v| v.max(1) as u32),
            failure_threshold: p.failure_threshold.map_or(3, |v| v.max(1) as u32),
        }
    }
}

/// Consecutive results against thresholds: the probe's verdict flips only after
/// `success_threshold` successes or `failure_threshold` failures in a row.
#[derive(Debug, Clone, Default)]
pub struct ProbeTracker {
    successes: u32,
    failures: u32,
    verdict: Option<bool>,
}

impl ProbeTracker {
    /// The current verdict: `None` until the first threshold is reached.
    pub fn verdict(&self) -> Option<bool> {
        self.verdict
    }

    /// Records one result; returns the new verdict when it changed.
    pub fn record(&mut self, ok: bool, timing: &ProbeTiming) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let next = if self.successes >= timing.success_threshold {
            Some(true)
        } else if self.failures >= timing.failure_threshold {
            Some(false)
        } else {
            self.verdict
        };
        if next != self.verdict {
            self.verdict = next;
            next
        } else {
            None
        }
    }
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeAction {
    Tcp { port: u16 },
    Http { port: u16, path: String },
    Exec { command: Vec<String> },
}

fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => {
            u16::try_from(*p).map_err(|_| format!("probe port {p} is out of range"))
        }
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| {
                format!(
                    "probe port {name:?} is not a named port of container {:?}",
                    container.name
                )
            }),
    }
}

/// The action of `probe`, with named ports resolved against the container.
pub fn action(probe: &Probe, container: &Container) -> Result<ProbeAction, String> {
    if let Some(tcp) = &probe.tcp_socket {
        return Ok(ProbeAction::Tcp {
            port: resolve_port(&tcp.port, container)?,
        });
    }
    if let Some(http) = &probe.http_get {
        if http
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"))
        {
            return Err("https probes are not supported by the testbed node".into());
        }
        return Ok(ProbeAction::Http {
            port: resolve_port(&http.port, container)?,
            path: http.path.clone().unwrap_or_else(|| "/".into()),
        });
    }
    if let Some(exec) = &probe.exec {
        return Ok(ProbeAction::Exec {
            command: exec.command.clone().unwrap_or_default(),
        });
    }
    Err("grpc probes are not supported by the testbed node".into())
}

/// A TCP connect to the pod.
pub async fn tcp(ip: Ipv4Addr, port: u16, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, TcpStream::connect(SocketAddr::from((ip, port)))).await,
        Ok(Ok(_))
    )
}

/// An HTTP/1.1 GET; 200..400 is success, as the kubelet counts it.
pub async fn http_get(ip: Ipv4Addr, port: u16, path: &str, timeout: Duration) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(SocketAddr::from((ip, port))).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/testbed\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 32];
        let n = stream.read(&mut head).await?;
        Ok::<_, std::io::Error>(parse_status(&head[..n]))
    };
    matches!(
        tokio::time::timeout(timeout, attempt).await,
        Ok(Ok(Some(code))) if (200..400).contains(&code)
    )
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    text.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn timing(success: u32, failure: u32) -> ProbeTiming {
        ProbeTiming {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn verdict_flips_only_at_thresholds() {
        let t = timing(2, 3);
        let mut tracker = ProbeTracker::default();
        assert_eq!(tracker.record(true, &t), None);
        assert_eq!(tracker.record(true, &t), Some(true));
        assert_eq!(tracker.record(false, &t), None);
        assert_eq!(tracker.record(false, &t), None);
        assert_eq!(tracker.verdict(), Some(true));
        assert_eq!(tracker.record(false, &t), Some(false));
        assert_eq!(tracker.record(false, &t), None, "no change, no report");
        assert_eq!(tracker.record(true, &t), None);
        assert_eq!(tracker.record(true, &t), Some(true));
    }

    #[test]
    fn timing_defaults_follow_the_api() {
        let probe: Probe =
            serde_json::from_value(json!({"tcpSocket": {"port": 80}})).expect("probe");
        let t = ProbeTiming::from(&probe);
        assert_eq!(
            t,
            ProbeTiming {
                period: Duration::from_secs(10),
                failure_threshold: 3,
                ..timing(1, 3)
            }
        );
    }

    #[test]
    fn actions_resolve_named_ports() {
        let container: Container = serde_json::from_value(json!({
            "name": "c", "ports": [{"name": "http", "containerPort": 4096}]
        }))
        .expect("container");
        let tcp: Probe =
            serde_json::from_value(json!({"tcpSocket": {"port": "http"}})).expect("probe");
        assert_eq!(
            action(&tcp, &container),
            Ok(ProbeAction::Tcp { port: 4096 })
        );
        let http: Probe =
            serde_json::from_value(json!({"httpGet": {"port": 8080, "path": "/healthz"}}))
                .expect("probe");
        assert_eq!(
            action(&http, &container),
            Ok(ProbeAction::Http {
                port: 8080,
                path: "/healthz".into()
            })
        );
        let exec: Probe =
            serde_json::from_value(json!({"exec": {"command": ["true"]}})).expect("probe");
        assert_eq!(
            action(&exec, &container),
            Ok(ProbeAction::Exec {
                command: vec!["true".into()]
            })
        );
        let bad: Probe =
            serde_json::from_value(json!({"tcpSocket": {"port": "nope"}})).expect("probe");
        assert!(action(&bad, &container).is_err());
    }

    #[test]
    fn parses_http_status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.0 503 x"), Some(503));
        assert_eq!(parse_status(b"garbage"), None);
    }
}
