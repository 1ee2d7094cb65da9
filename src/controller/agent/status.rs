//! What the Agent's status says: conditions from verdicts (transition times kept while
//! nothing flips), why a server pod does not run, Events on transitions only, and the status
//! write (skipped when nothing changed).

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::ReconcileError;
use crate::api::{Agent, AgentPhase, AgentStatus};
use crate::controller::cached::{ServerDeployment, ServerPod};
pub(super) use crate::controller::conditions::{Verdict, conditions};
use crate::controller::{Context, FIELD_MANAGER};

/// The first thing keeping a server pod from running, in words that stay the same while the
/// problem does (no restart counts or times, so the status is not rewritten on every pass).
pub(super) fn pod_problem(pod: &ServerPod) -> Option<String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let status = pod.status.as_ref()?;
    let first_line = |text: &str| -> String {
        let line = text.lines().next().unwrap_or_default();
        line.chars().take(200).collect()
    };
    for init in status.init_container_statuses.iter().flatten() {
        let state = init.state.as_ref();
        let failed = state
            .and_then(|s| s.terminated.as_ref())
            .filter(|t| t.exit_code != 0)
            .or_else(|| {
                // Restarting after a failure: the failure is in lastState.
                state
                    .and_then(|s| s.waiting.as_ref())
                    .filter(|w| w.reason.as_deref() == Some("CrashLoopBackOff"))
                    .and(init.last_state.as_ref().and_then(|s| s.terminated.as_ref()))
            });
        if let Some(terminated) = failed {
            return Some(format!(
                "init container {:?} failed with exit code {} (see: kubectl logs -n {namespace} {pod_name} -c {})",
                init.name, terminated.exit_code, init.name
            ));
        }
        if let Some(waiting) = state.and_then(|s| s.waiting.as_ref())
            && let Some(reason) = waiting
                .reason
                .as_deref()
                .filter(|r| *r != "PodInitializing")
        {
            let detail = waiting
                .message
                .as_deref()
                .map(first_line)
                .unwrap_or_default();
            return Some(
                format!("init container {:?}: {reason} {detail}", init.name)
                    .trim_end()
                    .to_string(),
            );
        }
    }
    for container in status.container_statuses.iter().flatten() {
        let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let Some(reason) = waiting
            .reason
            .as_deref()
            .filter(|r| *r != "ContainerCreating")
        else {
            continue;
        };
        let detail = waiting
            .message
            .as_deref()
            .map(first_line)
            .unwrap_or_default();
        let hint = if reason == "CrashLoopBackOff" {
            format!(
                " (see: kubectl logs -n {namespace} {pod_name} -c {} --previous)",
                container.name
            )
        } else {
            String::new()
        };
        return Some(
            format!("container {:?}: {reason} {detail}", container.name)
                .trim_end()
                .to_string()
                + &hint,
        );
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| {
            format!(
                "pod {pod_name} cannot be scheduled: {}",
                first_line(c.message.as_deref().unwrap_or("no reason given"))
            )
        })
}

/// Why the ReplicaSet cannot create the server pod (the Deployment's ReplicaFailure
/// condition), with what to do about it.
pub(super) fn replica_failure(deployment: &ServerDeployment, ns: &str) -> Option<String> {
    let condition = deployment
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")?;
    Some(explain_create_failure(
        condition.message.as_deref().unwrap_or("no reason given"),
        ns,
    ))
}

/// The text after `prefix` in `message`, up to the next double quote: `serviceaccount "x"`.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let start = message.find(prefix)? + prefix.len();
    let rest = message[start..].strip_prefix('"')?;
    rest.split('"').next()
}

/// A pod-creation failure in words that name the fix.
pub(super) fn explain_create_failure(message: &str, ns: &str) -> String {
    let first_line = message.lines().next().unwrap_or_default();
    if message.contains("not found")
        && let Some(account) = quoted_after(message, "serviceaccount ")
    {
        return format!(
            "ServiceAccount {account:?} does not exist in namespace {ns:?}, so no server pod can be created: \
             create it with `kubectl create serviceaccount {account} -n {ns}` \
             (`kubectl kubeoc install` makes kubeopencode-agent only in kubeopencode-system)"
        );
    }
    if message.contains("RuntimeClass") && message.contains("not found") {
        return format!(
            "the server pod names a RuntimeClass that does not exist: {first_line} \
             (create the RuntimeClass, or remove podSpec.runtimeClassName)"
        );
    }
    if message.contains("violates PodSecurity") {
        return format!(
            "namespace {ns:?}'s PodSecurity level rejects the server pod: {first_line} \
             (adjust podSpec.securityContext / podSecurityContext, or the namespace's \
             pod-security.kubernetes.io/enforce label)"
        );
    }
    if message.contains("exceeded quota") {
        return format!(
            "a ResourceQuota of namespace {ns:?} rejects the server pod: {first_line} \
             (raise the quota, or lower podSpec.resources)"
        );
    }
    format!("the ReplicaSet cannot create the server pod: {first_line}")
}

/// A child the apiserver refused, in words that name the object and the fix.
pub(super) fn explain_rejection(object: &str, err: &kube::Error) -> String {
    let message = match err {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    };
    let hint = if message.contains("less than previous value")
        || message.contains("can not be less than")
    {
        " (a PersistentVolumeClaim cannot shrink: set the size back to at least its current value)"
    } else if message.contains("immutable") {
        " (that field cannot change once the object exists: restore it, or delete the object to have it made anew; a PVC's data goes with it)"
    } else if message.contains("exceeded quota") {
        " (raise the namespace's ResourceQuota, or ask for less)"
    } else if matches!(err, kube::Error::Api(s) if s.code == 403) {
        " (the controller may not write it: check the kubeoc-controller ClusterRole and its binding)"
    } else {
        ""
    };
    format!("{object} was rejected: {message}{hint}")
}

/// For a pod still creating its containers: a Secret or ConfigMap volume whose object does
/// not exist (the kubelet waits for it without saying so in the pod's status). Reads the pod
/// (the cache keeps no pod specs) and those objects (they are the user's, not in our caches);
/// asked only while the server is not ready.
pub(super) async fn missing_volume_source(ctx: &Context, pod: &ServerPod) -> Option<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    // Volumes are set up before any container starts: the pod waits with every container
    // "ContainerCreating" (or "PodInitializing" behind init containers).
    let creating = pod.status.as_ref().is_some_and(|status| {
        status
            .init_container_statuses
            .iter()
            .chain(status.container_statuses.iter())
            .flatten()
            .any(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref())
                    .is_some_and(|r| r == "ContainerCreating" || r == "PodInitializing")
            })
    });
    if !creating {
        return None;
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pod = pods.get_opt(pod_name).await.ok()??;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    for volume in pod.spec.as_ref()?.volumes.iter().flatten() {
        let mut needed: Vec<(&str, &str)> = Vec::new();
        if let Some(secret) = &volume.secret
            && secret.optional != Some(true)
            && let Some(name) = secret.secret_name.as_deref()
        {
            needed.push(("Secret", name));
        }
        if let Some(map) = &volume.config_map
            && map.optional != Some(true)
        {
            needed.push(("ConfigMap", map.name.as_str()));
        }
        for source in volume
            .projected
            .as_ref()
            .and_then(|p| p.sources.as_ref())
            .into_iter()
            .flatten()
        {
            if let Some(secret) = &source.secret
                && secret.optional != Some(true)
            {
                needed.push(("Secret", secret.name.as_str()));
            }
            if let Some(map) = &source.config_map
                && map.optional != Some(true)
            {
                needed.push(("ConfigMap", map.name.as_str()));
            }
        }
        for (kind, name) in needed {
            let missing = match kind {
                "Secret" => matches!(secrets.get_opt(name).await, Ok(None)),
                _ => matches!(config_maps.get_opt(name).await, Ok(None)),
            };
            if missing {
                return Some(format!(
                    "pod {pod_name} waits for volume {:?}: {kind} {name:?} does not exist in namespace {ns:?} \
                     (create it, or mark the volume optional)",
                    volume.name
                ));
            }
        }
    }
    None
}

pub(super) fn deployment_available(deployment: &ServerDeployment) -> (bool, String) {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let Some(status) = &deployment.status else {
        return (false, "the Deployment has no status yet".into());
    };
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    if status.observed_generation.unwrap_or(0) < generation {
        return (
            false,
            "the Deployment controller has not seen the latest spec yet".into(),
        );
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated >= wanted && available >= wanted {
        (
            true,
            format!("{available}/{wanted} server replicas available"),
        )
    } else {
        (
            false,
            format!("{available}/{wanted} server replicas available, {updated} up to date"),
        )
    }
}

/// Reports an Agent that cannot run (`Ready=False` with `reason`), keeping the rest of its
/// status.
pub(super) async fn report_not_ready(
    ctx: &Context,
    agent: &Agent,
    reason: &str,
    message: String,
) -> Result<(), ReconcileError> {
    let existing = agent.status.clone().unwrap_or_default();
    let generation = agent.metadata.generation.unwrap_or(0);
    let verdict = Verdict::new("Ready", false, reason, message);
    let existing_conditions = existing.conditions.clone().unwrap_or_default();
    let status = AgentStatus {
        observed_generation: Some(generation),
        phase: Some(AgentPhase::NotReady),
        ready: Some(false),
        conditions: Some(conditions(&existing_conditions, &[verdict], generation)),
        ..existing
    };
    write_status(ctx, agent, status).await
}

/// The most an Event note may hold (events.k8s.io/v1 rejects longer ones).
const NOTE_LIMIT: usize = 1024;

fn note(text: &str) -> String {
    if text.len() <= NOTE_LIMIT {
        return text.to_string();
    }
    let mut end = NOTE_LIMIT - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The Events a status change deserves: Ready flipping (or changing its reason), and a new
/// list of unsupported fields. Losing readiness, and specs that cannot run, are warnings.
fn transition_events(old: &[Condition], new: &[Condition]) -> Vec<Event> {
    let find = |list: &'_ [Condition], type_: &str| list.iter().find(|c| c.type_ == type_).cloned();
    let mut events = Vec::new();
    if let Some(ready) = find(new, "Ready") {
        let before = find(old, "Ready");
        let changed = before
            .as_ref()
            .is_none_or(|b| b.status != ready.status || b.reason != ready.reason);
        if changed && ready.status == "True" {
            let detail = find(new, "ServerHealthy")
                .filter(|c| c.status == "True")
                .map_or(ready.message.clone(), |c| c.message);
            events.push(Event {
                type_: EventType::Normal,
                reason: "Ready".into(),
                note: Some(note(&detail)),
                action: "Reconcile".into(),
                secondary: None,
            });
        } else if changed {
            let was_ready = before.is_some_and(|b| b.status == "True");
            let broken = matches!(ready.reason.as_str(), "InvalidSpec" | "TemplateNotFound");
            let warning = broken || (was_ready && ready.reason != "Suspended");
            events.push(Event {
                type_: if warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: ready.reason.clone(),
                note: Some(note(&ready.message)),
                action: "Reconcile".into(),
                secondary: None,
            });
        }
    }
    if let Some(unsupported) = find(new, "Unsupported")
        && find(old, "Unsupported").is_none_or(|c| c.message != unsupported.message)
    {
        events.push(Event {
            type_: EventType::Warning,
            reason: "UnsupportedFields".into(),
            note: Some(note(&unsupported.message)),
            action: "Reconcile".into(),
            secondary: None,
        });
    }
    events
}

/// Publishes Events about the Agent; a failure is logged, never fails the reconcile.
pub(super) async fn publish(ctx: &Context, agent: &Agent, events: Vec<Event>) {
    let reference = agent.object_ref(&());
    let recorder = ctx.recorder();
    for event in events {
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(
                agent = %format!("{}/{}", agent.namespace().unwrap_or_default(), agent.name_any()),
                reason = %event.reason,
                "could not publish an Event: {e}"
            );
        }
    }
}

/// Server-side applies `status` (the fields `field_manager` owns) to the Agent's status.
pub async fn apply_status(
    client: &kube::Client,
    agent: &Agent,
    field_manager: &str,
    status: serde_json::Value,
) -> kube::Result<()> {
    let api: Api<Agent> = Api::namespaced(client.clone(), &agent.namespace().unwrap_or_default());
    let patch = json!({"apiVersion": crate::api::API_VERSION, "kind": "Agent", "status": status});
    api.patch_status(
        &agent.name_any(),
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Server-side applies `.status` when it differs from what the Agent already has.
pub(super) async fn write_status(
    ctx: &Context,
    agent: &Agent,
    status: AgentStatus,
) -> Result<(), ReconcileError> {
    if agent.status.as_ref() == Some(&status) {
        return Ok(());
    }
    // The Task queue owns taskStartHistory; applying the cached copy here could drop its
    // newest starts.
    let applied = AgentStatus {
        task_start_history: None,
        ..status.clone()
    };
    apply_status(&ctx.client, agent, FIELD_MANAGER, json!(applied))
        .await
        .map_err(|source| ReconcileError::Status {
            object: format!(
                "Agent {}/{}",
                agent.namespace().unwrap_or_default(),
                agent.name_any()
            ),
            source,
        })?;
    let old = agent
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let events = transition_events(&old, status.conditions.as_deref().unwrap_or_default());
    publish(ctx, agent, events).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("valid time")
    }

    fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(1),
            last_transition_time: Time(at(0)),
        }
    }

    #[test]
    fn events_follow_ready_transitions_only() {
        let starting = vec![condition(
            "Ready",
            "False",
            "ServerNotReady",
            "0/1 available",
        )];
        let first = transition_events(&[], &starting);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].reason, "ServerNotReady");
        assert_eq!(
            first[0].type_,
            EventType::Normal,
            "starting up is not a warning"
        );
        assert!(transition_events(&starting, &starting).is_empty());

        let ready = vec![
            condition(
                "ServerHealthy",
                "True",
                "Healthy",
                "OpenCode 1.18.33 answers /global/health",
            ),
            condition("Ready", "True", "ServerHealthy", "available and healthy"),
        ];
        let became_ready = transition_events(&starting, &ready);
        assert_eq!(became_ready.len(), 1);
        assert_eq!(became_ready[0].reason, "Ready");
        assert_eq!(
            became_ready[0].note.as_deref(),
            Some("OpenCode 1.18.33 answers /global/health")
        );
        assert!(transition_events(&ready, &ready).is_empty());

        let lost = vec![condition("Ready", "False", "ServerUnhealthy", "refused")];
        assert_eq!(
            transition_events(&ready, &lost)[0].type_,
            EventType::Warning
        );
        let suspended = vec![condition("Ready", "False", "Suspended", "scaled to zero")];
        assert_eq!(
            transition_events(&ready, &suspended)[0].type_,
            EventType::Normal
        );
        let invalid = vec![condition("Ready", "False", "InvalidSpec", "workspaceDir")];
        assert_eq!(
            transition_events(&[], &invalid)[0].type_,
            EventType::Warning
        );
    }

    #[test]
    fn unsupported_fields_are_announced_once_per_change() {
        let with = vec![condition("Unsupported", "True", "FieldsIgnored", "share")];
        let events = transition_events(&[], &with);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "UnsupportedFields");
        assert!(transition_events(&with, &with).is_empty());
    }

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let long = "é".repeat(NOTE_LIMIT);
        let cut = note(&long);
        assert!(cut.len() <= NOTE_LIMIT);
        assert!(cut.ends_with("..."));
    }

    fn pod(status: serde_json::Value) -> ServerPod {
        serde_json::from_value(
            json!({"metadata": {"name": "a-server-1", "namespace": "ns"}, "status": status}),
        )
        .expect("a pod")
    }

    #[test]
    fn pod_problems_name_the_container_and_what_to_do() {
        let failed_init = pod(json!({"initContainerStatuses": [
            {"name": "opencode-init", "ready": true, "restartCount": 0, "image": "i", "imageID": "",
             "state": {"terminated": {"exitCode": 0}}},
            {"name": "plugin-init", "ready": false, "restartCount": 3, "image": "i", "imageID": "",
             "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
             "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}));
        assert_eq!(
            pod_problem(&failed_init).as_deref(),
            Some(
                "init container \"plugin-init\" failed with exit code 1 (see: kubectl logs -n ns a-server-1 -c plugin-init)"
            )
        );
        let missing_secret = pod(json!({"containerStatuses": [
            {"name": "opencode-server", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
             "state": {"waiting": {"reason": "CreateContainerConfigError",
                                   "message": "secret \"ai-credentials\" not found"}}}]}));
        assert_eq!(
            pod_problem(&missing_secret).as_deref(),
            Some(
                "container \"opencode-server\": CreateContainerConfigError secret \"ai-credentials\" not found"
            )
        );
        let starting = pod(json!({"containerStatuses": [
            {"name": "opencode-server", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
             "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert_eq!(pod_problem(&starting), None);
        let unschedulable = pod(
            json!({"conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient memory."}]}),
        );
        assert!(pod_problem(&unschedulable).is_some_and(|p| p.contains("Insufficient memory")));
    }
}

#[cfg(test)]
mod explain_tests {
    use super::*;

    #[test]
    fn pod_creation_failures_name_the_fix() {
        let sa = explain_create_failure(
            r#"pods "a-server-5d9c-" is forbidden: error looking up service account team/agent-sa: serviceaccount "agent-sa" not found"#,
            "team",
        );
        assert!(
            sa.contains("kubectl create serviceaccount agent-sa -n team"),
            "{sa}"
        );
        let runtime = explain_create_failure(
            r#"pods "a-" is forbidden: pod rejected: RuntimeClass "gvisor" not found"#,
            "team",
        );
        assert!(runtime.contains("podSpec.runtimeClassName"), "{runtime}");
        let quota = explain_create_failure(
            r#"pods "a-" is forbidden: exceeded quota: small, requested: memory=2Gi"#,
            "team",
        );
        assert!(quota.contains("raise the quota"), "{quota}");
        let psa = explain_create_failure(
            r#"pods "a-" is forbidden: violates PodSecurity "restricted:latest": privileged"#,
            "team",
        );
        assert!(psa.contains("pod-security.kubernetes.io/enforce"), "{psa}");
    }

    #[test]
    fn rejected_children_say_what_to_do() {
        let shrink = kube::Error::Api(Box::new(kube::core::Status::failure(
            "PersistentVolumeClaim \"a-server-sessions\" is invalid: spec.resources.requests.storage: Forbidden: field can not be less than previous value",
            "Invalid",
        ).with_code(422)));
        let text = explain_rejection("PersistentVolumeClaim team/a-server-sessions", &shrink);
        assert!(
            text.starts_with("PersistentVolumeClaim team/a-server-sessions was rejected: "),
            "{text}"
        );
        assert!(text.contains("cannot shrink"), "{text}");
    }
}
