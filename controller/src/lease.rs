//! The worker lease: with several controllers on one store (MongoDB behind
//! a balancer), one of them runs the background worker (dispatching jobs,
//! settling them, housekeeping). The holder renews its lease every
//! [`RENEW_MS`]; once it has not for [`TTL_MS`] (it died, or lost the
//! store), another controller takes it over and resumes the jobs left
//! half-dispatched. Expiry compares the controllers' clocks: keep them in
//! step (NTP).

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::now_ms;
use crate::store::{Collection, Store, StoreError};

/// A lease not renewed for this long may be taken over.
pub const TTL_MS: i64 = 5_000;
/// How often the holder renews it.
pub const RENEW_MS: i64 = 1_000;

/// The document id of the worker's lease.
const WORKER: &str = "worker";

/// A lease as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseRecord {
    /// The controller holding it.
    holder: String,
    /// When it lapses unless renewed (ms since the epoch).
    expires_ms: i64,
}

/// This controller's claim on the worker lease.
pub struct WorkerLease {
    store: Store,
    /// This controller's id, new at each start.
    holder: String,
    /// Until when this controller holds it, as far as it knows.
    held_until: i64,
}

/// Whether this controller holds the lease, and whether it just took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// Another controller holds it.
    No,
    /// Taken now: work another holder left may be unfinished.
    Taken,
    /// Held since before.
    Kept,
}

impl WorkerLease {
    /// A claim for this controller; nothing is taken yet.
    pub fn new(store: Store) -> Self {
        WorkerLease {
            store,
            holder: format!("ctl_{}", crate::auth::random_hex(6)),
            held_until: 0,
        }
    }

    /// This controller's id in the lease.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// What gives the lease up when this controller stops.
    pub fn release_on_stop(&self) -> LeaseRelease {
        LeaseRelease {
            store: self.store.clone(),
            holder: self.holder.clone(),
        }
    }

    /// Takes, renews or checks the lease.
    pub async fn hold(&mut self) -> Result<Holding, StoreError> {
        let now = now_ms();
        let held = self.held_until > now;
        if held && self.held_until - now > TTL_MS - RENEW_MS {
            return Ok(Holding::Kept);
        }
        let fresh = LeaseRecord {
            holder: self.holder.clone(),
            expires_ms: now + TTL_MS,
        };
        let taken = match self
            .store
            .get::<LeaseRecord>(Collection::Leases, WORKER)
            .await?
        {
            None => match self.store.insert(Collection::Leases, WORKER, &fresh).await {
                Ok(()) => true,
                Err(StoreError::Conflict(_)) => false,
                Err(e) => return Err(e),
            },
            Some(current) if current.holder == self.holder || current.expires_ms <= now => {
                // Compare-and-set on what was read: of two controllers
                // taking over at once, one wins.
                self.store
                    .update(
                        Collection::Leases,
                        WORKER,
                        &[
                            ("holder", json!(current.holder)),
                            ("expires_ms", json!(current.expires_ms)),
                        ],
                        &json!(fresh),
                    )
                    .await?
            }
            Some(_) => false,
        };
        if !taken {
            self.held_until = 0;
            return Ok(Holding::No);
        }
        self.held_until = fresh.expires_ms;
        Ok(if held { Holding::Kept } else { Holding::Taken })
    }
}

/// Gives up a controller's lease, so that another takes it over at once
/// rather than after [`TTL_MS`].
pub struct LeaseRelease {
    store: Store,
    holder: String,
}

impl LeaseRelease {
    /// Lets the lease lapse now if this controller holds it (the worker
    /// must be stopped first).
    pub async fn release(self) -> Result<(), StoreError> {
        let released = self
            .store
            .update(
                Collection::Leases,
                WORKER,
                &[("holder", json!(self.holder))],
                &json!({ "expires_ms": 0 }),
            )
            .await?;
        if released {
            tracing::info!(holder = %self.holder, "worker lease given up");
        }
        Ok(())
    }
}
