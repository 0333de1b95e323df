//! The embedded backend: one redb file, a table per collection (JSON
//! values by `_id`), a counters table and a blobs table. Filters scan the
//! collection, which suits the one-machine scale this backend is for.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use serde_json::{Map, Value};

use super::{matches, Backend, Collection, Filter, StoreError, EXPIRES_AT};

const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");

fn table(collection: Collection) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(collection.name())
}

/// The redb database `controller.redb` in the data directory.
pub struct Embedded {
    db: Arc<Database>,
}

fn backend_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn encode(id: &str, mut doc: Value) -> Result<Vec<u8>, StoreError> {
    if let Value::Object(map) = &mut doc {
        map.insert("_id".into(), Value::String(id.to_string()));
    }
    serde_json::to_vec(&doc).map_err(backend_error)
}

fn decode(collection: Collection, id: &str, bytes: &[u8]) -> Result<Value, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        collection: collection.name(),
        id: id.to_string(),
        reason: e.to_string(),
    })
}

impl Embedded {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join("controller.redb");
        let db = Database::create(&path)
            .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
        Ok(Embedded { db: Arc::new(db) })
    }

    /// Runs `work` on a blocking thread with the database.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(backend_error)?
    }
}

/// Reads every document of a collection (none when the table was never
/// written).
fn scan(db: &Database, collection: Collection) -> Result<Vec<Value>, StoreError> {
    let read = db.begin_read().map_err(backend_error)?;
    let table = match read.open_table(table(collection)) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(backend_error(e)),
    };
    let mut docs = Vec::new();
    for entry in table.iter().map_err(backend_error)? {
        let (id, bytes) = entry.map_err(backend_error)?;
        docs.push(decode(collection, id.value(), bytes.value())?);
    }
    Ok(docs)
}

#[async_trait::async_trait]
impl Backend for Embedded {
    async fn insert(&self, collection: Collection, id: &str, doc: Value) -> Result<(), StoreError> {
        let id = id.to_string();
        let bytes = encode(&id, doc)?;
        self.blocking(move |db| {
            let write = db.begin_write().map_err(backend_error)?;
            {
                let mut table = write.open_table(table(collection)).map_err(backend_error)?;
                if table.get(id.as_str()).map_err(backend_error)?.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "{} `{id}`",
                        collection.name()
                    )));
                }
                table
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(backend_error)?;
            }
            write.commit().map_err(backend_error)
        })
        .await
    }

    async fn put(&self, collection: Collection, id: &str, doc: Value) -> Result<(), StoreError> {
        let id = id.to_string();
        let bytes = encode(&id, doc)?;
        self.blocking(move |db| {
            let write = db.begin_write().map_err(backend_error)?;
            {
                let mut table = write.open_table(table(collection)).map_err(backend_error)?;
                table
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(backend_error)?;
            }
            write.commit().map_err(backend_error)
        })
        .await
    }

    async fn get(&self, collection: Collection, id: &str) -> Result<Option<Value>, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| {
            let read = db.begin_read().map_err(backend_error)?;
            let table = match read.open_table(table(collection)) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(backend_error(e)),
            };
            match table.get(id.as_str()).map_err(backend_error)? {
                Some(bytes) => Ok(Some(decode(collection, &id, bytes.value())?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn find(
        &self,
        collection: Collection,
        filter: Filter<'_>,
    ) -> Result<Vec<Value>, StoreError> {
        let filter: Vec<(String, Value)> = filter
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.blocking(move |db| {
            let filter: Vec<(&str, Value)> = filter
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            Ok(scan(db, collection)?
                .into_iter()
                .filter(|doc| matches(doc, &filter))
                .collect())
        })
        .await
    }

    async fn find_newest(
        &self,
        collection: Collection,
        filter: Filter<'_>,
        field: &str,
        limit: usize,
    ) -> Result<Vec<Value>, StoreError> {
        // A scan: the embedded store serves one machine's data.
        let mut docs = self.find(collection, filter).await?;
        docs.sort_by_key(|doc| std::cmp::Reverse(doc[field].as_i64()));
        docs.truncate(limit);
        Ok(docs)
    }

    async fn update(
        &self,
        collection: Collection,
        id: &str,
        condition: Filter<'_>,
        fields: Map<String, Value>,
    ) -> Result<bool, StoreError> {
        let id = id.to_string();
        let condition: Vec<(String, Value)> = condition
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.blocking(move |db| {
            let condition: Vec<(&str, Value)> = condition
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            let write = db.begin_write().map_err(backend_error)?;
            let updated = {
                let mut table = write.open_table(table(collection)).map_err(backend_error)?;
                let current = match table.get(id.as_str()).map_err(backend_error)? {
                    Some(bytes) => decode(collection, &id, bytes.value())?,
                    None => return Ok(false),
                };
                if !matches(&current, &condition) {
                    return Ok(false);
                }
                let mut doc = current;
                if let Value::Object(map) = &mut doc {
                    map.extend(fields);
                }
                table
                    .insert(id.as_str(), encode(&id, doc)?.as_slice())
                    .map_err(backend_error)?;
                true
            };
            write.commit().map_err(backend_error)?;
            Ok(updated)
        })
        .await
    }

    async fn delete(&self, collection: Collection, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| {
            let write = db.begin_write().map_err(backend_error)?;
            let removed = {
                let mut table = write.open_table(table(collection)).map_err(backend_error)?;
                let removed = table.remove(id.as_str()).map_err(backend_error)?.is_some();
                removed
            };
            write.commit().map_err(backend_error)?;
            Ok(removed)
        })
        .await
    }

    async fn delete_expired(&self, collection: Collection, now_ms: i64) -> Result<u64, StoreError> {
        self.blocking(move |db| {
            let write = db.begin_write().map_err(backend_error)?;
            let mut removed = 0;
            {
                let mut table = write.open_table(table(collection)).map_err(backend_error)?;
                table
                    .retain(|_, bytes| {
                        let expired = serde_json::from_slice::<Value>(bytes)
                            .ok()
                            .and_then(|doc| doc.get(EXPIRES_AT).and_then(Value::as_i64))
                            .is_some_and(|at| at <= now_ms);
                        removed += u64::from(expired);
                        !expired
                    })
                    .map_err(backend_error)?;
            }
            write.commit().map_err(backend_error)?;
            Ok(removed)
        })
        .await
    }

    async fn increment(&self, counter: &str) -> Result<u64, StoreError> {
        let counter = counter.to_string();
        self.blocking(move |db| {
            let write = db.begin_write().map_err(backend_error)?;
            let next = {
                let mut table = write.open_table(COUNTERS).map_err(backend_error)?;
                let current = table
                    .get(counter.as_str())
                    .map_err(backend_error)?
                    .map_or(0, |v| v.value());
                table
                    .insert(counter.as_str(), current + 1)
                    .map_err(backend_error)?;
                current + 1
            };
            write.commit().map_err(backend_error)?;
            Ok(next)
        })
        .await
    }

    async fn counter(&self, counter: &str) -> Result<u64, StoreError> {
        let counter = counter.to_string();
        self.blocking(move |db| {
            let read = db.begin_read().map_err(backend_error)?;
            let table = match read.open_table(COUNTERS) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(0),
                Err(e) => return Err(backend_error(e)),
            };
            Ok(table
                .get(counter.as_str())
                .map_err(backend_error)?
                .map_or(0, |v| v.value()))
        })
        .await
    }

    async fn put_blob(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        let key = key.to_string();
        let data = data.to_vec();
        self.blocking(move |db| {
            let write = db.begin_write().map_err(backend_error)?;
            {
                let mut table = write.open_table(BLOBS).map_err(backend_error)?;
                table
                    .insert(key.as_str(), data.as_slice())
                    .map_err(backend_error)?;
            }
            write.commit().map_err(backend_error)
        })
        .await
    }

    async fn get_blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_string();
        self.blocking(move |db| {
            let read = db.begin_read().map_err(backend_error)?;
            let table = match read.open_table(BLOBS) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(backend_error(e)),
            };
            Ok(table
                .get(key.as_str())
                .map_err(backend_error)?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn delete_blob(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_string();
        self.blocking(move |db| {
            let write = db.begin_write().map_err(backend_error)?;
            {
                let mut table = write.open_table(BLOBS).map_err(backend_error)?;
                table.remove(key.as_str()).map_err(backend_error)?;
            }
            write.commit().map_err(backend_error)
        })
        .await
    }
}
