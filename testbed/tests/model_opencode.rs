//! The stub model against the real OpenCode server (the version pinned in testbed/opencode):
//! auth, prompts, errors, streaming, tool calls, `opencode run --attach` and title requests.
//!
//! Needs `npm ci` in testbed/opencode and `rg` on PATH; no cluster. Everything stays on
//! 127.0.0.1: the stub and OpenCode listen there and OpenCode's npm registry points at a closed
//! loopback port.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use kubeoc_testbed::http_client::{self, EventStream, base64, basic_auth, url_encode};
use kubeoc_testbed::model::{LoggedRequest, read_requests_log};
use serde_json::{Value, json};

const OPENCODE_VERSION: &str = "1.18.33";
const USER: &str = "opencode";
/// 10 characters: `opencode:` + this is 19 bytes, so the base64 token ends in `==` and the
/// test exercises URL-encoding of `auth_token`.
const PASSWORD: &str = "s3cret-pw1";
const CALL: Duration = Duration::from_secs(10);
const START: Duration = Duration::from_secs(90);
const TURN: Duration = Duration::from_secs(60);

fn opencode_bin() -> PathBuf {
    let path = kubeoc_testbed::repo_root()
        .join("testbed/opencode/node_modules/opencode-ai/bin/opencode.exe");
    assert!(
        path.is_file(),
        "OpenCode {OPENCODE_VERSION} is not installed at {}: run `npm ci` in testbed/opencode \
         (or testbed/scripts/opencode.sh)",
        path.display()
    );
    path
}

fn require_ripgrep() {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("rg").is_file()))
        .unwrap_or(false);
    assert!(
        on_path,
        "`rg` is not on PATH and OpenCode would try to download it: apt-get install -y ripgrep"
    );
}

/// A child process in its own process group; dropping it kills the group and reaps the child.
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(command: &mut Command, what: &str) -> anyhow::Result<Self> {
        let child = command
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Self { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group this guard created.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// At most this many OpenCode servers at once: each takes ~310 MiB and a few CPU-seconds to
/// start, and on a 2-core machine seven at once starve each other's streams.
const MAX_SERVERS: usize = 2;

static SERVERS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// A place among the [`MAX_SERVERS`]; released on drop.
struct ServerSlot;

impl ServerSlot {
    async fn acquire() -> Self {
        tokio::task::spawn_blocking(|| {
            let (count, freed) = &SERVERS;
            let mut count = count.lock().unwrap_or_else(PoisonError::into_inner);
            while *count >= MAX_SERVERS {
                count = freed.wait(count).unwrap_or_else(PoisonError::into_inner);
            }
            *count += 1;
        })
        .await
        .unwrap_or_else(|err| panic!("waiting for a server slot: {err}"));
        Self
    }
}

impl Drop for ServerSlot {
    fn drop(&mut self) {
        let (count, freed) = &SERVERS;
        let mut count = count.lock().unwrap_or_else(PoisonError::into_inner);
        *count = count.saturating_sub(1);
        freed.notify_one();
    }
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> anyhow::Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path =
            std::env::temp_dir().join(format!("kubeoc-model-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A stub model and an `opencode serve` that uses it, in a scratch HOME and project.
/// Fields drop in order: OpenCode, then the stub, then the directory, then the slot.
struct Fixture {
    opencode: Proc,
    _stub: Proc,
    dir: TempDir,
    _slot: ServerSlot,
    base: String,
    project: PathBuf,
    env: Vec<(String, String)>,
    started_to_healthy: Duration,
}

impl Fixture {
    async fn start(tag: &str) -> anyhow::Result<Self> {
        require_ripgrep();
        let bin = opencode_bin();
        let slot = ServerSlot::acquire().await;
        let dir = TempDir::new(tag)?;
        let root = dir.0.clone();
        let project = root.join("project");
        for sub in ["home", "data", "config", "state", "cache", "project"] {
            std::fs::create_dir_all(root.join(sub))?;
        }

        let stub_log = std::fs::File::create(root.join("stub.log"))?;
        let mut stub = Proc::spawn(
            Command::new(env!("CARGO_BIN_EXE_kubeoc-testbed"))
                .args(["model", "--listen", "127.0.0.1:0", "--requests-log"])
                .arg(root.join("requests.jsonl"))
                .env("RUST_LOG", "debug")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(stub_log),
            "the stub model",
        )?;
        let stdout = stub.child.stdout.take().context("stub stdout")?;
        let first_line = tokio::time::timeout(
            CALL,
            tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                BufReader::new(stdout).read_line(&mut line).map(|_| line)
            }),
        )
        .await
        .with_context(|| {
            format!(
                "the stub printed no address within {CALL:?}; its log:\n{}",
                tail(&root.join("stub.log"), 20)
            )
        })???;
        let stub_url = first_line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| format!("unexpected first stub line {first_line:?}"))?
            .to_string();

        let config = json!({
            "$schema": "https://opencode.ai/config.json",
            "provider": {"stub": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Stub",
                "options": {"baseURL": format!("{stub_url}/v1"), "apiKey": "x"},
                "models": {"stub-model": {"name": "Stub model"}},
            }},
            "model": "stub/stub-model",
            "small_model": "stub/stub-model",
        });
        let config_path = root.join("opencode.json");
        std::fs::write(&config_path, config.to_string())?;
        let path_var = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_string());
        let dirs = |sub: &str| root.join(sub).display().to_string();
        let env: Vec<(String, String)> = [
            ("PATH", path_var),
            ("HOME", dirs("home")),
            ("XDG_DATA_HOME", dirs("data")),
            ("XDG_CONFIG_HOME", dirs("config")),
            ("XDG_STATE_HOME", dirs("state")),
            ("XDG_CACHE_HOME", dirs("cache")),
            ("OPENCODE_CONFIG", config_path.display().to_string()),
            ("OPENCODE_SERVER_PASSWORD", PASSWORD.to_string()),
            ("OPENCODE_DISABLE_MODELS_FETCH", "1".to_string()),
            ("OPENCODE_DISABLE_AUTOUPDATE", "1".to_string()),
            ("OPENCODE_DISABLE_LSP_DOWNLOAD", "1".to_string()),
            ("OPENCODE_DISABLE_SHARE", "1".to_string()),
            ("npm_config_registry", "http://127.0.0.1:9".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();

        // `--port 0` does not pick a free port in 1.18.33 (it means the default, 4096).
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let started = Instant::now();
        let opencode = Proc::spawn(
            Command::new(&bin)
                .args([
                    "serve",
                    "--hostname",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                ])
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .current_dir(&project)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(root.join("opencode.out"))?)
                .stderr(std::fs::File::create(root.join("opencode.err"))?),
            "opencode serve",
        )?;
        let mut fixture = Self {
            opencode,
            _stub: stub,
            dir,
            _slot: slot,
            base: format!("http://127.0.0.1:{port}"),
            project,
            env,
            started_to_healthy: Duration::ZERO,
        };
        fixture.wait_healthy().await?;
        fixture.started_to_healthy = started.elapsed();
        Ok(fixture)
    }

    /// Polls `/global/health`. Each probe has its own short deadline: a request that reaches
    /// OpenCode just as it starts listening can stay unanswered forever.
    async fn wait_healthy(&self) -> anyhow::Result<()> {
        let url = format!("{}/global/health", self.base);
        let auth = basic_auth(USER, PASSWORD);
        let deadline = Instant::now() + START;
        loop {
            let seen =
                match http_client::get(&url, &[("authorization", &auth)], Duration::from_secs(2))
                    .await
                {
                    Ok(r) if r.status == 200 => return Ok(()),
                    Ok(r) => format!("status {}: {}", r.status, r.text()),
                    Err(err) => format!("{err:#}"),
                };
            if Instant::now() >= deadline {
                bail!(
                    "opencode serve not healthy within {START:?}; last seen: {seen}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn logs(&self) -> String {
        format!(
            "--- opencode stdout:\n{}\n--- opencode stderr:\n{}\n--- stub log:\n{}",
            tail(&self.dir.0.join("opencode.out"), 20),
            tail(&self.dir.0.join("opencode.err"), 40),
            tail(&self.dir.0.join("stub.log"), 20),
        )
    }

    /// `base + path + ?directory=<project>` (+ `&extra`).
    fn url(&self, path: &str, extra: &str) -> String {
        let mut url = format!(
            "{}{path}?directory={}",
            self.base,
            url_encode(&self.project.display().to_string())
        );
        if !extra.is_empty() {
            url.push('&');
            url.push_str(extra);
        }
        url
    }

    fn auth(&self) -> String {
        basic_auth(USER, PASSWORD)
    }

    async fn get_json(&self, path: &str, extra: &str) -> anyhow::Result<Value> {
        let response = http_client::get(
            &self.url(path, extra),
            &[("authorization", &self.auth())],
            CALL,
        )
        .await?;
        ensure!(
            response.status == 200,
            "GET {path}: status {}: {}",
            response.status,
            response.text()
        );
        response.json()
    }

    async fn create_session(&self, title: Option<&str>) -> anyhow::Result<String> {
        let body = match title {
            Some(title) => json!({"title": title}),
            None => json!({}),
        };
        let response = http_client::post_json(
            &self.url("/session", ""),
            &[("authorization", &self.auth())],
            &body,
            CALL,
        )
        .await?;
        ensure!(
            response.status == 200,
            "POST /session: status {}: {}",
            response.status,
            response.text()
        );
        let session: Value = response.json()?;
        session["id"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("session without id: {session}"))
    }

    async fn events(&self) -> anyhow::Result<EventStream> {
        let mut stream = http_client::events(
            &self.url("/event", ""),
            &[("authorization", &self.auth())],
            CALL,
        )
        .await?;
        // The first event says the stream is live; later events cannot be missed.
        let first = tokio::time::timeout(CALL, stream.next_data())
            .await
            .context("no first event on /event")??
            .context("/event ended at once")?;
        let first: Value = serde_json::from_str(&first)?;
        ensure!(
            first["type"] == "server.connected",
            "first event is not server.connected: {first}"
        );
        Ok(stream)
    }

    async fn prompt(&self, session: &str, text: &str) -> anyhow::Result<()> {
        self.prompt_parts(session, &[text]).await
    }

    /// A prompt of several text parts (OpenCode then sends the stub an array of parts).
    async fn prompt_parts(&self, session: &str, texts: &[&str]) -> anyhow::Result<()> {
        let parts: Vec<Value> = texts
            .iter()
            .map(|text| json!({"type": "text", "text": text}))
            .collect();
        let response = http_client::post_json(
            &self.url(&format!("/session/{session}/prompt_async"), ""),
            &[("authorization", &self.auth())],
            &json!({ "parts": parts }),
            CALL,
        )
        .await?;
        ensure!(
            response.status == 204,
            "prompt_async: status {} (expected 204): {}",
            response.status,
            response.text()
        );
        Ok(())
    }

    /// Reads events until `session.idle` for `session`; returns that session's events.
    async fn wait_idle(
        &self,
        events: &mut EventStream,
        session: &str,
    ) -> anyhow::Result<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + TURN;
        let mut seen = Vec::new();
        loop {
            let data = match tokio::time::timeout_at(deadline, events.next_data()).await {
                Ok(Ok(Some(data))) => data,
                Ok(Ok(None)) => bail!("/event ended before session.idle; saw {}", types(&seen)),
                Ok(Err(err)) => return Err(err),
                Err(_) => bail!(
                    "no session.idle for {session} within {TURN:?}; saw {}\n{}",
                    types(&seen),
                    self.logs()
                ),
            };
            let event: Value = serde_json::from_str(&data)
                .with_context(|| format!("event is not JSON: {data}"))?;
            if event["properties"]["sessionID"] != session {
                continue;
            }
            let idle = event["type"] == "session.idle";
            seen.push(event);
            if idle {
                return Ok(seen);
            }
        }
    }

    async fn messages(&self, session: &str) -> anyhow::Result<Vec<Value>> {
        let messages = self
            .get_json(&format!("/session/{session}/message"), "")
            .await?;
        messages
            .as_array()
            .cloned()
            .with_context(|| format!("messages are not an array: {messages}"))
    }

    fn requests(&self) -> anyhow::Result<Vec<LoggedRequest>> {
        read_requests_log(&self.dir.0.join("requests.jsonl"))
    }

    fn rss_kib(&self) -> Option<u64> {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.opencode.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

fn types(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The assistant messages of a transcript.
fn assistants(messages: &[Value]) -> Vec<&Value> {
    messages
        .iter()
        .filter(|m| m["info"]["role"] == "assistant")
        .collect()
}

/// The text parts of one message.
fn texts(message: &Value) -> Vec<String> {
    message["parts"]
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .filter(|p| p["type"] == "text")
                .filter_map(|p| p["text"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn health_needs_credentials_and_accepts_header_or_auth_token() -> anyhow::Result<()> {
    let fx = Fixture::start("health").await?;
    let rss = fx.rss_kib().unwrap_or(0);
    eprintln!(
        "opencode serve: healthy {} ms after spawn; RSS when healthy {} MiB",
        fx.started_to_healthy.as_millis(),
        rss / 1024
    );
    let url = format!("{}/global/health", fx.base);
    let expected = json!({"healthy": true, "version": OPENCODE_VERSION});

    let anonymous = http_client::get(&url, &[], CALL).await?;
    assert_eq!(
        anonymous.status,
        401,
        "no credentials: {}",
        anonymous.text()
    );
    let wrong =
        http_client::get(&url, &[("authorization", &basic_auth(USER, "wrong"))], CALL).await?;
    assert_eq!(wrong.status, 401, "wrong password: {}", wrong.text());

    let header = http_client::get(&url, &[("authorization", &fx.auth())], CALL).await?;
    assert_eq!(header.status, 200, "{}", header.text());
    assert_eq!(header.json::<Value>()?, expected);

    let token = base64(format!("{USER}:{PASSWORD}").as_bytes());
    assert!(
        token.ends_with("=="),
        "the token should need URL-encoding: {token}"
    );
    let query = http_client::get(
        &format!("{url}?auth_token={}", url_encode(&token)),
        &[],
        CALL,
    )
    .await?;
    assert_eq!(query.status, 200, "{}", query.text());
    assert_eq!(query.json::<Value>()?, expected);

    let bad_token = base64(format!("{USER}:nope").as_bytes());
    let rejected = http_client::get(
        &format!("{url}?auth_token={}", url_encode(&bad_token)),
        &[],
        CALL,
    )
    .await?;
    assert_eq!(rejected.status, 401, "{}", rejected.text());

    // Idle after a few seconds: one more sample for the record.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "opencode serve: RSS idle 5 s later {} MiB",
        fx.rss_kib().unwrap_or(0) / 1024
    );
    Ok(())
}

#[tokio::test]
async fn reply_marker_becomes_the_assistant_text() -> anyhow::Result<()> {
    let fx = Fixture::start("reply").await?;
    let mut events = fx.events().await?;
    let session = fx.create_session(None).await?;
    let first_turn = Instant::now();
    fx.prompt(&session, "[[reply:hello from the stub]]").await?;
    let seen = fx.wait_idle(&mut events, &session).await?;
    let first_turn = first_turn.elapsed();

    let deltas: String = seen
        .iter()
        .filter(|e| e["type"] == "message.part.delta" && e["properties"]["field"] == "text")
        .filter_map(|e| e["properties"]["delta"].as_str())
        .collect();
    assert_eq!(
        deltas,
        "hello from the stub",
        "text deltas; events: {}",
        types(&seen)
    );

    let messages = fx.messages(&session).await?;
    let answers = assistants(&messages);
    assert_eq!(answers.len(), 1, "one assistant message: {messages:#?}");
    let answer = answers[0];
    assert_eq!(texts(answer), vec!["hello from the stub".to_string()]);
    assert_eq!(answer["info"]["finish"], "stop");
    assert_eq!(answer["info"]["providerID"], "stub");
    assert_eq!(answer["info"]["modelID"], "stub-model");
    assert!(answer["info"]["time"]["completed"].is_number(), "{answer}");
    assert!(answer["info"].get("error").is_none(), "{answer}");

    // Second turn, no marker, two text parts: the stub gets content as an array and echoes.
    let second_turn = Instant::now();
    fx.prompt_parts(&session, &["plain question", "more context"])
        .await?;
    fx.wait_idle(&mut events, &session).await?;
    let second_turn = second_turn.elapsed();
    let messages = fx.messages(&session).await?;
    let answers = assistants(&messages);
    assert_eq!(answers.len(), 2, "{messages:#?}");
    assert_eq!(
        texts(answers[1]),
        vec!["stub answer: plain question\nmore context".to_string()]
    );
    eprintln!(
        "prompt_async to session.idle: first turn {} ms, second turn {} ms",
        first_turn.as_millis(),
        second_turn.as_millis()
    );
    Ok(())
}

#[tokio::test]
async fn error_marker_fails_the_turn_with_the_stub_message() -> anyhow::Result<()> {
    let fx = Fixture::start("error").await?;
    let mut events = fx.events().await?;
    let session = fx.create_session(Some("error case")).await?;
    fx.prompt(&session, "[[error:400]] please fail").await?;
    let seen = fx.wait_idle(&mut events, &session).await?;
    assert!(
        seen.iter().any(|e| e["type"] == "session.error"),
        "a session.error event: {}",
        types(&seen)
    );

    let messages = fx.messages(&session).await?;
    let answers = assistants(&messages);
    assert_eq!(answers.len(), 1, "{messages:#?}");
    let error = &answers[0]["info"]["error"];
    assert_eq!(error["name"], "APIError", "{error}");
    assert_eq!(
        error["data"]["message"],
        "stub model error 400 (asked for by [[error:400]])"
    );
    assert_eq!(error["data"]["statusCode"], 400);
    assert_eq!(error["data"]["isRetryable"], false);

    // A 4xx is not retried: one model request for the turn (the title was given).
    let turn: Vec<_> = fx.requests()?.into_iter().filter(|r| !r.title).collect();
    assert_eq!(turn.len(), 1, "{turn:#?}");
    assert_eq!(turn[0].status, 400);
    Ok(())
}

#[tokio::test]
async fn slow_marker_streams_word_by_word() -> anyhow::Result<()> {
    let fx = Fixture::start("slow").await?;
    let mut events = fx.events().await?;
    let session = fx.create_session(Some("slow case")).await?;
    // A first turn on a fresh server overlaps OpenCode's own bootstrap work, which can hold
    // stream events back and release them together; time a second turn.
    fx.prompt(&session, "[[reply:warm up]]").await?;
    fx.wait_idle(&mut events, &session).await?;
    let started = Instant::now();
    fx.prompt(&session, "[[slow:200]] [[reply:one two three four five]]")
        .await?;
    let mut deltas = Vec::new();
    let deadline = tokio::time::Instant::now() + TURN;
    loop {
        let data = tokio::time::timeout_at(deadline, events.next_data())
            .await
            .context("no session.idle in time")??
            .context("/event ended")?;
        let event: Value = serde_json::from_str(&data)?;
        if event["properties"]["sessionID"] != session.as_str() {
            continue;
        }
        if event["type"] == "message.part.delta" {
            deltas.push((
                started.elapsed(),
                event["properties"]["delta"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
        if event["type"] == "session.idle" {
            break;
        }
    }
    let words: Vec<&str> = deltas.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(words, vec!["one ", "two ", "three ", "four ", "five"]);
    // The stub sends a chunk every 200 ms, so "one" and "five" leave it 800 ms apart; allow
    // OpenCode to bunch some of them up when the machine is busy.
    let spread = deltas[4].0 - deltas[0].0;
    assert!(
        spread >= Duration::from_millis(400),
        "5 words 200 ms apart arrived within {spread:?}: not streamed"
    );
    eprintln!(
        "slow stream: deltas at {:?}",
        deltas
            .iter()
            .map(|(t, _)| t.as_millis())
            .collect::<Vec<_>>()
    );
    let messages = fx.messages(&session).await?;
    assert_eq!(
        texts(assistants(&messages)[1]),
        vec!["one two three four five".to_string()]
    );
    Ok(())
}

#[tokio::test]
async fn tool_marker_runs_a_real_tool_then_answers() -> anyhow::Result<()> {
    let fx = Fixture::start("tool").await?;
    let file = fx.project.join("notes.txt");
    std::fs::write(&file, "tool file content 42\n")?;
    let mut events = fx.events().await?;
    let session = fx.create_session(Some("tool case")).await?;
    let args = json!({"filePath": file.display().to_string()});
    fx.prompt(&session, &format!("[[tool:read:{args}]]"))
        .await?;
    fx.wait_idle(&mut events, &session).await?;

    let messages = fx.messages(&session).await?;
    let answers = assistants(&messages);
    assert_eq!(answers.len(), 2, "a tool step and an answer: {messages:#?}");
    let tool = answers[0]["parts"]
        .as_array()
        .and_then(|parts| parts.iter().find(|p| p["type"] == "tool"))
        .with_context(|| format!("no tool part in {}", answers[0]))?;
    assert_eq!(tool["tool"], "read");
    assert_eq!(tool["state"]["status"], "completed", "{tool}");
    assert_eq!(answers[0]["info"]["finish"], "tool-calls");
    let text = texts(answers[1]).concat();
    assert!(
        text.starts_with("stub tool result: ") && text.contains("tool file content 42"),
        "{text}"
    );
    let kinds: Vec<String> = fx
        .requests()?
        .into_iter()
        .filter(|r| !r.title)
        .map(|r| r.answer)
        .collect();
    assert_eq!(kinds, vec!["tool_call", "tool_result"]);
    Ok(())
}

#[tokio::test]
async fn run_attach_answers_into_a_titled_session() -> anyhow::Result<()> {
    let fx = Fixture::start("attach").await?;
    let title = "attach-run-title-1";
    let output = tokio::time::timeout(
        TURN,
        tokio::process::Command::new(opencode_bin())
            .args([
                "run", "--attach", &fx.base, "-p", PASSWORD, "--title", title,
            ])
            .arg("[[reply:answer via run attach]]")
            .env_clear()
            .envs(fx.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&fx.project)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("opencode run --attach did not finish")??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {stderr}", output.status);
    // Observed with 1.18.33: nothing on stdout; stderr has a header like `> build · stub-model`.
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "",
        "run --attach printed on stdout (stderr: {stderr})"
    );

    let found = fx
        .get_json("/session", &format!("search={}", url_encode(title)))
        .await?;
    let sessions = found.as_array().context("sessions are not an array")?;
    assert_eq!(sessions.len(), 1, "{found:#}");
    assert_eq!(sessions[0]["title"], title);
    let session = sessions[0]["id"].as_str().context("session id")?;
    let messages = fx.messages(session).await?;
    let answers = assistants(&messages);
    assert_eq!(answers.len(), 1, "{messages:#?}");
    assert_eq!(texts(answers[0]), vec!["answer via run attach".to_string()]);

    // With --title there is no title request.
    let requests = fx.requests()?;
    assert!(requests.iter().all(|r| !r.title), "{requests:#?}");
    assert_eq!(requests.len(), 1, "{requests:#?}");
    Ok(())
}

#[tokio::test]
async fn untitled_session_gets_its_title_from_the_stub() -> anyhow::Result<()> {
    let fx = Fixture::start("title").await?;
    let mut events = fx.events().await?;
    let session = fx.create_session(None).await?;
    let created = fx.get_json(&format!("/session/{session}"), "").await?;
    let placeholder = created["title"].as_str().unwrap_or_default().to_string();
    assert!(placeholder.starts_with("New session - "), "{created}");

    fx.prompt(&session, "[[title:Stub made this title]] [[reply:titled]]")
        .await?;
    fx.wait_idle(&mut events, &session).await?;
    let title = kubeoc_testbed::wait_until("the session title", TURN, || async {
        let info = fx.get_json(&format!("/session/{session}"), "").await?;
        Ok(info["title"]
            .as_str()
            .filter(|t| *t != placeholder)
            .map(str::to_string))
    })
    .await?;
    assert_eq!(title, "Stub made this title");

    let requests = fx.requests()?;
    let titles: Vec<_> = requests.iter().filter(|r| r.title).collect();
    assert_eq!(titles.len(), 1, "one title request: {requests:#?}");
    let t = titles[0];
    assert_eq!((t.status, t.answer.as_str(), t.tools), (200, "title", 0));
    assert!(
        t.last_user.contains("[[title:Stub made this title]]"),
        "{t:?}"
    );
    let turn: Vec<_> = requests.iter().filter(|r| !r.title).collect();
    assert_eq!(turn.len(), 1, "{requests:#?}");
    assert_eq!(turn[0].answer, "reply");
    assert!(
        turn[0].tools > 0,
        "the turn request offers tools: {:?}",
        turn[0]
    );
    Ok(())
}
