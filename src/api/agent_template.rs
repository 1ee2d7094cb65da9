//! AgentTemplate: shared base configuration that Agents (templateRef) and Tasks (templateRef)
//! build on.

use k8s_openapi::api::core::v1::LocalObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::agent::{
    AgentPodSpec, CaBundleConfig, Credential, ExtraPort, MAX_CREDENTIALS, MAX_SKILLS, PluginSpec,
    QuotaConfig, SkillSource,
};
use super::common::{ProxyConfig, conditions_schema, preserve_unknown_fields};
use super::context::{ContextItem, MAX_CONTEXTS};
use super::k8s;

/// AgentTemplate spec: the settings Agents inherit. An Agent's own fields override these
/// (scalars when non-empty, lists by replacement).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeopencode.io",
    version = "v1alpha1",
    kind = "AgentTemplate",
    namespaced,
    status = "AgentTemplateStatus",
    shortname = "agt",
    derive = "PartialEq",
    derive = "Default",
    doc = "AgentTemplate is a reusable base configuration (images, workspace, ServiceAccount, contexts, credentials, ...) for Agents that reference it with templateRef, and the blueprint for Tasks that run with templateRef in a Pod of their own.",
    printcolumn = r#"{"name": "Image", "type": "string", "jsonPath": ".spec.executorImage", "priority": 1}"#,
    printcolumn = r#"{"name": "WorkspaceDir", "type": "string", "jsonPath": ".spec.workspaceDir", "priority": 1}"#,
    printcolumn = r#"{"name": "ServiceAccount", "type": "string", "jsonPath": ".spec.serviceAccountName"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AgentTemplateSpec {
    /// Image of the `opencode-init` init container, which copies the OpenCode binary into
    /// /tools. Default ghcr.io/kubeopencode/kubeopencode-agent-opencode:latest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_image: Option<String>,
    /// Image of the container the agent works in. Default
    /// ghcr.io/kubeopencode/kubeopencode-agent-devbox:latest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor_image: Option<String>,
    /// Small image with the OpenCode binary for the Pods of agentRef Tasks. Default
    /// ghcr.io/kubeopencode/kubeopencode-agent-attach:latest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attach_image: Option<String>,
    /// Absolute working directory in the agent container (must start with "/"); exported as
    /// WORKSPACE_DIR. Required.
    #[schemars(length(min = 1), pattern(r"^/.*"))]
    pub workspace_dir: String,
    /// Entrypoint override for the agent container. Rarely needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// ServiceAccount (same namespace) of the Pods of derived Agents and Tasks. Required.
    pub service_account_name: String,
    /// Default contexts for Agents and Tasks derived from this template. At most 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_CONTEXTS))]
    pub contexts: Option<Vec<ContextItem>>,
    /// Git repositories of skills for derived Agents. At most 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_SKILLS))]
    pub skills: Option<Vec<SkillSource>>,
    /// OpenCode plugins (npm packages) for derived Agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Vec<PluginSpec>>,
    /// Inline OpenCode configuration (opencode.json content), kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_fields")]
    pub config: Option<serde_json::Value>,
    /// Secrets exposed as environment variables or files. At most 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_CREDENTIALS))]
    pub credentials: Option<Vec<Credential>>,
    /// Advanced Pod settings: labels, scheduling, resources, security contexts, extra volumes
    /// and environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_spec: Option<AgentPodSpec>,
    /// Default limit on concurrently running Tasks per derived Agent. Unset or 0: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_tasks: Option<i32>,
    /// Default rate limit on Task starts for derived Agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaConfig>,
    /// Extra CA certificates (PEM) trusted by every container. Exactly one of configMapRef
    /// or secretRef.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundleConfig>,
    /// HTTP(S) proxy for every container; overrides the cluster-wide proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
    /// Secrets for pulling images from private registries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "k8s::local_object_references")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Default extra ports for derived Agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_ports: Option<Vec<ExtraPort>>,
}

/// Observed state of an AgentTemplate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentTemplateStatus {
    /// metadata.generation of the spec this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions of the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}
