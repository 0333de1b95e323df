//! The read-only key-value store a customer's plugins see.

use std::collections::HashMap;
use std::path::Path;

/// Errors loading a key-value file.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The file could not be read.
    #[error("reading key-value file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not a JSON object of strings.
    #[error("key-value file {path} must be a JSON object of string values: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

/// A customer's key-value data, read-only for plugins.
#[derive(Debug, Default, Clone)]
pub struct KvStore {
    entries: HashMap<String, Vec<u8>>,
}

impl KvStore {
    /// A store holding `entries`.
    pub fn from_entries<K: Into<String>, V: Into<Vec<u8>>>(
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        KvStore {
            entries: entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Loads a JSON object of string values, e.g. `{"token:abc": "alice"}`.
    pub fn from_json_file(path: &Path) -> Result<Self, KvError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KvError::Read {
            path: shown.clone(),
            source,
        })?;
        let map: HashMap<String, String> =
            serde_json::from_str(&text).map_err(|source| KvError::Parse {
                path: shown,
                source,
            })?;
        Ok(Self::from_entries(map))
    }

    /// A content hash of the entries, in key order: a launch image made
    /// with this store depends on it.
    pub(crate) fn digest(&self) -> String {
        let mut entries: Vec<_> = self.entries.iter().collect();
        entries.sort();
        let mut bytes = Vec::new();
        for (key, value) in entries {
            for part in [key.as_bytes(), value.as_slice()] {
                bytes.extend((part.len() as u64).to_le_bytes());
                bytes.extend(part);
            }
        }
        crate::load::content_hash(&bytes)
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries.get(key).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_json_objects_and_refuses_other_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("kv.json");
        std::fs::write(&good, r#"{"a": "1"}"#).unwrap();
        let kv = KvStore::from_json_file(&good).unwrap();
        assert_eq!(kv.get("a"), Some(&b"1"[..]));
        assert_eq!(kv.get("b"), None);

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"a": 1}"#).unwrap();
        let err = KvStore::from_json_file(&bad).unwrap_err().to_string();
        assert!(
            err.contains("must be a JSON object of string values"),
            "{err}"
        );
        assert!(KvStore::from_json_file(&dir.path().join("none.json")).is_err());
    }
}
