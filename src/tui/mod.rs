//! The chat terminal of `kubectl kubeoc agent attach`: [`state`] is what it shows, [`update`]
//! the pure reducer of keys, server events and network answers into that state, [`view`] the
//! pure drawing, [`net`] the network side on tasks of its own. This file wires them together:
//! the terminal (restored on exit, on panic, on Ctrl+C and on SIGTERM) and the loop that
//! draws, then waits for whichever comes first.

pub mod markdown;
pub mod net;
pub mod state;
pub mod update;
pub mod view;

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    Event as TermEvent, EventStream,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::cli::agent::{Attached, explain};
use crate::opencode::feed;
use crate::opencode::transcript::Transcript;
use state::{App, Command, newest_first};

/// Which session the terminal opens.
#[derive(Debug, Clone, Default)]
pub struct Start {
    /// This session.
    pub session: Option<String>,
    /// A new one, even if the user has sessions already.
    pub new: bool,
}

/// Puts the terminal back as it was: cooked mode, main screen, no mouse reporting.
fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
    let _ = std::io::stdout().flush();
}

/// The terminal in chat mode while it lives; restored when dropped and on panic.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> anyhow::Result<Self> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        enable_raw_mode().context("switching the terminal to raw mode")?;
        execute!(
            std::io::stdout(),
            EnterAlternateScreen,
            EnableMouseCapture,
            EnableBracketedPaste
        )
        .context("setting up the terminal")?;
        Ok(Self)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// The session to open at start: `--session`, else (without `--new`) the user's newest.
async fn first_session(
    attached: &Attached,
    start: &Start,
) -> anyhow::Result<(Vec<crate::opencode::types::Session>, Option<String>)> {
    let (agent, ns) = (attached.agent.as_str(), attached.namespace.as_str());
    let sessions = attached
        .proxy
        .sessions()
        .await
        .map_err(|e| explain(e, agent, ns))?;
    if let Some(id) = &start.session {
        if !sessions.iter().any(|s| &s.id == id) {
            bail!(
                "agent {agent:?} in namespace {ns:?} has no session {id:?} (attach without --session and press Ctrl+S to list them)"
            );
        }
        return Ok((sessions, Some(id.clone())));
    }
    if start.new {
        return Ok((sessions, None));
    }
    let mine = format!("{}: ", attached.user);
    let newest = sessions
        .iter()
        .filter(|s| s.title.starts_with(&mine))
        .max_by_key(|s| s.time.updated)
        .map(|s| s.id.clone());
    Ok((sessions, newest))
}

/// Runs the chat terminal until the user quits.
pub async fn run(attached: Attached, start: Start) -> anyhow::Result<()> {
    let (sessions, open) = first_session(&attached, &start).await?;
    let mut app = App::new(
        &attached.agent,
        &attached.namespace,
        &attached.user,
        &attached.version,
    );
    app.no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let mut sessions = sessions;
    newest_first(&mut sessions);
    app.sessions = sessions;
    let proxy = attached.proxy.clone();
    let (outcomes_tx, mut outcomes) = mpsc::channel(64);
    if let Some(id) = open {
        app.transcript = Some(Transcript::new(&id));
        net::spawn(&proxy, Command::OpenSession(id), &outcomes_tx);
    }
    let mut events = feed::spawn(proxy.clone());
    let mut sigterm = signal(SignalKind::terminate()).context("watching for SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("watching for SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("watching for SIGHUP")?;

    let _guard = TerminalGuard::enter()?;
    let mut terminal =
        Terminal::new(CrosstermBackend::new(std::io::stdout())).context("opening the terminal")?;
    let mut keys = EventStream::new();
    let cache = view::ViewCache::default();
    // Redraws now and then for what changes without an event (the reconnect countdown).
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        terminal
            .draw(|frame| view::draw(frame, &app, &cache))
            .context("drawing the terminal")?;
        app.scroll = app.scroll.min(cache.max_scroll.get());
        if app.quit {
            break;
        }
        let mut commands = tokio::select! {
            item = events.recv() => match item {
                Some(item) => update::on_feed(&mut app, item),
                None => break,
            },
            Some(outcome) = outcomes.recv() => update::on_outcome(&mut app, outcome),
            key = keys.next() => match key {
                Some(Ok(TermEvent::Key(key))) => update::on_key(&mut app, key),
                Some(Ok(TermEvent::Mouse(mouse))) => { update::on_mouse(&mut app, mouse); Vec::new() }
                Some(Ok(TermEvent::Paste(text))) => { update::on_paste(&mut app, &text); Vec::new() }
                Some(Ok(_)) => Vec::new(),
                Some(Err(e)) => return Err(e).context("reading the keyboard"),
                None => break,
            },
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => break,
            _ = tick.tick() => Vec::new(),
        };
        // Apply what else has arrived before drawing again: a fast stream costs one frame
        // per batch, not one per word.
        for _ in 0..256 {
            match events.try_recv() {
                Ok(item) => commands.extend(update::on_feed(&mut app, item)),
                Err(_) => break,
            }
        }
        for command in commands {
            net::spawn(&proxy, command, &outcomes_tx);
        }
    }
    drop(terminal);
    Ok(())
}
