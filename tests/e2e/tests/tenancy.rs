//! Two customers on one edge in controller mode, every part a real process:
//! the attacker (`evil`) tries what the tenancy model forbids — purges and
//! prewarms of the victim's names, origins on internal addresses, plugin
//! limits above the maxima, a plugin that refuses its configuration,
//! oversized configuration and KV data, names under the victim's wildcard
//! — and is refused each time, while the victim's cached objects stay
//! HITs, its configuration changes still reach the edge, and its hits stay
//! fast. Run with the embedded store and with MongoDB.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parapet_e2e::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_embedded_store() {
    matrix(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mongodb() {
    let Some(mongo) = parapet_e2e::mongo::start() else {
        return;
    };
    matrix(Some(mongo.uri("parapet_tenancy"))).await;
}

/// `x-cache` and a header of `path` on `host` through `edge`.
async fn view(
    http: &reqwest::Client,
    edge: SocketAddr,
    host: &str,
    path: &str,
) -> Option<(u16, String, String)> {
    let response = http
        .get(format!("http://{edge}{path}"))
        .header("host", host)
        .send()
        .await
        .ok()?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let seen = (
        response.status().as_u16(),
        header("x-cache"),
        header("content-security-policy"),
    );
    let _ = response.bytes().await;
    Some(seen)
}

fn victim_spec(origin: &str, csp: &str) -> Value {
    json!({
        "domains": ["www.victim.test", "*.cdn.victim.test"],
        "origin": [{"url": origin}],
        "plugin": [{"name": "headers", "wasm": "header-filter",
                    "config": {"response": {"csp": csp, "overwrite": true}}}],
        "behavior": [{"path": "*", "cache": {"default_ttl": 300}, "viewer_response": ["headers"]}],
    })
}

fn evil_spec(origin: &str) -> Value {
    json!({
        "domains": ["evil.test"],
        "origin": [{"url": origin}],
        "behavior": [{"path": "*", "cache": {"default_ttl": 300}}],
    })
}

async fn matrix(mongodb_uri: Option<String>) {
    let cluster = Cluster::start(mongodb_uri, 300);
    let http = cluster.http.clone();
    let victim = cluster.customer("victim").await;
    let evil = cluster.customer("evil").await;
    let upload = |token: String, name: &'static str| {
        let cluster = &cluster;
        async move {
            let bytes = std::fs::read(plugin_component(name)).expect("plugin");
            let response = cluster
                .http
                .post(format!("{}/v1/plugins/{name}", cluster.rest))
                .bearer_auth(token)
                .header("content-type", "application/wasm")
                .body(bytes)
                .send()
                .await
                .expect("upload");
            assert_eq!(response.status().as_u16(), 201);
        }
    };
    upload(victim.clone(), "header-filter").await;
    upload(evil.clone(), "testbed").await;
    let apply = |token: &str, id: &str, spec: Value| {
        let cluster = &cluster;
        let (token, path) = (token.to_string(), format!("/v1/distributions/{id}"));
        async move { cluster.call("PUT", &path, Some(&token), Some(spec)).await }
    };
    let (status, body) = apply(&victim, "victim", victim_spec(&cluster.origin, "v1")).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = apply(&evil, "evil", evil_spec(&cluster.origin)).await;
    assert_eq!(status, 201, "{body}");

    let port = free_port();
    let edge: SocketAddr = ([127, 0, 0, 1], port).into();
    let _edge = cluster.start_edge("fra-1", "default", port);
    for host in ["www.victim.test", "img.cdn.victim.test", "evil.test"] {
        eventually(30, "the page a HIT", || {
            let http = &http;
            async move {
                view(http, edge, host, "/page.html")
                    .await
                    .filter(|s| s.1 == "HIT")
            }
        })
        .await;
    }
    let victim_hits = || async {
        for host in ["www.victim.test", "img.cdn.victim.test"] {
            let seen = view(&http, edge, host, "/page.html").await.expect("answer");
            assert_eq!(
                (seen.0, seen.1.as_str()),
                (200, "HIT"),
                "{host}: the victim's object stays cached"
            );
        }
    };

    // Purges: the victim's names are refused, the attacker's own purges
    // (tag, everything; soft and hard) leave the victim's objects alone.
    for (body, want) in [
        (
            json!({"distribution": "evil", "url": "www.victim.test/page.html"}),
            400,
        ),
        (
            json!({"distribution": "evil", "url": "https://img.cdn.victim.test/page.html", "soft": true}),
            400,
        ),
        (
            json!({"distribution": "evil", "prefix": "www.victim.test/"}),
            400,
        ),
        (json!({"distribution": "victim", "everything": true}), 404),
        (json!({"distribution": "victim", "tag": "shared"}), 404),
    ] {
        let (status, answer) = cluster
            .call("POST", "/v1/purges", Some(&evil), Some(body.clone()))
            .await;
        assert_eq!(status, want, "{body}: {answer}");
    }
    let mut jobs = Vec::new();
    for body in [
        json!({"distribution": "evil", "tag": "shared", "soft": true}),
        json!({"distribution": "evil", "tag": "shared"}),
        json!({"distribution": "evil", "prefix": "evil.test/"}),
        json!({"distribution": "evil", "everything": true, "soft": true}),
        json!({"distribution": "evil", "everything": true}),
    ] {
        let (status, answer) = cluster
            .call("POST", "/v1/purges", Some(&evil), Some(body.clone()))
            .await;
        assert_eq!(status, 202, "{body}: {answer}");
        jobs.push(answer["id"].as_str().expect("id").to_string());
    }
    for job in &jobs {
        eventually(15, "the attacker's purge acknowledged", || async {
            let (_, status) = cluster
                .call("GET", &format!("/v1/jobs/{job}"), Some(&evil), None)
                .await;
            (status["status"] == "done").then_some(())
        })
        .await;
    }
    victim_hits().await;
    let evil_now = view(&http, edge, "evil.test", "/page.html")
        .await
        .expect("answer");
    assert_ne!(
        evil_now.1, "HIT",
        "the attacker's own purge worked: {evil_now:?}"
    );

    // Prewarms of the victim's names.
    let (status, answer) = cluster
        .call(
            "POST",
            "/v1/prewarms",
            Some(&evil),
            Some(json!({"distribution": "evil", "urls": ["http://www.victim.test/page.html"]})),
        )
        .await;
    assert_eq!(status, 400, "{answer}");

    // Configuration the tenancy model refuses, each with the field named.
    let mut metadata = evil_spec("http://169.254.169.254/");
    metadata["origin"][0]["url"] = json!("http://169.254.169.254/latest/meta-data/");
    let mut limits = evil_spec(&cluster.origin);
    limits["plugin"] =
        json!([{"name": "t", "wasm": "testbed", "limits": {"hook_deadline_ms": 600000}}]);
    let mut refusing = evil_spec(&cluster.origin);
    refusing["plugin"] = json!([{"name": "t", "wasm": "testbed", "config": {"mode": "reject"}}]);
    refusing["behavior"][0]["viewer_request"] = json!(["t"]);
    let mut oversized = evil_spec(&cluster.origin);
    oversized["plugin"] =
        json!([{"name": "t", "wasm": "testbed", "config": {"pad": "x".repeat(70 << 10)}}]);
    let mut under_wildcard = evil_spec(&cluster.origin);
    under_wildcard["domains"] = json!(["pay.cdn.victim.test"]);
    let mut over_name = evil_spec(&cluster.origin);
    over_name["domains"] = json!(["*.victim.test"]);
    for (spec, status_wanted, field) in [
        (metadata, 400, "origin[0].url"),
        (limits, 400, "plugin[0].limits.hook_deadline_ms"),
        (refusing, 400, "plugin[0]: plugin `t`"),
        (oversized, 400, "plugin[0].config"),
        (
            under_wildcard,
            409,
            "`pay.cdn.victim.test` falls under `*.cdn.victim.test`",
        ),
        (
            over_name,
            409,
            "`*.victim.test` would cover `www.victim.test`",
        ),
    ] {
        let (status, body) = apply(&evil, "evil", spec).await;
        assert_eq!(status, status_wanted, "{body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.starts_with(field), "{message}");
    }
    let (status, body) = cluster
        .call(
            "PUT",
            "/v1/distributions/evil/kv/big",
            Some(&evil),
            Some(json!({"value": "x".repeat(64 << 10)})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut refused_kv = false;
    for i in 0..20 {
        let (status, _) = cluster
            .call(
                "PUT",
                &format!("/v1/distributions/evil/kv/k{i}"),
                Some(&evil),
                Some(json!({"value": "x".repeat(64 << 10)})),
            )
            .await;
        if status == 413 {
            refused_kv = true;
            break;
        }
        assert_eq!(status, 200);
    }
    assert!(refused_kv, "the KV quota (1 MiB) refused more");

    // The victim's configuration still reaches the edge, promptly.
    let (status, body) = apply(&victim, "victim", victim_spec(&cluster.origin, "v2")).await;
    assert_eq!(status, 201, "{body}");
    let applied = Instant::now();
    eventually(10, "the victim's change on the edge", || async {
        view(&http, edge, "www.victim.test", "/page.html")
            .await
            .filter(|s| s.2 == "v2")
    })
    .await;
    assert!(
        applied.elapsed() < Duration::from_secs(5),
        "{:?}",
        applied.elapsed()
    );
    let (_, status) = cluster
        .call(
            "GET",
            "/v1/distributions/victim/status",
            Some(&victim),
            None,
        )
        .await;
    eventually(10, "the edge reports version 2", || async {
        let (_, status) = cluster
            .call(
                "GET",
                "/v1/distributions/victim/status",
                Some(&victim),
                None,
            )
            .await;
        (status["edges"][0]["version"] == 2).then_some(())
    })
    .await;
    assert_eq!(status["distribution"], "victim");

    // The victim's hits stay fast and cached through all of it.
    victim_hits().await;
    let mut times = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let seen = view(&http, edge, "www.victim.test", "/page.html")
            .await
            .expect("answer");
        times.push(started.elapsed());
        assert_eq!(seen.1, "HIT");
    }
    times.sort();
    assert!(
        times[25] < Duration::from_millis(20),
        "median {:?}",
        times[25]
    );
}
