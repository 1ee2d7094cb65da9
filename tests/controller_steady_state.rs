//! What a controller costs the apiserver once nothing changes: 10 Ready Agents, then one
//! minute of the audit log. The reconciler reads from its watch caches, so the only requests
//! are the watches themselves and each Ready Agent's health check through the service proxy;
//! no GET or LIST of any object, and no write.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use kube::Api;
use kubeoc::api::Agent;
use kubeoc_testbed::admin_client;
use serde_json::json;
use support::audit::AuditLog;
use support::{Controller, apply, prepare_namespace, ready_agent, stub_model_config};

const AGENTS: usize = 10;
const WAIT: Duration = Duration::from_secs(300);

#[tokio::test]
async fn ten_idle_agents_cost_only_watches_and_health_checks() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = prepare_namespace(&client, "steady-state").await?;
    let n = ns.name.clone();
    let controller = Controller::start_with(&n, &["--leader-elect=false"])?;
    for i in 0..AGENTS {
        apply(
            &n,
            &json!({"apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
                    "metadata": {"name": format!("idle-{i}")},
                    "spec": {"workspaceDir": "/workspace", "serviceAccountName": "kubeopencode-agent",
                             "config": stub_model_config()}}),
        )
        .await?;
    }
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    for i in 0..AGENTS {
        ready_agent(&agents, &format!("idle-{i}"), WAIT)
            .await
            .with_context(|| format!("controller log:\n{}", controller.log()))?;
    }
    // The last status writes and their Events settle before the window opens.
    let audit = AuditLog::after_quiet(&n, Duration::from_secs(5), WAIT).await?;
    let window = Duration::from_secs(60);
    tokio::time::sleep(window).await;
    let requests = audit.controller_requests_by_verb(&n)?;
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for (verb, uri) in &requests {
        let path = uri.split('?').next().unwrap_or_default();
        let what = if path.contains("/proxy/") {
            "proxy"
        } else {
            path.rsplit('/')
                .find(|s| !s.is_empty() && !s.starts_with("idle-"))
                .unwrap_or("?")
        };
        *by_kind.entry(format!("{verb} {what}")).or_default() += 1;
    }
    println!(
        "controller requests in {window:?} with {AGENTS} Ready Agents: {} {by_kind:?}",
        requests.len()
    );
    let writes: Vec<_> = requests
        .iter()
        .filter(|(verb, _)| !matches!(verb.as_str(), "get" | "list" | "watch"))
        .collect();
    assert!(writes.is_empty(), "writes at steady state: {writes:?}");
    let reads: Vec<_> = requests
        .iter()
        .filter(|(verb, uri)| matches!(verb.as_str(), "get" | "list") && !uri.contains("/proxy/"))
        .collect();
    assert!(reads.is_empty(), "reads outside the caches: {reads:?}");
    let health = requests
        .iter()
        .filter(|(_, uri)| uri.contains("/proxy/"))
        .count();
    assert!(
        health <= 2 * AGENTS,
        "{health} proxied requests in {window:?}: more than the health checks"
    );
    drop(controller);
    ns.delete().await
}
