//! Each plugin's cost over time: requests, instantiation and hook time,
//! peak memory and failures per minute, from what edges report with their
//! heartbeats (a [`crate::series`] per customer's plugin, all its versions
//! and distributions together).

use std::collections::{BTreeMap, HashMap};

use parapet_proto::edge::PluginCost;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::model::{now_ms, Distribution, PluginVersion};
use crate::series::{self, minute_of, Point};
use crate::store::{Collection, Store, StoreError};

/// One minute of a plugin's cost (on one edge, as stored; on all edges, as
/// read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PluginCostPoint {
    /// The customer owning the plugin.
    pub customer: String,
    /// The plugin's name.
    pub plugin: String,
    /// The minute's start (ms since the epoch).
    pub minute_ms: i64,
    /// Requests that made an instance of it.
    pub requests: u64,
    /// Microseconds spent making those instances.
    pub instantiate_us: u64,
    /// Microseconds spent in its hooks.
    pub hook_us: u64,
    /// The largest linear memory one instance grew to, in bytes.
    pub peak_memory_bytes: u64,
    /// Requests on which it failed.
    pub failures: u64,
    /// The edge that reported it (empty when summed).
    #[serde(default)]
    pub edge: String,
    /// When it is deleted.
    #[serde(default)]
    pub expires_at: i64,
}

impl Point for PluginCostPoint {
    fn minute_ms(&self) -> i64 {
        self.minute_ms
    }

    fn add(&mut self, other: &PluginCostPoint) {
        self.requests += other.requests;
        self.instantiate_us += other.instantiate_us;
        self.hook_us += other.hook_us;
        self.peak_memory_bytes = self.peak_memory_bytes.max(other.peak_memory_bytes);
        self.failures += other.failures;
    }

    fn expire_at(&mut self, at_ms: i64) {
        self.expires_at = at_ms;
    }
}

/// Records what `edge` reported its plugins cost, in this minute, under
/// the name each component has among its distribution's customer's
/// plugins (a cost of a distribution or component the controller does
/// not know is dropped).
pub async fn record(store: &Store, edge: &str, costs: &[PluginCost]) -> Result<(), StoreError> {
    let minute_ms = minute_of(now_ms());
    // One read per distribution and per customer, however many plugins.
    let mut owners: HashMap<&str, Option<String>> = HashMap::new();
    let mut names: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut points: BTreeMap<(String, String), PluginCostPoint> = BTreeMap::new();
    for cost in costs {
        if !owners.contains_key(cost.distribution.as_str()) {
            let found = store
                .get::<Distribution>(Collection::Distributions, &cost.distribution)
                .await?;
            owners.insert(&cost.distribution, found.map(|d| d.customer));
        }
        let Some(Some(customer)) = owners.get(cost.distribution.as_str()) else {
            continue;
        };
        if !names.contains_key(customer) {
            let versions: Vec<PluginVersion> = store
                .find(Collection::Plugins, &[("customer", json!(customer))])
                .await?;
            let by_hash = versions.into_iter().map(|v| (v.sha256, v.name)).collect();
            names.insert(customer.clone(), by_hash);
        }
        let Some(name) = names
            .get(customer)
            .and_then(|n| n.get(&cost.sha256))
            .cloned()
        else {
            continue;
        };
        let reported = PluginCostPoint {
            customer: customer.clone(),
            plugin: name.clone(),
            minute_ms,
            requests: cost.requests,
            instantiate_us: cost.instantiate_us,
            hook_us: cost.hook_us,
            peak_memory_bytes: cost.peak_memory_bytes,
            failures: cost.failures,
            edge: edge.to_string(),
            expires_at: 0,
        };
        match points.entry((customer.clone(), name)) {
            std::collections::btree_map::Entry::Occupied(mut point) => {
                point.get_mut().add(&reported)
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(reported);
            }
        }
    }
    for ((customer, plugin), point) in points {
        let key = format!("{customer}:{plugin}:{edge}:{minute_ms}");
        series::add(store, Collection::PluginCosts, &key, point).await?;
    }
    Ok(())
}

/// `customer`'s plugin `plugin`'s cost per minute over the last `minutes`,
/// every edge summed, oldest first; a minute it did not run is a point of
/// zeros.
pub async fn per_minute(
    store: &Store,
    customer: &str,
    plugin: &str,
    minutes: u32,
) -> Result<Vec<PluginCostPoint>, StoreError> {
    series::read(
        store,
        Collection::PluginCosts,
        &[("customer", json!(customer)), ("plugin", json!(plugin))],
        minutes,
        |minute_ms| PluginCostPoint {
            customer: customer.to_string(),
            plugin: plugin.to_string(),
            minute_ms,
            ..PluginCostPoint::default()
        },
    )
    .await
}
