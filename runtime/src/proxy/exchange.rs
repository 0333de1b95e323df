//! One request on its way through the edge, and the order of its phases.

use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode};
use parapet_host::{Request as PluginRequest, RequestSession};

use super::{respond, Connection, Served};
use crate::cache::FetchTicket;
use crate::cache_key::{cache_key, KeyInput};
use crate::edge::{Edge, Snapshot};
use crate::forwarding::Sender;
use crate::routing::{Behavior, Distribution};
use crate::upstream::Body;

/// One request on its way through the edge.
pub(super) struct Exchange {
    pub(super) edge: Arc<Edge>,
    pub(super) snapshot: Arc<Snapshot>,
    pub(super) connection: Arc<Connection>,
    pub(super) dist_index: usize,
    pub(super) behavior_index: usize,
    pub(super) session: Option<RequestSession>,
    /// The request as the plugins see it (and change it); its header list
    /// is kept only while plugins run.
    pub(super) request: PluginRequest,
    /// The request's headers: the source of truth, converted to and from
    /// the plugins' list around each request chain.
    pub(super) headers: HeaderMap,
    /// The request before the viewer-request chain, when there is one: a
    /// background refresh replays the chain on it.
    pub(super) original: Option<PluginRequest>,
    /// A background refresh: nobody waits for the answer.
    pub(super) background: bool,
    /// A body too large for the plugins, streamed to the upstream.
    pub(super) streamed: Option<Body>,
    /// Forwarded by a peer that found this edge owns the key.
    pub(super) from_peer: bool,
    /// Who sent it: the viewer's address, whether its forwarding fields
    /// are kept, whether it is another edge.
    pub(super) sender: Sender,
    /// The path as received, when it is not normal and goes to the origin
    /// as it came.
    pub(super) path_as_received: Option<PathAsReceived>,
    /// The URL the viewer asked for, as purges name it (see
    /// [`crate::cache_key::purge_url`]).
    pub(super) viewer_url: String,
    /// A cacheable request's fetch ticket, taken before the lookup: a
    /// purge from then on that selects the object keeps it from being
    /// stored.
    pub(super) ticket: Option<FetchTicket>,
    /// The request's number on this edge: its id in plugins, error bodies
    /// and logs (see `Edge::request_id`).
    pub(super) number: u64,
    /// The plugin instances it holds of its distribution's share.
    pub(super) _plugin_share: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The bytes it holds of its distribution's share of bodies held for
    /// plugins (see [`Exchange::hold_body_for_plugins`]).
    pub(super) body_share: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Exchange {
    /// Takes `bytes` of the distribution's share of bodies held for
    /// plugins, until the request ends (a request holds one body at a time:
    /// a later reservation replaces the earlier one); `None` when taken.
    /// Past the share, the 503 to answer instead: a tenant whose plugins
    /// take large bodies cannot hold the edge's memory with many slow
    /// responses.
    pub(super) fn hold_body_for_plugins(&mut self, bytes: usize) -> Option<Served> {
        self.body_share = None;
        let id = &self.distribution().config.id;
        match (self.edge.shares)
            .of(id, self.snapshot.config.shares)
            .plugin_body_bytes(id, bytes)
        {
            Ok(permit) => {
                self.body_share = Some(permit);
                None
            }
            Err(exhausted) => Some(Served::new(
                respond::error_response(StatusCode::SERVICE_UNAVAILABLE, &exhausted.to_string()),
                None,
            )),
        }
    }

    /// The distribution serving the request.
    pub(super) fn distribution(&self) -> &Distribution {
        self.snapshot.routes.distribution_at(self.dist_index)
    }

    /// The behavior its path matched.
    pub(super) fn behavior(&self) -> &Behavior {
        &self.distribution().behaviors[self.behavior_index]
    }

    /// The phases after routing: the viewer-request chain, then the cache
    /// for GET and HEAD without a body, the upstream for the rest.
    pub(super) async fn run(&mut self) -> Served {
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

    /// The request's cache key under its behavior's key policy: the
    /// path as the origin gets it.
    pub(super) fn cache_key(&self) -> String {
        let host = parapet_config::domains::host_name(&self.request.authority);
        cache_key(
            &self.behavior().config.cache.key,
            &KeyInput {
                distribution: &self.distribution().config.id,
                scheme: &self.request.scheme,
                host: &host,
                path: self.upstream_path(),
                query: self.request.query.as_deref(),
                headers: &self.headers,
            },
        )
    }

    /// The path the origin gets: as received, unless it was not normal and
    /// the distribution asks for the normalised one, or a plugin changed it.
    pub(super) fn upstream_path(&self) -> &str {
        match &self.path_as_received {
            Some(path) if path.normalized == self.request.path => &path.received,
            _ => &self.request.path,
        }
    }

    /// The request's method (as the plugins left it).
    pub(super) fn method(&self) -> Method {
        method_of(&self.request)
    }
}

/// A path received in a form that is not normal, and its normal form.
#[derive(Clone)]
pub(super) struct PathAsReceived {
    /// What behaviors, guards and plugins were given.
    pub(super) normalized: String,
    /// What the viewer sent.
    pub(super) received: String,
}

/// A plugin request's method; GET if it is not a valid one (the host
/// checks plugins' output, so that does not happen).
pub(super) fn method_of(request: &PluginRequest) -> Method {
    Method::from_bytes(request.method.as_bytes()).unwrap_or(Method::GET)
}
