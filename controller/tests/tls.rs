//! The controller's listeners over TLS: clients that trust its authority
//! get through on REST and gRPC, others stop at the handshake; mutual TLS
//! keeps edges without a client certificate from the authority out; a
//! reload swaps the certificate for new connections. Monitor tokens read
//! the edge list and groups and nothing else.

mod common;

use std::path::Path;

use common::*;
use parapet_controller::tls::TlsFiles;
use parapet_controller::{launch, Running, StoreLocation};
use parapet_e2e::tls::{PemFiles, TestCa};
use parapet_proto::edge::edge_control_client::EdgeControlClient;
use parapet_proto::edge::RegisterRequest;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A controller whose listeners use `server`, asking edges for a client
/// certificate from `edge_client_ca` when given.
async fn controller(dir: &Path, server: PemFiles, edge_client_ca: Option<&Path>) -> Running {
    launch(parapet_controller::LaunchOptions {
        tls: Some(TlsFiles {
            cert: server.cert,
            key: server.key,
            edge_client_ca: edge_client_ca.map(Path::to_path_buf),
        }),
        ..launch_options(
            StoreLocation::Embedded(dir.join("data")),
            Default::default(),
        )
    })
    .await
    .expect("controller starts")
}

/// A REST client trusting only `ca`.
fn rest_client(ca: &TestCa) -> reqwest::Client {
    let pem = std::fs::read(&ca.ca_file).expect("CA certificate");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM"))
        .build()
        .expect("client")
}

/// GET /v1/edges with `token` through `client`: the status, or the error
/// chain when the request failed.
async fn list_edges(
    client: &reqwest::Client,
    running: &Running,
    token: &str,
) -> Result<u16, String> {
    match client
        .get(format!("https://{}/v1/edges", running.rest))
        .bearer_auth(token)
        .send()
        .await
    {
        Ok(response) => Ok(response.status().as_u16()),
        Err(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            Err(text)
        }
    }
}

/// Registers an edge named `name` over gRPC, trusting `ca` and presenting
/// `identity`: the credential, or why not.
async fn register(
    running: &Running,
    ca: &TestCa,
    identity: Option<&PemFiles>,
    name: &str,
) -> Result<String, String> {
    let pem = std::fs::read(&ca.ca_file).expect("CA certificate");
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
    if let Some(files) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&files.cert).expect("certificate"),
            std::fs::read(&files.key).expect("key"),
        ));
    }
    let channel = Channel::from_shared(format!("https://{}", running.grpc))
        .expect("URL")
        .tls_config(tls)
        .expect("TLS");
    let channel = match channel.connect().await {
        Ok(channel) => channel,
        Err(e) => return Err(format!("{e:?}")),
    };
    EdgeControlClient::new(channel)
        .register(RegisterRequest {
            bootstrap_token: BOOTSTRAP.into(),
            name: name.into(),
            pop: "fra".into(),
            role: "edge".into(),
            group: "default".into(),
            version: "test".into(),
            ..Default::default()
        })
        .await
        .map(|answer| answer.into_inner().credential)
        .map_err(|status| format!("{status:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_another_authority_stop_at_the_handshake() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(dir.path(), "ca");
    let stranger = TestCa::new(dir.path(), "stranger");
    let running = controller(
        dir.path(),
        ca.issue(&["127.0.0.1", "localhost"], "controller"),
        None,
    )
    .await;

    assert_eq!(
        list_edges(&rest_client(&ca), &running, ADMIN).await,
        Ok(200)
    );
    let refused = list_edges(&rest_client(&stranger), &running, ADMIN)
        .await
        .expect_err("another authority's client is refused");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    // Plain HTTP on the TLS port gets no HTTP answer at all.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/v1/edges", running.rest))
        .bearer_auth(ADMIN)
        .send()
        .await;
    assert!(plain.is_err(), "plain text is not served: {plain:?}");

    register(&running, &ca, None, "fra-1")
        .await
        .expect("an edge trusting the authority registers");
    let refused = register(&running, &stranger, None, "fra-2")
        .await
        .expect_err("an edge trusting another authority is refused");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mutual_tls_only_edges_with_the_authoritys_certificate_register() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(dir.path(), "ca");
    let edges_ca = TestCa::new(dir.path(), "edges");
    let stranger = TestCa::new(dir.path(), "stranger");
    let running = controller(
        dir.path(),
        ca.issue(&["127.0.0.1"], "controller"),
        Some(&edges_ca.ca_file),
    )
    .await;

    let own = edges_ca.issue(&["fra-1"], "fra-1");
    register(&running, &ca, Some(&own), "fra-1")
        .await
        .expect("an edge with a certificate from the edges' authority registers");
    register(&running, &ca, None, "fra-2")
        .await
        .expect_err("an edge without a client certificate is refused");
    let foreign = stranger.issue(&["fra-3"], "fra-3");
    register(&running, &ca, Some(&foreign), "fra-3")
        .await
        .expect_err("an edge with another authority's certificate is refused");
    // REST asks for no client certificate.
    let edges: serde_json::Value = rest_client(&ca)
        .get(format!("https://{}/v1/edges", running.rest))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("REST answers without a client certificate")
        .json()
        .await
        .expect("JSON");
    let names: Vec<&str> = edges
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["fra-1"]);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_certificate_for_new_connections() {
    let dir = tempfile::tempdir().expect("temp dir");
    let old = TestCa::new(dir.path(), "old");
    let new = TestCa::new(dir.path(), "new");
    let files = old.issue(&["127.0.0.1"], "controller");
    let running = controller(dir.path(), files.clone(), None).await;
    assert_eq!(
        list_edges(&rest_client(&old), &running, ADMIN).await,
        Ok(200)
    );

    // A broken key file: the reload fails and the certificate in use stays.
    std::fs::write(&files.key, "not a key").expect("write");
    let error = running.reload_tls().expect_err("a broken key is refused");
    assert!(format!("{error:#}").contains("private key"), "{error:#}");
    assert_eq!(
        list_edges(&rest_client(&old), &running, ADMIN).await,
        Ok(200)
    );

    // The new authority's certificate in the same files.
    let renewed = new.issue(&["127.0.0.1"], "renewed");
    std::fs::copy(&renewed.cert, &files.cert).expect("copy");
    std::fs::copy(&renewed.key, &files.key).expect("copy");
    assert!(running.reload_tls().expect("reloads"));
    assert_eq!(
        list_edges(&rest_client(&new), &running, ADMIN).await,
        Ok(200)
    );
    assert!(list_edges(&rest_client(&old), &running, ADMIN)
        .await
        .is_err());
    register(&running, &new, None, "fra-1")
        .await
        .expect("gRPC took the new certificate too");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_tokens_read_edges_and_groups_only() {
    let controller = TestController::start().await;
    let (status, issued) = controller
        .call(
            "POST",
            "/v1/tokens",
            Some(ADMIN),
            Some(serde_json::json!({"name": "geo-dns", "monitor": true})),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    assert_eq!(issued["kind"], "monitor", "{issued}");
    let monitor = issued["token"].as_str().expect("token").to_string();
    for path in ["/v1/edges", "/v1/groups"] {
        let (status, body) = controller.call("GET", path, Some(&monitor), None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    for (method, path) in [
        ("GET", "/v1/distributions"),
        ("GET", "/v1/customers"),
        ("GET", "/v1/tokens"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/plugins"),
        ("POST", "/v1/customers"),
        ("POST", "/v1/purges"),
        ("DELETE", "/v1/edges/fra-1"),
    ] {
        let (status, body) = controller
            .call(method, path, Some(&monitor), Some(serde_json::json!({})))
            .await;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    // A customer token does not read the edges either.
    let customer = controller.customer("acme").await;
    let (status, _) = controller
        .call("GET", "/v1/edges", Some(&customer), None)
        .await;
    assert_eq!(status, 403);
    // Monitor and customer at once makes no sense.
    let (status, body) = controller
        .call(
            "POST",
            "/v1/tokens",
            Some(ADMIN),
            Some(serde_json::json!({"name": "x", "monitor": true, "customer": "acme"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}
