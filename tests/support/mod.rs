//! Helpers shared by the integration tests (`mod support;`): running kubectl and
//! `kubectl kubeoc` against the testbed, a controller process per test, Git repositories the
//! testbed's pods can clone, and a fresh namespace with kubeoc installed.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use kube::Client;
use kubeoc::cluster::install;
use kubeoc_testbed::{TestNamespace, kubeconfig_path};
use serde_json::{Value, json};

/// The plugin binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_kubectl-kubeoc");

/// The stub model on the testbed bridge (`model_addr` in testbed/scripts/lib.sh), the only
/// model an OpenCode server on the testbed can reach.
pub const MODEL_ADDR: &str = "10.244.0.1:18080";

/// No single command may hang a test for longer than this.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// How a program ended and what it printed.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Everything it printed, for "never in any output" checks.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Fails with the whole run unless it exited with `code`.
    pub fn expect_code(self, code: i32, what: &str) -> anyhow::Result<Self> {
        ensure!(
            self.code == Some(code),
            "{what}: expected exit {code}, got {self}"
        );
        Ok(self)
    }

    /// Fails with the whole run unless it exited 0.
    pub fn ok(self, what: &str) -> anyhow::Result<Self> {
        self.expect_code(0, what)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs a program with stdin from `/dev/null` (never a terminal) or from `input`.
pub async fn run(program: &str, args: &[&str], input: Option<&str>) -> anyhow::Result<Run> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).await?;
        // Dropping stdin closes it, so the program sees the end of its input.
    }
    let out = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .with_context(|| format!("{program} {args:?} ran longer than {RUN_TIMEOUT:?}"))??;
    Ok(Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn kubeconfig() -> anyhow::Result<String> {
    kubeconfig_path()
        .to_str()
        .map(str::to_owned)
        .context("the kubeconfig path is not UTF-8")
}

/// `kubectl --kubeconfig <testbed> ARGS`; fails unless it exits 0; returns stdout.
pub async fn kubectl(args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let kubeconfig = kubeconfig()?;
    let mut full = vec!["--kubeconfig", kubeconfig.as_str()];
    full.extend_from_slice(args);
    let out = run("kubectl", &full, stdin).await?;
    ensure!(out.code == Some(0), "kubectl {args:?} failed: {out}");
    Ok(out.stdout)
}

/// `kubectl kubeoc --kubeconfig <testbed> ARGS`, whatever its exit code.
pub async fn kubeoc(args: &[&str]) -> anyhow::Result<Run> {
    kubeoc_with_input(args, None).await
}

/// [`kubeoc`] with `input` on stdin.
pub async fn kubeoc_with_input(args: &[&str], input: Option<&str>) -> anyhow::Result<Run> {
    let kubeconfig = kubeconfig()?;
    let mut full = vec!["--kubeconfig", kubeconfig.as_str()];
    full.extend_from_slice(args);
    run(BINARY, &full, input).await
}

/// Whether `controller run` has `--metrics-addr` (being added alongside these tests).
fn controller_has_metrics_flag() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::process::Command::new(BINARY)
            .args(["controller", "run", "--help"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("--metrics-addr"))
            .unwrap_or(false)
    })
}

/// A `controller run` process watching one namespace, with its Lease there too (so tests do not
/// fight over one Lease); killed when dropped. Its log goes to a file the test can print.
pub struct Controller {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Controller {
    /// Starts `kubectl-kubeoc --kubeconfig K -n NS controller run --lease-namespace NS
    /// --metrics-addr 127.0.0.1:0` (the last only when the binary has the flag).
    pub fn start(namespace: &str) -> anyhow::Result<Self> {
        let log = std::env::temp_dir().join(format!("kubeoc-controller-{namespace}.log"));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let kubeconfig = kubeconfig()?;
        let mut args = vec![
            "--kubeconfig",
            kubeconfig.as_str(),
            "-n",
            namespace,
            "controller",
            "run",
            "--lease-namespace",
            namespace,
        ];
        if controller_has_metrics_flag() {
            args.extend_from_slice(&["--metrics-addr", "127.0.0.1:0"]);
        }
        let child = tokio::process::Command::new(BINARY)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .context("starting controller run")?;
        Ok(Self { child, log })
    }

    /// What the controller logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// A Git repository on the host for Git contexts, owned by the pods' uid (git refuses
/// repositories of other owners). Returns its `file://` URL.
pub fn local_repository(name: &str) -> anyhow::Result<String> {
    let dir = kubeoc_testbed::git_repos_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let git = |args: &[&str]| -> anyhow::Result<()> {
        let status = std::process::Command::new("git")
            .args([
                "-c",
                "user.email=test@kubeoc.dev",
                "-c",
                "user.name=kubeoc-test",
                "-C",
            ])
            .arg(&dir)
            .args(args)
            .stdout(Stdio::null())
            .status()?;
        ensure!(status.success(), "git {args:?} failed");
        Ok(())
    };
    git(&["init", "-q", "-b", "main"])?;
    std::fs::write(dir.join("README.md"), "# team repo\n")?;
    git(&["add", "."])?;
    git(&["commit", "-q", "-m", "init"])?;
    let status = std::process::Command::new("chown")
        .args(["-R", "1000:1000"])
        .arg(&dir)
        .status()?;
    ensure!(status.success(), "chown of {} failed", dir.display());
    Ok(format!("file://{}", dir.display()))
}

/// kubeoc installed (CRDs Established), a fresh namespace `<prefix>-xxxxx`, and the
/// `kubeopencode-agent` ServiceAccount in it.
pub async fn prepare_namespace(client: &Client, prefix: &str) -> anyhow::Result<TestNamespace> {
    install::apply(client).await.context("installing kubeoc")?;
    install::wait_established(client, Duration::from_secs(60)).await?;
    let ns = TestNamespace::create(client, prefix).await?;
    kubectl(
        &[
            "-n",
            &ns.name,
            "create",
            "serviceaccount",
            install::AGENT_SERVICE_ACCOUNT,
        ],
        None,
    )
    .await?;
    Ok(ns)
}

/// An inline opencode.json that points OpenCode at the testbed's stub model, so the server
/// starts and answers offline.
pub fn stub_model_config() -> Value {
    json!({
        "provider": {"stub": {
            "npm": "@ai-sdk/openai-compatible",
            "options": {"baseURL": format!("http://{MODEL_ADDR}/v1"), "apiKey": "x"},
            "models": {"stub-model": {}},
        }},
        "model": "stub/stub-model",
    })
}

/// A long-running `kubectl kubeoc` (`-w`, `logs -f`) whose stdout is collected as it comes;
/// killed when dropped.
pub struct Streaming {
    child: tokio::process::Child,
    output: std::sync::Arc<std::sync::Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Streaming {
    /// Starts `kubectl kubeoc --kubeconfig <testbed> ARGS`.
    pub fn start(args: &[&str]) -> anyhow::Result<Self> {
        use tokio::io::AsyncReadExt as _;
        let mut child = tokio::process::Command::new(BINARY)
            .arg("--kubeconfig")
            .arg(kubeconfig()?)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting kubectl kubeoc {args:?}"))?;
        let mut stdout = child.stdout.take().context("no stdout")?;
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let reader = {
            let output = output.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stdout.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut text) = output.lock() {
                        text.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            })
        };
        Ok(Self {
            child,
            output,
            reader,
        })
    }

    /// Its stdout so far.
    pub fn text(&self) -> String {
        self.output.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// The exit code once it has ended by itself (`Some(None)`: killed by a signal), `None`
    /// while it runs.
    pub fn exited(&mut self) -> anyhow::Result<Option<Option<i32>>> {
        Ok(self.child.try_wait()?.map(|status| status.code()))
    }
}

impl Streaming {
    /// Waits for it to end by itself; its exit code (`None`: killed by a signal).
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .with_context(|| {
                format!(
                    "still running after {timeout:?}; printed so far:\n{}",
                    self.text()
                )
            })??;
        Ok(status.code())
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
