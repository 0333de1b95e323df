//! RFC 9111 (HTTP caching) requirements, one row each with its section,
//! checked against a real edge in front of a real origin. Each row starts
//! its own origin and edge; the test runs every row and names each that
//! failed. Some rows pin behaviour the edge had before the table was
//! written (request `max-age`, `min-fresh`, `max-stale` and `no-store`
//! through `http-cache-semantics`, `Authorization`, the interim answers):
//! they stay as regression checks.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{admin_post, config, edge, request, until_hit_on, Origin, Reply, TestEdge};

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
    (
        "3.3 / 3.4",
        "ranges = parts: a 206 is stored, later ranges inside it come from it, never the whole; purges remove parts",
        || Box::pin(parts_serve_later_ranges()),
    ),
    (
        "3.4",
        "ranges = parts: parts that cover the object become the whole object",
        || Box::pin(parts_complete_the_object()),
    ),
    (
        "3.4",
        "ranges = parts: parts of another version (ETag) are not combined",
        || Box::pin(parts_of_another_version()),
    ),
    (
        "RFC 9110 15.2.1",
        "Expect: 100-continue gets 100 Continue, then the answer",
        || Box::pin(continue_before_the_body()),
    ),
    (
        "RFC 9110 15.2 / RFC 8297",
        "an origin's 103 Early Hints is neither stored nor the answer",
        || Box::pin(early_hints_from_the_origin()),
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

/// An origin that answers ranges of `/o` (ten bytes, a strong ETag), and
/// an edge that stores ranges as parts.
async fn parts_setup(body: &'static str, etag: &str) -> (Origin, TestEdge) {
    let origin = Origin::start().await;
    let headers = [("cache-control", "max-age=60"), ("etag", etag)];
    origin.set("/o", Reply::ok(body, &headers).with_ranges());
    let behavior = r#"cache = { ranges = "parts" }"#;
    let edge = edge(&config(&origin.url(), "", behavior, "")).await;
    (origin, edge)
}

/// Asks for `range` until the answer is a HIT (the part is stored once
/// its body is complete), and returns it.
async fn part_hit(edge: &TestEdge, range: &str) -> common::Got {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = get(edge, &[("range", range)]).await;
        if got.cache() == "HIT" {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{range} never became a HIT"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn parts_serve_later_ranges() {
    let (origin, edge) = parts_setup("0123456789", "\"v1\"").await;
    let got = get(&edge, &[("range", "bytes=2-6")]).await;
    assert_eq!((got.status, got.text().as_str()), (206, "23456"));
    assert_eq!(origin.last("/o").headers["range"], "bytes=2-6");
    part_hit(&edge, "bytes=2-6").await;
    let hits = origin.hits("/o");
    let inside = get(&edge, &[("range", "bytes=3-5")]).await;
    assert_eq!((inside.status, inside.text().as_str()), (206, "345"));
    assert_eq!(inside.header("content-range"), "bytes 3-5/10");
    assert_eq!(inside.cache(), "HIT");
    let past_the_end = get(&edge, &[("range", "bytes=20-")]).await;
    assert_eq!(past_the_end.status, 416);
    assert_eq!(past_the_end.header("content-range"), "bytes */10");
    assert_eq!(origin.hits("/o"), hits, "both answered from the part");
    let outside = get(&edge, &[("range", "bytes=5-8")]).await;
    assert_eq!((outside.status, outside.text().as_str()), (206, "5678"));
    assert_eq!(outside.cache(), "MISS");
    part_hit(&edge, "bytes=2-8").await; // the two parts, combined
                                        // A purge of the URL removes its parts.
    let purge = r#"{"url": "example.test/o"}"#;
    let purged = admin_post(edge.admin(), "/purge", "secret", purge).await;
    assert_eq!(purged.status, 200);
    let after = get(&edge, &[("range", "bytes=3-5")]).await;
    assert_eq!((after.cache(), after.text().as_str()), ("MISS", "345"));
    // A part is never the whole: a GET without a range goes upstream.
    let whole = get(&edge, &[]).await;
    assert_eq!((whole.status, whole.text().as_str()), (200, "0123456789"));
    assert_eq!(whole.cache(), "MISS");
    assert!(!origin.last("/o").headers.contains_key("range"));
}

async fn parts_complete_the_object() {
    let (origin, edge) = parts_setup("0123456789", "\"v1\"").await;
    part_hit(&edge, "bytes=0-4").await;
    part_hit(&edge, "bytes=5-9").await;
    let hits = origin.hits("/o");
    let whole = get(&edge, &[]).await;
    assert_eq!((whole.status, whole.text().as_str()), (200, "0123456789"));
    assert_eq!(whole.cache(), "HIT");
    assert_eq!(whole.header("content-length"), "10");
    let across = get(&edge, &[("range", "bytes=3-7")]).await;
    assert_eq!((across.status, across.text().as_str()), (206, "34567"));
    assert_eq!(
        origin.hits("/o"),
        hits,
        "answered from the completed object"
    );
}

async fn parts_of_another_version() {
    let (origin, edge) = parts_setup("0123456789", "\"v1\"").await;
    part_hit(&edge, "bytes=0-4").await;
    let headers = [("cache-control", "max-age=60"), ("etag", "\"v2\"")];
    origin.set("/o", Reply::ok("ABCDEFGHIJ", &headers).with_ranges());
    let hits = origin.hits("/o");
    part_hit(&edge, "bytes=5-9").await;
    // The v1 part went with the v2 part: bytes 0-4 are fetched again,
    // and the object is never a mix of the two versions.
    let first = get(&edge, &[("range", "bytes=0-4")]).await;
    assert_eq!((first.status, first.text().as_str()), (206, "ABCDE"));
    assert!(origin.hits("/o") > hits + 1, "the v1 part was not combined");
    until_hit_on(edge.addr(), "example.test", "/o").await;
    assert_eq!(get(&edge, &[]).await.text(), "ABCDEFGHIJ");
}

async fn continue_before_the_body() {
    let origin = Origin::start().await;
    origin.set("/form", Reply::ok("thanks", &[]));
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    let mut stream = tokio::net::TcpStream::connect(edge.addr()).await.unwrap();
    let head = "POST /form HTTP/1.1\r\nHost: example.test\r\nContent-Length: 5\r\n\
                Expect: 100-continue\r\nConnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut interim))
        .await
        .expect("an interim answer before the body")
        .unwrap();
    let interim = String::from_utf8_lossy(&interim[..n]);
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    stream.write_all(b"hello").await.unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert!(rest.ends_with("thanks"), "{rest}");
    assert_eq!(origin.last("/form").body, "hello");
}

async fn early_hints_from_the_origin() {
    // An origin that sends 103 Early Hints before each final answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head).await;
            let answer = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
                          HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\
                          Content-Length: 4\r\nConnection: close\r\n\r\nbody";
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    let edge = edge(&config(&url, "", "", "")).await;
    let first = get(&edge, &[]).await;
    assert_eq!((first.status, first.text().as_str()), (200, "body"));
    assert!(
        !first.headers.contains_key("link"),
        "the hint's fields are not the answer's"
    );
    stored(&edge).await;
    let hit = get(&edge, &[]).await;
    assert_eq!((hit.status, hit.text().as_str()), (200, "body"));
    assert!(!hit.headers.contains_key("link"));
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "stored once"
    );
}
