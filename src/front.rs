//! The authenticating front of an Agent's server pod (`kubectl-kubeoc front`, a container of
//! its own beside `opencode serve`).
//!
//! Why it exists: the kube-apiserver's service proxy deletes `Authorization` after it has
//! authenticated the caller, and OpenCode's only other way in, the `auth_token` query
//! parameter, puts the password into every request URI, which the apiserver's audit log
//! records. The front accepts the password in a header of our own ([`CREDENTIAL_HEADER`],
//! which the apiserver forwards and the audit log does not record) or, for in-cluster clients
//! such as Task pods, in `Authorization: Basic`; it refuses everything else with 401 and
//! forwards what it accepts to OpenCode on loopback with HTTP Basic. Bodies stream through
//! frame by frame (server-sent events arrive as OpenCode sends them) and upgraded connections
//! (OpenCode's terminal websockets) are spliced.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use subtle::ConstantTimeEq;

/// The header that carries `Basic base64(opencode:<password>)` through the apiserver's service
/// proxy (which drops `Authorization`).
pub const CREDENTIAL_HEADER: &str = "x-kubeoc-authorization";
/// Unauthenticated readiness path: 200 once OpenCode accepts connections on loopback.
pub const READY_PATH: &str = "/.kubeoc/ready";
/// The variable the front and OpenCode read the password from (never an argument: arguments
/// show in `ps`).
pub const PASSWORD_ENV: &str = "OPENCODE_SERVER_PASSWORD";
/// Username OpenCode expects with `OPENCODE_SERVER_PASSWORD`.
pub const SERVER_USERNAME: &str = "opencode";

/// The `Basic` credential for OpenCode's password, as both headers carry it.
pub fn basic_credential(password: &str) -> String {
    let pair = format!("{SERVER_USERNAME}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Where the front listens and forwards, and the password it checks.
#[derive(Clone)]
pub struct FrontOptions {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    pub password: String,
}

impl std::fmt::Debug for FrontOptions {
    // The password never appears in debug output or logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontOptions")
            .field("listen", &self.listen)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let body = Full::new(Bytes::from(format!("{message}\n")))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

/// Whether `value` is exactly the expected credential (compared in constant time).
fn credential_matches(value: Option<&HeaderValue>, expected: &str) -> bool {
    value.is_some_and(|v| bool::from(v.as_bytes().ct_eq(expected.as_bytes())))
}

/// Whether a request carries the password in our header or in `Authorization`.
pub fn authorized(headers: &http::HeaderMap, expected: &str) -> bool {
    credential_matches(headers.get(CREDENTIAL_HEADER), expected)
        || credential_matches(headers.get(AUTHORIZATION), expected)
}

struct Front {
    upstream: SocketAddr,
    credential: String,
    client: HttpClient<HttpConnector, Incoming>,
}

impl Front {
    async fn handle(&self, mut request: Request<Incoming>) -> Response<Body> {
        if request.uri().path() == READY_PATH {
            let reachable = tokio::time::timeout(
                Duration::from_secs(1),
                tokio::net::TcpStream::connect(self.upstream),
            )
            .await
            .is_ok_and(|connected| connected.is_ok());
            return if reachable {
                text(StatusCode::OK, "ok")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the OpenCode server does not accept connections yet",
                )
            };
        }
        if !authorized(request.headers(), &self.credential) {
            let mut response = text(
                StatusCode::UNAUTHORIZED,
                "this OpenCode server needs its password (Secret <agent>-server-auth) in the X-Kubeoc-Authorization or Authorization header",
            );
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"kubeoc\""),
            );
            return response;
        }
        let upgrade = request.headers().contains_key(http::header::UPGRADE);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let Ok(uri) = format!("http://{}{path}", self.upstream).parse::<http::Uri>() else {
            return text(StatusCode::BAD_REQUEST, "invalid request path");
        };
        parts.uri = uri;
        parts.headers.remove(CREDENTIAL_HEADER);
        if let Ok(value) = HeaderValue::from_str(&self.credential) {
            parts.headers.insert(AUTHORIZATION, value);
        }
        if let Ok(host) = HeaderValue::from_str(&self.upstream.to_string()) {
            parts.headers.insert(HOST, host);
        }
        let mut response = match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => response,
            Err(err) => {
                tracing::warn!("forwarding {path}: {err}");
                return text(
                    StatusCode::BAD_GATEWAY,
                    "the OpenCode server did not answer (is it still starting?)",
                );
            }
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let server_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, server_upgrade) {
                    Ok((client, server)) => {
                        let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
                        if let Err(err) =
                            tokio::io::copy_bidirectional(&mut client, &mut server).await
                        {
                            tracing::debug!("upgraded connection ended: {err}");
                        }
                    }
                    Err(err) => tracing::warn!("upgrading the connection: {err}"),
                }
            });
        }
        response.map(BodyExt::boxed)
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    options: FrontOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    tracing::info!(listen = %options.listen, upstream = %options.upstream, "kubeoc front listening");
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let front = std::sync::Arc::new(Front {
        upstream: options.upstream,
        credential: basic_credential(&options.password),
        client: HttpClient::builder(TokioExecutor::new()).build(connector),
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!("accepting a connection: {err}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let front = front.clone();
        let service = hyper::service::service_fn(move |request| {
            let front = front.clone();
            async move { Ok::<_, Infallible>(front.handle(request).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, "connection: {err}");
            }
        });
    }
    // Open connections (event streams never end by themselves) close with the process; the
    // clients reconnect to the next pod.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_credential_in_either_header_is_accepted() {
        let expected = basic_credential("s3cret");
        let mut headers = http::HeaderMap::new();
        assert!(!authorized(&headers, &expected), "no credential");
        headers.insert(
            CREDENTIAL_HEADER,
            HeaderValue::from_str(&expected).expect("header"),
        );
        assert!(authorized(&headers, &expected), "our header");
        let mut basic = http::HeaderMap::new();
        basic.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&expected).expect("header"),
        );
        assert!(authorized(&basic, &expected), "Authorization: Basic");
        let mut wrong = http::HeaderMap::new();
        wrong.insert(
            CREDENTIAL_HEADER,
            HeaderValue::from_str(&basic_credential("s3cres")).expect("header"),
        );
        assert!(!authorized(&wrong, &expected), "another password");
        let mut prefix = http::HeaderMap::new();
        prefix.insert(
            CREDENTIAL_HEADER,
            HeaderValue::from_str(&expected[..expected.len() - 1]).expect("header"),
        );
        assert!(!authorized(&prefix, &expected), "a prefix of it");
    }

    #[test]
    fn the_credential_is_basic_opencode_with_the_password() {
        // base64("opencode:pw") = "b3BlbmNvZGU6cHc="
        assert_eq!(basic_credential("pw"), "Basic b3BlbmNvZGU6cHc=");
    }

    /// A loopback OpenCode stand-in: answers `/event` with a body fed from `chunks`, and any
    /// other path with the `authorization` and credential headers it received.
    async fn upstream(chunks: tokio::sync::mpsc::Receiver<Bytes>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let chunks = std::sync::Arc::new(tokio::sync::Mutex::new(Some(chunks)));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let chunks = chunks.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let chunks = chunks.clone();
                    async move {
                        let body: Body = if request.uri().path() == "/event" {
                            let receiver = chunks.lock().await.take().expect("one event stream");
                            let frames = futures::stream::unfold(receiver, |mut r| async move {
                                let chunk = r.recv().await?;
                                Some((Ok::<_, hyper::Error>(hyper::body::Frame::data(chunk)), r))
                            });
                            http_body_util::StreamBody::new(frames).boxed()
                        } else {
                            let seen = format!(
                                "authorization={:?} credential={:?} query={:?}",
                                request.headers().get(AUTHORIZATION),
                                request.headers().get(CREDENTIAL_HEADER),
                                request.uri().query()
                            );
                            Full::new(Bytes::from(seen))
                                .map_err(|never| match never {})
                                .boxed()
                        };
                        Ok::<_, Infallible>(Response::new(body))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        addr
    }

    async fn start_front(upstream: SocketAddr) -> SocketAddr {
        // Bind first to learn a free port, then hand the front that address.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let listen = probe.local_addr().expect("addr");
        drop(probe);
        let options = FrontOptions {
            listen,
            upstream,
            password: "pw".into(),
        };
        tokio::spawn(serve(options, std::future::pending()));
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(listen).await.is_ok() {
                return listen;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the front did not listen on {listen}");
    }

    async fn get(front: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response<Incoming> {
        let client: HttpClient<HttpConnector, http_body_util::Empty<Bytes>> =
            HttpClient::builder(TokioExecutor::new()).build_http();
        let mut request = Request::get(format!("http://{front}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        client
            .request(request.body(http_body_util::Empty::new()).expect("request"))
            .await
            .expect("an answer")
    }

    async fn body_text(response: Response<Incoming>) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn the_front_refuses_anonymous_calls_and_forwards_with_basic_auth() {
        let (_chunks, receiver) = tokio::sync::mpsc::channel(1);
        let front = start_front(upstream(receiver).await).await;
        let anonymous = get(front, "/global/health", &[]).await;
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        // OpenCode's own query credential is not ours to accept: it would sit in audit logs.
        let token = get(front, "/global/health?auth_token=b3BlbmNvZGU6cHc%3D", &[]).await;
        assert_eq!(token.status(), StatusCode::UNAUTHORIZED);
        let credential = basic_credential("pw");
        let ours = get(
            front,
            "/global/health?directory=%2Fw",
            &[(CREDENTIAL_HEADER, &credential)],
        )
        .await;
        assert_eq!(ours.status(), StatusCode::OK);
        assert_eq!(
            body_text(ours).await,
            format!(
                "authorization=Some({credential:?}) credential=None query=Some(\"directory=%2Fw\")"
            ),
            "forwarded with Basic, our header removed, the query kept"
        );
        let basic = get(front, "/global/health", &[("authorization", &credential)]).await;
        assert_eq!(
            basic.status(),
            StatusCode::OK,
            "in-cluster clients use Basic"
        );
        let ready = get(front, READY_PATH, &[]).await;
        assert_eq!(
            ready.status(),
            StatusCode::OK,
            "readiness needs no password"
        );
    }

    #[tokio::test]
    async fn event_streams_pass_through_chunk_by_chunk() {
        let (chunks, receiver) = tokio::sync::mpsc::channel(1);
        let front = start_front(upstream(receiver).await).await;
        let credential = basic_credential("pw");
        let response = get(front, "/event", &[(CREDENTIAL_HEADER, &credential)]).await;
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        chunks
            .send(Bytes::from_static(b"data: first\n\n"))
            .await
            .expect("send");
        // The second chunk is only sent after the first arrived: a buffering front would
        // hold the first back and this would never finish.
        let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("the first chunk before the stream ends")
            .expect("a frame")
            .expect("data");
        assert_eq!(first.into_data().expect("data"), "data: first\n\n");
        chunks
            .send(Bytes::from_static(b"data: second\n\n"))
            .await
            .expect("send");
        let second = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("the second chunk")
            .expect("a frame")
            .expect("data");
        assert_eq!(second.into_data().expect("data"), "data: second\n\n");
    }

    #[tokio::test]
    async fn readiness_fails_while_opencode_does_not_listen() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let upstream = closed.local_addr().expect("addr");
        drop(closed);
        let front = start_front(upstream).await;
        let ready = get(front, READY_PATH, &[]).await;
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn debug_output_hides_the_password() {
        let options = FrontOptions {
            listen: "127.0.0.1:1".parse().expect("addr"),
            upstream: "127.0.0.1:2".parse().expect("addr"),
            password: "hunter2-very-secret".into(),
        };
        assert!(!format!("{options:?}").contains("hunter2"));
    }
}
