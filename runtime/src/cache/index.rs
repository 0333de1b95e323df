//! What the cache holds, per distribution by URL and surrogate key, so
//! purges find their objects without scanning the store, and a purge of one
//! distribution never looks at another's. With a disk tier, changes are
//! appended to a journal next to it and replayed at start, so objects that
//! survive a restart can still be purged.
//!
//! The index stays as large as the store: entries whose objects left it
//! are forgotten ([`Index::forget_unless`] for the memory evictions foyer
//! reports, [`Index::sweep`] for the disk tier, whose evictions foyer does
//! not report). The journal is compacted at start, and while the edge runs
//! on a thread of its own ([`compact_if_grown`]) once it has
//! [`COMPACT_RATIO`] times more lines than the index has entries.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use super::object::PurgeMeta;
use super::purge::{Purge, Target};

/// A journal is compacted once it has more lines than this many times the
/// index's entries, plus [`COMPACT_SLACK`]: rewriting costs one line per
/// entry, so each change is written 1 + 1/(ratio - 1) times on average.
pub const COMPACT_RATIO: u64 = 4;
/// Lines a journal may have beyond [`COMPACT_RATIO`] times the entries
/// (small journals are not worth rewriting).
pub const COMPACT_SLACK: u64 = 16_384;
/// Entries a compaction writes per hold of the index's lock (well under a
/// millisecond).
const COMPACT_CHUNK: usize = 1024;
/// Estimated bytes an entry takes besides its strings' contents: the
/// `String` and `Vec` headers, B-tree and hash-set slots of the entry map,
/// the URL map, its key set and the distribution's key set. With
/// [`TAG_OVERHEAD`], [`Index::estimated_bytes`] came within 2% of what a
/// counting allocator saw for 100 000 entries (URLs of 20 to 60 bytes, up
/// to two tags).
const ENTRY_OVERHEAD: usize = 450;
/// Estimated bytes each tag of an entry takes besides its contents.
const TAG_OVERHEAD: usize = 72;

/// One journal line, as read.
#[derive(Deserialize)]
enum Change {
    Put(String, PurgeMeta),
    Remove(String),
}

/// One journal line, as written (the same JSON as [`Change`]).
#[derive(Serialize)]
enum ChangeRef<'a> {
    Put(&'a str, &'a PurgeMeta),
    Remove(&'a str),
}

impl ChangeRef<'_> {
    fn key(&self) -> &str {
        match self {
            ChangeRef::Put(key, _) | ChangeRef::Remove(key) => key,
        }
    }
}

/// The index, and its journal when the cache has a disk tier.
#[derive(Default)]
pub struct Index {
    /// Every key, in order (sweeps and compactions go through it a chunk
    /// at a time).
    entries: BTreeMap<String, Held>,
    distributions: HashMap<String, DistributionIndex>,
    /// Estimated heap bytes of all of the above.
    bytes: usize,
    /// The last key [`Index::sweep`] looked at.
    swept_to: Option<String>,
    journal: Option<Journal>,
}

/// An entry.
struct Held {
    meta: PurgeMeta,
    /// The last sweep found no object for it.
    missed: bool,
}

/// The journal file and the compaction of it under way, if any.
struct Journal {
    path: PathBuf,
    /// Opened for appending.
    file: File,
    /// Lines in `file`.
    lines: u64,
    /// No compaction starts before `lines` passes this (after one failed).
    deferred_until: u64,
    compaction: Option<Compaction>,
    /// Compactions started, to tell them apart.
    started: u64,
}

/// A journal being rewritten as one line per entry, in key order, a chunk
/// at a time. Changes to keys already written are appended to it as well,
/// so it is whole when the last chunk is written; it then replaces the
/// journal.
struct Compaction {
    id: u64,
    /// `index.journal.new`.
    path: PathBuf,
    file: BufWriter<File>,
    /// The last key written.
    written_to: Option<String>,
    /// Every entry is written: every change goes to it too.
    complete: bool,
    lines: u64,
}

/// What a compaction did with one hold of the lock.
enum Step {
    /// Wrote a chunk; more to come.
    More,
    /// Wrote the last entries: the file to sync before it replaces the
    /// journal.
    Written(File),
    /// The compaction was abandoned or replaced (the index was cleared).
    Cancelled,
}

/// The keys of one distribution's objects, by URL and by tag.
#[derive(Default)]
struct DistributionIndex {
    by_url: BTreeMap<String, HashSet<String>>,
    by_tag: HashMap<String, HashSet<String>>,
    keys: HashSet<String>,
}

impl DistributionIndex {
    /// The keys `target` selects here.
    fn select<'a>(&'a self, target: &Target, out: &mut Vec<&'a String>) {
        match target {
            Target::Url(url) => out.extend(self.by_url.get(url).into_iter().flatten()),
            Target::Prefix(prefix) => out.extend(
                self.by_url
                    .range(prefix.clone()..)
                    .take_while(|(url, _)| url.starts_with(prefix.as_str()))
                    .flat_map(|(_, keys)| keys),
            ),
            Target::Tag(tag) => out.extend(self.by_tag.get(tag).into_iter().flatten()),
            Target::Everything => out.extend(&self.keys),
        }
    }
}

impl Index {
    /// Replays the journal at `path` (if any; unreadable lines are skipped
    /// with a warning), forgets the keys whose objects `present` says the
    /// store no longer holds, then rewrites the journal compacted.
    pub fn open(path: &Path, present: impl Fn(&str) -> bool) -> Result<Self, String> {
        let mut index = Index::default();
        match File::open(path) {
            Ok(file) => index.replay(file, path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        let replayed = index.len();
        let gone: Vec<String> = index
            .entries
            .keys()
            .filter(|key| !present(key))
            .cloned()
            .collect();
        for key in &gone {
            index.remove(key);
        }
        if replayed > 0 {
            tracing::info!(
                entries = index.len(),
                gone = gone.len(),
                "cache index replayed from its journal"
            );
        }
        let compacted = path.with_extension("journal.new");
        let mut file = create_appending(&compacted)?;
        let lines = write_entries(&index.entries, &mut file, None, usize::MAX)
            .and_then(|(lines, _)| file.flush().map(|()| lines))
            .map_err(|e| format!("{}: {e}", compacted.display()))?;
        let file = file
            .into_inner()
            .map_err(|e| format!("{}: {}", compacted.display(), e.error()))?;
        file.sync_all()
            .and_then(|()| std::fs::rename(&compacted, path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        index.journal = Some(Journal {
            path: path.to_path_buf(),
            file,
            lines: lines as u64,
            deferred_until: 0,
            compaction: None,
            started: 0,
        });
        Ok(index)
    }

    /// Applies the journal's lines in order. A line that is not a change
    /// (cut short by a crash, or damaged: not JSON, not UTF-8) is skipped.
    fn replay(&mut self, file: File, path: &Path) -> Result<(), String> {
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        let (mut number, mut skipped, mut first_skipped) = (0u64, 0u64, 0u64);
        loop {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if read == 0 {
                break;
            }
            number += 1;
            match serde_json::from_slice(&line) {
                Ok(Change::Put(key, meta)) => self.insert(&key, &meta),
                Ok(Change::Remove(key)) => self.remove(&key),
                Err(_) => {
                    skipped += 1;
                    if first_skipped == 0 {
                        first_skipped = number;
                    }
                }
            }
        }
        if skipped > 0 {
            tracing::warn!(
                path = %path.display(),
                skipped,
                first = first_skipped,
                "skipped unreadable lines of the cache index journal (cut short by a crash, or damaged); \
                 objects they described cannot be purged by URL, prefix or tag"
            );
        }
        Ok(())
    }

    /// Records that `key` holds an object described by `meta`.
    pub fn insert(&mut self, key: &str, meta: &PurgeMeta) {
        if let Some(held) = self.entries.get_mut(key) {
            if held.meta == *meta {
                held.missed = false;
                return;
            }
        }
        self.remove(key);
        self.log(&ChangeRef::Put(key, meta));
        let index = self
            .distributions
            .entry(meta.distribution.clone())
            .or_default();
        index
            .by_url
            .entry(meta.url.clone())
            .or_default()
            .insert(key.to_string());
        for tag in &meta.tags {
            index
                .by_tag
                .entry(tag.clone())
                .or_default()
                .insert(key.to_string());
        }
        index.keys.insert(key.to_string());
        self.bytes += entry_bytes(key, meta);
        self.entries.insert(
            key.to_string(),
            Held {
                meta: meta.clone(),
                missed: false,
            },
        );
    }

    /// Forgets every key (the journal too); returns how many there were.
    pub fn clear(&mut self) -> Result<usize, String> {
        if let Some(journal) = &mut self.journal {
            journal.abandon_compaction();
            journal
                .file
                .set_len(0)
                .map_err(|e| format!("{}: {e}", journal.path.display()))?;
            journal.lines = 0;
        }
        let count = self.entries.len();
        self.entries.clear();
        self.distributions.clear();
        self.bytes = 0;
        self.swept_to = None;
        Ok(count)
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &str) {
        let Some(Held { meta, .. }) = self.entries.remove(key) else {
            return;
        };
        self.bytes = self.bytes.saturating_sub(entry_bytes(key, &meta));
        self.log(&ChangeRef::Remove(key));
        let Some(index) = self.distributions.get_mut(&meta.distribution) else {
            return;
        };
        if drop_from(index.by_url.get_mut(&meta.url), key) {
            index.by_url.remove(&meta.url);
        }
        for tag in &meta.tags {
            if drop_from(index.by_tag.get_mut(tag), key) {
                index.by_tag.remove(tag);
            }
        }
        index.keys.remove(key);
        if index.keys.is_empty() {
            self.distributions.remove(&meta.distribution);
        }
    }

    /// Forgets those of `keys` (objects the memory tier evicted) that
    /// `present` says the store no longer holds: a key stored again since
    /// its eviction stays. Returns how many were forgotten.
    pub fn forget_unless(&mut self, keys: Vec<String>, present: impl Fn(&str) -> bool) -> usize {
        let before = self.len();
        for key in keys {
            if self.entries.contains_key(&key) && !present(&key) {
                self.remove(&key);
            }
        }
        before - self.len()
    }

    /// Looks at the next `count` entries (from where the last sweep
    /// stopped, starting over at the end) and forgets those for which
    /// `present` found no object twice in a row: the store may not report
    /// an object whose disk write is still under way, and by the next
    /// visit (a whole pass later) that write has landed or been dropped.
    /// Returns how many were forgotten.
    ///
    /// Swept at `k` entries per stored object, the index holds at most
    /// about `k / (k - 2)` times the objects the store holds (each object
    /// stored makes at most about one leave).
    pub fn sweep(&mut self, count: usize, present: impl Fn(&str) -> bool) -> usize {
        let from = self.swept_to.take();
        let start = from.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let mut gone = Vec::new();
        let mut looked = 0;
        let mut last = None;
        for (key, held) in self
            .entries
            .range_mut::<str, _>((start, Bound::Unbounded))
            .take(count)
        {
            looked += 1;
            if present(key) {
                held.missed = false;
            } else if held.missed {
                gone.push(key.clone());
            } else {
                held.missed = true;
            }
            last = Some(key);
        }
        // A short chunk reached the end: the next sweep starts over.
        self.swept_to = if looked < count { None } else { last.cloned() };
        for key in &gone {
            self.remove(key);
        }
        gone.len()
    }

    /// The keys `purge` selects.
    pub fn select(&self, purge: &Purge) -> Vec<String> {
        let mut keys = Vec::new();
        match &purge.distribution {
            Some(id) => {
                if let Some(index) = self.distributions.get(id) {
                    index.select(&purge.target, &mut keys);
                }
            }
            None => {
                for index in self.distributions.values() {
                    index.select(&purge.target, &mut keys);
                }
            }
        }
        keys.into_iter().cloned().collect()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether a compaction of the journal is under way.
    #[cfg(test)]
    pub fn compacting(&self) -> bool {
        self.journal
            .as_ref()
            .is_some_and(|j| j.compaction.is_some())
    }

    /// Estimated heap bytes the index takes (the journal's buffers aside).
    pub fn estimated_bytes(&self) -> usize {
        self.bytes
    }

    fn log(&mut self, change: &ChangeRef<'_>) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        let line = match serde_json::to_vec(change) {
            Ok(mut line) => {
                line.push(b'\n');
                line
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot write a cache index journal line");
                return;
            }
        };
        match journal.file.write_all(&line) {
            Ok(()) => journal.lines += 1,
            Err(e) => {
                tracing::warn!(path = %journal.path.display(), error = %e, "cannot append to the cache index journal");
            }
        }
        let Some(compaction) = &mut journal.compaction else {
            return;
        };
        // A key past the last one written is written with its state then.
        let written = compaction.complete
            || compaction
                .written_to
                .as_deref()
                .is_some_and(|to| change.key() <= to);
        if written {
            match compaction.file.write_all(&line) {
                Ok(()) => compaction.lines += 1,
                Err(e) => {
                    tracing::warn!(path = %compaction.path.display(), error = %e, "cannot write the compacted cache index journal; compaction abandoned");
                    journal.abandon_compaction();
                }
            }
        }
    }

    /// Starts a compaction if the journal has grown past
    /// [`COMPACT_RATIO`] times the entries (plus [`COMPACT_SLACK`]) and
    /// none is under way; returns its id.
    fn begin_compaction(&mut self) -> Option<u64> {
        let live = self.entries.len() as u64;
        let journal = self.journal.as_mut()?;
        if journal.compaction.is_some()
            || journal.lines <= COMPACT_RATIO * live + COMPACT_SLACK
            || journal.lines <= journal.deferred_until
        {
            return None;
        }
        let path = journal.path.with_extension("journal.new");
        match create_appending(&path) {
            Ok(file) => {
                journal.started += 1;
                journal.compaction = Some(Compaction {
                    id: journal.started,
                    path,
                    file,
                    written_to: None,
                    complete: false,
                    lines: 0,
                });
                Some(journal.started)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot compact the cache index journal");
                journal.deferred_until = journal.lines + COMPACT_SLACK;
                None
            }
        }
    }

    /// Writes the next chunk of compaction `id`.
    fn compaction_step(&mut self, id: u64) -> Result<Step, String> {
        let Some(journal) = &mut self.journal else {
            return Ok(Step::Cancelled);
        };
        let Some(compaction) = journal.compaction.as_mut().filter(|c| c.id == id) else {
            return Ok(Step::Cancelled);
        };
        let error = |e: std::io::Error| format!("{}: {e}", compaction.path.display());
        let after = compaction.written_to.as_deref();
        let (written, last) =
            write_entries(&self.entries, &mut compaction.file, after, COMPACT_CHUNK)
                .map_err(error)?;
        compaction.lines += written as u64;
        if let Some(last) = last {
            compaction.written_to = Some(last.clone());
        }
        if written == COMPACT_CHUNK {
            return Ok(Step::More);
        }
        compaction.complete = true;
        compaction.file.flush().map_err(error)?;
        let file = compaction.file.get_ref().try_clone().map_err(error)?;
        Ok(Step::Written(file))
    }

    /// Puts the whole compaction `id` in the journal's place.
    fn finish_compaction(&mut self, id: u64) -> Result<(), String> {
        let Some(journal) = &mut self.journal else {
            return Ok(());
        };
        let Some(compaction) = journal.compaction.take_if(|c| c.id == id) else {
            return Ok(());
        };
        let path = compaction.path.clone();
        let error = |e: String| {
            let _ = std::fs::remove_file(&path);
            format!("{}: {e}", path.display())
        };
        let file = compaction
            .file
            .into_inner()
            .map_err(|e| error(e.error().to_string()))?;
        std::fs::rename(&path, &journal.path).map_err(|e| error(e.to_string()))?;
        tracing::info!(
            path = %journal.path.display(),
            lines_before = journal.lines,
            lines = compaction.lines,
            "cache index journal compacted"
        );
        journal.file = file;
        journal.lines = compaction.lines;
        Ok(())
    }

    /// Gives up compaction `id` (its file is removed).
    fn abandon_compaction(&mut self, id: u64) {
        if let Some(journal) = &mut self.journal {
            if journal.compaction.as_ref().is_some_and(|c| c.id == id) {
                journal.abandon_compaction();
                journal.deferred_until = journal.lines + COMPACT_SLACK;
            }
        }
    }
}

impl Journal {
    fn abandon_compaction(&mut self) {
        if let Some(compaction) = self.compaction.take() {
            drop(compaction.file);
            if let Err(e) = std::fs::remove_file(&compaction.path) {
                tracing::warn!(path = %compaction.path.display(), error = %e, "cannot remove an abandoned cache index journal");
            }
        }
    }
}

/// Locks the index (a panic elsewhere leaves it usable).
pub fn lock(index: &Mutex<Index>) -> MutexGuard<'_, Index> {
    index.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts compacting `shared`'s journal on a thread of its own if it has
/// grown past [`COMPACT_RATIO`] times the entries; `index` is `shared`,
/// locked by the caller. The thread writes a chunk of entries per hold of
/// the lock, syncs the new file without holding it, then swaps it in.
pub fn compact_if_grown(shared: &Arc<Mutex<Index>>, index: &mut Index) {
    let Some(id) = index.begin_compaction() else {
        return;
    };
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("parapet-index".into())
            .spawn(move || compact(&shared, id))
    };
    if let Err(e) = thread {
        tracing::warn!(error = %e, "cannot start compacting the cache index journal");
        index.abandon_compaction(id);
    }
}

/// Runs compaction `id` to its end.
fn compact(shared: &Mutex<Index>, id: u64) {
    let written = loop {
        // The lock is held for one chunk at a time.
        match lock(shared).compaction_step(id) {
            Ok(Step::More) => {}
            Ok(Step::Written(file)) => break file,
            Ok(Step::Cancelled) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot compact the cache index journal");
                lock(shared).abandon_compaction(id);
                return;
            }
        }
    };
    let result = written
        .sync_data()
        .map_err(|e| e.to_string())
        .and_then(|()| lock(shared).finish_compaction(id));
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot compact the cache index journal");
        lock(shared).abandon_compaction(id);
    }
}

/// A new, empty file at `path` (replacing any), opened for appending, so
/// truncating it later makes the next line the first.
fn create_appending(path: &Path) -> Result<BufWriter<File>, String> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path)
        .map(BufWriter::new)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Estimated heap bytes of one entry: its key (in the entry map, its URL's
/// key set, the distribution's key set and each tag's), its URL (in the
/// entry and as a key of the URL map), its distribution and tags.
fn entry_bytes(key: &str, meta: &PurgeMeta) -> usize {
    ENTRY_OVERHEAD
        + 3 * key.len()
        + 2 * meta.url.len()
        + meta.distribution.len()
        + meta
            .tags
            .iter()
            .map(|tag| TAG_OVERHEAD + key.len() + 2 * tag.len())
            .sum::<usize>()
}

/// Writes one `Put` line per entry after `after` (from the first when
/// `None`), at most `limit`; returns how many and the last key written.
fn write_entries<'a>(
    entries: &'a BTreeMap<String, Held>,
    out: &mut impl Write,
    after: Option<&str>,
    limit: usize,
) -> std::io::Result<(usize, Option<&'a String>)> {
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut written = 0;
    let mut last = None;
    for (key, held) in entries
        .range::<str, _>((start, Bound::Unbounded))
        .take(limit)
    {
        let mut line =
            serde_json::to_vec(&ChangeRef::Put(key, &held.meta)).map_err(std::io::Error::other)?;
        line.push(b'\n');
        out.write_all(&line)?;
        written += 1;
        last = Some(key);
    }
    Ok((written, last))
}

/// Removes `key` from a key set; `true` when the set is now empty.
fn drop_from(keys: Option<&mut HashSet<String>>, key: &str) -> bool {
    keys.is_some_and(|keys| {
        keys.remove(key);
        keys.is_empty()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(distribution: &str, url: &str, tags: &[&str]) -> PurgeMeta {
        PurgeMeta {
            distribution: distribution.into(),
            url: url.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn sorted(mut keys: Vec<String>) -> Vec<String> {
        keys.sort();
        keys
    }

    #[test]
    fn purges_find_keys_and_the_journal_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.journal");
        let mut index = Index::open(&path, |_| true).unwrap();
        index.insert("k1", &meta("d", "a.com/img/1.png", &["img"]));
        index.insert("k2", &meta("d", "a.com/img/2.png", &["img", "p2"]));
        index.insert("k3", &meta("d", "a.com/index.html", &[]));
        index.remove("k3");
        let d = |target| Purge::of("d", target);
        assert_eq!(
            sorted(index.select(&d(Target::Prefix("a.com/img/".into())))),
            ["k1", "k2"]
        );
        assert_eq!(index.select(&d(Target::Tag("p2".into()))), ["k2"]);
        assert_eq!(
            index.select(&d(Target::Url("a.com/img/1.png".into()))),
            ["k1"]
        );
        assert!(index
            .select(&d(Target::Url("a.com/index.html".into())))
            .is_empty());
        drop(index);
        let reopened = Index::open(&path, |_| true).unwrap();
        assert_eq!(reopened.len(), 2);
        assert_eq!(
            sorted(reopened.select(&d(Target::Everything))),
            ["k1", "k2"]
        );

        let mut cleared = reopened;
        assert_eq!(cleared.clear(), Ok(2));
        assert!(cleared.select(&d(Target::Tag("img".into()))).is_empty());
        cleared.insert("k4", &meta("d", "a.com/4.png", &[]));
        drop(cleared);
        let reopened = Index::open(&path, |_| true).unwrap();
        assert_eq!(reopened.len(), 1, "only what came after the clear");
    }

    #[test]
    fn a_distributions_purge_never_selects_another_distributions_keys() {
        let mut index = Index::default();
        index.insert("a1", &meta("a", "a.test/x", &["shared"]));
        index.insert("b1", &meta("b", "b.test/x", &["shared"]));
        index.insert("b2", &meta("b", "b.test/y", &[]));
        for target in [
            Target::Url("b.test/x".into()),
            Target::Prefix("b.test/".into()),
            Target::Tag("shared".into()),
        ] {
            let keys = index.select(&Purge::of("a", target.clone()));
            assert!(
                keys.iter().all(|k| k.starts_with('a')),
                "{target:?}: {keys:?}"
            );
        }
        assert_eq!(
            index.select(&Purge::of("a", Target::Tag("shared".into()))),
            ["a1"]
        );
        let edge_wide = Purge {
            distribution: None,
            target: Target::Tag("shared".into()),
        };
        assert_eq!(sorted(index.select(&edge_wide)), ["a1", "b1"]);
        assert_eq!(
            sorted(index.select(&Purge::everything())),
            ["a1", "b1", "b2"]
        );
        index.remove("b1");
        index.remove("b2");
        assert!(index.select(&Purge::of("b", Target::Everything)).is_empty());
    }

    /// The keys a reopened journal holds, in order.
    fn replayed(path: &Path) -> Vec<String> {
        let index = Index::open(path, |_| true).unwrap();
        index.entries.keys().cloned().collect()
    }

    fn lines(path: &Path) -> usize {
        std::fs::read(path)
            .unwrap()
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
    }

    #[test]
    fn torn_and_non_utf8_lines_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.journal");
        let mut index = Index::open(&path, |_| true).unwrap();
        index.insert("k1", &meta("d", "a.com/1", &[]));
        index.insert("k2", &meta("d", "a.com/2", &["t"]));
        drop(index);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"Put\":[\"k9\",{\"distrib\xff\xfe\n"); // not UTF-8
        bytes.extend_from_slice(b"\n"); // empty
        bytes.extend_from_slice(br#"{"Remove":"k1"}"#);
        bytes.extend_from_slice(b"\n");
        bytes.extend_from_slice(br#"{"Put":["k3",{"distribution":"d","url":"a.com/3","#); // torn
        std::fs::write(&path, bytes).unwrap();

        let index = Index::open(&path, |_| true).unwrap();
        assert_eq!(index.entries.keys().collect::<Vec<_>>(), ["k2"]);
        assert_eq!(
            index.select(&Purge::of("d", Target::Tag("t".into()))),
            ["k2"]
        );
        drop(index);
        assert_eq!(lines(&path), 1, "compacted at start, the bad lines gone");
    }

    #[test]
    fn opening_forgets_keys_the_store_no_longer_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.journal");
        let mut index = Index::open(&path, |_| true).unwrap();
        index.insert("kept", &meta("d", "a.com/1", &[]));
        index.insert("lost", &meta("d", "a.com/2", &[]));
        drop(index);
        let index = Index::open(&path, |key| key == "kept").unwrap();
        assert_eq!(index.len(), 1);
        assert!(index
            .select(&Purge::of("d", Target::Url("a.com/2".into())))
            .is_empty());
        drop(index);
        assert_eq!(replayed(&path), ["kept"]);
    }

    #[test]
    fn a_sweep_forgets_an_entry_found_missing_twice_in_a_row() {
        let mut index = Index::default();
        for i in 0..10 {
            index.insert(&format!("k{i}"), &meta("d", &format!("a.com/{i}"), &[]));
        }
        let bytes = index.estimated_bytes();
        // The store holds only k3 and k7.
        let present = |key: &str| key == "k3" || key == "k7";
        // First pass (4 + 4 + 2 entries): every missing one is marked.
        assert_eq!(index.sweep(4, present), 0);
        assert_eq!(index.sweep(4, present), 0);
        assert_eq!(index.sweep(4, present), 0);
        // An object stored again meanwhile is no longer missing.
        index.insert("k0", &meta("d", "a.com/0", &[]));
        assert_eq!(index.sweep(100, present), 7);
        assert_eq!(
            sorted(index.entries.keys().cloned().collect()),
            ["k0", "k3", "k7"]
        );
        assert!(index.estimated_bytes() < bytes / 3 + 1);
        assert_eq!(
            index.forget_unless(vec!["k3".into(), "k0".into()], |k| k == "k3"),
            1
        );
        assert_eq!(
            sorted(index.entries.keys().cloned().collect()),
            ["k3", "k7"]
        );
        index.remove("k3");
        index.remove("k7");
        assert_eq!(index.estimated_bytes(), 0);
    }

    /// Changes made while a compaction is under way, before and after
    /// the keys it has written, all land in the compacted journal.
    #[test]
    fn a_compaction_keeps_changes_made_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.journal");
        let mut index = Index::open(&path, |_| true).unwrap();
        let count = COMPACT_SLACK as usize + 3 * COMPACT_CHUNK;
        let key = |i: usize| format!("k{i:06}");
        for i in 0..count {
            index.insert(&key(i), &meta("d", &format!("a.com/{i}"), &[]));
        }
        for i in 0..count / 2 {
            index.remove(&key(i));
        }
        // Still under the bound: nothing to do.
        assert!(index.begin_compaction().is_none());
        for round in 0..(COMPACT_RATIO as usize + 1) {
            for i in count / 2..count {
                index.insert(&key(i), &meta("d", &format!("a.com/{i}/{round}"), &[]));
            }
        }
        let id = index.begin_compaction().expect("grown past the bound");
        assert!(matches!(index.compaction_step(id), Ok(Step::More)));
        // Written already: appended to the new file too.
        index.remove(&key(count / 2));
        index.insert(&key(count / 2 + 1), &meta("d", "a.com/changed", &["t"]));
        // Not yet written: written with its state when the chunk comes.
        index.remove(&key(count - 1));
        index.insert(&key(count - 2), &meta("d", "a.com/changed-too", &[]));
        index.insert("zz-new", &meta("d", "a.com/new", &[]));
        let file = loop {
            match index.compaction_step(id) {
                Ok(Step::More) => {}
                Ok(Step::Written(file)) => break file,
                _ => panic!("the compaction stopped"),
            }
        };
        // After the last chunk, before the swap: appended too.
        index.insert("zz-late", &meta("d", "a.com/late", &[]));
        file.sync_data().unwrap();
        index.finish_compaction(id).unwrap();
        index.insert("zz-after", &meta("d", "a.com/after", &[]));
        assert!(!path.with_extension("journal.new").exists());
        let expected: Vec<String> = index.entries.keys().cloned().collect();
        let live = expected.len();
        drop(index);
        assert!(
            lines(&path) <= live + 8,
            "{} lines for {live} entries",
            lines(&path)
        );
        let reopened = Index::open(&path, |_| true).unwrap();
        assert_eq!(
            reopened.entries.keys().cloned().collect::<Vec<_>>(),
            expected
        );
        assert_eq!(
            reopened.select(&Purge::of("d", Target::Url("a.com/changed".into()))),
            [key(count / 2 + 1)]
        );
        assert_eq!(
            reopened.select(&Purge::of("d", Target::Url("a.com/changed-too".into()))),
            [key(count - 2)]
        );
    }

    /// Through the cache's path: the thread compacts the journal while
    /// changes keep coming, and a clear during a compaction cancels it.
    #[test]
    fn the_journal_compacts_on_its_own_thread_while_changes_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.journal");
        let shared = Arc::new(Mutex::new(Index::open(&path, |_| true).unwrap()));
        let change = |i: usize| {
            let mut index = lock(&shared);
            // 500 live keys, each stored again and again.
            index.insert(
                &format!("k{}", i % 500),
                &meta("d", &format!("a.com/{i}"), &[]),
            );
            compact_if_grown(&shared, &mut index);
        };
        for i in 0..100_000 {
            change(i);
        }
        let compacting = || {
            lock(&shared)
                .journal
                .as_ref()
                .is_some_and(|j| j.compaction.is_some())
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while compacting() {
            assert!(
                std::time::Instant::now() < deadline,
                "the compaction never ended"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let bound = (COMPACT_RATIO * 500 + COMPACT_SLACK) as usize;
        let journal_lines = lines(&path);
        assert!(journal_lines <= bound, "{journal_lines} lines > {bound}");
        let expected: Vec<String> = lock(&shared).entries.keys().cloned().collect();
        assert_eq!(expected.len(), 500);

        // A clear cancels a compaction under way.
        for i in 0..100_000 {
            let mut index = lock(&shared);
            index.insert(
                &format!("k{}", i % 500),
                &meta("d", &format!("b.com/{i}"), &[]),
            );
            if index.begin_compaction().is_some() {
                break;
            }
        }
        assert!(compacting());
        assert_eq!(lock(&shared).clear(), Ok(500));
        assert!(!compacting());
        assert!(!path.with_extension("journal.new").exists());
        lock(&shared).insert("after", &meta("d", "a.com/after", &[]));
        drop(shared);
        assert_eq!(replayed(&path), ["after"]);
    }
}
