//! The custom resources of API group `kubeopencode.io`, version `v1alpha1`: Rust types that
//! read and write upstream KubeOpenCode's objects unchanged, and the CustomResourceDefinitions
//! generated from them (checked in under `deploy/crds/`, see `tests/crds.rs`).
//!
//! Use [`crds`] (not `Agent::crd()` and friends) to get installable CRDs: it finishes the
//! derived schemas so they match upstream's (e.g. `apiVersion`, `kind`, `metadata`
//! properties, no `nullable` markers).

pub mod agent;
pub mod agent_template;
pub mod common;
pub mod config;
pub mod context;
pub mod cron_task;
pub mod task;

mod k8s;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

pub use agent::{
    ATTACH_HEARTBEAT_ANNOTATION, ATTACH_HEARTBEAT_INTERVAL, Agent, AgentPhase, AgentSpec,
    AgentStatus,
};
pub use agent_template::{AgentTemplate, AgentTemplateSpec, AgentTemplateStatus};
pub use common::{AgentReference, AgentTemplateReference};
pub use config::{KubeOpenCodeConfig, KubeOpenCodeConfigSpec};
pub use context::{ContextItem, ContextType};
pub use cron_task::{CronTask, CronTaskSpec, CronTaskStatus};
pub use task::{Task, TaskPhase, TaskSpec, TaskStatus};

/// API group of all kinds.
pub const GROUP: &str = "kubeopencode.io";
/// API version of all kinds.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of all kinds.
pub const API_VERSION: &str = "kubeopencode.io/v1alpha1";

/// A CEL validation rule (`x-kubernetes-validations` entry) that the generated CRDs carry.
/// Kept as data so tests and client-side checks can refer to the same text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CelRule {
    /// The CEL expression; `self` is the object the rule is attached to.
    pub rule: &'static str,
    /// The message the apiserver returns when the rule fails.
    pub message: &'static str,
    /// Path of the field the error is reported on, relative to `self` (e.g. `.text`).
    pub field_path: Option<&'static str>,
    /// Machine-readable reason: FieldValueInvalid, FieldValueRequired, FieldValueForbidden.
    pub reason: Option<&'static str>,
}

impl CelRule {
    fn to_json(self) -> serde_json::Value {
        let mut rule = serde_json::Map::new();
        rule.insert("rule".into(), self.rule.into());
        rule.insert("message".into(), self.message.into());
        if let Some(path) = self.field_path {
            rule.insert("fieldPath".into(), path.into());
        }
        if let Some(reason) = self.reason {
            rule.insert("reason".into(), reason.into());
        }
        serde_json::Value::Object(rule)
    }
}

/// Appends CEL rules to a schema's `x-kubernetes-validations` (a schemars transform helper).
pub(crate) fn add_rules(schema: &mut schemars::Schema, rules: &[CelRule]) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let entry = object
        .entry("x-kubernetes-validations")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if let serde_json::Value::Array(list) = entry {
        list.extend(rules.iter().map(|r| r.to_json()));
    }
}

/// Error rendering a CRD as YAML.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The CRD could not be turned into a JSON value.
    #[error("rendering CustomResourceDefinition {name}: {source}")]
    Json {
        /// Name of the CRD.
        name: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The YAML serializer failed.
    #[error("rendering CustomResourceDefinition {name} as YAML: {source}")]
    Yaml {
        /// Name of the CRD.
        name: String,
        /// The serializer's error.
        #[source]
        source: serde_saphyr::SerializeError,
    },
}

/// The CustomResourceDefinitions of all kinds, ready to apply, in install order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        finish(Agent::crd()),
        finish(AgentTemplate::crd()),
        finish(Task::crd()),
        finish(CronTask::crd()),
        finish(KubeOpenCodeConfig::crd()),
    ]
}

/// File name of a CRD under `deploy/crds/`, as upstream names them:
/// `<group>_<plural>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// Header of every generated CRD file.
pub const CRD_FILE_HEADER: &str = "# Generated from src/api by kubeoc; do not edit.\n\
# Regenerate with: KUBEOC_UPDATE_CRDS=1 cargo test --test crds\n";

/// Renders one CRD as a YAML document (with a leading `---`). Whole numbers are written as
/// integers (`maximum: 65535`, not `65535.0`).
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, RenderError> {
    let name = || crd.metadata.name.clone().unwrap_or_default();
    let mut value = serde_json::to_value(crd).map_err(|source| RenderError::Json {
        name: name(),
        source,
    })?;
    integral_numbers(&mut value);
    let body = serde_saphyr::to_string(&value).map_err(|source| RenderError::Yaml {
        name: name(),
        source,
    })?;
    Ok(format!("---\n{body}"))
}

/// Rewrites floats without a fractional part (JSONSchemaProps keeps bounds as f64) as
/// integers.
fn integral_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(number) => {
            if let Some(float) = number.as_f64()
                && number.is_f64()
                && float.fract() == 0.0
                && float.abs() < 9.0e15
            {
                // In range and integral, so the cast is exact.
                *number = serde_json::Number::from(float as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// The files of `deploy/crds/`: file name and content, one per kind.
pub fn crd_files() -> Result<Vec<(String, String)>, RenderError> {
    crds()
        .iter()
        .map(|crd| {
            Ok((
                crd_file_name(crd),
                format!("{CRD_FILE_HEADER}{}", crd_yaml(crd)?),
            ))
        })
        .collect()
}

/// All CRDs as one multi-document YAML stream (for `install --dry-run -o yaml`).
pub fn crds_yaml() -> Result<String, RenderError> {
    crds().iter().map(crd_yaml).collect()
}

/// Finishes a derived CRD so its schema matches upstream's layout.
fn finish(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    crd.spec.names.list_kind = Some(format!("{}List", crd.spec.names.kind));
    for version in &mut crd.spec.versions {
        let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        tidy(schema);
        let properties = schema.properties.get_or_insert_with(Default::default);
        properties.insert(
            "apiVersion".into(),
            JSONSchemaProps {
                description: Some(API_VERSION_DESCRIPTION.into()),
                type_: Some("string".into()),
                ..Default::default()
            },
        );
        properties.insert(
            "kind".into(),
            JSONSchemaProps {
                description: Some(KIND_DESCRIPTION.into()),
                type_: Some("string".into()),
                ..Default::default()
            },
        );
        properties.insert(
            "metadata".into(),
            JSONSchemaProps {
                type_: Some("object".into()),
                ..Default::default()
            },
        );
    }
    crd
}

const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object.\nServers should convert recognized schemas to the latest internal value, and\nmay reject unrecognized values.\nMore info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";

const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents.\nServers may infer this from the endpoint the client submits requests to.\nCannot be updated.\nIn CamelCase.\nMore info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// Removes schemars artefacts upstream's controller-gen schemas don't have: `nullable` on
/// optional fields (upstream prunes nulls and applies defaults instead) and `title` (schemars
/// puts the Rust type name there). Also joins the hard-wrapped lines of our doc comments into
/// paragraphs, so `kubectl explain` can wrap them to the terminal width.
fn tidy(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    schema.title = None;
    if let Some(description) = schema.description.as_mut()
        && !is_upstream_description(description)
    {
        *description = paragraphs(description);
    }
    // kube's structural rewriter strips the types out of `anyOf` branches, which turns
    // upstream's int-or-string `anyOf: [{type: integer}, {type: string}]` into `[{}, {}]`.
    if schema.x_kubernetes_int_or_string == Some(true)
        && let Some(any_of) = schema.any_of.as_mut()
        && any_of.iter().all(|branch| branch.type_.is_none())
    {
        *any_of = ["integer", "string"]
            .into_iter()
            .map(|type_| JSONSchemaProps {
                type_: Some(type_.into()),
                ..Default::default()
            })
            .collect();
    }
    if let Some(properties) = schema.properties.as_mut() {
        properties.values_mut().for_each(tidy);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(items)) => tidy(items),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().for_each(tidy),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(additional)) = schema.additional_properties.as_mut() {
        tidy(additional);
    }
    for list in [&mut schema.any_of, &mut schema.all_of, &mut schema.one_of]
        .into_iter()
        .flatten()
    {
        list.iter_mut().for_each(tidy);
    }
}

/// A doc comment's text with its hard-wrapped lines joined: one line per paragraph, list item
/// or code line, so `kubectl explain` wraps the text to the terminal instead of breaking it
/// where the source did. Blank lines stay paragraph breaks; list items (`- `, `* `, `1. `)
/// start lines of their own and keep their indented continuations; indented lines after a
/// paragraph and fenced blocks are code and stay as they are.
pub fn paragraphs(text: &str) -> String {
    let mut out = String::new();
    let (mut in_item, mut in_fence, mut in_code) = (false, false, false);
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indented = trimmed.len() < line.len();
        if trimmed.is_empty() {
            while out.ends_with(' ') {
                out.pop();
            }
            if !out.is_empty() && !out.ends_with("\n\n") {
                out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
            }
            (in_item, in_code) = (false, false);
            continue;
        }
        let fence = trimmed.starts_with("```");
        let item = is_list_item(trimmed);
        let code = in_fence || fence || (indented && !in_item) || (in_code && indented);
        let new_line = out.is_empty() || out.ends_with('\n') || code || in_code || item;
        if new_line {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(if code { line } else { trimmed });
        } else {
            out.push(' ');
            out.push_str(trimmed);
        }
        if fence {
            in_fence = !in_fence;
        }
        in_code = code && !fence || (fence && in_fence);
        if item {
            in_item = true;
        }
    }
    out
}

/// Whether a schema description is upstream's text (embedded Kubernetes schemas, and the
/// standard apiVersion and kind texts), which the CRDs keep as upstream wrote it.
pub fn is_upstream_description(text: &str) -> bool {
    text == API_VERSION_DESCRIPTION
        || text == KIND_DESCRIPTION
        || k8s::upstream_descriptions().contains(text)
}

fn is_list_item(line: &str) -> bool {
    if line.starts_with("- ") || line.starts_with("* ") || line.starts_with("+ ") {
        return true;
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && (line[digits..].starts_with(". ") || line[digits..].starts_with(") "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_comments_become_one_line_per_paragraph_item_and_code_line() {
        assert_eq!(
            paragraphs(
                "Persistent volumes for session history and for the workspace, so both survive Pod\nrestarts. kubeoc always creates the sessions PVC."
            ),
            "Persistent volumes for session history and for the workspace, so both survive Pod restarts. kubeoc always creates the sessions PVC."
        );
        assert_eq!(
            paragraphs(
                "First paragraph\nwraps.\n\nSecond one:\n- an item\n  that wraps\n- another\n1. numbered\n\nDone."
            ),
            "First paragraph wraps.\n\nSecond one:\n- an item that wraps\n- another\n1. numbered\n\nDone."
        );
        assert_eq!(
            paragraphs(
                "Example:\n\n    kubectl kubeoc agent list\n    kubectl get agents\n\nAfter."
            ),
            "Example:\n\n    kubectl kubeoc agent list\n    kubectl get agents\n\nAfter."
        );
        assert_eq!(paragraphs("one line"), "one line");
    }

    #[test]
    fn crds_cover_all_kinds_with_list_kinds() {
        let names: Vec<_> = crds()
            .iter()
            .map(|c| {
                (
                    c.spec.names.kind.clone(),
                    c.spec.names.list_kind.clone().unwrap_or_default(),
                    c.spec.scope.clone(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("Agent", "AgentList", "Namespaced"),
                ("AgentTemplate", "AgentTemplateList", "Namespaced"),
                ("Task", "TaskList", "Namespaced"),
                ("CronTask", "CronTaskList", "Namespaced"),
                ("KubeOpenCodeConfig", "KubeOpenCodeConfigList", "Cluster"),
            ]
            .map(|(k, l, s)| (k.to_string(), l.to_string(), s.to_string()))
        );
    }

    #[test]
    fn int_or_string_keeps_its_typed_any_of() {
        let crd = serde_json::to_value(&crds()[0]).expect("CRD to JSON");
        let limits = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["podSpec"]["properties"]["resources"]["properties"]["limits"]["additionalProperties"];
        assert_eq!(limits["x-kubernetes-int-or-string"], true);
        assert_eq!(
            limits["anyOf"],
            serde_json::json!([{"type": "integer"}, {"type": "string"}])
        );
        assert!(limits["pattern"].is_string());
    }

    #[test]
    fn whole_numbers_render_as_integers() {
        let mut value = serde_json::json!({"maximum": 65535.0, "ratio": 0.5, "list": [1.0]});
        integral_numbers(&mut value);
        assert_eq!(
            value.to_string(),
            r#"{"list":[1],"maximum":65535,"ratio":0.5}"#
        );
    }

    #[test]
    fn empty_objects_serialize_without_added_fields() {
        let agent = Agent::new("a", AgentSpec::default());
        assert_eq!(
            serde_json::to_value(&agent).expect("serialize"),
            serde_json::json!({
                "apiVersion": API_VERSION,
                "kind": "Agent",
                "metadata": {"name": "a"},
                "spec": {}
            })
        );
        let rule = CelRule {
            rule: "has(self.x)",
            message: "x is required",
            field_path: Some(".x"),
            reason: None,
        };
        assert_eq!(
            rule.to_json(),
            serde_json::json!({"rule": "has(self.x)", "message": "x is required", "fieldPath": ".x"})
        );
    }
}
