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

#[cfg(test)]
mod tests {
    use super::*;

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
