//! PoP health from parapet-controller: its edge list (`GET /v1/edges`),
//! polled. A PoP is answered only while at least one of its edges is
//! healthy; when the controller cannot be reached the last known health
//! stays.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::select::Health;
use crate::state::State;

/// Where and how often to ask.
#[derive(Debug, Clone)]
pub struct ControllerSource {
    /// The controller's REST base URL, e.g. `http://controller:7070`.
    pub url: String,
    /// An operator token (`PARAPET_TOKEN`).
    pub token: String,
    /// Time between polls.
    pub interval: Duration,
}

/// The fields of an edge-list entry this server uses.
#[derive(Deserialize)]
struct EdgeEntry {
    pop: String,
    healthy: bool,
}

/// The PoP ids with a healthy edge, from the controller.
async fn fetch(
    client: &reqwest::Client,
    source: &ControllerSource,
) -> Result<HashSet<String>, String> {
    let url = format!("{}/v1/edges", source.url.trim_end_matches('/'));
    let response = client
        .get(&url)
        .bearer_auth(&source.token)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("GET {url}: {status}: {}", body.trim()));
    }
    let edges: Vec<EdgeEntry> = response
        .json()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    Ok(edges
        .into_iter()
        .filter(|e| e.healthy)
        .map(|e| e.pop)
        .collect())
}

/// Polls the controller forever, updating `state`'s PoP health.
pub async fn follow(state: Arc<State>, source: ControllerSource) {
    let client = match reqwest::Client::builder()
        .timeout(source.interval.max(Duration::from_secs(2)))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the controller client; PoP health stays as the PoPs file says");
            return;
        }
    };
    let mut failing = false;
    loop {
        match fetch(&client, &source).await {
            Ok(healthy) => {
                if failing {
                    tracing::info!(controller = %source.url, "controller reachable again");
                    failing = false;
                }
                let mut up: Vec<&String> = healthy.iter().collect();
                up.sort();
                let summary = up.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
                if state.set_health(Health::from_healthy(healthy.clone())) {
                    tracing::info!(pops_up = %summary, "PoP health changed");
                }
                metrics::gauge!("parapet_dns_pops_healthy").set(healthy.len() as f64);
            }
            Err(error) => {
                metrics::counter!("parapet_dns_controller_errors_total").increment(1);
                if !failing {
                    tracing::warn!(%error, "cannot read the edge list; keeping the last known PoP health");
                    failing = true;
                }
            }
        }
        tokio::time::sleep(source.interval).await;
    }
}
