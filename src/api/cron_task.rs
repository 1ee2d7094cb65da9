//! CronTask: creates Tasks on a cron schedule.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::conditions_schema;
use super::k8s;
use super::task::TaskSpec;
use super::{CelRule, add_rules};

/// Annotation that makes the controller create a Task right away when set to "true".
pub const TRIGGER_ANNOTATION: &str = "kubeopencode.io/trigger";

/// Longest accepted schedule string (bounds the CEL cost of the schedule rule; kubeoc
/// extension).
pub const MAX_SCHEDULE_LEN: u32 = 256;

/// CEL rules on the schedule string.
pub const SCHEDULE_RULES: &[CelRule] = &[CelRule {
    rule: r"self.matches('^\\s*\\S+(\\s+\\S+){4}\\s*$')",
    message: "schedule must have exactly 5 space-separated fields: minute hour day-of-month month day-of-week, e.g. \"0 9 * * 1-5\"",
    field_path: None,
    reason: Some("FieldValueInvalid"),
}];

fn schedule_rules(schema: &mut schemars::Schema) {
    add_rules(schema, SCHEDULE_RULES);
}

/// CronTask spec: when to run, and the Task to create each time.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeopencode.io",
    version = "v1alpha1",
    kind = "CronTask",
    namespaced,
    status = "CronTaskStatus",
    shortname = "ct",
    derive = "PartialEq",
    derive = "Default",
    doc = "CronTask creates a Task from its taskTemplate on a cron schedule, like a CronJob creates Jobs. Child Tasks are named <name>-<unix time>. Trigger a run now with the annotation kubeopencode.io/trigger=\"true\".",
    printcolumn = r#"{"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"}"#,
    printcolumn = r#"{"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend"}"#,
    printcolumn = r#"{"name": "Active", "type": "integer", "jsonPath": ".status.active", "priority": 1}"#,
    printcolumn = r#"{"name": "Last Schedule", "type": "date", "jsonPath": ".status.lastScheduleTime"}"#,
    printcolumn = r#"{"name": "Next Schedule", "type": "date", "jsonPath": ".status.nextScheduleTime", "priority": 1}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CronTaskSpec {
    /// Standard 5-field cron schedule: minute hour day-of-month month day-of-week, e.g.
    /// "0 9 * * 1-5" (weekdays at 09:00) or "*/30 * * * *".
    #[schemars(length(max = MAX_SCHEDULE_LEN), transform = schedule_rules)]
    pub schedule: String,
    /// IANA time zone of the schedule, e.g. "Europe/Berlin". Default UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// What to do when a run is due while the previous Task is still active: Allow (run
    /// both), Forbid (skip the new run; default) or Replace (stop the old Task, start anew).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Forbid"))]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// When true no new runs are started; running Tasks continue. Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Seconds after a missed scheduled time within which the run may still start; later
    /// runs are skipped. Unset: no deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,
    /// Most child Tasks (in any phase) that may exist: before a run, the oldest finished ones
    /// are deleted to make room; while every one is still active, runs are skipped. At least
    /// 1; default 10.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), extend("default" = 10))]
    pub max_retained_tasks: Option<i32>,
    /// The Task to create on each run.
    pub task_template: TaskTemplateSpec,
}

/// What to do when a run is due and the previous Task is still active.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
// The field documents the allowed values; an empty schema description keeps kube's
// Option<enum> rewrite from replacing the field's description with this type's.
#[schemars(description = "")]
pub enum ConcurrencyPolicy {
    /// Run concurrently.
    Allow,
    /// Skip the new run.
    Forbid,
    /// Stop the active Task and start the new one.
    Replace,
}

/// Template of the Tasks a CronTask creates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskTemplateSpec {
    /// Labels and annotations for the created Tasks (other metadata is not supported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TaskTemplateMetadata>,
    /// Spec of the created Tasks. Exactly one of agentRef and templateRef.
    pub spec: TaskSpec,
}

/// Labels and annotations copied onto created Tasks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskTemplateMetadata {
    /// Labels of created Tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations of created Tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Observed state of a CronTask, written by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronTaskStatus {
    /// Number of active (Pending, Queued or Running) child Tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<i32>,
    /// The active child Tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "k8s::object_references")]
    pub active_refs: Option<Vec<ObjectReference>>,
    /// When a Task was last created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When a child Task last reached phase Completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// The next scheduled run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// Number of Tasks created since the CronTask was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_executions: Option<i64>,
    /// Conditions of the CronTask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}
