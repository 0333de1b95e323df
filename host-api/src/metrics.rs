//! A plugin's metrics, registered once when it loads so that the request path
//! only records values.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Histogram};

use crate::bindings::Hook;
use crate::cost::{CostTally, PluginCost};
use crate::failure::FailureKind;
use crate::receipt::PluginReceipt;

/// Every hook, indexed by `hook as usize`.
const HOOKS: [Hook; 5] = [
    Hook::OnLaunch,
    Hook::OnViewerRequest,
    Hook::OnOriginRequest,
    Hook::OnOriginResponse,
    Hook::OnViewerResponse,
];

/// Handles of one plugin's series, labelled with its name (and the hook),
/// and of its distribution's CPU time.
pub(crate) struct PluginMetrics {
    instantiate: Histogram,
    hook_seconds: [Histogram; 5],
    traps: [[Counter; FailureKind::ALL.len()]; 5],
    peak_memory: Histogram,
    host_calls: Counter,
    /// `parapet_plugin_cpu_microseconds_total{distribution}`: time the
    /// distribution's plugins ran (instantiations and hooks, yields not
    /// counted), shared by its plugins. Microseconds, as the exporter's
    /// counters are integers.
    cpu: Counter,
    /// The sums the edge reports to the controller.
    cost: CostTally,
}

impl PluginMetrics {
    /// Registers the series of plugin `name` of `distribution` with the
    /// installed recorder.
    pub(crate) fn register(name: &Arc<str>, distribution: &str) -> Self {
        let plugin = name.clone();
        PluginMetrics {
            instantiate: metrics::histogram!("parapet_plugin_instantiate_seconds", "plugin" => plugin.clone()),
            hook_seconds: HOOKS.map(|hook| {
                metrics::histogram!("parapet_plugin_hook_seconds", "plugin" => plugin.clone(), "hook" => hook.name())
            }),
            traps: HOOKS.map(|hook| {
                FailureKind::ALL.map(|kind| {
                    metrics::counter!(
                        "parapet_plugin_traps_total",
                        "plugin" => plugin.clone(), "hook" => hook.name(), "reason" => kind.label()
                    )
                })
            }),
            peak_memory: metrics::histogram!("parapet_plugin_peak_memory_bytes", "plugin" => plugin.clone()),
            host_calls: metrics::counter!("parapet_plugin_host_calls_total", "plugin" => plugin),
            cpu: metrics::counter!("parapet_plugin_cpu_microseconds_total", "distribution" => distribution.to_string()),
            cost: CostTally::default(),
        }
    }

    /// An instance was made in `took`, of which it ran `ran`.
    pub(crate) fn instantiated(&self, took: Duration, ran: Duration) {
        self.instantiate.record(took.as_secs_f64());
        self.add_cpu(ran);
    }

    /// `hook` took `took` (yields included), of which it ran `ran`.
    pub(crate) fn hook_ran(&self, hook: Hook, took: Duration, ran: Duration) {
        self.hook_seconds[hook as usize].record(took.as_secs_f64());
        self.add_cpu(ran);
    }

    fn add_cpu(&self, ran: Duration) {
        self.cpu
            .increment(u64::try_from(ran.as_micros()).unwrap_or(u64::MAX));
    }

    /// The plugin failed in `hook` for a reason of `kind`.
    pub(crate) fn trapped(&self, hook: Hook, kind: FailureKind) {
        self.traps[hook as usize][kind as usize].increment(1);
    }

    /// The request is over: record what the instance used.
    pub(crate) fn finished(&self, receipt: &PluginReceipt) {
        self.peak_memory.record(receipt.peak_memory_bytes as f64);
        self.host_calls.increment(receipt.host_calls);
        self.cost.add(receipt);
    }

    /// What the plugin cost since the last call.
    pub(crate) fn take_cost(&self) -> PluginCost {
        self.cost.take()
    }
}

#[cfg(test)]
mod tests {
    use super::HOOKS;

    #[test]
    fn hooks_are_indexed_by_their_discriminant() {
        for (i, hook) in HOOKS.into_iter().enumerate() {
            assert_eq!(hook as usize, i);
        }
    }
}
