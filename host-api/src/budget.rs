//! How long a plugin call has run, and what it does at each epoch tick:
//! yield to the other tasks of its thread while within its budget, trap
//! once past it.
//!
//! A call's budget counts the time it actually ran: the time from its start,
//! less the time it spent yielded (waiting for the executor to poll it
//! again). So a hook that shares its thread with busy neighbours is not
//! failed for their work, and a spinning hook cannot hold the thread for
//! more than a tick at a time.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use crate::state::HostState;

/// Whether a call gives its thread up at each tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Yielding {
    /// Yield at each tick (hooks, run by the edge's I/O threads).
    EachTick,
    /// Run on without yielding (`on-launch`, run on a blocking thread).
    Never,
}

/// The budget of the call under way on one store.
#[derive(Debug)]
pub(crate) struct RunBudget {
    allowed: Duration,
    yielding: Yielding,
    started: Instant,
    /// Nanoseconds spent yielded since `started`, added by the yield
    /// futures (which outlive the borrow of the store they come from).
    yielded: Arc<AtomicU64>,
}

impl RunBudget {
    /// A budget that has not started: [`RunBudget::start`] arms it.
    pub(crate) fn new() -> Self {
        RunBudget {
            allowed: Duration::ZERO,
            yielding: Yielding::Never,
            started: Instant::now(),
            yielded: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Starts a call that may run for `allowed`.
    pub(crate) fn start(&mut self, allowed: Duration, yielding: Yielding) {
        self.allowed = allowed;
        self.yielding = yielding;
        self.yielded.store(0, Ordering::Relaxed);
        self.started = Instant::now();
    }

    /// Wall-clock time since the call started, yields included.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Time the call ran: [`RunBudget::elapsed`] less the time it spent
    /// yielded.
    pub(crate) fn ran(&self) -> Duration {
        let yielded = Duration::from_nanos(self.yielded.load(Ordering::Relaxed));
        self.elapsed().saturating_sub(yielded)
    }

    /// What to do at an epoch tick: trap (`Interrupt`, reported as a
    /// deadline overrun) once the call has run for its budget; otherwise
    /// yield, or go on, until the next tick.
    pub(crate) fn on_tick(&self) -> UpdateDeadline {
        if self.ran() >= self.allowed {
            return UpdateDeadline::Interrupt;
        }
        match self.yielding {
            Yielding::Never => UpdateDeadline::Continue(1),
            Yielding::EachTick => UpdateDeadline::YieldCustom(1, yield_now(self.yielded.clone())),
        }
    }
}

/// Starts a call on `store` that may run for `allowed`, its first tick
/// check due at the next epoch tick.
pub(crate) fn arm(store: &mut Store<HostState>, allowed: Duration, yielding: Yielding) {
    store.data_mut().budget.start(allowed, yielding);
    store.set_epoch_deadline(1);
}

/// Gives the thread to the other tasks that are ready and to the I/O driver
/// (tokio polls deferred tasks after those), waits for this hook's turn
/// among the hooks yielded on this thread, then adds the time it waited to
/// `yielded`. Outside a tokio runtime the deferral is a plain wake.
fn yield_now(yielded: Arc<AtomicU64>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let since = Instant::now();
        let turn = Turn::take();
        loop {
            tokio::task::yield_now().await;
            if turn.is_due() {
                break;
            }
        }
        drop(turn);
        let waited = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        yielded.fetch_add(waited, Ordering::Relaxed);
    })
}

/// The hooks yielded on one thread, by ticket, in the order they yielded.
type TurnQueue = Arc<Mutex<VecDeque<u64>>>;

thread_local! {
    static TURNS: TurnQueue = Arc::default();
}

/// Tickets, unique in the process.
static NEXT_TICKET: AtomicU64 = AtomicU64::new(0);

/// A yielded hook's place among the hooks yielded on its thread: one resumes
/// per pass of the executor (each deferred wake-up follows a poll of the I/O
/// driver), the first to have yielded first. Without it every yielded hook
/// would run a tick between two polls of the driver, and a request arriving
/// on a thread with n spinning hooks would wait n ticks at each step.
struct Turn {
    queue: TurnQueue,
    ticket: u64,
}

impl Turn {
    /// Joins the queue of this thread.
    fn take() -> Self {
        let ticket = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
        let queue = TURNS.with(Arc::clone);
        if let Ok(mut waiting) = queue.lock() {
            waiting.push_back(ticket);
        }
        Turn { queue, ticket }
    }

    /// Whether the hook may resume: it is first in its queue, or it is now
    /// polled on another thread (a work-stealing runtime moved its task),
    /// where it does not wait for that thread's hooks.
    fn is_due(&self) -> bool {
        let moved = TURNS.with(|here| !Arc::ptr_eq(here, &self.queue));
        moved
            || self
                .queue
                .lock()
                .map_or(true, |waiting| waiting.front() == Some(&self.ticket))
    }
}

impl Drop for Turn {
    /// Leaves the queue, whether the hook resumes or its call is dropped.
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.queue.lock() {
            waiting.retain(|&t| t != self.ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_spent_yielded_does_not_count() {
        let mut budget = RunBudget::new();
        budget.start(Duration::from_millis(50), Yielding::EachTick);
        std::thread::sleep(Duration::from_millis(20));
        budget.yielded.store(15_000_000, Ordering::Relaxed);
        let ran = budget.ran();
        assert!(ran >= Duration::from_millis(5), "{ran:?}");
        assert!(
            ran < budget.elapsed() - Duration::from_millis(14),
            "{ran:?}"
        );
    }

    #[test]
    fn a_call_past_its_budget_is_interrupted() {
        let mut budget = RunBudget::new();
        budget.start(Duration::from_millis(5), Yielding::Never);
        assert!(matches!(budget.on_tick(), UpdateDeadline::Continue(1)));
        std::thread::sleep(Duration::from_millis(6));
        assert!(matches!(budget.on_tick(), UpdateDeadline::Interrupt));
    }

    #[test]
    fn yielded_hooks_resume_one_at_a_time_in_the_order_they_yielded() {
        let first = Turn::take();
        let second = Turn::take();
        assert!(first.is_due());
        assert!(!second.is_due());
        drop(first);
        assert!(second.is_due());
        let elsewhere = std::thread::spawn(Turn::take).join().unwrap();
        assert!(elsewhere.is_due(), "moved to this thread: it does not wait");
    }

    #[test]
    fn hooks_yield_at_each_tick_within_their_budget() {
        let mut budget = RunBudget::new();
        budget.start(Duration::from_secs(10), Yielding::EachTick);
        assert!(matches!(
            budget.on_tick(),
            UpdateDeadline::YieldCustom(1, _)
        ));
    }
}
