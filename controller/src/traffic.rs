//! Traffic per distribution over time: requests, cache hits, bytes and
//! status classes per minute, counted from the access log lines edges
//! ship (a [`crate::series`] per distribution).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::series::{self, minute_of, Point};
use crate::store::{Collection, Store, StoreError};
/// One minute of a distribution's traffic (on one edge, as stored; on all
/// edges, as read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrafficPoint {
    /// Distribution id.
    pub distribution: String,
    /// The minute's start (ms since the epoch).
    pub minute_ms: i64,
    /// Requests answered.
    pub requests: u64,
    /// Of which from the cache (`HIT`, `STALE`, `REVALIDATED`).
    pub hits: u64,
    /// Body bytes of the answers whose length was known.
    pub bytes: u64,
    /// Answers by status class: 1xx..5xx at 0..4.
    pub statuses: [u64; 5],
    /// The edge that counted it (empty when summed).
    #[serde(default)]
    pub edge: String,
    /// When it is deleted.
    #[serde(default)]
    pub expires_at: i64,
}

impl TrafficPoint {
    fn add_line(&mut self, line: &Value) {
        self.requests += 1;
        if matches!(
            line["cache"].as_str(),
            Some("HIT" | "STALE" | "REVALIDATED")
        ) {
            self.hits += 1;
        }
        self.bytes += line["bytes"].as_u64().unwrap_or(0);
        if let Some(class) = line["status"]
            .as_u64()
            .and_then(|status| usize::try_from(status / 100).ok())
            .filter(|class| (1..=5).contains(class))
        {
            self.statuses[class - 1] += 1;
        }
    }
}

impl Point for TrafficPoint {
    fn minute_ms(&self) -> i64 {
        self.minute_ms
    }

    fn add(&mut self, other: &TrafficPoint) {
        self.requests += other.requests;
        self.hits += other.hits;
        self.bytes += other.bytes;
        for (sum, n) in self.statuses.iter_mut().zip(other.statuses) {
            *sum += n;
        }
    }

    fn expire_at(&mut self, at_ms: i64) {
        self.expires_at = at_ms;
    }
}

/// Counts `lines` (distribution, timestamp in ms, the line) that `edge`
/// shipped into their minutes.
pub async fn count(
    store: &Store,
    edge: &str,
    lines: &[(String, i64, Value)],
) -> Result<(), StoreError> {
    let mut minutes: BTreeMap<(String, i64), TrafficPoint> = BTreeMap::new();
    for (distribution, timestamp_ms, line) in lines {
        let minute_ms = minute_of(*timestamp_ms);
        minutes
            .entry((distribution.clone(), minute_ms))
            .or_insert_with(|| TrafficPoint {
                distribution: distribution.clone(),
                minute_ms,
                edge: edge.to_string(),
                ..TrafficPoint::default()
            })
            .add_line(line);
    }
    for ((distribution, minute_ms), counted) in minutes {
        let key = format!("{distribution}:{edge}:{minute_ms}");
        series::add(store, Collection::Traffic, &key, counted).await?;
    }
    Ok(())
}

/// `distribution`'s traffic per minute over the last `minutes`, every edge
/// summed, oldest first; a minute without traffic is a point of zeros.
pub async fn per_minute(
    store: &Store,
    distribution: &str,
    minutes: u32,
) -> Result<Vec<TrafficPoint>, StoreError> {
    series::read(
        store,
        Collection::Traffic,
        &[("distribution", json!(distribution))],
        minutes,
        |minute_ms| TrafficPoint {
            distribution: distribution.to_string(),
            minute_ms,
            ..TrafficPoint::default()
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_into_requests_hits_bytes_and_classes() {
        let mut point = TrafficPoint::default();
        point.add_line(&json!({"status": 200, "cache": "HIT", "bytes": 10}));
        point.add_line(&json!({"status": 404, "cache": "MISS", "bytes": null}));
        point.add_line(&json!({"status": 503, "cache": "NONE"}));
        point.add_line(&json!({"status": 999, "cache": "STALE"}));
        assert_eq!(point.requests, 4);
        assert_eq!(point.hits, 2);
        assert_eq!(point.bytes, 10);
        assert_eq!(point.statuses, [0, 1, 0, 1, 1]);
    }
}
