//! Per-plugin resource limits and the limiter that enforces them.

use std::time::Duration;

use serde::Deserialize;

/// Most core instances, memories and tables one plugin instance may have:
/// the pool reserves this much per plugin, so a plugin cannot take more than
/// its share. A Rust plugin has three core instances, one memory and one
/// table.
pub const MAX_CORE_INSTANCES: usize = 16;
/// See [`MAX_CORE_INSTANCES`].
pub const MAX_MEMORIES: usize = 2;
/// See [`MAX_CORE_INSTANCES`].
pub const MAX_TABLES: usize = 4;

/// Limits applied to each instance of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginLimits {
    /// Budget of one hook call (and of instantiation): the time it runs,
    /// not counting the time it spends yielded to other requests; checked
    /// at each epoch tick, so enforced to the engine's tick granularity.
    #[serde(with = "millis", rename = "hook_deadline_ms")]
    pub hook_deadline: Duration,
    /// Budget of `on-launch`, which runs once per load, without yielding
    /// (so this is wall-clock time), and may do more work than a hook.
    #[serde(with = "millis", rename = "launch_deadline_ms")]
    pub launch_deadline: Duration,
    /// Largest linear memory an instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Largest table an instance may grow to, in elements.
    pub table_elements: usize,
    /// Most core instances a plugin component may create (at most
    /// [`MAX_CORE_INSTANCES`]).
    pub instances: usize,
    /// Largest request or response body handed to the plugin; larger bodies
    /// reach it as `none`.
    pub max_body_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            hook_deadline: Duration::from_millis(50),
            launch_deadline: Duration::from_secs(1),
            memory_bytes: 16 << 20,
            table_elements: 20_000,
            instances: 16,
            max_body_bytes: 64 << 10,
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Why a grow request was refused; surfaces as the trap reason.
#[derive(Debug, thiserror::Error)]
pub enum LimitExceeded {
    /// Linear memory would exceed [`PluginLimits::memory_bytes`].
    #[error("memory limit exceeded: the plugin asked for {requested} bytes, the limit is {limit}")]
    Memory { requested: usize, limit: usize },
    /// A table would exceed [`PluginLimits::table_elements`].
    #[error(
        "table limit exceeded: the plugin asked for {requested} elements, the limit is {limit}"
    )]
    Table { requested: usize, limit: usize },
}

/// Enforces [`PluginLimits`] on one store and records peak memory.
#[derive(Debug)]
pub(crate) struct Limiter {
    limits: PluginLimits,
    pub(crate) peak_memory: usize,
}

impl Limiter {
    pub(crate) fn new(limits: PluginLimits) -> Self {
        Limiter {
            limits,
            peak_memory: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.memory_bytes {
            return Err(LimitExceeded::Memory {
                requested: desired,
                limit: self.limits.memory_bytes,
            }
            .into());
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.table_elements {
            return Err(LimitExceeded::Table {
                requested: desired,
                limit: self.limits.table_elements,
            }
            .into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.limits.instances
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_from_config_with_defaults_for_what_is_missing() {
        let limits: PluginLimits =
            serde_json::from_str(r#"{"hook_deadline_ms": 5, "memory_bytes": 1048576}"#).unwrap();
        assert_eq!(limits.hook_deadline, Duration::from_millis(5));
        assert_eq!(limits.memory_bytes, 1 << 20);
        assert_eq!(
            limits.launch_deadline,
            PluginLimits::default().launch_deadline
        );

        let err = serde_json::from_str::<PluginLimits>(r#"{"hook_deadline": 5}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("unknown field `hook_deadline`"),
            "{err}"
        );
    }
}
