//! A Task's session on its Agent's server, streamed through the apiserver's service proxy for
//! `task submit --follow` and `task logs -f`: the answer to stdout as it grows, tool calls to
//! stderr.
//!
//! The stream may open in the middle of the turn, so events alone would miss what came
//! before; and a read of the messages mixed with events that overlap it would print text twice.
//! Events therefore only say *when* to read the session again; what to print comes from the
//! reads, and the follower prints each part's text once. The Task's phase (not the stream)
//! says when the turn is over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::Api;
use tokio::sync::{mpsc, oneshot};

use crate::api::Agent;
use crate::cli::agent::server_proxy;
use crate::cli::noun::AGENT;
use crate::opencode::client::ServerProxy;
use crate::opencode::feed::{self, Feed};
use crate::opencode::transcript::Transcript;
use crate::opencode::turn::{Output, TurnFollower};

/// How long after an event the session is read again: while text streams events come many a
/// second, and one read covers them all.
const SETTLE: Duration = Duration::from_millis(150);
/// How often to look for the session while `opencode run` has not made it yet.
const LOOK_AGAIN: Duration = Duration::from_millis(500);
/// How long [`SessionStream::finish`] waits for the last read.
const LAST_READ: Duration = Duration::from_secs(10);

/// A session being streamed to the terminal.
pub(super) struct SessionStream {
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
    /// Starts streaming the session titled `title` on Agent `agent`'s server.
    pub(super) async fn start(
        client: &kube::Client,
        ns: &str,
        agent: &str,
        title: String,
    ) -> anyhow::Result<Self> {
        let proxy = agent_server(client, ns, agent).await?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let printed = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(stream(proxy, title, stop_rx, printed.clone()));
        Ok(Self {
            stop: Some(stop_tx),
            task,
            printed,
        })
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

async fn stream(
    proxy: ServerProxy,
    title: String,
    mut stop: oneshot::Receiver<()>,
    printed: Arc<AtomicBool>,
) {
    let mut feed: mpsc::Receiver<Feed> = feed::spawn(proxy.clone());
    let session = loop {
        match proxy.session_titled(&title).await {
            Ok(Some(session)) => break session,
            Ok(None) => {}
            Err(e) => eprintln!("[kubeoc] looking for session {title:?}: {e}"),
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(LOOK_AGAIN) => {}
        }
    };
    let mut transcript = Transcript::new(&session.id);
    let mut follower = TurnFollower::new(&transcript);
    refresh(&proxy, &mut transcript, &mut follower, &printed).await;
    // A read is due this long after the first event since the last read, however many come.
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = &mut stop => {
                refresh(&proxy, &mut transcript, &mut follower, &printed).await;
                return;
            }
            item = feed.recv() => match item {
                Some(Feed::Event(event)) => {
                    if event.session_id() == Some(session.id.as_str()) {
                        due.get_or_insert_with(|| tokio::time::Instant::now() + SETTLE);
                    }
                }
                Some(Feed::Connected { .. }) => {
                    due.get_or_insert_with(tokio::time::Instant::now);
                }
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
