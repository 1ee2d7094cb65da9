//! kubectl describe's layout, shared by every noun's `describe`: aligned columns, titled
//! sections, the Events table.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;

use super::output::human_age;

pub fn event_time(event: &Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or_else(|| event.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Aligned columns, as kubectl's describe tabwriter prints them (two spaces between columns,
/// the last column unpadded).
pub fn align(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        out.push_str(indent);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    }
    out
}

/// One line of a cell: kubectl cuts multi-line values in tables.
pub fn one_line(text: &str) -> String {
    match text.split_once(['\n', '\r']) {
        Some((first, _)) => format!("{first}..."),
        None => text.to_owned(),
    }
}

pub fn or_none(value: Option<&str>) -> String {
    value
        .filter(|v| !v.is_empty())
        .unwrap_or("<none>")
        .to_owned()
}

/// A titled table of describe: the title with `<none>` in the value column when there are no
/// rows, else the title alone on its line and the table indented below it.
pub fn section(out: &mut String, title: &str, header: &[&str], rows: Vec<Vec<String>>) {
    if rows.is_empty() {
        let title = format!("{title}:");
        let _ = writeln!(out, "{title:<18}<none>");
        return;
    }
    let _ = writeln!(out, "{title}:");
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    table.extend(rows);
    out.push_str(&align(&table, "  "));
}

/// One row of the Events table; a repeated event shows its count and how long it has repeated.
pub fn event_row(e: &Event, now: Timestamp) -> Vec<String> {
    let count = e
        .series
        .as_ref()
        .and_then(|s| s.count)
        .or(e.count)
        .unwrap_or(1);
    let last = event_time(e);
    let first = e
        .first_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or(last);
    let age = match (last, first) {
        (Some(last), Some(first)) if count > 1 => format!(
            "{} (x{count} over {})",
            human_age(last, now),
            human_age(first, now)
        ),
        (Some(last), _) => human_age(last, now),
        _ => "<unknown>".into(),
    };
    let from = e
        .reporting_component
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| e.source.as_ref().and_then(|s| s.component.clone()))
        .unwrap_or_default();
    vec![
        e.type_.clone().unwrap_or_default(),
        e.reason.clone().unwrap_or_default(),
        age,
        from,
        one_line(e.message.as_deref().unwrap_or_default()),
    ]
}
