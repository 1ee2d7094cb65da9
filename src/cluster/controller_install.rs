//! What `kubectl kubeoc install --controller` adds (pure): the controller as a Deployment of
//! kubeoc's own image, two replicas electing a leader through their Lease, probes on
//! `/readyz` and `/healthz`, the restricted Pod Security level, its ServiceAccount bound to
//! the `kubeoc-controller` ClusterRole, and a Service for its metrics. The builders are pure;
//! [`wait_ready`] reads the Deployment's status.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client};
use serde_json::{Value, json};

use super::install::{CONTROLLER_ROLE, MANAGED_BY, SYSTEM_NAMESPACE};
use crate::{Error, Result};

/// Name of the Deployment, its ServiceAccount, bindings and Lease holder's app label.
pub const CONTROLLER_NAME: &str = "kubeoc-controller";
/// The metrics Service.
pub const METRICS_SERVICE: &str = "kubeoc-controller-metrics";
/// The port of `/metrics`, `/healthz` and `/readyz` in the pod.
pub const METRICS_PORT: u16 = 8080;
/// kubeoc's image at this build's version: the same binary runs the controller.
pub const DEFAULT_IMAGE: &str = crate::controller::pod::DEFAULT_FRONT_IMAGE;
/// Replicas: one leads, the other takes over within the Lease's 15 s (at once when the
/// leader shuts down cleanly).
pub const DEFAULT_REPLICAS: i32 = 2;
/// The uid the image runs as (non-root, as the restricted level requires).
const RUN_AS_USER: i64 = 65532;
/// The controller's only writable directory (an emptyDir): HOME and TMPDIR.
const WRITABLE_DIR: &str = "/var/lib/kubeoc";
/// The label that selects the controller's pods.
const APP_LABEL: (&str, &str) = ("app.kubernetes.io/name", CONTROLLER_NAME);

/// How the controller is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerInstall {
    /// Where the Deployment, ServiceAccount, Service and Lease live.
    pub namespace: String,
    /// Reconcile only this namespace (Role bindings there instead of a ClusterRoleBinding);
    /// `None` reconciles every namespace.
    pub watch_namespace: Option<String>,
    pub image: String,
    pub replicas: i32,
}

impl Default for ControllerInstall {
    fn default() -> Self {
        Self {
            namespace: SYSTEM_NAMESPACE.to_string(),
            watch_namespace: None,
            image: DEFAULT_IMAGE.to_string(),
            replicas: DEFAULT_REPLICAS,
        }
    }
}

fn labels() -> Value {
    json!({MANAGED_BY.0: MANAGED_BY.1, APP_LABEL.0: APP_LABEL.1})
}

fn subject(namespace: &str) -> Value {
    json!([{"kind": "ServiceAccount", "name": CONTROLLER_NAME, "namespace": namespace}])
}

fn role_binding(in_namespace: &str, controller_namespace: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": CONTROLLER_NAME, "namespace": in_namespace, "labels": labels()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": CONTROLLER_ROLE},
        "subjects": subject(controller_namespace),
    })
}

/// The objects, in apply order.
pub fn objects(install: &ControllerInstall) -> Vec<Value> {
    let ns = install.namespace.as_str();
    let mut out = vec![json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": CONTROLLER_NAME, "namespace": ns, "labels": labels()},
    })];
    match &install.watch_namespace {
        None => out.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": CONTROLLER_NAME, "labels": labels()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": CONTROLLER_ROLE},
            "subjects": subject(ns),
        })),
        Some(watched) => {
            out.push(role_binding(watched, ns));
            // Its Lease and Events live in its own namespace.
            if watched != ns {
                out.push(role_binding(ns, ns));
            }
        }
    }
    out.push(deployment(install));
    out.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": METRICS_SERVICE, "namespace": ns, "labels": labels()},
        "spec": {
            "selector": {APP_LABEL.0: APP_LABEL.1},
            "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}],
        },
    }));
    out
}

fn deployment(install: &ControllerInstall) -> Value {
    let ns = install.namespace.as_str();
    let mut args = vec![
        "controller".to_string(),
        "run".into(),
        "--leader-elect=true".into(),
        format!("--lease-namespace={ns}"),
        format!("--metrics-addr=:{METRICS_PORT}"),
        "--log-format=json".into(),
    ];
    if let Some(watched) = &install.watch_namespace {
        args.push(format!("--namespace={watched}"));
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": CONTROLLER_NAME, "namespace": ns, "labels": labels()},
        "spec": {
            "replicas": install.replicas,
            "selector": {"matchLabels": {APP_LABEL.0: APP_LABEL.1}},
            "template": {
                "metadata": {"labels": labels()},
                "spec": {
                    "serviceAccountName": CONTROLLER_NAME,
                    // The SIGTERM path releases the Lease; 30 s covers a reconcile in flight.
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": RUN_AS_USER,
                        "runAsGroup": RUN_AS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": "controller",
                        "image": install.image,
                        "args": args,
                        // git (Rollout contexts) wants a writable HOME; the root is
                        // read-only, so HOME and TMPDIR are a volume of their own.
                        "env": [{"name": "HOME", "value": WRITABLE_DIR},
                                {"name": "TMPDIR", "value": WRITABLE_DIR}],
                        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
                        "readinessProbe": {
                            "httpGet": {"path": "/readyz", "port": "metrics"},
                            "periodSeconds": 5,
                        },
                        "livenessProbe": {
                            "httpGet": {"path": "/healthz", "port": "metrics"},
                            "initialDelaySeconds": 5,
                            "periodSeconds": 10,
                            "failureThreshold": 3,
                        },
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "64Mi"},
                            "limits": {"memory": "512Mi"},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [{"name": "home", "mountPath": WRITABLE_DIR}],
                    }],
                    "volumes": [{"name": "home", "emptyDir": {}}],
                },
            },
        },
    })
}

/// Waits until the controller Deployment in `namespace` has a Ready replica.
pub async fn wait_ready(client: &Client, namespace: &str, timeout: Duration) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let deployment = api.get_opt(CONTROLLER_NAME).await.map_err(|e| {
            Error::kube(
                format!("reading deployment {namespace}/{CONTROLLER_NAME}"),
                e,
            )
        })?;
        let ready = deployment
            .as_ref()
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        if ready > 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Config(format!(
                "deployment {namespace}/{CONTROLLER_NAME} has no Ready replica after {timeout:?} \
                 (look with: kubectl -n {namespace} describe deployment {CONTROLLER_NAME}; \
                 kubectl -n {namespace} logs deployment/{CONTROLLER_NAME}; is its image pullable?)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(objects: &[Value]) -> Vec<&str> {
        objects.iter().filter_map(|o| o["kind"].as_str()).collect()
    }

    #[test]
    fn cluster_wide_by_default_with_two_replicas_probes_and_the_restricted_level() {
        let objects = objects(&ControllerInstall::default());
        assert_eq!(
            kinds(&objects),
            [
                "ServiceAccount",
                "ClusterRoleBinding",
                "Deployment",
                "Service"
            ]
        );
        let deployment = &objects[2];
        assert_eq!(deployment["metadata"]["namespace"], SYSTEM_NAMESPACE);
        assert_eq!(deployment["spec"]["replicas"], 2);
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let container = &pod["containers"][0];
        assert_eq!(container["image"], DEFAULT_IMAGE);
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"],
            false
        );
        assert_eq!(
            container["securityContext"]["capabilities"]["drop"],
            json!(["ALL"])
        );
        assert!(container["resources"]["requests"]["memory"].is_string());
        let args: Vec<&str> = container["args"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(args.contains(&"--leader-elect=true"), "{args:?}");
        assert!(
            !args.iter().any(|a| a.starts_with("--namespace")),
            "watches every namespace: {args:?}"
        );
        assert_eq!(objects[1]["subjects"][0]["namespace"], SYSTEM_NAMESPACE);
    }

    #[test]
    fn one_watched_namespace_gets_role_bindings_instead_of_a_cluster_binding() {
        let objects = objects(&ControllerInstall {
            namespace: "ops".into(),
            watch_namespace: Some("team".into()),
            image: "registry.example/kubeoc:dev".into(),
            replicas: 1,
        });
        assert_eq!(
            kinds(&objects),
            [
                "ServiceAccount",
                "RoleBinding",
                "RoleBinding",
                "Deployment",
                "Service"
            ]
        );
        assert_eq!(objects[1]["metadata"]["namespace"], "team");
        assert_eq!(objects[2]["metadata"]["namespace"], "ops");
        let container = &objects[3]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "registry.example/kubeoc:dev");
        assert!(
            container["args"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("--namespace=team"))
                    && a.contains(&json!("--lease-namespace=ops")))
        );
    }
}
