//! `make cluster-up` is idempotent and keeps etcd's data across restarts. This restarts the
//! control plane, so it lives alone in its own test binary (cargo runs binaries one at a time).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use kubeoc_testbed::{TestNamespace, admin_client, repo_root, state_dir, wait_until};

const COMPONENTS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

fn pids() -> anyhow::Result<BTreeMap<&'static str, String>> {
    COMPONENTS
        .iter()
        .map(|name| {
            let path = state_dir().join("run").join(format!("{name}.pid"));
            let pid = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok((*name, pid.trim().to_string()))
        })
        .collect()
}

/// Runs a testbed script and returns its combined output; fails with that output on error.
async fn script(name: &str) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("bash")
        .arg(repo_root().join("testbed/scripts").join(name))
        .output()
        .await?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success(),
        "{name} failed ({}):\n{text}",
        out.status
    );
    Ok(text)
}

#[tokio::test]
async fn cluster_up_twice_reuses_the_cluster_and_restarts_keep_etcd_data() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = TestNamespace::create(&client, "lifecycle").await?;
    let marker = format!("{:?}", Instant::now());
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    configmaps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("marker".into()),
                    ..Default::default()
                },
                data: Some([("value".to_string(), marker.clone())].into()),
                ..Default::default()
            },
        )
        .await?;
    let before = pids()?;

    let started = Instant::now();
    let output = script("cluster-up.sh").await?;
    let second_run = started.elapsed();
    println!("second cluster-up took {second_run:?}");
    assert!(
        output.contains("reused the healthy testbed"),
        "second cluster-up did not reuse the cluster:\n{output}"
    );
    assert!(
        output.contains("already built"),
        "second cluster-up rebuilt binaries:\n{output}"
    );
    // Reuse is proven by the same processes; the time is only reported (it includes a cargo
    // build check of the node agent, slow when the machine is busy).
    assert_eq!(pids()?, before, "second cluster-up restarted components");

    script("cluster-down.sh").await?;
    for (name, pid) in &before {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{name} (pid {pid}) survived cluster-down"
        );
    }
    script("cluster-up.sh").await?;
    let after = pids()?;
    assert_ne!(after["etcd"], before["etcd"], "etcd was not restarted");

    let client = admin_client().await?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let kept = wait_until(
        "the marker ConfigMap after restart",
        Duration::from_secs(60),
        || async { Ok(configmaps.get_opt("marker").await?) },
    )
    .await?;
    assert_eq!(
        kept.data.as_ref().and_then(|d| d.get("value")),
        Some(&marker)
    );
    ns.delete().await
}
