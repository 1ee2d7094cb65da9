//! HTTP to an OpenCode server through the apiserver's service proxy, with the user's (or the
//! controller's) kubeconfig credentials. The apiserver strips `Authorization` after
//! authenticating the caller, so OpenCode's password travels as the `auth_token` query
//! parameter (base64 of `opencode:<password>`).

use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use super::types::{Session, SessionStatuses};

/// Username OpenCode expects with `OPENCODE_SERVER_PASSWORD`.
pub const SERVER_USERNAME: &str = "opencode";

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

/// `auth_token` for HTTP Basic `opencode:<password>`, percent-encoded for a query string.
pub fn auth_token(password: &str) -> String {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{SERVER_USERNAME}:{password}"));
    encoded
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// An OpenCode server behind Service `service` (port named `http`) in `namespace`.
#[derive(Clone)]
pub struct ServerProxy {
    client: kube::Client,
    namespace: String,
    service: String,
    password: String,
    /// OpenCode keeps sessions per project directory: the Agent's workspaceDir.
    directory: String,
    timeout: Duration,
}

impl std::fmt::Debug for ServerProxy {
    // The password never appears in debug output or logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProxy")
            .field("namespace", &self.namespace)
            .field("service", &self.service)
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
            namespace: namespace.to_string(),
            service: service.to_string(),
            password: password.to_string(),
            directory: directory.to_string(),
            timeout: Duration::from_secs(10),
        }
    }

    /// The proxy path of `path` (which starts with `/`), with directory and auth_token.
    fn uri(&self, path: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        let directory = self
            .directory
            .replace('%', "%25")
            .replace('&', "%26")
            .replace(' ', "%20");
        format!(
            "/api/v1/namespaces/{}/services/{}:http/proxy{path}{separator}directory={directory}&auth_token={}",
            self.namespace,
            self.service,
            auth_token(&self.password)
        )
    }

    /// A GET whose body is JSON. Every call has a deadline: OpenCode can leave a request that
    /// arrives while it starts up unanswered.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ProxyError> {
        let request = http::Request::get(self.uri(path))
            .body(Vec::new())
            .map_err(|e| ProxyError::Decode(e.to_string()))?;
        let call = self.client.request_text(request);
        let text = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => return Err(ProxyError::Timeout(self.timeout)),
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
        serde_json::from_str(&text).map_err(|e| {
            ProxyError::Decode(format!(
                "{e}: {}",
                text.chars().take(200).collect::<String>()
            ))
        })
    }

    /// OpenCode's own health report.
    pub async fn health(&self) -> Result<Health, ProxyError> {
        self.get_json("/global/health").await
    }

    /// The sessions of the Agent's workspace directory.
    pub async fn sessions(&self) -> Result<Vec<Session>, ProxyError> {
        self.get_json("/session").await
    }

    /// Sessions that are not idle, by session ID.
    pub async fn session_statuses(&self) -> Result<SessionStatuses, ProxyError> {
        self.get_json("/session/status").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_token_is_url_safe_basic_credentials() {
        // base64("opencode:pw?>") = "b3BlbmNvZGU6cHc/Pg==": '/' and '=' must be encoded.
        assert_eq!(auth_token("pw?>"), "b3BlbmNvZGU6cHc%2FPg%3D%3D");
    }
}
