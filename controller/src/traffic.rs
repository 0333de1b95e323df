//! Traffic per distribution over time: requests, cache hits, bytes and
//! status classes per minute, counted from the access log lines edges
//! ship (a document per distribution, edge and minute, so edges and
//! controllers never write the same one; kept a week), summed over the
//! edges when read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::model::now_ms;
use crate::store::{Collection, Store, StoreError};

/// How long traffic points are kept.
const KEEP_MS: i64 = 7 * 24 * 3600 * 1000;
/// One point per minute.
const MINUTE_MS: i64 = 60_000;
/// The most points read for one distribution (a week of one edge's).
const MAX_POINTS: usize = 7 * 24 * 60;

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

    fn add(&mut self, other: &TrafficPoint) {
        self.requests += other.requests;
        self.hits += other.hits;
        self.bytes += other.bytes;
        for (sum, n) in self.statuses.iter_mut().zip(other.statuses) {
            *sum += n;
        }
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
        let minute_ms = timestamp_ms - timestamp_ms.rem_euclid(MINUTE_MS);
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
        // One edge's stream writes its own documents, one batch at a time.
        let key = format!("{distribution}:{edge}:{minute_ms}");
        let mut point = store
            .get::<TrafficPoint>(Collection::Traffic, &key)
            .await?
            .unwrap_or_else(|| TrafficPoint {
                distribution: distribution.clone(),
                minute_ms,
                edge: edge.to_string(),
                ..TrafficPoint::default()
            });
        point.add(&counted);
        point.expires_at = now_ms() + KEEP_MS;
        store.put(Collection::Traffic, &key, &point).await?;
    }
    Ok(())
}

/// `distribution`'s traffic per minute over the last `minutes`, every edge
/// summed, oldest first; a minute without traffic is a point of zeros.
pub async fn series(
    store: &Store,
    distribution: &str,
    minutes: u32,
) -> Result<Vec<TrafficPoint>, StoreError> {
    let now = now_ms();
    let this_minute = now - now.rem_euclid(MINUTE_MS);
    let since = this_minute - i64::from(minutes.saturating_sub(1)) * MINUTE_MS;
    let points: Vec<TrafficPoint> = store
        .find_newest(
            Collection::Traffic,
            &[("distribution", json!(distribution))],
            "minute_ms",
            MAX_POINTS,
        )
        .await?;
    let mut summed: BTreeMap<i64, TrafficPoint> = (0..i64::from(minutes))
        .map(|n| since + n * MINUTE_MS)
        .map(|minute_ms| {
            let zero = TrafficPoint {
                distribution: distribution.to_string(),
                minute_ms,
                ..TrafficPoint::default()
            };
            (minute_ms, zero)
        })
        .collect();
    for point in points.iter().filter(|p| p.minute_ms >= since) {
        summed
            .entry(point.minute_ms)
            .or_insert_with(|| TrafficPoint {
                distribution: distribution.to_string(),
                minute_ms: point.minute_ms,
                ..TrafficPoint::default()
            })
            .add(point);
    }
    Ok(summed.into_values().collect())
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
