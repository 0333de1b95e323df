//! A CDN on loopback, every part a real process: an origin (Python's
//! http.server serving `/page.html`), `parapet-controller` serving REST and
//! gRPC over TLS (a test authority's certificate, and mutual TLS for
//! edges), and `parapet-edge`s in controller mode.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::tls::{PemFiles, TestCa};
use crate::{bin_dir, binary, call, free_port, wait_for_port, Process, ADMIN, BOOTSTRAP};

/// The origin, the controller (restartable on the same data) and the
/// directory holding their state and logs.
pub struct Cluster {
    /// State and `<process>.log` files.
    pub dir: tempfile::TempDir,
    /// A client with a 10 s timeout, trusting the test authority.
    pub http: reqwest::Client,
    /// The controller's REST base URL (`https://127.0.0.1:<port>`).
    pub rest: String,
    /// The authority of the controller's certificate and of the edges'
    /// client certificates.
    pub ca: TestCa,
    /// The origin's base URL.
    pub origin: String,
    /// The running controller, if any.
    pub controller: Option<Process>,
    grpc_port: u16,
    rest_address: SocketAddr,
    controller_args: Vec<String>,
    _origin: Process,
}

impl Cluster {
    /// Starts the origin and a controller keeping its data in MongoDB at
    /// `mongodb_uri`, else in an embedded store, that asks edges for a
    /// heartbeat every `heartbeat_interval_ms`.
    pub fn start(mongodb_uri: Option<String>, heartbeat_interval_ms: u64) -> Cluster {
        Self::start_with_settings(mongodb_uri, heartbeat_interval_ms, |_| String::new())
    }

    /// [`Cluster::start`], with more of the controller's settings file:
    /// what `settings` returns for the cluster's directory (TOML tables
    /// after `[upstream]`).
    pub fn start_with_settings(
        mongodb_uri: Option<String>,
        heartbeat_interval_ms: u64,
        settings: impl FnOnce(&Path) -> String,
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let site = dir.path().join("site");
        std::fs::create_dir_all(&site).expect("site");
        std::fs::write(site.join("page.html"), "<p>hello</p>").expect("page");
        let origin_port = free_port();
        let origin = Process::start(
            "origin",
            Path::new("python3"),
            &[
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &origin_port.to_string(),
                "--directory",
                &site.to_string_lossy(),
            ]
            .map(String::from),
            &[],
            dir.path(),
        );
        wait_for_port(([127, 0, 0, 1], origin_port).into(), 10);

        let (rest_port, grpc_port) = (free_port(), free_port());
        let ca = TestCa::new(dir.path(), "ca");
        let server = ca.issue(&["127.0.0.1", "localhost"], "controller");
        let store = match mongodb_uri {
            Some(uri) => ["--mongodb-uri".to_string(), uri],
            None => [
                "--data-dir".to_string(),
                dir.path().join("controller-data").to_string_lossy().into(),
            ],
        };
        let more_settings = settings(dir.path());
        let settings = dir.path().join("controller.toml");
        // The test origins run on loopback.
        std::fs::write(
            &settings,
            format!("[upstream]\nallow_networks = [\"127.0.0.0/8\"]\n{more_settings}"),
        )
        .expect("controller settings");
        let secret_key = dir.path().join("secret.key");
        std::fs::write(&secret_key, crate::tls::random_key()).expect("secret key");
        let mut controller_args = [
            "--listen",
            &format!("127.0.0.1:{rest_port}"),
            "--grpc-listen",
            &format!("127.0.0.1:{grpc_port}"),
            "--heartbeat-interval-ms",
            &heartbeat_interval_ms.to_string(),
            "--config",
            &settings.to_string_lossy(),
            "--tls-cert",
            &server.cert.to_string_lossy(),
            "--tls-key",
            &server.key.to_string_lossy(),
            "--edge-client-ca",
            &ca.ca_file.to_string_lossy(),
            "--secret-key-file",
            &secret_key.to_string_lossy(),
        ]
        .map(String::from)
        .to_vec();
        controller_args.extend(store);
        let mut cluster = Cluster {
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .add_root_certificate(
                    reqwest::Certificate::from_pem(
                        &std::fs::read(&ca.ca_file).expect("the CA certificate"),
                    )
                    .expect("a PEM certificate"),
                )
                .build()
                .expect("client"),
            rest: format!("https://127.0.0.1:{rest_port}"),
            ca,
            rest_address: ([127, 0, 0, 1], rest_port).into(),
            origin: format!("http://127.0.0.1:{origin_port}"),
            controller: None,
            grpc_port,
            controller_args,
            _origin: origin,
        };
        cluster.start_controller();
        cluster
    }

    /// Where the processes write `<name>.log`.
    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the controller (again) and waits for its REST port.
    pub fn start_controller(&mut self) {
        self.controller = Some(self.controller_process("controller", &self.controller_args));
        wait_for_port(self.rest_address, 30);
    }

    /// The controller's gRPC port.
    pub fn grpc_port(&self) -> u16 {
        self.grpc_port
    }

    /// Starts another controller named `name` on the same store (MongoDB)
    /// with REST on `rest_port` and gRPC on `grpc_port`.
    pub fn spawn_controller(&self, name: &str, rest_port: u16, grpc_port: u16) -> Process {
        let mut args = self.controller_args.clone();
        for (flag, port) in [("--listen", rest_port), ("--grpc-listen", grpc_port)] {
            let at = args.iter().position(|a| a == flag).expect("flag") + 1;
            args[at] = format!("127.0.0.1:{port}");
        }
        self.controller_process(name, &args)
    }

    /// `parapet-controller` named `name` with `args` and the test tokens.
    fn controller_process(&self, name: &str, args: &[String]) -> Process {
        Process::start(
            name,
            &binary("parapet-controller"),
            args,
            &[
                ("PARAPET_ADMIN_TOKEN", ADMIN.to_string()),
                ("PARAPET_EDGE_BOOTSTRAP_TOKEN", BOOTSTRAP.to_string()),
            ],
            self.dir.path(),
        )
    }

    /// Stops the controller at once.
    pub fn kill_controller(&mut self) {
        if let Some(mut controller) = self.controller.take() {
            controller.kill();
        }
    }

    /// Starts an edge named `name` in PoP `fra` and edge group `group`,
    /// serving viewers on `port`; its state lives in `<dir>/<name>`, its
    /// cache on disk in `<dir>/<name>-cache` (kept across restarts).
    pub fn start_edge(&self, name: &str, group: &str, port: u16) -> Process {
        self.start_edge_with_admin(name, group, port, None)
    }

    /// [`Self::start_edge`], with the admin listener (`/metrics`) on
    /// `admin_port` when given.
    pub fn start_edge_with_admin(
        &self,
        name: &str,
        group: &str,
        port: u16,
        admin_port: Option<u16>,
    ) -> Process {
        let mut args = self.edge_args(name, group, port);
        let client = self.ca.issue(&[name], name);
        args.extend(self.edge_tls_args(Some(&client)));
        if let Some(admin_port) = admin_port {
            args.extend(["--admin".to_string(), format!("127.0.0.1:{admin_port}")]);
        }
        self.spawn_edge(name, &args)
    }

    /// The arguments of an edge named `name` in PoP `fra` and edge group
    /// `group`, serving viewers on `port`, without its TLS arguments.
    pub fn edge_args(&self, name: &str, group: &str, port: u16) -> Vec<String> {
        [
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--controller",
            &format!("https://127.0.0.1:{}", self.grpc_port),
            "--state-dir",
            &self.dir.path().join(name).to_string_lossy(),
            "--cache-dir",
            &self
                .dir
                .path()
                .join(format!("{name}-cache"))
                .to_string_lossy(),
            "--edge-name",
            name,
            "--pop",
            "fra",
            "--group",
            group,
            // The test origins run on loopback.
            "--allow-upstream-network",
            "127.0.0.0/8",
        ]
        .map(String::from)
        .to_vec()
    }

    /// An edge's TLS arguments: the cluster's authority, and `client` as
    /// its client certificate.
    pub fn edge_tls_args(&self, client: Option<&PemFiles>) -> Vec<String> {
        let mut args = vec![
            "--controller-ca".to_string(),
            self.ca.ca_file.to_string_lossy().to_string(),
        ];
        if let Some(client) = client {
            args.extend([
                "--controller-client-cert".to_string(),
                client.cert.to_string_lossy().to_string(),
                "--controller-client-key".to_string(),
                client.key.to_string_lossy().to_string(),
            ]);
        }
        args
    }

    /// Starts `parapet-edge` named `name` with `args` and the bootstrap
    /// token.
    pub fn spawn_edge(&self, name: &str, args: &[String]) -> Process {
        Process::start(
            name,
            &binary("parapet-edge"),
            args,
            &[
                ("PARAPET_EDGE_BOOTSTRAP_TOKEN", BOOTSTRAP.to_string()),
                ("PARAPET_ACCESS_LOG", "off".to_string()),
            ],
            self.dir.path(),
        )
    }

    /// Runs the `parapet` CLI against the controller with `token`
    /// (trusting the cluster's authority); `HOME` is `home`.
    pub fn cli(&self, home: &Path, token: &str, args: &[&str]) -> (i32, String, String) {
        crate::parapet(home, &self.rest, Some(&self.ca.ca_file), token, args)
    }

    /// Creates customer `id` (named `id`) and a token for it; the token.
    pub async fn customer(&self, id: &str) -> String {
        crate::create_customer(&self.http, &self.rest, ADMIN, id).await
    }

    /// A REST call to the controller: status and JSON answer.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        call(
            &self.http,
            method,
            &format!("{}{path}", self.rest),
            token,
            body,
        )
        .await
    }
}

/// An example plugin's component, built by `make plugins`.
pub fn plugin_component(name: &str) -> PathBuf {
    let file = format!("{name}.wasm");
    [
        bin_dir().join("../plugins").join(&file),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/plugins")
            .join(&file),
    ]
    .into_iter()
    .find(|p| p.exists())
    .unwrap_or_else(|| panic!("target/plugins/{file}: run `make plugins`"))
}
