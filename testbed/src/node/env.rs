//! Container environment resolution, as the kubelet does it (pure): image env, `envFrom`,
//! `env` with `$(VAR)` references, values from Secrets, ConfigMaps and the pod's own fields.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Container, EnvVar};

/// The pod's own facts that `fieldRef` can read.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub node_name: String,
    pub service_account: String,
    pub pod_ip: String,
    pub host_ip: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Secrets and ConfigMaps of the pod's namespace, fetched before resolution. `None` entries
/// were looked up and do not exist.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub secrets: HashMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    pub config_maps: HashMap<String, Option<BTreeMap<String, String>>>,
}

/// Names of the Secrets and ConfigMaps a container's env refers to.
pub fn referenced_objects(container: &Container) -> (Vec<String>, Vec<String>) {
    let mut secrets = Vec::new();
    let mut config_maps = Vec::new();
    for from in container.env_from.iter().flatten() {
        if let Some(s) = &from.secret_ref {
            secrets.push(s.name.clone());
        }
        if let Some(c) = &from.config_map_ref {
            config_maps.push(c.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let Some(source) = &var.value_from else {
            continue;
        };
        if let Some(s) = &source.secret_key_ref {
            secrets.push(s.name.clone());
        }
        if let Some(c) = &source.config_map_key_ref {
            config_maps.push(c.name.clone());
        }
    }
    secrets.sort();
    secrets.dedup();
    config_maps.sort();
    config_maps.dedup();
    (secrets, config_maps)
}

/// Expands `$(NAME)` references from `vars`; `$$` escapes a `$`; unknown references stay as
/// written (the kubelet's rules).
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

pub(crate) fn field_value(path: &str, pod: &PodFacts) -> Result<String, String> {
    let from_map = |prefix: &str, map: &BTreeMap<String, String>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.get(key).cloned().unwrap_or_default())
    };
    Ok(match path {
        "metadata.name" => pod.name.clone(),
        "metadata.namespace" => pod.namespace.clone(),
        "metadata.uid" => pod.uid.clone(),
        "spec.nodeName" => pod.node_name.clone(),
        "spec.serviceAccountName" => pod.service_account.clone(),
        "status.podIP" | "status.podIPs" => pod.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => pod.host_ip.clone(),
        _ => from_map("metadata.labels['", &pod.labels)
            .or_else(|| from_map("metadata.annotations['", &pod.annotations))
            .ok_or_else(|| format!("unsupported fieldRef fieldPath {path:?}"))?,
    })
}

/// The two kinds of object env can read keys from; the kubelet names them differently in
/// its messages ("secret" / "Secret").
#[derive(Debug, Clone, Copy)]
enum Store {
    Secret,
    ConfigMap,
}

impl Objects {
    /// The object's keys as text, `None` when it does not exist.
    fn data(&self, store: Store, name: &str) -> Option<BTreeMap<String, String>> {
        match store {
            Store::Secret => self.secrets.get(name)?.as_ref().map(|d| {
                d.iter()
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                    .collect()
            }),
            Store::ConfigMap => self.config_maps.get(name)?.clone(),
        }
    }
}

fn not_found(store: Store, name: &str) -> String {
    match store {
        Store::Secret => format!("secret {name:?} not found"),
        Store::ConfigMap => format!("configmap {name:?} not found"),
    }
}

/// One key of a Secret or ConfigMap, with the kubelet's messages when it is missing.
fn key_value(
    objects: &Objects,
    store: Store,
    ns: &str,
    name: &str,
    key: &str,
    optional: bool,
) -> Result<Option<String>, String> {
    let Some(data) = objects.data(store, name) else {
        return if optional {
            Ok(None)
        } else {
            Err(not_found(store, name))
        };
    };
    match data.get(key) {
        Some(value) => Ok(Some(value.clone())),
        None if optional => Ok(None),
        None => Err(format!("couldn't find key {key} in {store:?} {ns}/{name}")),
    }
}

fn env_var_value(
    var: &EnvVar,
    pod: &PodFacts,
    objects: &Objects,
    vars: &HashMap<String, String>,
) -> Result<Option<String>, String> {
    let Some(source) = &var.value_from else {
        return Ok(Some(expand(var.value.as_deref().unwrap_or_default(), vars)));
    };
    let ns = &pod.namespace;
    if let Some(r) = &source.secret_key_ref {
        return key_value(
            objects,
            Store::Secret,
            ns,
            &r.name,
            &r.key,
            r.optional.unwrap_or(false),
        );
    }
    if let Some(r) = &source.config_map_key_ref {
        return key_value(
            objects,
            Store::ConfigMap,
            ns,
            &r.name,
            &r.key,
            r.optional.unwrap_or(false),
        );
    }
    if let Some(r) = &source.field_ref {
        return field_value(&r.field_path, pod).map(Some);
    }
    Err(format!(
        "env {:?}: this valueFrom source is not supported by the testbed node",
        var.name
    ))
}

/// The container's environment in order, later entries overriding earlier ones. The error is
/// the kubelet's message for `CreateContainerConfigError`.
pub fn resolve(
    container: &Container,
    pod: &PodFacts,
    objects: &Objects,
    image_env: &[(String, String)],
) -> Result<Vec<(String, String)>, String> {
    let mut order: Vec<String> = Vec::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut set = |name: String, value: String, vars: &mut HashMap<String, String>| {
        if vars.insert(name.clone(), value).is_none() {
            order.push(name);
        }
    };
    for (name, value) in image_env {
        set(name.clone(), value.clone(), &mut vars);
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let reference = match (&from.secret_ref, &from.config_map_ref) {
            (Some(r), _) => Some((Store::Secret, &r.name, r.optional)),
            (None, Some(r)) => Some((Store::ConfigMap, &r.name, r.optional)),
            (None, None) => None,
        };
        let Some((store, name, optional)) = reference else {
            continue;
        };
        let entries = match objects.data(store, name) {
            Some(data) => data,
            None if optional.unwrap_or(false) => BTreeMap::new(),
            None => return Err(not_found(store, name)),
        };
        for (key, value) in entries {
            set(format!("{prefix}{key}"), value, &mut vars);
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = env_var_value(var, pod, objects, &vars)? {
            set(var.name.clone(), value, &mut vars);
        }
    }
    Ok(order
        .into_iter()
        .map(|name| {
            let value = vars.remove(&name).unwrap_or_default();
            (name, value)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).expect("valid container")
    }

    fn pod() -> PodFacts {
        PodFacts {
            name: "web-0".into(),
            namespace: "team".into(),
            uid: "u-1".into(),
            pod_ip: "10.244.0.9".into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            ..PodFacts::default()
        }
    }

    fn objects() -> Objects {
        let mut o = Objects::default();
        o.secrets.insert(
            "creds".into(),
            Some([("token".to_string(), b"s3cret".to_vec())].into()),
        );
        o.secrets.insert("gone".into(), None);
        o.config_maps.insert(
            "settings".into(),
            Some([("mode".to_string(), "fast".to_string())].into()),
        );
        o
    }

    #[test]
    fn expands_references_escapes_and_keeps_unknowns() {
        let vars: HashMap<String, String> = [("A".to_string(), "x".to_string())].into();
        assert_eq!(expand("$(A)/$(B)/$$(A)/$", &vars), "x/$(B)/$(A)/$");
        assert_eq!(expand("no refs", &vars), "no refs");
        assert_eq!(expand("$(unterminated", &vars), "$(unterminated");
    }

    #[test]
    fn resolves_every_source_in_order() {
        let c = container(json!({
            "name": "main",
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
            "env": [
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "URL", "value": "http://$(IP):80/$(POD)"},
                {"name": "PATH", "value": "/tools:$(PATH)"}
            ]
        }));
        let image_env = vec![("PATH".to_string(), "/usr/bin".to_string())];
        let env = resolve(&c, &pod(), &objects(), &image_env).expect("resolves");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CFG_mode"), Some("fast"));
        assert_eq!(get("TOKEN"), Some("s3cret"));
        assert_eq!(get("MODE"), Some("fast"));
        assert_eq!(get("POD"), Some("web-0"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("URL"), Some("http://10.244.0.9:80/web-0"));
        assert_eq!(get("PATH"), Some("/tools:/usr/bin"));
        assert_eq!(
            env[0].0, "PATH",
            "the image's variable keeps its place when overridden"
        );
    }

    #[test]
    fn missing_secret_or_key_fails_like_the_kubelet_unless_optional() {
        let missing = container(json!({"name": "m", "env": [
            {"name": "T", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "token"}}}]}));
        assert_eq!(
            resolve(&missing, &pod(), &objects(), &[]),
            Err("secret \"gone\" not found".into())
        );
        let no_key = container(json!({"name": "m", "env": [
            {"name": "T", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope"}}}]}));
        assert_eq!(
            resolve(&no_key, &pod(), &objects(), &[]),
            Err("couldn't find key nope in Secret team/creds".into())
        );
        let optional = container(json!({"name": "m", "env": [
            {"name": "T", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}}],
            "envFrom": [{"secretRef": {"name": "gone", "optional": true}}]}));
        assert_eq!(resolve(&optional, &pod(), &objects(), &[]), Ok(vec![]));
        let cm = container(json!({"name": "m", "envFrom": [{"configMapRef": {"name": "absent"}}]}));
        assert!(resolve(&cm, &pod(), &objects(), &[]).is_err());
    }

    #[test]
    fn lists_referenced_objects_once() {
        let c = container(json!({"name": "m",
            "envFrom": [{"secretRef": {"name": "a"}}],
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "a", "key": "k"}}},
                    {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]}));
        assert_eq!(
            referenced_objects(&c),
            (vec!["a".to_string()], vec!["c".to_string()])
        );
    }
}
