//! Conditions in kstatus style: `Ready`, `Reconciling`, `Stalled`.
//!
//! - `Ready=True` only when every component is in sync and the status
//!   describes the current generation.
//! - `Reconciling=True` while work is under way (creating, waiting for AWS,
//!   retrying a transient error), with the reason.
//! - `Stalled=True` when a human must act (access denied, name conflict,
//!   invalid value, non-empty bucket on delete), with reason and message.
//!
//! `lastTransitionTime` only moves when a condition's status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// The outcome of one pass, reduced to what the conditions say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Everything in sync.
    Ready,
    /// Work in progress or a retryable error.
    Progressing { reason: String, message: String },
    /// A human must act.
    Stalled { reason: String, message: String },
}

impl Phase {
    /// What an error means for the conditions: a human must act (`Stalled`),
    /// or it is being retried (`Reconciling`).
    pub fn of_error(e: &crate::error::Error) -> Self {
        match e.class() {
            crate::error::ErrorClass::Stalled => Phase::Stalled {
                reason: e.reason(),
                message: e.status_message(),
            },
            crate::error::ErrorClass::Retryable => Phase::Progressing {
                reason: e.reason(),
                message: e.status_message(),
            },
        }
    }
}

fn cond(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: truncate(message, 1024),
        observed_generation: generation,
        last_transition_time,
    }
}

/// Cut `s` to at most `max` bytes on a character boundary, marking the cut
/// with `…` (the one truncation every message, condition and event uses).
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    format!(
        "{}…",
        crate::naming::cut(s, max.saturating_sub('…'.len_utf8()))
    )
}

/// The three conditions for `phase` at `generation`, keeping transition times
/// from `previous` where a status did not change.
pub fn conditions(
    phase: &Phase,
    generation: Option<i64>,
    previous: &[Condition],
    now: Timestamp,
) -> Vec<Condition> {
    let now = Time(now);
    match phase {
        Phase::Ready => vec![
            cond(
                READY,
                true,
                "Reconciled",
                "all components are in sync",
                generation,
                previous,
                &now,
            ),
            cond(
                RECONCILING,
                false,
                "Reconciled",
                "",
                generation,
                previous,
                &now,
            ),
            cond(STALLED, false, "Reconciled", "", generation, previous, &now),
        ],
        Phase::Progressing { reason, message } => vec![
            cond(READY, false, reason, message, generation, previous, &now),
            cond(
                RECONCILING,
                true,
                reason,
                message,
                generation,
                previous,
                &now,
            ),
            cond(STALLED, false, reason, "", generation, previous, &now),
        ],
        Phase::Stalled { reason, message } => vec![
            cond(READY, false, reason, message, generation, previous, &now),
            cond(RECONCILING, false, reason, "", generation, previous, &now),
            cond(STALLED, true, reason, message, generation, previous, &now),
        ],
    }
}

/// Conditions equal apart from `lastTransitionTime` (used to skip no-op status writes).
pub fn same_conditions(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.type_ == y.type_
                && x.status == y.status
                && x.reason == y.reason
                && x.message == y.message
                && x.observed_generation == y.observed_generation
        })
}

/// Status of condition `type_`, if present.
pub fn condition_status<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a str> {
    conds
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn first_reconcile_is_reconciling_not_ready() {
        let c = conditions(
            &Phase::Progressing {
                reason: "Initializing".into(),
                message: "starting".into(),
            },
            Some(1),
            &[],
            t(100),
        );
        assert_eq!(condition_status(&c, READY), Some("False"));
        assert_eq!(condition_status(&c, RECONCILING), Some("True"));
        assert_eq!(condition_status(&c, STALLED), Some("False"));
        assert!(c.iter().all(|c| c.observed_generation == Some(1)));
    }

    #[test]
    fn transition_time_moves_only_on_flip() {
        let p = Phase::Progressing {
            reason: "TableCreating".into(),
            message: "m".into(),
        };
        let first = conditions(&p, Some(1), &[], t(100));
        let again = conditions(&p, Some(1), &first, t(200));
        assert_eq!(again[0].last_transition_time, Time(t(100)));
        assert!(same_conditions(&first, &again));
        let ready = conditions(&Phase::Ready, Some(1), &again, t(300));
        assert_eq!(ready[0].status, "True");
        assert_eq!(ready[0].last_transition_time, Time(t(300)));
        // Stalled=False kept its time: it was False before too.
        assert_eq!(ready[2].last_transition_time, Time(t(100)));
        assert!(!same_conditions(&again, &ready));
    }

    #[test]
    fn stalled_sets_reason() {
        let c = conditions(
            &Phase::Stalled {
                reason: "NameConflict".into(),
                message: "bucket x exists".into(),
            },
            Some(2),
            &[],
            t(1),
        );
        assert_eq!(condition_status(&c, STALLED), Some("True"));
        assert_eq!(c[0].reason, "NameConflict");
        assert_eq!(c[2].message, "bucket x exists");
        assert_eq!(condition_status(&c, RECONCILING), Some("False"));
    }

    #[test]
    fn long_messages_truncated_on_char_boundary() {
        let m = "é".repeat(2000);
        let c = conditions(
            &Phase::Stalled {
                reason: "R".into(),
                message: m,
            },
            None,
            &[],
            t(1),
        );
        assert!(c[0].message.len() <= 1024 + 3);
    }
}
