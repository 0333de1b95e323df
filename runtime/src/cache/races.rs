//! Purges that race fetches. A response fetched before a purge may be what
//! the purge meant to remove, so it must not be stored after the purge ran;
//! but only a purge that selects it counts: an unrelated purge (or the
//! invalidation an unrelated POST causes) must not stop other fetches from
//! storing.
//!
//! A fetch takes a [`FetchTicket`] before its cache lookup; purges are
//! numbered and kept while a fetch that began before them is in flight. A
//! store checks, under the same lock as the purge's numbering, whether a
//! purge since its ticket selects the object; a purge recorded after that
//! finds the stored object in the index. Past [`KEPT`] purges waiting on one
//! slow fetch, the oldest are forgotten and fetches older than them store
//! nothing (the safe side).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use super::object::PurgeMeta;
use super::purge::Purge;

/// Most purges kept for in-flight fetches.
pub const KEPT: usize = 4096;

/// The purges in-flight fetches must be checked against.
#[derive(Default)]
pub struct Races(Mutex<Log>);

#[derive(Default)]
struct Log {
    /// The number the next purge gets.
    next: u64,
    /// In-flight fetches by the number of the first purge after their
    /// start.
    in_flight: BTreeMap<u64, usize>,
    /// Purges since the oldest in-flight fetch began, numbered.
    purges: VecDeque<(u64, Purge)>,
    /// Purges before this number were forgotten.
    forgotten_before: u64,
}

/// Held while an object is stored (see [`Races::unless_purged`]).
pub struct StorePermit<'a>(#[allow(dead_code)] MutexGuard<'a, Log>);

/// A fetch in flight, from before its cache lookup to its store.
pub struct FetchTicket {
    races: Arc<Races>,
    start: u64,
}

impl Races {
    fn lock(&self) -> MutexGuard<'_, Log> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A ticket for a fetch starting now.
    pub fn begin(self: &Arc<Self>) -> FetchTicket {
        let mut log = self.lock();
        let start = log.next;
        *log.in_flight.entry(start).or_default() += 1;
        FetchTicket {
            races: self.clone(),
            start,
        }
    }

    /// Records a purge that is about to run.
    pub fn record(&self, purge: &Purge) {
        let mut log = self.lock();
        let number = log.next;
        log.next += 1;
        if log.in_flight.is_empty() {
            return; // nothing started before it is still in flight
        }
        log.purges.push_back((number, purge.clone()));
        if log.purges.len() > KEPT {
            if let Some((oldest, _)) = log.purges.pop_front() {
                log.forgotten_before = oldest + 1;
            }
        }
    }

    /// Permission to store an object described by `meta` for the fetch
    /// of `ticket`: `None` when a purge since the ticket selects it. While
    /// the permission is held no purge is recorded, so one recorded after
    /// finds what was stored.
    pub fn unless_purged(&self, ticket: &FetchTicket, meta: &PurgeMeta) -> Option<StorePermit<'_>> {
        let log = self.lock();
        let raced = ticket.start < log.forgotten_before
            || log
                .purges
                .iter()
                .any(|(number, purge)| *number >= ticket.start && purge.matches(meta));
        (!raced).then_some(StorePermit(log))
    }

    /// Purges kept now.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.lock().purges.len()
    }
}

impl Clone for FetchTicket {
    /// Another fetch that counts as begun when this one did (a background
    /// refresh of what this request found).
    fn clone(&self) -> Self {
        *self.races.lock().in_flight.entry(self.start).or_default() += 1;
        FetchTicket {
            races: self.races.clone(),
            start: self.start,
        }
    }
}

impl Drop for FetchTicket {
    fn drop(&mut self) {
        let mut log = self.races.lock();
        if let Some(count) = log.in_flight.get_mut(&self.start) {
            *count -= 1;
            if *count == 0 {
                log.in_flight.remove(&self.start);
            }
        }
        // Purges older than every fetch still in flight are done with.
        let oldest = log.in_flight.keys().next().copied().unwrap_or(log.next);
        while log.purges.front().is_some_and(|(n, _)| *n < oldest) {
            log.purges.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::purge::Target;

    fn meta(distribution: &str, url: &str) -> PurgeMeta {
        PurgeMeta {
            distribution: distribution.into(),
            url: url.into(),
            tags: vec!["t".into()],
        }
    }

    #[test]
    fn only_a_purge_that_selects_the_object_stops_its_store() {
        let races = Arc::new(Races::default());
        let ticket = races.begin();
        races.record(&Purge::of("d", Target::Url("a.test/post".into())));
        races.record(&Purge::of("other", Target::Everything));
        assert!(races
            .unless_purged(&ticket, &meta("d", "a.test/page"))
            .is_some());
        races.record(&Purge::of("d", Target::Tag("t".into())));
        assert!(races
            .unless_purged(&ticket, &meta("d", "a.test/page"))
            .is_none());
        // A fetch begun after the purge stores.
        let later = races.begin();
        assert!(races
            .unless_purged(&later, &meta("d", "a.test/page"))
            .is_some());
        drop((ticket, later));
        assert_eq!(races.kept(), 0, "nothing in flight: nothing kept");
        races.record(&Purge::everything());
        assert_eq!(races.kept(), 0);
    }

    #[test]
    fn past_the_bound_old_fetches_store_nothing() {
        let races = Arc::new(Races::default());
        let slow = races.begin();
        for i in 0..=KEPT {
            races.record(&Purge::of("d", Target::Url(format!("a.test/{i}"))));
        }
        assert_eq!(races.kept(), KEPT);
        assert!(races
            .unless_purged(&slow, &meta("d", "a.test/unrelated"))
            .is_none());
        let fresh = races.begin();
        assert!(races
            .unless_purged(&fresh, &meta("d", "a.test/unrelated"))
            .is_some());
        drop(slow);
        drop(fresh);
        assert_eq!(races.kept(), 0);
    }
}
