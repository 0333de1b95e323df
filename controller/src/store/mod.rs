//! Storage: one interface, two backends. MongoDB for production (replica
//! sets, several controller replicas) and an embedded single-file store
//! (redb) for one machine and `make demo`.
//!
//! The interface is a small document store: collections of JSON documents
//! keyed by `_id`, equality filters on top-level fields, conditional
//! updates, counters and blobs. The typed model (`crate::model`) is written
//! once on top of it, so both backends share every rule.

mod embedded;
mod mongo;

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

pub use embedded::Embedded;
pub use mongo::Mongo;

/// A collection of documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collection {
    /// Customers.
    Customers,
    /// API tokens (hashed).
    Tokens,
    /// Distributions: the live version of each.
    Distributions,
    /// Distribution config versions.
    Versions,
    /// Plugin metadata per customer.
    Plugins,
    /// KV entries for plugins.
    Kv,
    /// Registered edges and their working info.
    Edges,
    /// Blue/green deployments.
    Deployments,
    /// Purge, prewarm and compaction jobs.
    Jobs,
    /// A job's part for one edge, with that edge's status; kept until it
    /// expires after the acknowledgement.
    Orders,
    /// Shipped access log lines.
    Logs,
    /// Heartbeat history (expires).
    Heartbeats,
    /// How each distribution applied on each edge, a document per edge.
    Statuses,
    /// Domain claims, a document per parent name (see `crate::claims`).
    Claims,
    /// Leases among controllers sharing the store (see `crate::lease`).
    Leases,
    /// Customers' TLS certificates, a document per distribution (see
    /// `crate::certificates`).
    Certificates,
    /// ACME accounts, a document per ACME directory.
    AcmeAccounts,
    /// Traffic per distribution, edge and minute (see `crate::traffic`).
    Traffic,
    /// Cost per customer's plugin, edge and minute (see
    /// `crate::plugin_costs`).
    PluginCosts,
}

impl Collection {
    /// Every collection.
    pub const ALL: [Collection; 19] = [
        Collection::Customers,
        Collection::Tokens,
        Collection::Distributions,
        Collection::Versions,
        Collection::Plugins,
        Collection::Kv,
        Collection::Edges,
        Collection::Deployments,
        Collection::Jobs,
        Collection::Orders,
        Collection::Logs,
        Collection::Heartbeats,
        Collection::Statuses,
        Collection::Claims,
        Collection::Leases,
        Collection::Certificates,
        Collection::AcmeAccounts,
        Collection::Traffic,
        Collection::PluginCosts,
    ];

    /// The collection's (or table's) name.
    pub fn name(self) -> &'static str {
        match self {
            Collection::Customers => "customers",
            Collection::Tokens => "tokens",
            Collection::Distributions => "distributions",
            Collection::Versions => "versions",
            Collection::Plugins => "plugins",
            Collection::Kv => "kv",
            Collection::Edges => "edges",
            Collection::Deployments => "deployments",
            Collection::Jobs => "jobs",
            Collection::Orders => "orders",
            Collection::Logs => "logs",
            Collection::Heartbeats => "heartbeats",
            Collection::Statuses => "statuses",
            Collection::Claims => "claims",
            Collection::Leases => "leases",
            Collection::Certificates => "certificates",
            Collection::AcmeAccounts => "acme_accounts",
            Collection::Traffic => "traffic",
            Collection::PluginCosts => "plugin_costs",
        }
    }
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A document with that `_id` (or unique field) exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// The backend failed (connection lost, disk full, ...).
    #[error("storage: {0}")]
    Backend(String),
    /// A stored document does not have the expected shape.
    #[error("stored {collection} document {id}: {reason}")]
    Corrupt {
        /// Collection name.
        collection: &'static str,
        /// Document id.
        id: String,
        /// What does not fit.
        reason: String,
    },
}

/// Equality conditions on top-level fields, all of which must hold.
pub type Filter<'a> = &'a [(&'a str, Value)];

/// The field that makes a document expire (milliseconds since the epoch):
/// MongoDB deletes it with a TTL index, the embedded store in
/// [`Backend::delete_expired`].
pub const EXPIRES_AT: &str = "expires_at";

/// The primitive operations both backends provide.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Adds a document; `Conflict` when `_id` exists.
    async fn insert(&self, collection: Collection, id: &str, doc: Value) -> Result<(), StoreError>;
    /// Adds or replaces a document.
    async fn put(&self, collection: Collection, id: &str, doc: Value) -> Result<(), StoreError>;
    /// The document with `_id`.
    async fn get(&self, collection: Collection, id: &str) -> Result<Option<Value>, StoreError>;
    /// Documents matching every condition, in `_id` order.
    async fn find(
        &self,
        collection: Collection,
        filter: Filter<'_>,
    ) -> Result<Vec<Value>, StoreError>;
    /// At most `limit` documents matching `filter`, the highest integer
    /// `field` first (then in `_id` order).
    async fn find_newest(
        &self,
        collection: Collection,
        filter: Filter<'_>,
        field: &str,
        limit: usize,
    ) -> Result<Vec<Value>, StoreError>;
    /// Sets `fields` on the document when it matches `condition`; false
    /// when it does not exist or does not match.
    async fn update(
        &self,
        collection: Collection,
        id: &str,
        condition: Filter<'_>,
        fields: Map<String, Value>,
    ) -> Result<bool, StoreError>;
    /// Removes a document; false when there was none.
    async fn delete(&self, collection: Collection, id: &str) -> Result<bool, StoreError>;
    /// Removes documents whose `expires_at` is at or before `now_ms`.
    async fn delete_expired(&self, collection: Collection, now_ms: i64) -> Result<u64, StoreError>;
    /// Adds one to a named counter and returns the new value.
    async fn increment(&self, counter: &str) -> Result<u64, StoreError>;
    /// The counter's value (0 when never incremented).
    async fn counter(&self, counter: &str) -> Result<u64, StoreError>;
    /// Stores a blob under `key` (split into chunks as the backend needs).
    /// Keys name their content (a sha256), so a complete blob already
    /// stored under `key` may be kept as it is.
    async fn put_blob(&self, key: &str, data: &[u8]) -> Result<(), StoreError>;
    /// The blob under `key`.
    async fn get_blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Removes the blob under `key`.
    async fn delete_blob(&self, key: &str) -> Result<(), StoreError>;
}

/// The storage the controller uses: a backend, typed access to it, and
/// in-process signals that wake watchers when something they follow
/// changes (watchers also poll, for changes made by other replicas).
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    signals: Arc<Signals>,
}

/// What watchers wait on.
struct Signals {
    config: tokio::sync::broadcast::Sender<Arc<[String]>>,
    orders: tokio::sync::watch::Sender<u64>,
}

/// Configuration changes a slow listener may fall behind by before it has
/// to read everything again.
const CONFIG_CHANGES_KEPT: usize = 4096;

impl Signals {
    fn new() -> Arc<Self> {
        Arc::new(Signals {
            config: tokio::sync::broadcast::channel(CONFIG_CHANGES_KEPT).0,
            orders: tokio::sync::watch::channel(0).0,
        })
    }
}

impl Store {
    /// The embedded store in `dir` (created when missing).
    pub fn embedded(dir: &Path) -> Result<Self, StoreError> {
        Ok(Store {
            backend: Arc::new(Embedded::open(dir)?),
            signals: Signals::new(),
        })
    }

    /// MongoDB at `uri`; creates the indexes.
    pub async fn mongo(uri: &str) -> Result<Self, StoreError> {
        Ok(Store {
            backend: Arc::new(Mongo::connect(uri).await?),
            signals: Signals::new(),
        })
    }

    /// Tells this process's configuration watchers that `distributions`
    /// changed.
    pub fn signal_config(&self, distributions: &[String]) {
        // Nobody listening is fine: the catalog reads everything at start.
        let _ = self.signals.config.send(distributions.into());
    }

    /// The distributions changed in this process, as
    /// [`Store::signal_config`] announces them.
    pub fn config_changes(&self) -> tokio::sync::broadcast::Receiver<Arc<[String]>> {
        self.signals.config.subscribe()
    }

    /// Wakes order watchers.
    pub fn signal_orders(&self) {
        self.signals.orders.send_modify(|n| *n += 1);
    }

    /// A receiver woken by [`Store::signal_orders`].
    pub fn order_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.signals.orders.subscribe()
    }

    /// The backend, for the primitive operations.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// Adds a typed document; `Conflict` when its id exists.
    pub async fn insert<T: Serialize>(
        &self,
        collection: Collection,
        id: &str,
        doc: &T,
    ) -> Result<(), StoreError> {
        self.backend
            .insert(collection, id, to_value(collection, id, doc)?)
            .await
    }

    /// Adds or replaces a typed document.
    pub async fn put<T: Serialize>(
        &self,
        collection: Collection,
        id: &str,
        doc: &T,
    ) -> Result<(), StoreError> {
        self.backend
            .put(collection, id, to_value(collection, id, doc)?)
            .await
    }

    /// A typed document.
    pub async fn get<T: DeserializeOwned>(
        &self,
        collection: Collection,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.backend.get(collection, id).await? {
            Some(value) => Ok(Some(from_value(collection, value)?)),
            None => Ok(None),
        }
    }

    /// Typed documents matching `filter`, in id order.
    pub async fn find<T: DeserializeOwned>(
        &self,
        collection: Collection,
        filter: Filter<'_>,
    ) -> Result<Vec<T>, StoreError> {
        let values = self.backend.find(collection, filter).await?;
        values
            .into_iter()
            .map(|v| from_value(collection, v))
            .collect()
    }

    /// Typed [`Backend::find_newest`].
    pub async fn find_newest<T: DeserializeOwned>(
        &self,
        collection: Collection,
        filter: Filter<'_>,
        field: &str,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        let values = self
            .backend
            .find_newest(collection, filter, field, limit)
            .await?;
        values
            .into_iter()
            .map(|v| from_value(collection, v))
            .collect()
    }

    /// Sets fields of a document when it matches `condition`.
    pub async fn update<T: Serialize>(
        &self,
        collection: Collection,
        id: &str,
        condition: Filter<'_>,
        fields: &T,
    ) -> Result<bool, StoreError> {
        let Value::Object(fields) = to_value(collection, id, fields)? else {
            return Err(StoreError::Backend(
                "update fields must be an object".into(),
            ));
        };
        self.backend.update(collection, id, condition, fields).await
    }

    /// Removes a document.
    pub async fn delete(&self, collection: Collection, id: &str) -> Result<bool, StoreError> {
        self.backend.delete(collection, id).await
    }
}

fn to_value<T: Serialize>(collection: Collection, id: &str, doc: &T) -> Result<Value, StoreError> {
    serde_json::to_value(doc).map_err(|e| StoreError::Corrupt {
        collection: collection.name(),
        id: id.to_string(),
        reason: e.to_string(),
    })
}

fn from_value<T: DeserializeOwned>(collection: Collection, value: Value) -> Result<T, StoreError> {
    let id = value
        .get("_id")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
        collection: collection.name(),
        id,
        reason: e.to_string(),
    })
}

/// Whether `doc` satisfies every condition of `filter`.
pub(crate) fn matches(doc: &Value, filter: Filter<'_>) -> bool {
    filter
        .iter()
        .all(|(field, expected)| doc.get(*field).unwrap_or(&Value::Null) == expected)
}
