//! Following one turn (a prompt and its answer) as text for a script: the answer's text as it
//! streams, tool calls and progress apart from it, and when the turn is over, how it ended.
//! Pure: it reads a [`Transcript`] after each change and says what to print.

use std::collections::{HashMap, HashSet};

use super::transcript::{Change, Transcript};
use super::types::{MessageError, PartKind, ToolStatus};

/// Text to print: the answer goes to stdout, everything else to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Answer(String),
    Progress(String),
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Answered,
    Failed(MessageError),
    Aborted,
}

/// What has been printed of a turn and whether it is over.
#[derive(Debug, Clone, Default)]
pub struct TurnFollower {
    /// Messages that existed before the prompt: not part of this turn.
    before: HashSet<String>,
    /// Bytes of each text part already printed.
    printed: HashMap<String, usize>,
    /// The last status printed for each tool part.
    tools: HashMap<String, ToolStatus>,
    /// Whether the session went busy after the prompt.
    started: bool,
    /// Whether the last answer text printed ended a line.
    at_line_start: bool,
    outcome: Option<Outcome>,
}

impl TurnFollower {
    /// Starts following the turn that a prompt sent after `transcript` was read will start.
    pub fn new(transcript: &Transcript) -> Self {
        Self {
            before: transcript
                .messages
                .iter()
                .map(|m| m.info.id.clone())
                .collect(),
            at_line_start: true,
            ..Self::default()
        }
    }

    /// How the turn ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// What to print after `change`, read from `transcript` (already changed).
    pub fn on_change(&mut self, transcript: &Transcript, change: &Change) -> Vec<Output> {
        match change {
            Change::Status { busy: true } => self.started = true,
            Change::Failed(error) if self.outcome.is_none() => {
                self.outcome = Some(if error.is_abort() {
                    Outcome::Aborted
                } else {
                    Outcome::Failed(error.clone())
                });
            }
            _ => {}
        }
        let mut out = self.catch_up(transcript);
        if matches!(change, Change::Idle) && self.outcome.is_none() && self.has_answer(transcript) {
            self.outcome = Some(Outcome::Answered);
        }
        if matches!(change, Change::Deleted) && self.outcome.is_none() {
            self.outcome = Some(Outcome::Failed(MessageError {
                name: "SessionDeleted".to_string(),
                data: serde_json::json!({"message": "the session was deleted on the server"}),
            }));
        }
        self.end_line(&mut out);
        out
    }

    /// After a resync: prints what was missed and ends the turn if the server says it is over.
    pub fn on_resync(&mut self, transcript: &Transcript) -> Vec<Output> {
        let mut out = self.catch_up(transcript);
        if self.outcome.is_none() && !transcript.busy {
            let last = transcript
                .messages
                .iter()
                .rev()
                .find(|m| m.info.is_assistant() && !self.before.contains(&m.info.id));
            if let Some(last) = last {
                self.outcome = Some(match &last.info.error {
                    Some(e) if e.is_abort() => Outcome::Aborted,
                    Some(e) => Outcome::Failed(e.clone()),
                    None if last.info.time.completed.is_some() => Outcome::Answered,
                    None => return out,
                });
            }
        }
        self.end_line(&mut out);
        out
    }

    /// Once the turn is over, ends the answer's last line.
    fn end_line(&mut self, out: &mut Vec<Output>) {
        if self.outcome.is_some() && !self.at_line_start {
            out.push(Output::Answer("\n".to_string()));
            self.at_line_start = true;
        }
    }

    fn has_answer(&self, transcript: &Transcript) -> bool {
        self.started
            || transcript
                .messages
                .iter()
                .any(|m| m.info.is_assistant() && !self.before.contains(&m.info.id))
    }

    /// Everything of this turn's assistant messages not printed yet.
    fn catch_up(&mut self, transcript: &Transcript) -> Vec<Output> {
        let mut out = Vec::new();
        let messages = transcript
            .messages
            .iter()
            .filter(|m| m.info.is_assistant() && !self.before.contains(&m.info.id));
        for message in messages {
            for part in &message.parts {
                match part.kind {
                    PartKind::Text => {
                        let done = self.printed.entry(part.id.clone()).or_insert(0);
                        if part.text.len() > *done && part.text.is_char_boundary(*done) {
                            let new = &part.text[*done..];
                            if *done == 0 && !self.at_line_start {
                                out.push(Output::Answer("\n".to_string()));
                            }
                            *done = part.text.len();
                            self.at_line_start = new.ends_with('\n');
                            out.push(Output::Answer(new.to_string()));
                        }
                    }
                    PartKind::Tool => {
                        let Some(state) = &part.state else { continue };
                        if self.tools.get(&part.id) == Some(&state.status) {
                            continue;
                        }
                        self.tools.insert(part.id.clone(), state.status);
                        let what = if state.title.is_empty() {
                            part.tool.clone()
                        } else {
                            format!("{}: {}", part.tool, state.title)
                        };
                        let line = match state.status {
                            ToolStatus::Pending => continue,
                            ToolStatus::Running => format!("[tool] {what} ...\n"),
                            ToolStatus::Completed => format!("[tool] {what} done\n"),
                            ToolStatus::Error => format!("[tool] {what} failed: {}\n", state.error),
                        };
                        out.push(Output::Progress(line));
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opencode::events::parse;

    fn apply(t: &mut Transcript, f: &mut TurnFollower, line: &str) -> Vec<Output> {
        let event = parse(line).unwrap_or_else(|| panic!("not an event: {line}"));
        let change = t.apply(&event);
        f.on_change(t, &change)
    }

    const BUSY: &str =
        r#"{"type":"session.status","properties":{"sessionID":"ses_1","status":{"type":"busy"}}}"#;
    const IDLE: &str = r#"{"type":"session.idle","properties":{"sessionID":"ses_1"}}"#;

    fn delta(message: &str, part: &str, text: &str) -> String {
        format!(
            r#"{{"type":"message.part.delta","properties":{{"sessionID":"ses_1","messageID":"{message}","partID":"{part}","field":"text","delta":"{text}"}}}}"#
        )
    }

    fn assistant(message: &str) -> String {
        format!(
            r#"{{"type":"message.updated","properties":{{"sessionID":"ses_1","info":{{"id":"{message}","sessionID":"ses_1","role":"assistant","time":{{"created":1}}}}}}}}"#
        )
    }

    /// Follows a recorded stream: the session is the first one a user message names.
    fn replay(recording: &str) -> (Transcript, TurnFollower, Vec<Output>) {
        use crate::opencode::events::tests::events_of;
        let events = events_of(vec![recording.as_bytes().to_vec()]);
        let session = events
            .iter()
            .find_map(|e| match e {
                crate::opencode::events::Event::MessageUpdated(info) => {
                    Some(info.session_id.clone())
                }
                _ => None,
            })
            .expect("a message");
        let mut t = Transcript::new(&session);
        let mut f = TurnFollower::new(&t);
        let mut out = Vec::new();
        for event in &events {
            let change = t.apply(event);
            out.extend(f.on_change(&t, &change));
        }
        (t, f, out)
    }

    fn answer(out: &[Output]) -> String {
        out.iter()
            .filter_map(|o| match o {
                Output::Answer(text) => Some(text.as_str()),
                Output::Progress(_) => None,
            })
            .collect()
    }

    #[test]
    fn recorded_turns_end_as_the_server_says() {
        use crate::opencode::events::tests::{ABORT, ERROR_TURN, TEXT_TURN, TOOL_PERMISSION};
        let (t, f, out) = replay(TEXT_TURN);
        assert_eq!(answer(&out), "Hello from the stub model\n");
        assert_eq!(f.outcome(), Some(&Outcome::Answered));
        assert!(!t.busy);
        assert_eq!(t.model().as_deref(), Some("stub/stub-model"));

        let (t, f, out) = replay(ERROR_TURN);
        assert_eq!(answer(&out), "");
        assert!(
            matches!(f.outcome(), Some(Outcome::Failed(e)) if e.message().contains("stub model error 400")),
            "{:?}",
            f.outcome()
        );
        assert!(t.error.is_some());

        let (_, f, out) = replay(TOOL_PERMISSION);
        assert_eq!(answer(&out), "The command said hi\n");
        let progress: Vec<&Output> = out
            .iter()
            .filter(|o| matches!(o, Output::Progress(_)))
            .collect();
        assert!(
            progress.iter().any(|o| matches!(o, Output::Progress(p) if p.starts_with("[tool] bash") && p.ends_with("done\n"))),
            "{progress:?}"
        );
        assert_eq!(f.outcome(), Some(&Outcome::Answered));

        let (_, f, out) = replay(ABORT);
        assert!(answer(&out).starts_with("one two"), "{out:?}");
        assert_eq!(f.outcome(), Some(&Outcome::Aborted));
    }

    #[test]
    fn the_answer_streams_to_stdout_and_tools_to_stderr() {
        let mut t = Transcript::new("ses_1");
        let mut f = TurnFollower::new(&t);
        let tool = r#"{"type":"message.part.updated","properties":{"sessionID":"ses_1","time":1,"part":{"id":"prt_1","sessionID":"ses_1","messageID":"msg_2","type":"tool","tool":"bash","state":{"status":"running","input":{},"title":"ls"}}}}"#;
        let tool_done = tool.replace("running", "completed");
        let mut out = Vec::new();
        for line in [
            BUSY.to_string(),
            assistant("msg_2"),
            tool.to_string(),
            tool_done,
            assistant("msg_3"),
            delta("msg_3", "prt_2", "two "),
            delta("msg_3", "prt_2", "files"),
            IDLE.to_string(),
        ] {
            out.extend(apply(&mut t, &mut f, &line));
        }
        assert_eq!(
            out,
            [
                Output::Progress("[tool] bash: ls ...\n".into()),
                Output::Progress("[tool] bash: ls done\n".into()),
                Output::Answer("two ".into()),
                Output::Answer("files".into()),
                Output::Answer("\n".into()),
            ]
        );
        assert_eq!(f.outcome(), Some(&Outcome::Answered));
    }

    #[test]
    fn messages_from_before_the_prompt_are_not_printed_again() {
        let mut t = Transcript::new("ses_1");
        t.apply(&parse(&assistant("msg_1")).expect("event"));
        t.apply(&parse(&delta("msg_1", "prt_1", "old answer")).expect("event"));
        let mut f = TurnFollower::new(&t);
        let out: Vec<Output> = [
            BUSY.to_string(),
            assistant("msg_2"),
            delta("msg_2", "prt_2", "new"),
            IDLE.to_string(),
        ]
        .iter()
        .flat_map(|l| apply(&mut t, &mut f, l))
        .collect();
        assert_eq!(
            out,
            [Output::Answer("new".into()), Output::Answer("\n".into())]
        );
    }

    #[test]
    fn a_failed_turn_ends_with_the_models_message() {
        let mut t = Transcript::new("ses_1");
        let mut f = TurnFollower::new(&t);
        apply(&mut t, &mut f, BUSY);
        apply(
            &mut t,
            &mut f,
            r#"{"type":"session.error","properties":{"sessionID":"ses_1","error":{"name":"APIError","data":{"message":"rate limited"}}}}"#,
        );
        assert!(matches!(f.outcome(), Some(Outcome::Failed(e)) if e.message() == "rate limited"));
    }

    #[test]
    fn a_resync_prints_what_was_missed_once_and_sees_the_end() {
        let mut t = Transcript::new("ses_1");
        let mut f = TurnFollower::new(&t);
        apply(&mut t, &mut f, BUSY);
        apply(&mut t, &mut f, &assistant("msg_2"));
        apply(&mut t, &mut f, &delta("msg_2", "prt_1", "Hello"));
        let messages = serde_json::from_str(
            r#"[{"info":{"id":"msg_2","sessionID":"ses_1","role":"assistant","time":{"created":1,"completed":2}},
                 "parts":[{"id":"prt_1","type":"text","text":"Hello world"}]}]"#,
        )
        .expect("messages");
        t.resync(messages);
        assert_eq!(
            f.on_resync(&t),
            [Output::Answer(" world".into()), Output::Answer("\n".into())]
        );
        assert_eq!(f.outcome(), Some(&Outcome::Answered));
    }
}
