//! Pure builders: an Agent (after the AgentTemplate merge) -> the Kubernetes objects that run
//! its OpenCode server. No I/O: the reconciler reads state, calls these, and applies the result.
//!
//! Shapes follow upstream KubeOpenCode v0.1.7 (`internal/controller/server_builder.go`), so
//! dashboards, RBAC and scripts written for upstream keep working:
//!
//! | object | name | notes |
//! |---|---|---|
//! | Deployment | `<a>-server` | selector `kubeopencode.io/agent: <a>`, strategy Recreate |
//! | Service | `<a>` | ClusterIP, port `http` plus extraPorts |
//! | PersistentVolumeClaim | `<a>-server-sessions` | always (default 1Gi), at /data/sessions |
//! | PersistentVolumeClaim | `<a>-server-workspace` | with persistence.workspace (default 10Gi) |
//! | ConfigMap | `<a>-server-context` | Text contexts, context.md parts, opencode.json |
//! | Secret | `<a>-server-auth` | key `password` ([`auth_secret`]) |
//!
//! Pod layout: init containers `opencode-init` (agent image, default entrypoint, copies the
//! binary into the `tools` emptyDir), `plugin-init` with spec.plugins (`npm install` into the
//! `plugins-volume` emptyDir, [`BuildSettings::plugin_image`]), `git-init-<i>` per Git context
//! and skill source, `context-init` (writes context files, fetches URL contexts, writes
//! opencode.json and tui.json);
//! container `opencode-server`
//! (executor image) running `/tools/opencode serve`; sidecars `git-sync-<i>` for Git contexts
//! with HotReload sync. Where upstream runs its own helper binary (`/kubeopencode git-init`,
//! ...), the helper containers here run explicit `sh -c` scripts (`git clone`, `cp`) in a small
//! public git+sh image ([`BuildSettings::system_image`]).
//!
//! Deliberate differences from upstream: Recreate instead of RollingUpdate (one SQLite writer);
//! the sessions PVC always exists; `runAsNonRoot` and a non-root uid on every container (pods
//! pass PodSecurity `restricted`); tcpSocket probes (the HTTP API is behind the password); Git
//! depth 0 means the full history; git-init runs before context-init so explicit context files
//! win over repository files; the Service gets the merged extraPorts (upstream used only the
//! Agent's own); labels from podSpec.labels cannot replace the controller's own labels.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, KeyToPath, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret, SecretEnvSource,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec,
    TCPSocketAction, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::agent::{
    AgentPodSpec, CaBundleConfig, ContainerOverrides, Credential, ExtraPort, PluginSpec,
    PluginTarget, PortProtocol, VolumePersistence,
};
use crate::api::common::ProxyConfig;
use crate::api::config::PullPolicy;
use crate::api::context::{
    ConfigMapContext, ContextItem, ContextType, GitContext, GitSync, GitSyncPolicy, UrlContext,
};
use crate::api::{API_VERSION, Agent, AgentSpec, AgentTemplateSpec, KubeOpenCodeConfigSpec};

/// Label on every child object (and the Deployment's selector): the Agent's name.
pub const AGENT_LABEL: &str = "kubeopencode.io/agent";
/// Pod template annotation holding a hash of the context ConfigMap, so content changes roll
/// the Deployment (the files are copied at Pod start).
pub const CONTEXT_HASH_ANNOTATION: &str = "kubeopencode.io/context-hash";
/// Pod template annotation with the remote commits of Git contexts with sync policy Rollout
/// (`name=commit,...`): a new commit rolls the Deployment, whose pod clones it.
pub const GIT_COMMITS_ANNOTATION: &str = "kubeopencode.io/git-commits";
/// Name of the OpenCode server container.
pub const SERVER_CONTAINER: &str = "opencode-server";
/// Name of the init container that copies the OpenCode binary into /tools.
pub const OPENCODE_INIT_CONTAINER: &str = "opencode-init";
/// Name of the init container that writes context files and opencode.json.
pub const CONTEXT_INIT_CONTAINER: &str = "context-init";
/// Name of the init container that installs spec.plugins with `npm install`.
pub const PLUGIN_INIT_CONTAINER: &str = "plugin-init";
/// Where plugin-init installs the plugins (`npm install --prefix`), as upstream: OpenCode
/// loads each from `file:///plugins/node_modules/<package>`, so the executor image needs no
/// npm and the server needs no registry access for them.
pub const PLUGINS_MOUNT_PATH: &str = "/plugins";
/// Port of the OpenCode server when spec.port is unset.
pub const DEFAULT_PORT: i32 = 4096;
/// Where the sessions volume is mounted.
pub const SESSIONS_MOUNT_PATH: &str = "/data/sessions";
/// Where the tools emptyDir (the OpenCode binary, opencode.json) is mounted.
pub const TOOLS_MOUNT_PATH: &str = "/tools";
/// Key of the server password in Secret `<a>-server-auth`.
pub const PASSWORD_KEY: &str = "password";
/// Path of the generated OpenCode configuration (OPENCODE_CONFIG), as upstream.
pub const OPENCODE_CONFIG_PATH: &str = "/tools/opencode.json";
/// Path of the generated TUI configuration (OPENCODE_TUI_CONFIG) holding `target: tui`
/// plugins, as upstream. `opencode serve` never reads it (checked with 1.18.33); an
/// `opencode attach` run inside the server container does.
pub const OPENCODE_TUI_CONFIG_PATH: &str = "/tools/tui.json";
/// Context file for contexts without mountPath, relative to workspaceDir, as upstream.
pub const CONTEXT_FILE_REL_PATH: &str = ".kubeopencode/context.md";
/// OPENCODE_PERMISSION unless spec.config has a `permission` key (upstream's default: the
/// server never stops to ask, since nobody may be watching).
pub const DEFAULT_PERMISSION: &str = r#"{"*":"allow"}"#;
/// Default image of the helper containers: git and a POSIX shell.
pub const DEFAULT_SYSTEM_IMAGE: &str = "alpine/git:2.47.2";
/// Default image of plugin-init: a public image with node, npm and a POSIX shell.
pub const DEFAULT_PLUGIN_IMAGE: &str = "node:22-alpine";
/// Default `agentImage`: upstream's OpenCode image of the release kubeoc follows.
pub const DEFAULT_AGENT_IMAGE: &str = "ghcr.io/kubeopencode/kubeopencode-agent-opencode:v0.1.7";
/// Default `executorImage`: upstream's devbox image of the release kubeoc follows.
pub const DEFAULT_EXECUTOR_IMAGE: &str = "ghcr.io/kubeopencode/kubeopencode-agent-devbox:v0.1.7";
/// Default non-root uid (and gid, fsGroup) of the agent's Pods.
pub const DEFAULT_RUN_AS_USER: i64 = 1000;
/// Default size of the sessions PVC.
pub const DEFAULT_SESSIONS_SIZE: &str = "1Gi";
/// Default size of the workspace PVC.
pub const DEFAULT_WORKSPACE_SIZE: &str = "10Gi";

const TOOLS_VOLUME: &str = "tools";
const PLUGINS_VOLUME: &str = "plugins-volume";
/// npm's cache during plugin-init: on the plugins volume (not $HOME, which may be read-only
/// or shared), removed after the install.
const NPM_CACHE_DIR: &str = "/plugins/.npm-cache";
const WORKSPACE_VOLUME: &str = "workspace";
const SESSIONS_VOLUME: &str = "session-data";
const CONTEXT_VOLUME: &str = "context-files";
const CONTEXT_FILES_MOUNT: &str = "/configmap-files";
const EXTERNAL_VOLUME: &str = "ctx-files";
const EXTERNAL_MOUNT: &str = "/ctx-files";
const GIT_ROOT: &str = "/git";
const GIT_CHECKOUT: &str = "/git/repo";
const SKILLS_BASE: &str = "/skills";
const HOME_DIR: &str = "/tmp";
/// Seconds a URL context may take to download (upstream's default).
const DEFAULT_URL_TIMEOUT: i32 = 30;
const SERVER_SHELL: &str = "/bin/bash";
const SYSTEM_SHELL: &str = "/bin/sh";
const SERVER_PATH: &str = "/tools:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CA_VOLUME: &str = "ca-bundle";
const CA_MOUNT_PATH: &str = "/etc/ssl/certs/custom-ca";
const CA_FILE_PATH: &str = "/etc/ssl/certs/custom-ca/tls.crt";
const DEFAULT_SECRET_FILE_MODE: i32 = 0o600;
const DEFAULT_CONTEXT_FILE_MODE: i32 = 0o644;
const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(300);
const CLONE_ATTEMPTS: u32 = 3;

/// Cluster-level inputs of the builders (from KubeOpenCodeConfig and controller flags).
///
/// A cluster-wide proxy is not a setting here: the reconciler puts it into the effective
/// spec's `proxy` when the Agent and its template have none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSettings {
    /// DNS domain of the cluster, for URLs and NO_PROXY.
    pub cluster_domain: String,
    /// Image of the helper containers (git-init, git-sync, context-init): needs `git` and `sh`.
    pub system_image: String,
    /// Pull policy of the helper containers; `None` derives it from the image's tag.
    pub system_image_pull_policy: Option<String>,
    /// Image of plugin-init, which installs spec.plugins: needs `npm` and `sh`. Not the
    /// system image, which has no npm.
    pub plugin_image: String,
    /// `agentImage` when the Agent and its template set none.
    pub default_agent_image: String,
    /// `executorImage` when the Agent and its template set none.
    pub default_executor_image: String,
    /// Non-root uid of every container (also the gid and fsGroup) unless podSpec overrides it.
    pub run_as_user: i64,
    /// Remote commits of the Git contexts with sync policy Rollout, by context name, as the
    /// controller last saw them ([`GIT_COMMITS_ANNOTATION`]).
    pub git_commits: BTreeMap<String, String>,
}

impl Default for BuildSettings {
    fn default() -> Self {
        Self {
            cluster_domain: crate::api::config::DEFAULT_CLUSTER_DOMAIN.to_string(),
            system_image: DEFAULT_SYSTEM_IMAGE.to_string(),
            system_image_pull_policy: None,
            plugin_image: DEFAULT_PLUGIN_IMAGE.to_string(),
            default_agent_image: DEFAULT_AGENT_IMAGE.to_string(),
            default_executor_image: DEFAULT_EXECUTOR_IMAGE.to_string(),
            run_as_user: DEFAULT_RUN_AS_USER,
            git_commits: BTreeMap::new(),
        }
    }
}

impl BuildSettings {
    /// These settings with the cluster's KubeOpenCodeConfig applied: its clusterDomain and
    /// systemImage.image replace the defaults when set. (Its proxy goes into the effective
    /// spec instead, see [`with_cluster_proxy`].)
    pub fn with_cluster_config(&self, config: &KubeOpenCodeConfigSpec) -> Self {
        let mut settings = self.clone();
        if let Some(domain) = config.cluster_domain.as_deref().filter(|d| !d.is_empty()) {
            settings.cluster_domain = domain.to_string();
        }
        if let Some(image) = config
            .system_image
            .as_ref()
            .and_then(|i| i.image.as_deref())
            .filter(|i| !i.is_empty())
        {
            settings.system_image = image.to_string();
        }
        if let Some(policy) = config
            .system_image
            .as_ref()
            .and_then(|i| i.image_pull_policy)
        {
            settings.system_image_pull_policy = Some(
                match policy {
                    PullPolicy::Always => "Always",
                    PullPolicy::Never => "Never",
                    PullPolicy::IfNotPresent => "IfNotPresent",
                }
                .to_string(),
            );
        }
        settings
    }
}

/// The cluster-wide proxy of KubeOpenCodeConfig for an Agent whose spec (after the template
/// merge) sets none: the Agent's own proxy always wins.
pub fn with_cluster_proxy(mut spec: AgentSpec, config: &KubeOpenCodeConfigSpec) -> AgentSpec {
    if spec.proxy.is_none() {
        spec.proxy = config.proxy.clone();
    }
    spec
}

/// Everything the reconciler applies for one Agent, except the auth Secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerObjects {
    /// Deployment `<a>-server`.
    pub deployment: Deployment,
    /// Service `<a>`.
    pub service: Service,
    /// PVC `<a>-server-sessions`.
    pub sessions_pvc: PersistentVolumeClaim,
    /// PVC `<a>-server-workspace`, when persistence.workspace is set.
    pub workspace_pvc: Option<PersistentVolumeClaim>,
    /// ConfigMap `<a>-server-context`, when there is a context file or opencode.json to write.
    /// When `None`, a stale ConfigMap of that name should be deleted.
    pub context_config_map: Option<ConfigMap>,
}

/// A spec the controller cannot run: the field and a message for condition Ready=False,
/// reason InvalidSpec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidSpec {
    /// JSON path of the offending field, e.g. `spec.workspaceDir`.
    pub field: &'static str,
    /// What is wrong and how to fix it; names the field.
    pub message: String,
}

impl InvalidSpec {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Names, labels, ownership

/// Name of the server Deployment: `<a>-server`.
pub fn deployment_name(agent: &str) -> String {
    format!("{agent}-server")
}

/// Name of the Service: the Agent's name.
pub fn service_name(agent: &str) -> String {
    agent.to_string()
}

/// Name of the sessions PVC: `<a>-server-sessions`.
pub fn sessions_pvc_name(agent: &str) -> String {
    format!("{agent}-server-sessions")
}

/// Name of the workspace PVC: `<a>-server-workspace`.
pub fn workspace_pvc_name(agent: &str) -> String {
    format!("{agent}-server-workspace")
}

/// Name of the context ConfigMap: `<a>-server-context`.
pub fn context_config_map_name(agent: &str) -> String {
    format!("{agent}-server-context")
}

/// Name of the Secret with the server password: `<a>-server-auth`.
pub fn auth_secret_name(agent: &str) -> String {
    format!("{agent}-server-auth")
}

/// Selects the children of every Agent (a subset of [`server_labels`]): what the controller
/// watches.
pub const CHILD_SELECTOR: &str =
    "app.kubernetes.io/name=kubeopencode-server,app.kubernetes.io/managed-by=kubeopencode";

/// Labels of every child object, as upstream sets them.
pub fn server_labels(agent: &str) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "kubeopencode-server"),
        ("app.kubernetes.io/instance", agent),
        ("app.kubernetes.io/component", "server"),
        ("app.kubernetes.io/managed-by", "kubeopencode"),
        (AGENT_LABEL, agent),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Selector of the Deployment and the Service: `kubeopencode.io/agent: <a>`.
pub fn selector_labels(agent: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(AGENT_LABEL.to_string(), agent.to_string())])
}

/// In-cluster URL of the agent's server: `http://<a>.<ns>.svc.<domain>:<port>`.
pub fn service_url(agent_name: &str, namespace: &str, port: i32, cluster_domain: &str) -> String {
    format!("http://{agent_name}.{namespace}.svc.{cluster_domain}:{port}")
}

/// The server port: spec.port, or 4096.
pub fn server_port(spec: &AgentSpec) -> i32 {
    spec.port.filter(|p| *p > 0).unwrap_or(DEFAULT_PORT)
}

/// The Agent as controller owner (deletion cascades, blockOwnerDeletion).
pub fn owner_reference(agent: &Agent) -> OwnerReference {
    OwnerReference {
        api_version: API_VERSION.to_string(),
        kind: "Agent".to_string(),
        name: agent_name(agent).to_string(),
        uid: agent.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Secret `<a>-server-auth` holding the server password under key `password` (in `data`, so
/// server-side apply round-trips it).
pub fn auth_secret(agent: &Agent, password: &str) -> Secret {
    let name = agent_name(agent);
    Secret {
        metadata: child_meta(agent, auth_secret_name(name), server_labels(name)),
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(
            PASSWORD_KEY.to_string(),
            ByteString(password.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

fn agent_name(agent: &Agent) -> &str {
    agent.metadata.name.as_deref().unwrap_or_default()
}

fn child_meta(agent: &Agent, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: agent.metadata.namespace.clone(),
        labels: Some(labels),
        owner_references: Some(vec![owner_reference(agent)]),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Template merge, validation

/// The Agent's spec merged with its AgentTemplate, as upstream merges them: a scalar set on the
/// Agent (non-empty string, any other value) wins, else the template's; lists (contexts,
/// credentials, skills, plugins, imagePullSecrets, extraPorts, command) and the objects
/// (config, podSpec, quota, caBundle, proxy) are taken whole from the Agent when set, else from
/// the template. port, persistence, suspend, standby, share and profile are the Agent's only.
/// Image defaults are not filled in here ([`build`] does that).
pub fn effective_spec(agent: &AgentSpec, template: Option<&AgentTemplateSpec>) -> AgentSpec {
    let Some(t) = template else {
        return agent.clone();
    };
    fn string(a: &Option<String>, t: Option<&String>) -> Option<String> {
        a.clone()
            .filter(|s| !s.is_empty())
            .or_else(|| t.filter(|s| !s.is_empty()).cloned())
    }
    fn whole<T: Clone>(a: &Option<T>, t: &Option<T>) -> Option<T> {
        a.clone().or_else(|| t.clone())
    }
    AgentSpec {
        template_ref: agent.template_ref.clone(),
        profile: agent.profile.clone(),
        agent_image: string(&agent.agent_image, t.agent_image.as_ref()),
        executor_image: string(&agent.executor_image, t.executor_image.as_ref()),
        attach_image: string(&agent.attach_image, t.attach_image.as_ref()),
        workspace_dir: string(&agent.workspace_dir, Some(&t.workspace_dir)),
        command: agent
            .command
            .clone()
            .filter(|c| !c.is_empty())
            .or_else(|| t.command.clone()),
        service_account_name: string(&agent.service_account_name, Some(&t.service_account_name)),
        contexts: whole(&agent.contexts, &t.contexts),
        skills: whole(&agent.skills, &t.skills),
        plugins: whole(&agent.plugins, &t.plugins),
        config: whole(&agent.config, &t.config),
        credentials: whole(&agent.credentials, &t.credentials),
        pod_spec: whole(&agent.pod_spec, &t.pod_spec),
        max_concurrent_tasks: whole(&agent.max_concurrent_tasks, &t.max_concurrent_tasks),
        quota: whole(&agent.quota, &t.quota),
        ca_bundle: whole(&agent.ca_bundle, &t.ca_bundle),
        proxy: whole(&agent.proxy, &t.proxy),
        image_pull_secrets: whole(&agent.image_pull_secrets, &t.image_pull_secrets),
        port: agent.port,
        extra_ports: whole(&agent.extra_ports, &t.extra_ports),
        persistence: agent.persistence.clone(),
        suspend: agent.suspend,
        standby: agent.standby.clone(),
        share: agent.share.clone(),
    }
}

/// Checks an effective spec (after [`effective_spec`]) for what [`build`] needs; the first
/// problem found. Upstream examples omit workspaceDir or serviceAccountName and rely on a
/// template, so these are reconcile-time errors, not admission errors.
pub fn validate(spec: &AgentSpec) -> Result<(), InvalidSpec> {
    let workspace = spec.workspace_dir.as_deref().unwrap_or_default();
    if workspace.is_empty() {
        return Err(InvalidSpec::new(
            "spec.workspaceDir",
            "spec.workspaceDir is required (set it on the Agent or its AgentTemplate)",
        ));
    }
    if !workspace.starts_with('/') {
        return Err(InvalidSpec::new(
            "spec.workspaceDir",
            format!("spec.workspaceDir must be an absolute path, got {workspace:?}"),
        ));
    }
    if spec
        .service_account_name
        .as_deref()
        .is_none_or(str::is_empty)
    {
        return Err(InvalidSpec::new(
            "spec.serviceAccountName",
            "spec.serviceAccountName is required (set it on the Agent or its AgentTemplate)",
        ));
    }
    if let Some(config) = &spec.config
        && !config.is_object()
    {
        return Err(InvalidSpec::new(
            "spec.config",
            "spec.config must be an object (the content of opencode.json)",
        ));
    }
    let persistence = spec.persistence.as_ref();
    for (field, volume) in [
        (
            "spec.persistence.sessions.size",
            persistence.and_then(|p| p.sessions.as_ref()),
        ),
        (
            "spec.persistence.workspace.size",
            persistence.and_then(|p| p.workspace.as_ref()),
        ),
    ] {
        if let Some(size) = volume.and_then(|v| v.size.as_deref())
            && !size.is_empty()
            && !is_quantity(size)
        {
            return Err(InvalidSpec::new(
                field,
                format!("{field} {size:?} is not a quantity such as \"1Gi\" or \"500Mi\""),
            ));
        }
    }
    for (i, item) in spec.contexts.iter().flatten().enumerate() {
        validate_context(i, item)?;
        if let Some(path) = item.mount_path.as_deref().filter(|p| !p.is_empty())
            && resolve_path(path, workspace) == "/"
        {
            return Err(InvalidSpec::new(
                "spec.contexts",
                format!(
                    "spec.contexts[{i}].mountPath {path:?} resolves to \"/\"; pick a file or directory below it"
                ),
            ));
        }
    }
    for (i, skill) in spec.skills.iter().flatten().enumerate() {
        let Some(git) = &skill.git else {
            return Err(InvalidSpec::new(
                "spec.skills",
                format!("spec.skills[{i}] ({}) needs git.repository", skill.name),
            ));
        };
        if git.repository.is_empty() {
            return Err(InvalidSpec::new(
                "spec.skills",
                format!("spec.skills[{i}].git.repository is required"),
            ));
        }
        let path = git.path.as_deref().unwrap_or_default();
        if has_dot_dot(path) || git.names.iter().flatten().any(|n| has_dot_dot(n)) {
            return Err(InvalidSpec::new(
                "spec.skills",
                format!("spec.skills[{i}].git: path and names must stay inside the repository"),
            ));
        }
    }
    validate_plugins(spec.plugins.as_deref().unwrap_or_default())?;
    let port = server_port(spec);
    let mut names = vec!["http".to_string()];
    let mut numbers = vec![port];
    for (i, extra) in spec.extra_ports.iter().flatten().enumerate() {
        if names.contains(&extra.name) {
            return Err(InvalidSpec::new(
                "spec.extraPorts",
                format!(
                    "spec.extraPorts[{i}].name {:?} is already used (\"http\" is the OpenCode server's port)",
                    extra.name
                ),
            ));
        }
        if numbers.contains(&extra.port) {
            return Err(InvalidSpec::new(
                "spec.extraPorts",
                format!(
                    "spec.extraPorts[{i}].port {} is already used (spec.port is {port})",
                    extra.port
                ),
            ));
        }
        names.push(extra.name.clone());
        numbers.push(extra.port);
    }
    Ok(())
}

fn validate_context(i: usize, item: &ContextItem) -> Result<(), InvalidSpec> {
    let missing = |what: &str| {
        InvalidSpec::new(
            "spec.contexts",
            format!("spec.contexts[{i}] has type {:?} but no {what}", item.type_),
        )
    };
    match item.type_ {
        ContextType::Text if item.text.is_none() => return Err(missing("text")),
        ContextType::ConfigMap if item.config_map.is_none() => return Err(missing("configMap")),
        ContextType::Url => {
            let url = item.url.as_ref().ok_or_else(|| missing("url"))?;
            if !(url.source.starts_with("http://") || url.source.starts_with("https://")) {
                return Err(InvalidSpec::new(
                    "spec.contexts",
                    format!(
                        "spec.contexts[{i}].url.source must be an http:// or https:// URL, not {:?}",
                        url.source
                    ),
                ));
            }
        }
        ContextType::Git => {
            let git = item.git.as_ref().ok_or_else(|| missing("git"))?;
            if item.mount_path.as_deref().is_none_or(str::is_empty) {
                return Err(InvalidSpec::new(
                    "spec.contexts",
                    format!(
                        "spec.contexts[{i}].mountPath is required for a Git context (relative paths are under workspaceDir, \".\" is workspaceDir itself)"
                    ),
                ));
            }
            if git.repository.is_empty() {
                return Err(missing("git.repository"));
            }
            if has_dot_dot(git.path.as_deref().unwrap_or_default()) {
                return Err(InvalidSpec::new(
                    "spec.contexts",
                    format!("spec.contexts[{i}].git.path must stay inside the repository"),
                ));
            }
            if let Some(interval) = git.sync.as_ref().and_then(|s| s.interval.as_deref())
                && let Err(e) = crate::duration::parse(interval)
            {
                return Err(InvalidSpec::new(
                    "spec.contexts",
                    format!("spec.contexts[{i}].git.sync.interval: {e}"),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Plugin names reach a shell and npm, and OpenCode's config only takes an object as options,
/// so both are checked here rather than failing in the Pod.
fn validate_plugins(plugins: &[PluginSpec]) -> Result<(), InvalidSpec> {
    let invalid = |message: String| Err(InvalidSpec::new("spec.plugins", message));
    // package -> (index, specifier, target) of its first entry.
    let mut seen: BTreeMap<&str, (usize, &str, PluginTarget)> = BTreeMap::new();
    for (i, plugin) in plugins.iter().enumerate() {
        let name = plugin.name.as_str();
        if let Err(why) = check_npm_specifier(name) {
            return invalid(format!(
                "spec.plugins[{i}].name {name:?} is not an npm registry package specifier ({why}); use \"name\", \"name@1.2.3\", \"@scope/name\" or \"@scope/name@^1.0.0\" (git URLs, tarballs and paths are not supported)"
            ));
        }
        if let Some(options) = &plugin.options
            && !options.is_object()
        {
            return invalid(format!(
                "spec.plugins[{i}].options must be an object (OpenCode passes it to the plugin as its options), got {options}"
            ));
        }
        let target = plugin_target(plugin);
        let package = npm_package_name(name);
        match seen.get(package) {
            Some((j, _, first)) if *first == target => {
                return invalid(format!(
                    "spec.plugins[{i}] repeats package {package:?} (already spec.plugins[{j}]); list each plugin once"
                ));
            }
            Some((j, first, _)) if *first != name => {
                return invalid(format!(
                    "spec.plugins[{i}] asks for {name:?} but spec.plugins[{j}] for {first:?}: one package is installed once, so both entries need the same specifier"
                ));
            }
            Some(_) => {}
            None => {
                seen.insert(package, (i, name, target));
            }
        }
    }
    Ok(())
}

/// Checks `[@scope/]name[@version]`: the name part in npm's URL-safe characters (uppercase
/// allowed for old packages), the version part free text without control characters (ranges
/// such as ">=1.0.0 <2" contain spaces; the word is quoted for the shell).
fn check_npm_specifier(specifier: &str) -> Result<(), &'static str> {
    let package = npm_package_name(specifier);
    let version = specifier.get(package.len()..).unwrap_or_default();
    if package.len() > 214 {
        return Err("the package name is longer than 214 characters");
    }
    let name_part = |part: &str| {
        !part.is_empty()
            && !part.starts_with(['.', '_', '-'])
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    };
    let valid_name = match package.strip_prefix('@') {
        Some(scoped) => scoped
            .split_once('/')
            .is_some_and(|(scope, name)| name_part(scope) && name_part(name)),
        None => name_part(package),
    };
    if !valid_name {
        return Err("bad package name");
    }
    if let Some(version) = version.strip_prefix('@') {
        if version.trim().is_empty() {
            return Err("empty version after @");
        }
        if version.chars().any(char::is_control) {
            return Err("control characters in the version");
        }
    } else if !version.is_empty() {
        return Err("bad package name");
    }
    Ok(())
}

/// The package part of an npm specifier: `@scope/name@^1` -> `@scope/name`, `name@1` -> `name`;
/// where npm installs it under node_modules.
fn npm_package_name(specifier: &str) -> &str {
    let version_at = match specifier.strip_prefix('@') {
        Some(rest) => rest.find('@').map(|i| i + 1),
        None => specifier.find('@'),
    };
    version_at.map_or(specifier, |i| &specifier[..i])
}

fn plugin_target(plugin: &PluginSpec) -> PluginTarget {
    plugin.target.unwrap_or(PluginTarget::Server)
}

/// Human-readable notes on fields the effective spec sets that kubeoc does not implement yet;
/// the reconciler reports them in a condition (they are never silently ignored).
pub fn unsupported(spec: &AgentSpec) -> Vec<String> {
    let mut notes = Vec::new();
    if spec.share.as_ref().is_some_and(|s| s.enabled) {
        notes.push("spec.share: share links are not implemented; no link is created".to_string());
    }
    if spec.command.as_ref().is_some_and(|c| !c.is_empty()) {
        notes.push(
            "spec.command: ignored for agents; the server container always runs `opencode serve`"
                .to_string(),
        );
    }
    notes
}

/// A Git context whose sync policy is Rollout: the controller watches its remote.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutContext {
    /// The context's name (`git-<i>` when unnamed), as in status.gitSyncStatuses.
    pub name: String,
    pub git: GitContext,
    /// How often to ask the remote.
    pub interval: Duration,
}

/// The Git contexts with sync enabled and policy Rollout.
pub fn rollout_contexts(spec: &AgentSpec) -> Vec<RolloutContext> {
    spec.contexts
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, item)| item.type_ == ContextType::Git)
        .filter_map(|(i, item)| {
            let git = item.git.as_ref()?;
            let sync = git.sync.as_ref()?;
            (sync.enabled == Some(true) && sync.policy == Some(GitSyncPolicy::Rollout)).then(|| {
                RolloutContext {
                    name: item
                        .name
                        .clone()
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| format!("git-{i}")),
                    git: git.clone(),
                    interval: sync_interval(sync),
                }
            })
        })
        .collect()
}

/// A Git `ref` as given, or "HEAD" (the remote's default branch) when unset or empty.
pub fn ref_or_head(git_ref: &Option<String>) -> String {
    git_ref
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "HEAD".to_string())
}

/// A sync's interval: the spec's, at least one second, 5 minutes when unset.
fn sync_interval(sync: &GitSync) -> Duration {
    sync.interval
        .as_deref()
        .and_then(|i| crate::duration::parse(i).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_SYNC_INTERVAL)
}

fn is_quantity(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let digits_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(digits_end);
    let valid_number = !number.is_empty()
        && number != "."
        && number.matches('.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit());
    let valid_suffix = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || suffix
        .strip_prefix(['e', 'E'])
        .map(|exp| exp.strip_prefix(['+', '-']).unwrap_or(exp))
        .is_some_and(|exp| !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit()));
    valid_number && valid_suffix
}

fn has_dot_dot(path: &str) -> bool {
    path.split('/').any(|part| part == "..")
}

// ---------------------------------------------------------------------------------------------
// Build

/// Builds the server's objects from the Agent and its effective spec (see [`effective_spec`];
/// call [`validate`] first; without a workspaceDir, paths fall back to /workspace). Every
/// object has the Agent as controller owner. Deterministic: the same input gives the same
/// objects, so server-side apply of an unchanged Agent writes nothing.
pub fn build(agent: &Agent, spec: &AgentSpec, settings: &BuildSettings) -> ServerObjects {
    let name = agent_name(agent);
    let namespace = agent.metadata.namespace.as_deref().unwrap_or_default();
    let workspace = clean_path(spec.workspace_dir.as_deref().unwrap_or("/workspace"));
    let port = server_port(spec);
    let extra_ports = spec.extra_ports.clone().unwrap_or_default();

    let plugins = plan_plugins(spec.plugins.as_deref().unwrap_or_default());
    let contexts = plan_contexts(spec, name, namespace, &workspace, &plugins);
    let context_config_map = (!contexts.data.is_empty()).then(|| {
        let mut labels = server_labels(name);
        labels.insert("app".to_string(), "kubeopencode".to_string());
        ConfigMap {
            metadata: child_meta(agent, context_config_map_name(name), labels),
            data: Some(contexts.data.clone()),
            ..Default::default()
        }
    });

    let persistence = spec.persistence.clone().unwrap_or_default();
    let sessions_pvc = pvc(
        agent,
        sessions_pvc_name(name),
        persistence.sessions.as_ref(),
        DEFAULT_SESSIONS_SIZE,
    );
    let workspace_pvc = persistence.workspace.as_ref().map(|volume| {
        pvc(
            agent,
            workspace_pvc_name(name),
            Some(volume),
            DEFAULT_WORKSPACE_SIZE,
        )
    });

    let pod = pod_template(PodInputs {
        agent_name: name,
        spec,
        settings,
        workspace: &workspace,
        port,
        extra_ports: &extra_ports,
        contexts: &contexts,
        plugins: &plugins,
        workspace_claim: workspace_pvc.as_ref().map(|_| workspace_pvc_name(name)),
    });

    let mut deployment_labels = server_labels(name);
    if let Some(extra) = spec.pod_spec.as_ref().and_then(|p| p.labels.as_ref()) {
        deployment_labels = with_user_labels(name, extra);
    }
    let deployment = Deployment {
        metadata: child_meta(agent, deployment_name(name), deployment_labels),
        spec: Some(DeploymentSpec {
            replicas: Some(if spec.suspend == Some(true) { 0 } else { 1 }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(name)),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_string()),
                ..Default::default()
            }),
            template: pod,
            ..Default::default()
        }),
        ..Default::default()
    };

    let mut service_ports = vec![ServicePort {
        name: Some("http".to_string()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_string()),
        ..Default::default()
    }];
    service_ports.extend(extra_ports.iter().map(|p| ServicePort {
        name: Some(p.name.clone()),
        port: p.port,
        target_port: Some(IntOrString::Int(p.port)),
        protocol: Some(protocol(p).to_string()),
        ..Default::default()
    }));
    let service = Service {
        metadata: child_meta(agent, service_name(name), server_labels(name)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(selector_labels(name)),
            ports: Some(service_ports),
            ..Default::default()
        }),
        ..Default::default()
    };

    ServerObjects {
        deployment,
        service,
        sessions_pvc,
        workspace_pvc,
        context_config_map,
    }
}

/// podSpec.labels plus the controller's labels (which win: the selector must keep matching).
fn with_user_labels(agent: &str, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = extra.clone();
    labels.extend(server_labels(agent));
    labels
}

fn protocol(port: &ExtraPort) -> &'static str {
    match port.protocol {
        Some(PortProtocol::Udp) => "UDP",
        _ => "TCP",
    }
}

fn pvc(
    agent: &Agent,
    name: String,
    volume: Option<&VolumePersistence>,
    default_size: &str,
) -> PersistentVolumeClaim {
    let size = volume
        .and_then(|v| v.size.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default_size.to_string());
    PersistentVolumeClaim {
        metadata: child_meta(agent, name, server_labels(agent_name(agent))),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(size))])),
                ..Default::default()
            }),
            storage_class_name: volume
                .and_then(|v| v.storage_class_name.clone())
                .filter(|s| !s.is_empty()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct PodInputs<'a> {
    agent_name: &'a str,
    spec: &'a AgentSpec,
    settings: &'a BuildSettings,
    workspace: &'a str,
    port: i32,
    extra_ports: &'a [ExtraPort],
    contexts: &'a ContextPlan,
    plugins: &'a PluginPlan,
    workspace_claim: Option<String>,
}

fn pod_template(input: PodInputs<'_>) -> PodTemplateSpec {
    let PodInputs {
        agent_name: name,
        spec,
        settings,
        workspace,
        port,
        extra_ports,
        contexts,
        plugins,
        workspace_claim,
    } = input;
    let pod_spec = spec.pod_spec.clone().unwrap_or_default();
    let system = system_containers(&pod_spec);
    let security = container_security(settings, pod_spec.pod_security_context.as_ref());

    // Volumes, in upstream's order where upstream has them.
    let workspace_volume = match workspace_claim {
        Some(claim_name) => Volume {
            name: WORKSPACE_VOLUME.to_string(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name,
                ..Default::default()
            }),
            ..Default::default()
        },
        None => empty_dir(WORKSPACE_VOLUME),
    };
    let mut volumes = vec![
        empty_dir(TOOLS_VOLUME),
        workspace_volume,
        Volume {
            name: SESSIONS_VOLUME.to_string(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: sessions_pvc_name(name),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let mut server_mounts = vec![
        mount(TOOLS_VOLUME, TOOLS_MOUNT_PATH),
        mount(WORKSPACE_VOLUME, workspace),
        mount(SESSIONS_VOLUME, SESSIONS_MOUNT_PATH),
    ];

    // Server environment, in the documented order.
    let mut env = vec![
        env_value("HOME", HOME_DIR),
        env_value("SHELL", SERVER_SHELL),
        env_value("PATH", SERVER_PATH),
        env_value("WORKSPACE_DIR", workspace),
        env_value("OPENCODE_DB", &format!("{SESSIONS_MOUNT_PATH}/opencode.db")),
        env_value("XDG_DATA_HOME", &format!("{SESSIONS_MOUNT_PATH}/data")),
        env_value("XDG_STATE_HOME", &format!("{SESSIONS_MOUNT_PATH}/state")),
        env_secret(
            "OPENCODE_SERVER_PASSWORD",
            &auth_secret_name(name),
            PASSWORD_KEY,
            None,
        ),
        env_value("OPENCODE_DISABLE_AUTOUPDATE", "1"),
    ];
    if !spec.share.as_ref().is_some_and(|s| s.enabled) {
        env.push(env_value("OPENCODE_DISABLE_SHARE", "1"));
    }
    if contexts.config_file {
        env.push(env_value("OPENCODE_CONFIG", OPENCODE_CONFIG_PATH));
    }
    if contexts.tui_config_file {
        env.push(env_value("OPENCODE_TUI_CONFIG", OPENCODE_TUI_CONFIG_PATH));
    }
    let config_sets_permission = spec
        .config
        .as_ref()
        .and_then(|c| c.as_object())
        .is_some_and(|c| c.contains_key("permission"));
    if !config_sets_permission {
        env.push(env_value("OPENCODE_PERMISSION", DEFAULT_PERMISSION));
    }

    let credentials = credentials(spec.credentials.as_deref().unwrap_or_default());
    volumes.extend(credentials.volumes);
    server_mounts.extend(credentials.mounts);
    env.extend(credentials.env);

    // Init containers: opencode-init, git-init-*, context-init.
    let mut init_containers = vec![Container {
        name: OPENCODE_INIT_CONTAINER.to_string(),
        image: Some(image_or(&spec.agent_image, &settings.default_agent_image)),
        image_pull_policy: Some(
            pull_policy(&image_or(&spec.agent_image, &settings.default_agent_image)).to_string(),
        ),
        env: Some(vec![env_value("TOOLS_DIR", TOOLS_MOUNT_PATH)]),
        volume_mounts: Some(vec![mount(TOOLS_VOLUME, TOOLS_MOUNT_PATH)]),
        ..Default::default()
    }];
    let mut init_kinds = vec![system.open_code_init.as_ref()];
    let mut sidecars = Vec::new();

    if !plugins.install.is_empty() {
        volumes.push(empty_dir(PLUGINS_VOLUME));
        // Read-only for the server: what plugin-init installed is what runs, whatever the
        // agent's tools do to the filesystem.
        server_mounts.push(read_only(mount(PLUGINS_VOLUME, PLUGINS_MOUNT_PATH)));
        let mut container = system_container(
            PLUGIN_INIT_CONTAINER.to_string(),
            settings,
            plugin_init_script(&plugins.install),
            vec![
                env_value("npm_config_cache", NPM_CACHE_DIR),
                // Also for `npm ls`: no version check against the registry.
                env_value("npm_config_update_notifier", "false"),
            ],
            vec![mount(PLUGINS_VOLUME, PLUGINS_MOUNT_PATH)],
        );
        container.image_pull_policy = Some(pull_policy(&settings.plugin_image).to_string());
        container.image = Some(settings.plugin_image.clone());
        init_containers.push(container);
        init_kinds.push(system.plugin_init.as_ref());
    }

    let ca = spec.ca_bundle.as_ref().and_then(ca_bundle);
    for (i, repo) in contexts.git.iter().enumerate() {
        let volume = format!("git-context-{i}");
        volumes.push(empty_dir(&volume));
        let at_root = repo.mount_path == workspace;
        let root_target = at_root.then_some(workspace);
        let mut mounts = vec![mount(&volume, GIT_ROOT)];
        if at_root {
            mounts.push(mount(WORKSPACE_VOLUME, workspace));
        }
        init_containers.push(system_container(
            format!("git-init-{i}"),
            settings,
            git_init_script(repo, root_target, ca.is_some()),
            git_env(repo),
            mounts.clone(),
        ));
        init_kinds.push(system.git_init.as_ref());
        if let Some(interval) = repo.sync {
            let mut sidecar = system_container(
                format!("git-sync-{i}"),
                settings,
                git_sync_script(repo, root_target, interval, ca.is_some()),
                git_env(repo),
                mounts,
            );
            sidecar.security_context = Some(security.clone());
            sidecars.push(sidecar);
        }
        if !at_root {
            let base = match repo.path.as_deref() {
                Some(path) => format!("repo/{path}"),
                None => "repo".to_string(),
            };
            if repo.names.is_empty() {
                server_mounts.push(sub_path_mount(&volume, &repo.mount_path, &base));
            } else {
                for skill in &repo.names {
                    server_mounts.push(sub_path_mount(
                        &volume,
                        &format!("{}/{skill}", repo.mount_path),
                        &format!("{base}/{skill}"),
                    ));
                }
            }
        }
    }

    if !contexts.script.is_empty() {
        let mut mounts = Vec::new();
        if !contexts.data.is_empty() {
            volumes.push(Volume {
                name: CONTEXT_VOLUME.to_string(),
                config_map: Some(ConfigMapVolumeSource {
                    name: context_config_map_name(name),
                    ..Default::default()
                }),
                ..Default::default()
            });
            mounts.push(read_only(mount(CONTEXT_VOLUME, CONTEXT_FILES_MOUNT)));
        }
        volumes.extend(contexts.config_map_volumes.iter().cloned());
        mounts.extend(contexts.config_map_mounts.iter().cloned());
        mounts.push(mount(WORKSPACE_VOLUME, workspace));
        if contexts.writes_tools {
            mounts.push(mount(TOOLS_VOLUME, TOOLS_MOUNT_PATH));
        }
        if !contexts.external.is_empty() {
            volumes.push(empty_dir(EXTERNAL_VOLUME));
            mounts.push(mount(EXTERNAL_VOLUME, EXTERNAL_MOUNT));
            for (sub_path, target) in &contexts.external {
                server_mounts.push(sub_path_mount(EXTERNAL_VOLUME, target, sub_path));
            }
        }
        let mut script = vec!["set -eu".to_string()];
        script.extend(contexts.script.iter().cloned());
        init_containers.push(system_container(
            CONTEXT_INIT_CONTAINER.to_string(),
            settings,
            script.join("\n"),
            std::iter::once(env_value("WORKSPACE_DIR", workspace))
                .chain(contexts.env.iter().cloned())
                .collect(),
            mounts,
        ));
        init_kinds.push(system.context_init.as_ref());
    }

    // CA bundle and proxy reach every container.
    let proxy_env = spec
        .proxy
        .as_ref()
        .map(|p| proxy_env(p, &settings.cluster_domain))
        .unwrap_or_default();
    let mut shared_env = Vec::new();
    let mut shared_mounts = Vec::new();
    if let Some((volume, ca_mount, ca_env)) = &ca {
        volumes.push(volume.clone());
        shared_mounts.push(ca_mount.clone());
        shared_env.extend(ca_env.iter().cloned());
    }
    shared_env.extend(proxy_env);
    let extra_env = pod_spec.extra_env.clone().unwrap_or_default();
    for (container, overrides) in init_containers.iter_mut().zip(&init_kinds) {
        push_all(&mut container.volume_mounts, &shared_mounts);
        push_all(&mut container.env, &shared_env);
        push_all(&mut container.env, &extra_env);
        apply_overrides(container, *overrides);
        if container.security_context.is_none() {
            container.security_context = Some(security.clone());
        }
    }
    for sidecar in &mut sidecars {
        push_all(&mut sidecar.volume_mounts, &shared_mounts);
        push_all(&mut sidecar.env, &shared_env);
        push_all(&mut sidecar.env, &extra_env);
        apply_overrides(sidecar, system.git_sync.as_ref());
    }
    server_mounts.extend(shared_mounts);
    env.extend(shared_env);
    env.extend(extra_env);
    server_mounts.extend(pod_spec.extra_volume_mounts.clone().unwrap_or_default());
    volumes.extend(pod_spec.extra_volumes.clone().unwrap_or_default());

    let mut ports = vec![ContainerPort {
        name: Some("http".to_string()),
        container_port: port,
        protocol: Some("TCP".to_string()),
        ..Default::default()
    }];
    ports.extend(extra_ports.iter().map(|p| ContainerPort {
        name: Some(p.name.clone()),
        container_port: p.port,
        protocol: Some(protocol(p).to_string()),
        ..Default::default()
    }));

    let executor_image = image_or(&spec.executor_image, &settings.default_executor_image);
    let server = Container {
        name: SERVER_CONTAINER.to_string(),
        image_pull_policy: Some(pull_policy(&executor_image).to_string()),
        image: Some(executor_image),
        command: Some(
            [
                "/tools/opencode",
                "serve",
                "--port",
                &port.to_string(),
                "--hostname",
                "0.0.0.0",
            ]
            .map(String::from)
            .to_vec(),
        ),
        working_dir: Some(workspace.to_string()),
        env: Some(env),
        env_from: (!credentials.env_from.is_empty()).then_some(credentials.env_from),
        volume_mounts: Some(server_mounts),
        ports: Some(ports),
        startup_probe: Some(tcp_probe(port, 2, 30)),
        readiness_probe: Some(tcp_probe(port, 10, 3)),
        liveness_probe: Some(tcp_probe(port, 30, 3)),
        resources: Some(pod_spec.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(pod_spec.security_context.clone().unwrap_or(security)),
        lifecycle: pod_spec.lifecycle.clone(),
        ..Default::default()
    };
    let mut containers = vec![server];
    containers.extend(sidecars);

    let scheduling = pod_spec.scheduling.clone().unwrap_or_default();
    let labels = match &pod_spec.labels {
        Some(extra) => with_user_labels(name, extra),
        None => server_labels(name),
    };
    let mut annotations = BTreeMap::new();
    if !contexts.data.is_empty() {
        annotations.insert(
            CONTEXT_HASH_ANNOTATION.to_string(),
            hash_data(&contexts.data),
        );
    }
    if !settings.git_commits.is_empty() {
        let commits: Vec<String> = settings
            .git_commits
            .iter()
            .map(|(name, commit)| format!("{name}={commit}"))
            .collect();
        annotations.insert(GIT_COMMITS_ANNOTATION.to_string(), commits.join(","));
    }
    let annotations = (!annotations.is_empty()).then_some(annotations);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations,
            ..Default::default()
        }),
        spec: Some(PodSpec {
            service_account_name: spec.service_account_name.clone(),
            init_containers: Some(init_containers),
            containers,
            volumes: Some(volumes),
            restart_policy: Some("Always".to_string()),
            image_pull_secrets: spec.image_pull_secrets.clone().filter(|s| !s.is_empty()),
            node_selector: scheduling.node_selector,
            tolerations: scheduling.tolerations,
            affinity: scheduling.affinity,
            runtime_class_name: pod_spec.runtime_class_name.clone(),
            security_context: Some(
                pod_spec
                    .pod_security_context
                    .clone()
                    .unwrap_or_else(|| default_pod_security(settings)),
            ),
            ..Default::default()
        }),
    }
}

fn push_all<T: Clone>(list: &mut Option<Vec<T>>, items: &[T]) {
    if !items.is_empty() {
        list.get_or_insert_with(Vec::new)
            .extend(items.iter().cloned());
    }
}

fn image_or(image: &Option<String>, default: &str) -> String {
    image
        .clone()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Always for `:latest` or untagged images, IfNotPresent for tags and digests (as upstream).
fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn system_containers(pod_spec: &AgentPodSpec) -> crate::api::agent::SystemContainers {
    pod_spec.system_containers.clone().unwrap_or_default()
}

fn system_container(
    name: String,
    settings: &BuildSettings,
    script: String,
    env: Vec<EnvVar>,
    mounts: Vec<VolumeMount>,
) -> Container {
    let mut all_env = vec![
        env_value("HOME", HOME_DIR),
        env_value("SHELL", SYSTEM_SHELL),
    ];
    all_env.extend(env);
    Container {
        name,
        image: Some(settings.system_image.clone()),
        image_pull_policy: Some(
            settings
                .system_image_pull_policy
                .clone()
                .unwrap_or_else(|| pull_policy(&settings.system_image).to_string()),
        ),
        command: Some(vec!["sh".to_string(), "-c".to_string(), script]),
        env: Some(all_env),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

fn apply_overrides(container: &mut Container, overrides: Option<&ContainerOverrides>) {
    let Some(overrides) = overrides else {
        return;
    };
    push_all(
        &mut container.env,
        overrides.extra_env.as_deref().unwrap_or_default(),
    );
    push_all(
        &mut container.volume_mounts,
        overrides.extra_volume_mounts.as_deref().unwrap_or_default(),
    );
}

fn tcp_probe(port: i32, period: i32, failures: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// Upstream's default: a memory limit, so a runaway agent is OOM-killed, not the node.
fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("512Mi".to_string()),
        )])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("4Gi".to_string()),
        )])),
        ..Default::default()
    }
}

/// The restricted container security context. When the user's podSecurityContext picks the
/// uid, containers follow it (and claim runAsNonRoot only for a non-zero uid).
fn container_security(
    settings: &BuildSettings,
    user_pod: Option<&PodSecurityContext>,
) -> SecurityContext {
    let (run_as_user, run_as_non_root) = match user_pod.and_then(|p| p.run_as_user) {
        Some(uid) => (None, (uid != 0).then_some(true)),
        None if user_pod.and_then(|p| p.run_as_non_root) == Some(false) => (None, None),
        None => (Some(settings.run_as_user), Some(true)),
    };
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            ..Default::default()
        }),
        seccomp_profile: Some(runtime_default()),
        run_as_non_root,
        run_as_user,
        ..Default::default()
    }
}

fn default_pod_security(settings: &BuildSettings) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(settings.run_as_user),
        run_as_group: Some(settings.run_as_user),
        fs_group: Some(settings.run_as_user),
        fs_group_change_policy: Some("OnRootMismatch".to_string()),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_string(),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Small object helpers

fn env_value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..Default::default()
    }
}

fn env_secret(name: &str, secret: &str, key: &str, optional: Option<bool>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

fn mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.to_string(),
        mount_path: path.to_string(),
        ..Default::default()
    }
}

fn read_only(mut mount: VolumeMount) -> VolumeMount {
    mount.read_only = Some(true);
    mount
}

fn sub_path_mount(volume: &str, path: &str, sub_path: &str) -> VolumeMount {
    VolumeMount {
        sub_path: Some(sub_path.to_string()),
        ..mount(volume, path)
    }
}

/// Lexically normalised absolute path: no `.`, `..`, doubled or trailing slashes.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// A context mount path: absolute as given, relative under workspaceDir; normalised.
fn resolve_path(path: &str, workspace: &str) -> String {
    if path.starts_with('/') {
        clean_path(path)
    } else {
        clean_path(&format!("{workspace}/{path}"))
    }
}

fn is_under(path: &str, dir: &str) -> bool {
    path == dir || dir == "/" || path.starts_with(&format!("{dir}/"))
}

fn parent_dir(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((parent, _)) => parent.to_string(),
    }
}

/// Quotes a word for `sh` unless it is made of characters the shell leaves alone.
fn sh_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A ConfigMap key for a file path, as upstream derives it (`/tools/opencode.json` ->
/// `tools-opencode.json`); characters a key cannot hold become `_`.
fn config_map_key(path: &str) -> String {
    let key: String = path
        .trim_start_matches('/')
        .chars()
        .map(|c| match c {
            '/' => '-',
            c if c.is_ascii_alphanumeric() || "-_.".contains(c) => c,
            _ => '_',
        })
        .collect();
    if key.is_empty() || key.starts_with("..") {
        format!("file{key}")
    } else {
        key
    }
}

/// FNV-1a over the sorted entries: stable across releases, unlike std's hasher.
fn hash_data(data: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (key, value) in data {
        for byte in key.bytes().chain([0]).chain(value.bytes()).chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

// ---------------------------------------------------------------------------------------------
// Credentials, CA bundle, proxy

#[derive(Default)]
struct CredentialParts {
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
    env: Vec<EnvVar>,
    env_from: Vec<EnvFromSource>,
}

/// The four credential forms, with upstream's volume names (`credential-<i>`) and its
/// single-file layout (item path and subPath `secret-file`).
fn credentials(credentials: &[Credential]) -> CredentialParts {
    let mut parts = CredentialParts::default();
    for (i, credential) in credentials.iter().enumerate() {
        let secret = &credential.secret_ref.name;
        let key = credential
            .secret_ref
            .key
            .as_deref()
            .filter(|k| !k.is_empty());
        let mount_path = credential.mount_path.as_deref().filter(|p| !p.is_empty());
        let mode = credential.file_mode.unwrap_or(DEFAULT_SECRET_FILE_MODE);
        let volume = format!("credential-{i}");
        match (key, mount_path) {
            (None, None) => parts.env_from.push(EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: secret.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            (None, Some(path)) => {
                parts.volumes.push(Volume {
                    name: volume.clone(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(secret.clone()),
                        default_mode: Some(mode),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                parts.mounts.push(mount(&volume, path));
            }
            (Some(key), path) => {
                if let Some(env) = credential.env.as_deref().filter(|e| !e.is_empty()) {
                    parts.env.push(env_secret(env, secret, key, None));
                }
                if let Some(path) = path {
                    parts.volumes.push(Volume {
                        name: volume.clone(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some(secret.clone()),
                            items: Some(vec![KeyToPath {
                                key: key.to_string(),
                                path: "secret-file".to_string(),
                                mode: Some(mode),
                            }]),
                            default_mode: Some(mode),
                            ..Default::default()
                        }),
                        ..Default::default()
                    });
                    parts
                        .mounts
                        .push(sub_path_mount(&volume, path, "secret-file"));
                }
            }
        }
    }
    parts
}

/// Upstream's CA layout (volume `ca-bundle` at /etc/ssl/certs/custom-ca, file `tls.crt`, env
/// CUSTOM_CA_CERT_PATH), plus NODE_EXTRA_CA_CERTS, which OpenCode (Bun) adds to its trust store.
fn ca_bundle(ca: &CaBundleConfig) -> Option<(Volume, VolumeMount, Vec<EnvVar>)> {
    let items = |key: String| {
        Some(vec![KeyToPath {
            key,
            path: "tls.crt".to_string(),
            mode: None,
        }])
    };
    let volume = match ca_bundle_source(ca)? {
        CaBundleSource::ConfigMap { name, key } => Volume {
            name: CA_VOLUME.to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: name.to_string(),
                items: items(key),
                ..Default::default()
            }),
            ..Default::default()
        },
        CaBundleSource::Secret { name, key } => Volume {
            name: CA_VOLUME.to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(name.to_string()),
                items: items(key),
                ..Default::default()
            }),
            ..Default::default()
        },
    };
    Some((
        volume,
        read_only(mount(CA_VOLUME, CA_MOUNT_PATH)),
        vec![
            env_value("CUSTOM_CA_CERT_PATH", CA_FILE_PATH),
            env_value("NODE_EXTRA_CA_CERTS", CA_FILE_PATH),
        ],
    ))
}

/// Where an Agent's CA bundle is, with the default key applied.
pub enum CaBundleSource<'a> {
    ConfigMap { name: &'a str, key: String },
    Secret { name: &'a str, key: String },
}

/// The CA bundle's ConfigMap (key default `ca-bundle.crt`) or, without one, its Secret (key
/// default `ca.crt`).
pub fn ca_bundle_source(ca: &CaBundleConfig) -> Option<CaBundleSource<'_>> {
    let key = |key: &Option<String>, default: &str| {
        key.clone()
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    if let Some(reference) = &ca.config_map_ref {
        return Some(CaBundleSource::ConfigMap {
            name: &reference.name,
            key: key(&reference.key, "ca-bundle.crt"),
        });
    }
    ca.secret_ref
        .as_ref()
        .map(|reference| CaBundleSource::Secret {
            name: &reference.name,
            key: key(&reference.key, "ca.crt"),
        })
}

/// HTTP(S)_PROXY and NO_PROXY in both spellings; NO_PROXY always covers `.svc` and the cluster
/// domain (as upstream).
fn proxy_env(proxy: &ProxyConfig, cluster_domain: &str) -> Vec<EnvVar> {
    proxy_variables(proxy, cluster_domain)
        .iter()
        .map(|(name, value)| env_value(name, value))
        .collect()
}

/// The proxy variables of [`proxy_env`] as (name, value) pairs, for processes the controller
/// runs itself (`git ls-remote`).
pub fn proxy_variables(proxy: &ProxyConfig, cluster_domain: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for (upper, lower, value) in [
        ("HTTP_PROXY", "http_proxy", &proxy.http_proxy),
        ("HTTPS_PROXY", "https_proxy", &proxy.https_proxy),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            env.push((upper.to_string(), value.to_string()));
            env.push((lower.to_string(), value.to_string()));
        }
    }
    let domain = format!(".{cluster_domain}");
    let mut no_proxy = proxy.no_proxy.clone().unwrap_or_default();
    for suffix in [".svc", domain.as_str()] {
        if !no_proxy.split(',').any(|entry| entry.trim() == suffix) {
            if !no_proxy.is_empty() {
                no_proxy.push(',');
            }
            no_proxy.push_str(suffix);
        }
    }
    env.push(("NO_PROXY".to_string(), no_proxy.clone()));
    env.push(("no_proxy".to_string(), no_proxy));
    env
}

// ---------------------------------------------------------------------------------------------
// Contexts, skills, opencode.json

/// A Git repository to clone: a Git context or a skill source.
#[derive(Debug, Clone, PartialEq)]
struct GitRepo {
    repository: String,
    /// Branch, tag or commit; "HEAD" is the remote's default branch.
    git_ref: String,
    /// 0: full history.
    depth: i64,
    recurse_submodules: bool,
    /// Directory inside the repository to expose instead of the whole checkout.
    path: Option<String>,
    /// Resolved absolute mount path.
    mount_path: String,
    /// Only these subdirectories of `path` are mounted (skills).
    names: Vec<String>,
    secret: Option<String>,
    /// Pull interval of a HotReload sync sidecar.
    sync: Option<Duration>,
}

/// What the contexts, skills and config turn into.
#[derive(Debug, Default)]
struct ContextPlan {
    /// Data of the `<a>-server-context` ConfigMap.
    data: BTreeMap<String, String>,
    /// Lines of the context-init script (empty: no context-init container).
    script: Vec<String>,
    /// Volumes of the user's ConfigMaps (`dir-mount-<i>`), mounted in context-init only.
    config_map_volumes: Vec<Volume>,
    config_map_mounts: Vec<VolumeMount>,
    /// Files and directories outside the workspace and /tools: (subPath on the `ctx-files`
    /// emptyDir where context-init writes them, target path the server mounts it at).
    external: Vec<(String, String)>,
    /// Whether context-init writes into /tools (opencode.json, files placed there).
    writes_tools: bool,
    git: Vec<GitRepo>,
    /// Whether opencode.json is written (OPENCODE_CONFIG).
    config_file: bool,
    /// Whether tui.json is written (OPENCODE_TUI_CONFIG).
    tui_config_file: bool,
    /// Environment of context-init: URL contexts' credentials from their Secrets.
    env: Vec<EnvVar>,
    /// Number of URL contexts.
    urls: usize,
}

/// A file context-init puts into place.
struct ContextFile {
    source: FileSource,
    target: String,
    mode: i32,
}

enum FileSource {
    /// A file on a mounted ConfigMap; `optional`: skipped when missing.
    Copy { path: String, optional: bool },
    /// A URL context fetched when the Pod starts.
    Fetch(UrlFetch),
}

/// One piece of `.kubeopencode/context.md`.
enum Part {
    /// Content known now (Text, Runtime), stored in the context ConfigMap.
    Static(String),
    /// A ConfigMap read when the Pod starts: one key, or every key.
    ConfigMap {
        header: String,
        dir: String,
        key: Option<String>,
    },
    /// A URL fetched when the Pod starts.
    Url { header: String, fetch: UrlFetch },
}

/// Secret keys of a URL context's credentials and the env var suffixes they become.
const URL_SECRET_KEYS: [(&str, &str); 3] = [
    ("TOKEN", "token"),
    ("USERNAME", "username"),
    ("PASSWORD", "password"),
];

/// `fetch_url LABEL URL OUT TIMEOUT INSECURE AUTH [HEADER...]` for context-init: curl when the
/// image has it (headers, credentials included, go through stdin, not the command line), else
/// wget (busybox's in the default alpine/git image), which can only take them as arguments.
/// OUT `-` is standard output.
const FETCH_URL_FUNCTION: &str = r#"fetch_url() {
  label=$1 url=$2 out=$3 timeout=$4 insecure=$5 auth=$6
  shift 6
  if [ -n "$auth" ]; then set -- "$@" "Authorization: $auth"; fi
  if command -v curl >/dev/null 2>&1; then
    for h in "$@"; do printf '%s\n' "$h"; done | curl -fsSL --max-time "$timeout" ${insecure:+--insecure} ${CUSTOM_CA_CERT_PATH:+--cacert "$CUSTOM_CA_CERT_PATH"} -H @- -o "$out" "$url" && return 0
  else
    n=$#
    for h in "$@"; do set -- "$@" --header "$h"; done
    shift "$n"
    wget -q -T "$timeout" ${insecure:+--no-check-certificate} "$@" -O "$out" "$url" && return 0
  fi
  echo "context $label: could not fetch $url" >&2
  return 1
}"#;

/// One URL context: fetched by context-init each time the Pod starts.
#[derive(Debug, Clone)]
struct UrlFetch {
    index: usize,
    label: String,
    url: UrlContext,
}

impl UrlFetch {
    /// The shell line that fetches it into `out` (already quoted, or `-`).
    fn command(&self, out: &str) -> String {
        let url = &self.url;
        let has_secret = url.secret_ref.is_some();
        let timeout = url
            .timeout
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_URL_TIMEOUT);
        let insecure = if url.insecure_skip_tls_verify == Some(true) {
            "1"
        } else {
            ""
        };
        // The Secret's credentials win over an Authorization header (as upstream).
        let headers: Vec<String> = url
            .headers
            .iter()
            .flatten()
            .filter(|(name, _)| !(has_secret && name.eq_ignore_ascii_case("authorization")))
            .map(|(name, value)| sh_quote(&format!("{name}: {value}")))
            .collect();
        let mut line = String::new();
        let auth = if has_secret {
            let i = self.index;
            line.push_str(&format!(
                "auth=; if [ -n \"${{URL_{i}_TOKEN:-}}\" ]; then auth=\"Bearer $URL_{i}_TOKEN\"; elif [ -n \"${{URL_{i}_USERNAME:-}}\" ]; then auth=\"Basic $(printf '%s:%s' \"$URL_{i}_USERNAME\" \"${{URL_{i}_PASSWORD:-}}\" | base64 | tr -d '\\n')\"; fi; "
            ));
            "\"$auth\""
        } else {
            "''"
        };
        line.push_str(&format!(
            "fetch_url {} {} {out} {timeout} {} {auth}",
            sh_quote(&self.label),
            sh_quote(&url.source),
            sh_quote(insecure),
        ));
        for header in headers {
            line.push(' ');
            line.push_str(&header);
        }
        line
    }
}

fn plan_contexts(
    spec: &AgentSpec,
    agent: &str,
    namespace: &str,
    workspace: &str,
    plugins: &PluginPlan,
) -> ContextPlan {
    let mut plan = ContextPlan::default();
    let mut parts = Vec::new();
    let mut files: Vec<ContextFile> = Vec::new();
    let mut dirs: Vec<(String, String)> = Vec::new(); // (source dir, target dir)

    for (i, item) in spec.contexts.iter().flatten().enumerate() {
        let label = item
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("{}-{i}", type_name(item.type_).to_lowercase()));
        let header = format!(
            "<context name=\"{}\" namespace=\"{}\" type=\"{}\">",
            xml_attr(&label),
            xml_attr(namespace),
            type_name(item.type_)
        );
        let target = item
            .mount_path
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(|p| resolve_path(p, workspace));
        let mode = item.file_mode.unwrap_or(DEFAULT_CONTEXT_FILE_MODE);
        match item.type_ {
            ContextType::Text => {
                let text = item.text.clone().unwrap_or_default();
                match target {
                    Some(path) => {
                        let key = insert_unique(&mut plan.data, config_map_key(&path), text);
                        files.push(ContextFile {
                            source: FileSource::Copy {
                                path: format!("{CONTEXT_FILES_MOUNT}/{key}"),
                                optional: false,
                            },
                            target: path,
                            mode,
                        });
                    }
                    None => parts.push(Part::Static(format!("{header}\n{text}\n</context>"))),
                }
            }
            ContextType::Runtime => parts.push(Part::Static(format!(
                "{header}\n{}\n</context>",
                runtime_text(agent, namespace, workspace)
            ))),
            ContextType::ConfigMap => {
                let Some(source) = &item.config_map else {
                    continue;
                };
                let dir = user_config_map(&mut plan, source);
                let key = source.key.clone().filter(|k| !k.is_empty());
                match (target, key) {
                    (Some(path), Some(key)) => files.push(ContextFile {
                        source: FileSource::Copy {
                            path: format!("{dir}/{key}"),
                            optional: source.optional == Some(true),
                        },
                        target: path,
                        mode,
                    }),
                    (Some(path), None) => dirs.push((dir, path)),
                    (None, key) => parts.push(Part::ConfigMap { header, dir, key }),
                }
            }
            ContextType::Git => {
                let (Some(git), Some(mount_path)) = (&item.git, target) else {
                    continue;
                };
                let sync = git.sync.as_ref().filter(|s| {
                    s.enabled == Some(true)
                        && s.policy.unwrap_or(GitSyncPolicy::HotReload) == GitSyncPolicy::HotReload
                });
                plan.git.push(GitRepo {
                    repository: git.repository.clone(),
                    git_ref: ref_or_head(&git.ref_),
                    depth: git.depth.unwrap_or(1).max(0),
                    recurse_submodules: git.recurse_submodules == Some(true),
                    path: repo_sub_path(git.path.as_deref()),
                    mount_path,
                    names: Vec::new(),
                    secret: git.secret_ref.as_ref().map(|s| s.name.clone()),
                    sync: sync.map(sync_interval),
                });
            }
            ContextType::Url => {
                let Some(url) = &item.url else { continue };
                let index = plan.urls;
                let fetch = UrlFetch {
                    index,
                    label: label.clone(),
                    url: url.clone(),
                };
                if let Some(secret) = &url.secret_ref {
                    for (suffix, key) in URL_SECRET_KEYS {
                        plan.env.push(env_secret(
                            &format!("URL_{index}_{suffix}"),
                            &secret.name,
                            key,
                            Some(true),
                        ));
                    }
                }
                plan.urls += 1;
                match target {
                    Some(path) => files.push(ContextFile {
                        source: FileSource::Fetch(fetch),
                        target: path,
                        mode,
                    }),
                    None => parts.push(Part::Url { header, fetch }),
                }
            }
        }
    }

    let mut skill_paths = Vec::new();
    for skill in spec.skills.iter().flatten() {
        let Some(git) = &skill.git else { continue };
        let mount_path = format!("{SKILLS_BASE}/{}", skill.name);
        let names = git.names.clone().unwrap_or_default();
        if names.is_empty() {
            skill_paths.push(mount_path.clone());
        } else {
            skill_paths.extend(names.iter().map(|n| format!("{mount_path}/{n}")));
        }
        plan.git.push(GitRepo {
            repository: git.repository.clone(),
            git_ref: ref_or_head(&git.ref_),
            depth: git.depth.unwrap_or(1).max(0),
            recurse_submodules: git.recurse_submodules == Some(true),
            path: repo_sub_path(git.path.as_deref()),
            mount_path,
            names,
            secret: git.secret_ref.as_ref().map(|s| s.name.clone()),
            sync: None,
        });
    }

    let context_file = (!parts.is_empty()).then(|| format!("{workspace}/{CONTEXT_FILE_REL_PATH}"));

    // The script: files, directories, context.md, opencode.json. Targets outside the
    // workspace and /tools are staged on an emptyDir and mounted one by one (subPath), so a
    // file at /etc/x does not hide the image's /etc.
    let mut script = Vec::new();
    let stage = |plan: &mut ContextPlan, target: &str| -> String {
        if is_under(target, workspace) {
            target.to_string()
        } else if is_under(target, TOOLS_MOUNT_PATH) {
            plan.writes_tools = true;
            target.to_string()
        } else {
            let sub_path = config_map_key(target);
            plan.external.push((sub_path.clone(), target.to_string()));
            format!("{EXTERNAL_MOUNT}/{sub_path}")
        }
    };
    if plan.urls > 0 {
        script.push(FETCH_URL_FUNCTION.to_string());
    }
    for file in &files {
        let written = stage(&mut plan, &file.target);
        let put = match &file.source {
            FileSource::Copy { path, .. } => {
                format!("cp {} {}", sh_quote(path), sh_quote(&written))
            }
            FileSource::Fetch(fetch) => fetch.command(&sh_quote(&written)),
        };
        let lines = [
            format!("mkdir -p {}", sh_quote(&parent_dir(&written))),
            put,
            format!("chmod {:o} {}", file.mode, sh_quote(&written)),
        ];
        match &file.source {
            FileSource::Copy {
                path,
                optional: true,
            } => {
                script.push(format!("if [ -f {} ]; then", sh_quote(path)));
                script.extend(lines.map(|line| format!("  {line}")));
                script.push("fi".to_string());
            }
            _ => script.extend(lines),
        }
    }
    for (source, target) in &dirs {
        let written = stage(&mut plan, target);
        script.push(format!("mkdir -p {}", sh_quote(&written)));
        script.push(format!(
            "for f in {source}/* {source}/.[!.]*; do if [ -f \"$f\" ]; then cp \"$f\" {}/; fi; done",
            sh_quote(&written)
        ));
    }
    if let Some(path) = &context_file {
        script.push(format!("mkdir -p {}", sh_quote(&parent_dir(path))));
        script.push("{".to_string());
        for (n, part) in parts.iter().enumerate() {
            if n > 0 {
                script.push("printf '\\n\\n'".to_string());
            }
            match part {
                Part::Static(content) => {
                    let key =
                        insert_unique(&mut plan.data, format!("context-{n}.md"), content.clone());
                    script.push(format!("cat {CONTEXT_FILES_MOUNT}/{key}"));
                }
                Part::ConfigMap { header, dir, key } => {
                    script.push(format!("printf '%s\\n' {}", sh_quote(header)));
                    match key {
                        Some(key) => {
                            let file = sh_quote(&format!("{dir}/{key}"));
                            script.push(format!("if [ -f {file} ]; then cat {file}; fi"));
                        }
                        None => script.push(format!(
                            "first=1; for f in {dir}/* {dir}/.[!.]*; do if [ -f \"$f\" ]; then if [ -z \"$first\" ]; then printf '\\n'; fi; first=; printf '<file name=\"%s\">\\n' \"${{f##*/}}\"; cat \"$f\"; printf '\\n</file>'; fi; done"
                        )),
                    }
                    script.push("printf '\\n</context>'".to_string());
                }
                Part::Url { header, fetch } => {
                    script.push(format!("printf '%s\\n' {}", sh_quote(header)));
                    script.push(fetch.command("-"));
                    script.push("printf '\\n</context>'".to_string());
                }
            }
        }
        script.push(format!("}} > {}", sh_quote(path)));
    }
    if let Some(config) =
        opencode_config(spec, &skill_paths, context_file.as_deref(), &plugins.server)
    {
        let key = insert_unique(&mut plan.data, config_map_key(OPENCODE_CONFIG_PATH), config);
        script.push(format!(
            "cp {CONTEXT_FILES_MOUNT}/{key} {OPENCODE_CONFIG_PATH}"
        ));
        plan.config_file = true;
        plan.writes_tools = true;
    }
    if !plugins.tui.is_empty() {
        let config = serde_json::json!({
            "$schema": "https://opencode.ai/tui.json",
            "plugin": plugins.tui,
        });
        let key = insert_unique(
            &mut plan.data,
            config_map_key(OPENCODE_TUI_CONFIG_PATH),
            config.to_string(),
        );
        script.push(format!(
            "cp {CONTEXT_FILES_MOUNT}/{key} {OPENCODE_TUI_CONFIG_PATH}"
        ));
        plan.tui_config_file = true;
        plan.writes_tools = true;
    }
    plan.script = script;
    plan
}

/// Mounts a user's ConfigMap into context-init; returns the directory.
fn user_config_map(plan: &mut ContextPlan, source: &ConfigMapContext) -> String {
    let index = plan.config_map_volumes.len();
    let volume = format!("dir-mount-{index}");
    let dir = format!("/configmap-dir-{index}");
    let key = source.key.clone().filter(|k| !k.is_empty());
    plan.config_map_volumes.push(Volume {
        name: volume.clone(),
        config_map: Some(ConfigMapVolumeSource {
            name: source.name.clone(),
            items: key.map(|key| {
                vec![KeyToPath {
                    path: key.clone(),
                    key,
                    mode: None,
                }]
            }),
            optional: Some(source.optional == Some(true)),
            ..Default::default()
        }),
        ..Default::default()
    });
    plan.config_map_mounts.push(read_only(mount(&volume, &dir)));
    dir
}

fn insert_unique(data: &mut BTreeMap<String, String>, key: String, value: String) -> String {
    let mut candidate = key.clone();
    let mut n = 1;
    while data.contains_key(&candidate) {
        n += 1;
        candidate = format!("{key}-{n}");
    }
    data.insert(candidate.clone(), value);
    candidate
}

fn repo_sub_path(path: Option<&str>) -> Option<String> {
    let trimmed = path?.trim_matches('/');
    let cleaned: Vec<&str> = trimmed
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    (!cleaned.is_empty()).then(|| cleaned.join("/"))
}

fn type_name(t: ContextType) -> &'static str {
    match t {
        ContextType::Text => "Text",
        ContextType::ConfigMap => "ConfigMap",
        ContextType::Git => "Git",
        ContextType::Runtime => "Runtime",
        ContextType::Url => "URL",
    }
}

fn xml_attr(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

fn runtime_text(agent: &str, namespace: &str, workspace: &str) -> String {
    format!(
        "## KubeOpenCode runtime\n\n\
You are an AI coding agent: a long-running OpenCode server in a Kubernetes Pod, managed by \
KubeOpenCode (Agent {agent:?} in namespace {namespace:?}).\n\n\
- Your working directory is {workspace} (environment variable WORKSPACE_DIR).\n\
- KubeOpenCode context files are under {workspace}/.kubeopencode/.\n\
- Work arrives as sessions on this server: Tasks submitted to the Agent and people attached \
with `kubectl kubeoc agent attach {agent}`.\n\
- Your Agent's definition: `kubectl get agent {agent} -n {namespace} -o yaml` (when the \
ServiceAccount may read it)."
    )
}

/// opencode.json: spec.config plus the skill paths (`skills.paths`), the context file
/// (`instructions`) and the server plugins (`plugin`), appended without duplicates. None when
/// there is nothing to write.
fn opencode_config(
    spec: &AgentSpec,
    skill_paths: &[String],
    context_file: Option<&str>,
    plugins: &[serde_json::Value],
) -> Option<String> {
    if spec.config.is_none()
        && skill_paths.is_empty()
        && context_file.is_none()
        && plugins.is_empty()
    {
        return None;
    }
    let mut config = spec
        .config
        .clone()
        .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
    if let Some(object) = config.as_object_mut() {
        if !skill_paths.is_empty() {
            let skills = object
                .entry("skills")
                .or_insert_with(|| serde_json::json!({}));
            if !skills.is_object() {
                *skills = serde_json::json!({});
            }
            if let Some(skills) = skills.as_object_mut() {
                append_strings(skills, "paths", skill_paths);
            }
        }
        if let Some(file) = context_file {
            append_strings(object, "instructions", &[file.to_string()]);
        }
        if !plugins.is_empty() {
            append_plugins(object, plugins);
        }
    }
    Some(config.to_string())
}

/// Appends plugin entries to the `plugin` list after the user's own entries, which are kept
/// as written. An entry whose specifier the list already has is skipped, so a user's own
/// `["file:///plugins/node_modules/x", {...}]` wins over spec.plugins' entry for x. A user
/// entry naming the same package by npm name ("x") stays too: OpenCode would then fetch and
/// load that copy as well, so list a plugin in one place.
fn append_plugins(
    object: &mut serde_json::Map<String, serde_json::Value>,
    entries: &[serde_json::Value],
) {
    let list = object
        .entry("plugin")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if !list.is_array() {
        *list = serde_json::Value::Array(Vec::new());
    }
    if let Some(list) = list.as_array_mut() {
        for entry in entries {
            let specifier = plugin_entry_specifier(entry);
            if !list.iter().any(|e| plugin_entry_specifier(e) == specifier) {
                list.push(entry.clone());
            }
        }
    }
}

/// The specifier of a config `plugin` entry: `"spec"` or `["spec", {options}]`.
fn plugin_entry_specifier(entry: &serde_json::Value) -> Option<&str> {
    match entry {
        serde_json::Value::Array(pair) => pair.first().and_then(|s| s.as_str()),
        other => other.as_str(),
    }
}

// ---------------------------------------------------------------------------------------------
// Plugins

/// What spec.plugins turns into.
#[derive(Debug, Default, PartialEq)]
struct PluginPlan {
    /// npm specifiers for plugin-init, in spec order, each once.
    install: Vec<String>,
    /// `plugin` entries of opencode.json (target server).
    server: Vec<serde_json::Value>,
    /// `plugin` entries of tui.json (target tui).
    tui: Vec<serde_json::Value>,
}

/// Every plugin is installed; each is loaded from its installed directory. OpenCode 1.18.33
/// takes a `plugin` entry as `"file:///..."` or, with options, `["file:///...", {options}]`
/// and calls the plugin with the options as its second argument (both shapes checked with
/// the real binary, offline). Server plugins go to opencode.json, which `opencode serve`
/// loads. TUI plugins go to tui.json (OPENCODE_TUI_CONFIG, as upstream): `opencode serve`
/// does not read that file, but `opencode attach` run inside the server container (e.g. `kubectl
/// exec -it`) loads them; a TUI running elsewhere (`kubectl kubeoc agent attach --opencode`,
/// a laptop's `opencode attach`) reads its own machine's tui.json and cannot see /plugins.
///
/// Two 1.18.33 behaviours follow from loading by path (as upstream does): a plugin in the
/// newer form (default export `{id, server}`) must carry an `id`, which OpenCode only derives
/// from package.json for npm-name entries; and with any plugin configured, OpenCode first
/// installs its plugin SDK into its own config directory from the registry and waits for
/// that, so the server container needs the same registry (podSpec.extraEnv reaches it; when
/// unreachable the first request waits about a minute for npm's retries).
fn plan_plugins(plugins: &[PluginSpec]) -> PluginPlan {
    let mut plan = PluginPlan::default();
    for plugin in plugins {
        if !plan.install.contains(&plugin.name) {
            plan.install.push(plugin.name.clone());
        }
        let url = format!(
            "file://{PLUGINS_MOUNT_PATH}/node_modules/{}",
            npm_package_name(&plugin.name)
        );
        let entry = match &plugin.options {
            Some(options) => serde_json::json!([url, options]),
            None => serde_json::Value::String(url),
        };
        match plugin_target(plugin) {
            PluginTarget::Server => plan.server.push(entry),
            PluginTarget::Tui => plan.tui.push(entry),
        }
    }
    plan
}

/// The plugin-init script: one `npm install` of every specifier into /plugins. `--` ends
/// npm's options, so no specifier is read as a flag; `--ignore-scripts` as OpenCode's own
/// plugin installer does (plugins cannot rely on install scripts there either). The registry,
/// proxy and CA come from the environment (`npm_config_registry` in podSpec.extraEnv or
/// systemContainers.pluginInit.extraEnv, HTTP(S)_PROXY/NO_PROXY, NODE_EXTRA_CA_CERTS).
fn plugin_init_script(specifiers: &[String]) -> String {
    let words: Vec<String> = specifiers.iter().map(|s| sh_quote(s)).collect();
    [
        "set -eu".to_string(),
        format!(
            "npm install --prefix {PLUGINS_MOUNT_PATH} --no-audit --no-fund --ignore-scripts -- {}",
            words.join(" ")
        ),
        format!("npm ls --prefix {PLUGINS_MOUNT_PATH} --depth=0 || true"),
        format!("rm -rf {NPM_CACHE_DIR}"),
    ]
    .join("\n")
}

fn append_strings(
    object: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    values: &[String],
) {
    let list = object
        .entry(key)
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if !list.is_array() {
        *list = serde_json::Value::Array(Vec::new());
    }
    if let Some(list) = list.as_array_mut() {
        for value in values {
            if !list.iter().any(|v| v.as_str() == Some(value)) {
                list.push(serde_json::Value::String(value.clone()));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Git scripts

/// Credential env vars from the repository's Secret, named and keyed as upstream (all keys
/// optional, so one Secret serves HTTPS and SSH).
fn git_env(repo: &GitRepo) -> Vec<EnvVar> {
    let Some(secret) = &repo.secret else {
        return Vec::new();
    };
    [
        ("GIT_USERNAME", "username"),
        ("GIT_PASSWORD", "password"),
        ("GIT_SSH_KEY", "ssh-privatekey"),
        ("GIT_SSH_KNOWN_HOSTS", "ssh-known-hosts"),
    ]
    .into_iter()
    .map(|(name, key)| env_secret(name, secret, key, Some(true)))
    .collect()
}

/// Shell lines that set up credentials (from GIT_* env) and the extra CA for git.
fn git_prelude(repo: &GitRepo, has_ca: bool) -> Vec<String> {
    let mut lines = Vec::new();
    if repo.secret.is_some() {
        lines.extend(
            [
                r#"if [ -n "${GIT_PASSWORD:-}" ]; then"#,
                r#"  git config --global credential.helper '!f() { test "$1" = get || exit 0; echo "username=${GIT_USERNAME:-git}"; echo "password=${GIT_PASSWORD}"; }; f'"#,
                "fi",
                r#"if [ -n "${GIT_SSH_KEY:-}" ]; then"#,
                r#"  mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh""#,
                r#"  printf '%s\n' "$GIT_SSH_KEY" > "$HOME/.ssh/id_git" && chmod 600 "$HOME/.ssh/id_git""#,
                r#"  if [ -n "${GIT_SSH_KNOWN_HOSTS:-}" ]; then"#,
                r#"    printf '%s\n' "$GIT_SSH_KNOWN_HOSTS" > "$HOME/.ssh/known_hosts""#,
                r#"    export GIT_SSH_COMMAND="ssh -i $HOME/.ssh/id_git -o UserKnownHostsFile=$HOME/.ssh/known_hosts -o StrictHostKeyChecking=yes""#,
                "  else",
                r#"    export GIT_SSH_COMMAND="ssh -i $HOME/.ssh/id_git -o StrictHostKeyChecking=accept-new""#,
                "  fi",
                "fi",
            ]
            .map(String::from),
        );
    }
    if has_ca {
        lines.extend(
            [
                r#"cat /etc/ssl/certs/ca-certificates.crt "$CUSTOM_CA_CERT_PATH" > "$HOME/ca-bundle.crt" 2>/dev/null || cp "$CUSTOM_CA_CERT_PATH" "$HOME/ca-bundle.crt""#,
                r#"export GIT_SSL_CAINFO="$HOME/ca-bundle.crt""#,
            ]
            .map(String::from),
        );
    }
    lines
}

/// `git clone --depth <d> --branch <ref> <repository> <dest>`; ref HEAD means the default
/// branch (no --branch), a commit id is fetched and checked out after the clone.
fn clone_command(repo: &GitRepo, dest: &str) -> String {
    let mut words = vec!["git".to_string(), "clone".to_string()];
    let depth = (repo.depth > 0).then(|| repo.depth.to_string());
    if let Some(depth) = &depth {
        words.extend(["--depth".to_string(), depth.clone()]);
    }
    if repo.recurse_submodules {
        words.push("--recurse-submodules".to_string());
    }
    let commit = crate::controller::git_remote::is_commit(&repo.git_ref);
    if commit {
        words.push("--no-checkout".to_string());
    } else if repo.git_ref != "HEAD" {
        words.extend(["--branch".to_string(), sh_quote(&repo.git_ref)]);
    }
    words.extend([sh_quote(&repo.repository), dest.to_string()]);
    let mut command = words.join(" ");
    if commit {
        let depth = depth.map(|d| format!(" --depth {d}")).unwrap_or_default();
        command.push_str(&format!(
            " && git -C {dest} fetch{depth} origin {r} && git -C {dest} checkout -q {r}",
            r = repo.git_ref
        ));
    }
    command
}

/// The git-init script: clone into /git/repo (retrying), then, for a repository at
/// workspaceDir itself, copy the checkout into the workspace (skipped when the persistent
/// workspace already holds one).
fn git_init_script(repo: &GitRepo, workspace_root: Option<&str>, has_ca: bool) -> String {
    let mut lines = vec!["set -eu".to_string()];
    lines.extend(git_prelude(repo, has_ca));
    lines.extend([
        format!("if [ -d {GIT_CHECKOUT}/.git ]; then"),
        format!("  echo 'git-init: {GIT_CHECKOUT} is already cloned'"),
        "else".to_string(),
        "  attempt=1".to_string(),
        format!("  until {}; do", clone_command(repo, GIT_CHECKOUT)),
        format!("    if [ \"$attempt\" -ge {CLONE_ATTEMPTS} ]; then echo 'git-init: clone failed {CLONE_ATTEMPTS} times' >&2; exit 1; fi"),
        "    attempt=$((attempt + 1))".to_string(),
        format!("    echo 'git-init: clone failed, retrying in 5s' >&2; rm -rf {GIT_CHECKOUT}; sleep 5"),
        "  done".to_string(),
        "fi".to_string(),
        format!("git -C {GIT_CHECKOUT} log -1 --format='git-init: at %H %s' || true"),
    ]);
    if let Some(workspace) = workspace_root {
        let ws = sh_quote(workspace);
        match &repo.path {
            None => lines.extend([
                format!("if [ -e {ws}/.git ]; then"),
                format!("  echo 'git-init: {workspace} already holds a checkout; left as it is'"),
                "else".to_string(),
                format!("  cp -a {GIT_CHECKOUT}/. {ws}/"),
                "fi".to_string(),
            ]),
            Some(path) => lines.push(format!(
                "cp -a {}/. {ws}/",
                sh_quote(&format!("{GIT_CHECKOUT}/{path}"))
            )),
        }
    }
    lines.join("\n")
}

/// The git-sync sidecar script: `git pull --ff-only` every interval, in the checkout the
/// server sees.
fn git_sync_script(
    repo: &GitRepo,
    workspace_root: Option<&str>,
    interval: Duration,
    has_ca: bool,
) -> String {
    let seconds = interval.as_secs().max(1);
    let (checkout, copy) = match (workspace_root, &repo.path) {
        (Some(ws), None) => (sh_quote(ws), None),
        (Some(ws), Some(path)) => (
            GIT_CHECKOUT.to_string(),
            Some(format!(
                "cp -a {}/. {}/",
                sh_quote(&format!("{GIT_CHECKOUT}/{path}")),
                sh_quote(ws)
            )),
        ),
        (None, _) => (GIT_CHECKOUT.to_string(), None),
    };
    let mut lines = vec!["set -eu".to_string()];
    lines.extend(git_prelude(repo, has_ca));
    lines.extend([
        "while true; do".to_string(),
        format!("  sleep {seconds}"),
        format!("  if git -C {checkout} pull --ff-only; then"),
        copy.map(|c| format!("    {c}")).unwrap_or_else(|| {
            format!("    git -C {checkout} log -1 --format='git-sync: at %H %s' || true")
        }),
        "  else".to_string(),
        format!("    echo 'git-sync: pull failed; next try in {seconds}s' >&2"),
        "  fi".to_string(),
        "done".to_string(),
    ]);
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use k8s_openapi::api::core::v1::PodSpec;

    use super::*;

    #[test]
    fn the_cluster_config_sets_domain_system_image_and_a_fallback_proxy() {
        let config: KubeOpenCodeConfigSpec = serde_json::from_value(serde_json::json!({
            "clusterDomain": "corp.internal",
            "systemImage": {"image": "registry.corp/git-sh:1", "imagePullPolicy": "Always"},
            "proxy": {"httpsProxy": "http://proxy.corp:3128"},
        }))
        .expect("config");
        let settings = BuildSettings::default().with_cluster_config(&config);
        assert_eq!(settings.cluster_domain, "corp.internal");
        assert_eq!(settings.system_image, "registry.corp/git-sh:1");
        assert_eq!(settings.system_image_pull_policy.as_deref(), Some("Always"));
        let objects = build(&seed_agent(), &seed_agent().spec, &settings);
        let git_init = all_containers(pod(&objects))
            .find(|c| c.name.starts_with("git-init"))
            .expect("the seed has a Git context");
        assert_eq!(git_init.image.as_deref(), Some("registry.corp/git-sh:1"));
        assert_eq!(git_init.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(settings.plugin_image, BuildSettings::default().plugin_image);
        let unset =
            BuildSettings::default().with_cluster_config(&KubeOpenCodeConfigSpec::default());
        assert_eq!(unset, BuildSettings::default());

        let inherits = with_cluster_proxy(AgentSpec::default(), &config);
        assert_eq!(
            inherits.proxy.and_then(|p| p.https_proxy).as_deref(),
            Some("http://proxy.corp:3128")
        );
        let own = AgentSpec {
            proxy: Some(ProxyConfig {
                http_proxy: Some("http://own:8080".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let kept = with_cluster_proxy(own.clone(), &config);
        assert_eq!(kept.proxy, own.proxy, "the Agent's own proxy wins whole");
    }

    #[test]
    fn the_child_selector_matches_every_childs_labels() {
        let labels = server_labels("a");
        for pair in CHILD_SELECTOR.split(',') {
            let (key, value) = pair.split_once('=').expect("key=value");
            assert_eq!(labels.get(key).map(String::as_str), Some(value), "{pair}");
        }
    }
    use crate::api::AgentTemplate;

    // -----------------------------------------------------------------------------------------
    // Test data: upstream's examples and the seed agent

    fn shared_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")
    }

    fn upstream_dir() -> PathBuf {
        std::env::var_os("KUBEOC_UPSTREAM_EXAMPLES")
            .map_or_else(|| shared_dir().join("upstream-examples"), PathBuf::from)
    }

    fn documents(path: &Path) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
        docs.into_iter().filter(|d| !d.is_null()).collect()
    }

    fn yaml_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        files
    }

    /// An upstream Agent with the template it names, looked up in its own file first, then in
    /// resources/, then in the other docs.
    struct Example {
        file: String,
        agent: Agent,
        template: Option<AgentTemplate>,
    }

    fn with_identity(mut agent: Agent) -> Agent {
        agent
            .metadata
            .namespace
            .get_or_insert_with(|| "team".to_string());
        agent.metadata.uid = Some("4f1c2a9e-0000-4000-8000-000000000001".to_string());
        agent
    }

    fn upstream_examples() -> Vec<Example> {
        let mut files = Vec::new();
        for dir in ["resources", "docs"] {
            for path in yaml_files(&upstream_dir().join(dir)) {
                let name = format!(
                    "{dir}/{}",
                    path.file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default()
                );
                files.push((name, documents(&path)));
            }
        }
        let templates_in = |docs: &[serde_json::Value]| -> Vec<AgentTemplate> {
            docs.iter()
                .filter(|d| d["kind"] == "AgentTemplate")
                .map(|d| serde_json::from_value(d.clone()).expect("an AgentTemplate"))
                .collect()
        };
        let mut examples = Vec::new();
        for (file, docs) in &files {
            for doc in docs.iter().filter(|d| d["kind"] == "Agent") {
                let agent: Agent = serde_json::from_value(doc.clone())
                    .unwrap_or_else(|e| panic!("{file}: not an Agent: {e}"));
                let wanted = agent.spec.template_ref.as_ref().map(|t| t.name.clone());
                let template = wanted.and_then(|wanted| {
                    let same_file = templates_in(docs);
                    let resources = files
                        .iter()
                        .filter(|(f, _)| f.starts_with("resources/"))
                        .flat_map(|(_, d)| templates_in(d));
                    let others = files.iter().flat_map(|(_, d)| templates_in(d));
                    same_file
                        .into_iter()
                        .chain(resources)
                        .chain(others)
                        .find(|t| t.metadata.name.as_deref() == Some(wanted.as_str()))
                });
                examples.push(Example {
                    file: file.clone(),
                    agent: with_identity(agent),
                    template,
                });
            }
        }
        examples
    }

    fn example(file: &str, name: &str) -> Example {
        upstream_examples()
            .into_iter()
            .find(|e| e.file.contains(file) && e.agent.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no Agent {name} in {file}"))
    }

    fn agent_yaml(yaml: &str) -> Agent {
        with_identity(serde_saphyr::from_str(yaml).expect("an Agent"))
    }

    fn seed_agent() -> Agent {
        let path = shared_dir().join("seed/team-agent.yaml");
        let doc = documents(&path).remove(0);
        with_identity(serde_json::from_value(doc).expect("the seed is an Agent"))
    }

    fn build_example(example: &Example) -> (AgentSpec, ServerObjects) {
        let spec = effective_spec(
            &example.agent.spec,
            example.template.as_ref().map(|t| &t.spec),
        );
        validate(&spec).unwrap_or_else(|e| panic!("{}: {e}", example.file));
        let objects = build(&example.agent, &spec, &BuildSettings::default());
        (spec, objects)
    }

    fn build_agent(agent: &Agent) -> ServerObjects {
        validate(&agent.spec).expect("a valid spec");
        build(agent, &agent.spec, &BuildSettings::default())
    }

    // -----------------------------------------------------------------------------------------
    // Accessors

    fn pod(objects: &ServerObjects) -> &PodSpec {
        objects
            .deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("a pod spec")
    }

    fn all_containers(pod: &PodSpec) -> impl Iterator<Item = &Container> {
        pod.init_containers.iter().flatten().chain(&pod.containers)
    }

    fn container<'a>(pod: &'a PodSpec, name: &str) -> &'a Container {
        all_containers(pod)
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no container {name}"))
    }

    fn server(objects: &ServerObjects) -> &Container {
        container(pod(objects), SERVER_CONTAINER)
    }

    fn names(containers: Option<&Vec<Container>>) -> Vec<&str> {
        containers
            .into_iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect()
    }

    fn env_names(c: &Container) -> Vec<&str> {
        c.env.iter().flatten().map(|e| e.name.as_str()).collect()
    }

    fn env<'a>(c: &'a Container, name: &str) -> &'a EnvVar {
        c.env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{}: no env {name}", c.name))
    }

    fn env_value_of<'a>(c: &'a Container, name: &str) -> &'a str {
        env(c, name).value.as_deref().unwrap_or_default()
    }

    fn secret_ref(e: &EnvVar) -> (&str, &str) {
        let s = e
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .unwrap_or_else(|| panic!("{} is not from a Secret", e.name));
        (s.name.as_str(), s.key.as_str())
    }

    fn mount_at<'a>(c: &'a Container, path: &str) -> &'a VolumeMount {
        c.volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == path)
            .unwrap_or_else(|| panic!("{}: nothing mounted at {path}", c.name))
    }

    fn volume<'a>(pod: &'a PodSpec, name: &str) -> &'a Volume {
        pod.volumes
            .iter()
            .flatten()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    }

    fn script(c: &Container) -> &str {
        let command = c.command.as_deref().unwrap_or_default();
        assert_eq!(
            command.get(..2),
            Some(&["sh".to_string(), "-c".to_string()][..]),
            "{}",
            c.name
        );
        command[2].as_str()
    }

    fn size(pvc: &PersistentVolumeClaim) -> &str {
        &pvc.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .expect("requests")["storage"]
            .0
    }

    fn tcp_port(probe: Option<&Probe>) -> Option<&IntOrString> {
        probe.and_then(|p| p.tcp_socket.as_ref()).map(|t| &t.port)
    }

    // -----------------------------------------------------------------------------------------
    // Invariants every built Agent satisfies

    const LEADING_ENV: [&str; 9] = [
        "HOME",
        "SHELL",
        "PATH",
        "WORKSPACE_DIR",
        "OPENCODE_DB",
        "XDG_DATA_HOME",
        "XDG_STATE_HOME",
        "OPENCODE_SERVER_PASSWORD",
        "OPENCODE_DISABLE_AUTOUPDATE",
    ];

    fn check_upstream_shape(what: &str, agent: &Agent, spec: &AgentSpec, objects: &ServerObjects) {
        let name = agent.metadata.name.as_deref().expect("a name");
        let labels = server_labels(name);
        let port = server_port(spec);
        let workspace = spec.workspace_dir.as_deref().expect("workspaceDir");

        // Names, labels, ownership.
        let deployment = &objects.deployment;
        assert_eq!(
            deployment.metadata.name.as_deref(),
            Some(format!("{name}-server").as_str()),
            "{what}"
        );
        assert_eq!(
            objects.service.metadata.name.as_deref(),
            Some(name),
            "{what}"
        );
        assert_eq!(
            objects.sessions_pvc.metadata.name.as_deref(),
            Some(format!("{name}-server-sessions").as_str()),
            "{what}"
        );
        let mut metas = vec![
            &deployment.metadata,
            &objects.service.metadata,
            &objects.sessions_pvc.metadata,
        ];
        metas.extend(objects.workspace_pvc.as_ref().map(|p| &p.metadata));
        metas.extend(objects.context_config_map.as_ref().map(|c| &c.metadata));
        for meta in metas {
            let object_labels = meta.labels.as_ref().expect("labels");
            for (k, v) in &labels {
                assert_eq!(
                    object_labels.get(k),
                    Some(v),
                    "{what}: {:?} label {k}",
                    meta.name
                );
            }
            assert_eq!(meta.namespace, agent.metadata.namespace, "{what}");
            assert_eq!(
                meta.owner_references.as_deref(),
                Some(&[owner_reference(agent)][..]),
                "{what}"
            );
        }
        let owner = owner_reference(agent);
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        assert_eq!(
            (owner.kind.as_str(), owner.api_version.as_str()),
            ("Agent", "kubeopencode.io/v1alpha1")
        );

        // Deployment.
        let dspec = deployment.spec.as_ref().expect("deployment spec");
        let replicas = if spec.suspend == Some(true) { 0 } else { 1 };
        assert_eq!(dspec.replicas, Some(replicas), "{what}");
        assert_eq!(
            dspec.selector.match_labels.as_ref(),
            Some(&selector_labels(name)),
            "{what}"
        );
        assert_eq!(
            dspec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
            Some("Recreate"),
            "{what}"
        );
        let template_labels = dspec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .expect("pod labels");
        assert_eq!(
            template_labels.get(AGENT_LABEL).map(String::as_str),
            Some(name),
            "{what}"
        );
        let pod = pod(objects);
        assert_eq!(
            pod.service_account_name, spec.service_account_name,
            "{what}"
        );

        // Init containers: opencode-init first, with the agent image's own entrypoint.
        let init = &pod.init_containers.as_ref().expect("init containers")[0];
        assert_eq!(init.name, "opencode-init", "{what}");
        let agent_image = spec.agent_image.as_deref().unwrap_or(DEFAULT_AGENT_IMAGE);
        assert_eq!(init.image.as_deref(), Some(agent_image), "{what}");
        assert_eq!(init.command, None, "{what}");
        assert_eq!(mount_at(init, "/tools").name, "tools", "{what}");

        // The server container.
        let server = server(objects);
        assert_eq!(pod.containers[0].name, "opencode-server", "{what}");
        let executor_image = spec
            .executor_image
            .as_deref()
            .unwrap_or(DEFAULT_EXECUTOR_IMAGE);
        assert_eq!(server.image.as_deref(), Some(executor_image), "{what}");
        let port_text = port.to_string();
        assert_eq!(
            server.command.as_deref(),
            Some(
                &[
                    "/tools/opencode",
                    "serve",
                    "--port",
                    port_text.as_str(),
                    "--hostname",
                    "0.0.0.0"
                ]
                .map(String::from)[..]
            ),
            "{what}"
        );
        assert_eq!(server.working_dir.as_deref(), Some(workspace), "{what}");
        assert_eq!(
            env_names(server)[..LEADING_ENV.len()],
            LEADING_ENV,
            "{what}"
        );
        assert!(
            env_value_of(server, "PATH").starts_with("/tools:"),
            "{what}"
        );
        assert_eq!(env_value_of(server, "WORKSPACE_DIR"), workspace, "{what}");
        assert_eq!(
            env_value_of(server, "OPENCODE_DB"),
            "/data/sessions/opencode.db",
            "{what}"
        );
        assert!(
            env_value_of(server, "XDG_DATA_HOME").starts_with("/data/sessions/"),
            "{what}"
        );
        assert!(
            env_value_of(server, "XDG_STATE_HOME").starts_with("/data/sessions/"),
            "{what}"
        );
        assert_eq!(
            secret_ref(env(server, "OPENCODE_SERVER_PASSWORD")),
            (format!("{name}-server-auth").as_str(), "password"),
            "{what}"
        );
        if spec
            .config
            .as_ref()
            .is_some_and(|c| c.get("permission").is_none())
            || spec.config.is_none()
        {
            assert_eq!(
                env_value_of(server, "OPENCODE_PERMISSION"),
                r#"{"*":"allow"}"#,
                "{what}"
            );
        }
        if let Some(config) = &spec.config {
            assert_eq!(
                env_value_of(server, "OPENCODE_CONFIG"),
                "/tools/opencode.json",
                "{what}"
            );
            let cm = objects
                .context_config_map
                .as_ref()
                .expect("a context ConfigMap");
            let written: serde_json::Value =
                serde_json::from_str(&cm.data.as_ref().expect("data")["tools-opencode.json"])
                    .expect("JSON");
            for (k, v) in config.as_object().expect("an object") {
                if k != "instructions" && k != "skills" && k != "plugin" {
                    assert_eq!(&written[k], v, "{what}: config key {k}");
                }
            }
        }
        assert_eq!(mount_at(server, "/tools").name, "tools", "{what}");
        assert_eq!(mount_at(server, workspace).name, "workspace", "{what}");
        assert_eq!(
            mount_at(server, "/data/sessions").name,
            "session-data",
            "{what}"
        );

        // Ports and probes.
        let extra = spec.extra_ports.clone().unwrap_or_default();
        let mut expected_ports = vec![("http".to_string(), port)];
        expected_ports.extend(extra.iter().map(|p| (p.name.clone(), p.port)));
        let container_ports: Vec<_> = server
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
            .collect();
        assert_eq!(container_ports, expected_ports, "{what}");
        let sspec = objects.service.spec.as_ref().expect("service spec");
        assert_eq!(sspec.type_.as_deref(), Some("ClusterIP"), "{what}");
        assert_eq!(
            sspec.selector.as_ref(),
            Some(&selector_labels(name)),
            "{what}"
        );
        let service_ports: Vec<_> = sspec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.port))
            .collect();
        assert_eq!(service_ports, expected_ports, "{what}");
        for probe in [
            &server.readiness_probe,
            &server.liveness_probe,
            &server.startup_probe,
        ] {
            assert_eq!(
                tcp_port(probe.as_ref()),
                Some(&IntOrString::Int(port)),
                "{what}"
            );
        }

        // Volumes: sessions PVC always, workspace PVC with persistence.workspace.
        let sessions = spec
            .persistence
            .as_ref()
            .and_then(|p| p.sessions.as_ref())
            .and_then(|s| s.size.as_deref());
        assert_eq!(
            size(&objects.sessions_pvc),
            sessions.unwrap_or("1Gi"),
            "{what}"
        );
        assert_eq!(
            objects
                .sessions_pvc
                .spec
                .as_ref()
                .and_then(|s| s.access_modes.clone()),
            Some(vec!["ReadWriteOnce".to_string()])
        );
        let workspace_volume = volume(pod, "workspace");
        match spec.persistence.as_ref().and_then(|p| p.workspace.as_ref()) {
            Some(ws) => {
                let pvc = objects.workspace_pvc.as_ref().expect("a workspace PVC");
                assert_eq!(size(pvc), ws.size.as_deref().unwrap_or("10Gi"), "{what}");
                assert_eq!(
                    workspace_volume
                        .persistent_volume_claim
                        .as_ref()
                        .map(|c| c.claim_name.as_str()),
                    Some(format!("{name}-server-workspace").as_str()),
                    "{what}"
                );
            }
            None => {
                assert!(objects.workspace_pvc.is_none(), "{what}");
                assert!(workspace_volume.empty_dir.is_some(), "{what}");
            }
        }
        assert_eq!(
            volume(pod, "session-data")
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some(format!("{name}-server-sessions").as_str()),
            "{what}"
        );
        check_consistent(what, objects);
    }

    /// Names are unique, every mount has its volume, the context ConfigMap is used.
    fn check_consistent(what: &str, objects: &ServerObjects) {
        let pod = pod(objects);
        let volumes: Vec<&str> = pod
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        let mut unique = volumes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            volumes.len(),
            "{what}: duplicate volumes {volumes:?}"
        );
        let containers: Vec<&str> = all_containers(pod).map(|c| c.name.as_str()).collect();
        let mut unique = containers.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            containers.len(),
            "{what}: duplicate containers {containers:?}"
        );
        for c in all_containers(pod) {
            for m in c.volume_mounts.iter().flatten() {
                assert!(
                    volumes.contains(&m.name.as_str()),
                    "{what}: {} mounts missing volume {}",
                    c.name,
                    m.name
                );
            }
            let mut paths: Vec<&str> = c
                .volume_mounts
                .iter()
                .flatten()
                .map(|m| m.mount_path.as_str())
                .collect();
            let count = paths.len();
            paths.sort();
            paths.dedup();
            assert_eq!(
                paths.len(),
                count,
                "{what}: {} mounts one path twice",
                c.name
            );
        }
        let uses_context = volumes.contains(&"context-files");
        assert_eq!(uses_context, objects.context_config_map.is_some(), "{what}");
        let annotations = objects
            .deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref());
        assert_eq!(
            annotations.is_some_and(|a| a.contains_key(CONTEXT_HASH_ANNOTATION)),
            uses_context,
            "{what}"
        );
    }

    /// The checks of PodSecurity `restricted` (v1.34) that a Pod template can fail.
    fn check_restricted(what: &str, pod: &PodSpec) {
        let pod_sc = pod.security_context.clone().unwrap_or_default();
        assert!(
            pod.host_network != Some(true)
                && pod.host_pid != Some(true)
                && pod.host_ipc != Some(true),
            "{what}"
        );
        for v in pod.volumes.iter().flatten() {
            let allowed = v.config_map.is_some()
                || v.secret.is_some()
                || v.empty_dir.is_some()
                || v.persistent_volume_claim.is_some()
                || v.projected.is_some()
                || v.downward_api.is_some()
                || v.csi.is_some()
                || v.ephemeral.is_some();
            assert!(
                allowed,
                "{what}: volume {} has a type restricted forbids",
                v.name
            );
        }
        for c in all_containers(pod) {
            let sc = c.security_context.clone().unwrap_or_default();
            let who = format!("{what}: container {}", c.name);
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{who}");
            assert_ne!(sc.privileged, Some(true), "{who}");
            let caps = sc.capabilities.clone().unwrap_or_default();
            assert!(
                caps.drop.iter().flatten().any(|d| d == "ALL"),
                "{who}: drops ALL"
            );
            assert!(
                caps.add.iter().flatten().all(|a| a == "NET_BIND_SERVICE"),
                "{who}"
            );
            let seccomp = sc
                .seccomp_profile
                .as_ref()
                .or(pod_sc.seccomp_profile.as_ref())
                .map(|s| s.type_.as_str());
            assert!(
                matches!(seccomp, Some("RuntimeDefault" | "Localhost")),
                "{who}: seccomp"
            );
            assert_eq!(
                sc.run_as_non_root.or(pod_sc.run_as_non_root),
                Some(true),
                "{who}: runAsNonRoot"
            );
            let uid = sc.run_as_user.or(pod_sc.run_as_user);
            assert!(uid.is_some_and(|u| u != 0), "{who}: non-root uid");
            for port in c.ports.iter().flatten() {
                assert_eq!(port.host_port, None, "{who}");
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Upstream examples

    #[test]
    fn every_upstream_example_agent_builds_what_upstream_creates() {
        let mut built = 0;
        let mut invalid = Vec::new();
        for example in upstream_examples() {
            let what = format!(
                "{} {}",
                example.file,
                example.agent.metadata.name.as_deref().unwrap_or_default()
            );
            let spec = effective_spec(
                &example.agent.spec,
                example.template.as_ref().map(|t| &t.spec),
            );
            match validate(&spec) {
                Err(e) => invalid.push((what, e.field)),
                Ok(()) => {
                    let objects = build(&example.agent, &spec, &BuildSettings::default());
                    check_upstream_shape(&what, &example.agent, &spec, &objects);
                    let pod_spec = spec.pod_spec.clone().unwrap_or_default();
                    if pod_spec.security_context.is_none()
                        && pod_spec.pod_security_context.is_none()
                    {
                        check_restricted(&what, pod(&objects));
                    }
                    assert_eq!(
                        build(&example.agent, &spec, &BuildSettings::default()),
                        objects,
                        "{what}: deterministic"
                    );
                    built += 1;
                }
            }
        }
        // Upstream fails these at reconcile time too: no workspaceDir or serviceAccountName
        // (039 names a template the examples do not contain).
        assert_eq!(
            invalid,
            [
                (
                    "docs/039-website_docs_features_agent-templates.yaml my-agent",
                    "spec.workspaceDir"
                ),
                (
                    "docs/068-website_docs_features_share-link.yaml team-agent",
                    "spec.workspaceDir"
                ),
                (
                    "docs/069-website_docs_features_share-link.yaml team-agent",
                    "spec.workspaceDir"
                ),
                (
                    "docs/070-website_docs_features_skills.yaml my-agent",
                    "spec.serviceAccountName"
                ),
            ]
            .map(|(w, f)| (w.to_string(), f))
        );
        assert_eq!(built, 28, "Agents built from the upstream examples");
    }

    #[test]
    fn upstream_team_agent_clones_at_the_workspace_root_and_syncs_in_place() {
        let (spec, objects) = build_example(&example("resources/agent.yaml", "team-agent"));
        let pod = pod(&objects);
        // Template merge: agentImage from team-base, the rest from the Agent.
        assert_eq!(
            spec.agent_image.as_deref(),
            Some("ghcr.io/kubeopencode/kubeopencode-agent-opencode:dev")
        );
        assert_eq!(
            spec.executor_image.as_deref(),
            Some("ghcr.io/kubeopencode/kubeopencode-agent-devbox:dev")
        );
        assert_eq!(
            names(pod.init_containers.as_ref()),
            [
                "opencode-init",
                "git-init-0",
                "git-init-1",
                "git-init-2",
                "context-init"
            ]
        );
        assert_eq!(
            names(Some(&pod.containers)),
            ["opencode-server", "git-sync-0"]
        );

        // The context repository: cloned into its volume, copied into /workspace (mountPath "."),
        // and pulled in place by the sidecar every 5 minutes.
        let clone = container(pod, "git-init-0");
        assert_eq!(clone.image.as_deref(), Some(DEFAULT_SYSTEM_IMAGE));
        let clone_script = script(clone);
        assert!(clone_script.contains("git clone --depth 1 --branch main https://github.com/kubeopencode/kubeopencode-agent.git /git/repo"), "{clone_script}");
        assert!(
            clone_script.contains("cp -a /git/repo/. /workspace/"),
            "{clone_script}"
        );
        assert_eq!(mount_at(clone, "/git").name, "git-context-0");
        assert_eq!(mount_at(clone, "/workspace").name, "workspace");
        let sync = container(pod, "git-sync-0");
        let sync_script = script(sync);
        assert!(sync_script.contains("sleep 300"), "{sync_script}");
        assert!(
            sync_script.contains("git -C /workspace pull --ff-only"),
            "{sync_script}"
        );
        assert_eq!(mount_at(sync, "/workspace").name, "workspace");
        let server = server(&objects);
        assert!(
            server
                .volume_mounts
                .iter()
                .flatten()
                .all(|m| m.name != "git-context-0"),
            "the root checkout is a copy, not a mount"
        );

        // Skills: one clone per source, only the named folders mounted, paths in opencode.json.
        assert!(script(container(pod, "git-init-1")).contains(
            "git clone --depth 1 --branch main https://github.com/anthropics/skills.git /git/repo"
        ));
        for (path, sub_path) in [
            (
                "/skills/anthropic-skills/skill-creator",
                "repo/skills/skill-creator",
            ),
            (
                "/skills/anthropic-skills/frontend-design",
                "repo/skills/frontend-design",
            ),
            (
                "/skills/anthropic-skills/doc-coauthoring",
                "repo/skills/doc-coauthoring",
            ),
            (
                "/skills/kubeopencode-skills/kubeoc",
                "repo/kubeopencode/skills/kubeoc",
            ),
        ] {
            assert_eq!(
                mount_at(server, path).sub_path.as_deref(),
                Some(sub_path),
                "{path}"
            );
        }
        let cm = objects
            .context_config_map
            .as_ref()
            .expect("context ConfigMap");
        assert_eq!(
            cm.metadata.name.as_deref(),
            Some("team-agent-server-context")
        );
        let config: serde_json::Value =
            serde_json::from_str(&cm.data.as_ref().expect("data")["tools-opencode.json"])
                .expect("JSON");
        assert_eq!(config["model"], "opencode/big-pickle");
        assert_eq!(
            config["skills"]["paths"],
            serde_json::json!([
                "/skills/anthropic-skills/skill-creator",
                "/skills/anthropic-skills/frontend-design",
                "/skills/anthropic-skills/doc-coauthoring",
                "/skills/kubeopencode-skills/kubeoc"
            ])
        );
        assert!(
            script(container(pod, "context-init"))
                .contains("cp /configmap-files/tools-opencode.json /tools/opencode.json")
        );
        assert_eq!(
            size(objects.workspace_pvc.as_ref().expect("workspace PVC")),
            "5Gi"
        );
        assert!(unsupported(&spec).is_empty(), "{:?}", unsupported(&spec));
    }

    #[test]
    fn seed_team_agent() {
        let agent = seed_agent();
        let objects = build_agent(&agent);
        check_upstream_shape("seed", &agent, &agent.spec, &objects);
        check_restricted("seed", pod(&objects));
        let pod = pod(&objects);
        assert_eq!(
            names(pod.init_containers.as_ref()),
            ["opencode-init", "git-init-0"]
        );
        assert_eq!(names(Some(&pod.containers)), ["opencode-server"]);

        // Git context `mountPath: code` -> /workspace/code, from the clone's volume.
        let clone = container(pod, "git-init-0");
        assert!(script(clone).contains("git clone --depth 1 --branch main https://github.com/your-org/your-repo.git /git/repo"), "{}", script(clone));
        assert!(
            !script(clone).contains("cp -a"),
            "not at the workspace root"
        );
        let server = server(&objects);
        let code = mount_at(server, "/workspace/code");
        assert_eq!(
            (code.name.as_str(), code.sub_path.as_deref()),
            ("git-context-0", Some("repo"))
        );
        assert!(volume(pod, "git-context-0").empty_dir.is_some());

        // Credential: one env var from ai-credentials/api-key, after the controller's own.
        assert_eq!(
            secret_ref(env(server, "OPENCODE_API_KEY")),
            ("ai-credentials", "api-key")
        );
        assert_eq!(
            env_names(server),
            [
                &LEADING_ENV[..],
                &[
                    "OPENCODE_DISABLE_SHARE",
                    "OPENCODE_PERMISSION",
                    "OPENCODE_API_KEY"
                ]
            ]
            .concat()
        );
        assert_eq!(server.env_from, None);

        // Sessions 2Gi; no workspace persistence, so the workspace is an emptyDir.
        assert_eq!(size(&objects.sessions_pvc), "2Gi");
        assert_eq!(
            objects
                .sessions_pvc
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.clone()),
            None
        );
        assert!(objects.workspace_pvc.is_none());
        assert!(objects.context_config_map.is_none(), "nothing to write");
        assert_eq!(
            server.image.as_deref(),
            Some("ghcr.io/kubeopencode/kubeopencode-agent-devbox:latest")
        );
        assert_eq!(server.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(
            service_url(
                "team-agent",
                "team",
                server_port(&agent.spec),
                "cluster.local"
            ),
            "http://team-agent.team.svc.cluster.local:4096"
        );
    }

    #[test]
    fn agent_with_template_pairs_from_the_docs() {
        // 067: no podSpec on the Agent -> the template's (systemContainers included).
        let inherits = example("067-", "my-agent");
        let (spec, _) = build_example(&inherits);
        assert_eq!(spec.workspace_dir.as_deref(), Some("/workspace"));
        assert_eq!(
            spec.pod_spec,
            inherits
                .template
                .as_ref()
                .and_then(|t| t.spec.pod_spec.clone())
        );
        // An own podSpec replaces the template's whole.
        let custom = example("067-", "my-agent-custom");
        let (spec, objects) = build_example(&custom);
        assert_eq!(spec.pod_spec, custom.agent.spec.pod_spec);
        let limits = server(&objects)
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .expect("limits");
        assert_eq!(limits["memory"].0, "8Gi");
        // vscode: extra port from the Agent, images from the Agent over team-base.
        let (spec, objects) = build_example(&example("agent-vscode", "vscode-agent"));
        assert_eq!(
            spec.executor_image.as_deref(),
            Some("quay.io/kubeopencode/kubeopencode-agent-devbox-vscode:dev")
        );
        let ports = objects
            .service
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .expect("ports");
        assert_eq!(ports[1].name.as_deref(), Some("vscode"));
        assert_eq!(ports[1].target_port, Some(IntOrString::Int(8080)));
        let hook = server(&objects)
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
            .and_then(|h| h.exec.as_ref())
            .and_then(|e| e.command.clone());
        assert_eq!(
            hook,
            Some(vec!["/usr/local/bin/start-code-server.sh".to_string()])
        );
    }

    // -----------------------------------------------------------------------------------------
    // Template merge and validation

    #[test]
    fn template_merge_scalars_win_lists_replace_whole() {
        let template: AgentTemplate = serde_saphyr::from_str(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: AgentTemplate
metadata: {name: base}
spec:
  agentImage: t/agent:1
  executorImage: t/exec:1
  workspaceDir: /template-ws
  serviceAccountName: template-sa
  maxConcurrentTasks: 5
  config: {model: t/model}
  contexts:
    - {type: Text, text: one}
    - {type: Text, text: two}
  credentials:
    - {name: a, secretRef: {name: template-secret}}
  imagePullSecrets: [{name: template-pull}]
  extraPorts: [{name: web, port: 3000}]
  podSpec: {runtimeClassName: gvisor, labels: {team: t}}
"#,
        )
        .expect("an AgentTemplate");
        let agent = agent_yaml(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: a}
spec:
  templateRef: {name: base}
  executorImage: a/exec:2
  agentImage: ""
  port: 5000
  contexts:
    - {type: Text, text: mine}
  imagePullSecrets: []
  podSpec: {labels: {team: a}}
"#,
        );
        let merged = effective_spec(&agent.spec, Some(&template.spec));
        // Scalars: the Agent's when set and non-empty.
        assert_eq!(merged.executor_image.as_deref(), Some("a/exec:2"));
        assert_eq!(
            merged.agent_image.as_deref(),
            Some("t/agent:1"),
            "empty string counts as unset"
        );
        assert_eq!(merged.workspace_dir.as_deref(), Some("/template-ws"));
        assert_eq!(merged.service_account_name.as_deref(), Some("template-sa"));
        assert_eq!(merged.max_concurrent_tasks, Some(5));
        assert_eq!(merged.port, Some(5000));
        assert_eq!(merged.config, Some(serde_json::json!({"model": "t/model"})));
        // Lists: replaced whole, an explicit empty list included.
        let texts: Vec<_> = merged
            .contexts
            .iter()
            .flatten()
            .map(|c| c.text.clone().unwrap_or_default())
            .collect();
        assert_eq!(texts, ["mine"]);
        assert_eq!(merged.image_pull_secrets, Some(vec![]));
        assert_eq!(merged.credentials, template.spec.credentials);
        assert_eq!(merged.extra_ports, template.spec.extra_ports);
        // podSpec: whole, never field by field.
        assert_eq!(merged.pod_spec, agent.spec.pod_spec);
        assert_eq!(
            merged
                .pod_spec
                .as_ref()
                .and_then(|p| p.runtime_class_name.clone()),
            None
        );
        // Without a template the spec is unchanged.
        assert_eq!(effective_spec(&agent.spec, None), agent.spec);

        let objects = build(&agent, &merged, &BuildSettings::default());
        let service_ports: Vec<_> = objects
            .service
            .spec
            .and_then(|s| s.ports)
            .into_iter()
            .flatten()
            .map(|p| p.port)
            .collect();
        assert_eq!(
            service_ports,
            [5000, 3000],
            "the merged extraPorts reach the Service"
        );
    }

    #[test]
    fn validate_names_the_missing_field() {
        let mut spec = AgentSpec::default();
        let err = validate(&spec).expect_err("no workspaceDir");
        assert_eq!(err.field, "spec.workspaceDir");
        assert_eq!(
            err.message,
            "spec.workspaceDir is required (set it on the Agent or its AgentTemplate)"
        );
        spec.workspace_dir = Some("/workspace".to_string());
        let err = validate(&spec).expect_err("no serviceAccountName");
        assert_eq!(err.field, "spec.serviceAccountName");
        assert_eq!(
            err.to_string(),
            "spec.serviceAccountName is required (set it on the Agent or its AgentTemplate)"
        );
        spec.service_account_name = Some("sa".to_string());
        assert_eq!(validate(&spec), Ok(()));

        let invalid = |yaml: &str| validate(&agent_yaml(yaml).spec).expect_err("invalid").field;
        let base = "apiVersion: kubeopencode.io/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec:\n  workspaceDir: /w\n  serviceAccountName: sa\n";
        assert_eq!(
            invalid(&format!(
                "{base}  persistence: {{sessions: {{size: lots}}}}"
            )),
            "spec.persistence.sessions.size"
        );
        assert_eq!(invalid(&format!("{base}  config: [1]")), "spec.config");
        assert_eq!(
            invalid(&format!("{base}  extraPorts: [{{name: http, port: 80}}]")),
            "spec.extraPorts"
        );
        assert_eq!(
            invalid(&format!("{base}  extraPorts: [{{name: web, port: 4096}}]")),
            "spec.extraPorts"
        );
        assert_eq!(
            invalid(&format!(
                "{base}  contexts: [{{type: Git, git: {{repository: r}}}}]"
            )),
            "spec.contexts"
        );
        assert_eq!(
            invalid(&format!(
                "{base}  contexts: [{{type: Git, mountPath: x, git: {{repository: r, sync: {{enabled: true, interval: soon}}}}}}]"
            )),
            "spec.contexts"
        );
        assert_eq!(
            invalid(&format!(
                "{base}  contexts: [{{type: Git, mountPath: x, git: {{repository: r, path: ../etc}}}}]"
            )),
            "spec.contexts"
        );
        assert_eq!(
            invalid(&format!(
                "{base}  contexts: [{{type: ConfigMap, mountPath: /, configMap: {{name: c}}}}]"
            )),
            "spec.contexts"
        );
        assert_eq!(
            invalid(
                "apiVersion: kubeopencode.io/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec: {workspaceDir: relative, serviceAccountName: sa}"
            ),
            "spec.workspaceDir"
        );
        for ok in ["1Gi", "500Mi", "1.5G", "10", "1e3", "100k"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Gi", "1GB", "1.2.3", "lots", "1e"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn unsupported_fields_are_reported() {
        let share = example("039-", "my-agent");
        let notes = unsupported(&share.agent.spec);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].starts_with("spec.share"), "{notes:?}");
        // Plugins are installed now: no note.
        let (spec, _) = build_example(&example("agent-plugins", "plugin-test-agent"));
        assert!(unsupported(&spec).is_empty(), "{:?}", unsupported(&spec));
        let agent = agent_yaml(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: a}
spec:
  workspaceDir: /w
  serviceAccountName: sa
  command: [sleep, infinity]
  contexts:
    - {name: docs, type: URL, url: {source: "https://example.com/x.md"}}
    - {name: repo, type: Git, mountPath: repo, git: {repository: r, sync: {enabled: true, policy: Rollout}}}
"#,
        );
        let notes = unsupported(&agent.spec);
        // URL contexts are fetched and Rollout is watched by the controller now: no notes.
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("spec.command"));
        // Rollout gets no sidecar; the clone still happens, and the commits the controller
        // saw are in the pod template, so a new one rolls the Deployment.
        let rollout = rollout_contexts(&agent.spec);
        assert_eq!(
            rollout,
            [RolloutContext {
                name: "repo".into(),
                git: agent.spec.contexts.as_ref().expect("contexts")[1]
                    .git
                    .clone()
                    .expect("git"),
                interval: DEFAULT_SYNC_INTERVAL,
            }]
        );
        let objects = build_agent(&agent);
        assert_eq!(names(Some(&pod(&objects).containers)), ["opencode-server"]);
        let annotations = |settings: &BuildSettings| {
            build(&with_identity(agent.clone()), &agent.spec, settings)
                .deployment
                .spec
                .and_then(|s| s.template.metadata)
                .and_then(|m| m.annotations)
                .unwrap_or_default()
        };
        assert!(!annotations(&BuildSettings::default()).contains_key(GIT_COMMITS_ANNOTATION));
        let settings = BuildSettings {
            git_commits: BTreeMap::from([("repo".to_string(), "abc123".to_string())]),
            ..BuildSettings::default()
        };
        assert_eq!(
            annotations(&settings)[GIT_COMMITS_ANNOTATION],
            "repo=abc123"
        );
        assert!(unsupported(&seed_agent().spec).is_empty());
    }

    // -----------------------------------------------------------------------------------------
    // Features one by one

    #[test]
    fn credential_forms() {
        let agent = agent_yaml(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: creds}
spec:
  workspaceDir: /workspace
  serviceAccountName: sa
  credentials:
    - {name: whole-env, secretRef: {name: all-keys}}
    - {name: whole-dir, secretRef: {name: ssh}, mountPath: /home/agent/.ssh}
    - {name: one-env, secretRef: {name: ai, key: api-key}, env: API_KEY}
    - {name: one-file, secretRef: {name: gh, key: token}, mountPath: /etc/gh/token}
    - {name: one-file-mode, secretRef: {name: gh, key: script}, mountPath: /etc/gh/run.sh, fileMode: 493}
"#,
        );
        let objects = build_agent(&agent);
        let pod = pod(&objects);
        let server = server(&objects);
        // No key, no mountPath: envFrom.
        let env_from = server.env_from.as_deref().expect("envFrom");
        assert_eq!(env_from.len(), 1);
        assert_eq!(
            env_from[0].secret_ref.as_ref().map(|s| s.name.as_str()),
            Some("all-keys")
        );
        // No key, mountPath: the Secret as a directory, 0600.
        assert_eq!(mount_at(server, "/home/agent/.ssh").name, "credential-1");
        assert_eq!(mount_at(server, "/home/agent/.ssh").sub_path, None);
        let dir = volume(pod, "credential-1")
            .secret
            .as_ref()
            .expect("a Secret volume");
        assert_eq!(
            (
                dir.secret_name.as_deref(),
                dir.default_mode,
                dir.items.as_ref()
            ),
            (Some("ssh"), Some(0o600), None)
        );
        // Key and env: one variable.
        assert_eq!(secret_ref(env(server, "API_KEY")), ("ai", "api-key"));
        // Key and mountPath: one file through items, 0600 unless fileMode says otherwise.
        for (path, volume_name, key, mode) in [
            ("/etc/gh/token", "credential-3", "token", 0o600),
            ("/etc/gh/run.sh", "credential-4", "script", 0o755),
        ] {
            let m = mount_at(server, path);
            assert_eq!(
                (m.name.as_str(), m.sub_path.as_deref()),
                (volume_name, Some("secret-file"))
            );
            let source = volume(pod, volume_name)
                .secret
                .as_ref()
                .expect("a Secret volume");
            let items = source.items.as_deref().expect("items");
            assert_eq!(
                (items[0].key.as_str(), items[0].path.as_str(), items[0].mode),
                (key, "secret-file", Some(mode))
            );
        }
        check_consistent("credentials", &objects);
        check_restricted("credentials", pod);
    }

    #[test]
    fn suspend_scales_to_zero_and_keeps_the_rest() {
        let (spec, objects) = build_example(&example("054-", "suspendable-agent"));
        assert_eq!(spec.suspend, Some(true));
        assert_eq!(
            objects.deployment.spec.as_ref().and_then(|s| s.replicas),
            Some(0)
        );
        let mut running = example("054-", "suspendable-agent").agent;
        running.spec.suspend = Some(false);
        let resumed = build_agent(&running);
        assert_eq!(
            resumed.deployment.spec.as_ref().and_then(|s| s.replicas),
            Some(1)
        );
        assert_eq!(resumed.service, objects.service);
        assert_eq!(resumed.sessions_pvc, objects.sessions_pvc);
    }

    #[test]
    fn contexts_become_files_and_instructions() {
        let agent = agent_yaml(
            r##"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: ctx, namespace: dev}
spec:
  workspaceDir: /workspace
  serviceAccountName: sa
  config: {model: m/x, instructions: [RULES.md]}
  contexts:
    - {name: rules, type: Text, text: "Be brief.", mountPath: AGENTS.md}
    - {name: hook, type: Text, text: "#!/bin/sh", mountPath: /etc/hooks/pre.sh, fileMode: 493}
    - {name: guide, type: Text, text: "Use Rust."}
    - {name: env, type: ConfigMap, configMap: {name: team-env, key: env.md}}
    - {name: all, type: ConfigMap, configMap: {name: team-docs, optional: true}, mountPath: docs}
    - {type: Runtime}
    - {name: app, type: ConfigMap, configMap: {name: app-cm, key: a.conf, optional: true}, mountPath: /etc/app/a.conf}
"##,
        );
        let objects = build_agent(&agent);
        check_consistent("contexts", &objects);
        check_restricted("contexts", pod(&objects));
        let pod = pod(&objects);
        let data = objects
            .context_config_map
            .as_ref()
            .and_then(|c| c.data.clone())
            .expect("data");
        assert_eq!(data["workspace-AGENTS.md"], "Be brief.");
        assert_eq!(data["etc-hooks-pre.sh"], "#!/bin/sh");
        assert_eq!(
            data["context-0.md"],
            "<context name=\"guide\" namespace=\"dev\" type=\"Text\">\nUse Rust.\n</context>"
        );
        assert!(
            data["context-2.md"].contains("type=\"Runtime\""),
            "{:?}",
            data["context-2.md"]
        );
        let config: serde_json::Value =
            serde_json::from_str(&data["tools-opencode.json"]).expect("JSON");
        assert_eq!(
            config["instructions"],
            serde_json::json!(["RULES.md", "/workspace/.kubeopencode/context.md"])
        );

        let init = container(pod, "context-init");
        let script = script(init);
        for line in [
            "cp /configmap-files/workspace-AGENTS.md /workspace/AGENTS.md",
            "chmod 644 /workspace/AGENTS.md",
            "cp /configmap-files/etc-hooks-pre.sh /ctx-files/etc-hooks-pre.sh",
            "chmod 755 /ctx-files/etc-hooks-pre.sh",
            "mkdir -p /workspace/docs",
            "cat /configmap-files/context-0.md",
            "printf '%s\\n' '<context name=\"env\" namespace=\"dev\" type=\"ConfigMap\">'",
            "if [ -f /configmap-dir-0/env.md ]; then cat /configmap-dir-0/env.md; fi",
            "} > /workspace/.kubeopencode/context.md",
            "cp /configmap-files/tools-opencode.json /tools/opencode.json",
        ] {
            assert!(
                script.lines().any(|l| l == line),
                "missing {line:?} in\n{script}"
            );
        }
        assert!(
            script.contains("for f in /configmap-dir-1/* /configmap-dir-1/.[!.]*"),
            "{script}"
        );
        // The user's ConfigMaps are mounted into context-init only.
        let env_cm = volume(pod, "dir-mount-0")
            .config_map
            .as_ref()
            .expect("ConfigMap volume");
        assert_eq!(
            (env_cm.name.as_str(), env_cm.optional),
            ("team-env", Some(false))
        );
        assert_eq!(
            env_cm.items.as_ref().map(|i| i[0].key.as_str()),
            Some("env.md")
        );
        let docs_cm = volume(pod, "dir-mount-1")
            .config_map
            .as_ref()
            .expect("ConfigMap volume");
        assert_eq!(
            (
                docs_cm.name.as_str(),
                docs_cm.optional,
                docs_cm.items.as_ref()
            ),
            ("team-docs", Some(true), None)
        );
        // A file outside the workspace is staged on an emptyDir and mounted by itself.
        let server = server(&objects);
        let hook = mount_at(server, "/etc/hooks/pre.sh");
        assert_eq!(
            (hook.name.as_str(), hook.sub_path.as_deref()),
            ("ctx-files", Some("etc-hooks-pre.sh"))
        );
        assert_eq!(mount_at(init, "/ctx-files").name, "ctx-files");
        assert!(
            server
                .volume_mounts
                .iter()
                .flatten()
                .all(|m| m.mount_path != "/etc/hooks")
        );
        assert_eq!(
            mount_at(server, "/etc/app/a.conf").sub_path.as_deref(),
            Some("etc-app-a.conf")
        );
        assert!(script.contains("if [ -f /configmap-dir-2/a.conf ]; then\n  mkdir -p /ctx-files\n  cp /configmap-dir-2/a.conf /ctx-files/etc-app-a.conf\n"), "{script}");
        assert_eq!(mount_at(init, "/configmap-files").read_only, Some(true));
        assert_eq!(
            env_value_of(server, "OPENCODE_CONFIG"),
            "/tools/opencode.json"
        );
        // The config names no permission, so upstream's allow-all default applies.
        assert_eq!(
            env_value_of(server, "OPENCODE_PERMISSION"),
            r#"{"*":"allow"}"#
        );
        // Order: git-init (none here) before context-init, both after opencode-init.
        assert_eq!(
            names(pod.init_containers.as_ref()),
            ["opencode-init", "context-init"]
        );
    }

    #[test]
    fn config_permission_and_share_are_respected() {
        let agent = agent_yaml(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: ask}
spec:
  workspaceDir: /workspace
  serviceAccountName: sa
  config: {permission: {bash: ask}}
  share: {enabled: true}
"#,
        );
        let objects = build_agent(&agent);
        let names = env_names(server(&objects));
        assert!(!names.contains(&"OPENCODE_PERMISSION"), "{names:?}");
        assert!(!names.contains(&"OPENCODE_DISABLE_SHARE"), "{names:?}");
        assert!(names.contains(&"OPENCODE_CONFIG"), "{names:?}");
    }

    #[test]
    fn git_clone_commands() {
        let repo = |git_ref: &str, depth: i64| GitRepo {
            repository: "https://example.com/r.git".to_string(),
            git_ref: git_ref.to_string(),
            depth,
            recurse_submodules: false,
            path: None,
            mount_path: "/workspace/r".to_string(),
            names: Vec::new(),
            secret: None,
            sync: None,
        };
        assert_eq!(
            clone_command(&repo("HEAD", 1), "/git/repo"),
            "git clone --depth 1 https://example.com/r.git /git/repo"
        );
        assert_eq!(
            clone_command(&repo("v1.2", 0), "/git/repo"),
            "git clone --branch v1.2 https://example.com/r.git /git/repo"
        );
        assert_eq!(
            clone_command(&repo("feature/x y", 3), "/git/repo"),
            "git clone --depth 3 --branch 'feature/x y' https://example.com/r.git /git/repo"
        );
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            clone_command(&repo(sha, 1), "/git/repo"),
            format!(
                "git clone --depth 1 --no-checkout https://example.com/r.git /git/repo && git -C /git/repo fetch --depth 1 origin {sha} && git -C /git/repo checkout -q {sha}"
            )
        );

        let agent = agent_yaml(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: private}
spec:
  workspaceDir: /workspace
  serviceAccountName: sa
  caBundle: {secretRef: {name: corp-ca}}
  proxy: {httpsProxy: "http://proxy:3128", noProxy: "localhost"}
  contexts:
    - name: docs
      type: Git
      mountPath: /opt/docs
      git: {repository: "git@github.com:org/docs.git", path: handbook/, recurseSubmodules: true, secretRef: {name: git-creds}, sync: {enabled: true, interval: 1h}}
"#,
        );
        let objects = build_agent(&agent);
        check_consistent("private", &objects);
        check_restricted("private", pod(&objects));
        let pod = pod(&objects);
        let clone = container(pod, "git-init-0");
        let sync = container(pod, "git-sync-0");
        for c in [clone, sync] {
            let expected = [
                ("GIT_USERNAME", "username"),
                ("GIT_PASSWORD", "password"),
                ("GIT_SSH_KEY", "ssh-privatekey"),
                ("GIT_SSH_KNOWN_HOSTS", "ssh-known-hosts"),
            ];
            for (name, key) in expected {
                assert_eq!(secret_ref(env(c, name)), ("git-creds", key), "{}", c.name);
                let optional = env(c, name)
                    .value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                    .and_then(|s| s.optional);
                assert_eq!(optional, Some(true));
            }
            assert!(script(c).contains("GIT_SSH_COMMAND"), "{}", c.name);
            assert!(script(c).contains("GIT_SSL_CAINFO"), "{}", c.name);
            assert_eq!(env_value_of(c, "HTTPS_PROXY"), "http://proxy:3128");
            assert_eq!(env_value_of(c, "NO_PROXY"), "localhost,.svc,.cluster.local");
            assert_eq!(mount_at(c, "/etc/ssl/certs/custom-ca").name, "ca-bundle");
        }
        assert!(
            script(clone).contains(
                "git clone --depth 1 --recurse-submodules git@github.com:org/docs.git /git/repo"
            ),
            "{}",
            script(clone)
        );
        assert!(script(sync).contains("sleep 3600"));
        assert!(script(sync).contains("git -C /git/repo pull --ff-only"));
        let server = server(&objects);
        let docs = mount_at(server, "/opt/docs");
        assert_eq!(
            (docs.name.as_str(), docs.sub_path.as_deref()),
            ("git-context-0", Some("repo/handbook"))
        );
        assert_eq!(
            env_value_of(server, "NODE_EXTRA_CA_CERTS"),
            "/etc/ssl/certs/custom-ca/tls.crt"
        );
        let ca = volume(pod, "ca-bundle")
            .secret
            .as_ref()
            .expect("a Secret volume");
        assert_eq!(
            ca.items
                .as_ref()
                .map(|i| (i[0].key.as_str(), i[0].path.as_str())),
            Some(("ca.crt", "tls.crt"))
        );
    }

    #[test]
    fn pod_spec_overrides_apply_last() {
        // Labels, runtime class, scheduling.
        let (_, objects) = build_example(&example("061-", "advanced-agent"));
        let pod_spec = pod(&objects);
        assert_eq!(pod_spec.runtime_class_name.as_deref(), Some("gvisor"));
        assert_eq!(
            pod_spec
                .node_selector
                .as_ref()
                .map(|n| n["node-type"].as_str()),
            Some("ai-workload")
        );
        assert_eq!(
            pod_spec.tolerations.as_ref().map(|t| t[0].key.as_deref()),
            Some(Some("dedicated"))
        );
        let labels = objects
            .deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .expect("labels");
        assert_eq!(labels["network-policy"], "agent-restricted");
        assert_eq!(labels[AGENT_LABEL], "advanced-agent");
        assert_eq!(
            objects
                .deployment
                .metadata
                .labels
                .as_ref()
                .map(|l| l["network-policy"].as_str()),
            Some("agent-restricted")
        );
        // A user label cannot take over the selector.
        let mut hijack = example("061-", "advanced-agent").agent;
        if let Some(labels) = hijack
            .spec
            .pod_spec
            .as_mut()
            .and_then(|p| p.labels.as_mut())
        {
            labels.insert(AGENT_LABEL.to_string(), "other".to_string());
        }
        let objects = build_agent(&hijack);
        let labels = objects
            .deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .expect("labels");
        assert_eq!(labels[AGENT_LABEL], "advanced-agent");

        // Pod security context replaces ours; containers follow its uid.
        let (_, objects) = build_example(&example("060-", "uid-agent"));
        let sc = pod(&objects)
            .security_context
            .clone()
            .expect("pod security context");
        assert_eq!(
            (sc.run_as_user, sc.run_as_group, sc.fs_group),
            (Some(1000), Some(1000), Some(1000))
        );
        assert_eq!(sc.run_as_non_root, None);
        for c in all_containers(pod(&objects)) {
            let csc = c.security_context.clone().expect("security context");
            assert_eq!(
                (csc.run_as_user, csc.run_as_non_root),
                (None, Some(true)),
                "{}",
                c.name
            );
        }
        // Root (dind): the server's own security context wins, helpers don't claim non-root.
        let (_, objects) = build_example(&example("agent-dind", "dind-agent"));
        let server_sc = server(&objects)
            .security_context
            .clone()
            .expect("security context");
        assert_eq!(server_sc.privileged, Some(true));
        let init_sc = container(pod(&objects), "opencode-init")
            .security_context
            .clone()
            .expect("security context");
        assert_eq!(
            (
                init_sc.run_as_user,
                init_sc.run_as_non_root,
                init_sc.allow_privilege_escalation
            ),
            (None, None, Some(false))
        );
        // Container security context (hardened): taken as written.
        let (_, objects) = build_example(&example("059-", "hardened-agent"));
        assert_eq!(
            server(&objects)
                .security_context
                .as_ref()
                .and_then(|s| s.read_only_root_filesystem),
            Some(true)
        );
        check_restricted("hardened", pod(&objects));

        // extraEnv comes last, on every container.
        let (_, objects) = build_example(&example("063-", "corp-agent"));
        let env = env_names(server(&objects));
        assert_eq!(
            env[env.len() - 3..],
            ["CORPORATE_REGISTRY", "NPM_TOKEN", "ENVIRONMENT"]
        );
        assert_eq!(
            env_names(container(pod(&objects), "opencode-init")).last(),
            Some(&"ENVIRONMENT")
        );

        // systemContainers overrides and extra volumes (065 has no Git context, so only the
        // server gets the mount; give it one to see gitInit/gitSync).
        let mut corp = example("065-", "corp-git-agent").agent;
        corp.spec.contexts = Some(vec![serde_json::from_value(serde_json::json!({
            "type": "Git", "mountPath": "src", "git": {"repository": "https://git.corp/x.git", "sync": {"enabled": true}}
        })).expect("a context")]);
        let objects = build_agent(&corp);
        check_consistent("corp", &objects);
        let corp_pod = pod(&objects);
        assert!(volume(corp_pod, "corp-ca").config_map.is_some());
        assert_eq!(mount_at(server(&objects), "/etc/ssl/corp").name, "corp-ca");
        for name in ["git-init-0", "git-sync-0"] {
            let c = container(corp_pod, name);
            assert_eq!(
                env_value_of(c, "GIT_SSL_CAINFO"),
                "/etc/ssl/corp/tls.crt",
                "{name}"
            );
            assert_eq!(
                env_names(c).last(),
                Some(&"GIT_SSL_CAINFO"),
                "{name}: overrides last"
            );
            assert_eq!(mount_at(c, "/etc/ssl/corp").read_only, Some(true));
        }
        assert!(!env_names(container(corp_pod, "opencode-init")).contains(&"GIT_SSL_CAINFO"));

        // imagePullSecrets.
        let (_, objects) = build_example(&example("048-", "private-registry-agent"));
        let secrets: Vec<_> = pod(&objects)
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(secrets, ["harbor-registry-secret", "gcr-secret"]);
        assert_eq!(
            container(pod(&objects), "opencode-init").image.as_deref(),
            Some("registry.corp.example.com/kubeopencode/agent-opencode:latest")
        );
    }

    #[test]
    fn ca_bundle_and_proxy_from_the_docs() {
        let (_, objects) = build_example(&example("044-", "internal-agent"));
        let ca = volume(pod(&objects), "ca-bundle")
            .config_map
            .as_ref()
            .expect("a ConfigMap volume");
        assert_eq!(ca.name, "custom-ca-bundle");
        assert_eq!(
            ca.items
                .as_ref()
                .map(|i| (i[0].key.as_str(), i[0].path.as_str())),
            Some(("ca-bundle.crt", "tls.crt"))
        );
        for c in all_containers(pod(&objects)) {
            assert_eq!(
                env_value_of(c, "CUSTOM_CA_CERT_PATH"),
                "/etc/ssl/certs/custom-ca/tls.crt",
                "{}",
                c.name
            );
        }
        let (_, objects) = build_example(&example("046-", "enterprise-agent"));
        let server = server(&objects);
        assert_eq!(
            env_value_of(server, "http_proxy"),
            "http://proxy.corp.example.com:8080"
        );
        assert_eq!(
            env_value_of(server, "NO_PROXY"),
            "localhost,127.0.0.1,10.0.0.0/8,.corp.example.com,.svc,.cluster.local"
        );
    }

    #[test]
    fn auth_secret_url_and_ownership() {
        let agent = seed_agent();
        let secret = auth_secret(&agent, "s3cret");
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("team-agent-server-auth")
        );
        assert_eq!(secret.metadata.labels, Some(server_labels("team-agent")));
        assert_eq!(
            secret.metadata.owner_references,
            Some(vec![owner_reference(&agent)])
        );
        assert_eq!(
            secret.data.as_ref().map(|d| d["password"].0.as_slice()),
            Some(&b"s3cret"[..])
        );
        assert_eq!(
            owner_reference(&agent).uid,
            "4f1c2a9e-0000-4000-8000-000000000001"
        );
        assert_eq!(
            service_url("a", "ns", 8080, "example.internal"),
            "http://a.ns.svc.example.internal:8080"
        );
        assert_eq!(
            server_labels("a")["app.kubernetes.io/name"],
            "kubeopencode-server"
        );
    }

    #[test]
    fn context_hash_follows_content() {
        let mut agent = agent_yaml(
            "apiVersion: kubeopencode.io/v1alpha1\nkind: Agent\nmetadata: {name: h}\nspec: {workspaceDir: /w, serviceAccountName: sa, contexts: [{type: Text, text: one}]}",
        );
        let hash = |objects: &ServerObjects| {
            objects
                .deployment
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.annotations.as_ref())
                .map(|a| a[CONTEXT_HASH_ANNOTATION].clone())
        };
        let first = hash(&build_agent(&agent));
        assert_eq!(first, hash(&build_agent(&agent)));
        assert_eq!(first.as_ref().map(String::len), Some(16));
        agent.spec.contexts = Some(vec![
            serde_json::from_value(serde_json::json!({"type": "Text", "text": "two"}))
                .expect("a context"),
        ]);
        assert_ne!(first, hash(&build_agent(&agent)));
    }

    // -----------------------------------------------------------------------------------------
    // Plugins

    fn config_json(objects: &ServerObjects, key: &str) -> serde_json::Value {
        let data = objects
            .context_config_map
            .as_ref()
            .and_then(|c| c.data.as_ref())
            .expect("context ConfigMap data");
        serde_json::from_str(&data[key]).unwrap_or_else(|e| panic!("{key}: {e}"))
    }

    /// The plugin-init script run by `sh` with `npm` and `rm` replaced by functions that print
    /// their arguments one per line: what npm would receive, after the shell's quoting.
    fn npm_arguments(script: &str) -> Vec<String> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "npm() {{ printf 'npm\\n'; printf '%s\\n' \"$@\"; }}\nrm() {{ :; }}\n{script}"
            ))
            .output()
            .expect("sh runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .split("npm\n")
            .nth(1)
            .expect("an npm call")
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn upstream_plugin_agent_installs_with_npm_and_loads_from_the_volume() {
        let (_, objects) = build_example(&example("agent-plugins", "plugin-test-agent"));
        let pod = pod(&objects);
        // plugin-init runs after opencode-init, before context-init, in the npm image.
        assert_eq!(
            names(pod.init_containers.as_ref()),
            ["opencode-init", "plugin-init", "context-init"]
        );
        let init = container(pod, PLUGIN_INIT_CONTAINER);
        assert_eq!(init.image.as_deref(), Some("node:22-alpine"));
        assert_eq!(init.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            script(init),
            "set -eu\n\
             npm install --prefix /plugins --no-audit --no-fund --ignore-scripts -- cc-safety-net plugin-gentleman\n\
             npm ls --prefix /plugins --depth=0 || true\n\
             rm -rf /plugins/.npm-cache"
        );
        assert_eq!(env_value_of(init, "HOME"), "/tmp");
        assert_eq!(
            env_value_of(init, "npm_config_cache"),
            "/plugins/.npm-cache"
        );
        // The volume: written by plugin-init, read-only for the server.
        assert!(volume(pod, "plugins-volume").empty_dir.is_some());
        let written = mount_at(init, "/plugins");
        assert_eq!(
            (written.name.as_str(), written.read_only),
            ("plugins-volume", None)
        );
        let server = server(&objects);
        let loaded = mount_at(server, "/plugins");
        assert_eq!(
            (loaded.name.as_str(), loaded.read_only),
            ("plugins-volume", Some(true))
        );
        assert!(
            container(pod, CONTEXT_INIT_CONTAINER)
                .volume_mounts
                .iter()
                .flatten()
                .all(|m| m.mount_path != "/plugins")
        );
        // The server plugin in opencode.json, next to the user's config; the TUI plugin only
        // in tui.json.
        let config = config_json(&objects, "tools-opencode.json");
        assert_eq!(
            config["plugin"],
            serde_json::json!(["file:///plugins/node_modules/cc-safety-net"])
        );
        assert_eq!(config["model"], "opencode/big-pickle");
        let tui = config_json(&objects, "tools-tui.json");
        assert_eq!(
            tui,
            serde_json::json!({
                "$schema": "https://opencode.ai/tui.json",
                "plugin": ["file:///plugins/node_modules/plugin-gentleman"],
            })
        );
        assert_eq!(
            env_value_of(server, "OPENCODE_CONFIG"),
            "/tools/opencode.json"
        );
        assert_eq!(
            env_value_of(server, "OPENCODE_TUI_CONFIG"),
            "/tools/tui.json"
        );
        let copy = script(container(pod, CONTEXT_INIT_CONTAINER));
        assert!(
            copy.contains("cp /configmap-files/tools-tui.json /tools/tui.json"),
            "{copy}"
        );
        check_restricted("agent-plugins", pod);
        check_consistent("agent-plugins", &objects);
    }

    #[test]
    fn plugin_options_scopes_and_versions_from_the_docs() {
        // 056: a scoped plugin with options, no inline config.
        let (_, objects) = build_example(&example("056-", "my-agent"));
        assert_eq!(
            config_json(&objects, "tools-opencode.json")["plugin"],
            serde_json::json!([
                "file:///plugins/node_modules/cc-safety-net",
                [
                    "file:///plugins/node_modules/@nicholasgriffintn/opencode-plugin-otel",
                    {"endpoint": "http://otel-collector:4318"}
                ],
            ])
        );
        let pod_056 = pod(&objects);
        assert_eq!(
            npm_arguments(script(container(pod_056, PLUGIN_INIT_CONTAINER))),
            [
                "install",
                "--prefix",
                "/plugins",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--",
                "cc-safety-net",
                "@nicholasgriffintn/opencode-plugin-otel",
            ]
        );
        // No TUI plugin: no tui.json and no OPENCODE_TUI_CONFIG.
        let server = server(&objects);
        assert!(!env_names(server).contains(&"OPENCODE_TUI_CONFIG"));
        assert!(
            !objects
                .context_config_map
                .as_ref()
                .and_then(|c| c.data.as_ref())
                .expect("data")
                .contains_key("tools-tui.json")
        );

        // 066: a pinned scoped version; pluginInit overrides reach plugin-init only.
        let (_, objects) = build_example(&example("066-", "plugin-agent"));
        let pod = pod(&objects);
        let init = container(pod, PLUGIN_INIT_CONTAINER);
        assert!(script(init).contains("-- @corp/opencode-plugin@1.0.0\n"));
        assert_eq!(
            config_json(&objects, "tools-opencode.json")["plugin"],
            serde_json::json!(["file:///plugins/node_modules/@corp/opencode-plugin"])
        );
        assert_eq!(
            env_value_of(init, "NPM_CONFIG_REGISTRY"),
            "https://npm.corp.example.com"
        );
        assert_eq!(
            secret_ref(env(init, "NPM_TOKEN")),
            ("npm-credentials", "token")
        );
        for c in all_containers(pod).filter(|c| c.name != PLUGIN_INIT_CONTAINER) {
            assert!(!env_names(c).contains(&"NPM_TOKEN"), "{}", c.name);
        }

        // 058: plugins from an AgentTemplate reach an Agent without its own.
        let path = upstream_dir().join("docs/058-website_docs_features_plugins.yaml");
        let template: AgentTemplate =
            serde_json::from_value(documents(&path).remove(0)).expect("an AgentTemplate");
        let agent = agent_yaml(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: a}
spec:
  templateRef: {name: base-template}
"#,
        );
        let spec = effective_spec(&agent.spec, Some(&template.spec));
        validate(&spec).expect("valid");
        let objects = build(&agent, &spec, &BuildSettings::default());
        assert_eq!(
            config_json(&objects, "tools-opencode.json")["plugin"][0][0],
            "file:///plugins/node_modules/@nicholasgriffintn/opencode-plugin-otel"
        );
    }

    #[test]
    fn plugin_specifiers_reach_npm_exactly_as_written() {
        let agent = agent_yaml(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: a}
spec:
  workspaceDir: /w
  serviceAccountName: sa
  plugins:
    - name: "range-plugin@>=1.0.0 <2.0.0"
    - name: "@scope/quoted@1.0.0-it's"
    - name: "tagged@$(echo injected)`id`"
    - name: "both@^2"
    - name: "both@^2"
      target: tui
      options: {theme: dark}
"#,
        );
        let objects = build_agent(&agent);
        let init = container(pod(&objects), PLUGIN_INIT_CONTAINER);
        let args = npm_arguments(script(init));
        let after = args
            .iter()
            .position(|a| a == "--")
            .map(|i| &args[i + 1..])
            .expect("--");
        // Each specifier one argument, unexpanded; the package listed twice installs once.
        assert_eq!(
            after,
            [
                "range-plugin@>=1.0.0 <2.0.0",
                "@scope/quoted@1.0.0-it's",
                "tagged@$(echo injected)`id`",
                "both@^2",
            ]
        );
        assert_eq!(
            config_json(&objects, "tools-opencode.json")["plugin"],
            serde_json::json!([
                "file:///plugins/node_modules/range-plugin",
                "file:///plugins/node_modules/@scope/quoted",
                "file:///plugins/node_modules/tagged",
                "file:///plugins/node_modules/both",
            ])
        );
        assert_eq!(
            config_json(&objects, "tools-tui.json")["plugin"],
            serde_json::json!([["file:///plugins/node_modules/both", {"theme": "dark"}]])
        );
    }

    #[test]
    fn plugins_merge_after_the_users_config_plugins() {
        let agent = agent_yaml(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: a}
spec:
  workspaceDir: /w
  serviceAccountName: sa
  config:
    model: m/x
    plugin:
      - opencode-wakatime
      - ["file:///plugins/node_modules/mine", {from: user}]
  plugins:
    - name: mine@1.2.3
      options: {from: spec}
    - name: other
      options: {level: 2}
"#,
        );
        let objects = build_agent(&agent);
        let config = config_json(&objects, "tools-opencode.json");
        // The user's entries first and as written; spec.plugins' entry for a URL the user
        // already lists is dropped (the user's options win); the rest appended.
        assert_eq!(
            config["plugin"],
            serde_json::json!([
                "opencode-wakatime",
                ["file:///plugins/node_modules/mine", {"from": "user"}],
                ["file:///plugins/node_modules/other", {"level": 2}],
            ])
        );
        assert_eq!(config["model"], "m/x");
        // Still installed: the user's entry loads what plugin-init installs.
        let init = container(pod(&objects), PLUGIN_INIT_CONTAINER);
        assert!(
            script(init).contains("-- mine@1.2.3 other\n"),
            "{}",
            script(init)
        );
        // Plugins alone are enough for an opencode.json.
        let only = agent_yaml(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: a}
spec:
  workspaceDir: /w
  serviceAccountName: sa
  plugins: [{name: solo}]
"#,
        );
        let objects = build_agent(&only);
        assert_eq!(
            config_json(&objects, "tools-opencode.json"),
            serde_json::json!({"plugin": ["file:///plugins/node_modules/solo"]})
        );
        // No plugins: no plugin-init, no volume.
        let objects = build_agent(&seed_agent());
        assert!(
            all_containers(pod(&objects)).all(|c| c.name != PLUGIN_INIT_CONTAINER),
            "seed agent"
        );
        assert!(
            pod(&objects)
                .volumes
                .iter()
                .flatten()
                .all(|v| v.name != "plugins-volume")
        );
    }

    #[test]
    fn plugin_init_gets_proxy_ca_registry_and_its_image_setting() {
        let agent = agent_yaml(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: a}
spec:
  workspaceDir: /w
  serviceAccountName: sa
  plugins: [{name: p}]
  caBundle: {configMapRef: {name: corp-ca}}
  proxy: {httpsProxy: "http://proxy:3128", noProxy: "10.0.0.0/8"}
  podSpec:
    extraEnv:
      - {name: npm_config_registry, value: "http://registry.local:4873/"}
"#,
        );
        let settings = BuildSettings {
            plugin_image: "registry.local/node:22".to_string(),
            ..BuildSettings::default()
        };
        validate(&agent.spec).expect("valid");
        let objects = build(&agent, &agent.spec, &settings);
        let init = container(pod(&objects), PLUGIN_INIT_CONTAINER);
        assert_eq!(init.image.as_deref(), Some("registry.local/node:22"));
        for (name, value) in [
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("https_proxy", "http://proxy:3128"),
            ("NO_PROXY", "10.0.0.0/8,.svc,.cluster.local"),
            ("NODE_EXTRA_CA_CERTS", "/etc/ssl/certs/custom-ca/tls.crt"),
            ("npm_config_registry", "http://registry.local:4873/"),
        ] {
            assert_eq!(env_value_of(init, name), value, "{name}");
        }
        // The user's environment comes after ours, so it can replace npm's cache too.
        let names = env_names(init);
        let position = |n: &str| names.iter().position(|x| *x == n).expect(n);
        assert!(position("npm_config_cache") < position("npm_config_registry"));
        assert_eq!(mount_at(init, "/etc/ssl/certs/custom-ca").name, "ca-bundle");
        check_restricted("plugin-init with CA and proxy", pod(&objects));
    }

    #[test]
    fn plugin_names_and_options_are_validated() {
        let spec_with = |plugins: serde_json::Value| -> AgentSpec {
            serde_json::from_value(serde_json::json!({
                "workspaceDir": "/w",
                "serviceAccountName": "sa",
                "plugins": plugins,
            }))
            .expect("a spec")
        };
        for name in [
            "cc-safety-net",
            "cc-safety-net@0.8.2",
            "@aexol/opencode-tui",
            "@aexol/opencode-tui@^1.0.0",
            "x@>=1 <2",
            "x@latest",
            "Legacy.Name_x",
        ] {
            assert_eq!(
                validate(&spec_with(serde_json::json!([{ "name": name }]))),
                Ok(()),
                "{name}"
            );
        }
        for name in [
            "-rf",
            "--registry=http://evil",
            "git+https://github.com/a/b.git",
            "github:a/b",
            "a/b",
            "./local",
            "/abs/path",
            "https://x.io/p.tgz",
            "a b",
            "x@",
            "@scope",
            "@scope/",
            "@/x",
            "x@1\n2",
            ".hidden",
            "",
        ] {
            let err = validate(&spec_with(serde_json::json!([{ "name": name }]))).expect_err(name);
            assert_eq!(err.field, "spec.plugins", "{name}");
            assert!(
                err.message.starts_with("spec.plugins[0].name"),
                "{name}: {}",
                err.message
            );
        }
        let err = validate(&spec_with(
            serde_json::json!([{"name": "x", "options": ["not", "an", "object"]}]),
        ))
        .expect_err("array options");
        assert!(
            err.message.contains("options must be an object"),
            "{}",
            err.message
        );
        let err = validate(&spec_with(serde_json::json!([
            {"name": "x@1"}, {"name": "x@2", "target": "server"}
        ])))
        .expect_err("a repeated package");
        assert!(
            err.message.contains("repeats package \"x\""),
            "{}",
            err.message
        );
        let err = validate(&spec_with(serde_json::json!([
            {"name": "@s/x@1"}, {"name": "@s/x@2", "target": "tui"}
        ])))
        .expect_err("two versions");
        assert!(
            err.message.contains("need the same specifier"),
            "{}",
            err.message
        );
        assert_eq!(
            validate(&spec_with(serde_json::json!([
                {"name": "@s/x@1"}, {"name": "@s/x@1", "target": "tui"}
            ]))),
            Ok(())
        );
        assert_eq!(npm_package_name("@s/x@^1"), "@s/x");
        assert_eq!(npm_package_name("@s/x"), "@s/x");
        assert_eq!(npm_package_name("x@1"), "x");
        assert_eq!(npm_package_name("x"), "x");
    }

    #[test]
    fn helpers() {
        assert_eq!(clean_path("/workspace/./code/"), "/workspace/code");
        assert_eq!(resolve_path(".", "/workspace"), "/workspace");
        assert_eq!(resolve_path("code", "/workspace"), "/workspace/code");
        assert_eq!(resolve_path("/abs//x", "/workspace"), "/abs/x");
        assert_eq!(sh_quote("https://x.io/a.git"), "https://x.io/a.git");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$HOME"), "'$HOME'");
        assert_eq!(
            config_map_key("/tools/opencode.json"),
            "tools-opencode.json"
        );
        assert_eq!(config_map_key("/w/a b.md"), "w-a_b.md");
        assert_eq!(pull_policy("img"), "Always");
        assert_eq!(pull_policy("reg:5000/img"), "Always");
        assert_eq!(pull_policy("reg:5000/img:1.0"), "IfNotPresent");
        assert_eq!(pull_policy("img@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn url_contexts_are_fetched_when_the_pod_starts() {
        let agent = agent_yaml(
            r##"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: ctx, namespace: dev}
spec:
  workspaceDir: /workspace
  serviceAccountName: sa
  contexts:
    - name: guide
      type: URL
      url:
        source: https://docs.example/guide.md
        headers: {Accept: text/markdown, Authorization: Bearer inline}
        secretRef: {name: docs-token}
        timeout: 5
    - {name: spec, type: URL, url: {source: "http://docs.example/spec.txt", insecureSkipTLSVerify: true}, mountPath: docs/spec.txt}
    - {name: etc, type: URL, url: {source: "http://docs.example/x.conf"}, mountPath: /etc/x.conf, fileMode: 384}
"##,
        );
        assert!(
            unsupported(&agent.spec).is_empty(),
            "URL contexts are supported"
        );
        let objects = build_agent(&agent);
        check_consistent("url contexts", &objects);
        check_restricted("url contexts", pod(&objects));
        let pod = pod(&objects);
        let init = container(pod, "context-init");
        let script = script(init);
        assert_eq!(script.matches("fetch_url() {").count(), 1, "{script}");
        for line in [
            "fetch_url spec http://docs.example/spec.txt /workspace/docs/spec.txt 30 1 ''",
            "chmod 644 /workspace/docs/spec.txt",
            "fetch_url etc http://docs.example/x.conf /ctx-files/etc-x.conf 30 '' ''",
            "chmod 600 /ctx-files/etc-x.conf",
            "printf '%s\\n' '<context name=\"guide\" namespace=\"dev\" type=\"URL\">'",
            "} > /workspace/.kubeopencode/context.md",
        ] {
            assert!(
                script.lines().any(|l| l == line),
                "missing {line:?} in\n{script}"
            );
        }
        // The Secret's credentials replace the inline Authorization header.
        let guide = script
            .lines()
            .find(|l| l.contains("fetch_url guide"))
            .expect("guide fetch");
        assert!(
            guide.ends_with(
                "fetch_url guide https://docs.example/guide.md - 5 '' \"$auth\" 'Accept: text/markdown'"
            ),
            "{guide}"
        );
        assert!(!script.contains("Bearer inline"), "{script}");
        for (var, key) in [
            ("URL_0_TOKEN", "token"),
            ("URL_0_USERNAME", "username"),
            ("URL_0_PASSWORD", "password"),
        ] {
            let env = env(init, var);
            assert_eq!(secret_ref(env), ("docs-token", key));
            let selector = env
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .expect("secretKeyRef");
            assert_eq!(selector.optional, Some(true), "{var}");
        }
        // A file outside the workspace is mounted from the staging emptyDir.
        assert_eq!(
            mount_at(server(&objects), "/etc/x.conf")
                .sub_path
                .as_deref(),
            Some("etc-x.conf")
        );

        let invalid = agent_yaml(
            "apiVersion: kubeopencode.io/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec:\n  workspaceDir: /w\n  serviceAccountName: sa\n  contexts: [{type: URL, url: {source: \"ftp://x/y\"}}]\n",
        );
        let err = validate(&invalid.spec).expect_err("ftp");
        assert_eq!(
            err.message,
            "spec.contexts[0].url.source must be an http:// or https:// URL, not \"ftp://x/y\""
        );
    }

    /// Runs the generated fetch line with `sh` against a loopback server, once with curl and once
    /// with wget (the default alpine/git image has only busybox's), and returns what the server saw.
    fn run_fetch(tool: &str, fetch: &UrlFetch, env: &[(&str, &str)]) -> (String, String) {
        use std::io::{BufRead as _, BufReader, Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).expect("read") == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut stream = reader.into_inner();
            let body = "fetched body\n";
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .expect("write");
            let _ = stream.read(&mut [0; 1]);
            head
        });
        // Only the tool under test (and what the function needs) on PATH.
        let bin = std::env::temp_dir().join(format!("kubeoc-fetch-{tool}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&bin);
        std::fs::create_dir_all(&bin).expect("bin dir");
        for name in [tool, "base64", "tr"] {
            let found = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| std::path::Path::new(d).join(name))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{name} not installed"));
            std::os::unix::fs::symlink(found, bin.join(name)).expect("symlink");
        }
        let mut fetch = fetch.clone();
        fetch.url.source = fetch.url.source.replace("PORT", &port.to_string());
        let script = format!("set -eu\n{FETCH_URL_FUNCTION}\n{}", fetch.command("-"));
        let output = std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .env_clear()
            .env("PATH", &bin)
            .envs(env.iter().copied())
            .output()
            .expect("sh");
        let _ = std::fs::remove_dir_all(&bin);
        assert!(
            output.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let head = server.join().expect("server thread");
        (String::from_utf8_lossy(&output.stdout).into_owned(), head)
    }

    #[test]
    fn the_fetch_command_sends_headers_and_credentials_with_curl_and_wget() {
        let fetch = |headers: serde_json::Value, secret: bool| UrlFetch {
            index: 3,
            label: "docs".to_string(),
            url: serde_json::from_value(serde_json::json!({
                "source": "http://127.0.0.1:PORT/guide.md",
                "headers": headers,
                "secretRef": secret.then(|| serde_json::json!({"name": "s"})),
            }))
            .expect("UrlContext"),
        };
        for tool in ["curl", "wget"] {
            let (body, head) = run_fetch(
                tool,
                &fetch(
                    serde_json::json!({"Accept": "text/markdown", "Authorization": "Bearer inline"}),
                    true,
                ),
                &[("URL_3_TOKEN", "tok-123")],
            );
            assert_eq!(body, "fetched body\n", "{tool}");
            assert!(head.starts_with("GET /guide.md "), "{tool}: {head}");
            let lower = head.to_ascii_lowercase();
            assert!(
                lower.contains("accept: text/markdown\r\n"),
                "{tool}: {head}"
            );
            assert!(
                lower.contains("authorization: bearer tok-123\r\n"),
                "{tool}: {head}"
            );
            assert!(!head.contains("inline"), "{tool}: {head}");

            let (_, head) = run_fetch(
                tool,
                &fetch(serde_json::json!({}), true),
                &[("URL_3_USERNAME", "ann"), ("URL_3_PASSWORD", "pw:1")],
            );
            // base64("ann:pw:1")
            assert!(
                head.contains("Authorization: Basic YW5uOnB3OjE=\r\n"),
                "{tool}: {head}"
            );

            let (_, head) = run_fetch(
                tool,
                &fetch(serde_json::json!({"Authorization": "Bearer inline"}), false),
                &[],
            );
            assert!(head.contains("Bearer inline"), "{tool}: {head}");
        }
    }
}
