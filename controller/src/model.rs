//! The controller's documents, as stored and (most of them) as the REST API
//! shows them. Each is stored under its id (the token's hash for tokens);
//! the store adds that key as `_id`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A customer: owns distributions, plugins, KV data and tokens.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Customer {
    /// Short id (lowercase letters, digits, `-`), unique.
    pub id: String,
    /// Display name.
    pub name: String,
    /// A suspended customer's tokens are refused and its distributions are
    /// not served.
    pub suspended: bool,
    /// Creation time (ms since the epoch).
    pub created_ms: i64,
}

/// Who a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Everything.
    Operator,
    /// One customer's data.
    Customer,
    /// One edge's gRPC calls.
    Edge,
}

/// A stored token: only its SHA-256 is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Hex SHA-256 of the whole token (the storage key).
    pub hash: String,
    /// Public id, shown in lists and used to revoke.
    pub id: String,
    /// Operator, customer or edge.
    pub kind: TokenKind,
    /// The customer (customer tokens).
    pub customer: Option<String>,
    /// The edge (edge credentials).
    pub edge: Option<String>,
    /// What it is for.
    pub name: String,
    /// Creation time.
    pub created_ms: i64,
    /// Revoked tokens are refused.
    pub revoked: bool,
}

/// A token as listed (never the secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// Public id.
    pub id: String,
    /// Operator or customer.
    pub kind: TokenKind,
    /// The customer, for customer tokens.
    pub customer: Option<String>,
    /// What it is for.
    pub name: String,
    /// Creation time.
    pub created_ms: i64,
    /// Whether it was revoked.
    pub revoked: bool,
}

impl From<&TokenRecord> for TokenInfo {
    fn from(record: &TokenRecord) -> Self {
        TokenInfo {
            id: record.id.clone(),
            kind: record.kind,
            customer: record.customer.clone(),
            name: record.name.clone(),
            created_ms: record.created_ms,
            revoked: record.revoked,
        }
    }
}

/// A registered edge and its latest working info.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Edge {
    /// Edge id.
    pub id: String,
    /// Unique name, e.g. `fra-1`.
    pub name: String,
    /// PoP id.
    pub pop: String,
    /// `edge` or `shield`.
    pub role: String,
    /// Edge group (blue/green deployments).
    pub group: String,
    /// parapet-edge version.
    pub version: String,
    /// Registration time.
    pub registered_ms: i64,
    /// Last heartbeat (0: none yet).
    pub last_heartbeat_ms: i64,
    /// Configuration revision the edge serves.
    pub config_revision: u64,
    /// Requests per second over the last heartbeat interval.
    pub requests_per_second: f64,
    /// Cache bytes in use.
    pub cache_bytes: u64,
    /// Cached objects.
    pub cache_objects: u64,
    /// Whether the edge said it serves.
    pub serving: bool,
}

/// An edge as listed, with its health.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EdgeStatus {
    /// The edge.
    #[serde(flatten)]
    pub edge: Edge,
    /// Serving, with a heartbeat within the last three intervals.
    pub healthy: bool,
}
