//! Finished Tasks cleaned up per KubeOpenCodeConfig `cluster`, and the Events of a Task's life,
//! on the testbed with the real OpenCode server and the stub model:
//!
//! - `cleanup.maxRetainedTasks: 2`: a third finished Task deletes the oldest finished one;
//! - `cleanup.ttlSecondsAfterFinished` set afterwards reaches the Tasks that had already
//!   finished: each goes once its TTL after completionTime is over, and not before;
//! - a Task's Events: Started, then Completed; a model error: a Warning with ModelError.
//!
//! The config is cluster-scoped: this binary holds the only test that touches it (test
//! binaries run one after another), and it always deletes it again.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kubeoc::api::KubeOpenCodeConfig;
use kubeoc::api::task::{Task, TaskPhase};
use kubeoc_testbed::wait_until;
use serde_json::json;
use support::{Bed, ClusterConfigGuard, phase, tasks};

const WAIT: Duration = Duration::from_secs(120);
const TTL_SECONDS: i64 = 8;

/// Creates Task `name` on Agent `keeper` and waits until it has finished.
async fn run_task(bed: &Bed, name: &str, prompt: &str) -> anyhow::Result<Task> {
    let task: Task = serde_json::from_value(json!({
        "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Task",
        "metadata": {"name": name},
        "spec": {"agentRef": {"name": "keeper"}, "description": prompt},
    }))?;
    let api = tasks(bed);
    api.create(&PostParams::default(), &task).await?;
    wait_until(&format!("Task {name} finished"), WAIT, || async {
        let task = api.get(name).await?;
        Ok(phase(&task)
            .is_some_and(|p| p.is_finished())
            .then_some(task))
    })
    .await
}

/// The names of the namespace's Tasks.
async fn task_names(bed: &Bed) -> anyhow::Result<BTreeSet<String>> {
    Ok(tasks(bed)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|t| t.metadata.name)
        .collect())
}

/// (type, reason) of the Events about Task `name`, oldest first.
async fn events_of(bed: &Bed, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let events: Api<Event> = Api::namespaced(bed.client.clone(), &bed.n);
    let mut about: Vec<Event> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("Task") && r.name.as_deref() == Some(name)
            })
        })
        .collect();
    about.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    Ok(about
        .into_iter()
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
        .collect())
}

/// [`events_of`] once Task `name` has at least its start and its end.
async fn two_events_of(bed: &Bed, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    wait_until(&format!("the Events of Task {name}"), WAIT, || async {
        let events = events_of(bed, name).await?;
        Ok((events.len() >= 2).then_some(events))
    })
    .await
}

fn completion(task: &Task) -> anyhow::Result<Timestamp> {
    task.status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .map(|t| t.0)
        .with_context(|| format!("Task {:?} has no completionTime", task.metadata.name))
}

#[tokio::test]
async fn finished_tasks_are_cleaned_up_by_count_and_ttl_and_tell_their_life_in_events()
-> anyhow::Result<()> {
    let bed = Bed::start("task-cleanup").await?;
    let configs: Api<KubeOpenCodeConfig> = Api::all(bed.client.clone());
    let _guard = ClusterConfigGuard;
    configs
        .delete("cluster", &DeleteParams::default())
        .await
        .ok();
    // The config first: the controller's watch has it long before the Agent is Ready.
    let config: KubeOpenCodeConfig = serde_json::from_value(json!({
        "apiVersion": "kubeopencode.io/v1alpha1", "kind": "KubeOpenCodeConfig",
        "metadata": {"name": "cluster"},
        "spec": {"cleanup": {"maxRetainedTasks": 2}},
    }))?;
    configs.create(&PostParams::default(), &config).await?;
    bed.ready_agent("keeper", json!({})).await?;

    // By count: the third finished Task deletes the oldest.
    let first = run_task(&bed, "first", "[[reply:one]]").await?;
    let second = run_task(&bed, "second", "[[reply:two]]").await?;
    ensure!(
        task_names(&bed).await? == BTreeSet::from(["first".into(), "second".into()]),
        "two finished Tasks are within the limit"
    );
    let third = run_task(&bed, "third", "[[error:400]]").await?;
    for task in [&first, &second] {
        ensure!(
            phase(task) == Some(TaskPhase::Completed),
            "{:?}",
            task.status
        );
    }
    ensure!(
        phase(&third) == Some(TaskPhase::Failed),
        "{:?}",
        third.status
    );
    let left = wait_until("the oldest finished Task deleted", WAIT, || async {
        let names = task_names(&bed).await?;
        Ok((!names.contains("first")).then_some(names))
    })
    .await?;
    ensure!(
        left == BTreeSet::from(["second".into(), "third".into()]),
        "the two newest stay: {left:?}"
    );

    // Events tell each Task's life.
    let events = two_events_of(&bed, "second").await?;
    ensure!(
        events
            == [
                ("Normal".to_string(), "Started".to_string()),
                ("Normal".to_string(), "Completed".to_string()),
            ],
        "Events of a completed Task: {events:?}"
    );
    let failed_events = two_events_of(&bed, "third").await?;
    ensure!(
        failed_events.last() == Some(&("Warning".to_string(), "ModelError".to_string())),
        "a model error ends in a Warning: {failed_events:?}"
    );

    // A TTL set now reaches the Tasks that had finished before it.
    let patch = json!({"spec": {"cleanup": {"maxRetainedTasks": 2,
                                            "ttlSecondsAfterFinished": TTL_SECONDS}}});
    configs
        .patch("cluster", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let mut due = vec![
        ("second", completion(&second)?),
        ("third", completion(&third)?),
    ];
    due.sort_by_key(|(_, at)| *at);
    for (name, completed) in due {
        wait_until(
            &format!("Task {name} deleted {TTL_SECONDS} s after it finished"),
            WAIT,
            || async {
                let names = task_names(&bed).await?;
                Ok((!names.contains(name)).then_some(()))
            },
        )
        .await?;
        // The apiserver's clock stamped completionTime; this machine's is the same clock.
        let waited = Timestamp::now().duration_since(completed).as_secs_f64();
        ensure!(
            waited >= TTL_SECONDS as f64 - 1.0,
            "Task {name} was deleted {waited:.1} s after it finished, before its TTL"
        );
    }
    Ok(())
}
