//! The effective spec: an Agent merged with its AgentTemplate, and the cluster's proxy for an
//! Agent that sets none.

use crate::api::{AgentSpec, AgentTemplateSpec, KubeOpenCodeConfigSpec};

/// The Agent's spec merged with its AgentTemplate, as upstream merges them: a scalar set on the
/// Agent (non-empty string, any other value) wins, else the template's; lists (contexts,
/// credentials, skills, plugins, imagePullSecrets, extraPorts, command) and the objects
/// (config, podSpec, quota, caBundle, proxy) are taken whole from the Agent when set, else from
/// the template. port, persistence, suspend, standby, share and profile are the Agent's only.
/// Image defaults are not filled in here ([`build`] does that).
///
/// [`build`]: super::build
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

/// The cluster-wide proxy of KubeOpenCodeConfig for an Agent whose spec (after the template
/// merge) sets none: the Agent's own proxy always wins.
pub fn with_cluster_proxy(mut spec: AgentSpec, config: &KubeOpenCodeConfigSpec) -> AgentSpec {
    if spec.proxy.is_none() {
        spec.proxy = config.proxy.clone();
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AgentTemplate;
    use crate::controller::pod::test_support::agent_yaml;
    use crate::controller::pod::{BuildSettings, build};

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
}
