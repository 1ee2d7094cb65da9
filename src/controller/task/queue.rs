//! One admission pass over an Agent's queue: under the Agent's lock (reconciles of its Tasks
//! run concurrently), read its Tasks from the cache with the statuses this process wrote
//! ([`StatusMemo`](super::StatusMemo)), decide ([`decide`]), and write each waiting Task's
//! status: Running for the admitted (their own reconcile then makes the pod), Queued with
//! position and reason for the rest.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::admission::{Decision, Gate, Queue, decide};
use super::{ReconcileError, finish, invalid, status, stop_requested, target};
use crate::api::common::AgentReference;
use crate::api::task::{SessionInfo, Task, TaskPhase, TaskStatus};
use crate::controller::Context;
use crate::controller::conditions::{Verdict, find};
use crate::controller::pod;

/// Per-Agent locks, so two passes over one queue never interleave.
#[derive(Debug, Default)]
pub struct QueueLocks {
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl QueueLocks {
    fn of(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.to_string())
            .or_default()
            .clone()
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
    let _held = lock.lock().await;
    let Some(target) = target(ctx, ns, agent) else {
        return Ok(None);
    };
    let tasks = tasks_of(ctx, ns, agent);
    let running = tasks
        .iter()
        .filter(|(_, s)| s.phase == Some(TaskPhase::Running))
        .count();
    let starts = tasks
        .iter()
        .filter_map(|(_, s)| s.start_time.as_ref().map(|t| t.0))
        .collect();
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

    let agent_status = target.agent.status.clone().unwrap_or_default();
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
        status::write(ctx, task, next).await?;
    }
    Ok(retry)
}
