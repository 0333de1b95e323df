//! Request collapsing: of concurrent misses for one key, the first (the
//! leader) goes upstream; the others (followers) wait for it to finish, then
//! look in the cache again. A leader whose answer cannot be stored releases
//! the followers at once so they go upstream themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// The fetches in progress, by cache key.
#[derive(Default)]
pub struct Flights {
    in_progress: Mutex<HashMap<String, watch::Receiver<bool>>>,
}

/// A request's part in the fetch of its key.
pub enum Join {
    /// Fetch it; dropping the guard releases the followers.
    Leader(FlightGuard),
    /// Another request is fetching it: wait with [`Follower::wait`].
    Follower(Follower),
}

/// Held by the leader for the duration of its fetch.
pub struct FlightGuard {
    flights: Arc<Flights>,
    key: String,
    done: watch::Sender<bool>,
}

/// A waiting request.
pub struct Follower {
    done: watch::Receiver<bool>,
}

impl Flights {
    /// An empty set of flights.
    pub fn new() -> Arc<Self> {
        Arc::new(Flights::default())
    }

    /// Joins the fetch of `key`, leading it when none is in progress.
    pub fn join(self: &Arc<Self>, key: &str) -> Join {
        let mut in_progress = self.in_progress.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(done) = in_progress.get(key) {
            return Join::Follower(Follower { done: done.clone() });
        }
        let (done, watcher) = watch::channel(false);
        in_progress.insert(key.to_string(), watcher);
        Join::Leader(FlightGuard {
            flights: self.clone(),
            key: key.to_string(),
            done,
        })
    }
}

impl Follower {
    /// Waits until the leader is done or `limit` passes; `true` if the
    /// leader finished.
    pub async fn wait(mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.done.wait_for(|done| *done))
            .await
            .is_ok()
    }
}

impl FlightGuard {
    /// Ends the flight now (the answer will not be stored, or has been).
    pub fn release(self) {}
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut in_progress = self
            .flights
            .in_progress
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        in_progress.remove(&self.key);
        drop(in_progress);
        self.done.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_wait_for_the_leader_then_a_new_flight_can_start() {
        let flights = Flights::new();
        let Join::Leader(guard) = flights.join("k") else {
            panic!("first is the leader")
        };
        let Join::Follower(follower) = flights.join("k") else {
            panic!("second follows")
        };
        assert!(matches!(flights.join("other"), Join::Leader(_)));
        let waiting = tokio::spawn(follower.wait(Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        guard.release();
        assert!(waiting.await.unwrap(), "released by the leader");
        assert!(matches!(flights.join("k"), Join::Leader(_)));
    }

    #[tokio::test]
    async fn a_follower_gives_up_after_its_limit() {
        let flights = Flights::new();
        let _guard = flights.join("k");
        let Join::Follower(follower) = flights.join("k") else {
            panic!("second follows")
        };
        assert!(!follower.wait(Duration::from_millis(20)).await);
    }
}
