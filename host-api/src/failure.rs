//! Why a plugin call failed, in words for logs, receipts and errors.

use std::time::Duration;

use wasmtime::Trap;

use crate::limits::LimitExceeded;
use crate::output::InvalidOutput;

/// Says precisely why a plugin call failed; `deadline` is the budget it had.
pub(crate) fn describe_failure(error: &wasmtime::Error, deadline: Duration) -> String {
    if let Some(limit) = error.downcast_ref::<LimitExceeded>() {
        return limit.to_string();
    }
    if let Some(invalid) = error.downcast_ref::<InvalidOutput>() {
        return invalid.to_string();
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!("deadline exceeded: ran longer than {deadline:?}"),
        Some(Trap::StackOverflow) => "stack overflow (too deep recursion)".into(),
        Some(Trap::UnreachableCodeReached) => {
            "the plugin aborted (a panic or `unreachable`)".into()
        }
        Some(Trap::MemoryOutOfBounds) => "out-of-bounds memory access".into(),
        Some(trap) => format!("trap: {trap}"),
        None => format!("{error:#}"),
    }
}
