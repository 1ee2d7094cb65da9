//! Leader election on a `coordination.k8s.io/v1` Lease, so two `controller run` processes never
//! reconcile at once. Renews every 2 s; a Lease not renewed for 15 s is taken over, by a
//! follower that times its next attempt to the expiry.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

/// Name of our Lease.
pub const LEASE_NAME: &str = "kubeoc-controller";
/// The Lease upstream's KubeOpenCode controller holds while it runs.
pub const UPSTREAM_LEASE_NAME: &str = "kubeopencode.io";
const LEASE_SECONDS: i32 = 15;
const RETRY: Duration = Duration::from_secs(2);

/// Whether a Lease is currently held by someone (renewed within its duration).
pub fn held_by_other(lease: &Lease, me: &str, now: Timestamp) -> Option<String> {
    other_holder_until(lease, me).and_then(|(holder, expires)| (expires > now).then_some(holder))
}

/// Another holder of the Lease and when its hold expires, expired or not.
fn other_holder_until(lease: &Lease, me: &str) -> Option<(String, Timestamp)> {
    let spec = lease.spec.as_ref()?;
    let holder = spec
        .holder_identity
        .clone()
        .filter(|h| !h.is_empty() && h != me)?;
    let renewed = spec.renew_time.as_ref()?.0;
    let duration = SignedDuration::from_secs(i64::from(
        spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS),
    ));
    Some((holder, renewed + duration))
}

/// How long a follower waits before its next attempt: the retry period, or less when the
/// holder's Lease expires sooner (a dead leader is replaced as soon as its Lease runs out,
/// not up to a retry period later).
fn next_attempt_in(expires: Option<Timestamp>, now: Timestamp) -> Duration {
    let until_expiry = expires
        .map(|at| at.duration_since(now))
        .and_then(|d| Duration::try_from(d).ok())
        .map(|d| d + Duration::from_millis(50));
    until_expiry.map_or(RETRY, |d| d.min(RETRY))
}

/// Holds (or waits for) the Lease; publishes whether we lead.
pub struct LeaderElector {
    api: Api<Lease>,
    identity: String,
}

impl LeaderElector {
    pub fn new(client: Client, namespace: &str, identity: String) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            identity,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Fails when upstream's controller holds its Lease in this namespace.
    pub async fn check_upstream(&self) -> kube::Result<Option<String>> {
        let lease = self.api.get_opt(UPSTREAM_LEASE_NAME).await?;
        Ok(lease.and_then(|l| held_by_other(&l, &self.identity, Timestamp::now())))
    }

    /// One acquire-or-renew attempt: whether we hold the Lease afterwards, and when another
    /// holder's Lease expires.
    async fn try_acquire(&self) -> kube::Result<(bool, Option<Timestamp>)> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(LEASE_SECONDS),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok((true, None)),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok((false, None)),
                Err(e) => Err(e),
            };
        };
        if let Some((_, expires)) = other_holder_until(&lease, &self.identity)
            && expires > now
        {
            return Ok((false, Some(expires)));
        }
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(LEASE_SECONDS);
        spec.renew_time = Some(MicroTime(now));
        // The resourceVersion we read makes this a compare-and-swap: a racing candidate gets 409.
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok((true, None)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok((false, None)),
            Err(e) => Err(e),
        }
    }

    /// Keeps trying to lead until `stop` fires; `leading` follows the outcome.
    pub async fn run(&self, leading: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        loop {
            let (now_leading, expires) = match self.try_acquire().await {
                Ok(outcome) => outcome,
                Err(err) => {
                    tracing::warn!("leader election: {err}");
                    (false, None)
                }
            };
            if *leading.borrow() != now_leading {
                tracing::info!(identity = %self.identity, leading = now_leading, "leadership changed");
                let _ = leading.send(now_leading);
            }
            tokio::select! {
                _ = tokio::time::sleep(next_attempt_in(expires, Timestamp::now())) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Gives the Lease up so another process takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(LEASE_NAME).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(err) = self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!("releasing the Lease: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: Timestamp) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(15),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn a_lease_is_held_only_by_others_and_only_until_it_expires() {
        let now = Timestamp::now();
        assert_eq!(
            held_by_other(&lease("other", now), "me", now),
            Some("other".into())
        );
        assert_eq!(held_by_other(&lease("me", now), "me", now), None);
        let stale = now - SignedDuration::from_secs(16);
        assert_eq!(held_by_other(&lease("other", stale), "me", now), None);
        assert_eq!(held_by_other(&lease("", now), "me", now), None);
    }

    #[test]
    fn a_follower_tries_again_when_the_lease_runs_out() {
        let now = Timestamp::now();
        assert_eq!(next_attempt_in(None, now), RETRY);
        let soon = now + SignedDuration::from_millis(700);
        assert_eq!(next_attempt_in(Some(soon), now), Duration::from_millis(750));
        let later = now + SignedDuration::from_secs(10);
        assert_eq!(next_attempt_in(Some(later), now), RETRY);
        let past = now - SignedDuration::from_secs(1);
        assert_eq!(next_attempt_in(Some(past), now), RETRY);
    }
}
