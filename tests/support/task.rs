//! Tasks in tests: their Api, phase, and the name `task submit` reports.

use anyhow::Context as _;
use kube::Api;
use kubeoc::api::task::{Task, TaskPhase};

use super::Bed;

/// The Tasks of the bed's namespace.
pub fn tasks(bed: &Bed) -> Api<Task> {
    Api::namespaced(bed.client.clone(), &bed.n)
}

/// The Task's phase, if it has a status.
pub fn phase(task: &Task) -> Option<TaskPhase> {
    task.status.as_ref().and_then(|s| s.phase)
}

/// The name in `task submit`'s `task.kubeopencode.io/<name> created` line.
pub fn created_name(output: &str) -> anyhow::Result<String> {
    output
        .lines()
        .find_map(|l| {
            l.strip_prefix("task.kubeopencode.io/")?
                .strip_suffix(" created")
        })
        .map(str::to_string)
        .with_context(|| format!("no created line in: {output}"))
}
