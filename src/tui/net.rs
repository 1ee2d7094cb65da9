//! The chat terminal's network side: each [`Command`] runs on a task of its own against the
//! server and its answer comes back as an [`Outcome`] on a channel, so drawing never waits.

use tokio::sync::mpsc;

use super::state::{Command, Outcome};
use crate::opencode::client::{ProxyError, ServerProxy};

fn failed(what: &str, error: ProxyError) -> Outcome {
    Outcome::Failed {
        what: what.to_string(),
        error: error.to_string(),
    }
}

async fn execute(proxy: &ServerProxy, command: Command) -> Option<Outcome> {
    match command {
        Command::LoadSessions => Some(match proxy.sessions().await {
            Ok(sessions) => Outcome::Sessions(sessions),
            Err(e) => failed("reading the sessions", e),
        }),
        Command::OpenSession(id) => {
            let messages = proxy.messages(&id).await;
            let permissions = proxy.pending_permissions().await.unwrap_or_default();
            Some(match messages {
                Ok(messages) => Outcome::Opened {
                    session: id,
                    messages,
                    permissions,
                },
                Err(e) => failed(&format!("reading session {id}"), e),
            })
        }
        Command::CreateAndSend { title, text: _ } => {
            Some(match proxy.create_session(&title).await {
                // The reducer sends the prompt it kept once the session exists.
                Ok(session) => Outcome::Created(session),
                Err(e) => failed("creating a session", e),
            })
        }
        Command::Send { session, text } => proxy
            .prompt_async(&session, &text)
            .await
            .err()
            .map(|e| failed("sending the prompt", e)),
        Command::Abort(session) => proxy
            .abort(&session)
            .await
            .err()
            .map(|e| failed("stopping the turn", e)),
        Command::ReplyPermission { id, reply } => proxy
            .reply_permission(&id, reply)
            .await
            .err()
            .map(|e| failed("answering the permission request", e)),
    }
}

/// Runs `command` in the background; its outcome, if any, arrives on `outcomes`.
pub fn spawn(proxy: &ServerProxy, command: Command, outcomes: &mpsc::Sender<Outcome>) {
    let (proxy, outcomes) = (proxy.clone(), outcomes.clone());
    tokio::spawn(async move {
        if let Some(outcome) = execute(&proxy, command).await {
            let _ = outcomes.send(outcome).await;
        }
    });
}
