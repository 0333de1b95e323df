//! What an edge serves of each distribution: the live version or, in a
//! rolling deployment's group, the version rolled out; the plugins it uses;
//! its KV data; its certificate (the key opened with the operator's key)
//! and open ACME challenges. A suspended customer's distributions are not served.
//! Distributions are composed one at a time, so a change to one costs one,
//! whatever the number of others; many at once (an edge's first sync) read
//! the shared collections once.

use std::collections::HashMap;

use parapet_proto::edge::{DistributionConfig, PluginRef};
use serde_json::{json, Value};

use crate::certificates;
use crate::model::{Customer, Deployment, Distribution, KvEntry, PluginVersion};
use crate::secrets::SecretKey;
use crate::store::{Collection, Store, StoreError};

/// Past this many distributions at once, the KV entries, deployments and
/// customers are read whole rather than per distribution.
const BATCH: usize = 32;

/// Composes distributions for the edges of one group.
pub struct Composer<'a> {
    store: &'a Store,
    group: &'a str,
    secret: Option<&'a SecretKey>,
    plugin_sizes: HashMap<String, u64>,
}

/// What is read once for many distributions.
#[derive(Default)]
struct Shared {
    kv: HashMap<String, Vec<KvEntry>>,
    rolling: HashMap<String, u64>,
    suspended: HashMap<String, bool>,
}

impl<'a> Composer<'a> {
    /// A composer for edges in `group`, opening private keys with
    /// `secret`.
    pub fn new(store: &'a Store, group: &'a str, secret: Option<&'a SecretKey>) -> Self {
        Composer {
            store,
            group,
            secret,
            plugin_sizes: HashMap::new(),
        }
    }

    /// Each of `ids` as the group's edges should serve it: `None` for one
    /// that is not to be served (its customer is suspended, or it is gone).
    pub async fn compose(
        &mut self,
        ids: &[String],
    ) -> Result<Vec<(String, Option<DistributionConfig>)>, StoreError> {
        let shared = if ids.len() > BATCH {
            Some(self.read_shared().await?)
        } else {
            None
        };
        let mut composed = Vec::with_capacity(ids.len());
        for id in ids {
            let config = self.one(id, shared.as_ref()).await?;
            composed.push((id.clone(), config));
        }
        Ok(composed)
    }

    async fn read_shared(&self) -> Result<Shared, StoreError> {
        let mut shared = Shared::default();
        for entry in self.store.find::<KvEntry>(Collection::Kv, &[]).await? {
            shared
                .kv
                .entry(entry.distribution.clone())
                .or_default()
                .push(entry);
        }
        shared.rolling = self.rolling(crate::deployments::rolling(self.store).await?);
        for customer in self
            .store
            .find::<Customer>(Collection::Customers, &[])
            .await?
        {
            shared.suspended.insert(customer.id, customer.suspended);
        }
        Ok(shared)
    }

    fn rolling(&self, deployments: Vec<Deployment>) -> HashMap<String, u64> {
        deployments
            .into_iter()
            .filter(|d| d.group == self.group)
            .map(|d| (d.distribution, d.to_version))
            .collect()
    }

    async fn one(
        &mut self,
        id: &str,
        shared: Option<&Shared>,
    ) -> Result<Option<DistributionConfig>, StoreError> {
        let Some(distribution) = self
            .store
            .get::<Distribution>(Collection::Distributions, id)
            .await?
        else {
            return Ok(None);
        };
        let suspended = match shared {
            Some(shared) => shared
                .suspended
                .get(&distribution.customer)
                .copied()
                .unwrap_or(false),
            None => self
                .store
                .get::<Customer>(Collection::Customers, &distribution.customer)
                .await?
                .is_some_and(|c| c.suspended),
        };
        if suspended {
            return Ok(None);
        }
        let rolling = match shared {
            Some(shared) => shared.rolling.get(id).copied(),
            None => crate::deployments::active(self.store, id)
                .await?
                .filter(|d| d.group == self.group)
                .map(|d| d.to_version),
        };
        let number = rolling.unwrap_or(distribution.live_version);
        let Some(version) = crate::distributions::version(self.store, id, number).await? else {
            tracing::error!(distribution = %id, version = number, "a live version is missing; the distribution is left out");
            return Ok(None);
        };
        let mut plugins = Vec::new();
        for sha256 in &version.plugins {
            plugins.push(PluginRef {
                sha256: sha256.clone(),
                size: self.plugin_size(sha256).await?,
            });
        }
        let entries = match shared {
            Some(shared) => shared.kv.get(id).cloned().unwrap_or_default(),
            None => {
                self.store
                    .find(Collection::Kv, &[("distribution", json!(id))])
                    .await?
            }
        };
        let kv: serde_json::Map<String, Value> = entries
            .into_iter()
            .map(|e| (e.key, Value::String(e.value)))
            .collect();
        let mut config = DistributionConfig {
            id: id.to_string(),
            version: number,
            revision: distribution.revision,
            config_json: version.resolved.to_string(),
            plugins,
            kv_json: Value::Object(kv).to_string(),
            ..Default::default()
        };
        self.add_certificate(&mut config).await?;
        Ok(Some(config))
    }

    /// Adds the distribution's certificate and ACME challenges, if any. A
    /// key that does not open is logged, and the distribution goes
    /// without its certificate.
    async fn add_certificate(&self, config: &mut DistributionConfig) -> Result<(), StoreError> {
        let Some(record) = certificates::get(self.store, &config.id).await? else {
            return Ok(());
        };
        config.acme_challenges = record
            .challenges
            .iter()
            .map(|c| (c.token.clone(), c.key_authorization.clone()))
            .collect();
        let Some(issued) = &record.issued else {
            return Ok(());
        };
        let key = match self.secret {
            Some(secret) => certificates::open_key(issued, &config.id, secret),
            None => Err(crate::secrets::SecretError::BadKey(
                "no --secret-key-file".into(),
            )),
        };
        match key {
            Ok(key) => {
                config.tls_certificate_pem = issued.chain_pem.clone();
                config.tls_private_key_pem = key;
            }
            Err(e) => {
                tracing::error!(distribution = %config.id, error = %e,
                    "the certificate's private key cannot be opened; edges get the distribution without it");
            }
        }
        Ok(())
    }

    async fn plugin_size(&mut self, sha256: &str) -> Result<u64, StoreError> {
        if let Some(size) = self.plugin_sizes.get(sha256) {
            return Ok(*size);
        }
        let records: Vec<PluginVersion> = self
            .store
            .find(Collection::Plugins, &[("sha256", json!(sha256))])
            .await?;
        let size = records.first().map_or(0, |p| p.size);
        self.plugin_sizes.insert(sha256.to_string(), size);
        Ok(size)
    }
}
