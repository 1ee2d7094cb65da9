//! Status conditions from verdicts, shared by the reconcilers: a condition keeps its
//! `lastTransitionTime` while its status does not flip, so an unchanged state renders the
//! same status byte for byte (and is not written again).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// One condition as we compute it, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl Verdict {
    pub fn new(type_: &'static str, ok: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            ok,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Conditions with `lastTransitionTime` kept from `existing` when the status did not flip, so
/// an unchanged state renders byte-for-byte the same status (and is not written).
pub fn conditions(existing: &[Condition], verdicts: &[Verdict], generation: i64) -> Vec<Condition> {
    verdicts
        .iter()
        .map(|v| {
            let status = if v.ok { "True" } else { "False" }.to_string();
            let previous = existing.iter().find(|c| c.type_ == v.type_);
            let since = match previous {
                Some(c) if c.status == status => c.last_transition_time.clone(),
                _ => Time(Timestamp::now()),
            };
            Condition {
                type_: v.type_.to_string(),
                status,
                reason: v.reason.clone(),
                message: v.message.clone(),
                observed_generation: Some(generation),
                last_transition_time: since,
            }
        })
        .collect()
}

/// The condition `type_` of a list, if there is one.
pub fn find<'a>(conditions: Option<&'a [Condition]>, type_: &str) -> Option<&'a Condition> {
    conditions?.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_keep_transition_times_until_status_flips() {
        let first = conditions(
            &[],
            &[Verdict::new(
                "ServerReady",
                false,
                "DeploymentUnavailable",
                "0/1",
            )],
            1,
        );
        let again = conditions(
            &first,
            &[Verdict::new(
                "ServerReady",
                false,
                "DeploymentUnavailable",
                "0/1",
            )],
            1,
        );
        assert_eq!(
            first, again,
            "an unchanged verdict renders the same condition"
        );
        let flipped = conditions(
            &first,
            &[Verdict::new(
                "ServerReady",
                true,
                "DeploymentAvailable",
                "1/1",
            )],
            1,
        );
        assert_eq!(flipped[0].status, "True");
        assert!(flipped[0].last_transition_time.0 >= first[0].last_transition_time.0);
    }
}
