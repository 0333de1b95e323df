//! What the cache holds, per distribution by URL and surrogate key, so
//! purges find their objects without scanning the store, and a purge of one
//! distribution never looks at another's. With a disk tier, changes are
//! appended to a journal next to it and replayed at start, so objects that
//! survive a restart can still be purged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::object::PurgeMeta;
use super::purge::{Purge, Target};

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
    distributions: HashMap<String, DistributionIndex>,
    journal: Option<File>,
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
        self.meta.insert(key.to_string(), meta.clone());
    }

    /// Forgets every key (the journal too); returns how many there were.
    pub fn clear(&mut self) -> Result<usize, String> {
        if let Some(journal) = &self.journal {
            journal.set_len(0).map_err(|e| e.to_string())?;
        }
        let count = self.meta.len();
        self.meta.clear();
        self.distributions.clear();
        Ok(count)
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &str) {
        let Some(meta) = self.meta.remove(key) else {
            return;
        };
        self.log(Change::Remove(key.to_string()));
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
        let mut index = Index::open(&path).unwrap();
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
        let reopened = Index::open(&path).unwrap();
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
        let reopened = Index::open(&path).unwrap();
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
}
