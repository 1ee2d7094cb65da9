//! The rows on a real Agent (the node agent runs its OpenCode server on the stub model):
//! attach through the service proxy, and Tasks.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use kubeoc::api::Agent;
use kubeoc::controller::pod::AGENT_LABEL;
use kubeoc::opencode::client::{ServerProxy, direct_client};
use kubeoc_testbed::agents::{WORKSPACE, agent_manifest, server_password};
use serde_json::json;

use crate::controller::Controller;
use crate::report::Row;
use crate::scale::{Setup, fresh_namespace, kubectl_apply};

const AGENT: &str = "bench-agent";
/// `maxConcurrentTasks` of the Agent, for the throughput row.
const CONCURRENCY: usize = 10;

/// Waits until Agent `name` is Ready.
async fn wait_ready(client: &Client, ns: &str, name: &str) -> anyhow::Result<()> {
    let agents: Api<Agent> = Api::namespaced(client.clone(), ns);
    kubeoc_testbed::wait_until(
        &format!("Agent {ns}/{name} Ready"),
        Duration::from_secs(240),
        || async {
            let agent = agents.get(name).await?;
            Ok((agent.status.and_then(|s| s.ready) == Some(true)).then_some(()))
        },
    )
    .await
}

async fn server_ip(client: &Client, ns: &str, agent: &str) -> anyhow::Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let listed = pods
        .list(&ListParams::default().labels(&format!("{AGENT_LABEL}={agent}")))
        .await?;
    listed
        .items
        .iter()
        .filter(|p| kubeoc::cluster::pods::pod_ready(p))
        .find_map(|p| p.status.as_ref()?.pod_ip.clone())
        .with_context(|| format!("no Ready server pod of Agent {agent}"))
}

/// How much the live rows measure.
pub struct Sizes {
    /// Prompts for the attach row, and Tasks (with as many bare pods) for the latency rows.
    pub samples: usize,
    /// Tasks of the throughput row.
    pub burst: usize,
}

/// The attach and Task rows, on Agent `bench-agent` in namespace `bench-live`.
pub async fn run(
    setup: &Setup,
    sizes: &Sizes,
    rows: &mut Vec<Row>,
    cleanup: &mut Vec<String>,
) -> anyhow::Result<()> {
    let client = &setup.client;
    let ns = "bench-live".to_string();
    fresh_namespace(client, &ns).await?;
    cleanup.push(ns.clone());
    let log = setup.work_dir.join("controller-live.log");
    let mut controller = Controller::start(&setup.kubeoc, &setup.kubeconfig, &ns, &log)?;
    controller.wait_ready(Duration::from_secs(60)).await?;
    let manifest = setup.work_dir.join("live-agent.json");
    std::fs::write(
        &manifest,
        serde_json::to_vec(&agent_manifest(
            AGENT,
            // The bench's namespace has only the default ServiceAccount.
            json!({"maxConcurrentTasks": CONCURRENCY, "serviceAccountName": "default"}),
        ))?,
    )?;
    kubectl_apply(&setup.kubeconfig, &ns, &manifest).await?;
    eprintln!("bench: waiting for Agent {ns}/{AGENT} (a real OpenCode server) to be Ready");
    wait_ready(client, &ns, AGENT).await?;

    let password = server_password(client, &ns, AGENT).await?;
    let proxied = ServerProxy::new(client.clone(), &ns, AGENT, &password, WORKSPACE);
    let server_url = format!("http://{}:4096", server_ip(client, &ns, AGENT).await?);
    let direct = ServerProxy::direct(direct_client(), &server_url, &password, WORKSPACE);

    eprintln!("bench: attach, {} prompts each way", sizes.samples);
    rows.push(crate::attach::run(&proxied, &direct, sizes.samples).await?);
    eprintln!(
        "bench: attach start, {} starts each of agent attach and opencode attach",
        sizes.samples
    );
    let first_screen = crate::attach::FirstScreen {
        kubeoc: &setup.kubeoc,
        kubeconfig: &setup.kubeconfig,
        namespace: &ns,
        agent: AGENT,
        server_url: &server_url,
        password: &password,
        home: &setup.work_dir.join("opencode-home"),
    };
    rows.push(first_screen.run(sizes.samples).await?);
    eprintln!(
        "bench: {} Tasks and as many bare pods, one at a time",
        sizes.samples
    );
    let (latency, template) = crate::tasks::latency(client, &ns, AGENT, sizes.samples).await?;
    rows.extend(latency);
    eprintln!(
        "bench: {} Tasks at once on maxConcurrentTasks {CONCURRENCY}, then the floors",
        sizes.burst
    );
    rows.extend(
        crate::tasks::throughput(
            client,
            &ns,
            AGENT,
            &direct,
            &template,
            sizes.burst,
            CONCURRENCY,
        )
        .await?,
    );
    controller.stop().await?;
    Ok(())
}
