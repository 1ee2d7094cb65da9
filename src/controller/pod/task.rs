//! The pod of an agentRef Task: a small client that runs `opencode run --attach` against the
//! Agent's live server. It does no work itself (the server does), so it gets the OpenCode
//! binary the way the server pod does (`opencode-init` from the agent image into the tools
//! volume), the executor image for a shell, the restricted security contexts and the Agent's
//! pull secrets, and nothing of the server's volumes.
//!
//! The password reaches it from the Agent's Secret (`secretKeyRef`, read by OpenCode as
//! `OPENCODE_SERVER_PASSWORD`), never in the pod spec or its arguments; the prompt is in an
//! environment variable, piped to `opencode run` on stdin, so no shell quoting can change it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::containers::{
    container_security, default_pod_security, image_or, pull_policy, resources,
};
use super::env::{env_secret, env_value};
use super::names::{auth_secret_name, server_port, service_url};
use super::paths::workspace_dir;
use super::volumes::{empty_dir, mount};
use super::{
    BuildSettings, HOME_DIR, OPENCODE_INIT_CONTAINER, PASSWORD_KEY, TOOLS_MOUNT_PATH, TOOLS_VOLUME,
};
use crate::api::{API_VERSION, AgentSpec, Task};

/// Label on a Task's pod: the Task's name (as upstream).
pub const TASK_LABEL: &str = "kubeopencode.io/task";
/// Selects the children of every Task (pods, Secrets, ConfigMaps): what the controller watches.
pub const TASK_CHILD_SELECTOR: &str = "kubeopencode.io/task";
/// Name of the container that runs `opencode run --attach`.
pub const TASK_CONTAINER: &str = "task";
/// Environment variable holding the prompt in the Task's container.
pub const PROMPT_ENV: &str = "KUBEOC_PROMPT";

/// `opencode run` reads a prompt on stdin to its end (it is never a terminal here). A prompt
/// given as an argument instead reaches the model in double quotes when it has spaces
/// (1.18.33), so it comes on stdin, byte for byte.
const RUN_SCRIPT: &str = r#"printf '%s' "$KUBEOC_PROMPT" | /tools/opencode run --attach "$KUBEOC_SERVER_URL" --dir "$WORKSPACE_DIR" --title "$KUBEOC_SESSION_TITLE""#;

/// Name of a Task's pod: `<task>-pod`.
pub fn task_pod_name(task: &str) -> String {
    format!("{task}-pod")
}

/// Title of a Task's OpenCode session: `kubeopencode/<ns>/<task>/<first 8 of the uid>`, so a
/// Task made again under the same name gets a session of its own.
pub fn task_session_title(task: &Task) -> String {
    let uid: String = task
        .metadata
        .uid
        .as_deref()
        .unwrap_or_default()
        .chars()
        .take(8)
        .collect();
    format!(
        "kubeopencode/{}/{}/{uid}",
        task.metadata.namespace.as_deref().unwrap_or_default(),
        task.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Labels of a Task's pod and the objects it needs: [`TASK_LABEL`] and upstream's names.
pub(super) fn task_labels(task: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TASK_LABEL.to_string(), task.to_string()),
        (
            "app.kubernetes.io/name".to_string(),
            "kubeopencode-task".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "kubeopencode".to_string(),
        ),
    ])
}

/// Metadata of `name`, a child of the Task (its pod, Secret, ConfigMap).
pub(super) fn task_child_meta(task: &Task, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: task.metadata.namespace.clone(),
        labels: Some(task_labels(
            task.metadata.name.as_deref().unwrap_or_default(),
        )),
        owner_references: Some(vec![task_owner(task)]),
        ..Default::default()
    }
}

/// The Task as controller owner of its pod.
fn task_owner(task: &Task) -> OwnerReference {
    OwnerReference {
        api_version: API_VERSION.to_string(),
        kind: "Task".to_string(),
        name: task.metadata.name.clone().unwrap_or_default(),
        uid: task.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What an agentRef Task's pod needs to know of its Agent.
pub struct AttachTarget<'a> {
    /// The Agent's name (its Service and password Secret are named after it).
    pub agent: &'a str,
    /// The Agent's effective spec (after the template merge).
    pub spec: &'a AgentSpec,
}

/// The pod `<task>-pod` that sends `prompt` to the Agent's server as session
/// [`task_session_title`]. Deterministic, restartPolicy Never: a Task runs at most once.
pub fn attach_pod(
    task: &Task,
    target: &AttachTarget<'_>,
    prompt: &str,
    settings: &BuildSettings,
) -> Pod {
    let task_name = task.metadata.name.as_deref().unwrap_or_default();
    let namespace = task.metadata.namespace.as_deref().unwrap_or_default();
    let spec = target.spec;
    let workspace = workspace_dir(spec);
    let url = service_url(
        target.agent,
        namespace,
        server_port(spec),
        &settings.cluster_domain,
    );
    let pod_spec = spec.pod_spec.clone().unwrap_or_default();
    let security = container_security(settings, pod_spec.pod_security_context.as_ref());
    let agent_image = image_or(&spec.agent_image, &settings.default_agent_image);
    let executor_image = image_or(&spec.executor_image, &settings.default_executor_image);

    let init = Container {
        name: OPENCODE_INIT_CONTAINER.to_string(),
        image_pull_policy: Some(pull_policy(&agent_image).to_string()),
        image: Some(agent_image),
        env: Some(vec![env_value("TOOLS_DIR", TOOLS_MOUNT_PATH)]),
        volume_mounts: Some(vec![mount(TOOLS_VOLUME, TOOLS_MOUNT_PATH)]),
        security_context: Some(security.clone()),
        ..Default::default()
    };
    let run = Container {
        name: TASK_CONTAINER.to_string(),
        image_pull_policy: Some(pull_policy(&executor_image).to_string()),
        image: Some(executor_image),
        command: Some(vec!["/bin/sh".into(), "-c".into(), RUN_SCRIPT.into()]),
        env: Some(vec![
            env_value("HOME", HOME_DIR),
            env_value("XDG_DATA_HOME", &format!("{HOME_DIR}/.local/share")),
            env_value("XDG_STATE_HOME", &format!("{HOME_DIR}/.local/state")),
            env_value("XDG_CACHE_HOME", &format!("{HOME_DIR}/.cache")),
            env_value("WORKSPACE_DIR", &workspace),
            env_value("KUBEOC_SERVER_URL", &url),
            env_value("KUBEOC_SESSION_TITLE", &task_session_title(task)),
            env_value(PROMPT_ENV, prompt),
            env_secret(
                "OPENCODE_SERVER_PASSWORD",
                &auth_secret_name(target.agent),
                PASSWORD_KEY,
                None,
            ),
            env_value("OPENCODE_DISABLE_AUTOUPDATE", "1"),
            env_value("OPENCODE_DISABLE_MODELS_FETCH", "1"),
            env_value("OPENCODE_DISABLE_LSP_DOWNLOAD", "1"),
            env_value("OPENCODE_DISABLE_SHARE", "1"),
        ]),
        working_dir: Some(HOME_DIR.to_string()),
        volume_mounts: Some(vec![mount(TOOLS_VOLUME, TOOLS_MOUNT_PATH)]),
        resources: Some(client_resources()),
        security_context: Some(security),
        ..Default::default()
    };
    Pod {
        metadata: task_child_meta(task, task_pod_name(task_name)),
        spec: Some(PodSpec {
            init_containers: Some(vec![init]),
            containers: vec![run],
            volumes: Some(vec![empty_dir(TOOLS_VOLUME)]),
            restart_policy: Some("Never".to_string()),
            // A client of the server: it needs no Kubernetes API.
            automount_service_account_token: Some(false),
            image_pull_secrets: spec.image_pull_secrets.clone().filter(|s| !s.is_empty()),
            security_context: Some(
                pod_spec
                    .pod_security_context
                    .clone()
                    .unwrap_or_else(|| default_pod_security(settings)),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `opencode run --attach` streams a reply: little CPU, a Bun runtime's memory.
fn client_resources() -> ResourceRequirements {
    resources("50m", "128Mi", "1Gi")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TaskSpec;
    use crate::api::common::AgentReference;

    fn task() -> Task {
        let mut task = Task::new(
            "fix-bug",
            TaskSpec {
                agent_ref: Some(AgentReference {
                    name: "team-agent".into(),
                }),
                description: Some("fix it".into()),
                ..Default::default()
            },
        );
        task.metadata.namespace = Some("team".into());
        task.metadata.uid = Some("0123abcd-9999-4000-8000-000000000001".into());
        task
    }

    fn env<'a>(
        container: &'a Container,
        name: &str,
    ) -> Option<&'a k8s_openapi::api::core::v1::EnvVar> {
        container.env.iter().flatten().find(|e| e.name == name)
    }

    #[test]
    fn the_pod_attaches_to_the_agents_service_with_the_password_from_its_secret() {
        let spec = AgentSpec {
            workspace_dir: Some("/work/space/".into()),
            port: Some(5000),
            ..Default::default()
        };
        let target = AttachTarget {
            agent: "team-agent",
            spec: &spec,
        };
        let pod = attach_pod(
            &task(),
            &target,
            "fix \"it\" $HOME",
            &BuildSettings::default(),
        );
        assert_eq!(pod.metadata.name.as_deref(), Some("fix-bug-pod"));
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(TASK_LABEL).map(String::as_str), Some("fix-bug"));
        assert!(
            !labels.contains_key(super::super::AGENT_LABEL),
            "the agent label would put the Task pod behind the agent's Service"
        );
        let owner = &pod.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Task", Some(true))
        );

        let spec = pod.spec.expect("spec");
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.automount_service_account_token, Some(false));
        let run = &spec.containers[0];
        let value = |name| env(run, name).and_then(|e| e.value.clone());
        assert_eq!(
            value("KUBEOC_SERVER_URL").as_deref(),
            Some("http://team-agent.team.svc.cluster.local:5000")
        );
        assert_eq!(value("WORKSPACE_DIR").as_deref(), Some("/work/space"));
        assert_eq!(
            value("KUBEOC_SESSION_TITLE").as_deref(),
            Some("kubeopencode/team/fix-bug/0123abcd")
        );
        assert_eq!(value(PROMPT_ENV).as_deref(), Some("fix \"it\" $HOME"));
        let password = env(run, "OPENCODE_SERVER_PASSWORD").expect("password variable");
        assert_eq!(password.value, None, "the password is never in the spec");
        let from = password
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("from the Secret");
        assert_eq!(
            (from.name.as_str(), from.key.as_str()),
            ("team-agent-server-auth", PASSWORD_KEY)
        );
        let command = run.command.clone().unwrap_or_default().join(" ");
        assert!(
            command.contains("--attach \"$KUBEOC_SERVER_URL\""),
            "{command}"
        );
        assert!(
            command.starts_with("/bin/sh -c printf '%s' \"$KUBEOC_PROMPT\" |"),
            "{command}"
        );
        assert!(
            !command.contains("fix"),
            "the prompt stays out of the arguments"
        );
        let security = run.security_context.as_ref().expect("restricted");
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(
            spec.init_containers.unwrap_or_default()[0].name,
            OPENCODE_INIT_CONTAINER
        );
    }

    #[test]
    fn the_same_task_gives_the_same_pod() {
        let spec = AgentSpec::default();
        let target = AttachTarget {
            agent: "a",
            spec: &spec,
        };
        let settings = BuildSettings::default();
        assert_eq!(
            attach_pod(&task(), &target, "p", &settings),
            attach_pod(&task(), &target, "p", &settings)
        );
    }
}
