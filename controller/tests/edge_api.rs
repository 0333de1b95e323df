//! The gRPC side, as an edge uses it: configuration updates per
//! distribution (blue/green by group), plugin bytes, purge orders and their
//! acknowledgements, log shipping.

mod common;

use std::time::Duration;

use common::*;
use parapet_proto::edge::{
    order, ConfigUpdate, DistributionConfig, DistributionHave, FetchPluginRequest, LogBatch,
    LogLine, OrderAck, WatchConfigRequest, WatchOrdersRequest,
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

/// One configuration update: its messages up to `complete`, merged.
#[derive(Debug, Default)]
struct Update {
    revision: u64,
    reset: bool,
    distributions: Vec<DistributionConfig>,
    removed: Vec<String>,
    /// How many messages it took.
    messages: usize,
}

/// The next whole update of a configuration stream.
async fn next_update(stream: &mut tonic::Streaming<ConfigUpdate>) -> Update {
    let mut update = Update::default();
    loop {
        let message = next(stream).await;
        update.messages += 1;
        update.revision = message.revision;
        update.reset |= message.reset;
        update.distributions.extend(message.distributions);
        update.removed.extend(message.removed);
        if message.complete {
            return update;
        }
    }
}

/// Origin URLs of the distributions in an update, by id.
fn origins(update: &Update) -> Vec<(String, String)> {
    update
        .distributions
        .iter()
        .map(|d| {
            let config: Value = serde_json::from_str(&d.config_json).expect("JSON");
            (
                d.id.clone(),
                config["origin"][0]["url"]
                    .as_str()
                    .expect("url")
                    .to_string(),
            )
        })
        .collect()
}

/// Watches the configuration of `edge`, which says it has `have`.
async fn watch(edge: &mut TestEdge, have: Vec<DistributionHave>) -> tonic::Streaming<ConfigUpdate> {
    let request = edge.request(WatchConfigRequest {
        have_revision: 0,
        have,
    });
    edge.client
        .watch_config(request)
        .await
        .expect("watch")
        .into_inner()
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
    let mut blue_stream = watch(&mut blue, Vec::new()).await;
    let mut green_stream = watch(&mut green, Vec::new()).await;
    let first = next_update(&mut blue_stream).await;
    assert!(first.reset, "an edge with nothing gets everything");
    assert_eq!(
        origins(&first),
        [("shop".to_string(), "http://one.internal".to_string())]
    );
    assert_eq!(first.distributions[0].kv_json, "{\"k\":\"v\"}");
    assert_eq!(first.distributions[0].version, 1);
    next_update(&mut green_stream).await;

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
    // Updates come with every change to the distribution; wait for the one
    // showing the rollout.
    let mut blue_now = next_update(&mut blue_stream).await;
    while origins(&blue_now)[0].1 != "http://two.internal" {
        blue_now = next_update(&mut blue_stream).await;
    }
    let green_now = next_update(&mut green_stream).await;
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
    let mut green_now = next_update(&mut green_stream).await;
    while origins(&green_now)[0].1 != "http://two.internal" {
        green_now = next_update(&mut green_stream).await;
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
    let mut blue_now = next_update(&mut blue_stream).await;
    while origins(&blue_now)[0].1 != "http://three.internal" {
        blue_now = next_update(&mut blue_stream).await;
    }
    controller
        .call(
            "POST",
            &format!("/v1/deployments/{id}/rollback"),
            Some(&acme),
            None,
        )
        .await;
    let mut blue_now = next_update(&mut blue_stream).await;
    while origins(&blue_now)[0].1 != "http://two.internal" {
        blue_now = next_update(&mut blue_stream).await;
    }

    // A suspended customer's distributions are removed from the edges.
    controller
        .call("POST", "/v1/customers/acme/suspend", Some(ADMIN), None)
        .await;
    let mut green_now = next_update(&mut green_stream).await;
    while green_now.removed != ["shop"] {
        green_now = next_update(&mut green_stream).await;
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
    let mut stream = watch(&mut edge, Vec::new()).await;
    let update = next_update(&mut stream).await;
    let shop = &update.distributions[0];
    assert_eq!(shop.plugins.len(), 1);
    assert_eq!(shop.plugins[0].sha256, sha256);
    assert!(shop.config_json.contains(&format!("sha256:{sha256}")));

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
async fn a_new_edge_gets_the_current_configuration_once() {
    let controller = TestController::start().await;
    let mut edge = TestEdge::register(&controller, "fra-1", "fra", "default").await;
    let mut config = watch(&mut edge, Vec::new()).await;
    let first = next_update(&mut config).await;
    assert_eq!(origins(&first), [], "nothing configured yet");
    assert!(first.reset);
    // Nothing changes: nothing more comes, though the watch polls every
    // second.
    let more = tokio::time::timeout(Duration::from_millis(2_500), config.message()).await;
    assert!(more.is_err(), "sent again: {more:?}");
}

/// Edge `fra-1` registered, watching its configuration (the first
/// update read) and its orders (the backlog read).
async fn edge_watching(
    controller: &TestController,
) -> (
    TestEdge,
    tonic::Streaming<ConfigUpdate>,
    tonic::Streaming<parapet_proto::edge::Order>,
) {
    let mut edge = TestEdge::register(controller, "fra-1", "fra", "default").await;
    let mut config = watch(&mut edge, Vec::new()).await;
    next_update(&mut config).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_one_distribution_sends_that_distribution_only() {
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    let globex = controller.customer("globex").await;
    controller
        .call(
            "PUT",
            "/v1/distributions/a",
            Some(&acme),
            Some(distribution("a.test")),
        )
        .await;
    controller
        .call(
            "PUT",
            "/v1/distributions/b",
            Some(&globex),
            Some(distribution("b.test")),
        )
        .await;
    let mut edge = TestEdge::register(&controller, "fra-1", "fra", "default").await;
    let mut stream = watch(&mut edge, Vec::new()).await;
    let first = next_update(&mut stream).await;
    let mut ids: Vec<&str> = first.distributions.iter().map(|d| d.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);

    let (status, body) = controller
        .call(
            "PUT",
            "/v1/distributions/b/kv/k",
            Some(&globex),
            Some(json!({"value": "v"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let change = next_update(&mut stream).await;
    assert!(!change.reset);
    assert_eq!(change.distributions.len(), 1, "{change:?}");
    assert_eq!(change.distributions[0].id, "b");
    assert!(change.revision > first.revision);

    // An edge coming back says what it has: it gets what differs only (a
    // stale `a`), and is told to drop what no longer exists.
    let have = |id: &str, revision: u64| DistributionHave {
        id: id.into(),
        revision,
    };
    let revision_of = |update: &Update, id: &str| {
        update
            .distributions
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.revision)
            .expect("listed")
    };
    let mut back = TestEdge::register(&controller, "fra-2", "fra", "default").await;
    let mut stream = watch(
        &mut back,
        vec![
            have("a", revision_of(&first, "a") - 1),
            have("b", revision_of(&change, "b")),
            have("gone", 1),
        ],
    )
    .await;
    let resumed = next_update(&mut stream).await;
    assert!(!resumed.reset);
    assert_eq!(origins(&resumed).len(), 1, "{resumed:?}");
    assert_eq!(resumed.distributions[0].id, "a");
    assert_eq!(resumed.removed, ["gone"]);
    // Up to date: the first update says so, with nothing in it.
    let mut current = TestEdge::register(&controller, "fra-3", "fra", "default").await;
    let mut stream = watch(
        &mut current,
        vec![
            have("a", revision_of(&first, "a")),
            have("b", revision_of(&change, "b")),
        ],
    )
    .await;
    let nothing = next_update(&mut stream).await;
    assert!(
        nothing.distributions.is_empty() && nothing.removed.is_empty(),
        "{nothing:?}"
    );
}

/// Three distributions of about 600 KiB of KV each: the first update spans
/// several messages, each far below the 4 MiB a default gRPC client takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_configuration_comes_in_messages_within_the_limit() {
    use prost::Message as _;
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    let value = "x".repeat(60 << 10);
    for id in ["one", "two", "three"] {
        let (status, body) = controller
            .call(
                "PUT",
                &format!("/v1/distributions/{id}"),
                Some(&acme),
                Some(distribution(&format!("{id}.test"))),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        for k in 0..10 {
            let (status, body) = controller
                .call(
                    "PUT",
                    &format!("/v1/distributions/{id}/kv/k{k}"),
                    Some(&acme),
                    Some(json!({"value": value})),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
    }
    let mut edge = TestEdge::register(&controller, "fra-1", "fra", "default").await;
    let mut stream = watch(&mut edge, Vec::new()).await;
    let mut messages = Vec::new();
    loop {
        let message = next(&mut stream).await;
        let complete = message.complete;
        messages.push(message);
        if complete {
            break;
        }
    }
    assert!(messages.len() >= 2, "{} message(s)", messages.len());
    for message in &messages {
        assert!(
            message.encoded_len() < 2 << 20,
            "{} bytes",
            message.encoded_len()
        );
    }
    let total: usize = messages.iter().map(|m| m.distributions.len()).sum();
    assert_eq!(total, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_report_which_version_each_distribution_serves() {
    use parapet_proto::edge::{DistributionStatus, HeartbeatRequest};
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    let globex = controller.customer("globex").await;
    controller
        .call(
            "PUT",
            "/v1/distributions/shop",
            Some(&acme),
            Some(distribution("shop.test")),
        )
        .await;
    controller
        .call(
            "PUT",
            "/v1/distributions/shop",
            Some(&acme),
            Some(distribution("shop.test")),
        )
        .await;
    let mut edge = TestEdge::register(&controller, "fra-1", "fra", "default").await;
    let beat = |statuses: Vec<DistributionStatus>, complete: bool| HeartbeatRequest {
        serving: true,
        statuses,
        statuses_complete: complete,
        ..Default::default()
    };
    let (_, status) = controller
        .call("GET", "/v1/distributions/shop/status", Some(&acme), None)
        .await;
    assert_eq!(
        status["edges"][0]["version"],
        Value::Null,
        "not reported yet: {status}"
    );
    edge.client
        .heartbeat(edge.request(beat(
            vec![DistributionStatus {
                id: "shop".into(),
                version: 1,
                failed_version: 2,
                error: "plugin `x` refused its configuration".into(),
                removed: false,
            }],
            true,
        )))
        .await
        .expect("heartbeat");
    let (status, body) = controller
        .call("GET", "/v1/distributions/shop/status", Some(&acme), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["latest_version"], 2);
    let fra = &body["edges"][0];
    assert_eq!(fra["name"], "fra-1");
    assert_eq!(fra["version"], 1);
    assert_eq!(fra["failed_version"], 2);
    assert_eq!(fra["error"], "plugin `x` refused its configuration");
    // A later change: version 2 loaded.
    edge.client
        .heartbeat(edge.request(beat(
            vec![DistributionStatus {
                id: "shop".into(),
                version: 2,
                ..Default::default()
            }],
            false,
        )))
        .await
        .expect("heartbeat");
    let (_, body) = controller
        .call("GET", "/v1/distributions/shop/status", Some(&acme), None)
        .await;
    assert_eq!(body["edges"][0]["version"], 2, "{body}");
    assert_eq!(body["edges"][0]["failed_version"], Value::Null, "{body}");
    // Another customer sees nothing of it.
    let (status, _) = controller
        .call("GET", "/v1/distributions/shop/status", Some(&globex), None)
        .await;
    assert_eq!(status, 404);
}
