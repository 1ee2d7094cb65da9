//! Programs the tests run: kubectl, `kubectl kubeoc` (to the end, or streaming), and
//! `controller run` processes.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use kubeoc_testbed::wait_until;

use super::{BINARY, kubeconfig};

/// No single `kubectl kubeoc` run may hang a test for longer than this (it is above the
/// longest `agent wait --timeout` the tests pass).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// How long one kubectl invocation may take before the test gives up on it.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

/// How a program ended and what it printed.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

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

/// Runs a program with stdin from `/dev/null` (never a terminal) or from `input`, and
/// `NO_COLOR` set; fails if it runs longer than five minutes.
pub async fn run(program: &str, args: &[&str], input: Option<&str>) -> anyhow::Result<Run> {
    run_within(RUN_TIMEOUT, program, args, input).await
}

/// [`run`] with a deadline of `timeout`.
pub async fn run_within(
    timeout: Duration,
    program: &str,
    args: &[&str],
    input: Option<&str>,
) -> anyhow::Result<Run> {
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
        .with_context(|| format!("starting {program} (is it on PATH?)"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).await?;
        // Dropping stdin closes it, so the program sees the end of its input.
    }
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .with_context(|| {
            format!(
                "{program} {} did not finish within {timeout:?}",
                args.join(" ")
            )
        })??;
    Ok(Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `kubectl --kubeconfig <testbed> ARGS`, whatever its exit code.
pub async fn kubectl_run(args: &[&str], stdin: Option<&str>) -> anyhow::Result<Run> {
    let kubeconfig = kubeconfig()?;
    let mut full = vec!["--kubeconfig", kubeconfig.as_str()];
    full.extend_from_slice(args);
    run_within(KUBECTL_TIMEOUT, "kubectl", &full, stdin).await
}

/// `kubectl --kubeconfig <testbed> ARGS`; fails unless it exits 0; returns stdout.
pub async fn kubectl(args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let out = kubectl_run(args, stdin).await?;
    ensure!(out.success(), "kubectl {args:?} failed: {out}");
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

/// Numbers the controller log files of one test process.
static CONTROLLERS: AtomicUsize = AtomicUsize::new(0);

/// A `controller run` process watching one namespace; killed when dropped. Its log (stdout and
/// stderr) goes to a file of its own that the test can read with [`Controller::log`].
pub struct Controller {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Controller {
    /// Starts `kubectl-kubeoc --kubeconfig K -n NS controller run --lease-namespace NS
    /// --metrics-addr 127.0.0.1:0`: its Lease in the test namespace (so tests do not fight
    /// over one Lease) and its metrics endpoint on a free port (tests run controllers side by
    /// side).
    pub fn start(namespace: &str) -> anyhow::Result<Self> {
        Self::start_with(namespace, &[])
    }

    /// [`Controller::start`] with `extra` arguments after those (`--leader-elect=false`,
    /// `--log-format json`...). A flag in `extra` replaces its default: `--kubeconfig X`,
    /// `--lease-namespace X`, `--metrics-addr X`.
    pub fn start_with(namespace: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let log = std::env::temp_dir().join(format!(
            "kubeoc-controller-{namespace}-{}.log",
            CONTROLLERS.fetch_add(1, Ordering::Relaxed) + 1
        ));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let given = |flag: &str| {
            extra
                .iter()
                .any(|a| *a == flag || a.starts_with(&format!("{flag}=")))
        };
        let kubeconfig = kubeconfig()?;
        let mut args = Vec::new();
        if !given("--kubeconfig") {
            args.extend_from_slice(&["--kubeconfig", kubeconfig.as_str()]);
        }
        args.extend_from_slice(&["-n", namespace, "controller", "run"]);
        for (flag, default) in [
            ("--lease-namespace", namespace),
            ("--metrics-addr", "127.0.0.1:0"),
        ] {
            if !given(flag) {
                args.extend_from_slice(&[flag, default]);
            }
        }
        args.extend_from_slice(extra);
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

    /// Waits up to `timeout` for it to exit by itself; `None` while it still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => Ok(Some(status?)),
            Err(_) => Ok(None),
        }
    }

    /// Sends SIGINT (Ctrl-C) and waits up to `timeout` for the exit; (status, log).
    pub async fn interrupt(mut self, timeout: Duration) -> anyhow::Result<(ExitStatus, String)> {
        let pid = self.pid().context("the controller already exited")?;
        let sent = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()?;
        ensure!(sent.success(), "kill -INT {pid} failed");
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .with_context(|| format!("still running after Ctrl-C:\n{}", self.log()))??;
        Ok((status, self.log()))
    }

    /// The address from the `serving metrics and health probes addr=...` log line, waiting up
    /// to `timeout` for it.
    pub async fn metrics_addr(&self, timeout: Duration) -> anyhow::Result<String> {
        wait_until("the metrics address in the log", timeout, || async {
            Ok(self
                .log()
                .lines()
                .filter(|l| l.contains("serving metrics and health probes"))
                .find_map(|l| l.split_once("addr=").map(|(_, a)| a.trim().to_string())))
        })
        .await
        .with_context(|| format!("controller log:\n{}", self.log()))
    }
}
