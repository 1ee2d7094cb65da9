//! Shell completion: `kubectl kubeoc completion bash|zsh|fish|powershell` prints a script that
//! completes `kubectl-kubeoc ...` by calling the binary back (clap's dynamic completion, so
//! names come from the cluster), and `completion install` puts `kubectl_complete-kubeoc`
//! beside the plugin, which kubectl runs to complete `kubectl kubeoc ...`.

pub mod cobra;
pub mod values;

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap_complete::env::{EnvCompleter, Shells};

/// The environment variable through which a registered shell asks for candidates.
pub const COMPLETE_VAR: &str = "KUBEOC_COMPLETE";
/// The binary the shell scripts complete.
const BIN: &str = "kubectl-kubeoc";
/// The hidden first argument the `kubectl_complete-kubeoc` script passes.
const COBRA_ARG: &str = "__complete";
/// The `kubectl_complete-kubeoc` script, as shipped in `completions/` and the krew archive.
pub const COBRA_SCRIPT: &str = include_str!("../../../completions/kubectl_complete-kubeoc");

#[derive(Debug, clap::Subcommand)]
pub enum CompletionCommand {
    /// Bash: `source <(kubectl kubeoc completion bash)` (add it to ~/.bashrc).
    Bash,
    /// Zsh: `source <(kubectl kubeoc completion zsh)` (add it to ~/.zshrc).
    Zsh,
    /// Fish: `kubectl kubeoc completion fish | source` (or save it in
    /// ~/.config/fish/completions/kubectl-kubeoc.fish).
    Fish,
    /// PowerShell: `kubectl kubeoc completion powershell | Out-String | Invoke-Expression`.
    Powershell,
    /// Install `kubectl_complete-kubeoc` beside the plugin, so kubectl (>= 1.26) completes
    /// `kubectl kubeoc ...` in every shell where kubectl's own completion is loaded.
    Install(InstallArgs),
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Directory to install into; default: the PATH directory that holds kubectl-kubeoc
    /// (with krew, $KREW_ROOT/bin).
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub dir: Option<PathBuf>,
}

/// The shells a script is printed for, by name.
pub const SHELLS: [&str; 4] = ["bash", "zsh", "fish", "powershell"];

pub fn run(command: CompletionCommand) -> anyhow::Result<()> {
    let shell = match command {
        CompletionCommand::Bash => "bash",
        CompletionCommand::Zsh => "zsh",
        CompletionCommand::Fish => "fish",
        CompletionCommand::Powershell => "powershell",
        CompletionCommand::Install(args) => {
            let dir = match args.dir {
                Some(dir) => dir,
                None => plugin_dir()?,
            };
            let path = install(&dir)?;
            println!("installed {}", path.display());
            return Ok(());
        }
    };
    let script = script(shell)?;
    std::io::stdout()
        .write_all(script.as_bytes())
        .context("cannot write the completion script to stdout")
}

/// The registration script for `shell`: it calls `kubectl-kubeoc` back with
/// [`COMPLETE_VAR`] set for each completion.
pub fn script(shell: &str) -> anyhow::Result<String> {
    let completer = shell_completer(shell)?;
    let mut buf = Vec::new();
    completer
        .write_registration(COMPLETE_VAR, BIN, BIN, BIN, &mut buf)
        .with_context(|| format!("cannot write the {shell} completion script"))?;
    String::from_utf8(buf).context("the completion script is not UTF-8")
}

fn shell_completer(shell: &str) -> anyhow::Result<&'static dyn EnvCompleter> {
    const BUILTIN: Shells<'static> = Shells::builtins();
    BUILTIN.completer(shell).with_context(|| {
        format!(
            "no completion for shell {shell:?} (choose one of: {})",
            SHELLS.join(", ")
        )
    })
}

/// Writes `kubectl_complete-kubeoc` into `dir`, executable.
pub fn install(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join(cobra::EXECUTABLE);
    std::fs::write(&path, COBRA_SCRIPT).with_context(|| {
        format!(
            "cannot write {} (choose a directory on PATH you may write to with --dir)",
            path.display()
        )
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", path.display()))?;
    }
    Ok(path)
}

/// The PATH directory kubectl finds the plugin in (the first one holding `kubectl-kubeoc`),
/// else the directory of this executable.
fn plugin_dir() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join(BIN).is_file()));
    if let Some(dir) = on_path {
        return Ok(dir);
    }
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("this executable has no parent directory; pass --dir")
}

/// Answers a completion request if this process is one: kubectl's plugin completion
/// (`kubectl_complete-kubeoc` runs `kubectl-kubeoc __complete WORDS...`, or this binary was
/// started under that name), or a shell script's call back with [`COMPLETE_VAR`] set.
/// Returns `None` for a normal run.
pub fn answer_if_asked() -> Option<ExitCode> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let called_as = args
        .first()
        .and_then(|arg0| Path::new(arg0).file_name().map(|n| n.to_owned()));
    let mut stdout = std::io::stdout().lock();
    if called_as.as_deref() == Some(cobra::EXECUTABLE.as_ref()) {
        args.remove(0);
        return Some(finish(cobra::complete(args, &mut stdout)));
    }
    if args.get(1).is_some_and(|arg| arg == COBRA_ARG) {
        args.drain(..2);
        return Some(finish(cobra::complete(args, &mut stdout)));
    }
    let shell = std::env::var(COMPLETE_VAR).ok().filter(|v| !v.is_empty())?;
    // SAFETY: nothing else runs yet (no runtime, no threads); children must not see the
    // variable and answer a completion themselves.
    unsafe { std::env::remove_var(COMPLETE_VAR) };
    let completer = shell_completer(&shell).ok()?;
    // The script calls `kubectl-kubeoc -- <the words of the line>`.
    let words: Vec<OsString> = match args.iter().position(|a| a == "--") {
        Some(escape) => args.split_off(escape + 1),
        None => return Some(ExitCode::from(2)),
    };
    let index = std::env::var("_CLAP_COMPLETE_INDEX")
        .ok()
        .and_then(|i| i.parse::<usize>().ok())
        .unwrap_or(words.len().saturating_sub(1))
        .min(words.len());
    values::set_scope(&words[..index]);
    let current_dir = std::env::current_dir().ok();
    let written = completer.write_complete(
        &mut values::command(),
        words,
        current_dir.as_deref(),
        &mut stdout,
    );
    Some(finish(written))
}

fn finish(written: std::io::Result<()>) -> ExitCode {
    match written {
        Ok(()) => ExitCode::SUCCESS,
        // Never an error on the prompt line: the shell shows no candidates.
        Err(_) => ExitCode::from(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `completions/` holds what the binary prints, so packagers can ship the files.
    #[test]
    fn the_checked_in_scripts_are_current() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
        for (shell, file) in [
            ("bash", "kubectl-kubeoc.bash"),
            ("zsh", "_kubectl-kubeoc"),
            ("fish", "kubectl-kubeoc.fish"),
            ("powershell", "kubectl-kubeoc.ps1"),
        ] {
            let generated = script(shell).expect("script");
            let path = dir.join(file);
            if std::env::var_os("KUBEOC_UPDATE_COMPLETIONS").is_some() {
                std::fs::write(&path, &generated).expect("write");
            }
            let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                checked_in == generated,
                "{} is stale: run KUBEOC_UPDATE_COMPLETIONS=1 cargo test --lib completion",
                path.display()
            );
        }
    }

    #[test]
    fn install_writes_an_executable_script_that_calls_the_plugin_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = install(dir.path()).expect("install");
        assert_eq!(path, dir.path().join("kubectl_complete-kubeoc"));
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains("kubectl-kubeoc\" __complete \"$@\""),
            "{text}"
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn an_unknown_shell_names_the_ones_there_are() {
        let err = script("tcsh").expect_err("tcsh");
        assert!(
            err.to_string().contains("bash, zsh, fish, powershell"),
            "{err}"
        );
    }
}
