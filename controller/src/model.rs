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
    /// Reads the edge list and groups, nothing else (the geo-DNS,
    /// monitoring).
    Monitor,
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

/// How one distribution applied on one edge, as its heartbeats report it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppliedStatus {
    /// The version the edge serves (0: none: it never loaded there).
    pub version: u64,
    /// A newer version that did not load there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_version: Option<u64>,
    /// Why it did not load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The apply state of every distribution on one edge (stored under the
/// edge's id).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EdgeStatuses {
    /// Edge id.
    pub edge: String,
    /// Distribution id → its state there.
    pub distributions: std::collections::BTreeMap<String, AppliedStatus>,
}

/// A PoP: where the operator placed it (`[pops]` in the settings) and the
/// health of the edges registered in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pop {
    /// PoP id (what edges register with).
    pub id: String,
    /// A name for people, when the settings give one.
    pub name: Option<String>,
    /// Latitude in degrees, when the settings place it.
    pub lat: Option<f64>,
    /// Longitude in degrees, when the settings place it.
    pub lon: Option<f64>,
    /// Edges registered in it.
    pub edges: usize,
    /// Of those, the healthy ones.
    pub healthy: usize,
}

/// An edge group (the unit of blue/green deployments), as its edges
/// report it: a group exists while an edge registered in it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EdgeGroup {
    /// Group name.
    pub name: String,
    /// Edges registered in the group.
    pub edges: usize,
    /// Of those, the healthy ones.
    pub healthy: usize,
    /// PoPs the group's edges are in.
    pub pops: Vec<String>,
    /// Configuration revisions its edges serve (one when in step).
    pub config_revisions: Vec<u64>,
    /// Rolling deployments serving a new version in this group.
    pub deployments: Vec<String>,
}

/// A distribution: a customer's site, served by every edge.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Distribution {
    /// Unique id; also its DNS label (`<id>.<zone>`).
    pub id: String,
    /// Owner.
    pub customer: String,
    /// The version edges serve (outside a deployment's group).
    pub live_version: u64,
    /// The newest version.
    pub latest_version: u64,
    /// Domains of the live and latest versions (kept unique across
    /// distributions).
    pub domains: Vec<String>,
    /// Creation time.
    pub created_ms: i64,
    /// The configuration revision of its last change (what edges get of
    /// it: a version, a deployment step, KV data, its customer's
    /// standing).
    #[serde(default)]
    pub revision: u64,
}

/// One configuration version of a distribution.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Version {
    /// Distribution id.
    pub distribution: String,
    /// 1, 2, ...
    pub version: u64,
    /// The configuration as submitted (plugins by name).
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    /// The configuration as edges get it (plugins by sha256).
    #[schema(value_type = Object)]
    pub resolved: serde_json::Value,
    /// sha256 of every plugin it uses.
    pub plugins: Vec<String>,
    /// Creation time.
    pub created_ms: i64,
}

impl Version {
    /// Storage key.
    pub fn key(distribution: &str, version: u64) -> String {
        format!("{distribution}@{version}")
    }
}

/// An uploaded plugin version; the bytes are a blob under `plugin/<sha256>`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PluginVersion {
    /// Owner.
    pub customer: String,
    /// Plugin name.
    pub name: String,
    /// 1, 2, ... per name.
    pub version: u64,
    /// Hex SHA-256 of the component.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Upload time.
    pub created_ms: i64,
}

impl PluginVersion {
    /// Storage key.
    pub fn key(customer: &str, name: &str, version: u64) -> String {
        format!("{customer}/{name}/{version}")
    }

    /// Blob key of a component.
    pub fn blob(sha256: &str) -> String {
        format!("plugin/{sha256}")
    }
}

/// A KV entry plugins read.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KvEntry {
    /// Distribution id.
    pub distribution: String,
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

impl KvEntry {
    /// Storage key.
    pub fn id(distribution: &str, key: &str) -> String {
        format!("{distribution}/{key}")
    }
}

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    /// The new version serves in the group only.
    Rolling,
    /// The new version serves everywhere.
    Promoted,
    /// The group is back on the live version.
    RolledBack,
}

/// A blue/green deployment: a distribution version served by one edge
/// group until promoted to all or rolled back.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    /// Deployment id.
    pub id: String,
    /// Distribution id.
    pub distribution: String,
    /// Owner.
    pub customer: String,
    /// The edge group that gets the new version first.
    pub group: String,
    /// The version live when it started.
    pub from_version: u64,
    /// The version rolled out.
    pub to_version: u64,
    /// Where it stands.
    pub state: DeploymentState,
    /// Start time.
    pub created_ms: i64,
    /// Last change.
    pub updated_ms: i64,
}

/// What a purge removes (exactly one selector).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PurgeTarget {
    /// One URL, as `host/path?query` or a full `https://host/path` URL.
    Url(String),
    /// Every URL starting with this `host/path` prefix.
    Prefix(String),
    /// Objects tagged with this Surrogate-Key.
    Tag(String),
    /// The whole distribution.
    Everything,
}

/// The work a job sends each edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Work {
    /// Purge cached objects.
    Purge {
        /// What.
        target: PurgeTarget,
        /// Mark stale (served while revalidating) instead of deleting.
        soft: bool,
    },
    /// Fetch URLs ahead of demand.
    Prewarm {
        /// Full URLs.
        urls: Vec<String>,
    },
    /// Delete expired logs, heartbeats and finished jobs (the controller's
    /// own work; no edge takes part).
    Compact,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for the worker.
    Queued,
    /// The worker is handing it out.
    Dispatching,
    /// Every edge has its order; waiting for acknowledgements.
    Dispatched,
    /// Every edge acknowledged (or, for controller work, it ran).
    Done,
    /// Gave up after retries.
    Failed,
}

/// A background job: a purge or prewarm for every edge, or controller
/// housekeeping.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Job id.
    pub id: String,
    /// Owner (empty for controller work).
    pub customer: String,
    /// Distribution (empty for controller work).
    pub distribution: String,
    /// What it does.
    pub work: Work,
    /// Where it stands.
    pub status: JobStatus,
    /// Dispatch attempts so far.
    pub attempts: u32,
    /// The last error, when an attempt failed.
    pub error: Option<String>,
    /// Creation time.
    pub created_ms: i64,
    /// Last change.
    pub updated_ms: i64,
    /// When a finished job is deleted (ms since the epoch).
    pub expires_at: Option<i64>,
}

/// One edge's part of a job, kept until the job expires.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Order {
    /// `<job>:<edge>`.
    pub id: String,
    /// Job id.
    pub job: String,
    /// Edge id.
    pub edge: String,
    /// Distribution.
    pub distribution: String,
    /// What to do.
    pub work: Work,
    /// Creation time.
    pub created_ms: i64,
    /// Whether the edge acknowledged it.
    pub acked: bool,
    /// Acknowledgement time.
    pub acked_ms: Option<i64>,
    /// Objects purged or URLs fetched.
    pub count: u64,
    /// The edge's error, if it failed.
    pub error: Option<String>,
    /// Deleted with its job.
    pub expires_at: Option<i64>,
}

/// A log line an edge shipped.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogRecord {
    /// Distribution.
    pub distribution: String,
    /// The edge that served it.
    pub edge: String,
    /// When (ms since the epoch).
    pub timestamp_ms: i64,
    /// The access log line.
    #[schema(value_type = Object)]
    pub line: serde_json::Value,
    /// When it is deleted.
    pub expires_at: i64,
}
