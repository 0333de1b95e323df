//! Logging and metrics shared by Parapet's servers: JSON log lines on
//! stderr filtered by `RUST_LOG`, and the process-wide Prometheus recorder
//! with its text rendering and a listener for `/metrics` and `/healthz`.

use std::sync::OnceLock;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// Histogram buckets in seconds, from half a millisecond to ten seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Logs JSON lines to stderr. `RUST_LOG` chooses what is logged;
/// without it, `default_filter` (e.g. `info,foyer=warn`).
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(filter)
        .init();
}

/// How often the upkeep thread drains recorded histogram samples into the
/// fixed buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The process-wide Prometheus recorder, installed on first use, with its
/// upkeep thread.
///
/// The exporter keeps every histogram sample in a growing buffer until
/// something drains it into the fixed buckets; a render does, and so does
/// [`PrometheusHandle::run_upkeep`]. A server nobody scrapes would grow by
/// each sample it records (about 19 bytes per edge request), so a thread
/// (`metrics-upkeep`) runs the upkeep every second: memory stays bounded
/// (the series' fixed buckets and at most about a second of samples),
/// whether or not `/metrics` is scraped.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder installed first (tests embedding several
        // servers): this one's handle still renders what it records.
        let _ = metrics::set_global_recorder(recorder);
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the metrics upkeep thread; histograms drain only when /metrics is scraped");
        }
        handle
    })
}

/// Everything recorded, in Prometheus's text format.
pub fn render() -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        prometheus().render(),
    )
        .into_response()
}

/// Serves `/metrics` and `/healthz` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    prometheus();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(|| async { render() }));
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics listener failed");
    }
}
