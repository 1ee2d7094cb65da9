//! Paths and shell words for the scripts the builders write: normalised mount paths, quoting
//! for `sh`, ConfigMap keys for file paths.

/// Lexically normalised absolute path: no `.`, `..`, doubled or trailing slashes.
pub(super) fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The server's working directory, where its sessions live: workspaceDir normalised, or
/// /workspace.
pub fn workspace_dir(spec: &crate::api::AgentSpec) -> String {
    clean_path(spec.workspace_dir.as_deref().unwrap_or("/workspace"))
}

/// A context mount path: absolute as given, relative under workspaceDir; normalised.
pub(super) fn resolve_path(path: &str, workspace: &str) -> String {
    if path.starts_with('/') {
        clean_path(path)
    } else {
        clean_path(&format!("{workspace}/{path}"))
    }
}

pub(super) fn is_under(path: &str, dir: &str) -> bool {
    path == dir || dir == "/" || path.starts_with(&format!("{dir}/"))
}

pub(super) fn parent_dir(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((parent, _)) => parent.to_string(),
    }
}

/// Quotes a word for `sh` unless it is made of characters the shell leaves alone.
pub(super) fn sh_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A ConfigMap key for a file path, as upstream derives it (`/tools/opencode.json` ->
/// `tools-opencode.json`); characters a key cannot hold become `_`.
pub(super) fn config_map_key(path: &str) -> String {
    let key: String = path
        .trim_start_matches('/')
        .chars()
        .map(|c| match c {
            '/' => '-',
            c if c.is_ascii_alphanumeric() || "-_.".contains(c) => c,
            _ => '_',
        })
        .collect();
    if key.is_empty() || key.starts_with("..") {
        format!("file{key}")
    } else {
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::pod::containers::pull_policy;

    #[test]
    fn helpers() {
        assert_eq!(clean_path("/workspace/./code/"), "/workspace/code");
        assert_eq!(resolve_path(".", "/workspace"), "/workspace");
        assert_eq!(resolve_path("code", "/workspace"), "/workspace/code");
        assert_eq!(resolve_path("/abs//x", "/workspace"), "/abs/x");
        assert_eq!(sh_quote("https://x.io/a.git"), "https://x.io/a.git");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$HOME"), "'$HOME'");
        assert_eq!(
            config_map_key("/tools/opencode.json"),
            "tools-opencode.json"
        );
        assert_eq!(config_map_key("/w/a b.md"), "w-a_b.md");
        assert_eq!(pull_policy("img"), "Always");
        assert_eq!(pull_policy("reg:5000/img"), "Always");
        assert_eq!(pull_policy("reg:5000/img:1.0"), "IfNotPresent");
        assert_eq!(pull_policy("img@sha256:abc"), "IfNotPresent");
    }
}
