//! What the chat terminal shows, as plain data: the reducer ([`super::update`]) changes it,
//! the view ([`super::view`]) draws it, and neither touches the network.

use std::collections::HashSet;
use std::time::Duration;

use ratatui_textarea::TextArea;

use crate::opencode::transcript::Transcript;
use crate::opencode::types::{PermissionReply, PermissionRequest, Session};

/// The event stream's state, for the status bar.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Connecting,
    Connected,
    Reconnecting { error: String, retry_in: Duration },
}

/// What covers the transcript, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    /// The keys (`?`).
    Help,
    /// The session list (Ctrl+S), with the selected row.
    Sessions {
        selected: usize,
    },
}

/// A line of feedback below the transcript: what went wrong with the last action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub error: bool,
}

/// What the reducer asks the network side to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Read the session list.
    LoadSessions,
    /// Read a session's messages and pending permission requests.
    OpenSession(String),
    /// Create a session titled `title`, then send `text` to it.
    CreateAndSend { title: String, text: String },
    /// Send `text` to a session.
    Send { session: String, text: String },
    /// Stop a session's turn.
    Abort(String),
    /// Answer a permission request.
    ReplyPermission { id: String, reply: PermissionReply },
}

/// The network side's answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Sessions(Vec<Session>),
    Opened {
        session: String,
        messages: Vec<crate::opencode::types::Message>,
        permissions: Vec<PermissionRequest>,
    },
    Created(Session),
    /// A command failed; `what` says which, for the notice.
    Failed {
        what: String,
        error: String,
    },
}

/// The whole state of the chat terminal.
pub struct App {
    pub agent: String,
    pub namespace: String,
    /// The kube user, put in the titles of the sessions this terminal starts.
    pub user: String,
    pub version: String,
    /// Sessions on the server, newest first.
    pub sessions: Vec<Session>,
    /// The open session; `None` until the first prompt of a new session creates it.
    pub transcript: Option<Transcript>,
    /// A prompt typed into a new session while the session is being created.
    pub sending: Option<String>,
    pub connection: Connection,
    pub input: TextArea<'static>,
    /// Prompts sent from this terminal, oldest first, for Up/Down.
    pub history: Vec<String>,
    /// Where Up/Down stands in `history` (`None`: editing a new prompt).
    pub history_at: Option<usize>,
    /// Lines scrolled up from the bottom of the transcript (0: follow the newest).
    pub scroll: usize,
    pub overlay: Overlay,
    /// Permission requests of the open session, oldest first; the first one is asked.
    pub permissions: Vec<PermissionRequest>,
    /// Tool parts shown with their output (Ctrl+O toggles all).
    pub expanded: HashSet<String>,
    pub expand_all: bool,
    pub notice: Option<Notice>,
    pub quit: bool,
    /// `NO_COLOR` is set: draw without colours (bold and reverse stay).
    pub no_color: bool,
}

impl App {
    pub fn new(agent: &str, namespace: &str, user: &str, version: &str) -> Self {
        Self {
            agent: agent.to_string(),
            namespace: namespace.to_string(),
            user: user.to_string(),
            version: version.to_string(),
            sessions: Vec::new(),
            transcript: None,
            sending: None,
            connection: Connection::Connecting,
            input: new_input(),
            history: Vec::new(),
            history_at: None,
            scroll: 0,
            overlay: Overlay::None,
            permissions: Vec::new(),
            expanded: HashSet::new(),
            expand_all: false,
            notice: None,
            quit: false,
            no_color: false,
        }
    }

    /// The open session's ID, once it exists on the server.
    pub fn session_id(&self) -> Option<&str> {
        self.transcript.as_ref().map(|t| t.session_id.as_str())
    }

    /// Whether the open session is answering.
    pub fn busy(&self) -> bool {
        self.sending.is_some() || self.transcript.as_ref().is_some_and(|t| t.busy)
    }

    /// The open session's title, or what a new one will be.
    pub fn session_title(&self) -> String {
        match self.session_id() {
            None => "new session".to_string(),
            Some(id) => self
                .sessions
                .iter()
                .find(|s| s.id == id)
                .map_or_else(|| id.to_string(), |s| s.title.clone()),
        }
    }
}

/// An empty prompt box.
pub fn new_input() -> TextArea<'static> {
    let mut input = TextArea::default();
    input.set_placeholder_text(
        "Type a prompt; Enter sends, Alt+Enter adds a line, ? shows the keys",
    );
    input.set_cursor_line_style(ratatui::style::Style::default());
    input
}

/// Orders sessions as the list shows them: most recently changed first.
pub fn newest_first(sessions: &mut [Session]) {
    sessions.sort_by_key(|s| std::cmp::Reverse(s.time.updated));
}
