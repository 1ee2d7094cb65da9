//! Tasks on a live Agent: one Task's latency against a bare pod that runs the same
//! `opencode run --attach`, and a burst of Tasks against the same prompts sent to the server
//! straight (what the server and the stub model can do without kubeoc's Task machinery).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use kubeoc::api::{Task, TaskPhase};
use kubeoc::opencode::client::ServerProxy;
use serde_json::json;

use crate::report::{Goal, Row, median};

const PROMPT: &str = "[[reply:ok]]";
/// How often one Task or pod is looked at: fine enough for second-long latencies, light on
/// the apiserver.
const LATENCY_POLL: Duration = Duration::from_millis(25);
/// How often a burst is looked at: listing hundreds of objects more often would load the
/// apiserver on the machine that runs the Tasks.
const BURST_POLL: Duration = Duration::from_millis(500);

fn task(name: &str, agent: &str) -> anyhow::Result<Task> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Task",
        "metadata": {"name": name},
        "spec": {"description": PROMPT, "agentRef": {"name": agent}},
    }))?)
}

fn phase(task: &Task) -> Option<TaskPhase> {
    task.status.as_ref().and_then(|s| s.phase)
}

/// Polls `check` every `every` for at most `timeout`. Unlike the testbed's `wait_until`, an
/// error ends the wait at once: a failed Task is an answer, not a state to wait out.
async fn poll<T, F, Fut>(
    what: &str,
    every: Duration,
    timeout: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(done) = check().await? {
            return Ok(done);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(every).await;
    }
}

/// One Task: seconds to Running and to Completed, and its pod as created.
async fn one_task(
    client: &Client,
    ns: &str,
    agent: &str,
    name: &str,
) -> anyhow::Result<(f64, f64, Pod)> {
    let tasks: Api<Task> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    tasks
        .create(&PostParams::default(), &task(name, agent)?)
        .await?;
    let pod = poll(
        &format!("Task {name}'s pod"),
        LATENCY_POLL,
        Duration::from_secs(60),
        || async {
            pods.get_opt(&format!("{name}-pod"))
                .await
                .map_err(Into::into)
        },
    )
    .await?;
    let running = std::cell::Cell::new(None);
    poll(
        &format!("Task {name} Completed"),
        LATENCY_POLL,
        Duration::from_secs(120),
        || async {
            let t = tasks.get(name).await?;
            match phase(&t) {
                Some(TaskPhase::Running) => {
                    if running.get().is_none() {
                        running.set(Some(started.elapsed()));
                    }
                    Ok(None)
                }
                Some(TaskPhase::Completed) => Ok(Some(())),
                Some(TaskPhase::Failed) => {
                    let log = pods
                        .logs(&format!("{name}-pod"), &Default::default())
                        .await
                        .unwrap_or_else(|e| format!("(no log: {e})"));
                    bail!("Task {name} failed: {:?}; its pod's log:\n{log}", t.status)
                }
                _ => Ok(None),
            }
        },
    )
    .await?;
    let completed = started.elapsed();
    let running = running.get().unwrap_or(completed);
    Ok((running.as_secs_f64(), completed.as_secs_f64(), pod))
}

/// A bare pod with the Task pod's spec: seconds to Running and to Succeeded.
async fn bare_pod(
    client: &Client,
    ns: &str,
    template: &Pod,
    name: &str,
) -> anyhow::Result<(f64, f64)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut spec = template.spec.clone().context("the Task pod has no spec")?;
    spec.node_name = None;
    let pod = Pod {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    let started = Instant::now();
    pods.create(&PostParams::default(), &pod).await?;
    let running = std::cell::Cell::new(None);
    poll(
        &format!("bare pod {name} Succeeded"),
        LATENCY_POLL,
        Duration::from_secs(120),
        || async {
            let p = pods.get(name).await?;
            match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
                Some("Running") => {
                    if running.get().is_none() {
                        running.set(Some(started.elapsed()));
                    }
                    Ok(None)
                }
                Some("Succeeded") => Ok(Some(())),
                Some("Failed") => bail!("bare pod {name} failed: {:?}", p.status),
                _ => Ok(None),
            }
        },
    )
    .await?;
    let done = started.elapsed();
    let _ = pods.delete(name, &DeleteParams::background()).await;
    Ok((
        running.get().unwrap_or(done).as_secs_f64(),
        done.as_secs_f64(),
    ))
}

/// The latency rows (`samples` Tasks and as many bare pods, in turn), and a Task pod as
/// created: the template of the throughput row's bare pods.
pub async fn latency(
    client: &Client,
    ns: &str,
    agent: &str,
    samples: usize,
) -> anyhow::Result<(Vec<Row>, Pod)> {
    let mut template = None;
    let (mut task_running, mut task_done, mut pod_running, mut pod_done) =
        (vec![], vec![], vec![], vec![]);
    for i in 0..samples {
        let (running, done, pod) = one_task(client, ns, agent, &format!("latency-{i}")).await?;
        task_running.push(running);
        task_done.push(done);
        let (running, done) = bare_pod(client, ns, &pod, &format!("bare-{i}")).await?;
        pod_running.push(running);
        pod_done.push(done);
        template = Some(pod);
    }
    let template = template.context("no latency sample was taken (--samples 0)")?;
    let ratio = |a: &[f64], b: &[f64]| median(a.iter().zip(b).map(|(x, y)| x / y).collect());
    let (tr, td, pr, pd) = (
        median(task_running.clone()),
        median(task_done.clone()),
        median(pod_running.clone()),
        median(pod_done.clone()),
    );
    let rows = vec![
        Row::new(
            "task to Running",
            samples,
            "x bare pod",
            Goal::AtMost(1.2),
            ratio(&task_running, &pod_running),
            format!(
                "agentRef Task submitted to Running {tr:.2}s; a bare pod with its spec to Running {pr:.2}s (medians)"
            ),
        ),
        Row::new(
            "task to Completed",
            samples,
            "x bare pod",
            Goal::AtMost(1.2),
            ratio(&task_done, &pod_done),
            format!(
                "1-token answer: Task submitted to Completed {td:.2}s; the bare pod to Succeeded {pd:.2}s (medians)"
            ),
        ),
    ];
    Ok((rows, template))
}

/// Seconds for `count` prompts sent to the server straight, `concurrency` in flight.
async fn direct_prompts(
    server: &ServerProxy,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let turns = futures::stream::iter(0..count)
        .map(|_| async {
            let session = server.create_session("kubeoc bench throughput").await?;
            server
                .prompt(&session.id, PROMPT, Duration::from_secs(120))
                .await?;
            server.delete_session(&session.id).await?;
            Ok::<_, anyhow::Error>(())
        })
        .buffer_unordered(concurrency);
    futures::pin_mut!(turns);
    while let Some(turn) = turns.next().await {
        turn?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds for `count` bare pods with `template`'s spec, `concurrency` at a time.
async fn bare_pods(
    client: &Client,
    ns: &str,
    template: &Pod,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut spec = template.spec.clone().context("the Task pod has no spec")?;
    spec.node_name = None;
    let started = Instant::now();
    let (mut next, mut done) = (0, 0);
    let mut running: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120 + 10 * count as u64);
    while done < count {
        while running.len() < concurrency && next < count {
            let name = format!("bare-burst-{next:03}");
            let pod = Pod {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some([("kubeoc.dev/bench".to_string(), "burst".to_string())].into()),
                    ..Default::default()
                },
                spec: Some(spec.clone()),
                status: None,
            };
            pods.create(&PostParams::default(), &pod).await?;
            running.push(name);
            next += 1;
        }
        tokio::time::sleep(BURST_POLL).await;
        let listed = pods
            .list(&ListParams::default().labels("kubeoc.dev/bench=burst"))
            .await?;
        for pod in &listed.items {
            let name = pod.metadata.name.clone().unwrap_or_default();
            match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
                Some("Succeeded") if running.contains(&name) => {
                    running.retain(|r| *r != name);
                    done += 1;
                    let _ = pods.delete(&name, &DeleteParams::background()).await;
                }
                Some("Failed") => bail!("bare pod {name} failed: {:?}", pod.status),
                _ => {}
            }
        }
        if Instant::now() > deadline {
            bail!("{done} of {count} bare pods succeeded before the deadline");
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// `count` Tasks on an Agent with `maxConcurrentTasks: concurrency`, against the same prompts
/// sent to its server straight at the same concurrency (the floor: the server and the
/// model), and against bare pods with a Task pod's spec (the cost of a pod per Task).
pub async fn throughput(
    client: &Client,
    ns: &str,
    agent: &str,
    server: &ServerProxy,
    template: &Pod,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Row>> {
    let tasks: Api<Task> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    for i in 0..count {
        tasks
            .create(
                &PostParams::default(),
                &task(&format!("burst-{i:03}"), agent)?,
            )
            .await?;
    }
    let timeout = Duration::from_secs(120 + 10 * count as u64);
    poll(
        &format!("{count} Tasks Completed"),
        BURST_POLL,
        timeout,
        || async {
            let listed = tasks.list(&Default::default()).await?;
            let burst: Vec<&Task> = listed
                .items
                .iter()
                .filter(|t| {
                    t.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("burst-"))
                })
                .collect();
            if let Some(failed) = burst.iter().find(|t| phase(t) == Some(TaskPhase::Failed)) {
                bail!(
                    "Task {:?} failed: {:?}",
                    failed.metadata.name,
                    failed.status
                );
            }
            let done = burst
                .iter()
                .filter(|t| phase(t) == Some(TaskPhase::Completed))
                .count();
            Ok((done >= count).then_some(()))
        },
    )
    .await?;
    let tasks_secs = started.elapsed().as_secs_f64();
    let direct_secs = direct_prompts(server, count, concurrency).await?;
    let pods_secs = bare_pods(client, ns, template, count, concurrency).await?;
    let per_minute = |secs: f64| count as f64 * 60.0 / secs;
    let (tasks_rate, direct_rate, pods_rate) = (
        per_minute(tasks_secs),
        per_minute(direct_secs),
        per_minute(pods_secs),
    );
    Ok(vec![
        Row::new(
            "task throughput",
            count,
            "x server",
            Goal::AtLeast(0.8),
            tasks_rate / direct_rate,
            format!(
                "{count} Tasks, maxConcurrentTasks {concurrency}: {tasks_rate:.1} a minute; the same prompts straight to the server, {concurrency} in flight: {direct_rate:.1} a minute"
            ),
        ),
        Row::new(
            "task throughput (pods)",
            count,
            "x bare pods",
            Goal::AtLeast(0.8),
            tasks_rate / pods_rate,
            format!(
                "the same Tasks against {count} bare pods with a Task pod's spec, {concurrency} at a time: {pods_rate:.1} a minute"
            ),
        ),
    ])
}
