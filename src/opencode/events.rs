//! OpenCode's `/event` stream as typed events.
//!
//! The server sends server-sent events whose data is `{"id", "type", "properties"}`. The
//! kinds kubeoc acts on become an [`Event`]; every other kind (plugins, files, LSP, kinds a
//! newer server adds) is skipped, as is a known kind whose properties do not decode, so one odd
//! event never ends a stream.

use futures::{Stream, StreamExt as _};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::types::{MessageError, MessageInfo, Part, PermissionRequest, Session, SessionStatus};

/// One event of OpenCode's `/event` stream that kubeoc acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The first event of every stream.
    Connected,
    /// Sent every 10 s (1.18.x): a stream that has been quiet longer is dead.
    Heartbeat,
    SessionCreated(Session),
    SessionUpdated(Session),
    SessionDeleted(Session),
    /// A session turned busy, idle or retrying.
    SessionStatus {
        session_id: String,
        status: SessionStatus,
    },
    /// A turn ended.
    SessionIdle {
        session_id: String,
    },
    /// A turn failed (or was aborted: [`MessageError::is_abort`]).
    SessionError {
        session_id: Option<String>,
        error: Option<MessageError>,
    },
    /// A message was created or changed (its completion time, error, tokens and cost).
    MessageUpdated(MessageInfo),
    MessageRemoved {
        session_id: String,
        message_id: String,
    },
    /// The whole of a part, new or changed (a tool call's state, a text part's snapshot).
    PartUpdated(Part),
    /// Text appended to one field (`text`) of a part while it streams.
    PartDelta {
        session_id: String,
        message_id: String,
        part_id: String,
        field: String,
        delta: String,
    },
    PartRemoved {
        session_id: String,
        message_id: String,
        part_id: String,
    },
    /// A tool call waits for consent.
    PermissionAsked(PermissionRequest),
    /// Someone (this terminal or another) answered a permission request.
    PermissionReplied {
        session_id: String,
        request_id: String,
        reply: String,
    },
}

impl Event {
    /// The session the event belongs to, when it belongs to one.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            Self::Connected | Self::Heartbeat => None,
            Self::SessionCreated(s) | Self::SessionUpdated(s) | Self::SessionDeleted(s) => {
                Some(&s.id)
            }
            Self::SessionStatus { session_id, .. }
            | Self::SessionIdle { session_id }
            | Self::MessageRemoved { session_id, .. }
            | Self::PartDelta { session_id, .. }
            | Self::PartRemoved { session_id, .. }
            | Self::PermissionReplied { session_id, .. } => Some(session_id),
            Self::SessionError { session_id, .. } => session_id.as_deref(),
            Self::MessageUpdated(info) => Some(&info.session_id),
            Self::PartUpdated(part) => Some(&part.session_id),
            Self::PermissionAsked(request) => Some(&request.session_id),
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    properties: serde_json::Value,
}

#[derive(Deserialize)]
struct WithInfo<T> {
    info: T,
}

#[derive(Deserialize)]
struct StatusProperties {
    #[serde(rename = "sessionID")]
    session_id: String,
    status: SessionStatus,
}

#[derive(Deserialize)]
struct SessionProperties {
    #[serde(rename = "sessionID")]
    session_id: String,
}

#[derive(Deserialize)]
struct ErrorProperties {
    #[serde(rename = "sessionID", default)]
    session_id: Option<String>,
    #[serde(default)]
    error: Option<MessageError>,
}

#[derive(Deserialize)]
struct MessageRemovedProperties {
    #[serde(rename = "sessionID")]
    session_id: String,
    #[serde(rename = "messageID")]
    message_id: String,
}

#[derive(Deserialize)]
struct PartProperties {
    part: Part,
}

#[derive(Deserialize)]
struct DeltaProperties {
    #[serde(rename = "sessionID")]
    session_id: String,
    #[serde(rename = "messageID")]
    message_id: String,
    #[serde(rename = "partID")]
    part_id: String,
    field: String,
    delta: String,
}

#[derive(Deserialize)]
struct PartRemovedProperties {
    #[serde(rename = "sessionID")]
    session_id: String,
    #[serde(rename = "messageID")]
    message_id: String,
    #[serde(rename = "partID")]
    part_id: String,
}

#[derive(Deserialize)]
struct RepliedProperties {
    #[serde(rename = "sessionID")]
    session_id: String,
    #[serde(rename = "requestID")]
    request_id: String,
    reply: String,
}

fn decode<T: DeserializeOwned>(properties: serde_json::Value) -> Option<T> {
    serde_json::from_value(properties).ok()
}

/// Reads the data of one server-sent event. `None` for kinds kubeoc does not act on and for
/// data that does not decode.
pub fn parse(data: &str) -> Option<Event> {
    let Envelope { kind, properties } = serde_json::from_str(data).ok()?;
    let event = match kind.as_str() {
        "server.connected" => Event::Connected,
        "server.heartbeat" => Event::Heartbeat,
        "session.created" => Event::SessionCreated(decode::<WithInfo<Session>>(properties)?.info),
        "session.updated" => Event::SessionUpdated(decode::<WithInfo<Session>>(properties)?.info),
        "session.deleted" => Event::SessionDeleted(decode::<WithInfo<Session>>(properties)?.info),
        "session.status" => {
            let p: StatusProperties = decode(properties)?;
            Event::SessionStatus {
                session_id: p.session_id,
                status: p.status,
            }
        }
        "session.idle" => Event::SessionIdle {
            session_id: decode::<SessionProperties>(properties)?.session_id,
        },
        "session.error" => {
            let p: ErrorProperties = decode(properties)?;
            Event::SessionError {
                session_id: p.session_id,
                error: p.error,
            }
        }
        "message.updated" => {
            Event::MessageUpdated(decode::<WithInfo<MessageInfo>>(properties)?.info)
        }
        "message.removed" => {
            let p: MessageRemovedProperties = decode(properties)?;
            Event::MessageRemoved {
                session_id: p.session_id,
                message_id: p.message_id,
            }
        }
        "message.part.updated" => Event::PartUpdated(decode::<PartProperties>(properties)?.part),
        "message.part.delta" => {
            let p: DeltaProperties = decode(properties)?;
            Event::PartDelta {
                session_id: p.session_id,
                message_id: p.message_id,
                part_id: p.part_id,
                field: p.field,
                delta: p.delta,
            }
        }
        "message.part.removed" => {
            let p: PartRemovedProperties = decode(properties)?;
            Event::PartRemoved {
                session_id: p.session_id,
                message_id: p.message_id,
                part_id: p.part_id,
            }
        }
        "permission.asked" => Event::PermissionAsked(decode(properties)?),
        "permission.replied" => {
            let p: RepliedProperties = decode(properties)?;
            Event::PermissionReplied {
                session_id: p.session_id,
                request_id: p.request_id,
                reply: p.reply,
            }
        }
        _ => return None,
    };
    Some(event)
}

/// Why an event stream ended.
#[derive(Debug, thiserror::Error)]
#[error("the event stream broke: {0}")]
pub struct StreamError(pub String);

/// Typed events from a stream of body chunks of `/event`, split anywhere. Ends with the body;
/// a transport error is yielded once and then the stream ends.
pub fn decode_stream<S, E>(bytes: S) -> impl Stream<Item = Result<Event, StreamError>>
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
    E: std::fmt::Display,
{
    // The decoder yields a transport error once and then ends.
    sse_stream::SseByteStream::new(bytes.map(|chunk| chunk.map_err(|e| StreamError(e.to_string()))))
        .filter_map(|frame| {
            futures::future::ready(match frame {
                Ok(frame) => frame.data.as_deref().and_then(parse).map(Ok),
                Err(err) => Some(Err(StreamError(err.to_string()))),
            })
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::opencode::types::{PartKind, ToolStatus};

    /// Recorded from OpenCode 1.18.33 with the testbed's stub model (see testdata/README.md).
    pub(crate) const TEXT_TURN: &str = include_str!("testdata/text-turn.sse");
    pub(crate) const ERROR_TURN: &str = include_str!("testdata/error-turn.sse");
    pub(crate) const TOOL_PERMISSION: &str = include_str!("testdata/tool-permission.sse");
    pub(crate) const ABORT: &str = include_str!("testdata/abort.sse");

    pub(crate) fn events_of(chunks: Vec<Vec<u8>>) -> Vec<Event> {
        let stream = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(c))),
        );
        futures::executor::block_on(decode_stream(stream).collect::<Vec<_>>())
            .into_iter()
            .map(|e| e.expect("no transport error"))
            .collect()
    }

    #[test]
    fn a_stream_split_at_every_byte_boundary_gives_the_same_events() {
        let whole = events_of(vec![TEXT_TURN.as_bytes().to_vec()]);
        assert!(whole.len() > 5, "{whole:?}");
        let bytes = TEXT_TURN.as_bytes();
        for cut in 1..bytes.len() {
            let split = events_of(vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()]);
            assert_eq!(split, whole, "split at byte {cut}");
        }
        let single_bytes = events_of(bytes.iter().map(|b| vec![*b]).collect());
        assert_eq!(single_bytes, whole, "one byte per chunk");
    }

    #[test]
    fn crlf_line_ends_decode_like_lf() {
        let crlf = TEXT_TURN.replace('\n', "\r\n");
        assert_eq!(
            events_of(vec![crlf.into_bytes()]),
            events_of(vec![TEXT_TURN.as_bytes().to_vec()])
        );
    }

    #[test]
    fn a_text_turn_streams_deltas_and_ends_idle() {
        let events = events_of(vec![TEXT_TURN.as_bytes().to_vec()]);
        assert_eq!(events.first(), Some(&Event::Connected));
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                Event::PartDelta { field, delta, .. } if field == "text" => Some(delta.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "Hello from the stub model");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::SessionIdle { .. })),
            "{events:?}"
        );
        assert!(events.iter().any(|e| matches!(e,
            Event::MessageUpdated(info) if info.is_assistant() && info.time.completed.is_some())));
    }

    #[test]
    fn unknown_and_malformed_events_are_skipped() {
        let text = "data: {\"type\":\"plugin.added\",\"properties\":{\"name\":\"x\"}}\n\n\
                    data: {\"type\":\"session.idle\",\"properties\":{}}\n\n\
                    data: not json\n\n\
                    : a comment\n\n\
                    data: {\"type\":\"server.heartbeat\",\"properties\":{}}\n\n";
        assert_eq!(
            events_of(vec![text.as_bytes().to_vec()]),
            [Event::Heartbeat]
        );
    }

    #[test]
    fn tool_parts_and_permission_requests_decode() {
        let part = parse(
            r#"{"type":"message.part.updated","properties":{"sessionID":"ses_1","time":1,"part":{
                "id":"prt_1","sessionID":"ses_1","messageID":"msg_1","type":"tool","callID":"c",
                "tool":"bash","state":{"status":"running","input":{"command":"ls"},"title":"ls","time":{"start":1}}}}}"#,
        );
        let Some(Event::PartUpdated(part)) = part else {
            panic!("not a part: {part:?}")
        };
        assert_eq!(part.kind, PartKind::Tool);
        let state = part.state.expect("state");
        assert_eq!(state.status, ToolStatus::Running);
        assert_eq!(state.input["command"], "ls");
        let asked = parse(
            r#"{"type":"permission.asked","properties":{"id":"per_1","sessionID":"ses_1",
                "permission":"bash","patterns":["rm -rf build"],"metadata":{},"always":["rm *"],
                "tool":{"messageID":"msg_1","callID":"c"}}}"#,
        );
        let Some(Event::PermissionAsked(request)) = asked else {
            panic!("not a permission request: {asked:?}")
        };
        assert_eq!(request.patterns, ["rm -rf build"]);
        assert_eq!(request.always, ["rm *"]);
    }

    #[test]
    fn a_transport_error_is_reported_once_and_ends_the_stream() {
        let chunks: Vec<Result<bytes::Bytes, String>> = vec![
            Ok(bytes::Bytes::from_static(
                b"data: {\"type\":\"server.heartbeat\",\"properties\":{}}\n\n",
            )),
            Err("connection reset".to_string()),
            Ok(bytes::Bytes::from_static(
                b"data: {\"type\":\"server.heartbeat\",\"properties\":{}}\n\n",
            )),
        ];
        let items = futures::executor::block_on(
            decode_stream(futures::stream::iter(chunks)).collect::<Vec<_>>(),
        );
        assert_eq!(items.len(), 2, "{items:?}");
        assert!(matches!(items[0], Ok(Event::Heartbeat)));
        assert!(
            items[1]
                .as_ref()
                .is_err_and(|e| e.0.contains("connection reset"))
        );
    }
}
