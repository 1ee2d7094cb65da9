//! The stub model's scripted behaviour as pure functions: request parsing, markers, title
//! detection, and rendering of OpenAI chat-completion responses (streamed chunks and JSON).
//!
//! Markers in the last user message choose the answer:
//! - `[[reply:TEXT]]`: answer TEXT (TEXT runs to the next `]]`);
//! - `[[slow:MS]]`: stream the answer word by word, MS milliseconds between chunks;
//! - `[[error:CODE]]`: answer HTTP CODE (400..=599) with an OpenAI-style error body
//!   (OpenCode fails the turn at once on a 4xx; it retries 5xx);
//! - `[[tool:NAME:JSON_ARGS]]`: first answer is a call of tool NAME with JSON_ARGS; once the
//!   conversation holds a tool result after the last user message, answer the reply (or
//!   `stub tool result: <result>`);
//! - `[[title:TEXT]]`: the title to give when OpenCode asks for this session's title;
//! - `[[system:NEEDLE]]`: answer the lines of the system prompt(s) that contain NEEDLE (every
//!   line when NEEDLE is empty), or `no system line contains NEEDLE`: what a real model can do
//!   when asked to quote its instructions, so tests can see what OpenCode put there.
//!
//! Without markers the answer is `stub answer: <last user message text>`.
//!
//! Title requests: OpenCode (1.18) asks for a session title with a separate request whose system
//! message starts `You are a title generator.` and whose first user message starts
//! `Generate a title for this conversation:`, with no tools. [`is_title_request`] accepts either
//! sign, so a reworded prompt in a later release still needs only one of them to match.

use serde_json::{Value, json};

/// The model id the stub lists and answers as when a request names none.
pub const MODEL_ID: &str = "stub-model";

/// The title given when the conversation has no `[[title:...]]` marker.
pub const DEFAULT_TITLE: &str = "Stub session";

/// The parts of a chat-completion request the stub looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    pub model: String,
    pub stream: bool,
    pub messages: Vec<Message>,
    pub tool_count: usize,
}

/// One message, its content flattened to text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub text: String,
}

/// Why a request body is not a chat-completion request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl ChatRequest {
    /// Reads a request body leniently: unknown fields are ignored, content may be a string or an
    /// array of parts (`{"type":"text","text":...}`; other part types are skipped).
    pub fn parse(body: &[u8]) -> Result<Self, BadRequest> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|err| BadRequest(format!("request body is not JSON: {err}")))?;
        let messages = value
            .get("messages")
            .and_then(Value::as_array)
            .ok_or_else(|| BadRequest("request has no `messages` array".to_string()))?
            .iter()
            .map(|m| Message {
                role: m
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                text: content_text(m.get("content").unwrap_or(&Value::Null)),
            })
            .collect();
        Ok(Self {
            model: value
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(MODEL_ID)
                .to_string(),
            stream: value
                .get("stream")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            messages,
            tool_count: value
                .get("tools")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
        })
    }

    /// The text of the last user message ("" when there is none).
    pub fn last_user_text(&self) -> &str {
        self.last_user_index()
            .map_or("", |i| self.messages[i].text.as_str())
    }

    fn last_user_index(&self) -> Option<usize> {
        self.messages.iter().rposition(|m| m.role == "user")
    }

    /// Tool results that came after the last user message, in order.
    fn tool_results_after_last_user(&self) -> Vec<&str> {
        let start = self.last_user_index().map_or(0, |i| i + 1);
        self.messages[start..]
            .iter()
            .filter(|m| m.role == "tool")
            .map(|m| m.text.as_str())
            .collect()
    }
}

/// Flattens message content: a string as is, an array of parts as its text parts joined by
/// newlines, anything else as "".
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| match part {
                Value::String(text) => Some(text.as_str()),
                Value::Object(_) => {
                    let is_text = part
                        .get("type")
                        .and_then(Value::as_str)
                        .is_none_or(|t| t == "text");
                    if is_text {
                        part.get("text").and_then(Value::as_str)
                    } else {
                        None
                    }
                }
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Whether this is OpenCode's session-title request (see the module docs).
pub fn is_title_request(request: &ChatRequest) -> bool {
    let system_asks = request
        .messages
        .iter()
        .any(|m| m.role == "system" && m.text.to_ascii_lowercase().contains("title generator"));
    let user_asks = request
        .messages
        .iter()
        .find(|m| m.role == "user")
        .is_some_and(|m| {
            m.text
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("generate a title for this conversation")
        });
    system_asks || user_asks
}

/// The markers found in one text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Markers {
    pub reply: Option<String>,
    pub slow_ms: Option<u64>,
    pub error: Option<u16>,
    pub tool: Option<ToolMarker>,
    pub title: Option<String>,
    pub system: Option<String>,
}

/// `[[tool:NAME:JSON_ARGS]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolMarker {
    pub name: String,
    /// The arguments as compact JSON text.
    pub arguments: String,
}

impl Markers {
    /// The names of the markers present, for the requests log.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.reply.is_some() {
            names.push("reply");
        }
        if self.slow_ms.is_some() {
            names.push("slow");
        }
        if self.error.is_some() {
            names.push("error");
        }
        if self.tool.is_some() {
            names.push("tool");
        }
        if self.title.is_some() {
            names.push("title");
        }
        if self.system.is_some() {
            names.push("system");
        }
        names
    }
}

/// Finds `[[name:value]]` markers. Unknown names and malformed values are ignored (the text is
/// then just text); the first occurrence of each marker wins.
pub fn parse_markers(text: &str) -> Markers {
    let mut markers = Markers::default();
    let mut rest = text;
    while let Some(start) = rest.find("[[") {
        let after = &rest[start + 2..];
        let Some(colon) = after.find(':') else { break };
        let name = &after[..colon];
        let value_and_rest = &after[colon + 1..];
        if name == "tool" {
            if let Some((tool, consumed)) = parse_tool_marker(value_and_rest) {
                markers.tool.get_or_insert(tool);
                rest = &value_and_rest[consumed..];
                continue;
            }
            rest = after;
            continue;
        }
        if !name.chars().all(|c| c.is_ascii_alphabetic()) {
            rest = after;
            continue;
        }
        let Some(end) = value_and_rest.find("]]") else {
            break;
        };
        let value = &value_and_rest[..end];
        match name {
            "reply" => {
                markers.reply.get_or_insert_with(|| value.to_string());
            }
            "title" => {
                markers
                    .title
                    .get_or_insert_with(|| value.trim().to_string());
            }
            "system" => {
                markers.system.get_or_insert_with(|| value.to_string());
            }
            "slow" => {
                if let Ok(ms) = value.trim().parse() {
                    markers.slow_ms.get_or_insert(ms);
                }
            }
            "error" => {
                if let Ok(code) = value.trim().parse::<u16>()
                    && (400..=599).contains(&code)
                {
                    markers.error.get_or_insert(code);
                }
            }
            _ => {}
        }
        rest = &value_and_rest[end + 2..];
    }
    markers
}

/// Parses `NAME:JSON]]` (what follows `[[tool:`); returns the marker and the bytes consumed.
fn parse_tool_marker(text: &str) -> Option<(ToolMarker, usize)> {
    let colon = text.find(':')?;
    let name = text[..colon].trim();
    if name.is_empty() || name.contains("]]") {
        return None;
    }
    let json_text = &text[colon + 1..];
    let mut values = serde_json::Deserializer::from_str(json_text).into_iter::<Value>();
    let arguments = values.next()?.ok()?;
    let offset = values.byte_offset();
    let tail = &json_text[offset..];
    let trimmed = tail.trim_start();
    if !trimmed.starts_with("]]") {
        return None;
    }
    let consumed = colon + 1 + offset + (tail.len() - trimmed.len()) + 2;
    Some((
        ToolMarker {
            name: name.to_string(),
            arguments: arguments.to_string(),
        },
        consumed,
    ))
}

/// What the stub answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Text, streamed word by word with `delay_ms` between chunks.
    Text { text: String, delay_ms: u64 },
    /// A call of one tool.
    ToolCall { name: String, arguments: String },
    /// An HTTP error with an OpenAI-style body.
    Error { status: u16, message: String },
}

/// What kind of answer a request got, for the requests log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    Title,
    Reply,
    Echo,
    ToolCall,
    ToolResult,
    System,
    Error,
}

impl AnswerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Title => "title",
            Self::Reply => "reply",
            Self::Echo => "echo",
            Self::ToolCall => "tool_call",
            Self::ToolResult => "tool_result",
            Self::System => "system",
            Self::Error => "error",
        }
    }
}

/// Decides the answer to a request. Title requests always get a title (their user messages
/// repeat the prompt, markers and all, which must not make them fail or stall).
pub fn decide(request: &ChatRequest) -> (Answer, AnswerKind) {
    let last_user = request.last_user_text();
    let markers = parse_markers(last_user);
    if is_title_request(request) {
        let title = request
            .messages
            .iter()
            .find_map(|m| parse_markers(&m.text).title)
            .or(markers.title)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| DEFAULT_TITLE.to_string());
        return (
            Answer::Text {
                text: title,
                delay_ms: 0,
            },
            AnswerKind::Title,
        );
    }
    if let Some(status) = markers.error {
        let message = format!("stub model error {status} (asked for by [[error:{status}]])");
        return (Answer::Error { status, message }, AnswerKind::Error);
    }
    let delay_ms = markers.slow_ms.unwrap_or(0);
    if let Some(needle) = &markers.system {
        let text = system_lines(request, needle.trim());
        return (Answer::Text { text, delay_ms }, AnswerKind::System);
    }
    if let Some(tool) = &markers.tool {
        let results = request.tool_results_after_last_user();
        if results.is_empty() {
            return (
                Answer::ToolCall {
                    name: tool.name.clone(),
                    arguments: tool.arguments.clone(),
                },
                AnswerKind::ToolCall,
            );
        }
        let text = markers
            .reply
            .clone()
            .unwrap_or_else(|| format!("stub tool result: {}", results.join("\n")));
        return (Answer::Text { text, delay_ms }, AnswerKind::ToolResult);
    }
    if let Some(text) = markers.reply {
        return (Answer::Text { text, delay_ms }, AnswerKind::Reply);
    }
    let text = format!("stub answer: {last_user}");
    (Answer::Text { text, delay_ms }, AnswerKind::Echo)
}

/// The lines of the request's system messages that contain `needle` (all when it is empty),
/// joined by newlines; a fixed sentence when none does.
pub fn system_lines(request: &ChatRequest, needle: &str) -> String {
    let lines: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == "system")
        .flat_map(|m| m.text.lines())
        .filter(|line| line.contains(needle))
        .collect();
    if lines.is_empty() {
        format!("no system line contains {needle}")
    } else {
        lines.join("\n")
    }
}

/// Splits text into stream pieces, one word each with the whitespace that follows it, so the
/// pieces concatenate back to the text exactly.
pub fn split_words(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_space = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_space = true;
        } else if in_space {
            pieces.push(&text[start..i]);
            start = i;
            in_space = false;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// A rough, deterministic token count: words.
pub fn count_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Token usage for a request and its answer text.
pub fn usage(request: &ChatRequest, completion: &str) -> Value {
    let prompt: u64 = request.messages.iter().map(|m| count_tokens(&m.text)).sum();
    let completion = count_tokens(completion);
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// Identity of one response: shared by all its chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
}

/// One `chat.completion.chunk` object.
pub fn chunk(
    meta: &ResponseMeta,
    delta: Value,
    finish_reason: Option<&str>,
    usage: Option<Value>,
) -> Value {
    let mut chunk = json!({
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    });
    if let (Some(usage), Some(object)) = (usage, chunk.as_object_mut()) {
        object.insert("usage".to_string(), usage);
    }
    chunk
}

/// One server-sent event carrying JSON.
pub fn sse_event(data: &Value) -> String {
    format!("data: {data}\n\n")
}

/// The stream terminator.
pub const SSE_DONE: &str = "data: [DONE]\n\n";

/// The tool-call id the stub uses (one call per response).
pub const TOOL_CALL_ID: &str = "call_stub_0";

/// The chunks of a streamed answer (without `[DONE]`); errors are not streamed.
pub fn stream_chunks(meta: &ResponseMeta, request: &ChatRequest, answer: &Answer) -> Vec<Value> {
    match answer {
        Answer::Text { text, .. } => {
            let mut chunks = vec![chunk(
                meta,
                json!({"role": "assistant", "content": ""}),
                None,
                None,
            )];
            chunks.extend(
                split_words(text)
                    .into_iter()
                    .map(|word| chunk(meta, json!({"content": word}), None, None)),
            );
            chunks.push(chunk(
                meta,
                json!({}),
                Some("stop"),
                Some(usage(request, text)),
            ));
            chunks
        }
        Answer::ToolCall { name, arguments } => vec![
            chunk(
                meta,
                json!({
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [{
                        "index": 0,
                        "id": TOOL_CALL_ID,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }],
                }),
                None,
                None,
            ),
            chunk(
                meta,
                json!({}),
                Some("tool_calls"),
                Some(usage(request, arguments)),
            ),
        ],
        Answer::Error { .. } => Vec::new(),
    }
}

/// The non-streamed `chat.completion` object (errors use [`error_body`]).
pub fn completion(meta: &ResponseMeta, request: &ChatRequest, answer: &Answer) -> Value {
    let (message, finish_reason, completion_text) = match answer {
        Answer::Text { text, .. } => (
            json!({"role": "assistant", "content": text}),
            "stop",
            text.as_str(),
        ),
        Answer::ToolCall { name, arguments } => (
            json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": TOOL_CALL_ID,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }],
            }),
            "tool_calls",
            arguments.as_str(),
        ),
        Answer::Error { message, .. } => (
            json!({"role": "assistant", "content": message}),
            "stop",
            message.as_str(),
        ),
    };
    json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage(request, completion_text),
    })
}

/// An OpenAI-style error body.
pub fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "api_error",
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": status}})
}

/// `GET /v1/models`.
pub fn models_list() -> Value {
    json!({
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "kubeoc-testbed"}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(messages: Value) -> ChatRequest {
        let body = json!({"model": "stub-model", "stream": true, "messages": messages});
        ChatRequest::parse(body.to_string().as_bytes()).expect("valid request")
    }

    fn meta() -> ResponseMeta {
        ResponseMeta {
            id: "chatcmpl-1".to_string(),
            created: 7,
            model: "stub-model".to_string(),
        }
    }

    #[test]
    fn content_may_be_string_or_parts() {
        assert_eq!(content_text(&json!("hi")), "hi");
        assert_eq!(
            content_text(&json!([
                {"type": "text", "text": "a"},
                {"type": "image_url", "image_url": {"url": "x"}},
                {"type": "text", "text": "b"}
            ])),
            "a\nb"
        );
        assert_eq!(content_text(&Value::Null), "");
        let req = request(json!([
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "first"}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]}
        ]));
        assert_eq!(req.last_user_text(), "second");
        assert!(req.stream);
        assert_eq!(req.model, "stub-model");
    }

    #[test]
    fn bad_bodies_are_rejected_with_a_reason() {
        assert!(ChatRequest::parse(b"nope").is_err());
        let err = ChatRequest::parse(br#"{"model":"m"}"#).expect_err("no messages");
        assert!(err.0.contains("messages"), "{err:?}");
    }

    #[test]
    fn markers_are_parsed() {
        let m = parse_markers("please [[reply:hello from the stub]] and [[slow:25]] now");
        assert_eq!(m.reply.as_deref(), Some("hello from the stub"));
        assert_eq!(m.slow_ms, Some(25));
        assert_eq!(m.error, None);
        assert_eq!(m.names(), vec!["reply", "slow"]);

        assert_eq!(parse_markers("[[error:400]]").error, Some(400));
        assert_eq!(parse_markers("[[error:200]]").error, None);
        assert_eq!(parse_markers("[[error:abc]]").error, None);
        assert_eq!(parse_markers("[[slow:x]]").slow_ms, None);
        assert_eq!(
            parse_markers("[[title: My title ]]").title.as_deref(),
            Some("My title")
        );
        assert_eq!(parse_markers("no markers [[here").reply, None);
        assert_eq!(
            parse_markers("[[reply:first]] [[reply:second]]")
                .reply
                .as_deref(),
            Some("first")
        );
        // A bracket pair that is not a marker does not hide the marker after it.
        assert_eq!(
            parse_markers("x[[0]] [[ not one]] [[reply:ok]]")
                .reply
                .as_deref(),
            Some("ok")
        );
    }

    #[test]
    fn tool_marker_takes_json_with_brackets() {
        let m = parse_markers(
            r#"go [[tool:bash:{"command":"echo [[x]]","n":[[1]]}]] then [[reply:done]]"#,
        );
        let tool = m.tool.expect("tool marker");
        assert_eq!(tool.name, "bash");
        let args: Value = serde_json::from_str(&tool.arguments).expect("json args");
        assert_eq!(args, json!({"command": "echo [[x]]", "n": [[1]]}));
        assert_eq!(m.reply.as_deref(), Some("done"));
        assert_eq!(parse_markers("[[tool:bash:not json]]").tool, None);
        assert_eq!(parse_markers("[[tool::{}]]").tool, None);
    }

    #[test]
    fn title_requests_are_detected_by_either_sign() {
        let opencode_title = request(json!([
            {"role": "system", "content": "You are a title generator. You output ONLY a thread title. Nothing else."},
            {"role": "user", "content": "Generate a title for this conversation:\n"},
            {"role": "user", "content": "[[error:400]] fix the build"}
        ]));
        assert!(is_title_request(&opencode_title));
        let only_user = request(json!([
            {"role": "user", "content": "Generate a title for this conversation:\nhello"}
        ]));
        assert!(is_title_request(&only_user));
        let only_system = request(json!([
            {"role": "system", "content": "you are a TITLE GENERATOR"},
            {"role": "user", "content": "hello"}
        ]));
        assert!(is_title_request(&only_system));
        let normal = request(json!([
            {"role": "system", "content": "You are opencode, an interactive CLI tool."},
            {"role": "user", "content": "Generate a title for my blog post"}
        ]));
        assert!(!is_title_request(&normal));
    }

    #[test]
    fn title_requests_get_titles_whatever_the_markers() {
        let req = request(json!([
            {"role": "system", "content": "You are a title generator."},
            {"role": "user", "content": "Generate a title for this conversation:\n"},
            {"role": "user", "content": "[[error:400]] [[slow:5000]] hi"}
        ]));
        assert_eq!(
            decide(&req),
            (
                Answer::Text {
                    text: DEFAULT_TITLE.to_string(),
                    delay_ms: 0
                },
                AnswerKind::Title
            )
        );
        let named = request(json!([
            {"role": "system", "content": "You are a title generator."},
            {"role": "user", "content": "[[title:Fix the build]] go"}
        ]));
        assert_eq!(
            decide(&named).0,
            Answer::Text {
                text: "Fix the build".to_string(),
                delay_ms: 0
            }
        );
    }

    #[test]
    fn answers_follow_markers() {
        let echo = request(json!([{"role": "user", "content": "what is up"}]));
        assert_eq!(
            decide(&echo),
            (
                Answer::Text {
                    text: "stub answer: what is up".to_string(),
                    delay_ms: 0
                },
                AnswerKind::Echo
            )
        );
        let reply = request(json!([{"role": "user", "content": "[[reply:a b]][[slow:10]]"}]));
        assert_eq!(
            decide(&reply),
            (
                Answer::Text {
                    text: "a b".to_string(),
                    delay_ms: 10
                },
                AnswerKind::Reply
            )
        );
        let error = request(json!([{"role": "user", "content": "[[error:404]]"}]));
        match decide(&error) {
            (
                Answer::Error {
                    status: 404,
                    message,
                },
                AnswerKind::Error,
            ) => {
                assert!(message.contains("404"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn system_marker_quotes_the_matching_system_lines() {
        let req = request(json!([
            {"role": "system", "content": "You are OpenCode.\nInstructions from: /w/ctx.md\nbe nice"},
            {"role": "system", "content": [{"type": "text", "text": "ctx marker 7"}]},
            {"role": "user", "content": "quote it [[system:ctx]]"},
        ]));
        assert_eq!(
            decide(&req),
            (
                Answer::Text {
                    text: "Instructions from: /w/ctx.md\nctx marker 7".to_string(),
                    delay_ms: 0
                },
                AnswerKind::System
            )
        );
        let none = request(json!([
            {"role": "system", "content": "You are OpenCode."},
            {"role": "user", "content": "[[system:absent]]"},
        ]));
        assert_eq!(
            decide(&none).0,
            Answer::Text {
                text: "no system line contains absent".to_string(),
                delay_ms: 0
            }
        );
        assert_eq!(parse_markers("[[system:]]").system.as_deref(), Some(""));
        assert_eq!(parse_markers("[[system:x]]").names(), vec!["system"]);
    }

    #[test]
    fn tool_step_calls_then_answers() {
        let first = request(json!([
            {"role": "user", "content": r#"[[tool:bash:{"command":"ls"}]]"#}
        ]));
        assert_eq!(
            decide(&first),
            (
                Answer::ToolCall {
                    name: "bash".to_string(),
                    arguments: r#"{"command":"ls"}"#.to_string()
                },
                AnswerKind::ToolCall
            )
        );
        let second = request(json!([
            {"role": "user", "content": r#"[[tool:bash:{"command":"ls"}]]"#},
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "tool", "tool_call_id": "call_stub_0", "content": "file.txt"}
        ]));
        assert_eq!(
            decide(&second),
            (
                Answer::Text {
                    text: "stub tool result: file.txt".to_string(),
                    delay_ms: 0
                },
                AnswerKind::ToolResult
            )
        );
    }

    #[test]
    fn words_split_and_rejoin_exactly() {
        assert_eq!(
            split_words("hello from  the stub"),
            vec!["hello ", "from  ", "the ", "stub"]
        );
        assert_eq!(split_words(" lead"), vec![" ", "lead"]);
        assert_eq!(split_words(""), Vec::<&str>::new());
        let text = "multi\nline  text ";
        assert_eq!(split_words(text).concat(), text);
    }

    #[test]
    fn text_stream_renders_openai_chunks() {
        let req = request(json!([{"role": "user", "content": "one two"}]));
        let answer = Answer::Text {
            text: "hello there".to_string(),
            delay_ms: 0,
        };
        let chunks = stream_chunks(&meta(), &req, &answer);
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["object"], "chat.completion.chunk");
        assert_eq!(chunks[1]["id"], "chatcmpl-1");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "hello ");
        assert_eq!(chunks[2]["choices"][0]["delta"]["content"], "there");
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], Value::Null);
        let last = &chunks[3];
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            last["usage"],
            json!({"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4})
        );
        assert_eq!(sse_event(&json!({"a": 1})), "data: {\"a\":1}\n\n");
    }

    #[test]
    fn tool_call_stream_and_completion() {
        let req = request(json!([{"role": "user", "content": "x"}]));
        let answer = Answer::ToolCall {
            name: "bash".to_string(),
            arguments: "{}".to_string(),
        };
        let chunks = stream_chunks(&meta(), &req, &answer);
        let call = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(call["id"], TOOL_CALL_ID);
        assert_eq!(call["function"]["name"], "bash");
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], "tool_calls");

        let body = completion(&meta(), &req, &answer);
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        let text = completion(
            &meta(),
            &req,
            &Answer::Text {
                text: "hi".to_string(),
                delay_ms: 0,
            },
        );
        assert_eq!(text["choices"][0]["message"]["content"], "hi");
        assert_eq!(text["usage"]["completion_tokens"], 1);
    }

    #[test]
    fn errors_look_like_openai() {
        let body = error_body(400, "nope");
        assert_eq!(body["error"]["message"], "nope");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(error_body(429, "x")["error"]["type"], "rate_limit_error");
        assert_eq!(models_list()["data"][0]["id"], MODEL_ID);
    }
}
