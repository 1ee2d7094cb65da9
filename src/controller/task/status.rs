//! Writing a Task's status, and remembering what was written: the watch cache lags behind
//! our own writes, and an admission that read a stale cache could start a Task twice or
//! count a finished one as running. Every status write goes through [`write`], which records
//! it; [`StatusMemo::current`] is the newest status of a Task this process knows.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::ReconcileError;
use crate::api::task::{Task, TaskPhase, TaskStatus};
use crate::controller::conditions::{Verdict, conditions};
use crate::controller::{Context, FIELD_MANAGER};

/// The statuses this process wrote, until the cache shows them.
#[derive(Debug, Default)]
pub struct StatusMemo {
    /// `<ns>/<name>` -> (uid, status written).
    written: Mutex<HashMap<String, (String, TaskStatus)>>,
}

fn key(task: &Task) -> String {
    format!(
        "{}/{}",
        task.namespace().unwrap_or_default(),
        task.name_any()
    )
}

impl StatusMemo {
    /// The newest status of `task` (as cached): ours when the cache has not caught up.
    pub fn current(&self, task: &Task) -> TaskStatus {
        let cached = task.status.clone().unwrap_or_default();
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let key = key(task);
        match written.get(&key) {
            Some((uid, status)) if Some(uid) == task.metadata.uid.as_ref() => {
                if *status == cached {
                    written.remove(&key);
                    cached
                } else {
                    status.clone()
                }
            }
            Some(_) => {
                // A Task made again under the same name.
                written.remove(&key);
                cached
            }
            None => cached,
        }
    }

    /// Records `status` as written; returns what it replaces, for [`StatusMemo::restore`].
    fn record(&self, task: &Task, status: &TaskStatus) -> Option<(String, TaskStatus)> {
        let uid = task.metadata.uid.clone().unwrap_or_default();
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key(task), (uid, status.clone()))
    }

    /// Puts back what [`StatusMemo::record`] replaced, after the write failed.
    fn restore(&self, task: &Task, previous: Option<(String, TaskStatus)>) {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        match previous {
            Some(entry) => written.insert(key(task), entry),
            None => written.remove(&key(task)),
        };
    }

    /// Forgets a Task that is gone.
    pub fn forget(&self, task: &Task) {
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(task));
    }
}

/// Conditions of `status` with `verdicts` set (others kept), transition times kept where
/// nothing flipped.
pub(super) fn with_conditions(
    existing: &[Condition],
    verdicts: &[Verdict],
    generation: i64,
) -> Vec<Condition> {
    let updated = conditions(existing, verdicts, generation);
    let mut all: Vec<Condition> = existing
        .iter()
        .filter(|c| !updated.iter().any(|u| u.type_ == c.type_))
        .cloned()
        .collect();
    all.extend(updated);
    all.sort_by(|a, b| a.type_.cmp(&b.type_));
    all
}

/// Server-side applies `status` when it differs from the newest one known; publishes an Event
/// when the phase changes. A Task deleted meanwhile is not an error.
pub(super) async fn write(
    ctx: &Context,
    task: &Task,
    status: TaskStatus,
) -> Result<(), ReconcileError> {
    let before = ctx.task_statuses.current(task);
    if before == status {
        return Ok(());
    }
    let ns = task.namespace().unwrap_or_default();
    let api: Api<Task> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({"apiVersion": crate::api::API_VERSION, "kind": "Task", "status": status});
    // Recorded before the patch is sent: its watch event can start a reconcile of the Task
    // before the patch returns, and that reconcile must see this status, not the one before
    // (an admitted Task once read as still queued, and was never started).
    let previous = ctx.task_statuses.record(task, &status);
    match api
        .patch_status(
            &task.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {
            ctx.task_statuses.forget(task);
            return Ok(());
        }
        Err(source) => {
            ctx.task_statuses.restore(task, previous);
            return Err(ReconcileError::Status {
                object: format!("Task {ns}/{}", task.name_any()),
                source,
            });
        }
    }
    if before.phase != status.phase
        && let Some(event) = phase_event(task, &status)
        && let Err(e) = ctx.recorder().publish(&event, &task.object_ref(&())).await
    {
        tracing::warn!(task = %format!("{ns}/{}", task.name_any()), "could not publish an Event: {e}");
    }
    Ok(())
}

/// The Event of entering the status's phase.
fn phase_event(task: &Task, status: &TaskStatus) -> Option<Event> {
    let condition = |type_: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    let (type_, reason, note) = match status.phase? {
        TaskPhase::Running => (
            EventType::Normal,
            "Started".to_string(),
            format!(
                "admitted by Agent {}: pod {} sends the prompt to its server",
                status
                    .agent_ref
                    .as_ref()
                    .map(|r| r.name.as_str())
                    .unwrap_or_default(),
                crate::controller::pod::task_pod_name(&task.name_any())
            ),
        ),
        TaskPhase::Completed => match condition("Stopped") {
            Some(stopped) => (
                EventType::Normal,
                stopped.reason.clone(),
                stopped.message.clone(),
            ),
            None => (
                EventType::Normal,
                "Completed".to_string(),
                "the agent answered".to_string(),
            ),
        },
        TaskPhase::Failed => {
            let failed = condition("Failed")?;
            (
                EventType::Warning,
                failed.reason.clone(),
                failed.message.clone(),
            )
        }
        TaskPhase::Queued | TaskPhase::Pending => return None,
    };
    Some(Event {
        type_,
        reason,
        note: Some(note.chars().take(1024).collect()),
        action: "Reconcile".into(),
        secondary: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(uid: &str, phase: Option<TaskPhase>) -> Task {
        let mut task = Task::new("t", Default::default());
        task.metadata.namespace = Some("team".into());
        task.metadata.uid = Some(uid.into());
        task.status = Some(TaskStatus {
            phase,
            ..Default::default()
        });
        task
    }

    fn phase_of(status: TaskStatus) -> Option<TaskPhase> {
        status.phase
    }

    #[test]
    fn a_write_in_flight_is_the_newest_status_and_a_failed_one_is_undone() {
        let memo = StatusMemo::default();
        let cached = task("u1", Some(TaskPhase::Queued));
        let running = TaskStatus {
            phase: Some(TaskPhase::Running),
            ..Default::default()
        };
        let previous = memo.record(&cached, &running);
        // The cache still says Queued while the patch is on its way.
        assert_eq!(phase_of(memo.current(&cached)), Some(TaskPhase::Running));
        memo.restore(&cached, previous);
        assert_eq!(phase_of(memo.current(&cached)), Some(TaskPhase::Queued));
    }

    #[test]
    fn the_cache_catching_up_or_a_new_task_of_the_name_ends_the_memo() {
        let memo = StatusMemo::default();
        let queued = task("u1", Some(TaskPhase::Queued));
        let running = task("u1", Some(TaskPhase::Running));
        let written = running.status.clone().unwrap_or_default();
        memo.record(&queued, &written);
        assert_eq!(phase_of(memo.current(&running)), Some(TaskPhase::Running));
        assert_eq!(
            phase_of(memo.current(&queued)),
            Some(TaskPhase::Queued),
            "the memo ended once the cache showed the write"
        );
        memo.record(&queued, &written);
        let again = task("u2", None);
        assert_eq!(phase_of(memo.current(&again)), None);
    }
}
