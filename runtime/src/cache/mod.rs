//! The edge cache: a foyer hybrid cache (memory tier, then a disk tier that
//! survives restarts) of [`Entry`] values by cache key, an index of what is
//! stored for purges (per distribution, by URL, prefix and surrogate key;
//! its entries go with their objects), the purges in-flight fetches are
//! checked against, and the flights that collapse concurrent misses.

pub mod directives;
pub mod flights;
pub mod freshness;
mod index;
pub mod object;
pub mod parts;
pub mod purge;
mod races;
pub mod respond;

use std::sync::{Arc, Mutex};

use foyer::{
    BlockEngineConfig, DeviceBuilder, Event, EventListener, FsDeviceBuilder, HybridCache,
    HybridCacheBuilder, HybridCacheEntry, HybridCachePolicy, RecoverMode,
};
use http::HeaderMap;

use flights::Flights;
use index::Index;
use object::{variant_key, CachedObject, Entry, PurgeMeta};
use parapet_config::CacheConfig;
use parts::{Part, Parts};
pub use purge::{Purge, Target};
pub use races::FetchTicket;
use races::Races;

/// Errors opening or clearing the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache (with its disk tier in `dir`, if any) cannot be opened.
    #[error("cannot open the cache{}: {reason}", dir.as_ref().map(|d| format!(" in {d}")).unwrap_or_default())]
    Open { dir: Option<String>, reason: String },
    /// The cache cannot be emptied.
    #[error("cannot clear the cache: {0}")]
    Clear(String),
}

/// Room a block needs beyond its largest object (foyer's block header).
const BLOCK_OVERHEAD: u64 = 64 << 10;
/// Smallest disk block.
const MIN_BLOCK: u64 = 16 << 20;
/// Index entries a store checks against the store ([`Index::sweep`]), with
/// a disk tier: the index then holds about 4/3 of the objects the store
/// holds at most, and right after the disk tier evicted a block, that
/// block's objects too, until two passes (a quarter of the entries stored)
/// later.
const SWEEP_PER_STORE: usize = 8;

/// The cache of one edge.
pub struct Cache {
    store: HybridCache<String, Entry>,
    /// Shared with the thread compacting its journal.
    index: Arc<Mutex<Index>>,
    /// Without a disk tier: the keys of objects the memory tier evicted
    /// since the last store. With one, evicted objects may still be on
    /// disk, and the index is swept instead.
    evicted: Option<Arc<Evicted>>,
    flights: Arc<Flights>,
    max_object_bytes: u64,
    /// Purges in-flight fetches must not store past.
    races: Arc<Races>,
}

/// A stored object found for a request.
pub struct Hit {
    /// The key it is stored under (the variant's, for a `Vary` response).
    pub storage_key: String,
    entry: HybridCacheEntry<String, Entry>,
}

impl Hit {
    /// The object.
    pub fn object(&self) -> &CachedObject {
        match self.entry.value() {
            Entry::Object(object) => object,
            Entry::Variants(_) | Entry::Parts(_) => unreachable!("lookup returns objects only"),
        }
    }
}

/// The keys of objects foyer's memory tier evicted (its event listener).
#[derive(Default)]
struct Evicted(Mutex<Vec<String>>);

impl Evicted {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl EventListener for Evicted {
    type Key = String;
    type Value = Entry;

    /// Called by foyer outside its locks, also while the cache's index is
    /// locked (a store), so it only notes the key.
    fn on_leave(&self, reason: Event, key: &String, value: &Entry) {
        if reason == Event::Evict && !matches!(value, Entry::Variants(_)) {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(key.clone());
        }
    }
}

/// Counts for metrics.
#[derive(Debug, Clone, Copy)]
pub struct CacheStats {
    /// Bytes in the memory tier.
    pub memory_bytes: u64,
    /// Entries in the memory tier.
    pub memory_entries: u64,
    /// Bytes written to the disk tier in all.
    pub disk_written_bytes: u64,
    /// Objects the index knows of.
    pub objects: u64,
    /// Estimated memory the index takes, in bytes.
    pub index_bytes: u64,
}

impl Cache {
    /// Opens the cache: memory only, or memory and the disk tier in
    /// `config.disk_dir`, whose objects from earlier runs are recovered.
    pub async fn open(config: &CacheConfig) -> Result<Arc<Self>, CacheError> {
        let dir = config.disk_dir.as_deref();
        let error = |reason: String| CacheError::Open {
            dir: dir.map(|d| d.display().to_string()),
            reason,
        };
        let evicted = dir.is_none().then(Arc::<Evicted>::default);
        let mut builder = HybridCacheBuilder::new()
            .with_name("parapet")
            .with_policy(HybridCachePolicy::WriteOnInsertion);
        if let Some(evicted) = &evicted {
            builder = builder.with_event_listener(evicted.clone());
        }
        let builder = builder
            .memory(config.memory_bytes as usize)
            .with_weighter(|key: &String, entry: &Entry| key.len() + entry_weight(entry))
            .storage();
        let store = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
                let block = block_size(config.max_object_bytes);
                if config.disk_bytes < 2 * block {
                    return Err(error(format!(
                        "disk_bytes ({}) must hold at least two blocks of {block} bytes \
                         (the block size follows max_object_bytes)",
                        config.disk_bytes
                    )));
                }
                check_layout(dir, block, config.disk_bytes).map_err(error)?;
                let device = FsDeviceBuilder::new(dir)
                    .with_capacity(config.disk_bytes as usize)
                    .build()
                    .map_err(|e| error(e.to_string()))?;
                builder
                    .with_engine_config(
                        BlockEngineConfig::new(device)
                            .with_block_size(block as usize)
                            // Writes beyond the buffers are dropped silently:
                            // room for two largest objects in flight, and a
                            // queue of twice that.
                            .with_buffer_pool_size(2 * block as usize)
                            .with_submit_queue_size_threshold(4 * block as usize)
                            .with_tombstone_log(true),
                    )
                    .with_recover_mode(RecoverMode::Quiet)
                    .build()
                    .await
            }
            None => builder.build().await,
        }
        .map_err(|e| error(e.to_string()))?;
        let index = match dir {
            Some(dir) => {
                Index::open(&dir.join("index.journal"), |key| store.contains(key)).map_err(error)?
            }
            None => Index::default(),
        };
        Ok(Arc::new(Cache {
            store,
            index: Arc::new(Mutex::new(index)),
            evicted,
            flights: Flights::new(),
            max_object_bytes: config.max_object_bytes,
            races: Arc::default(),
        }))
    }

    /// Largest body stored.
    pub fn max_object_bytes(&self) -> u64 {
        self.max_object_bytes
    }

    /// The flights of concurrent misses.
    pub fn flights(&self) -> &Arc<Flights> {
        &self.flights
    }

    /// The object stored for `key` that matches `request`'s `Vary` fields.
    pub async fn lookup(&self, key: &str, request: &HeaderMap) -> Option<Hit> {
        let entry = self.get(key).await?;
        let storage_key = match entry.value() {
            Entry::Object(_) => {
                return Some(Hit {
                    storage_key: key.to_string(),
                    entry,
                })
            }
            Entry::Variants(vary) => variant_key(key, vary, request),
            Entry::Parts(_) => return None,
        };
        let entry = self.get(&storage_key).await?;
        matches!(entry.value(), Entry::Object(_)).then_some(Hit { storage_key, entry })
    }

    async fn get(&self, key: &str) -> Option<HybridCacheEntry<String, Entry>> {
        match self.store.get(&key.to_string()).await {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(error = %e, "cache read failed; treated as a miss");
                None
            }
        }
    }

    /// A ticket for a fetch that may store: taken before the lookup, so a
    /// purge that runs from then on and selects what the fetch brings
    /// keeps it from being stored.
    pub fn begin_fetch(&self) -> FetchTicket {
        self.races.begin()
    }

    /// Stores `object` for `key`; `vary` is the response's `Vary` fields
    /// (empty when it has none) and `request` the headers it was fetched
    /// for. Nothing is stored if a purge since `ticket` selects the object:
    /// it might be what the purge meant to remove.
    pub fn store(
        &self,
        key: &str,
        vary: &[String],
        request: &HeaderMap,
        object: CachedObject,
        ticket: &FetchTicket,
    ) {
        let Some(_permit) = self.races.unless_purged(ticket, &object.meta) else {
            return;
        };
        let storage_key = if vary.is_empty() {
            key.to_string()
        } else {
            self.store
                .insert(key.to_string(), Entry::Variants(vary.to_vec()));
            variant_key(key, vary, request)
        };
        self.put(&storage_key, object);
    }

    /// The parts of `key`'s response stored so far (see [`parts`]).
    pub async fn lookup_parts(&self, key: &str) -> Option<Parts> {
        match self.get(&parts_key(key)).await?.value() {
            Entry::Parts(parts) => Some((**parts).clone()),
            _ => None,
        }
    }

    /// Adds `part` to the parts of `key`'s response, unless a purge since
    /// `ticket` selects it. Parts that now cover the response become the
    /// whole object under `key`. Two parts of one key stored at the same
    /// moment may keep only one: the other is fetched again when asked for.
    pub async fn store_part(&self, key: &str, part: Part, ticket: &FetchTicket) {
        let parts_key = parts_key(key);
        let parts = Parts::combine(self.lookup_parts(key).await, part);
        let Some(_permit) = self.races.unless_purged(ticket, &parts.object.meta) else {
            return;
        };
        match parts.whole() {
            Some(object) => {
                self.remove(&parts_key);
                self.put(key, object);
            }
            None => {
                let meta = parts.object.meta.clone();
                self.put_entry(&parts_key, &meta, Entry::Parts(Box::new(parts)));
            }
        }
    }

    /// Replaces the object under `storage_key` (a refreshed copy), unless a
    /// purge since `ticket` selects it.
    pub fn replace(&self, storage_key: &str, object: CachedObject, ticket: &FetchTicket) {
        if let Some(_permit) = self.races.unless_purged(ticket, &object.meta) {
            self.put(storage_key, object);
        }
    }

    /// Removes the object under `storage_key`.
    pub fn remove(&self, storage_key: &str) {
        self.store.remove(storage_key);
        self.forget(storage_key);
    }

    /// Stores `object` under `storage_key` and indexes it. Both happen
    /// under the index's lock, as does the check of whether an object
    /// left the store, so an entry is never dropped for an object being
    /// stored again. Then entries of objects gone are dropped: those the
    /// memory tier evicted (no disk tier), or those a few checks of the
    /// disk tier found gone.
    fn put(&self, storage_key: &str, object: CachedObject) {
        let meta = object.meta.clone();
        self.put_entry(storage_key, &meta, Entry::Object(Box::new(object)));
    }

    /// Stores `entry` under `storage_key`, indexed by `meta`; see [`Self::put`].
    fn put_entry(&self, storage_key: &str, meta: &PurgeMeta, entry: Entry) {
        let mut index = self.lock_index();
        index.insert(storage_key, meta);
        self.store.insert(storage_key.to_string(), entry);
        let present = |key: &str| self.store.contains(key);
        match &self.evicted {
            Some(evicted) => {
                let keys = evicted.take();
                if !keys.is_empty() {
                    index.forget_unless(keys, present);
                }
            }
            None => {
                index.sweep(SWEEP_PER_STORE, present);
            }
        }
        index::compact_if_grown(&self.index, &mut index);
    }

    /// Drops the index entry of `key`.
    fn forget(&self, key: &str) {
        let mut index = self.lock_index();
        index.remove(key);
        index::compact_if_grown(&self.index, &mut index);
    }

    /// Purges what `purge` selects: removed (`soft == false`) or marked
    /// stale. Returns the number of objects affected.
    pub async fn purge(&self, purge: &Purge, soft: bool) -> usize {
        self.races.record(purge);
        let keys = self.lock_index().select(purge);
        let mut affected = 0;
        for key in keys {
            let Some(entry) = self.get(&key).await else {
                self.forget(&key);
                continue;
            };
            let object = match entry.value() {
                Entry::Object(object) => object,
                // Parts are not revalidated: any purge removes them.
                Entry::Parts(_) => {
                    affected += 1;
                    self.remove(&key);
                    continue;
                }
                Entry::Variants(_) => continue,
            };
            affected += 1;
            if soft {
                let mut stale = (**object).clone();
                stale.invalidated = true;
                self.put(&key, stale);
            } else {
                self.store.remove(&key);
                self.forget(&key);
            }
        }
        affected
    }

    /// Empties the cache, both tiers and the index; returns how many
    /// objects the index held.
    pub async fn clear(&self) -> Result<usize, CacheError> {
        self.races.record(&Purge::everything());
        let count = self.lock_index().clear().map_err(CacheError::Clear)?;
        self.store
            .clear()
            .await
            .map_err(|e| CacheError::Clear(e.to_string()))?;
        Ok(count)
    }

    /// Sizes for metrics.
    pub fn stats(&self) -> CacheStats {
        let memory = self.store.memory();
        let (objects, index_bytes) = {
            let index = self.lock_index();
            (index.len() as u64, index.estimated_bytes() as u64)
        };
        CacheStats {
            memory_bytes: memory.usage() as u64,
            memory_entries: memory.entries() as u64,
            disk_written_bytes: self.store.statistics().disk_write_bytes() as u64,
            objects,
            index_bytes,
        }
    }

    fn lock_index(&self) -> std::sync::MutexGuard<'_, Index> {
        index::lock(&self.index)
    }

    /// Closes the cache, waiting for pending disk writes.
    pub async fn close(&self) {
        if let Err(e) = self.store.close().await {
            tracing::warn!(error = %e, "closing the cache");
        }
    }
}

/// Makes sure the disk tier in `dir` was written with this block size and
/// capacity: foyer cannot reopen a directory with other settings, so one
/// with another layout is emptied (its objects are lost, with a warning).
fn check_layout(dir: &std::path::Path, block: u64, capacity: u64) -> Result<(), String> {
    let path = dir.join("layout");
    let layout = format!("parapet-cache v1 block={block} capacity={capacity}\n");
    match std::fs::read_to_string(&path) {
        Ok(found) if found == layout => return Ok(()),
        Ok(found) => {
            tracing::warn!(
                dir = %dir.display(),
                was = found.trim(),
                now = layout.trim(),
                "the cache layout changed (max_object_bytes or disk_bytes); emptying the disk tier"
            );
            for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_file()) {
                    std::fs::remove_file(entry.path()).map_err(|e| e.to_string())?;
                }
            }
        }
        Err(_) => {}
    }
    std::fs::write(&path, layout).map_err(|e| format!("{}: {e}", path.display()))
}

/// The disk block size for objects up to `max_object_bytes`.
fn block_size(max_object_bytes: u64) -> u64 {
    let needed = max_object_bytes + BLOCK_OVERHEAD;
    needed.div_ceil(1 << 20).max(MIN_BLOCK >> 20) << 20
}

/// The key the parts of `key`'s response are stored under.
fn parts_key(key: &str) -> String {
    format!("{key}\u{3}parts")
}

fn object_weight(object: &CachedObject) -> usize {
    std::mem::size_of::<CachedObject>()
        + object.body.len()
        + object
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum::<usize>()
        + 512
}

fn entry_weight(entry: &Entry) -> usize {
    match entry {
        Entry::Object(object) => object_weight(object),
        Entry::Variants(names) => names.iter().map(|n| n.len() + 24).sum::<usize>() + 32,
        Entry::Parts(parts) => object_weight(&parts.object) + parts.stored_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_cache_semantics::CachePolicy;
    use index::{COMPACT_RATIO, COMPACT_SLACK};

    fn object(url: &str) -> CachedObject {
        object_with_body(url, bytes::Bytes::from_static(b"body"))
    }

    fn object_with_body(url: &str, body: bytes::Bytes) -> CachedObject {
        let request = http::Request::get(format!("http://{url}"))
            .body(())
            .expect("request");
        let response = http::Response::builder()
            .header("cache-control", "max-age=600")
            .body(())
            .expect("response");
        CachedObject {
            status: http::StatusCode::OK,
            headers: HeaderMap::new(),
            body,
            policy: CachePolicy::new(&request, &response),
            stored_at_ms: 0,
            ttl_ms: 600_000,
            stale_while_revalidate_ms: 0,
            stale_if_error_ms: 0,
            invalidated: false,
            meta: PurgeMeta {
                distribution: "d".into(),
                url: url.into(),
                tags: Vec::new(),
            },
        }
    }

    /// A cleared cache holds nothing in either tier, and nothing comes
    /// back from the disk when it is opened again.
    #[tokio::test]
    async fn clear_empties_both_tiers_for_good() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = CacheConfig {
            disk_dir: Some(dir.path().to_path_buf()),
            disk_bytes: 64 << 20,
            max_object_bytes: 1 << 20,
            ..CacheConfig::default()
        };
        let cache = Cache::open(&config).await.expect("open");
        let none = HeaderMap::new();
        for url in ["a.com/1", "a.com/2"] {
            cache.store(url, &[], &none, object(url), &cache.begin_fetch());
        }
        assert!(cache.lookup("a.com/1", &none).await.is_some());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await; // the disk writes land
        assert_eq!(cache.clear().await.expect("clear"), 2);
        assert!(cache.lookup("a.com/1", &none).await.is_none());
        assert_eq!(cache.stats().objects, 0);
        cache.close().await;
        drop(cache);

        let reopened = Cache::open(&config).await.expect("reopen");
        assert!(reopened.lookup("a.com/2", &none).await.is_none());
        assert_eq!(reopened.stats().objects, 0);
    }

    /// Distinct URLs sent through the small caches below.
    const URLS: usize = 200_000;

    fn url(i: usize) -> String {
        format!("a.com/objects/{i}")
    }

    /// What the index holds against what the store holds: every URL
    /// whose object the store holds is in the index; returns how many.
    fn check_consistent(cache: &Cache) -> usize {
        let index = cache.lock_index();
        let mut live = 0;
        for i in 0..URLS {
            let url = url(i);
            if cache.store.contains(&url) {
                live += 1;
                assert_eq!(
                    index.select(&Purge::of("d", Target::Url(url.clone()))),
                    [url],
                    "an object the store holds is not in the index"
                );
            }
        }
        live
    }

    /// Purges by URL the last `count` URLs the store still holds; each
    /// purge finds its object.
    async fn purge_the_last(cache: &Cache, count: usize) {
        // The disk tier makes room in the background (after a start too):
        // what it evicts meanwhile is no longer there to purge.
        cache.store.storage().wait().await;
        let none = HeaderMap::new();
        let held: Vec<String> = (0..URLS)
            .rev()
            .map(url)
            .filter(|url| cache.store.contains(url))
            .take(count)
            .collect();
        assert_eq!(held.len(), count);
        for url in held {
            let purge = Purge::of("d", Target::Url(url.clone()));
            assert_eq!(cache.purge(&purge, false).await, 1, "{url}");
            assert!(cache.lookup(&url, &none).await.is_none(), "{url}");
        }
    }

    /// 200 000 distinct URLs through a 4 MiB memory-only cache: the index
    /// drops what the memory tier evicts, so it holds exactly what the
    /// store holds, and purges find those objects.
    #[tokio::test]
    async fn the_index_follows_memory_evictions() {
        let config = CacheConfig {
            memory_bytes: 4 << 20,
            max_object_bytes: 1 << 20,
            ..CacheConfig::default()
        };
        let cache = Cache::open(&config).await.expect("open");
        let none = HeaderMap::new();
        let body = bytes::Bytes::from(vec![b'x'; 1024]);
        for i in 0..URLS {
            let url = url(i);
            let object = object_with_body(&url, body.clone());
            cache.store(&url, &[], &none, object, &cache.begin_fetch());
        }
        let stats = cache.stats();
        let live = check_consistent(&cache);
        eprintln!(
            "memory only, after {URLS} URLs: {} index entries ({} estimated bytes), {} objects in memory",
            stats.objects, stats.index_bytes, stats.memory_entries
        );
        assert_eq!(stats.objects, stats.memory_entries);
        assert_eq!(stats.objects, live as u64);
        let weight =
            url(0).len() + entry_weight(&Entry::Object(Box::new(object_with_body(&url(0), body))));
        let capacity = config.memory_bytes / weight as u64;
        assert!(stats.objects <= capacity, "{stats:?}, {capacity}");
        // Under 600 bytes an entry for these URLs.
        assert!(stats.index_bytes <= capacity * 600, "{stats:?}");
        purge_the_last(&cache, 50).await;
        assert_eq!(cache.stats().objects, stats.objects - 50);
        let evicted = Purge::of("d", Target::Url(url(0)));
        assert_eq!(cache.purge(&evicted, false).await, 0);
    }

    /// 200 000 distinct URLs through a 1 MiB memory tier and a 64 MiB disk
    /// tier (four blocks): the sweep keeps the index within what the cache
    /// can hold, the journal compacts as it goes, and purges find what
    /// remains, also after a restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_index_and_journal_stay_bounded_with_a_disk_tier() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = CacheConfig {
            memory_bytes: 1 << 20,
            disk_dir: Some(dir.path().to_path_buf()),
            disk_bytes: 64 << 20,
            max_object_bytes: 1 << 20,
            ..CacheConfig::default()
        };
        let journal = dir.path().join("index.journal");
        let cache = Cache::open(&config).await.expect("open");
        let none = HeaderMap::new();
        let body = bytes::Bytes::from(vec![b'x'; 1024]);
        let (mut most_entries, mut most_journal_bytes) = (0, 0);
        for i in 0..URLS {
            let url = url(i);
            let object = object_with_body(&url, body.clone());
            cache.store(&url, &[], &none, object, &cache.begin_fetch());
            if i % 1000 == 999 {
                // At most a few MiB in flight, as a disk keeps up with.
                cache.store.storage().wait().await;
                most_entries = most_entries.max(cache.stats().objects);
                let bytes = std::fs::metadata(&journal).expect("journal").len();
                most_journal_bytes = most_journal_bytes.max(bytes);
            }
        }
        cache.store.storage().wait().await;
        let compacting = || {
            let index = cache.lock_index();
            index.compacting()
        };
        while compacting() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let stats = cache.stats();
        let live = check_consistent(&cache);
        let journal_bytes = std::fs::metadata(&journal).expect("journal").len();
        let journal_lines = std::fs::read(&journal)
            .expect("journal")
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count() as u64;
        eprintln!(
            "memory + disk, after {URLS} URLs: {} index entries ({} estimated bytes) for {live} objects held; \
             journal {journal_lines} lines, {journal_bytes} bytes; at most {most_entries} entries and \
             {most_journal_bytes} journal bytes on the way (sampled every 1000 URLs)",
            stats.objects, stats.index_bytes
        );
        assert!(live > 2_000, "the disk tier holds objects: {live}");
        // What the tiers can hold: the memory tier by weight, the disk
        // tier a 4 KiB page per object at least. Past that, the objects of
        // one disk block, evicted at once, until the sweep meets them.
        let weight =
            url(0).len() + entry_weight(&Entry::Object(Box::new(object_with_body(&url(0), body))));
        let capacity = (config.memory_bytes / weight as u64) + config.disk_bytes / 4096;
        let bound = capacity + block_size(config.max_object_bytes) / 4096;
        assert!(most_entries <= bound, "{most_entries} entries > {bound}");
        assert!(stats.index_bytes <= bound * 600, "{stats:?}");
        assert!(
            journal_lines <= COMPACT_RATIO * stats.objects + COMPACT_SLACK,
            "{journal_lines} lines"
        );
        // Lines of under 100 bytes.
        let journal_bound = (COMPACT_RATIO * bound + COMPACT_SLACK) * 100;
        assert!(most_journal_bytes <= journal_bound, "{most_journal_bytes}");
        purge_the_last(&cache, 50).await;
        cache.close().await;
        drop(cache);

        let entries_before = stats.objects;
        let reopened = Cache::open(&config).await.expect("reopen");
        reopened.store.storage().wait().await;
        let after = check_consistent(&reopened);
        let stats = reopened.stats();
        assert!(
            after as u64 <= stats.objects && stats.objects <= entries_before,
            "reopened: {} entries for {after} objects",
            stats.objects
        );
        purge_the_last(&reopened, 50).await;
    }
}
