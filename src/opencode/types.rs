//! The parts of OpenCode's HTTP API (1.18.x) that kubeoc reads. Fields kubeoc does not need
//! are left out, and every field has a default, so a newer server that adds or drops fields
//! still decodes.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A chat session (`GET /session`, `POST /session`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Session {
    pub id: String,
    pub title: String,
    /// The project directory the session belongs to.
    pub directory: String,
    pub time: SessionTime,
}

/// The title of a session a person or a script starts: who, and what about.
pub fn session_title(user: &str, prompt: &str) -> String {
    let first_line = prompt.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut about: String = first_line.trim().chars().take(48).collect();
    if first_line.trim().chars().count() > 48 {
        about.push('…');
    }
    format!("{user}: {about}")
}

/// Session timestamps, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct SessionTime {
    pub created: i64,
    /// Last change: a message, a part, a title.
    pub updated: i64,
}

/// What a session is doing right now (`GET /session/status`): `idle`, `busy` or `retry`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct SessionStatus {
    #[serde(rename = "type")]
    pub kind: String,
}

impl SessionStatus {
    /// Whether the session is working on a turn (answering, or retrying a failed model call).
    pub fn is_busy(&self) -> bool {
        self.kind == "busy" || self.kind == "retry"
    }
}

/// `GET /session/status`: only sessions that are not idle are listed.
pub type SessionStatuses = BTreeMap<String, SessionStatus>;

/// A message with its parts (`GET /session/{id}/message`, `POST /session/{id}/message`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Message {
    pub info: MessageInfo,
    pub parts: Vec<Part>,
}

impl Message {
    /// The message's text: every text part, in order (tool calls and reasoning left out).
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter(|p| p.kind == PartKind::Text)
            .map(|p| p.text.as_str())
            .collect()
    }
}

/// A message's metadata. For an assistant message, `time.completed` is set once the reply is
/// done and `error` when the turn failed.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct MessageInfo {
    pub id: String,
    #[serde(rename = "sessionID")]
    pub session_id: String,
    /// `user` or `assistant`.
    pub role: String,
    #[serde(rename = "modelID")]
    pub model_id: String,
    #[serde(rename = "providerID")]
    pub provider_id: String,
    pub time: MessageTime,
    pub error: Option<MessageError>,
    /// The session's spend on this message, in US dollars, as the provider's price list says.
    pub cost: f64,
    pub tokens: Tokens,
}

impl MessageInfo {
    pub fn is_assistant(&self) -> bool {
        self.role == "assistant"
    }
}

/// Message timestamps, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct MessageTime {
    pub created: f64,
    pub completed: Option<f64>,
}

/// Tokens a reply used.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Tokens {
    pub input: f64,
    pub output: f64,
    pub reasoning: f64,
    pub cache: TokenCache,
}

/// Prompt-cache tokens of a reply.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TokenCache {
    pub read: f64,
    pub write: f64,
}

/// `info.error` of a failed reply, and `session.error`'s error: `{name, data: {message}}`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct MessageError {
    pub name: String,
    pub data: serde_json::Value,
}

impl MessageError {
    /// The model's (or OpenCode's) own words, else the error's name.
    pub fn message(&self) -> String {
        self.data["message"]
            .as_str()
            .filter(|m| !m.is_empty())
            .map_or_else(|| self.name.clone(), str::to_string)
    }

    /// Whether the turn ended because someone aborted it, not because it failed.
    pub fn is_abort(&self) -> bool {
        self.name == "MessageAbortedError"
    }
}

/// What a part of a message is. Kinds kubeoc does not show (snapshots, patches, step markers,
/// kinds a newer server adds) are `Other`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PartKind {
    Text,
    Reasoning,
    Tool,
    File,
    StepStart,
    StepFinish,
    #[default]
    #[serde(other)]
    Other,
}

/// One part of a message: text, a tool call, a reasoning step...
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Part {
    pub id: String,
    #[serde(rename = "sessionID")]
    pub session_id: String,
    #[serde(rename = "messageID")]
    pub message_id: String,
    #[serde(rename = "type")]
    pub kind: PartKind,
    /// The text of a text or reasoning part.
    pub text: String,
    /// Tool parts: the tool's name (`bash`, `edit`, `read`...).
    pub tool: String,
    /// Tool parts: where the call stands.
    pub state: Option<ToolState>,
}

/// A tool call's state: `pending`, `running`, `completed` or `error`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ToolState {
    pub status: ToolStatus,
    /// The call's arguments, as the model gave them.
    pub input: serde_json::Value,
    /// A short description OpenCode gives the call (`ls -la`, a file name...).
    pub title: String,
    pub output: String,
    pub error: String,
}

/// Where a tool call stands.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ToolStatus {
    #[default]
    Pending,
    Running,
    Completed,
    Error,
}

/// A tool call waiting for a person's consent (`permission.asked`, `GET /permission`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PermissionRequest {
    pub id: String,
    #[serde(rename = "sessionID")]
    pub session_id: String,
    /// What is asked for: `bash`, `edit`, `webfetch`...
    pub permission: String,
    /// What exactly: the command, the file, the URL.
    pub patterns: Vec<String>,
    /// The patterns that "always" would allow from now on.
    pub always: Vec<String>,
}

/// An answer to a [`PermissionRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionReply {
    Once,
    Always,
    Reject,
}

impl PermissionReply {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Once => "once",
            Self::Always => "always",
            Self::Reject => "reject",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_give_their_text_and_their_error() {
        let reply: Message = serde_json::from_str(
            r#"{"info":{"id":"msg_1","role":"assistant","modelID":"stub-model"},
                "parts":[{"type":"step-start"},{"type":"text","text":"Hello "},
                         {"type":"tool","tool":"bash"},{"type":"text","text":"world"}]}"#,
        )
        .expect("decodes");
        assert_eq!(reply.text(), "Hello world");
        assert!(reply.info.error.is_none());
        let failed: Message = serde_json::from_str(
            r#"{"info":{"error":{"name":"APIError","data":{"message":"quota exceeded","statusCode":429}}},"parts":[]}"#,
        )
        .expect("decodes");
        assert_eq!(
            failed.info.error.map(|e| e.message()).as_deref(),
            Some("quota exceeded")
        );
    }

    #[test]
    fn sessions_decode_with_unknown_and_missing_fields() {
        let text = r#"[{"id":"ses_1","slug":"x","projectID":"p","directory":"/workspace",
            "title":"make demo","version":"1.18.33","time":{"created":1,"updated":5}},
            {"id":"ses_2"}]"#;
        let sessions: Vec<Session> = serde_json::from_str(text).expect("decodes");
        assert_eq!(sessions[0].time.updated, 5);
        assert_eq!(sessions[0].directory, "/workspace");
        assert_eq!(sessions[1].time, SessionTime::default());
    }

    #[test]
    fn titles_name_the_user_and_the_first_line() {
        assert_eq!(
            session_title("alice", "\n  fix the build\nplease"),
            "alice: fix the build"
        );
        let long = "x".repeat(60);
        assert_eq!(
            session_title("bob", &long),
            format!("bob: {}…", "x".repeat(48))
        );
    }

    #[test]
    fn busy_and_retrying_sessions_are_busy() {
        let statuses: SessionStatuses = serde_json::from_str(
            r#"{"ses_1":{"type":"busy"},"ses_2":{"type":"retry","attempt":2},"ses_3":{"type":"idle"}}"#,
        )
        .expect("decodes");
        let busy: Vec<_> = statuses
            .iter()
            .filter(|(_, s)| s.is_busy())
            .map(|(id, _)| id.as_str())
            .collect();
        assert_eq!(busy, ["ses_1", "ses_2"]);
    }
}
