//! Unit tests of the CronTask reconciler's plan.

use super::*;
use crate::api::TaskSpec;
use crate::api::cron_task::{CronTaskSpec, TaskTemplateMetadata, TaskTemplateSpec};

fn at(s: &str) -> Timestamp {
    s.parse().expect("test timestamps are valid")
}

/// Hourly; last run 09:00; now 10:00:30 (10:00 is due).
const NOW: &str = "2025-01-01T10:00:30Z";
const TEN: i64 = 1_735_725_600;

fn cron(policy: Option<ConcurrencyPolicy>, max: Option<i32>) -> CronTask {
    let template = TaskTemplateSpec {
        metadata: Some(TaskTemplateMetadata {
            labels: Some([("team".to_string(), "a".to_string())].into()),
            annotations: Some([("note".to_string(), "x".to_string())].into()),
        }),
        spec: TaskSpec {
            description: Some("review the open PRs".into()),
            ..Default::default()
        },
    };
    let spec = CronTaskSpec {
        schedule: "0 * * * *".into(),
        concurrency_policy: policy,
        max_retained_tasks: max,
        task_template: template,
        ..Default::default()
    };
    let mut cron = CronTask::new("nightly", spec);
    cron.metadata.namespace = Some("team".into());
    cron.metadata.uid = Some("uid-cron".into());
    cron.metadata.creation_timestamp = Some(Time(at("2025-01-01T00:00:00Z")));
    cron.status = Some(CronTaskStatus {
        last_schedule_time: Some(Time(at("2025-01-01T09:00:00Z"))),
        total_executions: Some(3),
        ..Default::default()
    });
    cron
}

fn child(name: &str, phase: TaskPhase, completed: Option<&str>) -> Child {
    Child {
        name: name.into(),
        uid: Some(format!("uid-{name}")),
        phase: Some(phase),
        created: Some(at("2025-01-01T08:00:00Z")),
        completed: completed.map(at),
        stopping: false,
    }
}

fn reasons(plan: &Plan) -> Vec<&str> {
    plan.notices.iter().map(|n| n.reason.as_str()).collect()
}

#[test]
fn a_due_run_creates_a_task_named_name_dash_unix_seconds() {
    let cron = cron(None, None);
    let plan = plan(&cron, &[], at(NOW));
    let run = plan.create.as_ref().expect("10:00 is due");
    assert_eq!(run.name, format!("nightly-{TEN}"));
    assert_eq!(run.name, child_name("nightly", at("2025-01-01T10:00:00Z")));
    assert!(plan.verdict.ok, "{:?}", plan.verdict);
    assert_eq!(plan.status.total_executions, Some(4));
    assert_eq!(
        plan.status.last_schedule_time,
        Some(Time(at("2025-01-01T10:00:00Z")))
    );
    assert_eq!(
        plan.status.next_schedule_time,
        Some(Time(at("2025-01-01T11:00:00Z")))
    );
    assert_eq!(plan.requeue_at, Some(at("2025-01-01T11:00:00Z")));
    assert_eq!(reasons(&plan), ["TaskCreated"]);

    let task = child_task(&cron, &run.name);
    assert_eq!(task.metadata.namespace.as_deref(), Some("team"));
    let labels = task.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get(CRONTASK_LABEL).map(String::as_str),
        Some("nightly")
    );
    assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    assert_eq!(
        task.annotations().get("note").map(String::as_str),
        Some("x")
    );
    let owner = &task.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("CronTask", "uid-cron")
    );
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    assert_eq!(task.spec, cron.spec.task_template.spec);
    assert!(is_child(&cron, &task));
    let found = cron_of_task(&task).expect("labelled");
    assert_eq!(
        (found.name.as_str(), found.namespace.as_deref()),
        ("nightly", Some("team"))
    );
}

#[test]
fn forbid_skips_the_run_while_a_child_is_active() {
    let mut cron = cron(None, None);
    let running = [child("nightly-1", TaskPhase::Running, None)];
    let plan = plan(&cron, &running, at(NOW));
    assert_eq!((plan.create.clone(), plan.stop.len()), (None, 0));
    assert!(!plan.verdict.ok);
    assert_eq!(plan.verdict.reason, "ConcurrencyForbidden");
    assert!(
        plan.verdict.message.contains("nightly-1"),
        "{}",
        plan.verdict.message
    );
    assert_eq!(
        plan.status.last_schedule_time,
        Some(Time(at("2025-01-01T09:00:00Z")))
    );
    assert_eq!(
        (plan.status.active, plan.status.total_executions),
        (Some(1), Some(3))
    );
    let refs = plan.status.active_refs.clone().unwrap_or_default();
    assert_eq!(refs[0].name.as_deref(), Some("nightly-1"));
    assert_eq!(refs[0].uid.as_deref(), Some("uid-nightly-1"));
    assert_eq!(refs[0].kind.as_deref(), Some("Task"));
    assert_eq!(reasons(&plan), ["ConcurrencyForbidden"]);
    // Events on transitions only.
    cron.status = Some(plan.status);
    assert!(super::plan(&cron, &running, at(NOW)).notices.is_empty());
}

#[test]
fn allow_creates_alongside_an_active_child() {
    let running = [child("nightly-1", TaskPhase::Running, None)];
    let plan = plan(
        &cron(Some(ConcurrencyPolicy::Allow), None),
        &running,
        at(NOW),
    );
    assert_eq!(plan.create.map(|r| r.name), Some(format!("nightly-{TEN}")));
    assert!(plan.stop.is_empty());
}

#[test]
fn replace_stops_the_active_children_and_creates() {
    let mut stopping = child("nightly-2", TaskPhase::Queued, None);
    stopping.stopping = true;
    let children = [child("nightly-1", TaskPhase::Running, None), stopping];
    let plan = plan(
        &cron(Some(ConcurrencyPolicy::Replace), None),
        &children,
        at(NOW),
    );
    assert_eq!(
        plan.stop,
        ["nightly-1"],
        "one already asked is not asked again"
    );
    assert!(plan.create.is_some());
    assert_eq!(reasons(&plan), ["Replacing", "TaskCreated"]);
}

#[test]
fn a_trigger_creates_a_task_now_and_clears_the_annotation() {
    let mut cron = cron(None, None);
    cron.annotations_mut()
        .insert(TRIGGER_ANNOTATION.into(), "true".into());
    let now = at("2025-01-01T09:30:30.250Z");
    let plan = plan(&cron, &[], now);
    assert!(plan.clear_trigger);
    let run = plan.create.expect("triggered");
    assert_eq!(run.name, format!("nightly-{}", now.as_second()));
    assert!(run.triggered);
    assert_eq!(
        plan.status.last_schedule_time,
        Some(Time(at("2025-01-01T09:30:30Z")))
    );
    assert_eq!(plan.status.total_executions, Some(4));

    // Forbid applies to triggers too: skipped, said so, and the annotation cleared.
    let running = [child("nightly-1", TaskPhase::Running, None)];
    let skipped = super::plan(&cron, &running, now);
    assert!(skipped.clear_trigger && skipped.create.is_none());
    assert_eq!(reasons(&skipped), ["TriggerSkipped"]);
    assert!(skipped.notices[0].warning);
}

#[test]
fn max_retained_deletes_the_oldest_finished_children() {
    let children = [
        child(
            "nightly-b",
            TaskPhase::Completed,
            Some("2025-01-01T08:10:00Z"),
        ),
        child("nightly-a", TaskPhase::Failed, Some("2025-01-01T07:10:00Z")),
        child(
            "nightly-c",
            TaskPhase::Completed,
            Some("2025-01-01T09:10:00Z"),
        ),
    ];
    let plan = plan(&cron(None, Some(3)), &children, at(NOW));
    let deleted: Vec<&str> = plan.delete.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(deleted, ["nightly-a"]);
    assert!(plan.create.is_some());
    assert_eq!(
        plan.status.last_successful_time,
        Some(Time(at("2025-01-01T09:10:00Z"))),
        "the newest Completed child"
    );
    assert_eq!(reasons(&plan), ["DeletingOldTasks", "TaskCreated"]);
}

#[test]
fn max_retained_skips_the_run_when_all_children_are_active() {
    let children = [
        child("nightly-1", TaskPhase::Running, None),
        child("nightly-2", TaskPhase::Pending, None),
    ];
    let plan = plan(
        &cron(Some(ConcurrencyPolicy::Allow), Some(2)),
        &children,
        at(NOW),
    );
    assert!(plan.create.is_none() && plan.delete.is_empty());
    assert_eq!(plan.verdict.reason, "MaxRetainedReached");
    assert!(
        plan.verdict.message.contains("maxRetainedTasks is 2"),
        "{}",
        plan.verdict.message
    );
    assert_eq!(reasons(&plan), ["MaxRetainedReached"]);
}

#[test]
fn suspended_and_invalid_create_nothing_and_wait_for_a_change() {
    let mut suspended = cron(None, None);
    suspended.spec.suspend = Some(true);
    suspended
        .annotations_mut()
        .insert(TRIGGER_ANNOTATION.into(), "true".into());
    let plan = plan(&suspended, &[], at(NOW));
    assert_eq!(plan.verdict.reason, "Suspended");
    assert!(
        plan.create.is_none() && !plan.clear_trigger,
        "the trigger waits"
    );
    assert_eq!(
        (plan.requeue_at, plan.status.next_schedule_time),
        (None, None)
    );

    let mut invalid = cron(None, None);
    invalid.spec.schedule = "61 * * * *".into();
    let plan = super::plan(&invalid, &[], at(NOW));
    assert_eq!(plan.verdict.reason, "ScheduleInvalid");
    assert!(
        plan.verdict
            .message
            .starts_with("spec.schedule \"61 * * * *\"")
    );
    assert_eq!((plan.create, plan.requeue_at), (None, None));
    let condition = &plan.status.conditions.unwrap_or_default()[0];
    assert_eq!(
        (condition.type_.as_str(), condition.status.as_str()),
        ("Scheduled", "False")
    );

    invalid.spec.schedule = "* * * * *".into();
    invalid.spec.time_zone = Some("Mars/Base".into());
    let plan = super::plan(&invalid, &[], at(NOW));
    assert!(
        plan.verdict
            .message
            .starts_with("spec.timeZone \"Mars/Base\"")
    );
}

#[test]
fn a_run_past_its_starting_deadline_is_missed() {
    let mut cron = cron(None, None);
    cron.spec.starting_deadline_seconds = Some(10);
    let plan = plan(&cron, &[], at(NOW));
    assert!(plan.create.is_none());
    assert_eq!(plan.verdict.reason, "Missed");
    assert_eq!(plan.requeue_at, Some(at("2025-01-01T11:00:00Z")));
    cron.spec.starting_deadline_seconds = Some(60);
    assert!(super::plan(&cron, &[], at(NOW)).create.is_some());
}

#[test]
fn the_task_of_a_due_time_is_never_created_twice() {
    let cron = cron(None, None);
    let made = [child(&format!("nightly-{TEN}"), TaskPhase::Pending, None)];
    let plan = plan(&cron, &made, at(NOW));
    assert!(plan.create.is_none());
    assert!(plan.verdict.ok, "{:?}", plan.verdict);
    assert_eq!(
        plan.status.last_schedule_time,
        Some(Time(at("2025-01-01T10:00:00Z")))
    );
    assert_eq!(plan.status.total_executions, Some(3));
}
