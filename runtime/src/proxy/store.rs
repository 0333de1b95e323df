//! Phase 5, storing: the `on-origin-response` chain, RFC 9111
//! storability and freshness (`cache::freshness`), and the body stored as
//! it streams to the viewer (stored when complete, even if the viewer
//! left; dropped past the size limit while streaming goes on). A body
//! within the response plugins' body limit is read whole first, so that
//! they see it and may replace it: the cache stores what they return.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use parapet_host::{BodyAccess, Chains, Flow};

use super::exchange::Exchange;
use super::fetch::{FetchError, Fetched};
use super::viewer_request::plugin_answer;
use super::{CacheStatus, Served};
use crate::cache::flights::FlightGuard;
use crate::cache::freshness::{self, Freshness, Override};
use crate::cache::object::{millis, vary_fields, CachedObject, PurgeMeta};
use crate::cache::parts::{Part, PartRange};
use crate::cache::{Cache, FetchTicket};
use crate::headers::{self, from_plugin, to_plugin};
use crate::upstream::{empty, full, Body, BoxError, UpstreamError};

impl Exchange {
    /// Runs the origin-response chain on a fetched response, stores it when
    /// allowed (streaming it to the viewer meanwhile) and answers. The
    /// stored object it `replaced` (a stale copy) is removed when the new
    /// response is not stored.
    pub(super) async fn store_response(
        &mut self,
        key: &str,
        fetched: Fetched,
        guard: Option<FlightGuard>,
        status_label: CacheStatus,
        replaced: Option<&str>,
    ) -> Served {
        let (mut parts, body) = fetched.response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        let mut plugin_override = Override::default();
        let snapshot = self.snapshot.clone();
        let behavior =
            &snapshot.routes.distribution_at(self.dist_index).behaviors[self.behavior_index];
        let mut body = match self.plugin_read_limit(&parts, &behavior.chains, fetched.part) {
            Some(limit) => {
                let reserved =
                    headers::content_length(&parts.headers).map_or(limit, |length| length as usize);
                if let Some(refused) = self.hold_body_for_plugins(reserved) {
                    return refused;
                }
                match read_within(body, limit, self.read_timeout()).await {
                    Ok(body) => body,
                    Err(error) => return self.upstream_failure(FetchError::Upstream(error)),
                }
            }
            None => FetchedBody::Streaming(Bytes::new(), body),
        };
        if let Some(session) = &mut self.session {
            let (given, access) = match &body {
                FetchedBody::Held(bytes) => (Some(bytes.to_vec()), BodyAccess::Held),
                FetchedBody::Streaming(..) => (None, BodyAccess::Streamed),
            };
            let response = parapet_host::Response {
                status: parts.status.as_u16(),
                headers: to_plugin(&parts.headers),
                body: given,
            };
            let chain = &behavior.chains.on_origin_response;
            let outcome = session
                .on_origin_response(chain, &self.request, response, access)
                .await;
            match outcome.flow {
                Flow::Respond(answer) => return Served::new(plugin_answer(answer), None),
                Flow::Continue(changed) => {
                    if let Ok(status) = StatusCode::from_u16(changed.status) {
                        parts.status = status;
                    }
                    let length = parts.headers.get(header::CONTENT_LENGTH).cloned();
                    parts.headers = from_plugin(&changed.headers);
                    match changed.body {
                        // Held, or a streamed body a plugin replaced.
                        Some(replaced) => {
                            parts
                                .headers
                                .insert(header::CONTENT_LENGTH, replaced.len().into());
                            body = FetchedBody::Held(replaced.into());
                        }
                        None => {
                            if let Some(length) = length {
                                parts.headers.insert(header::CONTENT_LENGTH, length);
                            }
                        }
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
        // A 206 is stored only as a part, when a part was asked for (one
        // range of a known length, a strong validator, no `Vary`); never
        // to be served as the whole. Its freshness is the whole's.
        let part = if fetched.part {
            PartRange::of(parts.status, &parts.headers)
        } else {
            None
        };
        let now = SystemTime::now();
        let decision = freshness::decide(
            &self.policy_request(),
            if part.is_some() {
                StatusCode::OK
            } else {
                parts.status
            },
            &parts.headers,
            &behavior.config.cache,
            plugin_override,
            now,
        );
        let length = headers::content_length(&parts.headers);
        let max = self.edge.cache.max_object_bytes();
        let vary = vary_fields(&parts.headers);
        let store_allowed = decision.storable
            && length.is_none_or(|n| n <= max)
            && (!self.is_peer_copy(fetched.hop));
        // Decided (and the request's headers copied) only when storing.
        let destination = match (store_allowed, part, vary) {
            (false, _, _) => None,
            (true, Some(range), Some(vary)) if vary.is_empty() && range.length <= max => {
                Some(Destination::Part(range))
            }
            (true, None, Some(vary)) if parts.status != StatusCode::PARTIAL_CONTENT => {
                Some(Destination::Whole {
                    vary,
                    request_headers: self.headers.clone(),
                })
            }
            _ => None,
        };
        let job = match (destination, self.ticket.take()) {
            (Some(destination), Some(ticket)) => {
                let mut object = CachedObject {
                    status: match destination {
                        Destination::Part(_) => StatusCode::OK,
                        Destination::Whole { .. } => parts.status,
                    },
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
                object.headers.remove(header::CONTENT_RANGE);
                // Stored only when a plugin forced it: one viewer's cookie
                // is not everyone's.
                object.headers.remove(header::SET_COOKIE);
                apply_freshness(&mut object, &decision, now);
                Some(StoreJob {
                    cache: self.edge.cache.clone(),
                    key: key.to_string(),
                    destination,
                    object,
                    ticket,
                })
            }
            _ => None,
        };
        if let (None, Some(stale)) = (&job, replaced) {
            self.edge.cache.remove(stale);
        }
        let guard = match (&job, guard) {
            // Nothing will be stored: release the followers now.
            (None, Some(guard)) => {
                guard.release();
                None
            }
            (_, guard) => guard,
        };
        let (viewer_body, plugin_body) = match body {
            FetchedBody::Held(bytes) => {
                if let Some(job) = job {
                    job.complete(bytes.clone()).await;
                }
                drop(guard);
                (full(bytes.clone()), Some(bytes))
            }
            FetchedBody::Streaming(read, rest) => {
                let timeout = self.read_timeout();
                (tee(read, rest, job, guard, timeout, self.background), None)
            }
        };
        let (viewer_body, plugin_body) = match self.method() == Method::HEAD {
            true => (empty(), None),
            false => (viewer_body, plugin_body),
        };
        self.finish(
            parts.status,
            parts.headers,
            viewer_body,
            plugin_body,
            status_label,
        )
        .await
    }

    /// Up to what size an origin response's body is read whole, when a
    /// plugin of the response chains will run and takes bodies of its
    /// size; `None` when the body is to stream (no such plugin, a part, a
    /// length over the limit, or no body).
    fn plugin_read_limit(
        &self,
        parts: &http::response::Parts,
        chains: &Chains,
        part: bool,
    ) -> Option<usize> {
        let limit = chains.response_body_limit();
        let length = headers::content_length(&parts.headers);
        let bodiless = headers::status_has_no_body(parts.status)
            || parts.status == StatusCode::PARTIAL_CONTENT;
        let read = self.session.is_some()
            && limit > 0
            && !part
            && !bodiless
            && length.is_none_or(|n| n <= limit as u64);
        read.then_some(limit)
    }

    /// The request as the RFC 9111 policy records it.
    pub(super) fn policy_request(&self) -> http::request::Parts {
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
}

/// An origin response's body as the edge has it.
enum FetchedBody {
    /// Read whole, for the response plugins.
    Held(Bytes),
    /// To stream: what was read before it proved too large, and the rest.
    Streaming(Bytes, Incoming),
}

/// Reads `body` whole if it is at most `limit` bytes long; else what was
/// read so far and the rest. A body that stalls for `read_timeout` or
/// breaks is the upstream's failure (nothing has reached the viewer yet).
async fn read_within(
    mut body: Incoming,
    limit: usize,
    read_timeout: Duration,
) -> Result<FetchedBody, UpstreamError> {
    let mut read = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(read_timeout, body.frame()).await {
            Err(_) => {
                return Err(UpstreamError::Timeout {
                    target: "the upstream body".into(),
                    timeout: read_timeout,
                })
            }
            Ok(None) => return Ok(FetchedBody::Held(read.freeze())),
            Ok(Some(Err(e))) => {
                return Err(UpstreamError::Failed {
                    target: "the upstream body".into(),
                    reason: e.to_string(),
                })
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            read.extend_from_slice(&data);
            if read.len() > limit {
                return Ok(FetchedBody::Streaming(read.freeze(), body));
            }
        }
    }
}

/// A body being stored as it streams.
pub(super) struct StoreJob {
    cache: Arc<Cache>,
    key: String,
    destination: Destination,
    object: CachedObject,
    /// The fetch's ticket: a purge since it began that selects this copy
    /// keeps it from being stored.
    ticket: FetchTicket,
}

/// Where a stored body goes.
enum Destination {
    /// The whole response, under its key or the variant's for `request_headers`.
    Whole {
        vary: Vec<String>,
        request_headers: HeaderMap,
    },
    /// A part of the response.
    Part(PartRange),
}

impl StoreJob {
    /// Stores the complete `body` where the job says; a part cut short is
    /// not stored.
    async fn complete(self, body: Bytes) {
        let mut object = self.object;
        match self.destination {
            Destination::Whole {
                vary,
                request_headers,
            } => {
                object.body = body;
                let cache = &self.cache;
                cache.store(&self.key, &vary, &request_headers, object, &self.ticket);
            }
            Destination::Part(range) if body.len() as u64 == range.size() => {
                let part = Part {
                    object,
                    length: range.length,
                    first: range.first,
                    body,
                };
                self.cache.store_part(&self.key, part, &self.ticket).await;
            }
            Destination::Part(_) => {}
        }
    }
}

/// Streams `read` (the body's start, already read) and then `body` to the
/// viewer while collecting it for `job`; stores it when complete and within
/// the size limit, then releases the followers. The fetch completes even if
/// the viewer goes away, so the object is stored for the next request.
pub(super) fn tee(
    read: Bytes,
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
        // What was read before streaming began goes first.
        if !read.is_empty() {
            keep(&mut job, &mut guard, &mut collected, &read);
            if viewer.is_some() && sender.send_data(read).await.is_err() {
                viewer = None;
            }
        }
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
            keep(&mut job, &mut guard, &mut collected, &data);
            if viewer.is_some() && sender.send_data(data).await.is_err() {
                viewer = None;
            }
            if viewer.is_none() && job.is_none() {
                return;
            }
        }
        if let Some(store) = job {
            store.complete(collected.freeze()).await;
        }
        drop(guard);
    });
    channel.boxed()
}

/// Adds `data` to what `job` collects; past the cache's object size limit
/// the job and what it collected are dropped and the followers released.
fn keep(
    job: &mut Option<StoreJob>,
    guard: &mut Option<FlightGuard>,
    collected: &mut BytesMut,
    data: &Bytes,
) {
    let Some(store) = job else {
        return;
    };
    if (collected.len() + data.len()) as u64 > store.cache.max_object_bytes() {
        *job = None;
        *guard = None;
        *collected = BytesMut::new();
    } else {
        collected.extend_from_slice(data);
    }
}

pub(super) fn apply_freshness(object: &mut CachedObject, decision: &Freshness, now: SystemTime) {
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
