//! AgentTemplates: an Agent waiting for its missing template starts as soon as the template
//! appears, and a template edit reaches the Agent's Deployment through the template watch,
//! not at the next periodic resync (60 s).

mod support;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kubeoc::api::{Agent, AgentTemplate};
use kubeoc_testbed::{admin_client, wait_until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(180);

fn ready_condition(agent: &Agent) -> Option<(String, String)> {
    support::condition(agent, "Ready").map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test]
async fn templates_created_or_edited_later_reach_their_agents_at_once() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = support::prepare_namespace(&client, "agent-template").await?;
    let n = ns.name.clone();
    let controller = support::Controller::start(&n)?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    let templates: Api<AgentTemplate> = Api::namespaced(client.clone(), &n);
    let params = PostParams::default();

    let agent: Agent = serde_json::from_value(json!({
        "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
        "metadata": {"name": "templated"},
        "spec": {"templateRef": {"name": "team-defaults"}},
    }))?;
    agents.create(&params, &agent).await?;
    wait_until("Ready=False TemplateNotFound", WAIT, || async {
        let agent = agents.get("templated").await?;
        Ok(
            (ready_condition(&agent)
                == Some(("False".to_string(), "TemplateNotFound".to_string())))
            .then_some(()),
        )
    })
    .await
    .with_context(|| format!("controller log:\n{}", controller.log()))?;

    let template: AgentTemplate = serde_json::from_value(json!({
        "apiVersion": "kubeopencode.io/v1alpha1", "kind": "AgentTemplate",
        "metadata": {"name": "team-defaults"},
        "spec": {
            "workspaceDir": "/workspace",
            "serviceAccountName": "kubeopencode-agent",
            "config": support::stub_model_config(),
            "podSpec": {"extraEnv": [{"name": "TEAM_STAGE", "value": "one"}]},
        },
    }))?;
    let created = Instant::now();
    templates.create(&params, &template).await?;
    wait_until("the Agent Ready from its new template", WAIT, || async {
        let agent = agents.get("templated").await?;
        let status = agent.status.clone().unwrap_or_default();
        Ok((status.ready == Some(true)).then_some(()))
    })
    .await
    .with_context(|| format!("controller log:\n{}", controller.log()))?;
    println!("template created -> Agent Ready in {:?}", created.elapsed());

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &n);
    let deployment = deployments.get("templated-server").await?;
    assert_eq!(
        support::server_env(&deployment, "TEAM_STAGE").as_deref(),
        Some("one")
    );

    templates
        .patch(
            "team-defaults",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"podSpec": {"extraEnv": [
                {"name": "TEAM_STAGE", "value": "two"}]}}})),
        )
        .await?;
    let edited = Instant::now();
    wait_until("the template edit in the Deployment", WAIT, || async {
        let deployment = deployments.get("templated-server").await?;
        Ok(
            (support::server_env(&deployment, "TEAM_STAGE").as_deref() == Some("two"))
                .then_some(()),
        )
    })
    .await?;
    let took = edited.elapsed();
    println!("template edit -> Deployment updated in {took:?}");
    // Without the template watch this waits for the Agent's next resync, up to 60 s away.
    assert!(
        took < Duration::from_secs(15),
        "the template edit took {took:?} to reach the Deployment"
    );
    drop(controller);
    ns.delete().await
}
