//! `kubectl kubeoc agent ...` against the testbed, with a real controller process and real
//! OpenCode servers: create from flags, wait, list/get/describe, logs, suspend/resume, delete,
//! watch, and the error cases (messages and exit codes).

mod support;

use std::time::Duration;

use anyhow::{Context as _, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use kube::Api;
use kubeoc::api::Agent;
use kubeoc_testbed::{admin_client, wait_until};
use serde_json::{Value, json};
use support::{
    Controller, Run, Streaming, apply, create_secret, kubectl, kubeoc, kubeoc_with_input,
    local_repository, prepare_namespace, server_password, server_pods, stub_model_config,
};

/// Apply to Ready measured 6 to 17 s; the deadline leaves room for a loaded machine.
const READY_TIMEOUT: &str = "240s";
const WAIT: Duration = Duration::from_secs(240);

/// The credential's value: it must never show up in any output.
const CREDENTIAL_VALUE: &str = "sk-agent-cli-credential-3f9a1c";
const WHOLE_SECRET_VALUE: &str = "tok-agent-cli-whole-secret-88e2";

/// An AgentTemplate that gives derived Agents the stub model, so OpenCode starts offline.
async fn stub_template(ns: &str) -> anyhow::Result<()> {
    let template = json!({
        "apiVersion": "kubeopencode.io/v1alpha1",
        "kind": "AgentTemplate",
        "metadata": {"name": "stub-model"},
        "spec": {
            "workspaceDir": "/workspace",
            "serviceAccountName": "kubeopencode-agent",
            "config": stub_model_config(),
        },
    });
    apply(ns, &template).await
}

/// The header line's column names.
fn header(output: &str) -> Vec<String> {
    output
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn an_agent_created_from_flags_lives_and_dies_through_the_cli() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = prepare_namespace(&client, "agent-cli-life").await?;
    let n = ns.name.clone();
    stub_template(&n).await?;
    create_secret(&n, "ai-keys", &[("api-key", CREDENTIAL_VALUE)]).await?;
    create_secret(&n, "model-env", &[("MODEL_TOKEN", WHOLE_SECRET_VALUE)]).await?;
    let repo = local_repository(&n)?;
    let controller = Controller::start(&n)?;
    let mut outputs: Vec<(String, Run)> = Vec::new();

    let git_context = format!("{repo}@main:code");
    let created = kubeoc(&[
        "-n",
        &n,
        "agent",
        "create",
        "dev",
        "--image",
        "ghcr.io/kubeopencode/kubeopencode-agent-devbox:latest",
        "--workspace-dir",
        "/workspace",
        "--service-account",
        "kubeopencode-agent",
        "--template",
        "stub-model",
        "--sessions-size",
        "1Gi",
        "--git-context",
        &git_context,
        "--credential",
        "ai-keys:api-key=OPENCODE_API_KEY",
        "--credential",
        "model-env",
    ])
    .await?
    .ok("agent create")?;
    assert_eq!(created.stdout, "agent.kubeopencode.io/dev created\n");
    outputs.push(("create".into(), created));

    let waited = kubeoc(&[
        "-n",
        &n,
        "agent",
        "wait",
        "dev",
        "--for=ready",
        &format!("--timeout={READY_TIMEOUT}"),
    ])
    .await?;
    ensure!(
        waited.code == Some(0),
        "agent wait --for=ready: {waited}\ncontroller log:\n{}",
        controller.log()
    );
    assert_eq!(waited.stdout, "agent.kubeopencode.io/dev condition met\n");
    outputs.push(("wait ready".into(), waited));

    // The spec the flags built.
    let agent = Api::<Agent>::namespaced(client.clone(), &n)
        .get("dev")
        .await?;
    let contexts = agent.spec.contexts.clone().context("no contexts")?;
    assert_eq!(
        contexts[0].name.as_deref(),
        Some(n.as_str()),
        "named after the repository"
    );
    assert_eq!(contexts[0].mount_path.as_deref(), Some("code"));
    let git = contexts[0].git.clone().context("no git")?;
    assert_eq!(
        (git.repository.as_str(), git.ref_.as_deref()),
        (repo.as_str(), Some("main"))
    );
    let credentials = agent.spec.credentials.clone().context("no credentials")?;
    let names: Vec<&str> = credentials.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["ai-keys-api-key", "model-env"]);

    // list / get: the columns of `kubectl get agents`.
    let list = kubeoc(&["-n", &n, "agent", "list"])
        .await?
        .ok("agent list")?;
    let kubectl_list = kubectl(&["-n", &n, "get", "agents"], None).await?;
    assert_eq!(
        header(&list.stdout),
        header(&kubectl_list),
        "{}",
        list.stdout
    );
    let row = list.stdout.lines().nth(1).unwrap_or_default().to_owned();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[..4],
        ["dev", "kubeopencode-agent", "true", "Ready"],
        "{}",
        list.stdout
    );
    outputs.push(("list".into(), list));

    // The apiserver prints both tables: the same text, but for ages taken a moment apart.
    let wide_list = kubeoc(&["-n", &n, "agent", "list", "-o", "wide"])
        .await?
        .ok("list -o wide")?;
    let kubectl_wide_list = kubectl(&["-n", &n, "get", "agents", "-o", "wide"], None).await?;
    let without_age = |table: &str| -> Vec<String> {
        table
            .lines()
            .map(|l| {
                l.trim_end()
                    .rsplit_once(' ')
                    .map_or(l, |(rest, _)| rest)
                    .trim_end()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        without_age(&wide_list.stdout),
        without_age(&kubectl_wide_list),
        "agent list -o wide:\n{}\nkubectl get agents -o wide:\n{kubectl_wide_list}",
        wide_list.stdout
    );

    let wide = kubeoc(&["-n", &n, "agent", "get", "dev", "-o", "wide"])
        .await?
        .ok("get -o wide")?;
    let kubectl_wide = kubectl(&["-n", &n, "get", "agents", "-o", "wide"], None).await?;
    assert_eq!(header(&wide.stdout), header(&kubectl_wide));
    assert!(
        wide.stdout
            .contains(&format!("http://dev.{n}.svc.cluster.local:4096"))
            && wide
                .stdout
                .contains("ghcr.io/kubeopencode/kubeopencode-agent-devbox:latest"),
        "{wide}"
    );
    outputs.push(("get -o wide".into(), wide));

    let as_json = kubeoc(&["-n", &n, "agent", "get", "dev", "-o", "json"])
        .await?
        .ok("get -o json")?;
    let object: Value = serde_json::from_str(&as_json.stdout)?;
    assert_eq!(object["kind"], "Agent");
    assert_eq!(object["metadata"]["name"], "dev");
    assert_eq!(object["status"]["ready"], true);
    assert_eq!(object["spec"]["templateRef"]["name"], "stub-model");
    outputs.push(("get -o json".into(), as_json));

    let yaml = kubeoc(&["-n", &n, "agent", "get", "-o", "yaml"])
        .await?
        .ok("get -o yaml")?;
    assert!(yaml.stdout.contains("kind: List"), "{yaml}");
    outputs.push(("get -o yaml".into(), yaml));

    let name = kubeoc(&["-n", &n, "agents", "get", "-o", "name"])
        .await?
        .ok("get -o name")?;
    assert_eq!(name.stdout, "agent.kubeopencode.io/dev\n");
    let no_headers = kubeoc(&["-n", &n, "ag", "ls", "--no-headers"])
        .await?
        .ok("ls --no-headers")?;
    assert!(
        no_headers.stdout.starts_with("dev ") && no_headers.stdout.lines().count() == 1,
        "{no_headers}"
    );
    let selected = kubeoc(&["-n", &n, "agent", "list", "-l", "no-such=label"])
        .await?
        .ok("list -l")?;
    assert_eq!(selected.stdout, "");
    assert!(selected.stderr.contains("No resources found"), "{selected}");
    let everywhere = kubeoc(&["agent", "list", "-A"]).await?.ok("list -A")?;
    assert!(
        everywhere.stdout.starts_with("NAMESPACE ")
            && everywhere
                .stdout
                .lines()
                .any(|l| l.starts_with(&format!("{n} "))),
        "{everywhere}"
    );

    // describe: spec, conditions, children, the attach command.
    let described = kubeoc(&["-n", &n, "agent", "describe", "dev"])
        .await?
        .ok("describe")?;
    let text = &described.stdout;
    for want in [
        "Name:             dev".to_owned(),
        format!("Namespace:        {n}"),
        "Template:         stub-model".to_owned(),
        "Workspace Dir:    /workspace".to_owned(),
        "ServerReady    True".to_owned(),
        "ServerHealthy  True".to_owned(),
        "OpenCode 1.18.33".to_owned(),
        "ai-keys-api-key".to_owned(),
        "env OPENCODE_API_KEY".to_owned(),
        "env (every key)".to_owned(),
        format!("{n}  Git"),
        "dev-server ".to_owned(),
        "1/1 ready".to_owned(),
        "ports http 4096/TCP".to_owned(),
        "dev-server-sessions".to_owned(),
        "Bound, 1Gi".to_owned(),
        "dev-server-auth".to_owned(),
        "present (server password; value not shown)".to_owned(),
        "dev-server-context".to_owned(),
        "Events:".to_owned(),
        format!("kubectl kubeoc agent attach dev -n {n}"),
    ] {
        assert!(text.contains(&want), "describe lacks {want:?}:\n{text}");
    }
    outputs.push(("describe".into(), described));

    // The controller's Ready Event shows up in describe (published just after the status).
    let with_event = wait_until(
        "the Ready Event in describe",
        Duration::from_secs(60),
        || async {
            let run = kubeoc(&["-n", &n, "agent", "describe", "dev"]).await?;
            Ok(run
                .stdout
                .lines()
                .any(|l| {
                    l.contains("Normal") && l.contains("Ready") && l.contains("kubeoc-controller")
                })
                .then_some(run))
        },
    )
    .await?;
    outputs.push(("describe with events".into(), with_event));

    // logs: OpenCode's own start-up line.
    let logs = kubeoc(&["-n", &n, "agent", "logs", "dev"])
        .await?
        .ok("logs")?;
    assert!(logs.stdout.contains("listening"), "{logs}");
    outputs.push(("logs".into(), logs));

    // logs -f streams until the server pod ends: the suspend below ends it.
    let mut follow = Streaming::start(&["-n", &n, "agent", "logs", "dev", "-f"])?;
    wait_until(
        "logs -f to print the listening line",
        Duration::from_secs(30),
        || async { Ok(follow.text().contains("listening").then_some(())) },
    )
    .await
    .with_context(|| format!("logs -f printed:\n{}", follow.text()))?;
    ensure!(
        follow.exited()?.is_none(),
        "logs -f ended while the pod runs"
    );

    // suspend: the Deployment goes to zero; logs explain why there are none.
    let suspended = kubeoc(&["-n", &n, "agent", "suspend", "dev"])
        .await?
        .ok("suspend")?;
    assert_eq!(suspended.stdout, "agent.kubeopencode.io/dev suspended\n");
    outputs.push(("suspend".into(), suspended));
    kubeoc(&[
        "-n",
        &n,
        "agent",
        "wait",
        "dev",
        "--for=suspended",
        "--timeout=120s",
    ])
    .await?
    .ok("wait --for=suspended")?;
    let deployment = Api::<Deployment>::namespaced(client.clone(), &n)
        .get("dev-server")
        .await?;
    assert_eq!(deployment.spec.and_then(|s| s.replicas), Some(0));
    let agent = Api::<Agent>::namespaced(client.clone(), &n)
        .get("dev")
        .await?;
    let managers: Vec<(String, String)> = agent
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.manager.unwrap_or_default(),
                m.operation.unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("kubeoc".into(), "Update".into())),
        "spec.suspend is patched (not applied) by field manager kubeoc: {managers:?}"
    );
    wait_until("the server pod to be gone", WAIT, || async {
        Ok(server_pods(&client, &n, "dev")
            .await?
            .is_empty()
            .then_some(()))
    })
    .await?;
    let followed = follow
        .wait_exit(WAIT)
        .await
        .context("logs -f after the pod ended")?;
    assert_eq!(followed, Some(0), "logs -f exit code");
    outputs.push((
        "logs -f".into(),
        Run {
            code: followed,
            stdout: follow.text(),
            stderr: String::new(),
        },
    ));
    let no_logs = kubeoc(&["-n", &n, "agent", "logs", "dev"])
        .await?
        .expect_code(1, "logs of a suspended agent")?;
    assert!(
        no_logs.stderr.contains("is suspended")
            && no_logs
                .stderr
                .contains(&format!("kubectl kubeoc agent resume dev -n {n}")),
        "{no_logs}"
    );
    outputs.push(("logs while suspended".into(), no_logs));

    // Secret values appear in no output.
    let password = server_password(&client, &n, "dev").await?;
    for (what, run) in &outputs {
        for (secret, value) in [
            ("the server password", password.as_str()),
            ("the credential", CREDENTIAL_VALUE),
            ("the whole-Secret credential", WHOLE_SECRET_VALUE),
        ] {
            assert!(!run.all().contains(value), "{secret} appears in `{what}`");
        }
    }

    // resume: ready again.
    let resumed = kubeoc(&["-n", &n, "agent", "resume", "dev"])
        .await?
        .ok("resume")?;
    assert_eq!(resumed.stdout, "agent.kubeopencode.io/dev resumed\n");
    let ready_again = kubeoc(&[
        "-n",
        &n,
        "agent",
        "wait",
        "dev",
        "--for=ready",
        &format!("--timeout={READY_TIMEOUT}"),
    ])
    .await?;
    ensure!(
        ready_again.code == Some(0),
        "ready after resume: {ready_again}\ncontroller log:\n{}",
        controller.log()
    );

    // delete --wait: the Agent and every child are gone.
    let deleted = kubeoc(&["-n", &n, "agent", "delete", "dev", "--wait"])
        .await?
        .ok("delete --wait")?;
    assert_eq!(deleted.stdout, "agent.kubeopencode.io \"dev\" deleted\n");
    assert!(
        Api::<Agent>::namespaced(client.clone(), &n)
            .get_opt("dev")
            .await?
            .is_none(),
        "the Agent is still there after delete --wait"
    );
    wait_until("the Agent's children to be gone", WAIT, || async {
        let mut left = Vec::new();
        if Api::<Deployment>::namespaced(client.clone(), &n)
            .get_opt("dev-server")
            .await?
            .is_some()
        {
            left.push("Deployment dev-server");
        }
        if Api::<Service>::namespaced(client.clone(), &n)
            .get_opt("dev")
            .await?
            .is_some()
        {
            left.push("Service dev");
        }
        if Api::<PersistentVolumeClaim>::namespaced(client.clone(), &n)
            .get_opt("dev-server-sessions")
            .await?
            .is_some()
        {
            left.push("PVC dev-server-sessions");
        }
        if Api::<Secret>::namespaced(client.clone(), &n)
            .get_opt("dev-server-auth")
            .await?
            .is_some()
        {
            left.push("Secret dev-server-auth");
        }
        if Api::<ConfigMap>::namespaced(client.clone(), &n)
            .get_opt("dev-server-context")
            .await?
            .is_some()
        {
            left.push("ConfigMap dev-server-context");
        }
        if left.is_empty() {
            Ok(Some(()))
        } else {
            anyhow::bail!("still there: {}", left.join(", "))
        }
    })
    .await?;
    let gone = kubeoc(&[
        "-n",
        &n,
        "agent",
        "wait",
        "dev",
        "--for=delete",
        "--timeout=10s",
    ])
    .await?
    .ok("wait --for=delete of a deleted agent")?;
    assert_eq!(gone.stdout, "agent.kubeopencode.io/dev condition met\n");
    drop(controller);
    ns.delete().await
}

#[tokio::test]
async fn errors_say_what_failed_and_exit_with_kubectl_codes() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = prepare_namespace(&client, "agent-cli-errors").await?;
    let n = ns.name.clone();
    stub_template(&n).await?;
    let controller = Controller::start(&n)?;
    let missing = format!(
        "Error: agent \"nope\" not found in namespace \"{n}\" (list them with: kubectl kubeoc agent list -n {n})\n"
    );
    for args in [
        &["get", "nope"][..],
        &["describe", "nope"],
        &["suspend", "nope"],
        &["resume", "nope"],
        &["logs", "nope"],
        &["delete", "nope"],
        &["wait", "nope", "--for=ready", "--timeout=20s"],
    ] {
        let mut full = vec!["-n", n.as_str(), "agent"];
        full.extend_from_slice(args);
        let run = kubeoc(&full).await?.expect_code(1, &format!("{args:?}"))?;
        assert_eq!(run.stderr, missing, "{args:?}");
        assert_eq!(run.stdout, "", "{args:?}");
    }
    kubeoc(&["-n", &n, "agent", "delete", "nope", "--ignore-not-found"])
        .await?
        .ok("delete --ignore-not-found")?;
    kubeoc(&["-n", &n, "agent", "wait", "nope", "--for=delete"])
        .await?
        .ok("wait --for=delete of a missing agent")?;

    // Usage errors: exit 2, nothing created.
    let malformed = kubeoc(&[
        "-n",
        &n,
        "agent",
        "create",
        "bad",
        "--template",
        "stub-model",
        "--git-context",
        "https://github.com/org/repo.git",
    ])
    .await?
    .expect_code(2, "a --git-context without :PATH")?;
    assert!(malformed.stderr.contains("URL[@REF]:PATH"), "{malformed}");
    kubeoc(&["-n", &n, "agent", "create", "bad", "--credential", "BAD"])
        .await?
        .expect_code(2, "a bad --credential")?;
    kubeoc(&["-n", &n, "agent", "wait", "x", "--for=happy"])
        .await?
        .expect_code(2, "a bad --for")?;

    // Dry runs print the object and create nothing.
    let client_dry = kubeoc(&[
        "-n",
        &n,
        "agent",
        "create",
        "dry",
        "--template",
        "stub-model",
        "--dry-run=client",
        "-o",
        "yaml",
    ])
    .await?
    .ok("--dry-run=client -o yaml")?;
    let object: Value = serde_saphyr::from_str(&client_dry.stdout)?;
    assert_eq!(object["metadata"]["namespace"], n.as_str());
    assert_eq!(object["spec"]["templateRef"]["name"], "stub-model");
    let server_dry = kubeoc(&[
        "-n",
        &n,
        "agent",
        "create",
        "dry",
        "--template",
        "stub-model",
        "--dry-run=server",
        "-o",
        "json",
    ])
    .await?
    .ok("--dry-run=server -o json")?;
    let object: Value = serde_json::from_str(&server_dry.stdout)?;
    assert!(object["metadata"]["uid"].is_string(), "{server_dry}");
    assert!(
        Api::<Agent>::namespaced(client.clone(), &n)
            .get_opt("dry")
            .await?
            .is_none(),
        "a dry run created the Agent"
    );

    // -f: Agents only; several documents.
    let file = format!(
        "apiVersion: kubeopencode.io/v1alpha1\nkind: Agent\nmetadata: {{name: from-file}}\nspec: {{templateRef: {{name: stub-model}}, suspend: true}}\n---\n\
         {{\"apiVersion\": \"kubeopencode.io/v1alpha1\", \"kind\": \"Agent\", \"metadata\": {{\"name\": \"from-json\", \"namespace\": \"{n}\"}}, \"spec\": {{\"templateRef\": {{\"name\": \"stub-model\"}}, \"suspend\": true}}}}\n"
    );
    let from_file = kubeoc_with_input(&["-n", &n, "agent", "create", "-f", "-"], Some(&file))
        .await?
        .ok("create -f -")?;
    assert_eq!(
        from_file.stdout,
        "agent.kubeopencode.io/from-file created\nagent.kubeopencode.io/from-json created\n"
    );
    let typo = "apiVersion: kubeopencode.io/v1alpha1\nkind: Agent\nmetadata: {name: typo}\nspec: {workspaceDirr: /w}\n";
    let strict = kubeoc_with_input(&["-n", &n, "agent", "create", "-f", "-"], Some(typo))
        .await?
        .expect_code(1, "an unknown field")?;
    assert!(
        strict.stderr.contains("creating agent \"typo\"")
            && strict.stderr.contains("workspaceDirr"),
        "{strict}"
    );
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n";
    let refused = kubeoc_with_input(&["-n", &n, "agent", "create", "-f", "-"], Some(deployment))
        .await?
        .expect_code(1, "a Deployment in -f")?;
    assert!(refused.stderr.contains("Agents only"), "{refused}");

    // An existing Agent.
    let exists = kubeoc(&[
        "-n",
        &n,
        "agent",
        "create",
        "from-file",
        "--template",
        "stub-model",
    ])
    .await?
    .expect_code(1, "create of an existing agent")?;
    assert!(
        exists.stderr.starts_with(&format!(
            "Error: agent \"from-file\" already exists in namespace \"{n}\""
        )),
        "{exists}"
    );

    // An Agent that cannot become ready: its credential Secret does not exist, so the server
    // container cannot start (CreateContainerConfigError).
    kubeoc(&[
        "-n",
        &n,
        "agent",
        "create",
        "stuck",
        "--template",
        "stub-model",
        "--credential",
        "no-such-secret:key=API_KEY",
    ])
    .await?
    .ok("create stuck")?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    wait_until("the stuck agent's Ready=False condition", WAIT, || async {
        let agent = agents.get("stuck").await?;
        let reason = agent
            .status
            .and_then(|s| s.conditions)
            .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.reason);
        Ok((reason.as_deref() == Some("ServerNotReady")).then_some(()))
    })
    .await
    .with_context(|| format!("controller log:\n{}", controller.log()))?;
    let timed_out = kubeoc(&[
        "-n",
        &n,
        "agent",
        "wait",
        "stuck",
        "--for=ready",
        "--timeout=3s",
    ])
    .await?
    .expect_code(1, "wait timeout")?;
    assert!(
        timed_out.stderr.starts_with(&format!(
            "Error: timed out waiting for agent \"stuck\" in namespace \"{n}\" to be ready; last seen: Ready=False (ServerNotReady): "
        )),
        "{timed_out}"
    );
    wait_until("the stuck agent's pod", WAIT, || async {
        Ok((!server_pods(&client, &n, "stuck").await?.is_empty()).then_some(()))
    })
    .await?;
    let no_logs = kubeoc(&["-n", &n, "agent", "logs", "stuck"])
        .await?
        .expect_code(1, "logs of a pod that never started")?;
    assert!(
        no_logs
            .stderr
            .contains(&format!("kubectl kubeoc agent describe stuck -n {n}")),
        "{no_logs}"
    );
    let described = kubeoc(&["-n", &n, "agent", "describe", "stuck"])
        .await?
        .ok("describe stuck")?;
    assert!(
        described.stdout.contains("ServerNotReady")
            && described.stdout.contains("0/1 ready")
            && described.stdout.contains("CreateContainerConfigError"),
        "{described}"
    );

    // get of present and missing names: the found ones print, the missing one fails.
    let mixed = kubeoc(&["-n", &n, "agent", "get", "stuck", "nope", "-o", "name"])
        .await?
        .expect_code(1, "get of a present and a missing agent")?;
    assert_eq!(mixed.stdout, "agent.kubeopencode.io/stuck\n");
    assert_eq!(mixed.stderr, missing);
    let across = kubeoc(&["agent", "get", "stuck", "-A"])
        .await?
        .expect_code(1, "get NAME -A")?;
    assert!(across.stderr.contains("across all namespaces"), "{across}");

    drop(controller);
    ns.delete().await
}

/// `list -w` keeps running: the table when the first Agent appears, then a row per change.
#[tokio::test]
async fn list_watch_prints_a_row_per_change() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = prepare_namespace(&client, "agent-cli-watch").await?;
    let n = ns.name.clone();
    let mut watch = Streaming::start(&["-n", &n, "agent", "list", "-w"])?;
    let text = || watch.text();
    // Whether the watch lists before or after this create, the Agent shows under one header.
    kubeoc(&[
        "-n",
        &n,
        "agent",
        "create",
        "watched",
        "--image",
        "devbox",
        "--workspace-dir",
        "/w",
        "--service-account",
        "kubeopencode-agent",
    ])
    .await?
    .ok("create")?;
    wait_until(
        "the header and the first row",
        Duration::from_secs(30),
        || async {
            let t = text();
            Ok((t.starts_with("NAME ")
                && t.lines().nth(1).is_some_and(|l| l.starts_with("watched ")))
            .then_some(()))
        },
    )
    .await
    .with_context(|| format!("list -w printed:\n{}", text()))?;
    kubeoc(&["-n", &n, "agent", "suspend", "watched"])
        .await?
        .ok("suspend")?;
    kubeoc(&["-n", &n, "agent", "delete", "watched"])
        .await?
        .ok("delete")?;
    wait_until("a row per change", Duration::from_secs(30), || async {
        let t = text();
        let rows = t.lines().filter(|l| l.starts_with("watched ")).count();
        Ok((rows >= 3).then_some(t))
    })
    .await
    .with_context(|| format!("list -w printed:\n{}", text()))?;
    assert_eq!(
        text().lines().filter(|l| l.starts_with("NAME ")).count(),
        1,
        "one header:\n{}",
        text()
    );
    ensure!(watch.exited()?.is_none(), "list -w ended by itself");
    drop(watch);
    ns.delete().await
}
