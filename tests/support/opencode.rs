//! An Agent's OpenCode server as a user reaches it: through the apiserver's service proxy,
//! with the password from its `<agent>-server-auth` Secret in the pod front's header.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use kube::Client;
use kubeoc::front::{CREDENTIAL_HEADER, basic_credential};
use kubeoc_testbed::{service_proxy_get_with, wait_until};
use serde_json::{Value, json};

pub use kubeoc_testbed::agents::WORKSPACE;
/// The longest one prompt turn may take.
pub const TURN: Duration = Duration::from_secs(90);

/// An Agent's OpenCode server, reached through the apiserver's service proxy with its password.
pub struct Server {
    client: Client,
    namespace: String,
    service: String,
    /// `Basic base64(opencode:<password>)`, for [`CREDENTIAL_HEADER`].
    credential: String,
}

impl Server {
    pub async fn connect(client: &Client, namespace: &str, agent: &str) -> anyhow::Result<Self> {
        let password = super::server_password(client, namespace, agent).await?;
        Ok(Self {
            client: client.clone(),
            namespace: namespace.to_string(),
            service: format!("{agent}:http"),
            credential: basic_credential(&password),
        })
    }

    fn path(&self, path: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        format!("{path}{separator}directory={WORKSPACE}")
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (code, body) = service_proxy_get_with(
            &self.client,
            &self.namespace,
            &self.service,
            &self.path(path),
            &[(CREDENTIAL_HEADER, &self.credential)],
        )
        .await?;
        ensure!(code == 200, "GET {path}: HTTP {code}: {body}");
        serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON: {body}"))
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<String> {
        let uri = format!(
            "/api/v1/namespaces/{}/services/{}/proxy{}",
            self.namespace,
            self.service,
            self.path(path)
        );
        let request = http::Request::post(uri)
            .header("content-type", "application/json")
            .header(CREDENTIAL_HEADER, &self.credential)
            .body(serde_json::to_vec(body)?)?;
        tokio::time::timeout(Duration::from_secs(30), self.client.request_text(request))
            .await
            .with_context(|| format!("POST {path}: no answer within 30s"))?
            .with_context(|| format!("POST {path}"))
    }

    /// `GET /file/content`: a workspace file as OpenCode reads it ("" when it is missing).
    pub async fn file(&self, path: &str) -> anyhow::Result<String> {
        let content = self.get(&format!("/file/content?path={path}")).await?;
        Ok(content["content"].as_str().unwrap_or_default().to_string())
    }

    /// `GET /file`: the names in a workspace directory.
    pub async fn list(&self, path: &str) -> anyhow::Result<Vec<String>> {
        let nodes = self.get(&format!("/file?path={path}")).await?;
        let mut names: Vec<String> = nodes
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["name"].as_str().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Sends one prompt in a new session and waits for the turn to end; the session's messages.
    pub async fn turn(&self, title: &str, prompt: &str) -> anyhow::Result<Vec<Value>> {
        let created = self.post("/session", &json!({ "title": title })).await?;
        let session: Value = serde_json::from_str(&created)?;
        let id = session["id"]
            .as_str()
            .with_context(|| format!("session without id: {created}"))?
            .to_string();
        self.post(
            &format!("/session/{id}/prompt_async"),
            &json!({"parts": [{"type": "text", "text": prompt}]}),
        )
        .await?;
        let started = Instant::now();
        // Not finished yet is an error, so a timeout reports the messages seen last.
        let messages = wait_until(&format!("the turn of session {title:?}"), TURN, || async {
            let messages = self.get(&format!("/session/{id}/message")).await?;
            let messages = messages.as_array().cloned().unwrap_or_default();
            let finished = messages.last().is_some_and(|m| {
                m["info"]["role"] == "assistant"
                    && m["info"]["time"]["completed"].is_number()
                    && m["info"]["finish"] != "tool-calls"
            });
            ensure!(finished, "turn not finished; messages: {}", json!(messages));
            Ok(Some(messages))
        })
        .await?;
        println!(
            "{}: turn {title:?} answered in {:?}",
            self.service,
            started.elapsed()
        );
        Ok(messages)
    }

    /// Makes OpenCode call tool `name` with `args` (the stub model asks for the call); the
    /// tool part of the answer (`state.status` completed or error, `state.output`...).
    pub async fn tool(&self, title: &str, name: &str, args: &Value) -> anyhow::Result<Value> {
        let messages = self.turn(title, &format!("[[tool:{name}:{args}]]")).await?;
        messages
            .iter()
            .flat_map(|m| m["parts"].as_array().into_iter().flatten())
            .find(|p| p["type"] == "tool" && p["tool"] == name)
            .cloned()
            .with_context(|| format!("no {name} tool part in {}", json!(messages)))
    }

    /// Makes OpenCode run `command` with its bash tool; the tool's output.
    pub async fn bash(&self, title: &str, command: &str) -> anyhow::Result<String> {
        let args = json!({"command": command, "description": title});
        let part = self.tool(title, "bash", &args).await?;
        ensure!(
            part["state"]["status"] == "completed",
            "the bash tool did not complete: {part}"
        );
        Ok(part["state"]["output"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// The lines of OpenCode's system prompt that contain `needle`, quoted by the stub model.
    pub async fn system_lines(&self, needle: &str) -> anyhow::Result<String> {
        let messages = self
            .turn("system prompt", &format!("[[system:{needle}]]"))
            .await?;
        let answer = messages.last().context("no answer")?;
        Ok(answer["parts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["type"] == "text")
            .filter_map(|p| p["text"].as_str())
            .collect())
    }
}
