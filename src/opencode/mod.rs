//! Talking to an Agent's OpenCode server through the kube-apiserver service proxy.

pub mod client;
pub mod types;
