//! Several controllers on one MongoDB, every part a real process: edges may
//! follow either controller and get the same configuration and orders; one
//! controller at a time dispatches jobs (the worker lease), and when it
//! dies during a purge another takes the lease over and the job completes.

use std::net::SocketAddr;

use parapet_e2e::*;
use serde_json::{json, Value};

const DISTRIBUTION: &str = r#"id = "shop"
domains = ["shop.example.com"]

[[origin]]
url = "ORIGIN"

[[behavior]]
path = "*"
cache = { default_ttl = 300 }
"#;

/// The status of `/page.html` from the edge at `edge`, if it answers.
async fn page_status(http: &reqwest::Client, edge: SocketAddr) -> Option<u16> {
    let response = http
        .get(format!("http://{edge}/page.html"))
        .header("host", "shop.example.com")
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}

/// The arguments of edge `name` on `port` following the controller whose
/// gRPC port is `grpc_port`.
fn edge_args(cluster: &Cluster, name: &str, port: u16, grpc_port: u16) -> Vec<String> {
    let mut args = cluster.edge_args(name, "default", port);
    let at = args
        .iter()
        .position(|a| a == "--controller")
        .expect("--controller")
        + 1;
    args[at] = format!("https://127.0.0.1:{grpc_port}");
    let client = cluster.ca.issue(&[name], name);
    args.extend(cluster.edge_tls_args(Some(&client)));
    args
}

/// Purges shop through the controller at `through`; the job's id.
async fn purge(cluster: &Cluster, through: &str, token: &str) -> String {
    let url = format!("{through}/v1/purges");
    let (status, job) = call(
        &cluster.http,
        "POST",
        &url,
        Some(token),
        Some(json!({"distribution": "shop", "everything": true})),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    job["id"].as_str().expect("job id").to_string()
}

/// Waits until job `id`, read through the controller at `through`, is done
/// with both edges' acknowledgements.
async fn acknowledged_by_both(cluster: &Cluster, through: &str, token: &str, id: &str) -> Value {
    let url = format!("{through}/v1/jobs/{id}");
    eventually(40, "both edges to acknowledge the purge", || {
        let url = url.clone();
        async move {
            let (_, job) = call(&cluster.http, "GET", &url, Some(token), None).await;
            (job["status"] == "done" && job["progress"] == "2/2").then_some(job)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_on_one_mongodb_share_edges_and_jobs() {
    let mongo = parapet_e2e::mongo::start().expect("SecantusDB (make testdata)");
    let mut cluster = Cluster::start(Some(mongo.uri("parapet_controllers")), 300);
    let (b_rest, b_grpc) = (free_port(), free_port());
    let mut b = cluster.spawn_controller("controller-b", b_rest, b_grpc);
    wait_for_port(([127, 0, 0, 1], b_rest).into(), 30);
    let a_url = cluster.rest.clone();
    let b_url = format!("https://127.0.0.1:{b_rest}");

    // A customer through A, its distribution through B.
    let acme = cluster.customer("acme").await;
    let file = cluster.dir.path().join("shop.toml");
    std::fs::write(&file, DISTRIBUTION.replace("ORIGIN", &cluster.origin)).expect("file");
    let home = cluster.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let (code, out, err) = parapet(
        &home,
        &b_url,
        Some(&cluster.ca.ca_file),
        &acme,
        &["dist", "apply", "-f", &file.to_string_lossy()],
    );
    assert_eq!(code, 0, "{out}{err}");

    // An edge on each controller: both serve it.
    let (port_a, port_b) = (free_port(), free_port());
    let edge_a: SocketAddr = ([127, 0, 0, 1], port_a).into();
    let edge_b: SocketAddr = ([127, 0, 0, 1], port_b).into();
    let grpc_a = cluster.grpc_port();
    let mut on_a = cluster.spawn_edge("fra-a", &edge_args(&cluster, "fra-a", port_a, grpc_a));
    let mut on_b = cluster.spawn_edge("fra-b", &edge_args(&cluster, "fra-b", port_b, b_grpc));
    for edge in [edge_a, edge_b] {
        eventually(30, "the distribution on both edges", || {
            let http = cluster.http.clone();
            async move { (page_status(&http, edge).await == Some(200)).then_some(()) }
        })
        .await;
    }

    // A purge through either controller reaches both edges.
    for (through, read) in [(&a_url, &b_url), (&b_url, &a_url)] {
        let id = purge(&cluster, through, &acme).await;
        acknowledged_by_both(&cluster, read, &acme, &id).await;
    }

    // One of them holds the worker lease.
    let logs = cluster.log_dir().to_path_buf();
    let took = |name: &str| log_of(&logs, name).contains("took the worker lease");
    let (a_holds, b_holds) = (took("controller"), took("controller-b"));
    assert!(
        a_holds != b_holds,
        "exactly one holds the lease: {}\n{}",
        log_of(cluster.log_dir(), "controller"),
        log_of(cluster.log_dir(), "controller-b")
    );

    // The holder dies during a purge made through the other. The edge
    // that followed it moves to the survivor (as a balancer would send
    // it), and the job still completes.
    let (survivor_url, survivor_grpc, survivor_log) = if a_holds {
        (&b_url, b_grpc, "controller-b")
    } else {
        (&a_url, grpc_a, "controller")
    };
    let id = purge(&cluster, survivor_url, &acme).await;
    if a_holds {
        cluster.kill_controller();
        on_a.kill();
        on_a = cluster.spawn_edge(
            "fra-a",
            &edge_args(&cluster, "fra-a", port_a, survivor_grpc),
        );
    } else {
        b.kill();
        on_b.kill();
        on_b = cluster.spawn_edge(
            "fra-b",
            &edge_args(&cluster, "fra-b", port_b, survivor_grpc),
        );
    }
    let job = acknowledged_by_both(&cluster, survivor_url, &acme, &id).await;
    assert_eq!(job["edges"].as_array().map(Vec::len), Some(2), "{job}");
    assert!(
        took(survivor_log),
        "the survivor took the lease over: {}",
        log_of(cluster.log_dir(), survivor_log)
    );
    drop((on_a, on_b, b));
}
