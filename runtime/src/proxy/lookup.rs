//! Phase 3, the cache: a fresh hit is answered, a stale object is served
//! while it refreshes in the background or revalidated first, a miss is
//! fetched. Revalidations and misses go upstream once per key: concurrent
//! requests wait for the first (collapsing) and take what it stored.

use std::time::{Duration, SystemTime};

use http::{header, HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use parapet_config::RangeFetch;
use parapet_host::{BodyAccess, RequestContext, RequestSession};

use super::exchange::Exchange;
use super::fetch::Want;
use super::store::apply_freshness;
use super::{CacheStatus, Served};
use crate::cache::directives::RequestDirectives;
use crate::cache::flights::{FlightGuard, Join};
use crate::cache::freshness::{self, Override};
use crate::cache::object::{millis, CachedObject, Usability};
use crate::cache::{respond, Hit};
use crate::headers::{self, from_plugin};

impl Exchange {
    /// A cacheable request: hit, stale or miss. Revalidations and misses
    /// go upstream once per key: concurrent requests wait for the first
    /// and take what it stored.
    ///
    /// The request's own `Cache-Control` (RFC 9111 5.2.1) makes stored
    /// objects stale for it (`no-cache`, `max-age`, `min-fresh`) or
    /// acceptable stale (`max-stale`); with `only-if-cached` nothing goes
    /// upstream (504 when nothing usable is stored).
    pub(super) async fn cached(&mut self, key: &str) -> Served {
        let cache = self.edge.cache.clone();
        let directives = RequestDirectives::of(&self.headers);
        let found = cache.lookup(key, &self.headers).await;
        if found.is_none() && self.range_as_part() {
            return self.range_from_parts(key, &directives).await;
        }
        if directives.only_if_cached {
            return match found {
                Some(hit) => match directives.usability(hit.object(), SystemTime::now()) {
                    Usability::Fresh => self.answer_from(hit.object(), CacheStatus::Hit).await,
                    Usability::StaleWhileRevalidate => {
                        self.answer_from(hit.object(), CacheStatus::Stale).await
                    }
                    Usability::Stale => only_if_cached_miss(),
                },
                None => only_if_cached_miss(),
            };
        }
        let stale = match found {
            Some(hit) => match directives.usability(hit.object(), SystemTime::now()) {
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
                        if directives.usability(object, SystemTime::now()) == Usability::Fresh
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

    /// Whether the request is a `GET` for a range that its behavior fetches
    /// as a part (`ranges = "parts"`).
    fn range_as_part(&self) -> bool {
        self.behavior().config.cache.ranges == RangeFetch::Parts
            && self.method() == Method::GET
            && self.headers.contains_key(header::RANGE)
    }

    /// A range of an object not stored whole: answered from the stored
    /// parts when one holds it and they are fresh; else the range is
    /// fetched and a `206` stored as a part. Part fetches are not
    /// collapsed, and stale parts are fetched again, not revalidated.
    async fn range_from_parts(&mut self, key: &str, directives: &RequestDirectives) -> Served {
        if let Some(parts) = self.edge.cache.lookup_parts(key).await {
            let now = SystemTime::now();
            if directives.usability(&parts.object, now) == Usability::Fresh {
                if let Some(answer) = respond::answer_from_parts(&parts, &self.headers, now) {
                    return self.answer_stored(answer, CacheStatus::Hit).await;
                }
            }
        }
        if directives.only_if_cached {
            return only_if_cached_miss();
        }
        match self.fetch(Want::Part).await {
            Ok(fetched) => {
                self.store_response(key, fetched, None, CacheStatus::Miss, None)
                    .await
            }
            Err(e) => self.upstream_failure(e),
        }
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
        let number = self.edge.count_request();
        let session = self.session.as_ref().map(|_| {
            RequestSession::new(RequestContext {
                request_id: self.edge.request_id(number),
                pop_id: self.edge.pop_id.clone(),
                client_ip: self.connection.client.ip(),
                geo: self.edge.geo.clone(),
                request_body: BodyAccess::Held,
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
            sender: self.sender,
            path_as_received: self.path_as_received.clone(),
            background: true,
            viewer_url: self.viewer_url.clone(),
            ticket: self.ticket.clone(),
            number,
            _plugin_share: plugin_share,
            body_share: None,
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
            match refresh.fetch(Want::Revalidation(&stale)).await {
                Ok(fetched) if fetched.response.status() == StatusCode::NOT_MODIFIED => {
                    let (updated, storable) =
                        refresh.updated_object(&stale, fetched.response.headers());
                    refresh.keep_or_drop(&storage_key, updated, storable);
                }
                Ok(fetched) => {
                    // Store the new version; nobody is waiting for the body.
                    let served = refresh
                        .store_response(&key, fetched, None, CacheStatus::Miss, Some(&storage_key))
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
        match self.fetch(Want::Revalidation(stale)).await {
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
                // A new response that may not be stored also retires the
                // stale one: it is never served in the new one's place.
                let replaced = Some(hit.storage_key.as_str());
                self.store_response(key, fetched, guard, CacheStatus::Expired, replaced)
                    .await
            }
            Err(_) if stale.usable_on_error(now) => {
                self.answer_from(hit.object(), CacheStatus::Stale).await
            }
            Err(e) => self.upstream_failure(e),
        }
    }

    /// A miss: fetch, store if allowed, stream to the viewer.
    async fn miss(&mut self, key: &str, guard: Option<FlightGuard>) -> Served {
        match self.fetch(Want::Whole).await {
            Ok(fetched) => {
                self.store_response(key, fetched, guard, CacheStatus::Miss, None)
                    .await
            }
            Err(e) => self.upstream_failure(e),
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
}

/// The answer to `only-if-cached` when nothing usable is stored (RFC 9111
/// 5.2.1.7).
fn only_if_cached_miss() -> Served {
    Served::error(
        StatusCode::GATEWAY_TIMEOUT,
        "only-if-cached: nothing usable is stored for this request",
    )
}
