//! Schemas of the Kubernetes core types embedded in our specs (Volume, EnvVar, Affinity, ...).
//!
//! The Rust fields use k8s-openapi's types, but k8s-openapi's schemars output differs from
//! what upstream's controller-gen emits for the same Go types: it lacks the
//! `x-kubernetes-list-type`/`x-kubernetes-map-type` markers (which decide server-side apply
//! merging), the `anyOf: [integer, string]` and pattern of quantities and int-or-strings, the
//! defaults (`name: ""`, `fsType: ext4`, ...), marks "effectively required" fields such as
//! `LocalObjectReference.name` as required where upstream does not, and expands embedded
//! `ObjectMeta`. So these fields use upstream's exact schemas instead: the JSON files in
//! `k8s_schemas/` are the subtrees of upstream KubeOpenCode v0.1.7's CRDs (generated from
//! k8s.io/api 0.35; `tests/crds.rs` checks they still equal upstream's). They are a superset
//! of the v1.34 Rust types (e.g. `podCertificate.userAnnotations` is 1.35-only and is dropped
//! when such an object is read into the Rust types).

use schemars::{Schema, SchemaGenerator, json_schema};

const AFFINITY: &str = include_str!("k8s_schemas/affinity.json");
const ENV_VAR: &str = include_str!("k8s_schemas/env_var.json");
const LIFECYCLE: &str = include_str!("k8s_schemas/lifecycle.json");
const LOCAL_OBJECT_REFERENCE: &str = include_str!("k8s_schemas/local_object_reference.json");
const OBJECT_REFERENCE: &str = include_str!("k8s_schemas/object_reference.json");
const POD_SECURITY_CONTEXT: &str = include_str!("k8s_schemas/pod_security_context.json");
const RESOURCE_REQUIREMENTS: &str = include_str!("k8s_schemas/resource_requirements.json");
const SECRET_KEY_SELECTOR: &str = include_str!("k8s_schemas/secret_key_selector.json");
const SECURITY_CONTEXT: &str = include_str!("k8s_schemas/security_context.json");
const TOLERATION: &str = include_str!("k8s_schemas/toleration.json");
const VOLUME: &str = include_str!("k8s_schemas/volume.json");
const VOLUME_MOUNT: &str = include_str!("k8s_schemas/volume_mount.json");

/// Parses an embedded schema. The files are compiled in and checked by the unit test below,
/// so a parse failure is a build defect, not something users or the cluster can cause.
fn fragment(name: &str, json: &str) -> Schema {
    serde_json::from_str(json)
        .unwrap_or_else(|err| panic!("embedded schema k8s_schemas/{name}.json is invalid: {err}"))
}

/// Every description in the embedded upstream schemas (and in controller-gen's Condition): their text stays as upstream wrote it
/// (our own doc comments are reflowed into paragraphs when the CRDs are generated).
pub(crate) fn upstream_descriptions() -> &'static std::collections::HashSet<String> {
    static DESCRIPTIONS: std::sync::OnceLock<std::collections::HashSet<String>> =
        std::sync::OnceLock::new();
    DESCRIPTIONS.get_or_init(|| {
        fn collect(value: &serde_json::Value, into: &mut std::collections::HashSet<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::String(d)) = map.get("description") {
                        into.insert(d.clone());
                    }
                    map.values().for_each(|v| collect(v, into));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, into)),
                _ => {}
            }
        }
        let mut descriptions = std::collections::HashSet::new();
        for json in [
            AFFINITY,
            ENV_VAR,
            LIFECYCLE,
            LOCAL_OBJECT_REFERENCE,
            OBJECT_REFERENCE,
            POD_SECURITY_CONTEXT,
            RESOURCE_REQUIREMENTS,
            SECRET_KEY_SELECTOR,
            SECURITY_CONTEXT,
            TOLERATION,
            VOLUME,
            VOLUME_MOUNT,
        ] {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(json) {
                collect(&value, &mut descriptions);
            }
        }
        let conditions = super::common::conditions_schema(&mut SchemaGenerator::default());
        collect(conditions.as_value(), &mut descriptions);
        descriptions
    })
}

fn array_of(name: &str, json: &str) -> Schema {
    let items = fragment(name, json);
    json_schema!({ "type": "array", "items": items })
}

/// `[]corev1.LocalObjectReference` (imagePullSecrets).
pub(crate) fn local_object_references(_: &mut SchemaGenerator) -> Schema {
    array_of("local_object_reference", LOCAL_OBJECT_REFERENCE)
}

/// `[]corev1.ObjectReference`.
pub(crate) fn object_references(_: &mut SchemaGenerator) -> Schema {
    array_of("object_reference", OBJECT_REFERENCE)
}

/// `[]corev1.Volume`.
pub(crate) fn volumes(_: &mut SchemaGenerator) -> Schema {
    array_of("volume", VOLUME)
}

/// `[]corev1.VolumeMount`.
pub(crate) fn volume_mounts(_: &mut SchemaGenerator) -> Schema {
    array_of("volume_mount", VOLUME_MOUNT)
}

/// `[]corev1.EnvVar`.
pub(crate) fn env_vars(_: &mut SchemaGenerator) -> Schema {
    array_of("env_var", ENV_VAR)
}

/// `[]corev1.Toleration`.
pub(crate) fn tolerations(_: &mut SchemaGenerator) -> Schema {
    array_of("toleration", TOLERATION)
}

/// `corev1.ResourceRequirements`.
pub(crate) fn resource_requirements(_: &mut SchemaGenerator) -> Schema {
    fragment("resource_requirements", RESOURCE_REQUIREMENTS)
}

/// `corev1.SecurityContext`.
pub(crate) fn security_context(_: &mut SchemaGenerator) -> Schema {
    fragment("security_context", SECURITY_CONTEXT)
}

/// `corev1.PodSecurityContext`.
pub(crate) fn pod_security_context(_: &mut SchemaGenerator) -> Schema {
    fragment("pod_security_context", POD_SECURITY_CONTEXT)
}

/// `corev1.Lifecycle`.
pub(crate) fn lifecycle(_: &mut SchemaGenerator) -> Schema {
    fragment("lifecycle", LIFECYCLE)
}

/// `corev1.Affinity`.
pub(crate) fn affinity(_: &mut SchemaGenerator) -> Schema {
    fragment("affinity", AFFINITY)
}

/// `corev1.SecretKeySelector`.
pub(crate) fn secret_key_selector(_: &mut SchemaGenerator) -> Schema {
    fragment("secret_key_selector", SECRET_KEY_SELECTOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAGMENTS: &[(&str, &str)] = &[
        ("affinity", AFFINITY),
        ("env_var", ENV_VAR),
        ("lifecycle", LIFECYCLE),
        ("local_object_reference", LOCAL_OBJECT_REFERENCE),
        ("object_reference", OBJECT_REFERENCE),
        ("pod_security_context", POD_SECURITY_CONTEXT),
        ("resource_requirements", RESOURCE_REQUIREMENTS),
        ("secret_key_selector", SECRET_KEY_SELECTOR),
        ("security_context", SECURITY_CONTEXT),
        ("toleration", TOLERATION),
        ("volume", VOLUME),
        ("volume_mount", VOLUME_MOUNT),
    ];

    #[test]
    fn embedded_schemas_parse_as_typed_objects() {
        for (name, json) in FRAGMENTS {
            let schema = fragment(name, json);
            let object = schema.as_object().expect("schema is an object");
            assert_eq!(
                object.get("type").and_then(|t| t.as_str()),
                Some("object"),
                "{name}: top-level type"
            );
            assert!(object.contains_key("properties"), "{name}: has properties");
            assert!(!json.contains("$ref"), "{name}: no $ref");
        }
    }
}
