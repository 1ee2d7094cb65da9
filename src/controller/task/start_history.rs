//! The Agent's record of recent Task starts (`status.taskStartHistory`), which its quota counts.
//! Counting only the Tasks that still exist would let a deleted Task (by hand, by TTL or by
//! `maxRetainedTasks`) give its start back; the record on the Agent outlives the Task and the
//! controller's restarts, as upstream's does. It is written before the admitted Tasks are, so a
//! crash in between counts a start that did not happen rather than miss one that did.

use std::collections::HashSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use serde_json::json;

use super::ReconcileError;
use crate::api::agent::{Agent, QuotaConfig, TaskStartRecord};
use crate::controller::Context;
use crate::controller::agent::apply_status;

/// The field manager of `status.taskStartHistory`, apart from the Agent reconcile's, so the
/// Agent's own status writes (from a cache that may not have the newest record yet) never
/// replace it.
pub const FIELD_MANAGER: &str = "kubeoc-controller-task-queue";

/// Every start the quota counts: the recorded ones and those of the Agent's Tasks (one start
/// once, whole seconds, as the API stores times).
pub fn starts<'a>(
    recorded: &'a [TaskStartRecord],
    tasks: impl IntoIterator<Item = (&'a str, Timestamp)>,
) -> Vec<Timestamp> {
    let mut seen = HashSet::new();
    recorded
        .iter()
        .map(|r| (r.task_name.as_str(), r.start_time.0))
        .chain(tasks)
        .filter_map(|(name, at)| seen.insert((name, at.as_second())).then_some(at))
        .collect()
}

/// Both records as one (a start once): the Agent in the cache may not have this process's
/// newest write yet, and a record built on it alone would drop the starts written since.
pub fn union(cached: &[TaskStartRecord], written: &[TaskStartRecord]) -> Vec<TaskStartRecord> {
    let mut seen = HashSet::new();
    cached
        .iter()
        .chain(written)
        .filter(|r| seen.insert((r.task_name.as_str(), r.start_time.0.as_second())))
        .cloned()
        .collect()
}

/// The record after `admitted` start at `now`: the starts still inside the quota window, then
/// the new ones.
pub fn recorded(
    current: &[TaskStartRecord],
    quota: &QuotaConfig,
    namespace: &str,
    admitted: &[String],
    now: Timestamp,
) -> Vec<TaskStartRecord> {
    let window = SignedDuration::from_secs(i64::from(quota.window_seconds.max(1)));
    let since = now.checked_sub(window).unwrap_or(now);
    current
        .iter()
        .filter(|r| r.start_time.0 > since)
        .cloned()
        .chain(admitted.iter().map(|name| TaskStartRecord {
            task_name: name.clone(),
            task_namespace: namespace.to_string(),
            start_time: Time(now),
        }))
        .collect()
}

/// Applies the record to the Agent's status.
pub async fn write(
    ctx: &Context,
    agent: &Agent,
    record: &[TaskStartRecord],
) -> Result<(), ReconcileError> {
    let status = json!({"taskStartHistory": record});
    apply_status(&ctx.client, agent, FIELD_MANAGER, status)
        .await
        .map_err(|source| ReconcileError::Status {
            object: format!(
                "Agent {}/{}",
                agent.namespace().unwrap_or_default(),
                agent.name_any()
            ),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("a valid time")
    }

    fn record(name: &str, seconds: i64) -> TaskStartRecord {
        TaskStartRecord {
            task_name: name.into(),
            task_namespace: "team".into(),
            start_time: Time(at(seconds)),
        }
    }

    #[test]
    fn a_deleted_task_still_counts_and_a_live_one_counts_once() {
        let recorded = [record("gone", 100), record("live", 200)];
        // The live Task's status carries the sub-second time this process wrote.
        let live = at(200)
            .checked_add(SignedDuration::from_millis(400))
            .expect("a valid time");
        let mut all = starts(&recorded, [("live", live), ("new", at(300))]);
        all.sort();
        assert_eq!(all, vec![at(100), at(200), at(300)]);
    }

    #[test]
    fn a_recreated_task_of_the_same_name_counts_again() {
        let all = starts(&[record("t", 100)], [("t", at(500))]);
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn the_union_keeps_a_start_the_cache_has_not_seen_yet() {
        let cached = [record("a", 100)];
        let written = [record("a", 100), record("b", 110)];
        let both = union(&cached, &written);
        let names: Vec<&str> = both.iter().map(|r| r.task_name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn the_record_keeps_the_window_and_appends_the_admitted() {
        let quota = QuotaConfig {
            max_task_starts: 3,
            window_seconds: 60,
        };
        let current = [record("old", 100), record("recent", 150)];
        let next = recorded(&current, &quota, "team", &["a".into(), "b".into()], at(200));
        let names: Vec<&str> = next.iter().map(|r| r.task_name.as_str()).collect();
        assert_eq!(
            names,
            ["recent", "a", "b"],
            "the start at 100 left the window at 160"
        );
        assert!(next[1..].iter().all(|r| r.start_time.0 == at(200)));
        assert!(next.iter().all(|r| r.task_namespace == "team"));
    }
}
