//! The request path, as the phases a request goes through in order (see
//! ARCHITECTURE.md, "Request path"), one module each:
//!
//! 1. `route`: host → distribution, path → behavior, loop check, native
//!    guards, the distribution's share of plugin instances; the request
//!    becomes an `Exchange`.
//! 2. `viewer_request`: the request body for plugins, the
//!    `on-viewer-request` chain (which may answer instead).
//! 3. `lookup`: the cache: fresh hit, stale (served while refreshing, or
//!    revalidated), miss; one upstream request per key (collapsing).
//! 4. `fetch`: `on-origin-request`, then the owner peer, the shield, the
//!    origins in order; requests that are not cacheable pass through here.
//! 5. `store`: `on-origin-response`, RFC 9111 storability, storing the
//!    body while it streams to the viewer.
//! 6. `respond`: answers from stored objects, viewer-facing headers and
//!    the `on-viewer-response` chain.
//!
//! [`handle`] runs them and then logs and counts the request.

mod exchange;
mod fetch;
mod lookup;
mod respond;
mod route;
mod store;
mod viewer_request;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Response, StatusCode};

use crate::access_log;
use crate::edge::Edge;
use crate::upstream::Body;

pub use respond::error_response;

/// What the viewer's connection tells about a request.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The viewer's address.
    pub client: SocketAddr,
    /// Whether it came over TLS.
    pub tls: bool,
    /// The TLS server name it asked for.
    pub server_name: Option<String>,
}

impl Connection {
    /// The edge's own requests (prewarms): from the unspecified address
    /// `0.0.0.0`, so guards and plugins never take them for a viewer on
    /// the edge's own network.
    pub fn internal() -> Self {
        Connection {
            client: SocketAddr::from(([0, 0, 0, 0], 0)),
            tls: false,
            server_name: None,
        }
    }
}

/// What happened to a request, for the `X-Cache` header, metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served fresh from the cache.
    Hit,
    /// Fetched upstream.
    Miss,
    /// Served stale (while revalidating, or because the upstream failed).
    Stale,
    /// Stale, and the upstream confirmed it unchanged (304).
    Revalidated,
    /// Not a cacheable request: passed to the upstream.
    Bypass,
    /// Stale, and the upstream sent a new version.
    Expired,
}

impl CacheStatus {
    /// The header and label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Bypass => "BYPASS",
            CacheStatus::Expired => "EXPIRED",
        }
    }
}

/// Serves one viewer request.
///
/// The future is boxed as `Send` here, where the compiler can prove it;
/// inside callers' `async fn`s it cannot (rust-lang/rust#110338).
pub fn handle(
    edge: Arc<Edge>,
    connection: Arc<Connection>,
    request: http::Request<Body>,
) -> futures_util::future::BoxFuture<'static, Response<Body>> {
    Box::pin(handle_request(edge, connection, request))
}

async fn handle_request(
    edge: Arc<Edge>,
    connection: Arc<Connection>,
    request: http::Request<Body>,
) -> Response<Body> {
    let started = Instant::now();
    // What the access log needs of the request, taken before it is consumed.
    let sink = edge.log_sink.get();
    let logged = (edge.access_log || sink.is_some()).then(|| {
        (
            request.method().clone(),
            request.uri().to_string(),
            route::authority(&request).unwrap_or_default(),
        )
    });
    let snapshot = edge.snapshot();
    let number = edge.count_request();
    let served = match route::admit(&edge, &snapshot, &connection, request, number).await {
        Ok(mut exchange) => exchange
            .run()
            .await
            .of(&exchange.distribution().config.id)
            .for_client(exchange.sender.client),
        Err(refused) => refused,
    };
    let status = served.response.status();
    let cache = served.cache.map_or("NONE", CacheStatus::as_str);
    let elapsed = started.elapsed();
    count_request(status, cache, elapsed);
    if let Some((method, uri, host)) = &logged {
        let line = access_log::Line {
            // The viewer a trusted proxy named, else the connection's peer.
            client: served.client.unwrap_or(connection.client.ip()),
            method,
            host,
            uri,
            status,
            cache,
            distribution: served.distribution.as_deref(),
            elapsed,
            pop: &edge.pop_id,
            bytes: hyper::body::Body::size_hint(served.response.body()).exact(),
        };
        if edge.access_log {
            line.log();
        }
        if let Some(sink) = sink {
            line.ship(sink);
        }
    }
    served.response
}

/// A request's answer with what the access log and metrics need.
struct Served {
    response: Response<Body>,
    cache: Option<CacheStatus>,
    distribution: Option<String>,
    /// The viewer, once known (it may be behind a trusted proxy).
    client: Option<IpAddr>,
}

impl Served {
    /// An answer; the distribution and viewer are filled in by `handle`.
    fn new(response: Response<Body>, cache: Option<CacheStatus>) -> Self {
        Served {
            response,
            cache,
            distribution: None,
            client: None,
        }
    }

    /// An error answer (see [`error_response`]).
    fn error(status: StatusCode, message: impl std::fmt::Display) -> Self {
        Served::new(error_response(status, &message.to_string()), None)
    }

    /// The same answer, counted for distribution `id`.
    fn of(mut self, id: &str) -> Self {
        self.distribution = Some(id.to_string());
        self
    }

    /// The same answer, logged for viewer `client`.
    fn for_client(mut self, client: IpAddr) -> Self {
        self.client = Some(client);
        self
    }
}

/// Records a request in `parapet_requests_total{status,cache}` and
/// `parapet_request_duration_seconds`. The metric handles are kept per
/// worker thread, so the registry is not searched on every request.
fn count_request(status: StatusCode, cache: &'static str, elapsed: Duration) {
    thread_local! {
        static COUNTERS: std::cell::RefCell<std::collections::HashMap<(u16, &'static str), metrics::Counter>> =
            Default::default();
        static DURATION: metrics::Histogram = metrics::histogram!("parapet_request_duration_seconds");
    }
    COUNTERS.with_borrow_mut(|counters| {
        counters
            .entry((status.as_u16(), cache))
            .or_insert_with(|| {
                metrics::counter!("parapet_requests_total", "status" => status.as_str().to_owned(), "cache" => cache)
            })
            .increment(1);
    });
    DURATION.with(|histogram| histogram.record(elapsed.as_secs_f64()));
}
