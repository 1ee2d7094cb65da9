//! One session's messages kept current from the event stream: the state that the chat terminal
//! draws and that `attach --prompt` and `task submit --follow` print from. Pure: events in,
//! state and a note of what changed out.

use super::events::Event;
use super::types::{Message, MessageError, MessageInfo, Part, PartKind};

/// A session's messages in order, with their parts in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcript {
    pub session_id: String,
    pub messages: Vec<Message>,
    /// Whether a turn is running (from `session.status`).
    pub busy: bool,
    /// The last turn's failure, until the next turn starts.
    pub error: Option<MessageError>,
}

/// What one event changed in a [`Transcript`].
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Nothing of this session.
    None,
    /// A message's metadata (new message, completion, tokens, error).
    Message { message_id: String },
    /// A part, new or changed (text grew, a tool call moved on).
    Part { message_id: String, part_id: String },
    /// The session started or finished a turn.
    Status { busy: bool },
    /// The turn failed.
    Failed(MessageError),
    /// The turn ended (`session.idle`).
    Idle,
    /// The session was deleted on the server.
    Deleted,
}

/// OpenCode's IDs sort by creation time, so order follows them.
fn insert_sorted<T>(items: &mut Vec<T>, item: T, id: impl Fn(&T) -> &str) -> usize {
    let at = items.partition_point(|x| id(x) < id(&item));
    items.insert(at, item);
    at
}

impl Transcript {
    pub fn new(session_id: &str) -> Self {
        Self {
            session_id: session_id.to_string(),
            ..Self::default()
        }
    }

    /// A transcript of messages read with `GET /session/{id}/message` (a start, a resync).
    pub fn from_messages(session_id: &str, mut messages: Vec<Message>) -> Self {
        messages.sort_by(|a, b| a.info.id.cmp(&b.info.id));
        for message in &mut messages {
            message.parts.sort_by(|a, b| a.id.cmp(&b.id));
        }
        let last_assistant = messages.iter().rev().find(|m| m.info.is_assistant());
        let busy = last_assistant
            .is_some_and(|m| m.info.time.completed.is_none() && m.info.error.is_none());
        let error = last_assistant
            .and_then(|m| m.info.error.clone())
            .filter(|e| !e.is_abort());
        Self {
            session_id: session_id.to_string(),
            messages,
            busy,
            error,
        }
    }

    /// Replaces everything with a fresh read of the session (after a reconnect, when events
    /// may have been lost).
    pub fn resync(&mut self, messages: Vec<Message>) {
        *self = Self::from_messages(&self.session_id, messages);
    }

    fn message_mut(&mut self, message_id: &str) -> Option<&mut Message> {
        self.messages.iter_mut().find(|m| m.info.id == message_id)
    }

    fn upsert_message(&mut self, info: MessageInfo) {
        if let Some(message) = self.message_mut(&info.id) {
            message.info = info;
        } else {
            let message = Message {
                info,
                parts: Vec::new(),
            };
            insert_sorted(&mut self.messages, message, |m| &m.info.id);
        }
    }

    fn upsert_part(&mut self, part: Part) {
        if self.message_mut(&part.message_id).is_none() {
            // A part can arrive before its message's first update.
            self.upsert_message(MessageInfo {
                id: part.message_id.clone(),
                session_id: part.session_id.clone(),
                role: "assistant".to_string(),
                ..MessageInfo::default()
            });
        }
        if let Some(message) = self.message_mut(&part.message_id) {
            if let Some(existing) = message.parts.iter_mut().find(|p| p.id == part.id) {
                // A snapshot taken before the last deltas must not shorten the text.
                let keep_text = part.kind == existing.kind
                    && existing.text.len() > part.text.len()
                    && existing.text.starts_with(&part.text);
                let text = std::mem::take(&mut existing.text);
                *existing = part;
                if keep_text {
                    existing.text = text;
                }
            } else {
                insert_sorted(&mut message.parts, part, |p| &p.id);
            }
        }
    }

    /// Applies one event; events of other sessions change nothing.
    pub fn apply(&mut self, event: &Event) -> Change {
        if event.session_id() != Some(self.session_id.as_str()) {
            return Change::None;
        }
        match event {
            Event::MessageUpdated(info) => {
                let message_id = info.id.clone();
                if let Some(error) = info.error.clone().filter(|e| !e.is_abort()) {
                    self.error = Some(error);
                }
                self.upsert_message(info.clone());
                Change::Message { message_id }
            }
            Event::MessageRemoved { message_id, .. } => {
                self.messages.retain(|m| &m.info.id != message_id);
                Change::Message {
                    message_id: message_id.clone(),
                }
            }
            Event::PartUpdated(part) => {
                let change = Change::Part {
                    message_id: part.message_id.clone(),
                    part_id: part.id.clone(),
                };
                self.upsert_part(part.clone());
                change
            }
            Event::PartDelta {
                message_id,
                part_id,
                field,
                delta,
                session_id,
            } => {
                if field != "text" {
                    return Change::None;
                }
                let known = self
                    .message_mut(message_id)
                    .is_some_and(|m| m.parts.iter().any(|p| &p.id == part_id));
                if !known {
                    self.upsert_part(Part {
                        id: part_id.clone(),
                        session_id: session_id.clone(),
                        message_id: message_id.clone(),
                        kind: PartKind::Text,
                        ..Part::default()
                    });
                }
                if let Some(part) = self
                    .message_mut(message_id)
                    .and_then(|m| m.parts.iter_mut().find(|p| &p.id == part_id))
                {
                    part.text.push_str(delta);
                }
                Change::Part {
                    message_id: message_id.clone(),
                    part_id: part_id.clone(),
                }
            }
            Event::PartRemoved {
                message_id,
                part_id,
                ..
            } => {
                if let Some(message) = self.message_mut(message_id) {
                    message.parts.retain(|p| &p.id != part_id);
                }
                Change::Part {
                    message_id: message_id.clone(),
                    part_id: part_id.clone(),
                }
            }
            Event::SessionStatus { status, .. } => {
                let busy = status.is_busy();
                if busy && !self.busy {
                    self.error = None;
                }
                self.busy = busy;
                Change::Status { busy }
            }
            Event::SessionIdle { .. } => {
                self.busy = false;
                Change::Idle
            }
            Event::SessionError { error, .. } => {
                let error = error.clone().unwrap_or_else(|| MessageError {
                    name: "UnknownError".to_string(),
                    data: serde_json::json!({"message": "the turn failed without a reason"}),
                });
                if error.is_abort() {
                    return Change::Failed(error);
                }
                self.error = Some(error.clone());
                Change::Failed(error)
            }
            Event::SessionDeleted(_) => Change::Deleted,
            _ => Change::None,
        }
    }

    /// The part `part_id` of message `message_id`.
    pub fn part(&self, message_id: &str, part_id: &str) -> Option<&Part> {
        self.messages
            .iter()
            .find(|m| m.info.id == message_id)?
            .parts
            .iter()
            .find(|p| p.id == part_id)
    }

    /// The message `message_id`.
    pub fn message(&self, message_id: &str) -> Option<&Message> {
        self.messages.iter().find(|m| m.info.id == message_id)
    }

    /// Tokens in and out and cost over the session's assistant messages.
    pub fn usage(&self) -> Usage {
        self.messages.iter().filter(|m| m.info.is_assistant()).fold(
            Usage::default(),
            |mut usage, m| {
                usage.input += m.info.tokens.input + m.info.tokens.cache.read;
                usage.output += m.info.tokens.output + m.info.tokens.reasoning;
                usage.cost += m.info.cost;
                usage
            },
        )
    }

    /// The model of the last assistant message (`provider/model`).
    pub fn model(&self) -> Option<String> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.info.is_assistant() && !m.info.model_id.is_empty())
            .map(|m| {
                if m.info.provider_id.is_empty() {
                    m.info.model_id.clone()
                } else {
                    format!("{}/{}", m.info.provider_id, m.info.model_id)
                }
            })
    }
}

/// What a session has spent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub input: f64,
    pub output: f64,
    pub cost: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opencode::events::parse;

    fn events(lines: &[&str]) -> Vec<Event> {
        lines
            .iter()
            .map(|l| parse(l).unwrap_or_else(|| panic!("not an event: {l}")))
            .collect()
    }

    fn delta(part: &str, text: &str) -> String {
        format!(
            r#"{{"type":"message.part.delta","properties":{{"sessionID":"ses_1","messageID":"msg_2","partID":"{part}","field":"text","delta":"{text}"}}}}"#
        )
    }

    #[test]
    fn deltas_build_text_and_a_snapshot_never_shortens_it() {
        let mut t = Transcript::new("ses_1");
        let d1 = delta("prt_1", "Hello ");
        let d2 = delta("prt_1", "world");
        let snapshot = r#"{"type":"message.part.updated","properties":{"sessionID":"ses_1","time":1,"part":{"id":"prt_1","sessionID":"ses_1","messageID":"msg_2","type":"text","text":"Hello "}}}"#;
        for event in events(&[&d1, &d2, snapshot]) {
            t.apply(&event);
        }
        assert_eq!(t.messages.len(), 1);
        assert_eq!(t.messages[0].text(), "Hello world");
        let other_session = delta("prt_9", "x").replace("ses_1", "ses_2");
        assert_eq!(t.apply(&events(&[&other_session])[0]), Change::None);
    }

    #[test]
    fn parts_and_messages_keep_id_order_whatever_order_they_arrive_in() {
        let mut t = Transcript::new("ses_1");
        for event in events(&[
            &delta("prt_3", "c"),
            &delta("prt_1", "a"),
            &delta("prt_2", "b"),
        ]) {
            t.apply(&event);
        }
        assert_eq!(t.messages[0].text(), "abc");
    }

    #[test]
    fn a_failed_turn_keeps_its_error_until_the_next_turn_starts() {
        let mut t = Transcript::new("ses_1");
        let failed = r#"{"type":"session.error","properties":{"sessionID":"ses_1","error":{"name":"APIError","data":{"message":"quota exceeded"}}}}"#;
        let busy = r#"{"type":"session.status","properties":{"sessionID":"ses_1","status":{"type":"busy"}}}"#;
        let change = t.apply(&events(&[failed])[0]);
        assert!(matches!(change, Change::Failed(ref e) if e.message() == "quota exceeded"));
        assert!(t.error.is_some());
        assert_eq!(t.apply(&events(&[busy])[0]), Change::Status { busy: true });
        assert!(t.busy && t.error.is_none());
    }

    #[test]
    fn an_abort_is_not_an_error() {
        let mut t = Transcript::new("ses_1");
        let aborted = r#"{"type":"session.error","properties":{"sessionID":"ses_1","error":{"name":"MessageAbortedError","data":{"message":"The operation was aborted."}}}}"#;
        assert!(matches!(t.apply(&events(&[aborted])[0]), Change::Failed(e) if e.is_abort()));
        assert!(t.error.is_none());
    }

    #[test]
    fn a_resync_replaces_messages_with_the_servers() {
        let mut t = Transcript::new("ses_1");
        t.apply(&events(&[&delta("prt_1", "partial")])[0]);
        let messages: Vec<Message> = serde_json::from_str(
            r#"[{"info":{"id":"msg_1","sessionID":"ses_1","role":"user"},"parts":[{"id":"prt_0","type":"text","text":"hi"}]},
                {"info":{"id":"msg_2","sessionID":"ses_1","role":"assistant","time":{"created":1,"completed":2},"tokens":{"input":10,"output":3},"cost":0.5},
                 "parts":[{"id":"prt_1","type":"text","text":"partial and the rest"}]}]"#,
        )
        .expect("messages");
        t.resync(messages);
        assert_eq!(t.messages.len(), 2);
        assert_eq!(t.messages[1].text(), "partial and the rest");
        assert!(!t.busy);
        assert_eq!(
            t.usage(),
            Usage {
                input: 10.0,
                output: 3.0,
                cost: 0.5
            }
        );
    }
}
