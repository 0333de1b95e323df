//! The revision of every distribution's last change, kept in memory for the
//! edges' configuration watchers: one reader per controller process follows
//! the changes this process makes (each names its distributions) and reads
//! everything again once a second, for changes other replicas made; the
//! watchers compare it with what their edge has and send what differs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::model::Distribution;
use crate::store::{Collection, Store, StoreError};

/// How often everything is read again.
const RESCAN: Duration = Duration::from_secs(1);

/// Each distribution's revision.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Revisions {
    /// Distribution id → the revision of its last change.
    pub distributions: HashMap<String, u64>,
    /// The highest of them.
    pub revision: u64,
}

impl Revisions {
    fn set(&mut self, id: String, revision: u64) {
        self.revision = self.revision.max(revision);
        self.distributions.insert(id, revision);
    }
}

/// The revisions as the reader has them now.
#[derive(Clone)]
pub struct Catalog(watch::Receiver<Arc<Revisions>>);

impl Catalog {
    /// Reads every distribution, then follows `store`'s changes until the
    /// last [`Catalog`] is dropped.
    pub async fn start(store: Store) -> Result<Self, StoreError> {
        let mut changes = store.config_changes();
        let (publish, revisions) = watch::channel(Arc::new(read_all(&store).await?));
        tokio::spawn(async move {
            loop {
                let latest = publish.borrow().clone();
                let read = tokio::select! {
                    change = changes.recv() => match change {
                        Ok(ids) => read_some(&store, &latest, &ids).await,
                        // Fell behind: everything again.
                        Err(broadcast::error::RecvError::Lagged(_)) => read_all(&store).await,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tokio::time::sleep(RESCAN) => read_all(&store).await,
                    _ = publish.closed() => return,
                };
                match read {
                    Ok(read) if read != *latest => {
                        publish.send_replace(Arc::new(read));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read distribution revisions; trying again")
                    }
                }
            }
        });
        Ok(Catalog(revisions))
    }

    /// A receiver of every new set of revisions.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Revisions>> {
        self.0.clone()
    }
}

async fn read_all(store: &Store) -> Result<Revisions, StoreError> {
    let mut revisions = Revisions::default();
    for distribution in store
        .find::<Distribution>(Collection::Distributions, &[])
        .await?
    {
        revisions.set(distribution.id, distribution.revision);
    }
    Ok(revisions)
}

async fn read_some(
    store: &Store,
    latest: &Revisions,
    ids: &[String],
) -> Result<Revisions, StoreError> {
    let mut revisions = latest.clone();
    for id in ids {
        if let Some(distribution) = store
            .get::<Distribution>(Collection::Distributions, id)
            .await?
        {
            revisions.set(distribution.id, distribution.revision);
        }
    }
    Ok(revisions)
}
