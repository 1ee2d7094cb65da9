//! Names, labels and ownership of an Agent's child objects, as upstream spells them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{AGENT_LABEL, DEFAULT_PORT};
use crate::api::{API_VERSION, Agent, AgentSpec};

/// Name of the server Deployment: `<a>-server`.
pub fn deployment_name(agent: &str) -> String {
    format!("{agent}-server")
}

/// Name of the Service: the Agent's name.
pub fn service_name(agent: &str) -> String {
    agent.to_string()
}

/// Name of the sessions PVC: `<a>-server-sessions`.
pub fn sessions_pvc_name(agent: &str) -> String {
    format!("{agent}-server-sessions")
}

/// Name of the workspace PVC: `<a>-server-workspace`.
pub fn workspace_pvc_name(agent: &str) -> String {
    format!("{agent}-server-workspace")
}

/// Name of the context ConfigMap: `<a>-server-context`.
pub fn context_config_map_name(agent: &str) -> String {
    format!("{agent}-server-context")
}

/// Name of the Secret with the server password: `<a>-server-auth`.
pub fn auth_secret_name(agent: &str) -> String {
    format!("{agent}-server-auth")
}

/// Selects the children of every Agent (a subset of [`server_labels`]): what the controller
/// watches.
pub const CHILD_SELECTOR: &str =
    "app.kubernetes.io/name=kubeopencode-server,app.kubernetes.io/managed-by=kubeopencode";

/// Labels of every child object, as upstream sets them.
pub fn server_labels(agent: &str) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "kubeopencode-server"),
        ("app.kubernetes.io/instance", agent),
        ("app.kubernetes.io/component", "server"),
        ("app.kubernetes.io/managed-by", "kubeopencode"),
        (AGENT_LABEL, agent),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// podSpec.labels plus the controller's labels (which win: the selector must keep matching).
pub(super) fn with_user_labels(
    agent: &str,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = extra.clone();
    labels.extend(server_labels(agent));
    labels
}

/// Selector of the Deployment and the Service: `kubeopencode.io/agent: <a>`.
pub fn selector_labels(agent: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(AGENT_LABEL.to_string(), agent.to_string())])
}

/// In-cluster URL of the agent's server: `http://<a>.<ns>.svc.<domain>:<port>`.
pub fn service_url(agent_name: &str, namespace: &str, port: i32, cluster_domain: &str) -> String {
    format!("http://{agent_name}.{namespace}.svc.{cluster_domain}:{port}")
}

/// The server port: spec.port, or 4096.
pub fn server_port(spec: &AgentSpec) -> i32 {
    spec.port.filter(|p| *p > 0).unwrap_or(DEFAULT_PORT)
}

/// The Agent as controller owner (deletion cascades, blockOwnerDeletion).
pub fn owner_reference(agent: &Agent) -> OwnerReference {
    OwnerReference {
        api_version: API_VERSION.to_string(),
        kind: "Agent".to_string(),
        name: agent_name(agent).to_string(),
        uid: agent.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

pub(super) fn agent_name(agent: &Agent) -> &str {
    agent.metadata.name.as_deref().unwrap_or_default()
}

pub(super) fn child_meta(
    agent: &Agent,
    name: String,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: agent.metadata.namespace.clone(),
        labels: Some(labels),
        owner_references: Some(vec![owner_reference(agent)]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_selector_matches_every_childs_labels() {
        let labels = server_labels("a");
        for pair in CHILD_SELECTOR.split(',') {
            let (key, value) = pair.split_once('=').expect("key=value");
            assert_eq!(labels.get(key).map(String::as_str), Some(value), "{pair}");
        }
    }
}
