//! The builders against upstream KubeOpenCode's published examples, read from the directory
//! in $KUBEOC_UPSTREAM_EXAMPLES (`resources/` and `docs/`).

use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::test_support::*;
use super::{
    AGENT_LABEL, BuildSettings, CONTEXT_INIT_CONTAINER, DEFAULT_SYSTEM_IMAGE,
    PLUGIN_INIT_CONTAINER, ServerObjects, build, effective_spec, unsupported, validate,
};
use crate::api::{Agent, AgentSpec, AgentTemplate};

/// Only the environment names the examples: they are not part of this repository, and a
/// missing copy must fail loudly rather than skip the comparison.
fn upstream_dir() -> PathBuf {
    let dir = std::env::var_os("KUBEOC_UPSTREAM_EXAMPLES")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "KUBEOC_UPSTREAM_EXAMPLES is not set: point it at a copy of upstream KubeOpenCode's examples (a directory with resources/ and docs/)"
            )
        });
    assert!(
        dir.join("resources").is_dir(),
        "KUBEOC_UPSTREAM_EXAMPLES={} has no resources/ directory: point it at a copy of upstream KubeOpenCode's examples",
        dir.display()
    );
    dir
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// An upstream Agent with the template it names, looked up in its own file first, then in
/// resources/, then in the other docs.
struct Example {
    file: String,
    agent: Agent,
    template: Option<AgentTemplate>,
}

fn upstream_examples() -> Vec<Example> {
    let mut files = Vec::new();
    for dir in ["resources", "docs"] {
        for path in yaml_files(&upstream_dir().join(dir)) {
            let name = format!(
                "{dir}/{}",
                path.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
            );
            files.push((name, documents(&path)));
        }
    }
    let templates_in = |docs: &[serde_json::Value]| -> Vec<AgentTemplate> {
        docs.iter()
            .filter(|d| d["kind"] == "AgentTemplate")
            .map(|d| serde_json::from_value(d.clone()).expect("an AgentTemplate"))
            .collect()
    };
    let mut examples = Vec::new();
    for (file, docs) in &files {
        for doc in docs.iter().filter(|d| d["kind"] == "Agent") {
            let agent: Agent = serde_json::from_value(doc.clone())
                .unwrap_or_else(|e| panic!("{file}: not an Agent: {e}"));
            let wanted = agent.spec.template_ref.as_ref().map(|t| t.name.clone());
            let template = wanted.and_then(|wanted| {
                let same_file = templates_in(docs);
                let resources = files
                    .iter()
                    .filter(|(f, _)| f.starts_with("resources/"))
                    .flat_map(|(_, d)| templates_in(d));
                let others = files.iter().flat_map(|(_, d)| templates_in(d));
                same_file
                    .into_iter()
                    .chain(resources)
                    .chain(others)
                    .find(|t| t.metadata.name.as_deref() == Some(wanted.as_str()))
            });
            examples.push(Example {
                file: file.clone(),
                agent: with_identity(agent),
                template,
            });
        }
    }
    examples
}

fn example(file: &str, name: &str) -> Example {
    upstream_examples()
        .into_iter()
        .find(|e| e.file.contains(file) && e.agent.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no Agent {name} in {file}"))
}

fn build_example(example: &Example) -> (AgentSpec, ServerObjects) {
    let spec = effective_spec(
        &example.agent.spec,
        example.template.as_ref().map(|t| &t.spec),
    );
    validate(&spec).unwrap_or_else(|e| panic!("{}: {e}", example.file));
    let objects = build(&example.agent, &spec, &BuildSettings::default());
    (spec, objects)
}

#[test]
fn every_upstream_example_agent_builds_what_upstream_creates() {
    let mut built = 0;
    let mut invalid = Vec::new();
    for example in upstream_examples() {
        let what = format!(
            "{} {}",
            example.file,
            example.agent.metadata.name.as_deref().unwrap_or_default()
        );
        let spec = effective_spec(
            &example.agent.spec,
            example.template.as_ref().map(|t| &t.spec),
        );
        match validate(&spec) {
            Err(e) => invalid.push((what, e.field)),
            Ok(()) => {
                let objects = build(&example.agent, &spec, &BuildSettings::default());
                check_upstream_shape(&what, &example.agent, &spec, &objects);
                let pod_spec = spec.pod_spec.clone().unwrap_or_default();
                if pod_spec.security_context.is_none() && pod_spec.pod_security_context.is_none() {
                    check_restricted(&what, pod(&objects));
                }
                assert_eq!(
                    build(&example.agent, &spec, &BuildSettings::default()),
                    objects,
                    "{what}: deterministic"
                );
                built += 1;
            }
        }
    }
    // Upstream fails these at reconcile time too: no workspaceDir or serviceAccountName
    // (039 names a template the examples do not contain).
    assert_eq!(
        invalid,
        [
            (
                "docs/039-website_docs_features_agent-templates.yaml my-agent",
                "spec.workspaceDir"
            ),
            (
                "docs/068-website_docs_features_share-link.yaml team-agent",
                "spec.workspaceDir"
            ),
            (
                "docs/069-website_docs_features_share-link.yaml team-agent",
                "spec.workspaceDir"
            ),
            (
                "docs/070-website_docs_features_skills.yaml my-agent",
                "spec.serviceAccountName"
            ),
        ]
        .map(|(w, f)| (w.to_string(), f))
    );
    assert_eq!(built, 28, "Agents built from the upstream examples");
}

#[test]
fn upstream_team_agent_clones_at_the_workspace_root_and_syncs_in_place() {
    let (spec, objects) = build_example(&example("resources/agent.yaml", "team-agent"));
    let pod = pod(&objects);
    // Template merge: agentImage from team-base, the rest from the Agent.
    assert_eq!(
        spec.agent_image.as_deref(),
        Some("ghcr.io/kubeopencode/kubeopencode-agent-opencode:dev")
    );
    assert_eq!(
        spec.executor_image.as_deref(),
        Some("ghcr.io/kubeopencode/kubeopencode-agent-devbox:dev")
    );
    assert_eq!(
        names(pod.init_containers.as_ref()),
        [
            "opencode-init",
            "git-init-0",
            "git-init-1",
            "git-init-2",
            "context-init"
        ]
    );
    assert_eq!(
        names(Some(&pod.containers)),
        ["opencode-server", "kubeoc-front", "git-sync-0"]
    );

    // The context repository: cloned into its volume, copied into /workspace (mountPath "."),
    // and pulled in place by the sidecar every 5 minutes.
    let clone = container(pod, "git-init-0");
    assert_eq!(clone.image.as_deref(), Some(DEFAULT_SYSTEM_IMAGE));
    let clone_script = script(clone);
    assert!(clone_script.contains("git clone --depth 1 --branch main -- https://github.com/kubeopencode/kubeopencode-agent.git /git/repo"), "{clone_script}");
    assert!(
        clone_script.contains("cp -a /git/repo/. /workspace/"),
        "{clone_script}"
    );
    assert_eq!(mount_at(clone, "/git").name, "git-context-0");
    assert_eq!(mount_at(clone, "/workspace").name, "workspace");
    let sync = container(pod, "git-sync-0");
    let sync_script = script(sync);
    assert!(sync_script.contains("sleep 300"), "{sync_script}");
    assert!(
        sync_script.contains("git -C /workspace pull --ff-only"),
        "{sync_script}"
    );
    assert_eq!(mount_at(sync, "/workspace").name, "workspace");
    let server = server(&objects);
    assert!(
        server
            .volume_mounts
            .iter()
            .flatten()
            .all(|m| m.name != "git-context-0"),
        "the root checkout is a copy, not a mount"
    );

    // Skills: one clone per source, only the named folders mounted, paths in opencode.json.
    assert!(script(container(pod, "git-init-1")).contains(
        "git clone --depth 1 --branch main -- https://github.com/anthropics/skills.git /git/repo"
    ));
    for (path, sub_path) in [
        (
            "/skills/anthropic-skills/skill-creator",
            "repo/skills/skill-creator",
        ),
        (
            "/skills/anthropic-skills/frontend-design",
            "repo/skills/frontend-design",
        ),
        (
            "/skills/anthropic-skills/doc-coauthoring",
            "repo/skills/doc-coauthoring",
        ),
        (
            "/skills/kubeopencode-skills/kubeoc",
            "repo/kubeopencode/skills/kubeoc",
        ),
    ] {
        assert_eq!(
            mount_at(server, path).sub_path.as_deref(),
            Some(sub_path),
            "{path}"
        );
    }
    let cm = objects
        .context_config_map
        .as_ref()
        .expect("context ConfigMap");
    assert_eq!(
        cm.metadata.name.as_deref(),
        Some("team-agent-server-context")
    );
    let config: serde_json::Value =
        serde_json::from_str(&cm.data.as_ref().expect("data")["tools-opencode.json"])
            .expect("JSON");
    assert_eq!(config["model"], "opencode/big-pickle");
    assert_eq!(
        config["skills"]["paths"],
        serde_json::json!([
            "/skills/anthropic-skills/skill-creator",
            "/skills/anthropic-skills/frontend-design",
            "/skills/anthropic-skills/doc-coauthoring",
            "/skills/kubeopencode-skills/kubeoc"
        ])
    );
    assert!(
        script(container(pod, "context-init"))
            .contains("cp /configmap-files/tools-opencode.json /tools/opencode.json")
    );
    assert_eq!(
        size(objects.workspace_pvc.as_ref().expect("workspace PVC")),
        "5Gi"
    );
    assert!(unsupported(&spec).is_empty(), "{:?}", unsupported(&spec));
}

#[test]
fn agent_with_template_pairs_from_the_docs() {
    // 067: no podSpec on the Agent -> the template's (systemContainers included).
    let inherits = example("067-", "my-agent");
    let (spec, _) = build_example(&inherits);
    assert_eq!(spec.workspace_dir.as_deref(), Some("/workspace"));
    assert_eq!(
        spec.pod_spec,
        inherits
            .template
            .as_ref()
            .and_then(|t| t.spec.pod_spec.clone())
    );
    // An own podSpec replaces the template's whole.
    let custom = example("067-", "my-agent-custom");
    let (spec, objects) = build_example(&custom);
    assert_eq!(spec.pod_spec, custom.agent.spec.pod_spec);
    let limits = server(&objects)
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .expect("limits");
    assert_eq!(limits["memory"].0, "8Gi");
    // vscode: extra port from the Agent, images from the Agent over team-base.
    let (spec, objects) = build_example(&example("agent-vscode", "vscode-agent"));
    assert_eq!(
        spec.executor_image.as_deref(),
        Some("quay.io/kubeopencode/kubeopencode-agent-devbox-vscode:dev")
    );
    let ports = objects
        .service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .expect("ports");
    assert_eq!(ports[1].name.as_deref(), Some("vscode"));
    assert_eq!(ports[1].target_port, Some(IntOrString::Int(8080)));
    let hook = server(&objects)
        .lifecycle
        .as_ref()
        .and_then(|l| l.post_start.as_ref())
        .and_then(|h| h.exec.as_ref())
        .and_then(|e| e.command.clone());
    assert_eq!(
        hook,
        Some(vec!["/usr/local/bin/start-code-server.sh".to_string()])
    );
}

#[test]
fn unsupported_fields_are_reported() {
    let share = example("039-", "my-agent");
    let notes = unsupported(&share.agent.spec);
    assert_eq!(notes.len(), 1);
    assert!(notes[0].starts_with("spec.share"), "{notes:?}");
    // Plugins are installed now: no note.
    let (spec, _) = build_example(&example("agent-plugins", "plugin-test-agent"));
    assert!(unsupported(&spec).is_empty(), "{:?}", unsupported(&spec));
    assert!(unsupported(&seed_agent().spec).is_empty());
}

#[test]
fn suspend_scales_to_zero_and_keeps_the_rest() {
    let (spec, objects) = build_example(&example("054-", "suspendable-agent"));
    assert_eq!(spec.suspend, Some(true));
    assert_eq!(
        objects.deployment.spec.as_ref().and_then(|s| s.replicas),
        Some(0)
    );
    let mut running = example("054-", "suspendable-agent").agent;
    running.spec.suspend = Some(false);
    let resumed = build_agent(&running);
    assert_eq!(
        resumed.deployment.spec.as_ref().and_then(|s| s.replicas),
        Some(1)
    );
    assert_eq!(resumed.service, objects.service);
    assert_eq!(resumed.sessions_pvc, objects.sessions_pvc);
}

#[test]
fn pod_spec_overrides_apply_last() {
    // Labels, runtime class, scheduling.
    let (_, objects) = build_example(&example("061-", "advanced-agent"));
    let pod_spec = pod(&objects);
    assert_eq!(pod_spec.runtime_class_name.as_deref(), Some("gvisor"));
    assert_eq!(
        pod_spec
            .node_selector
            .as_ref()
            .map(|n| n["node-type"].as_str()),
        Some("ai-workload")
    );
    assert_eq!(
        pod_spec.tolerations.as_ref().map(|t| t[0].key.as_deref()),
        Some(Some("dedicated"))
    );
    let labels = objects
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .expect("labels");
    assert_eq!(labels["network-policy"], "agent-restricted");
    assert_eq!(labels[AGENT_LABEL], "advanced-agent");
    assert_eq!(
        objects
            .deployment
            .metadata
            .labels
            .as_ref()
            .map(|l| l["network-policy"].as_str()),
        Some("agent-restricted")
    );
    // A user label cannot take over the selector.
    let mut hijack = example("061-", "advanced-agent").agent;
    if let Some(labels) = hijack
        .spec
        .pod_spec
        .as_mut()
        .and_then(|p| p.labels.as_mut())
    {
        labels.insert(AGENT_LABEL.to_string(), "other".to_string());
    }
    let objects = build_agent(&hijack);
    let labels = objects
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .expect("labels");
    assert_eq!(labels[AGENT_LABEL], "advanced-agent");

    // Pod security context replaces ours; containers follow its uid.
    let (_, objects) = build_example(&example("060-", "uid-agent"));
    let sc = pod(&objects)
        .security_context
        .clone()
        .expect("pod security context");
    assert_eq!(
        (sc.run_as_user, sc.run_as_group, sc.fs_group),
        (Some(1000), Some(1000), Some(1000))
    );
    assert_eq!(sc.run_as_non_root, None);
    for c in all_containers(pod(&objects)) {
        let csc = c.security_context.clone().expect("security context");
        assert_eq!(
            (csc.run_as_user, csc.run_as_non_root),
            (None, Some(true)),
            "{}",
            c.name
        );
    }
    // Root (dind): the server's own security context wins, helpers don't claim non-root.
    let (_, objects) = build_example(&example("agent-dind", "dind-agent"));
    let server_sc = server(&objects)
        .security_context
        .clone()
        .expect("security context");
    assert_eq!(server_sc.privileged, Some(true));
    let init_sc = container(pod(&objects), "opencode-init")
        .security_context
        .clone()
        .expect("security context");
    assert_eq!(
        (
            init_sc.run_as_user,
            init_sc.run_as_non_root,
            init_sc.allow_privilege_escalation
        ),
        (None, None, Some(false))
    );
    // Container security context (hardened): taken as written.
    let (_, objects) = build_example(&example("059-", "hardened-agent"));
    assert_eq!(
        server(&objects)
            .security_context
            .as_ref()
            .and_then(|s| s.read_only_root_filesystem),
        Some(true)
    );
    check_restricted("hardened", pod(&objects));

    // extraEnv comes last, on every container.
    let (_, objects) = build_example(&example("063-", "corp-agent"));
    let env = env_names(server(&objects));
    assert_eq!(
        env[env.len() - 3..],
        ["CORPORATE_REGISTRY", "NPM_TOKEN", "ENVIRONMENT"]
    );
    assert_eq!(
        env_names(container(pod(&objects), "opencode-init")).last(),
        Some(&"ENVIRONMENT")
    );

    // systemContainers overrides and extra volumes (065 has no Git context, so only the
    // server gets the mount; give it one to see gitInit/gitSync).
    let mut corp = example("065-", "corp-git-agent").agent;
    corp.spec.contexts = Some(vec![serde_json::from_value(serde_json::json!({
        "type": "Git", "mountPath": "src", "git": {"repository": "https://git.corp/x.git", "sync": {"enabled": true}}
    })).expect("a context")]);
    let objects = build_agent(&corp);
    check_consistent("corp", &objects);
    let corp_pod = pod(&objects);
    assert!(volume(corp_pod, "corp-ca").config_map.is_some());
    assert_eq!(mount_at(server(&objects), "/etc/ssl/corp").name, "corp-ca");
    for name in ["git-init-0", "git-sync-0"] {
        let c = container(corp_pod, name);
        assert_eq!(
            env_value_of(c, "GIT_SSL_CAINFO"),
            "/etc/ssl/corp/tls.crt",
            "{name}"
        );
        assert_eq!(
            env_names(c).last(),
            Some(&"GIT_SSL_CAINFO"),
            "{name}: overrides last"
        );
        assert_eq!(mount_at(c, "/etc/ssl/corp").read_only, Some(true));
    }
    assert!(!env_names(container(corp_pod, "opencode-init")).contains(&"GIT_SSL_CAINFO"));

    // imagePullSecrets.
    let (_, objects) = build_example(&example("048-", "private-registry-agent"));
    let secrets: Vec<_> = pod(&objects)
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(secrets, ["harbor-registry-secret", "gcr-secret"]);
    assert_eq!(
        container(pod(&objects), "opencode-init").image.as_deref(),
        Some("registry.corp.example.com/kubeopencode/agent-opencode:latest")
    );
}

#[test]
fn ca_bundle_and_proxy_from_the_docs() {
    let (_, objects) = build_example(&example("044-", "internal-agent"));
    let ca = volume(pod(&objects), "ca-bundle")
        .config_map
        .as_ref()
        .expect("a ConfigMap volume");
    assert_eq!(ca.name, "custom-ca-bundle");
    assert_eq!(
        ca.items
            .as_ref()
            .map(|i| (i[0].key.as_str(), i[0].path.as_str())),
        Some(("ca-bundle.crt", "tls.crt"))
    );
    // Every container that talks to the outside; the front only reaches loopback.
    for c in all_containers(pod(&objects)).filter(|c| c.name != super::FRONT_CONTAINER) {
        assert_eq!(
            env_value_of(c, "CUSTOM_CA_CERT_PATH"),
            "/etc/ssl/certs/custom-ca/tls.crt",
            "{}",
            c.name
        );
    }
    let (_, objects) = build_example(&example("046-", "enterprise-agent"));
    let server = server(&objects);
    assert_eq!(
        env_value_of(server, "http_proxy"),
        "http://proxy.corp.example.com:8080"
    );
    assert_eq!(
        env_value_of(server, "NO_PROXY"),
        "localhost,127.0.0.1,10.0.0.0/8,.corp.example.com,.svc,.cluster.local"
    );
}

#[test]
fn upstream_plugin_agent_installs_with_npm_and_loads_from_the_volume() {
    let (_, objects) = build_example(&example("agent-plugins", "plugin-test-agent"));
    let pod = pod(&objects);
    // plugin-init runs after opencode-init, before context-init, in the npm image.
    assert_eq!(
        names(pod.init_containers.as_ref()),
        ["opencode-init", "plugin-init", "context-init"]
    );
    let init = container(pod, PLUGIN_INIT_CONTAINER);
    assert_eq!(init.image.as_deref(), Some("node:22-alpine"));
    assert_eq!(init.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        script(init),
        "set -eu\n\
         npm install --prefix /plugins --no-audit --no-fund --ignore-scripts -- cc-safety-net plugin-gentleman\n\
         npm ls --prefix /plugins --depth=0 || true\n\
         rm -rf /plugins/.npm-cache"
    );
    assert_eq!(env_value_of(init, "HOME"), "/tmp");
    assert_eq!(
        env_value_of(init, "npm_config_cache"),
        "/plugins/.npm-cache"
    );
    // The volume: written by plugin-init, read-only for the server.
    assert!(volume(pod, "plugins-volume").empty_dir.is_some());
    let written = mount_at(init, "/plugins");
    assert_eq!(
        (written.name.as_str(), written.read_only),
        ("plugins-volume", None)
    );
    let server = server(&objects);
    let loaded = mount_at(server, "/plugins");
    assert_eq!(
        (loaded.name.as_str(), loaded.read_only),
        ("plugins-volume", Some(true))
    );
    assert!(
        container(pod, CONTEXT_INIT_CONTAINER)
            .volume_mounts
            .iter()
            .flatten()
            .all(|m| m.mount_path != "/plugins")
    );
    // The server plugin in opencode.json, next to the user's config; the TUI plugin only
    // in tui.json.
    let config = config_json(&objects, "tools-opencode.json");
    assert_eq!(
        config["plugin"],
        serde_json::json!(["file:///plugins/node_modules/cc-safety-net"])
    );
    assert_eq!(config["model"], "opencode/big-pickle");
    let tui = config_json(&objects, "tools-tui.json");
    assert_eq!(
        tui,
        serde_json::json!({
            "$schema": "https://opencode.ai/tui.json",
            "plugin": ["file:///plugins/node_modules/plugin-gentleman"],
        })
    );
    assert_eq!(
        env_value_of(server, "OPENCODE_CONFIG"),
        "/tools/opencode.json"
    );
    assert_eq!(
        env_value_of(server, "OPENCODE_TUI_CONFIG"),
        "/tools/tui.json"
    );
    let copy = script(container(pod, CONTEXT_INIT_CONTAINER));
    assert!(
        copy.contains("cp /configmap-files/tools-tui.json /tools/tui.json"),
        "{copy}"
    );
    check_restricted("agent-plugins", pod);
    check_consistent("agent-plugins", &objects);
}

#[test]
fn plugin_options_scopes_and_versions_from_the_docs() {
    // 056: a scoped plugin with options, no inline config.
    let (_, objects) = build_example(&example("056-", "my-agent"));
    assert_eq!(
        config_json(&objects, "tools-opencode.json")["plugin"],
        serde_json::json!([
            "file:///plugins/node_modules/cc-safety-net",
            [
                "file:///plugins/node_modules/@nicholasgriffintn/opencode-plugin-otel",
                {"endpoint": "http://otel-collector:4318"}
            ],
        ])
    );
    let pod_056 = pod(&objects);
    assert_eq!(
        npm_arguments(script(container(pod_056, PLUGIN_INIT_CONTAINER))),
        [
            "install",
            "--prefix",
            "/plugins",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--",
            "cc-safety-net",
            "@nicholasgriffintn/opencode-plugin-otel",
        ]
    );
    // No TUI plugin: no tui.json and no OPENCODE_TUI_CONFIG.
    let server = server(&objects);
    assert!(!env_names(server).contains(&"OPENCODE_TUI_CONFIG"));
    assert!(
        !objects
            .context_config_map
            .as_ref()
            .and_then(|c| c.data.as_ref())
            .expect("data")
            .contains_key("tools-tui.json")
    );

    // 066: a pinned scoped version; pluginInit overrides reach plugin-init only.
    let (_, objects) = build_example(&example("066-", "plugin-agent"));
    let pod = pod(&objects);
    let init = container(pod, PLUGIN_INIT_CONTAINER);
    assert!(script(init).contains("-- @corp/opencode-plugin@1.0.0\n"));
    assert_eq!(
        config_json(&objects, "tools-opencode.json")["plugin"],
        serde_json::json!(["file:///plugins/node_modules/@corp/opencode-plugin"])
    );
    assert_eq!(
        env_value_of(init, "NPM_CONFIG_REGISTRY"),
        "https://npm.corp.example.com"
    );
    assert_eq!(
        secret_ref(env(init, "NPM_TOKEN")),
        ("npm-credentials", "token")
    );
    for c in all_containers(pod).filter(|c| c.name != PLUGIN_INIT_CONTAINER) {
        assert!(!env_names(c).contains(&"NPM_TOKEN"), "{}", c.name);
    }

    // 058: plugins from an AgentTemplate reach an Agent without its own.
    let path = upstream_dir().join("docs/058-website_docs_features_plugins.yaml");
    let template: AgentTemplate =
        serde_json::from_value(documents(&path).remove(0)).expect("an AgentTemplate");
    let agent = agent_yaml(
        r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: a}
spec:
  templateRef: {name: base-template}
"#,
    );
    let spec = effective_spec(&agent.spec, Some(&template.spec));
    validate(&spec).expect("valid");
    let objects = build(&agent, &spec, &BuildSettings::default());
    assert_eq!(
        config_json(&objects, "tools-opencode.json")["plugin"][0][0],
        "file:///plugins/node_modules/@nicholasgriffintn/opencode-plugin-otel"
    );
}
