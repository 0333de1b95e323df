//! PoP health from a real parapet-controller over TLS: edges register and
//! send heartbeats over gRPC, parapet-dns polls the controller's edge list
//! with a monitor token and answers only PoPs with a healthy edge; it
//! ignores a controller whose certificate its authority did not issue.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;
use parapet_controller::tls::TlsFiles;
use parapet_controller::{launch, LaunchOptions, Running, StoreLocation};
use parapet_dns::controller::ControllerSource;
use parapet_e2e::tls::TestCa;
use parapet_proto::edge::edge_control_client::EdgeControlClient;
use parapet_proto::edge::{HeartbeatRequest, RegisterRequest};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

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

/// The addresses answered to a viewer in Tokyo, over UDP.
async fn tokyo_answer(dns: &TestDns) -> Vec<String> {
    let answer = ask(
        dns.address,
        Transport::Udp,
        SHOP,
        RecordType::A,
        Some(TOKYO_SUBNET),
    )
    .await;
    addresses(&answer)
}

/// Asks for Tokyo's answer until it is `expected`, for up to 5 s.
async fn await_tokyo_answer(dns: &TestDns, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = tokyo_answer(dns).await;
        if answer == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {answer:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A controller over TLS with a certificate from `ca`, its data in `dir`,
/// asking for heartbeats every 300 ms (an edge silent for 900 ms is
/// unhealthy); a gRPC client trusting `ca`; a monitor token.
async fn controller(dir: &Path, ca: &TestCa) -> (Running, EdgeControlClient<Channel>, String) {
    let server = ca.issue(&["127.0.0.1"], "controller");
    let controller = launch(LaunchOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        grpc_listen: "127.0.0.1:0".parse().expect("address"),
        store: StoreLocation::Embedded(dir.join("data")),
        admin_token: ADMIN.into(),
        edge_bootstrap_token: Some(BOOTSTRAP.into()),
        tls: Some(TlsFiles {
            cert: server.cert,
            key: server.key,
            edge_client_ca: None,
        }),
        heartbeat_interval_ms: 300,
        max_plugin_bytes: 1 << 20,
        metrics: None,
        settings: Default::default(),
        compiled_plugins_dir: None,
        secret_key: None,
    })
    .await
    .expect("controller starts");
    let pem = std::fs::read(&ca.ca_file).expect("CA certificate");
    let channel = Channel::from_shared(format!("https://{}", controller.grpc))
        .expect("URL")
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pem)))
        .expect("TLS")
        .connect()
        .await
        .expect("gRPC connects");
    let monitor = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM"))
        .build()
        .expect("client")
        .post(format!("https://{}/v1/tokens", controller.rest))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"name": "geo-dns", "monitor": true}))
        .send()
        .await
        .expect("token issued")
        .json::<serde_json::Value>()
        .await
        .expect("JSON")["token"]
        .as_str()
        .expect("a token")
        .to_string();
    assert!(monitor.starts_with("ppm_"), "{monitor}");
    (controller, EdgeControlClient::new(channel), monitor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_pops_with_a_healthy_edge_are_answered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(dir.path(), "ca");
    let (controller, mut edges, monitor) = controller(dir.path(), &ca).await;
    let tokyo = register(&mut edges, "tyo-1", "tyo").await;
    let frankfurt = register(&mut edges, "fra-1", "fra").await;
    heartbeat(&mut edges, &frankfurt).await;

    let dns = TestDns::start_with(
        POPS,
        Some("default_pops = [\"nyc\"]\n"),
        Some(dbip()),
        Some(ControllerSource {
            url: format!("https://{}", controller.rest),
            token: monitor,
            ca_file: Some(ca.ca_file.clone()),
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
    assert_eq!(tokyo_answer(&dns).await, ["192.0.2.1"]);
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
            ca_file: None,
            interval: Duration::from_millis(100),
        }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(tokyo_answer(&dns).await, ["192.0.2.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_with_a_wrong_certificate_is_not_followed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(dir.path(), "ca");
    let stranger = TestCa::new(dir.path(), "stranger");
    let (controller, mut edges, monitor) = controller(dir.path(), &ca).await;
    // Only Frankfurt's edge is alive: a geo-DNS following the controller
    // sends Tokyo's viewers to Frankfurt.
    register(&mut edges, "tyo-1", "tyo").await;
    let frankfurt = register(&mut edges, "fra-1", "fra").await;
    let beating = tokio::spawn(async move {
        loop {
            heartbeat(&mut edges, &frankfurt).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let source = |ca_file: &Path| ControllerSource {
        url: format!("https://{}", controller.rest),
        token: monitor.clone(),
        ca_file: Some(ca_file.to_path_buf()),
        interval: Duration::from_millis(100),
    };
    let trusting = TestDns::start_with(POPS, None, Some(dbip()), Some(source(&ca.ca_file))).await;
    let misled =
        TestDns::start_with(POPS, None, Some(dbip()), Some(source(&stranger.ca_file))).await;
    await_tokyo_answer(&trusting, &["192.0.2.2"]).await;
    // The one trusting another authority never took the controller's word:
    // the PoPs file still decides (Tokyo, enabled there).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tokyo_answer(&misled).await, ["192.0.2.1"]);
    beating.abort();
    controller.shutdown().await;
}
