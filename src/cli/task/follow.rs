//! A Task's session on its Agent's server, streamed through the apiserver's service proxy for
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

use kube::Api;
use tokio::sync::{mpsc, oneshot};

use crate::api::Agent;
use crate::cli::agent::server_proxy;
use crate::cli::noun::AGENT;
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
    /// Opens Agent `agent`'s event stream; [`SessionStream::follow`] then names the session.
    pub(super) async fn open(client: &kube::Client, ns: &str, agent: &str) -> anyhow::Result<Self> {
        let proxy = agent_server(client, ns, agent).await?;
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
                        eprintln!(
                            "[kubeoc] opening agent {agent}'s event stream: {error} (retrying)"
                        )
                    }
                    Some(Feed::Event(_)) => {}
                    None => return Err(anyhow::anyhow!("agent {agent:?}'s event stream ended")),
                }
            }
        })
        .await;
        match opened {
            Ok(result) => result?,
            Err(_) => anyhow::bail!(
                "agent {agent:?}'s event stream in namespace {ns:?} did not open within {}s",
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
