//! The controller's requests in a time window, from the apiserver's audit log (the testbed
//! logs every request at Metadata level; rotated files are read too).

use std::path::Path;

use anyhow::Context as _;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

/// The controller's requests in a window, by kind of request.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Counts {
    /// create, update, patch, delete: not of Leases.
    pub writes: usize,
    /// Lease renewals and takeovers (leader election), counted apart.
    pub lease_writes: usize,
    /// get and list, not through the service proxy.
    pub reads: usize,
    /// Requests through the service proxy (health checks of the servers).
    pub proxied: usize,
    /// Watches started (reconnects of the controller's informers).
    pub watches: usize,
}

const CONTROLLER_AGENT: &str = "kubeoc-controller/";

fn classify(entry: &Value, counts: &mut Counts) {
    let verb = entry["verb"].as_str().unwrap_or_default();
    // Long-running requests (watches, proxied calls) are logged when the response starts and
    // again when it completes: count a watch when it starts, anything else when it completes.
    let stage = entry["stage"].as_str().unwrap_or("ResponseComplete");
    let counted_stage = if verb == "watch" {
        "ResponseStarted"
    } else {
        "ResponseComplete"
    };
    if stage != counted_stage {
        return;
    }
    let object = &entry["objectRef"];
    if object["subresource"].as_str() == Some("proxy") {
        counts.proxied += 1;
        return;
    }
    match verb {
        "watch" => counts.watches += 1,
        "get" | "list" => counts.reads += 1,
        _ if object["resource"].as_str() == Some("leases") => counts.lease_writes += 1,
        _ => counts.writes += 1,
    }
}

/// Whether a request is in namespace `ns` or cluster-wide: not another namespace's (other
/// controllers may run beside the bench's, each in its own namespace).
fn in_scope(entry: &Value, ns: &str) -> bool {
    let uri = entry["requestURI"].as_str().unwrap_or_default();
    !uri.contains("/namespaces/")
        || uri.contains(&format!("/namespaces/{ns}/"))
        || uri.ends_with(&format!("/namespaces/{ns}"))
}

/// The requests of the controller of namespace `ns` received in `[from, to)`, from
/// `logs/audit*.log`.
pub fn controller_requests(
    log_dir: &Path,
    ns: &str,
    from: Timestamp,
    to: Timestamp,
) -> anyhow::Result<Counts> {
    let mut counts = Counts::default();
    let entries =
        std::fs::read_dir(log_dir).with_context(|| format!("reading {}", log_dir.display()))?;
    for file in entries {
        let path = file?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !(name.starts_with("audit") && name.ends_with(".log")) {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines().filter(|l| l.contains(CONTROLLER_AGENT)) {
            let Ok(entry) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if !entry["userAgent"]
                .as_str()
                .is_some_and(|ua| ua.starts_with(CONTROLLER_AGENT))
                || !in_scope(&entry, ns)
            {
                continue;
            }
            let received = entry["requestReceivedTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok());
            if received.is_some_and(|t| t >= from && t < to) {
                classify(&entry, &mut counts);
            }
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_told_apart_by_verb_resource_and_subresource() {
        let mut counts = Counts::default();
        for (verb, resource, subresource) in [
            ("get", "deployments", None),
            ("list", "pods", None),
            ("watch", "agents", None),
            ("get", "services", Some("proxy")),
            ("patch", "agents", Some("status")),
            ("create", "events", None),
            ("update", "leases", None),
        ] {
            let stage = if verb == "watch" {
                "ResponseStarted"
            } else {
                "ResponseComplete"
            };
            let entry = json!({"verb": verb, "stage": stage,
                               "objectRef": {"resource": resource, "subresource": subresource}});
            classify(&entry, &mut counts);
        }
        assert_eq!(
            counts,
            Counts {
                writes: 2,
                lease_writes: 1,
                reads: 2,
                proxied: 1,
                watches: 1
            }
        );
    }

    #[test]
    fn a_long_running_request_counts_once() {
        let mut counts = Counts::default();
        let proxied = |stage: &str| {
            json!({"verb": "get", "stage": stage,
                   "objectRef": {"resource": "services", "subresource": "proxy"}})
        };
        let watch = |stage: &str| json!({"verb": "watch", "stage": stage, "objectRef": {"resource": "pods"}});
        for entry in [
            proxied("ResponseStarted"),
            proxied("ResponseComplete"),
            watch("ResponseStarted"),
            watch("ResponseComplete"),
        ] {
            classify(&entry, &mut counts);
        }
        assert_eq!(
            counts,
            Counts {
                proxied: 1,
                watches: 1,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn another_namespace_is_out_of_scope() {
        let at = |uri: &str| json!({"requestURI": uri});
        assert!(in_scope(
            &at("/apis/kubeopencode.io/v1alpha1/namespaces/b/agents"),
            "b"
        ));
        assert!(in_scope(&at("/api/v1/namespaces/b"), "b"));
        assert!(in_scope(
            &at("/apis/apiextensions.k8s.io/v1/customresourcedefinitions"),
            "b"
        ));
        assert!(!in_scope(&at("/api/v1/namespaces/other/pods"), "b"));
        assert!(!in_scope(&at("/api/v1/namespaces/bb/pods"), "b"));
    }
}
