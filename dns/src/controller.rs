//! PoP health from parapet-controller: its edge list (`GET /v1/edges`),
//! polled. A PoP is answered only while at least one of its edges is
//! healthy; when the controller cannot be reached the last known health
//! stays.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::select::Health;
use crate::state::State;

/// Where and how often to ask.
#[derive(Debug, Clone)]
pub struct ControllerSource {
    /// The controller's REST base URL, e.g. `https://controller:7070`.
    pub url: String,
    /// A monitor token (read-only: the edge list and groups), or an
    /// operator token (`PARAPET_TOKEN`).
    pub token: String,
    /// The authority (PEM) the controller's certificate is checked
    /// against; none: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Time between polls.
    pub interval: Duration,
}

impl ControllerSource {
    /// The HTTP client for the polls; an unreadable CA file is an error.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        let mut builder =
            reqwest::Client::builder().timeout(self.interval.max(Duration::from_secs(2)));
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the controller CA {}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{}: not PEM certificates", path.display()))?;
            anyhow::ensure!(
                !certificates.is_empty(),
                "{}: no certificate in it",
                path.display()
            );
            builder = builder.tls_built_in_root_certs(false);
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        builder.build().context("building the controller client")
    }
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
        .map_err(|e| format!("GET {url}: {:#}", anyhow::Error::new(e)))?;
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

/// Polls the controller through `client` forever, updating `state`'s PoP
/// health.
pub async fn follow(state: Arc<State>, source: ControllerSource, client: reqwest::Client) {
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
