//! The same binary runs in-cluster: `controller run` in a pod of the testbed, with no
//! kubeconfig, finds the apiserver through the kubelet's `KUBERNETES_SERVICE_*` variables and
//! the projected ServiceAccount token, passes its own probes, and reconciles an Agent to Ready
//! as that ServiceAccount (checked in the apiserver's audit log), checking the server's health
//! at its Service rather than through the apiserver's proxy.

mod support;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use kubeoc::api::Agent;
use kubeoc::cluster::pods::pod_ready;
use kubeoc_testbed::{admin_client, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(180);

/// The users of the whole audit log's requests that `matches`.
fn audit_users(matches: impl Fn(&Value, &str) -> bool) -> anyhow::Result<Vec<String>> {
    Ok(support::audit::AuditLog::from_offset(0)
        .entries()?
        .iter()
        .filter(|e| e["requestURI"].as_str().is_some_and(|uri| matches(e, uri)))
        .filter_map(|e| e["user"]["username"].as_str().map(str::to_string))
        .collect())
}

fn audit_users_patching_agent_status(namespace: &str) -> anyhow::Result<Vec<String>> {
    let status_uri = format!("/namespaces/{namespace}/agents/");
    audit_users(|e, uri| {
        e["verb"] == "patch" && uri.contains(&status_uri) && uri.contains("/status")
    })
}

/// Users of the audit log's requests through the service proxy of namespace's Services.
fn audit_users_proxying(namespace: &str) -> anyhow::Result<Vec<String>> {
    let proxy_uri = format!("/api/v1/namespaces/{namespace}/services/");
    audit_users(|_, uri| uri.starts_with(&proxy_uri) && uri.contains("/proxy"))
}

#[tokio::test]
async fn the_controller_runs_in_a_pod_with_in_cluster_credentials() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = support::prepare_namespace(&client, "in-cluster").await?;
    let n = ns.name.clone();

    // A ServiceAccount bound to kubeoc's controller ClusterRole in this namespace only.
    let params = PostParams::default();
    Api::<ServiceAccount>::namespaced(client.clone(), &n)
        .create(
            &params,
            &serde_json::from_value(json!({"metadata": {"name": "kubeoc-controller"}}))?,
        )
        .await?;
    Api::<RoleBinding>::namespaced(client.clone(), &n)
        .create(
            &params,
            &serde_json::from_value(json!({
                "metadata": {"name": "kubeoc-controller"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "kubeoc-controller"},
                "subjects": [{"kind": "ServiceAccount", "name": "kubeoc-controller",
                              "namespace": n}],
            }))?,
        )
        .await?;

    // The testbed runs pods on the host filesystem: the image name is a label, the command is
    // the binary under test. No kubeconfig exists in the pod (HOME is empty).
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "kubeoc-controller"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "kubeoc-controller"}},
            "template": {
                "metadata": {"labels": {"app": "kubeoc-controller"}},
                "spec": {
                    "serviceAccountName": "kubeoc-controller",
                    "containers": [{
                        "name": "controller",
                        "image": "ghcr.io/kubeoc/kubectl-kubeoc:test",
                        "command": [support::BINARY, "controller", "run", "-n", n,
                                    "--lease-namespace", n, "--metrics-addr", ":8080",
                                    "--log-format", "json"],
                        "env": [{"name": "HOME", "value": "/nonexistent"}],
                        "ports": [{"name": "metrics", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080},
                                           "periodSeconds": 2},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                          "periodSeconds": 5},
                    }],
                },
            },
        },
    }))?;
    Api::<Deployment>::namespaced(client.clone(), &n)
        .create(&params, &deployment)
        .await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &n);
    let pod_name = wait_until(
        "the controller pod Ready (its /readyz probe)",
        WAIT,
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=kubeoc-controller"))
                .await?;
            Ok(list
                .items
                .into_iter()
                .find_map(|p| pod_ready(&p).then(|| p.name_any())))
        },
    )
    .await?;

    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    let agent: Agent = serde_json::from_value(json!({
        "apiVersion": "kubeopencode.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "in-cluster-agent"},
        "spec": {"workspaceDir": "/workspace", "serviceAccountName": "kubeopencode-agent",
                 "config": support::stub_model_config()},
    }))?;
    agents.create(&params, &agent).await?;
    let logs = || async {
        pods.logs(&pod_name, &Default::default())
            .await
            .unwrap_or_else(|e| format!("(no logs: {e})"))
    };
    let ready = wait_until(
        "the Agent Ready, reconciled from inside the cluster",
        WAIT,
        || async {
            let agent = agents.get("in-cluster-agent").await?;
            let status = agent.status.clone().unwrap_or_default();
            Ok((status.ready == Some(true)).then_some(agent))
        },
    )
    .await;
    let log = logs().await;
    ready.with_context(|| format!("controller pod log:\n{log}"))?;

    // Who wrote the status: the pod's ServiceAccount, through its projected token.
    let writer = format!("system:serviceaccount:{n}:kubeoc-controller");
    let users = wait_until("the status patch in the audit log", WAIT, || async {
        let users = audit_users_patching_agent_status(&n)?;
        Ok(users.contains(&writer).then_some(users))
    })
    .await?;
    assert!(
        users.iter().all(|u| u == &writer),
        "only the in-cluster controller writes Agent status here: {users:?}"
    );
    // Its health check went to the Service, not through the apiserver.
    let agent = agents.get("in-cluster-agent").await?;
    let healthy =
        support::condition(&agent, "ServerHealthy").context("no ServerHealthy condition")?;
    assert!(
        healthy.status == "True" && healthy.message.contains("answers /global/health"),
        "{healthy:?}"
    );
    let proxying = audit_users_proxying(&n)?;
    assert!(
        !proxying.contains(&writer),
        "the in-cluster controller used the apiserver's service proxy: {proxying:?}"
    );

    // It leads under its pod's name (the hostname), and logs JSON.
    let lease = Api::<Lease>::namespaced(client.clone(), &n)
        .get("kubeoc-controller")
        .await?;
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .context("the Lease has no holder")?;
    assert!(
        holder.starts_with(&pod_name),
        "Lease holder {holder:?} is not the pod {pod_name:?}"
    );
    let first_line = log.lines().next().context("empty controller log")?;
    let parsed: Value = serde_json::from_str(first_line)
        .with_context(|| format!("not a JSON log line: {first_line}"))?;
    assert!(parsed["level"].is_string(), "{first_line}");

    // A rollout: the kubelet sends SIGTERM; the controller releases its Lease on the way out,
    // so the replacement leads at once instead of after the Lease's 15 s.
    let deleted_at = Instant::now();
    pods.delete(&pod_name, &Default::default()).await?;
    let leases = Api::<Lease>::namespaced(client.clone(), &n);
    let new_holder = wait_until("a new pod to hold the Lease", WAIT, || async {
        let holder = leases
            .get("kubeoc-controller")
            .await?
            .spec
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.starts_with(&pod_name));
        Ok(holder)
    })
    .await?;
    let takeover = deleted_at.elapsed();
    println!(
        "in-cluster controller rollout: {new_holder} leads {takeover:?} after the old pod's deletion"
    );
    assert!(
        takeover < Duration::from_secs(12),
        "the replacement waited {takeover:?}: the old pod did not release the Lease on SIGTERM"
    );
    ns.delete().await
}

/// The names of the controller's pods that are Ready.
async fn ready_controller_pods(pods: &Api<Pod>) -> anyhow::Result<Vec<String>> {
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=kubeoc-controller"))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
        .map(|p| p.name_any())
        .collect())
}

async fn lease_holder(leases: &Api<Lease>) -> anyhow::Result<Option<String>> {
    Ok(leases
        .get_opt("kubeoc-controller")
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

#[tokio::test]
async fn install_controller_runs_two_replicas_one_leads_and_the_other_takes_over()
-> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = support::prepare_namespace(&client, "ctl-install").await?;
    let n = ns.name.clone();
    // Scoped to the test's namespace, so it never reconciles another test's objects.
    let flags = [
        "install",
        "--controller",
        "--controller-namespace",
        n.as_str(),
        "--watch-namespace",
        n.as_str(),
        "--image",
        "ghcr.io/kubeoc/kubectl-kubeoc:test",
    ];

    let mut dry = flags.to_vec();
    dry.extend(["--dry-run", "-o", "yaml"]);
    let manifest = support::kubeoc(&dry)
        .await?
        .ok("install --controller --dry-run")?;
    for expected in [
        "kind: Deployment",
        "replicas: 2",
        "path: /readyz",
        "path: /healthz",
        "runAsNonRoot: true",
        "kind: RoleBinding",
        "name: kubeoc-controller-metrics",
        "--leader-elect=true",
    ] {
        anyhow::ensure!(
            manifest.stdout.contains(expected),
            "the dry run shows {expected:?}:\n{}",
            manifest.stdout
        );
    }

    let mut wet = flags.to_vec();
    wet.extend(["--timeout", "180s"]);
    let installed = support::kubeoc(&wet).await?.ok("install --controller")?;
    anyhow::ensure!(
        installed
            .stdout
            .contains("deployment/kubeoc-controller created")
            && installed
                .stdout
                .contains(&format!("its controller runs in namespace {n}")),
        "install --controller: {installed}"
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), &n);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &n);
    let replicas = wait_until("both controller replicas Ready", WAIT, || async {
        let ready = ready_controller_pods(&pods).await?;
        Ok((ready.len() == 2).then_some(ready))
    })
    .await?;
    let leader = wait_until("one replica to hold the Lease", WAIT, || async {
        Ok(lease_holder(&leases)
            .await?
            .and_then(|h| replicas.iter().find(|p| h.starts_with(p.as_str())).cloned()))
    })
    .await?;

    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    support::apply(&n, &support::agent_manifest("first", json!({}))).await?;
    support::ready_agent(&agents, "first", WAIT).await?;

    // The leader's pod goes: the other replica (or the replacement) leads, and reconciles.
    pods.delete(&leader, &Default::default()).await?;
    let next = wait_until("another replica to hold the Lease", WAIT, || async {
        Ok(lease_holder(&leases)
            .await?
            .filter(|h| !h.starts_with(leader.as_str())))
    })
    .await?;
    println!("install --controller: {leader} led; after its deletion {next} leads");
    support::apply(&n, &support::agent_manifest("second", json!({}))).await?;
    support::ready_agent(&agents, "second", WAIT).await?;
    ns.delete().await
}
