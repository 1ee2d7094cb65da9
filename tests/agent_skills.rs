//! Skills from Git: the controller clones the skill repository, mounts the chosen skill
//! folders under /skills/<source> and points OpenCode's `skills.paths` at them; the running
//! server lists exactly those skills (`GET /skill` through the apiserver service proxy).

mod support;

use std::time::Duration;

use anyhow::Context as _;
use kube::Api;
use kube::api::PostParams;
use kubeoc::api::Agent;
use kubeoc::opencode::client::ServerProxy;
use kubeoc_testbed::{admin_client, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(180);

fn skill(name: &str, description: &str) -> String {
    format!("---\nname: {name}\ndescription: {description}\n---\n\nWhen asked, {description}.\n")
}

#[tokio::test]
async fn chosen_git_skills_are_listed_by_the_running_server() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = support::prepare_namespace(&client, "agent-skills").await?;
    let n = ns.name.clone();
    let repo = support::Repository::create(&format!("{n}-skills"))?;
    let release = skill(
        "release-notes",
        "write release notes from the merged changes",
    );
    let review = skill("code-review", "review a change for bugs");
    let unwanted = skill("unwanted-skill", "do something the Agent did not choose");
    repo.commit(
        &[
            ("catalog/release-notes/SKILL.md", release.as_str()),
            ("catalog/code-review/SKILL.md", review.as_str()),
            ("catalog/unwanted-skill/SKILL.md", unwanted.as_str()),
        ],
        "three skills",
    )?;
    let controller = support::Controller::start(&n)?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    let agent: Agent = serde_json::from_value(json!({
        "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
        "metadata": {"name": "skilled"},
        "spec": {
            "workspaceDir": "/workspace",
            "serviceAccountName": "kubeopencode-agent",
            "config": support::stub_model_config(),
            "skills": [{"name": "team-skills", "git": {
                "repository": repo.url(), "ref": "main", "path": "catalog/",
                "names": ["release-notes", "code-review"]}}],
        },
    }))?;
    agents.create(&PostParams::default(), &agent).await?;
    support::ready_agent(&agents, "skilled", WAIT)
        .await
        .with_context(|| format!("controller log:\n{}", controller.log()))?;

    let password = support::server_password(&client, &n, "skilled").await?;
    let server = ServerProxy::new(client.clone(), &n, "skilled", &password, "/workspace");
    let skills = wait_until("the server's skills", WAIT, || async {
        match server.get_json::<Vec<Value>>("/skill").await {
            Ok(list) => Ok(Some(list)),
            // Right after Ready the server may still be loading; poll again.
            Err(e) => {
                println!("GET /skill: {e}");
                Ok(None)
            }
        }
    })
    .await?;
    let mut names: Vec<&str> = skills.iter().filter_map(|s| s["name"].as_str()).collect();
    names.sort_unstable();
    assert!(
        names.contains(&"release-notes") && names.contains(&"code-review"),
        "chosen skills missing from {names:?}"
    );
    assert!(
        !names.contains(&"unwanted-skill"),
        "a skill not in names is loaded: {names:?}"
    );
    let loaded = skills
        .iter()
        .find(|s| s["name"] == "release-notes")
        .context("release-notes")?;
    assert!(
        loaded["location"]
            .as_str()
            .is_some_and(|l| l.starts_with("/skills/team-skills/")),
        "release-notes loaded from {}",
        loaded["location"]
    );
    assert!(
        loaded["content"]
            .as_str()
            .is_some_and(|c| c.contains("write release notes")),
        "{loaded}"
    );
    drop(controller);
    ns.delete().await
}
