//! The chat terminal's reducer: keys, the server's events and the network side's answers go
//! in, the [`App`] changes, and the [`Command`]s to run come out. No I/O here, so every
//! behaviour is a unit test away.

use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};

use super::state::{App, Command, Connection, Notice, Outcome, Overlay, new_input, newest_first};
use crate::opencode::events::Event;
use crate::opencode::feed::Feed;
use crate::opencode::transcript::{Change, Transcript};
use crate::opencode::types::{PermissionReply, session_title};

/// Lines one PgUp/PgDn moves.
pub const PAGE: usize = 10;
/// Lines one wheel notch moves.
const WHEEL: usize = 3;

/// Puts a notice under the transcript.
fn notice(app: &mut App, text: impl Into<String>, error: bool) {
    app.notice = Some(Notice {
        text: text.into(),
        error,
    });
}

/// Applies one item of the event feed.
pub fn on_feed(app: &mut App, feed: Feed) -> Vec<Command> {
    match feed {
        Feed::Connected { resync } => {
            app.connection = Connection::Connected;
            if !resync {
                return Vec::new();
            }
            // Events were lost while the stream was down: read everything again.
            let mut commands = vec![Command::LoadSessions];
            if let Some(id) = app.session_id() {
                commands.push(Command::OpenSession(id.to_string()));
            }
            commands
        }
        Feed::Reconnecting { error, retry_in } => {
            app.connection = Connection::Reconnecting { error, retry_in };
            Vec::new()
        }
        Feed::Event(event) => on_event(app, &event),
    }
}

fn on_event(app: &mut App, event: &Event) -> Vec<Command> {
    match event {
        Event::SessionCreated(session) | Event::SessionUpdated(session) => {
            app.sessions.retain(|s| s.id != session.id);
            app.sessions.push(session.clone());
            newest_first(&mut app.sessions);
        }
        Event::SessionDeleted(session) => {
            app.sessions.retain(|s| s.id != session.id);
        }
        Event::PermissionAsked(request)
            if Some(request.session_id.as_str()) == app.session_id()
                && !app.permissions.iter().any(|p| p.id == request.id) =>
        {
            app.permissions.push(request.clone());
        }
        Event::PermissionReplied { request_id, .. } => {
            app.permissions.retain(|p| &p.id != request_id);
        }
        _ => {}
    }
    let Some(transcript) = app.transcript.as_mut() else {
        return Vec::new();
    };
    match transcript.apply(event) {
        Change::Failed(error) if !error.is_abort() => {
            notice(app, format!("the turn failed: {}", error.message()), true);
        }
        Change::Failed(_) => notice(app, "the turn was aborted", false),
        Change::Status { busy: true } => app.notice = None,
        Change::Deleted => {
            app.transcript = None;
            app.permissions.clear();
            notice(
                app,
                "the session was deleted on the server; typing starts a new one",
                true,
            );
        }
        _ => {}
    }
    Vec::new()
}

/// Applies an answer of the network side.
pub fn on_outcome(app: &mut App, outcome: Outcome) -> Vec<Command> {
    match outcome {
        Outcome::Sessions(mut sessions) => {
            newest_first(&mut sessions);
            app.sessions = sessions;
        }
        Outcome::Opened {
            session,
            messages,
            permissions,
        } => {
            // A late answer for a session the user has left since is dropped.
            if let Some(transcript) = app.transcript.as_mut().filter(|t| t.session_id == session) {
                transcript.resync(messages);
                app.permissions = permissions
                    .into_iter()
                    .filter(|p| p.session_id == session)
                    .collect();
            }
        }
        Outcome::Created(session) => {
            let id = session.id.clone();
            app.sessions.retain(|s| s.id != id);
            app.sessions.insert(0, session);
            app.transcript = Some(Transcript::new(&id));
            if let Some(text) = app.sending.take() {
                return vec![Command::Send { session: id, text }];
            }
        }
        Outcome::Failed { what, error } => {
            app.sending = None;
            notice(app, format!("{what} failed: {error}"), true);
        }
    }
    Vec::new()
}

/// Applies a mouse event: the wheel scrolls the transcript.
pub fn on_mouse(app: &mut App, mouse: MouseEvent) {
    match mouse.kind {
        MouseEventKind::ScrollUp => app.scroll = app.scroll.saturating_add(WHEEL),
        MouseEventKind::ScrollDown => app.scroll = app.scroll.saturating_sub(WHEEL),
        _ => {}
    }
}

/// Applies pasted text to the prompt box (newlines kept, nothing sent).
pub fn on_paste(app: &mut App, text: &str) {
    app.input
        .insert_str(text.replace("\r\n", "\n").replace('\r', "\n"));
}

fn input_text(app: &App) -> String {
    app.input.lines().join("\n")
}

fn set_input(app: &mut App, text: &str) {
    app.input = new_input();
    app.input.insert_str(text);
}

/// Sends the prompt box's text: to the open session, or to a new one created first.
fn send(app: &mut App) -> Vec<Command> {
    let text = input_text(app);
    if text.trim().is_empty() {
        return Vec::new();
    }
    if app.busy() {
        notice(
            app,
            "the agent is still answering: wait, or press Ctrl+C to stop it",
            true,
        );
        return Vec::new();
    }
    app.history.push(text.clone());
    app.history_at = None;
    app.input = new_input();
    app.scroll = 0;
    app.notice = None;
    match app.session_id() {
        Some(id) => vec![Command::Send {
            session: id.to_string(),
            text,
        }],
        None => {
            app.sending = Some(text.clone());
            vec![Command::CreateAndSend {
                title: session_title(&app.user, &text),
                text,
            }]
        }
    }
}

/// Up/Down through the prompts sent from this terminal.
fn recall(app: &mut App, older: bool) {
    if app.history.is_empty() {
        return;
    }
    let at = match (app.history_at, older) {
        (None, true) => Some(app.history.len() - 1),
        (None, false) => return,
        (Some(0), true) => Some(0),
        (Some(i), true) => Some(i - 1),
        (Some(i), false) if i + 1 < app.history.len() => Some(i + 1),
        (Some(_), false) => None,
    };
    app.history_at = at;
    let text = at.map(|i| app.history[i].clone()).unwrap_or_default();
    set_input(app, &text);
}

fn answer_permission(app: &mut App, reply: PermissionReply) -> Vec<Command> {
    let Some(request) = app.permissions.first() else {
        return Vec::new();
    };
    let id = request.id.clone();
    app.permissions.remove(0);
    vec![Command::ReplyPermission { id, reply }]
}

/// Applies one key press.
pub fn on_key(app: &mut App, key: KeyEvent) -> Vec<Command> {
    if key.kind == KeyEventKind::Release {
        return Vec::new();
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    // Ctrl+C works everywhere: stop the turn, else quit.
    if ctrl && key.code == KeyCode::Char('c') {
        if let (true, Some(id)) = (app.busy(), app.session_id()) {
            let id = id.to_string();
            notice(app, "stopping the turn...", false);
            return vec![Command::Abort(id)];
        }
        app.quit = true;
        return Vec::new();
    }
    match app.overlay.clone() {
        Overlay::Help => {
            app.overlay = Overlay::None;
            return Vec::new();
        }
        Overlay::Sessions { selected } => {
            match key.code {
                KeyCode::Esc => app.overlay = Overlay::None,
                KeyCode::Char('s') if ctrl => app.overlay = Overlay::None,
                KeyCode::Up => {
                    app.overlay = Overlay::Sessions {
                        selected: selected.saturating_sub(1),
                    }
                }
                KeyCode::Down => {
                    let last = app.sessions.len().saturating_sub(1);
                    app.overlay = Overlay::Sessions {
                        selected: (selected + 1).min(last),
                    };
                }
                KeyCode::Enter => {
                    app.overlay = Overlay::None;
                    if let Some(session) = app.sessions.get(selected) {
                        let id = session.id.clone();
                        app.transcript = Some(Transcript::new(&id));
                        app.permissions.clear();
                        app.scroll = 0;
                        app.notice = None;
                        return vec![Command::OpenSession(id)];
                    }
                }
                _ => {}
            }
            return Vec::new();
        }
        Overlay::None => {}
    }
    if !app.permissions.is_empty() && !ctrl && !alt {
        match key.code {
            KeyCode::Char('y') => return answer_permission(app, PermissionReply::Once),
            KeyCode::Char('a') => return answer_permission(app, PermissionReply::Always),
            KeyCode::Char('n') => return answer_permission(app, PermissionReply::Reject),
            _ => {}
        }
    }
    match key.code {
        KeyCode::Enter if alt || key.modifiers.contains(KeyModifiers::SHIFT) => {
            app.input.insert_newline();
        }
        KeyCode::Enter => return send(app),
        KeyCode::Char('n') if ctrl => {
            app.transcript = None;
            app.sending = None;
            app.permissions.clear();
            app.scroll = 0;
            notice(app, "new session: the first prompt creates it", false);
        }
        KeyCode::Char('s') if ctrl => {
            let selected = app
                .session_id()
                .and_then(|id| app.sessions.iter().position(|s| s.id == id))
                .unwrap_or(0);
            app.overlay = Overlay::Sessions { selected };
            return vec![Command::LoadSessions];
        }
        KeyCode::Char('o') if ctrl => {
            app.expand_all = !app.expand_all;
        }
        KeyCode::Char('?') if input_text(app).is_empty() => app.overlay = Overlay::Help,
        KeyCode::PageUp => app.scroll = app.scroll.saturating_add(PAGE),
        KeyCode::PageDown => app.scroll = app.scroll.saturating_sub(PAGE),
        KeyCode::Up if app.input.cursor().0 == 0 => recall(app, true),
        KeyCode::Down if app.input.cursor().0 + 1 >= app.input.lines().len() => recall(app, false),
        _ => {
            app.input.input(key);
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opencode::events::parse;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    fn typed(app: &mut App, text: &str) {
        for c in text.chars() {
            on_key(app, key(KeyCode::Char(c)));
        }
    }

    fn event(line: &str) -> Feed {
        Feed::Event(parse(line).unwrap_or_else(|| panic!("not an event: {line}")))
    }

    fn app() -> App {
        App::new("team-agent", "team", "alice", "1.18.33")
    }

    fn session(id: &str, updated: i64) -> crate::opencode::types::Session {
        crate::opencode::types::Session {
            id: id.to_string(),
            title: format!("title of {id}"),
            time: crate::opencode::types::SessionTime {
                created: updated,
                updated,
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_first_prompt_creates_a_session_titled_with_the_user_then_sends() {
        let mut app = app();
        typed(&mut app, "fix the build");
        let commands = on_key(&mut app, key(KeyCode::Enter));
        assert_eq!(
            commands,
            [Command::CreateAndSend {
                title: "alice: fix the build".into(),
                text: "fix the build".into()
            }]
        );
        assert!(app.busy(), "busy while the session is created");
        assert_eq!(input_text(&app), "");
        let commands = on_outcome(&mut app, Outcome::Created(session("ses_1", 1)));
        assert_eq!(
            commands,
            [Command::Send {
                session: "ses_1".into(),
                text: "fix the build".into()
            }]
        );
        assert_eq!(app.session_id(), Some("ses_1"));
    }

    #[test]
    fn alt_enter_adds_a_line_and_up_recalls_the_last_prompt() {
        let mut app = app();
        app.transcript = Some(Transcript::new("ses_1"));
        typed(&mut app, "one");
        on_key(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT));
        typed(&mut app, "two");
        assert_eq!(input_text(&app), "one\ntwo");
        let sent = on_key(&mut app, key(KeyCode::Enter));
        assert_eq!(
            sent,
            [Command::Send {
                session: "ses_1".into(),
                text: "one\ntwo".into()
            }]
        );
        on_key(&mut app, key(KeyCode::Up));
        assert_eq!(input_text(&app), "one\ntwo");
        on_key(&mut app, key(KeyCode::Down));
        assert_eq!(input_text(&app), "");
    }

    #[test]
    fn ctrl_c_aborts_a_busy_turn_and_quits_when_idle() {
        let mut app = app();
        app.transcript = Some(Transcript::new("ses_1"));
        on_feed(
            &mut app,
            event(
                r#"{"type":"session.status","properties":{"sessionID":"ses_1","status":{"type":"busy"}}}"#,
            ),
        );
        assert_eq!(
            on_key(&mut app, ctrl('c')),
            [Command::Abort("ses_1".into())]
        );
        assert!(!app.quit);
        on_feed(
            &mut app,
            event(
                r#"{"type":"session.error","properties":{"sessionID":"ses_1","error":{"name":"MessageAbortedError","data":{"message":"aborted"}}}}"#,
            ),
        );
        on_feed(
            &mut app,
            event(r#"{"type":"session.idle","properties":{"sessionID":"ses_1"}}"#),
        );
        assert_eq!(
            app.notice.as_ref().map(|n| n.text.as_str()),
            Some("the turn was aborted")
        );
        assert!(on_key(&mut app, ctrl('c')).is_empty());
        assert!(app.quit);
    }

    #[test]
    fn a_permission_prompt_takes_y_n_and_a() {
        let mut app = app();
        app.transcript = Some(Transcript::new("ses_1"));
        let asked = |id: &str| {
            event(&format!(
                r#"{{"type":"permission.asked","properties":{{"id":"{id}","sessionID":"ses_1","permission":"bash","patterns":["rm -rf build"],"metadata":{{}},"always":["rm *"]}}}}"#
            ))
        };
        on_feed(&mut app, asked("per_1"));
        on_feed(&mut app, asked("per_1"));
        on_feed(&mut app, asked("per_2"));
        assert_eq!(app.permissions.len(), 2, "asked twice is one request");
        assert_eq!(
            on_key(&mut app, key(KeyCode::Char('y'))),
            [Command::ReplyPermission {
                id: "per_1".into(),
                reply: PermissionReply::Once
            }]
        );
        assert_eq!(
            on_key(&mut app, key(KeyCode::Char('n'))),
            [Command::ReplyPermission {
                id: "per_2".into(),
                reply: PermissionReply::Reject
            }]
        );
        assert_eq!(
            input_text(&app),
            "",
            "the answers are not typed into the prompt"
        );
        on_feed(&mut app, asked("per_3"));
        on_feed(
            &mut app,
            event(
                r#"{"type":"permission.replied","properties":{"sessionID":"ses_1","requestID":"per_3","reply":"always"}}"#,
            ),
        );
        assert!(app.permissions.is_empty(), "answered elsewhere");
    }

    #[test]
    fn ctrl_s_lists_sessions_newest_first_and_enter_opens_one() {
        let mut app = app();
        assert_eq!(on_key(&mut app, ctrl('s')), [Command::LoadSessions]);
        on_outcome(
            &mut app,
            Outcome::Sessions(vec![session("ses_old", 1), session("ses_new", 5)]),
        );
        assert_eq!(app.sessions[0].id, "ses_new");
        on_key(&mut app, key(KeyCode::Down));
        assert_eq!(app.overlay, Overlay::Sessions { selected: 1 });
        assert_eq!(
            on_key(&mut app, key(KeyCode::Enter)),
            [Command::OpenSession("ses_old".into())]
        );
        assert_eq!(app.overlay, Overlay::None);
        assert_eq!(app.session_id(), Some("ses_old"));
    }

    #[test]
    fn a_reconnect_reads_the_sessions_and_the_open_session_again() {
        let mut app = app();
        app.transcript = Some(Transcript::new("ses_1"));
        on_feed(
            &mut app,
            Feed::Reconnecting {
                error: "no heartbeat".into(),
                retry_in: std::time::Duration::from_secs(1),
            },
        );
        assert!(matches!(app.connection, Connection::Reconnecting { .. }));
        let commands = on_feed(&mut app, Feed::Connected { resync: true });
        assert_eq!(
            commands,
            [Command::LoadSessions, Command::OpenSession("ses_1".into())]
        );
        assert_eq!(app.connection, Connection::Connected);
    }

    #[test]
    fn a_failed_turn_shows_the_models_message_and_scrolling_stays_in_bounds() {
        let mut app = app();
        app.transcript = Some(Transcript::new("ses_1"));
        on_feed(
            &mut app,
            event(
                r#"{"type":"session.error","properties":{"sessionID":"ses_1","error":{"name":"APIError","data":{"message":"quota exceeded"}}}}"#,
            ),
        );
        let notice = app.notice.clone().expect("notice");
        assert!(
            notice.error && notice.text.contains("quota exceeded"),
            "{notice:?}"
        );
        on_key(&mut app, key(KeyCode::PageDown));
        assert_eq!(app.scroll, 0);
        on_key(&mut app, key(KeyCode::PageUp));
        assert_eq!(app.scroll, PAGE);
    }
}
