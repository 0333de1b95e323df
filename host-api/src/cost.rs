//! What a plugin's instances cost since it was last asked: the sums the
//! edge reports to the controller with each heartbeat, so customers see
//! each plugin's cost over time.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::receipt::PluginReceipt;

/// What one plugin cost over a stretch of time, summed over its requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginCost {
    /// Requests that made an instance of it.
    pub requests: u64,
    /// Time spent making those instances, in microseconds.
    pub instantiate_us: u64,
    /// Time spent in its hooks, in microseconds (yields included).
    pub hook_us: u64,
    /// The largest linear memory one of its instances grew to, in bytes.
    pub peak_memory_bytes: u64,
    /// Requests on which it failed (trap, deadline, memory, instantiation).
    pub failures: u64,
}

impl std::ops::AddAssign for PluginCost {
    /// Sums two stretches: counts and times add, peak memory is the larger.
    fn add_assign(&mut self, other: PluginCost) {
        self.requests += other.requests;
        self.instantiate_us += other.instantiate_us;
        self.hook_us += other.hook_us;
        self.peak_memory_bytes = self.peak_memory_bytes.max(other.peak_memory_bytes);
        self.failures += other.failures;
    }
}

/// Running sums of one plugin's receipts; [`CostTally::take`] reads and
/// resets them.
#[derive(Debug, Default)]
pub(crate) struct CostTally {
    requests: AtomicU64,
    instantiate_us: AtomicU64,
    hook_us: AtomicU64,
    peak_memory_bytes: AtomicU64,
    failures: AtomicU64,
}

impl CostTally {
    /// Adds one request's receipt.
    pub(crate) fn add(&self, receipt: &PluginReceipt) {
        let micros = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.instantiate_us
            .fetch_add(micros(receipt.instantiate), Ordering::Relaxed);
        self.hook_us
            .fetch_add(micros(receipt.hook_time()), Ordering::Relaxed);
        self.peak_memory_bytes
            .fetch_max(receipt.peak_memory_bytes as u64, Ordering::Relaxed);
        self.failures
            .fetch_add(u64::from(receipt.trap.is_some()), Ordering::Relaxed);
    }

    /// The sums since the last call, and zero for the next.
    pub(crate) fn take(&self) -> PluginCost {
        let take = |counter: &AtomicU64| counter.swap(0, Ordering::Relaxed);
        PluginCost {
            requests: take(&self.requests),
            instantiate_us: take(&self.instantiate_us),
            hook_us: take(&self.hook_us),
            peak_memory_bytes: take(&self.peak_memory_bytes),
            failures: take(&self.failures),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::bindings::Hook;

    fn receipt(instantiate_us: u64, hook_us: u64, memory: usize, trap: bool) -> PluginReceipt {
        let mut receipt = PluginReceipt::new(Arc::from("p"), Duration::from_micros(instantiate_us));
        receipt
            .hooks
            .push((Hook::OnViewerRequest, Duration::from_micros(hook_us)));
        receipt.peak_memory_bytes = memory;
        receipt.trap = trap.then(|| "deadline".to_string());
        receipt
    }

    #[test]
    fn receipts_sum_until_taken_then_start_again() {
        let tally = CostTally::default();
        tally.add(&receipt(10, 5, 1 << 16, false));
        tally.add(&receipt(30, 7, 1 << 20, true));
        assert_eq!(
            tally.take(),
            PluginCost {
                requests: 2,
                instantiate_us: 40,
                hook_us: 12,
                peak_memory_bytes: 1 << 20,
                failures: 1,
            }
        );
        assert_eq!(tally.take(), PluginCost::default());
    }
}
