//! What tests and the benchmarks share about Agents on the testbed: the stub model their
//! OpenCode servers talk to, and the password the controller gave a server.

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use serde_json::{Value, json};

/// The host's address on the testbed bridge: pods reach servers the tests start there.
pub const BRIDGE_HOST: &str = "10.244.0.1";

/// The stub model on the testbed bridge (`model_addr` in testbed/scripts/lib.sh), the only
/// model an OpenCode server on the testbed can reach.
pub const MODEL_ADDR: &str = "10.244.0.1:18080";

/// The workspace directory of the Agents tests and benchmarks create.
pub const WORKSPACE: &str = "/workspace";

/// An inline opencode.json that points OpenCode at the testbed's stub model, so the server
/// starts and answers offline.
pub fn stub_model_config() -> Value {
    json!({
        "provider": {"stub": {
            "npm": "@ai-sdk/openai-compatible",
            "options": {"baseURL": format!("http://{MODEL_ADDR}/v1"), "apiKey": "x"},
            "models": {"stub-model": {}},
        }},
        "model": "stub/stub-model",
    })
}

/// An Agent manifest on the stub model (workspace [`WORKSPACE`], the kubeopencode-agent
/// ServiceAccount) with `extra_spec`'s fields added to its spec (they replace those).
pub fn agent_manifest(name: &str, extra_spec: Value) -> Value {
    let mut spec = json!({
        "workspaceDir": WORKSPACE,
        "serviceAccountName": "kubeopencode-agent",
        "config": stub_model_config(),
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    json!({"apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent",
           "metadata": {"name": name}, "spec": spec})
}

/// The password of the Agent's OpenCode server, from its `<agent>-server-auth` Secret.
pub async fn server_password(client: &Client, ns: &str, agent: &str) -> anyhow::Result<String> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get(&format!("{agent}-server-auth"))
        .await?;
    secret
        .data
        .and_then(|d| {
            d.get("password")
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        })
        .filter(|p| !p.is_empty())
        .context("no password in the auth Secret")
}
