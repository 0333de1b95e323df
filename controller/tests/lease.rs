//! The worker lease on both stores: one controller holds it, another takes
//! it over only once it lapsed or was given up, and of two taking over at
//! once one wins.

#[macro_use]
mod common;

use parapet_controller::lease::{Holding, WorkerLease};
use parapet_controller::store::{Collection, Store};
use serde_json::json;

/// Makes the stored lease lapse, as if its holder had stopped renewing.
async fn lapse(store: &Store) {
    let updated = store
        .update(
            Collection::Leases,
            "worker",
            &[],
            &json!({ "expires_ms": parapet_controller::model::now_ms() - 1 }),
        )
        .await
        .expect("update");
    assert!(updated);
}

async fn one_holder_at_a_time(store: &Store) {
    let mut first = WorkerLease::new(store.clone());
    let mut second = WorkerLease::new(store.clone());
    assert_eq!(first.hold().await.expect("hold"), Holding::Taken);
    assert_eq!(second.hold().await.expect("hold"), Holding::No);
    assert_eq!(first.hold().await.expect("hold"), Holding::Kept);
    assert_eq!(second.hold().await.expect("hold"), Holding::No);

    lapse(store).await;
    assert_eq!(second.hold().await.expect("hold"), Holding::Taken);
    // The old holder still thinks it holds the lease until its own view
    // of it lapses; once it asks the store, it learns it lost it.
    let mut late = WorkerLease::new(store.clone());
    assert_eq!(late.hold().await.expect("hold"), Holding::No);

    // Two controllers finding it lapsed at once: one wins.
    lapse(store).await;
    let mut a = WorkerLease::new(store.clone());
    let mut b = WorkerLease::new(store.clone());
    let (ha, hb) = tokio::join!(a.hold(), b.hold());
    let taken = [ha.expect("hold"), hb.expect("hold")]
        .iter()
        .filter(|h| **h == Holding::Taken)
        .count();
    assert_eq!(taken, 1);

    // A lease given up on stop is taken over at once; giving up one held
    // by another changes nothing.
    lapse(store).await;
    let mut stopping = WorkerLease::new(store.clone());
    let mut next = WorkerLease::new(store.clone());
    assert_eq!(stopping.hold().await.expect("hold"), Holding::Taken);
    next.release_on_stop().release().await.expect("release");
    assert_eq!(next.hold().await.expect("hold"), Holding::No);
    stopping.release_on_stop().release().await.expect("release");
    assert_eq!(next.hold().await.expect("hold"), Holding::Taken);
}

both_backends!("parapet_lease"; one_holder_at_a_time);
