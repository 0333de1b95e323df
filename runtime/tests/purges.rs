//! Purges on an edge shared by two distributions: a distribution's purge
//! selects only its own objects, URL purges find what the cache key
//! normalised, and only a purge that selects an in-flight fetch keeps it
//! from being stored (unrelated purges and writes do not).

mod common;

use std::time::Duration;

use common::{admin_post, config, edge, request, until_hit_on, Origin, Reply, TestEdge};

/// A second distribution, `other` for `other.test`, on the same origin.
fn other_distribution(origin: &str) -> String {
    format!(
        r#"
[[distribution]]
id = "other"
customer = "globex"
domains = ["other.test"]

[[distribution.origin]]
url = "{origin}"

[[distribution.behavior]]
path = "*"
"#
    )
}

async fn two_tenants() -> (Origin, TestEdge) {
    let origin = Origin::start().await;
    let text = config(&origin.url(), &other_distribution(&origin.url()), "", "");
    (origin.clone(), edge(&text).await)
}

/// Caches `path` on both hosts, tagged `shared`.
async fn cache_on_both(origin: &Origin, edge: &TestEdge, path: &str) {
    origin.set(
        path,
        Reply::ok(
            path.to_string(),
            &[
                ("cache-control", "max-age=600"),
                ("surrogate-key", "shared"),
            ],
        ),
    );
    for host in ["example.test", "other.test"] {
        until_hit_on(edge.addr(), host, path).await;
    }
}

async fn purge(edge: &TestEdge, json: &str) -> u64 {
    let answer = admin_post(edge.admin(), "/purge", "secret", json).await;
    assert_eq!(answer.status, 200, "{json}: {}", answer.text());
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    body["purged"].as_u64().unwrap()
}

async fn cache_of(edge: &TestEdge, host: &str, path: &str) -> String {
    request(edge.addr(), "GET", host, path, &[])
        .await
        .cache()
        .to_string()
}

#[tokio::test]
async fn a_distributions_purges_never_reach_another_distributions_objects() {
    let (origin, edge) = two_tenants().await;
    cache_on_both(&origin, &edge, "/x").await;
    // `site` aims at `other`'s objects every way it can.
    for attack in [
        r#"{"distribution": "site", "tag": "shared"}"#,
        r#"{"distribution": "site", "prefix": "other.test/"}"#,
        r#"{"distribution": "site", "url": "http://other.test/x"}"#,
    ] {
        purge(&edge, attack).await;
        assert_eq!(cache_of(&edge, "other.test", "/x").await, "HIT", "{attack}");
    }
    // The tag purge did remove site's own object.
    assert_eq!(cache_of(&edge, "example.test", "/x").await, "MISS");
    until_hit_on(edge.addr(), "example.test", "/x").await;
    assert_eq!(
        purge(&edge, r#"{"distribution": "site", "everything": true}"#).await,
        1,
        "site's own object only"
    );
    assert_eq!(cache_of(&edge, "other.test", "/x").await, "HIT");
    assert_eq!(cache_of(&edge, "example.test", "/x").await, "MISS");
}

#[tokio::test]
async fn the_operators_edge_wide_purge_reaches_every_distribution() {
    let (origin, edge) = two_tenants().await;
    cache_on_both(&origin, &edge, "/x").await;
    assert_eq!(purge(&edge, r#"{"tag": "shared"}"#).await, 2);
    assert_eq!(cache_of(&edge, "other.test", "/x").await, "MISS");
    assert_eq!(cache_of(&edge, "example.test", "/x").await, "MISS");
    until_hit_on(edge.addr(), "other.test", "/x").await;
    until_hit_on(edge.addr(), "example.test", "/x").await;
    assert_eq!(purge(&edge, r#"{"everything": true}"#).await, 2);
}

#[tokio::test]
async fn a_url_purge_finds_the_object_whatever_order_the_viewer_gave_its_query() {
    let (origin, edge) = two_tenants().await;
    origin.set(
        "/p?b=2&a=1",
        Reply::ok("p", &[("cache-control", "max-age=600")]),
    );
    until_hit_on(edge.addr(), "example.test", "/p?b=2&a=1").await;
    // The key sorts the query: the other order is the same object.
    assert_eq!(cache_of(&edge, "example.test", "/p?a=1&b=2").await, "HIT");
    assert_eq!(
        purge(
            &edge,
            r#"{"distribution": "site", "url": "example.test/p?a=1&b=2"}"#
        )
        .await,
        1
    );
    assert_eq!(cache_of(&edge, "example.test", "/p?b=2&a=1").await, "MISS");
}

#[tokio::test]
async fn an_unknown_distribution_is_refused_by_name() {
    let (_origin, edge) = two_tenants().await;
    let answer = admin_post(
        edge.admin(),
        "/purge",
        "secret",
        r#"{"distribution": "nope", "tag": "x"}"#,
    )
    .await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.text().contains("no distribution `nope`"),
        "{}",
        answer.text()
    );
}

/// Misses fetched while successful POSTs keep invalidating another URL are
/// all stored: each URL reaches the origin once.
#[tokio::test]
async fn writes_to_one_url_do_not_stop_other_urls_from_being_stored() {
    let (origin, edge) = two_tenants().await;
    origin.set("/api", Reply::ok("ok", &[]));
    let paths: Vec<String> = (0..40).map(|i| format!("/page/{i}")).collect();
    for path in &paths {
        origin.set(
            path,
            Reply::ok("page", &[("cache-control", "max-age=600")])
                .delayed(Duration::from_millis(30)),
        );
    }
    let addr = edge.addr();
    let writer = tokio::spawn(async move {
        for _ in 0..200 {
            let posted = request(addr, "POST", "example.test", "/api", &[]).await;
            assert_eq!(posted.status, 200);
        }
    });
    let fetches: Vec<_> = paths
        .iter()
        .cloned()
        .map(|path| {
            tokio::spawn(async move { request(addr, "GET", "example.test", &path, &[]).await })
        })
        .collect();
    for fetch in fetches {
        assert_eq!(fetch.await.unwrap().cache(), "MISS");
    }
    writer.await.unwrap();
    assert!(origin.hits("/api") >= 200);
    for path in &paths {
        until_hit_on(addr, "example.test", path).await;
        assert_eq!(origin.hits(path), 1, "{path} was fetched again: not stored");
    }
}

/// A purge of the URL being fetched wins: what the fetch brings back is
/// not stored. A purge of another URL meanwhile does not stop the store.
#[tokio::test]
async fn a_purge_that_selects_an_in_flight_fetch_keeps_it_from_being_stored() {
    let (origin, edge) = two_tenants().await;
    for path in ["/slow", "/slow-too"] {
        origin.set(
            path,
            Reply::ok("old", &[("cache-control", "max-age=600")])
                .delayed(Duration::from_millis(600)),
        );
    }
    let addr = edge.addr();
    let purged =
        tokio::spawn(async move { request(addr, "GET", "example.test", "/slow", &[]).await });
    let unrelated =
        tokio::spawn(async move { request(addr, "GET", "example.test", "/slow-too", &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    purge(
        &edge,
        r#"{"distribution": "site", "url": "example.test/slow"}"#,
    )
    .await;
    assert_eq!(purged.await.unwrap().text(), "old");
    assert_eq!(unrelated.await.unwrap().text(), "old");
    until_hit_on(addr, "example.test", "/slow-too").await;
    assert_eq!(origin.hits("/slow-too"), 1);
    common::settle().await;
    assert_eq!(cache_of(&edge, "example.test", "/slow").await, "MISS");
    assert_eq!(origin.hits("/slow"), 2);
}
