//! The control plane end to end, every part a real process on loopback:
//! parapet-controller (embedded store), two parapet-edge in controller mode
//! (groups blue and green), and an origin (Python's http.server). A
//! distribution with a plugin reaches both edges; a purge reaches both and
//! its job shows both acks; a blue/green deployment changes one group,
//! then all; an edge that was down during a purge applies it before it
//! serves; edges keep serving, and restart, while the controller is down;
//! an edge removed while it runs comes back as a new one with an empty
//! cache. Also: an order sent again is not carried out twice.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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

/// Views `/page.html` through `edge` every 50 ms, for up to `seconds`,
/// until an answer satisfies `seen`; that answer.
async fn view_until(
    http: &reqwest::Client,
    edge: SocketAddr,
    seconds: u64,
    what: &str,
    seen: impl Fn(&(u16, String, String)) -> bool,
) -> (u16, String, String) {
    let seen = &seen;
    eventually(seconds, what, || async move {
        view(http, edge, "/page.html").await.filter(seen)
    })
    .await
}

/// The distribution as a customer writes it (TOML), with the header-filter
/// plugin setting `content-security-policy: <csp>` on every answer.
fn distribution_toml(origin: &str, csp: &str) -> String {
    format!(
        r#"id = "shop"
domains = ["shop.example.com"]

[[origin]]
url = "{origin}"

[[plugin]]
name = "headers"
wasm = "header-filter"
config = {{ response = {{ csp = "{csp}", overwrite = true }} }}

[[behavior]]
path = "*"
cache = {{ default_ttl = 300 }}
viewer_response = ["headers"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_embedded_store() {
    scenario(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mongodb() {
    let Some(mongo) = parapet_e2e::mongo::start() else {
        return;
    };
    scenario(Some(mongo.uri("parapet_e2e"))).await;
}

/// Creates customer `acme` through the CLI (`cli(token, args)`); returns
/// its token.
fn customer_acme(cli: &impl Fn(&str, &[&str]) -> (i32, String, String)) -> String {
    let (code, out, err) = cli(ADMIN, &["customer", "create", "acme", "--name", "Acme"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli(
        ADMIN,
        &[
            "--json",
            "token",
            "issue",
            "--customer",
            "acme",
            "--name",
            "e2e",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let issued: Value = serde_json::from_str(&out).expect("JSON");
    issued["token"].as_str().expect("token").to_string()
}

/// Purges shop's `/page.html` through the CLI and waits (15 s at most)
/// for both edges; the finished job.
fn purge_page(cli: &impl Fn(&str, &[&str]) -> (i32, String, String), token: &str) -> Value {
    let (code, out, err) = cli(
        token,
        &[
            "--json",
            "purge",
            "url",
            "shop",
            "shop.example.com/page.html",
            "--wait",
            "--timeout",
            "15",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str(&out).expect("JSON")
}

/// The whole scenario, the controller keeping its data in MongoDB at
/// `mongodb_uri` or else in the embedded store.
async fn scenario(mongodb_uri: Option<String>) {
    // Heartbeats every 300 ms: health changes show within a second.
    let mut cluster = Cluster::start(mongodb_uri, 300);
    let http = cluster.http.clone();

    // Through the CLI: a customer and its token (operator), a plugin and a
    // distribution (customer).
    let home = cluster.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let (rest, ca_file) = (cluster.rest.clone(), cluster.ca.ca_file.clone());
    let cli = |token: &str, args: &[&str]| parapet(&home, &rest, Some(&ca_file), token, args);
    let acme = customer_acme(&cli);
    let component = plugin_component("header-filter");
    let (code, out, err) = cli(&acme, &["plugin", "upload", &component.to_string_lossy()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("header-filter"), "{out}");
    // The operator manages a customer's plugins by naming the customer.
    let noop = plugin_component("noop");
    let noop = noop.to_string_lossy();
    let (code, out, err) = cli(ADMIN, &["plugin", "upload", &noop, "--customer", "acme"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli(&acme, &["--json", "plugin", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"noop\""), "acme has it: {out}");
    let (code, out, err) = cli(ADMIN, &["plugin", "rm", "noop", "--customer", "acme"]);
    assert_eq!(code, 0, "{out}{err}");
    let origin = cluster.origin.clone();
    let dist_dir = cluster.dir.path().to_path_buf();
    let dist_file = |csp: &str| {
        let path = dist_dir.join(format!("shop-{csp}.toml"));
        std::fs::write(&path, distribution_toml(&origin, csp)).expect("dist file");
        path.to_string_lossy().to_string()
    };
    let (code, out, err) = cli(&acme, &["dist", "apply", "-f", &dist_file("v1")]);
    assert_eq!(code, 0, "{out}{err}");
    // A wrong token is refused with exit code 2 and a hint.
    let (code, _, err) = cli("ppc_wrong", &["dist", "list"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("401") && err.contains("check the token"),
        "{err}"
    );

    // Two edges, blue and green: both serve it, with the plugin at work.
    let (blue_port, green_port) = (free_port(), free_port());
    let blue_addr: SocketAddr = ([127, 0, 0, 1], blue_port).into();
    let green_addr: SocketAddr = ([127, 0, 0, 1], green_port).into();
    let blue_admin = free_port();
    let _blue = cluster.start_edge_with_admin("blue-1", "blue", blue_port, Some(blue_admin));
    let mut green = cluster.start_edge("green-1", "green", green_port);
    for edge in [blue_addr, green_addr] {
        let seen = view_until(&http, edge, 30, "the distribution to reach the edge", |s| {
            s.0 == 200
        })
        .await;
        assert_eq!(seen.2, "v1", "the plugin's header ({edge})");
        let again = view(&http, edge, "/page.html").await.expect("answer");
        assert_eq!(again.1, "HIT", "{edge}");
    }

    // Both edges in `parapet edges`, with fresh heartbeats.
    let edges = eventually(10, "two healthy edges", || {
        let out = cli(ADMIN, &["--json", "edges"]).1;
        async move {
            let edges: Value = serde_json::from_str(&out).ok()?;
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
    let (_, table, _) = cli(ADMIN, &["edges"]);
    assert!(
        table.starts_with("NAME") && table.contains("blue-1"),
        "{table}"
    );

    // A purge through the CLI, waited for: both edges acknowledged; the
    // next view is a MISS on both.
    let done = purge_page(&cli, &acme);
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["progress"], "2/2", "{done}");
    for edge in [blue_addr, green_addr] {
        assert_eq!(
            view(&http, edge, "/page.html").await.expect("answer").1,
            "MISS",
            "{edge}"
        );
    }

    // Both edges shipped their access logs: the customer reads them.
    eventually(10, "access logs from both edges", || {
        let cluster = &cluster;
        let acme = acme.clone();
        async move {
            let (_, lines) = cluster
                .call("GET", "/v1/distributions/shop/logs", Some(&acme), None)
                .await;
            let mut edges: Vec<&str> = lines
                .as_array()?
                .iter()
                .filter(|l| l["line"]["uri"] == "/page.html" && l["line"]["status"] == 200)
                .filter_map(|l| l["edge"].as_str())
                .collect();
            edges.sort_unstable();
            edges.dedup();
            (edges.len() == 2).then_some(())
        }
    })
    .await;

    // Blue/green through the CLI: version 2 staged, rolled out to blue
    // only, then promoted.
    let (code, out, err) = cli(&acme, &["dist", "apply", "-f", &dist_file("v2"), "--stage"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli(
        &acme,
        &["--json", "deploy", "start", "shop", "2", "--group", "blue"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let deployment: Value = serde_json::from_str(&out).expect("JSON");
    view_until(&http, blue_addr, 10, "blue to serve version 2", |s| {
        s.2 == "v2"
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
    let (code, out, err) = cli(ADMIN, &["--json", "groups"]);
    assert_eq!(code, 0, "{out}{err}");
    let groups: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(groups[0]["name"], "blue", "{groups}");
    assert_eq!(groups[0]["deployments"], json!([deployment_id]), "{groups}");
    assert_eq!(groups[1]["name"], "green", "{groups}");
    assert_eq!(groups[1]["deployments"], json!([]), "{groups}");
    let (code, out, err) = cli(&acme, &["deploy", "promote", &deployment_id]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("promoted"), "{out}");
    view_until(&http, green_addr, 10, "green to serve version 2", |s| {
        s.2 == "v2"
    })
    .await;

    // Green goes down; a purge is made; the controller restarts while the
    // job waits for green; green comes back and applies the purge before it
    // serves (its first answer is a MISS), and the job completes.
    assert_eq!(
        view(&http, green_addr, "/page.html")
            .await
            .expect("answer")
            .1,
        "HIT"
    );
    green.kill();
    let (status, job) = cluster
        .call(
            "POST",
            "/v1/purges",
            Some(&acme),
            Some(json!({"distribution": "shop", "everything": true})),
        )
        .await;
    assert_eq!(status, 202);
    let job_id = job["id"].as_str().expect("id").to_string();
    let job_path = format!("/v1/jobs/{job_id}");
    eventually(10, "blue to acknowledge", || {
        let cluster = &cluster;
        let (acme, job_path) = (acme.clone(), job_path.clone());
        async move {
            let (_, job) = cluster.call("GET", &job_path, Some(&acme), None).await;
            (job["progress"] == "1/2").then_some(())
        }
    })
    .await;
    cluster.kill_controller();
    cluster.start_controller();
    let mut green = cluster.start_edge("green-1", "green", green_port);
    let first = view_until(&http, green_addr, 30, "green to serve again", |_| true).await;
    assert_eq!(
        first.1,
        "MISS",
        "the purge made while green was down: {}",
        log_of(cluster.log_dir(), "green-1")
    );
    let (code, out, err) = cli(&acme, &["--json", "jobs", &job_id]);
    assert_eq!(code, 0, "{err}");
    let finished: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(finished["status"], "done", "{finished}");
    assert_eq!(finished["progress"], "2/2", "{finished}");

    // The controller goes down: both edges keep serving; green restarts
    // and serves from its last good configuration.
    cluster.kill_controller();
    green.kill();
    let mut green = cluster.start_edge("green-1", "green", green_port);
    let seen = view_until(
        &http,
        green_addr,
        30,
        "green to serve without the controller",
        |s| s.0 == 200,
    )
    .await;
    assert_eq!(seen.2, "v2", "{}", log_of(cluster.log_dir(), "green-1"));
    assert_eq!(
        view(&http, blue_addr, "/page.html")
            .await
            .expect("answer")
            .0,
        200
    );
    // The access log lines blue cannot ship are counted.
    let metrics_url = format!("http://127.0.0.1:{blue_admin}/metrics");
    eventually(10, "blue to count the log lines it could not ship", || {
        let request = http.get(&metrics_url).send();
        async move {
            let metrics = request.await.ok()?.text().await.ok()?;
            let dropped: f64 = metrics
                .lines()
                .find_map(|line| {
                    line.strip_prefix(
                        r#"parapet_access_log_lines_dropped_total{reason="not_shipped"} "#,
                    )
                })?
                .parse()
                .ok()?;
            (dropped > 0.0).then_some(())
        }
    })
    .await;

    // The controller returns (same data): the purge job record is intact
    // and the edges reconnect (heartbeats resume).
    cluster.start_controller();
    let (status, job) = cluster.call("GET", &job_path, Some(&acme), None).await;
    assert_eq!((status, &job["status"]), (200, &json!("done")), "{job}");
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
    // ... and follow the configuration again: version 3 reaches both.
    let (code, out, err) = cli(&acme, &["dist", "apply", "-f", &dist_file("v3")]);
    assert_eq!(code, 0, "{out}{err}");
    for edge in [blue_addr, green_addr] {
        view_until(&http, edge, 10, "version 3 on both edges", |s| s.2 == "v3").await;
    }

    // Green is removed while it runs: it registers again as a new edge,
    // drops its cache (it cannot know what was purged meanwhile) and takes
    // orders under its new id.
    view_until(&http, green_addr, 10, "green to hold the page", |s| {
        s.1 == "HIT"
    })
    .await;
    let green_id = |edges: &Value| -> Option<String> {
        let green = edges.as_array()?.iter().find(|e| e["name"] == "green-1")?;
        green["id"].as_str().map(String::from)
    };
    let (_, edges) = cluster.call("GET", "/v1/edges", Some(ADMIN), None).await;
    let removed_id = green_id(&edges).expect("green listed");
    let (code, out, err) = cli(ADMIN, &["edges", "rm", "green-1"]);
    assert_eq!(code, 0, "{out}{err}");
    eventually(15, "green registered again under a new id", || {
        let cluster = &cluster;
        let removed_id = removed_id.clone();
        async move {
            let (_, edges) = cluster.call("GET", "/v1/edges", Some(ADMIN), None).await;
            green_id(&edges).filter(|id| *id != removed_id)
        }
    })
    .await;
    view_until(&http, green_addr, 10, "green to drop its cache", |s| {
        s.1 == "MISS"
    })
    .await;
    let done = purge_page(&cli, &acme);
    assert_eq!(done["progress"], "2/2", "green takes orders again: {done}");

    // Green retires, holding the page on disk: stopped, then removed by
    // the operator.
    view_until(&http, green_addr, 10, "green to hold the page again", |s| {
        s.1 == "HIT"
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await; // the disk write lands
    green.kill();
    let (code, out, err) = cli(ADMIN, &["edges", "rm", "green-1"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli(ADMIN, &["--json", "edges"]);
    assert_eq!(code, 0, "{err}");
    let edges: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(edges.as_array().map(Vec::len), Some(1), "{edges}");
    assert_eq!(edges[0]["name"], "blue-1");
    // Started again, it is a new edge, and its disk cache was cleared
    // before it served: purges made meanwhile would be unknown to it.
    let _green = cluster.start_edge("green-1", "green", green_port);
    let first = view_until(
        &http,
        green_addr,
        30,
        "green to serve as a new edge",
        |_| true,
    )
    .await;
    assert_eq!(first.1, "MISS", "{}", log_of(cluster.log_dir(), "green-1"));
}

/// An edge whose stored credential the controller refuses (its data was
/// reset, or the edge re-registered elsewhere) registers again once, though
/// its config, order, heartbeat and log tasks all find the credential gone
/// at the same moment: several registrations would revoke each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_credential_is_replaced_by_one_registration() {
    let cluster = Cluster::start(None, 300);
    let state = cluster.dir.path().join("fra-1");
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::write(state.join("credential"), "ppe_unknown").expect("credential");
    let _edge = cluster.start_edge("fra-1", "default", free_port());
    eventually(15, "the edge healthy", || async {
        let (_, edges) = cluster.call("GET", "/v1/edges", Some(ADMIN), None).await;
        (edges[0]["healthy"] == true).then_some(())
    })
    .await;
    // A few more heartbeats: a churn of registrations would show by now.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let log = log_of(cluster.dir.path(), "fra-1");
    assert_eq!(
        log.matches("registered with the controller").count(),
        1,
        "{log}"
    );
}

/// An order the controller sends again while the edge is still carrying it
/// out (here a prewarm slower than six heartbeat intervals) is acknowledged
/// again, not carried out twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_sent_again_is_not_carried_out_twice() {
    // Heartbeats every 100 ms: an order not acknowledged within 600 ms is
    // sent again.
    let cluster = Cluster::start(None, 100);
    // An origin that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!("http://{}", silent.local_addr().expect("address"));
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            accepted.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });

    let home = cluster.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let cli = |token: &str, args: &[&str]| cluster.cli(&home, token, args);
    let acme = customer_acme(&cli);
    let dist_file = cluster.dir.path().join("slow.toml");
    std::fs::write(
        &dist_file,
        format!(
            r#"id = "slow"
domains = ["slow.example.com"]

[[origin]]
url = "{silent_url}"
read_timeout_ms = 2000

[[behavior]]
path = "*"
"#
        ),
    )
    .expect("dist file");
    let (code, out, err) = cli(
        &acme,
        &["dist", "apply", "-f", &dist_file.to_string_lossy()],
    );
    assert_eq!(code, 0, "{out}{err}");
    let _edge = cluster.start_edge("fra-1", "default", free_port());
    let edge_log = || log_of(cluster.log_dir(), "fra-1");
    eventually(30, "the edge to apply the configuration", || {
        let applied = edge_log().contains("configuration from the controller applied");
        async move { applied.then_some(()) }
    })
    .await;

    let (status, job) = cluster
        .call(
            "POST",
            "/v1/prewarms",
            Some(&acme),
            Some(json!({"distribution": "slow", "urls": ["http://slow.example.com/page"]})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let job_path = format!("/v1/jobs/{}", job["id"].as_str().expect("id"));
    let finished = eventually(15, "the prewarm to finish", || {
        let (cluster, acme, job_path) = (&cluster, acme.clone(), job_path.clone());
        async move {
            let (_, job) = cluster.call("GET", &job_path, Some(&acme), None).await;
            (job["status"] == "failed" || job["status"] == "done").then_some(job)
        }
    })
    .await;
    assert_eq!(
        finished["status"], "failed",
        "the origin never answers: {finished}"
    );
    eventually(10, "the copy sent meanwhile to be acknowledged", || {
        let again = edge_log().contains("repeated order acknowledged again");
        async move { again.then_some(()) }
    })
    .await;
    let log = edge_log();
    assert_eq!(log.matches("order carried out").count(), 1, "{log}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one fetch from the origin"
    );
}
