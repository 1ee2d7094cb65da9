//! A terminal program driven as a person uses it: tmux runs it in a detached session of its
//! own server (socket), `send-keys` types, `capture-pane` reads the screen. The tests and the
//! bench drive terminals with it.

use std::time::Duration;

use crate::wait_until;
use anyhow::{Context as _, ensure};

/// One tmux server with one window running a command; killed when dropped.
pub struct Tmux {
    socket: String,
}

fn tmux(socket: &str, args: &[&str]) -> anyhow::Result<String> {
    tmux_with_env(socket, args, &[])
}

fn tmux_with_env(socket: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<String> {
    let out = std::process::Command::new("tmux")
        .args(["-L", socket])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .context("running tmux (apt package tmux)")?;
    ensure!(
        out.status.success(),
        "tmux {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Tmux {
    /// Starts `command` (a shell command line) in a `width`x`height` terminal.
    pub fn start(name: &str, command: &str, width: u16, height: u16) -> anyhow::Result<Self> {
        Self::start_with_env(name, command, width, height, &[])
    }

    /// [`Tmux::start`] with `env` added to the program's environment: a secret given this way
    /// stays out of every process's arguments (tmux's server starts with its first client's
    /// environment).
    pub fn start_with_env(
        name: &str,
        command: &str,
        width: u16,
        height: u16,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let socket = format!("kubeoc-test-{name}-{}", std::process::id());
        let (w, h) = (width.to_string(), height.to_string());
        // The window stays after the program exits, so a test can read its last screen.
        tmux_with_env(
            &socket,
            &[
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                &w,
                "-y",
                &h,
                "-s",
                "t",
                command,
            ],
            env,
        )?;
        tmux(&socket, &["set-option", "-t", "t", "remain-on-exit", "on"])?;
        Ok(Self { socket })
    }

    /// The visible screen, as text.
    pub fn screen(&self) -> anyhow::Result<String> {
        tmux(&self.socket, &["capture-pane", "-p", "-t", "t"])
    }

    /// The screen and all scrollback.
    pub fn scrollback(&self) -> anyhow::Result<String> {
        tmux(&self.socket, &["capture-pane", "-p", "-S", "-", "-t", "t"])
    }

    /// Types `text` literally (no key names).
    pub fn type_text(&self, text: &str) -> anyhow::Result<()> {
        // `--`: text that starts with a dash is typed, not read as a flag.
        tmux(&self.socket, &["send-keys", "-t", "t", "-l", "--", text]).map(drop)
    }

    /// Presses keys by tmux name: `Enter`, `C-c`, `M-Enter`, `PageUp`, `Escape`...
    pub fn keys(&self, keys: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        tmux(&self.socket, &args).map(drop)
    }

    pub fn resize(&self, width: u16, height: u16) -> anyhow::Result<()> {
        let (w, h) = (width.to_string(), height.to_string());
        tmux(
            &self.socket,
            &["resize-window", "-t", "t", "-x", &w, "-y", &h],
        )
        .map(drop)
    }

    /// Whether the program has exited (its pane is dead).
    pub fn exited(&self) -> anyhow::Result<bool> {
        Ok(tmux(
            &self.socket,
            &["display-message", "-p", "-t", "t", "#{pane_dead}"],
        )?
        .trim()
            == "1")
    }

    /// The process ID of the program in the pane.
    pub fn pid(&self) -> anyhow::Result<u32> {
        tmux(
            &self.socket,
            &["display-message", "-p", "-t", "t", "#{pane_pid}"],
        )?
        .trim()
        .parse()
        .context("pane pid")
    }

    /// Waits until the screen shows `needle`; the error shows the last screen.
    pub async fn wait_for(&self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        self.wait_until(&format!("the screen to show {needle:?}"), timeout, |s| {
            s.contains(needle)
        })
        .await
    }

    /// Waits until a line of the screen starts with `answer`: the agent's answers start at the
    /// left edge, while the echoed prompts (which contain the scripted answer) are indented.
    pub async fn wait_for_answer(&self, answer: &str, timeout: Duration) -> anyhow::Result<String> {
        self.wait_until(
            &format!("an answer line starting {answer:?}"),
            timeout,
            |s| shows_answer(s, answer),
        )
        .await
    }

    /// Waits until `check` holds for the screen.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let check = &check;
        wait_until(what, timeout, || async move {
            let screen = self.screen()?;
            if check(&screen) {
                Ok(Some(screen))
            } else {
                anyhow::bail!("the screen shows:\n{screen}")
            }
        })
        .await
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = tmux(&self.socket, &["kill-server"]);
    }
}

/// Whether a line of `screen` starts with `answer` (see [`Tmux::wait_for_answer`]).
pub fn shows_answer(screen: &str, answer: &str) -> bool {
    screen.lines().any(|l| l.starts_with(answer))
}
