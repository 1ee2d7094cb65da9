//! The CronTask reconciler: Tasks from `spec.taskTemplate` on a cron schedule, as a CronJob
//! makes Jobs. Each reconcile reads the CronTask and its child Tasks from the watch caches,
//! [`plan`]s (pure) what to do, then does it:
//!
//! - **due run**: the most recent scheduled time since the last run ([`schedule::due`]),
//!   unless suspended or past `startingDeadlineSeconds`, creates Task `<name>-<unix time>`.
//!   The name is deterministic, so a second reconcile for the same time gets 409 and no time
//!   ever gets two Tasks. The trigger annotation creates `<name>-<unix now>` and is cleared
//!   first, under the read resourceVersion, so one trigger is one run.
//! - **concurrencyPolicy**: Forbid (default) skips while a child is active (the run still
//!   starts when it finishes, within the deadline, as in a CronJob); Allow runs anyway;
//!   Replace stops the active children (annotation `kubeopencode.io/stop`) and runs.
//! - **maxRetainedTasks**: the oldest finished children are deleted to make room; when all
//!   are active the run is skipped.
//!
//! Status (server-side applied, only when changed) has the active children, the times, the
//! count of Tasks created and the `Scheduled` condition; the reconcile requeues itself for
//! the next scheduled time.

pub mod schedule;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::conditions::{self, Verdict};
use super::{Context, FIELD_MANAGER};
use crate::api::API_VERSION;
use crate::api::cron_task::{ConcurrencyPolicy, CronTask, CronTaskStatus, TRIGGER_ANNOTATION};
use crate::api::task::{STOP_ANNOTATION, Task, TaskPhase, TaskStatus};

/// Label on every child Task: the CronTask's name. The Task watch maps a change back to its
/// CronTask by it ([`cron_of_task`]), and upstream's tooling selects children by it.
pub const CRONTASK_LABEL: &str = "kubeopencode.io/crontask";

/// `spec.maxRetainedTasks` when unset (upstream's default).
pub const DEFAULT_MAX_RETAINED: i32 = 10;

/// The condition this reconciler owns: True while runs start on schedule.
pub const CONDITION: &str = "Scheduled";

/// Longest label value: the CronTask's name is the value of [`CRONTASK_LABEL`].
const MAX_NAME: usize = 63;

/// Longest requeue: a far next run is re-planned daily (and timers stay small).
const MAX_REQUEUE: Duration = Duration::from_secs(24 * 3600);

/// How long a reconcile distrusts a cached CronTask that it has written since.
const STALE_FOR: Duration = Duration::from_secs(30);

/// Why a CronTask reconcile failed; the variant names the `error` label of
/// `kubeoc_reconcile_errors_total`.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("writing status of {object}: {source}")]
    Status {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("{action} {object}: {source}")]
    Write {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
}

impl super::run::Failure for ReconcileError {
    fn label(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::Write { .. } => "write",
        }
    }
}

fn object(cron: &CronTask) -> String {
    format!(
        "CronTask {}/{}",
        cron.namespace().unwrap_or_default(),
        cron.name_any()
    )
}

/// The CronTask a Task belongs to, from its [`CRONTASK_LABEL`]: wires the Task watch to
/// this reconciler, so a child that finishes (or goes) re-plans its CronTask.
pub fn cron_of_task(task: &Task) -> Option<ObjectRef<CronTask>> {
    let name = task.labels().get(CRONTASK_LABEL)?;
    Some(ObjectRef::new(name).within(&task.namespace()?))
}

/// A child Task as [`plan`] sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    pub name: String,
    pub uid: Option<String>,
    pub phase: Option<TaskPhase>,
    pub created: Option<Timestamp>,
    pub completed: Option<Timestamp>,
    /// Already asked to stop (Replace does not ask again).
    pub stopping: bool,
}

impl Child {
    /// `task` with its newest known status (the watch cache may lag behind our writes).
    pub fn new(task: &Task, status: &TaskStatus) -> Self {
        Self {
            name: task.name_any(),
            uid: task.metadata.uid.clone(),
            phase: status.phase,
            created: task.metadata.creation_timestamp.as_ref().map(|t| t.0),
            completed: status.completion_time.as_ref().map(|t| t.0),
            stopping: task
                .annotations()
                .get(STOP_ANNOTATION)
                .is_some_and(|v| v == "true"),
        }
    }

    /// Not finished yet (Pending, Queued, Running, or no phase yet).
    pub fn active(&self) -> bool {
        !self.phase.is_some_and(TaskPhase::is_finished)
    }
}

/// Whether `task` is a child of `cron`: same namespace, its label, and `cron` as controller.
pub fn is_child(cron: &CronTask, task: &Task) -> bool {
    task.namespace() == cron.namespace()
        && task.labels().get(CRONTASK_LABEL) == Some(&cron.name_any())
        && task
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == cron.metadata.uid.as_ref())
}

/// Name of the Task for a run scheduled at `at`: `<name>-<unix seconds>`, the same on every
/// reconcile (and upstream's).
pub fn child_name(cron_name: &str, at: Timestamp) -> String {
    format!("{cron_name}-{}", at.as_second())
}

/// One run to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub name: String,
    /// The scheduled time (now, for a trigger): becomes lastScheduleTime.
    pub scheduled: Timestamp,
    pub triggered: bool,
}

/// An Event to publish on the CronTask.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// What one reconcile does, in order: clear the trigger, stop, delete, create, write status.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Remove the trigger annotation (it was acted on, or refused).
    pub clear_trigger: bool,
    /// Active children to stop (Replace).
    pub stop: Vec<String>,
    /// Finished children to delete to make room (maxRetainedTasks), oldest first.
    pub delete: Vec<Child>,
    /// The Task to create.
    pub create: Option<Run>,
    /// The status to write, as if `create` succeeds (counted, lastScheduleTime set).
    pub status: CronTaskStatus,
    /// The `Scheduled` condition (also in `status`).
    pub verdict: Verdict,
    pub notices: Vec<Notice>,
    /// When to reconcile again (the next scheduled time); `None`: on a change only.
    pub requeue_at: Option<Timestamp>,
}

/// Decides what to do for `cron` with its `children` at `now`, without I/O.
pub fn plan(cron: &CronTask, children: &[Child], now: Timestamp) -> Plan {
    // Whole seconds, as the status stores times.
    let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
    let previous = cron.status.clone().unwrap_or_default();
    let ns = cron.namespace().unwrap_or_default();
    let mut active: Vec<&Child> = children.iter().filter(|c| c.active()).collect();
    active.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    let last_success = children
        .iter()
        .filter(|c| c.phase == Some(TaskPhase::Completed))
        .filter_map(|c| c.completed.map(Time))
        .chain(previous.last_successful_time.clone())
        .max();
    let refs: Vec<ObjectReference> = active.iter().map(|c| reference(&ns, c)).collect();
    let mut plan = Plan {
        clear_trigger: false,
        stop: Vec::new(),
        delete: Vec::new(),
        create: None,
        status: CronTaskStatus {
            active: Some(i32::try_from(active.len()).unwrap_or(i32::MAX)),
            active_refs: (!refs.is_empty()).then_some(refs),
            last_schedule_time: previous.last_schedule_time.clone(),
            last_successful_time: last_success,
            next_schedule_time: None,
            total_executions: Some(previous.total_executions.unwrap_or(0)),
            conditions: None,
        },
        verdict: Verdict::new(CONDITION, true, "Scheduled", ""),
        notices: Vec::new(),
        requeue_at: None,
    };
    let verdict = decide(&mut plan, cron, children, &active, now);
    let before = conditions::find(previous.conditions.as_deref(), CONDITION);
    let flipped =
        before.is_none_or(|c| c.reason != verdict.reason || (c.status == "True") != verdict.ok);
    let trigger_skipped = plan.notices.iter().any(|n| n.reason == "TriggerSkipped");
    if !verdict.ok && flipped && !trigger_skipped {
        let warning = !matches!(
            verdict.reason.as_str(),
            "Suspended" | "ConcurrencyForbidden"
        );
        plan.notices
            .push(notice(warning, &verdict.reason, verdict.message.clone()));
    }
    let generation = cron.metadata.generation.unwrap_or(0);
    let existing = previous.conditions.as_deref().unwrap_or_default();
    let mut all: Vec<Condition> = existing
        .iter()
        .filter(|c| c.type_ != CONDITION)
        .cloned()
        .collect();
    all.extend(conditions::conditions(
        existing,
        std::slice::from_ref(&verdict),
        generation,
    ));
    all.sort_by(|a, b| a.type_.cmp(&b.type_));
    plan.status.conditions = Some(all);
    plan.verdict = verdict;
    plan
}

fn decide(
    plan: &mut Plan,
    cron: &CronTask,
    children: &[Child],
    active: &[&Child],
    now: Timestamp,
) -> Verdict {
    let name = cron.name_any();
    let refuse = |reason: &str, message: String| Verdict::new(CONDITION, false, reason, message);
    if name.len() > MAX_NAME {
        return refuse(
            "NameTooLong",
            format!(
                "the name is {} characters, but child Tasks carry it in label {CRONTASK_LABEL}, which allows {MAX_NAME}: recreate the CronTask with a shorter name",
                name.len()
            ),
        );
    }
    let schedule = match schedule::parse(&cron.spec.schedule, cron.spec.time_zone.as_deref()) {
        Ok(schedule) => schedule,
        Err(message) => return refuse("ScheduleInvalid", message),
    };
    if cron.spec.suspend == Some(true) {
        return refuse(
            "Suspended",
            "spec.suspend is true: no Tasks are created (a trigger waits until then); set it to false to resume".into(),
        );
    }
    let next = schedule.next_after(now);
    plan.status.next_schedule_time = next.map(Time);
    plan.requeue_at = next;
    let triggered = cron
        .annotations()
        .get(TRIGGER_ANNOTATION)
        .is_some_and(|v| v == "true");
    let mut skipped = 0;
    let run = if triggered {
        plan.clear_trigger = true;
        Run {
            name: child_name(&name, now),
            scheduled: now,
            triggered: true,
        }
    } else {
        let last = plan.status.last_schedule_time.as_ref().map(|t| t.0);
        let created = cron
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0);
        let deadline = cron
            .spec
            .starting_deadline_seconds
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)));
        let due = schedule::due(&schedule, last, created, now, deadline);
        let Some(scheduled) = due.scheduled else {
            if next.is_none() {
                return refuse(
                    "ScheduleInvalid",
                    format!(
                        "spec.schedule {:?} matches no time after {now} in {}: fix the day and month",
                        cron.spec.schedule,
                        schedule.zone_name()
                    ),
                );
            }
            return waiting(plan);
        };
        if due.missed {
            return refuse(
                "Missed",
                format!(
                    "the run due at {scheduled} did not start within startingDeadlineSeconds ({}s); {}",
                    cron.spec.starting_deadline_seconds.unwrap_or(0),
                    next_text(next)
                ),
            );
        }
        skipped = due.skipped;
        Run {
            name: child_name(&name, scheduled),
            scheduled,
            triggered: false,
        }
    };
    let what = if run.triggered {
        format!("the triggered run (annotation {TRIGGER_ANNOTATION})")
    } else {
        format!("the run due at {}", run.scheduled)
    };
    let skip = |plan: &mut Plan, reason: &str, message: String| {
        if run.triggered {
            let note = format!("{message}; set the annotation again to retry");
            plan.notices.push(notice(true, "TriggerSkipped", note));
        }
        refuse(reason, message)
    };
    if children.iter().any(|c| c.name == run.name) {
        // Created by an earlier reconcile whose status write did not land.
        plan.status.last_schedule_time =
            Some(Time(run.scheduled)).max(plan.status.last_schedule_time.take());
        return waiting(plan);
    }
    let policy = cron
        .spec
        .concurrency_policy
        .unwrap_or(ConcurrencyPolicy::Forbid);
    let names = |list: &[&Child]| {
        list.iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !active.is_empty() {
        match policy {
            ConcurrencyPolicy::Forbid => {
                let message = format!(
                    "{what} was skipped: Task {} still active (concurrencyPolicy Forbid){}",
                    names(active),
                    if run.triggered {
                        ""
                    } else {
                        "; the newest due run starts when it finishes, within startingDeadlineSeconds if set"
                    }
                );
                return skip(plan, "ConcurrencyForbidden", message);
            }
            ConcurrencyPolicy::Replace => {
                plan.stop = active
                    .iter()
                    .filter(|c| !c.stopping)
                    .map(|c| c.name.clone())
                    .collect();
                if !plan.stop.is_empty() {
                    let note = format!(
                        "stopping Task {} for {what} (concurrencyPolicy Replace)",
                        plan.stop.join(", ")
                    );
                    plan.notices.push(notice(false, "Replacing", note));
                }
            }
            ConcurrencyPolicy::Allow => {}
        }
    }
    let max = usize::try_from(
        cron.spec
            .max_retained_tasks
            .unwrap_or(DEFAULT_MAX_RETAINED)
            .max(1),
    )
    .unwrap_or(1);
    let needed = (children.len() + 1).saturating_sub(max);
    let mut finished: Vec<&Child> = children.iter().filter(|c| !c.active()).collect();
    finished
        .sort_by(|a, b| (a.completed, a.created, &a.name).cmp(&(b.completed, b.created, &b.name)));
    if finished.len() < needed {
        let hint = if plan.stop.is_empty() || run.triggered {
            "delete a Task or raise spec.maxRetainedTasks"
        } else {
            "it starts when the stopped Tasks finish"
        };
        let message = match finished.len() {
            0 => format!(
                "{what} was skipped: maxRetainedTasks is {max} and all {} child Tasks are active; {hint}",
                children.len()
            ),
            f => format!(
                "{what} was skipped: maxRetainedTasks is {max}, {} child Tasks exist and only {f} finished; {hint}",
                children.len()
            ),
        };
        return skip(plan, "MaxRetainedReached", message);
    }
    plan.delete = finished[..needed].iter().map(|c| (*c).clone()).collect();
    if !plan.delete.is_empty() {
        let doomed: Vec<&Child> = plan.delete.iter().collect();
        let note = format!(
            "deleting finished Task {} to keep at most {max} (maxRetainedTasks)",
            names(&doomed)
        );
        plan.notices.push(notice(false, "DeletingOldTasks", note));
    }
    let mut note = format!("created Task {} for {what}", run.name);
    if skipped > 0 {
        let more = if skipped >= schedule::MAX_COUNTED {
            "+"
        } else {
            ""
        };
        note.push_str(&format!(
            "; {skipped}{more} earlier scheduled runs did not start"
        ));
    }
    plan.notices.push(notice(false, "TaskCreated", note));
    plan.status.last_schedule_time = Some(Time(run.scheduled));
    plan.status.total_executions =
        Some(plan.status.total_executions.unwrap_or(0).saturating_add(1));
    plan.create = Some(run);
    waiting(plan)
}

/// The verdict of a CronTask whose runs start on schedule.
fn waiting(plan: &Plan) -> Verdict {
    let last = plan
        .status
        .last_schedule_time
        .as_ref()
        .map_or("none yet".to_string(), |t| t.0.to_string());
    let next = plan.status.next_schedule_time.as_ref().map(|t| t.0);
    Verdict::new(
        CONDITION,
        true,
        "Scheduled",
        format!("last run {last}; {}", next_text(next)),
    )
}

fn notice(warning: bool, reason: &str, note: String) -> Notice {
    Notice {
        warning,
        reason: reason.to_string(),
        note,
    }
}

fn next_text(next: Option<Timestamp>) -> String {
    next.map_or("no next run".to_string(), |t| format!("next run at {t}"))
}

fn reference(ns: &str, child: &Child) -> ObjectReference {
    ObjectReference {
        api_version: Some(API_VERSION.to_string()),
        kind: Some("Task".to_string()),
        name: Some(child.name.clone()),
        namespace: Some(ns.to_string()),
        uid: child.uid.clone(),
        ..Default::default()
    }
}

/// The Task `name` of a run: the template's labels (plus [`CRONTASK_LABEL`]), annotations
/// and spec, owned by `cron` (deleting the CronTask deletes its Tasks).
pub fn child_task(cron: &CronTask, name: &str) -> Task {
    let template = &cron.spec.task_template;
    let meta = template.metadata.as_ref();
    let mut labels: BTreeMap<String, String> =
        meta.and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(CRONTASK_LABEL.to_string(), cron.name_any());
    Task {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: cron.namespace(),
            labels: Some(labels),
            annotations: meta
                .and_then(|m| m.annotations.clone())
                .filter(|a| !a.is_empty()),
            owner_references: Some(vec![OwnerReference {
                api_version: API_VERSION.to_string(),
                kind: "CronTask".to_string(),
                name: cron.name_any(),
                uid: cron.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The CronTasks (`<ns>/<name>` -> resourceVersion read, when) this process wrote since it
/// read them: until the watch cache shows the write, a reconcile of the old version would
/// count from an old status.
#[derive(Debug, Default)]
pub struct Written(Mutex<HashMap<String, (String, Instant)>>);

fn cache_key(cron: &CronTask) -> String {
    format!(
        "{}/{}",
        cron.namespace().unwrap_or_default(),
        cron.name_any()
    )
}

impl Written {
    /// Whether the cached `cron` is a version this process has written over (and not long
    /// ago).
    fn stale(&self, cron: &CronTask) -> bool {
        let mut written = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = cache_key(cron);
        match written.get(&key) {
            Some((rv, at))
                if at.elapsed() < STALE_FOR
                    && Some(rv) == cron.metadata.resource_version.as_ref() =>
            {
                true
            }
            Some(_) => {
                written.remove(&key);
                false
            }
            None => false,
        }
    }

    fn wrote(&self, cron: &CronTask) {
        if let Some(rv) = &cron.metadata.resource_version {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(cache_key(cron), (rv.clone(), Instant::now()));
        }
    }
}

/// Reconciles one CronTask.
pub async fn reconcile(cron: Arc<CronTask>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if !ctx.stores.synced() || ctx.cron_written.stale(&cron) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if cron.metadata.deletion_timestamp.is_some() {
        // The garbage collector deletes the children (owner references).
        return Ok(Action::await_change());
    }
    let children: Vec<Child> = ctx
        .stores
        .tasks
        .state()
        .iter()
        .filter(|task| is_child(&cron, task))
        .map(|task| Child::new(task, &ctx.task_statuses.current(task)))
        .collect();
    let now = Timestamp::now();
    let plan = plan(&cron, &children, now);
    if plan.clear_trigger {
        if !clear_trigger(&ctx, &cron).await? {
            // Changed (or gone) since the cache saw it: its watch event brings it back.
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        ctx.cron_written.wrote(&cron);
    }
    let status = match act(&ctx, &cron, &plan).await {
        Ok(status) => status,
        Err(e) => {
            if plan.clear_trigger {
                let note = format!("{e}; set the annotation {TRIGGER_ANNOTATION} again to retry");
                publish(&ctx, &cron, &notice(true, "TriggerFailed", note)).await;
            }
            return Err(e);
        }
    };
    for notice in &plan.notices {
        publish(&ctx, &cron, notice).await;
    }
    if write_status(&ctx, &cron, &status).await? {
        ctx.cron_written.wrote(&cron);
    }
    Ok(match plan.requeue_at {
        None => Action::await_change(),
        Some(at) => {
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
            Action::requeue((wait + Duration::from_secs(1)).min(MAX_REQUEUE))
        }
    })
}

/// Stops, deletes and creates the plan's Tasks; the status to write then.
async fn act(
    ctx: &Context,
    cron: &CronTask,
    plan: &Plan,
) -> Result<CronTaskStatus, ReconcileError> {
    let ns = cron.namespace().unwrap_or_default();
    let tasks: Api<Task> = Api::namespaced(ctx.client.clone(), &ns);
    let write = |action: &'static str, name: &str| {
        let object = format!("Task {ns}/{name} (of {})", object(cron));
        move |source| ReconcileError::Write {
            action,
            object,
            source,
        }
    };
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    for name in &plan.stop {
        let patch = json!({"metadata": {"annotations": {STOP_ANNOTATION: "true"}}});
        match tasks.patch(name, &params, &Patch::Merge(&patch)).await {
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            other => other.map(|_| ()).map_err(write("stopping", name))?,
        }
    }
    for child in &plan.delete {
        let uid = child.uid.clone();
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match tasks.delete(&child.name, &params).await {
            // Gone already, or a new Task of the same name.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            other => other.map(|_| ()).map_err(write("deleting", &child.name))?,
        }
    }
    let mut status = plan.status.clone();
    let Some(run) = &plan.create else {
        return Ok(status);
    };
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match tasks.create(&params, &child_task(cron, &run.name)).await {
        Ok(task) => {
            let refs = status.active_refs.get_or_insert_with(Vec::new);
            refs.push(reference(&ns, &Child::new(&task, &TaskStatus::default())));
            status.active = Some(i32::try_from(refs.len()).unwrap_or(i32::MAX));
        }
        // Created by an earlier reconcile, and counted then.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let previous = cron.status.as_ref().and_then(|s| s.total_executions);
            status.total_executions = Some(previous.unwrap_or(0));
        }
        Err(source) => return Err(write("creating", &run.name)(source)),
    }
    Ok(status)
}

/// Removes the trigger annotation, if `cron` is still the version read; false when it
/// changed meanwhile (or is gone), and nothing may be done on the old version.
async fn clear_trigger(ctx: &Context, cron: &CronTask) -> Result<bool, ReconcileError> {
    let api: Api<CronTask> =
        Api::namespaced(ctx.client.clone(), &cron.namespace().unwrap_or_default());
    let patch = json!({"metadata": {
        "resourceVersion": cron.resource_version(),
        "annotations": {TRIGGER_ANNOTATION: null},
    }});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch(&cron.name_any(), &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(source) => Err(ReconcileError::Write {
            action: "removing the trigger annotation from",
            object: object(cron),
            source,
        }),
    }
}

/// Server-side applies `status` when it differs from the cached one (as the API stores it:
/// times in whole seconds); true when written. A CronTask deleted meanwhile is not an error.
async fn write_status(
    ctx: &Context,
    cron: &CronTask,
    status: &CronTaskStatus,
) -> Result<bool, ReconcileError> {
    let before = serde_json::to_value(cron.status.clone().unwrap_or_default()).ok();
    if before.is_some() && before == serde_json::to_value(status).ok() {
        return Ok(false);
    }
    let api: Api<CronTask> =
        Api::namespaced(ctx.client.clone(), &cron.namespace().unwrap_or_default());
    let patch = json!({"apiVersion": API_VERSION, "kind": "CronTask", "status": status});
    match api
        .patch_status(
            &cron.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(source) => Err(ReconcileError::Status {
            object: object(cron),
            source,
        }),
    }
}

async fn publish(ctx: &Context, cron: &CronTask, notice: &Notice) {
    let event = Event {
        type_: if notice.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: notice.reason.clone(),
        note: Some(notice.note.chars().take(1024).collect()),
        action: "Schedule".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder().publish(&event, &cron.object_ref(&())).await {
        tracing::warn!(crontask = %cache_key(cron), "could not publish an Event: {e}");
    }
}

#[cfg(test)]
mod tests;
