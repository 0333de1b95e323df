//! Each plugin's cost for the heartbeat: what every loaded plugin cost
//! since the last beat, with what an undelivered beat carried.

use std::collections::HashMap;

use parapet_host::PluginCost;
use parapet_proto::edge::PluginCost as Reported;

use crate::routing::Routes;

/// The costs not yet delivered, by (distribution, plugin sha256).
#[derive(Debug, Default)]
pub(super) struct CostReport {
    pending: HashMap<(String, String), PluginCost>,
}

impl CostReport {
    /// What each plugin of `routes` cost since the last call, with what
    /// was carried; plugins that did not run are left out.
    pub(super) fn take(&mut self, routes: &Routes) -> Vec<Reported> {
        for distribution in routes.distributions() {
            for plugin in &distribution.plugins {
                let cost = plugin.take_cost();
                if cost.requests > 0 {
                    let key = (distribution.config.id.clone(), plugin.digest().to_string());
                    *self.pending.entry(key).or_default() += cost;
                }
            }
        }
        self.pending
            .drain()
            .map(|((distribution, sha256), cost)| Reported {
                distribution,
                sha256,
                requests: cost.requests,
                instantiate_us: cost.instantiate_us,
                hook_us: cost.hook_us,
                peak_memory_bytes: cost.peak_memory_bytes,
                failures: cost.failures,
            })
            .collect()
    }

    /// `costs` did not reach the controller: they go with the next beat.
    pub(super) fn carry(&mut self, costs: Vec<Reported>) {
        for cost in costs {
            *self
                .pending
                .entry((cost.distribution, cost.sha256))
                .or_default() += PluginCost {
                requests: cost.requests,
                instantiate_us: cost.instantiate_us,
                hook_us: cost.hook_us,
                peak_memory_bytes: cost.peak_memory_bytes,
                failures: cost.failures,
            };
        }
    }
}
