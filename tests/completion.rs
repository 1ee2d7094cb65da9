//! Shell completion against the testbed: `kubectl_complete-kubeoc` (what kubectl runs for
//! `kubectl kubeoc <TAB>`) lists the cluster's names in cobra's format; an interactive bash
//! with kubectl's completion loaded completes Agent names as a person types them; a cluster
//! that is down or does not answer gives no candidates and nothing on the screen.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use serde_json::json;
use support::tmux::Tmux;
use support::{BINARY, apply, kubeconfig};

const SCREEN: Duration = Duration::from_secs(30);

/// Debian's bash-completion package (`.ci/run` installs it), which kubectl's script needs.
const BASH_COMPLETION: &str = "/usr/share/bash-completion/bash_completion";

/// A directory on PATH as krew's bin would be: the plugin and the completion script that
/// `kubectl kubeoc completion install` puts beside it.
fn plugin_dir() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::os::unix::fs::symlink(BINARY, dir.path().join("kubectl-kubeoc"))?;
    let out = std::process::Command::new(BINARY)
        .args(["completion", "install", "--dir"])
        .arg(dir.path())
        .output()?;
    ensure!(
        out.status.success(),
        "completion install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(dir.path().join("kubectl_complete-kubeoc").is_file());
    Ok(dir)
}

/// A copy of the testbed kubeconfig whose context defaults to `namespace`.
fn kubeconfig_in(namespace: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("kubeconfig");
    std::fs::copy(kubeconfig()?, &path)?;
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&path)
        .args(["config", "set-context", "--current"])
        .arg(format!("--namespace={namespace}"))
        .output()?;
    ensure!(out.status.success(), "kubectl config set-context");
    Ok(path)
}

/// A kubeconfig whose server is `server`, with no credentials.
fn kubeconfig_for(server: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("down.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: down\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: down\n  context:\n    cluster: down\n    user: nobody\n    namespace: team\nusers:\n- name: nobody\n  user: {{}}\ncurrent-context: down\n"
        ),
    )?;
    Ok(path)
}

/// A kubeconfig for a cluster that is down: nothing listens on its loopback port.
fn down_kubeconfig(dir: &Path) -> anyhow::Result<PathBuf> {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = closed.local_addr()?.port();
    drop(closed);
    kubeconfig_for(&format!("https://127.0.0.1:{port}"), dir)
}

/// Runs the installed `kubectl_complete-kubeoc WORDS...` as kubectl would.
fn complete(plugins: &Path, kubeconfig: &Path, words: &[&str]) -> anyhow::Result<(String, String)> {
    let out = std::process::Command::new(plugins.join("kubectl_complete-kubeoc"))
        .args(words)
        .env("KUBECONFIG", kubeconfig)
        .output()?;
    ensure!(
        out.status.success(),
        "kubectl_complete-kubeoc {words:?} failed"
    );
    Ok((
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

async fn namespace_with_objects() -> anyhow::Result<kubeoc_testbed::TestNamespace> {
    let client = kubeoc_testbed::admin_client().await?;
    let ns = support::installed_namespace(&client, "complete").await?;
    for name in ["alpha-one", "alpha-two"] {
        apply(
            &ns.name,
            &json!({"apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
                "metadata": {"name": name},
                "spec": {"workspaceDir": "/workspace", "serviceAccountName": "kubeopencode-agent"}}),
        )
        .await?;
    }
    apply(
        &ns.name,
        &json!({"apiVersion": "kubeopencode.io/v1alpha1", "kind": "Task",
            "metadata": {"name": "review-1"},
            "spec": {"agentRef": {"name": "alpha-one"}, "description": "hi"}}),
    )
    .await?;
    Ok(ns)
}

#[tokio::test]
async fn kubectl_complete_lists_the_cluster_names_in_cobras_format() -> anyhow::Result<()> {
    let ns = namespace_with_objects().await?;
    let plugins = plugin_dir()?;
    let config = kubeconfig_in(&ns.name, plugins.path())?;

    let (agents, stderr) = complete(plugins.path(), &config, &["agent", "describe", ""])?;
    ensure!(
        agents == "alpha-one\nalpha-two\n:4\n",
        "agent describe: {agents:?} (stderr {stderr:?})"
    );
    let (prefixed, _) = complete(plugins.path(), &config, &["agent", "attach", "alpha-t"])?;
    ensure!(
        prefixed == "alpha-two\n:4\n",
        "a prefix narrows: {prefixed:?}"
    );
    let (tasks, _) = complete(plugins.path(), &config, &["task", "logs", ""])?;
    ensure!(tasks == "review-1\n:4\n", "task logs: {tasks:?}");
    let (for_submit, _) = complete(plugins.path(), &config, &["task", "submit", "--agent", ""])?;
    ensure!(
        for_submit == "alpha-one\nalpha-two\n:4\n",
        "task submit --agent: {for_submit:?}"
    );
    // -n on the line wins over the context's namespace.
    let (elsewhere, _) = complete(
        plugins.path(),
        &config,
        &["-n", "kube-system", "agent", "describe", ""],
    )?;
    ensure!(
        elsewhere == ":4\n",
        "no Agents in kube-system: {elsewhere:?}"
    );
    let (namespaces, _) = complete(plugins.path(), &config, &["agent", "list", "-n", "comp"])?;
    ensure!(
        namespaces.lines().any(|l| l == ns.name),
        "namespaces for -n: {namespaces:?}"
    );

    // kubectl's own completion reaches the plugin's: what bash and zsh call under the hood.
    let path = format!(
        "{}:{}",
        plugins.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("kubectl")
        .args(["__complete", "kubeoc", "agent", "describe", ""])
        .env("PATH", &path)
        .env("KUBECONFIG", &config)
        .output()?;
    let through_kubectl = String::from_utf8(out.stdout)?;
    ensure!(
        through_kubectl.lines().take(2).collect::<Vec<_>>() == ["alpha-one", "alpha-two"]
            && through_kubectl.contains(":4"),
        "kubectl __complete kubeoc agent describe: {through_kubectl:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_cluster_that_is_down_or_silent_gives_no_candidates_and_no_error() -> anyhow::Result<()> {
    let plugins = plugin_dir()?;
    let down = down_kubeconfig(plugins.path())?;
    let (out, stderr) = complete(plugins.path(), &down, &["agent", "describe", ""])?;
    ensure!(
        out == ":4\n" && stderr.is_empty(),
        "down: {out:?} {stderr:?}"
    );

    // Silent: it accepts connections and never answers; the completion gives up within its
    // 2 s budget instead of holding the prompt.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let silent_config =
        kubeconfig_for(&format!("https://{}", silent.local_addr()?), plugins.path())?;
    let started = Instant::now();
    let (out, stderr) = complete(plugins.path(), &silent_config, &["agent", "describe", ""])?;
    let took = started.elapsed();
    ensure!(
        out == ":4\n" && stderr.is_empty(),
        "silent: {out:?} {stderr:?}"
    );
    ensure!(
        took < Duration::from_secs(5),
        "a silent cluster held the completion for {took:?}"
    );
    drop(silent);
    Ok(())
}

/// An interactive bash with kubectl's completion loaded, the plugin on PATH and `kubeconfig`.
fn bash(name: &str, plugins: &Path, kubeconfig: &Path) -> anyhow::Result<Tmux> {
    let kubectl_dir = which("kubectl")?;
    let command = format!(
        "env -i HOME={home} TERM=xterm PS1='$ ' PATH={plugins}:{kubectl}:/usr/bin:/bin KUBECONFIG={kc} bash --norc --noprofile -i",
        home = plugins.display(),
        plugins = plugins.display(),
        kubectl = kubectl_dir.display(),
        kc = kubeconfig.display(),
    );
    let term = Tmux::start(name, &command, 120, 30)?;
    // As a user's ~/.bashrc has it: the bash-completion package, then kubectl's script.
    term.type_text(&format!(
        "source {BASH_COMPLETION} && source <(kubectl completion bash) && echo completion-loaded"
    ))?;
    term.keys(&["Enter"])?;
    Ok(term)
}

fn which(program: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").context("no PATH")?;
    std::env::split_paths(&path)
        .find(|dir| dir.join(program).is_file())
        .with_context(|| format!("{program} is not on PATH"))
}

#[tokio::test]
async fn bash_completes_agent_names_as_a_person_types() -> anyhow::Result<()> {
    let ns = namespace_with_objects().await?;
    let plugins = plugin_dir()?;
    let config = kubeconfig_in(&ns.name, plugins.path())?;
    let term = bash("bash-complete", plugins.path(), &config)?;
    term.wait_for("\ncompletion-loaded", SCREEN).await?;

    term.type_text("kubectl kubeoc ag")?;
    term.keys(&["Tab"])?;
    // (The screen is read without trailing blanks; the next steps show the spaces.)
    term.wait_for("$ kubectl kubeoc agent", SCREEN).await?;
    term.type_text("desc")?;
    term.keys(&["Tab"])?;
    term.wait_for("$ kubectl kubeoc agent describe", SCREEN)
        .await?;
    // One Tab inserts the common prefix; Tab twice more on the ambiguous word lists both.
    term.keys(&["Tab"])?;
    term.wait_for("describe alpha-", SCREEN).await?;
    term.keys(&["Tab", "Tab"])?;
    term.wait_for("alpha-two", SCREEN).await?;
    let screen = term.screen()?;
    ensure!(
        screen.contains("alpha-one") && screen.contains("alpha-two"),
        "both names listed:\n{screen}"
    );
    term.type_text("t")?;
    term.keys(&["Tab"])?;
    term.type_text("-x")?;
    term.wait_for("describe alpha-two -x", SCREEN).await?;
    Ok(())
}

#[tokio::test]
async fn bash_with_the_cluster_down_shows_no_error() -> anyhow::Result<()> {
    let plugins = plugin_dir()?;
    let down = down_kubeconfig(plugins.path())?;
    let term = bash("bash-down", plugins.path(), &down)?;
    term.wait_for("\ncompletion-loaded", SCREEN).await?;
    term.type_text("kubectl kubeoc agent describe ")?;
    term.keys(&["Tab", "Tab"])?;
    // Keys are read in order, so once the marker shows, both completions have returned.
    term.type_text("# typed-after-tab")?;
    term.wait_for("describe # typed-after-tab", SCREEN).await?;
    let screen = term.screen()?;
    for noise in [
        "rror",
        "refused",
        "unable",
        "panic",
        "127.0.0.1",
        "not found",
        "bash:",
    ] {
        ensure!(
            !screen.contains(noise),
            "{noise:?} on the screen after Tab with the cluster down:\n{screen}"
        );
    }
    Ok(())
}
