//! Phase 4, the upstream: the `on-origin-request` chain, then the owner
//! peer, the shield and the origins in order, holding one of the
//! distribution's upstream fetches until the answer's head arrives.
//! Requests that are not cacheable pass through here and back.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use hyper::body::Incoming;
use parapet_host::Flow;

use super::exchange::{method_of, Exchange};
use super::respond::error_response;
use super::store::tee;
use super::viewer_request::plugin_answer;
use super::{CacheStatus, Served};
use crate::cache::object::CachedObject;
use crate::cache::{self, Purge};
use crate::forwarding::{self, forward_request_headers};
use crate::headers::{self, from_plugin};
use crate::peers::PEER_HEADER;
use crate::upstream::{Body, RequestBody, Target, UpstreamError, UpstreamRequest};

/// Where a fetch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hop {
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

/// What a fetch asks the upstream for.
#[derive(Clone, Copy)]
pub(super) enum Want<'a> {
    /// The whole response (for a cacheable request, whatever range the
    /// viewer asked for), or a request that is not cacheable as it is.
    Whole,
    /// The whole response, if it changed since this stored one.
    Revalidation(&'a CachedObject),
    /// The viewer's range, to store as a part (`ranges = "parts"`).
    Part,
}

/// What a fetch for the cache produced.
pub(super) struct Fetched {
    pub(super) response: Response<Incoming>,
    pub(super) hop: Hop,
    /// The viewer's range was asked for: a `206` is a part to store.
    pub(super) part: bool,
}

impl Exchange {
    /// Runs the origin-request chain and sends the request upstream: to the
    /// owner peer, else the shield, else the origins in order, for what it
    /// `want`s.
    pub(super) async fn fetch(&mut self, want: Want<'_>) -> Result<Fetched, FetchError> {
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
        let scheme_in_key = self.behavior().config.cache.key.scheme;
        forward_request_headers(
            &mut headers,
            &forwarding::Upstream {
                sender: self.connection.client.ip(),
                scheme: scheme_in_key.then_some(request.scheme.as_str()),
                host: &request.authority,
                pop: &self.edge.pop_id,
            },
        );
        let mut method = method_of(&request);
        let for_cache = matches!(method, Method::GET | Method::HEAD);
        if for_cache {
            // Fetch the whole object (or the range to store as a part);
            // the viewer's ranges and preconditions are answered from it.
            method = Method::GET;
            headers.remove(header::IF_MATCH);
            headers.remove(header::IF_UNMODIFIED_SINCE);
            if !matches!(want, Want::Part) {
                headers.remove(header::RANGE);
                headers.remove(header::IF_RANGE);
            }
        }
        // Validating a stored object uses its own validators. With nothing
        // stored, the viewer's go upstream (RFC 9111 4.3.2): a 304 answers
        // the viewer (nothing to store), a 200 is stored.
        if let Want::Revalidation(stale) = want {
            headers.remove(header::IF_NONE_MATCH);
            headers.remove(header::IF_MODIFIED_SINCE);
            if let Some(etag) = stale.headers.get(header::ETAG) {
                headers.insert(header::IF_NONE_MATCH, etag.clone());
            }
            if let Some(modified) = stale.headers.get(header::LAST_MODIFIED) {
                headers.insert(header::IF_MODIFIED_SINCE, modified.clone());
            }
        }
        // The path as received, unless it was not normal and the
        // distribution asks for the normal one, or a plugin changed it.
        let path = match &self.path_as_received {
            Some(path) if path.normalized == request.path => &path.received,
            _ => &request.path,
        };
        let path_and_query = match &request.query {
            Some(query) => format!("{path}?{query}"),
            None => path.clone(),
        };
        let viewer_host = HeaderValue::from_str(&request.authority).ok();
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
        let tier_secret = self.snapshot.config.server.tier_secret.as_deref();
        for (target, hop, host_header) in self.targets(key.as_deref()) {
            let mut headers = headers.clone();
            if hop == Hop::Peer {
                headers.insert(PEER_HEADER, HeaderValue::from_static("1"));
            } else {
                headers.remove(PEER_HEADER);
            }
            // Edges of the tier route by the viewer's host and learn
            // they talk to an edge from the secret; origins get their
            // `host_header` if they have one, and never the secret.
            let host = match host_header {
                Some(host) => HeaderValue::from_str(host).ok(),
                None => viewer_host.clone(),
            };
            if let Some(host) = host {
                headers.insert(header::HOST, host);
            }
            if let (Hop::Peer | Hop::Shield, Some(Ok(secret))) =
                (hop, tier_secret.map(HeaderValue::from_str))
            {
                headers.insert(forwarding::TIER_HEADER, secret);
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
                Ok(response) => {
                    let part = matches!(want, Want::Part);
                    return Ok(Fetched {
                        response,
                        hop,
                        part,
                    });
                }
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

    /// Upstream targets in the order to try them, with the `Host` an
    /// origin asks for.
    fn targets(&self, key: Option<&str>) -> Vec<(Target, Hop, Option<&str>)> {
        let config = &self.snapshot.config;
        let dist = &self.distribution().config;
        let first_origin = &dist.origins[0];
        // The shield and peers: the tier's authority, the first origin's
        // timeouts.
        let tier = |base: &str| -> Option<Target> {
            Some(Target {
                base: base.parse().ok()?,
                ca_file: config.tier_tls.ca_file.clone(),
                connect_timeout: Duration::from_millis(first_origin.connect_timeout_ms),
                read_timeout: Duration::from_millis(first_origin.read_timeout_ms),
            })
        };
        let mut targets = Vec::new();
        if let (Some(ring), Some(key), false) = (&self.snapshot.peers, key, self.from_peer) {
            if let Some(owner) = ring.owner(key) {
                let scheme = if config.tier_tls.peers {
                    "https"
                } else {
                    "http"
                };
                if let Some(target) = tier(&format!("{scheme}://{owner}")) {
                    targets.push((target, Hop::Peer, None));
                }
            }
        }
        if let Some(shield) = &config.shield {
            if let Some(target) = tier(shield) {
                targets.push((target, Hop::Shield, None));
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
                    origin.host_header.as_deref(),
                ));
            }
        }
        targets
    }

    /// How long the upstream may pause within a body.
    pub(super) fn read_timeout(&self) -> Duration {
        let origins = &self.distribution().config.origins;
        origins.first().map_or(Duration::from_secs(30), |o| {
            Duration::from_millis(o.read_timeout_ms)
        })
    }

    /// Whether a response fetched from `hop` must not be stored here: one
    /// the owner peer holds, unless copies are configured.
    pub(super) fn is_peer_copy(&self, hop: Hop) -> bool {
        hop == Hop::Peer && !self.snapshot.config.cache.store_peer_copies
    }

    /// A request that is not cacheable: through the origin chains to the
    /// upstream and back, nothing stored. Unsafe methods invalidate the URL.
    pub(super) async fn pass(&mut self) -> Served {
        let method = self.method();
        match self.fetch(Want::Whole).await {
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
                let body = tee(Bytes::new(), body, None, None, read_timeout, false);
                self.finish(parts.status, parts.headers, body, None, CacheStatus::Bypass)
                    .await
            }
            Err(e) => self.upstream_failure(e),
        }
    }
}

/// Why a fetch produced no upstream response.
pub(super) enum FetchError {
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

impl Exchange {
    /// The answer to a fetch that failed. The body names the kind of
    /// failure and a request id; the upstream's address and the error
    /// chain go to the log under that id only.
    pub(super) fn upstream_failure(&self, error: FetchError) -> Served {
        let e = match error {
            FetchError::Answered(response) => return Served::new(response, None),
            FetchError::Upstream(e) => e,
        };
        let (status, kind) = match &e {
            UpstreamError::Timeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "the origin did not answer in time",
            ),
            UpstreamError::Refused { .. } => (
                StatusCode::BAD_GATEWAY,
                "the origin's address is not allowed on this edge",
            ),
            UpstreamError::Connect { .. } => {
                (StatusCode::BAD_GATEWAY, "the origin could not be reached")
            }
            _ => (StatusCode::BAD_GATEWAY, "the origin's answer failed"),
        };
        let request_id = self.edge.request_id(self.number);
        tracing::warn!(
            request_id,
            distribution = %self.distribution().config.id,
            status = status.as_u16(),
            error = %e,
            "upstream failure answered"
        );
        Served::error(status, format!("{kind} (request {request_id})"))
    }
}
