//! The background worker: dispatches queued jobs (retrying with backoff),
//! resumes jobs a restart interrupted, settles dispatched jobs, and queues
//! housekeeping; and has the ACME client issue and renew certificates.
//! With several controllers on one store, only the holder of
//! the worker lease does this (see [`crate::lease`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::acme::Issuer;
use crate::jobs::{self, MAX_ATTEMPTS};
use crate::lease::{Holding, WorkerLease};
use crate::model::{now_ms, Job, JobStatus, Work};
use crate::store::{Collection, Store, StoreError};

/// How often the worker looks for work when nothing wakes it.
const POLL: Duration = Duration::from_millis(500);
/// A job left `dispatching` this long is taken to be interrupted.
const STALE_DISPATCH_MS: i64 = 30_000;
/// How often housekeeping is queued.
const COMPACT_EVERY: Duration = Duration::from_secs(600);
/// How often dispatched jobs are settled (see [`jobs::settle_dispatched`]).
const SETTLE_EVERY: Duration = Duration::from_secs(30);
/// How often certificates are looked at for issuing and renewal.
const ACME_EVERY: Duration = Duration::from_secs(2);

/// Runs until the task is dropped; with a `lease`, works only while
/// holding it (without one, this controller is the store's only one).
/// Certificates are ordered with `issuer`, in a task of their own (an
/// order takes seconds), which stops when the lease is lost.
pub async fn run(store: Store, mut lease: Option<WorkerLease>, issuer: Option<Arc<Issuer>>) {
    let mut woken = store.order_changes();
    let mut leading = false;
    let mut certificates = Certificates::default();
    let mut last_compaction = tokio::time::Instant::now();
    let mut last_settling = tokio::time::Instant::now();
    loop {
        let holding = match &mut lease {
            Some(lease) => hold(lease, leading).await,
            None if leading => Holding::Kept,
            None => Holding::Taken,
        };
        leading = holding != Holding::No;
        metrics::gauge!("parapet_controller_worker_lease").set(if leading { 1.0 } else { 0.0 });
        if let Some(issuer) = &issuer {
            certificates.tend(&store, issuer, leading);
        }
        if leading {
            // A lease just taken: the previous holder may have left jobs
            // half-dispatched.
            if let Err(e) = pass(&store, holding == Holding::Taken).await {
                tracing::warn!(error = %e, "worker pass failed; retrying");
            }
            if last_settling.elapsed() >= SETTLE_EVERY {
                last_settling = tokio::time::Instant::now();
                if let Err(e) = jobs::settle_dispatched(&store).await {
                    tracing::warn!(error = %e, "cannot settle dispatched jobs; retrying later");
                }
            }
            if last_compaction.elapsed() >= COMPACT_EVERY {
                last_compaction = tokio::time::Instant::now();
                if let Err(e) = jobs::create(&store, "", "", Work::Compact).await {
                    tracing::warn!(error = %e, "cannot queue housekeeping");
                }
            }
        }
        tokio::select! {
            _ = woken.changed() => {},
            _ = tokio::time::sleep(POLL) => {},
        }
    }
}

/// The ACME task: one pass at a time, every [`ACME_EVERY`], only while
/// this controller leads.
#[derive(Default)]
struct Certificates {
    running: Option<tokio::task::JoinHandle<()>>,
    last: Option<tokio::time::Instant>,
}

impl Certificates {
    fn tend(&mut self, store: &Store, issuer: &Arc<Issuer>, leading: bool) {
        if !leading {
            if let Some(task) = self.running.take() {
                task.abort();
            }
            return;
        }
        let busy = self.running.as_ref().is_some_and(|t| !t.is_finished());
        let recent = self.last.is_some_and(|t| t.elapsed() < ACME_EVERY);
        if busy || recent {
            return;
        }
        self.last = Some(tokio::time::Instant::now());
        let (store, issuer) = (store.clone(), issuer.clone());
        self.running = Some(tokio::spawn(async move {
            if let Err(e) = issuer.pass(&store).await {
                tracing::warn!(error = %e, "certificate pass failed; retrying");
            }
        }));
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        if let Some(task) = self.running.take() {
            task.abort();
        }
    }
}

/// Takes or renews `lease`, saying when this controller starts or stops
/// dispatching (`leading`: whether it did until now).
async fn hold(lease: &mut WorkerLease, leading: bool) -> Holding {
    let holding = lease.hold().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read the worker lease; not dispatching meanwhile");
        Holding::No
    });
    match (leading, holding) {
        (false, Holding::Taken | Holding::Kept) => tracing::info!(
            holder = lease.holder(),
            "took the worker lease: this controller dispatches jobs"
        ),
        (true, Holding::No) => tracing::warn!(
            holder = lease.holder(),
            "lost the worker lease: another controller dispatches jobs"
        ),
        _ => {}
    }
    holding
}

/// One look at the queue; `resume_all`: every job left `dispatching` is
/// taken to be interrupted, however recent.
async fn pass(store: &Store, resume_all: bool) -> Result<(), StoreError> {
    let now = now_ms();
    let mut candidates: Vec<Job> = store
        .find(Collection::Jobs, &[("status", json!(JobStatus::Queued))])
        .await?;
    let interrupted: Vec<Job> = store
        .find(
            Collection::Jobs,
            &[("status", json!(JobStatus::Dispatching))],
        )
        .await?;
    candidates.extend(
        interrupted
            .into_iter()
            .filter(|j| resume_all || now - j.updated_ms > STALE_DISPATCH_MS),
    );
    candidates.sort_by_key(|j| j.created_ms);
    for job in candidates {
        // Backoff: an attempt that failed waits 2^attempts × 250 ms.
        if job.attempts > 0 && now - job.updated_ms < 250 * (1 << job.attempts.min(8)) {
            continue;
        }
        if !jobs::claim(store, &job).await? {
            continue; // another worker took it
        }
        if let Err(e) = jobs::dispatch(store, &job).await {
            let attempts = job.attempts + 1;
            tracing::warn!(job = %job.id, attempts, error = %e, "dispatch failed");
            if attempts >= MAX_ATTEMPTS {
                jobs::finish(store, &job.id, JobStatus::Failed, Some(e.to_string())).await?;
            } else {
                store
                    .update(
                        Collection::Jobs,
                        &job.id,
                        &[],
                        &json!({ "status": JobStatus::Queued, "error": e.to_string(), "updated_ms": now_ms() }),
                    )
                    .await?;
            }
        }
    }
    Ok(())
}
