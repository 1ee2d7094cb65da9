//! Pod networking: one network namespace per pod, a veth to the host bridge, an address from
//! the pod CIDR, no default route. Service traffic is DNAT-ed inside the pod's namespace (see
//! `services`), so nothing a pod sends leaves the bridge.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use tokio::process::Command;

/// Runs a host command, failing with its stderr.
pub async fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .await
        .with_context(|| format!("running {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The network namespace name of a pod.
pub fn netns_name(pod_uid: &str) -> String {
    format!("kubeoc-{}", &pod_uid[..pod_uid.len().min(8)])
}

/// The bind-mounted handle of a named namespace, which `setns` opens.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

fn host_veth_name(pod_uid: &str) -> String {
    format!("kv{}", &pod_uid[..pod_uid.len().min(8)])
}

/// The host side of the pod network.
#[derive(Debug, Clone)]
pub struct HostNetwork {
    pub bridge: String,
    pub prefix: u8,
    pub service_cidr: String,
}

impl HostNetwork {
    /// Fails unless `ip route get` sends pod addresses to the bridge and refuses service
    /// addresses: nothing may dial a pod before this holds.
    pub async fn verify_routes(
        &self,
        sample_pod_ip: Ipv4Addr,
        sample_service_ip: Ipv4Addr,
    ) -> anyhow::Result<()> {
        let route = run("ip", &["route", "get", &sample_pod_ip.to_string()]).await?;
        if !route.contains(&format!("dev {}", self.bridge)) {
            bail!(
                "pod address {sample_pod_ip} is not routed to bridge {} ({}); run make cluster-up, which sets up the routes",
                self.bridge,
                route.trim()
            );
        }
        if let Ok(route) = run("ip", &["route", "get", &sample_service_ip.to_string()]).await {
            bail!(
                "service address {sample_service_ip} is routable from the host ({}); expected an unreachable route for {}",
                route.trim(),
                self.service_cidr
            );
        }
        Ok(())
    }

    /// Creates the pod's namespace and veth, assigns `ip`. Idempotent: a leftover namespace of
    /// the same pod is replaced.
    pub async fn create_pod_network(&self, pod_uid: &str, ip: Ipv4Addr) -> anyhow::Result<String> {
        let ns = netns_name(pod_uid);
        let host_veth = host_veth_name(pod_uid);
        self.delete_pod_network(pod_uid).await;
        let cidr = format!("{ip}/{}", self.prefix);
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &ns],
            vec![
                "link", "add", &host_veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
            vec!["link", "set", &host_veth, "master", &self.bridge],
            vec!["link", "set", &host_veth, "up"],
            vec!["-n", &ns, "link", "set", "lo", "up"],
            vec!["-n", &ns, "addr", "add", &cidr, "dev", "eth0"],
            vec!["-n", &ns, "link", "set", "eth0", "up"],
            // Service addresses are on-link so the pod's own DNAT rules can rewrite them;
            // anything else has no route at all.
            vec!["-n", &ns, "route", "add", &self.service_cidr, "dev", "eth0"],
        ];
        for step in steps {
            if let Err(err) = run("ip", &step).await {
                self.delete_pod_network(pod_uid).await;
                return Err(err.context(format!(
                    "setting up the network of pod {pod_uid}: the kernel refused a namespace or veth operation"
                )));
            }
        }
        Ok(ns)
    }

    /// Removes the pod's namespace (its veth goes with it). Errors are ignored: absent is fine.
    pub async fn delete_pod_network(&self, pod_uid: &str) {
        let _ = run("ip", &["link", "del", &host_veth_name(pod_uid)]).await;
        let _ = run("ip", &["netns", "del", &netns_name(pod_uid)]).await;
    }

    /// Names of leftover pod namespaces (from an earlier node agent run).
    pub async fn list_pod_namespaces(&self) -> Vec<String> {
        run("ip", &["netns", "list"])
            .await
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with("kubeoc-"))
            .map(str::to_string)
            .collect()
    }
}

/// Runs a command inside a pod's network namespace.
pub async fn run_in_netns(
    ns: &str,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<()> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program]).args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {program} in {ns}"))?;
    if let Some(mut input) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "{program} in {ns} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
