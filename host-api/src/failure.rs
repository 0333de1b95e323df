//! Why a plugin call failed: a kind (a bounded metric label) and the precise
//! words for logs, receipts and errors.

use std::time::Duration;

use wasmtime::Trap;

use crate::limits::LimitExceeded;
use crate::output::InvalidOutput;

/// The kinds of plugin failure, as the `reason` label of
/// `parapet_plugin_traps_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    Deadline,
    Memory,
    Table,
    Stack,
    Abort,
    InvalidOutput,
    Instantiate,
    Other,
}

impl FailureKind {
    /// Every kind, indexed by `kind as usize`.
    pub(crate) const ALL: [FailureKind; 8] = [
        FailureKind::Deadline,
        FailureKind::Memory,
        FailureKind::Table,
        FailureKind::Stack,
        FailureKind::Abort,
        FailureKind::InvalidOutput,
        FailureKind::Instantiate,
        FailureKind::Other,
    ];

    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            FailureKind::Deadline => "deadline",
            FailureKind::Memory => "memory",
            FailureKind::Table => "table",
            FailureKind::Stack => "stack",
            FailureKind::Abort => "abort",
            FailureKind::InvalidOutput => "invalid-output",
            FailureKind::Instantiate => "instantiate",
            FailureKind::Other => "other",
        }
    }
}

/// A plugin failure, classified and described.
#[derive(Debug, Clone)]
pub(crate) struct FailureReason {
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
}

/// Says precisely why a plugin call failed; `deadline` is the budget it had.
pub(crate) fn describe_failure(error: &wasmtime::Error, deadline: Duration) -> FailureReason {
    let (kind, message) = if let Some(limit) = error.downcast_ref::<LimitExceeded>() {
        let kind = match limit {
            LimitExceeded::Memory { .. } => FailureKind::Memory,
            LimitExceeded::Table { .. } => FailureKind::Table,
        };
        (kind, limit.to_string())
    } else if let Some(invalid) = error.downcast_ref::<InvalidOutput>() {
        (FailureKind::InvalidOutput, invalid.to_string())
    } else {
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => (
                FailureKind::Deadline,
                format!("deadline exceeded: ran longer than {deadline:?}"),
            ),
            Some(Trap::StackOverflow) => (
                FailureKind::Stack,
                "stack overflow (too deep recursion)".into(),
            ),
            Some(Trap::UnreachableCodeReached) => (
                FailureKind::Abort,
                "the plugin aborted (a panic or `unreachable`)".into(),
            ),
            Some(Trap::MemoryOutOfBounds) => {
                (FailureKind::Other, "out-of-bounds memory access".into())
            }
            Some(trap) => (FailureKind::Other, format!("trap: {trap}")),
            None => (FailureKind::Other, format!("{error:#}")),
        }
    };
    FailureReason { kind, message }
}

#[cfg(test)]
mod tests {
    use super::FailureKind;

    #[test]
    fn kinds_are_indexed_by_their_discriminant() {
        for (i, kind) in FailureKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i);
        }
    }
}
