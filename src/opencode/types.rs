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

/// An assistant message with its parts (`POST /session/{id}/message`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Reply {
    pub info: MessageInfo,
    pub parts: Vec<Part>,
}

impl Reply {
    /// The answer's text: every text part, in order.
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter(|p| p.kind == "text")
            .map(|p| p.text.as_str())
            .collect()
    }
}

/// A message's metadata; `error` is set when the turn failed.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct MessageInfo {
    pub id: String,
    pub role: String,
    #[serde(rename = "modelID")]
    pub model_id: String,
    pub error: Option<MessageError>,
}

/// `info.error`: `{name, data: {message}}`.
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
            .map_or_else(|| self.name.clone(), str::to_string)
    }
}

/// One part of a message: text, a tool call, a reasoning step...
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_give_their_text_and_their_error() {
        let reply: Reply = serde_json::from_str(
            r#"{"info":{"id":"msg_1","role":"assistant","modelID":"stub-model"},
                "parts":[{"type":"step-start"},{"type":"text","text":"Hello "},
                         {"type":"tool","tool":"bash"},{"type":"text","text":"world"}]}"#,
        )
        .expect("decodes");
        assert_eq!(reply.text(), "Hello world");
        assert!(reply.info.error.is_none());
        let failed: Reply = serde_json::from_str(
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
