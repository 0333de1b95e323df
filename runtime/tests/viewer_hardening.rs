//! What a hostile viewer cannot do: make routing, the cache key and the
//! origin disagree on the host; pass forwarding fields off as the edge's;
//! slip past a path rule with another spelling of the path; hold
//! connections or request bodies open without end.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{config, edge, plugins_dir, raw, request, settle, Origin, Reply};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `text` with `lines` added to its `[server]` table.
fn server(text: String, lines: &str) -> String {
    text.replace("[server]\n", &format!("[server]\n{lines}\n"))
}

/// The test configuration for `origin` with `behavior`, trusting the
/// forwarding fields of balancers on loopback.
fn trusting(origin: &Origin, behavior: &str) -> String {
    server(
        config(&origin.url(), "", behavior, ""),
        "trusted_proxies = [\"127.0.0.0/8\"]",
    )
}

#[tokio::test]
async fn a_host_that_disagrees_with_the_target_is_refused_and_h2_authority_goes_upstream_as_host() {
    let origin = Origin::start().await;
    origin.set("/", Reply::ok("home", &[]));
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    for (attempt, why) in [
        (
            "GET http://other.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n",
            "the Host header `example.test` disagrees with the request's authority `other.test`",
        ),
        (
            "GET / HTTP/1.1\r\nHost: example.test\r\nHost: other.test\r\n\r\n",
            "more than one Host header",
        ),
    ] {
        let answer = raw(edge.addr(), attempt.as_bytes(), Duration::from_secs(2)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains(why), "{answer}");
    }
    assert_eq!(origin.hits("/"), 0);
    // Agreeing absolute-form is fine.
    let agreeing =
        "GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n";
    let answer = raw(edge.addr(), agreeing.as_bytes(), Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // HTTP/2 has no Host header: its :authority is what the origin gets.
    let stream = TcpStream::connect(edge.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("http://shop.example.test/h2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    origin.set("/h2", Reply::ok("h2", &[]));
    let answer = common::collect(sender.send_request(request).await.unwrap()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(origin.last("/h2").headers["host"], "shop.example.test");
}

#[tokio::test]
async fn an_origin_may_ask_for_its_own_host_header() {
    let origin = Origin::start().await;
    origin.set("/", Reply::ok("home", &[]));
    let text = config(&origin.url(), "", "", "").replace(
        "read_timeout_ms = 1000\n",
        "read_timeout_ms = 1000\nhost_header = \"bucket.storage.test\"\n",
    );
    let edge = edge(&text).await;
    assert_eq!(
        request(edge.addr(), "GET", "example.test", "/", &[])
            .await
            .status,
        200
    );
    assert_eq!(origin.last("/").headers["host"], "bucket.storage.test");
    assert_eq!(origin.last("/").headers["x-forwarded-host"], "example.test");
}

const SPOOFED: [(&str, &str); 4] = [
    ("x-forwarded-for", "10.9.9.9"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "admin.internal"),
    ("forwarded", "for=10.9.9.9;proto=https"),
];

#[tokio::test]
async fn forwarding_fields_from_viewers_are_replaced_and_kept_only_from_trusted_proxies() {
    let origin = Origin::start().await;
    origin.set("/", Reply::ok("home", &[]));
    let viewer_edge = edge(&config(&origin.url(), "", "", "")).await;
    request(viewer_edge.addr(), "GET", "example.test", "/", &SPOOFED).await;
    let seen = origin.last("/").headers;
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "example.test");
    assert_eq!(
        seen["forwarded"],
        "for=127.0.0.1;host=\"example.test\";proto=http"
    );

    // Behind a trusted balancer the fields are kept, and the viewer it
    // names is who guards judge.
    let behind_balancer = edge(&trusting(&origin, "ip_deny = [\"203.0.113.0/24\"]")).await;
    let (log_sink, mut log) = tokio::sync::mpsc::channel(16);
    behind_balancer.running.edge.log_sink.set(log_sink).unwrap();
    request(behind_balancer.addr(), "GET", "example.test", "/", &SPOOFED).await;
    let seen = origin.last("/").headers;
    assert_eq!(seen["x-forwarded-for"], "10.9.9.9, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-forwarded-host"], "admin.internal");
    let denied = request(
        behind_balancer.addr(),
        "GET",
        "example.test",
        "/",
        &[("x-forwarded-for", "203.0.113.5")],
    )
    .await;
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert!(
        denied.text().contains("203.0.113.5 is not allowed"),
        "{}",
        denied.text()
    );
    // The access log names that viewer too, not the balancer.
    let mut clients = Vec::new();
    while let Ok(record) = log.try_recv() {
        let line: serde_json::Value = serde_json::from_str(&record.json).unwrap();
        clients.push(line["client"].as_str().unwrap().to_string());
    }
    assert_eq!(clients, ["10.9.9.9", "203.0.113.5"]);
}

#[tokio::test]
async fn the_scheme_is_in_the_key_when_the_origin_is_told_it() {
    let origin = Origin::start().await;
    origin.set(
        "/page",
        Reply::ok("page", &[("cache-control", "max-age=60")]),
    );
    let edge_with = edge(&trusting(&origin, "")).await;
    let edge_without = edge(&trusting(
        &origin,
        "[distribution.behavior.cache.key]\nscheme = false",
    ))
    .await;
    for (edge, protos, hits, why) in [
        (
            &edge_with,
            &["https", "http", "https"][..],
            2,
            "one object per scheme",
        ),
        (
            &edge_without,
            &["https", "http"][..],
            3,
            "one object for both schemes",
        ),
    ] {
        for proto in protos {
            let header = [("x-forwarded-proto", *proto)];
            request(edge.addr(), "GET", "example.test", "/page", &header).await;
            settle().await;
        }
        assert_eq!(origin.hits("/page"), hits, "{why}");
    }
}

#[tokio::test]
async fn the_proxy_protocol_names_the_viewer_from_trusted_balancers_only() {
    let origin = Origin::start().await;
    origin.set("/", Reply::ok("home", &[]));
    let text = trusting(&origin, "ip_deny = [\"203.0.113.66/32\"]").replacen(
        "address = \"127.0.0.1:0\"\n",
        "address = \"127.0.0.1:0\"\nproxy_protocol = true\n",
        1,
    );
    let edge = edge(&text).await;
    let get = "GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n";
    let v1 = format!("PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\n{get}");
    let answer = raw(edge.addr(), v1.as_bytes(), Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(origin.last("/").headers["x-forwarded-for"], "203.0.113.7");
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[
        0x21, 0x11, 0, 12, 203, 0, 113, 66, 127, 0, 0, 1, 0x9c, 0x40, 0, 80,
    ]);
    v2.extend_from_slice(get.as_bytes());
    let answer = raw(edge.addr(), &v2, Duration::from_secs(2)).await;
    assert!(
        answer.starts_with("HTTP/1.1 403"),
        "the viewer it names is guarded: {answer}"
    );
    // Without a header the connection is closed unanswered.
    let answer = raw(edge.addr(), get.as_bytes(), Duration::from_secs(2)).await;
    assert_eq!(answer, "");
    assert_eq!(origin.hits("/"), 1);
}

#[tokio::test]
async fn other_spellings_of_a_path_meet_its_rules_and_the_origin_gets_what_was_sent() {
    let origin = Origin::start().await;
    origin.set("/%61pi//x", Reply::ok("as received", &[]));
    origin.set("/api/x", Reply::ok("normalised", &[]));
    let admin_rule =
        "[[distribution.behavior]]\npath = \"/admin/*\"\nip_deny = [\"127.0.0.0/8\"]\n";
    let edge_as_received = edge(&config(&origin.url(), "", "", admin_rule)).await;
    for path in [
        "/admin/x",
        "/%61dmin/x",
        "//admin/x",
        "/./admin/x",
        "/x/../admin/x",
        "/%2E/admin/x",
    ] {
        let answer = request(edge_as_received.addr(), "GET", "example.test", path, &[]).await;
        assert_eq!(answer.status, 403, "{path}: {}", answer.text());
    }
    let answer = request(
        edge_as_received.addr(),
        "GET",
        "example.test",
        "/%61pi//x",
        &[],
    )
    .await;
    assert_eq!(answer.text(), "as received");
    let normalizing = config(&origin.url(), "", "", admin_rule).replace(
        "customer = \"acme\"\n",
        "customer = \"acme\"\nnormalize_upstream_path = true\n",
    );
    let edge_normalizing = edge(&normalizing).await;
    let answer = request(
        edge_normalizing.addr(),
        "GET",
        "example.test",
        "/%61pi//x",
        &[],
    )
    .await;
    assert_eq!(answer.text(), "normalised");
    assert_eq!(
        origin
            .seen()
            .iter()
            .filter(|s| s.path.contains("admin"))
            .count(),
        0
    );
}

#[tokio::test]
async fn connections_past_the_limit_wait_and_idle_ones_are_closed() {
    let origin = Origin::start().await;
    origin.set("/", Reply::ok("home", &[]));
    let text = server(
        config(&origin.url(), "", "", ""),
        "max_connections = 2\nidle_timeout_ms = 400\nworkers = 1",
    );
    let edge = edge(&text).await;
    // Two idle connections hold the listener's places.
    let mut first = TcpStream::connect(edge.addr()).await.unwrap();
    let _second = TcpStream::connect(edge.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = tokio::spawn({
        let addr = edge.addr();
        async move { request(addr, "GET", "example.test", "/", &[]).await.status }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !third.is_finished(),
        "a third connection waits while two are open"
    );
    // The idle ones are closed by the edge, and the third is served.
    let mut buffer = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(3), first.read(&mut buffer)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "idle connection closed: {closed:?}"
    );
    let status = tokio::time::timeout(Duration::from_secs(3), third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_idle_h2_connection_is_closed_and_streams_are_limited() {
    let origin = Origin::start().await;
    origin.set("/", Reply::ok("home", &[]));
    let text = server(
        config(&origin.url(), "", "", ""),
        "idle_timeout_ms = 400\nh2_max_concurrent_streams = 3\nh2_keepalive_interval_ms = 100\nh2_keepalive_timeout_ms = 1000",
    );
    let edge = edge(&text).await;
    let stream = TcpStream::connect(edge.addr()).await.unwrap();
    let (client, connection) = h2::client::handshake(stream).await.unwrap();
    let driven = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get("http://example.test/").body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    // The edge's SETTINGS have arrived by now.
    assert_eq!(client.current_max_send_streams(), 3);
    // Then idle (answering the edge's pings): closed within the timeout.
    let ended = tokio::time::timeout(Duration::from_secs(3), driven).await;
    assert!(ended.is_ok(), "the idle h2 connection was closed");
    // Others are served meanwhile and after.
    assert_eq!(request_status(edge.addr()).await, 200);
}

async fn request_status(addr: std::net::SocketAddr) -> u16 {
    request(addr, "GET", "example.test", "/", &[]).await.status
}

#[tokio::test]
async fn a_slow_body_for_the_plugins_is_answered_408_while_others_are_served() {
    let origin = Origin::start().await;
    origin.set("/", Reply::ok("home", &[]));
    let waf = plugins_dir().join("noop.wasm");
    let text = server(
        config(
            &origin.url(),
            "",
            "viewer_request = [\"noop\"]",
            &format!(
                "[[distribution.plugin]]\nname = \"noop\"\nwasm = \"{}\"\n",
                waf.display()
            ),
        ),
        "body_timeout_ms = 300",
    );
    let edge = edge(&text).await;
    let mut slow = TcpStream::connect(edge.addr()).await.unwrap();
    slow.write_all(
        b"POST / HTTP/1.1\r\nHost: example.test\r\nContent-Length: 100\r\n\r\nonly ten b",
    )
    .await
    .unwrap();
    assert_eq!(request_status(edge.addr()).await, 200, "others are served");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut answer))
        .await
        .expect("the edge answers and closes")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
}

#[tokio::test]
async fn a_prewarm_warms_the_scheme_its_url_names() {
    let origin = Origin::start().await;
    origin.set(
        "/warm",
        Reply::ok("warm", &[("cache-control", "max-age=60")]),
    );
    let edge = edge(&trusting(&origin, "")).await;
    let warmed = common::admin_post(
        edge.admin(),
        "/prewarm",
        "secret",
        r#"{"urls": ["https://example.test/warm"]}"#,
    )
    .await;
    assert_eq!(warmed.status, 200, "{}", warmed.text());
    settle().await;
    let over_tls = [("x-forwarded-proto", "https")];
    let got = request(edge.addr(), "GET", "example.test", "/warm", &over_tls).await;
    assert_eq!(got.cache(), "HIT");
    assert_eq!(origin.hits("/warm"), 1);
}

#[tokio::test]
async fn an_upstream_failure_names_the_request_id_the_plugins_saw() {
    // The testbed plugin stamps its request's id on the request; the
    // origin takes longer than the read timeout, and the 504 names the
    // same id.
    let origin = Origin::start().await;
    origin.set(
        "/slow",
        Reply::ok("late", &[]).delayed(Duration::from_secs(3)),
    );
    let plugin = format!(
        "[[distribution.plugin]]\nname = \"probe\"\nwasm = \"{}\"\n",
        plugins_dir().join("testbed.wasm").display()
    );
    let text = config(&origin.url(), "", r#"viewer_request = ["probe"]"#, &plugin);
    let edge = edge(&text).await;
    let got = request(edge.addr(), "GET", "example.test", "/slow", &[]).await;
    assert_eq!(got.status, 504, "{}", got.text());
    let id = origin.last("/slow").headers["x-probe-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(id.starts_with("test1-"), "{id}");
    assert!(
        got.text().contains(&format!("(request {id})")),
        "{} / {id}",
        got.text()
    );
}
