//! Purges and prewarms as the operator's admin API and the controller's
//! orders ask for them: resolved against the configuration served now
//! (which distribution, which cache-key rules), then carried out on the
//! cache or through the request path.

use std::sync::Arc;

use serde_json::json;

use crate::cache::{Purge, Target};
use crate::edge::{Edge, Snapshot};
use crate::proxy::{self, Connection};
use parapet_config::domains::split_url;

use crate::routing::Distribution;
use crate::upstream::empty;

/// Most URLs one prewarm may fetch (the controller refuses more per job).
pub const MAX_PREWARM_URLS: usize = 1000;

/// What a purge names, before it is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// A URL: `https://host/path?query`, `host/path?query` or `host/path`.
    Url(String),
    /// A host and path prefix.
    Prefix(String),
    /// A surrogate key.
    Tag(String),
    /// Everything (of the distribution, or of the edge).
    Everything,
}

/// The purge `selection` in `distribution` (every distribution's when
/// `None`), with URLs as the cache knows them: a URL's query is normalised
/// by the cache-key rules of the behavior its path falls under.
pub fn resolve_purge(
    snapshot: &Snapshot,
    distribution: Option<&str>,
    selection: Selection,
) -> Result<Purge, String> {
    let scope = match distribution {
        Some(id) => Some(
            snapshot
                .routes
                .by_id(id)
                .ok_or_else(|| format!("this edge serves no distribution `{id}`"))?,
        ),
        None => None,
    };
    let target = match selection {
        Selection::Url(url) => {
            let (host, path, query) = split_url(&url);
            let dist = match scope {
                Some(dist) => dist,
                None => snapshot
                    .routes
                    .distribution(&host)
                    .ok_or_else(|| format!("no distribution serves host `{host}`"))?,
            };
            let behavior = dist
                .behavior(&path)
                .ok_or_else(|| format!("no behavior of `{}` matches `{path}`", dist.config.id))?;
            Target::Url(crate::cache_key::purge_url(
                &behavior.config.cache.key,
                &host,
                &path,
                query.as_deref(),
            ))
        }
        Selection::Prefix(prefix) => {
            let (host, path, _) = split_url(&prefix);
            Target::Prefix(format!("{host}{path}"))
        }
        Selection::Tag(tag) => Target::Tag(tag),
        Selection::Everything => Target::Everything,
    };
    Ok(Purge {
        distribution: scope.map(|d| d.config.id.clone()),
        target,
    })
}

/// Fetches each URL through the request path of `distribution` (of the
/// distribution serving its host when `None`) as an internal client, so
/// that it is cached; returns how many were stored (or already were) and
/// the failures. A URL another distribution serves is a failure.
pub async fn prewarm(
    edge: &Arc<Edge>,
    distribution: Option<&str>,
    urls: &[String],
) -> (usize, Vec<serde_json::Value>) {
    let plain = Arc::new(Connection::internal());
    // The scheme is in cache keys: an `https://` URL warms what viewers
    // over TLS get.
    let tls = Arc::new(Connection {
        tls: true,
        ..Connection::internal()
    });
    let mut warmed = 0;
    let mut failed = Vec::new();
    for url in urls.iter().take(MAX_PREWARM_URLS) {
        let Ok(uri) = url.parse::<http::Uri>() else {
            failed.push(json!({"url": url, "error": "not a URL"}));
            continue;
        };
        let Some(authority) = uri.authority().cloned() else {
            failed.push(json!({"url": url, "error": "the URL has no host"}));
            continue;
        };
        if let Some(id) = distribution {
            let snapshot = edge.snapshot();
            let served_by = snapshot.routes.distribution(authority.as_str());
            if served_by.map(|d: &Distribution| d.config.id.as_str()) != Some(id) {
                failed.push(
                    json!({"url": url, "error": format!("not served by distribution `{id}`")}),
                );
                continue;
            }
        }
        let mut viewer_request = http::Request::new(empty());
        *viewer_request.uri_mut() = uri.path_and_query().map_or_else(
            || http::Uri::from_static("/"),
            |p| {
                p.as_str()
                    .parse()
                    .unwrap_or_else(|_| http::Uri::from_static("/"))
            },
        );
        if let Ok(host) = http::HeaderValue::from_str(authority.as_str()) {
            viewer_request
                .headers_mut()
                .insert(http::header::HOST, host);
        }
        let connection = match uri.scheme_str() {
            Some("https") => tls.clone(),
            _ => plain.clone(),
        };
        let response = proxy::handle(edge.clone(), connection, viewer_request).await;
        let status = response.status();
        let cache = response
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        // Read the body so the stored copy completes.
        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
        if status.is_success()
            && matches!(cache.as_str(), "MISS" | "HIT" | "EXPIRED" | "REVALIDATED")
        {
            warmed += 1;
        } else {
            failed.push(json!({"url": url, "status": status.as_u16(), "cache": cache}));
        }
    }
    for url in urls.iter().skip(MAX_PREWARM_URLS) {
        failed.push(json!({"url": url, "error": format!("more than {MAX_PREWARM_URLS} URLs in one prewarm")}));
    }
    (warmed, failed)
}
