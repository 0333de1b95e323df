//! Pieces of the end-to-end tests: the workspace's binaries started as
//! processes on loopback, a real origin, a whole cluster of them, and an
//! HTTP client.

pub mod browser;
pub mod cluster;
pub mod mongo;
pub mod tls;

pub use cluster::{plugin_component, Cluster};

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The operator token of the controllers started here.
pub const ADMIN: &str = "e2e-admin-token";
/// The token edges register with.
pub const BOOTSTRAP: &str = "e2e-edge-bootstrap-token";

/// The directory of the binaries built with these tests
/// (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running binary's path");
    // Tests run from target/<profile>/deps/, binaries from target/<profile>/.
    let dir = exe.parent().expect("target/<profile>");
    if dir.ends_with("deps") {
        dir.parent().expect("target/<profile>").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A binary of the workspace.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace (`cargo test --workspace` does)",
        path.display()
    );
    path
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits up to `seconds` for `address` to accept connections.
pub fn wait_for_port(address: SocketAddr, seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while std::net::TcpStream::connect(address).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {address}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process, killed when dropped.
pub struct Process {
    pub child: Child,
    pub name: String,
}

impl Process {
    /// Starts `binary` with `args` and `env`; its output goes to
    /// `<log_dir>/<name>.log`.
    pub fn start(
        name: &str,
        binary: &Path,
        args: &[String],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> Process {
        let log = std::fs::File::create(log_dir.join(format!("{name}.log"))).expect("log file");
        let mut command = Command::new(binary);
        command
            .args(args)
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log));
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("{name}: {e}"));
        Process {
            child,
            name: name.to_string(),
        }
    }

    /// Kills the process at once.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The log a [`Process`] wrote, for failure messages.
pub fn log_of(log_dir: &Path, name: &str) -> String {
    std::fs::read_to_string(log_dir.join(format!("{name}.log"))).unwrap_or_default()
}

/// A REST call: status and JSON answer (Null when not JSON).
pub async fn call(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Creates customer `id` (named `id`) at the controller whose REST base
/// URL is `rest`, with the operator token `admin`, and a token for it;
/// returns the customer's token.
pub async fn create_customer(http: &reqwest::Client, rest: &str, admin: &str, id: &str) -> String {
    let (status, body) = call(
        http,
        "POST",
        &format!("{rest}/v1/customers"),
        Some(admin),
        Some(serde_json::json!({"id": id, "name": id})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        http,
        "POST",
        &format!("{rest}/v1/tokens"),
        Some(admin),
        Some(serde_json::json!({"customer": id, "name": "test"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().expect("token").to_string()
}

/// Polls `check` every 50 ms until it returns `Some`, for up to `seconds`.
pub async fn eventually<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the `parapet` CLI against `url` with `token`, trusting the
/// authority in `ca_file` (none: the system's roots); returns its exit
/// code, stdout and stderr. `HOME` points at `home`, so no saved login
/// leaks in.
pub fn parapet(
    home: &Path,
    url: &str,
    ca_file: Option<&Path>,
    token: &str,
    args: &[&str],
) -> (i32, String, String) {
    let mut command = Command::new(binary("parapet"));
    match ca_file {
        Some(path) => command.env("PARAPET_CA_FILE", path),
        None => command.env_remove("PARAPET_CA_FILE"),
    };
    let output = command
        .args(args)
        .env("PARAPET_URL", url)
        .env("PARAPET_TOKEN", token)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("parapet runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}
