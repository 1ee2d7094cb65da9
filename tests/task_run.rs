//! Tasks on live Agents (agentRef), on the testbed with the real OpenCode server and the stub
//! model:
//!
//! - `task submit --wait` prints exactly the answer and exits 0 (status.result, the session in
//!   status); a model error fails the Task with the model's message and exit 1; a context file
//!   reaches the model; `--follow` streams the answer while the Task runs; `logs`, `describe`;
//! - `maxConcurrentTasks: 1` with 4 Tasks: never two Running, the queue numbered 1..n, all
//!   Completed in creation order (even within one second and against name order);
//! - a quota inherited from an AgentTemplate holds a Task in QuotaExceeded until the window
//!   moves, even once the Task that used the quota is deleted (the Agent records the start);
//! - stop and timeout abort the session on the server (Completed/Stopped), a deleted pod fails
//!   its Task (PodDeleted) within 30 s, deleting a running Task aborts its session;
//! - a controller killed while Tasks run and queue, then started again: every Task ends once,
//!   with one pod and one session each;
//! - standby: a suspended Agent resumes for a Task and runs it, and goes idle again after;
//! - a client that never exits does not keep its Task Running.

mod support;

use std::time::Duration;

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use kubeoc::api::Agent;
use kubeoc::api::task::{Task, TaskPhase};
use kubeoc::controller::agent::suspended_by_standby;
use kubeoc_testbed::wait_until;
use serde_json::{Value, json};
use support::{
    Bed, Server, Streaming, apply, created_name, kubeoc, phase, stub_model_config, tasks,
};

const WAIT: Duration = Duration::from_secs(120);

/// Creates Task `name` on `agent` with `prompt`.
async fn create_task(bed: &Bed, name: &str, agent: &str, prompt: &str) -> anyhow::Result<Task> {
    let task: Task = serde_json::from_value(json!({
        "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Task",
        "metadata": {"name": name},
        "spec": {"agentRef": {"name": agent}, "description": prompt},
    }))?;
    Ok(tasks(bed).create(&PostParams::default(), &task).await?)
}

/// Waits until Task `name` is in `want`; the Task then.
async fn wait_phase(
    bed: &Bed,
    name: &str,
    want: TaskPhase,
    timeout: Duration,
) -> anyhow::Result<Task> {
    let api = tasks(bed);
    wait_until(&format!("Task {name} {want:?}"), timeout, || async {
        let task = api.get(name).await?;
        if phase(&task) == Some(want) {
            return Ok(Some(task));
        }
        // What the timeout reports as last seen.
        let status = task.status.unwrap_or_default();
        let conditions: Vec<_> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
            .collect();
        anyhow::bail!(
            "phase {:?}, pod {:?}, conditions {conditions:?}",
            status.phase,
            status.pod_name
        )
    })
    .await
}

/// The True condition `type_` of a Task: (reason, message).
fn condition(task: &Task, type_: &str) -> Option<(String, String)> {
    task.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| (c.reason.clone(), c.message.clone()))
}

/// The sessions of `agent`'s server titled exactly `title`.
async fn sessions_titled(server: &Server, title: &str) -> anyhow::Result<Vec<Value>> {
    let found = server
        .get(&format!("/session?search={}", urlencode(title)))
        .await?;
    Ok(found
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s["title"] == title)
        .collect())
}

fn urlencode(text: &str) -> String {
    text.replace('/', "%2F")
}

/// Whether session `id`'s turn was aborted: the session is not busy, and its last assistant
/// message (if the model got that far) ended with MessageAbortedError. A turn nobody aborted
/// stays busy until it completes without an error.
async fn aborted(server: &Server, id: &str) -> anyhow::Result<Option<()>> {
    let statuses = server.get("/session/status").await?;
    if statuses[id]["type"].as_str().is_some_and(|t| t != "idle") {
        return Ok(None);
    }
    let messages = server.get(&format!("/session/{id}/message")).await?;
    let last = messages
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["info"]["role"] == "assistant"));
    Ok(match last {
        None => Some(()),
        Some(m) => (m["info"]["error"]["name"] == "MessageAbortedError").then_some(()),
    })
}

/// Whether session `id` is answering: its last assistant message exists and is not complete
/// (the server stores a part's streamed text only now and then, so text is no sign).
async fn answering(server: &Server, id: &str) -> anyhow::Result<bool> {
    let messages = server.get(&format!("/session/{id}/message")).await?;
    Ok(messages
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["info"]["role"] == "assistant"))
        .is_some_and(|m| m["info"]["time"]["completed"].is_null() && m["info"]["error"].is_null()))
}

/// A Task's title, as the controller names its session.
fn title(task: &Task) -> String {
    task.status
        .as_ref()
        .and_then(|s| s.session.as_ref())
        .and_then(|s| s.title.clone())
        .unwrap_or_default()
}

/// A prompt whose answer takes about `words * ms` to stream.
fn slow(words: usize, ms: u64) -> String {
    let text: Vec<String> = (1..=words).map(|i| format!("w{i}")).collect();
    format!("[[reply:{}]] [[slow:{ms}]]", text.join(" "))
}

#[tokio::test]
async fn a_task_on_a_live_agent_prints_its_answer_and_a_failed_turn_exits_1() -> anyhow::Result<()>
{
    let bed = Bed::start("task-run").await?;
    bed.ready_agent("helper", json!({})).await?;
    let n = bed.n.clone();

    let ok = kubeoc(&[
        "-n",
        &n,
        "task",
        "submit",
        "--agent",
        "helper",
        "--wait",
        "[[reply:Hello from a Task]]",
    ])
    .await?;
    ensure!(
        ok.success() && ok.stdout == "Hello from a Task\n",
        "submit --wait: {ok}"
    );
    let name = created_name(&ok.stderr)?;
    let task = tasks(&bed).get(&name).await?;
    let status = task.status.clone().context("a status")?;
    ensure!(phase(&task) == Some(TaskPhase::Completed), "{status:?}");
    ensure!(
        status.result.as_deref() == Some("Hello from a Task"),
        "{status:?}"
    );
    let session = status.session.clone().context("the session")?;
    ensure!(
        session
            .id
            .as_deref()
            .is_some_and(|id| id.starts_with("ses_")),
        "{session:?}"
    );
    ensure!(
        session
            .summary
            .as_ref()
            .and_then(|s| s.message_count)
            .is_some_and(|c| c >= 2),
        "{session:?}"
    );
    let pod: Pod = Api::namespaced(bed.client.clone(), &n)
        .get(&format!("{name}-pod"))
        .await?;
    let spec = serde_json::to_string(&pod.spec)?;
    let password = support::server_password(&bed.client, &n, "helper").await?;
    ensure!(
        !spec.contains(&password),
        "the password is in the Task pod's spec"
    );

    let failed = kubeoc(&[
        "-n",
        &n,
        "task",
        "submit",
        "--agent",
        "helper",
        "--wait",
        "[[error:400]] fix it",
    ])
    .await?;
    ensure!(failed.code == Some(1), "a model error exits 1: {failed}");
    ensure!(
        failed
            .stderr
            .contains("failed (ModelError): stub model error 400"),
        "{failed}"
    );
    let failed_task = tasks(&bed).get(&created_name(&failed.stderr)?).await?;
    ensure!(
        phase(&failed_task) == Some(TaskPhase::Failed),
        "{:?}",
        failed_task.status
    );
    let (reason, message) = condition(&failed_task, "Failed").context("a Failed condition")?;
    ensure!(
        reason == "ModelError" && message.contains("stub model error 400"),
        "{message}"
    );

    let file = std::env::temp_dir().join(format!("kubeoc-{n}-notes.md"));
    std::fs::write(&file, "[[reply:from the context file]]")?;
    let with_context = kubeoc(&[
        "-n",
        &n,
        "task",
        "submit",
        "--agent",
        "helper",
        "--wait",
        "--context-file",
        file.to_str().context("path")?,
        "answer as the notes say",
    ])
    .await?;
    ensure!(
        with_context.success() && with_context.stdout == "from the context file\n",
        "the context reached the model: {with_context}"
    );

    // --follow: the first words arrive while the Task still runs.
    let answer = (1..=12)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let prompt = format!("[[reply:{answer}]] [[slow:400]]");
    let mut follow = Streaming::start(&[
        "-n", &n, "task", "submit", "--agent", "helper", "--name", "streamed", "--follow", &prompt,
    ])?;
    wait_until("the first streamed words", WAIT, || async {
        Ok(follow.text().contains("w2").then_some(()))
    })
    .await?;
    let meanwhile = tasks(&bed).get("streamed").await?;
    ensure!(
        phase(&meanwhile) == Some(TaskPhase::Running),
        "words arrived while the Task was {:?}: not streamed",
        phase(&meanwhile)
    );
    let code = follow.wait_exit(WAIT).await?;
    ensure!(
        code == Some(0) && follow.text() == format!("{answer}\n"),
        "--follow printed {:?} (exit {code:?})",
        follow.text()
    );

    let logs = kubeoc(&["-n", &n, "task", "logs", "streamed"])
        .await?
        .ok("task logs")?;
    ensure!(logs.stdout.contains(&answer), "{logs}");
    let described = kubeoc(&["-n", &n, "task", "describe", "streamed"])
        .await?
        .ok("describe")?;
    ensure!(
        described.stdout.contains("Phase:            Completed"),
        "{described}"
    );
    let listed = kubeoc(&["-n", &n, "task", "list"]).await?.ok("list")?;
    ensure!(
        listed.stdout.lines().count() == 5,
        "a header and four Tasks: {listed}"
    );
    // DURATION, as kubectl's Jobs: every Task here has finished, so each row has one.
    let header: Vec<&str> = listed
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let at = header.iter().position(|h| *h == "DURATION");
    ensure!(
        at == Some(header.len() - 2),
        "DURATION before AGE: {listed}"
    );
    for row in listed.stdout.lines().skip(1) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        let duration = cells
            .get(cells.len().saturating_sub(2))
            .copied()
            .unwrap_or_default();
        ensure!(
            duration.ends_with('s') || duration.ends_with('m'),
            "a finished Task's duration in {row:?}: {listed}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn an_agent_at_capacity_runs_its_queue_one_at_a_time_first_come_first_served()
-> anyhow::Result<()> {
    let bed = Bed::start("task-queue").await?;
    bed.ready_agent("single", json!({"maxConcurrentTasks": 1}))
        .await?;
    // Created in this order within about a second: neither name order nor random order.
    let order = ["q-d", "q-c", "q-b", "q-a"];
    for name in order {
        create_task(&bed, name, "single", &slow(4, 300)).await?;
    }
    let api = tasks(&bed);
    let samples = std::cell::Cell::new(0);
    let saw_full_queue = std::cell::Cell::new(false);
    let violation = std::cell::RefCell::new(None::<String>);
    let off_positions = std::cell::Cell::new(None::<Vec<i32>>);
    wait_until(
        "all four Tasks finished",
        Duration::from_secs(180),
        || async {
            let listed = api.list(&ListParams::default()).await?.items;
            samples.set(samples.get() + 1);
            let running = listed
                .iter()
                .filter(|t| phase(t) == Some(TaskPhase::Running))
                .count();
            // A broken invariant ends the wait at once (an error would only be retried).
            if running > 1 {
                violation.replace(Some(format!(
                    "{running} Tasks run at once: {:?}",
                    listed
                        .iter()
                        .map(|t| (t.metadata.name.clone(), phase(t)))
                        .collect::<Vec<_>>()
                )));
                return Ok(Some(()));
            }
            let mut positions: Vec<i32> = listed
                .iter()
                .filter(|t| phase(t) == Some(TaskPhase::Queued))
                .filter_map(|t| t.status.as_ref()?.queue_position)
                .collect();
            positions.sort();
            let expected: Vec<i32> = (1..=i32::try_from(positions.len())?).collect();
            // One pass rewrites the queue a Task at a time, milliseconds apart: a list between
            // two of its writes sees the old positions beside the new Running Task. Positions
            // that stay wrong over two samples are a violation.
            if positions != expected {
                if let Some(seen) = off_positions.replace(Some(positions.clone())) {
                    violation.replace(Some(format!(
                        "queue positions {seen:?}, then {positions:?}"
                    )));
                    return Ok(Some(()));
                }
                return Ok(None);
            }
            off_positions.set(None);
            if positions == [1, 2, 3] && running == 1 {
                saw_full_queue.set(true);
            }
            let finished = listed
                .iter()
                .filter(|t| phase(t).is_some_and(|p| p.is_finished()))
                .count();
            Ok((finished == 4).then_some(()))
        },
    )
    .await?;
    if let Some(violation) = violation.take() {
        anyhow::bail!("{violation}");
    }
    let (samples, saw_full_queue) = (samples.get(), saw_full_queue.get());
    ensure!(
        saw_full_queue,
        "never saw one Running and three Queued at 1, 2, 3 ({samples} samples)"
    );
    let mut finished = Vec::new();
    for name in order {
        let task = api.get(name).await?;
        ensure!(
            phase(&task) == Some(TaskPhase::Completed),
            "{name}: {:?}",
            task.status
        );
        let status = task.status.context("status")?;
        finished.push((
            name,
            status.start_time.context("startTime")?.0,
            status.completion_time.context("completionTime")?.0,
        ));
    }
    for pair in finished.windows(2) {
        let ((a, _, a_done), (b, b_start, _)) = (pair[0], pair[1]);
        ensure!(
            b_start >= a_done,
            "{b} started at {b_start} before {a} finished at {a_done}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_quota_from_the_template_holds_a_task_until_the_window_moves() -> anyhow::Result<()> {
    let bed = Bed::start("task-quota").await?;
    apply(
        &bed.n,
        &json!({
            "apiVersion": "kubeopencode.io/v1alpha1", "kind": "AgentTemplate",
            "metadata": {"name": "limited"},
            "spec": {"workspaceDir": "/workspace", "serviceAccountName": "kubeopencode-agent",
                     "config": stub_model_config(),
                     "quota": {"maxTaskStarts": 1, "windowSeconds": 60}},
        }),
    )
    .await?;
    bed.ready(&json!({
        "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
        "metadata": {"name": "metered"}, "spec": {"templateRef": {"name": "limited"}},
    }))
    .await?;
    create_task(&bed, "first", "metered", "[[reply:first]]").await?;
    let first = wait_phase(&bed, "first", TaskPhase::Completed, WAIT).await?;
    // The Agent keeps the start, so deleting the Task does not give it back.
    let agents: Api<Agent> = Api::namespaced(bed.client.clone(), &bed.n);
    let metered = agents.get("metered").await?;
    let record = metered
        .status
        .and_then(|s| s.task_start_history)
        .unwrap_or_default();
    ensure!(
        record.iter().map(|r| r.task_name.as_str()).eq(["first"]),
        "taskStartHistory of Agent metered: {record:?}"
    );
    tasks(&bed)
        .delete("first", &DeleteParams::default())
        .await?;
    wait_until("Task first gone", WAIT, || async {
        Ok(tasks(&bed).get_opt("first").await?.is_none().then_some(()))
    })
    .await?;
    create_task(&bed, "second", "metered", "[[reply:second]]").await?;
    let held = wait_until("second Queued by the quota", WAIT, || async {
        let task = tasks(&bed).get("second").await?;
        Ok(condition(&task, "Queued")
            .filter(|(reason, _)| reason == "QuotaExceeded")
            .map(|_| task))
    })
    .await?;
    ensure!(
        held.status.as_ref().and_then(|s| s.queue_position) == Some(1),
        "{:?}",
        held.status
    );
    let second = wait_phase(
        &bed,
        "second",
        TaskPhase::Completed,
        Duration::from_secs(150),
    )
    .await?;
    let started = |t: &Task| {
        t.status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .map(|t| t.0)
    };
    let (a, b) = (
        started(&first).context("first start")?,
        started(&second).context("second start")?,
    );
    let gap = b.duration_since(a).as_secs();
    ensure!(
        gap >= 59,
        "the second Task started {gap}s after the first, inside the 60 s window"
    );
    Ok(())
}

#[tokio::test]
async fn stop_timeout_a_deleted_pod_and_deletion_end_running_tasks() -> anyhow::Result<()> {
    let bed = Bed::start("task-stop").await?;
    bed.ready_agent("worker", json!({})).await?;
    let n = bed.n.clone();
    let server = Server::connect(&bed.client, &n, "worker").await?;
    let pods: Api<Pod> = Api::namespaced(bed.client.clone(), &n);

    // A running Task's session on the server, once `opencode run` made it.
    let live_session = |name: &'static str| {
        let (bed, server) = (&bed, &server);
        async move {
            let task = wait_phase(bed, name, TaskPhase::Running, WAIT).await?;
            // Mid-answer: the session exists and the model's words arrive.
            wait_until(&format!("{name} answering"), WAIT, || async {
                let found = sessions_titled(server, &title(&task)).await?;
                let Some(id) = found.first().and_then(|s| s["id"].as_str()) else {
                    return Ok(None);
                };
                Ok(answering(server, id).await?.then(|| id.to_string()))
            })
            .await
        }
    };

    create_task(&bed, "stopped", "worker", &slow(60, 500)).await?;
    let session = live_session("stopped").await?;
    kubeoc(&["-n", &n, "task", "stop", "stopped"])
        .await?
        .ok("task stop")?;
    let stopped = wait_phase(&bed, "stopped", TaskPhase::Completed, WAIT).await?;
    ensure!(
        condition(&stopped, "Stopped").is_some_and(|(r, _)| r == "UserStopped"),
        "{:?}",
        stopped.status
    );
    wait_until(
        "the stopped session aborted on the server",
        WAIT,
        || async { aborted(&server, &session).await },
    )
    .await?;
    wait_until("the stopped Task's pod gone", WAIT, || async {
        Ok(pods.get_opt("stopped-pod").await?.is_none().then_some(()))
    })
    .await?;

    let timed = kubeoc(&[
        "-n",
        &n,
        "task",
        "submit",
        "--agent",
        "worker",
        "--name",
        "timed",
        "--timeout",
        "3s",
        "--wait",
        &slow(60, 500),
    ])
    .await?;
    ensure!(
        timed.code == Some(1) && timed.stderr.contains("was stopped (Timeout)"),
        "{timed}"
    );
    let timed = tasks(&bed).get("timed").await?;
    ensure!(
        phase(&timed) == Some(TaskPhase::Completed),
        "{:?}",
        timed.status
    );
    ensure!(
        condition(&timed, "Stopped").is_some_and(|(r, _)| r == "Timeout"),
        "{:?}",
        timed.status
    );
    let timed_session = sessions_titled(&server, &title(&timed)).await?;
    let timed_id = timed_session
        .first()
        .and_then(|s| s["id"].as_str())
        .context("the timed-out session")?;
    wait_until("the timed-out session aborted", WAIT, || async {
        aborted(&server, timed_id).await
    })
    .await?;

    create_task(&bed, "lost", "worker", &slow(60, 500)).await?;
    live_session("lost").await?;
    pods.delete("lost-pod", &DeleteParams::default()).await?;
    let lost = wait_phase(&bed, "lost", TaskPhase::Failed, Duration::from_secs(30)).await?;
    ensure!(
        condition(&lost, "Failed").is_some_and(|(r, _)| r == "PodDeleted"),
        "{:?}",
        lost.status
    );

    create_task(&bed, "deleted", "worker", &slow(60, 500)).await?;
    let deleted_session = live_session("deleted").await?;
    kubeoc(&["-n", &n, "task", "delete", "deleted"])
        .await?
        .ok("task delete")?;
    ensure!(
        tasks(&bed).get_opt("deleted").await?.is_none(),
        "task delete waits until it is gone"
    );
    wait_until("the deleted Task's session aborted", WAIT, || async {
        aborted(&server, &deleted_session).await
    })
    .await?;
    Ok(())
}

/// The pids of the testbed processes whose environment holds `KUBEOC_SESSION_TITLE=<title>`:
/// a Task pod's `opencode run --attach` (pods run as local processes).
fn client_pids(title: &str) -> Vec<u32> {
    let needle = format!("KUBEOC_SESSION_TITLE={title}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
        })
        .collect()
}

fn signal(pids: &[u32], signal: &str) -> anyhow::Result<()> {
    for pid in pids {
        // A process may end meanwhile: that is no failure.
        let _ = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()?;
    }
    Ok(())
}

/// A client that never exits (frozen here with SIGSTOP, as one was seen hanging after its
/// answer) does not keep the Task Running: once the session is idle with its answer, the
/// Task Completes and the pod is deleted.
#[tokio::test]
async fn a_stuck_client_does_not_keep_its_task_running() -> anyhow::Result<()> {
    let bed = Bed::start("task-stuck").await?;
    bed.ready_agent("steady", json!({})).await?;
    let server = Server::connect(&bed.client, &bed.n, "steady").await?;
    create_task(&bed, "stuck", "steady", &slow(4, 1500)).await?;
    let running = wait_phase(&bed, "stuck", TaskPhase::Running, WAIT).await?;
    let title = title(&running);
    // Frozen once its session answers: the server finishes the turn without it.
    wait_until("the Task's session answering", WAIT, || async {
        let found = sessions_titled(&server, &title).await?;
        let Some(id) = found.first().and_then(|s| s["id"].as_str()) else {
            return Ok(None);
        };
        Ok(answering(&server, id).await?.then_some(()))
    })
    .await?;
    let pids = client_pids(&title);
    ensure!(!pids.is_empty(), "no process of the Task's client");
    signal(&pids, "-STOP")?;
    let done = wait_phase(&bed, "stuck", TaskPhase::Completed, Duration::from_secs(90)).await;
    let seen = match sessions_titled(&server, &title).await?.first() {
        Some(s) => {
            let id = s["id"].as_str().unwrap_or_default().to_string();
            let statuses = server.get("/session/status").await?;
            let messages = server.get(&format!("/session/{id}/message")).await?;
            format!("status {:?}, messages {messages}", statuses.get(&id))
        }
        None => "no session".to_string(),
    };
    signal(&pids, "-CONT")?;
    let done = done.with_context(|| seen)?;
    let result = done.status.and_then(|s| s.result).unwrap_or_default();
    ensure!(result == "w1 w2 w3 w4", "the answer: {result:?}");
    let pods: Api<Pod> = Api::namespaced(bed.client.clone(), &bed.n);
    wait_until("pod stuck-pod deleted", WAIT, || async {
        let pod = pods.get_opt("stuck-pod").await?;
        Ok(pod
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
            .then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_restarted_controller_ends_every_task_once() -> anyhow::Result<()> {
    let mut bed = Bed::start("task-restart").await?;
    bed.ready_agent("steady", json!({"maxConcurrentTasks": 1}))
        .await?;
    let names = ["r1", "r2", "r3"];
    for name in names {
        create_task(&bed, name, "steady", &slow(6, 300)).await?;
    }
    wait_phase(&bed, "r1", TaskPhase::Running, WAIT).await?;
    bed.restart_controller()?;
    wait_phase(&bed, "r2", TaskPhase::Running, WAIT).await?;
    bed.restart_controller()?;
    let api = tasks(&bed);
    wait_until("every Task finished", Duration::from_secs(180), || async {
        let listed = api.list(&ListParams::default()).await?.items;
        Ok(listed
            .iter()
            .all(|t| phase(t).is_some_and(|p| p.is_finished()))
            .then_some(()))
    })
    .await?;
    let server = Server::connect(&bed.client, &bed.n, "steady").await?;
    let pods: Api<Pod> = Api::namespaced(bed.client.clone(), &bed.n);
    for name in names {
        let task = api.get(name).await?;
        ensure!(
            phase(&task) == Some(TaskPhase::Completed),
            "{name}: {:?}",
            task.status
        );
        let own = pods
            .list(&ListParams::default().labels(&format!("kubeopencode.io/task={name}")))
            .await?
            .items;
        ensure!(own.len() == 1, "{name} has {} pods", own.len());
        let sessions = sessions_titled(&server, &title(&task)).await?;
        ensure!(
            sessions.len() == 1,
            "{name} has {} sessions: {sessions:?}",
            sessions.len()
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_standby_agent_resumes_for_a_task_and_idles_again_after() -> anyhow::Result<()> {
    let bed = Bed::start("task-standby").await?;
    bed.ready_agent("napper", json!({"standby": {"idleTimeout": "20s"}}))
        .await?;
    let agents: Api<Agent> = Api::namespaced(bed.client.clone(), &bed.n);
    let suspended = |agents: Api<Agent>| async move {
        wait_until(
            "napper suspended by standby",
            Duration::from_secs(150),
            || async {
                let agent = agents.get("napper").await?;
                Ok(suspended_by_standby(&agent).then_some(()))
            },
        )
        .await
    };
    suspended(agents.clone()).await?;
    let woke = kubeoc(&[
        "-n",
        &bed.n,
        "task",
        "submit",
        "--agent",
        "napper",
        "--wait",
        "[[reply:woke up]]",
    ])
    .await?;
    ensure!(woke.success() && woke.stdout == "woke up\n", "{woke}");
    ensure!(
        woke.stderr.contains("AgentSuspended") || woke.stderr.contains("AgentServerNotReady"),
        "the Task waited for the Agent: {woke}"
    );
    suspended(agents).await?;
    Ok(())
}

/// Upstream KubeOpenCode's Task examples (`make test-upstream`, which sets
/// `KUBEOC_UPSTREAM_EXAMPLES`).
#[cfg(feature = "upstream-tests")]
mod upstream_tests {
    use std::path::PathBuf;

    use super::*;

    /// Every YAML document of kind `kind` in upstream's `resources/` and `docs/`.
    fn upstream_objects(kind: &str) -> anyhow::Result<Vec<Value>> {
        let dir = std::env::var_os("KUBEOC_UPSTREAM_EXAMPLES")
            .map(PathBuf::from)
            .context("set KUBEOC_UPSTREAM_EXAMPLES to the folder of upstream's published YAML")?;
        let mut found = Vec::new();
        for sub in ["resources", "docs"] {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .collect();
            files.sort();
            for file in files {
                let text = std::fs::read_to_string(&file)?;
                let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
                    .with_context(|| format!("parsing {}", file.display()))?;
                found.extend(docs.into_iter().filter(|d| d["kind"] == kind));
            }
        }
        Ok(found)
    }

    /// Every upstream Task runs unchanged: its Agent or AgentTemplate (on the stub model) is
    /// made, the Task applied as published (only its namespace dropped), and it Completes with
    /// the stub's echo of its description, so the prompt reached the model as written.
    #[tokio::test]
    async fn upstream_task_examples_run_unchanged() -> anyhow::Result<()> {
        let tasks_of_upstream = upstream_objects("Task")?;
        let on_agents = tasks_of_upstream
            .iter()
            .filter(|t| t["spec"]["agentRef"]["name"].is_string())
            .count();
        let from_templates = tasks_of_upstream
            .iter()
            .filter(|t| t["spec"]["templateRef"]["name"].is_string())
            .count();
        ensure!(
            on_agents >= 3 && from_templates >= 2,
            "upstream has {on_agents} agentRef and {from_templates} templateRef Tasks"
        );
        let bed = Bed::start("task-upstream").await?;
        let mut agents: Vec<String> = tasks_of_upstream
            .iter()
            .filter_map(|t| t["spec"]["agentRef"]["name"].as_str().map(str::to_string))
            .collect();
        agents.sort();
        agents.dedup();
        let ready = agents.iter().map(|a| bed.ready_agent(a, json!({})));
        for result in futures::future::join_all(ready).await {
            result?;
        }
        let mut templates: Vec<String> = tasks_of_upstream
            .iter()
            .filter_map(|t| {
                t["spec"]["templateRef"]["name"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        templates.sort();
        templates.dedup();
        for template in templates {
            let spec = support::agent_manifest("unused", json!({}))["spec"].clone();
            apply(
                &bed.n,
                &json!({
                    "apiVersion": "kubeopencode.io/v1alpha1", "kind": "AgentTemplate",
                    "metadata": {"name": template}, "spec": spec,
                }),
            )
            .await?;
        }
        for mut task in tasks_of_upstream {
            if let Some(meta) = task["metadata"].as_object_mut() {
                meta.remove("namespace");
            }
            apply(&bed.n, &task).await?;
            let name = task["metadata"]["name"].as_str().unwrap_or_default();
            let done = wait_phase(&bed, name, TaskPhase::Completed, WAIT).await?;
            let description = task["spec"]["description"]
                .as_str()
                .unwrap_or_default()
                .trim();
            let result = done.status.and_then(|s| s.result).unwrap_or_default();
            ensure!(
                result.starts_with("stub answer:")
                    && result.contains(description.lines().next().unwrap_or_default()),
                "Task {name}: the answer {result:?} does not echo its description {description:?}"
            );
        }
        Ok(())
    }

    /// Every upstream CronTask applies unchanged and is scheduled: its next run (in its time
    /// zone) is in the status, with condition Scheduled.
    #[tokio::test]
    async fn upstream_crontask_examples_are_scheduled_unchanged() -> anyhow::Result<()> {
        let crons = upstream_objects("CronTask")?;
        ensure!(crons.len() >= 3, "upstream has {} CronTasks", crons.len());
        let bed = Bed::start("crontask-upstream").await?;
        let api: Api<kubeoc::api::CronTask> = Api::namespaced(bed.client.clone(), &bed.n);
        for mut cron in crons {
            if let Some(meta) = cron["metadata"].as_object_mut() {
                meta.remove("namespace");
            }
            apply(&bed.n, &cron).await?;
            let name = cron["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let next = wait_until(&format!("CronTask {name} scheduled"), WAIT, || async {
                let got = api.get(&name).await?;
                Ok(got.status.and_then(|s| s.next_schedule_time))
            })
            .await?;
            ensure!(
                next.0 > k8s_openapi::jiff::Timestamp::now(),
                "CronTask {name}: next run {} is not ahead",
                next.0
            );
        }
        Ok(())
    }
}
