//! `task describe`: the Task, its pod and its Events, rendered as kubectl describe does.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::ListParams;
use kube::{Api, ResourceExt as _};

use super::{get_task, phase, phase_name};
use crate::api::task::Task;
use crate::cli::describe::{align, event_row, event_time, one_line, or_none, section};
use crate::cli::output::{human_age, human_duration};
use crate::cli::print::write_stdout;
use crate::cluster::ClusterArgs;
use crate::cluster::pods::waiting_reason;
use crate::controller::pod;

/// `task describe`.
#[derive(Debug, Clone, clap::Args)]
pub struct DescribeArgs {
    /// The Task.
    pub name: String,
}

pub(super) async fn describe(cluster_args: &ClusterArgs, args: DescribeArgs) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let task = get_task(&cluster, &ns, &args.name).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), &ns);
    let event_params = ListParams::default().fields(&format!(
        "involvedObject.kind=Task,involvedObject.name={}",
        args.name
    ));
    let pod_name = pod::task_pod_name(&args.name);
    let (pod, event_list) = tokio::join!(pods.get_opt(&pod_name), events.list(&event_params));
    let uid = task.metadata.uid.clone();
    let mut events: Vec<Event> = event_list
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.involved_object.uid.is_none() || e.involved_object.uid == uid)
        .collect();
    events.sort_by_key(event_time);
    let pod = pod.ok().flatten();
    write_stdout(&render_describe(
        &task,
        pod.as_ref(),
        &events,
        Timestamp::now(),
    ))
}

fn pod_state(pod: &Pod) -> String {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let waiting = waiting_reason(pod);
    match waiting {
        Some(reason) if phase == "Pending" => format!("{phase} ({reason})"),
        _ => phase,
    }
}

/// The text of `task describe`, from objects already read (pure).
pub fn render_describe(task: &Task, pod: Option<&Pod>, events: &[Event], now: Timestamp) -> String {
    let mut out = String::new();
    let status = task.status.clone().unwrap_or_default();
    let name = task.name_any();
    let ns = task.namespace().unwrap_or_default();
    let mut rows = vec![
        vec!["Name:".into(), name.clone()],
        vec!["Namespace:".into(), ns.clone()],
    ];
    match (&task.spec.agent_ref, &task.spec.template_ref) {
        (Some(agent), _) => rows.push(vec!["Agent:".into(), agent.name.clone()]),
        (None, Some(template)) => rows.push(vec!["Template:".into(), template.name.clone()]),
        (None, None) => {}
    }
    rows.push(vec![
        "Phase:".into(),
        phase_name(phase(Some(&status))).into(),
    ]);
    if let Some(position) = status.queue_position {
        rows.push(vec!["Queue Position:".into(), position.to_string()]);
    }
    rows.push(vec![
        "Pod:".into(),
        match (status.pod_name.as_deref(), pod) {
            (Some(name), Some(pod)) => format!("{name} ({})", pod_state(pod)),
            (Some(name), None) => format!("{name} (gone)"),
            (None, _) => "<none>".into(),
        },
    ]);
    if let Some(timeout) = &task.spec.timeout {
        rows.push(vec!["Timeout:".into(), timeout.clone()]);
    }
    let created = task.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if let Some(created) = created {
        rows.push(vec![
            "Created:".into(),
            format!("{created} ({} ago)", human_age(created, now)),
        ]);
    }
    if let Some(start) = &status.start_time {
        let waited = created.map(|c| human_duration(start.0.duration_since(c)));
        rows.push(vec![
            "Started:".into(),
            format!(
                "{}{}",
                start.0,
                waited.map(|w| format!(" (queued {w})")).unwrap_or_default()
            ),
        ]);
    }
    if let Some(end) = &status.completion_time {
        let ran = status
            .start_time
            .as_ref()
            .map(|s| human_duration(end.0.duration_since(s.0)))
            .unwrap_or_else(|| human_duration(SignedDuration::ZERO));
        rows.push(vec!["Finished:".into(), format!("{} (ran {ran})", end.0)]);
    }
    for row in &rows {
        // The value column where `agent describe` has it.
        let _ = writeln!(out, "{:<18}{}", row[0], row[1]);
    }
    let _ = writeln!(out, "Prompt:");
    for line in task.spec.description.as_deref().unwrap_or_default().lines() {
        let _ = writeln!(out, "  {line}");
    }
    let contexts: Vec<Vec<String>> = task
        .spec
        .contexts
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            vec![
                pod::context_label(c, i),
                format!("{:?}", c.type_),
                or_none(c.mount_path.as_deref()),
            ]
        })
        .collect();
    section(
        &mut out,
        "Contexts",
        &["NAME", "TYPE", "MOUNT PATH"],
        contexts,
    );

    if let Some(session) = &status.session {
        let mut rows = vec![
            vec!["  ID:".into(), or_none(session.id.as_deref())],
            vec!["  Title:".into(), or_none(session.title.as_deref())],
        ];
        if let Some(summary) = &session.summary {
            if let Some(count) = summary.message_count {
                rows.push(vec!["  Messages:".into(), count.to_string()]);
            }
            if let Some(tokens) = &summary.token_usage {
                rows.push(vec![
                    "  Tokens:".into(),
                    format!(
                        "in {}, out {}",
                        tokens.input.unwrap_or_default(),
                        tokens.output.unwrap_or_default()
                    ),
                ]);
            }
            if let Some(cost) = &summary.cost {
                rows.push(vec!["  Cost:".into(), format!("${cost}")]);
            }
        }
        let _ = writeln!(out, "Session:");
        out.push_str(&align(&rows, ""));
    }
    if let Some(result) = &status.result {
        let _ = writeln!(out, "Result:");
        for line in result.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    let conditions: Vec<Vec<String>> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| {
            vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                one_line(&c.message),
            ]
        })
        .collect();
    section(
        &mut out,
        "Conditions",
        &["TYPE", "STATUS", "REASON", "MESSAGE"],
        conditions,
    );
    let events: Vec<Vec<String>> = events.iter().map(|e| event_row(e, now)).collect();
    section(
        &mut out,
        "Events",
        &["TYPE", "REASON", "AGE", "FROM", "MESSAGE"],
        events,
    );
    if task.spec.agent_ref.is_some() {
        let _ = writeln!(
            out,
            "\nLogs:             kubectl kubeoc task logs {name} -n {ns}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_completed_task_shows_its_session_answer_and_conditions() {
        let task: Task = serde_json::from_value(json!({
            "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Task",
            "metadata": {"name": "fix", "namespace": "team", "uid": "u1",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"agentRef": {"name": "team-agent"}, "description": "Fix the test.\nThen push.",
                     "timeout": "30m"},
            "status": {"phase": "Completed", "podName": "fix-pod",
                "startTime": "2026-01-01T00:00:05Z", "completionTime": "2026-01-01T00:00:12Z",
                "result": "Fixed it.",
                "session": {"id": "ses_1", "title": "kubeopencode/team/fix/u1",
                    "summary": {"messageCount": 2, "cost": "0.01", "tokenUsage": {"input": 120, "output": 7}}},
                "conditions": [{"type": "Complete", "status": "True", "reason": "Succeeded",
                    "message": "the agent answered", "lastTransitionTime": "2026-01-01T00:00:12Z"}]}
        }))
        .expect("a Task");
        let now = Timestamp::from_second(1_767_225_660).expect("time");
        let text = render_describe(&task, None, &[], now);
        for needle in [
            "Name:             fix\n",
            "Agent:            team-agent\n",
            "Phase:            Completed\n",
            "Pod:              fix-pod (gone)\n",
            "(queued 5s)",
            "(ran 7s)",
            "  Fix the test.\n  Then push.",
            "  ID:        ses_1",
            "  Tokens:    in 120, out 7",
            "Result:\n  Fixed it.",
            "Complete  True    Succeeded  the agent answered",
            "Events:           <none>",
            "kubectl kubeoc task logs fix -n team",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
        }
    }
}
