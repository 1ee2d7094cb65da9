//! The Node object and its heartbeat: a Lease in `kube-node-lease` renewed every 10 s and a
//! status refresh every minute, as a kubelet does.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

const FIELD_MANAGER: &str = "kubeoc-testbed-node";
const LEASE_DURATION_SECONDS: i32 = 40;

/// Facts the Node object carries.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub name: String,
    pub ip: Ipv4Addr,
    pub kubelet_port: u16,
    pub kube_version: String,
}

fn node_status(node: &NodeIdentity) -> serde_json::Value {
    let now = Timestamp::now().to_string();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!({
        "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
        "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
        "addresses": [
            {"type": "InternalIP", "address": node.ip.to_string()},
            {"type": "Hostname", "address": node.name}
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": node.kubelet_port}},
        "nodeInfo": {
            "kubeletVersion": node.kube_version, "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
            "containerRuntimeVersion": "kubeoc-testbed://0.1", "osImage": "kubeoc testbed (host processes)",
            "kernelVersion": "", "machineID": "", "systemUUID": "", "bootID": ""
        },
        "conditions": [
            condition("Ready", "True", "KubeletReady", "kubeoc testbed node agent is posting ready status"),
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure")
        ]
    })
}

/// Creates or updates the Node and posts a Ready status.
pub async fn register(client: &kube::Client, node: &NodeIdentity) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let object = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node.name, "labels": {
            "kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": std::env::consts::ARCH, "node.kubernetes.io/testbed": "true"
        }}
    });
    nodes
        .patch(&node.name, &params, &Patch::Apply(&object))
        .await
        .with_context(|| format!("registering node {}", node.name))?;
    post_status(client, node).await
}

/// Posts the node's status with a fresh heartbeat.
pub async fn post_status(client: &kube::Client, node: &NodeIdentity) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({"status": node_status(node)});
    nodes
        .patch_status(
            &node.name,
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .with_context(|| format!("posting status of node {}", node.name))?;
    Ok(())
}

async fn renew_lease(
    client: &kube::Client,
    node: &NodeIdentity,
    node_uid: &str,
) -> anyhow::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node.name, "ownerReferences": [
            {"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": node_uid}
        ]},
        "spec": {"holderIdentity": node.name, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                 "renewTime": MicroTime(Timestamp::now())}
    });
    leases
        .patch(
            &node.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&lease),
        )
        .await
        .with_context(|| format!("renewing lease of node {}", node.name))?;
    Ok(())
}

/// Renews the Lease every 10 s and re-posts status every minute, forever. Errors are logged and
/// retried: a missed renewal only makes the node look unhealthy for a while.
pub async fn heartbeat(client: kube::Client, node: NodeIdentity) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut ticks: u64 = 0;
    loop {
        let uid = nodes
            .get(&node.name)
            .await
            .ok()
            .and_then(|n| n.metadata.uid);
        if let Some(uid) = uid
            && let Err(err) = renew_lease(&client, &node, &uid).await
        {
            tracing::warn!("{err:#}");
        }
        if ticks % 6 == 5
            && let Err(err) = post_status(&client, &node).await
        {
            tracing::warn!("{err:#}");
        }
        ticks += 1;
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
