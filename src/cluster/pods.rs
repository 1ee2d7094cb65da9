//! Reading a pod's status, shared by the controller and the CLI.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// Every container status of `pod`: init containers first (they run first, so their
/// failures explain the rest), then the app containers.
pub fn container_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    status
        .and_then(|s| s.init_container_statuses.as_ref())
        .into_iter()
        .flatten()
        .chain(
            status
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten(),
        )
}

/// Whether the pod's Ready condition is True (for a Task's own server: the front answers and
/// OpenCode accepts requests).
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Why the first waiting container of `pod` waits (`ErrImagePull`, `PodInitializing`, ...).
pub fn waiting_reason(pod: &Pod) -> Option<String> {
    container_statuses(pod).find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn init_containers_come_first_and_explain_the_wait() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {
                "containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}],
                "initContainerStatuses": [{"name": "init", "image": "i", "imageID": "",
                    "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ErrImagePull"}}}]
            }
        }))
        .expect("a pod");
        let names: Vec<&str> = container_statuses(&pod).map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["init", "app"]);
        assert_eq!(waiting_reason(&pod).as_deref(), Some("ErrImagePull"));
        assert_eq!(waiting_reason(&Pod::default()), None);
    }
}
