//! One admission pass over an Agent's queue: under the Agent's lock (reconciles of its Tasks
//! run concurrently), read its Tasks from the cache with the statuses this process wrote
//! ([`StatusMemo`](super::StatusMemo)), decide ([`decide`]), and write each waiting Task's
//! status: Running for the admitted (their own reconcile then makes the pod), Queued with
//! position and reason for the rest.
//!
//! Every admission moves every waiting Task up one place. Written at once each time, a burst
//! of N Tasks behind a few slots costs about N²/2 status writes (20,000 for 200), and the
//! writes, made under the Agent's lock, hold the next admission back. So a Task entering the
//! queue, changing its reason or being admitted is written at once, and so is a new position
//! among the first [`EXACT_POSITIONS`]; further back, a change of position alone is written
//! at most every [`POSITION_REFRESH`], and a pass that held positions back schedules the pass
//! that writes them.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use kube::runtime::reflector::ObjectRef;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::admission::{Decision, Gate, Queue, decide};
use super::{ReconcileError, finish, invalid, start_history, status, stop_requested, target};
use crate::api::agent::TaskStartRecord;
use crate::api::common::AgentReference;
use crate::api::task::{SessionInfo, Task, TaskPhase, TaskStatus};
use crate::controller::Context;
use crate::controller::conditions::{Verdict, find};
use crate::controller::pod;

/// Queue positions kept exact at every admission.
pub const EXACT_POSITIONS: i32 = 10;

/// How stale the `queuePosition` of a Task further back may get while its queue moves.
pub const POSITION_REFRESH: Duration = Duration::from_secs(5);

/// What one Agent's queue remembers between passes.
#[derive(Debug, Default)]
struct QueueState {
    /// When a pass last wrote the positions behind the first [`EXACT_POSITIONS`].
    positions_written: Option<Instant>,
    /// A pass to write held-back positions is scheduled.
    refresh_scheduled: bool,
    /// The Agent's `taskStartHistory` as this process last wrote it.
    start_record: Vec<TaskStartRecord>,
}

/// Per-Agent locks, so two passes over one queue never interleave, and the way to wake a
/// Task's reconcile later (for a pass that writes held-back positions).
#[derive(Debug)]
pub struct QueueLocks {
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<QueueState>>>>,
    wake: UnboundedSender<ObjectRef<Task>>,
}

impl QueueLocks {
    /// `wake` feeds the Task controller's extra triggers.
    pub fn new(wake: UnboundedSender<ObjectRef<Task>>) -> Self {
        Self {
            locks: Default::default(),
            wake,
        }
    }

    fn of(&self, key: &str) -> Arc<tokio::sync::Mutex<QueueState>> {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    /// Reconciles `task` after `delay`.
    fn wake_later(&self, task: ObjectRef<Task>, delay: Duration) {
        let wake = self.wake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // A closed channel means the controller is stopping.
            let _ = wake.unbounded_send(task);
        });
    }
}

/// The order in which this process first saw each Task. creationTimestamp has whole seconds,
/// so Tasks submitted in one second need another witness of their order: the watch delivers
/// them in the order etcd stored them.
#[derive(Debug, Default)]
pub struct Arrivals {
    next: std::sync::atomic::AtomicU64,
    seen: std::sync::Mutex<HashMap<String, u64>>,
}

impl Arrivals {
    /// Notes a Task the watch delivered (only its first sighting counts).
    pub fn note(&self, task: &Task) {
        let Some(uid) = task.metadata.uid.clone() else {
            return;
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if task.metadata.deletion_timestamp.is_some() {
            seen.remove(&uid);
            return;
        }
        seen.entry(uid)
            .or_insert_with(|| self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    }

    fn of(&self, task: &Task) -> u64 {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        task.metadata
            .uid
            .as_ref()
            .and_then(|uid| seen.get(uid).copied())
            .unwrap_or(u64::MAX)
    }
}

/// First come, first served: creationTimestamp, then (within its second) the position the
/// queue had before (it survives a restart), then the order this process saw them in, then
/// the name.
fn queue_order(
    arrivals: &Arrivals,
    (a, a_status): &(Arc<Task>, TaskStatus),
    (b, b_status): &(Arc<Task>, TaskStatus),
) -> std::cmp::Ordering {
    let created = |t: &Task| t.metadata.creation_timestamp.as_ref().map(|c| c.0);
    let position = |s: &TaskStatus| s.queue_position.unwrap_or(i32::MAX);
    created(a)
        .cmp(&created(b))
        .then_with(|| position(a_status).cmp(&position(b_status)))
        .then_with(|| arrivals.of(a).cmp(&arrivals.of(b)))
        .then_with(|| a.name_any().cmp(&b.name_any()))
}

/// Whether writing `next` over `current` may wait for the next refresh of positions: only the
/// position moved, and it is behind the first [`EXACT_POSITIONS`].
fn may_wait(current: &TaskStatus, next: &TaskStatus) -> bool {
    let only_position_moved = next != current
        && TaskStatus {
            queue_position: current.queue_position,
            ..next.clone()
        } == *current;
    only_position_moved && next.queue_position.unwrap_or_default() > EXACT_POSITIONS
}

/// The Agent's Tasks (not being deleted) with their newest statuses.
fn tasks_of(ctx: &Context, ns: &str, agent: &str) -> Vec<(Arc<Task>, TaskStatus)> {
    ctx.stores
        .tasks
        .state()
        .into_iter()
        .filter(|t| t.namespace().as_deref() == Some(ns))
        .filter(|t| t.spec.agent_ref.as_ref().is_some_and(|r| r.name == agent))
        .filter(|t| t.metadata.deletion_timestamp.is_none())
        .map(|t| {
            let status = ctx.task_statuses.current(&t);
            (t, status)
        })
        .collect()
}

/// Runs one pass over the queue of Agent `agent`; returns when to look again (the quota window
/// moves), if no watch event will say so.
pub(super) async fn admit(
    ctx: &Context,
    ns: &str,
    agent: &str,
) -> Result<Option<Duration>, ReconcileError> {
    let lock = ctx.task_queues.of(&format!("{ns}/{agent}"));
    let mut queue_state = lock.lock().await;
    let Some(target) = target(ctx, ns, agent) else {
        return Ok(None);
    };
    let tasks = tasks_of(ctx, ns, agent);
    let running = tasks
        .iter()
        .filter(|(_, s)| s.phase == Some(TaskPhase::Running))
        .count();
    let agent_status = target.agent.status.clone().unwrap_or_default();
    let start_record = start_history::union(
        agent_status
            .task_start_history
            .as_deref()
            .unwrap_or_default(),
        &queue_state.start_record,
    );
    let starts = start_history::starts(
        &start_record,
        tasks.iter().filter_map(|(task, s)| {
            let start = s.start_time.as_ref()?.0;
            Some((task.metadata.name.as_deref()?, start))
        }),
    );
    let mut waiting: Vec<&(Arc<Task>, TaskStatus)> = tasks
        .iter()
        .filter(|(_, s)| matches!(s.phase, None | Some(TaskPhase::Pending | TaskPhase::Queued)))
        .collect();
    waiting.sort_by(|a, b| queue_order(&ctx.task_arrivals, a, b));
    // Tasks that will never run leave the queue here, so they take no one's place.
    let mut queued = Vec::with_capacity(waiting.len());
    for (task, status) in waiting {
        if stop_requested(task) {
            let stopped = finish::stopped(
                task,
                status,
                "UserStopped",
                "stopped before it started (annotation kubeopencode.io/stop)",
            );
            status::write(ctx, task, stopped).await?;
        } else if let Some(message) = invalid(task) {
            let failed = finish::failed(task, status, "InvalidSpec", &message);
            status::write(ctx, task, failed).await?;
        } else {
            queued.push((task, status));
        }
    }

    let gate = if target.spec.suspend == Some(true) {
        Some(Gate::Suspended)
    } else if agent_status.ready != Some(true) {
        let why = find(agent_status.conditions.as_deref(), "Ready")
            .map(|c| c.message.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "the controller has not reported it Ready yet".to_string());
        Some(Gate::NotReady(why))
    } else {
        None
    };
    let now = Timestamp::now();
    let (decisions, retry) = decide(&Queue {
        agent,
        gate,
        max_concurrent: target.spec.max_concurrent_tasks,
        quota: target.spec.quota.as_ref(),
        running,
        starts,
        waiting: queued.len(),
        now,
    });
    let admitted: Vec<String> = queued
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| matches!(d, Decision::Admit))
        .map(|((task, _), _)| task.name_any())
        .collect();
    if let Some(quota) = target.spec.quota.as_ref()
        && !admitted.is_empty()
    {
        let record = start_history::recorded(&start_record, quota, ns, &admitted, now);
        start_history::write(ctx, &target.agent, &record).await?;
        queue_state.start_record = record;
    }
    let since_positions = queue_state.positions_written.map(|t| t.elapsed());
    let hold_positions = since_positions.is_some_and(|d| d < POSITION_REFRESH);
    let mut held_back = None;
    let mut wrote_positions = false;
    for ((task, current), decision) in queued.into_iter().zip(decisions) {
        let generation = task.metadata.generation.unwrap_or(0);
        let existing = current.conditions.as_deref().unwrap_or_default();
        let next = match decision {
            Decision::Admit => TaskStatus {
                observed_generation: Some(generation),
                phase: Some(TaskPhase::Running),
                queue_position: None,
                agent_ref: Some(AgentReference {
                    name: agent.to_string(),
                }),
                start_time: Some(Time(now)),
                session: Some(SessionInfo {
                    title: Some(pod::task_session_title(task)),
                    ..Default::default()
                }),
                conditions: Some(status::with_conditions(
                    existing,
                    &[Verdict::new(
                        "Queued",
                        false,
                        "Admitted",
                        format!("admitted by Agent {agent}"),
                    )],
                    generation,
                )),
                ..current.clone()
            },
            Decision::Wait {
                position,
                reason,
                message,
            } => TaskStatus {
                observed_generation: Some(generation),
                phase: Some(TaskPhase::Queued),
                queue_position: Some(position),
                agent_ref: Some(AgentReference {
                    name: agent.to_string(),
                }),
                conditions: Some(status::with_conditions(
                    existing,
                    &[Verdict::new("Queued", true, reason, message)],
                    generation,
                )),
                ..current.clone()
            },
        };
        if may_wait(current, &next) {
            if hold_positions {
                // The back of the queue: the Task least likely to be admitted before then.
                held_back = Some(ObjectRef::from_obj(&**task));
                continue;
            }
            wrote_positions = true;
        }
        // An admitted Task's own reconcile, started by this write's watch event, makes the pod.
        status::write(ctx, task, next).await?;
    }
    if wrote_positions {
        queue_state.positions_written = Some(Instant::now());
    }
    if !hold_positions {
        queue_state.refresh_scheduled = false;
    }
    if let Some(task) = held_back
        && !queue_state.refresh_scheduled
    {
        let wait = POSITION_REFRESH.saturating_sub(since_positions.unwrap_or_default());
        ctx.task_queues
            .wake_later(task, wait + Duration::from_millis(50));
        queue_state.refresh_scheduled = true;
    }
    Ok(retry)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queued at `position` for `reason`, with one fixed condition time.
    fn queued(position: i32, reason: &str) -> TaskStatus {
        let mut conditions = crate::controller::conditions::conditions(
            &[],
            &[Verdict::new("Queued", true, reason, "waits")],
            1,
        );
        for c in &mut conditions {
            c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        }
        TaskStatus {
            phase: Some(TaskPhase::Queued),
            queue_position: Some(position),
            conditions: Some(conditions),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_move_behind_the_first_places_waits() {
        let back = EXACT_POSITIONS + 2;
        let capacity = "AgentAtCapacity";
        assert!(may_wait(
            &queued(back, capacity),
            &queued(back - 1, capacity)
        ));
        // Near the front, every move is written.
        assert!(!may_wait(
            &queued(EXACT_POSITIONS + 1, capacity),
            &queued(EXACT_POSITIONS, capacity)
        ));
        // Entering the queue, a new reason, admission, or no change at all: never held.
        assert!(!may_wait(&TaskStatus::default(), &queued(back, capacity)));
        assert!(!may_wait(
            &queued(back, capacity),
            &queued(back - 1, "QuotaExceeded")
        ));
        let running = TaskStatus {
            phase: Some(TaskPhase::Running),
            ..Default::default()
        };
        assert!(!may_wait(&queued(back, capacity), &running));
        assert!(!may_wait(&queued(back, capacity), &queued(back, capacity)));
    }
}
