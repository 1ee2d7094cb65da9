//! The controller cannot drift, and says what is wrong, on the testbed:
//!
//! - fields removed from an Agent leave its Deployment (nodeSelector, tolerations, affinity,
//!   runtimeClassName, imagePullSecrets, a pod label, an env var, a volume and its mount);
//! - quantities the apiserver rewrites (`1000m`, `1.5Gi`) cost no writes at steady state;
//! - a child the apiserver refuses (a PVC shrink) turns the Agent `Ready=False` with the
//!   apiserver's message and the fix, one Warning Event, and retries that back off;
//! - a missing ServiceAccount, or a missing Secret behind a volume, is named with the fix;
//! - a new password (its Secret deleted) rolls the server, and the old one stops working;
//! - the password never reaches the apiserver's audit log, and pods without it get 401.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kubeoc::api::Agent;
use kubeoc::front::{CREDENTIAL_HEADER, basic_credential};
use kubeoc_testbed::{admin_client, service_proxy_get_with, wait_until};
use serde_json::{Value, json};
use support::audit::{AuditLog, agent_event_reasons};
use support::{
    Controller, Server, apply, condition, kubectl, kubeoc, prepare_namespace, ready_agent,
    server_password, stub_model_config,
};

const WAIT: Duration = Duration::from_secs(180);

/// A minimal Agent on the stub model.
fn agent(name: &str, extra_spec: Value) -> Value {
    let mut spec = json!({
        "workspaceDir": "/workspace",
        "serviceAccountName": "kubeopencode-agent",
        "config": stub_model_config(),
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    json!({"apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
           "metadata": {"name": name}, "spec": spec})
}

async fn deployment(client: &Client, ns: &str, agent: &str) -> anyhow::Result<Value> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    Ok(serde_json::to_value(
        deployments.get(&format!("{agent}-server")).await?,
    )?)
}

/// The named pieces of a Deployment that the removal test follows.
fn pieces(deployment: &Value) -> Vec<(&'static str, bool)> {
    let pod = &deployment["spec"]["template"]["spec"];
    let server = pod["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "opencode-server"))
        .cloned()
        .unwrap_or_default();
    let has = |v: &Value| !v.is_null();
    vec![
        ("nodeSelector", has(&pod["nodeSelector"]["disk"])),
        ("tolerations", has(&pod["tolerations"])),
        ("affinity", has(&pod["affinity"])),
        ("runtimeClassName", has(&pod["runtimeClassName"])),
        ("imagePullSecrets", has(&pod["imagePullSecrets"])),
        (
            "pod label",
            has(&deployment["spec"]["template"]["metadata"]["labels"]["team"]),
        ),
        (
            "env var",
            server["env"]
                .as_array()
                .is_some_and(|env| env.iter().any(|e| e["name"] == "TEAM_SETTING")),
        ),
        (
            "volume",
            pod["volumes"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v["name"] == "scratch")),
        ),
        (
            "volume mount",
            server["volumeMounts"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["name"] == "scratch")),
        ),
    ]
}

#[tokio::test]
async fn fields_removed_from_an_agent_leave_its_deployment() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = prepare_namespace(&client, "drift-removal").await?;
    let n = ns.name.clone();
    let controller = Controller::start_with(&n, &["--leader-elect=false"])?;
    apply(
        &n,
        &agent(
            "removal",
            json!({
                "imagePullSecrets": [{"name": "registry"}],
                "podSpec": {
                    "labels": {"team": "platform"},
                    "runtimeClassName": "gvisor",
                    "scheduling": {
                        "nodeSelector": {"disk": "ssd"},
                        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
                        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 1, "preference": {"matchExpressions": [
                                {"key": "zone", "operator": "In", "values": ["a"]}]}}]}}
                    },
                    "extraEnv": [{"name": "TEAM_SETTING", "value": "1"}],
                    "extraVolumes": [{"name": "scratch", "emptyDir": {}}],
                    "extraVolumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]
                }
            }),
        ),
    )
    .await?;
    let with_all = wait_until("every piece in the Deployment", WAIT, || async {
        let Ok(d) = deployment(&client, &n, "removal").await else {
            return Ok(None);
        };
        Ok(pieces(&d).iter().all(|(_, present)| *present).then_some(d))
    })
    .await
    .with_context(|| format!("controller log:\n{}", controller.log()))?;
    println!("applied: {:?}", pieces(&with_all));

    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    agents
        .patch(
            "removal",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"imagePullSecrets": null, "podSpec": null}})),
        )
        .await?;
    let without = wait_until("every piece gone from the Deployment", WAIT, || async {
        let d = deployment(&client, &n, "removal").await?;
        let left: Vec<&str> = pieces(&d)
            .into_iter()
            .filter(|(_, present)| *present)
            .map(|(name, _)| name)
            .collect();
        Ok(left.is_empty().then_some(d))
    })
    .await
    .with_context(|| format!("controller log:\n{}", controller.log()))?;
    println!("after removal: {:?}", pieces(&without));
    drop(controller);
    ns.delete().await
}

#[tokio::test]
async fn quantities_the_apiserver_rewrites_cost_no_writes() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = prepare_namespace(&client, "drift-quantity").await?;
    let n = ns.name.clone();
    let controller = Controller::start_with(&n, &["--leader-elect=false"])?;
    apply(
        &n,
        &agent(
            "quantities",
            json!({"podSpec": {"resources": {
                "requests": {"cpu": "1000m", "memory": "1.5Gi"},
                "limits": {"memory": "1.5Gi"}}}}),
        ),
    )
    .await?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    ready_agent(&agents, "quantities", WAIT)
        .await
        .with_context(|| format!("controller log:\n{}", controller.log()))?;
    let stored = deployment(&client, &n, "quantities").await?;
    let server = &stored["spec"]["template"]["spec"]["containers"][0];
    println!(
        "the apiserver stores requests {} and limits {}",
        server["resources"]["requests"], server["resources"]["limits"]
    );
    // The Ready Event follows the status write that the wait above saw.
    let audit = AuditLog::after_quiet(&n, Duration::from_secs(5), WAIT).await?;
    // One health check period and more: a contains-check would re-apply on every pass.
    let window = Duration::from_secs(75);
    tokio::time::sleep(window).await;
    let writes = audit.controller_writes(&n)?;
    println!(
        "controller writes in {window:?} of steady state: {}",
        writes.len()
    );
    assert!(writes.is_empty(), "writes at steady state: {writes:?}");
    drop(controller);
    ns.delete().await
}

#[tokio::test]
async fn a_refused_child_turns_the_agent_not_ready_and_retries_back_off() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = prepare_namespace(&client, "drift-reject").await?;
    let n = ns.name.clone();
    let controller = Controller::start_with(&n, &["--leader-elect=false"])?;
    apply(
        &n,
        &agent(
            "shrink",
            json!({"persistence": {"sessions": {"size": "2Gi"}}}),
        ),
    )
    .await?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    ready_agent(&agents, "shrink", WAIT)
        .await
        .with_context(|| format!("controller log:\n{}", controller.log()))?;

    let audit = AuditLog::now()?;
    let shrunk_at = Instant::now();
    agents
        .patch(
            "shrink",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"persistence": {"sessions": {"size": "1Gi"}}}})),
        )
        .await?;
    let refused = wait_until("Ready=False with reason ChildRejected", WAIT, || async {
        let agent = agents.get("shrink").await?;
        Ok(condition(&agent, "Ready")
            .filter(|c| c.status == "False" && c.reason == "ChildRejected")
            .map(|c| c.message.clone()))
    })
    .await?;
    println!("Ready: {refused}");
    ensure!(
        refused.contains("PersistentVolumeClaim") && refused.contains("shrink-server-sessions"),
        "the message does not name the PVC: {refused}"
    );
    ensure!(
        refused.contains("cannot shrink") || refused.contains("cannot change"),
        "the message gives no fix: {refused}"
    );
    // Let the retries run for a while: they must come further and further apart.
    let patches = wait_until("five tries at the PVC", Duration::from_secs(90), || async {
        let tries = audit.controller_requests(
            &n,
            "patch",
            "persistentvolumeclaims/shrink-server-sessions",
        )?;
        Ok((tries.len() >= 5).then_some(tries))
    })
    .await
    .with_context(|| format!("controller log:\n{}", controller.log()))?;
    let gaps: Vec<f64> = patches.windows(2).map(|w| w[1] - w[0]).collect();
    println!(
        "PVC apply attempts after the shrink, {:?} apart (first at +{:.1}s)",
        gaps.iter().map(|g| format!("{g:.1}s")).collect::<Vec<_>>(),
        patches[0]
    );
    for pair in gaps.windows(2).skip(1) {
        ensure!(
            pair[1] >= pair[0] * 1.5,
            "retries do not back off: gaps {gaps:?}"
        );
    }
    let events = kubectl(&["-n", &n, "get", "events", "-o", "json"], None).await?;
    let reasons = agent_event_reasons(&events, "shrink")?;
    let warnings = reasons
        .iter()
        .filter(|r| *r == "Warning ChildRejected")
        .count();
    ensure!(warnings == 1, "one Warning Event, saw {reasons:?}");
    let metrics = controller.metrics_addr(WAIT).await?;
    let text = http_get(&metrics, "/metrics").await?;
    ensure!(
        text.lines()
            .any(|l| l.starts_with(r#"kubeoc_reconcile_errors_total{kind="Agent",error="apply"}"#)),
        "no apply errors in /metrics:\n{text}"
    );

    // Putting the size back heals it.
    agents
        .patch(
            "shrink",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"persistence": {"sessions": {"size": "2Gi"}}}})),
        )
        .await?;
    ready_agent(&agents, "shrink", WAIT).await?;
    println!("healed {:?} after the shrink", shrunk_at.elapsed());
    drop(controller);
    ns.delete().await
}

/// A plain HTTP GET to the controller's metrics endpoint on loopback.
async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

#[tokio::test]
async fn a_missing_service_account_or_volume_secret_is_named_with_the_fix() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = prepare_namespace(&client, "drift-missing").await?;
    let n = ns.name.clone();
    let controller = Controller::start_with(&n, &["--leader-elect=false"])?;

    // agent create warns before it creates.
    let created = kubeoc(&[
        "-n",
        &n,
        "agent",
        "create",
        "no-account",
        "--image",
        "ghcr.io/kubeopencode/kubeopencode-agent-devbox:latest",
        "--workspace-dir",
        "/workspace",
        "--service-account",
        "agent-sa",
    ])
    .await?
    .ok("agent create")?;
    ensure!(
        created
            .stderr
            .contains("Warning: ServiceAccount \"agent-sa\" does not exist")
            && created
                .stderr
                .contains(&format!("kubectl create serviceaccount agent-sa -n {n}")),
        "no warning: {}",
        created.stderr
    );
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    let said = wait_until("ServerReady to name the ServiceAccount", WAIT, || async {
        let agent = agents.get("no-account").await?;
        Ok(condition(&agent, "ServerReady")
            .map(|c| c.message.clone())
            .filter(|m| m.contains("kubectl create serviceaccount agent-sa")))
    })
    .await
    .with_context(|| format!("controller log:\n{}", controller.log()))?;
    println!("ServerReady: {said}");

    apply(
        &n,
        &agent(
            "no-secret",
            json!({"podSpec": {
                "extraVolumes": [{"name": "team-certs", "secret": {"secretName": "team-certs"}}],
                "extraVolumeMounts": [{"name": "team-certs", "mountPath": "/certs"}]}}),
        ),
    )
    .await?;
    let said = wait_until("ServerReady to name the missing Secret", WAIT, || async {
        let agent = agents.get("no-secret").await?;
        Ok(condition(&agent, "ServerReady")
            .map(|c| c.message.clone())
            .filter(|m| m.contains(r#"Secret "team-certs" does not exist"#)))
    })
    .await
    .with_context(|| format!("controller log:\n{}", controller.log()))?;
    println!("ServerReady: {said}");
    drop(controller);
    ns.delete().await
}

#[tokio::test]
async fn a_new_password_rolls_the_server_and_never_reaches_the_audit_log() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = prepare_namespace(&client, "drift-password").await?;
    let n = ns.name.clone();
    let controller = Controller::start_with(&n, &["--leader-elect=false"])?;
    let audit = AuditLog::now()?;
    apply(&n, &agent("secretive", json!({}))).await?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    ready_agent(&agents, "secretive", WAIT)
        .await
        .with_context(|| format!("controller log:\n{}", controller.log()))?;
    let old = server_password(&client, &n, "secretive").await?;

    // A prompt through the service proxy, as attach and Tasks send them.
    let server = Server::connect(&client, &n, "secretive").await?;
    let session: Value = serde_json::from_str(
        &server
            .post("/session", &json!({"title": "audit check"}))
            .await?,
    )?;
    let id = session["id"].as_str().context("session id")?;
    let answer = server
        .post(
            &format!("/session/{id}/message"),
            &json!({"parts": [{"type": "text", "text": "[[reply:nothing secret here]]"}]}),
        )
        .await?;
    ensure!(answer.contains("nothing secret here"), "answer: {answer}");

    // A pod without the password gets 401 from the front; with Basic auth, 200.
    let anonymous = curl_from_pod(&client, &n, "anonymous", None).await?;
    ensure!(
        anonymous == "401",
        "anonymous call from a pod: HTTP {anonymous}"
    );
    let with_password = curl_from_pod(&client, &n, "in-cluster", Some(&old)).await?;
    ensure!(
        with_password == "200",
        "Basic auth from a pod: HTTP {with_password}"
    );

    // Nothing of the credential in the apiserver's record of those requests.
    let log = audit.text()?;
    let encoded = basic_credential(&old);
    let token = encoded.trim_start_matches("Basic ");
    for (what, needle) in [
        ("password", old.as_str()),
        ("Basic credential", token),
        ("URL-encoded credential", &token.replace('=', "%3D")),
    ] {
        ensure!(!log.contains(needle), "the {what} is in the audit log");
    }
    ensure!(
        log.contains(&format!(
            "/namespaces/{n}/services/secretive:http/proxy/session"
        )),
        "the proxied requests are not in the audit log at all"
    );

    // Deleting the Secret makes a new password, and the server follows it.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &n);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &n);
    let old_pods: Vec<String> = support::server_pods(&client, &n, "secretive")
        .await?
        .into_iter()
        .filter_map(|p| p.metadata.uid)
        .collect();
    secrets
        .delete("secretive-server-auth", &DeleteParams::default())
        .await?;
    let new = wait_until("a new password", WAIT, || async {
        let password = server_password(&client, &n, "secretive").await.ok();
        Ok(password.filter(|p| *p != old))
    })
    .await?;
    wait_until("a new server pod, Ready", WAIT, || async {
        let fresh = support::server_pods(&client, &n, "secretive")
            .await?
            .into_iter()
            .any(|p| {
                !old_pods.contains(&p.metadata.uid.clone().unwrap_or_default())
                    && p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            });
        Ok(fresh.then_some(()))
    })
    .await?;
    ready_agent(&agents, "secretive", WAIT).await?;
    let health = |password: String| {
        let client = client.clone();
        let n = n.clone();
        async move {
            let credential = basic_credential(&password);
            service_proxy_get_with(
                &client,
                &n,
                "secretive:http",
                "/global/health",
                &[(CREDENTIAL_HEADER, &credential)],
            )
            .await
        }
    };
    let (code, body) = wait_until("the new password to work", WAIT, || async {
        let (code, body) = health(new.clone()).await?;
        Ok((code == 200).then_some((code, body)))
    })
    .await?;
    println!("new password: HTTP {code} {body}");
    let (code, _) = health(old.clone()).await?;
    ensure!(code == 401, "the old password still works: HTTP {code}");
    drop(pods);
    drop(controller);
    ns.delete().await
}

/// Runs a pod that calls the Agent's Service with curl (with Basic auth when a password is
/// given); the HTTP status it printed.
async fn curl_from_pod(
    client: &Client,
    ns: &str,
    name: &str,
    password: Option<&str>,
) -> anyhow::Result<String> {
    let mut command = vec![
        "curl".to_string(),
        "-s".into(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}".into(),
        "--retry".into(),
        "5".into(),
        "--retry-connrefused".into(),
    ];
    let mut env = Vec::new();
    if let Some(password) = password {
        // From the environment, not the command line: curl reads the header from a file.
        env.push(json!({"name": "AUTH", "value": basic_credential(password)}));
        command = vec![
            "sh".into(),
            "-c".into(),
            format!(
                "printf 'Authorization: %s\\n' \"$AUTH\" | {} -H @- http://secretive.{ns}.svc.cluster.local:4096/global/health",
                command.join(" ")
            ),
        ];
    } else {
        command.push(format!(
            "http://secretive.{ns}.svc.cluster.local:4096/global/health"
        ));
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "curl", "image": "curl", "command": command, "env": env}]}
    }))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.create(&PostParams::default(), &pod).await?;
    wait_until(&format!("pod {name} to finish"), WAIT, || async {
        let pod = pods.get(name).await?;
        let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
        Ok(matches!(phase.as_str(), "Succeeded" | "Failed").then_some(()))
    })
    .await?;
    let logs = pods.logs(name, &Default::default()).await?;
    Ok(logs.trim().to_string())
}
