//! The gRPC side, as an edge uses it: configuration snapshots (blue/green
//! by group), plugin bytes, purge orders and their acknowledgements, log
//! shipping.

mod common;

use std::time::Duration;

use common::*;
use parapet_proto::edge::{
    order, FetchPluginRequest, LogBatch, LogLine, OrderAck, WatchConfigRequest, WatchOrdersRequest,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::time::timeout;

/// The next message of a stream, within 5 s.
async fn next<T>(stream: &mut tonic::Streaming<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a message within 5 s")
        .expect("the stream works")
        .expect("the stream is open")
}

/// Origin URLs of the distributions in a snapshot, by id.
fn origins(snapshot: &parapet_proto::edge::ConfigSnapshot) -> Vec<(String, String)> {
    let distributions: Vec<Value> =
        serde_json::from_str(&snapshot.distributions_json).expect("JSON");
    distributions
        .iter()
        .map(|d| {
            (
                d["id"].as_str().expect("id").to_string(),
                d["origin"][0]["url"].as_str().expect("url").to_string(),
            )
        })
        .collect()
}

fn with_origin(url: &str) -> Value {
    json!({"domains": ["shop.example.com"], "origin": [{"url": url}], "behavior": [{"path": "*"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_follow_changes_and_blue_green_deployments() {
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    controller
        .call(
            "PUT",
            "/v1/distributions/shop",
            Some(&acme),
            Some(with_origin("http://one.internal")),
        )
        .await;
    controller
        .call(
            "PUT",
            "/v1/distributions/shop/kv/k",
            Some(&acme),
            Some(json!({"value": "v"})),
        )
        .await;

    let mut blue = TestEdge::register(&controller, "blue-1", "fra", "blue").await;
    let mut green = TestEdge::register(&controller, "green-1", "fra", "green").await;
    let mut blue_stream = blue
        .client
        .watch_config(blue.request(WatchConfigRequest { have_revision: 0 }))
        .await
        .expect("watch")
        .into_inner();
    let mut green_stream = green
        .client
        .watch_config(green.request(WatchConfigRequest { have_revision: 0 }))
        .await
        .expect("watch")
        .into_inner();
    let first = next(&mut blue_stream).await;
    assert_eq!(
        origins(&first),
        [("shop".to_string(), "http://one.internal".to_string())]
    );
    assert_eq!(first.kv_json["shop"], "{\"k\":\"v\"}");
    next(&mut green_stream).await;

    // Version 2 staged and rolled out to blue only.
    let (status, body) = controller
        .call(
            "PUT",
            "/v1/distributions/shop?stage=true",
            Some(&acme),
            Some(with_origin("http://two.internal")),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["live_version"], 1);
    let (status, deployment) = controller
        .call(
            "POST",
            "/v1/deployments",
            Some(&acme),
            Some(json!({"distribution": "shop", "version": 2, "group": "blue"})),
        )
        .await;
    assert_eq!(status, 201, "{deployment}");
    let id = deployment["id"].as_str().expect("id").to_string();
    // Snapshots come with every revision; wait for the one showing the rollout.
    let mut blue_now = next(&mut blue_stream).await;
    while origins(&blue_now)[0].1 != "http://two.internal" {
        blue_now = next(&mut blue_stream).await;
    }
    let green_now = next(&mut green_stream).await;
    assert_eq!(
        origins(&green_now)[0].1,
        "http://one.internal",
        "green keeps the live version"
    );
    // A second apply during the rollout is refused.
    let (status, body) = controller
        .call(
            "PUT",
            "/v1/distributions/shop",
            Some(&acme),
            Some(with_origin("http://x")),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    // Promoted: everyone on version 2.
    let (status, body) = controller
        .call(
            "POST",
            &format!("/v1/deployments/{id}/promote"),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "promoted");
    let mut green_now = next(&mut green_stream).await;
    while origins(&green_now)[0].1 != "http://two.internal" {
        green_now = next(&mut green_stream).await;
    }
    let (status, _) = controller
        .call(
            "POST",
            &format!("/v1/deployments/{id}/rollback"),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(status, 409, "a finished deployment cannot be rolled back");

    // Version 3 to blue, rolled back: blue returns to 2.
    controller
        .call(
            "PUT",
            "/v1/distributions/shop?stage=true",
            Some(&acme),
            Some(with_origin("http://three.internal")),
        )
        .await;
    let (_, deployment) = controller
        .call(
            "POST",
            "/v1/deployments",
            Some(&acme),
            Some(json!({"distribution": "shop", "version": 3, "group": "blue"})),
        )
        .await;
    let id = deployment["id"].as_str().expect("id").to_string();
    let mut blue_now = next(&mut blue_stream).await;
    while origins(&blue_now)[0].1 != "http://three.internal" {
        blue_now = next(&mut blue_stream).await;
    }
    controller
        .call(
            "POST",
            &format!("/v1/deployments/{id}/rollback"),
            Some(&acme),
            None,
        )
        .await;
    let mut blue_now = next(&mut blue_stream).await;
    while origins(&blue_now)[0].1 != "http://two.internal" {
        blue_now = next(&mut blue_stream).await;
    }

    // A suspended customer's distributions leave the snapshots.
    controller
        .call("POST", "/v1/customers/acme/suspend", Some(ADMIN), None)
        .await;
    let mut green_now = next(&mut green_stream).await;
    while !origins(&green_now).is_empty() {
        green_now = next(&mut green_stream).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_are_fetched_by_hash() {
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    let waf = plugin("waf");
    let (_, uploaded) = controller.upload(&acme, "waf", waf.clone()).await;
    let sha256 = uploaded["sha256"].as_str().expect("sha").to_string();
    let mut spec = with_origin("http://o.internal");
    spec["plugin"] = json!([{"name": "waf", "wasm": "waf"}]);
    controller
        .call("PUT", "/v1/distributions/shop", Some(&acme), Some(spec))
        .await;

    let mut edge = TestEdge::register(&controller, "fra-1", "fra", "default").await;
    let mut stream = edge
        .client
        .watch_config(edge.request(WatchConfigRequest { have_revision: 0 }))
        .await
        .expect("watch")
        .into_inner();
    let snapshot = next(&mut stream).await;
    assert_eq!(snapshot.plugins.len(), 1);
    assert_eq!(snapshot.plugins[0].sha256, sha256);
    assert!(snapshot
        .distributions_json
        .contains(&format!("sha256:{sha256}")));

    let mut chunks = edge
        .client
        .fetch_plugin(edge.request(FetchPluginRequest {
            sha256: sha256.clone(),
        }))
        .await
        .expect("fetch")
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.message().await.expect("chunk") {
        bytes.extend_from_slice(&chunk.data);
    }
    assert_eq!(hex::encode(Sha256::digest(&bytes)), sha256);
    assert_eq!(bytes, waf);
    let missing = edge
        .client
        .fetch_plugin(edge.request(FetchPluginRequest {
            sha256: "00".repeat(32),
        }))
        .await
        .expect_err("unknown hash");
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

/// A controller with acme's `shop` and two edges, `fra-1` and `fra-2`;
/// the first watches its orders (the backlog read: nothing pending).
async fn two_edges_one_watching() -> (
    TestController,
    String,
    TestEdge,
    TestEdge,
    tonic::Streaming<parapet_proto::edge::Order>,
) {
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    controller
        .call(
            "PUT",
            "/v1/distributions/shop",
            Some(&acme),
            Some(with_origin("http://o.internal")),
        )
        .await;
    let mut online = TestEdge::register(&controller, "fra-1", "fra", "default").await;
    let offline = TestEdge::register(&controller, "fra-2", "fra", "default").await;
    let mut orders = online
        .client
        .watch_orders(online.request(WatchOrdersRequest {}))
        .await
        .expect("watch")
        .into_inner();
    assert!(
        next(&mut orders).await.backlog_done,
        "nothing pending at first"
    );
    (controller, acme, online, offline, orders)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_reach_every_edge_and_finish_with_their_acks() {
    let (controller, acme, mut online, mut offline, mut orders) = two_edges_one_watching().await;

    let (status, job) = controller
        .call(
            "POST",
            "/v1/purges",
            Some(&acme),
            Some(json!({"distribution": "shop", "prefix": "shop.example.com/img/", "soft": true})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let job_id = job["id"].as_str().expect("id").to_string();
    let order = next(&mut orders).await;
    match order.work {
        Some(order::Work::Purge(purge)) => {
            assert_eq!(purge.distribution, "shop");
            assert_eq!(purge.prefix, "shop.example.com/img/");
            assert!(purge.soft);
        }
        other => panic!("not a purge: {other:?}"),
    }
    online
        .client
        .ack_order(online.request(OrderAck {
            order_id: order.id.clone(),
            count: 7,
            error: String::new(),
        }))
        .await
        .expect("ack");
    let (_, status) = controller
        .call("GET", &format!("/v1/jobs/{job_id}"), Some(&acme), None)
        .await;
    assert_eq!(
        status["status"], "dispatched",
        "the offline edge has not acknowledged: {status}"
    );
    assert_eq!(status["progress"], "1/2");

    // The offline edge connects: the pending order comes first, then the
    // end of the backlog.
    let mut late = offline
        .client
        .watch_orders(offline.request(WatchOrdersRequest {}))
        .await
        .expect("watch")
        .into_inner();
    let pending = next(&mut late).await;
    assert!(pending.id.starts_with(&job_id), "{pending:?}");
    assert!(next(&mut late).await.backlog_done);
    // Not acknowledged within six heartbeat intervals (6 s here), it comes
    // again: the acknowledgement may have been lost.
    let again = tokio::time::timeout(Duration::from_secs(10), late.message())
        .await
        .expect("sent again within 10 s")
        .expect("the stream works")
        .expect("the stream is open");
    assert_eq!(again.id, pending.id);
    // Another edge's order cannot be acknowledged.
    let refused = offline
        .client
        .ack_order(offline.request(OrderAck {
            order_id: order.id.clone(),
            count: 1,
            error: String::new(),
        }))
        .await
        .expect_err("not its order");
    assert_eq!(refused.code(), tonic::Code::NotFound);
    offline
        .client
        .ack_order(offline.request(OrderAck {
            order_id: pending.id,
            count: 3,
            error: String::new(),
        }))
        .await
        .expect("ack");
    let (_, status) = controller
        .call("GET", &format!("/v1/jobs/{job_id}"), Some(&acme), None)
        .await;
    assert_eq!(status["status"], "done", "{status}");
    assert_eq!(status["progress"], "2/2");
    let mut counts: Vec<u64> = status["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["count"].as_u64().expect("count"))
        .collect();
    counts.sort();
    assert_eq!(counts, [3, 7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_logs_are_listed_newest_first() {
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    controller
        .call(
            "PUT",
            "/v1/distributions/shop",
            Some(&acme),
            Some(with_origin("http://o.internal")),
        )
        .await;
    let mut edge = TestEdge::register(&controller, "fra-1", "fra", "default").await;
    let batch = LogBatch {
        lines: vec![
            LogLine {
                distribution: "shop".into(),
                timestamp_ms: 1_000,
                json: "{\"path\":\"/a\",\"status\":200}".into(),
            },
            LogLine {
                distribution: "shop".into(),
                timestamp_ms: 2_000,
                json: "{\"path\":\"/b\",\"status\":404}".into(),
            },
            LogLine {
                distribution: "shop".into(),
                timestamp_ms: 3_000,
                json: "not json".into(),
            },
        ],
    };
    let answer = edge
        .client
        .ship_logs(edge.request(tokio_stream::iter(vec![batch])))
        .await
        .expect("ship")
        .into_inner();
    assert_eq!(answer.accepted, 2);
    let (status, lines) = controller
        .call(
            "GET",
            "/v1/distributions/shop/logs?limit=10",
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(lines[0]["line"]["path"], "/b");
    assert_eq!(lines[1]["line"]["path"], "/a");
    assert_eq!(lines[0]["edge"], edge.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_edge_gets_the_current_snapshot_once() {
    let controller = TestController::start().await;
    let mut edge = TestEdge::register(&controller, "fra-1", "fra", "default").await;
    let mut config = edge
        .client
        .watch_config(edge.request(WatchConfigRequest { have_revision: 0 }))
        .await
        .expect("watch config")
        .into_inner();
    let first = next(&mut config).await;
    assert_eq!(origins(&first), [], "nothing configured yet");
    // Nothing changes: nothing more comes, though the watch polls every
    // second.
    let more = tokio::time::timeout(Duration::from_millis(2_500), config.message()).await;
    assert!(more.is_err(), "sent again: {more:?}");
}

/// Edge `fra-1` registered, watching its configuration (the first
/// snapshot read) and its orders (the backlog read).
async fn edge_watching(
    controller: &TestController,
) -> (
    TestEdge,
    tonic::Streaming<parapet_proto::edge::ConfigSnapshot>,
    tonic::Streaming<parapet_proto::edge::Order>,
) {
    let mut edge = TestEdge::register(controller, "fra-1", "fra", "default").await;
    let mut config = edge
        .client
        .watch_config(edge.request(WatchConfigRequest { have_revision: 0 }))
        .await
        .expect("watch config")
        .into_inner();
    next(&mut config).await;
    let mut orders = edge
        .client
        .watch_orders(edge.request(WatchOrdersRequest {}))
        .await
        .expect("watch orders")
        .into_inner();
    assert!(next(&mut orders).await.backlog_done);
    (edge, config, orders)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_stops_while_edges_watch() {
    let controller = TestController::start().await;
    let (_edge, mut config, mut orders) = edge_watching(&controller).await;

    let TestController { running, dir, .. } = controller;
    tokio::time::timeout(Duration::from_secs(5), running.shutdown())
        .await
        .expect("stopped within 5 s, the edge's streams open");
    // Both streams end (after what was already sent).
    while let Ok(Some(_)) = config.message().await {}
    while let Ok(Some(_)) = orders.message().await {}
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_edge_no_longer_holds_up_jobs() {
    let (controller, acme, mut online, mut gone, mut orders) = two_edges_one_watching().await;
    let (_, job) = controller
        .call(
            "POST",
            "/v1/purges",
            Some(&acme),
            Some(json!({"distribution": "shop", "everything": true})),
        )
        .await;
    let job_path = format!("/v1/jobs/{}", job["id"].as_str().expect("id"));
    let order = next(&mut orders).await;
    online
        .client
        .ack_order(online.request(OrderAck {
            order_id: order.id,
            count: 1,
            error: String::new(),
        }))
        .await
        .expect("ack");
    let (_, status) = controller.call("GET", &job_path, Some(&acme), None).await;
    assert_eq!(status["status"], "dispatched", "fra-2 never acks: {status}");

    // Only the operator removes an edge, by name or id.
    let (status, body) = controller
        .call("DELETE", "/v1/edges/fra-2", Some(&acme), None)
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = controller
        .call("DELETE", "/v1/edges/fra-2", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], gone.id.as_str());
    let (_, status) = controller.call("GET", &job_path, Some(&acme), None).await;
    assert_eq!(status["status"], "done", "{status}");
    assert_eq!(status["progress"], "1/1");
    let (_, edges) = controller.call("GET", "/v1/edges", Some(ADMIN), None).await;
    assert_eq!(edges.as_array().map(Vec::len), Some(1), "{edges}");
    let refused = gone
        .client
        .heartbeat(gone.request(parapet_proto::edge::HeartbeatRequest::default()))
        .await
        .expect_err("its credential is revoked");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let (status, body) = controller
        .call(
            "DELETE",
            &format!("/v1/edges/{}", gone.id),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], format!("edge `{}` not found", gone.id));
}

/// An edge removed while it runs: its open streams end with "not
/// registered", so it registers again and watches under its new id instead
/// of an order stream that would never carry anything again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_edge_that_is_removed_loses_its_streams() {
    let controller = TestController::start().await;
    let (_edge, mut config, mut orders) = edge_watching(&controller).await;

    let (status, body) = controller
        .call("DELETE", "/v1/edges/fra-1", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let within = Duration::from_secs(5);
    for (what, ended) in [
        (
            "config",
            timeout(within, config.message())
                .await
                .map(|r| r.map(|_| ())),
        ),
        (
            "orders",
            timeout(within, orders.message())
                .await
                .map(|r| r.map(|_| ())),
        ),
    ] {
        let refused = ended
            .unwrap_or_else(|_| panic!("the {what} stream still open after 5 s"))
            .expect_err(what);
        assert_eq!(refused.code(), tonic::Code::NotFound, "{what}: {refused}");
        assert!(
            refused.message().contains("register again"),
            "{what}: {refused}"
        );
    }
}
