//! Prometheus metrics: REST requests by route and status (a middleware),
//! and, read from the store at each scrape, edges by health and jobs by
//! status, and each certificate's expiry. Served on their own listener (`--metrics`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::json;
use tokio::net::TcpListener;

use crate::api::App;
use crate::model::{Job, JobStatus};
use crate::store::{Collection, StoreError};

/// Serves `/metrics` and `/healthz` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, app: App) {
    parapet_telemetry::prometheus();
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(scrape))
        .with_state(app);
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!(error = %e, "the metrics listener failed");
    }
}

async fn scrape(State(app): State<App>) -> Response {
    if let Err(e) = refresh_gauges(&app).await {
        tracing::warn!(error = %e, "metrics: cannot read edges and jobs");
    }
    parapet_telemetry::render()
}

/// Sets `parapet_controller_edges{health}`, `parapet_controller_jobs{status}`
/// and each certificate's expiry.
async fn refresh_gauges(app: &App) -> Result<(), StoreError> {
    let edges = crate::edges::list(&app.store, app.heartbeat_interval_ms).await?;
    let healthy = edges.iter().filter(|e| e.healthy).count();
    metrics::gauge!("parapet_controller_edges", "health" => "healthy").set(healthy as f64);
    metrics::gauge!("parapet_controller_edges", "health" => "unhealthy")
        .set((edges.len() - healthy) as f64);
    for (status, name) in [
        (JobStatus::Queued, "queued"),
        (JobStatus::Dispatching, "dispatching"),
        (JobStatus::Dispatched, "dispatched"),
    ] {
        let jobs: Vec<Job> = app
            .store
            .find(Collection::Jobs, &[("status", json!(status))])
            .await?;
        metrics::gauge!("parapet_controller_jobs", "status" => name).set(jobs.len() as f64);
    }
    crate::certificates::export_expiry(&crate::certificates::all(&app.store).await?);
    Ok(())
}

/// The method as a label from a fixed set: any client can send a made-up
/// method, and each would otherwise be a series of its own.
fn method_label(method: &axum::http::Method) -> &'static str {
    match *method {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::PATCH => "PATCH",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::HEAD => "HEAD",
        axum::http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts each REST request in `parapet_controller_http_requests_total`
/// and times it in `parapet_controller_http_request_duration_seconds`,
/// labelled with the route's pattern (not the path, which names tenants).
pub async fn count_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("parapet_controller_http_request_duration_seconds", "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("parapet_controller_http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

#[cfg(test)]
mod tests {
    use super::method_label;

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&axum::http::Method::GET), "GET");
        for made_up in ["BREW", "X1", "PURGEALL"] {
            let method = axum::http::Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other");
        }
    }
}
