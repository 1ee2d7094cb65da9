//! The server's objects: the Deployment with its pod template, the Service, the PVCs and the
//! password Secret.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, Secret, Service, ServicePort, ServiceSpec,
    TCPSocketAction, Volume, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::containers::{
    apply_overrides, container_security, default_pod_security, image_or, pull_policy, push_all,
    resources, system_container, system_containers,
};
use super::contexts::{ContextPlan, plan_contexts};
use super::credentials::credentials;
use super::env::{ca_bundle, env_secret, env_value, proxy_env};
use super::git::{GIT_ROOT, git_env, git_init_script, git_sync_script};
use super::names::{
    agent_name, auth_secret_name, child_meta, context_config_map_name, deployment_name,
    selector_labels, server_labels, server_port, service_name, sessions_pvc_name, with_user_labels,
    workspace_pvc_name,
};
use super::paths::clean_path;
use super::plugins::{NPM_CACHE_DIR, PluginPlan, plan_plugins, plugin_init_script};
use super::volumes::{empty_dir, mount, read_only, sub_path_mount};
use super::{
    BuildSettings, CONTEXT_FILES_MOUNT, CONTEXT_HASH_ANNOTATION, CONTEXT_INIT_CONTAINER,
    CONTEXT_VOLUME, DEFAULT_PERMISSION, DEFAULT_SESSIONS_SIZE, DEFAULT_WORKSPACE_SIZE,
    EXTERNAL_MOUNT, EXTERNAL_VOLUME, FRONT_CONTAINER, GIT_COMMITS_ANNOTATION, HOME_DIR,
    OPENCODE_CONFIG_PATH, OPENCODE_INIT_CONTAINER, OPENCODE_TUI_CONFIG_PATH,
    PASSWORD_DIGEST_ANNOTATION, PASSWORD_KEY, PLUGIN_INIT_CONTAINER, PLUGINS_MOUNT_PATH,
    PLUGINS_VOLUME, SERVER_CONTAINER, SESSIONS_MOUNT_PATH, SESSIONS_VOLUME, ServerObjects,
    TOOLS_MOUNT_PATH, TOOLS_VOLUME, WORKSPACE_VOLUME,
};
use crate::api::agent::{ExtraPort, PortProtocol, VolumePersistence};
use crate::api::{Agent, AgentSpec};

const SERVER_SHELL: &str = "/bin/bash";
/// Where kubeoc's image has its binary.
const FRONT_BINARY: &str = "/usr/local/bin/kubectl-kubeoc";
const SERVER_PATH: &str = "/tools:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Builds the server's objects from the Agent and its effective spec (see [`effective_spec`];
/// call [`validate`] first; without a workspaceDir, paths fall back to /workspace). Every
/// object has the Agent as controller owner. Deterministic: the same input gives the same
/// objects, so server-side apply of an unchanged Agent writes nothing.
///
/// [`effective_spec`]: super::effective_spec
/// [`validate`]: fn@super::validate
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

    let labels = match spec.pod_spec.as_ref().and_then(|p| p.labels.as_ref()) {
        Some(extra) => with_user_labels(name, extra),
        None => server_labels(name),
    };
    let pod = pod_template(PodInputs {
        spec,
        settings,
        workspace: &workspace,
        port,
        extra_ports: &extra_ports,
        contexts: &contexts,
        plugins: &plugins,
        refs: PodRefs {
            auth_secret: auth_secret_name(name),
            context_config_map: context_config_map_name(name),
            sessions_claim: Some(sessions_pvc_name(name)),
            workspace_claim: workspace_pvc.as_ref().map(|_| workspace_pvc_name(name)),
        },
        labels: labels.clone(),
    });

    let deployment = Deployment {
        metadata: child_meta(agent, deployment_name(name), labels),
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

/// The objects a server pod refers to by name: an Agent's children, or a Task's.
pub(super) struct PodRefs {
    /// Secret holding the server password under [`PASSWORD_KEY`].
    pub auth_secret: String,
    /// ConfigMap of the context files (mounted when the plan has data).
    pub context_config_map: String,
    /// PVC of the sessions; `None` keeps them in an emptyDir that goes with the pod.
    pub sessions_claim: Option<String>,
    /// PVC of the workspace; `None` is an emptyDir.
    pub workspace_claim: Option<String>,
}

pub(super) struct PodInputs<'a> {
    pub spec: &'a AgentSpec,
    pub settings: &'a BuildSettings,
    pub workspace: &'a str,
    pub port: i32,
    pub extra_ports: &'a [ExtraPort],
    pub contexts: &'a ContextPlan,
    pub plugins: &'a PluginPlan,
    pub refs: PodRefs,
    pub labels: BTreeMap<String, String>,
}

/// The pod of an OpenCode server (`opencode serve` behind the front) with its init
/// containers and sidecars: an Agent's Deployment runs it, and so does a templateRef Task.
pub(super) fn pod_template(input: PodInputs<'_>) -> PodTemplateSpec {
    let PodInputs {
        spec,
        settings,
        workspace,
        port,
        extra_ports,
        contexts,
        plugins,
        refs,
        labels,
    } = input;
    let PodRefs {
        auth_secret,
        context_config_map,
        sessions_claim,
        workspace_claim,
    } = refs;
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
        match sessions_claim {
            Some(claim_name) => Volume {
                name: SESSIONS_VOLUME.to_string(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name,
                    ..Default::default()
                }),
                ..Default::default()
            },
            None => empty_dir(SESSIONS_VOLUME),
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
        env_secret("OPENCODE_SERVER_PASSWORD", &auth_secret, PASSWORD_KEY, None),
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
                    name: context_config_map.clone(),
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
    // OpenCode listens on loopback only; the front owns the Service port. Probes reach the
    // front, whose readiness path answers once OpenCode accepts connections (a probe may
    // name any port of the pod).
    let upstream_port = opencode_port(spec);
    let server = Container {
        name: SERVER_CONTAINER.to_string(),
        image_pull_policy: Some(pull_policy(&executor_image).to_string()),
        image: Some(executor_image),
        command: Some(
            [
                "/tools/opencode",
                "serve",
                "--port",
                &upstream_port.to_string(),
                "--hostname",
                "127.0.0.1",
            ]
            .map(String::from)
            .to_vec(),
        ),
        working_dir: Some(workspace.to_string()),
        env: Some(env),
        env_from: (!credentials.env_from.is_empty()).then_some(credentials.env_from),
        volume_mounts: Some(server_mounts),
        ports: Some(ports.split_off(1)).filter(|p| !p.is_empty()),
        startup_probe: Some(ready_probe(port, 1, 120)),
        readiness_probe: Some(ready_probe(port, 10, 3)),
        liveness_probe: Some(ready_probe(port, 30, 3)),
        resources: Some(pod_spec.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(
            pod_spec
                .security_context
                .clone()
                .unwrap_or(security.clone()),
        ),
        lifecycle: pod_spec.lifecycle.clone(),
        ..Default::default()
    };
    let front = Container {
        name: FRONT_CONTAINER.to_string(),
        image_pull_policy: Some(pull_policy(&settings.front_image).to_string()),
        image: Some(settings.front_image.clone()),
        command: Some(
            [
                FRONT_BINARY,
                "front",
                "--listen",
                &format!("0.0.0.0:{port}"),
                "--upstream",
                &format!("127.0.0.1:{upstream_port}"),
            ]
            .map(String::from)
            .to_vec(),
        ),
        env: Some(vec![env_secret(
            crate::front::PASSWORD_ENV,
            &auth_secret,
            PASSWORD_KEY,
            None,
        )]),
        ports: Some(ports),
        readiness_probe: Some(ready_probe(port, 2, 3)),
        liveness_probe: Some(tcp_probe(port, 30, 3)),
        resources: Some(front_resources()),
        security_context: Some(security),
        ..Default::default()
    };
    let mut containers = vec![server, front];
    containers.extend(sidecars);

    let scheduling = pod_spec.scheduling.clone().unwrap_or_default();
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
    if let Some(digest) = &settings.password_digest {
        annotations.insert(PASSWORD_DIGEST_ANNOTATION.to_string(), digest.clone());
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

/// The port OpenCode listens on, on loopback: the first one after the Service port that no
/// extra port uses.
pub fn opencode_port(spec: &AgentSpec) -> i32 {
    let port = server_port(spec);
    let taken: Vec<i32> = spec.extra_ports.iter().flatten().map(|p| p.port).collect();
    (1..)
        .map(|offset| {
            let candidate = port + offset;
            if candidate > 65535 {
                candidate - 65535 + 1023
            } else {
                candidate
            }
        })
        .find(|candidate| *candidate != port && !taken.contains(candidate))
        .unwrap_or(port + 1)
}

/// The front's readiness path: OpenCode accepts connections.
fn ready_probe(port: i32, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(crate::front::READY_PATH.to_string()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// The front forwards bytes: a little CPU, little memory.
fn front_resources() -> ResourceRequirements {
    resources("10m", "16Mi", "128Mi")
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

/// Secret `<a>-server-auth` holding the server password under key `password` (in `data`, so
/// server-side apply round-trips it).
pub fn auth_secret(agent: &Agent, password: &str) -> Secret {
    let name = agent_name(agent);
    password_secret(
        child_meta(agent, auth_secret_name(name), server_labels(name)),
        password,
    )
}

/// A Secret holding a server password under [`PASSWORD_KEY`].
pub(super) fn password_secret(metadata: ObjectMeta, password: &str) -> Secret {
    Secret {
        metadata,
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(
            PASSWORD_KEY.to_string(),
            ByteString(password.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::pod::test_support::*;
    use crate::controller::pod::{owner_reference, service_url};

    #[test]
    fn rollout_contexts_get_no_sidecar_and_their_commits_and_the_password_roll_the_pod() {
        use super::super::git::DEFAULT_SYNC_INTERVAL;
        use super::super::{
            GIT_COMMITS_ANNOTATION, PASSWORD_DIGEST_ANNOTATION, RolloutContext, rollout_contexts,
            unsupported,
        };
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
        assert_eq!(
            names(Some(&pod(&objects).containers)),
            ["opencode-server", "kubeoc-front"]
        );
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
        let settings = BuildSettings {
            password_digest: Some("d1".to_string()),
            ..BuildSettings::default()
        };
        assert_eq!(annotations(&settings)[PASSWORD_DIGEST_ANNOTATION], "d1");
        assert!(!annotations(&BuildSettings::default()).contains_key(PASSWORD_DIGEST_ANNOTATION));
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
            ["opencode-init", "git-init-0", "context-init"]
        );
        assert_eq!(
            names(Some(&pod.containers)),
            ["opencode-server", "kubeoc-front"]
        );

        // Git context `mountPath: code` -> /workspace/code, from the clone's volume.
        let clone = container(pod, "git-init-0");
        assert!(script(clone).contains("git clone --depth 1 --branch main -- https://github.com/your-org/your-repo.git /git/repo"), "{}", script(clone));
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
                    "OPENCODE_CONFIG",
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
        assert!(
            objects.context_config_map.is_some(),
            "the Text context goes into context.md"
        );
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
}
