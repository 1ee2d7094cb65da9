//! The pod of a templateRef Task: an OpenCode server of its own, built from the AgentTemplate
//! (with the Task's contexts after the template's) by the same [`pod_template`] an Agent's
//! Deployment uses, so contexts, Git repositories, skills, plugins, credentials and podSpec
//! all work as they do for an Agent. It lives as long as the Task runs: the controller sends
//! the prompt through the apiserver's pod proxy, reads the answer from the session, then
//! deletes the pod.
//!
//! Differences from an Agent's pod: restartPolicy Never (a Task runs at most once), sessions
//! and workspace in emptyDirs (nothing outlives the Task), the Task's labels, and a Secret and
//! ConfigMap of the Task's own (`<task>-task-auth`, `<task>-task-context`), so a Task and an
//! Agent of the same name never share one.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};

use super::contexts::plan_contexts;
use super::names::server_port;
use super::paths::workspace_dir;
use super::plugins::plan_plugins;
use super::server::{PodInputs, PodRefs, password_secret, pod_template};
use super::task::{task_child_meta, task_labels, task_pod_name};
use super::{BuildSettings, FRONT_CONTAINER, SERVER_CONTAINER};
use crate::api::{AgentSpec, Task};

/// Secret of a templateRef Task's server password: `<task>-task-auth`.
pub fn task_auth_secret_name(task: &str) -> String {
    format!("{task}-task-auth")
}

/// ConfigMap of a templateRef Task's context files: `<task>-task-context`.
pub fn task_context_config_map_name(task: &str) -> String {
    format!("{task}-task-context")
}

/// What a templateRef Task runs on.
#[derive(Debug, Clone)]
pub struct EphemeralServer {
    /// `<task>-pod`: `opencode serve` behind the front, as an Agent's server pod.
    pub pod: Pod,
    /// `<task>-task-context`, when the contexts have files.
    pub context_config_map: Option<ConfigMap>,
}

/// The server pod of `task` from `spec`: the template's spec with the Task's contexts
/// appended (see [`task_spec`]).
pub fn ephemeral_server(
    task: &Task,
    spec: &AgentSpec,
    settings: &BuildSettings,
) -> EphemeralServer {
    let task_name = task.metadata.name.as_deref().unwrap_or_default();
    let namespace = task.metadata.namespace.as_deref().unwrap_or_default();
    let workspace = workspace_dir(spec);
    let extra_ports = spec.extra_ports.clone().unwrap_or_default();
    let plugins = plan_plugins(spec.plugins.as_deref().unwrap_or_default());
    let contexts = plan_contexts(spec, task_name, namespace, &workspace, &plugins);
    let context_config_map = (!contexts.data.is_empty()).then(|| ConfigMap {
        metadata: task_child_meta(task, task_context_config_map_name(task_name)),
        data: Some(contexts.data.clone()),
        ..Default::default()
    });
    // The pod's own labels win over podSpec.labels: the controller finds the pod by them.
    let mut labels = spec
        .pod_spec
        .as_ref()
        .and_then(|p| p.labels.clone())
        .unwrap_or_default();
    labels.extend(task_labels(task_name));
    let template = pod_template(PodInputs {
        spec,
        settings,
        workspace: &workspace,
        port: server_port(spec),
        extra_ports: &extra_ports,
        contexts: &contexts,
        plugins: &plugins,
        refs: PodRefs {
            auth_secret: task_auth_secret_name(task_name),
            context_config_map: task_context_config_map_name(task_name),
            sessions_claim: None,
            workspace_claim: None,
        },
        labels: labels.clone(),
    });
    let mut meta = task_child_meta(task, task_pod_name(task_name));
    meta.labels = Some(labels);
    meta.annotations = template.metadata.and_then(|m| m.annotations);
    let mut pod_spec = template.spec.unwrap_or_default();
    pod_spec.restart_policy = Some("Never".to_string());
    EphemeralServer {
        pod: Pod {
            metadata: meta,
            spec: Some(pod_spec),
            ..Default::default()
        },
        context_config_map,
    }
}

/// Where the server of a pod built by [`ephemeral_server`] answers: the front's `http` port,
/// and the server's working directory (the sessions' directory).
pub fn ephemeral_endpoint(pod: &Pod) -> Option<(i32, String)> {
    let containers = &pod.spec.as_ref()?.containers;
    let port = containers
        .iter()
        .find(|c| c.name == FRONT_CONTAINER)?
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.name.as_deref() == Some("http"))?
        .container_port;
    let workspace = containers
        .iter()
        .find(|c| c.name == SERVER_CONTAINER)?
        .working_dir
        .clone()?;
    Some((port, workspace))
}

/// The spec a templateRef Task's server runs: the template's, with the Task's contexts after
/// the template's (later contexts win, as upstream documents).
pub fn task_spec(template: &AgentSpec, task: &Task) -> AgentSpec {
    let mut spec = template.clone();
    if let Some(extra) = task.spec.contexts.as_ref().filter(|c| !c.is_empty()) {
        spec.contexts
            .get_or_insert_with(Vec::new)
            .extend(extra.iter().cloned());
    }
    spec
}

/// Secret `<task>-task-auth` holding a templateRef Task's server password.
pub fn task_auth_secret(task: &Task, password: &str) -> Secret {
    let name = task_auth_secret_name(task.metadata.name.as_deref().unwrap_or_default());
    password_secret(task_child_meta(task, name), password)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TaskSpec;
    use crate::api::common::AgentTemplateReference;
    use crate::api::context::ContextItem;
    use crate::controller::pod::{TASK_LABEL, build, opencode_port};
    use serde_json::json;

    fn context(value: serde_json::Value) -> ContextItem {
        serde_json::from_value(value).expect("a context")
    }

    fn task() -> Task {
        let mut task = Task::new(
            "lint",
            TaskSpec {
                template_ref: Some(AgentTemplateReference {
                    name: "team-config".into(),
                }),
                description: Some("run the linters".into()),
                contexts: Some(vec![context(
                    json!({"type": "Text", "text": "use cargo clippy", "mountPath": "rules.md"}),
                )]),
                ..Default::default()
            },
        );
        task.metadata.namespace = Some("team".into());
        task.metadata.uid = Some("0123abcd-9999-4000-8000-000000000001".into());
        task
    }

    #[test]
    fn a_template_task_runs_the_agents_server_pod_with_its_own_names_and_nothing_kept() {
        let template = AgentSpec {
            workspace_dir: Some("/work".into()),
            contexts: Some(vec![context(json!({"type": "Text", "text": "be brief"}))]),
            ..Default::default()
        };
        let task = task();
        let spec = task_spec(&template, &task);
        assert_eq!(
            spec.contexts.as_ref().map(Vec::len),
            Some(2),
            "template's, then Task's"
        );
        let built = ephemeral_server(&task, &spec, &BuildSettings::default());
        let pod = &built.pod;
        assert_eq!(pod.metadata.name.as_deref(), Some("lint-pod"));
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(TASK_LABEL).map(String::as_str), Some("lint"));
        assert!(
            !labels.contains_key(crate::controller::pod::AGENT_LABEL),
            "no Agent may claim the pod: {labels:?}"
        );
        let owner = &pod.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Task", "lint"));
        let pod_spec = pod.spec.clone().unwrap_or_default();
        assert_eq!(pod_spec.restart_policy.as_deref(), Some("Never"));
        let names: Vec<&str> = pod_spec
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, [SERVER_CONTAINER, FRONT_CONTAINER]);
        let volumes = pod_spec.volumes.clone().unwrap_or_default();
        assert!(
            volumes.iter().all(|v| v.persistent_volume_claim.is_none()),
            "sessions and workspace go with the pod: {volumes:?}"
        );
        let secret_refs: Vec<String> = pod_spec
            .containers
            .iter()
            .flat_map(|c| c.env.iter().flatten())
            .filter_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(secret_refs, ["lint-task-auth", "lint-task-auth"]);
        let context = built
            .context_config_map
            .expect("the Text contexts are files");
        assert_eq!(context.metadata.name.as_deref(), Some("lint-task-context"));
        let files: String = context.data.unwrap_or_default().into_values().collect();
        assert!(
            files.contains("use cargo clippy") && files.contains("be brief"),
            "{files}"
        );
        // The very same server container as an Agent built from the template.
        let agent = crate::api::Agent::new("lint", spec.clone());
        let agent_pod = build(&agent, &spec, &BuildSettings::default())
            .deployment
            .spec
            .unwrap()
            .template;
        let server = |p: &k8s_openapi::api::core::v1::PodSpec| {
            p.containers
                .iter()
                .find(|c| c.name == SERVER_CONTAINER)
                .cloned()
        };
        let (ours, theirs) = (server(&pod_spec), server(&agent_pod.spec.unwrap()));
        assert_eq!(
            ours.as_ref().and_then(|c| c.command.clone()),
            theirs.as_ref().and_then(|c| c.command.clone())
        );
        assert_eq!(opencode_port(&spec), 4097);
        assert_eq!(ephemeral_endpoint(pod), Some((4096, "/work".to_string())));
        let secret = task_auth_secret(&task, "pw");
        assert_eq!(secret.metadata.name.as_deref(), Some("lint-task-auth"));
    }
}
