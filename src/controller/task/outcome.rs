//! A finished Task's outcome from its session on the server (pure): `opencode run --attach`
//! exits 0 when the model fails and prints nothing when it succeeds, so its exit code and log
//! say nothing. The last assistant message does.

use crate::api::task::{SessionSummary, TokenUsage};
use crate::opencode::types::Message;

/// Longest `status.result`: the first 4 KiB of the answer.
pub const MAX_RESULT_BYTES: usize = 4096;

/// What the session says of its turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The model answered: `result` is the answer's first 4 KiB.
    Answered { result: String },
    /// The turn failed with the model's (or OpenCode's) message.
    Failed { message: String },
    /// Somebody aborted the turn on the server.
    Aborted,
    /// No assistant message, or one that has not completed.
    Unfinished,
}

/// The outcome of the session's last turn.
pub fn judge(messages: &[Message]) -> Outcome {
    let Some(last) = messages.iter().rev().find(|m| m.info.is_assistant()) else {
        return Outcome::Unfinished;
    };
    if let Some(error) = &last.info.error {
        return if error.is_abort() {
            Outcome::Aborted
        } else {
            Outcome::Failed {
                message: error.message(),
            }
        };
    }
    if last.info.time.completed.is_none() {
        return Outcome::Unfinished;
    }
    Outcome::Answered {
        result: truncate(last.text().trim(), MAX_RESULT_BYTES),
    }
}

/// The session's statistics: messages, tokens over the assistant messages, cost.
pub fn summary(messages: &[Message]) -> SessionSummary {
    let assistants = || messages.iter().filter(|m| m.info.is_assistant());
    // Token counts are whole numbers sent as JSON numbers.
    let total = |f: fn(&Message) -> f64| assistants().map(f).sum::<f64>().round() as i64;
    let cost: f64 = assistants().map(|m| m.info.cost).sum();
    SessionSummary {
        message_count: i32::try_from(messages.len()).ok(),
        cost: Some(decimal(cost)),
        token_usage: Some(TokenUsage {
            input: Some(total(|m| m.info.tokens.input)),
            output: Some(total(|m| m.info.tokens.output)),
            reasoning: Some(total(|m| m.info.tokens.reasoning)),
            cache: Some(total(|m| {
                m.info.tokens.cache.read + m.info.tokens.cache.write
            })),
        }),
        ..Default::default()
    }
}

/// A cost in dollars without float noise: at most 6 decimals, trailing zeros dropped.
fn decimal(value: f64) -> String {
    let text = format!("{value:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// The first `max` bytes of `text`, cut at a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(value: serde_json::Value) -> Message {
        serde_json::from_value(value).expect("a message")
    }

    fn user() -> Message {
        message(
            json!({"info": {"id": "m1", "role": "user"}, "parts": [{"type": "text", "text": "fix it"}]}),
        )
    }

    fn answer(text: &str) -> Message {
        message(json!({
            "info": {"id": "m2", "role": "assistant", "time": {"created": 1.0, "completed": 2.0},
                     "cost": 0.1 + 0.2, "tokens": {"input": 120, "output": 7, "reasoning": 0,
                     "cache": {"read": 3, "write": 1}}},
            "parts": [{"type": "step-start"}, {"type": "text", "text": text},
                      {"type": "tool", "tool": "bash", "state": {"status": "completed"}}]
        }))
    }

    #[test]
    fn the_last_assistant_message_is_the_answer() {
        let messages = vec![user(), answer("  Fixed the test.\n")];
        assert_eq!(
            judge(&messages),
            Outcome::Answered {
                result: "Fixed the test.".into()
            }
        );
        let summary = summary(&messages);
        assert_eq!(summary.message_count, Some(2));
        assert_eq!(summary.cost.as_deref(), Some("0.3"));
        let tokens = summary.token_usage.expect("tokens");
        assert_eq!(
            (tokens.input, tokens.output, tokens.cache),
            (Some(120), Some(7), Some(4))
        );
    }

    #[test]
    fn a_model_error_fails_and_an_abort_is_told_apart() {
        let failed = message(
            json!({"info": {"role": "assistant", "error": {"name": "APIError",
            "data": {"message": "stub model error 400", "statusCode": 400}}}, "parts": []}),
        );
        assert_eq!(
            judge(&[user(), failed]),
            Outcome::Failed {
                message: "stub model error 400".into()
            }
        );
        let aborted = message(
            json!({"info": {"role": "assistant", "error": {"name": "MessageAbortedError",
            "data": {"message": "The operation was aborted."}}}, "parts": []}),
        );
        assert_eq!(judge(&[user(), aborted]), Outcome::Aborted);
        assert_eq!(judge(&[user()]), Outcome::Unfinished);
        let streaming =
            message(json!({"info": {"role": "assistant", "time": {"created": 1.0}}, "parts": []}));
        assert_eq!(judge(&[user(), streaming]), Outcome::Unfinished);
    }

    #[test]
    fn long_answers_are_cut_at_4_kib_on_a_character_boundary() {
        let long = "é".repeat(3000);
        let Outcome::Answered { result } = judge(&[answer(&long)]) else {
            panic!("answered");
        };
        assert!(result.len() <= MAX_RESULT_BYTES && result.len() >= MAX_RESULT_BYTES - 1);
        assert!(long.starts_with(&result));
        assert_eq!(decimal(0.0), "0");
        assert_eq!(decimal(1.25), "1.25");
    }
}
