//! Which of an Agent's waiting Tasks may start now (pure). The gates are upstream's, in
//! upstream's order (Agent suspended, server not ready, `maxConcurrentTasks`, quota window),
//! but Tasks are admitted first come, first served: by creationTimestamp, then name. Every Task
//! that waits gets its 1-based position and the reason it waits.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::agent::QuotaConfig;

/// Why the whole queue waits, before capacity and quota are looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// `spec.suspend` is true.
    Suspended,
    /// The server is not Ready; the message says why.
    NotReady(String),
}

/// What one waiting Task gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start it now.
    Admit,
    /// Keep it Queued.
    Wait {
        /// 1-based position among the Agent's waiting Tasks.
        position: i32,
        /// AgentSuspended, AgentServerNotReady, AgentAtCapacity or QuotaExceeded.
        reason: &'static str,
        message: String,
    },
}

/// An Agent's queue as the admission sees it.
#[derive(Debug, Clone)]
pub struct Queue<'a> {
    pub agent: &'a str,
    pub gate: Option<Gate>,
    /// `maxConcurrentTasks` after the template merge; unset or below 1 means no limit.
    pub max_concurrent: Option<i32>,
    pub quota: Option<&'a QuotaConfig>,
    /// Tasks of the Agent in phase Running.
    pub running: usize,
    /// When the Agent's Tasks started (any phase), for the quota window.
    pub starts: Vec<Timestamp>,
    /// How many Tasks wait, in admission order.
    pub waiting: usize,
    pub now: Timestamp,
}

/// The decision for each waiting Task (in the queue's order), and when to look again because
/// the quota window moves (no watch event says so).
pub fn decide(queue: &Queue<'_>) -> (Vec<Decision>, Option<Duration>) {
    let agent = queue.agent;
    if let Some(gate) = &queue.gate {
        let (reason, message) = match gate {
            Gate::Suspended => (
                "AgentSuspended",
                format!(
                    "Agent {agent} is suspended; the Task starts when it is resumed (kubectl kubeoc agent resume {agent})"
                ),
            ),
            Gate::NotReady(why) => (
                "AgentServerNotReady",
                format!("the server of Agent {agent} is not ready: {why}"),
            ),
        };
        return (wait_all(0, queue.waiting, reason, &message), None);
    }

    let capacity = match queue.max_concurrent.filter(|m| *m > 0) {
        Some(max) => usize::try_from(max)
            .unwrap_or(0)
            .saturating_sub(queue.running),
        None => usize::MAX,
    };
    let (quota_left, retry) = match queue.quota {
        Some(quota) => {
            let window = SignedDuration::from_secs(i64::from(quota.window_seconds.max(1)));
            let since = queue.now.checked_sub(window).unwrap_or(queue.now);
            let mut in_window: Vec<Timestamp> = queue
                .starts
                .iter()
                .copied()
                .filter(|start| *start > since)
                .collect();
            in_window.sort();
            let max = usize::try_from(quota.max_task_starts.max(1)).unwrap_or(1);
            let left = max.saturating_sub(in_window.len());
            // The oldest start leaves the window first: then one more may start.
            let retry = in_window.first().and_then(|oldest| {
                let frees_at = oldest.checked_add(window).ok()?;
                Duration::try_from(frees_at.duration_since(queue.now))
                    .ok()
                    .map(|d| d + Duration::from_secs(1))
            });
            (left, retry)
        }
        None => (usize::MAX, None),
    };

    let admit = queue.waiting.min(capacity).min(quota_left);
    let mut decisions = vec![Decision::Admit; admit];
    let rest = queue.waiting - admit;
    // Capacity is upstream's first limit: it names the wait when both are reached.
    let (reason, message, retry) = if admit == capacity {
        let max = queue.max_concurrent.unwrap_or_default();
        (
            "AgentAtCapacity",
            format!(
                "Agent {agent} runs {} of at most {max} Tasks at once (maxConcurrentTasks)",
                queue.running + admit
            ),
            None,
        )
    } else {
        let (max, window) = queue
            .quota
            .map(|q| (q.max_task_starts, q.window_seconds))
            .unwrap_or_default();
        (
            "QuotaExceeded",
            format!(
                "Agent {agent} may start {max} Tasks per {window} s (quota); the next may start when the oldest start leaves the window"
            ),
            retry,
        )
    };
    decisions.extend(wait_all(0, rest, reason, &message));
    let retry = (rest > 0).then_some(retry).flatten();
    (decisions, retry)
}

fn wait_all(skip: usize, count: usize, reason: &'static str, message: &str) -> Vec<Decision> {
    (0..count)
        .map(|i| Decision::Wait {
            position: i32::try_from(skip + i + 1).unwrap_or(i32::MAX),
            reason,
            message: message.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("valid time")
    }

    fn queue(waiting: usize) -> Queue<'static> {
        Queue {
            agent: "a",
            gate: None,
            max_concurrent: None,
            quota: None,
            running: 0,
            starts: Vec::new(),
            waiting,
            now: at(1000),
        }
    }

    fn positions(decisions: &[Decision]) -> Vec<Option<(i32, &'static str)>> {
        decisions
            .iter()
            .map(|d| match d {
                Decision::Admit => None,
                Decision::Wait {
                    position, reason, ..
                } => Some((*position, *reason)),
            })
            .collect()
    }

    #[test]
    fn without_limits_everything_starts() {
        let (decisions, retry) = decide(&queue(3));
        assert_eq!(decisions, vec![Decision::Admit; 3]);
        assert_eq!(retry, None);
    }

    #[test]
    fn a_gate_holds_the_whole_queue_in_order() {
        let mut q = queue(2);
        q.gate = Some(Gate::Suspended);
        q.max_concurrent = Some(5);
        let (decisions, _) = decide(&q);
        assert_eq!(
            positions(&decisions),
            vec![Some((1, "AgentSuspended")), Some((2, "AgentSuspended"))]
        );
        q.gate = Some(Gate::NotReady("0/1 replicas available".into()));
        let (decisions, _) = decide(&q);
        let Decision::Wait {
            reason, message, ..
        } = &decisions[0]
        else {
            panic!("waits: {decisions:?}");
        };
        assert_eq!(*reason, "AgentServerNotReady");
        assert!(message.contains("0/1 replicas available"), "{message}");
    }

    #[test]
    fn capacity_admits_the_oldest_and_numbers_the_rest() {
        let mut q = queue(4);
        q.max_concurrent = Some(1);
        let (decisions, retry) = decide(&q);
        assert_eq!(
            positions(&decisions),
            vec![
                None,
                Some((1, "AgentAtCapacity")),
                Some((2, "AgentAtCapacity")),
                Some((3, "AgentAtCapacity"))
            ]
        );
        assert_eq!(retry, None, "a Task finishing wakes the queue");
        q.running = 1;
        let (decisions, _) = decide(&q);
        assert_eq!(positions(&decisions)[0], Some((1, "AgentAtCapacity")));
        q.running = 3;
        q.max_concurrent = Some(2);
        let (decisions, _) = decide(&q);
        assert_eq!(decisions.len(), 4, "over capacity admits none");
        assert!(!decisions.contains(&Decision::Admit));
    }

    #[test]
    fn the_quota_window_holds_tasks_until_the_oldest_start_leaves_it() {
        let quota = QuotaConfig {
            max_task_starts: 2,
            window_seconds: 60,
        };
        let mut q = queue(3);
        q.quota = Some(&quota);
        q.starts = vec![at(970), at(900)];
        let (decisions, retry) = decide(&q);
        assert_eq!(
            positions(&decisions),
            vec![None, Some((1, "QuotaExceeded")), Some((2, "QuotaExceeded"))],
            "the start at 900 left the window at 960"
        );
        assert_eq!(retry, Some(Duration::from_secs(31)), "970 + 60 - 1000 + 1");
        q.starts = vec![at(990), at(980)];
        let (decisions, retry) = decide(&q);
        assert!(!decisions.contains(&Decision::Admit));
        assert_eq!(retry, Some(Duration::from_secs(41)));
    }

    #[test]
    fn capacity_wins_the_reason_when_both_limit() {
        let quota = QuotaConfig {
            max_task_starts: 10,
            window_seconds: 3600,
        };
        let mut q = queue(2);
        q.quota = Some(&quota);
        q.max_concurrent = Some(1);
        let (decisions, retry) = decide(&q);
        assert_eq!(
            positions(&decisions),
            vec![None, Some((1, "AgentAtCapacity"))]
        );
        assert_eq!(retry, None);
    }
}
