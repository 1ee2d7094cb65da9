//! Tasks from an AgentTemplate (templateRef), on the testbed with the real OpenCode server and
//! the stub model:
//!
//! - a Task waits with TemplateNotFound until its template exists, then runs on a server of its
//!   own: the template's contexts and the Task's are files in that server's workspace (the
//!   model reads one with a tool), the answer is in status, the pod is deleted when the Task
//!   ends, its Secret and ConfigMap are the Task's;
//! - `task submit --template --wait --follow` streams the answer and exits 0; a model error
//!   exits 1 with the model's message; `task logs` prints the answer after the pod went;
//! - `task stop` on a slow answer: Completed with Stopped, the pod gone.

mod support;

use std::time::Duration;

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;
use kubeoc::api::task::{Task, TaskPhase};
use kubeoc_testbed::wait_until;
use serde_json::{Value, json};
use support::{Bed, WORKSPACE, agent_manifest, apply, created_name, kubeoc, phase, tasks};

const WAIT: Duration = Duration::from_secs(150);

/// AgentTemplate `name` on the stub model, with a Text context of its own.
fn template(name: &str) -> Value {
    let mut spec = agent_manifest("unused", json!({}))["spec"].clone();
    spec["contexts"] = json!([
        {"type": "Text", "text": "template rule: be brief", "mountPath": "template-rules.md"}
    ]);
    json!({
        "apiVersion": "kubeopencode.io/v1alpha1", "kind": "AgentTemplate",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// The condition `type_` of a Task: (status, reason, message).
fn condition(task: &Task, type_: &str) -> Option<(String, String, String)> {
    task.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn wait_finished(bed: &Bed, name: &str) -> anyhow::Result<Task> {
    let api = tasks(bed);
    wait_until(&format!("Task {name} finished"), WAIT, || async {
        let task = api.get(name).await?;
        Ok(phase(&task).filter(|p| p.is_finished()).map(|_| task))
    })
    .await
}

async fn wait_pod_gone(bed: &Bed, name: &str) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(bed.client.clone(), &bed.n);
    wait_until(&format!("pod {name} gone"), WAIT, || async {
        Ok(pods.get_opt(name).await?.is_none().then_some(()))
    })
    .await
}

#[tokio::test]
async fn a_task_from_a_template_waits_for_it_then_runs_on_a_server_of_its_own() -> anyhow::Result<()>
{
    let bed = Bed::start("task-template").await?;
    let n = bed.n.clone();
    let audit = support::audit::AuditLog::now()?;
    let read = json!({"filePath": format!("{WORKSPACE}/task-rules.md")});
    let task = json!({
        "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Task",
        "metadata": {"name": "lint"},
        "spec": {
            "templateRef": {"name": "team-config"},
            "description": format!("[[tool:read:{read}]]"),
            "contexts": [
                {"type": "Text", "text": "task rule: use cargo clippy", "mountPath": "task-rules.md"}
            ],
        },
    });
    apply(&n, &task).await?;
    let api = tasks(&bed);
    let waiting = wait_until("Task lint waits for its template", WAIT, || async {
        let got = api.get("lint").await?;
        Ok(condition(&got, "Queued")
            .filter(|(s, r, _)| s == "True" && r == "TemplateNotFound")
            .map(|_| got))
    })
    .await?;
    ensure!(
        phase(&waiting) == Some(TaskPhase::Pending),
        "{:?}",
        waiting.status
    );

    apply(&n, &template("team-config")).await?;
    let done = wait_finished(&bed, "lint").await?;
    let status = done.status.clone().context("a status")?;
    ensure!(phase(&done) == Some(TaskPhase::Completed), "{status:?}");
    let result = status.result.clone().unwrap_or_default();
    ensure!(
        result.starts_with("stub tool result:") && result.contains("task rule: use cargo clippy"),
        "the model read the Task's context file in its own server's workspace: {result:?}"
    );
    ensure!(
        status.template_ref.as_ref().map(|t| t.name.as_str()) == Some("team-config"),
        "{status:?}"
    );
    ensure!(status.pod_name.as_deref() == Some("lint-pod"), "{status:?}");
    let session = status.session.clone().context("the session")?;
    ensure!(
        session
            .id
            .as_deref()
            .is_some_and(|id| id.starts_with("ses_"))
            && session
                .summary
                .as_ref()
                .and_then(|s| s.message_count)
                .is_some_and(|c| c >= 2),
        "{session:?}"
    );
    wait_pod_gone(&bed, "lint-pod").await?;
    // The password comes from the controller's cache, not a GET at every look at the turn.
    let reads = audit.controller_requests(&n, "get", "/secrets/lint-task-auth")?;
    ensure!(
        reads.len() <= 1,
        "the controller read Secret lint-task-auth {} times while the Task ran",
        reads.len()
    );

    // The Secret and ConfigMap are the Task's (garbage-collected with it), and the template's
    // context is among the files.
    let uid = done.metadata.uid.clone().unwrap_or_default();
    let secret: Secret = Api::namespaced(bed.client.clone(), &n)
        .get("lint-task-auth")
        .await?;
    let context: ConfigMap = Api::namespaced(bed.client.clone(), &n)
        .get("lint-task-context")
        .await?;
    for (kind, owners) in [
        ("Secret", secret.metadata.owner_references.clone()),
        ("ConfigMap", context.metadata.owner_references.clone()),
    ] {
        ensure!(
            owners
                .unwrap_or_default()
                .iter()
                .any(|o| o.uid == uid && o.kind == "Task"),
            "{kind} of Task lint is not owned by it"
        );
    }
    let files: String = context.data.unwrap_or_default().into_values().collect();
    ensure!(files.contains("template rule: be brief"), "{files}");

    // logs after the pod went: the answer from status.
    let logs = kubeoc(&["-n", &n, "task", "logs", "lint"]).await?;
    ensure!(
        logs.success() && logs.stdout.trim_end() == result,
        "task logs: {logs}"
    );
    let described = kubeoc(&["-n", &n, "task", "describe", "lint"]).await?;
    ensure!(
        described.success() && described.stdout.contains("team-config"),
        "{described}"
    );
    Ok(())
}

#[tokio::test]
async fn submit_from_a_template_streams_the_answer_and_a_failed_turn_or_a_stop_ends_it()
-> anyhow::Result<()> {
    let bed = Bed::start("task-template-cli").await?;
    let n = bed.n.clone();
    apply(&n, &template("quick")).await?;

    let ok = kubeoc(&[
        "-n",
        &n,
        "task",
        "submit",
        "--template",
        "quick",
        "--wait",
        "--follow",
        "[[reply:one two three four]] [[slow:300]]",
    ])
    .await?;
    ensure!(
        ok.success() && ok.stdout == "one two three four\n",
        "submit --template --follow: {ok}"
    );
    let name = created_name(&ok.stderr)?;
    wait_pod_gone(&bed, &format!("{name}-pod")).await?;

    let failed = kubeoc(&[
        "-n",
        &n,
        "task",
        "submit",
        "--template",
        "quick",
        "--wait",
        "[[error:400]]",
    ])
    .await?;
    ensure!(
        !failed.success() && failed.stderr.contains("stub model error 400"),
        "a failed turn: {failed}"
    );
    let failed_name = created_name(&failed.stderr)?;
    let failed_task = tasks(&bed).get(&failed_name).await?;
    ensure!(
        condition(&failed_task, "Failed").is_some_and(|(_, r, _)| r == "ModelError"),
        "{:?}",
        failed_task.status
    );

    // A slow answer, stopped while it streams.
    let slow = kubeoc(&[
        "-n",
        &n,
        "task",
        "submit",
        "--template",
        "quick",
        "[[reply:a b c d e f g h i j k l m n o p q r s t]] [[slow:2000]]",
    ])
    .await?;
    ensure!(slow.success(), "{slow}");
    let slow_name = created_name(&slow.stdout)?;
    let api = tasks(&bed);
    wait_until(&format!("Task {slow_name} prompted"), WAIT, || async {
        let got = api.get(&slow_name).await?;
        Ok(got
            .status
            .and_then(|s| s.session)
            .and_then(|s| s.id)
            .map(|_| ()))
    })
    .await?;
    let stopped = kubeoc(&["-n", &n, "task", "stop", &slow_name]).await?;
    ensure!(stopped.success(), "{stopped}");
    let done = wait_finished(&bed, &slow_name).await?;
    ensure!(
        phase(&done) == Some(TaskPhase::Completed)
            && condition(&done, "Stopped")
                .is_some_and(|(s, r, _)| s == "True" && r == "UserStopped"),
        "{:?}",
        done.status
    );
    wait_pod_gone(&bed, &format!("{slow_name}-pod")).await?;
    Ok(())
}
