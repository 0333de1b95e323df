//! Body-aware response hooks against a real origin: `on-origin-response`
//! gets the body within the plugin's limit and what it returns is what the
//! cache stores (the `html-inject` example, once per fill, plain and
//! chunked origins, HTTP/1.1 and h2c); `on-viewer-response` gets the body on
//! misses too; larger bodies stream untouched and the plugins are told the
//! body was withheld (the `testbed` example's probe).

mod common;

use bytes::Bytes;
use common::{config, edge, get, plugins_dir, request, until_hit_on, Origin, Reply};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

const SNIPPET: &str = r#"<script src="/rum.js" defer></script>"#;
const PAGE: &str = "<html><head><title>Hi</title></head><body><p>Hello</p></body></html>";
const INJECTED: &str = r#"<html><head><title>Hi</title><script src="/rum.js" defer></script></head><body><p>Hello</p></body></html>"#;

/// An edge in front of `origin` running `html-inject` (body limit
/// `limit`) on the origin hooks.
async fn inject_edge(origin: &Origin, limit: usize) -> common::TestEdge {
    let extra = format!(
        r#"
[[distribution.plugin]]
name = "inject"
wasm = "{wasm}"
config = {{ snippet = '{SNIPPET}' }}
limits = {{ max_body_bytes = {limit} }}
"#,
        wasm = plugins_dir().join("html-inject.wasm").display(),
    );
    let behavior = r#"origin_request = ["inject"]
origin_response = ["inject"]"#;
    edge(&config(&origin.url(), "", behavior, &extra)).await
}

fn html(page: &str) -> Reply {
    Reply::ok(
        page.to_string(),
        &[
            ("content-type", "text/html; charset=utf-8"),
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
        ],
    )
}

#[tokio::test]
async fn a_page_is_rewritten_once_per_fill_and_hits_serve_the_rewritten_page() {
    let origin = Origin::start().await;
    origin.set("/page", html(PAGE));
    origin.set("/chunked", html(PAGE).chunked());
    let edge = inject_edge(&origin, 65536).await;
    for path in ["/page", "/chunked"] {
        let miss = request(
            edge.addr(),
            "GET",
            "example.test",
            path,
            &[("accept-encoding", "gzip, br")],
        )
        .await;
        assert_eq!((miss.status, miss.cache()), (200, "MISS"), "{path}");
        assert_eq!(miss.text(), INJECTED, "{path}: the snippet ends <head>");
        assert_eq!(
            miss.header("content-length"),
            INJECTED.len().to_string(),
            "{path}: framed for the rewritten body"
        );
        assert_eq!(miss.header("etag"), "W/\"v1\"", "{path}");
        assert!(
            !origin.last(path).headers.contains_key("accept-encoding"),
            "{path}: the plugin asked the origin for an uncompressed page"
        );
        until_hit_on(edge.addr(), "example.test", path).await;
        let hit = get(edge.addr(), path).await;
        assert_eq!(hit.cache(), "HIT");
        assert_eq!(hit.text(), INJECTED, "{path}: the cache stored the rewrite");
        assert_eq!(origin.hits(path), 1, "{path}: one fill, one rewrite");
    }
    // The same stored rewrite over h2c.
    let stream = TcpStream::connect(edge.addr()).await.unwrap();
    let (mut h2, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = h2
        .send_request(
            http::Request::get("http://example.test/page")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.headers()["x-cache"], "HIT");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, INJECTED.as_bytes());
}

#[tokio::test]
async fn a_background_refresh_stores_the_rewritten_page_too() {
    let origin = Origin::start().await;
    let fresh_for_a_second = |page: &str| {
        Reply::ok(
            page.to_string(),
            &[
                ("content-type", "text/html"),
                ("cache-control", "max-age=1, stale-while-revalidate=60"),
            ],
        )
    };
    origin.set("/page", fresh_for_a_second(PAGE));
    let edge = inject_edge(&origin, 65536).await;
    assert_eq!(get(edge.addr(), "/page").await.text(), INJECTED);
    let changed = PAGE.replace("Hello", "Hello again");
    origin.set("/page", fresh_for_a_second(&changed));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let stale = get(edge.addr(), "/page").await;
    assert_eq!(
        (stale.cache(), stale.text().as_str()),
        ("STALE", INJECTED),
        "the stale rewrite is served while the refresh runs"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let refreshed = loop {
        let got = get(edge.addr(), "/page").await;
        if got.text().contains("again") {
            break got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh never landed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        refreshed.text(),
        INJECTED.replace("Hello", "Hello again"),
        "the refresh stored the rewritten page, not the origin's"
    );
}

#[tokio::test]
async fn pages_over_the_body_limit_stream_past_untouched() {
    let origin = Origin::start().await;
    let large = format!(
        "<html><head></head><body>{}</body></html>",
        "x".repeat(4000)
    );
    origin.set("/large", html(&large));
    origin.set("/large-chunked", html(&large).chunked());
    origin.set("/small", html(PAGE));
    let edge = inject_edge(&origin, 1024).await;
    for path in ["/large", "/large-chunked"] {
        let miss = get(edge.addr(), path).await;
        assert_eq!((miss.status, miss.cache()), (200, "MISS"), "{path}");
        assert_eq!(miss.text(), large, "{path}: streamed as the origin sent it");
        assert_eq!(miss.header("etag"), "\"v1\"", "{path}: not rewritten");
        until_hit_on(edge.addr(), "example.test", path).await;
        assert_eq!(
            get(edge.addr(), path).await.text(),
            large,
            "{path}: stored whole"
        );
    }
    assert_eq!(
        get(edge.addr(), "/small").await.text(),
        INJECTED,
        "pages within the limit are still rewritten"
    );
}

#[tokio::test]
async fn response_hooks_see_the_body_on_misses_and_hits_or_are_told_it_was_withheld() {
    let origin = Origin::start().await;
    origin.set(
        "/small",
        Reply::ok("0123456789", &[("cache-control", "max-age=60")]),
    );
    origin.set(
        "/small-chunked",
        Reply::ok("0123456789", &[("cache-control", "max-age=60")]).chunked(),
    );
    origin.set(
        "/large",
        Reply::ok(vec![b'x'; 5000], &[("cache-control", "max-age=60")]),
    );
    origin.set(
        "/large-chunked",
        Reply::ok(vec![b'x'; 5000], &[("cache-control", "max-age=60")]).chunked(),
    );
    let extra = format!(
        r#"
[[distribution.plugin]]
name = "probe"
wasm = "{wasm}"
limits = {{ max_body_bytes = 1024 }}
"#,
        wasm = plugins_dir().join("testbed.wasm").display(),
    );
    let behavior = r#"origin_response = ["probe"]
viewer_response = ["probe"]"#;
    let edge = edge(&config(&origin.url(), "", behavior, &extra)).await;
    for (path, seen) in [
        ("/small", "10"),
        ("/small-chunked", "10"),
        ("/large", "withheld"),
        ("/large-chunked", "withheld"),
    ] {
        let miss = get(edge.addr(), path).await;
        assert_eq!(miss.cache(), "MISS", "{path}");
        assert_eq!(miss.header("x-probe-origin-body"), seen, "{path}");
        assert_eq!(miss.header("x-probe-viewer-body"), seen, "{path} on a miss");
        until_hit_on(edge.addr(), "example.test", path).await;
        let hit = get(edge.addr(), path).await;
        assert_eq!(hit.header("x-probe-viewer-body"), seen, "{path} on a hit");
        assert_eq!(hit.body.len(), miss.body.len(), "{path}");
    }
    let head = request(edge.addr(), "HEAD", "example.test", "/small", &[]).await;
    assert_eq!(
        head.header("x-probe-viewer-body"),
        "none",
        "a HEAD answer has no body to withhold"
    );
}
