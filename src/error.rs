//! The crate's error type and the kubectl-style rendering of errors.

use std::fmt::Write as _;

/// Errors of the kubeoc library. Each message says what failed, on which object, and what to
/// do next, the way kubectl does.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable kubeconfig or context.
    #[error("{0}")]
    Config(String),
    /// The apiserver answered with an error or could not be reached.
    #[error("{context}")]
    Kube {
        context: String,
        #[source]
        source: kube::Error,
    },
    /// A flag or argument value the user gave is not valid.
    #[error("{0}")]
    InvalidArgument(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps a kube error with what we were doing when it happened.
    pub fn kube(context: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            context: context.into(),
            source,
        }
    }
}

/// An apiserver error the way kubectl prints it: `Error from server (Reason): message`.
fn server_error(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    let status = match cause.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(status)) => status.as_ref(),
        _ => cause.downcast_ref::<kube::core::Status>()?,
    };
    let reason = if status.reason.is_empty() {
        format!("HTTP {}", status.code)
    } else {
        status.reason.clone()
    };
    Some(format!("from server ({reason}): {}", status.message))
}

/// Renders an error chain as one line: the outer message, then each distinct cause;
/// apiserver errors read as kubectl's do.
pub fn render(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        if let Some(server) = server_error(cause) {
            let _ = write!(out, ": {server}");
            break;
        }
        let cause = cause.to_string();
        // thiserror messages often embed their source already; don't repeat it.
        if !out.contains(&cause) {
            let _ = write!(out, ": {cause}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_skips_causes_already_in_the_message() {
        let inner = std::io::Error::other("connection refused");
        let err = anyhow::Error::new(inner).context("reading server version");
        assert_eq!(render(&err), "reading server version: connection refused");

        let err = anyhow::anyhow!("outer: inner detail").context("outer: inner detail");
        assert_eq!(render(&err), "outer: inner detail");
    }

    #[test]
    fn render_prints_apiserver_errors_like_kubectl() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 403, "reason": "Forbidden",
            "message": "secrets is forbidden: User \"dev\" cannot list resource \"secrets\""
        }))
        .expect("status");
        let err = anyhow::Error::new(Error::kube(
            "listing Secrets in namespace \"team\"",
            kube::Error::Api(Box::new(status)),
        ));
        assert_eq!(
            render(&err),
            "listing Secrets in namespace \"team\": from server (Forbidden): secrets is forbidden: User \"dev\" cannot list resource \"secrets\""
        );
    }
}
