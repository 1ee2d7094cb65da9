//! Talking to an Agent's OpenCode server through the kube-apiserver service proxy.

pub mod client;
pub mod events;
pub mod feed;
pub mod transcript;
pub mod turn;
pub mod types;
