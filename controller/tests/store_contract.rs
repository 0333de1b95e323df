//! The storage contract, run against both backends: the embedded redb
//! store and MongoDB (a real MongoDB-wire server, SecantusDB).

#[macro_use]
mod common;

use parapet_controller::store::{Collection, Store, StoreError};
use serde_json::{json, Map, Value};

both_backends!(
    "contract";
    insert_get_and_conflict,
    put_replaces,
    find_filters_in_id_order,
    find_newest_sorts_and_limits,
    conditional_updates,
    delete_and_expiry,
    counters_count_up,
    blobs_round_trip_ten_mib,
);

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("not an object"),
    }
}

async fn insert_get_and_conflict(store: &Store) {
    let backend = store.backend();
    backend
        .insert(
            Collection::Customers,
            "acme",
            json!({"name": "Acme", "suspended": false}),
        )
        .await
        .expect("insert");
    let doc = backend
        .get(Collection::Customers, "acme")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        doc,
        json!({"_id": "acme", "name": "Acme", "suspended": false})
    );
    let again = backend
        .insert(Collection::Customers, "acme", json!({"name": "Other"}))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(
        backend
            .get(Collection::Customers, "nobody")
            .await
            .expect("get"),
        None
    );
    // Collections are separate.
    assert_eq!(
        backend.get(Collection::Tokens, "acme").await.expect("get"),
        None
    );
}

async fn put_replaces(store: &Store) {
    let backend = store.backend();
    backend
        .put(Collection::Kv, "d/k", json!({"value": "one", "extra": 1}))
        .await
        .expect("put");
    backend
        .put(Collection::Kv, "d/k", json!({"value": "two"}))
        .await
        .expect("put");
    let doc = backend
        .get(Collection::Kv, "d/k")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(doc, json!({"_id": "d/k", "value": "two"}));
}

async fn find_newest_sorts_and_limits(store: &Store) {
    let backend = store.backend();
    for (id, customer, at) in [
        ("a", "acme", 20),
        ("b", "acme", 30),
        ("c", "globex", 99),
        ("d", "acme", 10),
        ("e", "acme", 30),
    ] {
        backend
            .insert(
                Collection::Logs,
                id,
                json!({"customer": customer, "at": at}),
            )
            .await
            .expect("insert");
    }
    let acme = [("customer", json!("acme"))];
    let newest = |limit| backend.find_newest(Collection::Logs, &acme, "at", limit);
    let ids = |docs: Vec<Value>| -> Vec<String> {
        docs.iter()
            .map(|d| d["_id"].as_str().expect("id").to_string())
            .collect()
    };
    assert_eq!(ids(newest(3).await.expect("find")), ["b", "e", "a"]);
    assert_eq!(ids(newest(10).await.expect("find")), ["b", "e", "a", "d"]);
    assert!(newest(0).await.expect("find").is_empty());
}

async fn find_filters_in_id_order(store: &Store) {
    let backend = store.backend();
    for (id, customer, n) in [
        ("c", "acme", 3),
        ("a", "acme", 1),
        ("b", "globex", 2),
        ("d", "acme", 4),
    ] {
        backend
            .insert(
                Collection::Distributions,
                id,
                json!({"customer": customer, "n": n, "live": n % 2 == 0}),
            )
            .await
            .expect("insert");
    }
    let ids = |docs: Vec<Value>| -> Vec<String> {
        docs.iter()
            .map(|d| d["_id"].as_str().expect("id").to_string())
            .collect()
    };
    let acme = backend
        .find(Collection::Distributions, &[("customer", json!("acme"))])
        .await
        .expect("find");
    assert_eq!(ids(acme), ["a", "c", "d"]);
    let both = backend
        .find(
            Collection::Distributions,
            &[("customer", json!("acme")), ("live", json!(true))],
        )
        .await
        .expect("find");
    assert_eq!(ids(both), ["d"]);
    let by_number = backend
        .find(Collection::Distributions, &[("n", json!(2))])
        .await
        .expect("find");
    assert_eq!(ids(by_number), ["b"]);
    let all = backend
        .find(Collection::Distributions, &[])
        .await
        .expect("find");
    assert_eq!(ids(all), ["a", "b", "c", "d"]);
    assert!(backend
        .find(Collection::Edges, &[])
        .await
        .expect("find")
        .is_empty());
}

async fn conditional_updates(store: &Store) {
    let backend = store.backend();
    backend
        .insert(
            Collection::Jobs,
            "j1",
            json!({"status": "queued", "attempts": 0}),
        )
        .await
        .expect("insert");
    // Claim: only when still queued.
    let claimed = backend
        .update(
            Collection::Jobs,
            "j1",
            &[("status", json!("queued"))],
            fields(json!({"status": "running", "attempts": 1})),
        )
        .await
        .expect("update");
    assert!(claimed);
    let again = backend
        .update(
            Collection::Jobs,
            "j1",
            &[("status", json!("queued"))],
            fields(json!({"status": "running"})),
        )
        .await
        .expect("update");
    assert!(!again, "a second claim must fail");
    let missing = backend
        .update(
            Collection::Jobs,
            "nope",
            &[],
            fields(json!({"status": "x"})),
        )
        .await
        .expect("update");
    assert!(!missing);
    let doc = backend
        .get(Collection::Jobs, "j1")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        doc,
        json!({"_id": "j1", "status": "running", "attempts": 1})
    );
}

async fn delete_and_expiry(store: &Store) {
    let backend = store.backend();
    backend
        .insert(
            Collection::Logs,
            "old",
            json!({"line": "a", "expires_at": 1_000}),
        )
        .await
        .expect("insert");
    backend
        .insert(
            Collection::Logs,
            "new",
            json!({"line": "b", "expires_at": 4_000_000_000_000_i64}),
        )
        .await
        .expect("insert");
    backend
        .insert(Collection::Logs, "keep", json!({"line": "c"}))
        .await
        .expect("insert");
    // expires_at reads back as milliseconds.
    let doc = backend
        .get(Collection::Logs, "new")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(doc["expires_at"], json!(4_000_000_000_000_i64));
    assert_eq!(
        backend
            .delete_expired(Collection::Logs, 2_000)
            .await
            .expect("expire"),
        1
    );
    let left = backend.find(Collection::Logs, &[]).await.expect("find");
    assert_eq!(left.len(), 2);
    assert!(backend
        .delete(Collection::Logs, "keep")
        .await
        .expect("delete"));
    assert!(!backend
        .delete(Collection::Logs, "keep")
        .await
        .expect("delete"));
}

async fn counters_count_up(store: &Store) {
    let backend = store.backend();
    assert_eq!(backend.counter("revision").await.expect("counter"), 0);
    assert_eq!(backend.increment("revision").await.expect("inc"), 1);
    assert_eq!(backend.increment("revision").await.expect("inc"), 2);
    assert_eq!(backend.increment("other").await.expect("inc"), 1);
    assert_eq!(backend.counter("revision").await.expect("counter"), 2);
}

async fn blobs_round_trip_ten_mib(store: &Store) {
    let backend = store.backend();
    let data: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    backend.put_blob("plugin/abc", &data).await.expect("put");
    let back = backend
        .get_blob("plugin/abc")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the blob changed");
    // The same content again (another upload of the plugin) keeps it whole.
    backend
        .put_blob("plugin/abc", &data)
        .await
        .expect("put again");
    let again = backend.get_blob("plugin/abc").await.expect("get");
    assert!(again.as_deref() == Some(&data[..]), "the blob changed");
    backend.put_blob("empty", &[]).await.expect("put");
    assert_eq!(
        backend.get_blob("empty").await.expect("get"),
        Some(Vec::new())
    );
    backend.delete_blob("plugin/abc").await.expect("delete");
    assert_eq!(backend.get_blob("plugin/abc").await.expect("get"), None);
}
