//! The Agent controller against the testbed: the seed's team-agent becomes Ready with a real,
//! authenticated, health-checked OpenCode server, and the controller behaves at steady state,
//! on edits, on deletion and across a leader failover.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use kubeoc::api::Agent;
use kubeoc_testbed::{
    TestNamespace, admin_client, opencode_auth_token, service_proxy_get, state_dir, wait_until,
};
use serde_json::{Value, json};
use support::audit::{AuditLog, agent_event_reasons};
use support::{
    Controller, Server, condition, create_secret, kubectl, local_repository, prepare_namespace,
    ready_agent, server_password,
};

const WAIT: Duration = Duration::from_secs(180);

/// The example team agent (`examples/team-agent.yaml`, the product page's), unchanged but for
/// its Git repository (the example's is a placeholder).
fn seed_agent(repository: &str) -> anyhow::Result<String> {
    let path = kubeoc_testbed::repo_root().join("examples/team-agent.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let placeholder = "https://github.com/your-org/your-repo.git";
    ensure!(
        text.contains(placeholder),
        "the example's repository changed"
    );
    Ok(text.replace(placeholder, repository))
}

/// kubeoc installed, a fresh namespace with the Agents' ServiceAccount, the seed's credential
/// Secret, and the seed's team-agent applied (with a local Git repository).
async fn prepare(client: &Client, prefix: &str) -> anyhow::Result<TestNamespace> {
    let ns = prepare_namespace(client, prefix).await?;
    create_secret(
        &ns.name,
        "ai-credentials",
        &[("api-key", "sk-seed-credential-7d1c")],
    )
    .await?;
    let repo = local_repository(&ns.name)?;
    kubectl(
        &["-n", &ns.name, "apply", "-f", "-"],
        Some(&seed_agent(&repo)?),
    )
    .await?;
    Ok(ns)
}

/// `Kind/name` with its deletion state and finalizers when the object still exists.
async fn still_there<K>(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<Option<String>>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let found = Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?;
    Ok(found.map(|object| left_behind(&K::kind(&()), &object)))
}

fn left_behind(kind: &str, object: &impl kube::Resource) -> String {
    let meta = object.meta();
    format!(
        "{kind}/{} (deleting: {}, finalizers: {:?})",
        meta.name.as_deref().unwrap_or_default(),
        meta.deletion_timestamp.is_some(),
        meta.finalizers.as_deref().unwrap_or_default()
    )
}

fn audit_size() -> u64 {
    std::fs::metadata(state_dir().join("logs/audit.log"))
        .map(|m| m.len())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_seed_team_agent_becomes_ready_and_the_controller_stays_quiet() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = prepare(&client, "agent-seed").await?;
    let n = ns.name.clone();
    let applied = Instant::now();
    let controller = Controller::start_with(&n, &["--leader-elect=false"])?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    let agent = ready_agent(&agents, "team-agent", WAIT)
        .await
        .with_context(|| format!("controller log:\n{}", controller.log()))?;
    println!("team-agent: apply to Ready in {:?}", applied.elapsed());

    // Conditions: ServerReady and ServerHealthy with the real OpenCode version.
    let server_ready = condition(&agent, "ServerReady").context("no ServerReady")?;
    assert_eq!(server_ready.status, "True");
    let healthy = condition(&agent, "ServerHealthy").context("no ServerHealthy")?;
    assert_eq!(healthy.status, "True");
    assert!(healthy.message.contains("1.18.33"), "{}", healthy.message);
    let status = agent.status.clone().context("no status")?;
    assert_eq!(
        status.url.as_deref(),
        Some(format!("http://team-agent.{n}.svc.cluster.local:4096").as_str())
    );
    let wide = kubectl(
        &["-n", &n, "get", "agent", "team-agent", "-o", "wide"],
        None,
    )
    .await?;
    assert!(
        wide.contains("Ready")
            && wide.contains("team-agent.")
            && wide.contains("Team development agent"),
        "{wide}"
    );

    // The Git context was cloned where the seed asked: <workspaceDir>/code.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &n);
    let pod = pods
        .list(&ListParams::default().labels("kubeopencode.io/agent=team-agent"))
        .await?
        .items
        .into_iter()
        .next()
        .context("no server pod")?;
    let init = pods
        .logs(
            &pod.name_any(),
            &kube::api::LogParams {
                container: Some("git-init-0".into()),
                ..Default::default()
            },
        )
        .await?;
    assert!(init.contains("init"), "git-init log: {init}");

    // The password: required by the server, and never shown anywhere.
    let (code, _) = service_proxy_get(&client, &n, "team-agent:http", "/global/health").await?;
    assert_eq!(
        code, 401,
        "the server must refuse requests without the password"
    );
    let password = server_password(&client, &n, "team-agent").await?;
    // OpenCode's own way through the proxy (the password in the URL) is refused by the pod's
    // front: a URL would put it in the apiserver's audit log.
    let (code, _) = service_proxy_get(
        &client,
        &n,
        "team-agent:http",
        &format!(
            "/global/health?auth_token={}",
            opencode_auth_token(&password)
        ),
    )
    .await?;
    assert_eq!(code, 401, "the front must refuse auth_token");
    let server = Server::connect(&client, &n, "team-agent").await?;
    let health = server.get("/global/health").await?;
    assert_eq!(health["healthy"], true, "{health}");
    let events = kubectl(&["-n", &n, "get", "events", "-o", "json"], None).await?;
    let reasons = agent_event_reasons(&events, "team-agent")?;
    ensure!(
        reasons.iter().any(|r| r == "Normal Ready"),
        "no Ready Event from kubeoc-controller for team-agent; saw {reasons:?}"
    );
    let agent_json = serde_json::to_string(&agents.get("team-agent").await?)?;
    for (what, text) in [
        ("controller log", controller.log()),
        ("events", events),
        ("Agent object", agent_json),
        ("get -o wide", wide),
    ] {
        assert!(
            !text.contains(&password),
            "the server password appears in the {what}"
        );
    }

    // Session persistence: a session created through the proxy outlives the server pod.
    let created = server
        .post("/session", &json!({"title": "survives restarts"}))
        .await?;
    let session: Value = serde_json::from_str(&created)?;
    let session_id = session["id"]
        .as_str()
        .context("session without id")?
        .to_string();

    // Steady state: no writes from the controller while nothing changes, once the Events of
    // the changes above have landed.
    let audit = AuditLog::after_quiet(&n, Duration::from_secs(5), WAIT).await?;
    let window = Duration::from_secs(60);
    tokio::time::sleep(window).await;
    let writes = audit.controller_writes(&n)?;
    println!(
        "controller writes in {window:?} of steady state: {}",
        writes.len()
    );
    assert!(
        writes.is_empty(),
        "the controller wrote while nothing changed: {writes:?}"
    );

    pods.delete(&pod.name_any(), &DeleteParams::default())
        .await?;
    wait_until("a new Ready server pod", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("kubeopencode.io/agent=team-agent"))
            .await?;
        Ok(list
            .items
            .into_iter()
            .any(|p| {
                p.uid() != pod.uid()
                    && p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .then_some(()))
    })
    .await?;
    let listed = wait_until("the session listed by the new server", WAIT, || async {
        let body = server.get("/session").await?.to_string();
        Ok(body.contains(&session_id).then_some(body))
    })
    .await?;
    assert!(listed.contains("survives restarts"));

    // An edit rolls the Deployment exactly once.
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &n);
    let before = replica_sets
        .list(&ListParams::default().labels("kubeopencode.io/agent=team-agent"))
        .await?
        .items
        .len();
    agents
        .patch(
            "team-agent",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"podSpec": {"labels": {"edited": "once"}}}})),
        )
        .await?;
    ready_agent(&agents, "team-agent", WAIT).await?;
    let after = replica_sets
        .list(&ListParams::default().labels("kubeopencode.io/agent=team-agent"))
        .await?
        .items
        .len();
    assert_eq!(after, before + 1, "one edit, one new ReplicaSet");

    // Deleting the Agent removes every child (owner references, garbage collection).
    agents
        .delete("team-agent", &DeleteParams::foreground())
        .await?;
    agents
        .delete("team-agent", &DeleteParams::foreground())
        .await?;
    wait_until("the Agent and its children to be gone", WAIT, || async {
        let mut left = Vec::new();
        left.extend(still_there::<Agent>(&client, &n, "team-agent").await?);
        left.extend(still_there::<Deployment>(&client, &n, "team-agent-server").await?);
        left.extend(still_there::<Secret>(&client, &n, "team-agent-server-auth").await?);
        left.extend(still_there::<Service>(&client, &n, "team-agent").await?);
        left.extend(
            still_there::<PersistentVolumeClaim>(&client, &n, "team-agent-server-sessions").await?,
        );
        let server_pods = pods
            .list(&ListParams::default().labels("kubeopencode.io/agent=team-agent"))
            .await?;
        left.extend(server_pods.items.iter().map(|p| left_behind("Pod", p)));
        if left.is_empty() {
            Ok(Some(()))
        } else {
            anyhow::bail!("still there: {}", left.join(", "))
        }
    })
    .await?;
    drop(controller);
    ns.delete().await
}

#[tokio::test]
async fn a_second_controller_takes_over_when_the_leader_dies() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = prepare(&client, "agent-leader").await?;
    let n = ns.name.clone();
    // The Lease lives in the test namespace (Controller's default) so this test does not fight
    // other controllers.
    let first = Controller::start(&n)?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &n);
    let holder = wait_until("a leader", WAIT, || async {
        Ok(leases
            .get_opt("kubeoc-controller")
            .await?
            .and_then(|l| l.spec?.holder_identity)
            .filter(|h| !h.is_empty()))
    })
    .await?;
    let second = Controller::start_with(&n, &["--log-format", "json"])?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    ready_agent(&agents, "team-agent", WAIT).await?;

    let (leader, follower) = if holder.ends_with(&format!("-{}", first.pid().context("no pid")?)) {
        (first, second)
    } else {
        (second, first)
    };
    assert!(
        !follower.log().contains("starting the reconcilers"),
        "only the leader reconciles:\n{}",
        follower.log()
    );
    let leader_pid = leader.pid().context("no pid")?;
    // SIGKILL: no chance to release the Lease.
    std::process::Command::new("kill")
        .args(["-9", &leader_pid.to_string()])
        .status()?;
    let killed = Instant::now();
    let new_holder = wait_until(
        "the follower to take the Lease",
        Duration::from_secs(20),
        || async {
            Ok(leases
                .get_opt("kubeoc-controller")
                .await?
                .and_then(|l| l.spec?.holder_identity)
                .filter(|h| !h.is_empty() && *h != holder))
        },
    )
    .await?;
    println!(
        "leader failover in {:?} (new holder {new_holder})",
        killed.elapsed()
    );
    assert!(new_holder.ends_with(&format!("-{}", follower.pid().context("no pid")?)));
    wait_until(
        "the follower to start reconciling",
        Duration::from_secs(20),
        || async {
            Ok(follower
                .log()
                .contains("starting the reconcilers")
                .then_some(()))
        },
    )
    .await?;
    let agent = agents.get("team-agent").await?;
    assert_eq!(
        agent.status.and_then(|s| s.ready),
        Some(true),
        "the Agent stays Ready across the failover"
    );
    drop((leader, follower));
    ns.delete().await
}

/// Standby: an idle Agent is suspended after idleTimeout; session activity on the server moves
/// the idle clock; a Task arriving resumes it (not a suspend a person made); the clock restarts
/// from the resume; every step is an Event.
#[tokio::test]
async fn an_idle_agent_with_standby_is_suspended_and_session_activity_postpones_it()
-> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = prepare(&client, "agent-standby").await?;
    let n = ns.name.clone();
    let controller = Controller::start(&n)?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    ready_agent(&agents, "team-agent", WAIT)
        .await
        .with_context(|| format!("controller log:\n{}", controller.log()))?;
    let idle_timeout = Duration::from_secs(30);
    agents
        .patch(
            "team-agent",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"standby": {"idleTimeout": "30s"}}})),
        )
        .await?;
    let idle_since = |agent: &Agent| {
        agent
            .status
            .as_ref()
            .and_then(|s| s.idle_since.as_ref())
            .map(|t| t.0)
    };
    let first_mark = wait_until("status.idleSince set", WAIT, || async {
        Ok(idle_since(&agents.get("team-agent").await?))
    })
    .await?;

    // Let a third of the timeout pass idle, then create a session on the server: that is
    // activity, so the Agent must stay up for a full idleTimeout after it, not after the
    // first mark. (The pause is the scenario, not a wait for state.)
    let password = server_password(&client, &n, "team-agent").await?;
    let server = Server::connect(&client, &n, "team-agent").await?;
    tokio::time::sleep(idle_timeout / 3).await;
    let agent = agents.get("team-agent").await?;
    ensure!(
        agent.spec.suspend != Some(true),
        "suspended after {:?} of a {idle_timeout:?} idleTimeout",
        idle_timeout / 3
    );
    server
        .post("/session", &json!({"title": "keeps the agent awake"}))
        .await?;
    let active_at = k8s_openapi::jiff::Timestamp::now();

    // Idle for idleTimeout after the activity: suspended, with the server scaled to zero.
    let suspended_at = wait_until("standby to suspend the Agent", WAIT, || async {
        let agent = agents.get("team-agent").await?;
        Ok((agent.spec.suspend == Some(true)).then(k8s_openapi::jiff::Timestamp::now))
    })
    .await?;
    let after_mark = suspended_at.duration_since(first_mark).unsigned_abs();
    let after_activity = suspended_at.duration_since(active_at).unsigned_abs();
    println!(
        "suspended {after_mark:?} after the first idle mark {first_mark}, {after_activity:?} after a session at {active_at} (idleTimeout {idle_timeout:?})"
    );
    assert!(
        suspended_at > active_at && after_activity >= idle_timeout,
        "suspended {after_activity:?} after session activity: the activity did not postpone it"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &n);
    wait_until(
        "the server scaled to zero and phase Suspended",
        WAIT,
        || async {
            let replicas = deployments
                .get("team-agent-server")
                .await?
                .spec
                .and_then(|s| s.replicas);
            let agent = agents.get("team-agent").await?;
            let phase = agent.status.as_ref().and_then(|s| s.phase);
            Ok(
                (replicas == Some(0) && phase == Some(kubeoc::api::AgentPhase::Suspended))
                    .then_some(()),
            )
        },
    )
    .await?;
    let events = kubectl(&["-n", &n, "get", "events", "-o", "json"], None).await?;
    let reasons = agent_event_reasons(&events, "team-agent")?;
    for expected in [
        "Normal Ready",
        "Normal StandbySuspended",
        "Normal Suspended",
    ] {
        ensure!(
            reasons.iter().any(|r| r == expected),
            "no {expected:?} Event; saw {reasons:?}"
        );
    }
    ensure!(
        !events.contains(&password),
        "the server password appears in an Event"
    );

    // A Task arriving resumes what standby suspended: Ready again.
    let task = |name: &str| {
        json!({
            "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Task",
            "metadata": {"name": name},
            "spec": {"agentRef": {"name": "team-agent"}, "description": "say hello"},
        })
        .to_string()
    };
    let resumed_at = k8s_openapi::jiff::Timestamp::now();
    kubectl(&["-n", &n, "apply", "-f", "-"], Some(&task("waiting"))).await?;
    let resumed = Instant::now();
    wait_until("the waiting Task to resume the Agent", WAIT, || async {
        let agent = agents.get("team-agent").await?;
        Ok((agent.spec.suspend == Some(false)).then_some(()))
    })
    .await?;
    println!("Task created -> Agent resumed in {:?}", resumed.elapsed());
    ready_agent(&agents, "team-agent", WAIT).await?;
    let events = kubectl(&["-n", &n, "get", "events", "-o", "json"], None).await?;
    let resumes = |events: &str| -> anyhow::Result<usize> {
        Ok(agent_event_reasons(events, "team-agent")?
            .iter()
            .filter(|r| *r == "Normal StandbyResumed")
            .count())
    };
    assert_eq!(resumes(&events)?, 1, "one StandbyResumed Event");

    // The Task finished (deleted here): the clock restarts from the resume, not from before.
    kubectl(&["-n", &n, "delete", "task", "waiting"], None).await?;
    let mark = wait_until("status.idleSince set after resume", WAIT, || async {
        Ok(idle_since(&agents.get("team-agent").await?))
    })
    .await?;
    assert!(
        mark >= resumed_at,
        "idle clock {mark} starts before the resume at {resumed_at}"
    );

    // A person's suspend is theirs to lift: a Task waits instead of resuming it.
    let suspend = support::kubeoc(&["-n", &n, "agent", "suspend", "team-agent"]).await?;
    ensure!(suspend.success(), "agent suspend: {suspend}");
    kubectl(&["-n", &n, "apply", "-f", "-"], Some(&task("second"))).await?;
    // The Task watch wakes the controller at once; give it time to (wrongly) act.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let agent = agents.get("team-agent").await?;
    assert_eq!(
        agent.spec.suspend,
        Some(true),
        "a Task resumed an Agent a person suspended"
    );
    let events = kubectl(&["-n", &n, "get", "events", "-o", "json"], None).await?;
    assert_eq!(resumes(&events)?, 1, "no second StandbyResumed Event");
    drop(controller);
    ns.delete().await
}

#[tokio::test]
async fn an_agent_being_deleted_gets_no_children_applied_again() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = prepare(&client, "agent-deleting").await?;
    let n = ns.name.clone();
    let controller = Controller::start_with(&n, &["--leader-elect=false"])?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &n);
    let services: Api<Service> = Api::namespaced(client.clone(), &n);
    // Ready first: from then on nothing changes, so any write below comes from the deletion.
    ready_agent(&agents, "team-agent", WAIT).await?;

    // A finalizer of the test's own keeps the Agent in its deleting state as long as needed.
    let hold = |finalizers: Value| json!({"metadata": {"finalizers": finalizers}});
    agents
        .patch(
            "team-agent",
            &PatchParams::default(),
            &Patch::Merge(hold(json!(["kubeoc.test/hold"]))),
        )
        .await?;
    agents
        .delete("team-agent", &DeleteParams::default())
        .await?;
    // The controller's cache follows Agents and children on separate watches: give the Agent's
    // deletion a moment to arrive before the children go, or a reconcile of the stale copy
    // would (rightly) re-create them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let window_start = audit_size();
    secrets
        .delete("team-agent-server-auth", &DeleteParams::default())
        .await?;
    services
        .delete("team-agent", &DeleteParams::default())
        .await?;
    // Deleting owned objects wakes the controller at once; give it time to act on it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        secrets.get_opt("team-agent-server-auth").await?.is_none()
            && services.get_opt("team-agent").await?.is_none(),
        "the controller re-created children of an Agent being deleted"
    );
    let writes = AuditLog::from_offset(window_start).controller_writes(&n)?;
    assert!(
        writes.is_empty(),
        "the controller wrote while the Agent was being deleted: {writes:?}"
    );

    agents
        .patch(
            "team-agent",
            &PatchParams::default(),
            &Patch::Merge(hold(Value::Null)),
        )
        .await?;
    wait_until("the Agent to be gone", WAIT, || async {
        Ok(agents.get_opt("team-agent").await?.is_none().then_some(()))
    })
    .await?;
    drop(controller);
    ns.delete().await
}
