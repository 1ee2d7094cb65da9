//! Agent: a long-running OpenCode server in the cluster, plus the configuration pieces that
//! Agent and AgentTemplate share (credentials, skills, plugins, pod settings, ...).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, Lifecycle, LocalObjectReference, PodSecurityContext, ResourceRequirements,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    AgentTemplateReference, ProxyConfig, SecretReference, conditions_schema, plain_integer,
    preserve_unknown_fields,
};
use super::context::{ContextItem, MAX_CONTEXTS};
use super::k8s;
use super::{CelRule, add_rules};

/// Set by `kubectl kubeoc agent attach` to the time (RFC 3339) while someone is attached, and
/// renewed every [`ATTACH_HEARTBEAT_INTERVAL`]: standby does not suspend an Agent whose
/// heartbeat is younger than two intervals, however quiet the chat.
pub const ATTACH_HEARTBEAT_ANNOTATION: &str = "kubeopencode.io/attach-heartbeat";

/// How often an attached terminal renews [`ATTACH_HEARTBEAT_ANNOTATION`].
pub const ATTACH_HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Longest Agent name: the controller names a PersistentVolumeClaim and other children
/// `<name>-server-workspace`, which must stay a DNS-1035 label of at most 63 characters.
pub const MAX_AGENT_NAME_LEN: usize = 63 - "-server-workspace".len();

/// CEL rule on the Agent root: the name leaves room for the children's suffixes.
pub const AGENT_NAME_RULE: CelRule = CelRule {
    rule: "size(self.metadata.name) <= 46",
    message: "metadata.name must be at most 46 characters: the agent's Service, Deployment and PVC names (<name>-server-workspace) must be DNS-1035 labels of at most 63 characters",
    field_path: None,
    reason: None,
};

/// Upper bound on credentials per Agent/AgentTemplate (bounds the CEL cost estimate; kubeoc
/// extension).
pub const MAX_CREDENTIALS: u32 = 100;
/// Upper bound on skill sources per Agent/AgentTemplate (bounds the CEL cost estimate; kubeoc
/// extension).
pub const MAX_SKILLS: u32 = 100;

/// CEL rules on each credential.
pub const CREDENTIAL_RULES: &[CelRule] = &[CelRule {
    rule: "!has(self.env) || has(self.secretRef.key)",
    message: "env needs secretRef.key: a single Secret key becomes the variable; without a key the whole Secret is exposed (as env vars, or as files with mountPath)",
    field_path: Some(".env"),
    reason: Some("FieldValueInvalid"),
}];

/// CEL rules on caBundle: exactly one source.
pub const CA_BUNDLE_RULES: &[CelRule] = &[
    CelRule {
        rule: "has(self.configMapRef) || has(self.secretRef)",
        message: "caBundle needs exactly one source: set configMapRef or secretRef",
        field_path: None,
        reason: Some("FieldValueRequired"),
    },
    CelRule {
        rule: "!(has(self.configMapRef) && has(self.secretRef))",
        message: "caBundle needs exactly one source: set configMapRef or secretRef, not both",
        field_path: None,
        reason: Some("FieldValueForbidden"),
    },
];

/// CEL rules on each skill source.
pub const SKILL_RULES: &[CelRule] = &[CelRule {
    rule: "has(self.git)",
    message: "git is required: a skill source is a Git repository (git.repository)",
    field_path: Some(".git"),
    reason: Some("FieldValueRequired"),
}];

fn credential_rules(schema: &mut schemars::Schema) {
    add_rules(schema, CREDENTIAL_RULES);
}

fn ca_bundle_rules(schema: &mut schemars::Schema) {
    add_rules(schema, CA_BUNDLE_RULES);
}

fn skill_rules(schema: &mut schemars::Schema) {
    add_rules(schema, SKILL_RULES);
}

/// Agent spec: how to run the agent's OpenCode server and what it gets to work with.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeopencode.io",
    version = "v1alpha1",
    kind = "Agent",
    namespaced,
    status = "AgentStatus",
    shortname = "ag",
    derive = "PartialEq",
    derive = "Default",
    doc = "Agent is an AI coding agent running as a long-lived OpenCode server in the cluster. The controller creates a Deployment `<name>-server`, a Service `<name>` and, with persistence, PersistentVolumeClaims; Tasks with agentRef run on it, and `kubectl kubeoc agent attach` talks to it.",
    validation = Rule::new(AGENT_NAME_RULE.rule).message(AGENT_NAME_RULE.message),
    printcolumn = r#"{"name": "Profile", "type": "string", "jsonPath": ".spec.profile", "priority": 1}"#,
    printcolumn = r#"{"name": "Image", "type": "string", "jsonPath": ".spec.executorImage", "priority": 1}"#,
    printcolumn = r#"{"name": "ServiceAccount", "type": "string", "jsonPath": ".spec.serviceAccountName"}"#,
    printcolumn = r#"{"name": "MaxTasks", "type": "integer", "jsonPath": ".spec.maxConcurrentTasks", "priority": 1}"#,
    printcolumn = r#"{"name": "Ready", "type": "boolean", "jsonPath": ".status.ready"}"#,
    printcolumn = r#"{"name": "Status", "type": "string", "jsonPath": ".status.phase", "description": "Ready, NotReady, Suspended or Degraded (kubeoc extension)"}"#,
    printcolumn = r#"{"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1, "description": "In-cluster URL of the agent's OpenCode server"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// AgentTemplate (same namespace) to inherit configuration from. Fields set here override
    /// the template's: scalars when non-empty, lists by replacement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<AgentTemplateReference>,
    /// One-line summary of what this agent is for. Shown by `get -o wide`; no effect on
    /// behaviour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Image of the `opencode-init` init container, which copies the OpenCode binary into
    /// /tools. Default ghcr.io/kubeopencode/kubeopencode-agent-opencode:latest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_image: Option<String>,
    /// Image of the container the agent works in (its tools, languages, shell). Default
    /// ghcr.io/kubeopencode/kubeopencode-agent-devbox:latest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor_image: Option<String>,
    /// Small image with the OpenCode binary for the Pods of agentRef Tasks, which run
    /// `opencode run --attach` against this agent. Default
    /// ghcr.io/kubeopencode/kubeopencode-agent-attach:latest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attach_image: Option<String>,
    /// Absolute working directory in the agent container (where repositories and context files
    /// go); exported as WORKSPACE_DIR. Must start with "/". Inherited from the template when
    /// unset; an Agent without one after the merge is reported with condition Ready=False,
    /// reason InvalidSpec.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^/.*"))]
    pub workspace_dir: Option<String>,
    /// Entrypoint override for the agent container. Rarely needed; the default runs the
    /// OpenCode server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// ServiceAccount (same namespace) of the agent's Pods; its RBAC decides what the agent
    /// may do in the cluster. Inherited from the template when unset; an Agent without one
    /// after the merge is reported with condition Ready=False, reason InvalidSpec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Default contexts for every Task on this agent (lowest priority: Task contexts and the
    /// Task description come after). At most 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_CONTEXTS))]
    pub contexts: Option<Vec<ContextItem>>,
    /// Git repositories of skills (folders with a SKILL.md) made available to OpenCode.
    /// Replaces the template's list when set. At most 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_SKILLS))]
    pub skills: Option<Vec<SkillSource>>,
    /// OpenCode plugins (npm packages) to install and load. An init container `plugin-init`
    /// installs them with `npm install` into a volume at /plugins (point it at a private
    /// registry with npm_config_registry in podSpec.extraEnv or
    /// podSpec.systemContainers.pluginInit.extraEnv); OpenCode loads each from
    /// file:///plugins/node_modules/<package>. Replaces the template's list when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Vec<PluginSpec>>,
    /// Inline OpenCode configuration (the content of opencode.json, see
    /// https://opencode.ai/config.json), e.g. {model: anthropic/claude-sonnet-4}. Stored as
    /// written; the controller hands it to OpenCode through OPENCODE_CONFIG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_fields")]
    pub config: Option<serde_json::Value>,
    /// Secrets exposed to the agent as environment variables or files (API keys, tokens, SSH
    /// keys). Replaces the template's list when set. At most 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_CREDENTIALS))]
    pub credentials: Option<Vec<Credential>>,
    /// Advanced Pod settings: labels, scheduling, resources, security contexts, extra volumes
    /// and environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_spec: Option<AgentPodSpec>,
    /// Most Tasks running on this agent at once; further Tasks wait in phase Queued (first
    /// come, first served). Unset or 0: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_tasks: Option<i32>,
    /// Rate limit on Task starts over a sliding window; Tasks over the limit wait in phase
    /// Queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaConfig>,
    /// Extra CA certificates (PEM) trusted by every container, for Git, URL and model
    /// endpoints behind private CAs. Exactly one of configMapRef or secretRef.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundleConfig>,
    /// HTTP(S) proxy for every container; overrides the cluster-wide proxy of
    /// KubeOpenCodeConfig.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
    /// Secrets (type kubernetes.io/dockerconfigjson, same namespace) for pulling the agent's
    /// images from private registries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "k8s::local_object_references")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Port of the OpenCode server in the Pod and on the Service (named "http"), 1-65535.
    /// Default 4096.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535), extend("default" = 4096))]
    pub port: Option<i32>,
    /// Additional ports opened on the agent container and its Service, e.g. for a dev server
    /// or VS Code running in the workspace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_ports: Option<Vec<ExtraPort>>,
    /// Persistent volumes for session history and for the workspace, so both survive Pod
    /// restarts. kubeoc always creates the sessions PVC (1Gi unless set here); without
    /// `workspace` the workspace is an emptyDir.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistence: Option<PersistenceConfig>,
    /// When true the agent's Deployment is scaled to 0; volumes and the Service stay, and new
    /// Tasks wait in phase Queued until it is resumed. Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Automatic suspend after an idle period, and resume when a Task arrives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby: Option<StandbyConfig>,
    /// Shareable terminal link for people without cluster access.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<ShareConfig>,
}

/// Where to find extra CA certificates. Exactly one of configMapRef and secretRef.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = ca_bundle_rules)]
pub struct CaBundleConfig {
    /// ConfigMap with the PEM bundle (compatible with cert-manager trust-manager Bundles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<CaBundleReference>,
    /// Secret with the PEM bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<CaBundleReference>,
}

/// A ConfigMap or Secret key holding PEM-encoded CA certificates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaBundleReference {
    /// Name of the ConfigMap or Secret (same namespace).
    pub name: String,
    /// Key holding the bundle. Default "ca-bundle.crt" for a ConfigMap, "ca.crt" for a
    /// Secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A Secret made available to the agent. Without secretRef.key: the whole Secret, as
/// environment variables (no mountPath) or as a directory of files (mountPath). With
/// secretRef.key: that key, as the variable named by env or as the file at mountPath.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = credential_rules)]
pub struct Credential {
    /// Descriptive name of this credential (documentation and error messages).
    pub name: String,
    /// The Secret (same namespace) and optionally one of its keys.
    pub secret_ref: SecretKeyReference,
    /// Directory (whole Secret) or file path (one key) to mount the Secret at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    /// Environment variable that receives the value of secretRef.key. Requires
    /// secretRef.key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Permission bits of mounted files, e.g. 256 (0400) for SSH keys. Only with mountPath.
    /// Default 384 (0600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<i32>,
}

/// A Secret in the same namespace and optionally one of its keys.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyReference {
    /// Name of the Secret.
    pub name: String,
    /// Key to use. Unset: the whole Secret (every key becomes an env var, or a file when
    /// mountPath is set) and env is not allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A Git repository of skills: one folder per skill, each with a SKILL.md.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = skill_rules)]
pub struct SkillSource {
    /// Unique name of this source: a DNS label (lowercase letters, digits, '-'; at most 63).
    /// Used for the mount path /skills/<name> and in logs.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"))]
    pub name: String,
    /// The repository holding the skills. Required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git: Option<SkillGitSource>,
}

/// Where in a Git repository the skills are.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkillGitSource {
    /// Repository URL (https://, http:// or SSH such as git@github.com:org/repo.git).
    pub repository: String,
    /// Branch, tag or commit to check out. Default "HEAD".
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "HEAD"))]
    pub ref_: Option<String>,
    /// Directory in the repository that holds the skill folders, e.g. "skills/". Default:
    /// the repository root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Only these skill folders under path (plain folder names, no '/' or '..'). Unset: all
    /// skills found.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(
        inner(length(min = 1, max = 253), pattern(r"^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$")),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub names: Option<Vec<String>>,
    /// Clone depth: 1 (default) is a shallow clone, 0 the full history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain_integer", extend("default" = 1))]
    pub depth: Option<i64>,
    /// Also clone submodules, recursively. Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurse_submodules: Option<bool>,
    /// Secret with Git credentials: "username" and "password" for HTTPS, or
    /// "ssh-privatekey" for SSH. Unset: anonymous clone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
}

/// An OpenCode plugin installed from the npm registry. Server plugins are added to the
/// `plugin` list of the generated opencode.json after the entries of spec.config, which are
/// kept as written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginSpec {
    /// npm package specifier: "pkg", "pkg@1.2.3", "@scope/pkg" or "@scope/pkg@^1.0.0" (git
    /// URLs, tarballs and paths are not supported). Each package at most once per target.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Options passed to the plugin function as its second argument: a JSON object, as the
    /// plugin defines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_fields")]
    pub options: Option<serde_json::Value>,
    /// Which OpenCode runtime loads the plugin: "server" (default: `opencode serve`, the
    /// agent's server) or "tui" (the terminal UI: installed too, listed in /tools/tui.json,
    /// OPENCODE_TUI_CONFIG, which `opencode attach` run inside the server container loads; the
    /// server itself does not load TUI plugins).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "server"))]
    pub target: Option<PluginTarget>,
}

/// OpenCode runtime a plugin is loaded into.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
// The field documents the allowed values; an empty schema description keeps kube's
// Option<enum> rewrite from replacing the field's description with this type's.
#[schemars(description = "")]
pub enum PluginTarget {
    /// The server (`opencode serve`).
    Server,
    /// The terminal UI.
    Tui,
}

/// Rate limit on Task starts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaConfig {
    /// Most Task starts allowed within the window; at least 1.
    #[schemars(range(min = 1))]
    pub max_task_starts: i32,
    /// Length of the sliding window in seconds, 60 to 86400 (one minute to one day).
    #[schemars(range(min = 60, max = 86400))]
    pub window_seconds: i32,
}

/// An extra port on the agent container and its Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtraPort {
    /// Port name on the Service (1-15 characters), unique among the agent's ports ("http" is
    /// the OpenCode server's).
    #[schemars(length(min = 1, max = 15))]
    pub name: String,
    /// Port number, 1-65535, used on both the container and the Service.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// TCP (default) or UDP.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "TCP"))]
    pub protocol: Option<PortProtocol>,
}

/// Transport protocol of an extra port.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
// The field documents the allowed values; an empty schema description keeps kube's
// Option<enum> rewrite from replacing the field's description with this type's.
#[schemars(description = "")]
pub enum PortProtocol {
    /// TCP.
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
}

/// Persistent storage of an Agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistenceConfig {
    /// Volume for OpenCode's session database, so conversations survive restarts: PVC
    /// `<name>-server-sessions` mounted at /data/sessions. Default size 1Gi.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<VolumePersistence>,
    /// Volume for workspaceDir (cloned repositories, edited files): PVC
    /// `<name>-server-workspace`. Default size 10Gi.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<VolumePersistence>,
}

/// Size and class of a PersistentVolumeClaim.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumePersistence {
    /// StorageClass of the claim. Unset: the cluster's default StorageClass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Requested size as a quantity such as "1Gi". Default 1Gi for sessions, 10Gi for the
    /// workspace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}

/// Automatic suspend and resume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StandbyConfig {
    /// Idle time after which the controller sets spec.suspend to true, as a Go duration such
    /// as "30m" or "1h". Idle means no running or queued Tasks and (kubeoc extension) no
    /// session activity on the server, so a person chatting through `kubectl kubeoc agent
    /// attach` keeps it running. A new Task resumes the agent.
    #[schemars(pattern(crate::api::common::GO_DURATION_PATTERN))]
    pub idle_timeout: String,
}

/// Shareable terminal link.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareConfig {
    /// Turns the link on (a token is generated and stored in Secret `<name>-share`); false
    /// or removing share deletes that Secret.
    pub enabled: bool,
    /// When the link stops working (RFC 3339 time). Unset: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// CIDR ranges allowed to use the link, e.g. ["10.0.0.0/8"]. Unset or empty: any
    /// address.
    #[serde(rename = "allowedIPs", skip_serializing_if = "Option::is_none")]
    pub allowed_ips: Option<Vec<String>>,
}

/// Advanced Pod settings of an Agent or AgentTemplate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPodSpec {
    /// Extra labels on the agent's Pods (for NetworkPolicies, monitors, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Node selection, tolerations and affinity of the agent's Pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<PodScheduling>,
    /// RuntimeClass of the agent's Pods, e.g. "gvisor" or "kata" for stronger isolation. The
    /// RuntimeClass must exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
    /// CPU and memory requests and limits of the agent container (and of Task Pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "k8s::resource_requirements")]
    pub resources: Option<ResourceRequirements>,
    /// Security context of the agent container. Default: no privilege escalation, all
    /// capabilities dropped, RuntimeDefault seccomp profile, non-root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "k8s::security_context")]
    pub security_context: Option<SecurityContext>,
    /// Pod-level security context (runAsUser, fsGroup, ...), applied to all containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "k8s::pod_security_context")]
    pub pod_security_context: Option<PodSecurityContext>,
    /// Extra volumes on the agent's Pods, next to the controller's own; mount them with
    /// extraVolumeMounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "k8s::volumes")]
    pub extra_volumes: Option<Vec<Volume>>,
    /// Extra volume mounts on the agent (executor) container. Init containers get theirs via
    /// systemContainers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "k8s::volume_mounts")]
    pub extra_volume_mounts: Option<Vec<VolumeMount>>,
    /// Extra environment variables for every container of the Pod, after the controller's own
    /// (so they can override HOME, SHELL, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "k8s::env_vars")]
    pub extra_env: Option<Vec<EnvVar>>,
    /// Lifecycle hooks of the agent container, e.g. a postStart hook that starts a side
    /// process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "k8s::lifecycle")]
    pub lifecycle: Option<Lifecycle>,
    /// Per-container overrides for the controller's init and sidecar containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_containers: Option<SystemContainers>,
}

/// Scheduling of the agent's Pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodScheduling {
    /// Node labels the Pods must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Taints the Pods tolerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "k8s::tolerations")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Node, Pod and anti-Pod affinity rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "k8s::affinity")]
    pub affinity: Option<Affinity>,
}

/// Overrides for the containers the controller adds to agent Pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemContainers {
    /// The `opencode-init` init container (copies the OpenCode binary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_code_init: Option<ContainerOverrides>,
    /// The `context-init` init container (writes context files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_init: Option<ContainerOverrides>,
    /// Every `git-init-*` init container (clones Git contexts and skills).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_init: Option<ContainerOverrides>,
    /// Every `git-sync-*` sidecar (keeps synced Git contexts current).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_sync: Option<ContainerOverrides>,
    /// The `plugin-init` init container (installs plugins with npm).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_init: Option<ContainerOverrides>,
}

/// Extra environment and mounts for one kind of system container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerOverrides {
    /// Extra environment variables, after the controller's own (e.g. HOME=/tmp on
    /// OpenShift).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "k8s::env_vars")]
    pub extra_env: Option<Vec<EnvVar>>,
    /// Extra volume mounts; the volumes come from podSpec.extraVolumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "k8s::volume_mounts")]
    pub extra_volume_mounts: Option<Vec<VolumeMount>>,
}

/// Observed state of an Agent, written by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// metadata.generation of the spec this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Summary for people: Ready, NotReady, Suspended or Degraded (kubeoc extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<AgentPhase>,
    /// Whether the server's Deployment is available and the agent accepts Tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Mirrors spec.suspend (when true, ready is false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended: Option<bool>,
    /// Name of the server Deployment, `<name>-server`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
    /// Name of the Service, `<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// In-cluster URL of the OpenCode server,
    /// http://<service>.<namespace>.svc.<clusterDomain>:<port>.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When the agent became idle (no running or queued Tasks, no session activity); unset
    /// while busy, not Ready or suspended. With standby, the agent is suspended once it has
    /// been idle for idleTimeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_since: Option<Time>,
    /// Recent Task starts, kept for quota enforcement (pruned to the quota window).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub task_start_history: Option<Vec<TaskStartRecord>>,
    /// Remote commit of each Git context with sync policy Rollout, as the controller last saw
    /// it; the server runs a checkout of it (a new commit rolls the Deployment). HotReload
    /// contexts are not listed (their sidecar pulls on its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub git_sync_statuses: Option<Vec<GitSyncStatus>>,
    /// State of the share link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<ShareStatus>,
    /// Conditions: ServerReady (Deployment available), ServerHealthy (the OpenCode server
    /// answers its health check), Ready (overall; reason InvalidSpec names a missing field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}

/// Summary state of an Agent (kubeoc extension).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
// The field documents the allowed values; an empty schema description keeps kube's
// Option<enum> rewrite from replacing the field's description with this type's.
#[schemars(description = "")]
pub enum AgentPhase {
    /// The server is available and healthy.
    Ready,
    /// The server is starting, unavailable or the spec is invalid.
    NotReady,
    /// spec.suspend is true.
    Suspended,
    /// The server runs but fails its health check.
    Degraded,
}

/// One Task start, for quota accounting.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskStartRecord {
    /// Name of the Task.
    pub task_name: String,
    /// Namespace of the Task.
    pub task_namespace: String,
    /// When the Task entered phase Running.
    pub start_time: Time,
}

/// Sync state of one Git context.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSyncStatus {
    /// Name of the context.
    pub name: String,
    /// Remote commit last applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_hash: Option<String>,
    /// When commitHash last changed. (Upstream moves it on every check; kubeoc only when the
    /// commit moves, so an unchanged remote costs no status write.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_synced: Option<Time>,
}

/// State of the share link.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareStatus {
    /// Whether the link works now (false when disabled, expired, or the agent is not ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Secret holding the share token, `<name>-share`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Full share URL, when an external server URL is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}
