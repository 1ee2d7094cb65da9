//! Standby: an Agent with no unfinished Tasks and no session activity for `idleTimeout` gets
//! `spec.suspend: true`; a Task arriving for an Agent that standby (not a person) suspended
//! sets it back. The controller tells its own suspend from a person's by who owns
//! `spec.suspend` in managedFields.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::ReconcileError;
use super::status::publish;
use crate::api::task::Task;
use crate::api::{ATTACH_HEARTBEAT_ANNOTATION, ATTACH_HEARTBEAT_INTERVAL, Agent};
use crate::controller::{Context, FIELD_MANAGER};
use crate::opencode::client::ServerProxy;

/// What keeps an Agent from being idle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Activity {
    /// Tasks of the Agent that have not finished, or sessions answering right now.
    busy: bool,
    /// The newest change to any session on the server (an attached user typing counts).
    last: Option<Timestamp>,
}

/// The Agent's Tasks that have not finished (waiting, queued or running), oldest first, from
/// the Tasks' watch cache.
pub(super) fn unfinished_tasks(ctx: &Context, ns: &str, name: &str) -> Vec<Arc<Task>> {
    let mut unfinished: Vec<Arc<Task>> = ctx
        .stores
        .tasks
        .state()
        .into_iter()
        .filter(|t| t.namespace().as_deref() == Some(ns))
        .filter(|t| t.spec.agent_ref.as_ref().is_some_and(|r| r.name == name))
        .filter(|t| {
            !t.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_finished())
        })
        .collect();
    unfinished.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
    });
    unfinished
}

/// Whether a managedFields entry (of the object, not a subresource) owns `spec.suspend`.
fn owns_suspend(entry: &ManagedFieldsEntry) -> bool {
    entry.subresource.as_deref().unwrap_or_default().is_empty()
        && entry
            .fields_v1
            .as_ref()
            .is_some_and(|fields| fields.0["f:spec"].get("f:suspend").is_some())
}

/// Whether spec.suspend was set by the standby clock: this controller alone owns the field
/// (per managedFields). A suspend by a person (`kubectl kubeoc agent suspend`, `kubectl
/// apply`, `kubectl patch`) is theirs to lift, so a Task does not resume it.
pub fn suspended_by_standby(agent: &Agent) -> bool {
    let owners: Vec<&str> = agent
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| owns_suspend(entry))
        .filter_map(|entry| entry.manager.as_deref())
        .collect();
    agent.spec.suspend == Some(true) && owners == [FIELD_MANAGER]
}

/// Keeps of the Agent's managedFields only what [`suspended_by_standby`] reads: which managers
/// own `spec.suspend`. The watch cache holds every Agent, and the rest of their field sets is
/// most of an Agent's size.
pub fn keep_suspend_ownership(agent: &mut Agent) {
    let Some(entries) = agent.metadata.managed_fields.take() else {
        return;
    };
    let kept: Vec<_> = entries
        .into_iter()
        .filter(owns_suspend)
        .map(|entry| ManagedFieldsEntry {
            manager: entry.manager,
            fields_v1: Some(FieldsV1(json!({"f:spec": {"f:suspend": {}}}))),
            ..Default::default()
        })
        .collect();
    agent.metadata.managed_fields = (!kept.is_empty()).then_some(kept);
}

/// Lifts a standby suspension because `task` waits for the server.
pub(super) async fn resume_for_task(
    ctx: &Context,
    agent: &Agent,
    task: &str,
) -> Result<(), ReconcileError> {
    let event = Event {
        type_: EventType::Normal,
        reason: "StandbyResumed".into(),
        note: Some(format!(
            "Task {task} is waiting for this Agent, which standby had suspended: set spec.suspend to false"
        )),
        action: "Resume".into(),
        secondary: None,
    };
    set_suspend(ctx, agent, false, event).await
}

/// When `kubectl kubeoc agent attach` last stamped the Agent, if it did.
pub(super) fn attach_heartbeat(agent: &Agent) -> Option<Timestamp> {
    agent
        .annotations()
        .get(ATTACH_HEARTBEAT_ANNOTATION)?
        .parse::<Timestamp>()
        .ok()
}

/// Whether a heartbeat stamped at `beat` still means someone is attached at `now`: younger
/// than two intervals, so one late renewal does not count as gone.
pub(super) fn attached(beat: Option<Timestamp>, now: Timestamp) -> bool {
    let fresh = k8s_openapi::jiff::SignedDuration::try_from(2 * ATTACH_HEARTBEAT_INTERVAL)
        .unwrap_or_default();
    beat.is_some_and(|beat| now.duration_since(beat) < fresh)
}

/// Reads the Agent's unfinished Tasks, its server's sessions and its attach heartbeat.
pub(super) async fn activity(
    ctx: &Context,
    agent: &Agent,
    proxy: &ServerProxy,
    now: Timestamp,
) -> Result<Activity, ReconcileError> {
    let (ns, name) = (agent.namespace().unwrap_or_default(), agent.name_any());
    let (ns, name) = (ns.as_str(), name.as_str());
    let heartbeat = attach_heartbeat(agent);
    let unfinished = unfinished_tasks(ctx, ns, name).len();
    let object = format!("the OpenCode server of Agent {ns}/{name}");
    let proxy_err = |source| ReconcileError::Server {
        object: object.clone(),
        source,
    };
    let busy_sessions = proxy
        .session_statuses()
        .await
        .map_err(proxy_err)?
        .values()
        .filter(|s| s.is_busy())
        .count();
    let last = proxy
        .sessions()
        .await
        .map_err(proxy_err)?
        .iter()
        .map(|s| s.time.updated)
        .max()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .into_iter()
        .chain(heartbeat.filter(|beat| *beat <= now))
        .max()
        .map(whole_second);
    Ok(Activity {
        busy: unfinished > 0 || busy_sessions > 0 || attached(heartbeat, now),
        last,
    })
}

/// When the Agent has been idle since: unset while busy; moved forward by session activity
/// newer than the previous mark; `now` when it just became idle (so a resumed Agent gets a
/// full idleTimeout, whatever happened before it was suspended).
/// `t` rounded up to a whole second: status times carry seconds only, and a mark must be
/// stored exactly as computed (a sub-second mark compares newer than its stored copy, and a
/// truncated one would hide the activity that moved it).
pub(super) fn whole_second(t: Timestamp) -> Timestamp {
    let rounded_up = t.as_second() + i64::from(t.subsec_nanosecond() > 0);
    Timestamp::from_second(rounded_up).unwrap_or(t)
}

pub(super) fn next_idle_since(
    previous: Option<Timestamp>,
    activity: &Activity,
    now: Timestamp,
) -> Option<Timestamp> {
    if activity.busy {
        return None;
    }
    let now = whole_second(now);
    match (previous, activity.last) {
        (Some(since), Some(last)) if last > since => Some(last.min(now)),
        (Some(since), _) => Some(since),
        (None, _) => Some(now),
    }
}

/// Sets `spec.suspend: true` with a merge patch (a user's `kubectl apply` keeps owning the
/// field, so resuming stays a plain edit), and says why in an Event.
pub(super) async fn suspend_for_standby(
    ctx: &Context,
    agent: &Agent,
    since: Timestamp,
    idle_timeout: &str,
) -> Result<(), ReconcileError> {
    let event = Event {
        type_: EventType::Normal,
        reason: "StandbySuspended".into(),
        note: Some(format!(
            "no Tasks and no session activity since {since} (standby.idleTimeout {idle_timeout}): set spec.suspend to true; a new Task or `kubectl kubeoc agent resume` starts the server again"
        )),
        action: "Suspend".into(),
        secondary: None,
    };
    set_suspend(ctx, agent, true, event).await
}

/// Sets spec.suspend with a merge patch under this controller's field manager (which is how
/// [`suspended_by_standby`] recognises it later), then publishes `event`.
pub(super) async fn set_suspend(
    ctx: &Context,
    agent: &Agent,
    suspend: bool,
    event: Event,
) -> Result<(), ReconcileError> {
    let ns = agent.namespace().unwrap_or_default();
    let api: Api<Agent> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({"spec": {"suspend": suspend}});
    api.patch(
        &agent.name_any(),
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        },
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|source| ReconcileError::Suspend {
        object: format!("Agent {ns}/{}", agent.name_any()),
        suspend,
        source,
    })?;
    publish(ctx, agent, vec![event]).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_attach_heartbeat_means_someone_is_attached() {
        let now: Timestamp = "2026-12-02T10:00:00Z".parse().expect("time");
        let ago = |s: i64| now - k8s_openapi::jiff::SignedDuration::from_secs(s);
        assert!(attached(Some(ago(5)), now));
        assert!(attached(Some(ago(119)), now), "one late renewal");
        assert!(!attached(Some(ago(121)), now));
        assert!(!attached(None, now));
        let mut agent = Agent::new("a", crate::api::AgentSpec::default());
        agent.annotations_mut().insert(
            ATTACH_HEARTBEAT_ANNOTATION.to_string(),
            "2026-12-02T09:59:30Z".to_string(),
        );
        assert_eq!(attach_heartbeat(&agent), Some(ago(30)));
        agent.annotations_mut().insert(
            ATTACH_HEARTBEAT_ANNOTATION.to_string(),
            "yesterday".to_string(),
        );
        assert_eq!(
            attach_heartbeat(&agent),
            None,
            "an unreadable stamp counts for nothing"
        );
    }

    #[test]
    fn only_a_suspend_the_controller_alone_owns_counts_as_standby() {
        let agent = |suspend: bool, owners: &[(&str, Option<&str>)]| {
            let mut agent = Agent::new("a", crate::api::AgentSpec::default());
            agent.spec.suspend = Some(suspend);
            agent.metadata.managed_fields = Some(
                owners
                    .iter()
                    .map(|(manager, subresource)| {
                        let fields = match subresource {
                            Some(_) => json!({"f:status": {"f:suspended": {}}}),
                            None => json!({"f:spec": {"f:suspend": {}, "f:workspaceDir": {}}}),
                        };
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                            manager: Some(manager.to_string()),
                            operation: Some("Update".into()),
                            subresource: subresource.map(str::to_string),
                            fields_v1: Some(
                                k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(fields),
                            ),
                            ..Default::default()
                        }
                    })
                    .collect(),
            );
            agent
        };
        let ours = (FIELD_MANAGER, None);
        let status = (FIELD_MANAGER, Some("status"));
        assert!(suspended_by_standby(&agent(true, &[ours, status])));
        assert!(
            !suspended_by_standby(&agent(false, &[ours])),
            "not suspended"
        );
        // A person's suspend: `agent suspend` (kubeoc), kubectl apply/patch, or shared with us.
        assert!(!suspended_by_standby(&agent(
            true,
            &[("kubeoc", None), status]
        )));
        assert!(!suspended_by_standby(&agent(
            true,
            &[("kubectl-client-side-apply", None)]
        )));
        assert!(!suspended_by_standby(&agent(
            true,
            &[ours, ("kubectl", None)]
        )));
        // Status entries of ours alone do not own spec.suspend.
        assert!(!suspended_by_standby(&agent(true, &[status])));

        // The watch cache's slim copy answers the same, for every case above.
        type Owners<'a> = &'a [(&'a str, Option<&'a str>)];
        let cases: [(bool, Owners); 7] = [
            (true, &[ours, status]),
            (false, &[ours]),
            (true, &[("kubeoc", None), status]),
            (true, &[("kubectl-client-side-apply", None)]),
            (true, &[ours, ("kubectl", None)]),
            (true, &[status]),
            (true, &[]),
        ];
        for (suspend, owners) in cases {
            let full = agent(suspend, owners);
            let mut slim = full.clone();
            keep_suspend_ownership(&mut slim);
            assert_eq!(
                suspended_by_standby(&slim),
                suspended_by_standby(&full),
                "{owners:?}"
            );
            assert!(
                slim.metadata.managed_fields.iter().flatten().all(|e| e
                    .fields_v1
                    .as_ref()
                    .is_some_and(|f| f.0 == json!({"f:spec": {"f:suspend": {}}}))),
                "only spec.suspend is kept: {:?}",
                slim.metadata.managed_fields
            );
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("valid time")
    }

    #[test]
    fn idle_clock_starts_when_idle_and_moves_with_session_activity() {
        let quiet = Activity::default();
        assert_eq!(next_idle_since(None, &quiet, at(10)), Some(at(10)));
        assert_eq!(next_idle_since(Some(at(10)), &quiet, at(70)), Some(at(10)));
        let typed = Activity {
            busy: false,
            last: Some(at(40)),
        };
        assert_eq!(next_idle_since(Some(at(10)), &typed, at(70)), Some(at(40)));
        // Activity from before the clock started (e.g. before a suspend) does not rewind it.
        assert_eq!(next_idle_since(Some(at(50)), &typed, at(70)), Some(at(50)));
        // A resumed Agent gets a full timeout even though its last session is old.
        assert_eq!(next_idle_since(None, &typed, at(70)), Some(at(70)));
        // Clock skew between server and controller never puts the mark in the future.
        let future = Activity {
            busy: false,
            last: Some(at(99)),
        };
        assert_eq!(next_idle_since(Some(at(10)), &future, at(70)), Some(at(70)));
        // Sub-second times become the next whole second, as they will be stored.
        let later = at(10)
            .checked_add(k8s_openapi::jiff::SignedDuration::from_millis(300))
            .expect("time");
        assert_eq!(whole_second(later), at(11));
        assert_eq!(whole_second(at(10)), at(10));
        assert_eq!(next_idle_since(None, &quiet, later), Some(at(11)));
        let busy = Activity {
            busy: true,
            last: None,
        };
        assert_eq!(next_idle_since(Some(at(10)), &busy, at(70)), None);
    }
}
