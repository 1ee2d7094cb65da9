//! Task: one prompt run by an Agent (agentRef) or in a Pod built from an AgentTemplate
//! (templateRef).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{AgentReference, AgentTemplateReference, conditions_schema};
use super::context::{ContextItem, MAX_CONTEXTS};
use super::{CelRule, add_rules};

/// Annotation that stops a running Task when set to "true".
pub const STOP_ANNOTATION: &str = "kubeopencode.io/stop";

/// CEL rules on a Task spec (also on a CronTask's taskTemplate.spec): exactly one target.
pub const TASK_SPEC_RULES: &[CelRule] = &[
    CelRule {
        rule: "has(self.agentRef) || has(self.templateRef)",
        message: "exactly one of agentRef or templateRef must be set: agentRef runs on a running Agent, templateRef in a Pod of its own",
        field_path: None,
        reason: Some("FieldValueRequired"),
    },
    CelRule {
        rule: "!(has(self.agentRef) && has(self.templateRef))",
        message: "exactly one of agentRef or templateRef must be set, not both: agentRef runs on a running Agent, templateRef in a Pod of its own",
        field_path: None,
        reason: Some("FieldValueForbidden"),
    },
];

fn task_spec_rules(schema: &mut schemars::Schema) {
    add_rules(schema, TASK_SPEC_RULES);
}

/// Task spec: what to do (description) and who does it (agentRef or templateRef).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeopencode.io",
    version = "v1alpha1",
    kind = "Task",
    namespaced,
    status = "TaskStatus",
    shortname = "tk",
    derive = "PartialEq",
    derive = "Default",
    doc = "Task is one prompt for an AI agent: it runs on a running Agent (agentRef) or in a Pod of its own built from an AgentTemplate (templateRef). Stop it with the annotation kubeopencode.io/stop=\"true\".",
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Agent", "type": "string", "jsonPath": ".status.agentRef.name"}"#,
    printcolumn = r#"{"name": "Template", "type": "string", "jsonPath": ".status.templateRef.name", "priority": 1}"#,
    printcolumn = r#"{"name": "Pod", "type": "string", "jsonPath": ".status.podName"}"#,
    printcolumn = r#"{"name": "Queue", "type": "integer", "jsonPath": ".status.queuePosition", "priority": 1, "description": "Position in the agent's queue while Queued (kubeoc extension)"}"#,
    printcolumn = r#"{"name": "Tokens In", "type": "integer", "jsonPath": ".status.session.summary.tokenUsage.input", "priority": 1, "description": "Input tokens of the Task's session (kubeoc extension)"}"#,
    printcolumn = r#"{"name": "Tokens Out", "type": "integer", "jsonPath": ".status.session.summary.tokenUsage.output", "priority": 1, "description": "Output tokens of the Task's session (kubeoc extension)"}"#,
    printcolumn = r#"{"name": "Started", "type": "date", "jsonPath": ".status.startTime", "priority": 1, "description": "When the Task entered phase Running"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = task_spec_rules)]
pub struct TaskSpec {
    /// The Agent (same namespace) that runs this Task through its OpenCode server. Exactly one
    /// of agentRef and templateRef.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_ref: Option<AgentReference>,
    /// The AgentTemplate (same namespace) from which a Pod of its own is built to run this
    /// Task. Exactly one of agentRef and templateRef.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<AgentTemplateReference>,
    /// The prompt: what the agent should do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Extra contexts for this Task, after the Agent's or template's (later ones win on equal
    /// names). At most 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_CONTEXTS))]
    pub contexts: Option<Vec<ContextItem>>,
    /// Longest run time, as a duration such as "30m" or "2h30m", counted from the start of
    /// phase Running (queue time excluded). When exceeded the Task is stopped: phase Completed
    /// with condition Stopped, reason Timeout. Unset: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Observed state of a Task, written by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// metadata.generation of the spec this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Queued (waiting for capacity, quota or a suspended agent), Running, Completed
    /// or Failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<TaskPhase>,
    /// 1-based position among the agent's Queued Tasks (first come, first served); unset
    /// when not queued (kubeoc extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<i32>,
    /// The Agent the Task ran on (agentRef Tasks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_ref: Option<AgentReference>,
    /// The AgentTemplate the Task's Pod was built from (templateRef Tasks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<AgentTemplateReference>,
    /// Name of the Task's Pod, `<name>-pod`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// When the Task entered phase Running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the Task finished (Completed or Failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The final answer of the agent (first 4 KiB of its last message) once Completed
    /// (kubeoc extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The OpenCode session that ran the Task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionInfo>,
    /// Conditions: Queued (True while waiting, reason AgentSuspended, AgentServerNotReady,
    /// AgentAtCapacity, QuotaExceeded or AgentNotFound), Stopped (reason UserStopped or
    /// Timeout), Complete (phase Completed) and Failed (phase Failed, reason ModelError,
    /// PodDeleted, PodFailed, Aborted, AgentNotFound or InvalidSpec, with the message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}

/// Lifecycle phase of a Task.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
// The field documents the allowed values; an empty schema description keeps kube's
// Option<enum> rewrite from replacing the field's description with this type's.
#[schemars(description = "")]
pub enum TaskPhase {
    /// Created, not yet admitted.
    Pending,
    /// Waiting for the agent (capacity, quota, or a suspended agent).
    Queued,
    /// The agent is working on it.
    Running,
    /// Finished (also when stopped or timed out; see the Stopped condition).
    Completed,
    /// Finished with an error.
    Failed,
}

impl TaskPhase {
    /// Whether the Task has finished (Completed or Failed).
    pub fn is_finished(self) -> bool {
        matches!(self, TaskPhase::Completed | TaskPhase::Failed)
    }
}

/// The OpenCode session of a Task.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// OpenCode session ID, e.g. "ses_ff34a1b2...".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Session title, `kubeopencode/<namespace>/<task>/<uid8>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Statistics of the session, set when the Task completes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<SessionSummary>,
}

/// Statistics of a finished session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    /// Number of messages in the session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_count: Option<i32>,
    /// Number of files changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_changed: Option<i32>,
    /// Lines added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additions: Option<i32>,
    /// Lines deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletions: Option<i32>,
    /// Estimated cost in USD, as a decimal string to keep precision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// Tokens used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_usage: Option<TokenUsage>,
}

/// Token counts of a session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    /// Input tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<i64>,
    /// Output tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<i64>,
    /// Reasoning tokens (models that reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<i64>,
    /// Tokens served from the cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<i64>,
}
