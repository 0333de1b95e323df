//! Each distribution's share of what every distribution on the edge draws
//! from: plugin instances (of the engine's pool), fetches in flight to
//! upstreams and memory for response bodies held for plugins. A distribution past its share gets 503 for its own requests;
//! the others keep theirs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use parapet_config::SharesConfig;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Counter of requests refused because their distribution used up a share,
/// by distribution and resource (`plugin_instances`, `origin_fetches`,
/// `plugin_body_bytes`).
pub const SHARE_EXHAUSTED: &str = "parapet_share_exhausted_total";

/// The shares of every distribution, kept across configuration reloads so
/// a reload does not hand out a second share.
#[derive(Default)]
pub struct Shares {
    by_distribution: Mutex<HashMap<String, Arc<Share>>>,
}

/// One distribution's share.
pub struct Share {
    limits: SharesConfig,
    plugin_instances: Arc<Semaphore>,
    origin_fetches: Arc<Semaphore>,
    plugin_body_bytes: Arc<Semaphore>,
}

/// A resource a distribution ran out of: the viewer's 503 says which.
#[derive(Debug, thiserror::Error)]
#[error("distribution `{distribution}` is using all of its {what} on this edge ({limit}); try again shortly")]
pub struct Exhausted {
    distribution: String,
    what: &'static str,
    limit: usize,
}

impl Shares {
    /// The share of `distribution` under `limits` (a new one when the
    /// limits changed: what the old one lent drains on its own).
    pub fn of(&self, distribution: &str, limits: SharesConfig) -> Arc<Share> {
        let mut shares = self
            .by_distribution
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(share) = shares.get(distribution) {
            if share.limits == limits {
                return share.clone();
            }
        }
        let share = Arc::new(Share {
            limits,
            plugin_instances: Arc::new(Semaphore::new(limits.plugin_instances)),
            origin_fetches: Arc::new(Semaphore::new(limits.origin_fetches)),
            plugin_body_bytes: Arc::new(Semaphore::new(
                limits.plugin_body_bytes.min(Semaphore::MAX_PERMITS),
            )),
        });
        shares.insert(distribution.to_string(), share.clone());
        share
    }

    /// Forgets the shares of distributions no longer configured.
    pub fn retain(&self, configured: impl Fn(&str) -> bool) {
        self.by_distribution
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| configured(id));
    }
}

impl Share {
    /// `count` plugin instances for one request, held until it ends.
    pub fn plugin_instances(
        &self,
        distribution: &str,
        count: usize,
    ) -> Result<OwnedSemaphorePermit, Exhausted> {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        self.plugin_instances
            .clone()
            .try_acquire_many_owned(count)
            .map_err(|_| {
                self.exhausted(
                    distribution,
                    "plugin_instances",
                    "share of plugin instances",
                    self.limits.plugin_instances,
                )
            })
    }

    /// One fetch to an upstream, held until its answer arrives.
    pub fn origin_fetch(&self, distribution: &str) -> Result<OwnedSemaphorePermit, Exhausted> {
        self.origin_fetches
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                self.exhausted(
                    distribution,
                    "origin_fetches",
                    "share of upstream fetches in flight",
                    self.limits.origin_fetches,
                )
            })
    }

    /// `bytes` of memory for a response body held to show it to plugins,
    /// kept until the request ends.
    pub fn plugin_body_bytes(
        &self,
        distribution: &str,
        bytes: usize,
    ) -> Result<OwnedSemaphorePermit, Exhausted> {
        let refused = || {
            self.exhausted(
                distribution,
                "plugin_body_bytes",
                "share of body bytes held for plugins",
                self.limits.plugin_body_bytes,
            )
        };
        let bytes = u32::try_from(bytes).map_err(|_| refused())?;
        self.plugin_body_bytes
            .clone()
            .try_acquire_many_owned(bytes)
            .map_err(|_| refused())
    }

    fn exhausted(
        &self,
        distribution: &str,
        resource: &'static str,
        what: &'static str,
        limit: usize,
    ) -> Exhausted {
        metrics::counter!(SHARE_EXHAUSTED, "distribution" => distribution.to_string(), "resource" => resource)
            .increment(1);
        Exhausted {
            distribution: distribution.to_string(),
            what,
            limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(plugin_instances: usize, origin_fetches: usize) -> SharesConfig {
        SharesConfig {
            plugin_instances,
            origin_fetches,
            plugin_body_bytes: 1000,
        }
    }

    #[test]
    fn a_share_is_one_distributions_and_survives_reloads() {
        let shares = Shares::default();
        let a = shares.of("a", limits(3, 1));
        let held = a.plugin_instances("a", 2).expect("2 of 3");
        assert!(a.plugin_instances("a", 2).is_err(), "only 1 left");
        let fetch = a.origin_fetch("a").expect("1 of 1");
        let refused = a.origin_fetch("a").unwrap_err().to_string();
        assert!(refused.contains("distribution `a` is using all of its share of upstream fetches in flight on this edge (1)"), "{refused}");
        let body = a.plugin_body_bytes("a", 600).expect("600 of 1000 bytes");
        let refused = a.plugin_body_bytes("a", 600).unwrap_err().to_string();
        assert!(refused.contains("distribution `a` is using all of its share of body bytes held for plugins on this edge (1000)"), "{refused}");
        drop(body);
        assert!(
            a.plugin_body_bytes("a", 1000).is_ok(),
            "returned when dropped"
        );
        // Another distribution has its own.
        let b = shares.of("b", limits(3, 1));
        assert!(b.plugin_instances("b", 3).is_ok());
        assert!(b.origin_fetch("b").is_ok());
        // The same limits again (a reload): the same share.
        assert!(shares.of("a", limits(3, 1)).origin_fetch("a").is_err());
        drop((held, fetch));
        assert!(shares
            .of("a", limits(3, 1))
            .plugin_instances("a", 3)
            .is_ok());
    }
}
