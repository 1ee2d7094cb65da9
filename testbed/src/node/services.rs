//! Services inside pods: Service names resolve through a per-pod hosts file, and ClusterIP
//! traffic is DNAT-ed to a ready endpoint by iptables rules in the pod's own network namespace
//! (conntrack there undoes it on replies). Unknown service addresses are rejected, so nothing
//! aimed at the service range leaves the pod. Rendering is pure; applying shells out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// One service port and where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct PortRoute {
    /// The port's name in the Service (empty when unnamed).
    pub name: String,
    pub protocol: String,
    pub port: u16,
    /// A ready endpoint `(ip, port)`, if any.
    pub target: Option<(Ipv4Addr, u16)>,
}

/// A Service as pods see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceEntry {
    pub name: String,
    pub namespace: String,
    /// `None` for headless Services: their names resolve to the endpoints themselves.
    pub cluster_ip: Option<Ipv4Addr>,
    pub ports: Vec<PortRoute>,
    pub ready_endpoints: Vec<Ipv4Addr>,
}

/// Every Service of the cluster, sorted for stable output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceTable {
    pub entries: Vec<ServiceEntry>,
}

fn ready_addresses<'a>(slices: &[&'a EndpointSlice]) -> Vec<(Ipv4Addr, &'a EndpointSlice)> {
    let mut out = Vec::new();
    for slice in slices {
        for endpoint in &slice.endpoints {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready {
                continue;
            }
            if let Some(ip) = endpoint
                .addresses
                .iter()
                .find_map(|a| a.parse::<Ipv4Addr>().ok())
            {
                out.push((ip, *slice));
            }
        }
    }
    out.sort_by_key(|(ip, _)| *ip);
    out
}

/// Builds the table from Services and EndpointSlices (label `kubernetes.io/service-name`).
pub fn build_table(services: &[Service], slices: &[EndpointSlice]) -> ServiceTable {
    // Indexed once: the bench's thousands of Services, each looking through every slice, kept
    // the table seconds behind while their namespaces went, and a new pod's connections to a
    // Service that had just got its endpoint were refused.
    let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        if let (Some(namespace), Some(service)) = (
            slice.metadata.namespace.as_deref(),
            slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name")),
        ) {
            by_service
                .entry((namespace, service.as_str()))
                .or_default()
                .push(slice);
        }
    }
    let mut entries = Vec::new();
    for svc in services {
        let (Some(name), Some(namespace)) =
            (svc.metadata.name.clone(), svc.metadata.namespace.clone())
        else {
            continue;
        };
        let spec = svc.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        let mine = by_service
            .get(&(namespace.as_str(), name.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let ready = ready_addresses(mine);
        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let port = u16::try_from(p.port).ok()?;
                // The slice port with the same name carries the resolved target port.
                let target = ready.iter().find_map(|(ip, slice)| {
                    let slice_port = slice.ports.iter().flatten().find(|sp| {
                        sp.name.as_deref().unwrap_or("") == p.name.as_deref().unwrap_or("")
                    })?;
                    Some((*ip, u16::try_from(slice_port.port?).ok()?))
                });
                Some(PortRoute {
                    name: p.name.clone().unwrap_or_default(),
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port,
                    target,
                })
            })
            .collect();
        entries.push(ServiceEntry {
            name,
            namespace,
            cluster_ip,
            ports,
            ready_endpoints: ready.iter().map(|(ip, _)| *ip).collect(),
        });
    }
    entries.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    ServiceTable { entries }
}

/// The hosts file of a pod in `pod_namespace`: full, `.svc`, `<svc>.<ns>` and, for its own
/// namespace, bare Service names.
pub fn hosts_file(
    table: &ServiceTable,
    pod_namespace: &str,
    pod_name: &str,
    pod_ip: Ipv4Addr,
    domain: &str,
) -> String {
    let mut out = String::from(
        "# Written by the kubeoc testbed node agent.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    let _ = writeln!(out, "{pod_ip}\t{pod_name}");
    let mut lines: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in &table.entries {
        let Some(ip) = entry.cluster_ip.or(entry.ready_endpoints.first().copied()) else {
            continue;
        };
        let (svc, ns) = (&entry.name, &entry.namespace);
        let mut names = vec![
            format!("{svc}.{ns}.svc.{domain}"),
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}"),
        ];
        if ns == pod_namespace {
            names.push(svc.clone());
        }
        lines.entry(ip.to_string()).or_default().extend(names);
    }
    for (ip, names) in lines {
        let _ = writeln!(out, "{ip}\t{}", names.join(" "));
    }
    out
}

/// `iptables-restore` input for a pod namespace: DNAT per ClusterIP port with a ready endpoint,
/// then reject everything else aimed at the service range.
pub fn iptables_rules(table: &ServiceTable, service_cidr: &str) -> String {
    let mut out = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
    );
    for entry in &table.entries {
        let Some(cluster_ip) = entry.cluster_ip else {
            continue;
        };
        for route in &entry.ports {
            if let Some((ip, port)) = route.target {
                let proto = route.protocol.to_lowercase();
                let _ = writeln!(
                    out,
                    "-A OUTPUT -d {cluster_ip}/32 -p {proto} -m {proto} --dport {} -j DNAT --to-destination {ip}:{port}",
                    route.port
                );
            }
        }
    }
    out.push_str(
        "COMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n",
    );
    let _ = writeln!(
        out,
        "-A OUTPUT -d {service_cidr} -p tcp -j REJECT --reject-with tcp-reset"
    );
    let _ = writeln!(out, "-A OUTPUT -d {service_cidr} -j REJECT");
    out.push_str("COMMIT\n");
    out
}

/// Rewrites a file in place (same inode), so bind mounts of it see the new content.
pub fn write_in_place(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    file.write_all(content.as_bytes())
}

/// The Service environment variables the kubelet gives every container: those of the
/// `kubernetes` Service in `default` always (in-cluster clients find the apiserver through
/// them), and with `enableServiceLinks` (default true) those of every Service in the pod's own
/// namespace. Headless Services have none.
pub fn service_env(
    table: &ServiceTable,
    namespace: &str,
    service_links: bool,
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for entry in &table.entries {
        let master = entry.namespace == "default" && entry.name == "kubernetes";
        let linked = service_links && entry.namespace == namespace;
        let (Some(ip), true) = (entry.cluster_ip, master || linked) else {
            continue;
        };
        let Some(first) = entry.ports.first() else {
            continue;
        };
        let prefix = entry.name.to_uppercase().replace('-', "_");
        env.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        env.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for port in entry.ports.iter().filter(|p| !p.name.is_empty()) {
            let name = port.name.to_uppercase().replace('-', "_");
            env.push((
                format!("{prefix}_SERVICE_PORT_{name}"),
                port.port.to_string(),
            ));
        }
        let url = |p: &PortRoute| format!("{}://{ip}:{}", p.protocol.to_lowercase(), p.port);
        env.push((format!("{prefix}_PORT"), url(first)));
        for port in &entry.ports {
            let base = format!(
                "{prefix}_PORT_{}_{}",
                port.port,
                port.protocol.to_uppercase()
            );
            env.push((base.clone(), url(port)));
            env.push((format!("{base}_PROTO"), port.protocol.to_lowercase()));
            env.push((format!("{base}_PORT"), port.port.to_string()));
            env.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixtures() -> (Vec<Service>, Vec<EndpointSlice>) {
        let services = vec![
            serde_json::from_value(json!({
                "metadata": {"name": "agent", "namespace": "team"},
                "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
            }))
            .expect("svc"),
            serde_json::from_value(json!({
                "metadata": {"name": "empty", "namespace": "other"},
                "spec": {"clusterIP": "10.96.0.30", "ports": [{"port": 81}]}
            }))
            .expect("svc"),
        ];
        let slices = vec![serde_json::from_value(json!({
            "metadata": {"name": "agent-abc", "namespace": "team", "labels": {"kubernetes.io/service-name": "agent"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.244.0.9"], "conditions": {"ready": false}},
                {"addresses": ["10.244.0.7"], "conditions": {"ready": true}}
            ],
            "ports": [{"name": "http", "port": 4096, "protocol": "TCP"}]
        }))
        .expect("slice")];
        (services, slices)
    }

    #[test]
    fn table_maps_service_ports_to_ready_endpoints() {
        let (services, slices) = fixtures();
        let table = build_table(&services, &slices);
        assert_eq!(table.entries.len(), 2);
        let agent = table
            .entries
            .iter()
            .find(|e| e.name == "agent")
            .expect("agent");
        assert_eq!(
            agent.ports[0].target,
            Some((Ipv4Addr::new(10, 244, 0, 7), 4096))
        );
        let empty = table
            .entries
            .iter()
            .find(|e| e.name == "empty")
            .expect("empty");
        assert_eq!(empty.ports[0].target, None);
    }

    #[test]
    fn hosts_file_has_short_names_only_for_the_pods_namespace() {
        let (services, slices) = fixtures();
        let table = build_table(&services, &slices);
        let hosts = hosts_file(
            &table,
            "team",
            "client",
            Ipv4Addr::new(10, 244, 0, 8),
            "cluster.local",
        );
        assert!(
            hosts.contains(
                "10.96.0.20\tagent.team.svc.cluster.local agent.team.svc agent.team agent\n"
            ),
            "{hosts}"
        );
        assert!(
            hosts.contains(
                "10.96.0.30\tempty.other.svc.cluster.local empty.other.svc empty.other\n"
            ),
            "{hosts}"
        );
        assert!(hosts.contains("10.244.0.8\tclient\n"));
    }

    #[test]
    fn rules_dnat_ready_ports_and_reject_the_rest() {
        let (services, slices) = fixtures();
        let rules = iptables_rules(&build_table(&services, &slices), "10.96.0.0/16");
        assert!(rules.contains("-A OUTPUT -d 10.96.0.20/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.0.7:4096\n"), "{rules}");
        assert!(
            !rules.contains("10.96.0.30/32"),
            "no endpoint, no DNAT: {rules}"
        );
        assert!(
            rules.contains("-A OUTPUT -d 10.96.0.0/16 -p tcp -j REJECT --reject-with tcp-reset")
        );
        assert_eq!(rules.matches("COMMIT").count(), 2);
    }

    #[test]
    fn service_env_has_the_apiserver_always_and_links_only_for_the_pods_namespace() {
        let port = |name: &str, number: u16| PortRoute {
            name: name.into(),
            protocol: "TCP".into(),
            port: number,
            target: None,
        };
        let entry = |namespace: &str, name: &str, ip: Option<[u8; 4]>, ports| ServiceEntry {
            name: name.into(),
            namespace: namespace.into(),
            cluster_ip: ip.map(Ipv4Addr::from),
            ports,
            ready_endpoints: vec![],
        };
        let table = ServiceTable {
            entries: vec![
                entry(
                    "default",
                    "kubernetes",
                    Some([10, 96, 0, 1]),
                    vec![port("https", 443)],
                ),
                entry(
                    "team",
                    "team-agent",
                    Some([10, 96, 0, 9]),
                    vec![port("http", 4096)],
                ),
                entry("team", "headless", None, vec![port("", 80)]),
                entry(
                    "other",
                    "elsewhere",
                    Some([10, 96, 0, 7]),
                    vec![port("", 80)],
                ),
            ],
        };
        let env: BTreeMap<String, String> = service_env(&table, "team", true).into_iter().collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(env["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(env["KUBERNETES_PORT"], "tcp://10.96.0.1:443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_ADDR"], "10.96.0.1");
        assert_eq!(env["TEAM_AGENT_SERVICE_HOST"], "10.96.0.9");
        assert_eq!(env["TEAM_AGENT_PORT_4096_TCP_PROTO"], "tcp");
        assert!(
            !env.keys()
                .any(|k| k.starts_with("HEADLESS_") || k.starts_with("ELSEWHERE_"))
        );
        let unlinked: BTreeMap<String, String> =
            service_env(&table, "team", false).into_iter().collect();
        assert!(unlinked.contains_key("KUBERNETES_SERVICE_HOST"));
        assert!(!unlinked.contains_key("TEAM_AGENT_SERVICE_HOST"));
    }
}
