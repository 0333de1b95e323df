//! Edges: registration, heartbeats and health.

use std::collections::BTreeMap;

use serde_json::json;

use crate::auth::new_token;
use crate::model::{
    now_ms, AppliedStatus, Edge, EdgeGroup, EdgeStatus, EdgeStatuses, Pop, TokenKind, TokenRecord,
};
use crate::settings::PopPlace;
use crate::store::{Collection, Store, StoreError};

/// How long heartbeat history is kept.
const HEARTBEAT_HISTORY_MS: i64 = 24 * 3600 * 1000;

/// An edge is healthy while it serves and its last heartbeat is younger
/// than three intervals.
pub fn healthy(edge: &Edge, interval_ms: u64, now: i64) -> bool {
    edge.serving
        && edge.last_heartbeat_ms > 0
        && now - edge.last_heartbeat_ms <= 3 * interval_ms as i64
}

/// Every edge with its health, by name.
pub async fn list(store: &Store, interval_ms: u64) -> Result<Vec<EdgeStatus>, StoreError> {
    let now = now_ms();
    let mut edges: Vec<Edge> = store.find(Collection::Edges, &[]).await?;
    edges.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(edges
        .into_iter()
        .map(|edge| EdgeStatus {
            healthy: healthy(&edge, interval_ms, now),
            edge,
        })
        .collect())
}

/// Every edge group with its edges' health and the deployments rolling
/// in it, by name.
pub async fn groups(store: &Store, interval_ms: u64) -> Result<Vec<EdgeGroup>, StoreError> {
    let mut groups: BTreeMap<String, EdgeGroup> = BTreeMap::new();
    for status in list(store, interval_ms).await? {
        let edge = status.edge;
        let group = groups
            .entry(edge.group.clone())
            .or_insert_with(|| EdgeGroup {
                name: edge.group.clone(),
                edges: 0,
                healthy: 0,
                pops: Vec::new(),
                config_revisions: Vec::new(),
                deployments: Vec::new(),
            });
        group.edges += 1;
        group.healthy += usize::from(status.healthy);
        if !group.pops.contains(&edge.pop) {
            group.pops.push(edge.pop);
        }
        if !group.config_revisions.contains(&edge.config_revision) {
            group.config_revisions.push(edge.config_revision);
        }
    }
    for deployment in crate::deployments::rolling(store).await? {
        if let Some(group) = groups.get_mut(&deployment.group) {
            group.deployments.push(deployment.id);
        }
    }
    Ok(groups
        .into_values()
        .map(|mut group| {
            group.pops.sort();
            group.config_revisions.sort_unstable();
            group.deployments.sort();
            group
        })
        .collect())
}

/// Every PoP placed in `places` or with a registered edge, by id, with
/// its edges' health.
pub async fn pops(
    store: &Store,
    interval_ms: u64,
    places: &BTreeMap<String, PopPlace>,
) -> Result<Vec<Pop>, StoreError> {
    let mut pops: BTreeMap<String, Pop> = places
        .iter()
        .map(|(id, place)| {
            let pop = Pop {
                id: id.clone(),
                name: place.name.clone(),
                lat: Some(place.lat),
                lon: Some(place.lon),
                edges: 0,
                healthy: 0,
            };
            (id.clone(), pop)
        })
        .collect();
    for status in list(store, interval_ms).await? {
        let pop = pops.entry(status.edge.pop.clone()).or_insert_with(|| Pop {
            id: status.edge.pop.clone(),
            name: None,
            lat: None,
            lon: None,
            edges: 0,
            healthy: 0,
        });
        pop.edges += 1;
        pop.healthy += usize::from(status.healthy);
    }
    Ok(pops.into_values().collect())
}

/// What an edge says about itself when registering.
pub struct Registration<'a> {
    /// Unique name.
    pub name: &'a str,
    /// PoP id.
    pub pop: &'a str,
    /// `edge` or `shield`.
    pub role: &'a str,
    /// Edge group.
    pub group: &'a str,
    /// Software version.
    pub version: &'a str,
    /// The credential the registering edge holds (empty: none).
    pub credential: &'a str,
}

/// Why a registration was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Another edge holds the name, and the caller not its credential.
    #[error("edge name `{name}` is registered as edge `{id}`: register with its credential (from its state directory), or have the operator remove it")]
    NameTaken {
        /// The name.
        name: String,
        /// The edge holding it.
        id: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `credential` is a live credential of edge `id`.
async fn holds_credential(store: &Store, id: &str, credential: &str) -> Result<bool, StoreError> {
    if credential.is_empty() {
        return Ok(false);
    }
    let record: Option<TokenRecord> = store
        .get(Collection::Tokens, &crate::auth::hash_token(credential))
        .await?;
    Ok(record
        .is_some_and(|r| !r.revoked && r.kind == TokenKind::Edge && r.edge.as_deref() == Some(id)))
}

/// Registers an edge; returns it and its new credential. A name already
/// registered is taken over (same id, the old credential revoked) only by
/// a caller holding that edge's credential; an edge the operator removed
/// comes back as a new one.
pub async fn register(
    store: &Store,
    registration: Registration<'_>,
) -> Result<(Edge, String), RegisterError> {
    let existing: Vec<Edge> = store
        .find(Collection::Edges, &[("name", json!(registration.name))])
        .await?;
    let existing = existing.first();
    if let Some(edge) = existing {
        if !holds_credential(store, &edge.id, registration.credential).await? {
            return Err(RegisterError::NameTaken {
                name: edge.name.clone(),
                id: edge.id.clone(),
            });
        }
        let old: Vec<TokenRecord> = store
            .find(Collection::Tokens, &[("edge", json!(edge.id))])
            .await?;
        for record in &old {
            crate::auth::revoke(store, record).await?;
        }
    }
    let mut edge = Edge {
        id: existing.map_or_else(new_edge_id, |e| e.id.clone()),
        name: registration.name.to_string(),
        pop: registration.pop.to_string(),
        role: registration.role.to_string(),
        group: registration.group.to_string(),
        version: registration.version.to_string(),
        registered_ms: now_ms(),
        last_heartbeat_ms: 0,
        config_revision: 0,
        requests_per_second: 0.0,
        cache_bytes: 0,
        cache_objects: 0,
        serving: false,
    };
    // The record is updated only while it exists: an edge removed meanwhile
    // comes back as a new one, not under the id its removal retired.
    let kept = existing.is_some()
        && store
            .update(Collection::Edges, &edge.id, &[], &edge)
            .await?;
    if !kept {
        if existing.is_some() {
            edge.id = new_edge_id();
        }
        store.put(Collection::Edges, &edge.id, &edge).await?;
    }
    let (record, credential) = new_token(
        TokenKind::Edge,
        None,
        Some(edge.id.clone()),
        registration.name,
    );
    store
        .insert(Collection::Tokens, &record.hash, &record)
        .await?;
    Ok((edge, credential))
}

/// A fresh edge id.
fn new_edge_id() -> String {
    format!("edge_{}", crate::auth::random_hex(6))
}

/// Removes an edge (by id or name) for good: its credential is revoked and
/// the jobs waiting for it stop waiting. `None` when there is no such edge.
/// Started again, it registers as a new edge.
pub async fn remove(store: &Store, edge: &str) -> Result<Option<Edge>, StoreError> {
    let found = match store.get::<Edge>(Collection::Edges, edge).await? {
        Some(found) => Some(found),
        None => store
            .find::<Edge>(Collection::Edges, &[("name", json!(edge))])
            .await?
            .into_iter()
            .next(),
    };
    let Some(found) = found else {
        return Ok(None);
    };
    let tokens: Vec<TokenRecord> = store
        .find(Collection::Tokens, &[("edge", json!(found.id))])
        .await?;
    for record in &tokens {
        crate::auth::revoke(store, record).await?;
    }
    store.delete(Collection::Edges, &found.id).await?;
    store.delete(Collection::Statuses, &found.id).await?;
    // Orders this misses (a dispatch racing the removal, or a release that
    // failed halfway) are dropped when their jobs are settled.
    let released = crate::jobs::release_orders(store, &found.id).await?;
    tracing::info!(edge = %found.id, name = %found.name, released, "edge removed");
    Ok(Some(found))
}

/// Working info from a heartbeat.
pub struct Heartbeat {
    /// Revision served.
    pub config_revision: u64,
    /// Software version.
    pub version: String,
    /// Requests per second.
    pub requests_per_second: f64,
    /// Cache bytes.
    pub cache_bytes: u64,
    /// Cached objects.
    pub cache_objects: u64,
    /// Whether it serves.
    pub serving: bool,
    /// Distributions whose apply state changed (all of them when
    /// `statuses_complete`).
    pub statuses: Vec<parapet_proto::edge::DistributionStatus>,
    /// `statuses` lists every distribution the edge has.
    pub statuses_complete: bool,
}

/// Records a heartbeat; false when the edge is unknown.
pub async fn heartbeat(store: &Store, edge: &str, beat: Heartbeat) -> Result<bool, StoreError> {
    let now = now_ms();
    let fields = json!({
        "last_heartbeat_ms": now,
        "config_revision": beat.config_revision,
        "version": beat.version,
        "requests_per_second": beat.requests_per_second,
        "cache_bytes": beat.cache_bytes,
        "cache_objects": beat.cache_objects,
        "serving": beat.serving,
    });
    if !store.update(Collection::Edges, edge, &[], &fields).await? {
        return Ok(false);
    }
    let mut history = fields;
    history["edge"] = json!(edge);
    history[crate::store::EXPIRES_AT] = json!(now + HEARTBEAT_HISTORY_MS);
    let key = format!("{edge}/{now}");
    store.put(Collection::Heartbeats, &key, &history).await?;
    if beat.statuses_complete || !beat.statuses.is_empty() {
        record_statuses(store, edge, beat.statuses, beat.statuses_complete).await?;
    }
    Ok(true)
}

/// Records how distributions applied on `edge`: every one of them when
/// `complete`, else the changes.
async fn record_statuses(
    store: &Store,
    edge: &str,
    statuses: Vec<parapet_proto::edge::DistributionStatus>,
    complete: bool,
) -> Result<(), StoreError> {
    let mut recorded = if complete {
        EdgeStatuses::default()
    } else {
        store
            .get::<EdgeStatuses>(Collection::Statuses, edge)
            .await?
            .unwrap_or_default()
    };
    recorded.edge = edge.to_string();
    for status in statuses {
        if status.removed {
            recorded.distributions.remove(&status.id);
            continue;
        }
        let failed = !status.error.is_empty();
        recorded.distributions.insert(
            status.id,
            AppliedStatus {
                version: status.version,
                failed_version: failed.then_some(status.failed_version),
                error: failed.then_some(status.error),
            },
        );
    }
    store.put(Collection::Statuses, edge, &recorded).await
}

/// How `distribution` applied on each edge that reported it.
pub async fn statuses_of(
    store: &Store,
    distribution: &str,
) -> Result<Vec<(String, AppliedStatus)>, StoreError> {
    let all: Vec<EdgeStatuses> = store.find(Collection::Statuses, &[]).await?;
    Ok(all
        .into_iter()
        .filter_map(|mut e| {
            let status = e.distributions.remove(distribution)?;
            Some((e.edge, status))
        })
        .collect())
}
