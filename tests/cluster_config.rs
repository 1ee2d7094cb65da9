//! KubeOpenCodeConfig `cluster`: its clusterDomain and cluster-wide proxy reach every Agent as
//! soon as it changes (the controller watches it), and removing it restores the defaults.
//! The config is cluster-scoped: this test binary holds the only test that touches it (test
//! binaries run one after another), and it always deletes it again.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kubeoc::api::{Agent, KubeOpenCodeConfig};
use kubeoc_testbed::{admin_client, wait_until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(180);

#[tokio::test]
async fn the_cluster_config_reaches_every_agent_when_it_changes() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = support::prepare_namespace(&client, "cluster-config").await?;
    let n = ns.name.clone();
    let configs: Api<KubeOpenCodeConfig> = Api::all(client.clone());
    let _guard = support::ClusterConfigGuard;
    configs
        .delete("cluster", &DeleteParams::default())
        .await
        .ok();
    let controller = support::Controller::start(&n)?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    let agent: Agent = serde_json::from_value(json!({
        "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
        "metadata": {"name": "configured"},
        "spec": {"workspaceDir": "/workspace", "serviceAccountName": "kubeopencode-agent",
                 "config": support::stub_model_config()},
    }))?;
    agents.create(&PostParams::default(), &agent).await?;
    let ready = support::ready_agent(&agents, "configured", WAIT).await?;
    let url = |agent: &Agent| agent.status.as_ref().and_then(|s| s.url.clone());
    assert_eq!(
        url(&ready).as_deref(),
        Some(format!("http://configured.{n}.svc.cluster.local:4096").as_str())
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &n);
    assert_eq!(
        support::server_env(&deployments.get("configured-server").await?, "HTTPS_PROXY"),
        None
    );

    let config: KubeOpenCodeConfig = serde_json::from_value(json!({
        "apiVersion": "kubeopencode.io/v1alpha1", "kind": "KubeOpenCodeConfig",
        "metadata": {"name": "cluster"},
        "spec": {"clusterDomain": "corp.internal",
                 "proxy": {"httpsProxy": "http://10.244.0.1:3", "noProxy": "10.244.0.0/16"}},
    }))?;
    let applied = Instant::now();
    configs.create(&PostParams::default(), &config).await?;
    wait_until(
        "the Agent's URL in the new cluster domain",
        WAIT,
        || async {
            let agent = agents.get("configured").await?;
            Ok((url(&agent).as_deref()
                == Some(format!("http://configured.{n}.svc.corp.internal:4096").as_str()))
            .then_some(()))
        },
    )
    .await?;
    let deployment = wait_until("the cluster proxy in the server's env", WAIT, || async {
        let deployment = deployments.get("configured-server").await?;
        Ok(support::server_env(&deployment, "HTTPS_PROXY")
            .is_some_and(|p| p == "http://10.244.0.1:3")
            .then_some(deployment))
    })
    .await?;
    let no_proxy = support::server_env(&deployment, "NO_PROXY").unwrap_or_default();
    assert!(
        no_proxy.contains("10.244.0.0/16") && no_proxy.contains(".corp.internal"),
        "NO_PROXY {no_proxy:?}"
    );
    println!(
        "KubeOpenCodeConfig applied -> Agent updated in {:?}",
        applied.elapsed()
    );

    configs.delete("cluster", &DeleteParams::default()).await?;
    wait_until(
        "the defaults back once the config is gone",
        WAIT,
        || async {
            let agent = agents.get("configured").await?;
            let deployment = deployments.get("configured-server").await?;
            Ok((url(&agent).as_deref()
                == Some(format!("http://configured.{n}.svc.cluster.local:4096").as_str())
                && support::server_env(&deployment, "HTTPS_PROXY").is_none())
            .then_some(()))
        },
    )
    .await?;
    drop(controller);
    ns.delete().await
}
