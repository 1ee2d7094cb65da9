//! Leader election when the apiserver stops answering one controller: the leader reaches the
//! apiserver through a loopback proxy the test pauses (what SIGSTOP of the apiserver would do
//! to it, without stopping the apiserver under the other tests).
//!
//! - A renewal blocked for longer than the Lease makes the old leader stop reconciling (it
//!   exits, saying so) before the follower takes the Lease.
//! - A renewal that fails once is retried: the leader keeps the Lease and keeps running.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kubeoc_testbed::{admin_client, wait_until};
use support::{Controller, PausableProxy, prepare_namespace};

const WAIT: Duration = Duration::from_secs(60);
const LEASE: &str = "kubeoc-controller";

async fn holder(leases: &Api<Lease>) -> anyhow::Result<Option<String>> {
    Ok(leases
        .get_opt(LEASE)
        .await?
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty()))
}

fn is_process(identity: &str, controller: &Controller) -> bool {
    controller
        .pid()
        .is_some_and(|pid| identity.ends_with(&format!("-{pid}")))
}

#[tokio::test]
async fn a_leader_cut_off_from_the_apiserver_stops_before_the_follower_takes_over()
-> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = prepare_namespace(&client, "leader-cutoff").await?;
    let n = ns.name.clone();
    let leases: Api<Lease> = Api::namespaced(client.clone(), &n);
    let proxy = PausableProxy::start().await?;
    let kubeconfig = proxy.kubeconfig();
    let kubeconfig = kubeconfig.to_str().context("kubeconfig path")?;
    let mut leader = Controller::start_with(&n, &["--kubeconfig", kubeconfig])?;
    wait_until("the proxied controller to lead", WAIT, || async {
        Ok(holder(&leases)
            .await?
            .filter(|h| is_process(h, &leader))
            .map(drop))
    })
    .await
    .with_context(|| format!("leader log:\n{}", leader.log()))?;
    let follower = Controller::start(&n)?;
    wait_until("the follower to wait for the Lease", WAIT, || async {
        Ok(follower
            .log()
            .contains("waiting for leadership")
            .then_some(()))
    })
    .await?;

    proxy.pause();
    let paused = Instant::now();
    // Watch both at once: when the leader's process ends, and when the Lease changes hands.
    let (mut leader_stopped, mut follower_took) = (None, None);
    let deadline = paused + WAIT;
    while (leader_stopped.is_none() || follower_took.is_none()) && Instant::now() < deadline {
        if leader_stopped.is_none() && leader.wait_exit(Duration::ZERO).await?.is_some() {
            leader_stopped = Some(paused.elapsed());
        }
        if follower_took.is_none()
            && holder(&leases)
                .await?
                .is_some_and(|h| is_process(&h, &follower))
        {
            follower_took = Some(paused.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.resume();
    println!(
        "apiserver cut off: leader stopped after {leader_stopped:?}, follower took the Lease after {follower_took:?}"
    );
    let leader_log = leader.log();
    let (Some(stopped), Some(took)) = (leader_stopped, follower_took) else {
        anyhow::bail!(
            "after {WAIT:?}: leader stopped {leader_stopped:?}, follower took {follower_took:?}\nleader log:\n{leader_log}\nfollower log:\n{}",
            follower.log()
        );
    };
    ensure!(
        stopped < took,
        "two leaders: the old one stopped {stopped:?} after the cut, the follower led after {took:?}\n{leader_log}"
    );
    ensure!(
        leader_log.contains("stopped reconciling"),
        "the old leader does not say it stopped reconciling:\n{leader_log}"
    );
    wait_until("the follower to reconcile", WAIT, || async {
        Ok(follower
            .log()
            .contains("starting the reconcilers")
            .then_some(()))
    })
    .await?;
    drop(follower);
    ns.delete().await
}

#[tokio::test]
async fn one_failed_renewal_is_retried_and_the_leader_keeps_leading() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = prepare_namespace(&client, "leader-retry").await?;
    let n = ns.name.clone();
    let leases: Api<Lease> = Api::namespaced(client.clone(), &n);
    let proxy = PausableProxy::start().await?;
    let kubeconfig = proxy.kubeconfig();
    let kubeconfig = kubeconfig.to_str().context("kubeconfig path")?;
    let mut leader = Controller::start_with(&n, &["--kubeconfig", kubeconfig])?;
    let identity = wait_until("the controller to lead", WAIT, || async {
        Ok(holder(&leases).await?.filter(|h| is_process(h, &leader)))
    })
    .await
    .with_context(|| format!("log:\n{}", leader.log()))?;

    proxy.pause();
    wait_until("a failed renewal in the log", WAIT, || async {
        Ok(leader
            .log()
            .contains("renewing the Lease failed")
            .then_some(()))
    })
    .await
    .with_context(|| format!("log:\n{}", leader.log()))?;
    proxy.resume();
    let resumed = k8s_openapi::jiff::Timestamp::now();
    wait_until(
        "a renewal after the apiserver answers again",
        WAIT,
        || async {
            let lease = leases.get(LEASE).await?;
            let spec = lease.spec.unwrap_or_default();
            Ok((spec.holder_identity.as_deref() == Some(identity.as_str())
                && spec.renew_time.is_some_and(|t| t.0 > resumed))
            .then_some(()))
        },
    )
    .await
    .with_context(|| format!("log:\n{}", leader.log()))?;
    ensure!(
        leader.wait_exit(Duration::ZERO).await?.is_none(),
        "one failed renewal ended the process:\n{}",
        leader.log()
    );
    ensure!(
        !leader.log().contains("stopped reconciling"),
        "the leader stepped down after one failed renewal:\n{}",
        leader.log()
    );
    ns.delete().await
}
