//! spec.contexts, spec.skills and spec.config: the files context-init puts into place
//! (context files, `.kubeopencode/context.md`, opencode.json, tui.json) and the context
//! ConfigMap that carries them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, EnvVar, KeyToPath, Volume, VolumeMount};

use super::env::env_secret;
use super::git::{GitRepo, ref_or_head, sync_interval};
use super::paths::{config_map_key, is_under, parent_dir, resolve_path, sh_quote};
use super::plugins::PluginPlan;
use super::volumes::{mount, read_only};
use super::{
    CONTEXT_FILE_REL_PATH, CONTEXT_FILES_MOUNT, EXTERNAL_MOUNT, OPENCODE_CONFIG_PATH,
    OPENCODE_TUI_CONFIG_PATH, TOOLS_MOUNT_PATH,
};
use crate::api::AgentSpec;
use crate::api::context::{ConfigMapContext, ContextType, GitSyncPolicy, UrlContext};

const SKILLS_BASE: &str = "/skills";
/// Seconds a URL context may take to download (upstream's default).
const DEFAULT_URL_TIMEOUT: i32 = 30;
const DEFAULT_CONTEXT_FILE_MODE: i32 = 0o644;

/// What the contexts, skills and config turn into.
#[derive(Debug, Default)]
pub(super) struct ContextPlan {
    /// Data of the `<a>-server-context` ConfigMap.
    pub(super) data: BTreeMap<String, String>,
    /// Lines of the context-init script (empty: no context-init container).
    pub(super) script: Vec<String>,
    /// Volumes of the user's ConfigMaps (`dir-mount-<i>`), mounted in context-init only.
    pub(super) config_map_volumes: Vec<Volume>,
    pub(super) config_map_mounts: Vec<VolumeMount>,
    /// Files and directories outside the workspace and /tools: (subPath on the `ctx-files`
    /// emptyDir where context-init writes them, target path the server mounts it at).
    pub(super) external: Vec<(String, String)>,
    /// Whether context-init writes into /tools (opencode.json, files placed there).
    pub(super) writes_tools: bool,
    pub(super) git: Vec<GitRepo>,
    /// Whether opencode.json is written (OPENCODE_CONFIG).
    pub(super) config_file: bool,
    /// Whether tui.json is written (OPENCODE_TUI_CONFIG).
    pub(super) tui_config_file: bool,
    /// Environment of context-init: URL contexts' credentials from their Secrets.
    pub(super) env: Vec<EnvVar>,
    /// Number of URL contexts.
    urls: usize,
}

/// A file context-init puts into place.
struct ContextFile {
    source: FileSource,
    target: String,
    mode: i32,
}

enum FileSource {
    /// A file on a mounted ConfigMap; `optional`: skipped when missing.
    Copy { path: String, optional: bool },
    /// A URL context fetched when the Pod starts.
    Fetch(UrlFetch),
}

/// One piece of `.kubeopencode/context.md`.
enum Part {
    /// Content known now (Text, Runtime), stored in the context ConfigMap.
    Static(String),
    /// A ConfigMap read when the Pod starts: one key, or every key.
    ConfigMap {
        header: String,
        dir: String,
        key: Option<String>,
    },
    /// A URL fetched when the Pod starts.
    Url { header: String, fetch: UrlFetch },
}

/// Secret keys of a URL context's credentials and the env var suffixes they become.
const URL_SECRET_KEYS: [(&str, &str); 3] = [
    ("TOKEN", "token"),
    ("USERNAME", "username"),
    ("PASSWORD", "password"),
];

/// `fetch_url LABEL URL OUT TIMEOUT INSECURE AUTH [HEADER...]` for context-init: curl when the
/// image has it (headers, credentials included, go through stdin, not the command line), else
/// wget (busybox's in the default alpine/git image) for contexts without credentials: wget
/// takes headers only as arguments, which anyone on the node can read in the process list, so
/// a context with a secretRef refuses to run without curl. OUT `-` is standard output; the URL
/// in messages has any user:password part masked.
const FETCH_URL_FUNCTION: &str = r#"fetch_url() {
  label=$1 url=$2 out=$3 timeout=$4 insecure=$5 auth=$6
  shift 6
  if [ -n "$auth" ]; then set -- "$@" "Authorization: $auth"; fi
  if command -v curl >/dev/null 2>&1; then
    for h in "$@"; do printf '%s\n' "$h"; done | curl -fsSL --max-time "$timeout" ${insecure:+--insecure} ${CUSTOM_CA_CERT_PATH:+--cacert "$CUSTOM_CA_CERT_PATH"} -H @- -o "$out" "$url" && return 0
  else
    if [ -n "$auth" ]; then
      echo "context $label: its credentials need curl, which this image lacks (wget would show them in the process list): set a system image with curl in KubeOpenCodeConfig systemImage" >&2
      return 1
    fi
    n=$#
    for h in "$@"; do set -- "$@" --header "$h"; done
    shift "$n"
    wget -q -T "$timeout" ${insecure:+--no-check-certificate} "$@" -O "$out" "$url" && return 0
  fi
  echo "context $label: could not fetch $(printf '%s' "$url" | sed 's#://[^/@]*@#://***@#')" >&2
  return 1
}"#;

/// One URL context: fetched by context-init each time the Pod starts.
#[derive(Debug, Clone)]
struct UrlFetch {
    index: usize,
    label: String,
    url: UrlContext,
}

impl UrlFetch {
    /// The shell line that fetches it into `out` (already quoted, or `-`).
    fn command(&self, out: &str) -> String {
        let url = &self.url;
        let has_secret = url.secret_ref.is_some();
        let timeout = url
            .timeout
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_URL_TIMEOUT);
        let insecure = if url.insecure_skip_tls_verify == Some(true) {
            "1"
        } else {
            ""
        };
        // The Secret's credentials win over an Authorization header (as upstream).
        let headers: Vec<String> = url
            .headers
            .iter()
            .flatten()
            .filter(|(name, _)| !(has_secret && name.eq_ignore_ascii_case("authorization")))
            .map(|(name, value)| sh_quote(&format!("{name}: {value}")))
            .collect();
        let mut line = String::new();
        let auth = if has_secret {
            let i = self.index;
            line.push_str(&format!(
                "auth=; if [ -n \"${{URL_{i}_TOKEN:-}}\" ]; then auth=\"Bearer $URL_{i}_TOKEN\"; elif [ -n \"${{URL_{i}_USERNAME:-}}\" ]; then auth=\"Basic $(printf '%s:%s' \"$URL_{i}_USERNAME\" \"${{URL_{i}_PASSWORD:-}}\" | base64 | tr -d '\\n')\"; fi; "
            ));
            "\"$auth\""
        } else {
            "''"
        };
        line.push_str(&format!(
            "fetch_url {} {} {out} {timeout} {} {auth}",
            sh_quote(&self.label),
            sh_quote(&url.source),
            sh_quote(insecure),
        ));
        for header in headers {
            line.push(' ');
            line.push_str(&header);
        }
        line
    }
}

pub(super) fn plan_contexts(
    spec: &AgentSpec,
    agent: &str,
    namespace: &str,
    workspace: &str,
    plugins: &PluginPlan,
) -> ContextPlan {
    let mut plan = ContextPlan::default();
    let mut parts = Vec::new();
    let mut files: Vec<ContextFile> = Vec::new();
    let mut dirs: Vec<(String, String)> = Vec::new(); // (source dir, target dir)

    for (i, item) in spec.contexts.iter().flatten().enumerate() {
        let label = context_label(item, i);
        let header = context_header(&label, namespace, item.type_);
        let target = item
            .mount_path
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(|p| resolve_path(p, workspace));
        let mode = item.file_mode.unwrap_or(DEFAULT_CONTEXT_FILE_MODE);
        match item.type_ {
            ContextType::Text => {
                let text = item.text.clone().unwrap_or_default();
                match target {
                    Some(path) => {
                        let key = insert_unique(&mut plan.data, config_map_key(&path), text);
                        files.push(ContextFile {
                            source: FileSource::Copy {
                                path: format!("{CONTEXT_FILES_MOUNT}/{key}"),
                                optional: false,
                            },
                            target: path,
                            mode,
                        });
                    }
                    None => parts.push(Part::Static(format!("{header}\n{text}\n</context>"))),
                }
            }
            ContextType::Runtime => parts.push(Part::Static(format!(
                "{header}\n{}\n</context>",
                runtime_text(agent, namespace, workspace)
            ))),
            ContextType::ConfigMap => {
                let Some(source) = &item.config_map else {
                    continue;
                };
                let dir = user_config_map(&mut plan, source);
                let key = source.key.clone().filter(|k| !k.is_empty());
                match (target, key) {
                    (Some(path), Some(key)) => files.push(ContextFile {
                        source: FileSource::Copy {
                            path: format!("{dir}/{key}"),
                            optional: source.optional == Some(true),
                        },
                        target: path,
                        mode,
                    }),
                    (Some(path), None) => dirs.push((dir, path)),
                    (None, key) => parts.push(Part::ConfigMap { header, dir, key }),
                }
            }
            ContextType::Git => {
                let (Some(git), Some(mount_path)) = (&item.git, target) else {
                    continue;
                };
                let sync = git.sync.as_ref().filter(|s| {
                    s.enabled == Some(true)
                        && s.policy.unwrap_or(GitSyncPolicy::HotReload) == GitSyncPolicy::HotReload
                });
                plan.git.push(GitRepo {
                    repository: git.repository.clone(),
                    git_ref: ref_or_head(&git.ref_),
                    depth: git.depth.unwrap_or(1).max(0),
                    recurse_submodules: git.recurse_submodules == Some(true),
                    path: repo_sub_path(git.path.as_deref()),
                    mount_path,
                    names: Vec::new(),
                    secret: git.secret_ref.as_ref().map(|s| s.name.clone()),
                    sync: sync.map(sync_interval),
                });
            }
            ContextType::Url => {
                let Some(url) = &item.url else { continue };
                let index = plan.urls;
                let fetch = UrlFetch {
                    index,
                    label: label.clone(),
                    url: url.clone(),
                };
                if let Some(secret) = &url.secret_ref {
                    for (suffix, key) in URL_SECRET_KEYS {
                        plan.env.push(env_secret(
                            &format!("URL_{index}_{suffix}"),
                            &secret.name,
                            key,
                            Some(true),
                        ));
                    }
                }
                plan.urls += 1;
                match target {
                    Some(path) => files.push(ContextFile {
                        source: FileSource::Fetch(fetch),
                        target: path,
                        mode,
                    }),
                    None => parts.push(Part::Url { header, fetch }),
                }
            }
        }
    }

    let mut skill_paths = Vec::new();
    for skill in spec.skills.iter().flatten() {
        let Some(git) = &skill.git else { continue };
        let mount_path = format!("{SKILLS_BASE}/{}", skill.name);
        let names = git.names.clone().unwrap_or_default();
        if names.is_empty() {
            skill_paths.push(mount_path.clone());
        } else {
            skill_paths.extend(names.iter().map(|n| format!("{mount_path}/{n}")));
        }
        plan.git.push(GitRepo {
            repository: git.repository.clone(),
            git_ref: ref_or_head(&git.ref_),
            depth: git.depth.unwrap_or(1).max(0),
            recurse_submodules: git.recurse_submodules == Some(true),
            path: repo_sub_path(git.path.as_deref()),
            mount_path,
            names,
            secret: git.secret_ref.as_ref().map(|s| s.name.clone()),
            sync: None,
        });
    }

    let context_file = (!parts.is_empty()).then(|| format!("{workspace}/{CONTEXT_FILE_REL_PATH}"));

    // The script: files, directories, context.md, opencode.json. Targets outside the
    // workspace and /tools are staged on an emptyDir and mounted one by one (subPath), so a
    // file at /etc/x does not hide the image's /etc.
    let mut script = Vec::new();
    let stage = |plan: &mut ContextPlan, target: &str| -> String {
        if is_under(target, workspace) {
            target.to_string()
        } else if is_under(target, TOOLS_MOUNT_PATH) {
            plan.writes_tools = true;
            target.to_string()
        } else {
            let sub_path = config_map_key(target);
            plan.external.push((sub_path.clone(), target.to_string()));
            format!("{EXTERNAL_MOUNT}/{sub_path}")
        }
    };
    if plan.urls > 0 {
        script.push(FETCH_URL_FUNCTION.to_string());
    }
    for file in &files {
        let written = stage(&mut plan, &file.target);
        let put = match &file.source {
            FileSource::Copy { path, .. } => {
                format!("cp {} {}", sh_quote(path), sh_quote(&written))
            }
            FileSource::Fetch(fetch) => fetch.command(&sh_quote(&written)),
        };
        let lines = [
            format!("mkdir -p {}", sh_quote(&parent_dir(&written))),
            put,
            format!("chmod {:o} {}", file.mode, sh_quote(&written)),
        ];
        match &file.source {
            FileSource::Copy {
                path,
                optional: true,
            } => {
                script.push(format!("if [ -f {} ]; then", sh_quote(path)));
                script.extend(lines.map(|line| format!("  {line}")));
                script.push("fi".to_string());
            }
            _ => script.extend(lines),
        }
    }
    for (source, target) in &dirs {
        let written = stage(&mut plan, target);
        script.push(format!("mkdir -p {}", sh_quote(&written)));
        script.push(format!(
            "for f in {source}/* {source}/.[!.]*; do if [ -f \"$f\" ]; then cp \"$f\" {}/; fi; done",
            sh_quote(&written)
        ));
    }
    if let Some(path) = &context_file {
        script.push(format!("mkdir -p {}", sh_quote(&parent_dir(path))));
        script.push("{".to_string());
        for (n, part) in parts.iter().enumerate() {
            if n > 0 {
                script.push("printf '\\n\\n'".to_string());
            }
            match part {
                Part::Static(content) => {
                    let key =
                        insert_unique(&mut plan.data, format!("context-{n}.md"), content.clone());
                    script.push(format!("cat {CONTEXT_FILES_MOUNT}/{key}"));
                }
                Part::ConfigMap { header, dir, key } => {
                    script.push(format!("printf '%s\\n' {}", sh_quote(header)));
                    match key {
                        Some(key) => {
                            let file = sh_quote(&format!("{dir}/{key}"));
                            script.push(format!("if [ -f {file} ]; then cat {file}; fi"));
                        }
                        None => script.push(format!(
                            "first=1; for f in {dir}/* {dir}/.[!.]*; do if [ -f \"$f\" ]; then if [ -z \"$first\" ]; then printf '\\n'; fi; first=; printf '<file name=\"%s\">\\n' \"${{f##*/}}\"; cat \"$f\"; printf '\\n</file>'; fi; done"
                        )),
                    }
                    script.push("printf '\\n</context>'".to_string());
                }
                Part::Url { header, fetch } => {
                    script.push(format!("printf '%s\\n' {}", sh_quote(header)));
                    script.push(fetch.command("-"));
                    script.push("printf '\\n</context>'".to_string());
                }
            }
        }
        script.push(format!("}} > {}", sh_quote(path)));
    }
    if let Some(config) =
        opencode_config(spec, &skill_paths, context_file.as_deref(), &plugins.server)
    {
        let key = insert_unique(&mut plan.data, config_map_key(OPENCODE_CONFIG_PATH), config);
        script.push(format!(
            "cp {CONTEXT_FILES_MOUNT}/{key} {OPENCODE_CONFIG_PATH}"
        ));
        plan.config_file = true;
        plan.writes_tools = true;
    }
    if !plugins.tui.is_empty() {
        let config = serde_json::json!({
            "$schema": "https://opencode.ai/tui.json",
            "plugin": plugins.tui,
        });
        let key = insert_unique(
            &mut plan.data,
            config_map_key(OPENCODE_TUI_CONFIG_PATH),
            config.to_string(),
        );
        script.push(format!(
            "cp {CONTEXT_FILES_MOUNT}/{key} {OPENCODE_TUI_CONFIG_PATH}"
        ));
        plan.tui_config_file = true;
        plan.writes_tools = true;
    }
    plan.script = script;
    plan
}

/// Mounts a user's ConfigMap into context-init; returns the directory.
fn user_config_map(plan: &mut ContextPlan, source: &ConfigMapContext) -> String {
    let index = plan.config_map_volumes.len();
    let volume = format!("dir-mount-{index}");
    let dir = format!("/configmap-dir-{index}");
    let key = source.key.clone().filter(|k| !k.is_empty());
    plan.config_map_volumes.push(Volume {
        name: volume.clone(),
        config_map: Some(ConfigMapVolumeSource {
            name: source.name.clone(),
            items: key.map(|key| {
                vec![KeyToPath {
                    path: key.clone(),
                    key,
                    mode: None,
                }]
            }),
            optional: Some(source.optional == Some(true)),
            ..Default::default()
        }),
        ..Default::default()
    });
    plan.config_map_mounts.push(read_only(mount(&volume, &dir)));
    dir
}

fn insert_unique(data: &mut BTreeMap<String, String>, key: String, value: String) -> String {
    let mut candidate = key.clone();
    let mut n = 1;
    while data.contains_key(&candidate) {
        n += 1;
        candidate = format!("{key}-{n}");
    }
    data.insert(candidate.clone(), value);
    candidate
}

fn repo_sub_path(path: Option<&str>) -> Option<String> {
    let trimmed = path?.trim_matches('/');
    let cleaned: Vec<&str> = trimmed
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    (!cleaned.is_empty()).then(|| cleaned.join("/"))
}

/// The opening tag that wraps a context's content where it is inlined: the context file and a
/// Task's prompt.
pub fn context_header(label: &str, namespace: &str, type_: ContextType) -> String {
    format!(
        "<context name=\"{}\" namespace=\"{}\" type=\"{}\">",
        xml_attr(label),
        xml_attr(namespace),
        type_name(type_)
    )
}

/// The label of the `index`th context: its name, else its type and position.
pub fn context_label(item: &crate::api::context::ContextItem, index: usize) -> String {
    item.name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("{}-{index}", type_name(item.type_).to_lowercase()))
}

fn type_name(t: ContextType) -> &'static str {
    match t {
        ContextType::Text => "Text",
        ContextType::ConfigMap => "ConfigMap",
        ContextType::Git => "Git",
        ContextType::Runtime => "Runtime",
        ContextType::Url => "URL",
    }
}

fn xml_attr(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// What a Runtime context tells the agent about where it runs.
pub fn runtime_text(agent: &str, namespace: &str, workspace: &str) -> String {
    format!(
        "## KubeOpenCode runtime\n\n\
You are an AI coding agent: a long-running OpenCode server in a Kubernetes Pod, managed by \
KubeOpenCode (Agent {agent:?} in namespace {namespace:?}).\n\n\
- Your working directory is {workspace} (environment variable WORKSPACE_DIR).\n\
- KubeOpenCode context files are under {workspace}/.kubeopencode/.\n\
- Work arrives as sessions on this server: Tasks submitted to the Agent and people attached \
with `kubectl kubeoc agent attach {agent}`.\n\
- Your Agent's definition: `kubectl get agent {agent} -n {namespace} -o yaml` (when the \
ServiceAccount may read it)."
    )
}

/// opencode.json: spec.config plus the skill paths (`skills.paths`), the context file
/// (`instructions`) and the server plugins (`plugin`), appended without duplicates. None when
/// there is nothing to write.
fn opencode_config(
    spec: &AgentSpec,
    skill_paths: &[String],
    context_file: Option<&str>,
    plugins: &[serde_json::Value],
) -> Option<String> {
    if spec.config.is_none()
        && skill_paths.is_empty()
        && context_file.is_none()
        && plugins.is_empty()
    {
        return None;
    }
    let mut config = spec
        .config
        .clone()
        .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
    if let Some(object) = config.as_object_mut() {
        if !skill_paths.is_empty() {
            let skills = object
                .entry("skills")
                .or_insert_with(|| serde_json::json!({}));
            if !skills.is_object() {
                *skills = serde_json::json!({});
            }
            if let Some(skills) = skills.as_object_mut() {
                append_strings(skills, "paths", skill_paths);
            }
        }
        if let Some(file) = context_file {
            append_strings(object, "instructions", &[file.to_string()]);
        }
        if !plugins.is_empty() {
            append_plugins(object, plugins);
        }
    }
    Some(config.to_string())
}

/// Appends plugin entries to the `plugin` list after the user's own entries, which are kept
/// as written. An entry whose specifier the list already has is skipped, so a user's own
/// `["file:///plugins/node_modules/x", {...}]` wins over spec.plugins' entry for x. A user
/// entry naming the same package by npm name ("x") stays too: OpenCode would then fetch and
/// load that copy as well, so list a plugin in one place.
fn append_plugins(
    object: &mut serde_json::Map<String, serde_json::Value>,
    entries: &[serde_json::Value],
) {
    let list = object
        .entry("plugin")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if !list.is_array() {
        *list = serde_json::Value::Array(Vec::new());
    }
    if let Some(list) = list.as_array_mut() {
        for entry in entries {
            let specifier = plugin_entry_specifier(entry);
            if !list.iter().any(|e| plugin_entry_specifier(e) == specifier) {
                list.push(entry.clone());
            }
        }
    }
}

/// The specifier of a config `plugin` entry: `"spec"` or `["spec", {options}]`.
fn plugin_entry_specifier(entry: &serde_json::Value) -> Option<&str> {
    match entry {
        serde_json::Value::Array(pair) => pair.first().and_then(|s| s.as_str()),
        other => other.as_str(),
    }
}

fn append_strings(
    object: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    values: &[String],
) {
    let list = object
        .entry(key)
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if !list.is_array() {
        *list = serde_json::Value::Array(Vec::new());
    }
    if let Some(list) = list.as_array_mut() {
        for value in values {
            if !list.iter().any(|v| v.as_str() == Some(value)) {
                list.push(serde_json::Value::String(value.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::pod::test_support::*;
    use crate::controller::pod::{unsupported, validate};

    #[test]
    fn contexts_become_files_and_instructions() {
        let agent = agent_yaml(
            r##"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: ctx, namespace: dev}
spec:
  workspaceDir: /workspace
  serviceAccountName: sa
  config: {model: m/x, instructions: [RULES.md]}
  contexts:
    - {name: rules, type: Text, text: "Be brief.", mountPath: AGENTS.md}
    - {name: hook, type: Text, text: "#!/bin/sh", mountPath: /etc/hooks/pre.sh, fileMode: 493}
    - {name: guide, type: Text, text: "Use Rust."}
    - {name: env, type: ConfigMap, configMap: {name: team-env, key: env.md}}
    - {name: all, type: ConfigMap, configMap: {name: team-docs, optional: true}, mountPath: docs}
    - {type: Runtime}
    - {name: app, type: ConfigMap, configMap: {name: app-cm, key: a.conf, optional: true}, mountPath: /etc/app/a.conf}
"##,
        );
        let objects = build_agent(&agent);
        check_consistent("contexts", &objects);
        check_restricted("contexts", pod(&objects));
        let pod = pod(&objects);
        let data = objects
            .context_config_map
            .as_ref()
            .and_then(|c| c.data.clone())
            .expect("data");
        assert_eq!(data["workspace-AGENTS.md"], "Be brief.");
        assert_eq!(data["etc-hooks-pre.sh"], "#!/bin/sh");
        assert_eq!(
            data["context-0.md"],
            "<context name=\"guide\" namespace=\"dev\" type=\"Text\">\nUse Rust.\n</context>"
        );
        assert!(
            data["context-2.md"].contains("type=\"Runtime\""),
            "{:?}",
            data["context-2.md"]
        );
        let config: serde_json::Value =
            serde_json::from_str(&data["tools-opencode.json"]).expect("JSON");
        assert_eq!(
            config["instructions"],
            serde_json::json!(["RULES.md", "/workspace/.kubeopencode/context.md"])
        );

        let init = container(pod, "context-init");
        let script = script(init);
        for line in [
            "cp /configmap-files/workspace-AGENTS.md /workspace/AGENTS.md",
            "chmod 644 /workspace/AGENTS.md",
            "cp /configmap-files/etc-hooks-pre.sh /ctx-files/etc-hooks-pre.sh",
            "chmod 755 /ctx-files/etc-hooks-pre.sh",
            "mkdir -p /workspace/docs",
            "cat /configmap-files/context-0.md",
            "printf '%s\\n' '<context name=\"env\" namespace=\"dev\" type=\"ConfigMap\">'",
            "if [ -f /configmap-dir-0/env.md ]; then cat /configmap-dir-0/env.md; fi",
            "} > /workspace/.kubeopencode/context.md",
            "cp /configmap-files/tools-opencode.json /tools/opencode.json",
        ] {
            assert!(
                script.lines().any(|l| l == line),
                "missing {line:?} in\n{script}"
            );
        }
        assert!(
            script.contains("for f in /configmap-dir-1/* /configmap-dir-1/.[!.]*"),
            "{script}"
        );
        // The user's ConfigMaps are mounted into context-init only.
        let env_cm = volume(pod, "dir-mount-0")
            .config_map
            .as_ref()
            .expect("ConfigMap volume");
        assert_eq!(
            (env_cm.name.as_str(), env_cm.optional),
            ("team-env", Some(false))
        );
        assert_eq!(
            env_cm.items.as_ref().map(|i| i[0].key.as_str()),
            Some("env.md")
        );
        let docs_cm = volume(pod, "dir-mount-1")
            .config_map
            .as_ref()
            .expect("ConfigMap volume");
        assert_eq!(
            (
                docs_cm.name.as_str(),
                docs_cm.optional,
                docs_cm.items.as_ref()
            ),
            ("team-docs", Some(true), None)
        );
        // A file outside the workspace is staged on an emptyDir and mounted by itself.
        let server = server(&objects);
        let hook = mount_at(server, "/etc/hooks/pre.sh");
        assert_eq!(
            (hook.name.as_str(), hook.sub_path.as_deref()),
            ("ctx-files", Some("etc-hooks-pre.sh"))
        );
        assert_eq!(mount_at(init, "/ctx-files").name, "ctx-files");
        assert!(
            server
                .volume_mounts
                .iter()
                .flatten()
                .all(|m| m.mount_path != "/etc/hooks")
        );
        assert_eq!(
            mount_at(server, "/etc/app/a.conf").sub_path.as_deref(),
            Some("etc-app-a.conf")
        );
        assert!(script.contains("if [ -f /configmap-dir-2/a.conf ]; then\n  mkdir -p /ctx-files\n  cp /configmap-dir-2/a.conf /ctx-files/etc-app-a.conf\n"), "{script}");
        assert_eq!(mount_at(init, "/configmap-files").read_only, Some(true));
        assert_eq!(
            env_value_of(server, "OPENCODE_CONFIG"),
            "/tools/opencode.json"
        );
        // The config names no permission, so upstream's allow-all default applies.
        assert_eq!(
            env_value_of(server, "OPENCODE_PERMISSION"),
            r#"{"*":"allow"}"#
        );
        // Order: git-init (none here) before context-init, both after opencode-init.
        assert_eq!(
            names(pod.init_containers.as_ref()),
            ["opencode-init", "context-init"]
        );
    }

    #[test]
    fn url_contexts_are_fetched_when_the_pod_starts() {
        let agent = agent_yaml(
            r##"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: ctx, namespace: dev}
spec:
  workspaceDir: /workspace
  serviceAccountName: sa
  contexts:
    - name: guide
      type: URL
      url:
        source: https://docs.example/guide.md
        headers: {Accept: text/markdown, Authorization: Bearer inline}
        secretRef: {name: docs-token}
        timeout: 5
    - {name: spec, type: URL, url: {source: "http://docs.example/spec.txt", insecureSkipTLSVerify: true}, mountPath: docs/spec.txt}
    - {name: etc, type: URL, url: {source: "http://docs.example/x.conf"}, mountPath: /etc/x.conf, fileMode: 384}
"##,
        );
        assert!(
            unsupported(&agent.spec).is_empty(),
            "URL contexts are supported"
        );
        let objects = build_agent(&agent);
        check_consistent("url contexts", &objects);
        check_restricted("url contexts", pod(&objects));
        let pod = pod(&objects);
        let init = container(pod, "context-init");
        let script = script(init);
        assert_eq!(script.matches("fetch_url() {").count(), 1, "{script}");
        for line in [
            "fetch_url spec http://docs.example/spec.txt /workspace/docs/spec.txt 30 1 ''",
            "chmod 644 /workspace/docs/spec.txt",
            "fetch_url etc http://docs.example/x.conf /ctx-files/etc-x.conf 30 '' ''",
            "chmod 600 /ctx-files/etc-x.conf",
            "printf '%s\\n' '<context name=\"guide\" namespace=\"dev\" type=\"URL\">'",
            "} > /workspace/.kubeopencode/context.md",
        ] {
            assert!(
                script.lines().any(|l| l == line),
                "missing {line:?} in\n{script}"
            );
        }
        // The Secret's credentials replace the inline Authorization header.
        let guide = script
            .lines()
            .find(|l| l.contains("fetch_url guide"))
            .expect("guide fetch");
        assert!(
            guide.ends_with(
                "fetch_url guide https://docs.example/guide.md - 5 '' \"$auth\" 'Accept: text/markdown'"
            ),
            "{guide}"
        );
        assert!(!script.contains("Bearer inline"), "{script}");
        for (var, key) in [
            ("URL_0_TOKEN", "token"),
            ("URL_0_USERNAME", "username"),
            ("URL_0_PASSWORD", "password"),
        ] {
            let env = env(init, var);
            assert_eq!(secret_ref(env), ("docs-token", key));
            let selector = env
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .expect("secretKeyRef");
            assert_eq!(selector.optional, Some(true), "{var}");
        }
        // A file outside the workspace is mounted from the staging emptyDir.
        assert_eq!(
            mount_at(server(&objects), "/etc/x.conf")
                .sub_path
                .as_deref(),
            Some("etc-x.conf")
        );

        let invalid = agent_yaml(
            "apiVersion: kubeopencode.io/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec:\n  workspaceDir: /w\n  serviceAccountName: sa\n  contexts: [{type: URL, url: {source: \"ftp://x/y\"}}]\n",
        );
        let err = validate(&invalid.spec).expect_err("ftp");
        assert_eq!(
            err.message,
            "spec.contexts[0].url.source must be an http:// or https:// URL, not \"ftp://x/y\""
        );
    }

    /// Runs the generated fetch line with `sh` against a loopback server, once with curl and once
    /// with wget (the default alpine/git image has only busybox's), and returns what the server saw.
    fn run_fetch(tool: &str, fetch: &UrlFetch, env: &[(&str, &str)]) -> (String, String) {
        let (output, head) = run_fetch_raw(tool, fetch, env, true);
        assert!(
            output.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        (String::from_utf8_lossy(&output.stdout).into_owned(), head)
    }

    /// The fetch line run by `sh` with only `tool` (and what the function needs) on PATH,
    /// against a loopback server when `serve`; its output and the request head the server saw.
    fn run_fetch_raw(
        tool: &str,
        fetch: &UrlFetch,
        env: &[(&str, &str)],
        serve: bool,
    ) -> (std::process::Output, String) {
        use std::io::{BufRead as _, BufReader, Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // Without a server the port is closed before the tool runs: it is refused at once.
        let listener = serve.then_some(listener);
        let server = listener.map(|listener| {
            std::thread::spawn(move || {
                let (stream, _) = listener.accept().expect("accept");
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).expect("read") == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let mut stream = reader.into_inner();
                let body = "fetched body\n";
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .expect("write");
                let _ = stream.read(&mut [0; 1]);
                head
            })
        });
        // Only the tool under test (and what the function needs) on PATH.
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path();
        for name in [tool, "base64", "tr", "sed"] {
            let found = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| std::path::Path::new(d).join(name))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{name} not installed"));
            std::os::unix::fs::symlink(found, bin.join(name)).expect("symlink");
        }
        let mut fetch = fetch.clone();
        fetch.url.source = fetch.url.source.replace("PORT", &port.to_string());
        let script = format!("set -eu\n{FETCH_URL_FUNCTION}\n{}", fetch.command("-"));
        let output = std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .env_clear()
            .env("PATH", bin)
            .envs(env.iter().copied())
            .output()
            .expect("sh");
        let head = server
            .map(|s| s.join().expect("server thread"))
            .unwrap_or_default();
        (output, head)
    }

    #[test]
    fn the_fetch_command_sends_headers_and_credentials_with_curl_and_wget() {
        let fetch = |headers: serde_json::Value, secret: bool| UrlFetch {
            index: 3,
            label: "docs".to_string(),
            url: serde_json::from_value(serde_json::json!({
                "source": "http://127.0.0.1:PORT/guide.md",
                "headers": headers,
                "secretRef": secret.then(|| serde_json::json!({"name": "s"})),
            }))
            .expect("UrlContext"),
        };
        // wget takes headers only as arguments: a context with credentials refuses it, before
        // sending anything, and the URL in the message is masked.
        let mut with_userinfo = fetch(serde_json::json!({}), true);
        with_userinfo.url.source = "http://ann:pw@127.0.0.1:PORT/guide.md".into();
        let (output, head) =
            run_fetch_raw("wget", &with_userinfo, &[("URL_3_TOKEN", "tok-123")], false);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains("its credentials need curl"), "{stderr}");
        assert!(!stderr.contains("tok-123") && head.is_empty(), "{stderr}");
        // With credentials, curl: they go through stdin.
        let tool = "curl";
        let (body, head) = run_fetch(
            tool,
            &fetch(
                serde_json::json!({"Accept": "text/markdown", "Authorization": "Bearer inline"}),
                true,
            ),
            &[("URL_3_TOKEN", "tok-123")],
        );
        assert_eq!(body, "fetched body\n", "{tool}");
        assert!(head.starts_with("GET /guide.md "), "{tool}: {head}");
        let lower = head.to_ascii_lowercase();
        assert!(
            lower.contains("accept: text/markdown\r\n"),
            "{tool}: {head}"
        );
        assert!(
            lower.contains("authorization: bearer tok-123\r\n"),
            "{tool}: {head}"
        );
        assert!(!head.contains("inline"), "{tool}: {head}");

        let (_, head) = run_fetch(
            tool,
            &fetch(serde_json::json!({}), true),
            &[("URL_3_USERNAME", "ann"), ("URL_3_PASSWORD", "pw:1")],
        );
        // base64("ann:pw:1")
        assert!(
            head.contains("Authorization: Basic YW5uOnB3OjE=\r\n"),
            "{tool}: {head}"
        );
        // Without credentials, both tools send the headers.
        for tool in ["curl", "wget"] {
            let (body, head) = run_fetch(
                tool,
                &fetch(serde_json::json!({"Authorization": "Bearer inline"}), false),
                &[],
            );
            assert_eq!(body, "fetched body\n", "{tool}");
            assert!(head.contains("Bearer inline"), "{tool}: {head}");
        }
    }

    #[test]
    fn failed_fetches_mask_the_urls_credentials() {
        let fetch = UrlFetch {
            index: 0,
            label: "docs".to_string(),
            url: serde_json::from_value(serde_json::json!({
                "source": "http://ann:secret-pw@127.0.0.1:PORT/missing.md",
            }))
            .expect("UrlContext"),
        };
        let (output, _) = run_fetch_raw("wget", &fetch, &[], false);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(
            stderr.contains("could not fetch http://***@127.0.0.1:"),
            "{stderr}"
        );
        assert!(!stderr.contains("secret-pw"), "{stderr}");
    }
}
