//! The controller under measurement: `kubectl-kubeoc controller run` as a process of its own,
//! read from outside through /proc (resident memory, sampled anonymous memory, CPU time) and its /metrics endpoint.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kubeoc_testbed::http_client;

/// A running controller.
pub struct Controller {
    child: tokio::process::Child,
    pid: u32,
    metrics: String,
    log: PathBuf,
    /// The bits of [`Controller::peak_anon_mb`], kept up by a sampling task.
    peak_anon: Arc<AtomicU64>,
    sampler: tokio::task::JoinHandle<()>,
}

/// How often the anonymous memory is sampled: the kernel keeps no peak of it.
pub const ANON_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// A memory figure of /proc/<pid>/status (`VmHWM`, `VmRSS`, `RssAnon`) in MB.
fn status_mb(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading the controller's /proc status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in /proc/<pid>/status"))?;
    Ok(kib * 1024.0 / 1e6)
}

/// Samples RssAnon every [`ANON_SAMPLE_EVERY`] into `peak` until the process is gone.
async fn sample_anon(pid: u32, peak: Arc<AtomicU64>) {
    while let Ok(now) = status_mb(pid, "RssAnon") {
        if now > f64::from_bits(peak.load(Ordering::Relaxed)) {
            peak.store(now.to_bits(), Ordering::Relaxed);
        }
        tokio::time::sleep(ANON_SAMPLE_EVERY).await;
    }
}

/// Clock ticks a second, for /proc/<pid>/stat's CPU times (Linux's USER_HZ is 100 on every
/// architecture kubeoc builds for).
const TICKS_PER_SECOND: f64 = 100.0;

fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Controller {
    /// Starts `binary controller run` for `namespace`, without leader election, logging to
    /// `log`.
    pub fn start(
        binary: &Path,
        kubeconfig: &Path,
        namespace: &str,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let port = free_loopback_port()?;
        let metrics = format!("127.0.0.1:{port}");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = tokio::process::Command::new(binary)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["-n", namespace, "controller", "run", "--leader-elect=false"])
            .args(["--metrics-addr", &metrics])
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} controller run", binary.display()))?;
        let pid = child.id().context("the controller exited at once")?;
        let peak_anon = Arc::new(AtomicU64::new(0.0_f64.to_bits()));
        let sampler = tokio::spawn(sample_anon(pid, peak_anon.clone()));
        Ok(Controller {
            child,
            pid,
            metrics,
            log: log.to_path_buf(),
            peak_anon,
            sampler,
        })
    }

    /// Peak resident memory (VmHWM) in MB, the unit of the memory goals.
    pub fn peak_rss_mb(&self) -> anyhow::Result<f64> {
        status_mb(self.pid, "VmHWM")
    }

    /// Resident memory now (VmRSS) in MB.
    pub fn rss_mb(&self) -> anyhow::Result<f64> {
        status_mb(self.pid, "VmRSS")
    }

    /// The highest anonymous resident memory (RssAnon: heap and stacks, without the binary's
    /// file-backed pages, which are shared and reclaimable) seen so far, in MB.
    pub fn peak_anon_mb(&self) -> f64 {
        f64::from_bits(self.peak_anon.load(Ordering::Relaxed))
    }

    /// User plus system CPU seconds so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .context("reading the controller's /proc stat")?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .context("malformed /proc stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
        let ticks = |i: usize| -> anyhow::Result<f64> {
            Ok(fields.get(i).context("short /proc stat")?.parse::<f64>()?)
        };
        Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
    }

    /// The controller's /metrics text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let url = format!("http://{}/metrics", self.metrics);
        let response = http_client::get(&url, &[], Duration::from_secs(10)).await?;
        if response.status != 200 {
            bail!("GET {url}: status {}", response.status);
        }
        Ok(response.text())
    }

    /// Sum of a counter's samples whose line starts with `prefix` (name and labels so far).
    pub async fn counter(&self, prefix: &str) -> anyhow::Result<f64> {
        let text = self.metrics().await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Waits until /readyz answers 200 (reconcilers started and synced).
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let url = format!("http://{}/readyz", self.metrics);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the controller exited with {status}; its log: {}",
                    self.log.display()
                );
            }
            let answer = http_client::get(&url, &[], Duration::from_secs(2)).await;
            if answer.is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the controller was not ready within {timeout:?}; its log: {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops it with SIGTERM and waits for the exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => self.child.kill().await?,
        }
        Ok(())
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.sampler.abort();
    }
}
