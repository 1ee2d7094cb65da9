//! Fake nodes for thousands of Agents: KWOK (built from its Go module) runs their pods
//! without processes, and every pod address it hands out answers OpenCode's health check.
//!
//! The pods get addresses from [`FAKE_POD_CIDR`], which a `local` route binds to loopback on
//! this host: the apiserver's service proxy dials a pod address and reaches [`serve_health`]
//! here, so nothing leaves the machine and the controller sees healthy servers, as it would
//! in production. KWOK's nodes carry its taint, so only the bench's Agents (which tolerate it
//! and select [`NODE_LABEL`]) land on them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use kubeoc_testbed::node::network::run;
use serde_json::json;

/// Where KWOK's pods get their addresses: outside the testbed's pod (10.244/16) and service
/// (10.96/16) ranges, and routed to loopback while the fleet is up.
pub const FAKE_POD_CIDR: &str = "10.246.0.0/16";
const FAKE_POD_PREFIX: [u8; 2] = [10, 246];
/// The server port of the bench's Agents, where [`serve_health`] listens.
pub const SERVER_PORT: u16 = 14096;
/// Node label the bench's Agents select.
pub const NODE_LABEL: (&str, &str) = ("kubeoc.dev/bench", "kwok");
const KWOK_TAINT: &str = "kwok.x-k8s.io/node";
/// Pods a fake node holds; each node has a /20 of addresses (4,094).
const PODS_PER_NODE: usize = 4000;

/// KWOK and its nodes, until [`Fleet::stop`].
pub struct Fleet {
    kwok: tokio::process::Child,
    nodes: Vec<String>,
    server: tokio::task::JoinHandle<()>,
    client: Client,
}

/// The KWOK binary and its stages, built by `testbed/scripts/build-go-tool.sh kwok`.
fn kwok_binary() -> anyhow::Result<(PathBuf, PathBuf)> {
    let script = kubeoc_testbed::repo_root().join("testbed/scripts/build-go-tool.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("kwok")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} kwok failed", script.display());
    }
    let binary = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let stages = binary.with_file_name("stages.yaml");
    Ok((binary, stages))
}

fn node_manifest(name: &str, index: usize) -> anyhow::Result<Node> {
    let (label, value) = NODE_LABEL;
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_TAINT: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {label: value, "type": "kwok", "kubernetes.io/hostname": name},
        },
        "spec": {
            "podCIDR": format!("10.246.{}.0/20", index * 16),
            "taints": [{"key": KWOK_TAINT, "value": "fake", "effect": "NoSchedule"}],
        },
        "status": {
            "allocatable": {"cpu": "1000", "memory": "4Ti", "pods": PODS_PER_NODE.to_string()},
            "capacity": {"cpu": "1000", "memory": "4Ti", "pods": PODS_PER_NODE.to_string()},
        },
    }))?)
}

impl Fleet {
    /// Starts KWOK with enough fake nodes for `pods` pods, and the health stand-in.
    pub async fn start(
        client: Client,
        kubeconfig: &Path,
        pods: usize,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let (binary, stages) = kwok_binary()?;
        run(
            "ip",
            &["route", "replace", "local", FAKE_POD_CIDR, "dev", "lo"],
        )
        .await?;
        let route = run("ip", &["route", "get", "10.246.0.2"]).await?;
        if !route.starts_with("local ") {
            bail!(
                "{FAKE_POD_CIDR} is not routed to loopback (ip route get 10.246.0.2: {route}); refusing to start"
            );
        }
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", SERVER_PORT))
            .await
            .with_context(|| format!("binding the health stand-in to port {SERVER_PORT}"))?;
        let server = tokio::spawn(serve_health(listener));

        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let kwok = tokio::process::Command::new(&binary)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--config={}", stages.display()))
            .args([
                "--manage-all-nodes=false",
                &format!("--manage-nodes-with-annotation-selector={KWOK_TAINT}=fake"),
                "--manage-nodes-with-label-selector=",
                "--disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom",
                "--disregard-status-with-label-selector=",
                "--node-ip=10.246.0.1",
                "--node-lease-duration-seconds=120",
                "--server-address=",
            ])
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;

        let nodes_api: Api<Node> = Api::all(client.clone());
        let count = pods.div_ceil(PODS_PER_NODE).max(1);
        let mut nodes = Vec::new();
        for i in 0..count {
            let name = format!("kwok-bench-{i}");
            if nodes_api.get_opt(&name).await?.is_none() {
                nodes_api
                    .create(&PostParams::default(), &node_manifest(&name, i)?)
                    .await
                    .with_context(|| format!("creating Node {name}"))?;
            }
            nodes.push(name);
        }
        let fleet = Fleet {
            kwok,
            nodes,
            server,
            client,
        };
        for name in &fleet.nodes {
            kubeoc_testbed::wait_until(
                &format!("fake Node {name} Ready"),
                Duration::from_secs(60),
                || async {
                    let node = nodes_api.get(name).await?;
                    let ready = node
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                    Ok(ready.then_some(()))
                },
            )
            .await
            .with_context(|| format!("KWOK's log: {}", log.display()))?;
        }
        Ok(fleet)
    }

    /// Deletes the fake nodes, stops KWOK and the stand-in, and removes the route.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        for name in &self.nodes {
            let _ = nodes.delete(name, &DeleteParams::default()).await;
        }
        let _ = self.kwok.kill().await;
        self.server.abort();
        run("ip", &["route", "del", "local", FAKE_POD_CIDR, "dev", "lo"]).await?;
        Ok(())
    }
}

/// Answers every request with a healthy OpenCode 1.18.33, on connections to pod addresses
/// only (the listener is on every interface, as an address range cannot be bound).
async fn serve_health(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let to_fake_pod = stream
            .local_addr()
            .is_ok_and(|a| matches!(a.ip(), IpAddr::V4(v4) if v4.octets()[..2] == FAKE_POD_PREFIX));
        if !to_fake_pod {
            continue;
        }
        tokio::spawn(async move {
            let service = service_fn(|_request| async {
                let body = Bytes::from_static(br#"{"healthy":true,"version":"1.18.33"}"#);
                hyper::Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(body))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
