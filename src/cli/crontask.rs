//! `kubectl kubeoc crontask`: list, get, describe, trigger, suspend, resume and delete
//! CronTasks, with kubectl's flags and messages.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt as _};
use serde_json::json;

use super::describe::{event_row, event_time, one_line, or_none, section};
use super::listing::{self, GetArgs, ListArgs};
use super::noun::CRONTASK;
use super::output::human_age;
use super::print::{report_failures, write_stdout};
use crate::api::cron_task::{CronTask, TRIGGER_ANNOTATION};
use crate::api::task::Task;
use crate::cluster::{ClusterArgs, FIELD_MANAGER};
use crate::controller::cron_task::CRONTASK_LABEL;

/// How `-o name` and kubectl's messages spell the resource.
const RESOURCE: &str = "crontask.kubeopencode.io";

/// `kubectl kubeoc crontask ...`
#[derive(Debug, clap::Subcommand)]
pub enum CronTaskCommand {
    /// List CronTasks (columns as `kubectl get crontasks`).
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show CronTasks by name, or all of them.
    Get(GetArgs),
    /// Show a CronTask's schedule, policy, status, its Tasks and Events.
    Describe(NameArgs),
    /// Run a CronTask now (the annotation kubeopencode.io/trigger=true), whatever its schedule.
    Trigger(NamesArgs),
    /// Stop scheduling new runs (spec.suspend=true); running Tasks go on.
    Suspend(NamesArgs),
    /// Schedule runs again (spec.suspend=false).
    Resume(NamesArgs),
    /// Delete CronTasks; the Tasks they created go with them.
    Delete(DeleteArgs),
}

/// One CronTask.
#[derive(Debug, Clone, clap::Args)]
pub struct NameArgs {
    /// The CronTask.
    pub name: String,
}

/// Some CronTasks.
#[derive(Debug, Clone, clap::Args)]
pub struct NamesArgs {
    /// The CronTasks.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `crontask delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// The CronTasks.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// A missing CronTask is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// Dispatches `crontask` subcommands.
pub async fn run(cluster: &ClusterArgs, command: CronTaskCommand) -> anyhow::Result<()> {
    match command {
        CronTaskCommand::List(args) => listing::list(&CRONTASK, cluster, &[], args).await,
        CronTaskCommand::Get(args) => {
            listing::list(&CRONTASK, cluster, &args.names, args.list).await
        }
        CronTaskCommand::Describe(args) => describe(cluster, args).await,
        CronTaskCommand::Trigger(args) => {
            let patch = json!({"metadata": {"annotations": {TRIGGER_ANNOTATION: "true"}}});
            patch_each(cluster, &args.names, &patch, "triggering", "triggered").await
        }
        CronTaskCommand::Suspend(args) => {
            let patch = json!({"spec": {"suspend": true}});
            patch_each(cluster, &args.names, &patch, "suspending", "suspended").await
        }
        CronTaskCommand::Resume(args) => {
            let patch = json!({"spec": {"suspend": false}});
            patch_each(cluster, &args.names, &patch, "resuming", "resumed").await
        }
        CronTaskCommand::Delete(args) => delete(cluster, args).await,
    }
}

/// A JSON merge patch of each CronTask, as `kubectl patch --type merge` sends it.
async fn patch_each(
    cluster_args: &ClusterArgs,
    names: &[String],
    patch: &serde_json::Value,
    doing: &str,
    done: &str,
) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let api: Api<CronTask> = Api::namespaced(cluster.client.clone(), &ns);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let mut failures = Vec::new();
    for name in names {
        match api.patch(name, &params, &Patch::Merge(patch)).await {
            Ok(_) => write_stdout(&format!("{RESOURCE}/{name} {done}\n"))?,
            Err(err) => failures.push(CRONTASK.error(err, doing, name, &ns)),
        }
    }
    report_failures(failures)
}

async fn delete(cluster_args: &ClusterArgs, args: DeleteArgs) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let api: Api<CronTask> = Api::namespaced(cluster.client.clone(), &ns);
    let mut failures = Vec::new();
    for name in &args.names {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => write_stdout(&format!("{RESOURCE} {name:?} deleted\n"))?,
            Err(kube::Error::Api(s)) if s.code == 404 && args.ignore_not_found => {}
            Err(err) => failures.push(CRONTASK.error(err, "deleting", name, &ns)),
        }
    }
    report_failures(failures)
}

async fn describe(cluster_args: &ClusterArgs, args: NameArgs) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let api: Api<CronTask> = Api::namespaced(cluster.client.clone(), &ns);
    let cron = api
        .get(&args.name)
        .await
        .map_err(|e| CRONTASK.error(e, "getting", &args.name, &ns))?;
    let tasks: Api<Task> = Api::namespaced(cluster.client.clone(), &ns);
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), &ns);
    let task_params = ListParams::default().labels(&format!("{CRONTASK_LABEL}={}", args.name));
    let event_params = ListParams::default().fields(&format!(
        "involvedObject.kind=CronTask,involvedObject.name={}",
        args.name
    ));
    let (children, event_list) = tokio::join!(tasks.list(&task_params), events.list(&event_params));
    let mut children = children.map(|l| l.items).unwrap_or_default();
    children.sort_by_key(|t| t.metadata.creation_timestamp.as_ref().map(|c| c.0));
    let uid = cron.metadata.uid.clone();
    let mut events: Vec<Event> = event_list
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.involved_object.uid.is_none() || e.involved_object.uid == uid)
        .collect();
    events.sort_by_key(event_time);
    write_stdout(&render_describe(
        &cron,
        &children,
        &events,
        Timestamp::now(),
    ))
}

/// The text of `crontask describe`, from objects already read (pure).
pub fn render_describe(
    cron: &CronTask,
    children: &[Task],
    events: &[Event],
    now: Timestamp,
) -> String {
    let mut out = String::new();
    let spec = &cron.spec;
    let status = cron.status.clone().unwrap_or_default();
    let time = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.map_or_else(
            || "<none>".to_string(),
            |t| format!("{} ({})", t.0, relative(t.0, now)),
        )
    };
    let target = match (
        &spec.task_template.spec.agent_ref,
        &spec.task_template.spec.template_ref,
    ) {
        (Some(a), _) => format!("Agent {}", a.name),
        (None, Some(t)) => format!("AgentTemplate {}", t.name),
        (None, None) => "<none>".into(),
    };
    let rows = [
        ("Name:", cron.name_any()),
        ("Namespace:", cron.namespace().unwrap_or_default()),
        ("Schedule:", spec.schedule.clone()),
        ("Time Zone:", or_none(spec.time_zone.as_deref())),
        (
            "Concurrency:",
            spec.concurrency_policy
                .map_or_else(|| "Forbid".to_string(), |p| format!("{p:?}")),
        ),
        ("Suspend:", spec.suspend.unwrap_or(false).to_string()),
        (
            "Max Retained:",
            spec.max_retained_tasks.unwrap_or(10).to_string(),
        ),
        (
            "Deadline:",
            spec.starting_deadline_seconds
                .map_or_else(|| "<none>".to_string(), |s| format!("{s}s")),
        ),
        ("Runs On:", target),
        ("Last Schedule:", time(status.last_schedule_time.as_ref())),
        ("Last Success:", time(status.last_successful_time.as_ref())),
        ("Next Schedule:", time(status.next_schedule_time.as_ref())),
        (
            "Executions:",
            status.total_executions.unwrap_or(0).to_string(),
        ),
    ];
    for (label, value) in rows {
        let _ = writeln!(out, "{label:<18}{value}");
    }
    let _ = writeln!(out, "Prompt:");
    for line in spec
        .task_template
        .spec
        .description
        .as_deref()
        .unwrap_or_default()
        .lines()
    {
        let _ = writeln!(out, "  {line}");
    }
    let tasks: Vec<Vec<String>> = children
        .iter()
        .map(|t| {
            let s = t.status.as_ref();
            vec![
                t.name_any(),
                s.and_then(|s| s.phase)
                    .map_or_else(|| "Pending".to_string(), |p| format!("{p:?}")),
                t.metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or_else(String::new, |c| human_age(c.0, now)),
            ]
        })
        .collect();
    section(&mut out, "Tasks", &["NAME", "PHASE", "AGE"], tasks);
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
    out
}

/// `5m ago` or `in 5m`.
fn relative(t: Timestamp, now: Timestamp) -> String {
    if t > now {
        format!("in {}", human_age(now, t))
    } else {
        format!("{} ago", human_age(t, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_shows_the_schedule_policy_and_tasks() {
        let cron: CronTask = serde_json::from_value(json!({
            "apiVersion": "kubeopencode.io/v1alpha1", "kind": "CronTask",
            "metadata": {"name": "daily", "namespace": "team", "uid": "u"},
            "spec": {"schedule": "0 9 * * 1-5", "timeZone": "Europe/Berlin",
                     "taskTemplate": {"spec": {"agentRef": {"name": "team-agent"}, "description": "Report."}}},
            "status": {"nextScheduleTime": "2026-01-01T09:00:00Z", "totalExecutions": 3}
        }))
        .expect("a CronTask");
        let task: Task = serde_json::from_value(json!({
            "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Task",
            "metadata": {"name": "daily-1767258000", "creationTimestamp": "2026-01-01T08:00:00Z"},
            "spec": {}, "status": {"phase": "Completed"}
        }))
        .expect("a Task");
        let now = Timestamp::from_second(1_767_254_400).expect("time"); // 08:00
        let text = render_describe(&cron, &[task], &[], now);
        for needle in [
            "Schedule:         0 9 * * 1-5\n",
            "Concurrency:      Forbid\n",
            "Runs On:          Agent team-agent\n",
            "Next Schedule:    2026-01-01T09:00:00Z (in 60m)\n",
            "Executions:       3\n",
            "daily-1767258000  Completed",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
        }
    }
}
