//! spec.plugins on the testbed, with real parts: the controller's `plugin-init` container runs
//! `npm install` against a tiny npm registry this test serves on the testbed bridge (pointed
//! at through `podSpec.extraEnv` `npm_config_registry`), and the real OpenCode server loads the
//! installed plugin from `file:///plugins/node_modules/...` with its options.
//!
//! The test plugin proves it was loaded by the server with its options twice over: when
//! OpenCode calls it, it writes the options it received into the workspace (read back with
//! `GET /file/content` through the service proxy), and it registers a tool whose output is
//! those options (called through the stub model's `[[tool:NAME:JSON]]` marker). A second
//! package with `target: tui` is installed and listed in tui.json, and `opencode serve` does
//! not import it.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kubeoc::api::Agent;
use kubeoc_testbed::{admin_client, wait_until};
use serde_json::{Value, json};
use support::{Server, WORKSPACE};

/// Apply to Ready: plugin-init (npm install) plus the usual server start.
const WAIT: Duration = Duration::from_secs(240);
/// One prompt turn (a tool call and the answer after it) through the stub model.
/// The server plugin: scoped, asked for by range, so npm resolves a version from the packument.
const SERVER_PACKAGE: &str = "@kubeoc-test/echo-plugin";
const SERVER_SPECIFIER: &str = "@kubeoc-test/echo-plugin@^1.0.0";
/// The TUI plugin: unscoped, no version.
const TUI_PACKAGE: &str = "kubeoc-test-tui";
const TOOL: &str = "kubeoc_plugin_echo";
/// Where the server plugin writes what it was called with, relative to the workspace.
const LOADED_FILE: &str = "kubeoc-plugin-loaded.json";
/// What the TUI plugin writes into the workspace if anything imports it.
const TUI_MARKER: &str = "kubeoc-tui-plugin-imported.txt";

// -----------------------------------------------------------------------------------------------
// The test packages and the registry serving them

/// A package tarball made by `npm pack`, with the integrity values npm checks.
struct Tarball {
    name: String,
    version: String,
    bytes: Vec<u8>,
    integrity: String,
    shasum: String,
}

/// Writes `files` into `dir/<name>` and packs them with `npm pack --json`.
fn pack(dir: &Path, name: &str, files: &[(&str, String)]) -> anyhow::Result<Tarball> {
    let source = dir.join(name.replace('/', "__"));
    std::fs::create_dir_all(&source)?;
    for (path, content) in files {
        std::fs::write(source.join(path), content)?;
    }
    let out = std::process::Command::new("npm")
        .args(["pack", "--json", "--pack-destination"])
        .arg(dir)
        .current_dir(&source)
        .env("npm_config_cache", dir.join(".npm-cache"))
        .env("npm_config_update_notifier", "false")
        .output()
        .context("running npm pack (is npm on PATH?)")?;
    ensure!(
        out.status.success(),
        "npm pack of {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("npm pack --json: {}", String::from_utf8_lossy(&out.stdout)))?;
    let entry = &report[0];
    let field = |key: &str| {
        entry[key]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("npm pack --json without {key}: {report}"))
    };
    let filename = field("filename")?;
    Ok(Tarball {
        name: name.to_string(),
        version: field("version")?,
        bytes: std::fs::read(dir.join(&filename)).with_context(|| format!("reading {filename}"))?,
        integrity: field("integrity")?,
        shasum: field("shasum")?,
    })
}

/// The server plugin, in OpenCode's classic form (a named export called with the plugin
/// context and the options): it records its call in the workspace and adds a tool.
fn server_plugin(dir: &Path) -> anyhow::Result<Tarball> {
    let package = json!({
        "name": SERVER_PACKAGE,
        "version": "1.2.0",
        "type": "module",
        "main": "index.js",
    });
    let index = format!(
        r#"import {{ writeFileSync }} from "node:fs";
import {{ join }} from "node:path";

export const KubeocEchoPlugin = async (ctx, options) => {{
  const seen = {{ options: options ?? null, directory: ctx.directory, module: import.meta.url }};
  writeFileSync(join(ctx.directory, "{LOADED_FILE}"), JSON.stringify(seen));
  return {{
    tool: {{
      {TOOL}: {{
        description: "Returns the options the kubeoc test plugin was loaded with",
        args: {{}},
        async execute() {{
          return "kubeoc test plugin options: " + JSON.stringify(options ?? null);
        }},
      }},
    }},
  }};
}};
"#
    );
    pack(
        dir,
        SERVER_PACKAGE,
        &[("package.json", package.to_string()), ("index.js", index)],
    )
}

/// The TUI plugin: a `./tui` export that leaves a marker in the workspace when imported.
fn tui_plugin(dir: &Path) -> anyhow::Result<Tarball> {
    let package = json!({
        "name": TUI_PACKAGE,
        "version": "0.3.1",
        "type": "module",
        "exports": {"./tui": "./tui.js"},
    });
    let tui = format!(
        r#"import {{ writeFileSync }} from "node:fs";
writeFileSync((process.env.WORKSPACE_DIR ?? "/tmp") + "/{TUI_MARKER}", "imported by pid " + process.pid);
export default {{ id: "{TUI_PACKAGE}", tui: async () => {{}} }};
"#
    );
    pack(
        dir,
        TUI_PACKAGE,
        &[("package.json", package.to_string()), ("tui.js", tui)],
    )
}

/// An npm registry on the testbed bridge serving the packuments and tarballs of `packages`
/// (404 for anything else); records every request line.
struct Registry {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Registry {
    async fn start(packages: Vec<Tarball>) -> anyhow::Result<Self> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind((support::BRIDGE_HOST, 0)).await?;
        let url = format!(
            "http://{}:{}/",
            support::BRIDGE_HOST,
            listener.local_addr()?.port()
        );
        let packages = Arc::new(packages);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (record, base) = (seen.clone(), url.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (record, packages, base) = (record.clone(), packages.clone(), base.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let line = text.lines().next().unwrap_or_default().to_string();
                    if let Ok(mut seen) = record.lock() {
                        seen.push(line.clone());
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or_default();
                    let (status, content_type, body) = answer(path, &packages, &base);
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(Self { url, seen, task })
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The registry's answer for a request path: a packument for `/<name>` (scoped names arrive
/// as `/@scope%2fname`), the tarball for `/<name>/-/<file>.tgz`, else 404.
fn answer(path: &str, packages: &[Tarball], base: &str) -> (&'static str, &'static str, Vec<u8>) {
    let path = path.split('?').next().unwrap_or_default();
    let decoded = path
        .trim_start_matches('/')
        .replace("%2f", "/")
        .replace("%2F", "/");
    for package in packages {
        let file = format!(
            "{}-{}.tgz",
            package.name.rsplit('/').next().unwrap_or(&package.name),
            package.version
        );
        let tarball_path = format!("{}/-/{file}", package.name);
        if decoded == tarball_path {
            return ("200 OK", "application/octet-stream", package.bytes.clone());
        }
        if decoded == package.name {
            let packument = json!({
                "name": package.name,
                "dist-tags": {"latest": package.version},
                "versions": {package.version.as_str(): {
                    "name": package.name,
                    "version": package.version,
                    "dist": {
                        "tarball": format!("{base}{tarball_path}"),
                        "integrity": package.integrity,
                        "shasum": package.shasum,
                    },
                }},
            });
            return (
                "200 OK",
                "application/json",
                packument.to_string().into_bytes(),
            );
        }
    }
    (
        "404 Not Found",
        "application/json",
        br#"{"error":"not found"}"#.to_vec(),
    )
}

/// (started, finished) of an init container's terminated state, for timing.
fn init_timing(pod: &Pod, name: &str) -> Option<(i32, Option<Duration>)> {
    let status = pod
        .status
        .as_ref()?
        .init_container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == name)?;
    let terminated = status.state.as_ref()?.terminated.as_ref()?;
    let took = match (&terminated.started_at, &terminated.finished_at) {
        (Some(start), Some(end)) => Duration::try_from(end.0.duration_since(start.0)).ok(),
        _ => None,
    };
    Some((terminated.exit_code, took))
}

#[tokio::test]
async fn plugins_install_from_a_registry_and_the_server_loads_them_with_options()
-> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = support::prepare_namespace(&client, "agent-plugins").await?;
    let n = ns.name.clone();

    let dir = std::env::temp_dir().join(format!("kubeoc-{n}-packages"));
    std::fs::create_dir_all(&dir)?;
    let registry = Registry::start(vec![server_plugin(&dir)?, tui_plugin(&dir)?]).await?;
    let controller = support::Controller::start(&n)?;

    // Options unique to this run, nested, so nothing but this Agent's spec can produce them.
    let options = json!({
        "greeting": format!("hello from {n}"),
        "nested": {"list": [1, 2, 3], "flag": true},
        "quote": "it's \"quoted\"",
    });
    let mut config = support::stub_model_config();
    if let Some(object) = config.as_object_mut() {
        // A plugin entry of the user's own: kept next to spec.plugins' entries.
        object.insert(
            "plugin".to_string(),
            json!([["file:///nonexistent/kubeoc-user-plugin", {"kept": true}]]),
        );
    }
    support::apply(
        &n,
        &json!({
            "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": "plug"},
            "spec": {
                "workspaceDir": WORKSPACE,
                "serviceAccountName": "kubeopencode-agent",
                "config": config,
                "plugins": [
                    {"name": SERVER_SPECIFIER, "options": options},
                    {"name": TUI_PACKAGE, "target": "tui", "options": {"theme": "kubeoc"}},
                ],
                "podSpec": {"extraEnv": [
                    {"name": "npm_config_registry", "value": registry.url},
                ]},
            },
        }),
    )
    .await?;
    let applied = Instant::now();
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    let agent = support::ready_agent(&agents, "plug", WAIT)
        .await
        .with_context(|| {
            format!(
                "registry saw {:?}\ncontroller log:\n{}",
                registry.seen(),
                controller.log()
            )
        })?;
    let ready_after = applied.elapsed();

    // No Unsupported condition mentions plugins any more.
    let conditions = agent
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    assert!(
        conditions
            .iter()
            .all(|c| !(c.type_ == "Unsupported" && c.message.contains("plugin"))),
        "conditions: {conditions:?}"
    );

    // plugin-init installed both packages from the test registry and exited 0.
    let pod = support::server_pod(&client, &n, "plug").await?;
    let (code, took) = init_timing(&pod, "plugin-init").context("plugin-init has not ended")?;
    assert_eq!(code, 0, "plugin-init exit code");
    let seen = registry.seen();
    for wanted in [
        "GET /@kubeoc-test%2fecho-plugin ",
        "GET /@kubeoc-test/echo-plugin/-/echo-plugin-1.2.0.tgz ",
        "GET /kubeoc-test-tui ",
        "GET /kubeoc-test-tui/-/kubeoc-test-tui-0.3.1.tgz ",
    ] {
        assert!(
            seen.iter().any(|l| l.starts_with(wanted)),
            "the registry never saw {wanted:?}; it saw {seen:?}"
        );
    }
    println!(
        "plug: apply to Ready in {ready_after:?}; plugin-init (npm install of 2 packages) took {took:?}"
    );

    // The server called the plugin with the options from the spec.
    let server = Server::connect(&client, &n, "plug").await?;
    let loaded = wait_until(
        "the plugin's record in the workspace",
        Duration::from_secs(120),
        || async {
            let text = server.file(LOADED_FILE).await?;
            Ok((!text.is_empty()).then_some(text))
        },
    )
    .await?;
    let loaded: Value =
        serde_json::from_str(&loaded).with_context(|| format!("{LOADED_FILE}: {loaded}"))?;
    assert_eq!(loaded["options"], options, "{loaded}");
    assert_eq!(loaded["directory"], WORKSPACE, "{loaded}");
    assert_eq!(
        loaded["module"],
        format!("file:///plugins/node_modules/{SERVER_PACKAGE}/index.js"),
        "{loaded}"
    );
    // OpenCode's resolved config: the user's entry first, then the plugin with its options.
    let resolved = server.get("/config").await?;
    assert_eq!(
        resolved["plugin"],
        json!([
            ["file:///nonexistent/kubeoc-user-plugin", {"kept": true}],
            [format!("file:///plugins/node_modules/{SERVER_PACKAGE}"), options],
        ]),
        "plugin entries in OpenCode's config"
    );

    // The plugin's tool is there for the model, and answers with the options.
    let part = server.tool("plugin tool", TOOL, &json!({})).await?;
    assert_eq!(part["state"]["status"], "completed", "{part}");
    let output = part["state"]["output"].as_str().unwrap_or_default();
    assert_eq!(
        output,
        format!("kubeoc test plugin options: {options}"),
        "{part}"
    );

    // In the server container: both packages installed, /plugins read-only, the TUI plugin in
    // tui.json (OPENCODE_TUI_CONFIG) and never imported by `opencode serve`.
    let output = server
        .bash(
            "plugins volume",
            "ls /plugins/node_modules /plugins/node_modules/@kubeoc-test; \
             printf 'tui config %s\\n' \"$OPENCODE_TUI_CONFIG\"; cat \"$OPENCODE_TUI_CONFIG\"; echo; \
             if touch /plugins/written 2>/dev/null; then echo plugins-writable; else echo plugins-read-only; fi",
        )
        .await?;
    for line in [
        "kubeoc-test-tui",
        "echo-plugin",
        "tui config /tools/tui.json",
        "plugins-read-only",
    ] {
        assert!(
            output.lines().any(|l| l.trim() == line),
            "no line {line:?} in:\n{output}"
        );
    }
    let tui_line = output
        .lines()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("no tui.json in:\n{output}"))?;
    let tui: Value = serde_json::from_str(tui_line)?;
    assert_eq!(
        tui["plugin"],
        json!([[format!("file:///plugins/node_modules/{TUI_PACKAGE}"), {"theme": "kubeoc"}]]),
        "{tui}"
    );
    assert_eq!(
        server.file(TUI_MARKER).await?,
        "",
        "opencode serve imported the TUI plugin"
    );

    // Besides plugin-init's requests, only OpenCode's own: with plugins configured, 1.18.33
    // installs its plugin SDK into its config directory (a 404 here) and waits for that before
    // loading them, so the registry override reaching the server container matters too.
    let requests: Vec<String> = registry
        .seen()
        .iter()
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    println!("registry requests: {requests:?}");
    for request in &requests {
        assert!(
            [
                "GET /@kubeoc-test%2fecho-plugin",
                "GET /@kubeoc-test/echo-plugin/-/echo-plugin-1.2.0.tgz",
                "GET /kubeoc-test-tui",
                "GET /kubeoc-test-tui/-/kubeoc-test-tui-0.3.1.tgz",
                "GET /@opencode-ai%2fplugin",
            ]
            .contains(&request.as_str()),
            "unexpected registry request {request:?}; all: {requests:?}"
        );
    }

    drop(controller);
    ns.delete().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test]
async fn a_plugin_the_registry_lacks_keeps_the_agent_not_ready_and_says_why() -> anyhow::Result<()>
{
    let client = admin_client().await?;
    let ns = support::prepare_namespace(&client, "agent-plugins-missing").await?;
    let n = ns.name.clone();
    let registry = Registry::start(Vec::new()).await?;
    let controller = support::Controller::start(&n)?;
    support::apply(
        &n,
        &json!({
            "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": "missing"},
            "spec": {
                "workspaceDir": WORKSPACE,
                "serviceAccountName": "kubeopencode-agent",
                "config": support::stub_model_config(),
                "plugins": [{"name": "kubeoc-no-such-plugin@1.0.0"}],
                "podSpec": {"extraEnv": [
                    {"name": "npm_config_registry", "value": registry.url},
                ]},
            },
        }),
    )
    .await?;
    // plugin-init fails, and its log (what `kubectl logs -c plugin-init` shows) names npm's
    // answer and the package.
    let log = wait_until("plugin-init to fail with npm's 404", WAIT, || async {
        let Ok(pod) = support::server_pod(&client, &n, "missing").await else {
            return Ok(None);
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let failed = pod
            .status
            .iter()
            .flat_map(|s| s.init_container_statuses.iter().flatten())
            .filter(|s| s.name == "plugin-init")
            .any(|s| {
                s.restart_count > 0
                    || s.state
                        .as_ref()
                        .and_then(|st| st.terminated.as_ref())
                        .is_some_and(|t| t.exit_code != 0)
                    || s.last_state
                        .as_ref()
                        .and_then(|st| st.terminated.as_ref())
                        .is_some_and(|t| t.exit_code != 0)
            });
        if !failed {
            return Ok(None);
        }
        let mut logs = String::new();
        for previous in ["--previous=false", "--previous=true"] {
            let out = support::kubectl_run(
                &["-n", &n, "logs", &name, "-c", "plugin-init", previous],
                None,
            )
            .await?;
            logs.push_str(&out.stdout);
        }
        Ok((logs.contains("404") && logs.contains("kubeoc-no-such-plugin")).then_some(logs))
    })
    .await
    .with_context(|| {
        format!(
            "registry saw {:?}\ncontroller log:\n{}",
            registry.seen(),
            controller.log()
        )
    })?;
    println!("plugin-init log:\n{log}");
    assert!(
        registry
            .seen()
            .iter()
            .any(|l| l.starts_with("GET /kubeoc-no-such-plugin ")),
        "{:?}",
        registry.seen()
    );
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    let agent = agents.get("missing").await?;
    for c in agent
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
    {
        println!(
            "condition {} {} {}: {}",
            c.type_, c.status, c.reason, c.message
        );
    }
    assert_ne!(
        agent.status.as_ref().and_then(|s| s.ready),
        Some(true),
        "an Agent whose plugins did not install is Ready: {:?}",
        agent.status
    );
    // The Agent says why, and where to look.
    let ready = wait_until("Ready to name the failed plugin-init", WAIT, || async {
        let agent = agents.get("missing").await?;
        Ok(support::condition(&agent, "Ready")
            .filter(|c| c.message.contains("init container \"plugin-init\" failed"))
            .cloned())
    })
    .await?;
    assert!(
        ready.message.contains(&format!("kubectl logs -n {n} "))
            && ready.message.contains(" -c plugin-init"),
        "{}",
        ready.message
    );
    drop(controller);
    ns.delete().await
}
