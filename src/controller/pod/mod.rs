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
//!
//! One concern per file, so a Task's pod can be built from the same pieces as the server's:
//! `names` (child names, labels, ownership), `merge` (the AgentTemplate merge, the cluster's
//! proxy), `validate`, `contexts` (contexts, skills, opencode.json), `git`, `plugins`,
//! `credentials`, `env` (CA bundle, proxy), `containers` (helper containers, security
//! contexts), `volumes` and `paths` (small helpers), `server` (the Deployment, Service, PVCs
//! and Secret), `task` (the pod of an agentRef Task) and `ephemeral` (the server pod of a
//! templateRef Task, from the same `server::pod_template`). Callers use the re-exports here.

mod containers;
mod contexts;
mod credentials;
mod env;
mod ephemeral;
mod git;
mod merge;
mod names;
mod paths;
mod plugins;
mod server;
mod task;
mod validate;
mod volumes;

#[cfg(test)]
mod test_support;
#[cfg(all(test, feature = "upstream-tests"))]
mod upstream_tests;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};

use crate::api::KubeOpenCodeConfigSpec;
use crate::api::config::PullPolicy;

pub use contexts::{context_header, context_label, runtime_text};
pub use env::{CaBundleSource, ca_bundle_source, proxy_variables};
pub use ephemeral::{
    EphemeralServer, ephemeral_endpoint, ephemeral_server, task_auth_secret, task_auth_secret_name,
    task_context_config_map_name, task_spec,
};
pub use git::{RolloutContext, ref_or_head, rollout_contexts};
pub use merge::{effective_spec, with_cluster_proxy};
pub use names::{
    CHILD_SELECTOR, auth_secret_name, context_config_map_name, deployment_name, owner_reference,
    selector_labels, server_labels, server_port, service_name, service_url, sessions_pvc_name,
    workspace_pvc_name,
};
pub use paths::workspace_dir;
pub use server::{auth_secret, build, opencode_port};
pub use task::{
    AttachTarget, PROMPT_ENV, TASK_CHILD_SELECTOR, TASK_CONTAINER, TASK_LABEL, attach_pod,
    task_pod_name, task_session_title,
};
pub use validate::{InvalidSpec, unsupported, validate};

/// Label on every child object (and the Deployment's selector): the Agent's name.
pub const AGENT_LABEL: &str = "kubeopencode.io/agent";
/// Pod template annotation holding a hash of the context ConfigMap, so content changes roll
/// the Deployment (the files are copied at Pod start).
pub const CONTEXT_HASH_ANNOTATION: &str = "kubeopencode.io/context-hash";
/// Pod template annotation with the remote commits of Git contexts with sync policy Rollout
/// (`name=commit,...`): a new commit rolls the Deployment, whose pod clones it.
pub const GIT_COMMITS_ANNOTATION: &str = "kubeopencode.io/git-commits";
/// Pod template annotation with a digest of the server password, so a new password (the
/// Secret deleted and made anew) rolls the Deployment: the server reads it at start.
pub const PASSWORD_DIGEST_ANNOTATION: &str = "kubeopencode.io/password-digest";
/// Name of the OpenCode server container.
pub const SERVER_CONTAINER: &str = "opencode-server";
/// Name of the authenticating front container (`kubectl-kubeoc front`), which takes the
/// Service port and forwards to OpenCode on loopback; see [`crate::front`].
pub const FRONT_CONTAINER: &str = "kubeoc-front";
/// Default image of the front: kubeoc's own image, at this build's version.
pub const DEFAULT_FRONT_IMAGE: &str =
    concat!("ghcr.io/kubeoc/kubectl-kubeoc:v", env!("CARGO_PKG_VERSION"));
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

// The pod layout: the same for every pod the builders make, so it is no one file's.
const TOOLS_VOLUME: &str = "tools";
const PLUGINS_VOLUME: &str = "plugins-volume";
const WORKSPACE_VOLUME: &str = "workspace";
const SESSIONS_VOLUME: &str = "session-data";
const CONTEXT_VOLUME: &str = "context-files";
const CONTEXT_FILES_MOUNT: &str = "/configmap-files";
const EXTERNAL_VOLUME: &str = "ctx-files";
const EXTERNAL_MOUNT: &str = "/ctx-files";
const HOME_DIR: &str = "/tmp";

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
    /// Image of the authenticating front (kubeoc's own image).
    pub front_image: String,
    /// Digest of the server password ([`PASSWORD_DIGEST_ANNOTATION`]), when known.
    pub password_digest: Option<String>,
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
            front_image: DEFAULT_FRONT_IMAGE.to_string(),
            password_digest: None,
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

#[cfg(test)]
mod tests {
    use super::test_support::{all_containers, pod, seed_agent};
    use super::{BuildSettings, build, with_cluster_proxy};
    use crate::api::common::ProxyConfig;
    use crate::api::{AgentSpec, KubeOpenCodeConfigSpec};

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
}
