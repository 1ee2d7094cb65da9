//! Checks of an effective spec before it is built: what cannot run is an [`InvalidSpec`], what
//! kubeoc does not implement yet is a note.

use std::collections::BTreeMap;

use super::names::server_port;
use super::paths::resolve_path;
use super::plugins::{npm_package_name, plugin_target};
use crate::api::AgentSpec;
use crate::api::agent::{PluginSpec, PluginTarget};
use crate::api::context::{ContextItem, ContextType};

/// A spec the controller cannot run: the field and a message for condition Ready=False,
/// reason InvalidSpec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidSpec {
    /// JSON path of the offending field, e.g. `spec.workspaceDir`.
    pub field: &'static str,
    /// What is wrong and how to fix it; names the field.
    pub message: String,
}

impl InvalidSpec {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Checks an effective spec (after [`effective_spec`]) for what [`build`] needs; the first
/// problem found. Upstream examples omit workspaceDir or serviceAccountName and rely on a
/// template, so these are reconcile-time errors, not admission errors.
///
/// [`effective_spec`]: super::effective_spec
/// [`build`]: super::build
pub fn validate(spec: &AgentSpec) -> Result<(), InvalidSpec> {
    let workspace = spec.workspace_dir.as_deref().unwrap_or_default();
    if workspace.is_empty() {
        return Err(InvalidSpec::new(
            "spec.workspaceDir",
            "spec.workspaceDir is required (set it on the Agent or its AgentTemplate)",
        ));
    }
    if !workspace.starts_with('/') {
        return Err(InvalidSpec::new(
            "spec.workspaceDir",
            format!("spec.workspaceDir must be an absolute path, got {workspace:?}"),
        ));
    }
    if spec
        .service_account_name
        .as_deref()
        .is_none_or(str::is_empty)
    {
        return Err(InvalidSpec::new(
            "spec.serviceAccountName",
            "spec.serviceAccountName is required (set it on the Agent or its AgentTemplate)",
        ));
    }
    if let Some(config) = &spec.config
        && !config.is_object()
    {
        return Err(InvalidSpec::new(
            "spec.config",
            "spec.config must be an object (the content of opencode.json)",
        ));
    }
    let persistence = spec.persistence.as_ref();
    for (field, volume) in [
        (
            "spec.persistence.sessions.size",
            persistence.and_then(|p| p.sessions.as_ref()),
        ),
        (
            "spec.persistence.workspace.size",
            persistence.and_then(|p| p.workspace.as_ref()),
        ),
    ] {
        if let Some(size) = volume.and_then(|v| v.size.as_deref())
            && !size.is_empty()
            && !is_quantity(size)
        {
            return Err(InvalidSpec::new(
                field,
                format!("{field} {size:?} is not a quantity such as \"1Gi\" or \"500Mi\""),
            ));
        }
    }
    for (i, item) in spec.contexts.iter().flatten().enumerate() {
        validate_context(i, item)?;
        if let Some(path) = item.mount_path.as_deref().filter(|p| !p.is_empty())
            && resolve_path(path, workspace) == "/"
        {
            return Err(InvalidSpec::new(
                "spec.contexts",
                format!(
                    "spec.contexts[{i}].mountPath {path:?} resolves to \"/\"; pick a file or directory below it"
                ),
            ));
        }
    }
    for (i, skill) in spec.skills.iter().flatten().enumerate() {
        let Some(git) = &skill.git else {
            return Err(InvalidSpec::new(
                "spec.skills",
                format!("spec.skills[{i}] ({}) needs git.repository", skill.name),
            ));
        };
        if git.repository.is_empty() {
            return Err(InvalidSpec::new(
                "spec.skills",
                format!("spec.skills[{i}].git.repository is required"),
            ));
        }
        let path = git.path.as_deref().unwrap_or_default();
        if has_dot_dot(path) || git.names.iter().flatten().any(|n| has_dot_dot(n)) {
            return Err(InvalidSpec::new(
                "spec.skills",
                format!("spec.skills[{i}].git: path and names must stay inside the repository"),
            ));
        }
    }
    validate_plugins(spec.plugins.as_deref().unwrap_or_default())?;
    let port = server_port(spec);
    let mut names = vec!["http".to_string()];
    let mut numbers = vec![port];
    for (i, extra) in spec.extra_ports.iter().flatten().enumerate() {
        if names.contains(&extra.name) {
            return Err(InvalidSpec::new(
                "spec.extraPorts",
                format!(
                    "spec.extraPorts[{i}].name {:?} is already used (\"http\" is the OpenCode server's port)",
                    extra.name
                ),
            ));
        }
        if numbers.contains(&extra.port) {
            return Err(InvalidSpec::new(
                "spec.extraPorts",
                format!(
                    "spec.extraPorts[{i}].port {} is already used (spec.port is {port})",
                    extra.port
                ),
            ));
        }
        names.push(extra.name.clone());
        numbers.push(extra.port);
    }
    Ok(())
}

fn validate_context(i: usize, item: &ContextItem) -> Result<(), InvalidSpec> {
    let missing = |what: &str| {
        InvalidSpec::new(
            "spec.contexts",
            format!("spec.contexts[{i}] has type {:?} but no {what}", item.type_),
        )
    };
    match item.type_ {
        ContextType::Text if item.text.is_none() => return Err(missing("text")),
        ContextType::ConfigMap if item.config_map.is_none() => return Err(missing("configMap")),
        ContextType::Url => {
            let url = item.url.as_ref().ok_or_else(|| missing("url"))?;
            if !(url.source.starts_with("http://") || url.source.starts_with("https://")) {
                return Err(InvalidSpec::new(
                    "spec.contexts",
                    format!(
                        "spec.contexts[{i}].url.source must be an http:// or https:// URL, not {:?}",
                        url.source
                    ),
                ));
            }
        }
        ContextType::Git => {
            let git = item.git.as_ref().ok_or_else(|| missing("git"))?;
            if item.mount_path.as_deref().is_none_or(str::is_empty) {
                return Err(InvalidSpec::new(
                    "spec.contexts",
                    format!(
                        "spec.contexts[{i}].mountPath is required for a Git context (relative paths are under workspaceDir, \".\" is workspaceDir itself)"
                    ),
                ));
            }
            if git.repository.is_empty() {
                return Err(missing("git.repository"));
            }
            if has_dot_dot(git.path.as_deref().unwrap_or_default()) {
                return Err(InvalidSpec::new(
                    "spec.contexts",
                    format!("spec.contexts[{i}].git.path must stay inside the repository"),
                ));
            }
            if let Some(interval) = git.sync.as_ref().and_then(|s| s.interval.as_deref())
                && let Err(e) = crate::duration::parse(interval)
            {
                return Err(InvalidSpec::new(
                    "spec.contexts",
                    format!("spec.contexts[{i}].git.sync.interval: {e}"),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Plugin names reach a shell and npm, and OpenCode's config only takes an object as options,
/// so both are checked here rather than failing in the Pod.
fn validate_plugins(plugins: &[PluginSpec]) -> Result<(), InvalidSpec> {
    let invalid = |message: String| Err(InvalidSpec::new("spec.plugins", message));
    // package -> (index, specifier, target) of its first entry.
    let mut seen: BTreeMap<&str, (usize, &str, PluginTarget)> = BTreeMap::new();
    for (i, plugin) in plugins.iter().enumerate() {
        let name = plugin.name.as_str();
        if let Err(why) = check_npm_specifier(name) {
            return invalid(format!(
                "spec.plugins[{i}].name {name:?} is not an npm registry package specifier ({why}); use \"name\", \"name@1.2.3\", \"@scope/name\" or \"@scope/name@^1.0.0\" (git URLs, tarballs and paths are not supported)"
            ));
        }
        if let Some(options) = &plugin.options
            && !options.is_object()
        {
            return invalid(format!(
                "spec.plugins[{i}].options must be an object (OpenCode passes it to the plugin as its options), got {options}"
            ));
        }
        let target = plugin_target(plugin);
        let package = npm_package_name(name);
        match seen.get(package) {
            Some((j, _, first)) if *first == target => {
                return invalid(format!(
                    "spec.plugins[{i}] repeats package {package:?} (already spec.plugins[{j}]); list each plugin once"
                ));
            }
            Some((j, first, _)) if *first != name => {
                return invalid(format!(
                    "spec.plugins[{i}] asks for {name:?} but spec.plugins[{j}] for {first:?}: one package is installed once, so both entries need the same specifier"
                ));
            }
            Some(_) => {}
            None => {
                seen.insert(package, (i, name, target));
            }
        }
    }
    Ok(())
}

/// Checks `[@scope/]name[@version]`: the name part in npm's URL-safe characters (uppercase
/// allowed for old packages), the version part free text without control characters (ranges
/// such as ">=1.0.0 <2" contain spaces; the word is quoted for the shell).
fn check_npm_specifier(specifier: &str) -> Result<(), &'static str> {
    let package = npm_package_name(specifier);
    let version = specifier.get(package.len()..).unwrap_or_default();
    if package.len() > 214 {
        return Err("the package name is longer than 214 characters");
    }
    let name_part = |part: &str| {
        !part.is_empty()
            && !part.starts_with(['.', '_', '-'])
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    };
    let valid_name = match package.strip_prefix('@') {
        Some(scoped) => scoped
            .split_once('/')
            .is_some_and(|(scope, name)| name_part(scope) && name_part(name)),
        None => name_part(package),
    };
    if !valid_name {
        return Err("bad package name");
    }
    if let Some(version) = version.strip_prefix('@') {
        if version.trim().is_empty() {
            return Err("empty version after @");
        }
        if version.chars().any(char::is_control) {
            return Err("control characters in the version");
        }
    } else if !version.is_empty() {
        return Err("bad package name");
    }
    Ok(())
}

/// Human-readable notes on fields the effective spec sets that kubeoc does not implement yet;
/// the reconciler reports them in a condition (they are never silently ignored).
pub fn unsupported(spec: &AgentSpec) -> Vec<String> {
    let mut notes = Vec::new();
    if spec.share.as_ref().is_some_and(|s| s.enabled) {
        notes.push("spec.share: share links are not implemented; no link is created".to_string());
    }
    if spec.command.as_ref().is_some_and(|c| !c.is_empty()) {
        notes.push(
            "spec.command: ignored for agents; the server container always runs `opencode serve`"
                .to_string(),
        );
    }
    notes
}

fn is_quantity(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let digits_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(digits_end);
    let valid_number = !number.is_empty()
        && number != "."
        && number.matches('.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit());
    let valid_suffix = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || suffix
        .strip_prefix(['e', 'E'])
        .map(|exp| exp.strip_prefix(['+', '-']).unwrap_or(exp))
        .is_some_and(|exp| !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit()));
    valid_number && valid_suffix
}

fn has_dot_dot(path: &str) -> bool {
    path.split('/').any(|part| part == "..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::pod::test_support::agent_yaml;

    #[test]
    fn validate_names_the_missing_field() {
        let mut spec = AgentSpec::default();
        let err = validate(&spec).expect_err("no workspaceDir");
        assert_eq!(err.field, "spec.workspaceDir");
        assert_eq!(
            err.message,
            "spec.workspaceDir is required (set it on the Agent or its AgentTemplate)"
        );
        spec.workspace_dir = Some("/workspace".to_string());
        let err = validate(&spec).expect_err("no serviceAccountName");
        assert_eq!(err.field, "spec.serviceAccountName");
        assert_eq!(
            err.to_string(),
            "spec.serviceAccountName is required (set it on the Agent or its AgentTemplate)"
        );
        spec.service_account_name = Some("sa".to_string());
        assert_eq!(validate(&spec), Ok(()));

        let invalid = |yaml: &str| validate(&agent_yaml(yaml).spec).expect_err("invalid").field;
        let base = "apiVersion: kubeopencode.io/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec:\n  workspaceDir: /w\n  serviceAccountName: sa\n";
        assert_eq!(
            invalid(&format!(
                "{base}  persistence: {{sessions: {{size: lots}}}}"
            )),
            "spec.persistence.sessions.size"
        );
        assert_eq!(invalid(&format!("{base}  config: [1]")), "spec.config");
        assert_eq!(
            invalid(&format!("{base}  extraPorts: [{{name: http, port: 80}}]")),
            "spec.extraPorts"
        );
        assert_eq!(
            invalid(&format!("{base}  extraPorts: [{{name: web, port: 4096}}]")),
            "spec.extraPorts"
        );
        assert_eq!(
            invalid(&format!(
                "{base}  contexts: [{{type: Git, git: {{repository: r}}}}]"
            )),
            "spec.contexts"
        );
        assert_eq!(
            invalid(&format!(
                "{base}  contexts: [{{type: Git, mountPath: x, git: {{repository: r, sync: {{enabled: true, interval: soon}}}}}}]"
            )),
            "spec.contexts"
        );
        assert_eq!(
            invalid(&format!(
                "{base}  contexts: [{{type: Git, mountPath: x, git: {{repository: r, path: ../etc}}}}]"
            )),
            "spec.contexts"
        );
        assert_eq!(
            invalid(&format!(
                "{base}  contexts: [{{type: ConfigMap, mountPath: /, configMap: {{name: c}}}}]"
            )),
            "spec.contexts"
        );
        assert_eq!(
            invalid(
                "apiVersion: kubeopencode.io/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec: {workspaceDir: relative, serviceAccountName: sa}"
            ),
            "spec.workspaceDir"
        );
        for ok in ["1Gi", "500Mi", "1.5G", "10", "1e3", "100k"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Gi", "1GB", "1.2.3", "lots", "1e"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn plugin_names_and_options_are_validated() {
        let spec_with = |plugins: serde_json::Value| -> AgentSpec {
            serde_json::from_value(serde_json::json!({
                "workspaceDir": "/w",
                "serviceAccountName": "sa",
                "plugins": plugins,
            }))
            .expect("a spec")
        };
        for name in [
            "cc-safety-net",
            "cc-safety-net@0.8.2",
            "@aexol/opencode-tui",
            "@aexol/opencode-tui@^1.0.0",
            "x@>=1 <2",
            "x@latest",
            "Legacy.Name_x",
        ] {
            assert_eq!(
                validate(&spec_with(serde_json::json!([{ "name": name }]))),
                Ok(()),
                "{name}"
            );
        }
        for name in [
            "-rf",
            "--registry=http://evil",
            "git+https://github.com/a/b.git",
            "github:a/b",
            "a/b",
            "./local",
            "/abs/path",
            "https://x.io/p.tgz",
            "a b",
            "x@",
            "@scope",
            "@scope/",
            "@/x",
            "x@1\n2",
            ".hidden",
            "",
        ] {
            let err = validate(&spec_with(serde_json::json!([{ "name": name }]))).expect_err(name);
            assert_eq!(err.field, "spec.plugins", "{name}");
            assert!(
                err.message.starts_with("spec.plugins[0].name"),
                "{name}: {}",
                err.message
            );
        }
        let err = validate(&spec_with(
            serde_json::json!([{"name": "x", "options": ["not", "an", "object"]}]),
        ))
        .expect_err("array options");
        assert!(
            err.message.contains("options must be an object"),
            "{}",
            err.message
        );
        let err = validate(&spec_with(serde_json::json!([
            {"name": "x@1"}, {"name": "x@2", "target": "server"}
        ])))
        .expect_err("a repeated package");
        assert!(
            err.message.contains("repeats package \"x\""),
            "{}",
            err.message
        );
        let err = validate(&spec_with(serde_json::json!([
            {"name": "@s/x@1"}, {"name": "@s/x@2", "target": "tui"}
        ])))
        .expect_err("two versions");
        assert!(
            err.message.contains("need the same specifier"),
            "{}",
            err.message
        );
        assert_eq!(
            validate(&spec_with(serde_json::json!([
                {"name": "@s/x@1"}, {"name": "@s/x@1", "target": "tui"}
            ]))),
            Ok(())
        );
        assert_eq!(npm_package_name("@s/x@^1"), "@s/x");
        assert_eq!(npm_package_name("@s/x"), "@s/x");
        assert_eq!(npm_package_name("x@1"), "x");
        assert_eq!(npm_package_name("x"), "x");
    }
}
