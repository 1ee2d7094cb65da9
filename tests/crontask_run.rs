//! CronTasks on the testbed, with the real OpenCode server and the stub model: a CronTask every
//! minute with concurrencyPolicy Forbid never has two Tasks running, the trigger annotation
//! (`kubectl kubeoc crontask trigger`) runs one now and is skipped while one runs, the
//! scheduled minute runs too, and maxRetainedTasks holds.

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
