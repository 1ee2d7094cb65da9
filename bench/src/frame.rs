//! The chat terminal's frame time with a 10,000-line transcript, drawn by the real view into
//! ratatui's test backend while an answer streams in (the last message grows every frame).

use std::time::Instant;

use anyhow::Context as _;
use kubeoc::opencode::transcript::Transcript;
use kubeoc::opencode::types::Message;
use kubeoc::tui::state::App;
use kubeoc::tui::view::{ViewCache, draw};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;

use crate::report::{Goal, Row, median};

const LINES: usize = 10_000;
const LINES_A_MESSAGE: usize = 4;

fn transcript() -> anyhow::Result<Transcript> {
    let messages: Vec<Message> = (0..LINES / LINES_A_MESSAGE)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            let text = (0..LINES_A_MESSAGE)
                .map(|l| {
                    format!("message {i} line {l}: the build passes once the toolchain is pinned")
                })
                .collect::<Vec<_>>()
                .join("\n");
            serde_json::from_value(json!({
                "info": {"id": format!("msg_{i:05}"), "sessionID": "ses_bench", "role": role,
                         "time": {"created": i, "completed": i + 1}},
                "parts": [{"id": format!("prt_{i:05}"), "type": "text", "text": text}],
            }))
        })
        .collect::<Result<_, _>>()
        .context("building the transcript")?;
    Ok(Transcript::from_messages("ses_bench", messages))
}

/// Median frame time over `frames` frames of a 120x40 terminal.
pub fn run(frames: usize) -> anyhow::Result<Row> {
    let mut app = App::new("team-agent", "bench", "bench", "1.18.33");
    app.transcript = Some(transcript()?);
    let cache = ViewCache::default();
    let mut terminal = Terminal::new(TestBackend::new(120, 40))?;
    let first = Instant::now();
    terminal.draw(|f| draw(f, &app, &cache))?;
    let first = first.elapsed();
    let mut times = Vec::with_capacity(frames);
    for i in 0..frames {
        if let Some(part) = app
            .transcript
            .as_mut()
            .and_then(|t| t.messages.last_mut())
            .and_then(|m| m.parts.last_mut())
        {
            part.text
                .push_str(if i % 12 == 11 { "\n" } else { " word" });
        }
        let started = Instant::now();
        terminal.draw(|f| draw(f, &app, &cache))?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let worst = sorted.last().copied().unwrap_or(f64::NAN);
    Ok(Row::new(
        "TUI frame",
        LINES,
        "ms",
        Goal::Below(5.0),
        median(times),
        format!(
            "120x40, the last answer growing each frame: median of {frames} frames, slowest {worst:.2} ms, first frame (nothing cached) {:.1} ms",
            first.as_secs_f64() * 1e3
        ),
    ))
}
