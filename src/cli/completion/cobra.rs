//! kubectl's plugin completion (kubectl >= 1.26): for `kubectl kubeoc <words><TAB>` kubectl
//! runs the executable `kubectl_complete-kubeoc` on PATH with the words after `kubeoc`, the
//! last one being the word under the cursor (possibly empty), and reads cobra's answer: one
//! candidate a line, `value<TAB>description`, then `:<directive>`.

use std::ffi::OsString;
use std::io::Write;

use clap_complete::engine::CompletionCandidate;

use super::values;

/// The name kubectl looks for on PATH.
pub const EXECUTABLE: &str = "kubectl_complete-kubeoc";

/// cobra's ShellCompDirectiveNoFileComp: offer only our candidates, never file names. Path
/// arguments (`-f FILE`) get file candidates from clap's own path completer.
const NO_FILE_COMPLETION: u32 = 4;

/// Writes cobra's answer for `words` (after `kubeoc`; the last is being completed).
pub fn complete(words: Vec<OsString>, out: &mut dyn Write) -> std::io::Result<()> {
    let mut args: Vec<OsString> = Vec::with_capacity(words.len() + 1);
    args.push("kubectl-kubeoc".into());
    args.extend(words);
    if args.len() == 1 {
        args.push(OsString::new());
    }
    let index = args.len() - 1;
    let current = args[index].to_string_lossy().into_owned();
    values::set_scope(&args[..index]);
    let current_dir = std::env::current_dir().ok();
    let candidates = clap_complete::engine::complete(
        &mut values::command(),
        args,
        index,
        current_dir.as_deref(),
    )
    .unwrap_or_default();
    write_answer(&prefer_names(candidates, &current), out)
}

/// Flags are offered once a `-` is typed, as kubectl does. clap offers one spelling per
/// subcommand, the first in sort order, so `agent` would show as its alias `ag`: the name
/// itself is shown wherever it matches what was typed.
fn prefer_names(candidates: Vec<CompletionCandidate>, current: &str) -> Vec<CompletionCandidate> {
    let flags_wanted = current.starts_with('-');
    candidates
        .into_iter()
        .filter(|candidate| {
            flags_wanted || !candidate.get_value().to_string_lossy().starts_with('-')
        })
        .map(|candidate| {
            let name = candidate
                .get_id()
                .and_then(|id| id.strip_prefix("command::"))
                .filter(|name| name.starts_with(current) && **name != *candidate.get_value())
                .map(str::to_owned);
            match name {
                Some(name) => CompletionCandidate::new(name).help(candidate.get_help().cloned()),
                None => candidate,
            }
        })
        .collect()
}

fn write_answer(candidates: &[CompletionCandidate], out: &mut dyn Write) -> std::io::Result<()> {
    for candidate in candidates.iter().filter(|c| !c.is_hide_set()) {
        let value = candidate.get_value().to_string_lossy();
        // A description is one line, without tabs: cobra splits on the first tab.
        match candidate.get_help().map(|help| help.to_string()) {
            Some(help) if !help.trim().is_empty() => {
                let first = help.lines().next().unwrap_or_default().replace('\t', " ");
                writeln!(out, "{value}\t{}", first.trim())?;
            }
            _ => writeln!(out, "{value}")?,
        }
    }
    writeln!(out, ":{NO_FILE_COMPLETION}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(line: &str) -> String {
        let mut words: Vec<OsString> = line.split(' ').map(Into::into).collect();
        if line.is_empty() {
            words = vec![OsString::new()];
        }
        let mut out = Vec::new();
        complete(words, &mut out).expect("write to a Vec");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn nouns_and_verbs_come_with_their_descriptions_and_the_directive() {
        let nouns = answer("");
        assert!(nouns.ends_with(":4\n"), "{nouns}");
        assert!(
            nouns
                .lines()
                .any(|l| l.starts_with("agent\t") && l.contains("Agents")),
            "{nouns}"
        );
        assert!(
            !nouns.contains("front"),
            "hidden commands stay hidden: {nouns}"
        );
        let verbs = answer("agent de");
        let mut values: Vec<&str> = verbs
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default())
            .collect();
        values.sort();
        assert_eq!(values, [":4", "delete", "describe"], "{verbs}");
    }

    #[test]
    fn flags_complete_after_a_dash() {
        let flags = answer("task submit --ti");
        assert!(flags.lines().any(|l| l.starts_with("--timeout")), "{flags}");
    }
}
