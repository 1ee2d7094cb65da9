//! `git ls-remote` for Git contexts with sync policy `Rollout`: the controller asks the
//! remote which commit the context's ref points to, with the context's credentials, the
//! Agent's CA bundle and proxy, and the reconciler rolls the server when that commit moves.
//!
//! Runs the `git` binary (as the pods' helper containers do): it speaks every transport the
//! pods do (https, ssh, file). Credentials reach it through the environment and private files
//! in a temporary directory, never its command line.

use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

/// How long one `git ls-remote` may take.
pub const LS_REMOTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Where the system's CA certificates usually are; the Agent's bundle is added to them.
const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What to ask the remote.
#[derive(Debug, Clone, Default)]
pub struct RemoteQuery {
    pub repository: String,
    /// Branch, tag, full ref, commit id, or "HEAD" (the remote's default branch).
    pub git_ref: String,
    pub credentials: GitCredentials,
    /// PEM certificates to trust besides the system's.
    pub ca_pem: Option<String>,
    /// HTTP(S)_PROXY / NO_PROXY variables for git.
    pub proxy_env: Vec<(String, String)>,
}

/// The keys of a Git context's Secret (the same the pods' git-init reads).
#[derive(Clone, Default)]
pub struct GitCredentials {
    pub username: Option<String>,
    pub password: Option<String>,
    pub ssh_key: Option<String>,
    pub known_hosts: Option<String>,
}

impl std::fmt::Debug for GitCredentials {
    // Values never reach a log line, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredentials")
            .field("username", &self.username.is_some())
            .field("password", &self.password.is_some())
            .field("ssh_key", &self.ssh_key.is_some())
            .field("known_hosts", &self.known_hosts.is_some())
            .finish()
    }
}

/// Whether `git_ref` is a commit id (nothing to ask the remote).
pub fn is_commit(git_ref: &str) -> bool {
    (git_ref.len() == 40 || git_ref.len() == 64) && git_ref.chars().all(|c| c.is_ascii_hexdigit())
}

/// Whether git would read `repository` from the local filesystem (`file://`, a path).
fn is_local(repository: &str) -> bool {
    repository.starts_with("file:")
        || repository.starts_with('/')
        || repository.starts_with('.')
        || repository.starts_with('~')
        || !(repository.contains("://") || repository.contains(':'))
}

/// The commit `git_ref` points to in `git ls-remote` output: a branch first, then a tag
/// (peeled to its commit), then an exact ref name.
pub fn pick_commit(ls_remote: &str, git_ref: &str) -> Option<String> {
    let refs: Vec<(&str, &str)> = ls_remote
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect();
    let find = |name: &str| {
        refs.iter()
            .find(|(_, r)| *r == name)
            .map(|(sha, _)| sha.to_string())
    };
    if git_ref == "HEAD" || git_ref.starts_with("refs/") {
        return find(&format!("{git_ref}^{{}}")).or_else(|| find(git_ref));
    }
    find(&format!("refs/heads/{git_ref}"))
        .or_else(|| find(&format!("refs/tags/{git_ref}^{{}}")))
        .or_else(|| find(&format!("refs/tags/{git_ref}")))
}

/// Asks the remote for the commit of `query.git_ref`.
pub async fn remote_commit(query: &RemoteQuery) -> Result<String, String> {
    if is_commit(&query.git_ref) {
        return Ok(query.git_ref.clone());
    }
    if is_local(&query.repository) {
        // A path names the controller's own filesystem, not the pods'; and git would run
        // upload-pack inside a repository someone else controls.
        return Err(format!(
            "{} is a local repository: the controller asks remotes over https, ssh or git only",
            query.repository
        ));
    }
    let private = tempfile::Builder::new()
        .prefix("kubeoc-git-")
        .tempdir()
        .map_err(|e| format!("creating a temporary directory for git: {e}"))?;
    let write_private = |name: &str, content: &str| -> Result<String, String> {
        let path = private.path().join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode_private()
            .open(&path)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        file.write_all(content.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(path.to_string_lossy().into_owned())
    };

    let mut command = tokio::process::Command::new("git");
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", private.path())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["-c", "protocol.file.allow=never"])
        .envs(query.proxy_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let credentials = &query.credentials;
    if let Some(password) = credentials.password.as_deref().filter(|p| !p.is_empty()) {
        command
            .env(
                "KUBEOC_GIT_USERNAME",
                credentials.username.as_deref().unwrap_or("git"),
            )
            .env("KUBEOC_GIT_PASSWORD", password)
            .args([
                "-c",
                r#"credential.helper=!f() { test "$1" = get || exit 0; echo "username=$KUBEOC_GIT_USERNAME"; echo "password=$KUBEOC_GIT_PASSWORD"; }; f"#,
            ]);
    }
    let mut ssh = vec!["ssh".to_string(), "-o BatchMode=yes".to_string()];
    if let Some(key) = credentials.ssh_key.as_deref().filter(|k| !k.is_empty()) {
        ssh.push(format!("-i {}", write_private("id_git", key)?));
    }
    match credentials.known_hosts.as_deref().filter(|k| !k.is_empty()) {
        Some(known) => ssh.push(format!(
            "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
            write_private("known_hosts", known)?
        )),
        None => ssh.push(format!(
            "-o UserKnownHostsFile={} -o StrictHostKeyChecking=accept-new",
            private.path().join("known_hosts").display()
        )),
    }
    command.env("GIT_SSH_COMMAND", ssh.join(" "));
    if let Some(ca) = query.ca_pem.as_deref() {
        let system = std::fs::read_to_string(SYSTEM_CA_FILE).unwrap_or_default();
        command.env(
            "GIT_SSL_CAINFO",
            write_private("ca-bundle.crt", &format!("{system}\n{ca}"))?,
        );
    }
    command.args(["ls-remote", "--", &query.repository, &query.git_ref]);

    let child = command
        .spawn()
        .map_err(|e| format!("running git (is it installed?): {e}"))?;
    let output = tokio::time::timeout(LS_REMOTE_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("git ls-remote took longer than {LS_REMOTE_TIMEOUT:?}"))?
        .map_err(|e| format!("running git: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        // git may quote the URL, and a URL may carry a token.
        let message = last.unwrap_or("no message").trim().replace(
            &query.repository,
            &crate::redact::redact_url(&query.repository),
        );
        return Err(format!("git ls-remote failed: {message}"));
    }
    pick_commit(&String::from_utf8_lossy(&output.stdout), &query.git_ref)
        .ok_or_else(|| format!("the remote has no ref {:?}", query.git_ref))
}

/// `OpenOptions::mode(0o600)` under a name that reads as intent.
trait PrivateFile {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateFile for std::fs::OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt as _;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LS_REMOTE: &str = "\
1111111111111111111111111111111111111111\tHEAD
1111111111111111111111111111111111111111\trefs/heads/main
2222222222222222222222222222222222222222\trefs/heads/release
3333333333333333333333333333333333333333\trefs/tags/v1
4444444444444444444444444444444444444444\trefs/tags/v1^{}
5555555555555555555555555555555555555555\trefs/tags/light
";

    #[test]
    fn picks_branches_peeled_tags_and_full_refs() {
        let pick = |r: &str| pick_commit(LS_REMOTE, r).map(|s| s[..1].to_string());
        assert_eq!(pick("HEAD").as_deref(), Some("1"));
        assert_eq!(pick("main").as_deref(), Some("1"));
        assert_eq!(pick("release").as_deref(), Some("2"));
        assert_eq!(
            pick("v1").as_deref(),
            Some("4"),
            "annotated tag: its commit"
        );
        assert_eq!(pick("light").as_deref(), Some("5"));
        assert_eq!(pick("refs/heads/release").as_deref(), Some("2"));
        assert_eq!(pick("refs/tags/v1").as_deref(), Some("4"));
        assert_eq!(pick("missing"), None);
        assert!(is_commit(&"a".repeat(40)) && !is_commit("main"));
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let credentials = GitCredentials {
            username: Some("bot".into()),
            password: Some("hunter2".into()),
            ssh_key: Some("PRIVATE KEY".into()),
            known_hosts: None,
        };
        let shown = format!(
            "{:?}",
            RemoteQuery {
                credentials,
                ..Default::default()
            }
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("PRIVATE"),
            "{shown}"
        );
    }

    /// A real `git ls-remote` against `git daemon` on loopback, as the reconciler runs it; a
    /// local repository is refused.
    #[tokio::test]
    async fn asks_a_real_remote_and_refuses_local_repositories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("team.git");
        std::fs::create_dir(&repo).expect("mkdir");
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .current_dir(&repo)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("HOME", dir.path())
                .output()
                .expect("git");
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        git(&["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("a.txt"), "a").expect("write");
        git(&["add", "a.txt"]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "-m",
            "a",
        ]);
        let head = git(&["rev-parse", "HEAD"]);

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        // git-daemon itself (not `git daemon`, which would leave it running when killed).
        let exec_path = std::process::Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git --exec-path");
        let exec_path = String::from_utf8_lossy(&exec_path.stdout)
            .trim()
            .to_string();
        let mut daemon = tokio::process::Command::new(format!("{exec_path}/git-daemon"))
            .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", dir.path().display()))
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("git daemon");
        let query = |git_ref: &str| RemoteQuery {
            repository: format!("git://127.0.0.1:{port}/team.git"),
            git_ref: git_ref.to_string(),
            ..Default::default()
        };
        let mut first = remote_commit(&query("main")).await;
        for _ in 0..50 {
            if first.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            first = remote_commit(&query("main")).await;
        }
        assert_eq!(first, Ok(head.clone()));
        assert_eq!(remote_commit(&query("HEAD")).await, Ok(head));
        assert_eq!(
            remote_commit(&query("nope")).await,
            Err("the remote has no ref \"nope\"".to_string())
        );
        let gone = RemoteQuery {
            repository: format!("git://127.0.0.1:{port}/absent.git"),
            ..query("main")
        };
        let err = remote_commit(&gone).await.expect_err("no repository");
        assert!(err.starts_with("git ls-remote failed: "), "{err}");
        let _ = daemon.kill().await;

        for local in [
            format!("file://{}", repo.display()),
            repo.display().to_string(),
            "./team.git".to_string(),
        ] {
            let err = remote_commit(&RemoteQuery {
                repository: local.clone(),
                ..query("main")
            })
            .await
            .expect_err("local");
            assert!(err.contains("is a local repository"), "{local}: {err}");
        }
        assert!(!is_local("https://example.com/r.git") && !is_local("git@example.com:r.git"));
    }
}
