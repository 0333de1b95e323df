//! The configuration revision: a counter that grows with every change an
//! edge may need to see (distributions, deployments, KV, suspensions).
//! Edges watching their configuration compare it with what they have.

use crate::store::{Store, StoreError};

const COUNTER: &str = "config_revision";

/// Records a change and wakes the edges' watchers; returns the new
/// revision.
pub async fn bump(store: &Store) -> Result<u64, StoreError> {
    let revision = store.backend().increment(COUNTER).await?;
    store.signal_config(revision);
    Ok(revision)
}

/// The current revision.
pub async fn current(store: &Store) -> Result<u64, StoreError> {
    store.backend().counter(COUNTER).await
}
