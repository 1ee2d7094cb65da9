//! A Task's session on its Agent's server (the service proxy), or on a templateRef Task's own
//! server (the pod proxy), streamed through the apiserver for
//! `task submit --follow` and `task logs -f`: the answer to stdout as it grows, tool calls to
//! stderr.
//!
//! The server stores a part's text only now and then while it streams, so only events carry
//! the answer word by word. `submit --follow` therefore opens the event stream before it
//! creates the Task: the session is made later (by the Task's pod), and every one of its events
//! arrives, from `session.created` on. When the session is older than the stream (`logs -f` of
//! a Task under way, or events lost to a reconnect), events cannot be trusted to be complete,
//! and a read mixed with events that overlap it would print text twice: then events only say
//! *when* to read the session again, and the reads say what to print. The Task's phase, not the
//! stream, says when the turn is over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::wait::await_condition;
use kube::{Api, ResourceExt as _};
use tokio::sync::{mpsc, oneshot};

use crate::api::Agent;
use crate::api::task::Task;
use crate::cli::agent::server_proxy;
use crate::cli::noun::AGENT;
use crate::cluster::pods::pod_ready;
use crate::controller::pod;
use crate::controller::task::task_server as controller_task_server;
use crate::opencode::client::ServerProxy;
use crate::opencode::events::Event;
use crate::opencode::feed::{self, Feed};
use crate::opencode::transcript::Transcript;
use crate::opencode::turn::{Output, TurnFollower};

/// How long after an event the session is read again: while text streams events come many a
/// second, and one read covers them all.
const SETTLE: Duration = Duration::from_millis(150);
/// How long the event stream may take to open.
const OPEN: Duration = Duration::from_secs(30);
/// How long [`SessionStream::finish`] waits for the last read.
const LAST_READ: Duration = Duration::from_secs(10);

/// A session being streamed to the terminal.
pub(super) struct SessionStream {
    title: Option<oneshot::Sender<String>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    printed: Arc<AtomicBool>,
}

/// Prints what the follower says: the answer on stdout, the rest on stderr.
pub(super) fn print(outputs: Vec<Output>, printed: &AtomicBool) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    for output in outputs {
        match output {
            Output::Answer(text) => {
                printed.store(true, Ordering::Relaxed);
                let _ = stdout.write_all(text.as_bytes());
                let _ = stdout.flush();
            }
            Output::Progress(text) => {
                let _ = stderr.write_all(text.as_bytes());
            }
        }
    }
}

/// Where a Task's session lives: its Agent's server, or (templateRef) its pod's own server,
/// waited for until the pod is Ready. `None` when the Task finished before its server was up.
pub(super) async fn task_server(
    client: &kube::Client,
    task: &Task,
) -> anyhow::Result<Option<(ServerProxy, String)>> {
    let ns = task.namespace().unwrap_or_default();
    let name = task.name_any();
    let status = task.status.clone().unwrap_or_default();
    if let Some(agent) = status.agent_ref.as_ref().or(task.spec.agent_ref.as_ref()) {
        let proxy = agent_server(client, &ns, &agent.name).await?;
        return Ok(Some((proxy, format!("agent {}", agent.name))));
    }
    let pod_name = pod::task_pod_name(&name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let tasks: Api<Task> = Api::namespaced(client.clone(), &ns);
    let ready = await_condition(pods, &pod_name, |p: Option<&Pod>| p.is_some_and(pod_ready));
    let finished = await_condition(tasks, &name, |t: Option<&Task>| {
        t.is_none_or(|t| super::phase(t.status.as_ref()).is_finished())
    });
    let pod = tokio::select! {
        ready = ready => ready.with_context(|| format!("watching pod {pod_name} in namespace {ns:?}"))?,
        _ = finished => return Ok(None),
    };
    let Some(pod) = pod else {
        return Ok(None);
    };
    let what = format!("the server of task {name}");
    let proxy = controller_task_server(client, &pod)
        .await
        .with_context(|| {
            format!(
                "reading the password of {what} (Secret {})",
                pod::task_auth_secret_name(&name)
            )
        })?
        .with_context(|| {
            format!(
                "{what} (pod {pod_name}) has no password Secret {}",
                pod::task_auth_secret_name(&name)
            )
        })?;
    Ok(Some((proxy, what)))
}

/// The server of Agent `agent` in `ns`, for a Task's session.
pub(super) async fn agent_server(
    client: &kube::Client,
    ns: &str,
    agent: &str,
) -> anyhow::Result<ServerProxy> {
    let found = Api::<Agent>::namespaced(client.clone(), ns)
        .get(agent)
        .await
        .map_err(|e| AGENT.error(e, "getting", agent, ns))?;
    server_proxy(client, &found).await
}

/// Reads the session again and prints what is new.
async fn refresh(
    proxy: &ServerProxy,
    transcript: &mut Transcript,
    follower: &mut TurnFollower,
    printed: &AtomicBool,
) {
    match proxy.messages(&transcript.session_id).await {
        Ok(messages) => {
            transcript.resync(messages);
            print(follower.on_resync(transcript), printed);
        }
        Err(e) => eprintln!(
            "[kubeoc] reading session {} failed: {e}",
            transcript.session_id
        ),
    }
}

impl SessionStream {
    /// Opens the event stream of `proxy`'s server (`server` names it in messages, e.g.
    /// "agent team-agent"); [`SessionStream::follow`] then names the session.
    pub(super) async fn open(proxy: ServerProxy, ns: &str, server: &str) -> anyhow::Result<Self> {
        let (stop_tx, stop_rx) = oneshot::channel();
        let (title_tx, title_rx) = oneshot::channel();
        let printed = Arc::new(AtomicBool::new(false));
        let mut feed = feed::spawn(proxy.clone());
        // Open before the Task exists, so no event of its session is missed.
        let opened = tokio::time::timeout(OPEN, async {
            loop {
                match feed.recv().await {
                    Some(Feed::Connected { .. }) => return Ok(()),
                    Some(Feed::Reconnecting { error, .. }) => {
                        eprintln!("[kubeoc] opening {server}'s event stream: {error} (retrying)")
                    }
                    Some(Feed::Event(_)) => {}
                    None => return Err(anyhow::anyhow!("{server}'s event stream ended")),
                }
            }
        })
        .await;
        match opened {
            Ok(result) => result?,
            Err(_) => anyhow::bail!(
                "{server}'s event stream in namespace {ns:?} did not open within {}s",
                OPEN.as_secs()
            ),
        }
        let task = tokio::spawn(stream(proxy, feed, title_rx, stop_rx, printed.clone()));
        Ok(Self {
            title: Some(title_tx),
            stop: Some(stop_tx),
            task,
            printed,
        })
    }

    /// Follows the session titled `title` (the Task's).
    pub(super) fn follow(&mut self, title: String) {
        if let Some(sender) = self.title.take() {
            let _ = sender.send(title);
        }
    }

    /// Reads the session one last time, prints the rest, and says whether any answer text
    /// was printed.
    pub(super) async fn finish(mut self) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(LAST_READ, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
        self.printed.load(Ordering::Relaxed)
    }
}

/// The session titled `title`: found among the events since the stream opened (`true`: they
/// are its whole history), or on the server (`false`: older than the stream).
async fn find_session(
    proxy: &ServerProxy,
    feed: &mut mpsc::Receiver<Feed>,
    title: &str,
    stop: &mut oneshot::Receiver<()>,
    since_open: &mut Vec<Event>,
) -> Option<(String, bool)> {
    let created = |events: &[Event]| {
        events
            .iter()
            .position(|e| matches!(e, Event::SessionCreated(s) if s.title == title))
    };
    let mut look_up = true;
    loop {
        if let Some(at) = created(since_open) {
            since_open.drain(..at);
            let id = since_open[0].session_id().unwrap_or_default().to_string();
            return Some((id, true));
        }
        if look_up {
            look_up = false;
            match proxy.session_titled(title).await {
                Ok(Some(session)) => return Some((session.id, false)),
                Ok(None) => {}
                Err(e) => eprintln!("[kubeoc] looking for session {title:?}: {e}"),
            }
            // Only what comes from now on counts.
            since_open.clear();
        }
        tokio::select! {
            _ = &mut *stop => return None,
            item = feed.recv() => match item {
                Some(Feed::Event(event)) => since_open.push(event),
                // Events were lost: the session may have been made meanwhile.
                Some(Feed::Connected { resync: true }) => look_up = true,
                Some(Feed::Connected { resync: false }) => {}
                Some(Feed::Reconnecting { error, retry_in }) => eprintln!(
                    "[kubeoc] lost the event stream ({error}); reconnecting in {:.1}s",
                    retry_in.as_secs_f64()
                ),
                None => return None,
            },
        }
    }
}

async fn stream(
    proxy: ServerProxy,
    mut feed: mpsc::Receiver<Feed>,
    title: oneshot::Receiver<String>,
    mut stop: oneshot::Receiver<()>,
    printed: Arc<AtomicBool>,
) {
    // Until the Task exists, every event might be its session's.
    let mut since_open: Vec<Event> = Vec::new();
    tokio::pin!(title);
    let title = loop {
        tokio::select! {
            _ = &mut stop => return,
            title = &mut title => match title {
                Ok(title) => break title,
                Err(_) => return,
            },
            item = feed.recv() => match item {
                Some(Feed::Event(event)) => since_open.push(event),
                Some(Feed::Reconnecting { .. }) => since_open.clear(),
                Some(Feed::Connected { .. }) => {}
                None => return,
            },
        }
    };
    let Some((id, replay)) =
        find_session(&proxy, &mut feed, &title, &mut stop, &mut since_open).await
    else {
        return;
    };
    let mut transcript = Transcript::new(&id);
    let mut follower = TurnFollower::new(&transcript);
    if replay {
        for event in &since_open {
            let change = transcript.apply(event);
            print(follower.on_change(&transcript, &change), &printed);
        }
    } else {
        refresh(&proxy, &mut transcript, &mut follower, &printed).await;
    }
    drop(since_open);
    let mut reads_only = !replay;
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = &mut stop => {
                refresh(&proxy, &mut transcript, &mut follower, &printed).await;
                return;
            }
            item = feed.recv() => match item {
                Some(Feed::Event(event)) => {
                    if reads_only {
                        if event.session_id() == Some(id.as_str()) {
                            due.get_or_insert_with(|| tokio::time::Instant::now() + SETTLE);
                        }
                    } else {
                        let change = transcript.apply(&event);
                        print(follower.on_change(&transcript, &change), &printed);
                    }
                }
                Some(Feed::Connected { resync: true }) => {
                    // Events were lost: from here on, reads say what to print.
                    reads_only = true;
                    due.get_or_insert_with(tokio::time::Instant::now);
                }
                Some(Feed::Connected { resync: false }) => {}
                Some(Feed::Reconnecting { error, retry_in }) => eprintln!(
                    "[kubeoc] lost the event stream ({error}); reconnecting in {:.1}s",
                    retry_in.as_secs_f64()
                ),
                None => {
                    // No more events: the Task's end still triggers the last read.
                    let _ = (&mut stop).await;
                    refresh(&proxy, &mut transcript, &mut follower, &printed).await;
                    return;
                }
            },
            () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                due = None;
                refresh(&proxy, &mut transcript, &mut follower, &printed).await;
            }
        }
    }
}
