//! `task submit`: a Task from flags (the prompt as an argument or on stdin) or from a file,
//! created as kubectl creates objects. `--wait` follows its phase on stderr (queue position,
//! pod) and prints the answer on stdout; `--follow` streams the answer while the agent writes
//! it. The exit status is 0 only for a Task that Completed (not stopped, not timed out).

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures::StreamExt as _;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, ResourceExt as _};

use super::follow::{SessionStream, agent_server, task_server};
use super::{RESOURCE, phase, phase_name, tasks};
use crate::api::common::{AgentReference, AgentTemplateReference};
use crate::api::context::{ContextItem, ContextType};
use crate::api::task::{Task, TaskPhase, TaskSpec, TaskStatus};
use crate::cli::noun::TASK;
use crate::cli::print::write_stdout;
use crate::cluster::{ClusterArgs, FIELD_MANAGER};
use crate::controller::conditions::find;

/// `task submit`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("target").args(["agent", "template", "filename"]).required(true)))]
pub struct SubmitArgs {
    /// The prompt; without it, the prompt is read from stdin.
    pub prompt: Vec<String>,
    /// Run on this live Agent (same namespace).
    #[arg(long, value_name = "AGENT", conflicts_with = "template")]
    pub agent: Option<String>,
    /// Run in a pod of its own built from this AgentTemplate (same namespace).
    #[arg(long, value_name = "TEMPLATE")]
    pub template: Option<String>,
    /// A Task manifest (YAML or JSON; - reads stdin) instead of the flags above.
    #[arg(short = 'f', long, value_name = "FILE", conflicts_with_all = ["agent", "template", "prompt"])]
    pub filename: Option<PathBuf>,
    /// Name of the Task; default: generated from the Agent's or template's name.
    #[arg(long)]
    pub name: Option<String>,
    /// A file whose content goes with the prompt as a Text context (repeatable).
    #[arg(long = "context-file", value_name = "FILE")]
    pub context_files: Vec<PathBuf>,
    /// Longest run time of the Task (spec.timeout), e.g. 30m; the queue time does not count.
    #[arg(long, value_parser = crate::duration::parse)]
    pub timeout: Option<Duration>,
    /// Wait until the Task finishes; print its answer, exit non-zero unless it Completed.
    #[arg(long)]
    pub wait: bool,
    /// Stream the agent's answer and tool calls while it works (implies --wait).
    #[arg(long)]
    pub follow: bool,
}

/// The Task the flags describe.
fn task_from_flags(args: &SubmitArgs, prompt: String) -> anyhow::Result<Task> {
    let mut contexts = Vec::new();
    for path in &args.context_files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --context-file {}", path.display()))?;
        contexts.push(ContextItem {
            name: path.file_name().map(|n| n.to_string_lossy().into_owned()),
            description: Some(format!("the file {} of the submitter", path.display())),
            type_: ContextType::Text,
            mount_path: None,
            file_mode: None,
            text: Some(text),
            config_map: None,
            git: None,
            runtime: None,
            url: None,
        });
    }
    let spec = TaskSpec {
        agent_ref: args.agent.clone().map(|name| AgentReference { name }),
        template_ref: args
            .template
            .clone()
            .map(|name| AgentTemplateReference { name }),
        description: Some(prompt),
        contexts: (!contexts.is_empty()).then_some(contexts),
        timeout: args.timeout.map(go_duration),
    };
    let base = args
        .agent
        .as_deref()
        .or(args.template.as_deref())
        .unwrap_or("task");
    let mut task = Task::new(args.name.as_deref().unwrap_or_default(), spec);
    if args.name.is_none() {
        task.metadata.name = None;
        task.metadata.generate_name = Some(format!("{base}-"));
    }
    Ok(task)
}

/// A duration as Go writes it (`1h30m0s` style is not needed: whole seconds are exact).
fn go_duration(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

fn read_stdin(what: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        bail!("no {what} given: pass it as an argument, or pipe it on stdin");
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .with_context(|| format!("reading the {what} from stdin"))?;
    Ok(text)
}

fn task_from_file(path: &PathBuf) -> anyhow::Result<Task> {
    let text = if path.as_os_str() == "-" {
        read_stdin("Task manifest")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let value: serde_json::Value = serde_saphyr::from_str(&text)
        .map_err(|e| anyhow!("{} is not YAML or JSON: {e}", path.display()))?;
    match value.get("kind").and_then(|k| k.as_str()) {
        Some("Task") => {}
        other => bail!(
            "{} holds {}, not a Task (kind: Task, apiVersion: {})",
            path.display(),
            other.map_or_else(|| "no kind".to_string(), |k| format!("a {k}")),
            crate::api::API_VERSION
        ),
    }
    serde_json::from_value(value)
        .map_err(|e| anyhow!("{} is not a valid Task: {e}", path.display()))
}

pub(super) async fn submit(cluster_args: &ClusterArgs, args: SubmitArgs) -> anyhow::Result<()> {
    let mut task = match &args.filename {
        Some(path) => task_from_file(path)?,
        None => {
            let prompt = if args.prompt.is_empty() {
                read_stdin("prompt")?
            } else {
                args.prompt.join(" ")
            };
            if prompt.trim().is_empty() {
                bail!("the prompt is empty: say what the agent should do");
            }
            task_from_flags(&args, prompt)?
        }
    };
    let cluster = cluster_args.connect().await?;
    let ns = task
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| cluster.namespace.clone());
    task.metadata.namespace = Some(ns.clone());
    let api = tasks(&cluster, &ns);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let shown = task
        .metadata
        .name
        .clone()
        .or(task.metadata.generate_name.clone())
        .unwrap_or_default();
    // The answer streams from its first word only if the agent's events are read before the
    // Task exists.
    let mut session = match (&task.spec.agent_ref, args.follow) {
        (Some(agent), true) => {
            let proxy = agent_server(&cluster.client, &ns, &agent.name).await?;
            let what = format!("agent {}", agent.name);
            Some(SessionStream::open(proxy, &ns, &what).await?)
        }
        _ => None,
    };
    let created = api
        .create(&params, &task)
        .await
        .map_err(|e| TASK.error(e, "creating", &shown, &ns))?;
    let name = created.name_any();
    let waiting = args.wait || args.follow;
    if !waiting {
        return write_stdout(&format!("{RESOURCE}/{name} created\n"));
    }
    eprintln!("{RESOURCE}/{name} created");
    if args.follow && session.is_none() {
        // From a template: its server exists once its pod is up.
        eprintln!(
            "[kubeoc] waiting for the server of task {name} (pod {}) to be Ready",
            crate::controller::pod::task_pod_name(&name)
        );
        if let Some((proxy, what)) = task_server(&cluster.client, &created).await? {
            session = Some(SessionStream::open(proxy, &ns, &what).await?);
        }
    }
    if let Some(stream) = session.as_mut() {
        stream.follow(crate::controller::pod::task_session_title(&created));
    }
    let finished = wait(&api, &name, &ns, session).await?;
    verdict(&finished).into_result(&name, &ns)
}

/// How a finished Task ended, for the exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Completed,
    Stopped { reason: String, message: String },
    Failed { reason: String, message: String },
}

/// The verdict of a finished Task's status.
pub fn verdict(task: &Task) -> Verdict {
    let status = task.status.clone().unwrap_or_default();
    let conditions = status.conditions.as_deref();
    let said = |type_: &str| {
        find(conditions, type_)
            .filter(|c| c.status == "True")
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    match status.phase {
        Some(TaskPhase::Completed) => match said("Stopped") {
            Some((reason, message)) => Verdict::Stopped { reason, message },
            None => Verdict::Completed,
        },
        _ => {
            let (reason, message) = said("Failed").unwrap_or_else(|| {
                (
                    "Unknown".to_string(),
                    "the controller gave no reason".to_string(),
                )
            });
            Verdict::Failed { reason, message }
        }
    }
}

impl Verdict {
    fn into_result(self, name: &str, ns: &str) -> anyhow::Result<()> {
        match self {
            Verdict::Completed => Ok(()),
            Verdict::Stopped { reason, message } => {
                bail!("task {name:?} in namespace {ns:?} was stopped ({reason}): {message}")
            }
            Verdict::Failed { reason, message } => bail!(
                "task {name:?} in namespace {ns:?} failed ({reason}): {message} (details: kubectl kubeoc task describe {name} -n {ns})"
            ),
        }
    }
}

/// One line of progress for a status, when it says something new.
fn progress_line(status: &TaskStatus) -> String {
    let queued = find(status.conditions.as_deref(), "Queued").filter(|c| c.status == "True");
    match (phase(Some(status)), queued) {
        (TaskPhase::Queued | TaskPhase::Pending, Some(q)) => {
            let position = status
                .queue_position
                .map(|p| format!("position {p}, "))
                .unwrap_or_default();
            format!(
                "{} ({position}{}): {}",
                phase_name(phase(Some(status))),
                q.reason,
                q.message
            )
        }
        (TaskPhase::Running, _) => format!(
            "Running (pod {})",
            status.pod_name.as_deref().unwrap_or("being created")
        ),
        (phase, _) => phase_name(phase).to_string(),
    }
}

/// The changes of one Task, each announced on stderr when its progress line changes.
struct TaskWatch<'a> {
    stream: futures::stream::BoxStream<'static, Result<Task, watcher::Error>>,
    last_line: String,
    name: &'a str,
    ns: &'a str,
}

impl<'a> TaskWatch<'a> {
    fn new(api: &Api<Task>, name: &'a str, ns: &'a str) -> Self {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let stream = watcher(api.clone(), config)
            .default_backoff()
            .applied_objects()
            .boxed();
        Self {
            stream,
            last_line: String::new(),
            name,
            ns,
        }
    }

    /// The Task's next state; Ctrl+C stops waiting (not the Task).
    async fn next(&mut self) -> anyhow::Result<Task> {
        let (name, ns) = (self.name, self.ns);
        loop {
            let task = tokio::select! {
                next = self.stream.next() => match next {
                    Some(Ok(task)) => task,
                    Some(Err(e)) => {
                        eprintln!("[kubeoc] watching task {name}: {e} (retrying)");
                        continue;
                    }
                    None => bail!("the watch of task {name:?} ended"),
                },
                _ = tokio::signal::ctrl_c() => bail!(
                    "interrupted: task {name:?} goes on in namespace {ns:?} (stop it with: kubectl kubeoc task stop {name} -n {ns})"
                ),
            };
            let line = progress_line(&task.status.clone().unwrap_or_default());
            if line != self.last_line {
                eprintln!("[kubeoc] task {name}: {line}");
                self.last_line = line;
            }
            return Ok(task);
        }
    }
}

/// Waits until the Task finishes, printing its progress to stderr.
pub(super) async fn watch_until_finished(
    api: &Api<Task>,
    name: &str,
    ns: &str,
) -> anyhow::Result<Task> {
    let mut watch = TaskWatch::new(api, name, ns);
    loop {
        let task = watch.next().await?;
        if phase(task.status.as_ref()).is_finished() {
            return Ok(task);
        }
    }
}

/// Watches the Task until it finishes, printing its progress to stderr, while `session` (if
/// any) streams its answer to stdout. Without a stream, the answer (`status.result`) is printed
/// at the end.
async fn wait(
    api: &Api<Task>,
    name: &str,
    ns: &str,
    session: Option<SessionStream>,
) -> anyhow::Result<Task> {
    let task = watch_until_finished(api, name, ns).await;
    let streamed = match session {
        Some(stream) => stream.finish().await,
        None => false,
    };
    let task = task?;
    let status = task.status.clone().unwrap_or_default();
    if !streamed
        && status.phase == Some(TaskPhase::Completed)
        && let Some(result) = status.result.as_deref()
    {
        write_stdout(&format!("{}\n", result.trim_end()))?;
    }
    Ok(task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(status: serde_json::Value) -> Task {
        serde_json::from_value(json!({
            "apiVersion": "kubeopencode.io/v1alpha1", "kind": "Task",
            "metadata": {"name": "t"}, "spec": {}, "status": status,
        }))
        .expect("a Task")
    }

    #[test]
    fn only_a_task_that_completed_unstopped_succeeds() {
        assert_eq!(
            verdict(&task(json!({"phase": "Completed"}))),
            Verdict::Completed
        );
        let stopped = task(json!({"phase": "Completed", "conditions": [
            {"type": "Stopped", "status": "True", "reason": "Timeout", "message": "ran longer than spec.timeout (1s)",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}]}));
        assert!(
            matches!(verdict(&stopped), Verdict::Stopped { reason, .. } if reason == "Timeout")
        );
        let failed = task(json!({"phase": "Failed", "conditions": [
            {"type": "Failed", "status": "True", "reason": "ModelError", "message": "stub model error 400",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}]}));
        let err = verdict(&failed).into_result("t", "ns").expect_err("fails");
        assert!(
            err.to_string()
                .contains("failed (ModelError): stub model error 400"),
            "{err}"
        );
    }

    #[test]
    fn progress_says_the_queue_position_and_why() {
        let status: TaskStatus =
            serde_json::from_value(json!({"phase": "Queued", "queuePosition": 2,
            "conditions": [{"type": "Queued", "status": "True", "reason": "AgentAtCapacity",
            "message": "Agent a runs 1 of at most 1 Tasks at once (maxConcurrentTasks)",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}))
            .expect("status");
        assert_eq!(
            progress_line(&status),
            "Queued (position 2, AgentAtCapacity): Agent a runs 1 of at most 1 Tasks at once (maxConcurrentTasks)"
        );
    }

    #[test]
    fn flags_make_a_task_with_a_generated_name() {
        let args = SubmitArgs {
            prompt: vec!["fix".into(), "it".into()],
            agent: Some("team-agent".into()),
            template: None,
            filename: None,
            name: None,
            context_files: Vec::new(),
            timeout: Some(Duration::from_secs(90)),
            wait: false,
            follow: false,
        };
        let task = task_from_flags(&args, "fix it".into()).expect("task");
        assert_eq!(task.metadata.generate_name.as_deref(), Some("team-agent-"));
        assert_eq!(task.metadata.name, None);
        assert_eq!(task.spec.timeout.as_deref(), Some("90s"));
        assert_eq!(
            task.spec.agent_ref.map(|r| r.name).as_deref(),
            Some("team-agent")
        );
    }
}
