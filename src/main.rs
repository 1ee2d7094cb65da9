//! `kubectl-kubeoc`: parse, dispatch, map errors to kubectl's exit codes. Nothing else.

use std::process::ExitCode;

use clap::Parser;
use kubeoc::cli::Cli;

fn main() -> ExitCode {
    // A completion request is answered before anything else starts (no runtime, no parse).
    if let Some(answered) = kubeoc::cli::completion::answer_if_asked() {
        return answered;
    }
    run()
}

#[tokio::main]
async fn run() -> ExitCode {
    // clap prints usage errors itself and exits with 2, as kubectl does.
    let cli = Cli::parse();
    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {}", kubeoc::error::render(&err));
            ExitCode::from(1)
        }
    }
}
