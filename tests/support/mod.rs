//! Helpers shared by the integration tests (`mod support;`), one place for each:
//!
//! - [`process`]: running kubectl and `kubectl kubeoc` against the testbed ([`Run`]),
//!   streaming `kubectl kubeoc` output ([`Streaming`]), and a `controller run` process per
//!   test ([`Controller`]);
//! - [`audit`]: the apiserver's audit log and the controller's Events;
//! - [`cluster`]: kubeoc installed, a fresh namespace, manifests applied, the bridge address;
//! - [`agent`]: the stub model's config, waiting for a Ready Agent, its server pods and
//!   password;
//! - [`git`]: Git repositories the testbed's pods can clone;
//! - [`opencode`]: an Agent's OpenCode server through the service proxy ([`Server`]);
//! - [`bed`]: a test's own namespace with a controller for it ([`Bed`]);
//! - [`tmux`]: a terminal program driven as a person uses it ([`tmux::Tmux`]);
//! - [`pausable`]: a loopback proxy to the apiserver that a test can pause ([`PausableProxy`]).

// Each test crate uses a different subset of these helpers.
#![allow(dead_code, unused_imports)]

pub mod agent;
pub mod audit;
pub mod bed;
pub mod cluster;
pub mod git;
pub mod opencode;
pub mod pausable;
pub mod process;
pub mod task;
pub use kubeoc_testbed::tmux;

pub use agent::{
    agent_manifest, condition, ready_agent, server_env, server_password, server_pod, server_pods,
    stub_model_config,
};
pub use bed::Bed;
pub use cluster::{
    BRIDGE_HOST, ClusterConfigGuard, MODEL_ADDR, apply, create_secret, free_bridge_port,
    install_kubeoc, installed_namespace, kubeconfig, prepare_namespace,
};
pub use git::{GitDaemon, Repository, local_repository};
pub use opencode::{Server, TURN, WORKSPACE};
pub use pausable::PausableProxy;
pub use process::{
    Controller, Run, Streaming, kubectl, kubectl_run, kubeoc, kubeoc_with_input, run, run_within,
};
pub use task::{created_name, phase, tasks};

/// The plugin binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_kubectl-kubeoc");
