//! The prompt an agentRef Task sends: its description, then its own contexts inlined in the
//! same `<context>` tags the Agent's context file uses (upstream drops a Task's contexts on a
//! live Agent). The server's disk belongs to the server pod, so a context with a mountPath is
//! inlined too, with the path it asked for; Git and URL contexts would need fetching on the
//! server and are refused with the way out.

use std::collections::BTreeMap;

use crate::api::context::{ContextItem, ContextType};
use crate::controller::pod::{context_header, context_label, runtime_text};

/// A Task's context after the controller read what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Text, Runtime: nothing to read.
    Inline,
    /// A ConfigMap's data (only the named key when the context has one); `None` when an
    /// optional ConfigMap or key is missing.
    ConfigMap(Option<BTreeMap<String, String>>),
}

/// Why a Task's contexts cannot be sent to a live Agent.
pub fn unsupported(contexts: &[ContextItem]) -> Option<String> {
    let refused: Vec<String> = contexts
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c.type_, ContextType::Git | ContextType::Url))
        .map(|(i, c)| context_label(c, i))
        .collect();
    (!refused.is_empty()).then(|| {
        format!(
            "Git and URL contexts of a Task on a live Agent (agentRef) are not fetched: {}; add them to the Agent's contexts, or run the Task from an AgentTemplate (templateRef)",
            refused.join(", ")
        )
    })
}

/// The description with the contexts appended, each in its tags.
pub struct PromptInputs<'a> {
    pub description: &'a str,
    pub contexts: &'a [ContextItem],
    /// One per context, in order.
    pub resolved: &'a [Resolved],
    pub agent: &'a str,
    pub namespace: &'a str,
    pub workspace: &'a str,
}

/// The prompt text of an agentRef Task.
pub fn compose(input: &PromptInputs<'_>) -> String {
    let mut prompt = input.description.trim_end().to_string();
    for (i, (item, resolved)) in input.contexts.iter().zip(input.resolved).enumerate() {
        let label = context_label(item, i);
        let body = match (item.type_, resolved) {
            (ContextType::Text, _) => item.text.clone().unwrap_or_default(),
            (ContextType::Runtime, _) => {
                runtime_text(input.agent, input.namespace, input.workspace)
            }
            (ContextType::ConfigMap, Resolved::ConfigMap(Some(data))) => {
                if data.len() == 1 && item.config_map.as_ref().is_some_and(|c| c.key.is_some()) {
                    data.values().next().cloned().unwrap_or_default()
                } else {
                    data.iter()
                        .map(|(key, value)| format!("--- {key} ---\n{value}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            }
            _ => continue,
        };
        let mut header = context_header(&label, input.namespace, item.type_);
        if let Some(path) = item.mount_path.as_deref().filter(|p| !p.is_empty()) {
            header.push_str(&format!("\n(meant for the file {path})"));
        }
        prompt.push_str(&format!("\n\n{header}\n{}\n</context>", body.trim_end()));
    }
    prompt
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::context::ConfigMapContext;

    fn item(type_: ContextType) -> ContextItem {
        ContextItem {
            name: None,
            description: None,
            type_,
            mount_path: None,
            file_mode: None,
            text: None,
            config_map: None,
            git: None,
            runtime: None,
            url: None,
        }
    }

    fn text(name: &str, body: &str, mount: Option<&str>) -> ContextItem {
        ContextItem {
            name: Some(name.into()),
            text: Some(body.into()),
            mount_path: mount.map(str::to_string),
            ..item(ContextType::Text)
        }
    }

    #[test]
    fn contexts_follow_the_description_in_their_tags() {
        let contexts = vec![
            text("style", "Use Rust 2024.\n", None),
            text("notes", "a file", Some("docs/notes.md")),
            ContextItem {
                config_map: Some(ConfigMapContext {
                    name: "env".into(),
                    key: None,
                    optional: Some(true),
                }),
                ..item(ContextType::ConfigMap)
            },
            ContextItem {
                config_map: Some(ConfigMapContext {
                    name: "gone".into(),
                    key: None,
                    optional: Some(true),
                }),
                ..item(ContextType::ConfigMap)
            },
        ];
        let resolved = vec![
            Resolved::Inline,
            Resolved::Inline,
            Resolved::ConfigMap(Some(BTreeMap::from([
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "2".to_string()),
            ]))),
            Resolved::ConfigMap(None),
        ];
        let prompt = compose(&PromptInputs {
            description: "Fix the test.\n",
            contexts: &contexts,
            resolved: &resolved,
            agent: "a",
            namespace: "dev",
            workspace: "/workspace",
        });
        assert_eq!(
            prompt,
            "Fix the test.\n\n\
             <context name=\"style\" namespace=\"dev\" type=\"Text\">\nUse Rust 2024.\n</context>\n\n\
             <context name=\"notes\" namespace=\"dev\" type=\"Text\">\n(meant for the file docs/notes.md)\na file\n</context>\n\n\
             <context name=\"configmap-2\" namespace=\"dev\" type=\"ConfigMap\">\n--- a ---\n1\n--- b ---\n2\n</context>"
        );
    }

    #[test]
    fn git_and_url_contexts_are_refused_with_the_way_out() {
        let git = ContextItem {
            name: Some("repo".into()),
            ..item(ContextType::Git)
        };
        let message = unsupported(&[text("t", "x", None), git]).expect("refused");
        assert!(
            message.contains("repo") && message.contains("templateRef"),
            "{message}"
        );
        assert_eq!(unsupported(&[text("t", "x", None)]), None);
    }
}
