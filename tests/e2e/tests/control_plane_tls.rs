//! The control plane over TLS, every part a real process: the CLI and
//! edges refuse a controller whose certificate their authority did not
//! issue, and a controller asking for mutual TLS lets no edge through
//! without a client certificate from its authority.

use std::time::Duration;

use parapet_e2e::tls::TestCa;
use parapet_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_refuse_a_controller_with_a_wrong_certificate() {
    let cluster = Cluster::start(None, 300);
    let home = cluster.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let stranger = TestCa::new(cluster.dir.path(), "stranger");

    // The CLI: with another authority, or the system's roots, it stops at
    // the certificate (exit 3) and says so; with the right one it works.
    for ca_file in [Some(stranger.ca_file.as_path()), None] {
        let (code, out, err) = parapet(&home, &cluster.rest, ca_file, ADMIN, &["dist", "list"]);
        assert_eq!(code, 3, "{out}{err}");
        assert!(
            err.contains("cannot reach the controller") && err.contains("certificate"),
            "{err}"
        );
    }
    let (code, out, err) = cluster.cli(&home, ADMIN, &["dist", "list"]);
    assert_eq!(code, 0, "{out}{err}");

    // Edges: one trusting another authority, one without a client
    // certificate, one whose client certificate another authority issued.
    let own = cluster.ca.issue(&["edge"], "edge");
    let foreign = stranger.issue(&["edge"], "edge");
    // Each with the TLS alert that names its fault.
    let refused = [
        ("trusts-a-stranger", "UnknownIssuer", {
            let mut args = vec![
                "--controller-ca".to_string(),
                stranger.ca_file.to_string_lossy().to_string(),
            ];
            args.extend(cluster.edge_tls_args(Some(&own)).into_iter().skip(2));
            args
        }),
        (
            "no-client-cert",
            "CertificateRequired",
            cluster.edge_tls_args(None),
        ),
        (
            "foreign-client-cert",
            "UnknownCA",
            cluster.edge_tls_args(Some(&foreign)),
        ),
    ];
    let mut processes = Vec::new();
    for (name, _, tls) in &refused {
        let mut args = cluster.edge_args(name, "default", free_port());
        args.extend(tls.iter().cloned());
        processes.push(cluster.spawn_edge(name, &args));
    }
    // The positive control: the cluster's own edge, started last.
    let _good = cluster.start_edge("good", "default", free_port());
    eventually(30, "the good edge to register", || async {
        let (_, edges) = cluster.call("GET", "/v1/edges", Some(ADMIN), None).await;
        (edges.as_array().is_some_and(|e| !e.is_empty())).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, edges) = cluster.call("GET", "/v1/edges", Some(ADMIN), None).await;
    let names: Vec<&str> = edges
        .as_array()
        .expect("edge list")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["good"], "only the edge with the right certificates");
    for (name, why, _) in &refused {
        let log = log_of(cluster.log_dir(), name);
        assert!(log.contains(why), "{name} says {why}: {log}");
    }
}
