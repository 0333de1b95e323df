//! RFC 9111 (HTTP caching) requirements, one row each with its section,
//! checked against a real edge in front of a real origin. Each row starts
//! its own origin and edge; the test runs every row and names each that
//! failed.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use common::{config, edge, request, until_hit_on, Origin, Reply, TestEdge};

type Row = fn() -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// (section, requirement, check)
const ROWS: &[(&str, &str, Row)] = &[
    (
        "5.2.1.4",
        "request no-cache: the stored response is validated before use",
        || Box::pin(request_no_cache()),
    ),
    (
        "5.4",
        "Pragma: no-cache counts as no-cache only without Cache-Control",
        || Box::pin(pragma()),
    ),
    (
        "5.2.1.1",
        "request max-age: an older stored response is validated first",
        || Box::pin(request_max_age()),
    ),
    (
        "5.2.1.3",
        "request min-fresh: a response fresh for less is validated first",
        || Box::pin(min_fresh()),
    ),
    (
        "5.2.1.2",
        "request max-stale: a stale response is served, unless it must revalidate",
        || Box::pin(max_stale()),
    ),
    (
        "5.2.1.5",
        "request no-store: nothing of the exchange is stored",
        || Box::pin(request_no_store()),
    ),
    (
        "5.2.1.7",
        "request only-if-cached: 504 when nothing usable is stored, never upstream",
        || Box::pin(only_if_cached()),
    ),
    (
        "5.2.2.4 / 5.2",
        "response No-Cache (any case): stored, validated on every use",
        || Box::pin(response_no_cache_any_case()),
    ),
    (
        "5.2.2.3",
        "must-understand with a known status overrides no-store",
        || Box::pin(must_understand()),
    ),
    (
        "4",
        "a later response that may not be stored is not replaced by the stale one",
        || Box::pin(later_no_store()),
    ),
    ("5.3", "an invalid Expires means already expired", || {
        Box::pin(invalid_expires())
    }),
    ("5.1", "a list-valued Age counts its first member", || {
        Box::pin(age_list())
    }),
    (
        "4.2.1",
        "max-age with junk is invalid: stale at once",
        || Box::pin(max_age_junk()),
    ),
    (
        "3.5",
        "with Authorization, stored only if public, s-maxage or must-revalidate",
        || Box::pin(authorization()),
    ),
    (
        "4.1",
        "Vary: equivalent request fields share a variant",
        || Box::pin(vary_normalised()),
    ),
    (
        "3.4",
        "a part (206) is never stored or served as the whole",
        || Box::pin(part_not_whole()),
    ),
    (
        "4.3.2",
        "with nothing stored, the viewer's validators go upstream and its 304 comes back",
        || Box::pin(miss_forwards_validators()),
    ),
    (
        "4.3.2 / RFC 9110 13.1.2",
        "a stored object answers If-None-Match by weak comparison",
        || Box::pin(weak_etags()),
    ),
    (
        "4.3.2 / RFC 9110 13.1.3",
        "a stored object answers If-Modified-Since by its Last-Modified",
        || Box::pin(if_modified_since()),
    ),
];

#[tokio::test]
async fn rfc9111_requirements() {
    let mut failed = Vec::new();
    for (section, requirement, row) in ROWS {
        if let Err(e) = tokio::spawn(row()).await {
            failed.push(format!("RFC 9111 {section}: {requirement}: {e}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} rows failed:\n{}",
        failed.len(),
        ROWS.len(),
        failed.join("\n")
    );
}

/// An origin answering `/o` with `body` and `headers`, and an edge in
/// front of it.
async fn setup(body: &str, headers: &[(&str, &str)]) -> (Origin, TestEdge) {
    let origin = Origin::start().await;
    origin.set("/o", Reply::ok(body.to_string(), headers));
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    (origin, edge)
}

async fn get(edge: &TestEdge, headers: &[(&str, &str)]) -> common::Got {
    request(edge.addr(), "GET", "example.test", "/o", headers).await
}

/// Fetches `/o` once and waits until it is stored.
async fn stored(edge: &TestEdge) {
    until_hit_on(edge.addr(), "example.test", "/o").await;
}

const FRESH: [(&str, &str); 2] = [("cache-control", "max-age=60"), ("etag", "\"v1\"")];

async fn request_no_cache() {
    let (origin, edge) = setup("body", &FRESH).await;
    stored(&edge).await;
    let got = get(&edge, &[("cache-control", "no-cache")]).await;
    assert_eq!(got.cache(), "REVALIDATED");
    assert_eq!(origin.last("/o").headers["if-none-match"], "\"v1\"");
    assert_eq!(got.text(), "body");
}

async fn pragma() {
    let (origin, edge) = setup("body", &FRESH).await;
    stored(&edge).await;
    let hits = origin.hits("/o");
    assert_eq!(
        get(&edge, &[("pragma", "no-cache")]).await.cache(),
        "REVALIDATED"
    );
    let both = [("pragma", "no-cache"), ("cache-control", "max-stale=5")];
    assert_eq!(get(&edge, &both).await.cache(), "HIT");
    assert_eq!(origin.hits("/o"), hits + 1);
}

async fn request_max_age() {
    let (origin, edge) = setup(
        "body",
        &[
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("age", "30"),
        ],
    )
    .await;
    stored(&edge).await;
    let hits = origin.hits("/o");
    assert_eq!(
        get(&edge, &[("cache-control", "max-age=100")])
            .await
            .cache(),
        "HIT"
    );
    assert_eq!(origin.hits("/o"), hits);
    assert_eq!(
        get(&edge, &[("cache-control", "max-age=10")]).await.cache(),
        "REVALIDATED"
    );
}

async fn min_fresh() {
    let (_origin, edge) = setup("body", &FRESH).await;
    stored(&edge).await;
    assert_eq!(
        get(&edge, &[("cache-control", "min-fresh=30")])
            .await
            .cache(),
        "HIT"
    );
    assert_eq!(
        get(&edge, &[("cache-control", "min-fresh=1000")])
            .await
            .cache(),
        "REVALIDATED"
    );
}

async fn max_stale() {
    let origin = Origin::start().await;
    origin.set(
        "/o",
        Reply::ok("old", &[("cache-control", "max-age=1"), ("etag", "\"v1\"")]),
    );
    origin.set(
        "/strict",
        Reply::ok(
            "old",
            &[
                ("cache-control", "max-age=1, must-revalidate"),
                ("etag", "\"v1\""),
            ],
        ),
    );
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    stored(&edge).await;
    until_hit_on(edge.addr(), "example.test", "/strict").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    origin.set(
        "/o",
        Reply::ok("new", &[("cache-control", "max-age=1")]).delayed(Duration::from_secs(1)),
    );
    let got = get(&edge, &[("cache-control", "max-stale")]).await;
    assert_eq!((got.cache(), got.text().as_str()), ("STALE", "old"));
    let bounded = get(&edge, &[("cache-control", "max-stale=60")]).await;
    assert_eq!(bounded.text(), "old");
    let strict = request(
        edge.addr(),
        "GET",
        "example.test",
        "/strict",
        &[("cache-control", "max-stale")],
    )
    .await;
    assert_eq!(
        strict.cache(),
        "REVALIDATED",
        "must-revalidate is not served stale"
    );
}

async fn request_no_store() {
    let (origin, edge) = setup("body", &FRESH).await;
    let got = get(&edge, &[("cache-control", "no-store")]).await;
    assert_eq!(got.cache(), "MISS");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(&edge, &[]).await.cache(), "MISS", "nothing was stored");
    assert_eq!(origin.hits("/o"), 2);
}

async fn only_if_cached() {
    let (origin, edge) = setup("body", &FRESH).await;
    let got = get(&edge, &[("cache-control", "only-if-cached")]).await;
    assert_eq!(got.status, 504, "{}", got.text());
    assert_eq!(origin.hits("/o"), 0, "never upstream");
    stored(&edge).await;
    let got = get(&edge, &[("cache-control", "only-if-cached")]).await;
    assert_eq!((got.status, got.cache()), (200, "HIT"));
}

async fn response_no_cache_any_case() {
    let (origin, edge) = setup(
        "body",
        &[
            ("cache-control", "No-Cache, Max-Age=60"),
            ("etag", "\"v1\""),
        ],
    )
    .await;
    assert_eq!(get(&edge, &[]).await.cache(), "MISS");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = get(&edge, &[]).await;
    assert_eq!(got.cache(), "REVALIDATED", "stored, and validated on use");
    assert_eq!(origin.last("/o").headers["if-none-match"], "\"v1\"");
}

async fn must_understand() {
    let (_origin, edge) = setup(
        "body",
        &[("cache-control", "must-understand, no-store, max-age=60")],
    )
    .await;
    stored(&edge).await;
}

async fn later_no_store() {
    let (origin, edge) = setup("old", &[("cache-control", "max-age=1"), ("etag", "\"v1\"")]).await;
    stored(&edge).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    origin.set("/o", Reply::ok("new", &[("cache-control", "no-store")]));
    let got = get(&edge, &[]).await;
    assert_eq!((got.cache(), got.text().as_str()), ("EXPIRED", "new"));
    origin.set("/o", Reply::ok("newer", &[("cache-control", "no-store")]));
    let got = get(&edge, &[("cache-control", "max-stale")]).await;
    assert_eq!(
        got.text(),
        "newer",
        "the old copy is gone, even for max-stale"
    );
}

async fn invalid_expires() {
    let (origin, edge) = setup("body", &[("expires", "0")]).await;
    get(&edge, &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_ne!(get(&edge, &[]).await.cache(), "HIT");
    assert_eq!(origin.hits("/o"), 2);
}

async fn age_list() {
    let (_origin, edge) = setup(
        "body",
        &[("cache-control", "max-age=60"), ("age", "10, 20")],
    )
    .await;
    stored(&edge).await;
    let got = get(&edge, &[]).await;
    let age: u64 = got.header("age").parse().unwrap();
    assert!((10..20).contains(&age), "age {age}");
}

async fn max_age_junk() {
    let (origin, edge) = setup("body", &[("cache-control", "max-age=60abc")]).await;
    get(&edge, &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_ne!(get(&edge, &[]).await.cache(), "HIT");
    assert_eq!(origin.hits("/o"), 2);
}

async fn authorization() {
    let origin = Origin::start().await;
    origin.set(
        "/o",
        Reply::ok("private", &[("cache-control", "max-age=60")]),
    );
    origin.set(
        "/public",
        Reply::ok("public", &[("cache-control", "public, max-age=60")]),
    );
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    let auth = [("authorization", "Bearer x")];
    get(&edge, &auth).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(&edge, &auth).await.cache(), "MISS");
    request(edge.addr(), "GET", "example.test", "/public", &auth).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = request(edge.addr(), "GET", "example.test", "/public", &auth).await;
    assert_eq!(got.cache(), "HIT");
}

async fn vary_normalised() {
    let (origin, edge) = setup(
        "body",
        &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
    )
    .await;
    get(&edge, &[("accept-language", "en-US,fr;q=0.5")]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = get(&edge, &[("accept-language", "fr; q=0.5, en-us")]).await;
    assert_eq!(got.cache(), "HIT");
    let other = get(&edge, &[("accept-language", "fr")]).await;
    assert_eq!(other.cache(), "MISS");
    assert_eq!(origin.hits("/o"), 2);
}

async fn miss_forwards_validators() {
    let (origin, edge) = setup("body", &FRESH).await;
    let got = get(&edge, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(got.status, 304);
    assert_eq!(origin.last("/o").headers["if-none-match"], "\"v1\"");
    let got = get(&edge, &[("if-none-match", "\"v0\"")]).await;
    assert_eq!((got.status, got.text().as_str()), (200, "body"));
    stored(&edge).await;
    assert_eq!(origin.hits("/o"), 2, "the 200 was stored");
}

async fn weak_etags() {
    let (_origin, edge) = setup(
        "body",
        &[("cache-control", "max-age=60"), ("etag", "W/\"v1\"")],
    )
    .await;
    stored(&edge).await;
    assert_eq!(get(&edge, &[("if-none-match", "\"v1\"")]).await.status, 304);
    assert_eq!(
        get(&edge, &[("if-none-match", "W/\"v1\", \"x\"")])
            .await
            .status,
        304
    );
    assert_eq!(get(&edge, &[("if-none-match", "\"v2\"")]).await.status, 200);
}

async fn if_modified_since() {
    let modified = "Tue, 01 Dec 2026 10:00:00 GMT";
    let (_origin, edge) = setup(
        "body",
        &[("cache-control", "max-age=60"), ("last-modified", modified)],
    )
    .await;
    stored(&edge).await;
    let later = [("if-modified-since", "Wed, 02 Dec 2026 10:00:00 GMT")];
    assert_eq!(get(&edge, &later).await.status, 304);
    let earlier = [("if-modified-since", "Mon, 30 Nov 2026 10:00:00 GMT")];
    let got = get(&edge, &earlier).await;
    assert_eq!((got.status, got.text().as_str()), (200, "body"));
}

async fn part_not_whole() {
    let origin = Origin::start().await;
    let mut part = Reply::ok(
        "bod",
        &[
            ("cache-control", "max-age=60"),
            ("content-range", "bytes 0-2/4"),
        ],
    );
    part.status = 206;
    origin.set("/o", part);
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    assert_eq!(get(&edge, &[]).await.status, 206);
    tokio::time::sleep(Duration::from_millis(200)).await;
    origin.set("/o", Reply::ok("body", &[("cache-control", "max-age=60")]));
    let got = get(&edge, &[]).await;
    assert_eq!((got.status, got.text().as_str()), (200, "body"));
}
