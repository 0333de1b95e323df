//! Jobs: purges and prewarms are handed to every registered edge as
//! orders, which edges acknowledge; housekeeping runs on the controller.
//! All state is stored, so a restart resumes where it stopped: queued and
//! half-dispatched jobs are dispatched again (orders have fixed ids), and
//! orders not yet acknowledged are sent again when their edge reconnects
//! (or after a while without an acknowledgement).

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::model::{now_ms, Edge, Job, JobStatus, Order, Work};
use crate::store::{Collection, Store, StoreError};

/// How long finished jobs and their orders are kept.
pub const FINISHED_JOB_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// Dispatch attempts before a job fails.
pub const MAX_ATTEMPTS: u32 = 5;

/// Queues a job; the worker dispatches it.
pub async fn create(
    store: &Store,
    customer: &str,
    distribution: &str,
    work: Work,
) -> Result<Job, StoreError> {
    let now = now_ms();
    let number = store.backend().increment("jobs").await?;
    let job = Job {
        // The random part keeps ids unique should the counter go back
        // (a restored backup): edges skip order ids they have carried out.
        id: format!("job_{number}_{}", crate::auth::random_hex(3)),
        customer: customer.to_string(),
        distribution: distribution.to_string(),
        work,
        status: JobStatus::Queued,
        attempts: 0,
        error: None,
        created_ms: now,
        updated_ms: now,
        expires_at: None,
    };
    store.insert(Collection::Jobs, &job.id, &job).await?;
    store.signal_orders(); // wakes the worker
    Ok(job)
}

/// Claims a queued job, or one a previous run left half-dispatched.
pub async fn claim(store: &Store, job: &Job) -> Result<bool, StoreError> {
    store
        .update(
            Collection::Jobs,
            &job.id,
            &[("status", json!(job.status)), ("attempts", json!(job.attempts))],
            &json!({ "status": JobStatus::Dispatching, "attempts": job.attempts + 1, "updated_ms": now_ms() }),
        )
        .await
}

/// Hands a claimed job to every registered edge (or runs controller
/// work). Idempotent: orders have fixed ids.
pub async fn dispatch(store: &Store, job: &Job) -> Result<(), StoreError> {
    if job.work == Work::Compact {
        let deleted = compact(store).await?;
        tracing::info!(job = %job.id, deleted, "compaction done");
        return finish(store, &job.id, JobStatus::Done, None).await;
    }
    let edges: Vec<Edge> = store.find(Collection::Edges, &[]).await?;
    for edge in &edges {
        let id = format!("{}:{}", job.id, edge.id);
        if store
            .backend()
            .get(Collection::Orders, &id)
            .await?
            .is_some()
        {
            continue; // dispatched before a restart
        }
        let order = Order {
            id: id.clone(),
            job: job.id.clone(),
            edge: edge.id.clone(),
            distribution: job.distribution.clone(),
            work: job.work.clone(),
            created_ms: now_ms(),
            acked: false,
            acked_ms: None,
            count: 0,
            error: None,
            expires_at: None,
        };
        store.put(Collection::Orders, &id, &order).await?;
    }
    store
        .update(
            Collection::Jobs,
            &job.id,
            &[("status", json!(JobStatus::Dispatching))],
            &json!({ "status": JobStatus::Dispatched, "updated_ms": now_ms() }),
        )
        .await?;
    store.signal_orders();
    // Acks that arrived while dispatching (or no edges at all) finish it
    // now. The job is dispatched either way: should this check fail, the
    // worker's next settling makes it again.
    if let Err(e) = finish_if_all_acked(store, &job.id).await {
        tracing::warn!(job = %job.id, error = %e, "cannot check the job's acknowledgements yet");
    }
    Ok(())
}

/// Marks a job finished; it expires after [`FINISHED_JOB_TTL_MS`].
pub async fn finish(
    store: &Store,
    id: &str,
    status: JobStatus,
    error: Option<String>,
) -> Result<(), StoreError> {
    let now = now_ms();
    store
        .update(
            Collection::Jobs,
            id,
            &[],
            &json!({ "status": status, "error": error, "updated_ms": now, "expires_at": now + FINISHED_JOB_TTL_MS }),
        )
        .await?;
    Ok(())
}

/// Records an edge's acknowledgement; finishes the job when it was the
/// last one. False when the order is not this edge's.
pub async fn acknowledge(
    store: &Store,
    edge: &str,
    order_id: &str,
    count: u64,
    error: Option<String>,
) -> Result<bool, StoreError> {
    let Some(order) = store.get::<Order>(Collection::Orders, order_id).await? else {
        return Ok(false);
    };
    if order.edge != edge {
        return Ok(false);
    }
    let now = now_ms();
    store
        .update(
            Collection::Orders,
            order_id,
            &[],
            &json!({ "acked": true, "acked_ms": now, "count": count, "error": error, "expires_at": now + FINISHED_JOB_TTL_MS }),
        )
        .await?;
    finish_if_all_acked(store, &order.job).await?;
    Ok(true)
}

/// Finishes a dispatched job once every edge has acknowledged its order:
/// done, or failed with the edges' errors. An order left to an edge that
/// was removed meanwhile (a dispatch racing the removal) is dropped.
async fn finish_if_all_acked(store: &Store, job: &str) -> Result<(), StoreError> {
    let mut orders: Vec<Order> = store
        .find(Collection::Orders, &[("job", json!(job))])
        .await?;
    for order in orders.iter().filter(|o| !o.acked) {
        if store
            .backend()
            .get(Collection::Edges, &order.edge)
            .await?
            .is_some()
        {
            return Ok(()); // still waiting for this edge
        }
        store.delete(Collection::Orders, &order.id).await?;
    }
    orders.retain(|o| o.acked);
    let failed: Vec<String> = orders
        .iter()
        .filter_map(|o| o.error.as_ref().map(|e| format!("{}: {e}", o.edge)))
        .collect();
    let (status, error) = if failed.is_empty() {
        (JobStatus::Done, None)
    } else {
        (JobStatus::Failed, Some(failed.join("; ")))
    };
    let now = now_ms();
    let finished = store
        .update(
            Collection::Jobs,
            job,
            &[("status", json!(JobStatus::Dispatched))],
            &json!({ "status": status, "error": error, "updated_ms": now, "expires_at": now + FINISHED_JOB_TTL_MS }),
        )
        .await?;
    if finished {
        tracing::info!(%job, ?status, "job finished");
    }
    Ok(())
}

/// Finishes the dispatched jobs that wait for nothing more. Acks finish
/// jobs as they come; this catches a check that failed, and orders left to
/// an edge whose removal missed them.
pub async fn settle_dispatched(store: &Store) -> Result<(), StoreError> {
    let dispatched: Vec<Job> = store
        .find(
            Collection::Jobs,
            &[("status", json!(JobStatus::Dispatched))],
        )
        .await?;
    for job in dispatched {
        finish_if_all_acked(store, &job.id).await?;
    }
    Ok(())
}

/// Drops the orders `edge` has not acknowledged (it was removed), and
/// finishes the jobs that waited only for it. Returns how many were dropped.
pub async fn release_orders(store: &Store, edge: &str) -> Result<usize, StoreError> {
    let orders = pending(store, edge).await?;
    for order in &orders {
        store.delete(Collection::Orders, &order.id).await?;
        finish_if_all_acked(store, &order.job).await?;
    }
    Ok(orders.len())
}

/// An edge's orders not yet acknowledged, oldest first.
pub async fn pending(store: &Store, edge: &str) -> Result<Vec<Order>, StoreError> {
    let mut orders: Vec<Order> = store
        .find(
            Collection::Orders,
            &[("edge", json!(edge)), ("acked", json!(false))],
        )
        .await?;
    orders.sort_by_key(|o| o.created_ms);
    Ok(orders)
}

/// One edge's part of a job, as the job status shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EdgeProgress {
    /// Edge id.
    pub edge: String,
    /// Whether it acknowledged.
    pub acked: bool,
    /// Objects purged or URLs fetched.
    pub count: u64,
    /// Its error, if any.
    pub error: Option<String>,
    /// Acknowledgement time.
    pub acked_ms: Option<i64>,
}

/// A job with its per-edge status.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// Edges that acknowledged / edges it was sent to.
    pub progress: String,
    /// Each edge's part.
    pub edges: Vec<EdgeProgress>,
}

/// A job with its per-edge status.
pub async fn view(store: &Store, job: Job) -> Result<JobView, StoreError> {
    let mut orders: Vec<Order> = store
        .find(Collection::Orders, &[("job", json!(job.id))])
        .await?;
    orders.sort_by(|a, b| a.edge.cmp(&b.edge));
    let acked = orders.iter().filter(|o| o.acked).count();
    Ok(JobView {
        progress: format!("{acked}/{}", orders.len()),
        edges: orders
            .into_iter()
            .map(|o| EdgeProgress {
                edge: o.edge,
                acked: o.acked,
                count: o.count,
                error: o.error,
                acked_ms: o.acked_ms,
            })
            .collect(),
        job,
    })
}

/// Deletes expired logs, traffic and plugin cost points, heartbeats, finished jobs and
/// their orders
/// (MongoDB's TTL indexes do it too; the embedded store relies on this).
pub async fn compact(store: &Store) -> Result<u64, StoreError> {
    let now = now_ms();
    let mut deleted = 0;
    for collection in [
        Collection::Logs,
        Collection::Traffic,
        Collection::PluginCosts,
        Collection::Heartbeats,
        Collection::Orders,
        Collection::Jobs,
    ] {
        deleted += store.backend().delete_expired(collection, now).await?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PurgeTarget;

    fn edge(id: &str) -> Edge {
        Edge {
            id: id.into(),
            name: id.into(),
            pop: "fra".into(),
            role: "edge".into(),
            group: "default".into(),
            version: "test".into(),
            registered_ms: now_ms(),
            last_heartbeat_ms: 0,
            config_revision: 0,
            requests_per_second: 0.0,
            cache_bytes: 0,
            cache_objects: 0,
            serving: true,
        }
    }

    async fn status(store: &Store, id: &str) -> JobStatus {
        let job: Option<Job> = store.get(Collection::Jobs, id).await.expect("read");
        job.expect("the job").status
    }

    /// A store in `dir` with edges `e1` and `e2`, and a purge job claimed
    /// and dispatched to both.
    async fn purge_dispatched_to_two_edges(dir: &std::path::Path) -> (Store, Job) {
        let store = Store::embedded(dir).expect("store");
        for id in ["e1", "e2"] {
            store
                .insert(Collection::Edges, id, &edge(id))
                .await
                .expect("edge");
        }
        let work = Work::Purge {
            target: PurgeTarget::Everything,
            soft: false,
        };
        let job = create(&store, "acme", "shop", work).await.expect("job");
        assert!(claim(&store, &job).await.expect("claim"));
        let claimed: Job = store
            .get(Collection::Jobs, &job.id)
            .await
            .expect("read")
            .expect("job");
        dispatch(&store, &claimed).await.expect("dispatch");
        (store, claimed)
    }

    /// An edge can acknowledge its order while the job is still being
    /// handed out (or before a restart resumes the dispatch): the job
    /// finishes when the dispatch does.
    #[tokio::test]
    async fn acks_that_come_during_the_dispatch_finish_the_job() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, job) = purge_dispatched_to_two_edges(dir.path()).await;
        assert_eq!(status(&store, &job.id).await, JobStatus::Dispatched);

        // Back to dispatching, as a restart mid-dispatch leaves it; both
        // edges acknowledge meanwhile.
        store
            .update(
                Collection::Jobs,
                &job.id,
                &[],
                &json!({ "status": JobStatus::Dispatching }),
            )
            .await
            .expect("update");
        for id in ["e1", "e2"] {
            let order = format!("{}:{id}", job.id);
            assert!(acknowledge(&store, id, &order, 3, None).await.expect("ack"));
        }
        assert_eq!(status(&store, &job.id).await, JobStatus::Dispatching);
        dispatch(&store, &job).await.expect("dispatch again");
        assert_eq!(status(&store, &job.id).await, JobStatus::Done);
    }

    /// An edge removed just after the dispatch listed it (so its order was
    /// written after the removal released its orders) does not hold up the
    /// job: the other edge's acknowledgement finishes it.
    #[tokio::test]
    async fn an_order_left_to_a_removed_edge_does_not_hold_up_its_job() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, job) = purge_dispatched_to_two_edges(dir.path()).await;
        store
            .delete(Collection::Edges, "e2")
            .await
            .expect("e2 removed");
        let order = format!("{}:e1", job.id);
        assert!(acknowledge(&store, "e1", &order, 3, None)
            .await
            .expect("ack"));
        assert_eq!(status(&store, &job.id).await, JobStatus::Done);
        assert!(
            pending(&store, "e2").await.expect("read").is_empty(),
            "e2's order is dropped"
        );
    }

    /// A job whose last pending order belongs to an edge removed without
    /// its orders being released is finished by the worker's settling,
    /// though no acknowledgement comes any more.
    #[tokio::test]
    async fn settling_finishes_a_job_left_to_a_removed_edge() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, job) = purge_dispatched_to_two_edges(dir.path()).await;
        let order = format!("{}:e1", job.id);
        assert!(acknowledge(&store, "e1", &order, 3, None)
            .await
            .expect("ack"));
        store
            .delete(Collection::Edges, "e2")
            .await
            .expect("e2 removed");
        assert_eq!(status(&store, &job.id).await, JobStatus::Dispatched);
        settle_dispatched(&store).await.expect("settle");
        assert_eq!(status(&store, &job.id).await, JobStatus::Done);
    }
}
