//! Drawing the chat terminal from an [`App`]: the transcript, the permission prompt, the prompt
//! box and the status bar, with the help and session list over them. Pure apart from caches
//! of rendered messages: only messages that changed are laid out again, and only the ones in
//! view are drawn, so a long transcript costs what the screen shows.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize as _};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, BorderType, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap,
};

use super::markdown::MarkdownCache;
use super::state::{App, Connection, Overlay};
use crate::opencode::types::{Message, PartKind, ToolStatus};

/// Tool output lines shown when a tool call is expanded.
const TOOL_OUTPUT_LINES: usize = 12;

/// A message laid out for one width.
struct Laid {
    signature: u64,
    width: u16,
    text: Text<'static>,
    height: usize,
}

/// What the view keeps between frames.
#[derive(Default)]
pub struct ViewCache {
    markdown: MarkdownCache,
    messages: RefCell<HashMap<String, Laid>>,
    /// The furthest the transcript could scroll up in the last frame.
    pub max_scroll: Cell<usize>,
}

/// What a message's drawing depends on, cheaply: text lengths, tool states, errors, expansion.
fn signature(message: &Message, expanded: bool) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    expanded.hash(&mut h);
    message.info.time.completed.is_some().hash(&mut h);
    message
        .info
        .error
        .as_ref()
        .map(|e| e.name.as_str())
        .hash(&mut h);
    for part in &message.parts {
        part.id.hash(&mut h);
        part.text.len().hash(&mut h);
        if let Some(state) = &part.state {
            (state.status as u8).hash(&mut h);
            state.output.len().hash(&mut h);
            state.title.hash(&mut h);
        }
    }
    h.finish()
}

fn tool_line(tool: &str, title: &str, status: ToolStatus) -> Line<'static> {
    let (mark, style) = match status {
        ToolStatus::Pending | ToolStatus::Running => ("⏺", Style::new().fg(Color::Yellow)),
        ToolStatus::Completed => ("✓", Style::new().fg(Color::Green)),
        ToolStatus::Error => ("✗", Style::new().fg(Color::Red)),
    };
    let state = match status {
        ToolStatus::Pending => " waiting",
        ToolStatus::Running => " running…",
        ToolStatus::Completed | ToolStatus::Error => "",
    };
    Line::from(vec![
        Span::styled(format!("  {mark} "), style),
        Span::styled(tool.to_string(), Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(if title.is_empty() {
            String::new()
        } else {
            format!(" {title}")
        }),
        Span::styled(state.to_string(), Style::new().add_modifier(Modifier::DIM)),
    ])
}

/// The lines of one message.
fn message_text(cache: &MarkdownCache, message: &Message, expanded: bool) -> Text<'static> {
    let mut lines: Vec<Line<'static>> = Vec::new();
    if message.info.is_assistant() {
        for part in &message.parts {
            match part.kind {
                PartKind::Text if !part.text.is_empty() => {
                    lines.extend(cache.lines(&part.id, &part.text))
                }
                PartKind::Reasoning if !part.text.is_empty() => {
                    let dim = Style::new().add_modifier(Modifier::DIM | Modifier::ITALIC);
                    lines.extend(
                        part.text
                            .lines()
                            .map(|l| Line::styled(format!("  {l}"), dim)),
                    );
                }
                PartKind::Tool => {
                    let Some(state) = &part.state else { continue };
                    let title = if state.title.is_empty() {
                        ["description", "command", "filePath", "pattern", "url"]
                            .iter()
                            .find_map(|k| state.input[k].as_str())
                            .unwrap_or_default()
                    } else {
                        state.title.as_str()
                    };
                    lines.push(tool_line(&part.tool, title, state.status));
                    if state.status == ToolStatus::Error && !state.error.is_empty() {
                        lines.push(Line::styled(
                            format!("    {}", state.error),
                            Style::new().fg(Color::Red),
                        ));
                    }
                    if expanded && !state.output.is_empty() {
                        let dim = Style::new().add_modifier(Modifier::DIM);
                        let output: Vec<&str> = state.output.lines().collect();
                        for line in output.iter().take(TOOL_OUTPUT_LINES) {
                            lines.push(Line::styled(format!("    │ {line}"), dim));
                        }
                        if output.len() > TOOL_OUTPUT_LINES {
                            lines.push(Line::styled(
                                format!("    │ … {} more lines", output.len() - TOOL_OUTPUT_LINES),
                                dim,
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(error) = &message.info.error {
            if error.is_abort() {
                lines.push(Line::styled(
                    "  (aborted)",
                    Style::new().add_modifier(Modifier::DIM),
                ));
            } else {
                lines.push(Line::styled(
                    format!("✗ {}", error.message()),
                    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                ));
            }
        }
    } else {
        lines.push(Line::styled(
            "› you",
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        ));
        for part in message.parts.iter().filter(|p| p.kind == PartKind::Text) {
            lines.extend(part.text.lines().map(|l| Line::raw(format!("  {l}"))));
        }
    }
    lines.push(Line::raw(""));
    Text::from(lines)
}

impl ViewCache {
    /// The laid-out messages: (text, height) for each, in order.
    fn layout(&self, app: &App, width: u16) -> Vec<(String, usize)> {
        let Some(transcript) = &app.transcript else {
            return Vec::new();
        };
        let mut laid = self.messages.borrow_mut();
        transcript
            .messages
            .iter()
            .map(|message| {
                let signature = signature(message, app.expand_all);
                let id = &message.info.id;
                let fresh = laid
                    .get(id)
                    .is_some_and(|l| l.signature == signature && l.width == width);
                if !fresh {
                    let text = message_text(&self.markdown, message, app.expand_all);
                    let height = Paragraph::new(text.clone())
                        .wrap(Wrap { trim: false })
                        .line_count(width);
                    laid.insert(
                        id.clone(),
                        Laid {
                            signature,
                            width,
                            text,
                            height,
                        },
                    );
                }
                (id.clone(), laid.get(id).map_or(0, |l| l.height))
            })
            .collect()
    }

    fn draw_transcript(&self, frame: &mut Frame<'_>, app: &App, area: Rect) {
        let block = Block::new()
            .borders(Borders::TOP)
            .border_type(BorderType::Plain)
            .title(Line::from(format!(" {} ", app.session_title())).bold());
        let inner = block.inner(area);
        frame.render_widget(block, area);
        if inner.height == 0 || inner.width == 0 {
            return;
        }
        let heights = self.layout(app, inner.width);
        let mut total: usize = heights.iter().map(|(_, h)| h).sum();
        let waiting = app.busy();
        if waiting {
            total += 1;
        }
        let view = usize::from(inner.height);
        let max_scroll = total.saturating_sub(view);
        self.max_scroll.set(max_scroll);
        if total == 0 {
            let hint = Paragraph::new(Text::from(vec![
                Line::raw(""),
                Line::from(format!(
                    "  Chatting with agent {} in namespace {}.",
                    app.agent, app.namespace
                )),
                Line::styled(
                    "  Type a prompt below; ? shows the keys.",
                    Style::new().add_modifier(Modifier::DIM),
                ),
            ]));
            frame.render_widget(hint, inner);
            return;
        }
        let scroll = app.scroll.min(max_scroll);
        // The first transcript line on screen.
        let top = total.saturating_sub(view + scroll);
        let laid = self.messages.borrow();
        let mut y = 0usize; // transcript line where the current message starts
        let mut row = inner.y;
        let bottom = inner.y + inner.height;
        for (id, height) in &heights {
            let (start, end) = (y, y + height);
            y = end;
            if end <= top || row >= bottom {
                continue;
            }
            let skip = top.saturating_sub(start);
            let rows = (end - start - skip).min(usize::from(bottom - row));
            let Some(message) = laid.get(id) else {
                continue;
            };
            let area = Rect::new(
                inner.x,
                row,
                inner.width,
                u16::try_from(rows).unwrap_or(u16::MAX),
            );
            let paragraph = Paragraph::new(message.text.clone())
                .wrap(Wrap { trim: false })
                .scroll((u16::try_from(skip).unwrap_or(u16::MAX), 0));
            frame.render_widget(paragraph, area);
            row += area.height;
        }
        if waiting && row < bottom {
            let line = Line::styled(
                "  … working (Ctrl+C stops)",
                Style::new().fg(Color::Yellow).add_modifier(Modifier::DIM),
            );
            frame.render_widget(
                Paragraph::new(line),
                Rect::new(inner.x, row, inner.width, 1),
            );
        }
    }
}

fn status_bar(app: &App) -> Line<'static> {
    let dim = Style::new().add_modifier(Modifier::DIM);
    let sep = || Span::styled(" · ", dim);
    let transcript = app.transcript.as_ref();
    let model = transcript
        .and_then(|t| t.model())
        .unwrap_or_else(|| "default model".to_string());
    let (state, state_style) = if app.busy() {
        (
            "busy",
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        )
    } else {
        ("idle", Style::new().fg(Color::Green))
    };
    let usage = transcript.map(|t| t.usage()).unwrap_or_default();
    let connection = match &app.connection {
        Connection::Connecting => {
            Span::styled("connecting…".to_string(), Style::new().fg(Color::Yellow))
        }
        Connection::Connected => {
            Span::styled("connected".to_string(), Style::new().fg(Color::Green))
        }
        Connection::Reconnecting { retry_in, .. } => Span::styled(
            format!(
                "reconnecting (next try in {:.0}s)",
                retry_in.as_secs_f64().ceil()
            ),
            Style::new()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        ),
    };
    // Most important first: a narrow terminal cuts the end.
    Line::from(vec![
        Span::styled(
            format!(" {}", app.agent),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(" ({})", app.namespace)),
        sep(),
        Span::styled(state.to_string(), state_style),
        sep(),
        connection,
        sep(),
        Span::raw(model),
        sep(),
        Span::raw(format!(
            "{} in / {} out · ${:.4}",
            tokens(usage.input),
            tokens(usage.output),
            usage.cost
        )),
        sep(),
        Span::raw(app.session_id().unwrap_or("new session").to_string()),
    ])
}

/// `1234` as `1.2k`.
fn tokens(n: f64) -> String {
    if n >= 1000.0 {
        format!("{:.1}k", n / 1000.0)
    } else {
        format!("{n:.0}")
    }
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    )
}

/// The keys, as `?` shows them.
pub const KEYS: [(&str, &str); 12] = [
    ("Enter", "send the prompt"),
    ("Alt+Enter", "new line in the prompt"),
    ("Up / Down", "earlier prompts"),
    ("Ctrl+C", "stop the answer; quit when idle"),
    ("Ctrl+N", "new session"),
    ("Ctrl+S", "switch session"),
    ("Ctrl+O", "show or hide tool output"),
    ("PgUp / PgDn", "scroll (also the mouse wheel)"),
    ("y / a / n", "allow once / always / reject a tool call"),
    ("Esc", "close this window or the session list"),
    ("?", "this help (in an empty prompt)"),
    ("", "sessions stay on the Agent after you quit"),
];

fn draw_help(frame: &mut Frame<'_>, area: Rect) {
    let lines: Vec<Line<'static>> = KEYS
        .iter()
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(
                    format!(" {key:<12}"),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(what.to_string()),
            ])
        })
        .collect();
    let height = u16::try_from(lines.len()).unwrap_or(20) + 2;
    let area = centered(area, 64, height);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys (any key closes) ")),
        area,
    );
}

fn draw_sessions(frame: &mut Frame<'_>, app: &App, area: Rect, selected: usize) {
    let now = k8s_openapi::jiff::Timestamp::now();
    let items: Vec<ListItem<'static>> = app
        .sessions
        .iter()
        .map(|s| {
            let age = k8s_openapi::jiff::Timestamp::from_millisecond(s.time.updated)
                .map(|t| crate::cli::output::human_age(t, now))
                .unwrap_or_default();
            let open = if Some(s.id.as_str()) == app.session_id() {
                "●"
            } else {
                " "
            };
            let title = if s.title.is_empty() {
                "(untitled)"
            } else {
                s.title.as_str()
            };
            ListItem::new(Line::from(vec![
                Span::raw(format!("{open} ")),
                Span::raw(title.to_string()),
                Span::styled(
                    format!("  {age}  {}", s.id),
                    Style::new().add_modifier(Modifier::DIM),
                ),
            ]))
        })
        .collect();
    let empty = items.is_empty();
    let height = u16::try_from(items.len().clamp(1, 16)).unwrap_or(16) + 2;
    let area = centered(area, area.width.saturating_sub(8).max(40), height);
    frame.render_widget(Clear, area);
    let block = Block::bordered().title(" sessions: Enter opens, Esc closes ");
    if empty {
        frame.render_widget(Paragraph::new(" no sessions yet").block(block), area);
        return;
    }
    let list = List::new(items)
        .block(block)
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(Some(selected));
    frame.render_stateful_widget(list, area, &mut state);
}

fn permission_box(app: &App) -> Option<Paragraph<'static>> {
    let request = app.permissions.first()?;
    let what = if request.patterns.is_empty() {
        String::new()
    } else {
        request.patterns.join(", ")
    };
    let always = if request.always.is_empty() {
        String::new()
    } else {
        format!(" ({})", request.always.join(", "))
    };
    let more = app.permissions.len() - 1;
    let lines = vec![
        Line::from(vec![
            Span::styled(
                format!("The agent asks to use {}: ", request.permission),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(what),
        ]),
        Line::from(vec![
            Span::styled(
                "[y]",
                Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
            ),
            Span::raw(" allow once   "),
            Span::styled(
                "[a]",
                Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(" always{always}   ")),
            Span::styled(
                "[n]",
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
            Span::raw(" reject"),
            Span::styled(
                if more > 0 {
                    format!("   ({more} more waiting)")
                } else {
                    String::new()
                },
                Style::new().add_modifier(Modifier::DIM),
            ),
        ]),
    ];
    Some(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::bordered()
                .border_style(Style::new().fg(Color::Yellow))
                .title(" permission "),
        ),
    )
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &App, cache: &ViewCache) {
    let area = frame.area();
    let input_lines = u16::try_from(app.input.lines().len())
        .unwrap_or(1)
        .clamp(1, 6);
    let permission = permission_box(app);
    let notice_height = u16::from(app.notice.is_some());
    let permission_height = if permission.is_some() { 4 } else { 0 };
    let [transcript, notice, permission_area, input, status] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(notice_height),
        Constraint::Length(permission_height),
        Constraint::Length(input_lines + 2),
        Constraint::Length(1),
    ])
    .areas(area);
    cache.draw_transcript(frame, app, transcript);
    if let Some(n) = &app.notice {
        let style = if n.error {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        };
        frame.render_widget(
            Paragraph::new(Line::styled(format!(" {}", n.text), style)),
            notice,
        );
    }
    if let Some(permission) = permission {
        frame.render_widget(permission, permission_area);
    }
    let title = if app.busy() {
        " prompt (the agent is answering; Ctrl+C stops it) "
    } else {
        " prompt "
    };
    let mut input_box = app.input.clone();
    input_box.set_block(
        Block::bordered()
            .border_type(BorderType::Rounded)
            .title(title),
    );
    frame.render_widget(&input_box, input);
    frame.render_widget(
        Paragraph::new(status_bar(app)).style(Style::new().bg(Color::DarkGray)),
        status,
    );
    match app.overlay {
        Overlay::None => {}
        Overlay::Help => draw_help(frame, area),
        Overlay::Sessions { selected } => draw_sessions(frame, app, area, selected),
    }
    if app.no_color {
        for cell in &mut frame.buffer_mut().content {
            cell.fg = Color::Reset;
            cell.bg = Color::Reset;
        }
    }
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::opencode::events::tests::{TOOL_PERMISSION, events_of};
    use crate::opencode::feed::Feed;
    use crate::opencode::transcript::Transcript;
    use crate::tui::update::on_feed;

    fn app() -> App {
        let mut app = App::new("team-agent", "team", "alice", "1.18.33");
        app.connection = Connection::Connected;
        app
    }

    fn screen(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
        let cache = ViewCache::default();
        terminal.draw(|f| draw(f, app, &cache)).expect("draw");
        terminal.backend().to_string()
    }

    fn with_messages(json: &str) -> App {
        let mut app = app();
        let messages = serde_json::from_str(json).expect("messages");
        app.transcript = Some(Transcript::from_messages("ses_1", messages));
        app
    }

    const USER: &str = r#"{"info":{"id":"msg_1","sessionID":"ses_1","role":"user"},"parts":[{"id":"prt_1","type":"text","text":"fix the build"}]}"#;

    #[test]
    fn an_empty_session() {
        insta::assert_snapshot!(screen(&app(), 80, 16));
    }

    #[test]
    fn a_streaming_answer() {
        let mut app = with_messages(&format!(
            r#"[{USER},{{"info":{{"id":"msg_2","sessionID":"ses_1","role":"assistant","modelID":"stub-model","providerID":"stub","time":{{"created":1}}}},
              "parts":[{{"id":"prt_2","type":"text","text":"Looking at the **build** now"}}]}}]"#
        ));
        if let Some(t) = app.transcript.as_mut() {
            t.busy = true;
        }
        insta::assert_snapshot!(screen(&app, 80, 16));
    }

    #[test]
    fn a_code_block_and_a_list() {
        let app = with_messages(&format!(
            r#"[{USER},{{"info":{{"id":"msg_2","sessionID":"ses_1","role":"assistant","time":{{"created":1,"completed":2}},"tokens":{{"input":1200,"output":80}},"cost":0.0123}},
              "parts":[{{"id":"prt_2","type":"text","text":"Two fixes:\n\n- pin the toolchain\n- add the flag\n\n```rust\nfn main() {{ println!(\"ok\"); }}\n```\n"}}]}}]"#
        ));
        insta::assert_snapshot!(screen(&app, 80, 20));
    }

    #[test]
    fn a_tool_call_collapsed_and_expanded() {
        let mut app = with_messages(&format!(
            r#"[{USER},{{"info":{{"id":"msg_2","sessionID":"ses_1","role":"assistant","time":{{"created":1,"completed":2}}}},
              "parts":[{{"id":"prt_2","type":"tool","tool":"bash","state":{{"status":"completed","title":"ls build","output":"a.o\nb.o\nmain"}}}},
                       {{"id":"prt_3","type":"tool","tool":"read","state":{{"status":"error","title":"Cargo.toml","error":"no such file"}}}}]}}]"#
        ));
        let collapsed = screen(&app, 80, 16);
        app.expand_all = true;
        let expanded = screen(&app, 80, 16);
        assert!(!collapsed.contains("a.o") && expanded.contains("a.o"));
        insta::assert_snapshot!("tool_collapsed", collapsed);
        insta::assert_snapshot!("tool_expanded", expanded);
    }

    #[test]
    fn a_failed_turn_in_red() {
        let app = with_messages(&format!(
            r#"[{USER},{{"info":{{"id":"msg_2","sessionID":"ses_1","role":"assistant","time":{{"created":1}},"error":{{"name":"APIError","data":{{"message":"quota exceeded"}}}}}},"parts":[]}}]"#
        ));
        let mut terminal = Terminal::new(TestBackend::new(60, 12)).expect("terminal");
        let cache = ViewCache::default();
        terminal.draw(|f| draw(f, &app, &cache)).expect("draw");
        let buffer = terminal.backend().buffer();
        let red = buffer
            .content
            .iter()
            .any(|c| c.symbol() == "q" && c.fg == Color::Red);
        assert!(red, "the error is red");
        insta::assert_snapshot!(terminal.backend().to_string());
    }

    #[test]
    fn a_permission_prompt_from_a_recorded_stream() {
        let mut app = app();
        let events = events_of(vec![TOOL_PERMISSION.as_bytes().to_vec()]);
        let asked = events
            .iter()
            .position(|e| matches!(e, crate::opencode::events::Event::PermissionAsked(_)))
            .expect("a permission request");
        let session = events[asked].session_id().expect("session").to_string();
        app.transcript = Some(Transcript::new(&session));
        for event in events.into_iter().take(asked + 1) {
            on_feed(&mut app, Feed::Event(event));
        }
        let text = screen(&app, 80, 18);
        assert!(
            text.contains("The agent asks to use bash: echo hi"),
            "{text}"
        );
        assert!(text.contains("[a] always (echo *)"), "{text}");
        // The session ID is random per recording: keep it out of the snapshot.
        insta::assert_snapshot!(text.replace(&session, "ses_recorded"));
    }

    #[test]
    fn a_small_terminal_and_the_help() {
        let mut app = with_messages(&format!("[{USER}]"));
        app.overlay = Overlay::Help;
        insta::assert_snapshot!(screen(&app, 60, 20));
    }

    #[test]
    fn no_color_leaves_no_colour() {
        let mut app = with_messages(&format!(
            r#"[{USER},{{"info":{{"id":"msg_2","sessionID":"ses_1","role":"assistant","time":{{"created":1}},"error":{{"name":"APIError","data":{{"message":"quota exceeded"}}}}}},"parts":[]}}]"#
        ));
        app.no_color = true;
        let mut terminal = Terminal::new(TestBackend::new(60, 12)).expect("terminal");
        let cache = ViewCache::default();
        terminal.draw(|f| draw(f, &app, &cache)).expect("draw");
        assert!(
            terminal
                .backend()
                .buffer()
                .content
                .iter()
                .all(|c| c.fg == Color::Reset && c.bg == Color::Reset),
            "NO_COLOR"
        );
    }

    #[test]
    fn only_what_is_in_view_is_drawn_of_a_long_transcript() {
        let parts: Vec<String> = (0..2000)
            .map(|i| format!(r#"{{"info":{{"id":"msg_{i:05}","sessionID":"ses_1","role":"assistant","time":{{"created":1,"completed":2}}}},"parts":[{{"id":"prt_{i:05}","type":"text","text":"line {i} a\nline {i} b\nline {i} c\nline {i} d"}}]}}"#))
            .collect();
        let mut app = with_messages(&format!("[{}]", parts.join(",")));
        let bottom = screen(&app, 80, 24);
        assert!(bottom.contains("line 1999 d"), "{bottom}");
        app.scroll = usize::MAX;
        let top = screen(&app, 80, 24);
        assert!(top.contains("line 0 a"), "{top}");
    }
}
