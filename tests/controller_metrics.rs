//! `controller run --metrics-addr` against the testbed: `/healthz`, `/readyz` and `/metrics` of
//! a leader and of a standby on the same Lease, `--metrics-addr 0` serving nothing, and a taken
//! address failing startup with a clear message.

mod support;

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use kube::Api;
use kube::api::PostParams;
use kubeoc::api::Agent;
use kubeoc_testbed::{admin_client, wait_until};
use serde_json::json;
use support::{Controller, installed_namespace};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const WAIT: Duration = Duration::from_secs(60);
const LOOPBACK_ANY_PORT: &str = "127.0.0.1:0";

/// One HTTP/1.1 request over a loopback TcpStream; (status, body).
async fn request(addr: &str, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .with_context(|| format!("no end of headers in {text:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no status in {head:?}"))?;
        anyhow::Ok((status, body.to_string()))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .with_context(|| format!("{method} http://{addr}{path}: no answer within 10s"))?
}

async fn get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    request(addr, "GET", path).await
}

/// The value of the sample `series` (name with labels, exactly as exposed) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

const PHASES: [&str; 5] = ["Ready", "NotReady", "Suspended", "Degraded", "Unknown"];

fn agents_in(text: &str, phase: &str) -> f64 {
    sample(text, &format!("kubeoc_agents{{phase=\"{phase}\"}}")).unwrap_or(0.0)
}

fn agent_reconciles(text: &str) -> f64 {
    ["success", "error"]
        .iter()
        .filter_map(|r| {
            sample(
                text,
                &format!("kubeoc_reconcile_total{{kind=\"Agent\",result=\"{r}\"}}"),
            )
        })
        .sum()
}

/// Socket inodes of the TCP sockets `pid` listens on (Linux: its fds against /proc/net/tcp*).
fn listening_sockets(pid: u32) -> anyhow::Result<Vec<String>> {
    let mut inodes = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = std::fs::read_link(fd?.path()) else {
            continue;
        };
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.push(inode.to_string());
        }
    }
    let mut listening = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let fields: Vec<&str> = row.split_whitespace().collect();
            // st 0A is LISTEN; the inode is the tenth field.
            if let (Some(&"0A"), Some(inode)) = (fields.get(3), fields.get(9))
                && inodes.iter().any(|i| i == inode)
            {
                listening.push(format!("{table}: {row}"));
            }
        }
    }
    Ok(listening)
}

#[tokio::test]
async fn a_leader_and_a_standby_serve_health_readiness_and_metrics() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = installed_namespace(&client, "metrics").await?;
    let n = ns.name.clone();

    let leader = Controller::start_with(&n, &["--metrics-addr", LOOPBACK_ANY_PORT])?;
    let addr = leader.metrics_addr(WAIT).await?;
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    assert_eq!(get(&addr, "/healthz").await?, (200, "ok\n".into()));
    // Until its first try at the Lease it is a (ready) standby; then a leader, ready once synced.
    wait_until(
        "the leader's /readyz to answer 200 as leader",
        WAIT,
        || async {
            let (code, body) = get(&addr, "/readyz").await?;
            Ok((code == 200 && body.contains("leader")).then_some(()))
        },
    )
    .await
    .with_context(|| format!("controller log:\n{}", leader.log()))?;

    let (code, text) = get(&addr, "/metrics").await?;
    assert_eq!(code, 200, "{text}");
    assert_eq!(sample(&text, "kubeoc_leader"), Some(1.0), "{text}");
    let total: f64 = PHASES.iter().map(|p| agents_in(&text, p)).sum();
    assert_eq!(total, 0.0, "an empty namespace has no Agents:\n{text}");
    let before = agent_reconciles(&text);
    assert_eq!(
        sample(&text, "kubeoc_reconciles_in_flight{kind=\"Agent\"}"),
        Some(0.0),
        "{text}"
    );

    // It need not become Ready: counting it is enough.
    let agent: Agent = serde_json::from_value(json!({
        "apiVersion": "kubeopencode.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "counted"},
        "spec": {"workspaceDir": "/workspace", "serviceAccountName": "default"},
    }))?;
    Api::<Agent>::namespaced(client.clone(), &n)
        .create(&PostParams::default(), &agent)
        .await?;
    let text = wait_until(
        "the Agent reconciled and counted with a phase",
        WAIT,
        || async {
            let (_, text) = get(&addr, "/metrics").await?;
            let phased: f64 = PHASES[..4].iter().map(|p| agents_in(&text, p)).sum();
            Ok((agent_reconciles(&text) > before && phased == 1.0).then_some(text))
        },
    )
    .await
    .with_context(|| format!("controller log:\n{}", leader.log()))?;
    let total: f64 = PHASES.iter().map(|p| agents_in(&text, p)).sum();
    assert_eq!(total, 1.0, "one Agent, counted once:\n{text}");
    assert!(
        sample(
            &text,
            "kubeoc_reconcile_duration_seconds_count{kind=\"Agent\"}"
        )
        .is_some_and(|c| c >= 1.0),
        "{text}"
    );

    assert_eq!(get(&addr, "/nope").await?.0, 404);
    assert_eq!(request(&addr, "POST", "/metrics").await?.0, 405);
    let (code, body) = request(&addr, "HEAD", "/healthz").await?;
    assert_eq!((code, body.as_str()), (200, ""));

    // A second controller on the same Lease waits: ready as a standby, not the leader.
    let standby = Controller::start_with(&n, &["--metrics-addr", LOOPBACK_ANY_PORT])?;
    let standby_addr = standby.metrics_addr(WAIT).await?;
    let body = wait_until("the standby's /readyz to answer 200", WAIT, || async {
        let (code, body) = get(&standby_addr, "/readyz").await?;
        Ok((code == 200).then_some(body))
    })
    .await
    .with_context(|| format!("standby log:\n{}", standby.log()))?;
    assert!(body.contains("standby"), "{body}");
    let (code, text) = get(&standby_addr, "/metrics").await?;
    assert_eq!(code, 200);
    assert_eq!(sample(&text, "kubeoc_leader"), Some(0.0), "{text}");
    assert!(
        !text.contains("kubeoc_agents"),
        "a standby has no cache to count from:\n{text}"
    );
    // Still the leader's job.
    let (_, text) = get(&addr, "/metrics").await?;
    assert_eq!(sample(&text, "kubeoc_leader"), Some(1.0), "{text}");

    // Ctrl-C stops the endpoint with the controller.
    for controller in [standby, leader] {
        let addr = controller.metrics_addr(WAIT).await?;
        let (status, log) = controller.interrupt(WAIT).await?;
        ensure!(status.success(), "exit {status} after Ctrl-C:\n{log}");
        assert!(
            tokio::net::TcpStream::connect(&addr).await.is_err(),
            "{addr} still accepts after the controller stopped"
        );
    }
    ns.delete().await
}

#[tokio::test]
async fn metrics_addr_zero_serves_nothing_and_a_taken_address_fails_startup() -> anyhow::Result<()>
{
    let client = admin_client().await?;
    let ns = installed_namespace(&client, "metrics-off").await?;
    let n = ns.name.clone();

    let quiet = Controller::start_with(&n, &["--metrics-addr", "0"])?;
    let pid = quiet.pid().context("no pid")?;
    wait_until("the controller to lead", WAIT, || async {
        Ok(quiet
            .log()
            .contains("starting the reconcilers")
            .then_some(()))
    })
    .await
    .with_context(|| format!("controller log:\n{}", quiet.log()))?;
    assert!(!quiet.log().contains("serving metrics"), "{}", quiet.log());
    let listening = listening_sockets(pid)?;
    assert!(
        listening.is_empty(),
        "--metrics-addr 0 listens nowhere: {listening:?}"
    );
    drop(quiet);

    // Hold a port, then ask a controller to serve there.
    let taken = tokio::net::TcpListener::bind(LOOPBACK_ANY_PORT).await?;
    let addr = taken.local_addr()?.to_string();
    let mut clash = Controller::start_with(&n, &["--metrics-addr", &addr])?;
    let Some(status) = clash.wait_exit(WAIT).await? else {
        bail!(
            "a controller on a taken address kept running:\n{}",
            clash.log()
        );
    };
    let log = clash.log();
    ensure!(
        !status.success(),
        "exit {status} on a taken address:\n{log}"
    );
    assert!(
        log.contains(&addr) && log.contains("--metrics-addr"),
        "the error names the address and the flag:\n{log}"
    );
    drop(taken);
    ns.delete().await
}
