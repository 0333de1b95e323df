//! The admin API: purge (light and hard; by URL, prefix, tag,
//! distribution), prewarm, reload, metrics and health.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{admin_post, config, edge, get, request, Origin, Reply};

/// Requests each path of `example.test` until it is a HIT.
async fn until_hit(edge: SocketAddr, paths: &[&str]) {
    for path in paths {
        common::until_hit_on(edge, "example.test", path).await;
    }
}

async fn cached(origin: &Origin, edge: &common::TestEdge, paths: &[(&str, &str)]) {
    for (path, tags) in paths {
        origin.set(
            path,
            Reply::ok(
                path.to_string(),
                &[("cache-control", "max-age=600"), ("surrogate-key", tags)],
            ),
        );
        assert_eq!(get(edge.addr(), path).await.cache(), "MISS");
    }
    let paths: Vec<&str> = paths.iter().map(|(path, _)| *path).collect();
    until_hit(edge.addr(), &paths).await;
}

fn purged(answer: &common::Got) -> u64 {
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    json["purged"].as_u64().unwrap()
}

#[tokio::test]
async fn hard_purges_by_url_prefix_tag_and_distribution_report_counts() {
    let origin = Origin::start().await;
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    let paths = [
        ("/img/1.png", "img"),
        ("/img/2.png", "img p2"),
        ("/css/a.css", "css"),
        ("/index.html", "page"),
    ];
    cached(&origin, &edge, &paths).await;
    let admin = edge.admin();
    let url = admin_post(
        admin,
        "/purge",
        "secret",
        r#"{"url": "http://Example.test/index.html"}"#,
    )
    .await;
    assert_eq!(purged(&url), 1);
    assert_eq!(get(edge.addr(), "/index.html").await.cache(), "MISS");
    let prefix = admin_post(
        admin,
        "/purge",
        "secret",
        r#"{"prefix": "example.test/img/"}"#,
    )
    .await;
    assert_eq!(purged(&prefix), 2);
    assert_eq!(get(edge.addr(), "/img/1.png").await.cache(), "MISS");
    assert_eq!(get(edge.addr(), "/css/a.css").await.cache(), "HIT");
    let tag = admin_post(admin, "/purge", "secret", r#"{"tag": "css"}"#).await;
    assert_eq!(purged(&tag), 1);
    assert_eq!(get(edge.addr(), "/css/a.css").await.cache(), "MISS");
    until_hit(edge.addr(), &["/index.html", "/img/1.png", "/css/a.css"]).await;
    let all = admin_post(admin, "/purge", "secret", r#"{"distribution": "site"}"#).await;
    assert_eq!(
        purged(&all),
        3,
        "index.html, 1.png and a.css were cached again above"
    );
}

#[tokio::test]
async fn a_light_purge_serves_stale_once_while_it_refreshes() {
    let origin = Origin::start().await;
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    cached(&origin, &edge, &[("/news", "n")]).await;
    origin.set(
        "/news",
        Reply::ok("fresh news", &[("cache-control", "max-age=600")]),
    );
    let soft = admin_post(
        edge.admin(),
        "/purge",
        "secret",
        r#"{"url": "example.test/news", "soft": true}"#,
    )
    .await;
    assert_eq!(purged(&soft), 1);
    let stale = get(edge.addr(), "/news").await;
    assert_eq!((stale.cache(), stale.text().as_str()), ("STALE", "/news"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = get(edge.addr(), "/news").await;
    assert_eq!(
        (fresh.cache(), fresh.text().as_str()),
        ("HIT", "fresh news")
    );
}

#[tokio::test]
async fn purge_and_prewarm_need_the_bearer_token_and_well_formed_bodies() {
    let origin = Origin::start().await;
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    let admin = edge.admin();
    let wrong = admin_post(admin, "/purge", "guess", r#"{"url": "example.test/"}"#).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.header("www-authenticate"), "Bearer");
    assert_eq!(
        admin_post(admin, "/prewarm", "", r#"{"urls": []}"#)
            .await
            .status,
        401
    );
    assert_eq!(admin_post(admin, "/reload", "nope", "").await.status, 401);
    let two = admin_post(admin, "/purge", "secret", r#"{"url": "a", "tag": "b"}"#).await;
    assert_eq!(two.status, 400);
    assert!(two.text().contains("exactly one"), "{}", two.text());
    let unknown = admin_post(admin, "/purge", "secret", r#"{"path": "/"}"#).await;
    assert_eq!(unknown.status, 400);
    assert!(
        unknown.text().contains("unknown field `path`"),
        "{}",
        unknown.text()
    );
}

#[tokio::test]
async fn prewarm_fetches_urls_so_viewers_hit() {
    let origin = Origin::start().await;
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    origin.set(
        "/warm1",
        Reply::ok("1", &[("cache-control", "max-age=600")]),
    );
    origin.set(
        "/warm2",
        Reply::ok("2", &[("cache-control", "max-age=600")]),
    );
    let answer = admin_post(
        edge.admin(),
        "/prewarm",
        "secret",
        r#"{"urls": ["http://example.test/warm1", "http://example.test/warm2", "http://example.test/missing", "not a url"]}"#,
    )
    .await;
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(json["warmed"], 2, "{json}");
    assert_eq!(json["failed"].as_array().unwrap().len(), 2, "{json}");
    until_hit(edge.addr(), &["/warm1", "/warm2"]).await;
    // Viewers hit what the prewarm stored: the origin saw one fetch each.
    assert_eq!(origin.hits("/warm1"), 1);
    assert_eq!(origin.hits("/warm2"), 1);
}

#[tokio::test]
async fn metrics_and_health_are_served_without_a_token() {
    let origin = Origin::start().await;
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    origin.set("/m", Reply::ok("m", &[("cache-control", "max-age=60")]));
    get(edge.addr(), "/m").await;
    let health = request(edge.admin(), "GET", "admin", "/healthz", &[]).await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    let metrics = request(edge.admin(), "GET", "admin", "/metrics", &[]).await;
    let text = metrics.text();
    for name in [
        "parapet_requests_total",
        "parapet_request_duration_seconds",
        "parapet_upstream_duration_seconds",
        "parapet_cache_bytes",
        "parapet_cache_objects",
        "parapet_cache_index_bytes",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert!(text.contains(r#"cache="MISS""#), "{text}");
}

#[tokio::test]
async fn a_reload_swaps_the_config_and_a_bad_one_keeps_the_old() {
    let origin = Origin::start().await;
    let other = Origin::start().await;
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    origin.set("/who", Reply::ok("first", &[]));
    other.set("/who", Reply::ok("second", &[]));
    assert_eq!(get(edge.addr(), "/who").await.text(), "first");
    std::fs::write(&edge.config_path, "this is not toml").unwrap();
    let refused = admin_post(edge.admin(), "/reload", "secret", "").await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.text().contains("edge.toml"),
        "names the file: {}",
        refused.text()
    );
    assert_eq!(
        get(edge.addr(), "/who").await.text(),
        "first",
        "the old config still serves"
    );
    std::fs::write(&edge.config_path, config(&other.url(), "", "", "")).unwrap();
    let reloaded = admin_post(edge.admin(), "/reload", "secret", "").await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    assert_eq!(get(edge.addr(), "/who").await.text(), "second");
}
