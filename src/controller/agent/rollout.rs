//! Git contexts with sync policy Rollout: the controller asks each remote (`git ls-remote`,
//! at most once per sync interval) which commit its ref names; a new commit goes into the pod
//! template and rolls the server.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, ResourceExt};

use super::password::secret_string;
use super::standby::whole_second;
use super::{ReconcileError, read_err};
use crate::api::agent::GitSyncStatus;
use crate::api::{Agent, AgentStatus};
use crate::controller::{Context, git_remote, pod};

/// Git contexts with sync policy Rollout: asks each remote (at most once per sync interval)
/// which commit its ref points to. Returns status.gitSyncStatuses, whose commits go into the
/// pod template (a new commit rolls the server), and when to ask again. A remote that cannot
/// be asked keeps the last commit and says so in the log; it never blocks the reconcile.
/// `lastSynced` moves only with the commit, so an unchanged remote costs no status write.
pub(super) async fn rollout_commits(
    ctx: &Context,
    agent: &Agent,
    spec: &crate::api::AgentSpec,
    existing: &AgentStatus,
    settings: &pod::BuildSettings,
) -> Result<(Option<Vec<GitSyncStatus>>, Option<Duration>), ReconcileError> {
    let contexts = pod::rollout_contexts(spec);
    if contexts.is_empty() {
        return Ok((None, None));
    }
    let ns = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    let mut statuses = Vec::new();
    let mut next: Option<Duration> = None;
    for context in contexts {
        let previous = existing
            .git_sync_statuses
            .iter()
            .flatten()
            .find(|s| s.name == context.name)
            .cloned();
        let mut status = previous.unwrap_or_else(|| GitSyncStatus {
            name: context.name.clone(),
            ..GitSyncStatus::default()
        });
        let key = format!("{ns}/{name}/{}", context.name);
        let last_check = ctx
            .git_checks
            .lock()
            .ok()
            .and_then(|checks| checks.get(&key).copied());
        let due = last_check.is_none_or(|at| at.elapsed() >= context.interval);
        if due {
            let query = git_query(ctx, &ns, spec, &context, settings).await?;
            match git_remote::remote_commit(&query).await {
                Ok(commit) if status.commit_hash.as_deref() != Some(commit.as_str()) => {
                    tracing::info!(agent = %format!("{ns}/{name}"), context = %context.name, %commit, "git remote moved: rolling the server");
                    status.commit_hash = Some(commit);
                    status.last_synced = Some(Time(whole_second(Timestamp::now())));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    agent = %format!("{ns}/{name}"),
                    context = %context.name,
                    "sync policy Rollout: asking {} for {:?}: {e}",
                    crate::redact::redact_url(&context.git.repository),
                    query.git_ref
                ),
            }
            if let Ok(mut checks) = ctx.git_checks.lock() {
                checks.insert(key, std::time::Instant::now());
            }
        }
        let wait = match last_check {
            Some(at) if !due => context.interval.saturating_sub(at.elapsed()),
            _ => context.interval,
        };
        next = Some(next.map_or(wait, |n| n.min(wait)));
        statuses.push(status);
    }
    Ok((Some(statuses), next))
}

/// What `git ls-remote` needs for a context: its ref, the Secret's credentials, the Agent's
/// CA bundle and proxy.
pub(super) async fn git_query(
    ctx: &Context,
    ns: &str,
    spec: &crate::api::AgentSpec,
    context: &pod::RolloutContext,
    settings: &pod::BuildSettings,
) -> Result<git_remote::RemoteQuery, ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut credentials = git_remote::GitCredentials::default();
    if let Some(reference) = &context.git.secret_ref {
        let secret = secrets
            .get_opt(&reference.name)
            .await
            .map_err(read_err(format!("Secret {ns}/{}", reference.name)))?;
        if let Some(secret) = secret {
            credentials = git_remote::GitCredentials {
                username: secret_string(&secret, "username"),
                password: secret_string(&secret, "password"),
                ssh_key: secret_string(&secret, "ssh-privatekey"),
                known_hosts: secret_string(&secret, "ssh-known-hosts"),
            };
        }
    }
    let ca_pem = match spec.ca_bundle.as_ref().and_then(pod::ca_bundle_source) {
        Some(pod::CaBundleSource::ConfigMap { name, key }) => {
            let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
            let map = maps
                .get_opt(name)
                .await
                .map_err(read_err(format!("ConfigMap {ns}/{name}")))?;
            map.and_then(|m| m.data?.get(&key).cloned())
        }
        Some(pod::CaBundleSource::Secret { name, key }) => {
            let secret = secrets
                .get_opt(name)
                .await
                .map_err(read_err(format!("Secret {ns}/{name}")))?;
            secret.and_then(|s| secret_string(&s, &key))
        }
        None => None,
    };
    Ok(git_remote::RemoteQuery {
        repository: context.git.repository.clone(),
        git_ref: pod::ref_or_head(&context.git.ref_),
        credentials,
        ca_pem,
        proxy_env: spec
            .proxy
            .as_ref()
            .map(|p| pod::proxy_variables(p, &settings.cluster_domain))
            .unwrap_or_default(),
    })
}
