//! What the apiserver recorded: its audit log (by user agent and verb, from a byte offset on)
//! and the Events kubeoc-controller published.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::jiff::Timestamp;
use kubeoc_testbed::{state_dir, wait_until};
use serde_json::Value;

/// The audit log from one point on.
pub struct AuditLog {
    offset: u64,
    started: Timestamp,
}

fn path() -> std::path::PathBuf {
    state_dir().join("logs/audit.log")
}

/// Whether an entry is a request of the controller into namespace `ns`.
fn by_controller_in(entry: &Value, ns: &str) -> bool {
    entry["userAgent"]
        .as_str()
        .is_some_and(|ua| ua.starts_with("kubeoc-controller/"))
        && entry["requestURI"]
            .as_str()
            .is_some_and(|uri| uri.contains(&format!("/namespaces/{ns}/")))
}

impl AuditLog {
    /// Starts reading at the current end of the log.
    pub fn now() -> anyhow::Result<Self> {
        Ok(Self::from_offset(std::fs::metadata(path())?.len()))
    }

    /// Starts reading at `offset` bytes.
    pub fn from_offset(offset: u64) -> Self {
        Self {
            offset,
            started: Timestamp::now(),
        }
    }

    /// When reading started.
    pub fn started(&self) -> Timestamp {
        self.started
    }

    /// The log's text since the start.
    pub fn text(&self) -> anyhow::Result<String> {
        let bytes = std::fs::read(path()).context("reading the audit log")?;
        let tail = bytes.get(self.offset as usize..).unwrap_or_default();
        Ok(String::from_utf8_lossy(tail).into_owned())
    }

    /// The entries (verb, userAgent, requestURI, timestamps) since the start.
    pub fn entries(&self) -> anyhow::Result<Vec<Value>> {
        Ok(self
            .text()?
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// The controller's writes (anything but get/list/watch) into namespace `ns`, as
    /// "verb uri"; other tests run controllers in their own namespaces.
    pub fn controller_writes(&self, ns: &str) -> anyhow::Result<Vec<String>> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|e| by_controller_in(e, ns))
            .filter(|e| !matches!(e["verb"].as_str(), Some("get" | "list" | "watch")))
            .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
            .collect())
    }

    /// Waits for `quiet` without a controller write into `ns`, then starts reading: the last
    /// status writes of a change, and the Events that follow them, land before a steady-state
    /// window opens. Gives up after `timeout`, naming the writes last seen.
    pub async fn after_quiet(ns: &str, quiet: Duration, timeout: Duration) -> anyhow::Result<Self> {
        let last_writes = std::cell::RefCell::new(Vec::new());
        let last = &last_writes;
        wait_until(
            &format!("{quiet:?} without a controller write in namespace {ns}"),
            timeout,
            || async move {
                let window = Self::now()?;
                tokio::time::sleep(quiet).await;
                let writes = window.controller_writes(ns)?;
                let quiet = writes.is_empty();
                *last.borrow_mut() = writes;
                Ok(quiet.then_some(()))
            },
        )
        .await
        .with_context(|| format!("writes in the last window: {:?}", last_writes.borrow()))?;
        Self::now()
    }

    /// The controller's requests into namespace `ns` by verb, as "verb uri".
    pub fn controller_requests_by_verb(&self, ns: &str) -> anyhow::Result<Vec<(String, String)>> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|e| by_controller_in(e, ns) && e["stage"] == "ResponseComplete")
            .map(|e| {
                (
                    e["verb"].as_str().unwrap_or_default().to_string(),
                    e["requestURI"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect())
    }

    /// When the controller sent `verb` requests whose URI contains `fragment` into `ns`, in
    /// seconds after the start.
    pub fn controller_requests(
        &self,
        ns: &str,
        verb: &str,
        fragment: &str,
    ) -> anyhow::Result<Vec<f64>> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|e| by_controller_in(e, ns) && e["verb"] == verb)
            .filter(|e| e["stage"] == "ResponseComplete")
            .filter(|e| {
                e["requestURI"]
                    .as_str()
                    .is_some_and(|u| u.contains(fragment))
            })
            .filter_map(|e| {
                e["requestReceivedTimestamp"]
                    .as_str()?
                    .parse::<Timestamp>()
                    .ok()
            })
            .map(|at| at.duration_since(self.started).as_secs_f64())
            .collect())
    }
}

/// "TYPE REASON" of the Events kubeoc-controller published about Agent `name`, oldest first,
/// from `kubectl get events -o json`.
pub fn agent_event_reasons(events_json: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let list: Value = serde_json::from_str(events_json)?;
    let mut events: Vec<&Value> = list["items"]
        .as_array()
        .context("events without items")?
        .iter()
        .filter(|e| {
            e["involvedObject"]["kind"] == "Agent"
                && e["involvedObject"]["name"] == name
                && e["reportingComponent"] == "kubeoc-controller"
        })
        .collect();
    events.sort_by_key(|e| e["eventTime"].as_str().unwrap_or_default().to_string());
    Ok(events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap_or_default(),
                e["reason"].as_str().unwrap_or_default()
            )
        })
        .collect())
}
