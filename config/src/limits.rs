//! The operator's maxima for what a distribution's plugins may ask for
//! (`[plugin_limits]`): a customer sets its plugins' limits, the operator
//! bounds them, and both the controller and the edge refuse a value above
//! its maximum, naming the limit and the maximum.

use parapet_host::PluginLimits;
use serde::Deserialize;

/// Maxima of [`PluginLimits`] a distribution's plugin may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginMaxima {
    /// Longest `hook_deadline_ms` (Fastly Compute allows 50 ms of CPU per
    /// request by default).
    pub hook_deadline_ms: u64,
    /// Longest `launch_deadline_ms`.
    pub launch_deadline_ms: u64,
    /// Largest `memory_bytes`.
    pub memory_bytes: usize,
    /// Largest `table_elements`.
    pub table_elements: usize,
    /// Most `instances` (core instances of one plugin component).
    pub instances: usize,
    /// Largest `max_body_bytes`.
    pub max_body_bytes: usize,
}

impl Default for PluginMaxima {
    fn default() -> Self {
        PluginMaxima {
            hook_deadline_ms: 50,
            launch_deadline_ms: 2_000,
            memory_bytes: 64 << 20,
            table_elements: 100_000,
            instances: parapet_host::MAX_CORE_INSTANCES,
            max_body_bytes: 1 << 20,
        }
    }
}

impl PluginMaxima {
    /// The first limit in `limits` above its maximum: the limit's field
    /// name and why.
    pub fn check(&self, limits: &PluginLimits) -> Result<(), (&'static str, String)> {
        let checks = [
            (
                "hook_deadline_ms",
                limits.hook_deadline.as_millis() as u64,
                self.hook_deadline_ms,
            ),
            (
                "launch_deadline_ms",
                limits.launch_deadline.as_millis() as u64,
                self.launch_deadline_ms,
            ),
            (
                "memory_bytes",
                limits.memory_bytes as u64,
                self.memory_bytes as u64,
            ),
            (
                "table_elements",
                limits.table_elements as u64,
                self.table_elements as u64,
            ),
            ("instances", limits.instances as u64, self.instances as u64),
            (
                "max_body_bytes",
                limits.max_body_bytes as u64,
                self.max_body_bytes as u64,
            ),
        ];
        for (name, value, maximum) in checks {
            if value > maximum {
                return Err((
                    name,
                    format!("{value} is above the operator's maximum of {maximum} ([plugin_limits] {name})"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_limit_above_its_maximum_is_named() {
        let maxima = PluginMaxima::default();
        assert_eq!(maxima.check(&PluginLimits::default()), Ok(()));
        let greedy = PluginLimits {
            hook_deadline: Duration::from_millis(600_000),
            ..PluginLimits::default()
        };
        let (field, why) = maxima.check(&greedy).unwrap_err();
        assert_eq!(field, "hook_deadline_ms");
        assert!(
            why.contains("600000 is above the operator's maximum of 50"),
            "{why}"
        );
        let hungry = PluginLimits {
            memory_bytes: 1 << 30,
            ..PluginLimits::default()
        };
        assert_eq!(maxima.check(&hungry).unwrap_err().0, "memory_bytes");
    }
}
