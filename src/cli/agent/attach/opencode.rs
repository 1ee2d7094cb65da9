//! `agent attach --opencode`: the user's own `opencode attach` (OpenCode's terminal UI) talks
//! to a proxy on loopback, which passes each request through the apiserver's service proxy
//! with the Agent's credential. The real password never reaches the child: the proxy checks
//! a one-time password of its own, handed to the child in its environment (never in its
//! arguments, which `ps` shows).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::connect::Attached;
use crate::front::{PASSWORD_ENV, authorized, basic_credential};
use crate::opencode::client::ServerProxy;

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(message.to_string()))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
}

/// The `opencode` binary on PATH.
fn find_opencode() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("opencode"))
        .find(|candidate| candidate.is_file())
}

async fn handle(
    proxy: ServerProxy,
    credential: String,
    request: Request<Incoming>,
) -> Response<Body> {
    if !authorized(request.headers(), &credential) {
        return text(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let method = request.method().clone();
    let target = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let content_type = request.headers().get(http::header::CONTENT_TYPE).cloned();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().to_vec(),
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("reading the request: {e}"),
            );
        }
    };
    match proxy
        .forward(method, &target, content_type.as_ref(), body)
        .await
    {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            Response::from_parts(parts, body.map_err(std::io::Error::other).boxed_unsync())
        }
        Err(e) => text(StatusCode::BAD_GATEWAY, &format!("kubeoc: {e}")),
    }
}

/// Serves the loopback proxy until the process ends.
async fn serve(listener: tokio::net::TcpListener, proxy: ServerProxy, credential: String) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (proxy, credential) = (proxy.clone(), credential.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (proxy, credential) = (proxy.clone(), credential.clone());
                async move { Ok::<_, Infallible>(handle(proxy, credential, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

pub(super) async fn run(attached: &Attached, session: Option<&str>) -> anyhow::Result<()> {
    let Some(binary) = find_opencode() else {
        bail!(
            "--opencode runs your own `opencode attach`, and no `opencode` is on PATH: install OpenCode 1.x \
             (npm install -g opencode-ai@1), or attach without --opencode for kubeoc's chat terminal"
        );
    };
    let mut secret = [0u8; 24];
    getrandom::fill(&mut secret)
        .map_err(|e| anyhow::anyhow!("no randomness for the local password: {e}"))?;
    let local_password: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("opening the loopback proxy")?;
    let address = listener
        .local_addr()
        .context("reading the loopback proxy's address")?;
    let server = tokio::spawn(serve(
        listener,
        attached.proxy.clone(),
        basic_credential(&local_password),
    ));
    let mut command = tokio::process::Command::new(&binary);
    command
        .arg("attach")
        .arg(format!("http://{address}"))
        .env(PASSWORD_ENV, &local_password);
    if let Some(id) = session {
        command.args(["--session", id]);
    }
    let status = command
        .status()
        .await
        .with_context(|| format!("running {}", binary.display()));
    server.abort();
    let status = status?;
    if !status.success() {
        bail!("opencode attach exited with {status}");
    }
    Ok(())
}
