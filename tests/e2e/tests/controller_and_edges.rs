//! The control plane end to end, every part a real process on loopback:
//! parapet-controller (embedded store), two parapet-edge in controller mode
//! (groups blue and green), and an origin (Python's http.server). A
//! distribution with a plugin reaches both edges; a purge reaches both and
//! its job shows both acks; a blue/green deployment changes one group,
//! then all; an edge that was down during a purge applies it before it
//! serves; edges keep serving, and restart, while the controller is down.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use parapet_e2e::*;
use serde_json::{json, Value};

/// A viewer request through an edge: status, `x-cache`,
/// `content-security-policy`.
async fn view(
    http: &reqwest::Client,
    edge: SocketAddr,
    path: &str,
) -> Option<(u16, String, String)> {
    let response = http
        .get(format!("http://{edge}{path}"))
        .header("host", "shop.example.com")
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

fn spec(csp: &str) -> Value {
    json!({
        "domains": ["shop.example.com"],
        "origin": [{"url": "ORIGIN"}],
        "plugin": [{"name": "headers", "wasm": "header-filter", "config": {"response": {"csp": csp, "overwrite": true}}}],
        "behavior": [{"path": "*", "cache": {"default_ttl": 300}, "viewer_response": ["headers"]}],
    })
}

struct Cluster {
    dir: tempfile::TempDir,
    http: reqwest::Client,
    rest: String,
    grpc_port: u16,
    controller: Option<Process>,
    controller_args: Vec<String>,
}

impl Cluster {
    fn log_dir(&self) -> &Path {
        self.dir.path()
    }

    fn start_controller(&mut self) {
        let process = Process::start(
            "controller",
            &binary("parapet-controller"),
            &self.controller_args,
            &[("PARAPET_ADMIN_TOKEN", ADMIN.to_string())],
            self.dir.path(),
        );
        self.controller = Some(process);
        let rest: SocketAddr = self
            .rest
            .trim_start_matches("http://")
            .parse()
            .expect("address");
        wait_for_port(rest, 30);
    }

    fn start_edge(&self, name: &str, group: &str, port: u16) -> Process {
        let args: Vec<String> = [
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--controller",
            &format!("http://127.0.0.1:{}", self.grpc_port),
            "--state-dir",
            &self.dir.path().join(name).to_string_lossy(),
            "--edge-name",
            name,
            "--pop",
            "fra",
            "--group",
            group,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Process::start(
            name,
            &binary("parapet-edge"),
            &args,
            &[
                ("PARAPET_EDGE_BOOTSTRAP_TOKEN", ADMIN.to_string()),
                ("PARAPET_ACCESS_LOG", "off".to_string()),
            ],
            self.dir.path(),
        )
    }

    async fn call(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributions_purges_and_deployments_reach_the_edges() {
    let dir = tempfile::tempdir().expect("temp dir");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // The origin: a directory served by Python's http.server.
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).expect("site");
    std::fs::write(site.join("page.html"), "<p>hello</p>").expect("page");
    let origin_port = free_port();
    let _origin = Process::start(
        "origin",
        Path::new("python3"),
        &[
            "-m".into(),
            "http.server".into(),
            "--bind".into(),
            "127.0.0.1".into(),
            origin_port.to_string(),
            "--directory".into(),
            site.to_string_lossy().into(),
        ],
        &[],
        dir.path(),
    );
    wait_for_port(([127, 0, 0, 1], origin_port).into(), 10);

    let rest_port = free_port();
    let grpc_port = free_port();
    let mut cluster = Cluster {
        controller_args: [
            "--listen",
            &format!("127.0.0.1:{rest_port}"),
            "--grpc-listen",
            &format!("127.0.0.1:{grpc_port}"),
            "--data-dir",
            &dir.path().join("controller-data").to_string_lossy(),
            "--heartbeat-interval-ms",
            "300",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        dir,
        http: http.clone(),
        rest: format!("http://127.0.0.1:{rest_port}"),
        grpc_port,
        controller: None,
    };
    cluster.start_controller();

    // A customer, a plugin, a distribution.
    let (status, _) = cluster
        .call(
            "POST",
            "/v1/customers",
            Some(ADMIN),
            Some(json!({"id": "acme", "name": "Acme"})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, token) = cluster
        .call(
            "POST",
            "/v1/tokens",
            Some(ADMIN),
            Some(json!({"customer": "acme", "name": "e2e"})),
        )
        .await;
    let acme = token["token"].as_str().expect("token").to_string();
    let component = std::fs::read(bin_dir().join("../plugins/header-filter.wasm"))
        .or_else(|_| {
            std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../target/plugins/header-filter.wasm"),
            )
        })
        .expect("target/plugins/header-filter.wasm: run `make plugins`");
    let uploaded = http
        .post(format!("{}/v1/plugins/header-filter", cluster.rest))
        .bearer_auth(&acme)
        .body(component)
        .send()
        .await
        .expect("upload");
    assert_eq!(uploaded.status(), 201);
    let origin = format!("http://127.0.0.1:{origin_port}");
    let with_origin = |csp: &str| {
        let text = spec(csp).to_string().replace("ORIGIN", &origin);
        serde_json::from_str::<Value>(&text).expect("JSON")
    };
    let (status, body) = cluster
        .call(
            "PUT",
            "/v1/distributions/shop",
            Some(&acme),
            Some(with_origin("v1")),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Two edges, blue and green: both serve it, with the plugin at work.
    let (blue_port, green_port) = (free_port(), free_port());
    let blue_addr: SocketAddr = ([127, 0, 0, 1], blue_port).into();
    let green_addr: SocketAddr = ([127, 0, 0, 1], green_port).into();
    let _blue = cluster.start_edge("blue-1", "blue", blue_port);
    let mut green = cluster.start_edge("green-1", "green", green_port);
    for edge in [blue_addr, green_addr] {
        let seen = eventually(30, "the distribution to reach the edge", || {
            let http = http.clone();
            async move { view(&http, edge, "/page.html").await.filter(|s| s.0 == 200) }
        })
        .await;
        assert_eq!(seen.2, "v1", "the plugin's header ({edge})");
        let again = view(&http, edge, "/page.html").await.expect("answer");
        assert_eq!(again.1, "HIT", "{edge}");
    }

    // Both edges listed with fresh heartbeats.
    let edges = eventually(10, "two healthy edges", || {
        let cluster = &cluster;
        async move {
            let (_, edges) = cluster.call("GET", "/v1/edges", Some(ADMIN), None).await;
            let healthy = edges
                .as_array()?
                .iter()
                .filter(|e| e["healthy"] == true)
                .count();
            (healthy == 2).then_some(edges)
        }
    })
    .await;
    let names: Vec<&str> = edges
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["blue-1", "green-1"]);

    // A purge reaches both; the job shows both acks; the next view is a MISS.
    let (status, job) = cluster
        .call(
            "POST",
            "/v1/purges",
            Some(&acme),
            Some(json!({"distribution": "shop", "url": "shop.example.com/page.html"})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    let done = eventually(10, "the purge to be acknowledged", || {
        let cluster = &cluster;
        let id = id.clone();
        let acme = acme.clone();
        async move {
            let (_, job) = cluster
                .call("GET", &format!("/v1/jobs/{id}"), Some(&acme), None)
                .await;
            (job["status"] == "done").then_some(job)
        }
    })
    .await;
    assert_eq!(done["progress"], "2/2", "{done}");
    for edge in [blue_addr, green_addr] {
        assert_eq!(
            view(&http, edge, "/page.html").await.expect("answer").1,
            "MISS",
            "{edge}"
        );
    }

    // Blue/green: version 2 staged, rolled out to blue only, then promoted.
    let (status, body) = cluster
        .call(
            "PUT",
            "/v1/distributions/shop?stage=true",
            Some(&acme),
            Some(with_origin("v2")),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, deployment) = cluster
        .call(
            "POST",
            "/v1/deployments",
            Some(&acme),
            Some(json!({"distribution": "shop", "version": 2, "group": "blue"})),
        )
        .await;
    assert_eq!(status, 201, "{deployment}");
    eventually(10, "blue to serve version 2", || {
        let http = http.clone();
        async move {
            view(&http, blue_addr, "/page.html")
                .await
                .filter(|s| s.2 == "v2")
        }
    })
    .await;
    assert_eq!(
        view(&http, green_addr, "/page.html")
            .await
            .expect("answer")
            .2,
        "v1",
        "green keeps version 1"
    );
    let deployment_id = deployment["id"].as_str().expect("id").to_string();
    let (status, _) = cluster
        .call(
            "POST",
            &format!("/v1/deployments/{deployment_id}/promote"),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(status, 200);
    eventually(10, "green to serve version 2", || {
        let http = http.clone();
        async move {
            view(&http, green_addr, "/page.html")
                .await
                .filter(|s| s.2 == "v2")
        }
    })
    .await;

    // Green goes down; a purge is made; green comes back and applies it
    // before it serves, so its first answer is a MISS.
    assert_eq!(
        view(&http, green_addr, "/page.html")
            .await
            .expect("answer")
            .1,
        "HIT"
    );
    green.kill();
    let (status, _) = cluster
        .call(
            "POST",
            "/v1/purges",
            Some(&acme),
            Some(json!({"distribution": "shop", "everything": true})),
        )
        .await;
    assert_eq!(status, 202);
    let mut green = cluster.start_edge("green-1", "green", green_port);
    let first = eventually(30, "green to serve again", || {
        let http = http.clone();
        async move { view(&http, green_addr, "/page.html").await }
    })
    .await;
    assert_eq!(
        first.1,
        "MISS",
        "the purge made while green was down: {}",
        log_of(cluster.log_dir(), "green-1")
    );

    // The controller goes down: both edges keep serving; green restarts
    // and serves from its last good configuration.
    if let Some(mut controller) = cluster.controller.take() {
        controller.kill();
    }
    green.kill();
    let _green = cluster.start_edge("green-1", "green", green_port);
    let seen = eventually(30, "green to serve without the controller", || {
        let http = http.clone();
        async move {
            view(&http, green_addr, "/page.html")
                .await
                .filter(|s| s.0 == 200)
        }
    })
    .await;
    assert_eq!(seen.2, "v2", "{}", log_of(cluster.log_dir(), "green-1"));
    assert_eq!(
        view(&http, blue_addr, "/page.html")
            .await
            .expect("answer")
            .0,
        200
    );

    // The controller returns (same data): the purge job record is intact
    // and the edges reconnect (heartbeats resume).
    cluster.start_controller();
    eventually(15, "both edges healthy again", || {
        let cluster = &cluster;
        async move {
            let (_, edges) = cluster.call("GET", "/v1/edges", Some(ADMIN), None).await;
            let healthy = edges
                .as_array()?
                .iter()
                .filter(|e| e["healthy"] == true)
                .count();
            (healthy == 2).then_some(())
        }
    })
    .await;
}
