//! The admin listener: `/healthz` and Prometheus `/metrics` for anyone who
//! can reach it; purge, prewarm and reload behind the bearer token.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::edge::Edge;
use crate::orders::{self, Selection};

/// Serves the admin API on `socket` until `stopped`.
pub async fn serve(socket: TcpListener, edge: Arc<Edge>, mut stopped: watch::Receiver<bool>) {
    parapet_telemetry::prometheus();
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .route("/purge", post(purge))
        .route("/prewarm", post(prewarm))
        .route("/reload", post(reload))
        .with_state(edge);
    let shutdown = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    if let Err(e) = axum::serve(socket, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "admin listener failed");
    }
}

async fn healthz(State(edge): State<Arc<Edge>>) -> Response {
    if edge.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn render_metrics(State(edge): State<Arc<Edge>>) -> Response {
    let stats = edge.cache.stats();
    metrics::gauge!("parapet_cache_bytes", "tier" => "memory").set(stats.memory_bytes as f64);
    metrics::gauge!("parapet_cache_entries", "tier" => "memory").set(stats.memory_entries as f64);
    metrics::gauge!("parapet_cache_disk_written_bytes").set(stats.disk_written_bytes as f64);
    metrics::gauge!("parapet_cache_objects").set(stats.objects as f64);
    metrics::gauge!("parapet_cache_index_bytes").set(stats.index_bytes as f64);
    parapet_telemetry::render()
}

/// Refuses a request without the right bearer token.
fn authorize(edge: &Edge, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(expected) = edge.snapshot().admin_token.clone() else {
        return Err(Box::new((
            StatusCode::FORBIDDEN,
            Json(json!({"error": "no admin token is configured; purge, prewarm and reload are off"})),
        )
            .into_response()));
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Bearer")],
                Json(json!({"error": "a valid bearer token is required"})),
            )
                .into_response(),
        )),
    }
}

/// The JSON body of an authorized `what` request, or the refusal (401, or
/// 400 naming the problem).
fn authorized_json<T: serde::de::DeserializeOwned>(
    edge: &Edge,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<T, Box<Response>> {
    authorize(edge, headers)?;
    serde_json::from_slice(body)
        .map_err(|e| Box::new(bad_request(format!("invalid {what} request: {e}"))))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A purge: one of `url`, `prefix`, `tag` or `everything`, in
/// `distribution` or (without it) across the edge; `{"distribution": id}`
/// alone purges everything of that distribution.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    url: Option<String>,
    prefix: Option<String>,
    tag: Option<String>,
    #[serde(default)]
    everything: bool,
    distribution: Option<String>,
    /// Mark stale instead of deleting.
    #[serde(default)]
    soft: bool,
}

async fn purge(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: PurgeRequest = match authorized_json(&edge, &headers, &body, "purge") {
        Ok(request) => request,
        Err(refusal) => return *refusal,
    };
    let mut selections: Vec<Selection> = [
        request.url.map(Selection::Url),
        request.prefix.map(Selection::Prefix),
        request.tag.map(Selection::Tag),
        request.everything.then_some(Selection::Everything),
    ]
    .into_iter()
    .flatten()
    .collect();
    if selections.is_empty() && request.distribution.is_some() {
        selections.push(Selection::Everything);
    }
    let Ok([selection]) = <[Selection; 1]>::try_from(selections) else {
        return bad_request(
            "give exactly one of `url`, `prefix`, `tag` or `everything` (with an optional `distribution`)"
                .to_string(),
        );
    };
    let snapshot = edge.snapshot();
    let purge = match orders::resolve_purge(&snapshot, request.distribution.as_deref(), selection) {
        Ok(purge) => purge,
        Err(why) => return bad_request(why),
    };
    let purged = edge.cache.purge(&purge, request.soft).await;
    metrics::counter!("parapet_purged_objects_total", "kind" => if request.soft { "soft" } else { "hard" })
        .increment(purged as u64);
    Json(json!({"purged": purged, "soft": request.soft})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrewarmRequest {
    urls: Vec<String>,
    /// Only URLs this distribution serves.
    distribution: Option<String>,
}

/// Fetches each URL through the edge, as an internal client, so it is
/// cached.
async fn prewarm(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: PrewarmRequest = match authorized_json(&edge, &headers, &body, "prewarm") {
        Ok(request) => request,
        Err(refusal) => return *refusal,
    };
    if request.urls.len() > orders::MAX_PREWARM_URLS {
        return bad_request(format!(
            "`urls`: at most {} URLs per prewarm (got {})",
            orders::MAX_PREWARM_URLS,
            request.urls.len()
        ));
    }
    let (warmed, failed) =
        orders::prewarm(&edge, request.distribution.as_deref(), &request.urls).await;
    Json(json!({"warmed": warmed, "failed": failed})).into_response()
}

async fn reload(State(edge): State<Arc<Edge>>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&edge, &headers) {
        return *denied;
    }
    match edge.reload().await {
        Ok(()) => Json(json!({"reloaded": true})).into_response(),
        Err(e) => {
            metrics::counter!("parapet_config_reloads_total", "result" => "refused").increment(1);
            bad_request(format!("configuration refused, the running one stays: {e}"))
        }
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}
