//! What one edge serves: every distribution of a customer in good
//! standing, at the live version or, in a rolling deployment's group, at
//! the version rolled out; the plugins those versions use; their KV data.

use std::collections::{BTreeMap, HashMap};

use parapet_proto::edge::{ConfigSnapshot, PluginRef};
use serde_json::{json, Value};

use crate::model::{Customer, Distribution, Edge, KvEntry, PluginVersion};
use crate::store::{Collection, Store, StoreError};

/// The configuration of `edge` at the current revision.
pub async fn for_edge(store: &Store, edge: &Edge) -> Result<ConfigSnapshot, StoreError> {
    // Read the revision first: a change made while composing bumps it
    // again, so the edge is sent a newer snapshot afterwards.
    let revision = crate::revision::current(store).await?;
    let suspended: Vec<String> = store
        .find::<Customer>(Collection::Customers, &[("suspended", json!(true))])
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    let rolling: HashMap<String, u64> = crate::deployments::rolling(store)
        .await?
        .into_iter()
        .filter(|d| d.group == edge.group)
        .map(|d| (d.distribution, d.to_version))
        .collect();
    let mut distributions: Vec<Distribution> = store.find(Collection::Distributions, &[]).await?;
    distributions.retain(|d| !suspended.contains(&d.customer));

    let mut configs = Vec::new();
    let mut plugins: BTreeMap<String, u64> = BTreeMap::new();
    let mut kv = HashMap::new();
    for distribution in &distributions {
        let number = rolling
            .get(&distribution.id)
            .copied()
            .unwrap_or(distribution.live_version);
        let Some(version) = crate::distributions::version(store, &distribution.id, number).await?
        else {
            tracing::error!(distribution = %distribution.id, version = number, "a live version is missing; the distribution is left out");
            continue;
        };
        for sha256 in &version.plugins {
            if !plugins.contains_key(sha256) {
                let records: Vec<PluginVersion> = store
                    .find(Collection::Plugins, &[("sha256", json!(sha256))])
                    .await?;
                plugins.insert(sha256.clone(), records.first().map_or(0, |p| p.size));
            }
        }
        configs.push(version.resolved);
        let entries: Vec<KvEntry> = store
            .find(Collection::Kv, &[("distribution", json!(distribution.id))])
            .await?;
        let object: serde_json::Map<String, Value> = entries
            .into_iter()
            .map(|e| (e.key, Value::String(e.value)))
            .collect();
        kv.insert(distribution.id.clone(), Value::Object(object).to_string());
    }
    Ok(ConfigSnapshot {
        revision,
        distributions_json: Value::Array(configs).to_string(),
        plugins: plugins
            .into_iter()
            .map(|(sha256, size)| PluginRef { sha256, size })
            .collect(),
        kv_json: kv,
    })
}
