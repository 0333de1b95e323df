//! How fast the control plane reaches edges, on loopback: a controller
//! (embedded store) and two edges in controller mode, as processes.
//!
//! - **Purge**: from the controller accepting `POST /v1/purges` to the
//!   second edge's acknowledgement, from the job's own timestamps
//!   (`created_ms`, each edge's `acked_ms`).
//! - **Config change**: from sending `PUT /v1/distributions/...` to both
//!   edges serving the new version (the header-filter plugin's
//!   `content-security-policy` changes), polled every millisecond.
//!
//! The config change is measured twice: with the one distribution, then
//! with 10 000 distributions on the controller (ten customers of 1 000),
//! since one customer's change must not cost in proportion to everyone
//! else's.
//!
//! Run with `make bench-controller` (release binaries); prints medians and
//! percentiles of 20 runs each as a Markdown table.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parapet_e2e::*;
use serde_json::{json, Value};

const RUNS: usize = 20;
/// Distributions other customers hold in the second measurement.
const FILLER_CUSTOMERS: usize = 10;
const FILLER_PER_CUSTOMER: usize = 1_000;

fn spec(origin: &str, csp: &str) -> Value {
    json!({
        "domains": ["shop.example.com"],
        "origin": [{"url": origin}],
        "plugin": [{"name": "headers", "wasm": "header-filter", "config": {"response": {"csp": csp, "overwrite": true}}}],
        "behavior": [{"path": "*", "cache": {"default_ttl": 300}, "viewer_response": ["headers"]}],
    })
}

async fn csp_of(http: &reqwest::Client, edge: SocketAddr) -> Option<String> {
    let response = http
        .get(format!("http://{edge}/page.html"))
        .header("host", "shop.example.com")
        .send()
        .await
        .ok()?;
    let csp = response
        .headers()
        .get("content-security-policy")?
        .to_str()
        .ok()?
        .to_string();
    let _ = response.bytes().await;
    Some(csp)
}

fn summary(name: &str, mut samples: Vec<f64>) -> String {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "| {name} | {RUNS} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
        at(0.5),
        at(0.9),
        samples[0],
        samples[samples.len() - 1]
    )
}

#[tokio::main]
async fn main() {
    // Heartbeats at the controller's default interval, as in production.
    let cluster = Cluster::start(None, 5_000);
    let http = cluster.http.clone();
    let acme = cluster.customer("acme").await;
    let uploaded = http
        .post(format!("{}/v1/plugins/header-filter", cluster.rest))
        .bearer_auth(&acme)
        .body(std::fs::read(plugin_component("header-filter")).expect("plugin"))
        .send()
        .await
        .expect("upload");
    assert!(uploaded.status().is_success());
    let apply = |csp: String| {
        let cluster = &cluster;
        let acme = acme.clone();
        async move {
            cluster
                .call(
                    "PUT",
                    "/v1/distributions/shop",
                    Some(&acme),
                    Some(spec(&cluster.origin, &csp)),
                )
                .await
        }
    };
    assert_eq!(apply("v0".into()).await.0, 201);

    let mut edges = Vec::new();
    let mut processes = Vec::new();
    for name in ["edge-1", "edge-2"] {
        let port = free_port();
        processes.push(cluster.start_edge(name, "default", port));
        edges.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    for edge in &edges {
        eventually(30, "the edges to serve", || {
            let http = http.clone();
            let edge = *edge;
            async move { csp_of(&http, edge).await.filter(|c| c == "v0") }
        })
        .await;
    }

    // Config changes: PUT until both edges serve the new version.
    let config = config_changes(&http, &edges, &apply, 1).await;

    // Purges: accepted → last acknowledgement, from the job's timestamps.
    let mut purge = Vec::new();
    for _ in 0..RUNS {
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
            let (cluster, acme, path) = (&cluster, acme.clone(), format!("/v1/jobs/{id}"));
            async move {
                let (_, job) = cluster.call("GET", &path, Some(&acme), None).await;
                (job["status"] == "done").then_some(job)
            }
        })
        .await;
        let created = done["created_ms"].as_i64().expect("created");
        let last_ack = done["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .filter_map(|e| e["acked_ms"].as_i64())
            .max()
            .expect("acks");
        purge.push((last_ack - created) as f64);
    }

    println!("| what | runs | median | p90 | min | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!("{}", summary("purge acknowledged by both edges", purge));
    println!("{}", summary("config change served by both edges", config));

    // The same with 10 000 distributions on the controller.
    let started = Instant::now();
    fill(&cluster).await;
    let filled = started.elapsed();
    let last = format!(
        "d{}.c{}.fill.test",
        FILLER_PER_CUSTOMER - 1,
        FILLER_CUSTOMERS - 1
    );
    for edge in &edges {
        eventually(
            120,
            "the last filler distribution to reach the edges",
            || {
                let (http, last) = (http.clone(), last.clone());
                let edge = *edge;
                async move {
                    let response = http
                        .get(format!("http://{edge}/page.html"))
                        .header("host", last)
                        .send()
                        .await
                        .ok()?;
                    response.status().is_success().then_some(())
                }
            },
        )
        .await;
    }
    let crowded = config_changes(&http, &edges, &apply, RUNS + 1).await;
    println!(
        "{}",
        summary(
            "config change served by both edges, 10 000 distributions",
            crowded
        )
    );
    eprintln!(
        "{} filler distributions applied in {:.1} s",
        FILLER_CUSTOMERS * FILLER_PER_CUSTOMER,
        filled.as_secs_f64()
    );
    drop(processes);
}

/// Applies `csp` versions `first..first + RUNS` of shop; for each, the
/// time until both edges serve it, in milliseconds.
async fn config_changes<F, Fut>(
    http: &reqwest::Client,
    edges: &[SocketAddr],
    apply: &F,
    first: usize,
) -> Vec<f64>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = (u16, Value)>,
{
    let mut config = Vec::new();
    for run in first..first + RUNS {
        let csp = format!("v{run}");
        let started = Instant::now();
        assert_eq!(apply(csp.clone()).await.0, 201);
        for edge in edges {
            loop {
                if csp_of(http, *edge).await.as_deref() == Some(csp.as_str()) {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "version {csp} never reached {edge}"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        config.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    config
}

/// Ten more customers with 1 000 plugin-free distributions each, applied
/// four at a time, with progress on stderr.
async fn fill(cluster: &Cluster) {
    use futures_util::StreamExt;
    let mut tokens = Vec::new();
    for c in 0..FILLER_CUSTOMERS {
        tokens.push(cluster.customer(&format!("filler{c}")).await);
    }
    let jobs = (0..FILLER_CUSTOMERS).flat_map(|c| (0..FILLER_PER_CUSTOMER).map(move |i| (c, i)));
    let applied = futures_util::stream::iter(jobs)
        .map(|(c, i)| {
            let token = tokens[c].clone();
            async move {
                let spec = json!({
                    "domains": [format!("d{i}.c{c}.fill.test")],
                    "origin": [{"url": cluster.origin}],
                    "behavior": [{"path": "*"}],
                });
                let (status, body) = cluster
                    .call(
                        "PUT",
                        &format!("/v1/distributions/f{c}-{i}"),
                        Some(&token),
                        Some(spec),
                    )
                    .await;
                assert_eq!(status, 201, "{body}");
            }
        })
        .buffer_unordered(4);
    let mut done = 0;
    futures_util::pin_mut!(applied);
    while applied.next().await.is_some() {
        done += 1;
        if done % 1000 == 0 {
            eprintln!("{done} filler distributions applied");
        }
    }
}
