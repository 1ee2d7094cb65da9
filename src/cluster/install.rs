//! What `kubectl kubeoc install` puts in a cluster, and putting it there: the CRDs, the
//! `kubeopencode-system` namespace (PodSecurity `restricted`), the ClusterRoles for the
//! controller and for users, and the agents' ServiceAccount. Server-side apply with field
//! manager `kubeoc`, so running it again changes nothing.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::{Error, Result};

pub use super::FIELD_MANAGER;

/// The namespace install creates for kubeoc's own objects.
pub const SYSTEM_NAMESPACE: &str = "kubeopencode-system";
/// The ServiceAccount upstream's examples give their Agents.
pub const AGENT_SERVICE_ACCOUNT: &str = "kubeopencode-agent";
/// ClusterRole with what the reconciler needs.
pub const CONTROLLER_ROLE: &str = "kubeoc-controller";
/// ClusterRole with what `attach` and `task submit` need (bind it per namespace).
pub const USER_ROLE: &str = "kubeoc-user";

/// The label on everything install applies.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kubeoc");
const KUBEOC_RESOURCES: [&str; 5] = [
    "agents",
    "agenttemplates",
    "tasks",
    "crontasks",
    "kubeopencodeconfigs",
];
const ALL_VERBS: [&str; 7] = [
    "get", "list", "watch", "create", "update", "patch", "delete",
];
const READ_VERBS: [&str; 3] = ["get", "list", "watch"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn with_subresource(resources: &[&str], sub: &str) -> Vec<String> {
    resources.iter().map(|r| format!("{r}/{sub}")).collect()
}

fn controller_role() -> Value {
    let status = with_subresource(&KUBEOC_RESOURCES, "status");
    let finalizers = with_subresource(&KUBEOC_RESOURCES, "finalizers");
    let status: Vec<&str> = status.iter().map(String::as_str).collect();
    let finalizers: Vec<&str> = finalizers.iter().map(String::as_str).collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": CONTROLLER_ROLE, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
        "rules": [
            rule(&["kubeopencode.io"], &KUBEOC_RESOURCES, &ALL_VERBS),
            rule(&["kubeopencode.io"], &status, &["get", "update", "patch"]),
            rule(&["kubeopencode.io"], &finalizers, &["update"]),
            rule(&["apps"], &["deployments"], &ALL_VERBS),
            rule(&[""], &["services", "persistentvolumeclaims", "secrets", "configmaps", "pods"], &ALL_VERBS),
            rule(&[""], &["pods/log"], &["get"]),
            // The health check and session reads go through the apiserver service proxy.
            rule(&[""], &["services/proxy"], &["get", "create"]),
            // A templateRef Task's own server, through the pod proxy.
            rule(&[""], &["pods/proxy"], &["get", "create"]),
            rule(&["", "events.k8s.io"], &["events"], &["create", "patch"]),
            rule(&["coordination.k8s.io"], &["leases"], &ALL_VERBS),
        ]
    })
}

fn user_role() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": USER_ROLE, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
        "rules": [
            rule(&["kubeopencode.io"], &KUBEOC_RESOURCES, &ALL_VERBS),
            // attach: talk to the Agent's server through the service proxy with its password,
            // read from the `<agent>-server-auth` Secret.
            rule(&[""], &["services/proxy"], &["get", "create"]),
            rule(&[""], &["secrets"], &["get"]),
            // `task logs -f` of a templateRef Task: its own server, through the pod proxy.
            rule(&[""], &["pods/proxy"], &["get", "create"]),
            rule(&[""], &["pods", "pods/log", "services", "events"], &READ_VERBS),
            rule(&["apps"], &["deployments"], &READ_VERBS),
        ]
    })
}

/// Every object install applies, in apply order (CRDs first).
pub fn objects() -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for crd in crate::api::crds() {
        let mut value = serde_json::to_value(&crd)
            .map_err(|e| Error::Config(format!("rendering CRDs: {e}")))?;
        value["metadata"]["labels"] = json!({MANAGED_BY.0: MANAGED_BY.1});
        out.push(value);
    }
    out.push(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": SYSTEM_NAMESPACE, "labels": {
            MANAGED_BY.0: MANAGED_BY.1,
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted"
        }}
    }));
    out.push(controller_role());
    out.push(user_role());
    out.push(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": AGENT_SERVICE_ACCOUNT, "namespace": SYSTEM_NAMESPACE,
                     "labels": {MANAGED_BY.0: MANAGED_BY.1}}
    }));
    Ok(out)
}

fn api_for(client: &Client, object: &Value) -> Result<(Api<DynamicObject>, String)> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let plural = match kind {
        "CustomResourceDefinition" => "customresourcedefinitions",
        "Namespace" => "namespaces",
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "RoleBinding" => "rolebindings",
        "ServiceAccount" => "serviceaccounts",
        "Deployment" => "deployments",
        "Service" => "services",
        other => {
            return Err(Error::Config(format!(
                "install does not know how to apply a {other}"
            )));
        }
    };
    let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
    let api = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    Ok((api, name))
}

/// What applying one object did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `kind/name`, e.g. `customresourcedefinition/agents.kubeopencode.io`.
    pub object: String,
    /// `created`, `configured` or `unchanged`, as kubectl reports it.
    pub outcome: &'static str,
}

/// Applies every install object; reports per object what changed.
pub async fn apply(client: &Client) -> Result<Vec<Applied>> {
    apply_objects(client, objects()?).await
}

/// Applies `objects` in order (server-side apply); reports per object what changed.
pub async fn apply_objects(client: &Client, objects: Vec<Value>) -> Result<Vec<Applied>> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut report = Vec::new();
    for object in objects {
        let (api, name) = api_for(client, &object)?;
        let kind = object["kind"].as_str().unwrap_or_default().to_lowercase();
        let label = format!("{kind}/{name}");
        let before = api
            .get_opt(&name)
            .await
            .map_err(|e| Error::kube(format!("reading {label}"), e))?
            .and_then(|o| o.metadata.resource_version);
        let after = api
            .patch(&name, &params, &Patch::Apply(&object))
            .await
            .map_err(|e| {
                Error::kube(
                    format!("applying {label} (do you have cluster-admin rights?)"),
                    e,
                )
            })?
            .metadata
            .resource_version;
        let outcome = match before {
            None => "created",
            Some(rv) if Some(&rv) == after.as_ref() => "unchanged",
            Some(_) => "configured",
        };
        report.push(Applied {
            object: label,
            outcome,
        });
    }
    Ok(report)
}

/// Whether the apiserver serves the CRD (condition Established is True).
pub fn established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

/// Waits until every kubeoc CRD is Established (its API is served).
pub async fn wait_established(client: &Client, timeout: Duration) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let names: Vec<String> = crate::api::crds()
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut pending = Vec::new();
        for name in &names {
            let crd = api
                .get_opt(name)
                .await
                .map_err(|e| Error::kube(format!("reading CRD {name}"), e))?;
            if !crd.as_ref().is_some_and(established) {
                pending.push(name.clone());
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Config(format!(
                "CRDs not Established after {timeout:?}: {} (check: kubectl get crd {} -o yaml)",
                pending.join(", "),
                pending[0]
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Names of Agents in the cluster, as `namespace/name` (empty when the CRD is absent).
pub async fn existing_agents(client: &Client) -> Result<Vec<String>> {
    let api: Api<crate::api::Agent> = Api::all(client.clone());
    match api.list(&Default::default()).await {
        Ok(list) => Ok(list
            .items
            .iter()
            .map(|a| {
                format!(
                    "{}/{}",
                    a.metadata.namespace.as_deref().unwrap_or(""),
                    a.metadata.name.as_deref().unwrap_or("")
                )
            })
            .collect()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
        Err(e) => Err(Error::kube("listing Agents", e)),
    }
}

/// Deletes what install created, the in-cluster controller of a default `install
/// --controller` included, except namespaces (user data may live in them). Deleting the CRDs
/// deletes every Agent, Task and CronTask with them.
pub async fn remove(client: &Client) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut everything = objects()?;
    everything.extend(super::controller_install::objects(&Default::default()));
    for object in everything.into_iter().rev() {
        if object["kind"] == "Namespace" {
            continue;
        }
        let (api, name) = api_for(client, &object)?;
        let label = format!(
            "{}/{name}",
            object["kind"].as_str().unwrap_or_default().to_lowercase()
        );
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => removed.push(label),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(Error::kube(format!("deleting {label}"), e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_cover_crds_namespace_roles_and_service_account() {
        let objects = objects().expect("renders");
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == "CustomResourceDefinition")
                .count(),
            5
        );
        assert!(
            kinds.starts_with(&["CustomResourceDefinition"]),
            "CRDs go first: {kinds:?}"
        );
        let ns = objects
            .iter()
            .find(|o| o["kind"] == "Namespace")
            .expect("namespace");
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "restricted"
        );
        let user = objects
            .iter()
            .find(|o| o["metadata"]["name"] == USER_ROLE)
            .expect("user role");
        let rules = user["rules"].as_array().expect("rules");
        assert!(
            rules
                .iter()
                .any(|r| r["resources"] == json!(["services/proxy"])
                    && r["verbs"] == json!(["get", "create"]))
        );
        let controller = objects
            .iter()
            .find(|o| o["metadata"]["name"] == CONTROLLER_ROLE)
            .expect("controller role");
        assert!(
            controller["rules"]
                .as_array()
                .expect("rules")
                .iter()
                .any(|r| r["resources"] == json!(["leases"]))
        );
    }
}
