//! What the cache holds, by URL, surrogate key and distribution, so purges
//! can find objects without scanning the store. With a disk tier, changes
//! are appended to a journal next to it and replayed at start, so objects
//! that survive a restart can still be purged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::object::PurgeMeta;

/// Which objects a purge applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// One URL: host and path (and `?query`), e.g. `www.example.com/a.png`.
    Url(String),
    /// Every URL starting with this host and path prefix.
    Prefix(String),
    /// Objects tagged with this `Surrogate-Key`.
    Tag(String),
    /// Everything of one distribution.
    Distribution(String),
}

/// One journal line.
#[derive(Serialize, Deserialize)]
enum Change {
    Put(String, PurgeMeta),
    Remove(String),
}

/// The index, and its journal when the cache has a disk tier.
#[derive(Default)]
pub struct Index {
    meta: HashMap<String, PurgeMeta>,
    by_url: BTreeMap<String, HashSet<String>>,
    by_tag: HashMap<String, HashSet<String>>,
    by_distribution: HashMap<String, HashSet<String>>,
    journal: Option<File>,
}

impl Index {
    /// Replays the journal at `path` (if any), then rewrites it compacted.
    pub fn open(path: &Path) -> Result<Self, String> {
        let mut index = Index::default();
        if let Ok(file) = File::open(path) {
            for line in BufReader::new(file).lines() {
                let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
                // A line cut short by a crash is skipped.
                match serde_json::from_str(&line) {
                    Ok(Change::Put(key, meta)) => index.insert(&key, &meta),
                    Ok(Change::Remove(key)) => index.remove(&key),
                    Err(_) => continue,
                }
            }
        }
        let compacted = path.with_extension("journal.new");
        let mut file =
            File::create(&compacted).map_err(|e| format!("{}: {e}", compacted.display()))?;
        for (key, meta) in &index.meta {
            write_change(&mut file, &Change::Put(key.clone(), meta.clone()))
                .map_err(|e| format!("{}: {e}", compacted.display()))?;
        }
        file.sync_all()
            .and_then(|()| std::fs::rename(&compacted, path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        index.journal = Some(
            OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?,
        );
        Ok(index)
    }

    /// Records that `key` holds an object described by `meta`.
    pub fn insert(&mut self, key: &str, meta: &PurgeMeta) {
        if self.meta.get(key) == Some(meta) {
            return;
        }
        self.remove(key);
        self.log(Change::Put(key.to_string(), meta.clone()));
        self.by_url
            .entry(meta.url.clone())
            .or_default()
            .insert(key.to_string());
        for tag in &meta.tags {
            self.by_tag
                .entry(tag.clone())
                .or_default()
                .insert(key.to_string());
        }
        self.by_distribution
            .entry(meta.distribution.clone())
            .or_default()
            .insert(key.to_string());
        self.meta.insert(key.to_string(), meta.clone());
    }

    /// Forgets every key (the journal too); returns how many there were.
    pub fn clear(&mut self) -> Result<usize, String> {
        if let Some(journal) = &self.journal {
            journal.set_len(0).map_err(|e| e.to_string())?;
        }
        let count = self.meta.len();
        self.meta.clear();
        self.by_url.clear();
        self.by_tag.clear();
        self.by_distribution.clear();
        Ok(count)
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &str) {
        let Some(meta) = self.meta.remove(key) else {
            return;
        };
        self.log(Change::Remove(key.to_string()));
        if drop_from(self.by_url.get_mut(&meta.url), key) {
            self.by_url.remove(&meta.url);
        }
        for tag in &meta.tags {
            if drop_from(self.by_tag.get_mut(tag), key) {
                self.by_tag.remove(tag);
            }
        }
        if drop_from(self.by_distribution.get_mut(&meta.distribution), key) {
            self.by_distribution.remove(&meta.distribution);
        }
    }

    /// The keys `selector` selects.
    pub fn select(&self, selector: &Selector) -> Vec<String> {
        let keys: Vec<&String> = match selector {
            Selector::Url(url) => self.by_url.get(url).into_iter().flatten().collect(),
            Selector::Prefix(prefix) => self
                .by_url
                .range(prefix.clone()..)
                .take_while(|(url, _)| url.starts_with(prefix.as_str()))
                .flat_map(|(_, keys)| keys)
                .collect(),
            Selector::Tag(tag) => self.by_tag.get(tag).into_iter().flatten().collect(),
            Selector::Distribution(id) => {
                self.by_distribution.get(id).into_iter().flatten().collect()
            }
        };
        keys.into_iter().cloned().collect()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    fn log(&mut self, change: Change) {
        if let Some(journal) = &mut self.journal {
            if let Err(e) = write_change(journal, &change) {
                tracing::warn!(error = %e, "cannot append to the cache index journal");
            }
        }
    }
}

fn write_change(file: &mut File, change: &Change) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(change).map_err(std::io::Error::other)?;
    line.push(b'\n');
    file.write_all(&line)
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

    fn meta(url: &str, tags: &[&str]) -> PurgeMeta {
        PurgeMeta {
            distribution: "d".into(),
            url: url.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn selectors_find_keys_and_the_journal_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.journal");
        let mut index = Index::open(&path).unwrap();
        index.insert("k1", &meta("a.com/img/1.png", &["img"]));
        index.insert("k2", &meta("a.com/img/2.png", &["img", "p2"]));
        index.insert("k3", &meta("a.com/index.html", &[]));
        index.remove("k3");
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        assert_eq!(
            sorted(index.select(&Selector::Prefix("a.com/img/".into()))),
            ["k1", "k2"]
        );
        assert_eq!(index.select(&Selector::Tag("p2".into())), ["k2"]);
        assert_eq!(
            index.select(&Selector::Url("a.com/img/1.png".into())),
            ["k1"]
        );
        assert!(index
            .select(&Selector::Url("a.com/index.html".into()))
            .is_empty());
        drop(index);
        let reopened = Index::open(&path).unwrap();
        assert_eq!(reopened.len(), 2);
        assert_eq!(
            sorted(reopened.select(&Selector::Distribution("d".into()))),
            ["k1", "k2"]
        );

        let mut cleared = reopened;
        assert_eq!(cleared.clear(), Ok(2));
        assert!(cleared.select(&Selector::Tag("img".into())).is_empty());
        cleared.insert("k4", &meta("a.com/4.png", &[]));
        drop(cleared);
        let reopened = Index::open(&path).unwrap();
        assert_eq!(reopened.len(), 1, "only what came after the clear");
    }
}
