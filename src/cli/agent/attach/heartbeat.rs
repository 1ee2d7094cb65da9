//! While someone is attached the Agent counts as in use: the attach stamps
//! [`ATTACH_HEARTBEAT_ANNOTATION`] with the time now and again every
//! [`ATTACH_HEARTBEAT_INTERVAL`], and standby leaves an Agent with a fresh stamp running
//! however quiet the chat is.

use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::api::{ATTACH_HEARTBEAT_ANNOTATION, ATTACH_HEARTBEAT_INTERVAL, Agent};
use crate::cluster::{Cluster, FIELD_MANAGER};

/// The running heartbeat; [`Heartbeat::stop`] ends it.
pub struct Heartbeat(Option<JoinHandle<()>>);

async fn beat(api: &Api<Agent>, name: &str) -> Result<(), kube::Error> {
    let patch = json!({"metadata": {"annotations": {
        ATTACH_HEARTBEAT_ANNOTATION: Timestamp::now().to_string()
    }}});
    let params = PatchParams {
        field_manager: Some(format!("{FIELD_MANAGER}-attach")),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch))
        .await
        .map(drop)
}

/// Stamps the Agent now (a refusal is reported once, on stderr, before any screen opens) and
/// keeps stamping it in the background.
pub async fn start(cluster: &Cluster, ns: &str, name: &str) -> Heartbeat {
    let api: Api<Agent> = Api::namespaced(cluster.client.clone(), ns);
    if let Err(e) = beat(&api, name).await {
        let why = match &e {
            kube::Error::Api(s) if s.code == 403 => format!(
                "you may not patch Agent {ns}/{name} (a Role needs: apiGroups [\"kubeopencode.io\"], resources [\"agents\"], verbs [\"patch\"])"
            ),
            other => other.to_string(),
        };
        eprintln!(
            "warning: cannot mark agent {name:?} as in use ({why}); its standby may suspend it while you are attached"
        );
        return Heartbeat(None);
    }
    let name = name.to_string();
    Heartbeat(Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(ATTACH_HEARTBEAT_INTERVAL);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Err(e) = beat(&api, &name).await {
                tracing::debug!("attach heartbeat of agent {name}: {e}");
            }
        }
    })))
}

impl Heartbeat {
    pub async fn stop(self) {
        if let Some(task) = self.0 {
            task.abort();
            let _ = task.await;
        }
    }
}
