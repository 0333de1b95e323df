//! A plugin's cost page: what its instances cost per minute over the last
//! hour (`GET /v1/plugins/{name}/cost`), as totals and charts.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{json, Value};

use super::pages::url_escape;
use super::{page_error, Ctx, Shared, Signed};

/// The routes of this module.
pub fn routes() -> axum::Router<Shared> {
    axum::Router::new().route("/console/plugins/{name}/cost", get(cost))
}

/// Whose plugin (operators name the customer).
#[derive(Deserialize)]
pub struct Whose {
    customer: Option<String>,
}

async fn cost(
    console: Ctx,
    Signed(s): Signed,
    Path(name): Path<String>,
    Query(whose): Query<Whose>,
) -> Response {
    let mut path = format!("/v1/plugins/{}/cost?minutes=60", url_escape(&name));
    if let Some(customer) = &whose.customer {
        path.push_str(&format!("&customer={}", url_escape(customer)));
    }
    let answer = console.api.get(&s.token, &path).await;
    let status = answer.status;
    let points = match answer.ok() {
        Ok(points) => points,
        Err(e) => return page_error(status, &e),
    };
    let totals = cost_totals(&points);
    console.render(
        StatusCode::OK,
        "plugin_cost.html",
        Some(&s),
        json!({ "name": name, "customer": whose.customer, "cost": points, "totals": totals }),
    )
}

/// The sums of cost points: requests, failures, mean instantiation and
/// hook microseconds per request (one decimal), peak memory in MiB.
fn cost_totals(points: &Value) -> Value {
    let sum = |field: &str| -> u64 {
        points
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p[field].as_u64().unwrap_or(0))
            .sum()
    };
    let peak = points
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["peak_memory_bytes"].as_u64().unwrap_or(0))
        .max()
        .unwrap_or(0);
    let requests = sum("requests");
    let mean = |total: u64| {
        if requests == 0 {
            0.0
        } else {
            (total as f64 * 10.0 / requests as f64).round() / 10.0
        }
    };
    json!({
        "requests": requests,
        "failures": sum("failures"),
        "instantiate_us": mean(sum("instantiate_us")),
        "hook_us": mean(sum("hook_us")),
        "peak_memory_mib": (peak as f64 / 1048576.0 * 10.0).round() / 10.0,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn totals_are_means_per_request_and_the_peak() {
        let points = json!([
            {"requests": 3, "instantiate_us": 60, "hook_us": 30, "peak_memory_bytes": 1048576, "failures": 1},
            {"requests": 0, "instantiate_us": 0, "hook_us": 0, "peak_memory_bytes": 0, "failures": 0},
            {"requests": 1, "instantiate_us": 20, "hook_us": 11, "peak_memory_bytes": 3145728, "failures": 0},
        ]);
        assert_eq!(
            super::cost_totals(&points),
            json!({"requests": 4, "failures": 1, "instantiate_us": 20.0, "hook_us": 10.3, "peak_memory_mib": 3.0})
        );
    }
}
