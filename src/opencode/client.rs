//! HTTP to an OpenCode server through the apiserver's service proxy, with the user's (or the
//! controller's) kubeconfig credentials; or, for a controller in the cluster, straight at the
//! Agent's Service. The apiserver strips `Authorization` after
//! authenticating the caller, so OpenCode's password travels in the pod front's own header
//! ([`crate::front::CREDENTIAL_HEADER`]); never in the URL, which the apiserver's audit log
//! records.

use std::time::Duration;

use serde::Deserialize;

use futures::{Stream, StreamExt as _, TryStreamExt as _};

use super::events::{self, Event, StreamError};
use super::types::{Message, PermissionReply, Session, SessionStatuses};
use crate::front::{CREDENTIAL_HEADER, basic_credential};

/// Errors of a proxied call, classified the way status conditions report them.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the server refused the password (HTTP 401)")]
    Unauthorized,
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("{0}")]
    Transport(#[from] kube::Error),
    #[error("unexpected answer: {0}")]
    Decode(String),
}

/// A client for [`ServerProxy::direct`]: plain HTTP to whatever absolute URL a request names,
/// with one connection pool for every server (no apiserver, no TLS, no kubeconfig).
pub fn direct_client() -> kube::Client {
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<kube::client::Body>();
    kube::Client::new(http, "default")
}

/// An OpenCode server behind Service `service` (port named `http`) in `namespace`, or behind
/// one pod's port, reached through the apiserver's proxy.
#[derive(Clone)]
pub struct ServerProxy {
    client: kube::Client,
    /// The apiserver's proxy path of the server: `/api/v1/namespaces/<ns>/services/<svc>:http/proxy`
    /// or `/api/v1/namespaces/<ns>/pods/<pod>:<port>/proxy`.
    base: String,
    /// `Basic base64(opencode:<password>)`, sent in the front's header.
    credential: String,
    /// OpenCode keeps sessions per project directory: the Agent's workspaceDir.
    directory: String,
    timeout: Duration,
}

impl std::fmt::Debug for ServerProxy {
    // The password never appears in debug output or logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProxy")
            .field("base", &self.base)
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

/// `GET /global/health`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Health {
    pub healthy: bool,
    pub version: String,
}

/// The OpenCode servers kubeoc speaks to: the 1.x API (sessions, `prompt_async`, `/event`),
/// tested with 1.18.33. OpenCode 2.x changed the API and its auth defaults.
pub const SUPPORTED_VERSIONS: &str = "OpenCode 1.x (tested with 1.18.33)";

impl Health {
    /// Whether kubeoc speaks this server's API; the error says which versions it does.
    pub fn check_supported(&self) -> Result<(), String> {
        let major = self
            .version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok());
        match major {
            Some(1) => Ok(()),
            _ => Err(format!(
                "the server runs OpenCode {}, whose API kubeoc does not speak; kubeoc supports {SUPPORTED_VERSIONS}: \
                 pin the Agent's image to an opencode-ai 1.x release",
                self.version
            )),
        }
    }
}

impl ServerProxy {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        service: &str,
        password: &str,
        directory: &str,
    ) -> Self {
        Self {
            client,
            base: format!("/api/v1/namespaces/{namespace}/services/{service}:http/proxy"),
            credential: basic_credential(password),
            directory: directory.to_string(),
            timeout: Duration::from_secs(10),
        }
    }

    /// The server of pod `pod` on `port` (a templateRef Task's own server), through the
    /// apiserver's pod proxy.
    pub fn pod(
        client: kube::Client,
        namespace: &str,
        pod: &str,
        port: i32,
        password: &str,
        directory: &str,
    ) -> Self {
        Self {
            base: format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy"),
            ..Self::new(client, namespace, "", password, directory)
        }
    }

    /// A server reached straight at `url` (`http://<host>:<port>`), without the apiserver:
    /// in-cluster, the Agent's Service; in the bench, the pod's address. `client` is a
    /// [`direct_client`].
    pub fn direct(client: kube::Client, url: &str, password: &str, directory: &str) -> Self {
        Self {
            base: url.trim_end_matches('/').to_string(),
            ..Self::new(client, "", "", password, directory)
        }
    }

    /// The proxy path of `path` (which starts with `/` and may carry a query), with the
    /// `directory` parameter added.
    fn uri(&self, path: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        let directory = form_urlencoded::Serializer::new(String::new())
            .append_pair("directory", &self.directory)
            .finish();
        format!("{}{path}{separator}{directory}", self.base)
    }

    /// A request to `path` with the credential header.
    fn request(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<http::Request<Vec<u8>>, ProxyError> {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(self.uri(path))
            .header(CREDENTIAL_HEADER, &self.credential);
        if !body.is_empty() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        builder
            .body(body)
            .map_err(|e| ProxyError::Decode(e.to_string()))
    }

    /// A GET whose body is JSON. Every call has a deadline: OpenCode can leave a request that
    /// arrives while it starts up unanswered.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ProxyError> {
        let request = self.request(http::Method::GET, path, Vec::new())?;
        self.call(request, self.timeout).await
    }

    /// A POST of `body` whose answer is JSON, with its own deadline (a prompt waits for the
    /// model's whole answer).
    pub async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
        deadline: Duration,
    ) -> Result<T, ProxyError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ProxyError::Decode(e.to_string()))?;
        let request = self.request(http::Method::POST, path, bytes)?;
        self.call(request, deadline).await
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: http::Request<Vec<u8>>,
        deadline: Duration,
    ) -> Result<T, ProxyError> {
        let text = self.call_text(request, deadline).await?;
        serde_json::from_str(&text).map_err(|e| {
            ProxyError::Decode(format!(
                "{e}: {}",
                text.chars().take(200).collect::<String>()
            ))
        })
    }

    async fn call_text(
        &self,
        request: http::Request<Vec<u8>>,
        deadline: Duration,
    ) -> Result<String, ProxyError> {
        let call = self.client.request_text(request);
        let text = match tokio::time::timeout(deadline, call).await {
            Err(_) => return Err(ProxyError::Timeout(deadline)),
            Ok(Err(kube::Error::Api(status))) if status.code == 401 => {
                return Err(ProxyError::Unauthorized);
            }
            Ok(Err(kube::Error::Api(status))) => {
                return Err(ProxyError::Status {
                    status: status.code,
                    body: status.message.clone(),
                });
            }
            Ok(result) => result?,
        };
        Ok(text)
    }

    /// A POST whose answer is ignored (204 or a JSON boolean).
    async fn post_empty(&self, path: &str, body: &serde_json::Value) -> Result<(), ProxyError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ProxyError::Decode(e.to_string()))?;
        let request = self.request(http::Method::POST, path, bytes)?;
        self.call_text(request, self.timeout).await.map(drop)
    }

    /// A new session (`POST /session`).
    pub async fn create_session(&self, title: &str) -> Result<Session, ProxyError> {
        self.post_json(
            "/session",
            &serde_json::json!({"title": title}),
            self.timeout,
        )
        .await
    }

    /// One session (`GET /session/{id}`).
    pub async fn session(&self, id: &str) -> Result<Session, ProxyError> {
        self.get_json(&format!("/session/{id}")).await
    }

    /// Deletes a session and its messages (`DELETE /session/{id}`).
    pub async fn delete_session(&self, id: &str) -> Result<(), ProxyError> {
        let request = self.request(http::Method::DELETE, &format!("/session/{id}"), Vec::new())?;
        self.call_text(request, self.timeout).await.map(drop)
    }

    /// A session's messages with their parts, oldest first (`GET /session/{id}/message`).
    pub async fn messages(&self, session: &str) -> Result<Vec<Message>, ProxyError> {
        self.get_json(&format!("/session/{session}/message")).await
    }

    /// Sends a prompt and waits for the whole answer (`POST /session/{id}/message`).
    pub async fn prompt(
        &self,
        session: &str,
        text: &str,
        deadline: Duration,
    ) -> Result<Message, ProxyError> {
        self.post_json(
            &format!("/session/{session}/message"),
            &prompt_body(text),
            deadline,
        )
        .await
    }

    /// Starts a turn and returns at once (`POST /session/{id}/prompt_async`, 204); the answer
    /// arrives on [`Self::events`].
    pub async fn prompt_async(&self, session: &str, text: &str) -> Result<(), ProxyError> {
        self.post_empty(
            &format!("/session/{session}/prompt_async"),
            &prompt_body(text),
        )
        .await
    }

    /// Stops a session's running turn (`POST /session/{id}/abort`).
    pub async fn abort(&self, session: &str) -> Result<(), ProxyError> {
        self.post_empty(&format!("/session/{session}/abort"), &serde_json::json!({}))
            .await
    }

    /// Answers a tool call's permission request (`POST /permission/{id}/reply`).
    pub async fn reply_permission(
        &self,
        request: &str,
        reply: PermissionReply,
    ) -> Result<(), ProxyError> {
        self.post_empty(
            &format!("/permission/{request}/reply"),
            &serde_json::json!({"reply": reply.as_str()}),
        )
        .await
    }

    /// Permission requests waiting for an answer (`GET /permission`).
    pub async fn pending_permissions(
        &self,
    ) -> Result<Vec<super::types::PermissionRequest>, ProxyError> {
        self.get_json("/permission").await
    }

    /// The server's event stream (`GET /event`). The call waits only for the response head;
    /// the stream itself has no deadline: the caller watches the 10 s heartbeats.
    pub async fn events(
        &self,
    ) -> Result<impl Stream<Item = Result<Event, StreamError>> + Send + use<>, ProxyError> {
        let request = self
            .request(http::Method::GET, "/event", Vec::new())?
            .map(kube::client::Body::from);
        let response = tokio::time::timeout(self.timeout, self.client.send(request))
            .await
            .map_err(|_| ProxyError::Timeout(self.timeout))??;
        let status = response.status().as_u16();
        if status == 401 {
            return Err(ProxyError::Unauthorized);
        }
        if status != 200 {
            let body = response
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            return Err(ProxyError::Status {
                status,
                body: String::from_utf8_lossy(&body).chars().take(300).collect(),
            });
        }
        let bytes = http_body_util::BodyDataStream::new(response.into_body());
        Ok(events::decode_stream(
            bytes.map_err(|e| e.to_string()).boxed(),
        ))
    }

    /// Passes one request of a local OpenCode client through to the server (`attach
    /// --opencode`): the client's own `directory` gives way to the Agent's workspace, and
    /// the credential is this proxy's. The response streams back as the server sends it.
    pub async fn forward(
        &self,
        method: http::Method,
        path_and_query: &str,
        content_type: Option<&http::HeaderValue>,
        body: Vec<u8>,
    ) -> Result<http::Response<kube::client::Body>, ProxyError> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let kept: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k != "directory" && k != "auth_token")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let path = if kept.is_empty() {
            path.to_string()
        } else {
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(kept)
                .finish();
            format!("{path}?{query}")
        };
        let mut request = self.request(method, &path, Vec::new())?;
        if let Some(value) = content_type {
            request
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, value.clone());
        }
        let request = request.map(|_| kube::client::Body::from(body));
        Ok(self.client.send(request).await?)
    }

    /// OpenCode's own health report.
    pub async fn health(&self) -> Result<Health, ProxyError> {
        self.get_json("/global/health").await
    }

    /// The sessions of the Agent's workspace directory.
    pub async fn sessions(&self) -> Result<Vec<Session>, ProxyError> {
        self.get_json("/session").await
    }

    /// The session titled exactly `title`, if there is one (the newest when there are several).
    pub async fn session_titled(&self, title: &str) -> Result<Option<Session>, ProxyError> {
        let search = form_urlencoded::Serializer::new(String::new())
            .append_pair("search", title)
            .finish();
        let found: Vec<Session> = self.get_json(&format!("/session?{search}")).await?;
        Ok(found
            .into_iter()
            .filter(|s| s.title == title)
            .max_by_key(|s| s.time.created))
    }

    /// Sessions that are not idle, by session ID.
    pub async fn session_statuses(&self) -> Result<SessionStatuses, ProxyError> {
        self.get_json("/session/status").await
    }
}

fn prompt_body(text: &str) -> serde_json::Value {
    serde_json::json!({"parts": [{"type": "text", "text": text}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(directory: &str) -> ServerProxy {
        let config = kube::Config::new("https://127.0.0.1:1".parse().expect("url"));
        let client = kube::Client::try_from(config).expect("client");
        ServerProxy::new(client, "team", "team-agent", "pw", directory)
    }

    #[tokio::test]
    async fn the_directory_is_query_encoded_and_the_password_stays_out_of_the_uri() {
        let uri = proxy("/work space/a+b#c?d&e=f/ü").uri("/session");
        assert_eq!(
            uri,
            "/api/v1/namespaces/team/services/team-agent:http/proxy/session?directory=%2Fwork+space%2Fa%2Bb%23c%3Fd%26e%3Df%2F%C3%BC"
        );
        let with_query = proxy("/workspace").uri("/file?path=a");
        assert!(
            with_query.ends_with("/file?path=a&directory=%2Fworkspace"),
            "{with_query}"
        );
        let request = proxy("/workspace")
            .request(http::Method::GET, "/global/health", Vec::new())
            .expect("request");
        assert!(!request.uri().to_string().contains("auth_token"));
        assert_eq!(
            request.headers()[CREDENTIAL_HEADER],
            "Basic b3BlbmNvZGU6cHc="
        );
        let config = kube::Config::new("https://127.0.0.1:1".parse().expect("url"));
        let client = kube::Client::try_from(config).expect("client");
        let pod = ServerProxy::pod(client, "team", "lint-pod", 4096, "pw", "/w");
        assert_eq!(
            pod.uri("/session"),
            "/api/v1/namespaces/team/pods/lint-pod:4096/proxy/session?directory=%2Fw"
        );
    }

    /// A server of its own on loopback answers a direct client's health check: requests
    /// carry the absolute URL and the credential header.
    #[tokio::test]
    async fn a_direct_client_reaches_the_server_at_its_url() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let served = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let service = hyper::service::service_fn(|request: http::Request<_>| async move {
                let seen = format!(
                    "{} {}",
                    request.uri(),
                    request.headers().contains_key(CREDENTIAL_HEADER)
                );
                let body = serde_json::json!({"healthy": true, "version": seen}).to_string();
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from(body),
                )))
            });
            hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
                .expect("serve");
        });
        let server = ServerProxy::direct(
            direct_client(),
            &format!("http://{address}/"),
            "pw",
            "/workspace",
        );
        let health = server.health().await.expect("health");
        assert!(health.healthy);
        assert_eq!(health.version, "/global/health?directory=%2Fworkspace true");
        served.abort();
    }
}
