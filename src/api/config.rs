//! KubeOpenCodeConfig: the cluster-scoped singleton `cluster` with system-wide settings.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::SecretKeySelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::ProxyConfig;
use super::k8s;
use super::{CelRule, add_rules};

/// Name of the only KubeOpenCodeConfig the controller reads.
pub const CONFIG_NAME: &str = "cluster";

/// Default cluster domain when none is configured.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// Upper bound on OpenTelemetry headers (bounds the CEL cost estimate; kubeoc extension).
pub const MAX_OTEL_HEADERS: u32 = 64;

/// CEL rule on the KubeOpenCodeConfig root: the singleton is named `cluster`.
pub const CONFIG_NAME_RULE: CelRule = CelRule {
    rule: "self.metadata.name == 'cluster'",
    message: "metadata.name must be 'cluster': KubeOpenCodeConfig is a singleton",
    field_path: None,
    reason: None,
};

/// CEL rules on openTelemetry.
pub const OPEN_TELEMETRY_RULES: &[CelRule] = &[CelRule {
    rule: "!self.enabled || (has(self.endpoint) && size(self.endpoint) > 0)",
    message: "endpoint is required when enabled is true: give the OTLP/HTTP collector URL, e.g. http://otel-collector.observability:4318",
    field_path: Some(".endpoint"),
    reason: Some("FieldValueRequired"),
}];

/// CEL rules on each OpenTelemetry header value.
pub const OTEL_HEADER_RULES: &[CelRule] = &[CelRule {
    rule: "(has(self.value) && self.value != '') || (has(self.valueFrom) && has(self.valueFrom.secretKeyRef))",
    message: "a header needs a non-empty value or valueFrom.secretKeyRef",
    field_path: None,
    reason: Some("FieldValueRequired"),
}];

fn open_telemetry_rules(schema: &mut schemars::Schema) {
    add_rules(schema, OPEN_TELEMETRY_RULES);
}

fn otel_header_rules(schema: &mut schemars::Schema) {
    add_rules(schema, OTEL_HEADER_RULES);
}

/// KubeOpenCodeConfig spec: cluster-wide settings of the controller.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeopencode.io",
    version = "v1alpha1",
    kind = "KubeOpenCodeConfig",
    shortname = "ktc",
    derive = "PartialEq",
    derive = "Default",
    doc = "KubeOpenCodeConfig holds cluster-wide settings (cluster domain, Task cleanup, proxy, system image, telemetry). It is cluster-scoped and a singleton: the controller reads only the one named \"cluster\".",
    validation = Rule::new(CONFIG_NAME_RULE.rule).message(CONFIG_NAME_RULE.message),
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KubeOpenCodeConfigSpec {
    /// DNS domain of the cluster, used in the in-cluster URLs of agents
    /// (http://<agent>.<namespace>.svc.<clusterDomain>:<port>). Default "cluster.local".
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), pattern(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$"))]
    pub cluster_domain: Option<String>,
    /// Automatic deletion of finished Tasks. Unset: finished Tasks are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<CleanupConfig>,
    /// Cluster-wide HTTP(S) proxy for generated Pods; an Agent's own proxy wins. Unset: no
    /// proxy variables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
    /// Image used for the controller's helper containers (git clone, context files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_image: Option<SystemImageConfig>,
    /// OpenTelemetry export from agent Pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observability: Option<ObservabilityConfig>,
}

/// Cleanup of finished (Completed or Failed) Tasks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CleanupConfig {
    /// Delete finished Tasks this many seconds after their completionTime. Unset: no
    /// time-based cleanup.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i32>,
    /// Keep at most this many finished Tasks per namespace, deleting the oldest first. Unset:
    /// no count-based cleanup.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_retained_tasks: Option<i32>,
}

/// Image of the controller's helper containers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemImageConfig {
    /// Image reference. Default: kubeoc's built-in git+sh image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Always, Never or IfNotPresent (default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
}

/// Image pull policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
// The field documents the allowed values; an empty schema description keeps kube's
// Option<enum> rewrite from replacing the field's description with this type's.
#[schemars(description = "")]
pub enum PullPolicy {
    /// Pull on every start.
    Always,
    /// Never pull; the image must be on the node.
    Never,
    /// Pull when missing on the node.
    IfNotPresent,
}

/// Observability settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservabilityConfig {
    /// OpenTelemetry export (OTLP/HTTP) from OpenCode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_telemetry: Option<OpenTelemetryConfig>,
}

/// OpenTelemetry settings injected into agent Pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = open_telemetry_rules)]
pub struct OpenTelemetryConfig {
    /// Turns telemetry on (OTEL_EXPORTER_OTLP_ENDPOINT and friends are injected). Requires
    /// endpoint.
    pub enabled: bool,
    /// OTLP/HTTP collector URL (port 4318, not gRPC 4317), e.g.
    /// http://otel-collector.observability:4318. Must start with http:// or https://.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^https?://.+$"))]
    pub endpoint: Option<String>,
    /// Headers sent to the collector (e.g. API keys), inline or from a Secret. At most 64.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = MAX_OTEL_HEADERS))]
    pub headers: Option<BTreeMap<String, OtelHeaderValue>>,
    /// Extra resource attributes on all spans (task, agent, namespace and pod attributes
    /// are added automatically).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_attributes: Option<BTreeMap<String, String>>,
    /// Record full prompts and responses on LLM spans. May expose secrets and code; default
    /// false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_content: Option<bool>,
    /// Also trace every LLM call (OpenCode's experimental.openTelemetry). Requires endpoint.
    #[serde(rename = "enableLLMTraces", skip_serializing_if = "Option::is_none")]
    pub enable_llm_traces: Option<bool>,
}

/// A collector header value: inline, or from a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = otel_header_rules)]
pub struct OtelHeaderValue {
    /// Inline value, for non-secret values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Source of a secret value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<OtelHeaderValueSource>,
}

/// Where a secret header value comes from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtelHeaderValueSource {
    /// Key of a Secret in the controller's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "k8s::secret_key_selector")]
    pub secret_key_ref: Option<SecretKeySelector>,
}
