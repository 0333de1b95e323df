//! What one plugin cost one request.

use std::sync::Arc;
use std::time::Duration;

use crate::bindings::Hook;

/// Per-plugin, per-request accounting.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginReceipt {
    /// The plugin's name.
    pub plugin: Arc<str>,
    /// Time to create the instance.
    pub instantiate: Duration,
    /// Each hook run and how long it took.
    pub hooks: Vec<(Hook, Duration)>,
    /// Largest linear memory the instance grew to, in bytes.
    pub peak_memory_bytes: usize,
    /// Host interface calls the plugin made.
    pub host_calls: u64,
    /// Why the plugin failed, if it did.
    pub trap: Option<String>,
}

impl PluginReceipt {
    pub(crate) fn new(plugin: Arc<str>, instantiate: Duration) -> Self {
        PluginReceipt {
            plugin,
            instantiate,
            hooks: Vec::new(),
            peak_memory_bytes: 0,
            host_calls: 0,
            trap: None,
        }
    }

    /// Time spent in hooks.
    pub fn hook_time(&self) -> Duration {
        self.hooks.iter().map(|(_, took)| *took).sum()
    }

    /// Writes the receipt as a debug log line.
    pub(crate) fn log(&self, request_id: &str) {
        tracing::debug!(
            target: "parapet::receipt",
            plugin = %self.plugin,
            request_id,
            instantiate_us = self.instantiate.as_micros() as u64,
            hooks = %HookTimes(&self.hooks),
            hook_us = self.hook_time().as_micros() as u64,
            peak_memory_bytes = self.peak_memory_bytes,
            host_calls = self.host_calls,
            trap = self.trap.as_deref().unwrap_or(""),
            "plugin receipt"
        );
    }
}

/// Each hook's time, as `on-viewer-request:41us on-viewer-response:12us`.
struct HookTimes<'a>(&'a [(Hook, Duration)]);

impl std::fmt::Display for HookTimes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (hook, took)) in self.0.iter().enumerate() {
            let gap = if i == 0 { "" } else { " " };
            write!(f, "{gap}{}:{}us", hook.name(), took.as_micros())?;
        }
        Ok(())
    }
}
