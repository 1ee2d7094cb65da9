//! `agent attach --prompt TEXT`: one turn for a script. The answer streams to stdout as the
//! server sends it, tool calls and connection trouble go to stderr, and the exit status says
//! how the turn ended (the model's message on stderr when it failed). Ctrl+C aborts the turn
//! on the server before exiting.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{anyhow, bail};
use tokio::sync::mpsc;

use super::connect::{Attached, explain};
use crate::opencode::feed::{self, Feed};
use crate::opencode::transcript::Transcript;
use crate::opencode::turn::{Outcome, Output, TurnFollower};
use crate::opencode::types::session_title;

/// How long to wait for the event stream to open before sending the prompt.
const CONNECT_DEADLINE: Duration = Duration::from_secs(30);

fn print(outputs: Vec<Output>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    for output in outputs {
        match output {
            Output::Answer(text) => {
                stdout.write_all(text.as_bytes())?;
                stdout.flush()?;
            }
            Output::Progress(text) => {
                stderr.write_all(text.as_bytes())?;
            }
        }
    }
    Ok(())
}

/// Waits for the feed to say the stream is open, so no event of the turn is missed.
async fn connected(feed: &mut mpsc::Receiver<Feed>, agent: &str, ns: &str) -> anyhow::Result<()> {
    let wait = async {
        let mut last_error = None;
        while let Some(item) = feed.recv().await {
            match item {
                Feed::Connected { .. } => return Ok(()),
                Feed::Reconnecting { error, .. } => last_error = Some(error),
                Feed::Event(_) => {}
            }
        }
        Err(last_error.unwrap_or_else(|| "the event stream ended".to_string()))
    };
    match tokio::time::timeout(CONNECT_DEADLINE, wait).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            bail!("cannot open agent {agent:?}'s event stream in namespace {ns:?}: {error}")
        }
        Err(_) => bail!(
            "agent {agent:?}'s event stream in namespace {ns:?} did not open within {}s",
            CONNECT_DEADLINE.as_secs()
        ),
    }
}

pub(super) async fn run(
    attached: &Attached,
    session: Option<&str>,
    prompt: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let (agent, ns) = (attached.agent.as_str(), attached.namespace.as_str());
    let proxy = &attached.proxy;
    let mut feed = feed::spawn(proxy.clone());
    connected(&mut feed, agent, ns).await?;
    let session = match session {
        Some(id) => proxy.session(id).await.map_err(|e| match e {
            crate::opencode::client::ProxyError::Status { status: 404, .. } => anyhow!(
                "agent {agent:?} has no session {id:?} (list them in the chat terminal with Ctrl+S)"
            ),
            other => explain(other, agent, ns),
        })?,
        None => proxy
            .create_session(&session_title(&attached.user, prompt))
            .await
            .map_err(|e| explain(e, agent, ns))?,
    };
    let mut transcript = Transcript::from_messages(
        &session.id,
        proxy
            .messages(&session.id)
            .await
            .map_err(|e| explain(e, agent, ns))?,
    );
    let mut follower = TurnFollower::new(&transcript);
    proxy
        .prompt_async(&session.id, prompt)
        .await
        .map_err(|e| explain(e, agent, ns))?;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            item = feed.recv() => match item {
                Some(Feed::Event(event)) => {
                    let change = transcript.apply(&event);
                    print(follower.on_change(&transcript, &change))?;
                }
                Some(Feed::Connected { resync: true }) => {
                    eprintln!("[kubeoc] reconnected to agent {agent}; reading the session again");
                    match proxy.messages(&session.id).await {
                        Ok(messages) => {
                            transcript.resync(messages);
                            print(follower.on_resync(&transcript))?;
                        }
                        Err(e) => eprintln!("[kubeoc] reading session {} failed: {e}", session.id),
                    }
                }
                Some(Feed::Connected { resync: false }) => {}
                Some(Feed::Reconnecting { error, retry_in }) => eprintln!(
                    "[kubeoc] lost agent {agent}'s event stream ({error}); reconnecting in {:.1}s",
                    retry_in.as_secs_f64()
                ),
                None => bail!("agent {agent:?}'s event stream ended"),
            },
            () = &mut deadline => {
                let _ = proxy.abort(&session.id).await;
                bail!(
                    "agent {agent:?} did not finish answering within {} (session {}; the turn was aborted; raise --timeout to wait longer)",
                    crate::cli::output::human_duration(k8s_openapi::jiff::SignedDuration::try_from(timeout).unwrap_or_default()),
                    session.id
                );
            }
            _ = &mut interrupted => {
                let aborted = proxy.abort(&session.id).await;
                bail!(
                    "interrupted: {} (session {})",
                    if aborted.is_ok() { "the turn was aborted on the server" } else { "the turn could not be aborted" },
                    session.id
                );
            }
        }
        match follower.outcome() {
            None => {}
            Some(Outcome::Answered) => return Ok(()),
            Some(Outcome::Aborted) => bail!(
                "agent {agent:?}'s turn was aborted (session {})",
                session.id
            ),
            Some(Outcome::Failed(error)) => bail!(
                "agent {agent:?} could not answer (session {}): {}",
                session.id,
                error.message()
            ),
        }
    }
}
