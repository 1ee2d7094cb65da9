//! `agent attach NAME`: a chat with an Agent's OpenCode server through the apiserver's service
//! proxy, with the user's kubeconfig (no port-forward, no Ingress, no local OpenCode).
//!
//! - on a terminal: the chat terminal ([`crate::tui`]);
//! - `--prompt TEXT` or a prompt piped on stdin: one turn, the answer streamed to stdout
//!   ([`scripted`]);
//! - `--opencode`: the user's own `opencode attach` through a loopback proxy that adds the
//!   credential ([`opencode`]).
//!
//! All three first run [`connect::connect`] (permissions, resume, Ready, password, version) and
//! keep the Agent marked as in use while they run ([`heartbeat`]).

mod connect;
mod heartbeat;
mod opencode;
mod scripted;

use std::io::{IsTerminal as _, Read as _};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::cluster::ClusterArgs;

pub use connect::{Attached, explain, server_proxy};

/// `agent attach`.
#[derive(Debug, Clone, clap::Args)]
pub struct AttachArgs {
    /// The Agent.
    pub name: String,
    /// Send this prompt, stream the answer to stdout (tool calls and progress to stderr) and
    /// exit: no terminal UI, for scripts. Without it, a prompt piped on stdin is sent the same
    /// way. Exits 1 with the model's message when the turn fails.
    #[arg(long, value_name = "TEXT")]
    pub prompt: Option<String>,
    /// Continue this session (an ID from the session list, Ctrl+S in the chat terminal).
    #[arg(long, value_name = "ID", conflicts_with = "new")]
    pub session: Option<String>,
    /// Start a new session instead of continuing your newest one (a prompt from a script always
    /// starts one unless --session names another).
    #[arg(long)]
    pub new: bool,
    /// Resume the Agent without asking when it is suspended.
    #[arg(long)]
    pub resume: bool,
    /// Run your own `opencode attach` (OpenCode's terminal UI) against the Agent, through a
    /// loopback proxy that adds the server's password.
    #[arg(long, conflicts_with = "prompt")]
    pub opencode: bool,
    /// How long `--prompt` waits for the answer.
    #[arg(long, default_value = "10m", value_parser = crate::duration::parse)]
    pub timeout: Duration,
    /// How long to wait for the Agent to become Ready.
    #[arg(long, default_value = "5m", value_parser = crate::duration::parse)]
    pub ready_timeout: Duration,
}

/// The prompt of the scriptable mode: `--prompt`, else stdin when it is not a terminal.
fn scripted_prompt(args: &AttachArgs) -> anyhow::Result<Option<String>> {
    let prompt = match &args.prompt {
        Some(prompt) => prompt.clone(),
        None if args.opencode || std::io::stdin().is_terminal() => return Ok(None),
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the prompt from stdin")?;
            text
        }
    };
    if prompt.trim().is_empty() {
        bail!(
            "the prompt is empty: pass --prompt TEXT, pipe a prompt on stdin, or attach from a terminal to chat"
        );
    }
    Ok(Some(prompt))
}

pub(super) async fn attach(cluster_args: &ClusterArgs, args: AttachArgs) -> anyhow::Result<()> {
    let prompt = scripted_prompt(&args)?;
    if prompt.is_none() && !args.opencode && !std::io::stdout().is_terminal() {
        bail!(
            "the chat terminal needs a terminal on stdout: pass --prompt TEXT (or pipe a prompt on stdin) to use attach from a script"
        );
    }
    let cluster = cluster_args.connect().await?;
    let attached = connect::connect(&cluster, &args.name, args.resume, args.ready_timeout).await?;
    let heartbeat = heartbeat::start(&cluster, &attached.namespace, &attached.agent).await;
    let result = match prompt {
        Some(prompt) => {
            scripted::run(&attached, args.session.as_deref(), &prompt, args.timeout).await
        }
        None if args.opencode => opencode::run(&attached, args.session.as_deref()).await,
        None => {
            crate::tui::run(
                attached,
                crate::tui::Start {
                    session: args.session.clone(),
                    new: args.new,
                },
            )
            .await
        }
    };
    heartbeat.stop().await;
    result
}
