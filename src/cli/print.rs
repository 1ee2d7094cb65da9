//! Writing results: stdout that tolerates a closed pipe, one object per document, and
//! kubectl's way of ending a command on several objects.

use std::io::Write as _;

use serde_json::Value;

use super::output::{OutputFormat, Printer};

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    write_stdout_bytes(text.as_bytes()).map(|_open| ())
}

/// Writes to stdout and flushes; `false` when the reader closed the pipe (`| head`), which is
/// not an error.
pub fn write_stdout_bytes(bytes: &[u8]) -> anyhow::Result<bool> {
    use anyhow::Context as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        other => other.context("writing to stdout").map(|()| true),
    }
}

/// One object as `printer` renders it; YAML starts with a `---` line so that objects printed
/// one after another form a stream of documents.
pub fn render_one(
    printer: &Printer,
    object: &Value,
    format: &OutputFormat,
) -> anyhow::Result<String> {
    let mut text = printer.render_objects(std::slice::from_ref(object))?.stdout;
    if *format == OutputFormat::Yaml {
        text.insert_str(0, "---\n");
    }
    Ok(text)
}

/// `metadata.name` of an object, `""` without one.
pub fn object_name(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Ends a command that works on several objects like kubectl: every object was tried; each
/// failure is reported, the last one fails the command.
pub fn report_failures(mut failures: Vec<anyhow::Error>) -> anyhow::Result<()> {
    let last = failures.pop();
    for err in failures {
        eprintln!("Error: {}", crate::error::render(&err));
    }
    last.map_or(Ok(()), Err)
}
