//! What every container of an agent's pods is built from: helper containers in the system
//! image, pull policies, podSpec.systemContainers overrides, the restricted security contexts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, PodSecurityContext, ResourceRequirements, SeccompProfile,
    SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::env::env_value;
use super::{BuildSettings, HOME_DIR};
use crate::api::agent::{AgentPodSpec, ContainerOverrides};

const SYSTEM_SHELL: &str = "/bin/sh";

/// Requests of `cpu` and `memory`, and a memory limit (no CPU limit: throttling a streaming
/// reply helps nobody).
pub(super) fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    let quantity = |q: &str| Quantity(q.to_string());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), quantity(cpu)),
            ("memory".to_string(), quantity(memory)),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            quantity(memory_limit),
        )])),
        ..Default::default()
    }
}

pub(super) fn system_containers(pod_spec: &AgentPodSpec) -> crate::api::agent::SystemContainers {
    pod_spec.system_containers.clone().unwrap_or_default()
}

pub(super) fn system_container(
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

pub(super) fn apply_overrides(container: &mut Container, overrides: Option<&ContainerOverrides>) {
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

pub(super) fn push_all<T: Clone>(list: &mut Option<Vec<T>>, items: &[T]) {
    if !items.is_empty() {
        list.get_or_insert_with(Vec::new)
            .extend(items.iter().cloned());
    }
}

pub(super) fn image_or(image: &Option<String>, default: &str) -> String {
    image
        .clone()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Always for `:latest` or untagged images, IfNotPresent for tags and digests (as upstream).
pub(super) fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

/// The restricted container security context. When the user's podSecurityContext picks the
/// uid, containers follow it (and claim runAsNonRoot only for a non-zero uid).
pub(super) fn container_security(
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

pub(super) fn default_pod_security(settings: &BuildSettings) -> PodSecurityContext {
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
