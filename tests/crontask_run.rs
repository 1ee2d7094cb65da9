//! CronTasks on the testbed, with the real OpenCode server and the stub model: a CronTask every
//! minute with concurrencyPolicy Forbid never has two Tasks running, the trigger annotation
//! (`kubectl kubeoc crontask trigger`) runs one now and is skipped while one runs, the
//! scheduled minute runs too, and maxRetainedTasks holds; Replace stops the running child
//! (Completed, Stopped/UserStopped) for the new run; a run due while no controller ran is
//! skipped (Scheduled reason Missed) once later than startingDeadlineSeconds, and the next
//! minute runs on time.

mod support;

use std::time::Duration;

use anyhow::ensure;
use kube::Api;
use kube::api::ListParams;
use kubeoc::api::CronTask;
use kubeoc::api::task::{Task, TaskPhase};
use kubeoc_testbed::wait_until;
use serde_json::json;
use support::{Bed, apply, kubeoc};

/// How long a run may take to start or to be reported.
const WAIT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_forbid_crontask_never_overlaps_triggers_now_and_keeps_max_retained() -> anyhow::Result<()>
{
    let bed = Bed::start("crontask").await?;
    bed.ready_agent("clock", json!({})).await?;
    let n = bed.n.clone();
    // About 8 s per run: long enough for a second trigger to find one running.
    let words: Vec<String> = (1..=8).map(|i| format!("tick{i}")).collect();
    apply(&n, &json!({
        "apiVersion": "kubeopencode.io/v1alpha1", "kind": "CronTask",
        "metadata": {"name": "ticker"},
        "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid", "maxRetainedTasks": 2,
                 "taskTemplate": {"metadata": {"labels": {"team": "clock"}},
                                  "spec": {"agentRef": {"name": "clock"}, "timeout": "60s",
                                           "description": format!("[[reply:{}]] [[slow:1000]]", words.join(" "))}}},
    }))
    .await?;
    let crons: Api<CronTask> = Api::namespaced(bed.client.clone(), &n);
    let tasks: Api<Task> = Api::namespaced(bed.client.clone(), &n);
    wait_until(
        "nextScheduleTime in the status",
        Duration::from_secs(60),
        || async {
            let cron = crons.get("ticker").await?;
            Ok(cron.status.and_then(|s| s.next_schedule_time))
        },
    )
    .await?;

    let children = || async {
        let listed = tasks
            .list(&ListParams::default().labels("kubeopencode.io/crontask=ticker"))
            .await?;
        anyhow::Ok(listed.items)
    };
    let active = |t: &Task| {
        !t.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| p.is_finished())
    };
    // Whatever is running (a scheduled minute may have just begun) ends first.
    wait_until("no child running", Duration::from_secs(90), || async {
        Ok(children().await?.iter().all(|t| !active(t)).then_some(()))
    })
    .await?;
    let before = children().await?.len();
    kubeoc(&["-n", &n, "crontask", "trigger", "ticker"])
        .await?
        .ok("crontask trigger")?;
    let triggered = wait_until(
        "the triggered Task running",
        Duration::from_secs(60),
        || async {
            let running: Vec<Task> = children()
                .await?
                .into_iter()
                .filter(|t| t.status.as_ref().and_then(|s| s.phase) == Some(TaskPhase::Running))
                .collect();
            Ok(running.into_iter().next())
        },
    )
    .await?;
    ensure!(
        triggered
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("team"))
            .map(String::as_str)
            == Some("clock"),
        "the template's labels: {:?}",
        triggered.metadata.labels
    );
    // A second trigger while it runs: Forbid skips it, and the annotation goes.
    kubeoc(&["-n", &n, "crontask", "trigger", "ticker"])
        .await?
        .ok("second trigger")?;
    wait_until(
        "the second trigger handled",
        Duration::from_secs(30),
        || async {
            let cron = crons.get("ticker").await?;
            Ok((!cron
                .metadata
                .annotations
                .unwrap_or_default()
                .contains_key("kubeopencode.io/trigger"))
            .then_some(()))
        },
    )
    .await?;
    let now_active = children().await?.into_iter().filter(|t| active(t)).count();
    ensure!(
        now_active == 1,
        "{now_active} Tasks active after a trigger under Forbid"
    );

    // Until three more runs happened (the trigger, a scheduled minute, one more trigger), never
    // two active and never more than two kept (a run the server never finishes ends at its 60 s
    // timeout).
    let triggered_again = std::cell::Cell::new(false);
    let total = wait_until(
        "three runs since the first trigger",
        Duration::from_secs(300),
        || {
            let triggered_again = &triggered_again;
            let children = &children;
            let n = &n;
            let crons = &crons;
            async move {
                let listed = children().await?;
                let running = listed.iter().filter(|t| active(t)).count();
                if running > 1 || listed.len() > 2 {
                    // Stop waiting: the check below reports it.
                    return Ok(Some(Err(format!(
                        "{running} active, {} kept: {:?}",
                        listed.len(),
                        listed
                            .iter()
                            .map(|t| (
                                t.metadata.name.clone(),
                                t.status.as_ref().and_then(|s| s.phase)
                            ))
                            .collect::<Vec<_>>()
                    ))));
                }
                let executions = crons
                    .get("ticker")
                    .await?
                    .status
                    .and_then(|s| s.total_executions)
                    .unwrap_or(0);
                let scheduled = listed.iter().any(|t| {
                    t.metadata
                        .name
                        .as_deref()
                        .and_then(|n| n.rsplit('-').next())
                        .and_then(|s| s.parse::<i64>().ok())
                        .is_some_and(|unix| unix % 60 == 0)
                });
                if scheduled && running == 0 && !triggered_again.get() {
                    kubeoc(&["-n", n, "crontask", "trigger", "ticker"])
                        .await?
                        .ok("third trigger")?;
                    triggered_again.set(true);
                }
                Ok((triggered_again.get()
                    && running == 0
                    && executions >= i64::try_from(before)? + 3)
                    .then_some(Ok(executions)))
            }
        },
    )
    .await?;
    let total = total.map_err(anyhow::Error::msg)?;
    let kept = children().await?;
    ensure!(
        kept.len() == 2,
        "maxRetainedTasks 2 keeps {} Tasks",
        kept.len()
    );
    let described = kubeoc(&["-n", &n, "crontask", "describe", "ticker"])
        .await?
        .ok("describe")?;
    ensure!(
        described.stdout.contains("Schedule:         * * * * *"),
        "{described}"
    );
    // The schedule keeps running meanwhile: at least the runs counted above.
    let shown: i64 = described
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Executions:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(-1);
    ensure!(
        shown >= total,
        "describe shows {shown} executions, fewer than {total}: {described}"
    );
    let listed = kubeoc(&["-n", &n, "crontask", "list"]).await?.ok("list")?;
    ensure!(listed.stdout.contains("ticker"), "{listed}");
    let _ = kubeoc(&["-n", &n, "crontask", "suspend", "ticker"])
        .await?
        .ok("suspend")?;
    let suspended = crons.get("ticker").await?;
    ensure!(
        suspended.spec.suspend == Some(true),
        "suspend sets spec.suspend"
    );
    Ok(())
}

/// The reason of the CronTask's Scheduled condition, and its message.
fn scheduled(cron: &CronTask) -> Option<(String, String)> {
    cron.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Scheduled")
        .map(|c| (c.reason.clone(), c.message.clone()))
}

#[tokio::test]
async fn replace_stops_the_running_child_and_a_missed_deadline_skips_the_run() -> anyhow::Result<()>
{
    let mut bed = Bed::start("crontask-replace").await?;
    bed.ready_agent("relay", json!({})).await?;
    let n = bed.n.clone();
    let crons: Api<CronTask> = Api::namespaced(bed.client.clone(), &n);
    let tasks: Api<Task> = Api::namespaced(bed.client.clone(), &n);
    let children = |cron: &'static str| {
        let tasks = tasks.clone();
        async move {
            let listed = tasks
                .list(&ListParams::default().labels(&format!("kubeopencode.io/crontask={cron}")))
                .await?;
            anyhow::Ok(listed.items)
        }
    };
    let phase_of = |t: &Task| t.status.as_ref().and_then(|s| s.phase);

    // Replace: never due by its schedule (1 January), run by the trigger.
    let words: Vec<String> = (1..=30).map(|i| format!("word{i}")).collect();
    apply(&n, &json!({
        "apiVersion": "kubeopencode.io/v1alpha1", "kind": "CronTask",
        "metadata": {"name": "swap"},
        "spec": {"schedule": "0 0 1 1 *", "concurrencyPolicy": "Replace",
                 "taskTemplate": {"spec": {"agentRef": {"name": "relay"},
                                           "description": format!("[[reply:{}]] [[slow:1000]]", words.join(" "))}}},
    }))
    .await?;
    kubeoc(&["-n", &n, "crontask", "trigger", "swap"])
        .await?
        .ok("crontask trigger")?;
    let first = wait_until("the first run Running", WAIT, || async {
        Ok(children("swap")
            .await?
            .into_iter()
            .find(|t| phase_of(t) == Some(TaskPhase::Running)))
    })
    .await?;
    let first_name = first.metadata.name.clone().unwrap_or_default();
    // Child names carry the second they were due: the next trigger needs another second.
    wait_until("a new second", WAIT, || async {
        let now = k8s_openapi::jiff::Timestamp::now();
        let created = first
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or_default();
        Ok((now.as_second() > created).then_some(()))
    })
    .await?;
    kubeoc(&["-n", &n, "crontask", "trigger", "swap"])
        .await?
        .ok("second trigger")?;
    let (stopped, second) = wait_until(
        "the first run stopped and the second Running",
        WAIT,
        || async {
            let listed = children("swap").await?;
            let stopped = listed.iter().find(|t| {
                t.metadata.name.as_deref() == Some(&first_name)
                    && phase_of(t) == Some(TaskPhase::Completed)
            });
            let second = listed.iter().find(|t| {
                t.metadata.name.as_deref() != Some(&first_name)
                    && phase_of(t) == Some(TaskPhase::Running)
            });
            Ok(stopped.cloned().zip(second.cloned()))
        },
    )
    .await?;
    let stop_reason = stopped
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Stopped"))
        .map(|c| c.reason.clone());
    ensure!(
        stop_reason.as_deref() == Some("UserStopped"),
        "the replaced run's Stopped condition: {:?}",
        stopped.status
    );
    ensure!(
        second.metadata.name != stopped.metadata.name,
        "the second run is a new Task"
    );

    // A missed deadline: the run due while no controller ran is skipped once it is later than
    // startingDeadlineSeconds, and the next minute runs on time.
    bed.controller = None;
    apply(&n, &json!({
        "apiVersion": "kubeopencode.io/v1alpha1", "kind": "CronTask",
        "metadata": {"name": "late"},
        "spec": {"schedule": "* * * * *", "startingDeadlineSeconds": 5, "concurrencyPolicy": "Allow",
                 "taskTemplate": {"spec": {"agentRef": {"name": "relay"},
                                           "description": "[[reply:late]]"}}},
    }))
    .await?;
    let created = crons
        .get("late")
        .await?
        .metadata
        .creation_timestamp
        .map(|t| t.0.as_second())
        .unwrap_or_default();
    let missed_minute = (created / 60 + 1) * 60;
    wait_until(
        "the clock 7 s past the minute due while the controller is down",
        Duration::from_secs(75),
        || async {
            let now = k8s_openapi::jiff::Timestamp::now().as_second();
            Ok((now >= missed_minute + 7).then_some(()))
        },
    )
    .await?;
    bed.restart_controller()?;
    let (reason, message) = wait_until("late's run reported missed", WAIT, || async {
        let cron = crons.get("late").await?;
        Ok(scheduled(&cron).filter(|(reason, _)| reason == "Missed"))
    })
    .await?;
    ensure!(
        message.contains("startingDeadlineSeconds (5s)"),
        "{reason}: {message}"
    );
    let next_minute = missed_minute + 60;
    let ran = wait_until(
        "late's next minute run",
        Duration::from_secs(120),
        || async {
            Ok(children("late")
                .await?
                .into_iter()
                .find_map(|t| t.metadata.name))
        },
    )
    .await?;
    ensure!(
        ran == format!("late-{next_minute}"),
        "the first child of late is {ran}, not the run due at {next_minute} (the one at {missed_minute} was missed)"
    );
    ensure!(
        children("late").await?.len() == 1,
        "late has more than one child"
    );
    Ok(())
}
