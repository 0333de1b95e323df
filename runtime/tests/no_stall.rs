//! Tenant isolation: one customer's plugin that spins to its deadline does
//! not stall another customer's cache hits on the same edge workers, and
//! its CPU time shows in the metrics under its distribution.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config, edge, plugins_dir, request, until_hit_on, Origin, Reply};

/// Concurrent viewers of the spinning distribution.
const SPINNING_CLIENTS: usize = 8;
/// Sequential cache hits measured on the quiet distribution.
const HITS: usize = 200;

/// Distribution `quiet` for `quiet.test`: no plugins.
fn quiet_distribution(origin: &str) -> String {
    format!(
        r#"
[[distribution]]
id = "quiet"
customer = "globex"
domains = ["quiet.test"]

[[distribution.origin]]
url = "{origin}"

[[distribution.behavior]]
path = "*"
"#
    )
}

/// The `q`-quantile of sorted `values`.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

#[tokio::test]
async fn a_spinning_plugin_does_not_stall_another_distributions_hits() {
    let origin = Origin::start().await;
    // `site` (example.test) runs the testbed spinning in on-viewer-request
    // until its 50 ms deadline, fail-closed (the default).
    let extra = format!(
        r#"
[[distribution.plugin]]
name = "spin"
wasm = "{}"
config = {{ mode = "loop" }}
limits = {{ hook_deadline_ms = 50 }}
"#,
        plugins_dir().join("testbed.wasm").display()
    );
    let text = config(
        &origin.url(),
        &quiet_distribution(&origin.url()),
        r#"viewer_request = ["spin"]"#,
        &extra,
    );
    let edge = edge(&text).await;
    let addr = edge.addr();
    origin.set(
        "/one-kib",
        Reply::ok(vec![b'x'; 1024], &[("cache-control", "max-age=600")]),
    );
    until_hit_on(addr, "quiet.test", "/one-kib").await;

    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..SPINNING_CLIENTS)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    statuses.push(
                        request(addr, "GET", "example.test", "/spin", &[])
                            .await
                            .status,
                    );
                }
                statuses
            })
        })
        .collect();
    // Every spinning viewer has a hook under way.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut latencies = Vec::with_capacity(HITS);
    for _ in 0..HITS {
        let started = Instant::now();
        let hit = request(addr, "GET", "quiet.test", "/one-kib", &[]).await;
        latencies.push(started.elapsed());
        assert_eq!((hit.status, hit.cache()), (200, "HIT"));
        assert_eq!(hit.body.len(), 1024);
    }
    stop.store(true, Ordering::Relaxed);
    let mut answered = Vec::new();
    for spinner in spinners {
        answered.extend(spinner.await.unwrap());
    }

    latencies.sort();
    let (median, p90) = (quantile(&latencies, 0.5), quantile(&latencies, 0.9));
    eprintln!(
        "quiet hits under {SPINNING_CLIENTS} spinning viewers: median {median:?}, p90 {p90:?}, max {:?}; {} spinning requests answered",
        latencies[HITS - 1],
        answered.len()
    );
    assert!(
        median < Duration::from_millis(10) && p90 < Duration::from_millis(25),
        "hits of a plugin-free distribution were held up by another's plugin: median {median:?}, p90 {p90:?}"
    );
    // Each spinning request got the fail-closed answer of a plugin past its
    // deadline.
    assert!(answered.len() >= SPINNING_CLIENTS, "{answered:?}");
    assert!(answered.iter().all(|&status| status == 503), "{answered:?}");

    // The spinning plugin's CPU time is its distribution's: at least its
    // deadline for each request it failed (its series counts microseconds).
    let metrics = request(edge.admin(), "GET", "admin", "/metrics", &[])
        .await
        .text();
    let cpu = |distribution: &str| -> Option<f64> {
        let series =
            format!("parapet_plugin_cpu_microseconds_total{{distribution=\"{distribution}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .map(|value| value.parse().unwrap())
    };
    let site = cpu("site").unwrap_or_else(|| panic!("no CPU series for site:\n{metrics}"));
    assert!(
        site >= answered.len() as f64 * 50_000.0,
        "{site} µs of plugin CPU for {} requests that each ran 50 ms",
        answered.len()
    );
    assert_eq!(cpu("quiet"), None, "quiet runs no plugins");
}
