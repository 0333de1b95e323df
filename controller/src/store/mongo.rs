//! The MongoDB backend, on the official driver. Documents are stored as
//! BSON converted from the JSON model; `expires_at` becomes a BSON date so
//! that TTL indexes expire logs, heartbeats and finished jobs. Blobs are
//! split into 4 MiB chunk documents (one document is limited to 16 MiB).

use futures_util::TryStreamExt;
use mongodb::bson::{self, doc, Bson, Document};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Client, Database, IndexModel};
use serde_json::{Map, Value};

use super::{Backend, Collection, Filter, StoreError, EXPIRES_AT};

/// Chunk size of stored blobs.
const BLOB_CHUNK: usize = 4 << 20;

/// A MongoDB database (the URI's database, default `parapet`).
pub struct Mongo {
    db: Database,
}

fn backend_error(e: mongodb::error::Error) -> StoreError {
    if let mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) =
        e.kind.as_ref()
    {
        if w.code == 11000 {
            return StoreError::Conflict(w.message.clone());
        }
    }
    StoreError::Backend(e.to_string())
}

/// JSON → BSON, with `expires_at` as a date.
fn to_document(id: &str, value: Value) -> Result<Document, StoreError> {
    let bson = Bson::try_from(value).map_err(|e| StoreError::Backend(format!("to BSON: {e}")))?;
    let Bson::Document(mut doc) = bson else {
        return Err(StoreError::Backend(
            "a document must be a JSON object".into(),
        ));
    };
    doc.insert("_id", id);
    if let Some(millis) = doc
        .get(EXPIRES_AT)
        .and_then(Bson::as_i64)
        .or_else(|| doc.get(EXPIRES_AT).and_then(Bson::as_i32).map(i64::from))
    {
        doc.insert(EXPIRES_AT, bson::DateTime::from_millis(millis));
    }
    Ok(doc)
}

/// BSON → JSON, with dates back to milliseconds.
fn to_value(mut doc: Document) -> Value {
    if let Some(Bson::DateTime(at)) = doc.get(EXPIRES_AT) {
        let millis = at.timestamp_millis();
        doc.insert(EXPIRES_AT, millis);
    }
    Bson::Document(doc).into_relaxed_extjson()
}

fn filter_document(filter: Filter<'_>) -> Result<Document, StoreError> {
    let mut document = Document::new();
    for (field, value) in filter {
        let bson = Bson::try_from(value.clone())
            .map_err(|e| StoreError::Backend(format!("to BSON: {e}")))?;
        document.insert(*field, bson);
    }
    Ok(document)
}

impl Mongo {
    /// Connects (the driver reconnects by itself later) and creates the
    /// indexes.
    pub async fn connect(uri: &str) -> Result<Self, StoreError> {
        let client = Client::with_uri_str(uri).await.map_err(backend_error)?;
        let db = client
            .default_database()
            .unwrap_or_else(|| client.database("parapet"));
        let mongo = Mongo { db };
        mongo.create_indexes().await?;
        Ok(mongo)
    }

    fn collection(&self, collection: Collection) -> mongodb::Collection<Document> {
        self.db.collection(collection.name())
    }

    async fn create_indexes(&self) -> Result<(), StoreError> {
        let unique = |keys: Document| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().unique(true).build())
                .build()
        };
        let expiring = IndexModel::builder()
            .keys(doc! { EXPIRES_AT: 1 })
            .options(
                IndexOptions::builder()
                    .expire_after(std::time::Duration::ZERO)
                    .build(),
            )
            .build();
        let indexes = [
            (Collection::Tokens, unique(doc! { "id": 1 })),
            (
                Collection::Versions,
                unique(doc! { "distribution": 1, "version": 1 }),
            ),
            (Collection::Edges, unique(doc! { "name": 1 })),
            (
                Collection::Orders,
                IndexModel::builder()
                    .keys(doc! { "edge": 1, "job": 1 })
                    .build(),
            ),
            (Collection::Logs, expiring.clone()),
            (
                Collection::Logs,
                IndexModel::builder()
                    .keys(doc! { "distribution": 1, "timestamp_ms": -1 })
                    .build(),
            ),
            (Collection::Traffic, expiring.clone()),
            (
                Collection::Traffic,
                IndexModel::builder()
                    .keys(doc! { "distribution": 1, "minute_ms": -1 })
                    .build(),
            ),
            (Collection::PluginCosts, expiring.clone()),
            (
                Collection::PluginCosts,
                IndexModel::builder()
                    .keys(doc! { "customer": 1, "plugin": 1, "minute_ms": -1 })
                    .build(),
            ),
            (Collection::Heartbeats, expiring.clone()),
            (Collection::Jobs, expiring.clone()),
            (Collection::Orders, expiring),
        ];
        for (collection, index) in indexes {
            self.collection(collection)
                .create_index(index)
                .await
                .map_err(backend_error)?;
        }
        self.db
            .collection::<Document>("blobs")
            .create_index(unique(doc! { "key": 1, "n": 1 }))
            .await
            .map_err(backend_error)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Backend for Mongo {
    async fn insert(&self, collection: Collection, id: &str, doc: Value) -> Result<(), StoreError> {
        self.collection(collection)
            .insert_one(to_document(id, doc)?)
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn put(&self, collection: Collection, id: &str, doc: Value) -> Result<(), StoreError> {
        self.collection(collection)
            .replace_one(doc! { "_id": id }, to_document(id, doc)?)
            .upsert(true)
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn get(&self, collection: Collection, id: &str) -> Result<Option<Value>, StoreError> {
        let found = self
            .collection(collection)
            .find_one(doc! { "_id": id })
            .await
            .map_err(backend_error)?;
        Ok(found.map(to_value))
    }

    async fn find(
        &self,
        collection: Collection,
        filter: Filter<'_>,
    ) -> Result<Vec<Value>, StoreError> {
        let cursor = self
            .collection(collection)
            .find(filter_document(filter)?)
            .sort(doc! { "_id": 1 })
            .await
            .map_err(backend_error)?;
        let docs: Vec<Document> = cursor.try_collect().await.map_err(backend_error)?;
        Ok(docs.into_iter().map(to_value).collect())
    }

    async fn find_newest(
        &self,
        collection: Collection,
        filter: Filter<'_>,
        field: &str,
        limit: usize,
    ) -> Result<Vec<Value>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new()); // MongoDB reads a limit of 0 as none
        }
        let cursor = self
            .collection(collection)
            .find(filter_document(filter)?)
            .sort(doc! { field: -1, "_id": 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(backend_error)?;
        let docs: Vec<Document> = cursor.try_collect().await.map_err(backend_error)?;
        Ok(docs.into_iter().map(to_value).collect())
    }

    async fn update(
        &self,
        collection: Collection,
        id: &str,
        condition: Filter<'_>,
        fields: Map<String, Value>,
    ) -> Result<bool, StoreError> {
        let mut query = filter_document(condition)?;
        query.insert("_id", id);
        let set = to_document(id, Value::Object(fields))?;
        let mut set_fields = set;
        set_fields.remove("_id");
        let result = self
            .collection(collection)
            .update_one(query, doc! { "$set": set_fields })
            .await
            .map_err(backend_error)?;
        Ok(result.matched_count > 0)
    }

    async fn delete(&self, collection: Collection, id: &str) -> Result<bool, StoreError> {
        let result = self
            .collection(collection)
            .delete_one(doc! { "_id": id })
            .await
            .map_err(backend_error)?;
        Ok(result.deleted_count > 0)
    }

    async fn delete_expired(&self, collection: Collection, now_ms: i64) -> Result<u64, StoreError> {
        let result = self
            .collection(collection)
            .delete_many(doc! { EXPIRES_AT: { "$lte": bson::DateTime::from_millis(now_ms) } })
            .await
            .map_err(backend_error)?;
        Ok(result.deleted_count)
    }

    async fn increment(&self, counter: &str) -> Result<u64, StoreError> {
        let updated = self
            .db
            .collection::<Document>("counters")
            .find_one_and_update(doc! { "_id": counter }, doc! { "$inc": { "value": 1_i64 } })
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .map_err(backend_error)?;
        let value = updated.and_then(|d| d.get_i64("value").ok()).unwrap_or(0);
        Ok(u64::try_from(value).unwrap_or(0))
    }

    async fn counter(&self, counter: &str) -> Result<u64, StoreError> {
        let found = self
            .db
            .collection::<Document>("counters")
            .find_one(doc! { "_id": counter })
            .await
            .map_err(backend_error)?;
        let value = found.and_then(|d| d.get_i64("value").ok()).unwrap_or(0);
        Ok(u64::try_from(value).unwrap_or(0))
    }

    async fn put_blob(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        // Rewriting a complete blob would take it away from readers
        // meanwhile; only a missing or partly written one is (re)written.
        let stored = self
            .db
            .collection::<Document>("blobs")
            .count_documents(doc! { "key": key })
            .await
            .map_err(backend_error)?;
        if stored == data.len().div_ceil(BLOB_CHUNK).max(1) as u64 {
            return Ok(());
        }
        self.delete_blob(key).await?;
        let chunks: Vec<Document> = data
            .chunks(BLOB_CHUNK)
            .enumerate()
            .map(|(n, chunk)| {
                doc! {
                    "key": key,
                    "n": n as i64,
                    "data": Bson::Binary(bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: chunk.to_vec() }),
                }
            })
            .collect();
        let chunks = if chunks.is_empty() {
            vec![
                doc! { "key": key, "n": 0_i64, "data": Bson::Binary(bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: Vec::new() }) },
            ]
        } else {
            chunks
        };
        for chunk in chunks {
            self.db
                .collection::<Document>("blobs")
                .insert_one(chunk)
                .await
                .map_err(backend_error)?;
        }
        Ok(())
    }

    async fn get_blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let cursor = self
            .db
            .collection::<Document>("blobs")
            .find(doc! { "key": key })
            .sort(doc! { "n": 1 })
            .await
            .map_err(backend_error)?;
        let chunks: Vec<Document> = cursor.try_collect().await.map_err(backend_error)?;
        if chunks.is_empty() {
            return Ok(None);
        }
        let mut data = Vec::new();
        for chunk in chunks {
            match chunk.get("data") {
                Some(Bson::Binary(binary)) => data.extend_from_slice(&binary.bytes),
                _ => {
                    return Err(StoreError::Corrupt {
                        collection: "blobs",
                        id: key.to_string(),
                        reason: "a chunk has no binary data".into(),
                    })
                }
            }
        }
        Ok(Some(data))
    }

    async fn delete_blob(&self, key: &str) -> Result<(), StoreError> {
        self.db
            .collection::<Document>("blobs")
            .delete_many(doc! { "key": key })
            .await
            .map_err(backend_error)?;
        Ok(())
    }
}
