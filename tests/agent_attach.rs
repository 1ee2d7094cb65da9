//! `kubectl kubeoc agent attach` on the testbed, with the real OpenCode server and the stub
//! model, through the apiserver's service proxy:
//!
//! - `--prompt` prints exactly the answer and exits 0; a failed turn exits 1 with the model's
//!   message; a prompt on stdin works the same;
//! - the chat terminal in tmux: a prompt streams in, Ctrl+N and a second prompt, Ctrl+S lists
//!   both sessions, a permission prompt answered with `y` lets the tool run, Ctrl+C aborts a
//!   slow answer (the server records the abort), a resize to 60x20 and back, Ctrl+C quits;
//!   the password is nowhere on screen, in the scrollback or in `ps`;
//! - reconnect: the server pod deleted mid-session, the status bar says reconnecting, the
//!   transcript is intact afterwards and a new prompt works;
//! - a suspended Agent: `--resume` brings it back; an attached idle person keeps a short
//!   standby timeout from suspending the Agent, while the same Agent unattached is suspended;
//! - RBAC: a user bound only to `kubeoc-user` can attach; one without it gets the rule to add;
//! - `--opencode`: the user's own OpenCode TUI answers through the loopback proxy, and the
//!   password is in no process's arguments.

mod support;

use std::time::Duration;

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;
use kubeoc::api::Agent;
use kubeoc_testbed::wait_until;
use serde_json::{Value, json};
use support::tmux::{Tmux, shows_answer};
use support::{
    BINARY, Bed, Server, agent_manifest, apply, kubeconfig, kubectl, kubeoc, kubeoc_with_input,
    ready_agent, server_password, server_pod,
};

const WAIT: Duration = Duration::from_secs(180);
const SCREEN: Duration = Duration::from_secs(60);

/// An Agent on the stub model that asks before running bash.
fn agent(name: &str, extra_spec: Value) -> Value {
    let mut manifest = agent_manifest(name, extra_spec);
    manifest["spec"]["config"]["permission"] = json!({"bash": "ask"});
    manifest
}

/// [`agent`] `name` applied in the bed, Ready.
async fn ready_asking_agent(bed: &Bed, name: &str, extra_spec: Value) -> anyhow::Result<()> {
    bed.ready(&agent(name, extra_spec)).await.map(|_| ())
}

/// The shell command line that attaches to `agent` in `ns` (for tmux).
fn attach_command(ns: &str, agent: &str, extra: &str) -> anyhow::Result<String> {
    Ok(format!(
        "{BINARY} --kubeconfig {} -n {ns} agent attach {agent} {extra}",
        kubeconfig()?
    ))
}

#[tokio::test]
async fn prompt_prints_the_answer_and_a_failed_turn_exits_1_with_the_models_message()
-> anyhow::Result<()> {
    let bed = Bed::start("attach-prompt").await?;
    ready_asking_agent(&bed, "helper", json!({})).await?;
    let n = bed.n.clone();

    let ok = kubeoc(&[
        "-n",
        &n,
        "agent",
        "attach",
        "helper",
        "--prompt",
        "[[reply:Hello from kubeoc]]",
    ])
    .await?;
    ensure!(ok.success(), "attach --prompt failed: {ok}");
    ensure!(
        ok.stdout == "Hello from kubeoc\n",
        "stdout is exactly the answer: {ok}"
    );

    let piped = kubeoc_with_input(
        &["-n", &n, "agent", "attach", "helper"],
        Some("[[reply:from stdin]]"),
    )
    .await?;
    ensure!(
        piped.success() && piped.stdout == "from stdin\n",
        "a piped prompt: {piped}"
    );

    let tool = kubeoc(&[
        "-n",
        &n,
        "agent",
        "attach",
        "helper",
        "--prompt",
        r#"[[tool:read:{"filePath":"/workspace"}]][[reply:read it]]"#,
    ])
    .await?;
    ensure!(
        tool.success() && tool.stdout == "read it\n",
        "a tool turn: {tool}"
    );
    ensure!(
        tool.stderr.contains("[tool] read"),
        "tool calls go to stderr: {tool}"
    );

    let failed = kubeoc(&[
        "-n",
        &n,
        "agent",
        "attach",
        "helper",
        "--prompt",
        "[[error:400]]",
    ])
    .await?;
    ensure!(failed.code == Some(1), "a failed turn exits 1: {failed}");
    ensure!(failed.stdout.is_empty(), "nothing on stdout: {failed}");
    ensure!(
        failed.stderr.contains("could not answer")
            && failed.stderr.contains("stub model error 400"),
        "the model's message on stderr: {failed}"
    );
    Ok(())
}

#[tokio::test]
async fn the_chat_terminal_streams_switches_sessions_answers_permissions_and_aborts()
-> anyhow::Result<()> {
    let bed = Bed::start("attach-tui").await?;
    ready_asking_agent(&bed, "chat", json!({})).await?;
    let (client, n) = (bed.client.clone(), bed.n.clone());
    let password = server_password(&client, &n, "chat").await?;

    let term = Tmux::start("tui", &attach_command(&n, "chat", "")?, 100, 30)?;
    term.wait_for("connected", SCREEN).await?;
    term.wait_for("Chatting with agent chat", SCREEN).await?;

    // A prompt streams in.
    term.type_text("[[slow:150]][[reply:first answer streams word by word here]]")?;
    term.keys(&["Enter"])?;
    // (That partial answers show while the turn runs is what the abort below proves.)
    term.wait_for_answer("first answer streams word by word here", SCREEN)
        .await?;
    term.wait_for("idle", SCREEN).await?;

    // Ctrl+N, a second prompt in a new session; Ctrl+S lists both.
    term.keys(&["C-n"])?;
    term.wait_for("new session", SCREEN).await?;
    term.type_text("[[reply:second answer]]")?;
    term.keys(&["Enter"])?;
    let second = term.wait_for_answer("second answer", SCREEN).await?;
    ensure!(
        !second.contains("first answer streams"),
        "a new session starts empty: {second}"
    );
    term.keys(&["C-s"])?;
    let list = term.wait_for("sessions: Enter opens", SCREEN).await?;
    ensure!(
        list.contains("[[slow:150]][[reply:first") && list.contains("[[reply:second answer]]"),
        "both sessions listed: {list}"
    );
    // The older session is second in the list (newest first): open it.
    term.keys(&["Down", "Enter"])?;
    term.wait_for_answer("first answer streams word by word here", SCREEN)
        .await?;

    // A permission prompt answered with y lets the tool run.
    term.type_text(r#"[[tool:bash:{"command":"echo kubeoc-permitted","description":"Say it"}]][[reply:the tool ran]]"#)?;
    term.keys(&["Enter"])?;
    let asked = term.wait_for("The agent asks to use bash", SCREEN).await?;
    ensure!(
        asked.contains("echo kubeoc-permitted"),
        "the command is shown: {asked}"
    );
    term.keys(&["y"])?;
    term.wait_for_answer("the tool ran", SCREEN).await?;
    term.keys(&["C-o"])?;
    term.wait_for("│ kubeoc-permitted", SCREEN).await?;

    // Ctrl+C during a slow answer aborts it, and the server says so.
    term.wait_for("idle", SCREEN).await?;
    term.type_text("[[slow:400]][[reply:one two three four five six seven eight nine ten eleven twelve thirteen]]")?;
    term.keys(&["Enter"])?;
    term.wait_for_answer("one two", SCREEN).await?;
    term.keys(&["C-c"])?;
    term.wait_for("the turn was aborted", SCREEN).await?;
    let server = Server::connect(&client, &n, "chat").await?;
    let aborted = wait_until("the server to record the abort", SCREEN, || async {
        let sessions = server.get("/session").await?;
        for session in sessions.as_array().into_iter().flatten() {
            let id = session["id"].as_str().unwrap_or_default();
            let messages = server.get(&format!("/session/{id}/message")).await?;
            let last = messages
                .as_array()
                .and_then(|m| m.last())
                .cloned()
                .unwrap_or_default();
            if last["info"]["error"]["name"] == "MessageAbortedError" {
                return Ok(Some(id.to_string()));
            }
        }
        Ok(None)
    })
    .await?;
    ensure!(!aborted.is_empty());

    // Resize to 60x20 and back: the status bar and the prompt box are still there.
    term.resize(60, 20)?;
    term.wait_until("a 60-column screen with the status bar", SCREEN, |s| {
        s.lines().all(|l| l.chars().count() <= 60) && s.contains("chat (") && s.contains("prompt")
    })
    .await?;
    term.resize(100, 30)?;
    term.wait_until("a 100-column screen", SCREEN, |s| {
        s.contains("connected") && s.contains("prompt")
    })
    .await?;

    // The password is nowhere: screen, scrollback, process arguments.
    let scrollback = term.scrollback()?;
    ensure!(!scrollback.contains(&password), "the password is on screen");
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()?;
    ensure!(
        !String::from_utf8_lossy(&ps.stdout).contains(&password),
        "the password is in a process's arguments"
    );

    // Ctrl+C when idle quits, and the terminal is given back.
    term.keys(&["C-c"])?;
    wait_until("the chat terminal to exit", SCREEN, || async {
        Ok(term.exited()?.then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn the_chat_terminal_reconnects_when_the_server_pod_is_replaced() -> anyhow::Result<()> {
    let bed = Bed::start("attach-reconnect").await?;
    let (client, n) = (bed.client.clone(), bed.n.clone());
    apply(&n, &agent("steady", json!({}))).await?;
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);
    ready_agent(&agents, "steady", WAIT).await?;

    let term = Tmux::start("reconnect", &attach_command(&n, "steady", "")?, 100, 30)?;
    term.wait_for("connected", SCREEN).await?;
    term.type_text("[[reply:before the restart]]")?;
    term.keys(&["Enter"])?;
    term.wait_for_answer("before the restart", SCREEN).await?;
    term.wait_for("idle", SCREEN).await?;

    let old = server_pod(&client, &n, "steady").await?;
    let old_name = old.metadata.name.clone().context("pod name")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &n);
    pods.delete(&old_name, &DeleteParams::default()).await?;
    term.wait_for("reconnecting", Duration::from_secs(90))
        .await?;
    wait_until("a new server pod", WAIT, || async {
        let pod = server_pod(&client, &n, "steady").await.ok();
        Ok(pod
            .filter(|p| p.metadata.name.as_deref() != Some(old_name.as_str()))
            .map(drop))
    })
    .await?;
    ready_agent(&agents, "steady", WAIT).await?;
    let back = term
        .wait_until("connected again", WAIT, |s| {
            s.contains("connected") && !s.contains("reconnecting")
        })
        .await?;
    ensure!(
        shows_answer(&back, "before the restart"),
        "the transcript survived: {back}"
    );
    term.type_text("[[reply:after the restart]]")?;
    term.keys(&["Enter"])?;
    let after = term.wait_for_answer("after the restart", SCREEN).await?;
    ensure!(
        shows_answer(&after, "before the restart"),
        "one session, both turns: {after}"
    );
    Ok(())
}

#[tokio::test]
async fn resume_brings_a_suspended_agent_back_and_an_attached_person_holds_off_standby()
-> anyhow::Result<()> {
    let bed = Bed::start("attach-standby").await?;
    let (client, n) = (bed.client.clone(), bed.n.clone());
    let agents: Api<Agent> = Api::namespaced(client.clone(), &n);

    // --resume on a suspended Agent.
    apply(&n, &agent("sleepy", json!({"suspend": true}))).await?;
    let refused = kubeoc(&["-n", &n, "agent", "attach", "sleepy", "--prompt", "hi"]).await?;
    ensure!(
        !refused.success() && refused.stderr.contains("--resume"),
        "without --resume a script is told how: {refused}"
    );
    let resumed = kubeoc(&[
        "-n",
        &n,
        "agent",
        "attach",
        "sleepy",
        "--resume",
        "--prompt",
        "[[reply:awake]]",
    ])
    .await?;
    ensure!(
        resumed.success() && resumed.stdout == "awake\n",
        "attach --resume: {resumed}"
    );
    ensure!(agents.get("sleepy").await?.spec.suspend == Some(false));

    // Two Agents: one has a person attached and idle, one has nobody. Standby is turned on
    // only once both are Ready and the person is attached, so a slow start of one cannot
    // let the other suspend before the test looks at it.
    apply(&n, &agent("watched", json!({}))).await?;
    apply(&n, &agent("alone", json!({}))).await?;
    ready_agent(&agents, "watched", WAIT).await?;
    ready_agent(&agents, "alone", WAIT).await?;
    let term = Tmux::start("standby", &attach_command(&n, "watched", "")?, 100, 30)?;
    term.wait_for("connected", SCREEN).await?;
    wait_until("the attach to stamp its heartbeat", SCREEN, || async {
        let watched = agents.get("watched").await?;
        Ok(watched
            .metadata
            .annotations
            .is_some_and(|a| a.contains_key(kubeoc::api::ATTACH_HEARTBEAT_ANNOTATION))
            .then_some(()))
    })
    .await?;
    let standby = r#"{"spec":{"standby":{"idleTimeout":"20s"}}}"#;
    for name in ["watched", "alone"] {
        kubectl(
            &[
                "-n",
                &n,
                "patch",
                "agent",
                name,
                "--type=merge",
                "-p",
                standby,
            ],
            None,
        )
        .await?;
    }
    wait_until(
        "standby to suspend the unattached Agent",
        Duration::from_secs(120),
        || async { Ok((agents.get("alone").await?.spec.suspend == Some(true)).then_some(())) },
    )
    .await?;
    let watched = agents.get("watched").await?;
    ensure!(
        watched.spec.suspend != Some(true),
        "the attached Agent was suspended under its user: {:?}",
        watched.status
    );
    drop(term);
    Ok(())
}

/// A kubeconfig for ServiceAccount `sa` of `ns`, with a short-lived token.
async fn service_account_kubeconfig(
    ns: &str,
    sa: &str,
    dir: &std::path::Path,
) -> anyhow::Result<String> {
    let token = kubectl(&["-n", ns, "create", "token", sa, "--duration=1h"], None).await?;
    let path = dir.join(format!("{sa}.kubeconfig"));
    std::fs::copy(kubeconfig()?, &path)?;
    let path_str = path.to_string_lossy().to_string();
    let run = |args: Vec<String>| {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&path_str)
            .args(&args)
            .output();
        async move {
            let out = out?;
            ensure!(
                out.status.success(),
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok::<_, anyhow::Error>(())
        }
    };
    run(vec![
        "config".into(),
        "set-credentials".into(),
        sa.into(),
        format!("--token={}", token.trim()),
    ])
    .await?;
    run(vec![
        "config".into(),
        "set-context".into(),
        "--current".into(),
        format!("--user={sa}"),
    ])
    .await?;
    Ok(path_str)
}

#[tokio::test]
async fn a_kubeoc_user_can_attach_and_one_without_the_proxy_right_gets_the_rule()
-> anyhow::Result<()> {
    let bed = Bed::start("attach-rbac").await?;
    ready_asking_agent(&bed, "shared", json!({})).await?;
    let n = bed.n.clone();
    kubectl(&["-n", &n, "create", "serviceaccount", "dev"], None).await?;
    kubectl(&["-n", &n, "create", "serviceaccount", "stranger"], None).await?;
    kubectl(
        &[
            "-n",
            &n,
            "create",
            "rolebinding",
            "dev-uses-kubeoc",
            "--clusterrole=kubeoc-user",
            &format!("--serviceaccount={n}:dev"),
        ],
        None,
    )
    .await?;
    // The stranger may read Agents, nothing else.
    apply(&n, &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "agent-reader"},
        "rules": [{"apiGroups": ["kubeopencode.io"], "resources": ["agents"], "verbs": ["get", "list"]}]})).await?;
    kubectl(
        &[
            "-n",
            &n,
            "create",
            "rolebinding",
            "stranger-reads",
            "--role=agent-reader",
            &format!("--serviceaccount={n}:stranger"),
        ],
        None,
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let dev = service_account_kubeconfig(&n, "dev", dir.path()).await?;
    let stranger = service_account_kubeconfig(&n, "stranger", dir.path()).await?;

    let as_dev = support::run(
        BINARY,
        &[
            "--kubeconfig",
            &dev,
            "-n",
            &n,
            "agent",
            "attach",
            "shared",
            "--prompt",
            "[[reply:hello dev]]",
        ],
        None,
    )
    .await?;
    ensure!(
        as_dev.success() && as_dev.stdout == "hello dev\n",
        "a kubeoc-user attaches: {as_dev}"
    );

    let as_stranger = support::run(
        BINARY,
        &[
            "--kubeconfig",
            &stranger,
            "-n",
            &n,
            "agent",
            "attach",
            "shared",
            "--prompt",
            "hi",
        ],
        None,
    )
    .await?;
    ensure!(!as_stranger.success(), "{as_stranger}");
    ensure!(
        as_stranger
            .stderr
            .contains("you may not attach to agent \"shared\"")
            && as_stranger
                .stderr
                .contains("resources [\"services/proxy\"]")
            && as_stranger
                .stderr
                .contains("resources [\"secrets\"], resourceNames [\"shared-server-auth\"]")
            && !as_stranger.stderr.contains("panicked"),
        "the advice names the rules: {as_stranger}"
    );
    Ok(())
}

#[tokio::test]
async fn opencode_flag_runs_the_users_opencode_through_a_loopback_proxy() -> anyhow::Result<()> {
    let bed = Bed::start("attach-opencode").await?;
    ready_asking_agent(&bed, "own-tui", json!({})).await?;
    let (client, n) = (bed.client.clone(), bed.n.clone());
    let password = server_password(&client, &n, "own-tui").await?;

    // The user's own opencode: the testbed's pinned binary, first on PATH, with a scratch home.
    let home = tempfile::tempdir()?;
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin)?;
    let opencode = kubeoc_testbed::repo_root()
        .join("testbed/opencode/node_modules/opencode-ai/bin/opencode.exe");
    std::os::unix::fs::symlink(&opencode, bin.join("opencode"))?;
    let h = home.path().display();
    let command = format!(
        "env HOME={h} XDG_CONFIG_HOME={h}/config XDG_DATA_HOME={h}/data XDG_CACHE_HOME={h}/cache \
         XDG_STATE_HOME={h}/state OPENCODE_DISABLE_AUTOUPDATE=1 OPENCODE_DISABLE_MODELS_FETCH=1 \
         npm_config_registry=http://127.0.0.1:9 PATH={}:/usr/bin:/bin {}",
        bin.display(),
        attach_command(&n, "own-tui", "--opencode")?
    );
    let term = Tmux::start("opencode", &command, 120, 35)?;
    term.wait_for("/workspace", SCREEN).await?;
    term.type_text("[[reply:through the kubeoc proxy]]")?;
    term.keys(&["Enter"])?;
    term.wait_until("OpenCode's TUI to show the answer", SCREEN, |s| {
        s.lines().any(|l| l.trim() == "through the kubeoc proxy")
    })
    .await?;
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()?;
    let ps = String::from_utf8_lossy(&ps.stdout);
    ensure!(
        !ps.contains(&password),
        "the password is in a process's arguments"
    );
    ensure!(
        ps.lines().any(|l| l.contains("attach http://127.0.0.1:")),
        "the child attaches to the loopback proxy: {ps}"
    );
    ensure!(
        !term.scrollback()?.contains(&password),
        "the password is on screen"
    );
    drop(term);
    Ok(())
}
