//! A plugin's metrics, registered once when it loads so that the request path
//! only records values.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Histogram};

use crate::bindings::Hook;
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

/// Handles of one plugin's series, labelled with its name (and the hook).
pub(crate) struct PluginMetrics {
    instantiate: Histogram,
    hook_seconds: [Histogram; 5],
    traps: [[Counter; FailureKind::ALL.len()]; 5],
    peak_memory: Histogram,
    host_calls: Counter,
}

impl PluginMetrics {
    /// Registers the series of plugin `name` with the installed recorder.
    pub(crate) fn register(name: &Arc<str>) -> Self {
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
        }
    }

    /// An instance was made in `took`.
    pub(crate) fn instantiated(&self, took: Duration) {
        self.instantiate.record(took.as_secs_f64());
    }

    /// `hook` ran for `took`.
    pub(crate) fn hook_ran(&self, hook: Hook, took: Duration) {
        self.hook_seconds[hook as usize].record(took.as_secs_f64());
    }

    /// The plugin failed in `hook` for a reason of `kind`.
    pub(crate) fn trapped(&self, hook: Hook, kind: FailureKind) {
        self.traps[hook as usize][kind as usize].increment(1);
    }

    /// The request is over: record what the instance used.
    pub(crate) fn finished(&self, receipt: &PluginReceipt) {
        self.peak_memory.record(receipt.peak_memory_bytes as f64);
        self.host_calls.increment(receipt.host_calls);
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
