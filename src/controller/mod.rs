//! The controller: reconcilers and the pure builders they call.

pub mod agent;
pub mod git_remote;
pub mod leader;
pub mod metrics;
pub mod run;
pub mod server_pod;

pub use run::Context;
