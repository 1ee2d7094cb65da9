//! Agents on the testbed: a config for the stub model, waiting for Ready, and what the
//! controller made for an Agent (its server pods and password).

use std::time::Duration;

use anyhow::{Context as _, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::ListParams;
use kube::{Api, Client};
use kubeoc::api::Agent;
use kubeoc_testbed::wait_until;
use serde_json::{Value, json};

pub use kubeoc_testbed::agents::{agent_manifest, server_password, stub_model_config};

/// Waits up to `timeout` until Agent `name` is Ready for its current spec
/// (`status.ready` and `status.observedGeneration == metadata.generation`); the Agent then.
pub async fn ready_agent(
    agents: &Api<Agent>,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<Agent> {
    wait_until(&format!("Agent {name} Ready"), timeout, || async {
        let agent = agents.get(name).await?;
        let status = agent.status.as_ref();
        let ready = status.and_then(|s| s.ready) == Some(true)
            && status.and_then(|s| s.observed_generation) == agent.metadata.generation;
        Ok(ready.then_some(agent))
    })
    .await
}

/// The Agent's status condition of type `type_`.
pub fn condition<'a>(agent: &'a Agent, type_: &str) -> Option<&'a Condition> {
    agent
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Every server pod of the Agent (label `kubeopencode.io/agent`), terminating ones too.
pub async fn server_pods(client: &Client, ns: &str, agent: &str) -> anyhow::Result<Vec<Pod>> {
    Ok(Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("kubeopencode.io/agent={agent}")))
        .await?
        .items)
}

/// The Agent's one server pod that is not terminating (there is exactly one when the Agent
/// is Ready); fails when there are none or several.
pub async fn server_pod(client: &Client, ns: &str, agent: &str) -> anyhow::Result<Pod> {
    let running: Vec<Pod> = server_pods(client, ns, agent)
        .await?
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    ensure!(
        running.len() == 1,
        "expected one server pod of {agent}, found {}",
        running.len()
    );
    running.into_iter().next().context("no server pod")
}

/// The value of env variable `name` in the server container of the Deployment's pod template.
pub fn server_env(deployment: &Deployment, name: &str) -> Option<String> {
    deployment
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == "opencode-server")?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}
