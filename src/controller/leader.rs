//! Leader election on a `coordination.k8s.io/v1` Lease, so two `controller run` processes never
//! reconcile at once. The timing is client-go's: a 15 s Lease, renewed every 2 s; a leader
//! that has not renewed for 10 s (its renew deadline) steps down, so it has stopped before any
//! follower may take over. Every Lease call has a deadline shorter than the retry period, and a
//! failed renewal is retried until the renew deadline. Followers time a holder's expiry from
//! when *they* last saw its record change (their own monotonic clock), never by comparing the
//! holder's renewTime with the local wall clock, so clock skew between machines cannot make two
//! leaders.

use std::time::{Duration, Instant};

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
/// How long a holder's Lease lasts without a renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// A leader that could not renew for this long stops leading (well before LEASE_DURATION).
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Time between attempts, leading or not.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// The most one attempt (a read and a write of the Lease) may take: less than the retry
/// period, so a hanging apiserver cannot stretch the loop past the renew deadline.
pub const ATTEMPT_DEADLINE: Duration = Duration::from_millis(1500);

/// Whether a Lease is currently held by someone else, judged by its renewTime against our wall
/// clock. Only for a one-time look at a Lease we do not take part in (upstream's); the election
/// itself times expiry by observation.
pub fn held_by_other(lease: &Lease, me: &str, now: Timestamp) -> Option<String> {
    let spec = lease.spec.as_ref()?;
    let holder = spec
        .holder_identity
        .clone()
        .filter(|h| !h.is_empty() && h != me)?;
    let renewed = spec.renew_time.as_ref()?.0;
    let duration = SignedDuration::from_secs(i64::from(
        spec.lease_duration_seconds
            .unwrap_or(LEASE_DURATION.as_secs() as i32),
    ));
    (renewed + duration > now).then_some(holder)
}

/// What one attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    /// We hold the Lease (acquired or renewed).
    Leading,
    /// Another holder's Lease has not expired by our observation; ask again in `retry_in`.
    Following { holder: String, retry_in: Duration },
    /// Someone wrote the Lease between our read and our write: read again.
    Conflict,
}

/// A holder's record as last seen, and when it was first seen in that state.
#[derive(Debug, Clone)]
struct Observation {
    record: LeaseSpec,
    since: Instant,
}

/// Tracks another holder's record, to time its expiry by our own clock (client-go's way):
/// the Lease expires `leaseDurationSeconds` after the record last changed *as we saw it*.
#[derive(Debug, Default)]
struct ExpiryClock {
    observed: Option<Observation>,
}

impl ExpiryClock {
    /// Records what we read at `now`; returns how long until the holder's Lease expires
    /// (zero when it has).
    fn observe(&mut self, record: &LeaseSpec, now: Instant) -> Duration {
        let changed = self.observed.as_ref().is_none_or(|o| o.record != *record);
        if changed {
            self.observed = Some(Observation {
                record: record.clone(),
                since: now,
            });
        }
        let since = self.observed.as_ref().map_or(now, |o| o.since);
        let duration = record
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(LEASE_DURATION, Duration::from_secs);
        duration.saturating_sub(now.saturating_duration_since(since))
    }
}

/// Whether a leader whose last successful renewal was at `last_renewal` must step down.
fn must_step_down(last_renewal: Option<Instant>, now: Instant) -> bool {
    last_renewal.is_none_or(|at| now.saturating_duration_since(at) >= RENEW_DEADLINE)
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

    /// The holder of upstream's Lease in this namespace, when it is held.
    pub async fn check_upstream(&self) -> kube::Result<Option<String>> {
        let lease = self.api.get_opt(UPSTREAM_LEASE_NAME).await?;
        Ok(lease.and_then(|l| held_by_other(&l, &self.identity, Timestamp::now())))
    }

    /// One acquire-or-renew attempt. The resourceVersion we read makes the write a
    /// compare-and-swap: a racing candidate gets a conflict.
    async fn try_acquire(&self, clock: &mut ExpiryClock) -> kube::Result<Attempt> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if !holder.is_empty() && holder != self.identity {
            let remaining = clock.observe(spec, Instant::now());
            if !remaining.is_zero() {
                return Ok(Attempt::Following {
                    holder,
                    retry_in: (remaining + Duration::from_millis(50)).min(RETRY_PERIOD),
                });
            }
            tracing::info!(previous = %holder, "the Lease expired: taking it over");
        }
        if holder != self.identity {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
        spec.renew_time = Some(MicroTime(now));
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Keeps trying to lead until `stop` fires; `leading` follows the outcome. Once it has led,
    /// it returns as soon as it stops leading (a lost Lease, or no renewal within the renew
    /// deadline): the process must stop reconciling and start again as a candidate.
    pub async fn run(&self, leading: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        let mut clock = ExpiryClock::default();
        let mut last_renewal: Option<Instant> = None;
        loop {
            let attempt = tokio::time::timeout(ATTEMPT_DEADLINE, self.try_acquire(&mut clock));
            let outcome = match attempt.await {
                Ok(Ok(outcome)) => Ok(outcome),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err(format!(
                    "the apiserver did not answer within {ATTEMPT_DEADLINE:?}"
                )),
            };
            let was_leading = *leading.borrow();
            let mut wait = RETRY_PERIOD;
            let now_leading = match outcome {
                Ok(Attempt::Leading) => {
                    last_renewal = Some(Instant::now());
                    true
                }
                Ok(Attempt::Following { holder, retry_in }) => {
                    if was_leading {
                        tracing::warn!(%holder, "another controller holds the Lease now");
                    }
                    wait = retry_in;
                    false
                }
                Ok(Attempt::Conflict) => {
                    // Read again soon; a leader keeps leading until its renew deadline.
                    wait = Duration::from_millis(200);
                    was_leading && !must_step_down(last_renewal, Instant::now())
                }
                Err(err) => {
                    let keep = was_leading && !must_step_down(last_renewal, Instant::now());
                    if was_leading {
                        tracing::warn!(
                            "renewing the Lease failed: {err}; retrying (stepping down {:?} after the last renewal)",
                            RENEW_DEADLINE
                        );
                    } else {
                        tracing::warn!("leader election: {err}");
                    }
                    keep
                }
            };
            if was_leading != now_leading {
                tracing::info!(identity = %self.identity, leading = now_leading, "leadership changed");
                let _ = leading.send(now_leading);
            }
            if was_leading && !now_leading {
                return;
            }
            // A leader never sleeps past its renew deadline.
            if now_leading && let Some(at) = last_renewal {
                let left = RENEW_DEADLINE.saturating_sub(at.elapsed());
                wait = wait.min(left.max(Duration::from_millis(10)));
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Gives the Lease up so another process takes over at once (within one attempt deadline;
    /// a Lease not released simply expires).
    pub async fn release(&self) {
        let release = async {
            let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
                return Ok(());
            };
            let Some(spec) = lease.spec.as_mut() else {
                return Ok(());
            };
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.renew_time = None;
            self.api
                .replace(LEASE_NAME, &PostParams::default(), &lease)
                .await
                .map(drop)
        };
        match tokio::time::timeout(ATTEMPT_DEADLINE, release).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!("releasing the Lease: {err}"),
            Err(_) => tracing::warn!(
                "releasing the Lease: no answer within {ATTEMPT_DEADLINE:?}; it expires by itself"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: Timestamp) -> Lease {
        Lease {
            spec: Some(record(holder, renewed)),
            ..Lease::default()
        }
    }

    fn record(holder: &str, renewed: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn upstreams_lease_is_held_only_by_others_and_only_until_it_expires() {
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
    fn expiry_is_timed_from_our_own_observation_not_the_holders_clock() {
        let start = Instant::now();
        let mut clock = ExpiryClock::default();
        // A renewTime far in the past (a holder whose clock runs slow, or a record we just met)
        // still gets a full Lease duration from when we first saw it.
        let old = record("other", Timestamp::now() - SignedDuration::from_secs(3600));
        assert_eq!(clock.observe(&old, start), LEASE_DURATION);
        let later = start + Duration::from_secs(10);
        assert_eq!(clock.observe(&old, later), Duration::from_secs(5));
        // A renewal (any change of the record) starts the clock again.
        let renewed = record("other", Timestamp::now());
        assert_eq!(clock.observe(&renewed, later), LEASE_DURATION);
        // A renewTime far in the future (a holder whose clock runs fast) expires all the same.
        let mut clock = ExpiryClock::default();
        let future = record("other", Timestamp::now() + SignedDuration::from_secs(3600));
        clock.observe(&future, start);
        assert_eq!(
            clock.observe(&future, start + Duration::from_secs(16)),
            Duration::ZERO
        );
    }

    #[test]
    fn a_leader_steps_down_before_its_lease_can_expire() {
        let now = Instant::now();
        assert!(!must_step_down(Some(now), now));
        assert!(!must_step_down(
            Some(now),
            now + RENEW_DEADLINE - Duration::from_millis(1)
        ));
        assert!(must_step_down(Some(now), now + RENEW_DEADLINE));
        assert!(must_step_down(None, now));
        // The margin that keeps two leaders apart: a follower waits a whole Lease duration
        // after the last renewal it saw, and every attempt ends within its deadline.
        const {
            assert!(
                RENEW_DEADLINE.as_millis() + ATTEMPT_DEADLINE.as_millis()
                    < LEASE_DURATION.as_millis()
            )
        };
        const { assert!(ATTEMPT_DEADLINE.as_millis() < RETRY_PERIOD.as_millis()) };
    }
}
