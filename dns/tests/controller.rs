//! PoP health from a real parapet-controller: edges register and send
//! heartbeats over gRPC, parapet-dns polls the controller's edge list and
//! answers only PoPs with a healthy edge.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;
use parapet_controller::{launch, LaunchOptions, StoreLocation};
use parapet_dns::controller::ControllerSource;
use parapet_proto::edge::edge_control_client::EdgeControlClient;
use parapet_proto::edge::{HeartbeatRequest, RegisterRequest};
use tonic::transport::Channel;

const ADMIN: &str = "dns-test-admin";
const BOOTSTRAP: &str = "dns-test-edge-bootstrap";
const SHOP: &str = "shop.cdn.example.net.";

/// Registers an edge in `pop`; returns its credential.
async fn register(client: &mut EdgeControlClient<Channel>, name: &str, pop: &str) -> String {
    client
        .register(RegisterRequest {
            bootstrap_token: BOOTSTRAP.into(),
            name: name.into(),
            pop: pop.into(),
            role: "edge".into(),
            group: "default".into(),
            version: "test".into(),
            ..Default::default()
        })
        .await
        .expect("registers")
        .into_inner()
        .credential
}

async fn heartbeat(client: &mut EdgeControlClient<Channel>, credential: &str) {
    let mut request = tonic::Request::new(HeartbeatRequest {
        serving: true,
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {credential}").parse().expect("header"),
    );
    client.heartbeat(request).await.expect("heartbeat");
}

/// Asks for Tokyo's answer until it is `expected`, for up to 5 s.
async fn await_tokyo_answer(dns: &TestDns, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = ask(
            dns.address,
            Transport::Udp,
            SHOP,
            RecordType::A,
            Some(TOKYO_SUBNET),
        )
        .await;
        if addresses(&answer) == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {:?}, expected {expected:?}",
            addresses(&answer)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_pops_with_a_healthy_edge_are_answered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let controller = launch(LaunchOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        grpc_listen: "127.0.0.1:0".parse().expect("address"),
        store: StoreLocation::Embedded(dir.path().join("data")),
        admin_token: ADMIN.into(),
        edge_bootstrap_token: Some(BOOTSTRAP.into()),
        // Heartbeats every 300 ms: an edge silent for 900 ms is unhealthy.
        heartbeat_interval_ms: 300,
        max_plugin_bytes: 1 << 20,
        metrics: None,
        settings: Default::default(),
        compiled_plugins_dir: None,
    })
    .await
    .expect("controller starts");
    let mut edges = EdgeControlClient::connect(format!("http://{}", controller.grpc))
        .await
        .expect("gRPC connects");
    let tokyo = register(&mut edges, "tyo-1", "tyo").await;
    let frankfurt = register(&mut edges, "fra-1", "fra").await;
    heartbeat(&mut edges, &frankfurt).await;

    let dns = TestDns::start_with(
        POPS,
        Some("default_pops = [\"nyc\"]\n"),
        Some(dbip()),
        Some(ControllerSource {
            url: format!("http://{}", controller.rest),
            token: ADMIN.into(),
            interval: Duration::from_millis(100),
        }),
    )
    .await;
    // Tokyo's edge has never sent a heartbeat: Frankfurt, the next PoP with
    // a healthy edge (San Francisco and New York have none registered).
    await_tokyo_answer(&dns, &["192.0.2.2"]).await;

    // Tokyo's edge comes up.
    heartbeat(&mut edges, &tokyo).await;
    await_tokyo_answer(&dns, &["192.0.2.1"]).await;

    // Both fall silent: no PoP has a healthy edge, so the default set.
    await_tokyo_answer(&dns, &["192.0.2.3"]).await;

    // The controller stops: the last known health stays.
    heartbeat(&mut edges, &tokyo).await;
    await_tokyo_answer(&dns, &["192.0.2.1"]).await;
    controller.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answer = ask(
        dns.address,
        Transport::Udp,
        SHOP,
        RecordType::A,
        Some(TOKYO_SUBNET),
    )
    .await;
    assert_eq!(addresses(&answer), ["192.0.2.1"]);
    let text = metrics(&dns).await;
    assert!(
        text.contains("parapet_dns_controller_errors_total"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_the_controller_answers_the_pops_file_decides() {
    // A controller that is not there: the file's PoPs, all enabled.
    let dns = TestDns::start_with(
        POPS,
        None,
        Some(dbip()),
        Some(ControllerSource {
            url: "http://127.0.0.1:9".into(),
            token: ADMIN.into(),
            interval: Duration::from_millis(100),
        }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = ask(
        dns.address,
        Transport::Udp,
        SHOP,
        RecordType::A,
        Some(TOKYO_SUBNET),
    )
    .await;
    assert_eq!(addresses(&answer), ["192.0.2.1"]);
}
