//! Fixtures, accessors and invariant checks shared by the builders' unit tests.

use std::path::Path;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, PersistentVolumeClaim, PodSpec, Probe, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    AGENT_LABEL, BuildSettings, CONTEXT_HASH_ANNOTATION, DEFAULT_AGENT_IMAGE,
    DEFAULT_EXECUTOR_IMAGE, SERVER_CONTAINER, ServerObjects, build, owner_reference,
    selector_labels, server_labels, server_port, validate,
};
use crate::api::{Agent, AgentSpec};

pub(super) fn documents(path: &Path) -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

pub(super) fn with_identity(mut agent: Agent) -> Agent {
    agent
        .metadata
        .namespace
        .get_or_insert_with(|| "team".to_string());
    agent.metadata.uid = Some("4f1c2a9e-0000-4000-8000-000000000001".to_string());
    agent
}

pub(super) fn agent_yaml(yaml: &str) -> Agent {
    with_identity(serde_saphyr::from_str(yaml).expect("an Agent"))
}

/// The repository's examples/team-agent.yaml: the seed's Agent, plus a Text context without
/// mountPath and standby.
pub(super) fn seed_agent() -> Agent {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/team-agent.yaml");
    let doc = documents(&path).remove(0);
    with_identity(serde_json::from_value(doc).expect("the seed is an Agent"))
}

pub(super) fn build_agent(agent: &Agent) -> ServerObjects {
    validate(&agent.spec).expect("a valid spec");
    build(agent, &agent.spec, &BuildSettings::default())
}

pub(super) fn pod(objects: &ServerObjects) -> &PodSpec {
    objects
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec")
}

pub(super) fn all_containers(pod: &PodSpec) -> impl Iterator<Item = &Container> {
    pod.init_containers.iter().flatten().chain(&pod.containers)
}

pub(super) fn container<'a>(pod: &'a PodSpec, name: &str) -> &'a Container {
    all_containers(pod)
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

pub(super) fn server(objects: &ServerObjects) -> &Container {
    container(pod(objects), SERVER_CONTAINER)
}

pub(super) fn names(containers: Option<&Vec<Container>>) -> Vec<&str> {
    containers
        .into_iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect()
}

pub(super) fn env_names(c: &Container) -> Vec<&str> {
    c.env.iter().flatten().map(|e| e.name.as_str()).collect()
}

pub(super) fn env<'a>(c: &'a Container, name: &str) -> &'a EnvVar {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{}: no env {name}", c.name))
}

pub(super) fn env_value_of<'a>(c: &'a Container, name: &str) -> &'a str {
    env(c, name).value.as_deref().unwrap_or_default()
}

pub(super) fn secret_ref(e: &EnvVar) -> (&str, &str) {
    let s = e
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .unwrap_or_else(|| panic!("{} is not from a Secret", e.name));
    (s.name.as_str(), s.key.as_str())
}

pub(super) fn mount_at<'a>(c: &'a Container, path: &str) -> &'a VolumeMount {
    c.volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == path)
        .unwrap_or_else(|| panic!("{}: nothing mounted at {path}", c.name))
}

pub(super) fn volume<'a>(pod: &'a PodSpec, name: &str) -> &'a Volume {
    pod.volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

pub(super) fn script(c: &Container) -> &str {
    let command = c.command.as_deref().unwrap_or_default();
    assert_eq!(
        command.get(..2),
        Some(&["sh".to_string(), "-c".to_string()][..]),
        "{}",
        c.name
    );
    command[2].as_str()
}

pub(super) fn size(pvc: &PersistentVolumeClaim) -> &str {
    &pvc.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .expect("requests")["storage"]
        .0
}

pub(super) fn tcp_port(probe: Option<&Probe>) -> Option<&IntOrString> {
    probe.and_then(|p| p.tcp_socket.as_ref()).map(|t| &t.port)
}

pub(super) const LEADING_ENV: [&str; 9] = [
    "HOME",
    "SHELL",
    "PATH",
    "WORKSPACE_DIR",
    "OPENCODE_DB",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "OPENCODE_SERVER_PASSWORD",
    "OPENCODE_DISABLE_AUTOUPDATE",
];

pub(super) fn check_upstream_shape(
    what: &str,
    agent: &Agent,
    spec: &AgentSpec,
    objects: &ServerObjects,
) {
    let name = agent.metadata.name.as_deref().expect("a name");
    let labels = server_labels(name);
    let port = server_port(spec);
    let workspace = spec.workspace_dir.as_deref().expect("workspaceDir");

    // Names, labels, ownership.
    let deployment = &objects.deployment;
    assert_eq!(
        deployment.metadata.name.as_deref(),
        Some(format!("{name}-server").as_str()),
        "{what}"
    );
    assert_eq!(
        objects.service.metadata.name.as_deref(),
        Some(name),
        "{what}"
    );
    assert_eq!(
        objects.sessions_pvc.metadata.name.as_deref(),
        Some(format!("{name}-server-sessions").as_str()),
        "{what}"
    );
    let mut metas = vec![
        &deployment.metadata,
        &objects.service.metadata,
        &objects.sessions_pvc.metadata,
    ];
    metas.extend(objects.workspace_pvc.as_ref().map(|p| &p.metadata));
    metas.extend(objects.context_config_map.as_ref().map(|c| &c.metadata));
    for meta in metas {
        let object_labels = meta.labels.as_ref().expect("labels");
        for (k, v) in &labels {
            assert_eq!(
                object_labels.get(k),
                Some(v),
                "{what}: {:?} label {k}",
                meta.name
            );
        }
        assert_eq!(meta.namespace, agent.metadata.namespace, "{what}");
        assert_eq!(
            meta.owner_references.as_deref(),
            Some(&[owner_reference(agent)][..]),
            "{what}"
        );
    }
    let owner = owner_reference(agent);
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    assert_eq!(
        (owner.kind.as_str(), owner.api_version.as_str()),
        ("Agent", "kubeopencode.io/v1alpha1")
    );

    // Deployment.
    let dspec = deployment.spec.as_ref().expect("deployment spec");
    let replicas = if spec.suspend == Some(true) { 0 } else { 1 };
    assert_eq!(dspec.replicas, Some(replicas), "{what}");
    assert_eq!(
        dspec.selector.match_labels.as_ref(),
        Some(&selector_labels(name)),
        "{what}"
    );
    assert_eq!(
        dspec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("Recreate"),
        "{what}"
    );
    let template_labels = dspec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .expect("pod labels");
    assert_eq!(
        template_labels.get(AGENT_LABEL).map(String::as_str),
        Some(name),
        "{what}"
    );
    let pod = pod(objects);
    assert_eq!(
        pod.service_account_name, spec.service_account_name,
        "{what}"
    );

    // Init containers: opencode-init first, with the agent image's own entrypoint.
    let init = &pod.init_containers.as_ref().expect("init containers")[0];
    assert_eq!(init.name, "opencode-init", "{what}");
    let agent_image = spec.agent_image.as_deref().unwrap_or(DEFAULT_AGENT_IMAGE);
    assert_eq!(init.image.as_deref(), Some(agent_image), "{what}");
    assert_eq!(init.command, None, "{what}");
    assert_eq!(mount_at(init, "/tools").name, "tools", "{what}");

    // The server container.
    let server = server(objects);
    assert_eq!(pod.containers[0].name, "opencode-server", "{what}");
    let executor_image = spec
        .executor_image
        .as_deref()
        .unwrap_or(DEFAULT_EXECUTOR_IMAGE);
    assert_eq!(server.image.as_deref(), Some(executor_image), "{what}");
    // OpenCode on loopback only, behind the front on the Service port.
    let upstream = super::opencode_port(spec);
    assert_ne!(upstream, port, "{what}");
    let upstream_text = upstream.to_string();
    assert_eq!(
        server.command.as_deref(),
        Some(
            &[
                "/tools/opencode",
                "serve",
                "--port",
                upstream_text.as_str(),
                "--hostname",
                "127.0.0.1"
            ]
            .map(String::from)[..]
        ),
        "{what}"
    );
    let front = pod
        .containers
        .iter()
        .find(|c| c.name == "kubeoc-front")
        .expect("the front container");
    assert_eq!(
        front.command.as_deref(),
        Some(
            &[
                "/usr/local/bin/kubectl-kubeoc".to_string(),
                "front".to_string(),
                "--listen".to_string(),
                format!("0.0.0.0:{port}"),
                "--upstream".to_string(),
                format!("127.0.0.1:{upstream}"),
            ][..]
        ),
        "{what}"
    );
    assert_eq!(
        secret_ref(env(front, "OPENCODE_SERVER_PASSWORD")),
        (format!("{name}-server-auth").as_str(), "password"),
        "{what}: the front reads the password from the Secret, never from its arguments"
    );
    assert_eq!(server.working_dir.as_deref(), Some(workspace), "{what}");
    assert_eq!(
        env_names(server)[..LEADING_ENV.len()],
        LEADING_ENV,
        "{what}"
    );
    assert!(
        env_value_of(server, "PATH").starts_with("/tools:"),
        "{what}"
    );
    assert_eq!(env_value_of(server, "WORKSPACE_DIR"), workspace, "{what}");
    assert_eq!(
        env_value_of(server, "OPENCODE_DB"),
        "/data/sessions/opencode.db",
        "{what}"
    );
    assert!(
        env_value_of(server, "XDG_DATA_HOME").starts_with("/data/sessions/"),
        "{what}"
    );
    assert!(
        env_value_of(server, "XDG_STATE_HOME").starts_with("/data/sessions/"),
        "{what}"
    );
    assert_eq!(
        secret_ref(env(server, "OPENCODE_SERVER_PASSWORD")),
        (format!("{name}-server-auth").as_str(), "password"),
        "{what}"
    );
    if spec
        .config
        .as_ref()
        .is_some_and(|c| c.get("permission").is_none())
        || spec.config.is_none()
    {
        assert_eq!(
            env_value_of(server, "OPENCODE_PERMISSION"),
            r#"{"*":"allow"}"#,
            "{what}"
        );
    }
    if let Some(config) = &spec.config {
        assert_eq!(
            env_value_of(server, "OPENCODE_CONFIG"),
            "/tools/opencode.json",
            "{what}"
        );
        let cm = objects
            .context_config_map
            .as_ref()
            .expect("a context ConfigMap");
        let written: serde_json::Value =
            serde_json::from_str(&cm.data.as_ref().expect("data")["tools-opencode.json"])
                .expect("JSON");
        for (k, v) in config.as_object().expect("an object") {
            if k != "instructions" && k != "skills" && k != "plugin" {
                assert_eq!(&written[k], v, "{what}: config key {k}");
            }
        }
    }
    assert_eq!(mount_at(server, "/tools").name, "tools", "{what}");
    assert_eq!(mount_at(server, workspace).name, "workspace", "{what}");
    assert_eq!(
        mount_at(server, "/data/sessions").name,
        "session-data",
        "{what}"
    );

    // Ports and probes.
    let extra = spec.extra_ports.clone().unwrap_or_default();
    let mut expected_ports = vec![("http".to_string(), port)];
    expected_ports.extend(extra.iter().map(|p| (p.name.clone(), p.port)));
    let container_ports: Vec<_> = [front, server]
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
        .collect();
    assert_eq!(container_ports, expected_ports, "{what}");
    let sspec = objects.service.spec.as_ref().expect("service spec");
    assert_eq!(sspec.type_.as_deref(), Some("ClusterIP"), "{what}");
    assert_eq!(
        sspec.selector.as_ref(),
        Some(&selector_labels(name)),
        "{what}"
    );
    let service_ports: Vec<_> = sspec
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.port))
        .collect();
    assert_eq!(service_ports, expected_ports, "{what}");
    // The server's probes ask the front's readiness path (OpenCode accepts connections).
    for probe in [
        &server.readiness_probe,
        &server.liveness_probe,
        &server.startup_probe,
        &front.readiness_probe,
    ] {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref());
        assert_eq!(
            get.map(|g| (g.path.as_deref(), &g.port)),
            Some((Some(crate::front::READY_PATH), &IntOrString::Int(port))),
            "{what}"
        );
    }
    assert_eq!(
        tcp_port(front.liveness_probe.as_ref()),
        Some(&IntOrString::Int(port)),
        "{what}"
    );

    // Volumes: sessions PVC always, workspace PVC with persistence.workspace.
    let sessions = spec
        .persistence
        .as_ref()
        .and_then(|p| p.sessions.as_ref())
        .and_then(|s| s.size.as_deref());
    assert_eq!(
        size(&objects.sessions_pvc),
        sessions.unwrap_or("1Gi"),
        "{what}"
    );
    assert_eq!(
        objects
            .sessions_pvc
            .spec
            .as_ref()
            .and_then(|s| s.access_modes.clone()),
        Some(vec!["ReadWriteOnce".to_string()])
    );
    let workspace_volume = volume(pod, "workspace");
    match spec.persistence.as_ref().and_then(|p| p.workspace.as_ref()) {
        Some(ws) => {
            let pvc = objects.workspace_pvc.as_ref().expect("a workspace PVC");
            assert_eq!(size(pvc), ws.size.as_deref().unwrap_or("10Gi"), "{what}");
            assert_eq!(
                workspace_volume
                    .persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.as_str()),
                Some(format!("{name}-server-workspace").as_str()),
                "{what}"
            );
        }
        None => {
            assert!(objects.workspace_pvc.is_none(), "{what}");
            assert!(workspace_volume.empty_dir.is_some(), "{what}");
        }
    }
    assert_eq!(
        volume(pod, "session-data")
            .persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.as_str()),
        Some(format!("{name}-server-sessions").as_str()),
        "{what}"
    );
    check_consistent(what, objects);
}

/// Names are unique, every mount has its volume, the context ConfigMap is used.
pub(super) fn check_consistent(what: &str, objects: &ServerObjects) {
    let pod = pod(objects);
    let volumes: Vec<&str> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    let mut unique = volumes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        volumes.len(),
        "{what}: duplicate volumes {volumes:?}"
    );
    let containers: Vec<&str> = all_containers(pod).map(|c| c.name.as_str()).collect();
    let mut unique = containers.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        containers.len(),
        "{what}: duplicate containers {containers:?}"
    );
    for c in all_containers(pod) {
        for m in c.volume_mounts.iter().flatten() {
            assert!(
                volumes.contains(&m.name.as_str()),
                "{what}: {} mounts missing volume {}",
                c.name,
                m.name
            );
        }
        let mut paths: Vec<&str> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect();
        let count = paths.len();
        paths.sort();
        paths.dedup();
        assert_eq!(
            paths.len(),
            count,
            "{what}: {} mounts one path twice",
            c.name
        );
    }
    let uses_context = volumes.contains(&"context-files");
    assert_eq!(uses_context, objects.context_config_map.is_some(), "{what}");
    let annotations = objects
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref());
    assert_eq!(
        annotations.is_some_and(|a| a.contains_key(CONTEXT_HASH_ANNOTATION)),
        uses_context,
        "{what}"
    );
}

/// The checks of PodSecurity `restricted` (v1.34) that a Pod template can fail.
pub(super) fn check_restricted(what: &str, pod: &PodSpec) {
    let pod_sc = pod.security_context.clone().unwrap_or_default();
    assert!(
        pod.host_network != Some(true) && pod.host_pid != Some(true) && pod.host_ipc != Some(true),
        "{what}"
    );
    for v in pod.volumes.iter().flatten() {
        let allowed = v.config_map.is_some()
            || v.secret.is_some()
            || v.empty_dir.is_some()
            || v.persistent_volume_claim.is_some()
            || v.projected.is_some()
            || v.downward_api.is_some()
            || v.csi.is_some()
            || v.ephemeral.is_some();
        assert!(
            allowed,
            "{what}: volume {} has a type restricted forbids",
            v.name
        );
    }
    for c in all_containers(pod) {
        let sc = c.security_context.clone().unwrap_or_default();
        let who = format!("{what}: container {}", c.name);
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{who}");
        assert_ne!(sc.privileged, Some(true), "{who}");
        let caps = sc.capabilities.clone().unwrap_or_default();
        assert!(
            caps.drop.iter().flatten().any(|d| d == "ALL"),
            "{who}: drops ALL"
        );
        assert!(
            caps.add.iter().flatten().all(|a| a == "NET_BIND_SERVICE"),
            "{who}"
        );
        let seccomp = sc
            .seccomp_profile
            .as_ref()
            .or(pod_sc.seccomp_profile.as_ref())
            .map(|s| s.type_.as_str());
        assert!(
            matches!(seccomp, Some("RuntimeDefault" | "Localhost")),
            "{who}: seccomp"
        );
        assert_eq!(
            sc.run_as_non_root.or(pod_sc.run_as_non_root),
            Some(true),
            "{who}: runAsNonRoot"
        );
        let uid = sc.run_as_user.or(pod_sc.run_as_user);
        assert!(uid.is_some_and(|u| u != 0), "{who}: non-root uid");
        for port in c.ports.iter().flatten() {
            assert_eq!(port.host_port, None, "{who}");
        }
    }
}

pub(super) fn config_json(objects: &ServerObjects, key: &str) -> serde_json::Value {
    let data = objects
        .context_config_map
        .as_ref()
        .and_then(|c| c.data.as_ref())
        .expect("context ConfigMap data");
    serde_json::from_str(&data[key]).unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// The plugin-init script run by `sh` with `npm` and `rm` replaced by functions that print
/// their arguments one per line: what npm would receive, after the shell's quoting.
pub(super) fn npm_arguments(script: &str) -> Vec<String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "npm() {{ printf 'npm\\n'; printf '%s\\n' \"$@\"; }}\nrm() {{ :; }}\n{script}"
        ))
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split("npm\n")
        .nth(1)
        .expect("an npm call")
        .lines()
        .map(String::from)
        .collect()
}
