//! spec.plugins: installed by plugin-init with npm, loaded by OpenCode from the plugins volume.

use super::PLUGINS_MOUNT_PATH;
use super::paths::sh_quote;
use crate::api::agent::{PluginSpec, PluginTarget};

/// npm's cache during plugin-init: on the plugins volume (not $HOME, which may be read-only
/// or shared), removed after the install.
pub(super) const NPM_CACHE_DIR: &str = "/plugins/.npm-cache";

/// What spec.plugins turns into.
#[derive(Debug, Default, PartialEq)]
pub(super) struct PluginPlan {
    /// npm specifiers for plugin-init, in spec order, each once.
    pub(super) install: Vec<String>,
    /// `plugin` entries of opencode.json (target server).
    pub(super) server: Vec<serde_json::Value>,
    /// `plugin` entries of tui.json (target tui).
    pub(super) tui: Vec<serde_json::Value>,
}

/// Every plugin is installed; each is loaded from its installed directory. OpenCode 1.18.33
/// takes a `plugin` entry as `"file:///..."` or, with options, `["file:///...", {options}]`
/// and calls the plugin with the options as its second argument (both shapes checked with
/// the real binary, offline). Server plugins go to opencode.json, which `opencode serve`
/// loads. TUI plugins go to tui.json (OPENCODE_TUI_CONFIG, as upstream): `opencode serve`
/// does not read that file, but `opencode attach` run inside the server container (e.g. `kubectl
/// exec -it`) loads them; a TUI running elsewhere (`kubectl kubeoc agent attach --opencode`,
/// a laptop's `opencode attach`) reads its own machine's tui.json and cannot see /plugins.
///
/// Two 1.18.33 behaviours follow from loading by path (as upstream does): a plugin in the
/// newer form (default export `{id, server}`) must carry an `id`, which OpenCode only derives
/// from package.json for npm-name entries; and with any plugin configured, OpenCode first
/// installs its plugin SDK into its own config directory from the registry and waits for
/// that, so the server container needs the same registry (podSpec.extraEnv reaches it; when
/// unreachable the first request waits about a minute for npm's retries).
pub(super) fn plan_plugins(plugins: &[PluginSpec]) -> PluginPlan {
    let mut plan = PluginPlan::default();
    for plugin in plugins {
        if !plan.install.contains(&plugin.name) {
            plan.install.push(plugin.name.clone());
        }
        let url = format!(
            "file://{PLUGINS_MOUNT_PATH}/node_modules/{}",
            npm_package_name(&plugin.name)
        );
        let entry = match &plugin.options {
            Some(options) => serde_json::json!([url, options]),
            None => serde_json::Value::String(url),
        };
        match plugin_target(plugin) {
            PluginTarget::Server => plan.server.push(entry),
            PluginTarget::Tui => plan.tui.push(entry),
        }
    }
    plan
}

/// The plugin-init script: one `npm install` of every specifier into /plugins. `--` ends
/// npm's options, so no specifier is read as a flag; `--ignore-scripts` as OpenCode's own
/// plugin installer does (plugins cannot rely on install scripts there either). The registry,
/// proxy and CA come from the environment (`npm_config_registry` in podSpec.extraEnv or
/// systemContainers.pluginInit.extraEnv, HTTP(S)_PROXY/NO_PROXY, NODE_EXTRA_CA_CERTS).
pub(super) fn plugin_init_script(specifiers: &[String]) -> String {
    let words: Vec<String> = specifiers.iter().map(|s| sh_quote(s)).collect();
    [
        "set -eu".to_string(),
        format!(
            "npm install --prefix {PLUGINS_MOUNT_PATH} --no-audit --no-fund --ignore-scripts -- {}",
            words.join(" ")
        ),
        format!("npm ls --prefix {PLUGINS_MOUNT_PATH} --depth=0 || true"),
        format!("rm -rf {NPM_CACHE_DIR}"),
    ]
    .join("\n")
}

/// The package part of an npm specifier: `@scope/name@^1` -> `@scope/name`, `name@1` -> `name`;
/// where npm installs it under node_modules.
pub(super) fn npm_package_name(specifier: &str) -> &str {
    let version_at = match specifier.strip_prefix('@') {
        Some(rest) => rest.find('@').map(|i| i + 1),
        None => specifier.find('@'),
    };
    version_at.map_or(specifier, |i| &specifier[..i])
}

pub(super) fn plugin_target(plugin: &PluginSpec) -> PluginTarget {
    plugin.target.unwrap_or(PluginTarget::Server)
}

#[cfg(test)]
mod tests {
    use crate::controller::pod::test_support::*;
    use crate::controller::pod::{BuildSettings, PLUGIN_INIT_CONTAINER, build, validate};

    #[test]
    fn plugin_specifiers_reach_npm_exactly_as_written() {
        let agent = agent_yaml(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: a}
spec:
  workspaceDir: /w
  serviceAccountName: sa
  plugins:
    - name: "range-plugin@>=1.0.0 <2.0.0"
    - name: "@scope/quoted@1.0.0-it's"
    - name: "tagged@$(echo injected)`id`"
    - name: "both@^2"
    - name: "both@^2"
      target: tui
      options: {theme: dark}
"#,
        );
        let objects = build_agent(&agent);
        let init = container(pod(&objects), PLUGIN_INIT_CONTAINER);
        let args = npm_arguments(script(init));
        let after = args
            .iter()
            .position(|a| a == "--")
            .map(|i| &args[i + 1..])
            .expect("--");
        // Each specifier one argument, unexpanded; the package listed twice installs once.
        assert_eq!(
            after,
            [
                "range-plugin@>=1.0.0 <2.0.0",
                "@scope/quoted@1.0.0-it's",
                "tagged@$(echo injected)`id`",
                "both@^2",
            ]
        );
        assert_eq!(
            config_json(&objects, "tools-opencode.json")["plugin"],
            serde_json::json!([
                "file:///plugins/node_modules/range-plugin",
                "file:///plugins/node_modules/@scope/quoted",
                "file:///plugins/node_modules/tagged",
                "file:///plugins/node_modules/both",
            ])
        );
        assert_eq!(
            config_json(&objects, "tools-tui.json")["plugin"],
            serde_json::json!([["file:///plugins/node_modules/both", {"theme": "dark"}]])
        );
    }

    #[test]
    fn plugins_merge_after_the_users_config_plugins() {
        let agent = agent_yaml(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: a}
spec:
  workspaceDir: /w
  serviceAccountName: sa
  config:
    model: m/x
    plugin:
      - opencode-wakatime
      - ["file:///plugins/node_modules/mine", {from: user}]
  plugins:
    - name: mine@1.2.3
      options: {from: spec}
    - name: other
      options: {level: 2}
"#,
        );
        let objects = build_agent(&agent);
        let config = config_json(&objects, "tools-opencode.json");
        // The user's entries first and as written; spec.plugins' entry for a URL the user
        // already lists is dropped (the user's options win); the rest appended.
        assert_eq!(
            config["plugin"],
            serde_json::json!([
                "opencode-wakatime",
                ["file:///plugins/node_modules/mine", {"from": "user"}],
                ["file:///plugins/node_modules/other", {"level": 2}],
            ])
        );
        assert_eq!(config["model"], "m/x");
        // Still installed: the user's entry loads what plugin-init installs.
        let init = container(pod(&objects), PLUGIN_INIT_CONTAINER);
        assert!(
            script(init).contains("-- mine@1.2.3 other\n"),
            "{}",
            script(init)
        );
        // Plugins alone are enough for an opencode.json.
        let only = agent_yaml(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: a}
spec:
  workspaceDir: /w
  serviceAccountName: sa
  plugins: [{name: solo}]
"#,
        );
        let objects = build_agent(&only);
        assert_eq!(
            config_json(&objects, "tools-opencode.json"),
            serde_json::json!({"plugin": ["file:///plugins/node_modules/solo"]})
        );
        // No plugins: no plugin-init, no volume.
        let objects = build_agent(&seed_agent());
        assert!(
            all_containers(pod(&objects)).all(|c| c.name != PLUGIN_INIT_CONTAINER),
            "seed agent"
        );
        assert!(
            pod(&objects)
                .volumes
                .iter()
                .flatten()
                .all(|v| v.name != "plugins-volume")
        );
    }

    #[test]
    fn plugin_init_gets_proxy_ca_registry_and_its_image_setting() {
        let agent = agent_yaml(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: a}
spec:
  workspaceDir: /w
  serviceAccountName: sa
  plugins: [{name: p}]
  caBundle: {configMapRef: {name: corp-ca}}
  proxy: {httpsProxy: "http://proxy:3128", noProxy: "10.0.0.0/8"}
  podSpec:
    extraEnv:
      - {name: npm_config_registry, value: "http://registry.local:4873/"}
"#,
        );
        let settings = BuildSettings {
            plugin_image: "registry.local/node:22".to_string(),
            ..BuildSettings::default()
        };
        validate(&agent.spec).expect("valid");
        let objects = build(&agent, &agent.spec, &settings);
        let init = container(pod(&objects), PLUGIN_INIT_CONTAINER);
        assert_eq!(init.image.as_deref(), Some("registry.local/node:22"));
        for (name, value) in [
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("https_proxy", "http://proxy:3128"),
            ("NO_PROXY", "10.0.0.0/8,.svc,.cluster.local"),
            ("NODE_EXTRA_CA_CERTS", "/etc/ssl/certs/custom-ca/tls.crt"),
            ("npm_config_registry", "http://registry.local:4873/"),
        ] {
            assert_eq!(env_value_of(init, name), value, "{name}");
        }
        // The user's environment comes after ours, so it can replace npm's cache too.
        let names = env_names(init);
        let position = |n: &str| names.iter().position(|x| *x == n).expect(n);
        assert!(position("npm_config_cache") < position("npm_config_registry"));
        assert_eq!(mount_at(init, "/etc/ssl/certs/custom-ca").name, "ca-bundle");
        check_restricted("plugin-init with CA and proxy", pod(&objects));
    }
}
