//! The configuration revision: a counter that grows with every change an
//! edge may need to see. Each change names the distributions it touches
//! (an apply, a deployment step, KV data, a customer's suspension), and
//! each distribution records the revision of its last change, so edges are
//! sent the distributions that changed, not everything.

use serde_json::json;

use crate::store::{Collection, Store, StoreError};

const COUNTER: &str = "config_revision";

/// Records a change to `distributions`: a new revision, set on each of
/// them, and the edges' watchers woken. Returns the revision.
pub async fn bump(store: &Store, distributions: &[String]) -> Result<u64, StoreError> {
    let revision = store.backend().increment(COUNTER).await?;
    for id in distributions {
        store
            .update(
                Collection::Distributions,
                id,
                &[],
                &json!({ "revision": revision }),
            )
            .await?;
    }
    store.signal_config(distributions);
    Ok(revision)
}

/// The current revision.
pub async fn current(store: &Store) -> Result<u64, StoreError> {
    store.backend().counter(COUNTER).await
}
