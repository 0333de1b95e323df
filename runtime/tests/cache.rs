//! RFC 9111 caching through a real edge in front of a real origin.

mod common;

use std::time::Duration;

use common::{config, edge, get, request, settle, Origin, Reply};

async fn setup(behavior: &str) -> (Origin, common::TestEdge) {
    let origin = Origin::start().await;
    let edge = edge(&config(&origin.url(), "", behavior, "")).await;
    (origin, edge)
}

#[tokio::test]
async fn a_miss_is_stored_then_served_as_a_hit_with_age() {
    let (origin, edge) = setup("").await;
    origin.set(
        "/a.css",
        Reply::ok(
            "body{}",
            &[
                ("cache-control", "max-age=60"),
                ("connection", "x-hop"),
                ("x-hop", "1"),
            ],
        ),
    );
    let first = get(edge.addr(), "/a.css").await;
    assert_eq!(
        (first.status, first.cache(), first.text().as_str()),
        (200, "MISS", "body{}")
    );
    assert_eq!(
        first.header("x-hop"),
        "",
        "hop-by-hop fields named in Connection are stripped"
    );
    settle().await;
    let second = get(edge.addr(), "/a.css").await;
    assert_eq!(
        (second.status, second.cache(), second.text().as_str()),
        (200, "HIT", "body{}")
    );
    assert!(
        second.header("age").parse::<u64>().is_ok(),
        "Age is sent on hits"
    );
    assert_eq!(origin.hits("/a.css"), 1);
    let seen = origin.last("/a.css");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["via"], "1.1 parapet-test1");
    assert_eq!(seen.headers["host"], "example.test");
}

#[tokio::test]
async fn head_conditional_and_range_requests_are_answered_from_the_cached_get() {
    let (origin, edge) = setup("").await;
    let body = "0123456789abcdef";
    origin.set(
        "/r",
        Reply::ok(
            body,
            &[
                ("cache-control", "max-age=60"),
                ("etag", "\"v1\""),
                ("last-modified", "Mon, 02 Nov 2026 10:00:00 GMT"),
            ],
        ),
    );
    get(edge.addr(), "/r").await;
    settle().await;
    let head = request(edge.addr(), "HEAD", "example.test", "/r", &[]).await;
    assert_eq!(
        (head.status, head.cache(), head.body.len()),
        (200, "HIT", 0)
    );
    assert_eq!(head.header("content-length"), "16");
    let not_modified = request(
        edge.addr(),
        "GET",
        "example.test",
        "/r",
        &[("if-none-match", "\"v1\"")],
    )
    .await;
    assert_eq!((not_modified.status, not_modified.body.len()), (304, 0));
    assert_eq!(not_modified.header("etag"), "\"v1\"");
    let since = request(
        edge.addr(),
        "GET",
        "example.test",
        "/r",
        &[("if-modified-since", "Tue, 03 Nov 2026 10:00:00 GMT")],
    )
    .await;
    assert_eq!(since.status, 304);
    let changed = request(
        edge.addr(),
        "GET",
        "example.test",
        "/r",
        &[("if-none-match", "\"v0\"")],
    )
    .await;
    assert_eq!((changed.status, changed.text().as_str()), (200, body));
    let part = request(
        edge.addr(),
        "GET",
        "example.test",
        "/r",
        &[("range", "bytes=2-5")],
    )
    .await;
    assert_eq!((part.status, part.text().as_str()), (206, "2345"));
    assert_eq!(part.header("content-range"), "bytes 2-5/16");
    let suffix = request(
        edge.addr(),
        "GET",
        "example.test",
        "/r",
        &[("range", "bytes=-3")],
    )
    .await;
    assert_eq!((suffix.status, suffix.text().as_str()), (206, "def"));
    let whole = request(
        edge.addr(),
        "GET",
        "example.test",
        "/r",
        &[("range", "bytes=-500")],
    )
    .await;
    assert_eq!(
        (whole.status, whole.text().as_str()),
        (200, body),
        "a suffix longer than the object is all of it"
    );
    let beyond = request(
        edge.addr(),
        "GET",
        "example.test",
        "/r",
        &[("range", "bytes=100-200")],
    )
    .await;
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), "bytes */16");
    let stale_if_range = request(
        edge.addr(),
        "GET",
        "example.test",
        "/r",
        &[("range", "bytes=0-1"), ("if-range", "\"old\"")],
    )
    .await;
    assert_eq!(
        (stale_if_range.status, stale_if_range.body.len()),
        (200, 16)
    );
    assert_eq!(origin.hits("/r"), 1, "all answered from one stored object");
}

#[tokio::test]
async fn vary_keeps_one_variant_per_header_value() {
    let (origin, edge) = setup("").await;
    origin.set(
        "/v",
        Reply::ok(
            "v",
            &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
        ),
    );
    let en = [("accept-language", "en")];
    let de = [("accept-language", "de")];
    assert_eq!(
        request(edge.addr(), "GET", "example.test", "/v", &en)
            .await
            .cache(),
        "MISS"
    );
    settle().await;
    assert_eq!(
        request(edge.addr(), "GET", "example.test", "/v", &de)
            .await
            .cache(),
        "MISS"
    );
    settle().await;
    assert_eq!(
        request(edge.addr(), "GET", "example.test", "/v", &en)
            .await
            .cache(),
        "HIT"
    );
    assert_eq!(
        request(edge.addr(), "GET", "example.test", "/v", &de)
            .await
            .cache(),
        "HIT"
    );
    assert_eq!(origin.hits("/v"), 2);
}

#[tokio::test]
async fn private_no_store_and_cookies_are_not_stored() {
    let (origin, edge) = setup("").await;
    origin.set(
        "/p",
        Reply::ok("p", &[("cache-control", "private, max-age=60")]),
    );
    origin.set("/n", Reply::ok("n", &[("cache-control", "no-store")]));
    origin.set(
        "/c",
        Reply::ok(
            "c",
            &[("cache-control", "max-age=60"), ("set-cookie", "s=1")],
        ),
    );
    origin.set(
        "/pc",
        Reply::ok(
            "pc",
            &[
                ("cache-control", "public, max-age=60"),
                ("set-cookie", "s=1"),
            ],
        ),
    );
    for path in ["/p", "/n", "/c", "/pc"] {
        assert_eq!(get(edge.addr(), path).await.cache(), "MISS");
        settle().await;
        assert_eq!(get(edge.addr(), path).await.cache(), "MISS", "{path}");
        assert_eq!(origin.hits(path), 2, "{path}");
    }
}

#[tokio::test]
async fn stale_objects_are_revalidated_with_their_etag() {
    let (origin, edge) = setup("").await;
    origin.set(
        "/e",
        Reply::ok("e", &[("cache-control", "max-age=1"), ("etag", "\"e1\"")]),
    );
    assert_eq!(get(edge.addr(), "/e").await.cache(), "MISS");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let revalidated = get(edge.addr(), "/e").await;
    assert_eq!(
        (revalidated.cache(), revalidated.text().as_str()),
        ("REVALIDATED", "e")
    );
    assert_eq!(origin.last("/e").headers["if-none-match"], "\"e1\"");
    assert_eq!(
        get(edge.addr(), "/e").await.cache(),
        "HIT",
        "a 304 refreshes the object"
    );
    origin.set(
        "/e",
        Reply::ok("e2", &[("cache-control", "max-age=1"), ("etag", "\"e2\"")]),
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = get(edge.addr(), "/e").await;
    assert_eq!(
        (expired.cache(), expired.text().as_str()),
        ("EXPIRED", "e2")
    );
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once_in_the_background() {
    let (origin, edge) = setup("").await;
    origin.set(
        "/s",
        Reply::ok(
            "old",
            &[("cache-control", "max-age=1, stale-while-revalidate=30")],
        ),
    );
    get(edge.addr(), "/s").await;
    settle().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    origin.set(
        "/s",
        Reply::ok("new", &[("cache-control", "max-age=60")]).delayed(Duration::from_millis(200)),
    );
    let (a, b) = tokio::join!(get(edge.addr(), "/s"), get(edge.addr(), "/s"));
    assert_eq!((a.cache(), a.text().as_str()), ("STALE", "old"));
    assert_eq!((b.cache(), b.text().as_str()), ("STALE", "old"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let refreshed = get(edge.addr(), "/s").await;
    assert_eq!(
        (refreshed.cache(), refreshed.text().as_str()),
        ("HIT", "new")
    );
    assert_eq!(origin.hits("/s"), 2, "one fetch, one background refresh");
}

#[tokio::test]
async fn stale_if_error_covers_origin_errors_and_outages() {
    let (origin, edge) = setup("").await;
    origin.set(
        "/x",
        Reply::ok("kept", &[("cache-control", "max-age=1, stale-if-error=60")]),
    );
    get(edge.addr(), "/x").await;
    settle().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut failing = Reply::ok("boom", &[]);
    failing.status = 503;
    origin.set("/x", failing);
    let stale = get(edge.addr(), "/x").await;
    assert_eq!(
        (stale.status, stale.cache(), stale.text().as_str()),
        (200, "STALE", "kept")
    );
    origin.set("/y", Reply::ok("y", &[("cache-control", "max-age=1")]));
    get(edge.addr(), "/y").await;
    settle().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut failing = Reply::ok("down", &[]);
    failing.status = 500;
    origin.set("/y", failing);
    let passed_on = get(edge.addr(), "/y").await;
    assert_eq!(
        (passed_on.status, passed_on.text().as_str()),
        (500, "down"),
        "no stale-if-error: the error goes through"
    );
}

#[tokio::test]
async fn cdn_cache_control_and_surrogate_control_target_the_edge_and_are_stripped() {
    let (origin, edge) = setup("").await;
    origin.set(
        "/t",
        Reply::ok(
            "t",
            &[
                ("cache-control", "no-cache"),
                ("cdn-cache-control", "max-age=60"),
                ("surrogate-key", "a b"),
            ],
        ),
    );
    origin.set("/u", Reply::ok("u", &[("surrogate-control", "max-age=60")]));
    for path in ["/t", "/u"] {
        let first = get(edge.addr(), path).await;
        assert_eq!(first.header("cdn-cache-control"), "");
        assert_eq!(first.header("surrogate-control"), "");
        assert_eq!(first.header("surrogate-key"), "");
        settle().await;
        let second = get(edge.addr(), path).await;
        assert_eq!(second.cache(), "HIT", "{path}");
    }
    assert_eq!(
        get(edge.addr(), "/t").await.header("cache-control"),
        "no-cache",
        "viewers keep the origin's Cache-Control"
    );
}

#[tokio::test]
async fn behavior_ttls_bound_the_origins_freshness() {
    let (origin, edge) = setup("cache = { min_ttl = 0, default_ttl = 1, max_ttl = 1 }").await;
    origin.set("/silent", Reply::ok("s", &[]));
    origin.set(
        "/long",
        Reply::ok("l", &[("cache-control", "max-age=3600")]),
    );
    for path in ["/silent", "/long"] {
        get(edge.addr(), path).await;
        settle().await;
        assert_eq!(get(edge.addr(), path).await.cache(), "HIT", "{path}");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_ne!(
        get(edge.addr(), "/long").await.cache(),
        "HIT",
        "max_ttl caps an hour to a second"
    );
    assert_ne!(
        get(edge.addr(), "/silent").await.cache(),
        "HIT",
        "default_ttl: one second"
    );
}

#[tokio::test]
async fn concurrent_misses_collapse_into_one_origin_request() {
    let (origin, edge) = setup("").await;
    origin.set(
        "/slow",
        Reply::ok("shared", &[("cache-control", "max-age=60")]).delayed(Duration::from_millis(300)),
    );
    let requests = (0..10).map(|_| get(edge.addr(), "/slow"));
    let answers = futures_util::future::join_all(requests).await;
    assert!(answers
        .iter()
        .all(|a| a.status == 200 && a.text() == "shared"));
    assert_eq!(
        origin.hits("/slow"),
        1,
        "one origin request for ten viewers"
    );
    let caches: Vec<&str> = answers.iter().map(|a| a.cache()).collect();
    assert_eq!(
        caches.iter().filter(|c| **c == "MISS").count(),
        1,
        "{caches:?}"
    );
}

#[tokio::test]
async fn an_uncacheable_answer_releases_the_waiting_requests_to_the_origin() {
    // An origin that sends `private` headers at once and the body 500 ms
    // later: followers must be released at the headers, not the body's end.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_addr = listener.local_addr().unwrap();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let head =
                        b"HTTP/1.1 200 OK\r\ncache-control: private\r\ncontent-length: 4\r\n\r\n";
                    if stream.write_all(head).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if stream.write_all(b"mine").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let edge = edge(&config(&format!("http://{origin_addr}"), "", "", "")).await;
    let started = std::time::Instant::now();
    let requests = (0..4).map(|_| get(edge.addr(), "/private"));
    let answers = futures_util::future::join_all(requests).await;
    assert!(answers
        .iter()
        .all(|a| a.status == 200 && a.text() == "mine"));
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst),
        4,
        "each went to the origin"
    );
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "released at the headers, not after the leader's body: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_response_above_the_object_limit_is_served_but_not_stored() {
    let (origin, edge) = setup("").await;
    let big = vec![b'x'; 2 << 20]; // the test config stores up to 1 MiB
    origin.set(
        "/big",
        Reply::ok(big.clone(), &[("cache-control", "max-age=60")]),
    );
    let first = get(edge.addr(), "/big").await;
    assert_eq!((first.status, first.body.len()), (200, big.len()));
    settle().await;
    assert_eq!(get(edge.addr(), "/big").await.cache(), "MISS");
    assert_eq!(origin.hits("/big"), 2);
}

#[tokio::test]
async fn unsafe_methods_pass_through_and_invalidate_the_url() {
    let (origin, edge) = setup("").await;
    origin.set("/item", Reply::ok("v1", &[("cache-control", "max-age=60")]));
    get(edge.addr(), "/item").await;
    settle().await;
    let post = request(edge.addr(), "POST", "example.test", "/item", &[]).await;
    assert_eq!((post.status, post.cache()), (200, "BYPASS"));
    assert_eq!(origin.last("/item").method, "POST");
    assert_eq!(
        get(edge.addr(), "/item").await.cache(),
        "MISS",
        "the POST invalidated the stored GET"
    );
}

#[tokio::test]
async fn a_purge_during_a_miss_keeps_its_answer_out_of_the_cache() {
    let (origin, edge) = setup("").await;
    origin.set(
        "/racy",
        Reply::ok("old", &[("cache-control", "max-age=60")]).delayed(Duration::from_millis(300)),
    );
    let fetching = tokio::spawn(get(edge.addr(), "/racy"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let purge = common::admin_post(
        edge.admin(),
        "/purge",
        "secret",
        r#"{"url": "example.test/racy"}"#,
    )
    .await;
    assert_eq!(purge.status, 200);
    assert_eq!(
        fetching.await.unwrap().text(),
        "old",
        "the viewer still gets its answer"
    );
    settle().await;
    assert_eq!(
        get(edge.addr(), "/racy").await.cache(),
        "MISS",
        "not stored over the purge"
    );
}

#[tokio::test]
async fn concurrent_requests_for_a_stale_object_revalidate_once() {
    let (origin, edge) = setup("").await;
    origin.set(
        "/busy",
        Reply::ok(
            "busy",
            &[("cache-control", "max-age=1"), ("etag", "\"b1\"")],
        )
        .delayed(Duration::from_millis(200)),
    );
    get(edge.addr(), "/busy").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let requests = (0..6).map(|_| get(edge.addr(), "/busy"));
    let answers = futures_util::future::join_all(requests).await;
    assert!(answers
        .iter()
        .all(|a| a.status == 200 && a.text() == "busy"));
    let caches: Vec<&str> = answers.iter().map(|a| a.cache()).collect();
    assert_eq!(
        caches.iter().filter(|c| **c == "REVALIDATED").count(),
        1,
        "{caches:?}"
    );
    assert_eq!(
        origin.hits("/busy"),
        2,
        "one fetch, one revalidation for six viewers"
    );
}
