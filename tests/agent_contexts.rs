//! What an Agent's spec asks for reaches the running OpenCode server on the testbed: contexts
//! (Text, ConfigMap, Git with a ref, Git with HotReload sync), credentials in all four forms,
//! the CA bundle (ConfigMap and Secret) and proxy settings.
//!
//! Everything is read back through the OpenCode server itself, via the apiserver service proxy,
//! as a user would: `GET /file` and `GET /file/content` for files in the workspace, the stub
//! model's `[[system:NEEDLE]]` marker for the instructions OpenCode loaded, and the stub's
//! `[[tool:bash:...]]` marker to make OpenCode run a shell command in the server container for
//! environment variables and files outside the workspace.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, ResourceExt};
use kubeoc::api::Agent;
use kubeoc_testbed::{TestNamespace, admin_client, wait_until};
use serde_json::{Value, json};
use support::{
    BRIDGE_HOST, Controller, GitDaemon, Repository, Server, WORKSPACE, apply, create_secret,
    free_bridge_port, kubectl, prepare_namespace, ready_agent, server_pod, stub_model_config,
};

const WAIT: Duration = Duration::from_secs(240);
/// One prompt turn (a tool call and the answer after it) through the stub model.
/// The smallest sync interval the Agent CRD accepts: `interval` is a free-form duration and
/// the controller rounds anything below one second up to one second.
const SMALLEST_SYNC_INTERVAL: &str = "1s";

/// The namespace with the CRDs installed, the Agents' ServiceAccount and a controller.
async fn prepare(client: &Client, prefix: &str) -> anyhow::Result<(TestNamespace, Controller)> {
    let ns = prepare_namespace(client, prefix).await?;
    let controller = Controller::start(&ns.name)?;
    Ok((ns, controller))
}

fn restart_counts(pod: &Pod) -> Vec<(String, i32)> {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .map(|c| (c.name.clone(), c.restart_count))
        .collect()
}

/// No secret value in the controller's log, the namespace's events or the Agents' status.
async fn assert_not_leaked(
    namespace: &str,
    controller: &Controller,
    values: &[&str],
) -> anyhow::Result<()> {
    let events = kubectl(&["-n", namespace, "get", "events", "-o", "json"], None).await?;
    let agents = kubectl(&["-n", namespace, "get", "agents", "-o", "json"], None).await?;
    let log = controller.log();
    for value in values {
        for (what, text) in [
            ("controller log", &log),
            ("events", &events),
            ("Agents", &agents),
        ] {
            assert!(
                !text.contains(value),
                "a secret value appears in the {what}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn contexts_reach_the_running_server_and_git_sync_pulls_in_place() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let (ns, controller) = prepare(&client, "agent-ctx").await?;
    let n = ns.name.clone();

    let pinned = Repository::create(&format!("{n}-pinned"))?;
    pinned.commit(
        &[
            ("README.md", "main branch readme\n"),
            ("MAIN_ONLY.md", "only on main\n"),
        ],
        "main",
    )?;
    pinned.git(&["checkout", "-q", "-b", "release"])?;
    pinned.git(&["rm", "-q", "MAIN_ONLY.md"])?;
    pinned.commit(&[("RELEASE.md", "release 1.2 notes\n")], "release")?;
    pinned.git(&["checkout", "-q", "main"])?;
    pinned.commit(&[("AFTER.md", "main moved on\n")], "main after release")?;
    let live = Repository::create(&format!("{n}-live"))?;
    live.commit(&[("README.md", "live repo v1\n")], "v1")?;

    apply(
        &n,
        &json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "team-guides"},
            "data": {
                "style.md": "style guide: tabs are forbidden\n",
                "review.md": "review guide: two approvals\n",
            },
        }),
    )
    .await?;
    let instruction_marker = format!("inline-instruction-{n}");
    apply(
        &n,
        &json!({
            "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": "ctx"},
            "spec": {
                "workspaceDir": WORKSPACE,
                "serviceAccountName": "kubeopencode-agent",
                "config": stub_model_config(),
                "contexts": [
                    {"name": "text-file", "type": "Text", "mountPath": "notes/text-context.md",
                     "text": "text context with a mount path"},
                    {"name": "text-inline", "type": "Text",
                     "text": format!("Always answer politely. {instruction_marker}")},
                    {"name": "script", "type": "Text", "mountPath": "scripts/hello.sh",
                     "fileMode": 0o755,
                     "text": "#!/bin/sh\necho hello from a context script\n"},
                    {"name": "review-inline", "type": "ConfigMap",
                     "configMap": {"name": "team-guides", "key": "review.md"}},
                    {"name": "one-key", "type": "ConfigMap", "mountPath": "guides/style.md",
                     "configMap": {"name": "team-guides", "key": "style.md"}},
                    {"name": "whole-map", "type": "ConfigMap",
                     "mountPath": format!("{WORKSPACE}/all-guides"),
                     "configMap": {"name": "team-guides"}},
                    {"name": "pinned", "type": "Git", "mountPath": "repos/pinned",
                     "git": {"repository": pinned.url(), "ref": "release"}},
                    {"name": "live", "type": "Git", "mountPath": "repos/live",
                     "git": {"repository": live.url(),
                             "sync": {"enabled": true, "interval": SMALLEST_SYNC_INTERVAL}}},
                ],
            },
        }),
    )
    .await?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    let applied = Instant::now();
    ready_agent(&agents, "ctx", WAIT)
        .await
        .with_context(|| format!("controller log:\n{}", controller.log()))?;
    println!("ctx: apply to Ready in {:?}", applied.elapsed());
    let server = Server::connect(&client, &n, "ctx").await?;

    // Text with a mountPath (relative: under workspaceDir).
    assert_eq!(
        server.file("notes/text-context.md").await?,
        "text context with a mount path"
    );
    // Text without a mountPath: in .kubeopencode/context.md, and in OpenCode's system prompt.
    let context_md = server.file(".kubeopencode/context.md").await?;
    assert!(
        context_md.contains(&instruction_marker) && context_md.contains("name=\"text-inline\""),
        "context.md: {context_md}"
    );
    assert!(
        context_md.contains("name=\"review-inline\"")
            && context_md.contains("review guide: two approvals"),
        "context.md lacks the ConfigMap context without mountPath: {context_md}"
    );
    let config = server.get("/config").await?;
    assert!(
        config["instructions"]
            .as_array()
            .is_some_and(|i| i.iter().any(|p| p == "/workspace/.kubeopencode/context.md")),
        "instructions in OpenCode's config: {}",
        config["instructions"]
    );
    let quoted = server.system_lines(&instruction_marker).await?;
    assert!(
        quoted.contains(&format!("Always answer politely. {instruction_marker}")),
        "the model was not given the inline context; it quoted: {quoted}"
    );
    let quoted = server.system_lines("review guide").await?;
    assert!(
        quoted.contains("review guide: two approvals"),
        "the model was not given the ConfigMap context; it quoted: {quoted}"
    );
    // fileMode: the script context is executable where OpenCode runs commands.
    let ran = server
        .bash(
            "script",
            "stat -c 'mode %a' scripts/hello.sh; ./scripts/hello.sh",
        )
        .await?;
    assert!(
        has_line(&ran, "mode 755") && has_line(&ran, "hello from a context script"),
        "running the script context: {ran}"
    );
    // ConfigMap: one key as a file, the whole ConfigMap as a directory.
    assert_eq!(
        server.file("guides/style.md").await?,
        "style guide: tabs are forbidden"
    );
    assert_eq!(
        server.list("all-guides").await?,
        vec!["review.md".to_string(), "style.md".to_string()]
    );
    assert_eq!(
        server.file("all-guides/review.md").await?,
        "review guide: two approvals"
    );
    // Git with a ref: the release branch, not main.
    let pinned_files = server.list("repos/pinned").await?;
    assert!(
        pinned_files.contains(&"RELEASE.md".to_string())
            && !pinned_files.contains(&"MAIN_ONLY.md".to_string())
            && !pinned_files.contains(&"AFTER.md".to_string()),
        "repos/pinned holds {pinned_files:?}"
    );
    assert_eq!(
        server.file("repos/pinned/RELEASE.md").await?,
        "release 1.2 notes"
    );

    // Git with HotReload sync: a new commit shows up in the server's checkout, no restart.
    assert_eq!(server.file("repos/live/README.md").await?, "live repo v1");
    let before = server_pod(&client, &n, "ctx").await?;
    live.commit(
        &[
            ("NEW.md", "pushed after Ready\n"),
            ("README.md", "live repo v2\n"),
        ],
        "v2",
    )?;
    let pushed = Instant::now();
    wait_until(
        "the new commit in the server's checkout",
        Duration::from_secs(60),
        || async {
            let new = server.file("repos/live/NEW.md").await?;
            let readme = server.file("repos/live/README.md").await?;
            ensure!(
                new == "pushed after Ready" && readme == "live repo v2",
                "NEW.md {new:?}, README.md {readme:?}, repos/live {:?}",
                server.list("repos/live").await?
            );
            Ok(Some(()))
        },
    )
    .await?;
    println!(
        "git sync (interval {SMALLEST_SYNC_INTERVAL}): commit -> file visible through the server in {:?}",
        pushed.elapsed()
    );
    let after = server_pod(&client, &n, "ctx").await?;
    assert_eq!(before.uid(), after.uid(), "the server pod was replaced");
    assert_eq!(
        restart_counts(&after),
        restart_counts(&before),
        "a container restarted"
    );
    assert!(
        restart_counts(&after).iter().all(|(_, n)| *n == 0),
        "{:?}",
        restart_counts(&after)
    );

    assert_not_leaked(&n, &controller, &[]).await?;
    drop(controller);
    ns.delete().await?;
    let _ = std::fs::remove_dir_all(pinned.dir());
    let _ = std::fs::remove_dir_all(live.dir());
    Ok(())
}

/// A self-signed CA certificate (PEM) made with the openssl command.
fn ca_certificate(dir: &Path, name: &str) -> anyhow::Result<String> {
    let cert = dir.join(format!("{name}.crt"));
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(&cert)
        .args(["-subj", &format!("/CN={name}")])
        .output()?;
    ensure!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(std::fs::read_to_string(cert)?)
}

/// A certificate for `ip` signed by CA `ca` (made by [`ca_certificate`]): (cert, key) paths.
fn server_certificate(dir: &Path, ca: &str, ip: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert, key) = (
        dir.join(format!("{ca}-server.crt")),
        dir.join(format!("{ca}-server.key")),
    );
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-CA")
        .arg(dir.join(format!("{ca}.crt")))
        .arg("-CAkey")
        .arg(dir.join(format!("{ca}.key")))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-subj", &format!("/CN={ip}")])
        .args(["-addext", &format!("subjectAltName=IP:{ip}")])
        .args(["-addext", "basicConstraints=CA:FALSE"])
        .output()?;
    ensure!(
        out.status.success(),
        "openssl req (server) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((cert, key))
}

/// `openssl s_server -www` on the bridge address with the given certificate: an HTTPS server
/// that pods reach, killed when dropped.
async fn tls_server(cert: &Path, key: &Path) -> anyhow::Result<(tokio::process::Child, u16)> {
    let port = free_bridge_port()?;
    let child = tokio::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("{BRIDGE_HOST}:{port}"))
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    wait_until(
        "openssl s_server to listen",
        Duration::from_secs(10),
        || async {
            Ok(tokio::net::TcpStream::connect((BRIDGE_HOST, port))
                .await
                .ok()
                .map(drop))
        },
    )
    .await?;
    Ok((child, port))
}

/// An HTTP request's head (request line and headers), as far as it arrives.
async fn read_request_head(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A forward proxy on the bridge address that records request lines: plain requests get a
/// 200 answer naming the proxy, CONNECT gets 403.
struct RecordingProxy {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RecordingProxy {
    async fn start() -> anyhow::Result<Self> {
        use tokio::io::AsyncWriteExt as _;
        let listener = tokio::net::TcpListener::bind((BRIDGE_HOST, 0)).await?;
        let port = listener.local_addr()?.port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let text = read_request_head(&mut stream).await;
                    let line = text.lines().next().unwrap_or_default().to_string();
                    if let Ok(mut seen) = record.lock() {
                        seen.push(line.clone());
                    }
                    let answer = if line.starts_with("CONNECT ") {
                        "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_string()
                    } else {
                        let body = format!("answered by the kubeoc test proxy: {line}");
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    };
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(Self { port, seen, task })
    }

    fn url(&self) -> String {
        format!("http://{BRIDGE_HOST}:{}", self.port)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `printf 'NAME=%s\n' "${NAME-<unset>}"` for each name: one line per variable, also when unset.
fn print_env(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("printf '{n}=%s\\n' \"${{{n}-<unset>}}\""))
        .collect::<Vec<_>>()
        .join("; ")
}

fn has_line(output: &str, line: &str) -> bool {
    output.lines().any(|l| l == line)
}

#[tokio::test]
async fn credentials_ca_bundle_and_proxy_reach_the_running_server() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let (ns, controller) = prepare(&client, "agent-creds").await?;
    let n = ns.name.clone();
    let certs = std::env::temp_dir().join(format!("kubeoc-{n}-ca"));
    std::fs::create_dir_all(&certs)?;
    let ca_one = ca_certificate(&certs, "kubeoc-test-ca-one")?;
    let ca_two = ca_certificate(&certs, "kubeoc-test-ca-two")?;
    // HTTPS servers on the bridge with certificates from each CA, and two recording proxies.
    let (cert, key) = server_certificate(&certs, "kubeoc-test-ca-one", BRIDGE_HOST)?;
    let (_tls_one, port_one) = tls_server(&cert, &key).await?;
    let (cert, key) = server_certificate(&certs, "kubeoc-test-ca-two", BRIDGE_HOST)?;
    let (_tls_two, port_two) = tls_server(&cert, &key).await?;
    let http_proxy = RecordingProxy::start().await?;
    let https_proxy = RecordingProxy::start().await?;

    // Values unique to this run, so a leak check cannot match anything else.
    let suffix = n.rsplit('-').next().unwrap_or("x").to_string();
    let team_token = format!("team-token-{suffix}-5f2a");
    let team_region = format!("region-{suffix}-eu");
    let ssh_key = format!("ssh-key-{suffix}-91c0");
    let ssh_config = format!("Host git-{suffix}");
    let api_key = format!("sk-api-{suffix}-77d3");
    let gh_token = format!("gh-token-{suffix}-0b8e");
    let secret = |name: &str, data: Value| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
               "type": "Opaque", "stringData": data})
    };
    for manifest in [
        secret(
            "team-env",
            json!({"TEAM_TOKEN": team_token, "TEAM_REGION": team_region}),
        ),
        secret(
            "ssh-files",
            json!({"id_ed25519": ssh_key, "config": ssh_config}),
        ),
        secret("ai-credentials", json!({"api-key": api_key})),
        secret("gh", json!({"token": gh_token})),
        secret("corp-ca-secret", json!({"ca.crt": ca_two})),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "corp-ca"},
               "data": {"ca-bundle.crt": ca_one}}),
    ] {
        apply(&n, &manifest).await?;
    }

    let no_proxy = format!("{BRIDGE_HOST},localhost,127.0.0.1");
    let agent = |name: &str, extra: Value| {
        let mut spec = json!({
            "workspaceDir": WORKSPACE,
            "serviceAccountName": "kubeopencode-agent",
            "config": stub_model_config(),
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        json!({"apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
               "metadata": {"name": name}, "spec": spec})
    };
    apply(
        &n,
        &agent(
            "creds",
            json!({
                "credentials": [
                    {"name": "whole-env", "secretRef": {"name": "team-env"}},
                    {"name": "ssh-dir", "secretRef": {"name": "ssh-files"},
                     "mountPath": "/run/kubeoc-test/ssh"},
                    {"name": "api-key", "secretRef": {"name": "ai-credentials", "key": "api-key"},
                     "env": "MY_API_KEY"},
                    {"name": "gh-file", "secretRef": {"name": "gh", "key": "token"},
                     "mountPath": "/run/kubeoc-test/gh/token", "fileMode": 0o400},
                ],
                "caBundle": {"configMapRef": {"name": "corp-ca"}},
                "proxy": {
                    "httpProxy": http_proxy.url(),
                    "httpsProxy": https_proxy.url(),
                    "noProxy": no_proxy,
                },
            }),
        ),
    )
    .await?;
    apply(
        &n,
        &agent(
            "ca-secret",
            json!({"caBundle": {"secretRef": {"name": "corp-ca-secret"}}}),
        ),
    )
    .await?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    let applied = Instant::now();
    for name in ["creds", "ca-secret"] {
        ready_agent(&agents, name, WAIT)
            .await
            .with_context(|| format!("controller log:\n{}", controller.log()))?;
    }
    println!(
        "creds, ca-secret: apply to both Ready in {:?}",
        applied.elapsed()
    );

    let server = Server::connect(&client, &n, "creds").await?;
    let vars = [
        "TEAM_TOKEN",
        "TEAM_REGION",
        "MY_API_KEY",
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
        "NODE_EXTRA_CA_CERTS",
        "CUSTOM_CA_CERT_PATH",
    ];
    let command = format!(
        "{}; for f in /run/kubeoc-test/ssh/* /run/kubeoc-test/gh/token; do \
         printf 'file %s %s ' \"$f\" \"$(stat -L -c %a \"$f\")\"; cat \"$f\"; echo; done; \
         cat \"$NODE_EXTRA_CA_CERTS\"",
        print_env(&vars)
    );
    let output = server.bash("credentials", &command).await?;
    println!(
        "creds: the server's bash tool printed {} bytes",
        output.len()
    );
    let expected_no_proxy = format!("{no_proxy},.svc,.cluster.local");
    for line in [
        format!("TEAM_TOKEN={team_token}"),
        format!("TEAM_REGION={team_region}"),
        format!("MY_API_KEY={api_key}"),
        format!("HTTP_PROXY={}", http_proxy.url()),
        format!("http_proxy={}", http_proxy.url()),
        format!("HTTPS_PROXY={}", https_proxy.url()),
        format!("https_proxy={}", https_proxy.url()),
        format!("NO_PROXY={expected_no_proxy}"),
        format!("no_proxy={expected_no_proxy}"),
        "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/custom-ca/tls.crt".to_string(),
        "CUSTOM_CA_CERT_PATH=/etc/ssl/certs/custom-ca/tls.crt".to_string(),
        // Secret files: 0600 by default, 0400 as asked; with the pod's fsGroup the kubelet
        // adds group read (0640, 0440).
        format!("file /run/kubeoc-test/ssh/config 640 {ssh_config}"),
        format!("file /run/kubeoc-test/ssh/id_ed25519 640 {ssh_key}"),
        format!("file /run/kubeoc-test/gh/token 440 {gh_token}"),
    ] {
        assert!(
            has_line(&output, &line),
            "no line {line:?} in the bash tool's output:\n{output}"
        );
    }
    assert!(
        output.contains(ca_one.trim()),
        "the CA file is not the ConfigMap's bundle:\n{output}"
    );

    let other = Server::connect(&client, &n, "ca-secret").await?;
    let output = other
        .bash(
            "ca from a secret",
            &format!(
                "{}; cat \"$NODE_EXTRA_CA_CERTS\"",
                print_env(&["NODE_EXTRA_CA_CERTS", "HTTP_PROXY", "TEAM_TOKEN"])
            ),
        )
        .await?;
    for line in [
        "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/custom-ca/tls.crt",
        "HTTP_PROXY=<unset>",
        "TEAM_TOKEN=<unset>",
    ] {
        assert!(has_line(&output, line), "no line {line:?} in:\n{output}");
    }
    assert!(
        output.contains(ca_two.trim()),
        "the CA file is not the Secret's bundle:\n{output}"
    );

    // The CA bundles are trusted by OpenCode itself: its webfetch tool reaches an HTTPS server
    // whose certificate comes from the Agent's CA, and fails on the other CA's server.
    let fetch =
        |port: u16| json!({"url": format!("https://{BRIDGE_HOST}:{port}/"), "format": "text"});
    for (server, name, trusted, untrusted) in [
        (&server, "creds (caBundle.configMapRef)", port_one, port_two),
        (&other, "ca-secret (caBundle.secretRef)", port_two, port_one),
    ] {
        let ok = server
            .tool("trusted https", "webfetch", &fetch(trusted))
            .await?;
        assert!(
            ok["state"]["status"] == "completed"
                && ok["state"]["output"]
                    .as_str()
                    .is_some_and(|o| o.contains("s_server")),
            "{name}: webfetch of the server signed by its CA: {ok}"
        );
        let refused = server
            .tool("untrusted https", "webfetch", &fetch(untrusted))
            .await?;
        assert_eq!(
            refused["state"]["status"], "error",
            "{name}: webfetch of a server signed by another CA: {refused}"
        );
        println!(
            "{name}: own CA trusted; other CA refused with {}",
            refused["state"]["error"]
        );
    }

    // The proxies are used by OpenCode: plain HTTP through httpProxy, HTTPS as CONNECT through
    // httpsProxy, and noProxy keeps the model and the bridge address direct.
    let plain = server
        .tool(
            "via proxy",
            "webfetch",
            &json!({"url": "http://kubeoc-proxy-check.invalid/plain", "format": "text"}),
        )
        .await?;
    assert!(
        plain["state"]["output"]
            .as_str()
            .is_some_and(|o| o.contains(
                "answered by the kubeoc test proxy: GET http://kubeoc-proxy-check.invalid/plain"
            )),
        "webfetch through HTTP_PROXY: {plain}"
    );
    let tunnelled = server
        .tool(
            "via https proxy",
            "webfetch",
            &json!({"url": "https://kubeoc-proxy-check.invalid/secure", "format": "text"}),
        )
        .await?;
    let connects = https_proxy.seen();
    assert!(
        connects
            .iter()
            .any(|l| l.starts_with("CONNECT kubeoc-proxy-check.invalid:443 ")),
        "the HTTPS proxy saw {connects:?}; the tool: {tunnelled}"
    );
    let through_plain = http_proxy.seen();
    assert!(
        through_plain
            .iter()
            .chain(&connects)
            .all(|l| !l.contains(BRIDGE_HOST)),
        "noProxy was ignored: the proxies saw {through_plain:?} {connects:?}"
    );
    assert!(
        other
            .bash("no proxy", &print_env(&["HTTP_PROXY"]))
            .await?
            .contains("HTTP_PROXY=<unset>"),
        "ca-secret has no proxy"
    );

    assert_not_leaked(
        &n,
        &controller,
        &[&team_token, &team_region, &ssh_key, &api_key, &gh_token],
    )
    .await?;
    drop(controller);
    ns.delete().await?;
    let _ = std::fs::remove_dir_all(&certs);
    Ok(())
}

/// A documentation server on the bridge: answers `GET /<name>` with `docs[name]` when the
/// request carries `authorization`, 401 otherwise; records each request's head.
struct DocsServer {
    port: u16,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DocsServer {
    async fn start(
        authorization: &str,
        docs: &[(&'static str, &'static str)],
    ) -> anyhow::Result<Self> {
        use tokio::io::AsyncWriteExt as _;
        let listener = tokio::net::TcpListener::bind((BRIDGE_HOST, 0)).await?;
        let port = listener.local_addr()?.port();
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = heads.clone();
        let expected = format!("authorization: {}", authorization.to_ascii_lowercase());
        let docs: std::collections::HashMap<String, &'static str> =
            docs.iter().map(|(k, v)| (format!("/{k}"), *v)).collect();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let text = read_request_head(&mut stream).await;
                let path = text
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                let authorized = text
                    .lines()
                    .any(|l| l.trim().to_ascii_lowercase() == expected);
                let answer = match docs.get(&path) {
                    Some(body) if authorized => format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    Some(_) => "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string(),
                    None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string(),
                };
                if let Ok(mut heads) = record.lock() {
                    heads.push(text);
                }
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        Ok(Self { port, heads, task })
    }

    fn url(&self, name: &str) -> String {
        format!("http://{BRIDGE_HOST}:{}/{name}", self.port)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

impl Drop for DocsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn url_contexts_are_fetched_with_their_credentials_when_the_server_starts()
-> anyhow::Result<()> {
    let client = admin_client().await?;
    let (ns, controller) = prepare(&client, "agent-url").await?;
    let n = ns.name.clone();
    let token = format!("docs-token-{n}");
    let bearer = DocsServer::start(
        &format!("Bearer {token}"),
        &[("guide.md", "url guide: prefer small commits\n")],
    )
    .await?;
    // base64("reader:pass-5e1")
    let basic = DocsServer::start(
        "Basic cmVhZGVyOnBhc3MtNWUx",
        &[("spec.txt", "url spec: version 7\n")],
    )
    .await?;
    create_secret(&n, "docs-token", &[("token", &token)]).await?;
    create_secret(
        &n,
        "docs-login",
        &[("username", "reader"), ("password", "pass-5e1")],
    )
    .await?;
    apply(
        &n,
        &json!({
            "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": "urls"},
            "spec": {
                "workspaceDir": WORKSPACE,
                "serviceAccountName": "kubeopencode-agent",
                "config": stub_model_config(),
                "contexts": [
                    {"name": "guide", "type": "URL",
                     "url": {"source": bearer.url("guide.md"),
                             "headers": {"Accept": "text/markdown"},
                             "secretRef": {"name": "docs-token"}}},
                    {"name": "spec", "type": "URL", "mountPath": "docs/spec.txt",
                     "url": {"source": basic.url("spec.txt"), "secretRef": {"name": "docs-login"}, "timeout": 10}},
                ],
            },
        }),
    )
    .await?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    ready_agent(&agents, "urls", WAIT)
        .await
        .with_context(|| format!("controller log:\n{}", controller.log()))?;
    let agent = agents.get("urls").await?;
    assert!(
        support::condition(&agent, "Unsupported").is_none(),
        "URL contexts are supported: {:?}",
        agent.status
    );
    let server = Server::connect(&client, &n, "urls").await?;

    // With a mountPath: the file, fetched with HTTP basic auth from the Secret.
    assert_eq!(server.file("docs/spec.txt").await?, "url spec: version 7");
    // Without: in context.md, so in the model's system prompt.
    let context_md = server.file(".kubeopencode/context.md").await?;
    assert!(
        context_md.contains("<context name=\"guide\"")
            && context_md.contains("url guide: prefer small commits"),
        "context.md: {context_md}"
    );
    let quoted = server.system_lines("url guide").await?;
    assert!(
        quoted.contains("url guide: prefer small commits"),
        "the model was not given the URL context; it quoted: {quoted}"
    );
    let heads = bearer.heads();
    assert!(
        heads
            .iter()
            .any(|h| h.to_ascii_lowercase().contains("accept: text/markdown")),
        "the header was not sent: {heads:?}"
    );

    // The credentials stay in the Secrets: not in the Pod spec, status, events or logs.
    let deployment = kubectl(
        &["-n", &n, "get", "deployment", "urls-server", "-o", "json"],
        None,
    )
    .await?;
    for value in [token.as_str(), "pass-5e1", "cmVhZGVyOnBhc3MtNWUx"] {
        assert!(
            !deployment.contains(value),
            "a credential is in the Deployment"
        );
    }
    assert_not_leaked(&n, &controller, &[&token, "pass-5e1"]).await?;
    drop(controller);
    ns.delete().await
}

#[tokio::test]
async fn git_sync_policy_rollout_rolls_the_server_when_the_remote_moves() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let (ns, controller) = prepare(&client, "agent-rollout").await?;
    let n = ns.name.clone();
    let repo = Repository::create(&format!("{n}-rollout"))?;
    repo.commit(&[("NOTES.md", "rollout v1\n")], "v1")?;
    let daemon = GitDaemon::start().await?;
    apply(
        &n,
        &json!({
            "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": "rollout"},
            "spec": {
                "workspaceDir": WORKSPACE,
                "serviceAccountName": "kubeopencode-agent",
                "config": stub_model_config(),
                "contexts": [
                    {"name": "notes", "type": "Git", "mountPath": "repos/notes",
                     "git": {"repository": daemon.url(&repo),
                             "sync": {"enabled": true, "interval": SMALLEST_SYNC_INTERVAL,
                                      "policy": "Rollout"}}},
                ],
            },
        }),
    )
    .await?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    ready_agent(&agents, "rollout", WAIT)
        .await
        .with_context(|| format!("controller log:\n{}", controller.log()))?;
    let synced = |agent: &Agent| -> Option<String> {
        agent
            .status
            .as_ref()?
            .git_sync_statuses
            .as_ref()?
            .iter()
            .find(|s| s.name == "notes")?
            .commit_hash
            .clone()
    };
    let agent = agents.get("rollout").await?;
    assert_eq!(synced(&agent), Some(repo.head()?), "status.gitSyncStatuses");
    assert!(
        support::condition(&agent, "Unsupported").is_none(),
        "Rollout is supported: {:?}",
        agent.status
    );
    let first = server_pod(&client, &n, "rollout").await?;
    let containers: Vec<String> = first
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
        .collect();
    assert_eq!(
        containers,
        ["opencode-server", "kubeoc-front"],
        "Rollout runs no sync sidecar"
    );
    let server = Server::connect(&client, &n, "rollout").await?;
    assert_eq!(server.file("repos/notes/NOTES.md").await?, "rollout v1");

    // A new commit on the remote: the controller sees it and rolls the server, whose new pod
    // clones it.
    repo.commit(&[("NOTES.md", "rollout v2\n")], "v2")?;
    let second = repo.head()?;
    let pushed = Instant::now();
    wait_until("the new commit in status.gitSyncStatuses", WAIT, || async {
        Ok(
            (synced(&agents.get("rollout").await?).as_deref() == Some(second.as_str()))
                .then_some(()),
        )
    })
    .await?;
    wait_until("a new server pod, Ready", WAIT, || async {
        let pod = server_pod(&client, &n, "rollout").await?;
        let agent = agents.get("rollout").await?;
        let ready = agent.status.as_ref().and_then(|s| s.ready) == Some(true);
        Ok((pod.uid() != first.uid() && ready).then_some(()))
    })
    .await?;
    println!("push -> new server Ready in {:?}", pushed.elapsed());
    let server = Server::connect(&client, &n, "rollout").await?;
    assert_eq!(server.file("repos/notes/NOTES.md").await?, "rollout v2");
    let described = support::kubeoc(&["-n", &n, "agent", "describe", "rollout"]).await?;
    ensure!(described.success(), "agent describe: {described}");
    let git_sync = described
        .stdout
        .split("Git Sync:\n")
        .nth(1)
        .with_context(|| format!("no Git Sync section:\n{}", described.stdout))?;
    assert!(
        git_sync
            .lines()
            .nth(1)
            .is_some_and(|row| row.split_whitespace().take(2).eq(["notes", &second[..12]])),
        "describe's Git Sync row: {git_sync}"
    );
    drop(controller);
    ns.delete().await
}
