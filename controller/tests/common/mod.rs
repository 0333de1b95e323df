//! Shared pieces of the controller tests.

#![allow(dead_code)]

use std::net::SocketAddr;

/// Runs each `contract(&Store)` function named against the embedded store
/// and against MongoDB (a real server; database `$db`).
#[allow(unused_macros)]
macro_rules! both_backends {
    ($db:literal; $($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let store = parapet_controller::store::Store::embedded(dir.path()).expect("opens");
                    super::$name(&store).await;
                }
            )*
        }
        mod mongo {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(server) = parapet_e2e::mongo::start() else { return };
                    let store = parapet_controller::store::Store::mongo(&server.uri($db))
                        .await
                        .expect("connects");
                    super::$name(&store).await;
                }
            )*
        }
    };
}

use parapet_controller::{launch, LaunchOptions, Running, StoreLocation};
use serde_json::Value;

/// The operator token the tests start controllers with.
pub const ADMIN: &str = "test-admin-token";
/// The token edges register with (never the operator's).
pub const BOOTSTRAP: &str = "test-edge-bootstrap-token";

/// A controller on loopback with an embedded store in a temporary directory.
pub struct TestController {
    pub running: Running,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

/// How the tests' controllers start: free loopback ports, the test tokens,
/// one-second heartbeats, a fresh secret key.
pub fn launch_options(
    store: StoreLocation,
    settings: parapet_controller::settings::Settings,
) -> LaunchOptions {
    LaunchOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        grpc_listen: "127.0.0.1:0".parse().expect("address"),
        store,
        admin_token: ADMIN.into(),
        edge_bootstrap_token: Some(BOOTSTRAP.into()),
        tls: None,
        heartbeat_interval_ms: 1_000,
        max_plugin_bytes: 12 << 20,
        metrics: Some("127.0.0.1:0".parse().expect("address")),
        settings,
        compiled_plugins_dir: None,
        secret_key: Some(std::sync::Arc::new(
            parapet_controller::secrets::SecretKey::from_base64(
                &parapet_controller::secrets::SecretKey::generate(),
            )
            .expect("a generated key"),
        )),
    }
}

/// Settings that let origins on loopback through (the tests' origins).
pub fn loopback_origins() -> parapet_controller::settings::Settings {
    let mut settings = parapet_controller::settings::Settings::default();
    settings.upstream.allow_networks = vec!["127.0.0.0/8".parse().expect("network")];
    settings
}

impl TestController {
    /// Starts one with the embedded store.
    pub async fn start() -> TestController {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StoreLocation::Embedded(dir.path().join("data"));
        Self::start_with(store, dir).await
    }

    /// Starts one on `store`.
    pub async fn start_with(store: StoreLocation, dir: tempfile::TempDir) -> TestController {
        Self::start_configured(store, dir, loopback_origins()).await
    }

    /// Starts one with the embedded store and the operator's `settings`.
    pub async fn start_with_settings(
        settings: parapet_controller::settings::Settings,
    ) -> TestController {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StoreLocation::Embedded(dir.path().join("data"));
        Self::start_configured(store, dir, settings).await
    }

    async fn start_configured(
        store: StoreLocation,
        dir: tempfile::TempDir,
        settings: parapet_controller::settings::Settings,
    ) -> TestController {
        let running = launch(launch_options(store, settings))
            .await
            .expect("the controller starts");
        TestController {
            running,
            dir,
            http: reqwest::Client::new(),
        }
    }

    /// The REST base URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.rest)
    }

    /// The gRPC address.
    pub fn grpc(&self) -> SocketAddr {
        self.running.grpc
    }

    /// Sends `method path` with `token` and an optional JSON body; returns
    /// the status and the JSON answer (Null when not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the controller answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a customer and a token for it; returns the token.
    pub async fn customer(&self, id: &str) -> String {
        parapet_e2e::create_customer(&self.http, &self.url(""), ADMIN, id).await
    }
}

/// A built example plugin (`make plugins` puts them in target/plugins).
pub fn plugin(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}: run `make plugins`", path.display()))
}

/// A minimal distribution for `domain`.
pub fn distribution(domain: &str) -> Value {
    serde_json::json!({
        "domains": [domain],
        "origin": [{"url": "http://127.0.0.1:9"}],
        "behavior": [{"path": "*"}],
    })
}

impl TestController {
    /// Uploads a plugin as `token`'s customer.
    pub async fn upload(&self, token: &str, name: &str, bytes: Vec<u8>) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(&format!("/v1/plugins/{name}")))
            .bearer_auth(token)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .expect("answer");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// A gRPC client for the edge API.
pub type EdgeClient =
    parapet_proto::edge::edge_control_client::EdgeControlClient<tonic::transport::Channel>;

/// An edge as the tests play it: registered, with its credential.
pub struct TestEdge {
    pub client: EdgeClient,
    pub credential: String,
    pub id: String,
}

impl TestEdge {
    /// Registers `name` in `pop` and `group`.
    pub async fn register(
        controller: &TestController,
        name: &str,
        pop: &str,
        group: &str,
    ) -> TestEdge {
        let mut client = EdgeClient::connect(format!("http://{}", controller.grpc()))
            .await
            .expect("gRPC connects");
        let answer = client
            .register(parapet_proto::edge::RegisterRequest {
                bootstrap_token: BOOTSTRAP.into(),
                name: name.into(),
                pop: pop.into(),
                role: "edge".into(),
                group: group.into(),
                version: "test".into(),
                ..Default::default()
            })
            .await
            .expect("registers")
            .into_inner();
        TestEdge {
            client,
            credential: answer.credential,
            id: answer.edge_id,
        }
    }

    /// `message` with this edge's credential.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.credential)
                .parse()
                .expect("header"),
        );
        request
    }
}
