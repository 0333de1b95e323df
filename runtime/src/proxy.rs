//! The request path: distribution and behavior, native guards, the
//! viewer-request chain, the cache (fresh, stale, miss with collapsing), the
//! upstream fetch between the origin chains, storing while streaming, and
//! the viewer-response chain (see ARCHITECTURE.md, "Request path").

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use parapet_host::{Flow, Request as PluginRequest, RequestContext, RequestSession};

use crate::cache::flights::{FlightGuard, Join};
use crate::cache::freshness::{self, Freshness, Override};
use crate::cache::object::{millis, vary_fields, CachedObject, PurgeMeta, Usability};
use crate::cache::respond;
use crate::cache::{self, Cache, FetchTicket, Hit, Purge};
use crate::cache_key::{cache_key, purge_url, KeyInput};
use crate::edge::{Edge, Snapshot};
use crate::guards;
use crate::headers::{self, forward_request_headers, from_plugin, to_plugin};
use crate::peers::PEER_HEADER;
use crate::routing::{Behavior, Distribution};
use crate::upstream::{
    empty, full, Body, BoxError, RequestBody, Target, UpstreamError, UpstreamRequest,
};

/// Largest request body read into memory for the viewer-request plugins.
const PLUGIN_REQUEST_BODY_LIMIT: u64 = 1 << 20;
/// Largest cached body handed to the viewer-response plugins.
const PLUGIN_RESPONSE_BODY_LIMIT: usize = 1 << 20;

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

/// A request's answer with what the access log and metrics need.
struct Served {
    response: Response<Body>,
    cache: Option<CacheStatus>,
    distribution: Option<String>,
}

impl Served {
    /// An answer; the distribution is filled in by `serve`.
    fn new(response: Response<Body>, cache: Option<CacheStatus>) -> Self {
        Served {
            response,
            cache,
            distribution: None,
        }
    }

    fn error(status: StatusCode, message: impl std::fmt::Display) -> Self {
        Served::new(error_response(status, &message.to_string()), None)
    }
}

/// A plain-text error answer.
pub fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(full(format!("parapet: {message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
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
            authority(&request).unwrap_or_default(),
        )
    });
    let snapshot = edge.snapshot();
    let served = serve(&edge, &snapshot, &connection, request).await;
    let status = served.response.status();
    let cache = served.cache.map_or("NONE", CacheStatus::as_str);
    let elapsed = started.elapsed();
    count_request(status, cache, elapsed);
    if let Some((method, target, host)) = logged {
        let distribution = served.distribution.as_deref().unwrap_or("-");
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        if edge.access_log {
            tracing::info!(
                target: "parapet::access",
                client = %connection.client.ip(),
                method = %method,
                host = %host,
                uri = %target,
                status = status.as_u16(),
                cache,
                distribution,
                duration_ms,
            );
        }
        if let (Some(sink), Some(id)) = (sink, served.distribution.as_deref()) {
            let line = serde_json::json!({
                "client": connection.client.ip().to_string(),
                "method": method.as_str(),
                "host": host,
                "uri": target,
                "status": status.as_u16(),
                "cache": cache,
                "duration_ms": duration_ms,
                "pop": edge.pop_id.as_ref(),
            });
            // A full queue (the controller away) drops lines, never requests.
            let queued = sink.try_send(crate::edge::AccessRecord {
                distribution: id.to_string(),
                timestamp_ms: crate::edge::now_ms(),
                json: line.to_string(),
            });
            if queued.is_err() {
                metrics::counter!(crate::edge::LOG_LINES_DROPPED, "reason" => "queue_full")
                    .increment(1);
            }
        }
    }
    served.response
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

/// The host a request is addressed to: `:authority` (HTTP/2, absolute
/// form) or `Host`.
fn authority<B>(request: &http::Request<B>) -> Option<String> {
    request
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
}

async fn serve(
    edge: &Arc<Edge>,
    snapshot: &Arc<Snapshot>,
    connection: &Arc<Connection>,
    request: http::Request<Body>,
) -> Served {
    let Some(host) = authority(&request) else {
        return Served::error(
            StatusCode::BAD_REQUEST,
            "the request names no host (no Host header or :authority)",
        );
    };
    // Framing conflicts are settled by hyper before this point (RFC 9112
    // 6.3): a non-chunked Transfer-Encoding or differing Content-Lengths are
    // refused with 400; with both Transfer-Encoding and Content-Length, the
    // length is dropped and the connection closed after the response, so
    // nothing can be smuggled behind the body.
    let Some((dist_index, dist)) = snapshot.routes.find(&host) else {
        if let Some(unavailable) = snapshot.routes.unavailable(&host) {
            let mut served = Served::error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "distribution `{}` is not available on this edge: its configuration did not load",
                    unavailable.id
                ),
            );
            served.distribution = Some(unavailable.id.clone());
            return served;
        }
        return Served::error(
            StatusCode::NOT_FOUND,
            format!("no distribution serves host `{host}`"),
        );
    };
    if let Some(name) = &connection.server_name {
        if snapshot.routes.find(name).map(|(i, _)| i) != Some(dist_index) {
            return Served::error(
                StatusCode::MISDIRECTED_REQUEST,
                format!("this TLS connection is for `{name}`, which does not serve host `{host}`"),
            );
        }
    }
    let path = request.uri().path().to_string();
    let Some(behavior_index) = dist.behavior_index(&path) else {
        return Served::error(StatusCode::NOT_FOUND, "no behavior matches the path");
    };
    let behavior = &dist.behaviors[behavior_index];
    // Only a configured peer may ask this edge to serve a key as its owner.
    let from_peer = request.headers().contains_key(PEER_HEADER)
        && snapshot
            .peers
            .as_ref()
            .is_some_and(|ring| ring.is_member(connection.client.ip()));
    if headers::via_contains(request.headers(), &edge.pop_id) && !from_peer {
        return Served::error(
            StatusCode::LOOP_DETECTED,
            format!(
                "forwarding loop: the request already passed through parapet-{}",
                edge.pop_id
            ),
        );
    }
    let client = connection.client.ip();
    if !guards::ip_allowed(&behavior.config, client) {
        let mut served = Served::error(
            StatusCode::FORBIDDEN,
            format!("client address {client} is not allowed here"),
        );
        served.distribution = Some(dist.config.id.clone());
        return served;
    }
    let (mut parts, body) = request.into_parts();
    guards::filter_request_headers(&behavior.config, &mut parts.headers);
    let chains = &behavior.chains;
    let any_plugins = !(chains.on_viewer_request.is_empty()
        && chains.on_origin_request.is_empty()
        && chains.on_origin_response.is_empty()
        && chains.on_viewer_response.is_empty());
    let (body, streamed) = match read_body(&parts, body, !chains.on_viewer_request.is_empty()).await
    {
        Ok(read) => read,
        Err(served) => return served,
    };
    let viewer_url = purge_url(
        &behavior.config.cache.key,
        &parapet_config::domains::host_name(&host),
        &path,
        parts.uri.query(),
    );
    let request = PluginRequest {
        method: parts.method.to_string(),
        scheme: if connection.tls { "https" } else { "http" }.to_string(),
        authority: host,
        path,
        query: parts.uri.query().map(str::to_string),
        // Filled from `headers` when plugins run (see `Exchange::headers`).
        headers: if any_plugins {
            to_plugin(&parts.headers)
        } else {
            Vec::new()
        },
        body: body.map(|b| b.to_vec()),
    };
    // Each plugin the chains use is one instance of the pool, held until
    // the request ends: counted against the distribution's share.
    let plugin_share = if any_plugins {
        let share = edge.shares.of(&dist.config.id, snapshot.config.shares);
        match share.plugin_instances(&dist.config.id, chains.distinct_plugins()) {
            Ok(permit) => Some(permit),
            Err(exhausted) => {
                let mut served = Served::error(StatusCode::SERVICE_UNAVAILABLE, exhausted);
                served.distribution = Some(dist.config.id.clone());
                return served;
            }
        }
    } else {
        None
    };
    let session = any_plugins.then(|| {
        RequestSession::new(RequestContext {
            request_id: edge.request_id(),
            pop_id: edge.pop_id.clone(),
            client_ip: client,
            geo: edge.geo.clone(),
        })
    });
    let mut exchange = Exchange {
        edge: edge.clone(),
        snapshot: snapshot.clone(),
        connection: connection.clone(),
        dist_index,
        behavior_index,
        original: session.as_ref().map(|_| request.clone()),
        session,
        request,
        headers: parts.headers,
        streamed,
        from_peer,
        background: false,
        viewer_url,
        ticket: None,
        _plugin_share: plugin_share,
    };
    let mut served = exchange.run().await;
    served.distribution = Some(exchange.distribution().config.id.clone());
    served
}

/// Reads a request body into memory when the viewer-request plugins should
/// see it and it is small; otherwise leaves it to stream upstream.
async fn read_body(
    parts: &http::request::Parts,
    body: Body,
    for_plugins: bool,
) -> Result<(Option<Bytes>, Option<Body>), Served> {
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // HTTP/2 has no Transfer-Encoding: whether a body follows is the
    // stream's business, not the headers'.
    if http_body::Body::is_end_stream(&body) {
        return Ok((None, None));
    }
    match length {
        Some(0) => Ok((Some(Bytes::new()), None)),
        Some(n) if for_plugins && n <= PLUGIN_REQUEST_BODY_LIMIT => {
            // hyper holds the body to its Content-Length.
            match body.collect().await {
                Ok(collected) => Ok((Some(collected.to_bytes()), None)),
                Err(e) => Err(Served::error(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {e}"),
                )),
            }
        }
        _ => Ok((None, Some(body))),
    }
}

/// One request on its way through the edge.
struct Exchange {
    edge: Arc<Edge>,
    snapshot: Arc<Snapshot>,
    connection: Arc<Connection>,
    dist_index: usize,
    behavior_index: usize,
    session: Option<RequestSession>,
    /// The request as the plugins see it (and change it); its header list
    /// is kept only while plugins run.
    request: PluginRequest,
    /// The request's headers: the source of truth, converted to and from
    /// the plugins' list around each request chain.
    headers: HeaderMap,
    /// The request before the viewer-request chain, when there is one: a
    /// background refresh replays the chain on it.
    original: Option<PluginRequest>,
    /// A background refresh: nobody waits for the answer.
    background: bool,
    /// A body too large for the plugins, streamed to the upstream.
    streamed: Option<Body>,
    /// Forwarded by a peer that found this edge owns the key.
    from_peer: bool,
    /// The URL the viewer asked for, as purges name it (see
    /// [`purge_url`]).
    viewer_url: String,
    /// A cacheable request's fetch ticket, taken before the lookup: a
    /// purge from then on that selects the object keeps it from being
    /// stored.
    ticket: Option<FetchTicket>,
    /// The plugin instances it holds of its distribution's share.
    _plugin_share: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Where a fetch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Peer,
    Shield,
    Origin,
}

impl Hop {
    fn as_str(self) -> &'static str {
        match self {
            Hop::Peer => "peer",
            Hop::Shield => "shield",
            Hop::Origin => "origin",
        }
    }
}

/// What a fetch for the cache produced.
struct Fetched {
    response: Response<Incoming>,
    hop: Hop,
}

impl Exchange {
    fn distribution(&self) -> &Distribution {
        self.snapshot.routes.distribution_at(self.dist_index)
    }

    fn behavior(&self) -> &Behavior {
        &self.distribution().behaviors[self.behavior_index]
    }

    async fn run(&mut self) -> Served {
        if let Some(response) = self.viewer_request_chain().await {
            return Served::new(response, None);
        }
        let method = self.request.method.as_str();
        let cacheable = matches!(method, "GET" | "HEAD")
            && self.streamed.is_none()
            && self.request.body.as_ref().is_none_or(Vec::is_empty);
        if !cacheable {
            return self.pass().await;
        }
        let key = self.cache_key();
        self.ticket = Some(self.edge.cache.begin_fetch());
        self.cached(&key).await
    }

    /// Runs the viewer-request chain on the request; `Some` when a plugin
    /// answered instead.
    async fn viewer_request_chain(&mut self) -> Option<Response<Body>> {
        let snapshot = self.snapshot.clone();
        let chain = &snapshot.routes.distribution_at(self.dist_index).behaviors
            [self.behavior_index]
            .chains
            .on_viewer_request;
        let session = self.session.as_mut()?;
        let request = std::mem::replace(&mut self.request, placeholder_request());
        match session.on_viewer_request(chain, request).await {
            Flow::Continue(request) => {
                self.headers = from_plugin(&request.headers);
                self.request = request;
                None
            }
            Flow::Respond(answer) => Some(plugin_answer(answer)),
        }
    }

    fn cache_key(&self) -> String {
        let host = parapet_config::domains::host_name(&self.request.authority);
        cache_key(
            &self.behavior().config.cache.key,
            &KeyInput {
                distribution: &self.distribution().config.id,
                host: &host,
                path: &self.request.path,
                query: self.request.query.as_deref(),
                headers: &self.headers,
            },
        )
    }

    /// A cacheable request: hit, stale or miss. Revalidations and misses
    /// go upstream once per key: concurrent requests wait for the first
    /// and take what it stored.
    async fn cached(&mut self, key: &str) -> Served {
        let cache = self.edge.cache.clone();
        let stale = match cache.lookup(key, &self.headers).await {
            Some(hit) => match hit.object().usability(SystemTime::now()) {
                Usability::Fresh => return self.answer_from(hit.object(), CacheStatus::Hit).await,
                Usability::StaleWhileRevalidate => {
                    self.refresh_in_background(key, &hit);
                    return self.answer_from(hit.object(), CacheStatus::Stale).await;
                }
                Usability::Stale => Some(hit),
            },
            None => None,
        };
        let guard = match cache.flights().join(key) {
            Join::Leader(guard) => Some(guard),
            Join::Follower(follower) => {
                metrics::counter!("parapet_collapsed_requests_total").increment(1);
                let waiting_since = millis(SystemTime::now());
                let wait = Duration::from_millis(self.snapshot.config.server.collapse_wait_ms);
                if follower.wait(wait).await {
                    if let Some(hit) = cache.lookup(key, &self.headers).await {
                        // Fresh, or stored or revalidated while this
                        // request waited (an object that is stale at once
                        // is shared with the requests that waited for it).
                        let object = hit.object();
                        if object.usability(SystemTime::now()) == Usability::Fresh
                            || object.stored_at_ms >= waiting_since
                        {
                            return self.answer_from(object, CacheStatus::Hit).await;
                        }
                    }
                }
                None
            }
        };
        match stale {
            Some(hit) => self.revalidate(key, hit, guard).await,
            None => self.miss(key, guard).await,
        }
    }

    /// Answers from a stored object, through the viewer-response chain.
    async fn answer_from(&mut self, object: &CachedObject, status: CacheStatus) -> Served {
        let method = method_of(&self.request);
        let answer = respond::answer(object, &method, &self.headers, SystemTime::now());
        let plugin_body =
            (answer.body.len() <= PLUGIN_RESPONSE_BODY_LIMIT).then(|| answer.body.clone());
        self.finish(
            answer.status,
            answer.headers,
            full(answer.body),
            plugin_body,
            status,
        )
        .await
    }

    /// Serves a stale object and refreshes it in the background, once.
    fn refresh_in_background(&self, key: &str, hit: &Hit) {
        let Join::Leader(guard) = self.edge.cache.flights().join(key) else {
            return; // a refresh is already running
        };
        // The refresh is a request of its own: with plugins, a fresh
        // session replays the viewer-request chain (instances keep state
        // from that hook to the origin hooks), and skips viewer-response.
        // It holds instances of the distribution's share too; with none
        // left, the stale object stays until a later request refreshes it.
        let plugin_share = match &self.session {
            None => None,
            Some(_) => {
                let id = &self.distribution().config.id;
                let chains = &self.distribution().behaviors[self.behavior_index].chains;
                match self
                    .edge
                    .shares
                    .of(id, self.snapshot.config.shares)
                    .plugin_instances(id, chains.distinct_plugins())
                {
                    Ok(permit) => Some(permit),
                    Err(exhausted) => {
                        tracing::debug!(key, error = %exhausted, "background refresh skipped");
                        return;
                    }
                }
            }
        };
        let session = self.session.as_ref().map(|_| {
            RequestSession::new(RequestContext {
                request_id: self.edge.request_id(),
                pop_id: self.edge.pop_id.clone(),
                client_ip: self.connection.client.ip(),
                geo: self.edge.geo.clone(),
            })
        });
        let mut refresh = Exchange {
            edge: self.edge.clone(),
            snapshot: self.snapshot.clone(),
            connection: self.connection.clone(),
            dist_index: self.dist_index,
            behavior_index: self.behavior_index,
            session,
            request: self
                .original
                .clone()
                .unwrap_or_else(|| self.request.clone()),
            headers: match &self.original {
                Some(original) => from_plugin(&original.headers),
                None => self.headers.clone(),
            },
            original: None,
            streamed: None,
            from_peer: self.from_peer,
            background: true,
            viewer_url: self.viewer_url.clone(),
            ticket: self.ticket.clone(),
            _plugin_share: plugin_share,
        };
        let stale = hit.object().clone();
        let storage_key = hit.storage_key.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            let _guard = guard;
            if let Some(answer) = refresh.viewer_request_chain().await {
                let status = answer.status();
                tracing::debug!(key = %key, %status, "a plugin answered the refresh; skipped");
                return;
            }
            match refresh.fetch(Some(&stale)).await {
                Ok(fetched) if fetched.response.status() == StatusCode::NOT_MODIFIED => {
                    let (updated, storable) =
                        refresh.updated_object(&stale, fetched.response.headers());
                    refresh.keep_or_drop(&storage_key, updated, storable);
                }
                Ok(fetched) => {
                    // Store the new version; nobody is waiting for the body.
                    let served = refresh
                        .store_response(&key, fetched, None, CacheStatus::Miss)
                        .await;
                    let _ = served.response.into_body().collect().await;
                }
                Err(e) => tracing::warn!(key = %key, error = %e, "background refresh failed"),
            }
        });
    }

    /// A stale object: revalidate with the upstream first.
    async fn revalidate(&mut self, key: &str, hit: Hit, guard: Option<FlightGuard>) -> Served {
        let stale = hit.object();
        let now = SystemTime::now();
        match self.fetch(Some(stale)).await {
            Ok(fetched) if fetched.response.status() == StatusCode::NOT_MODIFIED => {
                let (updated, storable) = self.updated_object(stale, fetched.response.headers());
                let served = self.answer_from(&updated, CacheStatus::Revalidated).await;
                self.keep_or_drop(&hit.storage_key, updated, storable);
                served
            }
            Ok(fetched)
                if fetched.response.status().is_server_error() && stale.usable_on_error(now) =>
            {
                self.answer_from(hit.object(), CacheStatus::Stale).await
            }
            Ok(fetched) => {
                self.store_response(key, fetched, guard, CacheStatus::Expired)
                    .await
            }
            Err(_) if stale.usable_on_error(now) => {
                self.answer_from(hit.object(), CacheStatus::Stale).await
            }
            Err(e) => upstream_failure(e),
        }
    }

    /// A miss: fetch, store if allowed, stream to the viewer.
    async fn miss(&mut self, key: &str, guard: Option<FlightGuard>) -> Served {
        match self.fetch(None).await {
            Ok(fetched) => {
                self.store_response(key, fetched, guard, CacheStatus::Miss)
                    .await
            }
            Err(e) => upstream_failure(e),
        }
    }

    /// The stored object updated by a 304's headers (RFC 9111 4.3.4).
    ///
    /// The `Age` is the 304's (the stored one is stale by definition), and
    /// a `Set-Cookie` on the 304 goes to this viewer only. `None` when the
    /// 304 makes the object unstorable (`no-store`, `private`): the caller
    /// drops it and answers this viewer alone.
    fn updated_object(
        &self,
        stale: &CachedObject,
        fresh_headers: &HeaderMap,
    ) -> (CachedObject, bool) {
        let mut headers = stale.headers.clone();
        headers.remove(header::AGE);
        let mut incoming = fresh_headers.clone();
        headers::strip_hop_by_hop(&mut incoming);
        incoming.remove(header::CONTENT_LENGTH);
        incoming.remove(header::SET_COOKIE);
        for (name, _) in incoming.iter() {
            headers.remove(name);
        }
        for (name, value) in incoming.iter() {
            headers.append(name.clone(), value.clone());
        }
        let now = SystemTime::now();
        let decision = freshness::decide(
            &self.policy_request(),
            stale.status,
            &headers,
            &self.behavior().config.cache,
            Override::default(),
            now,
        );
        let mut object = stale.clone();
        object.headers = headers;
        object.invalidated = false;
        apply_freshness(&mut object, &decision, now);
        (object, decision.storable)
    }

    /// Stores a revalidated object, or drops the stored one when the 304
    /// made it unstorable.
    fn keep_or_drop(&self, storage_key: &str, object: CachedObject, storable: bool) {
        match (&self.ticket, storable) {
            (Some(ticket), true) => self.edge.cache.replace(storage_key, object, ticket),
            (None, true) => {}
            (_, false) => self.edge.cache.remove(storage_key),
        }
    }

    /// The request as the RFC 9111 policy records it.
    fn policy_request(&self) -> http::request::Parts {
        let uri = format!(
            "http://{}{}",
            self.request.authority,
            match &self.request.query {
                Some(q) => format!("{}?{q}", self.request.path),
                None => self.request.path.clone(),
            }
        );
        let mut parts = http::Request::new(()).into_parts().0;
        parts.method = Method::GET;
        parts.uri = uri.parse().unwrap_or_default();
        // The policy is stored with the object: keep only what decides
        // storability, never the viewer's credentials or cookies.
        for name in [header::CACHE_CONTROL, header::PRAGMA] {
            for value in self.headers.get_all(&name) {
                parts.headers.append(name.clone(), value.clone());
            }
        }
        if self.headers.contains_key(header::AUTHORIZATION) {
            parts
                .headers
                .insert(header::AUTHORIZATION, HeaderValue::from_static("redacted"));
        }
        parts
    }

    /// Runs the origin-request chain and sends the request upstream: to the
    /// owner peer, else the shield, else the origins in order. `stale`, when
    /// given, makes it a conditional request.
    async fn fetch(&mut self, stale: Option<&CachedObject>) -> Result<Fetched, FetchError> {
        let snapshot = self.snapshot.clone();
        let behavior =
            &snapshot.routes.distribution_at(self.dist_index).behaviors[self.behavior_index];
        let mut request = self.request.clone();
        let mut headers = self.headers.clone();
        if let Some(session) = &mut self.session {
            match session
                .on_origin_request(&behavior.chains.on_origin_request, request)
                .await
            {
                Flow::Continue(changed) => {
                    headers = from_plugin(&changed.headers);
                    request = changed;
                }
                Flow::Respond(answer) => return Err(FetchError::Answered(plugin_answer(answer))),
            }
        }
        forward_request_headers(
            &mut headers,
            self.connection.client.ip(),
            &request.scheme,
            &self.edge.pop_id,
        );
        let mut method = method_of(&request);
        let for_cache = matches!(method, Method::GET | Method::HEAD);
        if for_cache {
            // Fetch the whole object; the viewer's conditions and ranges are
            // answered from it.
            method = Method::GET;
            for name in [
                header::RANGE,
                header::IF_RANGE,
                header::IF_NONE_MATCH,
                header::IF_MODIFIED_SINCE,
                header::IF_MATCH,
                header::IF_UNMODIFIED_SINCE,
            ] {
                headers.remove(name);
            }
        }
        if let Some(stale) = stale {
            if let Some(etag) = stale.headers.get(header::ETAG) {
                headers.insert(header::IF_NONE_MATCH, etag.clone());
            }
            if let Some(modified) = stale.headers.get(header::LAST_MODIFIED) {
                headers.insert(header::IF_MODIFIED_SINCE, modified.clone());
            }
        }
        let path_and_query = match &request.query {
            Some(query) => format!("{}?{query}", request.path),
            None => request.path.clone(),
        };
        let mut body = match (self.streamed.take(), &request.body) {
            (Some(stream), _) => Some(RequestBody::Streamed(stream)),
            (None, Some(bytes)) => Some(RequestBody::Buffered(Bytes::from(bytes.clone()))),
            (None, None) => Some(RequestBody::Buffered(Bytes::new())),
        };
        let key = for_cache.then(|| self.cache_key());
        // Held until the upstream answers (or fails): a slow origin uses
        // its own distribution's share, never another's.
        let distribution = &self.distribution().config.id;
        let _fetch_share = self
            .edge
            .shares
            .of(distribution, self.snapshot.config.shares)
            .origin_fetch(distribution)
            .map_err(|exhausted| {
                FetchError::Answered(error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &exhausted.to_string(),
                ))
            })?;
        let mut last_error = None;
        for (target, hop) in self.targets(key.as_deref()) {
            let mut headers = headers.clone();
            if hop == Hop::Peer {
                headers.insert(PEER_HEADER, HeaderValue::from_static("1"));
            } else {
                headers.remove(PEER_HEADER);
            }
            let Some(this_body) = body.take() else { break };
            let replay = match &this_body {
                RequestBody::Buffered(bytes) => Some(bytes.clone()),
                RequestBody::Streamed(_) => None,
            };
            let started = Instant::now();
            let outcome = self
                .edge
                .upstream
                .send(
                    &target,
                    UpstreamRequest {
                        method: method.clone(),
                        path_and_query: path_and_query.clone(),
                        headers,
                        body: this_body,
                    },
                )
                .await;
            metrics::histogram!("parapet_upstream_duration_seconds", "hop" => hop.as_str())
                .record(started.elapsed().as_secs_f64());
            match outcome {
                Ok(response) => return Ok(Fetched { response, hop }),
                Err(e) => {
                    metrics::counter!("parapet_upstream_errors_total", "hop" => hop.as_str())
                        .increment(1);
                    tracing::warn!(hop = hop.as_str(), error = %e, "upstream failed");
                    // A streamed body is spent: no second target. A
                    // request that may have reached its target is not sent
                    // again unless repeating it is harmless.
                    body = replay.map(RequestBody::Buffered);
                    let unreached = matches!(
                        e,
                        UpstreamError::Connect { .. } | UpstreamError::Refused { .. }
                    );
                    let origin_timeout =
                        hop == Hop::Origin && matches!(e, UpstreamError::Timeout { .. });
                    last_error = Some(e);
                    if origin_timeout || !(unreached || method.is_idempotent()) {
                        break;
                    }
                }
            }
        }
        Err(FetchError::Upstream(last_error.unwrap_or_else(|| {
            UpstreamError::Setup("no upstream to send the request to".into())
        })))
    }

    /// Upstream targets in the order to try them.
    fn targets(&self, key: Option<&str>) -> Vec<(Target, Hop)> {
        let config = &self.snapshot.config;
        let dist = &self.distribution().config;
        let first_origin = &dist.origins[0];
        let timeouts = |base: &str| -> Option<Target> {
            Some(Target {
                base: base.parse().ok()?,
                ca_file: None,
                connect_timeout: Duration::from_millis(first_origin.connect_timeout_ms),
                read_timeout: Duration::from_millis(first_origin.read_timeout_ms),
            })
        };
        let mut targets = Vec::new();
        if let (Some(ring), Some(key), false) = (&self.snapshot.peers, key, self.from_peer) {
            if let Some(owner) = ring.owner(key) {
                if let Some(target) = timeouts(&format!("http://{owner}")) {
                    targets.push((target, Hop::Peer));
                }
            }
        }
        if let Some(shield) = &config.shield {
            if let Some(target) = timeouts(shield) {
                targets.push((target, Hop::Shield));
            }
        }
        for origin in &dist.origins {
            if let Ok(base) = origin.url.parse() {
                targets.push((
                    Target {
                        base,
                        ca_file: origin.ca_file.clone(),
                        connect_timeout: Duration::from_millis(origin.connect_timeout_ms),
                        read_timeout: Duration::from_millis(origin.read_timeout_ms),
                    },
                    Hop::Origin,
                ));
            }
        }
        targets
    }

    /// Runs the origin-response chain on a fetched response, stores it when
    /// allowed (streaming it to the viewer meanwhile) and answers.
    async fn store_response(
        &mut self,
        key: &str,
        fetched: Fetched,
        guard: Option<FlightGuard>,
        status_label: CacheStatus,
    ) -> Served {
        let (mut parts, body) = fetched.response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        let mut plugin_override = Override::default();
        let snapshot = self.snapshot.clone();
        let behavior =
            &snapshot.routes.distribution_at(self.dist_index).behaviors[self.behavior_index];
        if let Some(session) = &mut self.session {
            let response = parapet_host::Response {
                status: parts.status.as_u16(),
                headers: to_plugin(&parts.headers),
                body: None,
            };
            let outcome = session
                .on_origin_response(&behavior.chains.on_origin_response, &self.request, response)
                .await;
            match outcome.flow {
                Flow::Respond(answer) => return Served::new(plugin_answer(answer), None),
                Flow::Continue(changed) => {
                    if let Ok(status) = StatusCode::from_u16(changed.status) {
                        parts.status = status;
                    }
                    let length = parts.headers.get(header::CONTENT_LENGTH).cloned();
                    parts.headers = from_plugin(&changed.headers);
                    if let Some(length) = length {
                        parts.headers.insert(header::CONTENT_LENGTH, length);
                    }
                    plugin_override = Override {
                        cacheable: outcome.cache.cacheable,
                        ttl: outcome
                            .cache
                            .ttl_seconds
                            .map(|s| Duration::from_secs(s.into())),
                    };
                }
            }
        }
        let now = SystemTime::now();
        let decision = freshness::decide(
            &self.policy_request(),
            parts.status,
            &parts.headers,
            &behavior.config.cache,
            plugin_override,
            now,
        );
        let length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let max = self.edge.cache.max_object_bytes();
        let vary = vary_fields(&parts.headers);
        let store_allowed = decision.storable
            && vary.is_some()
            && length.is_none_or(|n| n <= max)
            && (!self.is_peer_copy(fetched.hop));
        let job = match (store_allowed, vary, self.ticket.take()) {
            (true, Some(vary), Some(ticket)) => {
                let mut object = CachedObject {
                    status: parts.status,
                    headers: parts.headers.clone(),
                    body: Bytes::new(),
                    policy: decision.policy.clone(),
                    stored_at_ms: 0,
                    ttl_ms: 0,
                    stale_while_revalidate_ms: 0,
                    stale_if_error_ms: 0,
                    invalidated: false,
                    meta: PurgeMeta {
                        distribution: self.distribution().config.id.clone(),
                        url: self.viewer_url.clone(),
                        tags: surrogate_keys(&parts.headers),
                    },
                };
                object.headers.remove(header::CONTENT_LENGTH);
                // Stored only when a plugin forced it: one viewer's cookie
                // is not everyone's.
                object.headers.remove(header::SET_COOKIE);
                apply_freshness(&mut object, &decision, now);
                Some(StoreJob {
                    cache: self.edge.cache.clone(),
                    key: key.to_string(),
                    vary,
                    request_headers: self.headers.clone(),
                    object,
                    ticket,
                })
            }
            _ => None,
        };
        let guard = match (&job, guard) {
            // Nothing will be stored: release the followers now.
            (None, Some(guard)) => {
                guard.release();
                None
            }
            (_, guard) => guard,
        };
        let streamed = tee(body, job, guard, self.read_timeout(), self.background);
        let head = method_of(&self.request) == Method::HEAD;
        let body = if head { empty() } else { streamed };
        self.finish(parts.status, parts.headers, body, None, status_label)
            .await
    }

    /// How long the upstream may pause within a body.
    fn read_timeout(&self) -> Duration {
        let origins = &self.distribution().config.origins;
        origins.first().map_or(Duration::from_secs(30), |o| {
            Duration::from_millis(o.read_timeout_ms)
        })
    }

    /// Whether the response goes to another parapet edge (a peer, or an
    /// edge using this one as its shield), which needs the cache-targeted
    /// fields; viewers never see them.
    fn downstream_is_edge(&self) -> bool {
        self.from_peer
            || self
                .headers
                .get_all(header::VIA)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains("parapet-")))
    }

    /// Whether a response fetched from `hop` must not be stored here: one
    /// the owner peer holds, unless copies are configured.
    fn is_peer_copy(&self, hop: Hop) -> bool {
        hop == Hop::Peer && !self.snapshot.config.cache.store_peer_copies
    }

    /// A request that is not cacheable: through the origin chains to the
    /// upstream and back, nothing stored. Unsafe methods invalidate the URL.
    async fn pass(&mut self) -> Served {
        let method = method_of(&self.request);
        match self.fetch(None).await {
            Ok(fetched) => {
                let (mut parts, body) = fetched.response.into_parts();
                if !method.is_safe() && (parts.status.is_success() || parts.status.is_redirection())
                {
                    let id = &self.distribution().config.id;
                    let purge = Purge::of(id, cache::Target::Url(self.viewer_url.clone()));
                    self.edge.cache.purge(&purge, false).await;
                }
                headers::strip_hop_by_hop(&mut parts.headers);
                let read_timeout = self.read_timeout();
                let body = tee(body, None, None, read_timeout, false);
                self.finish(parts.status, parts.headers, body, None, CacheStatus::Bypass)
                    .await
            }
            Err(e) => upstream_failure(e),
        }
    }

    /// Finishes a response: `X-Cache` and `Via`, then the viewer-response
    /// chain, then framing.
    async fn finish(
        &mut self,
        status: StatusCode,
        mut headers: HeaderMap,
        body: Body,
        body_bytes: Option<Bytes>,
        cache: CacheStatus,
    ) -> Served {
        if !self.downstream_is_edge() {
            headers::strip_for_viewer(&mut headers);
        }
        headers.insert("x-cache", HeaderValue::from_static(cache.as_str()));
        headers::append_via(&mut headers, &self.edge.pop_id);
        let snapshot = self.snapshot.clone();
        let chain = &snapshot.routes.distribution_at(self.dist_index).behaviors
            [self.behavior_index]
            .chains
            .on_viewer_response;
        let (Some(session), false) = (&mut self.session, chain.is_empty() || self.background)
        else {
            let mut response = Response::new(body);
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            return Served::new(response, Some(cache));
        };
        let given = parapet_host::Response {
            status: status.as_u16(),
            headers: to_plugin(&headers),
            body: body_bytes.map(|b| b.to_vec()),
        };
        let had_body = given.body.clone();
        match session
            .on_viewer_response(chain, &self.request, given)
            .await
        {
            Flow::Respond(answer) => Served::new(plugin_answer(answer), Some(cache)),
            Flow::Continue(changed) => {
                let mut out_headers = from_plugin(&changed.headers);
                let body = if changed.body.is_some() && changed.body != had_body {
                    full(changed.body.unwrap_or_default())
                } else {
                    if let Some(length) = headers.get(header::CONTENT_LENGTH) {
                        out_headers.insert(header::CONTENT_LENGTH, length.clone());
                    }
                    body
                };
                let mut response = Response::new(body);
                *response.status_mut() = StatusCode::from_u16(changed.status).unwrap_or(status);
                *response.headers_mut() = out_headers;
                Served::new(response, Some(cache))
            }
        }
    }
}

/// Why a fetch produced no upstream response.
enum FetchError {
    /// Answered without the upstream: by an origin-request plugin, or
    /// because the distribution used up its share of fetches.
    Answered(Response<Body>),
    /// Every target failed.
    Upstream(UpstreamError),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Answered(_) => write!(f, "answered by a plugin"),
            FetchError::Upstream(e) => write!(f, "{e}"),
        }
    }
}

fn upstream_failure(error: FetchError) -> Served {
    match error {
        FetchError::Answered(response) => Served::new(response, None),
        FetchError::Upstream(e @ UpstreamError::Timeout { .. }) => Served::error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("origin timed out: {e}"),
        ),
        FetchError::Upstream(UpstreamError::Refused { .. }) => Served::error(
            StatusCode::BAD_GATEWAY,
            "the origin's address is not allowed on this edge",
        ),
        FetchError::Upstream(e) => {
            Served::error(StatusCode::BAD_GATEWAY, format!("origin unreachable: {e}"))
        }
    }
}

/// A body being stored as it streams.
struct StoreJob {
    cache: Arc<Cache>,
    key: String,
    vary: Vec<String>,
    request_headers: HeaderMap,
    object: CachedObject,
    /// The fetch's ticket: a purge since it began that selects this copy
    /// keeps it from being stored.
    ticket: FetchTicket,
}

/// Streams `body` to the viewer while collecting it for `job`; stores it
/// when complete and within the size limit, then releases the followers.
/// The fetch completes even if the viewer goes away, so the object is
/// stored for the next request.
fn tee(
    mut body: Incoming,
    job: Option<StoreJob>,
    guard: Option<FlightGuard>,
    read_timeout: Duration,
    background: bool,
) -> Body {
    let (mut sender, channel) = http_body_util::channel::Channel::<Bytes, BoxError>::new(8);
    tokio::spawn(async move {
        let mut guard = guard;
        let mut job = job;
        let mut collected = BytesMut::new();
        let mut viewer = (!background).then_some(());
        loop {
            let frame = match tokio::time::timeout(read_timeout, body.frame()).await {
                Err(_) => {
                    let reason = format!("the upstream body stalled for {read_timeout:?}");
                    sender.abort(reason.into());
                    return;
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    sender.abort(Box::new(e));
                    return;
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers are not forwarded
            };
            if let Some(store) = &job {
                if (collected.len() + data.len()) as u64 > store.cache.max_object_bytes() {
                    job = None;
                    guard = None; // too large to store: release the followers
                    collected = BytesMut::new();
                } else {
                    collected.extend_from_slice(&data);
                }
            }
            if viewer.is_some() && sender.send_data(data).await.is_err() {
                viewer = None;
            }
            if viewer.is_none() && job.is_none() {
                return;
            }
        }
        if let Some(store) = job {
            let mut object = store.object;
            object.body = collected.freeze();
            store.cache.store(
                &store.key,
                &store.vary,
                &store.request_headers,
                object,
                &store.ticket,
            );
        }
        drop(guard);
    });
    channel.boxed()
}

fn apply_freshness(object: &mut CachedObject, decision: &Freshness, now: SystemTime) {
    object.policy = decision.policy.clone();
    object.stored_at_ms = millis(now);
    object.ttl_ms = decision.ttl.as_millis() as u64;
    object.stale_while_revalidate_ms = decision.stale_while_revalidate.as_millis() as u64;
    object.stale_if_error_ms = decision.stale_if_error.as_millis() as u64;
}

/// The `Surrogate-Key` tags of a response.
fn surrogate_keys(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("surrogate-key")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(str::split_whitespace)
        .map(str::to_string)
        .collect()
}

fn method_of(request: &PluginRequest) -> Method {
    Method::from_bytes(request.method.as_bytes()).unwrap_or(Method::GET)
}

/// A plugin's answer as a response; never cached.
fn plugin_answer(answer: parapet_host::Response) -> Response<Body> {
    let mut response = Response::new(full(answer.body.unwrap_or_default()));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *response.headers_mut() = from_plugin(&answer.headers);
    response
}

/// What stands in for the request while a chain holds it.
fn placeholder_request() -> PluginRequest {
    PluginRequest {
        method: String::new(),
        scheme: String::new(),
        authority: String::new(),
        path: String::new(),
        query: None,
        headers: Vec::new(),
        body: None,
    }
}
