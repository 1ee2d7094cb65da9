//! Git contexts and skill sources: the clone and pull scripts of git-init and git-sync, and the
//! Rollout contexts the controller watches.

use std::time::Duration;

use k8s_openapi::api::core::v1::EnvVar;

use super::env::env_secret;
use super::paths::sh_quote;
use crate::api::AgentSpec;
use crate::api::context::{ContextType, GitContext, GitSync, GitSyncPolicy};

pub(super) const GIT_ROOT: &str = "/git";
const GIT_CHECKOUT: &str = "/git/repo";
pub(super) const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(300);
const CLONE_ATTEMPTS: u32 = 3;

/// A Git repository to clone: a Git context or a skill source.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct GitRepo {
    pub(super) repository: String,
    /// Branch, tag or commit; "HEAD" is the remote's default branch.
    pub(super) git_ref: String,
    /// 0: full history.
    pub(super) depth: i64,
    pub(super) recurse_submodules: bool,
    /// Directory inside the repository to expose instead of the whole checkout.
    pub(super) path: Option<String>,
    /// Resolved absolute mount path.
    pub(super) mount_path: String,
    /// Only these subdirectories of `path` are mounted (skills).
    pub(super) names: Vec<String>,
    pub(super) secret: Option<String>,
    /// Pull interval of a HotReload sync sidecar.
    pub(super) sync: Option<Duration>,
}

/// A Git context whose sync policy is Rollout: the controller watches its remote.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutContext {
    /// The context's name (`git-<i>` when unnamed), as in status.gitSyncStatuses.
    pub name: String,
    pub git: GitContext,
    /// How often to ask the remote.
    pub interval: Duration,
}

/// The Git contexts with sync enabled and policy Rollout.
pub fn rollout_contexts(spec: &AgentSpec) -> Vec<RolloutContext> {
    spec.contexts
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, item)| item.type_ == ContextType::Git)
        .filter_map(|(i, item)| {
            let git = item.git.as_ref()?;
            let sync = git.sync.as_ref()?;
            (sync.enabled == Some(true) && sync.policy == Some(GitSyncPolicy::Rollout)).then(|| {
                RolloutContext {
                    name: item
                        .name
                        .clone()
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| format!("git-{i}")),
                    git: git.clone(),
                    interval: sync_interval(sync),
                }
            })
        })
        .collect()
}

/// A Git `ref` as given, or "HEAD" (the remote's default branch) when unset or empty.
pub fn ref_or_head(git_ref: &Option<String>) -> String {
    git_ref
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "HEAD".to_string())
}

/// A sync's interval: the spec's, at least one second, 5 minutes when unset.
pub(super) fn sync_interval(sync: &GitSync) -> Duration {
    sync.interval
        .as_deref()
        .and_then(|i| crate::duration::parse(i).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_SYNC_INTERVAL)
}

/// Credential env vars from the repository's Secret, named and keyed as upstream (all keys
/// optional, so one Secret serves HTTPS and SSH).
pub(super) fn git_env(repo: &GitRepo) -> Vec<EnvVar> {
    let Some(secret) = &repo.secret else {
        return Vec::new();
    };
    [
        ("GIT_USERNAME", "username"),
        ("GIT_PASSWORD", "password"),
        ("GIT_SSH_KEY", "ssh-privatekey"),
        ("GIT_SSH_KNOWN_HOSTS", "ssh-known-hosts"),
    ]
    .into_iter()
    .map(|(name, key)| env_secret(name, secret, key, Some(true)))
    .collect()
}

/// Shell lines that set up credentials (from GIT_* env) and the extra CA for git.
fn git_prelude(repo: &GitRepo, has_ca: bool) -> Vec<String> {
    let mut lines = Vec::new();
    if repo.secret.is_some() {
        lines.extend(
            [
                r#"if [ -n "${GIT_PASSWORD:-}" ]; then"#,
                r#"  git config --global credential.helper '!f() { test "$1" = get || exit 0; echo "username=${GIT_USERNAME:-git}"; echo "password=${GIT_PASSWORD}"; }; f'"#,
                "fi",
                r#"if [ -n "${GIT_SSH_KEY:-}" ]; then"#,
                r#"  mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh""#,
                r#"  printf '%s\n' "$GIT_SSH_KEY" > "$HOME/.ssh/id_git" && chmod 600 "$HOME/.ssh/id_git""#,
                r#"  if [ -n "${GIT_SSH_KNOWN_HOSTS:-}" ]; then"#,
                r#"    printf '%s\n' "$GIT_SSH_KNOWN_HOSTS" > "$HOME/.ssh/known_hosts""#,
                r#"    export GIT_SSH_COMMAND="ssh -i $HOME/.ssh/id_git -o UserKnownHostsFile=$HOME/.ssh/known_hosts -o StrictHostKeyChecking=yes""#,
                "  else",
                r#"    export GIT_SSH_COMMAND="ssh -i $HOME/.ssh/id_git -o StrictHostKeyChecking=accept-new""#,
                "  fi",
                "fi",
            ]
            .map(String::from),
        );
    }
    if has_ca {
        lines.extend(
            [
                r#"cat /etc/ssl/certs/ca-certificates.crt "$CUSTOM_CA_CERT_PATH" > "$HOME/ca-bundle.crt" 2>/dev/null || cp "$CUSTOM_CA_CERT_PATH" "$HOME/ca-bundle.crt""#,
                r#"export GIT_SSL_CAINFO="$HOME/ca-bundle.crt""#,
            ]
            .map(String::from),
        );
    }
    lines
}

/// `git clone --depth <d> --branch <ref> <repository> <dest>`; ref HEAD means the default
/// branch (no --branch), a commit id is fetched and checked out after the clone.
fn clone_command(repo: &GitRepo, dest: &str) -> String {
    let mut words = vec!["git".to_string(), "clone".to_string()];
    let depth = (repo.depth > 0).then(|| repo.depth.to_string());
    if let Some(depth) = &depth {
        words.extend(["--depth".to_string(), depth.clone()]);
    }
    if repo.recurse_submodules {
        words.push("--recurse-submodules".to_string());
    }
    let commit = crate::controller::git_remote::is_commit(&repo.git_ref);
    if commit {
        words.push("--no-checkout".to_string());
    } else if repo.git_ref != "HEAD" {
        words.extend(["--branch".to_string(), sh_quote(&repo.git_ref)]);
    }
    // `--`: a repository that starts with `-` is a repository, never an option.
    words.extend([
        "--".to_string(),
        sh_quote(&repo.repository),
        dest.to_string(),
    ]);
    let mut command = words.join(" ");
    if commit {
        let depth = depth.map(|d| format!(" --depth {d}")).unwrap_or_default();
        command.push_str(&format!(
            " && git -C {dest} fetch{depth} origin {r} && git -C {dest} checkout -q {r}",
            r = repo.git_ref
        ));
    }
    command
}

/// The git-init script: clone into /git/repo (retrying), then, for a repository at
/// workspaceDir itself, copy the checkout into the workspace (skipped when the persistent
/// workspace already holds one).
pub(super) fn git_init_script(
    repo: &GitRepo,
    workspace_root: Option<&str>,
    has_ca: bool,
) -> String {
    let mut lines = vec!["set -eu".to_string()];
    lines.extend(git_prelude(repo, has_ca));
    lines.extend([
        format!("if [ -d {GIT_CHECKOUT}/.git ]; then"),
        format!("  echo 'git-init: {GIT_CHECKOUT} is already cloned'"),
        "else".to_string(),
        "  attempt=1".to_string(),
        format!("  until {}; do", clone_command(repo, GIT_CHECKOUT)),
        format!("    if [ \"$attempt\" -ge {CLONE_ATTEMPTS} ]; then echo 'git-init: clone failed {CLONE_ATTEMPTS} times' >&2; exit 1; fi"),
        "    attempt=$((attempt + 1))".to_string(),
        format!("    echo 'git-init: clone failed, retrying in 5s' >&2; rm -rf {GIT_CHECKOUT}; sleep 5"),
        "  done".to_string(),
        "fi".to_string(),
        format!("git -C {GIT_CHECKOUT} log -1 --format='git-init: at %H %s' || true"),
    ]);
    if let Some(workspace) = workspace_root {
        let ws = sh_quote(workspace);
        match &repo.path {
            None => lines.extend([
                format!("if [ -e {ws}/.git ]; then"),
                format!("  printf 'git-init: %s already holds a checkout; left as it is\\n' {ws}"),
                "else".to_string(),
                format!("  cp -a {GIT_CHECKOUT}/. {ws}/"),
                "fi".to_string(),
            ]),
            Some(path) => lines.push(format!(
                "cp -a {}/. {ws}/",
                sh_quote(&format!("{GIT_CHECKOUT}/{path}"))
            )),
        }
    }
    lines.join("\n")
}

/// The git-sync sidecar script: `git pull --ff-only` every interval, in the checkout the
/// server sees.
pub(super) fn git_sync_script(
    repo: &GitRepo,
    workspace_root: Option<&str>,
    interval: Duration,
    has_ca: bool,
) -> String {
    let seconds = interval.as_secs().max(1);
    let (checkout, copy) = match (workspace_root, &repo.path) {
        (Some(ws), None) => (sh_quote(ws), None),
        (Some(ws), Some(path)) => (
            GIT_CHECKOUT.to_string(),
            Some(format!(
                "cp -a {}/. {}/",
                sh_quote(&format!("{GIT_CHECKOUT}/{path}")),
                sh_quote(ws)
            )),
        ),
        (None, _) => (GIT_CHECKOUT.to_string(), None),
    };
    let mut lines = vec!["set -eu".to_string()];
    lines.extend(git_prelude(repo, has_ca));
    lines.extend([
        "while true; do".to_string(),
        format!("  sleep {seconds}"),
        format!("  if git -C {checkout} pull --ff-only; then"),
        copy.map(|c| format!("    {c}")).unwrap_or_else(|| {
            format!("    git -C {checkout} log -1 --format='git-sync: at %H %s' || true")
        }),
        "  else".to_string(),
        format!("    echo 'git-sync: pull failed; next try in {seconds}s' >&2"),
        "  fi".to_string(),
        "done".to_string(),
    ]);
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::pod::test_support::*;

    #[test]
    fn hostile_repositories_and_workspaces_stay_words() {
        let repo = GitRepo {
            repository: "--upload-pack=touch /tmp/pwned".to_string(),
            git_ref: "HEAD".to_string(),
            depth: 1,
            recurse_submodules: false,
            path: None,
            mount_path: "/w".to_string(),
            names: Vec::new(),
            secret: None,
            sync: None,
        };
        assert!(
            clone_command(&repo, "/git/repo")
                .ends_with("-- '--upload-pack=touch /tmp/pwned' /git/repo"),
            "{}",
            clone_command(&repo, "/git/repo")
        );
        // The workspace part of git-init, run by a real shell with a workspace that would
        // break out of quotes: it prints the path, and runs nothing of it.
        let workspace = "/work'; echo INJECTED; '";
        let script = git_init_script(&repo, Some(workspace), false);
        let notice = script
            .lines()
            .find(|l| l.contains("already holds a checkout"))
            .expect("the notice line");
        let out = std::process::Command::new("sh")
            .args(["-c", notice.trim()])
            .output()
            .expect("sh runs");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("git-init: {workspace} already holds a checkout; left as it is\n")
        );
    }

    #[test]
    fn git_clone_commands() {
        let repo = |git_ref: &str, depth: i64| GitRepo {
            repository: "https://example.com/r.git".to_string(),
            git_ref: git_ref.to_string(),
            depth,
            recurse_submodules: false,
            path: None,
            mount_path: "/workspace/r".to_string(),
            names: Vec::new(),
            secret: None,
            sync: None,
        };
        assert_eq!(
            clone_command(&repo("HEAD", 1), "/git/repo"),
            "git clone --depth 1 -- https://example.com/r.git /git/repo"
        );
        assert_eq!(
            clone_command(&repo("v1.2", 0), "/git/repo"),
            "git clone --branch v1.2 -- https://example.com/r.git /git/repo"
        );
        assert_eq!(
            clone_command(&repo("feature/x y", 3), "/git/repo"),
            "git clone --depth 3 --branch 'feature/x y' -- https://example.com/r.git /git/repo"
        );
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            clone_command(&repo(sha, 1), "/git/repo"),
            format!(
                "git clone --depth 1 --no-checkout -- https://example.com/r.git /git/repo && git -C /git/repo fetch --depth 1 origin {sha} && git -C /git/repo checkout -q {sha}"
            )
        );

        let agent = agent_yaml(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: private}
spec:
  workspaceDir: /workspace
  serviceAccountName: sa
  caBundle: {secretRef: {name: corp-ca}}
  proxy: {httpsProxy: "http://proxy:3128", noProxy: "localhost"}
  contexts:
    - name: docs
      type: Git
      mountPath: /opt/docs
      git: {repository: "git@github.com:org/docs.git", path: handbook/, recurseSubmodules: true, secretRef: {name: git-creds}, sync: {enabled: true, interval: 1h}}
"#,
        );
        let objects = build_agent(&agent);
        check_consistent("private", &objects);
        check_restricted("private", pod(&objects));
        let pod = pod(&objects);
        let clone = container(pod, "git-init-0");
        let sync = container(pod, "git-sync-0");
        for c in [clone, sync] {
            let expected = [
                ("GIT_USERNAME", "username"),
                ("GIT_PASSWORD", "password"),
                ("GIT_SSH_KEY", "ssh-privatekey"),
                ("GIT_SSH_KNOWN_HOSTS", "ssh-known-hosts"),
            ];
            for (name, key) in expected {
                assert_eq!(secret_ref(env(c, name)), ("git-creds", key), "{}", c.name);
                let optional = env(c, name)
                    .value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                    .and_then(|s| s.optional);
                assert_eq!(optional, Some(true));
            }
            assert!(script(c).contains("GIT_SSH_COMMAND"), "{}", c.name);
            assert!(script(c).contains("GIT_SSL_CAINFO"), "{}", c.name);
            assert_eq!(env_value_of(c, "HTTPS_PROXY"), "http://proxy:3128");
            assert_eq!(env_value_of(c, "NO_PROXY"), "localhost,.svc,.cluster.local");
            assert_eq!(mount_at(c, "/etc/ssl/certs/custom-ca").name, "ca-bundle");
        }
        assert!(
            script(clone).contains(
                "git clone --depth 1 --recurse-submodules -- git@github.com:org/docs.git /git/repo"
            ),
            "{}",
            script(clone)
        );
        assert!(script(sync).contains("sleep 3600"));
        assert!(script(sync).contains("git -C /git/repo pull --ff-only"));
        let server = server(&objects);
        let docs = mount_at(server, "/opt/docs");
        assert_eq!(
            (docs.name.as_str(), docs.sub_path.as_deref()),
            ("git-context-0", Some("repo/handbook"))
        );
        assert_eq!(
            env_value_of(server, "NODE_EXTRA_CA_CERTS"),
            "/etc/ssl/certs/custom-ca/tls.crt"
        );
        let ca = volume(pod, "ca-bundle")
            .secret
            .as_ref()
            .expect("a Secret volume");
        assert_eq!(
            ca.items
                .as_ref()
                .map(|i| (i[0].key.as_str(), i[0].path.as_str())),
            Some(("ca.crt", "tls.crt"))
        );
    }
}
