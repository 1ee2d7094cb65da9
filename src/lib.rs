//! kubeoc: live AI coding agents on Kubernetes, driven from a kubectl plugin.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod controller;
pub mod duration;
pub mod error;
pub mod front;
pub mod opencode;
pub mod redact;
pub mod tui;

pub use error::{Error, Result};
