//! The node agent runs pods as real processes: these tests create ordinary Kubernetes objects
//! through the apiserver and check what a kubelet would do with them.

use std::time::Duration;

use anyhow::Context as _;
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Service};
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, Client};
use kubeoc_testbed::{TestNamespace, admin_client, wait_until};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

async fn create<K>(client: &Client, ns: &str, value: Value) -> anyhow::Result<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let object: K = serde_json::from_value(value)?;
    Ok(Api::<K>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &object)
        .await?)
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn ready_pod(pods: &Api<Pod>, selector: &str) -> anyhow::Result<Pod> {
    wait_until(
        &format!("a Ready pod matching {selector}"),
        WAIT,
        || async {
            let list = pods.list(&ListParams::default().labels(selector)).await?;
            Ok(list
                .items
                .into_iter()
                .find(|p| pod_ready(p) && p.metadata.deletion_timestamp.is_none()))
        },
    )
    .await
}

/// Logs of a pod's first container, as `kubectl logs` gets them through the apiserver.
async fn logs(pods: &Api<Pod>, name: &str) -> anyhow::Result<String> {
    Ok(pods.logs(name, &LogParams::default()).await?)
}

async fn wait_for_log(pods: &Api<Pod>, name: &str, needle: &str) -> anyhow::Result<String> {
    wait_until(
        &format!("{needle:?} in the logs of {name}"),
        WAIT,
        || async {
            let text = logs(pods, name).await?;
            Ok(text.contains(needle).then_some(text))
        },
    )
    .await
}

fn deployment(name: &str, command: &str, extra_spec: Value) -> Value {
    let mut pod_spec = json!({
        "containers": [{
            "name": "main", "image": "debian", "command": ["sh", "-c", command],
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000}
        }]
    });
    if let (Some(base), Some(extra)) = (pod_spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}
        }
    })
}

#[tokio::test]
async fn node_registers_ready_with_a_lease() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let node = Api::<Node>::all(client.clone())
        .get("testbed-node-0")
        .await?;
    let status = node.status.context("node has no status")?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .context("no Ready condition")?;
    assert_eq!(ready.status, "True");
    let addresses = status.addresses.unwrap_or_default();
    assert!(
        addresses
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == "10.244.0.1"),
        "{addresses:?}"
    );
    assert!(status.allocatable.is_some_and(|a| a.contains_key("pods")));
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client, "kube-node-lease");
    let lease = leases.get("testbed-node-0").await?;
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("testbed-node-0")
    );
    Ok(())
}

#[tokio::test]
async fn deployment_with_probes_becomes_available_and_serves_through_a_service()
-> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = TestNamespace::create(&client, "node-web").await?;
    let probes = json!({"containers": [{
        "name": "main", "image": "debian",
        "command": ["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"],
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
        "workingDir": "/tmp",
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 1},
        "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2}
    }]});
    create::<Deployment>(&client, &ns.name, deployment("web", "", probes)).await?;
    create::<Service>(&client, &ns.name, json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    wait_until("Deployment web Available", WAIT, || async {
        let d = deployments.get("web").await?;
        let available = d
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Available" && c.status == "True");
        Ok(available.then_some(()))
    })
    .await?;

    // Available comes before the EndpointSlice lists the pod ready (as on any cluster): a
    // client started earlier meets a Service without endpoints.
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
        Api::namespaced(client.clone(), &ns.name);
    wait_until("a ready endpoint for Service web", WAIT, || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await?;
        let ready = list
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .any(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false));
        Ok(ready.then_some(()))
    })
    .await?;

    // A second pod reaches it by Service name on the Service port (80 -> 8080 via DNAT).
    // Service rules follow EndpointSlices asynchronously on every node (kube-proxy too), so the
    // client retries a failed connection for a few seconds, as clients in a real cluster must.
    let fetch = |label: &str, url: &str| {
        format!(
            "python3 -c \"import time, urllib.request as u\n\
             for i in range(20):\n\
             \x20   try: print('{label}', u.urlopen('{url}', timeout=5).status); break\n\
             \x20   except OSError: time.sleep(0.5)\n\
             else: raise SystemExit('no answer in 10 s')\""
        )
    };
    let client_cmd = format!(
        "{} && {}",
        fetch(
            "status",
            &format!("http://web.{}.svc.cluster.local/", ns.name)
        ),
        fetch("short", "http://web/")
    );
    create::<Pod>(
        &client,
        &ns.name,
        json!({
            "metadata": {"name": "client"},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "main", "image": "debian", "command": ["sh", "-c", client_cmd],
                "securityContext": {"runAsUser": 1000}
            }]}
        }),
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let done = wait_until("pod client to finish", WAIT, || async {
        let p = pods.get("client").await?;
        let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
        Ok(matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase))
    })
    .await?;
    let out = logs(&pods, "client").await?;
    assert_eq!(done, "Succeeded", "client pod output:\n{out}");
    assert!(
        out.contains("status 200") && out.contains("short 200"),
        "{out}"
    );
    ns.delete().await
}

#[tokio::test]
async fn logs_are_served_and_followed_through_the_apiserver() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = TestNamespace::create(&client, "node-logs").await?;
    create::<Pod>(&client, &ns.name, json!({
        "metadata": {"name": "ticker"},
        "spec": {"containers": [{"name": "main", "image": "debian",
            "command": ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.3; done"]}]}
    }))
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    wait_for_log(&pods, "ticker", "tick 2").await?;

    let params = LogParams {
        follow: true,
        tail_lines: Some(1),
        ..LogParams::default()
    };
    let mut lines = pods.log_stream("ticker", &params).await?.lines();
    let mut seen = Vec::new();
    let followed = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.try_next().await? {
            seen.push(line);
            if seen.len() >= 4 {
                return Ok::<_, anyhow::Error>(());
            }
        }
        anyhow::bail!("log stream ended")
    })
    .await;
    assert!(followed.is_ok(), "follow saw only {seen:?}");
    let numbers: Vec<u32> = seen
        .iter()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 4, "{seen:?}");
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "follow must stream new lines in order: {seen:?}"
    );
    ns.delete().await
}

/// Processes whose command line starts with `prefix`.
fn processes_with(prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.starts_with(prefix) {
            found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

#[tokio::test]
async fn deleting_a_pod_kills_every_process_it_started() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = TestNamespace::create(&client, "node-orphans").await?;
    // A daemonizing child (setsid, reparented away from the main process) must die too.
    let marker = format!("{}", 70000 + std::process::id() % 20000);
    let command = format!("setsid sleep {marker}.1 & sleep {marker}.2 & echo started; wait");
    create::<Pod>(&client, &ns.name, json!({
        "metadata": {"name": "forker"},
        "spec": {"terminationGracePeriodSeconds": 2, "containers": [{"name": "main", "image": "debian", "command": ["sh", "-c", command]}]}
    }))
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    wait_for_log(&pods, "forker", "started").await?;
    wait_until("both marker processes to run", WAIT, || async {
        Ok((processes_with(&format!("sleep {marker}.")).len() == 2).then_some(()))
    })
    .await?;
    pods.delete("forker", &DeleteParams::default()).await?;
    wait_until("pod forker to be gone", WAIT, || async {
        Ok(pods.get_opt("forker").await?.is_none().then_some(()))
    })
    .await?;
    let left = processes_with(&format!("sleep {marker}."));
    assert!(left.is_empty(), "processes survived their pod: {left:?}");
    ns.delete().await
}

#[tokio::test]
async fn a_file_on_a_pvc_survives_the_pod() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = TestNamespace::create(&client, "node-pvc").await?;
    create::<PersistentVolumeClaim>(&client, &ns.name, json!({
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .await?;
    let volumes = json!({
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        "containers": [{"name": "main", "image": "debian",
            "command": ["sh", "-c", "cat /data/marker 2>/dev/null || echo none; echo \"written by $(hostname)\" > /data/marker; echo saved; sleep 3600"],
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]
    });
    create::<Deployment>(&client, &ns.name, deployment("keeper", "", volumes)).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let first = ready_pod(&pods, "app=keeper").await?;
    let first_name = first.metadata.name.clone().context("pod has no name")?;
    let first_logs = wait_for_log(&pods, &first_name, "saved").await?;
    assert!(
        first_logs.starts_with("none"),
        "a fresh claim starts empty: {first_logs}"
    );

    pods.delete(&first_name, &DeleteParams::default()).await?;
    let second = wait_until("a replacement pod", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=keeper"))
            .await?;
        Ok(list
            .items
            .into_iter()
            .find(|p| p.metadata.name.as_deref() != Some(first_name.as_str()) && pod_ready(p)))
    })
    .await?;
    let second_name = second.metadata.name.context("pod has no name")?;
    let second_logs = wait_for_log(&pods, &second_name, "saved").await?;
    assert!(
        second_logs.starts_with(&format!("written by {first_name}")),
        "the second pod must read the first one's file: {second_logs}"
    );
    ns.delete().await
}

#[tokio::test]
async fn a_pod_with_a_missing_secret_does_not_start_and_says_why() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = TestNamespace::create(&client, "node-secret").await?;
    create::<Pod>(&client, &ns.name, json!({
        "metadata": {"name": "needs-secret"},
        "spec": {"containers": [{"name": "main", "image": "debian", "command": ["sh", "-c", "echo ran; sleep 3600"],
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "token"}}}]}]}
    }))
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let waiting = wait_until("a CreateContainerConfigError", WAIT, || async {
        let p = pods.get("needs-secret").await?;
        let status = p
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default();
        Ok(status
            .into_iter()
            .find_map(|c| c.state?.waiting)
            .filter(|w| w.reason.as_deref() == Some("CreateContainerConfigError")))
    })
    .await?;
    assert_eq!(
        waiting.message.as_deref(),
        Some("secret \"absent\" not found")
    );
    let pod = pods.get("needs-secret").await?;
    assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Pending"));
    assert!(
        pods.logs("needs-secret", &LogParams::default())
            .await
            .is_err(),
        "the container must not have run"
    );

    // Creating the Secret lets the kubelet retry succeed, as in a real cluster.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), &ns.name);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "absent"}, "stringData": {"token": "t0ken"}
            }))?,
        )
        .await?;
    wait_for_log(&pods, "needs-secret", "ran").await?;
    ns.delete().await
}

#[tokio::test]
async fn crashing_containers_restart_with_counts_and_exit_codes() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = TestNamespace::create(&client, "node-crash").await?;
    create::<Pod>(&client, &ns.name, json!({
        "metadata": {"name": "crasher"},
        "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "main", "image": "debian", "command": ["sh", "-c", "echo boom; exit 3"]}]}
    }))
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let status = wait_until("two restarts", WAIT, || async {
        let p = pods.get("crasher").await?;
        let status = p
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
            .into_iter()
            .next();
        Ok(status.filter(|s| s.restart_count >= 2))
    })
    .await?;
    let last = status
        .last_state
        .and_then(|s| s.terminated)
        .context("no last terminated state")?;
    assert_eq!(last.exit_code, 3);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    let previous = pods
        .logs(
            "crasher",
            &LogParams {
                previous: true,
                ..LogParams::default()
            },
        )
        .await?;
    assert_eq!(previous.trim(), "boom");
    ns.delete().await
}

#[tokio::test]
async fn config_map_volumes_have_the_kubelets_atomic_writer_layout() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = TestNamespace::create(&client, "node-atomic").await?;
    create::<k8s_openapi::api::core::v1::ConfigMap>(
        &client,
        &ns.name,
        json!({"metadata": {"name": "cm"}, "data": {"one": "1", "two": "2", ".hidden": "h"}}),
    )
    .await?;
    let script = r#"set -e
echo "entries: $(ls -A /cfg | LC_ALL=C sort | tr '\n' ' ')"
echo "data: $(readlink /cfg/..data)"
echo "links: $(readlink /cfg/one) $(readlink /cfg/a) $(readlink /cfg/.hidden)"
echo "mode: $(stat -L -c %a /cfg/a/b) $(stat -c %F /cfg/one)"
echo "glob: $(for f in /cfg/* /cfg/.[!.]*; do if [ -f "$f" ]; then printf '%s ' "${f##*/}"; fi; done)"
echo "subpath: $(cat /scratch/one.conf) $(stat -c %F /scratch/one.conf)"
echo finished
sleep 3600"#;
    create::<Pod>(
        &client,
        &ns.name,
        json!({
            "metadata": {"name": "atomic"},
            "spec": {
                "securityContext": {"fsGroup": 2000},
                "volumes": [
                    {"name": "cfg", "configMap": {"name": "cm", "items": [
                        {"key": "one", "path": "one"},
                        {"key": "two", "path": "a/b", "mode": 0o600},
                        {"key": ".hidden", "path": ".hidden"}]}},
                    {"name": "whole", "configMap": {"name": "cm"}},
                    {"name": "scratch", "emptyDir": {}}],
                "containers": [{"name": "main", "image": "debian", "command": ["sh", "-c", script],
                    "volumeMounts": [
                        {"name": "cfg", "mountPath": "/cfg", "readOnly": true},
                        {"name": "scratch", "mountPath": "/scratch"},
                        {"name": "whole", "mountPath": "/scratch/one.conf", "subPath": "one"}]}]}
        }),
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let text = wait_for_log(&pods, "atomic", "finished").await?;
    let line = |prefix: &str| -> anyhow::Result<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|l| l.trim().to_string())
            .with_context(|| format!("no {prefix:?} line in {text}"))
    };
    let data = line("data: ")?;
    assert!(
        data.starts_with("..20") && data.len() > "..2026_11_25_07_30_00.".len(),
        "{text}"
    );
    assert_eq!(line("entries: ")?, format!("{data} ..data .hidden a one"));
    assert_eq!(line("links: ")?, "..data/one ..data/a ..data/.hidden");
    // 0600 plus group read for fsGroup, on the real file; the key itself is a symlink.
    assert_eq!(line("mode: ")?, "640 symbolic link");
    assert_eq!(line("glob: ")?, "one .hidden");
    assert_eq!(line("subpath: ")?, "1 regular file");
    ns.delete().await
}
