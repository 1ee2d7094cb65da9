//! The real OpenCode server as a Deployment on the testbed: started by the node agent from
//! upstream's agent image shape (an `opencode-init` init container copies the pinned binary into
//! `/tools`), reached through the apiserver service proxy and by Service name from another pod,
//! answering prompts from the stub model.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kubeoc_testbed::{
    TestNamespace, admin_client, opencode_auth_token, service_proxy_get, wait_until,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);
/// The password in the manifest's Secret (a testbed fixture, not a credential).
const PASSWORD: &str = "testbed-password-1f4e";

/// The manifest `make demo` applies too: Secret, ConfigMap, PVC, Service, Deployment, client Pod.
fn manifest() -> anyhow::Result<Vec<Value>> {
    let path = kubeoc_testbed::repo_root().join("testbed/manifests/opencode-server.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_saphyr::from_multiple(&text)?)
}

async fn create(client: &Client, ns: &str, value: Value) -> anyhow::Result<()> {
    let object: kube::api::DynamicObject = serde_json::from_value(value)?;
    let kind = object
        .types
        .clone()
        .context("object without apiVersion/kind")?;
    let (group, version) = kind
        .api_version
        .split_once('/')
        .unwrap_or(("", kind.api_version.as_str()));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, &kind.kind);
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    api.create(&PostParams::default(), &object).await?;
    Ok(())
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn ready_server_pod(pods: &Api<Pod>, not: Option<&str>) -> anyhow::Result<Pod> {
    wait_until("a Ready OpenCode server pod", WAIT, || async {
        let list = pods.list(&ListParams::default().labels("app=oc")).await?;
        Ok(list.items.into_iter().find(|p| {
            ready(p) && p.uid().as_deref() != not && p.metadata.deletion_timestamp.is_none()
        }))
    })
    .await
}

fn query(ns_dir: &str) -> String {
    format!(
        "directory={ns_dir}&auth_token={}",
        opencode_auth_token(PASSWORD)
    )
}

async fn sessions(client: &Client, ns: &str) -> anyhow::Result<Vec<Value>> {
    let (status, body) = service_proxy_get(
        client,
        ns,
        "oc:http",
        &format!("/session?{}", query("/workspace")),
    )
    .await?;
    anyhow::ensure!(status == 200, "GET /session answered {status}: {body}");
    Ok(serde_json::from_str(&body)?)
}

/// The cgroup the node agent keeps a pod's processes in.
fn pod_pids(uid: &str) -> Vec<i32> {
    let root = [
        "/sys/fs/cgroup/unified/kubeoc-testbed",
        "/sys/fs/cgroup/kubeoc-testbed",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.exists())
    .unwrap_or_default();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(root.join(uid))
        .into_iter()
        .flatten()
        .flatten()
    {
        let procs = std::fs::read_to_string(entry.path().join("cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    pids
}

fn rss_mib(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum::<u64>()
        / 1024
}

#[tokio::test]
async fn opencode_server_runs_on_the_testbed_behind_the_service_proxy() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = TestNamespace::create(&client, "opencode").await?;
    let n = ns.name.as_str();
    let objects = manifest()?;
    let (client_pod, server_objects): (Vec<Value>, Vec<Value>) =
        objects.into_iter().partition(|o| o["kind"] == json!("Pod"));
    let created = Instant::now();
    for object in server_objects {
        create(&client, n, object).await?;
    }

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), n);
    wait_until("Deployment oc-server Available", WAIT, || async {
        let d = deployments.get("oc-server").await?;
        let available = d
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Available" && c.status == "True");
        Ok(available.then_some(()))
    })
    .await?;
    println!(
        "OpenCode server Deployment: create to Available in {:?}",
        created.elapsed()
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let first = ready_server_pod(&pods, None).await?;
    let first_name = first.name_any();
    let first_uid = first.uid().context("pod without uid")?;

    // Health through the apiserver service proxy: auth_token works, no credentials is 401.
    let (status, body) = wait_until(
        "OpenCode health through the service proxy",
        WAIT,
        || async {
            let (status, body) = service_proxy_get(
                &client,
                n,
                "oc:http",
                &format!("/global/health?{}", query("/workspace")),
            )
            .await?;
            Ok((status == 200).then_some((status, body)))
        },
    )
    .await?;
    let health: Value =
        serde_json::from_str(&body).with_context(|| format!("health body: {body}"))?;
    assert_eq!(status, 200);
    assert_eq!(health["healthy"], json!(true), "{body}");
    assert_eq!(health["version"], json!("1.18.33"), "{body}");
    let (status, _) = service_proxy_get(&client, n, "oc:http", "/global/health").await?;
    assert_eq!(
        status, 401,
        "the server must refuse requests without credentials"
    );

    let logs = pods
        .logs(
            &first_name,
            &LogParams {
                container: Some("opencode-server".into()),
                ..LogParams::default()
            },
        )
        .await?;
    assert!(
        logs.contains("opencode server listening"),
        "server log: {logs}"
    );

    // Another pod reaches the server by Service name and completes a prompt with run --attach.
    for object in client_pod {
        create(&client, n, object).await?;
    }
    let phase = wait_until("pod asker to finish", WAIT, || async {
        let phase = pods
            .get("asker")
            .await?
            .status
            .and_then(|s| s.phase)
            .unwrap_or_default();
        Ok(matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase))
    })
    .await?;
    let asker_logs = pods
        .logs(
            "asker",
            &LogParams {
                container: Some("run".into()),
                ..LogParams::default()
            },
        )
        .await?;
    assert_eq!(phase, "Succeeded", "asker output: {asker_logs}");
    assert!(asker_logs.contains("exit=0"), "{asker_logs}");

    // run --attach prints nothing useful: the answer is read from the session API.
    let listed = sessions(&client, n).await?;
    let session = listed
        .iter()
        .find(|s| s["title"] == json!("testbed-ask"))
        .with_context(|| format!("no session titled testbed-ask in {listed:?}"))?;
    let id = session["id"]
        .as_str()
        .context("session without id")?
        .to_string();
    let (status, body) = service_proxy_get(
        &client,
        n,
        "oc:http",
        &format!("/session/{id}/message?{}", query("/workspace")),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let messages: Vec<Value> = serde_json::from_str(&body)?;
    let answer: String = messages
        .iter()
        .filter(|m| m["info"]["role"] == json!("assistant"))
        .flat_map(|m| m["parts"].as_array().cloned().unwrap_or_default())
        .filter(|p| p["type"] == json!("text"))
        .filter_map(|p| p["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(answer.trim(), "pong from the stub model");

    // Replace the server pod: every process goes, the new pod is Ready, the session survives.
    let old_pids = pod_pids(&first_uid);
    assert!(
        !old_pids.is_empty(),
        "the server pod's processes are tracked in its cgroup"
    );
    println!(
        "OpenCode server pod RSS: {} MiB ({} processes)",
        rss_mib(&old_pids),
        old_pids.len()
    );
    pods.delete(&first_name, &DeleteParams::default()).await?;
    let restarted = Instant::now();
    let second = ready_server_pod(&pods, Some(&first_uid)).await?;
    println!(
        "replacement OpenCode pod Ready in {:?}",
        restarted.elapsed()
    );
    let survivors: Vec<i32> = old_pids
        .iter()
        .copied()
        .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    assert!(
        survivors.is_empty(),
        "processes of the deleted pod survived: {survivors:?}"
    );
    assert_ne!(second.name_any(), first_name);
    let listed = wait_until("the old session listed by the new server", WAIT, || async {
        let listed = sessions(&client, n).await?;
        Ok(listed
            .iter()
            .any(|s| s["id"] == json!(id))
            .then_some(listed))
    })
    .await?;
    assert!(listed.iter().any(|s| s["title"] == json!("testbed-ask")));
    ns.delete().await
}
