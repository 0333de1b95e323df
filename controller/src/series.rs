//! Per-minute series of what edges report (traffic per distribution, cost
//! per plugin): a document per subject, edge and minute, so edges and
//! controllers never write the same one; kept a week; read back summed
//! over the edges, a point of zeros for a minute without any.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::model::now_ms;
use crate::store::{Collection, Store, StoreError};

/// How long points are kept.
const KEEP_MS: i64 = 7 * 24 * 3600 * 1000;
/// One point per minute.
pub const MINUTE_MS: i64 = 60_000;
/// The most minutes one read covers (a week).
pub const MAX_MINUTES: u32 = 7 * 24 * 60;
/// The most documents one read takes (a week of one edge's).
const MAX_POINTS: usize = MAX_MINUTES as usize;

/// One minute of a series.
pub trait Point: Serialize + DeserializeOwned {
    /// The minute's start (ms since the epoch).
    fn minute_ms(&self) -> i64;
    /// Adds `other`'s counts to this point's.
    fn add(&mut self, other: &Self);
    /// Sets when the stored point is deleted.
    fn expire_at(&mut self, at_ms: i64);
}

/// The start of the minute `timestamp_ms` falls in.
pub fn minute_of(timestamp_ms: i64) -> i64 {
    timestamp_ms - timestamp_ms.rem_euclid(MINUTE_MS)
}

/// Adds `point` to the one stored under `key` (one edge's stream writes
/// its own documents, one message at a time), and keeps it a week more.
pub async fn add<T: Point>(
    store: &Store,
    collection: Collection,
    key: &str,
    mut point: T,
) -> Result<(), StoreError> {
    if let Some(mut stored) = store.get::<T>(collection, key).await? {
        stored.add(&point);
        point = stored;
    }
    point.expire_at(now_ms() + KEEP_MS);
    store.put(collection, key, &point).await
}

/// The last `minutes` (at most [`MAX_MINUTES`]) of the points matching
/// `filter`, every edge summed, oldest first; a minute without any is
/// `zero(minute_ms)`.
pub async fn read<T: Point>(
    store: &Store,
    collection: Collection,
    filter: &[(&str, Value)],
    minutes: u32,
    zero: impl Fn(i64) -> T,
) -> Result<Vec<T>, StoreError> {
    let minutes = minutes.clamp(1, MAX_MINUTES);
    let since = minute_of(now_ms()) - i64::from(minutes - 1) * MINUTE_MS;
    let points: Vec<T> = store
        .find_newest(collection, filter, "minute_ms", MAX_POINTS)
        .await?;
    let mut summed: BTreeMap<i64, T> = (0..i64::from(minutes))
        .map(|n| since + n * MINUTE_MS)
        .map(|minute_ms| (minute_ms, zero(minute_ms)))
        .collect();
    for point in points.iter().filter(|p| p.minute_ms() >= since) {
        summed
            .entry(point.minute_ms())
            .or_insert_with(|| zero(point.minute_ms()))
            .add(point);
    }
    Ok(summed.into_values().collect())
}
