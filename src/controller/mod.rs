//! The controller: reconcilers and the pure builders they call.

pub mod agent;
pub mod backoff;
pub mod cached;
pub mod conditions;
pub mod cron_task;
pub mod git_remote;
pub mod leader;
pub mod metrics;
pub mod pod;
pub mod run;
pub mod stores;
pub mod subscription;
pub mod task;

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use metrics::Metrics;
use pod::BuildSettings;

/// Field manager of everything the reconciler writes.
pub const FIELD_MANAGER: &str = "kubeoc-controller";

/// What every reconcile shares.
/// How the controller reaches the Agents' OpenCode servers for its health and activity checks.
#[derive(Clone)]
pub enum ServerRoute {
    /// Through the apiserver's service proxy: a controller outside the cluster.
    ApiserverProxy,
    /// Straight at each Agent's Service URL, with a [`crate::opencode::client::direct_client`]:
    /// a controller in the cluster, which then adds no load to the apiserver.
    Service(Client),
}

pub struct Context {
    pub client: Client,
    pub settings: BuildSettings,
    /// Who the controller's Events say reported them.
    pub reporter: Reporter,
    /// Reconcile counts and durations, served on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// When each Rollout Git context (`<ns>/<agent>/<context>`) last asked its remote.
    pub git_checks: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// The watch caches reconciles read from.
    pub stores: stores::Stores,
    /// Retry delays of failed reconciles, per object.
    pub error_backoff: backoff::Backoff,
    /// Delays between health checks of a server that is available but answers badly.
    pub health_backoff: backoff::Backoff,
    /// How often a Ready server's health is checked.
    pub health_interval: std::time::Duration,
    /// How health and activity checks reach the servers.
    pub server_route: ServerRoute,
    /// What each Agent's children were last applied from.
    pub applied_inputs: agent::AppliedInputs,
    /// The Task statuses this process wrote, until the watch cache shows them.
    pub task_statuses: task::StatusMemo,
    /// One lock per Agent's Task queue.
    pub task_queues: task::QueueLocks,
    /// The order the Task watch delivered Tasks in (first come, first served).
    pub task_arrivals: task::Arrivals,
    /// The CronTasks this process wrote, until the watch cache shows them.
    pub cron_written: cron_task::Written,
}

impl Context {
    /// A publisher of Events (on transitions only) as `kubeoc-controller`, for one reconcile.
    /// A long-lived `Recorder` keeps every Event it published for six minutes to count
    /// repeats into a series, in a map that never shrinks: with 1,000 Agents converging,
    /// megabytes for repeats that transition Events hardly have.
    pub fn recorder(&self) -> Recorder {
        Recorder::new(self.client.clone(), self.reporter.clone())
    }
}
