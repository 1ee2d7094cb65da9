//! Packaging: the krew manifests follow Cargo.toml, `make dist`'s script writes the archive's
//! sha256 into them, and real krew (built from its Go module) installs the archive as a
//! working `kubectl kubeoc` that reaches the testbed, and uninstalls it without a trace.

mod support;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, ensure};
use serde_json::Value;
use support::process::{Run, run};
use support::{BINARY, kubeconfig};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifest(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
    serde_saphyr::from_str(&text).with_context(|| format!("parsing {path:?}"))
}

fn version() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

/// This machine's krew platform, as `make dist` names it.
fn platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    (std::env::consts::OS, arch)
}

fn platforms(manifest: &Value) -> Vec<&Value> {
    manifest["spec"]["platforms"]
        .as_array()
        .map(|p| p.iter().collect())
        .unwrap_or_default()
}

fn platform_entry<'a>(manifest: &'a Value, os: &str, arch: &str) -> Option<&'a Value> {
    platforms(manifest).into_iter().find(|p| {
        p["selector"]["matchLabels"]["os"] == os && p["selector"]["matchLabels"]["arch"] == arch
    })
}

fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let out = std::process::Command::new("sha256sum").arg(path).output()?;
    ensure!(out.status.success(), "sha256sum {path:?}");
    Ok(String::from_utf8(out.stdout)?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// Runs one of the repository's bash scripts with `env`; the path it prints on stdout.
async fn script_output(
    script: &str,
    args: &[&str],
    env: &[(&str, &Path)],
) -> anyhow::Result<PathBuf> {
    let out = tokio::process::Command::new("bash")
        .arg(repo().join(script))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// `scripts/dist.sh` (what `make dist` runs) packaging the test build into `dir`.
async fn dist_into(dir: &Path) -> anyhow::Result<PathBuf> {
    script_output(
        "scripts/dist.sh",
        &[],
        &[
            ("KUBEOC_DIST_BINARY", Path::new(BINARY)),
            ("KUBEOC_DIST_DIR", dir),
        ],
    )
    .await
}

#[test]
fn the_manifests_follow_cargo_and_name_every_platform() -> anyhow::Result<()> {
    let plugin = manifest(&repo().join("plugin.yaml"))?;
    let index = manifest(&repo().join("krew-manifest.yaml"))?;
    ensure!(
        plugin == index,
        "krew-manifest.yaml is not plugin.yaml's copy: run make dist"
    );
    ensure!(plugin["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2");
    ensure!(plugin["kind"] == "Plugin");
    ensure!(plugin["metadata"]["name"] == "kubeoc");
    ensure!(
        plugin["spec"]["version"] == version().as_str(),
        "plugin.yaml has version {} but Cargo.toml {}: run make dist",
        plugin["spec"]["version"],
        version()
    );
    for key in ["shortDescription", "description", "caveats", "homepage"] {
        ensure!(
            plugin["spec"][key]
                .as_str()
                .is_some_and(|s| !s.trim().is_empty()),
            "spec.{key} is empty"
        );
    }
    ensure!(
        plugin["spec"]["caveats"]
            .as_str()
            .is_some_and(|c| c.contains("kubectl kubeoc install")),
        "the caveats say what to run after installing"
    );
    ensure!(platforms(&plugin).len() == 4, "four platforms");
    for (os, arch) in [
        ("linux", "amd64"),
        ("linux", "arm64"),
        ("darwin", "amd64"),
        ("darwin", "arm64"),
    ] {
        let entry = platform_entry(&plugin, os, arch).with_context(|| format!("{os}/{arch}"))?;
        let uri = entry["uri"].as_str().unwrap_or_default();
        ensure!(
            uri.ends_with(&format!(
                "/{}/kubeoc_{}_{os}_{arch}.tar.gz",
                version(),
                version()
            )),
            "{os}/{arch} uri {uri}"
        );
        let sha = entry["sha256"].as_str().unwrap_or_default();
        ensure!(
            sha.len() == 64
                && sha
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{os}/{arch} sha256 {sha:?} is not what krew accepts"
        );
        ensure!(entry["bin"] == "kubectl-kubeoc");
        let files: Vec<&str> = entry["files"]
            .as_array()
            .map(|f| f.iter().filter_map(|f| f["from"].as_str()).collect())
            .unwrap_or_default();
        ensure!(
            files == ["kubectl-kubeoc", "kubectl_complete-kubeoc", "LICENSE"],
            "{os}/{arch} files {files:?}"
        );
    }
    ensure!(repo().join("LICENSE").is_file(), "a LICENSE at the root");
    Ok(())
}

#[tokio::test]
async fn dist_writes_the_archive_and_its_sha256_into_both_manifests() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let archive = dist_into(dir.path()).await?;
    let (os, arch) = platform();
    ensure!(
        archive.file_name().and_then(|n| n.to_str())
            == Some(format!("kubeoc_{}_{os}_{arch}.tar.gz", version()).as_str()),
        "archive name {archive:?}"
    );
    let listing = run("tar", &["tzf", &archive.to_string_lossy()], None).await?;
    let mut files: Vec<&str> = listing.stdout.lines().collect();
    files.sort();
    ensure!(
        files == ["LICENSE", "kubectl-kubeoc", "kubectl_complete-kubeoc"],
        "archive holds {files:?}"
    );
    let sha = sha256_of(&archive)?;
    // The same inputs give the same archive (fixed order, owners and times).
    let again = tempfile::tempdir()?;
    let repeated = sha256_of(&dist_into(again.path()).await?)?;
    ensure!(
        repeated == sha,
        "two dist runs of one binary differ: {sha} and {repeated}"
    );
    let written = manifest(&dir.path().join("plugin.yaml"))?;
    let index = manifest(&dir.path().join("krew-manifest.yaml"))?;
    ensure!(written == index, "both manifests are written alike");
    let entry = platform_entry(&written, os, arch).context("this platform")?;
    ensure!(
        entry["sha256"] == sha.as_str(),
        "{os}/{arch} sha256 {} is not the archive's {sha}",
        entry["sha256"]
    );
    // Nothing else changes: the other platforms keep theirs.
    let mut checked_in = manifest(&repo().join("plugin.yaml"))?;
    for p in checked_in["spec"]["platforms"]
        .as_array_mut()
        .context("platforms")?
    {
        if p["selector"]["matchLabels"]["os"] == os && p["selector"]["matchLabels"]["arch"] == arch
        {
            p["sha256"] = Value::String(sha.clone());
        }
    }
    ensure!(
        checked_in == written,
        "dist changed more than this platform's sha256"
    );
    Ok(())
}

/// A krew install of its own: `KREW_ROOT` in a temporary directory, krew's own network call
/// (its upgrade check) switched off, and any request krew would still make sent to a closed
/// loopback port instead of the internet.
struct Krew {
    root: tempfile::TempDir,
    bin_dir: PathBuf,
}

impl Krew {
    async fn new() -> anyhow::Result<Self> {
        let krew = script_output("testbed/scripts/build-go-tool.sh", &["krew"], &[]).await?;
        let bin_dir = krew.parent().context("krew's directory")?.to_path_buf();
        let root = tempfile::tempdir()?;
        // `krew list` and `krew uninstall` want the plugin index that `krew update` clones
        // from GitHub; an empty local Git repository stands in for it, so nothing leaves the
        // machine.
        let index = root.path().join("index/default");
        std::fs::create_dir_all(index.join("plugins"))?;
        let init = std::process::Command::new("git")
            .args(["init", "-q"])
            .arg(&index)
            .output()?;
        ensure!(init.status.success(), "git init of the local krew index");
        Ok(Self { root, bin_dir })
    }

    fn path(&self) -> String {
        let system = std::env::var("PATH").unwrap_or_default();
        format!(
            "{}:{}:{system}",
            self.root.path().join("bin").display(),
            self.bin_dir.display()
        )
    }

    /// `kubectl ARGS` with this krew's plugins on PATH and the testbed's kubeconfig.
    async fn kubectl(&self, args: &[&str]) -> anyhow::Result<Run> {
        let mut command = tokio::process::Command::new("kubectl");
        if args.first() == Some(&"krew") {
            command
                .env("HTTPS_PROXY", "http://127.0.0.1:9")
                .env("HTTP_PROXY", "http://127.0.0.1:9")
                .env("NO_PROXY", "");
        }
        let out = command
            .args(args)
            .env("PATH", self.path())
            .env("KREW_ROOT", self.root.path())
            .env("KREW_NO_UPGRADE_CHECK", "1")
            .env("KUBECONFIG", kubeconfig()?)
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .await?;
        Ok(Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Every path under KREW_ROOT that mentions kubeoc.
    fn kubeoc_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.to_string_lossy().contains("kubeoc") {
                    found.push(path.clone());
                }
                if path.is_dir() && !path.is_symlink() {
                    walk(&path, found);
                }
            }
        }
        let mut found = Vec::new();
        walk(self.root.path(), &mut found);
        found
    }
}

#[tokio::test]
async fn krew_installs_the_archive_as_a_working_plugin_and_uninstalls_it() -> anyhow::Result<()> {
    let client = kubeoc_testbed::admin_client().await?;
    let ns = support::installed_namespace(&client, "krew").await?;
    let n = ns.name.clone();
    support::apply(
        &n,
        &serde_json::json!({"apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": "installed-by-krew"},
            "spec": {"workspaceDir": "/workspace", "serviceAccountName": "kubeopencode-agent"}}),
    )
    .await?;

    let dist = tempfile::tempdir()?;
    let archive = dist_into(dist.path()).await?;
    let manifest = dist.path().join("plugin.yaml");
    let krew = Krew::new().await?;
    let installed = krew
        .kubectl(&[
            "krew",
            "install",
            &format!("--manifest={}", manifest.display()),
            &format!("--archive={}", archive.display()),
        ])
        .await?;
    ensure!(installed.success(), "krew install: {installed}");
    ensure!(
        installed.all().contains("kubectl kubeoc install"),
        "krew shows the caveats: {installed}"
    );

    let listed = krew.kubectl(&["plugin", "list"]).await?;
    ensure!(
        listed.stdout.contains(
            &krew
                .root
                .path()
                .join("bin/kubectl-kubeoc")
                .to_string_lossy()
                .to_string()
        ),
        "kubectl finds the plugin in KREW_ROOT/bin: {listed}"
    );
    let version = krew.kubectl(&["kubeoc", "version"]).await?;
    ensure!(
        version.success() && version.stdout.contains(env!("CARGO_PKG_VERSION")),
        "kubectl kubeoc version: {version}"
    );
    ensure!(
        version.stdout.contains("Server"),
        "the installed plugin reaches the testbed: {version}"
    );
    let agents = krew.kubectl(&["kubeoc", "-n", &n, "agent", "list"]).await?;
    ensure!(
        agents.success() && agents.stdout.contains("installed-by-krew"),
        "kubectl kubeoc agent list: {agents}"
    );
    let receipts = krew.kubectl(&["krew", "list"]).await?;
    ensure!(receipts.stdout.contains("kubeoc"), "krew list: {receipts}");

    let removed = krew.kubectl(&["krew", "uninstall", "kubeoc"]).await?;
    ensure!(removed.success(), "krew uninstall: {removed}");
    let left = krew.kubeoc_files();
    ensure!(left.is_empty(), "krew uninstall left {left:?}");
    let gone = krew.kubectl(&["kubeoc", "version"]).await?;
    ensure!(!gone.success(), "the plugin is gone: {gone}");
    Ok(())
}
