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

    /// Runs `git ARGS` in the repository; fails with git's stderr unless it exits 0.
    pub fn git(&self, args: &[&str]) -> anyhow::Result<()> {
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
        Ok(())
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
