//! The controller: reconcilers and the pure builders they call.

pub mod server_pod;
