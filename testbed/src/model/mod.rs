//! The OpenAI-compatible stub model OpenCode talks to in tests (`kubeoc-testbed model`).
//!
//! `POST /v1/chat/completions` (streamed SSE chunks ending `data: [DONE]`, or JSON when
//! `stream` is false) and `GET /v1/models`. The answers are scripted by markers in the last
//! user message; see [`script`] for the markers and how the session-title request is detected.
//! The first line on stdout is `listening on http://ADDR:PORT`.

pub mod script;

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;
use serde_json::Value;
use tokio::sync::Mutex;

use script::{Answer, AnswerKind, ChatRequest, ResponseMeta};

/// Flags of `kubeoc-testbed model`.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Address to listen on (port 0 picks a free port; the first stdout line names it).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Append one JSON line per request to this file (path, model, markers, title request...).
    #[arg(long)]
    pub requests_log: Option<PathBuf>,
}

struct Stub {
    next_id: AtomicU64,
    log: Option<Mutex<std::fs::File>>,
}

/// One line of the requests log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoggedRequest {
    pub path: String,
    pub model: Option<String>,
    pub stream: Option<bool>,
    /// Whether this was OpenCode's session-title request.
    pub title: bool,
    /// Marker names found in the last user message, e.g. `["reply", "slow"]`.
    pub markers: Vec<String>,
    /// `title`, `reply`, `echo`, `tool_call`, `tool_result`, `error`, `models`, `bad_request`.
    pub answer: String,
    pub status: u16,
    pub messages: usize,
    pub tools: usize,
    /// The last user message, cut to 200 characters.
    pub last_user: String,
}

/// Reads a requests log written with `--requests-log` (skips lines that do not parse).
pub fn read_requests_log(path: &std::path::Path) -> anyhow::Result<Vec<LoggedRequest>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

pub async fn run(args: ModelArgs) -> anyhow::Result<()> {
    let log = match &args.requests_log {
        Some(path) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening requests log {}", path.display()))?,
        )),
        None => None,
    };
    let stub = Arc::new(Stub {
        next_id: AtomicU64::new(1),
        log,
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(stub);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{addr}").context("writing to stdout")?;
        stdout.flush().context("flushing stdout")?;
    }
    tracing::info!(%addr, "stub model listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving the stub model")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

impl Stub {
    async fn record(&self, entry: LoggedRequest) {
        tracing::info!(
            path = %entry.path,
            answer = %entry.answer,
            status = entry.status,
            title = entry.title,
            markers = ?entry.markers,
            "request"
        );
        let Some(log) = &self.log else { return };
        let Ok(mut line) = serde_json::to_string(&entry) else {
            return;
        };
        line.push('\n');
        let mut file = log.lock().await;
        if let Err(err) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
            tracing::warn!(%err, "cannot write the requests log");
        }
    }

    fn meta(&self, model: &str) -> ResponseMeta {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        ResponseMeta {
            id: format!("chatcmpl-stub-{n}"),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: model.to_string(),
        }
    }
}

async fn models(State(stub): State<Arc<Stub>>, uri: Uri) -> Response {
    stub.record(LoggedRequest {
        path: uri.path().to_string(),
        model: None,
        stream: None,
        title: false,
        markers: Vec::new(),
        answer: "models".to_string(),
        status: 200,
        messages: 0,
        tools: 0,
        last_user: String::new(),
    })
    .await;
    axum::Json(script::models_list()).into_response()
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn chat_completions(State(stub): State<Arc<Stub>>, uri: Uri, body: Bytes) -> Response {
    tracing::debug!(body = %String::from_utf8_lossy(&body), "chat completion request");
    let request = match ChatRequest::parse(&body) {
        Ok(request) => request,
        Err(err) => {
            stub.record(LoggedRequest {
                path: uri.path().to_string(),
                model: None,
                stream: None,
                title: false,
                markers: Vec::new(),
                answer: "bad_request".to_string(),
                status: 400,
                messages: 0,
                tools: 0,
                last_user: String::new(),
            })
            .await;
            return json_response(StatusCode::BAD_REQUEST, &script::error_body(400, &err.0));
        }
    };
    let (answer, kind) = script::decide(&request);
    let status = match &answer {
        Answer::Error { status, .. } => *status,
        _ => 200,
    };
    stub.record(LoggedRequest {
        path: uri.path().to_string(),
        model: Some(request.model.clone()),
        stream: Some(request.stream),
        title: kind == AnswerKind::Title,
        markers: script::parse_markers(request.last_user_text())
            .names()
            .into_iter()
            .map(str::to_string)
            .collect(),
        answer: kind.as_str().to_string(),
        status,
        messages: request.messages.len(),
        tools: request.tool_count,
        last_user: request.last_user_text().chars().take(200).collect(),
    })
    .await;

    if let Answer::Error { status, message } = &answer {
        let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST);
        return json_response(code, &script::error_body(*status, message));
    }
    let meta = stub.meta(&request.model);
    if !request.stream {
        return json_response(
            StatusCode::OK,
            &script::completion(&meta, &request, &answer),
        );
    }
    let delay = match &answer {
        Answer::Text { delay_ms, .. } => Duration::from_millis(*delay_ms),
        _ => Duration::ZERO,
    };
    let events: Vec<String> = script::stream_chunks(&meta, &request, &answer)
        .iter()
        .map(script::sse_event)
        .chain(std::iter::once(script::SSE_DONE.to_string()))
        .collect();
    let stream = futures::stream::iter(events.into_iter().enumerate()).then(move |(i, event)| {
        async move {
            // The first chunk (the role) goes out at once; each later one waits `delay`.
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, Infallible>(Bytes::from(event))
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
