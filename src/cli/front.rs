//! `kubectl-kubeoc front`: the authenticating front of an Agent's server pod (see
//! [`crate::front`]). The controller puts it in every server pod; people do not run it.

use std::net::SocketAddr;

use anyhow::Context as _;

use crate::front::PASSWORD_ENV;

#[derive(Debug, clap::Args)]
pub struct FrontArgs {
    /// Address to accept clients on (the Service's target port).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Address of `opencode serve` (loopback in the pod).
    #[arg(long, value_name = "ADDR")]
    pub upstream: SocketAddr,
}

pub async fn run(args: FrontArgs) -> anyhow::Result<()> {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            directives.as_deref().unwrap_or("info"),
        ))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let password = std::env::var(PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .with_context(|| {
            format!("{PASSWORD_ENV} is not set: the front has no password to check")
        })?;
    let shutdown = async {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    crate::front::serve(
        crate::front::FrontOptions {
            listen: args.listen,
            upstream: args.upstream,
            password,
        },
        shutdown,
    )
    .await
}
