//! Git repositories on the host that the testbed's pods clone over `file://`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, ensure};

/// A Git repository under the testbed's Git directory, owned by the pods' uid after every
/// commit (git refuses repositories of other owners). Starts empty, on branch `main`.
pub struct Repository {
    dir: PathBuf,
}

impl Repository {
    /// `git init` in a fresh directory `name` (any old one is removed first).
    pub fn create(name: &str) -> anyhow::Result<Self> {
        let dir = kubeoc_testbed::git_repos_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let repo = Self { dir };
        repo.git(&["init", "-q", "-b", "main"])?;
        Ok(repo)
    }

    /// Where it is on the host.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `file://` URL pods clone.
    pub fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    /// The commit id of HEAD.
    pub fn head(&self) -> anyhow::Result<String> {
        Ok(self.git_output(&["rev-parse", "HEAD"])?.trim().to_string())
    }

    /// Runs `git ARGS` in the repository; fails with git's stderr unless it exits 0.
    pub fn git(&self, args: &[&str]) -> anyhow::Result<()> {
        self.git_output(args).map(drop)
    }

    fn git_output(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.email=test@kubeoc.dev",
                "-c",
                "user.name=kubeoc-test",
                // The repository belongs to the pods' uid once committed to.
                "-c",
                "safe.directory=*",
                "-C",
            ])
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running git {args:?}"))?;
        ensure!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Writes the files (creating directories), commits them on the current branch, and hands
    /// the repository to the pods' uid.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> anyhow::Result<()> {
        for (path, content) in files {
            let path = self.dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, content)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        self.git(&["add", "."])?;
        self.git(&["commit", "-q", "-m", message])?;
        chown_pods_uid(&self.dir)
    }
}

fn chown_pods_uid(dir: &Path) -> anyhow::Result<()> {
    let status = std::process::Command::new("chown")
        .args(["-R", "1000:1000"])
        .arg(dir)
        .status()?;
    ensure!(
        status.success(),
        "chown -R 1000:1000 {} failed",
        dir.display()
    );
    Ok(())
}

/// A repository `name` with one commit (`README.md`, "# team repo"); its `file://` URL.
pub fn local_repository(name: &str) -> anyhow::Result<String> {
    let repo = Repository::create(name)?;
    repo.commit(&[("README.md", "# team repo\n")], "init")?;
    Ok(repo.url())
}

/// `git-daemon` serving the testbed's Git directory on the bridge (`git://`), for what must
/// not read repositories from the local filesystem (the controller's sync policy Rollout).
pub struct GitDaemon {
    port: u16,
    _child: tokio::process::Child,
    _home: tempfile::TempDir,
}

impl GitDaemon {
    pub async fn start() -> anyhow::Result<Self> {
        // The repositories belong to the pods' uid; the daemon runs as root.
        let home = tempfile::tempdir()?;
        std::fs::write(home.path().join(".gitconfig"), "[safe]\n\tdirectory = *\n")?;
        let exec_path = std::process::Command::new("git")
            .arg("--exec-path")
            .output()
            .context("git --exec-path")?;
        let exec_path = String::from_utf8_lossy(&exec_path.stdout)
            .trim()
            .to_string();
        let port = super::free_bridge_port()?;
        // git-daemon itself: `git daemon` would leave it running when killed.
        let child = tokio::process::Command::new(format!("{exec_path}/git-daemon"))
            .args(["--reuseaddr", "--export-all"])
            .arg(format!("--listen={}", super::BRIDGE_HOST))
            .arg(format!("--port={port}"))
            .arg(format!(
                "--base-path={}",
                kubeoc_testbed::git_repos_dir().display()
            ))
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting git-daemon")?;
        kubeoc_testbed::wait_until(
            "git-daemon to listen",
            std::time::Duration::from_secs(10),
            || async {
                Ok(tokio::net::TcpStream::connect((super::BRIDGE_HOST, port))
                    .await
                    .ok()
                    .map(drop))
            },
        )
        .await?;
        Ok(Self {
            port,
            _child: child,
            _home: home,
        })
    }

    /// The `git://` URL of `repository`.
    pub fn url(&self, repository: &Repository) -> String {
        let name = repository
            .dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("git://{}:{}/{name}", super::BRIDGE_HOST, self.port)
    }
}
