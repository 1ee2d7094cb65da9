//! What the apiserver's service proxy adds to a streamed answer: the time from sending a
//! prompt to its first streamed character, through the proxy (as `agent attach` talks) and
//! straight at the server pod's address, in turn, on one real Agent with the stub model; and
//! the time from typing `agent attach` to a chat screen, against OpenCode's own `opencode
//! attach` to the same server.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{Stream, StreamExt as _};
use kubeoc::front::PASSWORD_ENV;
use kubeoc::opencode::client::ServerProxy;
use kubeoc::opencode::events::{Event, StreamError};
use kubeoc_testbed::agents::WORKSPACE;
use kubeoc_testbed::tmux::Tmux;

use crate::report::{Goal, Row, median};

/// Milliseconds from `prompt_async` to the first text delta of the answer.
async fn first_character<S>(server: &ServerProxy, events: &mut S) -> anyhow::Result<f64>
where
    S: Stream<Item = Result<Event, StreamError>> + Unpin,
{
    let session = server.create_session("kubeoc bench").await?;
    let started = Instant::now();
    server.prompt_async(&session.id, "[[reply:ok]]").await?;
    let mut first = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .context("no answer within 60 s")?
            .context("the event stream ended")?
            .map_err(|e| anyhow::anyhow!("event stream: {e}"))?;
        match event {
            Event::PartDelta {
                session_id, delta, ..
            } if session_id == session.id && !delta.is_empty() => {
                first.get_or_insert(started.elapsed());
            }
            Event::SessionIdle { session_id } if session_id == session.id => break,
            Event::SessionError { session_id, error }
                if session_id.as_deref() == Some(session.id.as_str()) =>
            {
                bail!("the turn failed: {error:?}");
            }
            _ => {}
        }
    }
    server.delete_session(&session.id).await?;
    Ok(first
        .context("the answer had no streamed text")?
        .as_secs_f64()
        * 1e3)
}

/// Median first-character time through the proxy minus straight at the pod, over `samples`
/// prompts each in turn.
pub async fn run(
    proxied: &ServerProxy,
    direct: &ServerProxy,
    samples: usize,
) -> anyhow::Result<Row> {
    let mut proxied_events = Box::pin(proxied.events().await?);
    let mut direct_events = Box::pin(direct.events().await?);
    // One untimed turn each: OpenCode loads the provider on the first prompt.
    first_character(proxied, &mut proxied_events).await?;
    first_character(direct, &mut direct_events).await?;
    let (mut through, mut straight) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        through.push(first_character(proxied, &mut proxied_events).await?);
        straight.push(first_character(direct, &mut direct_events).await?);
    }
    let differences: Vec<f64> = through.iter().zip(&straight).map(|(a, b)| a - b).collect();
    let (a, b) = (median(through), median(straight));
    Ok(Row::new(
        "attach",
        samples,
        "ms",
        Goal::AtMost(10.0),
        median(differences),
        format!(
            "first streamed character through the service proxy {a:.1} ms, straight to the pod {b:.1} ms (medians of {samples} prompts each, in turn)"
        ),
    ))
}

/// What a person starting a chat terminal waits for, through the apiserver proxy with
/// `agent attach` and straight at the pod with `opencode attach`.
pub struct FirstScreen<'a> {
    pub kubeoc: &'a Path,
    pub kubeconfig: &'a Path,
    pub namespace: &'a str,
    pub agent: &'a str,
    /// `http://<pod IP>:4096`, for `opencode attach`.
    pub server_url: &'a str,
    pub password: &'a str,
    /// A scratch home for OpenCode's config, data and cache.
    pub home: &'a Path,
}

/// The screen text that says each terminal is connected and ready for a prompt: kubeoc's
/// status bar, and OpenCode's footer with the server's directory.
const KUBEOC_READY: &str = "connected";
const OPENCODE_READY: &str = WORKSPACE;

/// Milliseconds from starting `command` in a fresh terminal until its screen shows `ready`.
/// The screen is read every 10 ms; both terminals pay the same.
async fn time_to_screen(
    name: &str,
    command: &str,
    env: &[(&str, &str)],
    ready: &str,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let term = Tmux::start_with_env(name, command, 120, 35, env)?;
    let deadline = started + Duration::from_secs(60);
    loop {
        let screen = term.screen()?;
        if screen.contains(ready) {
            return Ok(started.elapsed().as_secs_f64() * 1e3);
        }
        if Instant::now() >= deadline || term.exited()? {
            bail!("{name}: the screen never showed {ready:?}; it shows:\n{screen}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl FirstScreen<'_> {
    fn kubeoc_command(&self) -> String {
        format!(
            "{} --kubeconfig {} -n {} agent attach {} --new",
            self.kubeoc.display(),
            self.kubeconfig.display(),
            self.namespace,
            self.agent
        )
    }

    /// OpenCode's own terminal as a user with a port-forward would run it, minus the
    /// port-forward; the password goes in its environment (see [`Tmux::start_with_env`]).
    fn opencode_command(&self) -> anyhow::Result<String> {
        let binary = kubeoc_testbed::repo_root()
            .join("testbed/opencode/node_modules/opencode-ai/bin/opencode.exe");
        anyhow::ensure!(
            binary.is_file(),
            "{} is missing (make cluster-up installs it)",
            binary.display()
        );
        std::fs::create_dir_all(self.home)?;
        let h = self.home.display();
        Ok(format!(
            "env HOME={h} XDG_CONFIG_HOME={h}/config XDG_DATA_HOME={h}/data XDG_CACHE_HOME={h}/cache \
             XDG_STATE_HOME={h}/state OPENCODE_DISABLE_AUTOUPDATE=1 OPENCODE_DISABLE_MODELS_FETCH=1 \
             npm_config_registry=http://127.0.0.1:9 {} attach {}",
            binary.display(),
            self.server_url
        ))
    }

    /// Median time to a ready screen of `agent attach` over `opencode attach`, over `samples`
    /// starts of each in turn.
    pub async fn run(&self, samples: usize) -> anyhow::Result<Row> {
        let (ours, theirs) = (self.kubeoc_command(), self.opencode_command()?);
        let password = [(PASSWORD_ENV, self.password)];
        let kubeoc_start = || time_to_screen("bench-kubeoc", &ours, &[], KUBEOC_READY);
        let opencode_start =
            || time_to_screen("bench-opencode", &theirs, &password, OPENCODE_READY);
        // One untimed start each: OpenCode sets up its home on its first run.
        kubeoc_start().await?;
        opencode_start().await?;
        let (mut kubeoc, mut opencode) = (Vec::new(), Vec::new());
        for _ in 0..samples {
            kubeoc.push(kubeoc_start().await?);
            opencode.push(opencode_start().await?);
        }
        let (a, b) = (median(kubeoc), median(opencode));
        Ok(Row::new(
            "attach start",
            samples,
            "kubeoc / opencode",
            Goal::Below(0.5),
            a / b,
            format!(
                "command start to a screen ready for a prompt: agent attach through the service proxy {a:.0} ms, opencode attach straight to the pod {b:.0} ms (medians of {samples} starts each, in turn, 120x35 tmux)"
            ),
        ))
    }
}
