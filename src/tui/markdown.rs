//! Markdown of the agent's answers as styled lines (tui-markdown: pulldown-cmark, with syntect
//! colouring code blocks), cached per part so a long transcript is not parsed again on every
//! frame; only the part that is streaming is rendered anew.

use std::cell::RefCell;
use std::collections::HashMap;

use ratatui::text::{Line, Span};

/// Rendered parts by part ID, with the length of the text they were rendered from.
#[derive(Default)]
pub struct MarkdownCache {
    parts: RefCell<HashMap<String, (usize, Vec<Line<'static>>)>>,
}

/// Turns a borrowed line into an owned one.
fn owned(line: Line<'_>) -> Line<'static> {
    Line {
        style: line.style,
        alignment: line.alignment,
        spans: line
            .spans
            .into_iter()
            .map(|s| Span::styled(s.content.into_owned(), s.style))
            .collect(),
    }
}

/// Renders Markdown `text` into lines.
pub fn render(text: &str) -> Vec<Line<'static>> {
    tui_markdown::from_str(text)
        .lines
        .into_iter()
        .map(owned)
        .collect()
}

impl MarkdownCache {
    /// The lines of part `id` with `text`, rendered once per text length.
    pub fn lines(&self, id: &str, text: &str) -> Vec<Line<'static>> {
        let mut parts = self.parts.borrow_mut();
        if let Some((len, lines)) = parts.get(id)
            && *len == text.len()
        {
            return lines.clone();
        }
        let lines = render(text);
        parts.insert(id.to_string(), (text.len(), lines.clone()));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(lines: &[Line<'_>]) -> Vec<String> {
        lines
            .iter()
            .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect()
    }

    #[test]
    fn headings_lists_and_code_blocks_render_with_styles() {
        let lines = render("# Plan\n\n- one\n- two\n\n```rust\nfn main() {}\n```\n");
        let text = plain(&lines);
        assert!(text.iter().any(|l| l.contains("Plan")), "{text:?}");
        assert!(text.iter().any(|l| l.contains("one")), "{text:?}");
        assert!(text.iter().any(|l| l.contains("fn main() {}")), "{text:?}");
        let code = lines
            .iter()
            .find(|l| l.spans.iter().any(|s| s.content.contains("fn")))
            .expect("code line");
        assert!(
            code.spans.iter().any(|s| s.style.fg.is_some()),
            "code is coloured: {code:?}"
        );
    }

    #[test]
    fn the_cache_renders_again_only_when_the_text_grew() {
        let cache = MarkdownCache::default();
        let first = cache.lines("prt_1", "Hello");
        assert_eq!(cache.lines("prt_1", "Hello"), first);
        assert_ne!(
            plain(&cache.lines("prt_1", "Hello **world**")),
            plain(&first)
        );
    }
}
